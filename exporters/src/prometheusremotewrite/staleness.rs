//! Staleness markers for series that stopped arriving.
//!
//! Prometheus hides a series 5 minutes after its last sample unless it receives a
//! staleness marker (the NaN with bits `0x7ff0000000000002`), after which queries at later
//! times return nothing for it. oxcol sends a marker when it **knows** a series ended:
//!
//! - the data point carries OTLP's `NO_RECORDED_VALUE` flag (translated to the marker by
//!   `prom_translate`; the tracker then forgets the series), or
//! - the series' resource (same resource attributes) keeps sending, but the series has
//!   been absent from everything that resource sent for `staleness_interval`. The marker's
//!   timestamp is the newest timestamp of the resource's current push (at least 1 ms after
//!   the series' last sample, so Prometheus never sees it out of order).
//!
//! A resource that stops sending altogether gets no markers (oxcol cannot tell a stopped
//! service from a broken network); its series expire in Prometheus after 5 minutes as
//! usual, and the tracker forgets the resource after `2 x staleness_interval` of silence.
//!
//! Memory is bounded by `max_series`: when full, the 10% least recently seen series are
//! forgotten at once (counted in [`Tracker::evicted`]; they get no marker). A series is
//! identified by the 64-bit hash of its labels (`SeriesTable::hash`; a collision would
//! merge two series' timing) and keeps its labels in their encoded form (the batch's
//! `SeriesTable` bytes: one allocation per series, copied back into a batch as they are).
//! Markers computed for a batch stay pending until that batch was delivered or refused,
//! so a retried batch carries them again.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::prom_translate::{
    FamilyType, IdentityHasher, Sample, Translation, is_stale_nan, stale_nan,
};

/// One tracked series: enough to write its marker.
struct Tracked {
    /// Labels encoded as in `SeriesTable` (remote write 1.0 `Label` messages).
    labels: Arc<[u8]>,
    family: Arc<(String, FamilyType)>,
    last_ms: i64,
    seen: Instant,
}

#[derive(Default)]
struct Resource {
    series: HashMap<u64, Tracked, BuildHasherDefault<IdentityHasher>>,
    reported: Option<Instant>,
    swept: Option<Instant>,
}

/// A marker waiting to be delivered.
#[derive(Clone, Debug, PartialEq)]
pub struct Marker {
    /// Encoded as in `SeriesTable`.
    pub labels: Arc<[u8]>,
    pub family: Arc<(String, FamilyType)>,
    pub timestamp_ms: i64,
}

pub struct Tracker {
    interval: Duration,
    max_series: usize,
    resources: HashMap<u64, Resource>,
    families: HashMap<(String, FamilyType), Arc<(String, FamilyType)>>,
    total: usize,
    pending: Vec<Marker>,
    last_gc: Option<Instant>,
    /// Series forgotten because `max_series` was reached.
    pub evicted: u64,
    /// Markers produced by the absence rule (not counting `NO_RECORDED_VALUE` points).
    pub markers: u64,
}

impl Tracker {
    /// `interval` zero disables tracking (only `NO_RECORDED_VALUE` points make markers).
    pub fn new(interval: Duration, max_series: usize) -> Tracker {
        Tracker {
            interval,
            max_series: max_series.max(1),
            resources: HashMap::new(),
            families: HashMap::new(),
            total: 0,
            pending: Vec::new(),
            last_gc: None,
            evicted: 0,
            markers: 0,
        }
    }

    pub fn tracked_series(&self) -> usize {
        self.total
    }

