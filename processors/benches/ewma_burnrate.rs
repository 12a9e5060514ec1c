//! ns per point of the stateful `ewma` and `burnrate` processors on a decoded batch of
//! 10,000 points, in steady state: every series already known, each iteration one scrape
//! 10 s after the previous (timestamps advance, so every point updates state). Building
//! the batch is setup, not measured.
//!
//! - ewma: 10 resources x 1 gauge x 1000 series (3 attributes), `rate: true`, one
//!   `predict` rule whose limit is another gauge in the same batch (so 2 x 5000 points).
//! - burnrate: 10 resources x `http_requests_total` x 1000 series (code x route x
//!   instance), one ratio SLO with `group_by: [route]` (20 groups, each summing the 10
//!   resources' series: the sum is across resources), default windows.
//!
//! Run: `cargo bench -p oxcol-processors --bench ewma_burnrate`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use oxcol_core::testdata::string_attribute;
use oxcol_core::{Batch, Processor};
use oxcol_processors::burnrate::{BurnrateProcessor, Config as BurnrateConfig};
use oxcol_processors::ewma::{Config as EwmaConfig, EwmaProcessor};

const POINTS: u64 = 10_000;
const T0: u64 = 1_700_000_000_000_000_000;
const STEP: u64 = 10_000_000_000;

fn points(
    series: usize,
    ts: u64,
    value: impl Fn(usize) -> f64,
    attrs: impl Fn(usize) -> [(String, String); 3],
) -> Vec<NumberDataPoint> {
    (0..series)
        .map(|i| NumberDataPoint {
            attributes: attrs(i)
                .iter()
                .map(|(k, v)| string_attribute(k, v))
                .collect(),
            time_unix_nano: ts,
            value: Some(number_data_point::Value::AsDouble(value(i))),
            ..Default::default()
        })
        .collect()
}

fn resource(r: usize, metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![
                string_attribute("service.name", &format!("svc-{r}")),
                string_attribute("host.name", "node-1"),
            ],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn ewma_batch(step: u64) -> Vec<ResourceMetrics> {
    let ts = T0 + step * STEP;
    let attrs = |i: usize| {
        [
            ("pid".to_string(), i.to_string()),
            ("container".to_string(), format!("c-{}", i % 7)),
            ("state".to_string(), "used".to_string()),
        ]
    };
    (0..10)
        .map(|r| {
            let usage = Metric {
                name: "process.memory.usage".into(),
                unit: "By".into(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: points(
                        500,
                        ts,
                        |i| (1_000_000 * (i + 1) as u64 + step * 4096) as f64,
                        attrs,
                    ),
                })),
                ..Default::default()
            };
            let limit = Metric {
                name: "process.memory.limit".into(),
                unit: "By".into(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: points(500, ts, |_| 4e9, attrs),
                })),
                ..Default::default()
            };
            resource(r, vec![usage, limit])
        })
        .collect()
}

fn burnrate_batch(step: u64) -> Vec<ResourceMetrics> {
    let ts = T0 + step * STEP;
    let codes = ["200", "201", "404", "500", "503"];
    let attrs = |i: usize| {
        [
            ("code".to_string(), codes[i % 5].to_string()),
            ("route".to_string(), format!("/r{}", (i / 5) % 20)),
            ("instance".to_string(), format!("i{}", i / 100)),
        ]
    };
    (0..10)
        .map(|r| {
            let requests = Metric {
                name: "http_requests_total".into(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: points(
                        1000,
                        ts,
                        |i| ((i % 5 + 1) as u64 * step * 10) as f64,
                        attrs,
                    ),
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                })),
                ..Default::default()
            };
            resource(r, vec![requests])
        })
        .collect()
}

fn ewma(c: &mut Criterion) {
    let config: EwmaConfig = serde_json::from_value(serde_json::json!({
        "metrics": [{"match": "process.memory.usage", "half_life": "2m", "rate": true}],
        "predict": [{"name": "process.memory.time_to_limit", "value": "process.memory.usage", "limit": "process.memory.limit"}],
        "warmup_points": 1, "max_series": 20000
    }))
    .expect("bench config");
    let mut processor = EwmaProcessor::new("ewma", &config, None).expect("bench config");
    let mut step = 0;
    for _ in 0..3 {
        step += 1;
        let _ = processor.process(Batch::from_metrics(ewma_batch(step)));
    }
    let mut group = c.benchmark_group("ewma");
    group.throughput(Throughput::Elements(POINTS));
    group.bench_function("10k points (5k smoothed + predicted, 5k limits)", |b| {
        b.iter_batched(
            || {
                step += 1;
                Batch::from_metrics(ewma_batch(step))
            },
            |batch| processor.process(batch),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn burnrate(c: &mut Criterion) {
    let config: BurnrateConfig = serde_json::from_value(serde_json::json!({
        "slos": [{"name": "api", "objective": 0.999,
                  "errors": {"metric": "http_requests_total", "match": {"code": "5.."}},
                  "total": {"metric": "http_requests_total"}, "group_by": ["route"]}],
        "max_series": 20000
    }))
    .expect("bench config");
    let mut processor = BurnrateProcessor::new("burnrate", &config, None).expect("bench config");
    let mut step = 0;
    for _ in 0..3 {
        step += 1;
        let _ = processor.process(Batch::from_metrics(burnrate_batch(step)));
    }
    let mut group = c.benchmark_group("burnrate");
    group.throughput(Throughput::Elements(POINTS));
    group.bench_function("10k counter points, 20 groups, 7 windows", |b| {
        b.iter_batched(
            || {
                step += 1;
                Batch::from_metrics(burnrate_batch(step))
            },
            |batch| processor.process(batch),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, ewma, burnrate);
criterion_main!(benches);
