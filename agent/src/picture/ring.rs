//! A fixed-capacity history of one series for sparklines: one sample per time slot
//! (`span / capacity`), the newest point of a slot replacing the slot's sample, the oldest
//! slot dropped when full. Its memory never grows after creation.

use std::collections::VecDeque;

use super::Sample;

#[derive(Clone, Debug)]
pub(super) struct Ring {
    slot_nanos: u64,
    capacity: usize,
    /// (slot, sample), oldest first.
    samples: VecDeque<(u64, Sample)>,
}

impl Ring {
    /// A ring reaching `span_nanos` back with `capacity` slots (at least one).
    pub(super) fn new(span_nanos: u64, capacity: usize) -> Ring {
        let capacity = capacity.max(1);
        Ring {
            slot_nanos: (span_nanos / capacity as u64).max(1),
            capacity,
            samples: VecDeque::with_capacity(capacity),
        }
    }

    /// Adds a point (ns since the epoch). A point older than the newest slot is ignored;
    /// one in the newest slot replaces it.
    pub(super) fn push(&mut self, ts_unix_nano: u64, value: f64) {
        if !value.is_finite() {
            return;
        }
        let slot = ts_unix_nano / self.slot_nanos;
        let sample = Sample {
            t: ts_unix_nano / 1_000_000,
            v: value,
        };
        match self.samples.back_mut() {
            Some((last, _)) if slot < *last => return,
            Some((last, newest)) if slot == *last => {
                if sample.t >= newest.t {
                    *newest = sample;
                }
                return;
            }
            _ => {}
        }
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back((slot, sample));
    }

    /// The samples not older than `span` before `newest_unix_nano`, oldest first.
    pub(super) fn recent(&self, newest_unix_nano: u64) -> Vec<Sample> {
        let span = self.slot_nanos.saturating_mul(self.capacity as u64);
        let oldest_ms = newest_unix_nano.saturating_sub(span) / 1_000_000;
        self.samples
            .iter()
            .map(|(_, s)| *s)
            .filter(|s| s.t >= oldest_ms)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn keeps_one_sample_per_slot_and_at_most_capacity() {
        // 15 minutes in 90 slots: 10 s each.
        let mut ring = Ring::new(900 * SECOND, 90);
        let start = 1_700_000_000 * SECOND;
        // One point a second for 20 minutes.
        for i in 0..1200u64 {
            ring.push(start + i * SECOND, i as f64);
        }
        let recent = ring.recent(start + 1199 * SECOND);
        assert_eq!(recent.len(), 90, "{recent:?}");
        // Each slot holds its newest point: the last is the very last pushed.
        assert_eq!(recent.last().map(|s| s.v), Some(1199.0));
        assert_eq!(recent[recent.len() - 2].v, 1189.0);
        assert!(recent.windows(2).all(|w| w[0].t < w[1].t));
        assert!(ring.samples.capacity() < 200, "the ring does not grow");
    }

    #[test]
    fn old_points_and_non_finite_values_are_ignored_and_old_samples_age_out() {
        let mut ring = Ring::new(60 * SECOND, 6);
        let start = 1_700_000_000 * SECOND;
        ring.push(start, 1.0);
        ring.push(start + 30 * SECOND, 2.0);
        ring.push(start + 5 * SECOND, 9.0); // older than the newest slot
        ring.push(start + 31 * SECOND, f64::NAN);
        let values: Vec<f64> = ring
            .recent(start + 30 * SECOND)
            .iter()
            .map(|s| s.v)
            .collect();
        assert_eq!(values, vec![1.0, 2.0]);
        // Two minutes later, only what is within the last minute is recent.
        ring.push(start + 150 * SECOND, 3.0);
        let values: Vec<f64> = ring
            .recent(start + 150 * SECOND)
            .iter()
            .map(|s| s.v)
            .collect();
        assert_eq!(values, vec![3.0]);
    }
}
