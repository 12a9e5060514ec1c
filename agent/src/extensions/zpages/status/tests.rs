use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use oxcol_core::Signal;
use oxcol_core::telemetry::{ExporterCounters, ProcessorCounters, ReceiverCounters, Registry};
use serde_json::Value;

use super::*;
use crate::extensions::zpages::{Role, Topology};

const YAML: &str = "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:4317
processors:
  batch:
exporters:
  debug/<b>x:
connectors:
  forward:
service:
  pipelines:
    metrics/in:
      receivers: [otlp]
      processors: [batch]
      exporters: [forward]
    metrics/out:
      receivers: [forward]
      exporters: [debug/<b>x]
";

fn topology() -> Topology {
    let source = oxcol_config::Source::Text {
        name: "test".to_string(),
        text: YAML.to_string(),
    };
    let root = oxcol_config::load(&[source], &[], &|_| None).expect("the YAML loads");
    let (settings, errors) = crate::settings::read(&root);
    assert!(errors.is_empty(), "{errors:?}");
    Topology::new(&settings)
}

fn state(registry: &Arc<Registry>) -> State {
    State {
        topology: topology(),
        registry: Arc::clone(registry),
        started: SystemTime::now(),
        started_at: Instant::now(),
        expvar: false,
        history: Mutex::new(History::new(HISTORY_LEN)),
        picture: None,
    }
}

fn values(list: &[f64]) -> Vec<Option<f64>> {
    list.iter().copied().map(Some).collect()
}

#[test]
fn history_is_bounded_and_rates_skip_restarts() {
    let start = Instant::now();
    let mut history = History::new(3);
    for (i, total) in [0.0, 10.0, 30.0, 5.0, 25.0].into_iter().enumerate() {
        history.record(start + Duration::from_secs(10 * i as u64), values(&[total]));
    }
    assert_eq!(history.samples.len(), 3, "only the newest 3 kept");
    // Kept: 30 (t=20), 5 (t=30, a restart), 25 (t=40).
    assert_eq!(history.rates(0), [None, Some(2.0)]);
    assert_eq!(history.values(0), [Some(30.0), Some(5.0), Some(25.0)]);
    assert_eq!(
        history.rates(7),
        [None, None],
        "an unknown series has no rate"
    );
    // The reference for a rate "now" is at least MIN_RATE_SPAN old.
    let now = start + Duration::from_secs(41);
    assert_eq!(
        history.reference(now).map(|s| s.values.clone()),
        Some(values(&[5.0]))
    );
    let now = start + Duration::from_secs(45);
    assert_eq!(
        history.reference(now).map(|s| s.values.clone()),
        Some(values(&[25.0]))
    );
}

#[test]
fn status_json_has_every_pipeline_component_count_and_live_rate() {
    let registry = Registry::new();
    let receiver = ReceiverCounters::new(&registry, "otlp", "grpc", Signal::Metrics);
    let processor = ProcessorCounters::new(&registry, "batch", "metrics/in", Signal::Metrics);
    let exporter = ExporterCounters::new(&registry, "debug/<b>x", Signal::Metrics);
    receiver.accepted.add(100);
    exporter.queue_capacity.set(1000);
    let state = state(&registry);
    // A sample taken 10 s "ago" (the sampler's job), then 500 more points.
    let now = Instant::now();
    let ten_seconds_ago = now
        .checked_sub(Duration::from_secs(10))
        .expect("the clock is past 10 s");
    let rows_then = rows(&state.topology, &Counts::read(&state));
    state
        .history
        .lock()
        .expect("not poisoned")
        .record(ten_seconds_ago, flatten(&rows_then, Some(1024)));
    receiver.accepted.add(500);
    processor.incoming.add(500);
    exporter.sent.add(400);
    exporter.queue_size.set(250);

    let json: Value = serde_json::from_str(&status_json(&state, now)).expect("valid JSON");
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(json["sample_interval_seconds"], 10);
    let pipelines = json["pipelines"].as_array().expect("pipelines");
    let ids: Vec<&str> = pipelines.iter().filter_map(|p| p["id"].as_str()).collect();
    assert_eq!(ids, ["metrics/in", "metrics/out"]);

    let count = |component: &Value, name: &str| -> (Value, Value) {
        let found = component["counts"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == name))
            .unwrap_or_else(|| panic!("{name} in {component}"));
        (found["value"].clone(), found["rate"].clone())
    };
    let otlp = &pipelines[0]["receivers"][0];
    assert_eq!(otlp["id"], "otlp");
    assert_eq!(otlp["kind"], Role::Receiver.name());
    assert_eq!(count(otlp, "accepted"), (600.0.into(), 50.0.into()));
    assert_eq!(count(otlp, "refused").0, 0.0);
    assert_eq!(otlp["spark_of"], "accepted");

    let batch = &pipelines[0]["processors"][0];
    assert_eq!(
        count(batch, "incoming"),
        (500.0.into(), 50.0.into()),
        "the series existed (at 0) 10 s ago"
    );

    let forward_out = &pipelines[0]["exporters"][0];
    assert_eq!(
        (forward_out["id"].as_str(), forward_out["kind"].as_str()),
        (Some("forward"), Some("connector"))
    );
    let forward_in = &pipelines[1]["receivers"][0];
    assert_eq!(forward_in["kind"], "connector");

    let debug = &pipelines[1]["exporters"][0];
    assert_eq!(
        debug["id"], "debug/<b>x",
        "ids are data, escaped by the page"
    );
    assert_eq!(count(debug, "sent").0, 400.0);
    assert_eq!(
        count(debug, "queue size"),
        (250.0.into(), Value::Null),
        "a gauge has no rate"
    );
    assert_eq!(debug["queue_fill"], 0.25);

    // One more sample: the sparklines get one rate per interval.
    state.history.lock().expect("not poisoned").record(
        now,
        flatten(&rows(&state.topology, &Counts::read(&state)), Some(2048)),
    );
    let json: Value = serde_json::from_str(&status_json(&state, now + Duration::from_secs(3)))
        .expect("valid JSON");
    assert_eq!(
        json["pipelines"][0]["receivers"][0]["spark"],
        serde_json::json!([50.0])
    );
    assert_eq!(
        json["process"]["resident_spark"],
        serde_json::json!([1024.0, 2048.0])
    );
}

