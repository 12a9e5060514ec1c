//! From translated samples to remote write request bodies: group samples into series
//! (time-ordered, one sample per timestamp), shard series by label hash, cut each shard
//! into requests of at most `max_batch_size_bytes`, encode 1.0 or 2.0 protobuf, and
//! snappy-compress in the block format (the framed format is not allowed by the spec).

use std::collections::HashMap;

use prost::Message;

use super::proto::{v1, v2};
use crate::prom_translate::{Exemplar, Family, Labels, NativeHistogram, Translation};

/// One series with its samples in timestamp order.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub family: u32,
    /// (timestamp ms, value, start ms), strictly increasing timestamps.
    pub samples: Vec<(i64, f64, i64)>,
    pub exemplars: Vec<Exemplar>,
    /// Native histogram samples, strictly increasing timestamps (their `labels` are the
    /// series' labels and not encoded again).
    pub histograms: Vec<NativeHistogram>,
}

impl Series {
    pub fn new(labels: Labels, family: u32) -> Series {
        Series {
            labels,
            family,
            samples: Vec::new(),
            exemplars: Vec::new(),
            histograms: Vec::new(),
        }
    }

    /// Rough encoded size, for splitting (labels + 20 bytes per sample, exemplars and
    /// histograms by their parts).
    fn estimated_size(&self) -> usize {
        let label_bytes = |labels: &Labels| labels.iter().map(|(n, v)| n.len() + v.len() + 6).sum::<usize>();
        label_bytes(&self.labels)
            + self.samples.len() * 20
            + self.exemplars.iter().map(|e| label_bytes(&e.labels) + 22).sum::<usize>()
            + self
                .histograms
                .iter()
                .map(|h| 60 + (h.positive_deltas.len() + h.negative_deltas.len()) * 3 + (h.positive_spans.len() + h.negative_spans.len()) * 6)
                .sum::<usize>()
            + 8
    }
}

/// Groups samples by label set. Within a series, samples are sorted by timestamp and a
/// later sample with the same timestamp replaces an earlier one (Prometheus would refuse a
/// second, different value for one timestamp). Returns the series and how many samples
/// were replaced.
pub fn group_series(translation: &Translation) -> (Vec<Series>, u64) {
    let mut index: HashMap<&Labels, usize> = HashMap::with_capacity(translation.samples.len());
    let mut series: Vec<Series> = Vec::new();
    let mut sample_slots = Vec::with_capacity(translation.samples.len());
    for sample in &translation.samples {
        let slot = *index.entry(&sample.labels).or_insert_with(|| {
            series.push(Series::new(sample.labels.clone(), sample.family));
            series.len() - 1
        });
        sample_slots.push(slot);
        series[slot].samples.push((sample.timestamp_ms, sample.value, sample.start_ms));
    }
    for (sample, exemplar) in &translation.exemplars {
        if let Some(slot) = sample_slots.get(*sample) {
            series[*slot].exemplars.push(exemplar.clone());
        }
    }
    for histogram in &translation.histograms {
        let slot = *index.entry(&histogram.labels).or_insert_with(|| {
            series.push(Series::new(histogram.labels.clone(), histogram.family));
            series.len() - 1
        });
        let s = &mut series[slot];
        s.exemplars.extend(histogram.exemplars.iter().cloned());
        s.histograms.push(NativeHistogram {
            labels: Vec::new(),
            exemplars: Vec::new(),
            ..histogram.clone()
        });
    }
    let mut replaced = 0u64;
    for s in &mut series {
        s.exemplars.sort_by_key(|e| e.timestamp_ms);
        if !s.histograms.is_empty() {
            s.histograms.sort_by_key(|h| h.timestamp_ms);
            let before = s.histograms.len();
            let mut kept: Vec<NativeHistogram> = Vec::with_capacity(before);
            for h in s.histograms.drain(..) {
                match kept.last_mut() {
                    Some(last) if last.timestamp_ms == h.timestamp_ms => *last = h,
                    _ => kept.push(h),
                }
            }
            replaced += (before - kept.len()) as u64;
            s.histograms = kept;
        }
        // Stable: for equal timestamps the later sample stays last, and dedup keeps it.
        s.samples.sort_by_key(|(t, _, _)| *t);
        let before = s.samples.len();
        let mut kept: Vec<(i64, f64, i64)> = Vec::with_capacity(before);
        for sample in s.samples.drain(..) {
            match kept.last_mut() {
                Some(last) if last.0 == sample.0 => *last = sample,
                _ => kept.push(sample),
            }
        }
        replaced += (before - kept.len()) as u64;
        s.samples = kept;
    }
    (series, replaced)
}

