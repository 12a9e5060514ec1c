//! The time arithmetic of `burnrate`: Prometheus-style durations (`5m`, `1d`, `3d`), the
//! bounded ring of cumulative samples, and Prometheus' `increase()` extrapolation.

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Deserializer};

/// A duration written as Prometheus writes it (`30s`, `5m`, `1h30m`, `1d`, `3d`, `1w`),
/// kept with its text so emitted `slo.window` labels read as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromDuration {
    pub text: String,
    pub millis: i64,
}

impl PromDuration {
    pub fn parse(text: &str) -> Result<PromDuration, String> {
        let invalid = || {
            format!(
                "invalid duration {text:?}: write it as Prometheus does, e.g. 30s, 5m, 1h, 1d, 3d (units ms s m h d w y)"
            )
        };
        const UNITS: &[(&str, i64)] = &[
            ("y", 365 * 86_400_000),
            ("w", 7 * 86_400_000),
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
            ("ms", 1),
        ];
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(invalid());
        }
        let mut millis: i64 = 0;
        // Units must appear in decreasing order, each at most once (Prometheus' rule).
        let mut next_unit = 0;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .ok_or_else(invalid)?;
            if digits == 0 {
                return Err(invalid());
            }
            let number: i64 = rest[..digits].parse().map_err(|_| invalid())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            let position = UNITS
                .iter()
                .position(|(u, _)| *u == unit)
                .ok_or_else(invalid)?;
            if position < next_unit {
                return Err(invalid());
            }
            next_unit = position + 1;
            millis = number
                .checked_mul(UNITS[position].1)
                .and_then(|m| millis.checked_add(m))
                .ok_or_else(invalid)?;
            rest = &rest[unit_len..];
        }
        Ok(PromDuration {
            text: text.trim().to_string(),
            millis,
        })
    }

    pub fn seconds(&self) -> f64 {
        self.millis as f64 / 1000.0
    }
}

impl fmt::Display for PromDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PromDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// One sample of a group: cumulative (reset-adjusted) bad and total event counts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub ts_ms: i64,
    pub bad: f64,
    pub total: f64,
}

/// A ring of samples at most one per `resolution` slot, covering `span` milliseconds.
/// Memory: at most `span / resolution + 2` samples of 24 bytes.
#[derive(Clone, Debug)]
pub struct Ring {
    samples: VecDeque<Sample>,
    resolution_ms: i64,
    span_ms: i64,
    capacity: usize,
}

