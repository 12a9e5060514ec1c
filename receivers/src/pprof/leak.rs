//! Goroutine-leak detection: which stack signatures keep growing.
//!
//! The rule (also in docs/components/pprof.md), over the samples of one signature inside
//! the last `window`:
//! 1. enough history: at least 4 samples spanning at least half the window;
//! 2. net growth: last - first >= `min_growth`;
//! 3. a positive least-squares slope (goroutines per second, the reported growth);
//! 4. sustained: at least a fifth of the net growth happens in each half of the span, so
//!    a one-off step (a burst that is still held) is not a leak;
//! 5. not draining: the last count is within a tenth of the net growth of the window's
//!    maximum, and the sum of all decreases is at most half the net growth.
//!
//! A signature that stops growing (the leak stopped, or a plateau) is no longer a
//! suspect once its rise leaves the window. A suspect is reported as a log record once
//! per signature for as long as the detector remembers it.
//!
//! Time comes from the scrape timestamps passed in, never from a clock, so tests replay
//! exact sequences. Memory is bounded: at most `MAX_SIGNATURES` histories, each holding
//! only the samples inside the window.

use std::collections::{HashMap, VecDeque};

/// At most this many signatures are tracked per target; new ones beyond it are ignored
/// until old ones are forgotten.
pub const MAX_SIGNATURES: usize = 10_000;

/// A signature the rule currently flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Suspect {
    pub id: String,
    /// Least-squares slope over the window, goroutines per second.
    pub growth_per_second: f64,
    /// Last minus first count inside the window.
    pub net_growth: f64,
    pub count: f64,
    /// True the first time this signature is flagged (emit the log record now).
    pub new: bool,
}

struct History {
    samples: VecDeque<(f64, f64)>,
    reported: bool,
}

pub struct Detector {
    window_seconds: f64,
    min_growth: f64,
    histories: HashMap<String, History>,
}

impl Detector {
    pub fn new(window: std::time::Duration, min_growth: u64) -> Detector {
        Detector {
            window_seconds: window.as_secs_f64(),
            min_growth: min_growth as f64,
            histories: HashMap::new(),
        }
    }

    /// Records one scrape (`at` in seconds, any epoch) with the count of every signature
    /// seen; signatures tracked but absent count 0. Returns the current suspects.
    pub fn observe(&mut self, at: f64, counts: &HashMap<String, u64>) -> Vec<Suspect> {
        for (id, count) in counts {
            if !self.histories.contains_key(id) && self.histories.len() >= MAX_SIGNATURES {
                continue;
            }
            let history = self.histories.entry(id.clone()).or_insert_with(|| History {
                samples: VecDeque::new(),
                reported: false,
            });
            history.samples.push_back((at, *count as f64));
        }
        let window = self.window_seconds;
        let mut suspects = Vec::new();
        self.histories.retain(|id, history| {
            if !counts.contains_key(id) {
                history.samples.push_back((at, 0.0));
            }
            while history
                .samples
                .front()
                .is_some_and(|(t, _)| *t < at - window)
            {
                history.samples.pop_front();
            }
            // Forget a signature that has been at zero for the whole window.
            if history.samples.iter().all(|(_, c)| *c == 0.0) && history.samples.len() > 1 {
                return false;
            }
            true
        });
        for (id, history) in &mut self.histories {
            if let Some((growth_per_second, net_growth, count)) =
                judge(&history.samples, window, self.min_growth)
            {
                let new = !history.reported;
                history.reported = true;
                suspects.push(Suspect {
                    id: id.clone(),
                    growth_per_second,
                    net_growth,
                    count,
                    new,
                });
            }
        }
        suspects.sort_by(|a, b| {
            b.growth_per_second
                .total_cmp(&a.growth_per_second)
                .then_with(|| a.id.cmp(&b.id))
        });
        suspects
    }

    pub fn tracked(&self) -> usize {
        self.histories.len()
    }
}

