//! ns per point of the `relabel` and `units` processors on a decoded batch of 10,000
//! points (10 resources x 10 metrics x 100 points, 3 attributes per point; gauges, sums,
//! histograms and summaries). The batch clone is setup, not measured.
//!
//! Run: `cargo bench -p oxcol-processors --bench relabel_units`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use oxcol_core::relabel::RelabelConfig;
use oxcol_core::testdata::metrics_request_with;
use oxcol_processors::relabel::{
    Config as RelabelConfigSection, RelabelCounters, RelabelProcessor,
};
use oxcol_processors::units::{Config as UnitsConfig, UnitsProcessor};

const POINTS: u64 = 10_000;

fn batch() -> Vec<ResourceMetrics> {
    metrics_request_with(10, 10, 100, 3).resource_metrics
}

fn relabel(c: &mut Criterion) {
    let rules: Vec<RelabelConfig> = serde_json::from_str(
        r#"[
        {"source_labels": ["__name__"], "regex": "debug_.*", "action": "drop"},
        {"source_labels": ["attr.0"], "regex": "value-(\\d+)", "target_label": "bucket", "replacement": "b${1}"},
        {"source_labels": ["attr.1", "attr.2"], "modulus": 8, "target_label": "shard", "action": "hashmod"},
        {"source_labels": ["__name__"], "regex": "test\\.metric\\.(.*)", "target_label": "__name__", "replacement": "renamed_${1}"},
        {"regex": "attr\\.2", "action": "labeldrop"}
    ]"#,
    )
    .expect("bench rules decode");
    let config = RelabelConfigSection {
        metric_relabel_configs: rules,
        ..RelabelConfigSection::default()
    };
    let processor = RelabelProcessor::new("relabel", &config, RelabelCounters::default())
        .expect("bench rules compile");
    let mut group = c.benchmark_group("relabel");
    group.throughput(Throughput::Elements(POINTS));
    group.bench_function("5_rules_10k_points", |b| {
        b.iter_batched(
            batch,
            |mut r| processor.relabel(&mut r),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn units(c: &mut Criterion) {
    let mut processor = UnitsProcessor::new(
        "units",
        &UnitsConfig {
            rename: true,
            ..UnitsConfig::default()
        },
        None,
    )
    .expect("default config is valid");
    let in_ms = || {
        let mut r = batch();
        r.iter_mut()
            .flat_map(|r| &mut r.scope_metrics)
            .flat_map(|s| &mut s.metrics)
            .for_each(|m| {
                m.unit = "ms".to_string();
                m.name.push_str("_ms");
            });
        r
    };
    let mut group = c.benchmark_group("units");
    group.throughput(Throughput::Elements(POINTS));
    group.bench_function("ms_to_s_10k_points", |b| {
        b.iter_batched(
            in_ms,
            |mut r| processor.convert(&mut r),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, relabel, units);
criterion_main!(benches);
