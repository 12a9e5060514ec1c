//! ns per sample of the `prometheusremotewrite` exporter's CPU path on one decoded batch:
//! translate (`prom_translate`), staleness tracking (steady state: every series already
//! known), group into series, shard (5), cut into requests, encode 1.0 (or 2.0) and
//! snappy-compress. The HTTP send is not measured. Building the batch is setup.
//!
//! Batch: `oxcol_core::testdata::metrics_request_with(40, 10, 10, 3)`: 40 resources
//! (service.name, service.instance.id, host.name) x 10 metrics (gauges, monotonic sums,
//! 3-bound histograms, summaries) x 10 points with 3 attributes each = 4,000 OTLP points,
//! 8,840 samples (with one `target_info` per resource), about one 200 ms batch at 20k
//! points/s.
//!
//! Run: `cargo bench -p oxcol-exporters --bench remote_write`
//! Instructions (callgrind): `RW_ITERS=N target/release/deps/remote_write-* ` runs N
//! iterations of the 1.0 path outside criterion and exits; profile N=0 and N=20 with
//! `valgrind --tool=callgrind` and divide the difference by 20 x samples.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use oxcol_exporters::prom_translate::{self, DeltaHandling, Settings};
use oxcol_exporters::prometheusremotewrite::{encode, staleness};

fn batch() -> Vec<ResourceMetrics> {
    oxcol_core::testdata::metrics_request_with(40, 10, 10, 3).resource_metrics
}

fn settings() -> Settings {
    Settings {
        native_histograms: true,
        delta: DeltaHandling::Drop,
        ..Settings::default()
    }
}

/// One export's CPU work; returns (samples, compressed bytes).
fn run(
    input: &[ResourceMetrics],
    settings: &Settings,
    tracker: &mut staleness::Tracker,
    now: Instant,
    v2: bool,
) -> (usize, usize) {
    let mut translation = prom_translate::translate(input, settings);
    tracker.observe(&mut translation, now);
    let (series, _) = encode::group_series(&translation);
    let samples: usize = series
        .iter()
        .map(|s| s.samples.len() + s.histograms.len())
        .sum();
    let mut bytes = 0;
    let mut metadata = true;
    for shard in encode::shard(series, 5) {
        for chunk in encode::chunks(shard, 2 << 20) {
            let body = if v2 {
                encode::encode_v2(&chunk, &translation.families)
            } else {
                encode::encode_v1(
                    &chunk,
                    std::mem::take(&mut metadata).then_some(translation.families.as_slice()),
                )
            };
            bytes += encode::snappy(&body).map(|c| c.len()).unwrap_or(0);
        }
    }
    tracker.delivered();
    (samples, bytes)
}

fn bench(c: &mut Criterion) {
    let input = batch();
    let settings = settings();
    let start = Instant::now();
    let mut tracker = staleness::Tracker::new(Duration::from_secs(300), 1_000_000);
    let (samples, _) = run(&input, &settings, &mut tracker, start, false);
    let mut group = c.benchmark_group("remote_write");
    group.throughput(Throughput::Elements(samples as u64));
    for (name, v2) in [("v1_8840_samples", false), ("v2_8840_samples", true)] {
        group.bench_function(name, |b| {
            b.iter(|| black_box(run(black_box(&input), &settings, &mut tracker, start, v2)))
        });
    }
    group.bench_function("translate_only", |b| {
        b.iter(|| black_box(prom_translate::translate(black_box(&input), &settings)))
    });
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(iterations) = std::env::var("RW_ITERS") {
        let iterations: usize = iterations.parse().unwrap_or(0);
        let input = batch();
        let settings = settings();
        let start = Instant::now();
        let mut tracker = staleness::Tracker::new(Duration::from_secs(300), 1_000_000);
        let (samples, bytes) = run(&input, &settings, &mut tracker, start, false);
        for _ in 0..iterations {
            black_box(run(&input, &settings, &mut tracker, start, false));
        }
        println!(
            "samples per iteration {samples}, compressed bytes {bytes}, iterations {iterations} (+1 warm-up)"
        );
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
