//! The auto-scaling exponential histogram the Collector's statsd receiver aggregates timers
//! and histograms into (`observer_type: histogram`), with the OpenTelemetry
//! base-2 exponential bucket mapping.
//!
//! It starts at the finest scale (20) and halves the resolution (scale - 1, bucket indexes
//! shifted right) whenever the buckets of one sign would span more than `max_size`
//! indexes, as the Collector's aggregator (`lightstep/go-expohisto`) does, so the same
//! observations give the same scale, offsets and counts. Written here because no
//! maintained crate exposes this aggregator outside an SDK's internals.
//!
//! Never panics: counts saturate, NaN and infinities are refused by the caller.

use std::collections::VecDeque;

/// The finest scale (where every histogram starts).
pub const MAX_SCALE: i32 = 20;
/// The coarsest scale (at it, any two normal floats fit in 2 buckets).
pub const MIN_SCALE: i32 = -10;
/// The Collector's default and bounds of `histogram.max_size`.
pub const DEFAULT_MAX_SIZE: i32 = 160;
pub const MIN_MAX_SIZE: i32 = 2;
pub const MAX_MAX_SIZE: i32 = 16384;

const SIGNIFICAND_WIDTH: u32 = 52;
const SIGNIFICAND_MASK: u64 = (1 << SIGNIFICAND_WIDTH) - 1;
const EXPONENT_BIAS: i32 = 1023;
const MIN_NORMAL_EXPONENT: i32 = -1022;
const MAX_NORMAL_EXPONENT: i32 = 1023;

/// The unbiased base-2 exponent of a normal float.
fn normal_base2(value: f64) -> i32 {
    ((value.to_bits() >> SIGNIFICAND_WIDTH) & 0x7ff) as i32 - EXPONENT_BIAS
}

fn significand(value: f64) -> u64 {
    value.to_bits() & SIGNIFICAND_MASK
}

/// The bucket index of a positive, finite `value` at `scale` (bucket `i` holds
/// `(base^i, base^(i+1)]`, base = 2^(2^-scale)).
pub fn map_to_index(value: f64, scale: i32) -> i32 {
    if scale <= 0 {
        let shift = -scale;
        if value < f64::MIN_POSITIVE {
            // Subnormals share the bucket below the smallest normal's.
            let index = MIN_NORMAL_EXPONENT >> shift;
            return if shift < 2 { index - 1 } else { index };
        }
        // An exact power of two belongs to the bucket below (upper-inclusive buckets).
        let correction = if significand(value) == 0 { -1 } else { 0 };
        return (normal_base2(value) + correction) >> shift;
    }
    if value <= f64::MIN_POSITIVE {
        return (MIN_NORMAL_EXPONENT << scale) - 1;
    }
    if significand(value) == 0 {
        return (normal_base2(value) << scale) - 1;
    }
    let scale_factor = std::f64::consts::LOG2_E * 2f64.powi(scale);
    let index = (value.ln() * scale_factor).floor();
    let max_index = ((MAX_NORMAL_EXPONENT + 1) << scale) - 1;
    if index >= max_index as f64 {
        max_index
    } else {
        index as i32
    }
}

/// The buckets of one sign: counts from index `offset` on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buckets {
    pub offset: i32,
    pub counts: VecDeque<u64>,
}

impl Buckets {
    fn end(&self) -> i32 {
        self.offset + self.counts.len() as i32 - 1
    }

    /// The scale change needed so that `index` fits with the current buckets in
    /// `max_size` indexes.
    fn change_needed(&self, index: i32, max_size: i32) -> i32 {
        if self.counts.is_empty() {
            return 0;
        }
        let (mut low, mut high) = (self.offset.min(index), self.end().max(index));
        let mut change = 0;
        while high - low >= max_size {
            high >>= 1;
            low >>= 1;
            change += 1;
        }
        change
    }

    fn increment(&mut self, index: i32, by: u64) {
        if self.counts.is_empty() {
            self.offset = index;
            self.counts.push_back(by);
            return;
        }
        while index < self.offset {
            self.counts.push_front(0);
            self.offset -= 1;
        }
        while index > self.end() {
            self.counts.push_back(0);
        }
        let slot = (index - self.offset) as usize;
        if let Some(count) = self.counts.get_mut(slot) {
            *count = count.saturating_add(by);
        }
    }

    fn downscale(&mut self, change: i32) {
        if change <= 0 || self.counts.is_empty() {
            return;
        }
        let new_offset = self.offset >> change;
        let new_len = (self.end() >> change) - new_offset + 1;
        let mut counts = VecDeque::from(vec![0u64; new_len.max(0) as usize]);
        for (i, count) in self.counts.iter().enumerate() {
            let slot = ((self.offset + i as i32) >> change) - new_offset;
            if let Some(c) = counts.get_mut(slot as usize) {
                *c = c.saturating_add(*count);
            }
        }
        self.offset = new_offset;
        self.counts = counts;
    }
}

