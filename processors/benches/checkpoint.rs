//! Cost of the `ewma` and `burnrate` checkpoints (`storage:`) at their bounds, and the
//! size of the file:
//!
//! - ewma: 10,000 series (`max_series`), each a gauge with `rate: true`, warmed up.
//! - burnrate: `max_groups` 1000 groups with full 3d rings at the default 30s resolution
//!   (8,642 samples each, plus the 722-sample budget ring), and 10,000 counter series
//!   (`max_series`); and a typical 20 groups with the same rings.
//!
//! Measured per checkpoint: `encode` (the state to bytes, on the pipeline task),
//! `compress` (zstd level 1 + header + crc32, on the writer thread), `write` (temp file,
//! fsync, rename, fsync directory, on the writer thread: the directory is
//! `$CHECKPOINT_BENCH_DIR`, default the temp dir), and `restore` (read, check, decompress,
//! decode: at start). File sizes are printed.
//!
//! Run: `cargo bench -p oxcol-processors --bench checkpoint`

use std::path::{Path, PathBuf};

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use oxcol_core::testdata::string_attribute;
use oxcol_core::{Batch, Processor};
use oxcol_processors::burnrate::{self, BurnrateProcessor, Config as BurnrateConfig};
use oxcol_processors::checkpoint::{self, Storage};
use oxcol_processors::ewma::{self, Config as EwmaConfig, EwmaProcessor};

const T0: u64 = 1_700_000_000_000_000_000;
const SEC: u64 = 1_000_000_000;

