//! The hot path of an OTLP -> batch -> OTLP relay, and what a decoding relay pays instead.
//!
//! Run: `cargo bench -p oxcol-core --bench hot_path` (results: docs/benchmarks.md).
//! Every benchmark reports throughput in data points; the request is
//! `testdata::metrics_request_with(4, 25, 10, 3)` (4 resources x 25 metrics x 10 points x
//! 3 attributes = 1000 points, gauges, sums, histograms and summaries), encoded with prost.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use oxcol_core::compression::{Encoding, compress};
use oxcol_core::{Batch, Signal, skeleton, testdata};
use prost::Message;

const RESOURCES: usize = 4;
const METRICS: usize = 25;
const POINTS: usize = 10;
const ATTRIBUTES: usize = 3;
/// Requests grouped into one outgoing batch by the relay benchmarks.
const GROUP: usize = 8;

fn request_bytes() -> (Bytes, u64) {
    let bytes = Bytes::from(
        testdata::metrics_request_with(RESOURCES, METRICS, POINTS, ATTRIBUTES).encode_to_vec(),
    );
    let points = skeleton::count_items(Signal::Metrics, &bytes).expect("valid request");
    assert_eq!(points, (RESOURCES * METRICS * POINTS) as u64);
    (bytes, points)
}

/// `GROUP` copies of the request in separate allocations, as separate client requests are.
fn requests(bytes: &Bytes) -> Vec<Bytes> {
    (0..GROUP).map(|_| Bytes::copy_from_slice(bytes)).collect()
}

fn hot_path(c: &mut Criterion) {
    let (bytes, points) = request_bytes();
    eprintln!(
        "request: {points} points, {} bytes encoded ({:.1} bytes/point)",
        bytes.len(),
        bytes.len() as f64 / points as f64
    );

    let mut group = c.benchmark_group("metrics");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);

    // What the receiver does with every request: check the framing, count the points.
    group.throughput(Throughput::Elements(points));
    group.bench_function("receiver/skeleton_count_items", |b| {
        b.iter(|| skeleton::count_items(Signal::Metrics, black_box(&bytes)).unwrap())
    });

    // Relay path: 8 requests wrapped (skeleton scan each), grouped, written once into a
    // send buffer.
    let inputs = requests(&bytes);
    group.throughput(Throughput::Elements(points * GROUP as u64));
    group.bench_function(
        BenchmarkId::new("relay/skeleton_append_encode_into", GROUP),
        |b| {
            let mut buf = BytesMut::with_capacity(bytes.len() * GROUP);
            b.iter(|| {
                let mut batch = Batch::empty(Signal::Metrics);
                for input in &inputs {
                    batch
                        .append(Batch::from_encoded(Signal::Metrics, input.clone()).unwrap())
                        .unwrap();
                }
                buf.clear();
                batch.encode_into(&mut buf);
                black_box(buf.len())
            })
        },
    );

    // What a Collector-style relay does: decode every request into objects, merge them,
    // encode the merged request.
    group.bench_function(
        BenchmarkId::new("relay/prost_decode_merge_encode", GROUP),
        |b| {
            b.iter(|| {
                let mut merged = ExportMetricsServiceRequest::default();
                for input in &inputs {
                    let request =
                        ExportMetricsServiceRequest::decode(black_box(input.clone())).unwrap();
                    merged.resource_metrics.extend(request.resource_metrics);
                }
                black_box(merged.encode_to_vec())
            })
        },
    );

    // Same, one request at a time (decode + encode_to_vec, no merge).
    group.throughput(Throughput::Elements(points));
    group.bench_function("single/prost_decode_encode", |b| {
        b.iter(|| {
            let request = ExportMetricsServiceRequest::decode(black_box(bytes.clone())).unwrap();
            black_box(request.encode_to_vec())
        })
    });
    group.bench_function("single/prost_decode", |b| {
        b.iter(|| ExportMetricsServiceRequest::decode(black_box(bytes.clone())).unwrap())
    });

    // send_batch_max_size cuts: 250 falls on resource boundaries (slices, no decode);
    // 100 is smaller than one resource (250 points), which forces a decode of each.
    let batch = Batch::from_encoded(Signal::Metrics, bytes.clone()).unwrap();
    for max in [250u64, 100] {
        group.bench_function(BenchmarkId::new("split", max), |b| {
            b.iter(|| black_box(batch.clone()).split(max).unwrap())
        });
    }

    // Exporter compression of the encoded request (gzip level "fast", zstd level 1).
    for (name, encoding) in [("gzip", Encoding::Gzip), ("zstd", Encoding::Zstd)] {
        let size = compress(encoding, &bytes).unwrap().len();
        eprintln!(
            "{name}: {} -> {size} bytes ({:.1}x)",
            bytes.len(),
            bytes.len() as f64 / size as f64
        );
        group.bench_function(BenchmarkId::new("compress", name), |b| {
            b.iter(|| compress(encoding, black_box(&bytes)).unwrap())
        });
    }
    group.finish();
}

/// Encoding a decoded request: prost (every nested message measured again at each level
/// above it) against `oxcol_core::otlp_encode` (measured once, then written), for each
/// signal; both give the same bytes.
fn encode(c: &mut Criterion) {
    use oxcol_core::otlp_encode;
    let mut group = c.benchmark_group("encode");
    group.measurement_time(Duration::from_secs(3));
    let metrics = testdata::metrics_request_with(RESOURCES, METRICS, POINTS, ATTRIBUTES);
    let traces = testdata::trace_request(4, 250);
    let logs = testdata::logs_request(4, 250);
    group.bench_function("metrics/prost", |b| {
        b.iter(|| black_box(&metrics).encode_to_vec())
    });
    group.bench_function("metrics/two_pass", |b| {
        b.iter(|| otlp_encode::metrics_request(&black_box(&metrics).resource_metrics))
    });
    group.bench_function("traces/prost", |b| {
        b.iter(|| black_box(&traces).encode_to_vec())
    });
    group.bench_function("traces/two_pass", |b| {
        b.iter(|| otlp_encode::traces_request(&black_box(&traces).resource_spans))
    });
    group.bench_function("logs/prost", |b| {
        b.iter(|| black_box(&logs).encode_to_vec())
    });
    group.bench_function("logs/two_pass", |b| {
        b.iter(|| otlp_encode::logs_request(&black_box(&logs).resource_logs))
    });
    group.finish();
}

criterion_group!(benches, hot_path, encode);
criterion_main!(benches);
