//! From translated samples to remote write request bodies: group samples into series
//! (time-ordered, one sample per timestamp), shard series by label hash, cut each shard
//! into requests of at most `max_batch_size_bytes`, encode 1.0 or 2.0 protobuf, and
//! snappy-compress in the block format (the framed format is not allowed by the spec).
//!
//! Encoding is written by hand, straight from the translation's borrowed data: a series'
//! labels are already encoded (`SeriesTable` keeps them as 1.0 `Label` messages) and are
//! copied as they are; samples and metadata are written field by field with proto3's
//! rules (zero values left off), so the bytes are what prost would produce for the
//! `proto` messages (pinned by the tests, including a randomized comparison with prost).
//! Only exemplars and native histograms (rare) go through the prost structs.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::proto::{v1, v2};
use crate::prom_translate::{
    EncodedLabels, Exemplar, Family, IdentityHasher, NativeHistogram, Translation, put_varint,
    varint_len,
};

/// One series with its samples in timestamp order, borrowing from a [`Translation`].
#[derive(Clone, Debug, PartialEq)]
pub struct Series<'t> {
    /// The label set, encoded as remote write 1.0 `Label` messages (`SeriesTable`).
    pub labels: &'t [u8],
    /// `SeriesTable::hash` of the labels (stable: picks the shard).
    pub hash: u64,
    pub family: u32,
    /// (timestamp ms, value, start ms), strictly increasing timestamps.
    pub samples: Vec<(i64, f64, i64)>,
    pub exemplars: Vec<&'t Exemplar>,
    /// Native histogram samples, strictly increasing timestamps.
    pub histograms: Vec<&'t NativeHistogram>,
}

impl<'t> Series<'t> {
    /// The series' (name, value) label pairs.
    pub fn label_pairs(&self) -> EncodedLabels<'t> {
        EncodedLabels::new(self.labels)
    }

    /// Rough encoded size, for splitting (labels + 20 bytes per sample, exemplars and
    /// histograms by their parts).
    fn estimated_size(&self) -> usize {
        self.labels.len()
            + self.samples.len() * 20
            + self
                .exemplars
                .iter()
                .map(|e| {
                    e.labels
                        .iter()
                        .map(|(n, v)| n.len() + v.len() + 6)
                        .sum::<usize>()
                        + 22
                })
                .sum::<usize>()
            + self
                .histograms
                .iter()
                .map(|h| {
                    60 + (h.positive_deltas.len() + h.negative_deltas.len()) * 3
                        + (h.positive_spans.len() + h.negative_spans.len()) * 6
                })
                .sum::<usize>()
            + 8
    }
}

/// Keeps the last of each run of equal keys (`items` sorted by key, stably), in place.
fn keep_last_per_key<T: Copy>(items: &mut Vec<T>, key: impl Fn(&T) -> i64) -> u64 {
    let before = items.len();
    let mut kept = 0usize;
    for read in 0..items.len() {
        let item = items[read];
        if kept > 0 && key(&items[kept - 1]) == key(&item) {
            items[kept - 1] = item;
        } else {
            items[kept] = item;
            kept += 1;
        }
    }
    items.truncate(kept);
    (before - kept) as u64
}