fn dir(tag: &str) -> PathBuf {
    let base = std::env::var_os("CHECKPOINT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("oxcol-ckpt-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    dir
}

fn storage(dir: &Path) -> Storage {
    Storage {
        extension: "file_storage".into(),
        directory: dir.to_path_buf(),
        fsync: true,
        create_directory: false,
        directory_permissions: 0o750,
        lock_timeout: Duration::from_secs(1),
    }
}

fn point(ts: u64, value: f64, attrs: &[(&str, String)]) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs.iter().map(|(k, v)| string_attribute(k, v)).collect(),
        time_unix_nano: ts,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn one_resource(metric: Metric) -> Vec<ResourceMetrics> {
    vec![ResourceMetrics {
        resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
            attributes: vec![string_attribute("service.name", "bench")],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![metric],
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn counter(points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: "http_requests_total".into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

/// Measures the four steps for one state. The processor was built with storage in
/// `dir` and shut down (so the file is there); `restore` builds one from that file.
fn measure(
    c: &mut Criterion,
    name: &str,
    dir: &Path,
    encode: &dyn Fn() -> Vec<u8>,
    version: u32,
    restore: &dyn Fn(),
) {
    let payload = encode();
    let file = checkpoint::encode_file(version, 0, 0, &payload);
    eprintln!(
        "{name}: payload {:.2} MiB, file (zstd 1) {:.2} MiB",
        payload.len() as f64 / 1048576.0,
        file.len() as f64 / 1048576.0
    );
    let scratch = dir.join("scratch");
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let mut group = c.benchmark_group(format!("checkpoint/{name}"));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("encode", |b| b.iter(encode));
    group.bench_function("compress", |b| {
        b.iter(|| checkpoint::encode_file(version, 0, 0, &payload))
    });
    group.bench_function("write (fsync)", |b| {
        b.iter(|| checkpoint::write_atomic(&scratch, "bench.state", &file, true).expect("writes"))
    });
    group.bench_function("restore", |b| b.iter(restore));
    group.finish();
    let _ = std::fs::remove_dir_all(dir);
}

fn ewma(c: &mut Criterion) {
    let config: EwmaConfig = serde_json::from_value(serde_json::json!({
        "metrics": [{"match": "g", "half_life": "2m", "rate": true}],
        "max_series": 10000, "warmup_points": 1
    }))
    .expect("bench config");
    let dir = dir("ewma");
    let mut processor = EwmaProcessor::new("ewma", &config, None)
        .and_then(|p| p.with_storage(&storage(&dir), "metrics", None))
        .expect("bench config");
    for step in 0..5u64 {
        // Memory-like gauges: large values moving by pseudo-random amounts.
        let points = (0..10_000u64)
            .map(|i| {
                let jitter = (i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    ^ step.wrapping_mul(0xff51_afd7_ed55_8ccd))
                    % 65_536;
                point(
                    T0 + step * 10 * SEC,
                    (100_000_000 + i * 4096 + step * 8192 + jitter) as f64,
                    &[("id", i.to_string())],
                )
            })
            .collect();
        let metric = Metric {
            name: "g".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: points,
            })),
            ..Default::default()
        };
        let _ = processor.process(Batch::from_metrics(one_resource(metric)));
    }
    assert_eq!(processor.series_count(), 10_000);
    processor.shutdown();
    let restore = || {
        let restored = EwmaProcessor::new("ewma", &config, None)
            .and_then(|p| p.with_storage(&storage(&dir), "metrics", None))
            .expect("restores");
        assert_eq!(
            restored.series_count(),
            10_000,
            "the checkpoint was restored"
        );
    };
    measure(
        c,
        "ewma 10k series",
        &dir,
        &|| processor.encode_state(),
        ewma::STATE_VERSION,
        &restore,
    );
}

fn burnrate_state(groups: usize, dir: &Path) -> (BurnrateConfig, BurnrateProcessor) {
    let config: BurnrateConfig = serde_json::from_value(serde_json::json!({
        "slos": [{"name": "api", "objective": 0.999,
                  "errors": {"metric": "http_requests_total", "match": {"code": "5.."}},
                  "total": {"metric": "http_requests_total"}, "group_by": ["route"]}],
        "max_series": 10000, "max_groups": 1000, "stale_after": "4d"
    }))
    .expect("bench config");
    let mut processor = BurnrateProcessor::new("burnrate", &config, None)
        .and_then(|p| p.with_storage(&storage(dir), "metrics", None))
        .expect("bench config");
    // 3 days at 30 s: one 500 and one 200 series per group, so every ring fills. The
    // counters grow by pseudo-random amounts (like real traffic, which compresses worse
    // than regular steps): 200 by 50..149 per scrape, 500 by 0..4.
    let steps = 3 * 86_400 / 30 + 2;
    let routes: Vec<String> = (0..groups).map(|g| format!("/r{g}")).collect();
    let mut counters = vec![(0.0f64, 0.0f64); groups];
    let mut rng = oxcol_core::testdata::XorShift64(0x2545_f491_4f6c_dd1d);
    let mut random = move |n: u64| rng.below(n) as f64;
    for step in 0..steps as u64 {
        let ts = T0 + step * 30 * SEC;
        for c in counters.iter_mut() {
            c.0 += 50.0 + random(100);
            c.1 += random(5);
        }
        let points = routes
            .iter()
            .zip(&counters)
            .flat_map(|(route, (ok, errors))| {
                [
                    point(ts, *ok, &[("code", "200".into()), ("route", route.clone())]),
                    point(
                        ts,
                        *errors,
                        &[("code", "500".into()), ("route", route.clone())],
                    ),
                ]
            })
            .collect();
        let _ = processor.process(Batch::from_metrics(one_resource(counter(points))));
    }
    // Then up to max_series series (instances) in one more scrape.
    let ts = T0 + steps as u64 * 30 * SEC;
    let per_group = (10_000 / groups).max(1);
    let points = (0..groups * per_group)
        .map(|i| {
            point(
                ts,
                i as f64,
                &[
                    ("code", "200".into()),
                    ("route", routes[i % groups].clone()),
                    ("instance", format!("i{i}")),
                ],
            )
        })
        .collect();
    let _ = processor.process(Batch::from_metrics(one_resource(counter(points))));
    processor.shutdown();
    (config, processor)
}

fn burnrate(c: &mut Criterion) {
    for groups in [20, 1000] {
        let dir = dir(&format!("br{groups}"));
        let (config, processor) = burnrate_state(groups, &dir);
        let (series, held) = processor.state_size();
        assert_eq!(held, groups);
        let restore = || {
            let restored = BurnrateProcessor::new("burnrate", &config, None)
                .and_then(|p| p.with_storage(&storage(&dir), "metrics", None))
                .expect("restores");
            assert_eq!(
                restored.state_size(),
                (series, groups),
                "the checkpoint was restored"
            );
        };
        measure(
            c,
            &format!("burnrate {groups} groups x 3d at 30s, {series} series"),
            &dir,
            &|| processor.encode_state(),
            burnrate::STATE_VERSION,
            &restore,
        );
    }
}

criterion_group!(benches, ewma, burnrate);
criterion_main!(benches);