    /// Records what `translation` holds, then adds to it the markers of every series
    /// that ended (new ones and those still pending from a failed attempt).
    pub fn observe(&mut self, translation: &mut Translation, now: Instant) {
        if self.interval.is_zero() {
            return;
        }
        for span in translation.resources.clone() {
            let newest = translation.samples[span.samples.clone()]
                .iter()
                .map(|s| s.timestamp_ms)
                .chain(
                    translation.histograms[span.histograms.clone()]
                        .iter()
                        .map(|h| h.timestamp_ms),
                )
                .max();
            let Some(newest) = newest else { continue };
            let seen = || {
                translation.samples[span.samples.clone()]
                    .iter()
                    .map(|s| (s.series, s.family, s.timestamp_ms, is_stale_nan(s.value)))
                    .chain(
                        translation.histograms[span.histograms.clone()]
                            .iter()
                            .map(|h| (h.series, h.family, h.timestamp_ms, false)),
                    )
            };
            let mut added = 0usize;
            let resource = self.resources.entry(span.key).or_default();
            resource.reported = Some(now);
            for (series, family, timestamp_ms, _) in seen().filter(|seen| !seen.3) {
                let hash = translation.series.hash(series);
                if let Some(tracked) = resource.series.get_mut(&hash) {
                    tracked.last_ms = tracked.last_ms.max(timestamp_ms);
                    tracked.seen = now;
                    continue;
                }
                let Some(f) = translation.families.get(family as usize) else {
                    continue;
                };
                let family = Arc::clone(
                    self.families
                        .entry((f.name.clone(), f.kind))
                        .or_insert_with(|| Arc::new((f.name.clone(), f.kind))),
                );
                resource.series.insert(
                    hash,
                    Tracked {
                        labels: Arc::from(translation.series.encoded(series)),
                        family,
                        last_ms: timestamp_ms,
                        seen: now,
                    },
                );
                added += 1;
            }
            // Explicit ends (points with NO_RECORDED_VALUE) after every sample, so that a
            // marker untracks its series unless a later sample of it is in the same batch
            // (whatever the order of samples and histograms in the translation).
            let mut untracked = 0usize;
            for (series, _, timestamp_ms, _) in seen().filter(|seen| seen.3) {
                let hash = translation.series.hash(series);
                if resource
                    .series
                    .get(&hash)
                    .is_some_and(|tracked| tracked.last_ms <= timestamp_ms)
                {
                    resource.series.remove(&hash);
                    untracked += 1;
                }
            }
            // Sweep at most every interval/4: series of this resource absent that long.
            let due = resource
                .swept
                .is_none_or(|at| now.duration_since(at) >= self.interval / 4);
            if due {
                resource.swept = Some(now);
                let interval = self.interval;
                let mut ended = Vec::new();
                resource.series.retain(|_, tracked| {
                    if now.duration_since(tracked.seen) < interval {
                        return true;
                    }
                    ended.push(Marker {
                        labels: Arc::clone(&tracked.labels),
                        family: Arc::clone(&tracked.family),
                        timestamp_ms: newest.max(tracked.last_ms + 1),
                    });
                    false
                });
                self.total -= ended.len();
                self.markers += ended.len() as u64;
                self.pending.extend(ended);
            }
            // Every untracked series was counted before or among `added`.
            self.total = (self.total + added).saturating_sub(untracked);
            if self.total > self.max_series {
                self.evict();
            }
        }
        self.forget_silent_resources(now);
        for marker in &self.pending {
            let family = translation.family(&marker.family.0, marker.family.1, "", "");
            let series = translation.series.intern(&marker.labels);
            translation.samples.push(Sample {
                series,
                value: stale_nan(),
                timestamp_ms: marker.timestamp_ms,
                start_ms: 0,
                family,
                delta: false,
            });
        }
    }