/// The rule; `Some((slope, net, last))` when the samples are a leak.
pub fn judge(
    samples: &VecDeque<(f64, f64)>,
    window: f64,
    min_growth: f64,
) -> Option<(f64, f64, f64)> {
    if samples.len() < 4 {
        return None;
    }
    let (t0, first) = *samples.front()?;
    let (t1, last) = *samples.back()?;
    let span = t1 - t0;
    if span < window / 2.0 || span <= 0.0 {
        return None;
    }
    let net = last - first;
    if net < min_growth.max(1.0) {
        return None;
    }
    let slope = least_squares_slope(samples)?;
    if slope <= 0.0 {
        return None;
    }
    let mid_time = t0 + span / 2.0;
    let (_, mid) = *samples
        .iter()
        .min_by(|a, b| (a.0 - mid_time).abs().total_cmp(&(b.0 - mid_time).abs()))?;
    if mid - first < net / 5.0 || last - mid < net / 5.0 {
        return None;
    }
    let max = samples.iter().map(|(_, c)| *c).fold(f64::MIN, f64::max);
    if last < max - net / 10.0 {
        return None;
    }
    let decreases: f64 = samples
        .iter()
        .zip(samples.iter().skip(1))
        .map(|(a, b)| (a.1 - b.1).max(0.0))
        .sum();
    if decreases > net / 2.0 {
        return None;
    }
    Some((slope, net, last))
}

fn least_squares_slope(samples: &VecDeque<(f64, f64)>) -> Option<f64> {
    let n = samples.len() as f64;
    let mean_t = samples.iter().map(|(t, _)| t).sum::<f64>() / n;
    let mean_c = samples.iter().map(|(_, c)| c).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (t, c) in samples {
        num += (t - mean_t) * (c - mean_c);
        den += (t - mean_t) * (t - mean_t);
    }
    (den > 0.0).then(|| num / den)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Feeds `series(second)` for signature "s" once a second for `seconds`; returns the
    /// first second at which it was flagged.
    fn first_flag(
        window: u64,
        min_growth: u64,
        seconds: u64,
        series: impl Fn(u64) -> u64,
    ) -> Option<u64> {
        let mut detector = Detector::new(Duration::from_secs(window), min_growth);
        let mut flagged = None;
        for second in 0..seconds {
            let counts = HashMap::from([("s".to_string(), series(second))]);
            let suspects = detector.observe(second as f64, &counts);
            if let Some(s) = suspects.first() {
                if flagged.is_none() {
                    assert!(s.new, "the first flag is new");
                    flagged = Some(second);
                } else {
                    assert!(!s.new, "reported once");
                }
            }
        }
        flagged
    }

    #[test]
    fn steady_leak_is_flagged_within_the_window() {
        let at = first_flag(600, 20, 1200, |s| 50 + s / 10).expect("a leak of 6/min is flagged");
        assert!(at <= 600, "flagged at {at}s, after the 10m window");
        // Fast leak, short window.
        let at = first_flag(10, 20, 30, |s| 5 + 10 * s).expect("flagged");
        assert!(at <= 10, "{at}");
    }

    #[test]
    fn stable_plateau_is_not_flagged() {
        assert_eq!(first_flag(60, 20, 600, |_| 5000), None);
        // Jitter around a plateau.
        assert_eq!(first_flag(60, 20, 600, |s| 1000 + (s * 7919 % 31)), None);
    }

    #[test]
    fn burst_that_drains_is_not_flagged() {
        // 500 goroutines for 20 s every 2 minutes.
        assert_eq!(
            first_flag(60, 20, 900, |s| if s % 120 < 20 { 500 } else { 3 }),
            None
        );
        // A 10 s ramp up and a 10 s drain, every 100 s.
        assert_eq!(
            first_flag(60, 20, 600, |s| {
                let p = s % 100;
                if p < 10 {
                    p * 40
                } else if p < 20 {
                    (20 - p) * 40
                } else {
                    0
                }
            }),
            None
        );
    }

    #[test]
    fn a_step_that_holds_is_not_a_leak() {
        assert_eq!(
            first_flag(60, 20, 600, |s| if s < 200 { 10 } else { 400 }),
            None
        );
    }

    #[test]
    fn growth_below_min_growth_is_not_flagged() {
        assert_eq!(first_flag(60, 100, 600, |s| 10 + (s % 60) / 2), None);
    }

    #[test]
    fn a_leak_that_stops_stops_being_a_suspect() {
        let mut detector = Detector::new(Duration::from_secs(10), 5);
        let mut last = Vec::new();
        for second in 0..40u64 {
            let count = if second < 15 { second * 3 } else { 45 };
            last = detector.observe(second as f64, &HashMap::from([("s".to_string(), count)]));
        }
        assert!(last.is_empty(), "plateaued long ago: {last:?}");
    }

    #[test]
    fn signatures_that_vanish_are_forgotten() {
        let mut detector = Detector::new(Duration::from_secs(5), 5);
        detector.observe(0.0, &HashMap::from([("a".to_string(), 3)]));
        for second in 1..20 {
            detector.observe(second as f64, &HashMap::new());
        }
        assert_eq!(detector.tracked(), 0);
    }
}