#[test]
fn sampling_the_registry_fills_the_history() {
    let registry = Registry::new();
    let receiver = ReceiverCounters::new(&registry, "otlp", "grpc", Signal::Metrics);
    let state = state(&registry);
    receiver.accepted.add(3);
    sample(&state);
    receiver.accepted.add(4);
    sample(&state);
    let history = state.history.lock().expect("not poisoned");
    assert_eq!(history.values(0), [Some(3.0), Some(7.0)]);
}

#[test]
fn the_page_inlines_its_assets_and_navigation() {
    let registry = Registry::new();
    let page = index(&state(&registry));
    assert!(!page.contains("<!--@@"), "every placeholder is filled");
    assert!(page.contains(CSS.trim()) && page.contains(JS.trim()));
    assert!(
        page.contains("href=\"/debug/pipelinez\""),
        "navigation to the other pages"
    );
    assert!(page.contains(API_STATUS));
    for external in ["src=", "<link", "@import", "url(", "fetch(\"http", "//cdn"] {
        assert!(
            !page.contains(external),
            "no external asset: {external:?} in the page"
        );
    }
    assert!(
        ASSET_BYTES < 64 * 1024,
        "the assets stay small: {ASSET_BYTES} bytes"
    );
}

/// A gauge of one point, as a scrape gives it.
fn gauge(name: &str, ts: u64, value: f64) -> opentelemetry_proto::tonic::metrics::v1::Metric {
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, metric, number_data_point,
    };
    Metric {
        name: name.to_string(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                time_unix_nano: ts,
                value: Some(number_data_point::Value::AsDouble(value)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    }
}

fn resource(
    attributes: &[(&str, &str)],
    metrics: Vec<opentelemetry_proto::tonic::metrics::v1::Metric>,
) -> opentelemetry_proto::tonic::metrics::v1::ResourceMetrics {
    use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    ResourceMetrics {
        resource: Some(Resource {
            attributes: attributes
                .iter()
                .map(|(k, v)| oxcol_core::testdata::string_attribute(k, v))
                .collect(),
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn status_json_has_the_go_runtime_fit_findings_with_their_inputs_and_fix() {
    use oxcol_core::{Batch, Processor};
    // A sidecar: the container's cgroup (1 CPU, 512 MiB) and a Go service in it with
    // GOMAXPROCS=8 and GOMEMLIMIT unset (MaxInt64), through the real gofit processor.
    let mut gofit = oxcol_processors::gofit::GofitProcessor::new(
        "gofit",
        &oxcol_processors::gofit::Config::default(),
        None,
    )
    .expect("gofit builds");
    let ts = 1_700_000_000_000_000_000u64;
    let out = gofit
        .process(Batch::from_metrics(vec![
            resource(
                &[("cgroup.path", "/")],
                vec![
                    gauge("cgroup.cpu.max", ts, 1.0),
                    gauge("cgroup.memory.max", ts, 536_870_912.0),
                ],
            ),
            resource(
                &[
                    ("service.name", "checkout"),
                    ("k8s.pod.name", "checkout-7d9f"),
                ],
                vec![
                    gauge("go_sched_gomaxprocs_threads", ts, 8.0),
                    gauge("go_gc_gomemlimit_bytes", ts, 9.223_372_036_854_776e18),
                ],
            ),
        ]))
        .expect("gofit processes");
    let picture = crate::picture::PictureHandle::default();
    picture.observe(&out);
    let registry = Registry::new();
    let mut state = state(&registry);
    state.picture = Some(picture);

    let json: Value =
        serde_json::from_str(&status_json(&state, Instant::now())).expect("valid JSON");
    let picture = &json["picture"];
    assert_eq!(picture["go_fit_checked_unix_ms"], ts / 1_000_000);
    let services = picture["go_fit"].as_array().expect("go_fit");
    assert_eq!(services.len(), 1, "{picture:#}");
    let checkout = &services[0];
    assert_eq!(checkout["service"], "checkout");
    assert_eq!(checkout["pod"], "checkout-7d9f");
    assert_eq!(checkout["instance"], Value::Null);
    assert_eq!(checkout["gomaxprocs"], 8.0);
    assert_eq!(checkout["cpu_limit"], 1.0);
    assert_eq!(checkout["gomemlimit"], Value::Null, "unset");
    assert_eq!(checkout["memory_limit"], 536_870_912.0);
    assert_eq!(
        checkout["findings"],
        serde_json::json!([
            {"finding": "gomaxprocs_above_cpu_limit",
             "fix": "set GOMAXPROCS=1, or build with Go 1.25+ which follows the CPU limit"},
            {"finding": "gomemlimit_unset",
             "fix": "set GOMEMLIMIT=460MiB (memory.max less 10% for non-heap memory)"},
        ])
    );
    // The page draws the section from these fields.
    for field in [
        "go_fit",
        "go_fit_checked_unix_ms",
        "gomaxprocs",
        "cpu_limit",
    ] {
        assert!(JS.contains(field), "status.js reads {field}");
    }
}