    /// The batch carrying the pending markers was delivered or refused for good.
    pub fn delivered(&mut self) {
        self.pending.clear();
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Forgets the least recently seen 10% of `max_series` (at least down to the bound).
    fn evict(&mut self) {
        let target = self.max_series - self.max_series / 10;
        let excess = self.total.saturating_sub(target);
        if excess == 0 {
            return;
        }
        let mut ages: Vec<Instant> = self
            .resources
            .values()
            .flat_map(|r| r.series.values().map(|t| t.seen))
            .collect();
        let (_, cutoff, _) = ages.select_nth_unstable(excess - 1);
        let cutoff = *cutoff;
        let mut removed = 0usize;
        for resource in self.resources.values_mut() {
            resource.series.retain(|_, t| {
                if removed < excess && t.seen <= cutoff {
                    removed += 1;
                    false
                } else {
                    true
                }
            });
        }
        self.resources
            .retain(|_, r| !r.series.is_empty() || r.reported.is_some());
        self.total -= removed;
        self.evicted += removed as u64;
    }

    /// Resources silent for 2 x interval are forgotten without markers (checked at most
    /// once per interval).
    fn forget_silent_resources(&mut self, now: Instant) {
        if self
            .last_gc
            .is_some_and(|at| now.duration_since(at) < self.interval)
        {
            return;
        }
        self.last_gc = Some(now);
        let limit = self.interval * 2;
        let mut forgotten = 0usize;
        self.resources.retain(|_, r| {
            let keep = r.reported.is_some_and(|at| now.duration_since(at) < limit);
            if !keep {
                forgotten += r.series.len();
            }
            keep
        });
        self.total -= forgotten;
        if self.resources.is_empty() {
            self.families.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prom_translate::{ResourceSpan, STALE_NAN_BITS};

    /// One resource (key 7) sending the named gauges at `ts`.
    fn push(names: &[&str], ts: i64) -> Translation {
        let mut t = Translation::default();
        for name in names {
            let family = t.family(name, FamilyType::Gauge, "", "");
            let series = t.series.intern_labels(&[("__name__", *name), ("job", "j")]);
            t.samples.push(Sample {
                series,
                value: 1.0,
                timestamp_ms: ts,
                start_ms: 0,
                family,
                delta: false,
            });
        }
        t.resources.push(ResourceSpan {
            samples: 0..t.samples.len(),
            histograms: 0..0,
            key: 7,
        });
        t
    }

    fn markers(t: &Translation) -> Vec<(String, i64)> {
        t.samples
            .iter()
            .filter(|s| s.value.to_bits() == STALE_NAN_BITS)
            .map(|s| (t.series.owned(s.series)[0].1.clone(), s.timestamp_ms))
            .collect()
    }

    #[test]
    fn a_series_absent_from_its_resource_for_the_interval_gets_one_marker() {
        let start = Instant::now();
        let mut tracker = Tracker::new(Duration::from_secs(10), 100);
        let mut t = push(&["a", "b"], 1000);
        tracker.observe(&mut t, start);
        assert!(markers(&t).is_empty());
        // b missing, but not for long enough yet.
        let mut t = push(&["a"], 2000);
        tracker.observe(&mut t, start + Duration::from_secs(5));
        assert!(markers(&t).is_empty());
        let mut t = push(&["a"], 12_000);
        tracker.observe(&mut t, start + Duration::from_secs(11));
        assert_eq!(markers(&t), vec![("b".to_string(), 12_000)]);
        // Not delivered (a retry): the marker comes again; delivered: never again.
        let mut t = push(&["a"], 12_000);
        tracker.observe(&mut t, start + Duration::from_secs(11));
        assert_eq!(markers(&t).len(), 1);
        tracker.delivered();
        let mut t = push(&["a"], 30_000);
        tracker.observe(&mut t, start + Duration::from_secs(30));
        assert!(markers(&t).is_empty());
        assert_eq!((tracker.tracked_series(), tracker.markers), (1, 1));
    }

    #[test]
    fn a_silent_resource_gets_no_markers_and_is_forgotten() {
        let start = Instant::now();
        let mut tracker = Tracker::new(Duration::from_secs(10), 100);
        tracker.observe(&mut push(&["a"], 1000), start);
        let mut other = push(&["x"], 1000);
        other.resources[0].key = 8;
        tracker.observe(&mut other, start + Duration::from_secs(25));
        assert!(markers(&other).is_empty());
        assert_eq!(tracker.tracked_series(), 1, "resource 7 was forgotten");
    }

    #[test]
    fn the_marker_is_after_the_last_sample_and_stale_points_untrack() {
        let start = Instant::now();
        let mut tracker = Tracker::new(Duration::from_secs(1), 100);
        tracker.observe(&mut push(&["a", "late"], 50_000), start);
        // The resource's newest timestamp is older than the series' last sample.
        let mut t = push(&["a"], 40_000);
        tracker.observe(&mut t, start + Duration::from_secs(2));
        assert_eq!(markers(&t), vec![("late".to_string(), 50_001)]);
        tracker.delivered();
        let mut t = push(&["a"], 60_000);
        t.samples[0].value = stale_nan();
        tracker.observe(&mut t, start + Duration::from_secs(3));
        assert_eq!(tracker.tracked_series(), 0);
    }

    #[test]
    fn an_end_after_the_last_sample_of_a_batch_untracks_whatever_the_order() {
        let start = Instant::now();
        let mut tracker = Tracker::new(Duration::from_secs(1), 100);
        // The first batch ever holds a series' sample and its end: nothing stays tracked
        // (and the count does not go below zero).
        let mut t = push(&["a", "a"], 1000);
        t.samples[1].timestamp_ms = 2000;
        t.samples[1].value = stale_nan();
        tracker.observe(&mut t, start);
        assert_eq!(tracker.tracked_series(), 0);
        // The end listed before a later sample of the same series: the series resumed,
        // it stays tracked and gets an absence marker later.
        let mut t = push(&["b", "b"], 3000);
        t.samples[0].value = stale_nan();
        t.samples[1].timestamp_ms = 4000;
        tracker.observe(&mut t, start + Duration::from_millis(10));
        assert_eq!(tracker.tracked_series(), 1);
        // The end listed before an older sample: it still ends the series, so no
        // absence marker follows.
        let mut t = push(&["c", "c"], 6000);
        t.samples[0].value = stale_nan();
        t.samples[1].timestamp_ms = 5000;
        tracker.observe(&mut t, start + Duration::from_millis(20));
        assert_eq!(tracker.tracked_series(), 1, "only b is tracked");
        let mut t = push(&["other"], 9000);
        tracker.observe(&mut t, start + Duration::from_secs(2));
        assert_eq!(markers(&t), vec![("b".to_string(), 9000)]);
    }

    #[test]
    fn tracking_is_bounded_and_evictions_are_counted() {
        let start = Instant::now();
        let mut tracker = Tracker::new(Duration::from_secs(10), 100);
        for i in 0..30 {
            let names: Vec<String> = (0..10).map(|j| format!("m{i}_{j}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            tracker.observe(&mut push(&refs, 1000), start + Duration::from_millis(i));
            assert!(tracker.tracked_series() <= 100);
        }
        assert_eq!(tracker.evicted, 300 - tracker.tracked_series() as u64);
        assert!(tracker.evicted >= 200);
    }

    #[test]
    fn a_marker_carries_the_series_labels_exactly() {
        let start = Instant::now();
        let mut tracker = Tracker::new(Duration::from_secs(1), 100);
        let mut first = Translation::default();
        let labels = [("__name__", "m"), ("v", "a\0b;é")];
        let series = first.series.intern_labels(&labels);
        let family = first.family("m", FamilyType::Gauge, "", "");
        first.samples.push(Sample {
            series,
            value: 1.0,
            timestamp_ms: 10,
            start_ms: 0,
            family,
            delta: false,
        });
        first.resources.push(ResourceSpan {
            samples: 0..1,
            histograms: 0..0,
            key: 7,
        });
        tracker.observe(&mut first, start);
        let mut t = push(&["other"], 20);
        tracker.observe(&mut t, start + Duration::from_secs(2));
        let marker = t
            .samples
            .iter()
            .find(|s| is_stale_nan(s.value))
            .map(|s| t.series.owned(s.series));
        assert_eq!(
            marker,
            Some(
                labels
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect()
            )
        );
    }
}