/// Splits series into `shards` lists; a series always lands in the same shard.
pub fn shard(series: Vec<Series>, shards: usize) -> Vec<Vec<Series>> {
    let shards = shards.max(1);
    let mut out: Vec<Vec<Series>> = (0..shards).map(|_| Vec::new()).collect();
    for s in series {
        let slot = (crate::prom_translate::labels_hash(&s.labels) % shards as u64) as usize;
        out[slot].push(s);
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Cuts one shard into chunks whose estimated size stays under `max_bytes` (a single
/// series larger than that is sent alone).
pub fn chunks(series: Vec<Series>, max_bytes: usize) -> Vec<Vec<Series>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut size = 0usize;
    for s in series {
        let estimate = s.estimated_size();
        if !current.is_empty() && size + estimate > max_bytes {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        size += estimate;
        current.push(s);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A remote write 1.0 `WriteRequest`, with metadata for `families` when given.
pub fn encode_v1(series: &[Series], families: Option<&[Family]>) -> Vec<u8> {
    let request = v1::WriteRequest {
        timeseries: series
            .iter()
            .map(|s| v1::TimeSeries {
                labels: s
                    .labels
                    .iter()
                    .map(|(name, value)| v1::Label {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                samples: s
                    .samples
                    .iter()
                    .map(|(timestamp, value, _)| v1::Sample {
                        value: *value,
                        timestamp: *timestamp,
                    })
                    .collect(),
                exemplars: s
                    .exemplars
                    .iter()
                    .map(|e| v1::Exemplar {
                        labels: e
                            .labels
                            .iter()
                            .map(|(name, value)| v1::Label {
                                name: name.clone(),
                                value: value.clone(),
                            })
                            .collect(),
                        value: e.value,
                        timestamp: e.timestamp_ms,
                    })
                    .collect(),
                histograms: s.histograms.iter().map(histogram_v1).collect(),
            })
            .collect(),
        metadata: families
            .unwrap_or(&[])
            .iter()
            .map(|f| v1::MetricMetadata {
                r#type: f.kind as i32,
                metric_family_name: f.name.clone(),
                help: f.help.clone(),
                unit: f.unit.clone(),
            })
            .collect(),
    };
    request.encode_to_vec()
}

/// A remote write 2.0 `Request`: one symbol table for the request, metadata (type, help,
/// unit) on every series, start timestamps on counter-like samples.
pub fn encode_v2(series: &[Series], families: &[Family]) -> Vec<u8> {
    let mut symbols = Symbols::default();
    let timeseries = series
        .iter()
        .map(|s| {
            let mut labels_refs = Vec::with_capacity(s.labels.len() * 2);
            for (name, value) in &s.labels {
                labels_refs.push(symbols.intern(name));
                labels_refs.push(symbols.intern(value));
            }
            let metadata = families.get(s.family as usize).map(|f| v2::Metadata {
                r#type: f.kind as i32,
                help_ref: symbols.intern(&f.help),
                unit_ref: symbols.intern(&f.unit),
            });
            v2::TimeSeries {
                labels_refs,
                samples: s
                    .samples
                    .iter()
                    .map(|(timestamp, value, start)| v2::Sample {
                        value: *value,
                        timestamp: *timestamp,
                        start_timestamp: *start,
                    })
                    .collect(),
                histograms: s
                    .histograms
                    .iter()
                    .map(|h| {
                        let v1 = histogram_v1(h);
                        v2::Histogram {
                            count_int: v1.count_int,
                            sum: v1.sum,
                            schema: v1.schema,
                            zero_threshold: v1.zero_threshold,
                            zero_count_int: v1.zero_count_int,
                            negative_spans: v1.negative_spans,
                            negative_deltas: v1.negative_deltas,
                            positive_spans: v1.positive_spans,
                            positive_deltas: v1.positive_deltas,
                            reset_hint: v1.reset_hint,
                            timestamp: v1.timestamp,
                            start_timestamp: h.start_ms,
                        }
                    })
                    .collect(),
                exemplars: s
                    .exemplars
                    .iter()
                    .map(|e| v2::Exemplar {
                        labels_refs: e.labels.iter().flat_map(|(n, v)| [symbols.intern(n), symbols.intern(v)]).collect(),
                        value: e.value,
                        timestamp: e.timestamp_ms,
                    })
                    .collect(),
                metadata,
            }
        })
        .collect();
    v2::Request {
        symbols: symbols.table,
        timeseries,
    }
    .encode_to_vec()
}

/// A native histogram in the 1.0 message (integer counts, reset hint UNKNOWN: the
/// receiver detects resets itself, as for cumulative OTLP data).
fn histogram_v1(h: &NativeHistogram) -> v1::Histogram {
    let spans = |spans: &[(i32, u32)]| spans.iter().map(|(offset, length)| v1::BucketSpan { offset: *offset, length: *length }).collect();
    v1::Histogram {
        count_int: h.count,
        sum: h.sum,
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count_int: h.zero_count,
        negative_spans: spans(&h.negative_spans),
        negative_deltas: h.negative_deltas.clone(),
        positive_spans: spans(&h.positive_spans),
        positive_deltas: h.positive_deltas.clone(),
        reset_hint: 0,
        timestamp: h.timestamp_ms,
    }
}

/// The 2.0 string table: index 0 is always "".
struct Symbols {
    table: Vec<String>,
    index: HashMap<String, u32>,
}

impl Default for Symbols {
    fn default() -> Self {
        Symbols {
            table: vec![String::new()],
            index: HashMap::from([(String::new(), 0)]),
        }
    }
}

impl Symbols {
    fn intern(&mut self, text: &str) -> u32 {
        if let Some(i) = self.index.get(text) {
            return *i;
        }
        let i = self.table.len() as u32;
        self.table.push(text.to_string());
        self.index.insert(text.to_string(), i);
        i
    }
}

/// Snappy block format (`snap::raw`), as remote write requires.
pub fn snappy(body: &[u8]) -> Result<Vec<u8>, String> {
    snap::raw::Encoder::new()
        .compress_vec(body)
        .map_err(|e| format!("snappy compression failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prom_translate::{FamilyType, Sample};

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn sample(name: &str, ts: i64, value: f64) -> Sample {
        Sample {
            labels: labels(&[("__name__", name), ("job", "j")]),
            value,
            timestamp_ms: ts,
            start_ms: 0,
            family: 0,
            delta: false,
        }
    }

    #[test]
    fn series_are_time_ordered_without_duplicate_timestamps() {
        let translation = Translation {
            samples: vec![
                sample("a", 30, 3.0),
                sample("b", 10, 1.0),
                sample("a", 10, 1.0),
                sample("a", 30, 4.0),
                sample("a", 20, 2.0),
            ],
            ..Translation::default()
        };
        let (series, replaced) = group_series(&translation);
        assert_eq!(replaced, 1);
        assert_eq!(series[0].samples, vec![(10, 1.0, 0), (20, 2.0, 0), (30, 4.0, 0)]);
        assert_eq!(series[1].samples, vec![(10, 1.0, 0)]);
        // Sharding is stable: the same series goes to the same shard in every batch.
        let once = shard(series.clone(), 3);
        let again = shard(series, 3);
        assert_eq!(once, again);
        assert_eq!(once.iter().map(Vec::len).sum::<usize>(), 2);
    }

    #[test]
    fn chunks_respect_the_size_limit() {
        let series: Vec<Series> = (0..10)
            .map(|i| Series {
                labels: labels(&[("__name__", &format!("m{i}"))]),
                family: 0,
                samples: vec![(1, 1.0, 0); 10],
                exemplars: vec![],
                histograms: vec![],
            })
            .collect();
        let size = series[0].estimated_size();
        let cut = chunks(series, size * 3);
        assert_eq!(cut.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3, 3, 1]);
    }

    #[test]
    fn v1_bytes_are_the_upstream_encoding() {
        let series = vec![Series {
            labels: labels(&[("__name__", "up"), ("job", "x")]),
            family: 0,
            samples: vec![(1000, 1.0, 0)],
            exemplars: vec![],
            histograms: vec![],
        }];
        let body = encode_v1(&series, None);
        // timeseries(1){ labels(1){name(1)="__name__" value(2)="up"} labels(1){"job","x"} samples(2){value(1)=1.0 timestamp(2)=1000} }
        let expected: Vec<u8> = [
            &[0x0a, 0x28][..],
            &[0x0a, 0x0e, 0x0a, 0x08],
            b"__name__",
            &[0x12, 0x02],
            b"up",
            &[0x0a, 0x08, 0x0a, 0x03],
            b"job",
            &[0x12, 0x01],
            b"x",
            &[0x12, 0x0c, 0x09],
            &1.0f64.to_le_bytes(),
            &[0x10, 0xe8, 0x07],
        ]
        .concat();
        assert_eq!(body, expected);
        let decoded = v1::WriteRequest::decode(body.as_slice()).unwrap();
        assert_eq!(decoded.timeseries[0].labels[1].value, "x");
    }

    #[test]
    fn v2_has_a_symbol_table_starting_with_empty_and_metadata() {
        let families = vec![Family {
            name: "req_total".into(),
            kind: FamilyType::Counter,
            help: "Requests".into(),
            unit: String::new(),
        }];
        let series = vec![
            Series {
                labels: labels(&[("__name__", "req_total"), ("job", "x")]),
                family: 0,
                samples: vec![(2000, 5.0, 1000)],
                exemplars: vec![],
                histograms: vec![],
            },
            Series {
                labels: labels(&[("__name__", "req_total"), ("job", "y")]),
                family: 0,
                samples: vec![(2000, 6.0, 1000)],
                exemplars: vec![],
                histograms: vec![],
            },
        ];
        let request = v2::Request::decode(encode_v2(&series, &families).as_slice()).unwrap();
        assert_eq!(request.symbols, vec!["", "__name__", "req_total", "job", "x", "Requests", "y"]);
        assert_eq!(request.timeseries[0].labels_refs, vec![1, 2, 3, 4]);
        assert_eq!(request.timeseries[1].labels_refs, vec![1, 2, 3, 6]);
        assert_eq!(
            request.timeseries[0].metadata,
            Some(v2::Metadata {
                r#type: 1,
                help_ref: 5,
                unit_ref: 0
            })
        );
        assert_eq!(
            request.timeseries[0].samples[0],
            v2::Sample {
                value: 5.0,
                timestamp: 2000,
                start_timestamp: 1000
            }
        );
        // labels_refs is packed (wire type 2) as proto3 requires: TimeSeries starts 0x0a (field 1, LEN).
        let one = v2::TimeSeries {
            labels_refs: vec![1, 2],
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(one, vec![0x0a, 0x02, 0x01, 0x02]);
    }

    #[test]
    fn snappy_is_the_block_format() {
        let body = encode_v1(
            &[Series {
                labels: labels(&[("__name__", "up")]),
                family: 0,
                samples: vec![(1, 1.0, 0)],
                exemplars: vec![],
                histograms: vec![],
            }],
            None,
        );
        let compressed = snappy(&body).unwrap();
        // The framed format starts with the stream identifier chunk 0xff 0x06 0x00 0x00 "sNaPpY".
        assert_ne!(compressed[0], 0xff);
        assert_eq!(snap::raw::Decoder::new().decompress_vec(&compressed).unwrap(), body);
        // Block format starts with the uncompressed length as a varint.
        assert_eq!(compressed[0] as usize, body.len());
    }
}