impl Ring {
    pub fn new(resolution_ms: i64, span_ms: i64) -> Ring {
        let resolution_ms = resolution_ms.max(1);
        let capacity = usize::try_from(span_ms / resolution_ms + 2).unwrap_or(usize::MAX);
        Ring {
            samples: VecDeque::new(),
            resolution_ms,
            span_ms,
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn last(&self) -> Option<&Sample> {
        self.samples.back()
    }

    pub fn first(&self) -> Option<&Sample> {
        self.samples.front()
    }

    /// Every sample, oldest first (for checkpoints).
    pub fn samples(&self) -> impl ExactSizeIterator<Item = &Sample> {
        self.samples.iter()
    }

    /// Adds a sample; a sample in the same resolution slot as the newest replaces it
    /// (the ring keeps the newest sample of each slot).
    /// Samples older than the newest are ignored (time only moves forward).
    pub fn push(&mut self, sample: Sample) {
        if let Some(last) = self.samples.back_mut() {
            if sample.ts_ms < last.ts_ms {
                return;
            }
            if sample.ts_ms.div_euclid(self.resolution_ms)
                == last.ts_ms.div_euclid(self.resolution_ms)
            {
                // One sample per slot: the newest.
                *last = sample;
            } else {
                self.samples.push_back(sample);
            }
        } else {
            self.samples.push_back(sample);
        }
        let cutoff = sample.ts_ms - self.span_ms;
        while self.samples.front().is_some_and(|s| s.ts_ms <= cutoff)
            || self.samples.len() > self.capacity
        {
            self.samples.pop_front();
        }
    }

    /// Samples in the window `(now - window, now]`, oldest first.
    pub fn window(&self, now_ms: i64, window_ms: i64) -> impl Iterator<Item = &Sample> {
        let start = now_ms - window_ms;
        let first = self.samples.partition_point(|s| s.ts_ms <= start);
        self.samples
            .range(first..)
            .take_while(move |s| s.ts_ms <= now_ms)
    }

    /// Increase of bad and total over the window, extrapolated as Prometheus'
    /// `increase()` does; None with fewer than two samples in the window.
    pub fn increase(&self, now_ms: i64, window_ms: i64) -> Option<(f64, f64)> {
        let mut iter = self.window(now_ms, window_ms);
        let first = *iter.next()?;
        let (count, last) = iter.fold((1usize, first), |(n, _), s| (n + 1, *s));
        if count < 2 {
            return None;
        }
        let range_start = now_ms - window_ms;
        let bad = extrapolated_increase(
            first.ts_ms,
            first.bad,
            last.ts_ms,
            last.bad,
            count,
            range_start,
            now_ms,
        );
        let total = extrapolated_increase(
            first.ts_ms,
            first.total,
            last.ts_ms,
            last.total,
            count,
            range_start,
            now_ms,
        );
        Some((bad, total))
    }

    /// Plain (not extrapolated) increase from the oldest to the newest sample.
    pub fn span_increase(&self) -> Option<(f64, f64)> {
        let first = self.samples.front()?;
        let last = self.samples.back()?;
        (self.samples.len() >= 2).then(|| (last.bad - first.bad, last.total - first.total))
    }
}

/// Prometheus' `extrapolatedRate` (promql/functions.go, as in v2.42, the Debian package
/// the oracle test runs) for `increase()` of a counter whose values are already
/// reset-adjusted: the raw increase, stretched to the range boundaries when the first
/// and last samples are within 1.1 average intervals of them (else by half an average
/// interval), never back past the counter's extrapolated zero point.
pub fn extrapolated_increase(
    first_ts: i64,
    first: f64,
    last_ts: i64,
    last: f64,
    count: usize,
    range_start: i64,
    range_end: i64,
) -> f64 {
    let result = last - first;
    let sampled_interval = (last_ts - first_ts) as f64 / 1000.0;
    if sampled_interval <= 0.0 || count < 2 {
        return 0.0;
    }
    let mut duration_to_start = (first_ts - range_start) as f64 / 1000.0;
    let duration_to_end = (range_end - last_ts) as f64 / 1000.0;
    let average_interval = sampled_interval / (count - 1) as f64;
    if result > 0.0 && first >= 0.0 {
        let duration_to_zero = sampled_interval * (first / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    let threshold = average_interval * 1.1;
    let mut extrapolate_to = sampled_interval;
    extrapolate_to += if duration_to_start < threshold {
        duration_to_start
    } else {
        average_interval / 2.0
    };
    extrapolate_to += if duration_to_end < threshold {
        duration_to_end
    } else {
        average_interval / 2.0
    };
    result * (extrapolate_to / sampled_interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_durations_and_keeps_the_text() {
        assert_eq!(PromDuration::parse("5m").map(|d| d.millis), Ok(300_000));
        assert_eq!(
            PromDuration::parse("1h30m").map(|d| d.millis),
            Ok(5_400_000)
        );
        assert_eq!(PromDuration::parse("3d").map(|d| d.millis), Ok(259_200_000));
        assert_eq!(PromDuration::parse("1w").map(|d| d.millis), Ok(604_800_000));
        assert_eq!(PromDuration::parse("500ms").map(|d| d.millis), Ok(500));
        assert_eq!(
            PromDuration::parse("1d").map(|d| d.text),
            Ok("1d".to_string())
        );
        for bad in ["", "5", "m", "1.5h", "5m1h", "1x", "-1m", "1h1h"] {
            assert!(PromDuration::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn increase_matches_prometheus_worked_examples() {
        // Samples every 10 s from t=5 s to t=55 s, counter 0..50, range [0, 60]: the
        // counter was 0 at the first sample, so nothing is extrapolated before it; the
        // end is extrapolated by 5 s: 50 * 55/50.
        let v = extrapolated_increase(5_000, 0.0, 55_000, 50.0, 6, 0, 60_000);
        assert!((v - 50.0 * 55.0 / 50.0).abs() < 1e-9, "{v}");
        // Started at 100: no zero clamp; both ends extrapolated by 5 s -> 60.
        let v = extrapolated_increase(5_000, 100.0, 55_000, 150.0, 6, 0, 60_000);
        assert!((v - 60.0).abs() < 1e-9, "{v}");
        // Last sample far from the end (> 1.1 intervals): only half an interval added.
        let v = extrapolated_increase(0, 100.0, 20_000, 120.0, 3, 0, 60_000);
        assert!((v - 20.0 * 25.0 / 20.0).abs() < 1e-9, "{v}");
    }

    #[test]
    fn ring_keeps_one_sample_per_slot_and_drops_old_ones() {
        let mut ring = Ring::new(10_000, 60_000);
        for t in (0..200_000).step_by(1000) {
            ring.push(Sample {
                ts_ms: t,
                bad: 0.0,
                total: t as f64,
            });
        }
        assert!(ring.len() <= 60_000 / 10_000 + 2, "{}", ring.len());
        assert_eq!(ring.last().map(|s| s.ts_ms), Some(199_000));
        // Everything in the ring is inside the span.
        assert!(ring.window(199_000, 60_000).count() == ring.len());
        // Older samples are ignored.
        ring.push(Sample {
            ts_ms: 5,
            bad: 1.0,
            total: 1.0,
        });
        assert_eq!(ring.last().map(|s| s.ts_ms), Some(199_000));
    }
}