/// One exponential histogram data point being aggregated.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpoHistogram {
    max_size: i32,
    pub scale: i32,
    pub count: u64,
    pub sum: f64,
    pub zero_count: u64,
    pub min: f64,
    pub max: f64,
    pub positive: Buckets,
    pub negative: Buckets,
}

impl ExpoHistogram {
    /// `max_size` out of [2, 16384] (0 included) is the default, 160.
    pub fn new(max_size: i32) -> ExpoHistogram {
        let max_size = if (MIN_MAX_SIZE..=MAX_MAX_SIZE).contains(&max_size) {
            max_size
        } else {
            DEFAULT_MAX_SIZE
        };
        ExpoHistogram {
            max_size,
            scale: MAX_SCALE,
            count: 0,
            sum: 0.0,
            zero_count: 0,
            min: 0.0,
            max: 0.0,
            positive: Buckets::default(),
            negative: Buckets::default(),
        }
    }

    /// Records `value` `by` times; NaN and infinities must not be given.
    pub fn record(&mut self, value: f64, by: u64) {
        if by == 0 || !value.is_finite() {
            return;
        }
        if self.count == 0 {
            self.min = value;
            self.max = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.count = self.count.saturating_add(by);
        if value == 0.0 {
            self.zero_count = self.zero_count.saturating_add(by);
            return;
        }
        self.sum += value * by as f64;
        let magnitude = value.abs();
        let mut index = map_to_index(magnitude, self.scale);
        let side = if value > 0.0 {
            &self.positive
        } else {
            &self.negative
        };
        let change = side
            .change_needed(index, self.max_size)
            .min(self.scale - MIN_SCALE);
        if change > 0 {
            self.scale -= change;
            self.positive.downscale(change);
            self.negative.downscale(change);
            index = map_to_index(magnitude, self.scale);
        }
        if value > 0.0 {
            self.positive.increment(index, by);
        } else {
            self.negative.increment(index, by);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lower boundary of bucket `index` at `scale`.
    fn lower_boundary(index: i32, scale: i32) -> f64 {
        2f64.powf(index as f64 / 2f64.powi(scale))
    }

    #[test]
    fn powers_of_two_belong_to_the_bucket_below() {
        for scale in [-3, 0, 1, 3, 20] {
            // 1 = 2^0 is the upper bound of bucket -1 at every scale.
            assert_eq!(map_to_index(1.0, scale), -1, "scale {scale}");
        }
        assert_eq!(map_to_index(2.0, 0), 0);
        assert_eq!(map_to_index(3.0, 0), 1);
        assert_eq!(map_to_index(4.0, 0), 1);
        assert_eq!(map_to_index(4.0, 1), 3);
        assert_eq!(map_to_index(5.0, 1), 4);
        assert_eq!(map_to_index(1024.0, -1), 4);
        assert_eq!(map_to_index(1025.0, -1), 5);
    }

    #[test]
    fn values_fall_between_their_bucket_boundaries() {
        for scale in [1, 4, 8, 20] {
            for value in [1.5, 3.7, 100.0, 12345.678, 0.001, 7e-9] {
                let index = map_to_index(value, scale);
                assert!(
                    lower_boundary(index, scale) < value * (1.0 + 1e-12),
                    "{value} at {scale}"
                );
                assert!(
                    lower_boundary(index + 1, scale) >= value * (1.0 - 1e-12),
                    "{value} at {scale}"
                );
            }
        }
    }

    #[test]
    fn subnormals_and_extremes_map_without_panic() {
        for scale in MIN_SCALE..=MAX_SCALE {
            map_to_index(f64::MIN_POSITIVE / 4.0, scale);
            map_to_index(f64::MAX, scale);
            map_to_index(f64::MIN_POSITIVE, scale);
        }
        assert_eq!(map_to_index(f64::MAX, 0), 1023);
    }

    /// What the Collector's aggregator, `lightstep/go-expohisto` v1.0.0, made of these
    /// inputs (recorded with a Go program calling `UpdateByIncr`, `structure.WithMaxSize`).
    const GO_EXPOHISTO: &str = "\
single 160 10x1
single scale=20 count=1 sum=10 zero=0 pos_off=3483294 pos=[1] neg_off=0 neg=[]
pow2 4 1x1 2x1 4x1 8x1 16x1 32x1
pow2 scale=-1 count=6 sum=63 zero=0 pos_off=-1 pos=[1 2 2 1] neg_off=0 neg=[]
mixed 160 0x3 -2.5x2 7x1 0.001x1 1234.5x4 3x2
mixed scale=2 count=13 sum=4946.001 zero=3 pos_off=-40 pos=[1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 2 0 0 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 4] neg_off=5 neg=[2]
wide 20 1.37x1 13.7x2 137x3 1370x1 0.137x1 500x1
wide scale=0 count=9 sum=2309.907 zero=0 pos_off=-3 pos=[1 0 0 1 0 0 2 0 0 0 3 1 0 1] neg_off=0 neg=[]
timers 10 10x1 20x1 30x1 40x2 55.5x1 99.9x1 250x1
timers scale=1 count=8 sum=545.4 zero=0 pos_off=6 pos=[1 0 1 1 2 1 0 1 0 1] neg_off=0 neg=[]
";

    fn field<'a>(line: &'a str, key: &str) -> &'a str {
        let start = line.find(&format!(" {key}=")).expect("a recorded field") + key.len() + 2;
        let rest = &line[start..];
        if let Some(list) = rest.strip_prefix('[') {
            &list[..list.find(']').unwrap()]
        } else {
            rest.split(' ').next().unwrap()
        }
    }

    #[test]
    fn matches_go_expohisto_recorded_outputs() {
        let lines: Vec<&str> = GO_EXPOHISTO.lines().collect();
        for pair in lines.chunks(2) {
            let mut input = pair[0].split(' ');
            let name = input.next().unwrap();
            let max_size: i32 = input.next().unwrap().parse().unwrap();
            let mut h = ExpoHistogram::new(max_size);
            for item in input {
                let (value, by) = item.split_once('x').unwrap();
                h.record(value.parse().unwrap(), by.parse().unwrap());
            }
            let expected = pair[1];
            let counts = |text: &str| -> Vec<u64> {
                text.split_whitespace()
                    .map(|c| c.parse().unwrap())
                    .collect()
            };
            assert_eq!(
                h.scale,
                field(expected, "scale").parse::<i32>().unwrap(),
                "{name}"
            );
            assert_eq!(
                h.count,
                field(expected, "count").parse::<u64>().unwrap(),
                "{name}"
            );
            assert_eq!(
                h.sum,
                field(expected, "sum").parse::<f64>().unwrap(),
                "{name}"
            );
            assert_eq!(
                h.zero_count,
                field(expected, "zero").parse::<u64>().unwrap(),
                "{name}"
            );
            assert_eq!(
                Vec::from(h.positive.counts.clone()),
                counts(field(expected, "pos")),
                "{name}"
            );
            assert_eq!(
                Vec::from(h.negative.counts.clone()),
                counts(field(expected, "neg")),
                "{name}"
            );
            if !h.positive.counts.is_empty() {
                assert_eq!(
                    h.positive.offset,
                    field(expected, "pos_off").parse::<i32>().unwrap(),
                    "{name}"
                );
            }
            if !h.negative.counts.is_empty() {
                assert_eq!(
                    h.negative.offset,
                    field(expected, "neg_off").parse::<i32>().unwrap(),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn one_value_keeps_the_finest_scale() {
        let mut h = ExpoHistogram::new(0);
        h.record(10.0, 1);
        assert_eq!(h.scale, MAX_SCALE);
        assert_eq!(h.positive.counts, [1]);
        assert_eq!(h.positive.offset, map_to_index(10.0, MAX_SCALE));
        assert_eq!((h.count, h.sum, h.min, h.max), (1, 10.0, 10.0, 10.0));
    }

    #[test]
    fn wide_values_downscale_until_they_fit_max_size() {
        let mut h = ExpoHistogram::new(4);
        for v in [1.0, 2.0, 4.0, 8.0, 16.0, 32.0] {
            h.record(v, 1);
        }
        // 2^0..2^5 are indexes -1..4 at scale 0: six buckets do not fit in four, so
        // scale -1 (indexes -1..2).
        assert_eq!(h.scale, -1);
        assert_eq!(h.positive.offset, -1);
        assert_eq!(h.positive.counts, [1, 2, 2, 1]);
        assert!(h.positive.counts.len() as i32 <= 4);
        assert_eq!(h.count, 6);
        assert_eq!(h.sum, 63.0);
    }

    #[test]
    fn zeros_and_negatives() {
        let mut h = ExpoHistogram::new(160);
        h.record(0.0, 3);
        h.record(-2.5, 2);
        h.record(7.0, 1);
        assert_eq!(h.zero_count, 3);
        assert_eq!(h.count, 6);
        assert_eq!(h.sum, 2.0);
        assert_eq!((h.min, h.max), (-2.5, 7.0));
        assert_eq!(h.negative.counts.iter().sum::<u64>(), 2);
        assert_eq!(h.positive.counts.iter().sum::<u64>(), 1);
        // Both sides share one scale.
        let neg = map_to_index(2.5, h.scale);
        assert_eq!(h.negative.offset, neg);
    }

    #[test]
    fn downscale_keeps_every_count() {
        let mut h = ExpoHistogram::new(20);
        let mut total = 0;
        for i in 1..500u64 {
            h.record(i as f64 * 1.37, i % 3 + 1);
            total += i % 3 + 1;
        }
        let stored: u64 = h.positive.counts.iter().sum();
        assert_eq!(stored, total);
        assert!(h.positive.counts.len() <= 20);
        // Every value is inside the range the buckets cover.
        let low = lower_boundary(h.positive.offset, h.scale);
        let high = lower_boundary(h.positive.offset + h.positive.counts.len() as i32, h.scale);
        assert!(low < 1.37 && high >= 499.0 * 1.37, "{low} {high}");
    }
}