/// Groups samples by series. Within a series, samples are sorted by timestamp and a
/// later sample with the same timestamp replaces an earlier one (Prometheus would refuse a
/// second, different value for one timestamp). Returns the series (in order of first
/// appearance) and how many samples were replaced.
pub fn group_series<'t>(translation: &'t Translation) -> (Vec<Series<'t>>, u64) {
    let table = &translation.series;
    let mut counts = vec![0u32; table.len()];
    for sample in &translation.samples {
        if let Some(count) = counts.get_mut(sample.series as usize) {
            *count += 1;
        }
    }
    let mut slots = vec![u32::MAX; table.len()];
    let mut series: Vec<Series<'t>> = Vec::new();
    let mut slot_of = |index: u32, family: u32, series: &mut Vec<Series<'t>>| -> Option<usize> {
        let slot = slots.get_mut(index as usize)?;
        if *slot == u32::MAX {
            *slot = series.len() as u32;
            series.push(Series {
                labels: table.encoded(index),
                hash: table.hash(index),
                family,
                samples: Vec::with_capacity(counts[index as usize] as usize),
                exemplars: Vec::new(),
                histograms: Vec::new(),
            });
        }
        Some(*slot as usize)
    };
    let mut sample_slots = Vec::with_capacity(translation.samples.len());
    for sample in &translation.samples {
        let slot = slot_of(sample.series, sample.family, &mut series);
        sample_slots.push(slot);
        if let Some(slot) = slot {
            series[slot]
                .samples
                .push((sample.timestamp_ms, sample.value, sample.start_ms));
        }
    }
    if !translation.exemplars.is_empty() {
        for (sample, exemplar) in &translation.exemplars {
            if let Some(Some(slot)) = sample_slots.get(*sample) {
                series[*slot].exemplars.push(exemplar);
            }
        }
    }
    for histogram in &translation.histograms {
        if let Some(slot) = slot_of(histogram.series, histogram.family, &mut series) {
            let s = &mut series[slot];
            s.exemplars.extend(histogram.exemplars.iter());
            s.histograms.push(histogram);
        }
    }
    let mut replaced = 0u64;
    for s in &mut series {
        if s.exemplars.len() > 1 {
            s.exemplars.sort_by_key(|e| e.timestamp_ms);
        }
        if s.histograms.len() > 1 {
            s.histograms.sort_by_key(|h| h.timestamp_ms);
            replaced += keep_last_per_key(&mut s.histograms, |h| h.timestamp_ms);
        }
        if s.samples.len() > 1 {
            // Stable: for equal timestamps the later sample stays last, and the dedup keeps it.
            if !s.samples.is_sorted_by_key(|(t, _, _)| *t) {
                s.samples.sort_by_key(|(t, _, _)| *t);
            }
            replaced += keep_last_per_key(&mut s.samples, |(t, _, _)| *t);
        }
    }
    (series, replaced)
}

/// Splits series into `shards` lists; a series always lands in the same shard.
pub fn shard(series: Vec<Series<'_>>, shards: usize) -> Vec<Vec<Series<'_>>> {
    let shards = shards.max(1);
    let mut out: Vec<Vec<Series>> = (0..shards)
        .map(|_| Vec::with_capacity(series.len() / shards + 1))
        .collect();
    for s in series {
        let slot = (s.hash % shards as u64) as usize;
        out[slot].push(s);
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Cuts one shard into chunks whose estimated size stays under `max_bytes` (a single
/// series larger than that is sent alone).
pub fn chunks(series: Vec<Series<'_>>, max_bytes: usize) -> Vec<Vec<Series<'_>>> {
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

/// A length-delimited field: key byte (tag < 16, wire type 2) and length.
fn put_len_field(out: &mut Vec<u8>, key: u8, len: usize) {
    out.push(key);
    put_varint(out, len as u64);
}

fn len_field_size(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// proto3 `double` (left off when `== 0.0`, as prost does; -0.0 too).
fn double_size(value: f64) -> usize {
    if value != 0.0 { 9 } else { 0 }
}

fn put_double(out: &mut Vec<u8>, key: u8, value: f64) {
    if value != 0.0 {
        out.push(key);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// proto3 `int64`/`int32`/`uint32` as a varint (left off when 0; negative values take 10 bytes).
fn int_size(value: i64) -> usize {
    if value != 0 {
        1 + varint_len(value as u64)
    } else {
        0
    }
}

fn put_int(out: &mut Vec<u8>, key: u8, value: i64) {
    if value != 0 {
        out.push(key);
        put_varint(out, value as u64);
    }
}

fn put_string(out: &mut Vec<u8>, key: u8, text: &str) {
    if !text.is_empty() {
        put_len_field(out, key, text.len());
        out.extend_from_slice(text.as_bytes());
    }
}

fn string_size(text: &str) -> usize {
    if text.is_empty() {
        0
    } else {
        len_field_size(text.len())
    }
}

/// A remote write 1.0 `WriteRequest`, with metadata for `families` when given.
pub fn encode_v1(series: &[Series<'_>], families: Option<&[Family]>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_v1_into(&mut out, series, families);
    out
}

/// [`encode_v1`] appended to `out` (a buffer reused across requests).
pub fn encode_v1_into(out: &mut Vec<u8>, series: &[Series<'_>], families: Option<&[Family]>) {
    let sizes: usize = series
        .iter()
        .map(|s| s.labels.len() + s.samples.len() * 22 + 8)
        .sum();
    out.reserve(sizes);
    for s in series {
        // Rare parts as prost messages.
        let exemplars: Vec<v1::Exemplar> = s
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
            .collect();
        let histograms: Vec<v1::Histogram> = s.histograms.iter().map(|h| histogram_v1(h)).collect();
        let sample_size =
            |(timestamp, value, _): &(i64, f64, i64)| double_size(*value) + int_size(*timestamp);
        let len = s.labels.len()
            + s.samples
                .iter()
                .map(|x| len_field_size(sample_size(x)))
                .sum::<usize>()
            + exemplars
                .iter()
                .map(|e| prost::encoding::message::encoded_len(3, e))
                .sum::<usize>()
            + histograms
                .iter()
                .map(|h| prost::encoding::message::encoded_len(4, h))
                .sum::<usize>();
        // WriteRequest.timeseries = 1
        put_len_field(out, 0x0a, len);
        out.extend_from_slice(s.labels);
        for sample in &s.samples {
            // TimeSeries.samples = 2 { value = 1 (double), timestamp = 2 (int64) }
            put_len_field(out, 0x12, sample_size(sample));
            put_double(out, 0x09, sample.1);
            put_int(out, 0x10, sample.0);
        }
        for e in &exemplars {
            prost::encoding::message::encode(3, e, out);
        }
        for h in &histograms {
            prost::encoding::message::encode(4, h, out);
        }
    }
    for f in families.unwrap_or(&[]) {
        // WriteRequest.metadata = 3 { type = 1, metric_family_name = 2, help = 4, unit = 5 }
        let len = int_size(f.kind as i64)
            + string_size(&f.name)
            + string_size(&f.help)
            + string_size(&f.unit);
        put_len_field(out, 0x1a, len);
        put_int(out, 0x08, f.kind as i64);
        put_string(out, 0x12, &f.name);
        put_string(out, 0x22, &f.help);
        put_string(out, 0x2a, &f.unit);
    }
}

/// A remote write 2.0 `Request`: one symbol table for the request, metadata (type, help,
/// unit) on every series, start timestamps on counter-like samples.
pub fn encode_v2(series: &[Series<'_>], families: &[Family]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_v2_into(&mut out, series, families);
    out
}

/// [`encode_v2`] appended to `out`.
pub fn encode_v2_into<'t>(out: &mut Vec<u8>, series: &[Series<'t>], families: &'t [Family]) {
    let mut symbols = Symbols::default();
    let mut timeseries: Vec<u8> =
        Vec::with_capacity(series.iter().map(|s| s.samples.len() * 30 + 40).sum());
    let mut refs: Vec<u32> = Vec::new();
    let mut body: Vec<u8> = Vec::new();
    for s in series {
        refs.clear();
        for (name, value) in s.label_pairs() {
            refs.push(symbols.intern(name));
            refs.push(symbols.intern(value));
        }
        let metadata = families.get(s.family as usize).map(|f| v2::Metadata {
            r#type: f.kind as i32,
            help_ref: symbols.intern(&f.help),
            unit_ref: symbols.intern(&f.unit),
        });
        body.clear();
        if !refs.is_empty() {
            // TimeSeries.labels_refs = 1, packed
            put_len_field(
                &mut body,
                0x0a,
                refs.iter().map(|r| varint_len(*r as u64)).sum(),
            );
            for r in &refs {
                put_varint(&mut body, *r as u64);
            }
        }
        for (timestamp, value, start) in &s.samples {
            // TimeSeries.samples = 2 { value = 1, timestamp = 2, start_timestamp = 3 }
            put_len_field(
                &mut body,
                0x12,
                double_size(*value) + int_size(*timestamp) + int_size(*start),
            );
            put_double(&mut body, 0x09, *value);
            put_int(&mut body, 0x10, *timestamp);
            put_int(&mut body, 0x18, *start);
        }
        for h in &s.histograms {
            prost::encoding::message::encode(3, &histogram_v2(h), &mut body);
        }
        for e in &s.exemplars {
            let exemplar = v2::Exemplar {
                labels_refs: e
                    .labels
                    .iter()
                    .flat_map(|(n, v)| [symbols.intern(n), symbols.intern(v)])
                    .collect(),
                value: e.value,
                timestamp: e.timestamp_ms,
            };
            prost::encoding::message::encode(4, &exemplar, &mut body);
        }
        if let Some(metadata) = &metadata {
            prost::encoding::message::encode(5, metadata, &mut body);
        }
        // Request.timeseries = 5
        put_len_field(&mut timeseries, 0x2a, body.len());
        timeseries.extend_from_slice(&body);
    }
    out.reserve(symbols.table.iter().map(|s| s.len() + 2).sum::<usize>() + timeseries.len());
    for symbol in &symbols.table {
        // Request.symbols = 4 (repeated string: every element written, "" too)
        put_len_field(out, 0x22, symbol.len());
        out.extend_from_slice(symbol.as_bytes());
    }
    out.extend_from_slice(&timeseries);
}

/// A native histogram in the 2.0 message: integer counts (the `count` and `zero_count`
/// oneofs always set, as upstream's clients send them), reset hint UNKNOWN (the receiver
/// detects resets itself, as for cumulative OTLP data), and its start time.
fn histogram_v2(h: &NativeHistogram) -> v2::Histogram {
    let spans = |spans: &[(i32, u32)]| {
        spans
            .iter()
            .map(|(offset, length)| v2::BucketSpan {
                offset: *offset,
                length: *length,
            })
            .collect()
    };
    v2::Histogram {
        count: Some(v2::histogram::Count::CountInt(h.count)),
        sum: h.sum,
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: Some(v2::histogram::ZeroCount::ZeroCountInt(h.zero_count)),
        negative_spans: spans(&h.negative_spans),
        negative_deltas: h.negative_deltas.clone(),
        positive_spans: spans(&h.positive_spans),
        positive_deltas: h.positive_deltas.clone(),
        timestamp: h.timestamp_ms,
        start_timestamp: h.start_ms,
        ..Default::default()
    }
}

/// A native histogram in the 1.0 message, with the same rules as [`histogram_v2`].
fn histogram_v1(h: &NativeHistogram) -> v1::Histogram {
    let spans = |spans: &[(i32, u32)]| {
        spans
            .iter()
            .map(|(offset, length)| v1::BucketSpan {
                offset: *offset,
                length: *length,
            })
            .collect()
    };
    v1::Histogram {
        count: Some(v1::histogram::Count::CountInt(h.count)),
        sum: h.sum,
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: Some(v1::histogram::ZeroCount::ZeroCountInt(h.zero_count)),
        negative_spans: spans(&h.negative_spans),
        negative_deltas: h.negative_deltas.clone(),
        positive_spans: spans(&h.positive_spans),
        positive_deltas: h.positive_deltas.clone(),
        timestamp: h.timestamp_ms,
        ..Default::default()
    }
}

/// The 2.0 string table of one request, borrowing its strings: index 0 is always "".
struct Symbols<'t> {
    table: Vec<&'t str>,
    index: HashMap<&'t str, u32, BuildHasherDefault<IdentityHasher>>,
}

impl Default for Symbols<'_> {
    fn default() -> Self {
        let mut index = HashMap::default();
        index.insert("", 0);
        Symbols {
            table: vec![""],
            index,
        }
    }
}

impl<'t> Symbols<'t> {
    fn intern(&mut self, text: &'t str) -> u32 {
        let next = self.table.len() as u32;
        let i = *self.index.entry(text).or_insert(next);
        if i == next {
            self.table.push(text);
        }
        i
    }
}

/// Snappy block format (`snap::raw`), as remote write requires.
pub fn snappy(body: &[u8]) -> Result<Vec<u8>, String> {
    Compressor::default().compress(body)
}

/// A snappy block compressor that keeps its hash table and output buffer across requests;
/// each result is copied out at its exact size (so a request in flight holds no slack).
pub struct Compressor {
    encoder: snap::raw::Encoder,
    buffer: Vec<u8>,
}

impl Default for Compressor {
    fn default() -> Self {
        Compressor {
            encoder: snap::raw::Encoder::new(),
            buffer: Vec::new(),
        }
    }
}

impl Compressor {
    pub fn compress(&mut self, body: &[u8]) -> Result<Vec<u8>, String> {
        let max = snap::raw::max_compress_len(body.len());
        if max == 0 {
            return Err(format!(
                "snappy compression failed: a request body of {} bytes is too large",
                body.len()
            ));
        }
        if self.buffer.len() < max {
            self.buffer.resize(max, 0);
        }
        let written = self
            .encoder
            .compress(body, &mut self.buffer)
            .map_err(|e| format!("snappy compression failed: {e}"))?;
        Ok(self.buffer[..written].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::prom_translate::{FamilyType, Sample, SeriesTable, encode_label, hash_bytes};

    fn encoded(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in pairs {
            encode_label(&mut out, name, value);
        }
        out
    }

    fn series<'t>(labels: &'t [u8], samples: Vec<(i64, f64, i64)>) -> Series<'t> {
        Series {
            labels,
            hash: hash_bytes(labels),
            family: 0,
            samples,
            exemplars: vec![],
            histograms: vec![],
        }
    }

    fn translation_with(samples: &[(&str, i64, f64)]) -> Translation {
        let mut t = Translation::default();
        for (name, ts, value) in samples {
            let series = t.series.intern_labels(&[("__name__", *name), ("job", "j")]);
            t.samples.push(Sample {
                series,
                value: *value,
                timestamp_ms: *ts,
                start_ms: 0,
                family: 0,
                delta: false,
            });
        }
        t
    }

    #[test]
    fn series_are_time_ordered_without_duplicate_timestamps() {
        let translation = translation_with(&[
            ("a", 30, 3.0),
            ("b", 10, 1.0),
            ("a", 10, 1.0),
            ("a", 30, 4.0),
            ("a", 20, 2.0),
        ]);
        let (series, replaced) = group_series(&translation);
        assert_eq!(replaced, 1);
        assert_eq!(
            series[0].samples,
            vec![(10, 1.0, 0), (20, 2.0, 0), (30, 4.0, 0)]
        );
        assert_eq!(series[1].samples, vec![(10, 1.0, 0)]);
        assert_eq!(
            series[0].label_pairs().collect::<Vec<_>>(),
            vec![("__name__", "a"), ("job", "j")]
        );
        // Sharding is stable: the same series goes to the same shard in every batch.
        let once = shard(series.clone(), 3);
        let again = shard(series, 3);
        assert_eq!(once, again);
        assert_eq!(once.iter().map(Vec::len).sum::<usize>(), 2);
        let other = translation_with(&[("b", 99, 9.0)]);
        let (b_again, _) = group_series(&other);
        let shard_of = |s: &Series| s.hash % 3;
        let b = once
            .iter()
            .flatten()
            .find(|s| s.label_pairs().any(|l| l == ("__name__", "b")))
            .map(shard_of);
        assert_eq!(b, Some(shard_of(&b_again[0])));
    }

    #[test]
    fn chunks_respect_the_size_limit() {
        let labels: Vec<Vec<u8>> = (0..10)
            .map(|i| encoded(&[("__name__", &format!("m{i}"))]))
            .collect();
        let all: Vec<Series> = labels
            .iter()
            .map(|l| series(l, vec![(1, 1.0, 0); 10]))
            .collect();
        let size = all[0].estimated_size();
        let cut = chunks(all, size * 3);
        assert_eq!(
            cut.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![3, 3, 3, 1]
        );
    }

    #[test]
    fn v1_bytes_are_the_upstream_encoding() {
        let labels = encoded(&[("__name__", "up"), ("job", "x")]);
        let body = encode_v1(&[series(&labels, vec![(1000, 1.0, 0)])], None);
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
        let x = encoded(&[("__name__", "req_total"), ("job", "x")]);
        let y = encoded(&[("__name__", "req_total"), ("job", "y")]);
        let all = vec![
            series(&x, vec![(2000, 5.0, 1000)]),
            series(&y, vec![(2000, 6.0, 1000)]),
        ];
        let request = v2::Request::decode(encode_v2(&all, &families).as_slice()).unwrap();
        assert_eq!(
            request.symbols,
            vec!["", "__name__", "req_total", "job", "x", "Requests", "y"]
        );
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
        let labels = encoded(&[("__name__", "up")]);
        let body = encode_v1(&[series(&labels, vec![(1, 1.0, 0)])], None);
        let compressed = snappy(&body).unwrap();
        // The framed format starts with the stream identifier chunk 0xff 0x06 0x00 0x00 "sNaPpY".
        assert_ne!(compressed[0], 0xff);
        assert_eq!(
            snap::raw::Decoder::new()
                .decompress_vec(&compressed)
                .unwrap(),
            body
        );
        // Block format starts with the uncompressed length as a varint.
        assert_eq!(compressed[0] as usize, body.len());
        // A reused compressor gives the same bytes for every body, large then small.
        let mut compressor = Compressor::default();
        let large = vec![7u8; 100_000];
        assert_eq!(
            compressor.compress(&large).unwrap(),
            snap::raw::Encoder::new().compress_vec(&large).unwrap()
        );
        assert_eq!(compressor.compress(&body).unwrap(), compressed);
    }

    /// The prost messages of `series`, as the encoder before the hand-written one built
    /// them: the hand-written bytes must equal prost's for every input.
    fn prost_v1(series: &[Series<'_>], families: Option<&[Family]>) -> Vec<u8> {
        let label = |(name, value): (&str, &str)| v1::Label {
            name: name.to_string(),
            value: value.to_string(),
        };
        v1::WriteRequest {
            timeseries: series
                .iter()
                .map(|s| v1::TimeSeries {
                    labels: s.label_pairs().map(label).collect(),
                    samples: s
                        .samples
                        .iter()
                        .map(|(t, v, _)| v1::Sample {
                            value: *v,
                            timestamp: *t,
                        })
                        .collect(),
                    exemplars: s
                        .exemplars
                        .iter()
                        .map(|e| v1::Exemplar {
                            labels: e.labels.iter().map(|(n, v)| label((n, v))).collect(),
                            value: e.value,
                            timestamp: e.timestamp_ms,
                        })
                        .collect(),
                    histograms: s.histograms.iter().map(|h| histogram_v1(h)).collect(),
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
        }
        .encode_to_vec()
    }

    fn prost_v2(series: &[Series<'_>], families: &[Family]) -> Vec<u8> {
        let mut table: Vec<String> = vec![String::new()];
        let mut intern = |text: &str| -> u32 {
            match table.iter().position(|t| t == text) {
                Some(i) => i as u32,
                None => {
                    table.push(text.to_string());
                    (table.len() - 1) as u32
                }
            }
        };
        let mut timeseries = Vec::new();
        for s in series {
            let labels_refs = s
                .label_pairs()
                .flat_map(|(n, v)| [intern(n), intern(v)])
                .collect();
            let metadata = families.get(s.family as usize).map(|f| v2::Metadata {
                r#type: f.kind as i32,
                help_ref: intern(&f.help),
                unit_ref: intern(&f.unit),
            });
            timeseries.push(v2::TimeSeries {
                labels_refs,
                samples: s
                    .samples
                    .iter()
                    .map(|(t, v, st)| v2::Sample {
                        value: *v,
                        timestamp: *t,
                        start_timestamp: *st,
                    })
                    .collect(),
                histograms: s.histograms.iter().map(|h| histogram_v2(h)).collect(),
                exemplars: s
                    .exemplars
                    .iter()
                    .map(|e| v2::Exemplar {
                        labels_refs: e
                            .labels
                            .iter()
                            .flat_map(|(n, v)| [intern(n), intern(v)])
                            .collect(),
                        value: e.value,
                        timestamp: e.timestamp_ms,
                    })
                    .collect(),
                metadata,
            });
        }
        v2::Request {
            symbols: table,
            timeseries,
        }
        .encode_to_vec()
    }

    /// Random translations (every label, value and number shape, exemplars, native
    /// histograms, out-of-range families) encode to exactly prost's bytes, 1.0 and 2.0.
    #[test]
    fn hand_written_encoding_equals_prost_on_random_series() {
        let mut rng = oxcol_core::testdata::XorShift64(0x2545_f491_4f6c_dd1d);
        let mut next = || rng.next_u64();
        let words = [
            "",
            "a",
            "job",
            "__name__",
            "le",
            "é",
            "x".repeat(130).leak(),
            "0",
            "Zone",
            "b;c",
        ];
        let numbers = [
            0.0,
            -0.0,
            1.0,
            -2.5,
            f64::NAN,
            f64::INFINITY,
            crate::prom_translate::stale_nan(),
            1e300,
        ];
        let times = [0i64, 1, -1, 1_700_000_000_000, i64::MIN, 127, 128];
        for round in 0..300 {
            let mut t = Translation::default();
            let families = (next() % 3) as usize;
            for f in 0..families {
                let w = |n: u64| words[(n % words.len() as u64) as usize];
                t.families.push(Family {
                    name: format!("f{f}{}", w(next())),
                    kind: [FamilyType::Counter, FamilyType::Gauge, FamilyType::Unknown][f % 3],
                    help: w(next()).to_string(),
                    unit: w(next()).to_string(),
                });
            }
            let mut table = SeriesTable::default();
            for _ in 0..(next() % 6) {
                let mut pairs: Vec<(String, String)> = (0..(next() % 5))
                    .map(|_| {
                        (
                            words[(next() % 10) as usize].to_string() + "n",
                            words[(next() % 10) as usize].to_string() + "v",
                        )
                    })
                    .collect();
                pairs.sort();
                pairs.dedup_by(|a, b| a.0 == b.0);
                table.intern_labels(&pairs);
            }
            t.series = table;
            for _ in 0..(next() % 12) {
                if t.series.is_empty() {
                    break;
                }
                let series = (next() % t.series.len() as u64) as u32;
                t.samples.push(Sample {
                    series,
                    value: numbers[(next() % 8) as usize],
                    timestamp_ms: times[(next() % 7) as usize],
                    start_ms: times[(next() % 7) as usize],
                    family: (next() % 4) as u32,
                    delta: false,
                });
            }
            for _ in 0..(next() % 3) {
                if t.samples.is_empty() {
                    break;
                }
                let sample = (next() % t.samples.len() as u64) as usize;
                t.exemplars.push((
                    sample,
                    Exemplar {
                        labels: vec![("trace_id".into(), words[(next() % 10) as usize].into())],
                        value: numbers[(next() % 8) as usize],
                        timestamp_ms: times[(next() % 7) as usize],
                    },
                ));
            }
            if !t.series.is_empty() && next() % 3 == 0 {
                t.histograms.push(NativeHistogram {
                    series: (next() % t.series.len() as u64) as u32,
                    family: 0,
                    timestamp_ms: times[(next() % 7) as usize],
                    start_ms: 5,
                    schema: -((next() % 4) as i32),
                    zero_threshold: 0.0,
                    zero_count: next() % 3,
                    count: next() % 100,
                    sum: numbers[(next() % 8) as usize],
                    positive_spans: vec![(-((next() % 3) as i32), 2)],
                    positive_deltas: vec![1, -1],
                    negative_spans: vec![],
                    negative_deltas: vec![],
                    exemplars: vec![],
                });
            }
            let (series, _) = group_series(&t);
            let metadata = (round % 2 == 0).then_some(t.families.as_slice());
            assert_eq!(
                encode_v1(&series, metadata),
                prost_v1(&series, metadata),
                "round {round}"
            );
            assert_eq!(
                encode_v2(&series, &t.families),
                prost_v2(&series, &t.families),
                "round {round}"
            );
            let mut reused = vec![1, 2, 3];
            reused.clear();
            encode_v1_into(&mut reused, &series, None);
            assert_eq!(reused, prost_v1(&series, None));
        }
    }
}
