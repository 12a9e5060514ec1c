//! The picture fed with real-format data: cgroup metrics made by the cgroup receiver's own
//! code from its recorded fixture tree (receivers/tests/fixtures/cgroup/v2-systemd, with
//! `memory.current` rewritten between scrapes to make a trend), smaps metrics made by the
//! smaps receiver from this test process, the ewma processor's real output; pprof and
//! burnrate outputs are built by hand in the shapes their docs give (no fixture exists).

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use oxcol_core::telemetry::Registry;
use oxcol_core::{Batch, Processor};
use prost::Message;

use super::*;

const CONTAINER: &str = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b7c3c2e_6f1a_4d2b_9c8e_1a2b3c4d5e6f.slice/cri-containerd-4c0e1b5d7f2a9e3c6b8d0a1f2e3d4c5b6a7980e1d2c3b4a5968778695a4b3c2d.scope";
/// In the fixture: memory.current 150 MiB, inactive_file 40 MiB, memory.max 256 MiB.
const FIXTURE_CURRENT: u64 = 157_286_400;
const FIXTURE_INACTIVE_FILE: u64 = 41_943_040;
const FIXTURE_MAX: f64 = 268_435_456.0;
const START_SECONDS: u64 = 1_700_000_000;
const MIB: u64 = 1024 * 1024;

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creates the fixture copy");
    for entry in std::fs::read_dir(from).expect("reads the fixture tree") {
        let entry = entry.expect("reads a fixture entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copies a fixture file");
        }
    }
}

/// The v2-systemd fixture tree copied to a temp dir (its files are rewritten by tests).
struct FixtureCopy {
    root: PathBuf,
}

impl FixtureCopy {
    fn new(name: &str) -> FixtureCopy {
        let root = std::env::temp_dir().join(format!(
            "oxcol-picture-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../receivers/tests/fixtures/cgroup/v2-systemd");
        copy_tree(&fixture, &root);
        FixtureCopy { root }
    }

    fn set_memory_current(&self, bytes: u64) {
        std::fs::write(
            self.root
                .join(CONTAINER.trim_start_matches('/'))
                .join("memory.current"),
            format!("{bytes}\n"),
        )
        .expect("rewrites memory.current");
    }

    fn collector(&self) -> oxcol_receivers::cgroup::Collector {
        let config = oxcol_receivers::cgroup::Config {
            root_path: self.root.clone(),
            self_cgroup: Some(false),
            paths: vec![CONTAINER.to_string()],
            ..Default::default()
        };
        oxcol_receivers::cgroup::Collector::new("cgroup", &config, &Registry::new())
    }
}

impl Drop for FixtureCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Scrapes every 10 s with the working set growing 1 MiB per scrape; returns the batches.
fn growing_scrapes(fixture: &FixtureCopy, scrapes: u64) -> Vec<Batch> {
    let mut collector = fixture.collector();
    (0..scrapes)
        .map(|i| {
            fixture.set_memory_current(FIXTURE_CURRENT + i * MIB);
            let now = UNIX_EPOCH + Duration::from_secs(START_SECONDS + i * 10);
            Batch::from_metrics(collector.collect(now))
        })
        .collect()
}

fn container(picture: &Picture) -> &CgroupView {
    picture
        .cgroups
        .iter()
        .find(|c| c.path == CONTAINER)
        .unwrap_or_else(|| panic!("no container cgroup in {:#?}", picture.cgroups))
}

#[test]
fn cgroup_fixture_gives_working_set_limit_psi_and_its_own_trend() {
    let fixture = FixtureCopy::new("own-trend");
    let picture = PictureHandle::default();
    let batches = growing_scrapes(&fixture, 12);
    for batch in &batches[..3] {
        picture.observe(batch);
    }
    let early = picture.snapshot();
    let view = container(&early);
    assert_eq!(view.trend, None, "warming up after 3 scrapes");
    assert_eq!(view.time_to_limit_seconds, None);

    for batch in &batches[3..] {
        picture.observe(batch);
    }
    let snapshot = picture.snapshot();
    let view = container(&snapshot);
    let working_set = (FIXTURE_CURRENT + 11 * MIB - FIXTURE_INACTIVE_FILE) as f64;
    assert_eq!(view.working_set_bytes, Some(working_set));
    assert_eq!(view.limit_bytes, Some(FIXTURE_MAX));
    assert_eq!(view.oom_kills, Some(1.0));
    assert_eq!(
        view.resource.get("container.id").map(String::as_str),
        Some("4c0e1b5d7f2a9e3c6b8d0a1f2e3d4c5b6a7980e1d2c3b4a5968778695a4b3c2d")
    );
    // 1 MiB every 10 s, steadily: the smoothed growth is exactly that.
    let trend = view.trend.expect("a trend after warm-up");
    assert_eq!(trend.source, TrendSource::Picture);
    let rate = MIB as f64 / 10.0;
    assert!((trend.bytes_per_second - rate).abs() < 1e-6, "{trend:?}");
    let ttl = view.time_to_limit_seconds.expect("growing toward a limit");
    assert!(
        (ttl - (FIXTURE_MAX - working_set) / rate).abs() < 1e-3,
        "{ttl}"
    );
    // PSI as the fixture's memory.pressure says (percent -> ratio).
    let memory = &view.pressure[0];
    assert_eq!(memory.resource, "memory");
    let close =
        |value: Option<f64>, expected: f64| value.is_some_and(|v| (v - expected).abs() < 1e-12);
    assert!(close(memory.some_avg10, 0.0153), "{memory:?}");
    assert!(close(memory.full_avg60, 0.0025), "{memory:?}");
    assert_eq!(view.working_set_history.len(), 12);
    assert_eq!(
        view.working_set_history.last().map(|s| (s.t, s.v)),
        Some(((START_SECONDS + 110) * 1000, working_set))
    );
    assert_eq!(snapshot.newest_data_unix_ms, (START_SECONDS + 110) * 1000);
}

#[test]
fn a_batch_seen_twice_counts_once() {
    // A connector hands a batch to a second pipeline: both taps see it.
    let fixture = FixtureCopy::new("twice");
    let (once, twice) = (PictureHandle::default(), PictureHandle::default());
    for batch in growing_scrapes(&fixture, 8) {
        once.observe(&batch);
        twice.observe(&batch);
        twice.observe(&batch);
    }
    let (a, b) = (once.snapshot(), twice.snapshot());
    assert_eq!(container(&a), container(&b));
    assert_eq!(container(&a).working_set_history.len(), 8);
}

#[test]
fn the_ewma_processors_trend_and_prediction_win_when_present() {
    let fixture = FixtureCopy::new("ewma");
    let config: oxcol_processors::ewma::Config = serde_json::from_value(serde_json::json!({
        "metrics": [{"match": "cgroup.memory.working_set", "half_life": "30s", "rate": true}],
        "predict": [{"name": "cgroup.memory.time_to_limit",
                     "value": "cgroup.memory.working_set", "limit": "cgroup.memory.max"}],
    }))
    .expect("an ewma config");
    let mut ewma = oxcol_processors::ewma::EwmaProcessor::new("ewma", &config, None)
        .expect("the ewma processor builds");
    let picture = PictureHandle::default();
    picture
        .model()
        .configure(vec!["cgroup.memory.time_to_limit".to_string()], None);
    let mut last = None;
    for batch in growing_scrapes(&fixture, 10) {
        let out = ewma.process(batch).expect("ewma processes");
        picture.observe(&out);
        last = Some(out);
    }
    // The processor's own numbers, read from its last output.
    let Some(oxcol_core::Data::Metrics(resources)) = last.as_ref().map(Batch::data) else {
        panic!("decoded output");
    };
    let value_of = |name: &str| {
        resources
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name == name)
            .find_map(|m| match &m.data {
                Some(metric::Data::Gauge(g)) => g.data_points.first().and_then(|p| p.value),
                _ => None,
            })
    };
    let Some(number_data_point::Value::AsDouble(ttl)) = value_of("cgroup.memory.time_to_limit")
    else {
        panic!("the processor predicted");
    };
    let Some(number_data_point::Value::AsDouble(rate)) =
        value_of("cgroup.memory.working_set.rate.ewma")
    else {
        panic!("the processor emitted a rate");
    };
    let snapshot = picture.snapshot();
    let view = container(&snapshot);
    assert_eq!(
        view.trend,
        Some(Trend {
            bytes_per_second: rate,
            source: TrendSource::EwmaProcessor
        })
    );
    assert_eq!(view.time_to_limit_seconds, Some(ttl));
}

#[test]
fn encoded_batches_are_decoded_only_when_they_hold_a_needed_name() {
    let fixture = FixtureCopy::new("encoded");
    let needles = model::Needles::new(&[]);
    let batches = growing_scrapes(&fixture, 6);
    let picture = PictureHandle::default();
    for batch in &batches {
        let oxcol_core::Data::Metrics(resources) = batch.data() else {
            panic!("scrapes are decoded");
        };
        let bytes = ExportMetricsServiceRequest {
            resource_metrics: resources.clone(),
        }
        .encode_to_vec();
        let encoded = Batch::from_encoded(oxcol_core::Signal::Metrics, bytes.into())
            .expect("a valid request");
        assert!(model::relevant(&encoded, &needles).is_some());
        picture.observe(&encoded);
    }
    let from_encoded = picture.snapshot();
    let direct = PictureHandle::default();
    for batch in &batches {
        direct.observe(batch);
    }
    assert_eq!(container(&from_encoded), container(&direct.snapshot()));

    // Application metrics without any of the names: never decoded.
    let unrelated = oxcol_core::testdata::metrics_request(2, 3, 4);
    let encoded = Batch::from_encoded(
        oxcol_core::Signal::Metrics,
        unrelated.encode_to_vec().into(),
    )
    .expect("a valid request");
    assert!(model::relevant(&encoded, &needles).is_none());
}

#[test]
fn smaps_of_this_process_gives_its_pss() {
    let config = oxcol_receivers::smaps::Config {
        self_process: Some(true),
        ..Default::default()
    };
    let mut collector = oxcol_receivers::smaps::Collector::new("smaps", &config, &Registry::new());
    let resources = collector.collect(std::time::SystemTime::now());
    let pss_emitted = resources
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .find(|m| m.name == "process.smaps.pss")
        .and_then(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.first().and_then(|p| p.value),
            _ => None,
        });
    let Some(number_data_point::Value::AsInt(pss_emitted)) = pss_emitted else {
        panic!("the smaps receiver read this process: {resources:?}");
    };
    let picture = PictureHandle::default();
    picture.observe(&Batch::from_metrics(resources));
    let snapshot = picture.snapshot();
    let process = snapshot.processes.first().expect("one process");
    assert_eq!(process.pid, i64::from(std::process::id()));
    assert_eq!(process.pss_bytes, pss_emitted as f64);
    assert!(
        process
            .rss_bytes
            .is_some_and(|rss| rss >= process.pss_bytes)
    );
    assert!(!process.name.is_empty());
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

fn gauge(name: &str, points: Vec<(Vec<KeyValue>, u64, f64)>) -> Metric {
    Metric {
        name: name.to_string(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points
                .into_iter()
                .map(|(attributes, ts, value)| NumberDataPoint {
                    attributes,
                    time_unix_nano: ts,
                    value: Some(number_data_point::Value::AsDouble(value)),
                    ..Default::default()
                })
                .collect(),
        })),
        ..Default::default()
    }
}

fn resource(attributes: Vec<KeyValue>, metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource {
            attributes,
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn seconds(s: u64) -> u64 {
    (START_SECONDS + s) * 1_000_000_000
}

#[test]
fn leak_suspects_take_their_stack_from_the_log_record() {
    let picture = PictureHandle::default();
    let signature = || {
        vec![
            text("go.stack.function", "main.leakyHandler.func1"),
            text("go.stack.creator", "main.leakyHandler"),
            text("go.stack.id", "0123456789abcdef"),
        ]
    };
    let target = vec![
        text("service.name", "leaky"),
        text("url.full", "http://127.0.0.1:6060"),
    ];
    // The log record first (the logs pipeline may be faster than the metrics one).
    let mut attributes = signature();
    attributes.push(text("event.name", "go.goroutine.leak.suspect"));
    attributes.push(int("go.goroutine.count", 140));
    let logs = ResourceLogs {
        resource: Some(Resource {
            attributes: target.clone(),
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records: vec![LogRecord {
                time_unix_nano: seconds(60),
                event_name: "go.goroutine.leak.suspect".to_string(),
                attributes,
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(
                        "goroutine leak suspect\nmain.leakyHandler.func1()\n\t/app/main.go:42"
                            .to_string(),
                    )),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    picture.observe(&Batch::from_logs(vec![logs]));
    for (i, count) in [(0u64, 150.0), (15, 160.0)] {
        picture.observe(&Batch::from_metrics(vec![resource(
            target.clone(),
            vec![
                gauge(
                    "go.goroutine.leak.growth",
                    vec![(signature(), seconds(60 + i), 0.67)],
                ),
                gauge(
                    "go.goroutine.stack.count",
                    vec![
                        (signature(), seconds(60 + i), count),
                        (
                            vec![text("go.stack.id", "ffffffffffffffff")],
                            seconds(60 + i),
                            3.0,
                        ),
                    ],
                ),
            ],
        )]));
    }
    let snapshot = picture.snapshot();
    assert_eq!(
        snapshot.leak_suspects.len(),
        1,
        "{:#?}",
        snapshot.leak_suspects
    );
    let suspect = &snapshot.leak_suspects[0];
    assert_eq!(suspect.target, "leaky");
    assert_eq!(suspect.function, "main.leakyHandler.func1");
    assert_eq!(suspect.creator, "main.leakyHandler");
    assert_eq!(suspect.growth_per_second, 0.67);
    assert_eq!(suspect.goroutines, Some(160.0));
    assert!(
        suspect
            .stack
            .as_deref()
            .is_some_and(|s| s.contains("/app/main.go:42")),
        "{suspect:?}"
    );
    let counts: Vec<f64> = suspect.goroutines_history.iter().map(|s| s.v).collect();
    assert_eq!(counts, vec![150.0, 160.0]);
}

#[test]
fn slo_burn_rates_are_grouped_with_their_alerts() {
    let picture = PictureHandle::default();
    let slo = |extra: Vec<KeyValue>| {
        let mut attributes = vec![
            text("slo.name", "checkout-availability"),
            text("route", "/pay"),
        ];
        attributes.extend(extra);
        attributes
    };
    let ts = seconds(300);
    picture.observe(&Batch::from_metrics(vec![resource(
        vec![text("service.name", "checkout")],
        vec![
            gauge(
                "slo.burn_rate",
                vec![
                    (slo(vec![text("slo.window", "1h")]), ts, 16.0),
                    (slo(vec![text("slo.window", "5m")]), ts, 20.0),
                ],
            ),
            gauge("slo.error_budget.remaining", vec![(slo(vec![]), ts, 0.75)]),
            gauge(
                "slo.alert",
                vec![
                    (slo(vec![text("severity", "page")]), ts, 1.0),
                    (slo(vec![text("severity", "ticket")]), ts, 0.0),
                ],
            ),
        ],
    )]));
    let snapshot = picture.snapshot();
    assert_eq!(snapshot.slos.len(), 1, "{:#?}", snapshot.slos);
    let view = &snapshot.slos[0];
    assert_eq!(view.name, "checkout-availability");
    assert_eq!(view.group.get("route").map(String::as_str), Some("/pay"));
    assert_eq!(
        view.group.get("service.name").map(String::as_str),
        Some("checkout")
    );
    let windows: Vec<(&str, f64)> = view
        .burn_rates
        .iter()
        .map(|b| (b.window.as_str(), b.rate))
        .collect();
    assert_eq!(
        windows,
        vec![("5m", 20.0), ("1h", 16.0)],
        "shortest window first"
    );
    assert_eq!(view.error_budget_remaining, Some(0.75));
    assert_eq!(
        view.alerts,
        vec![
            Alert {
                severity: "page".into(),
                firing: true
            },
            Alert {
                severity: "ticket".into(),
                firing: false
            }
        ]
    );
    assert_eq!(
        view.burn_rate_history
            .iter()
            .map(|s| s.v)
            .collect::<Vec<_>>(),
        vec![20.0]
    );
}

fn cgroup_batch(path: &str, ts: u64, working_set: f64) -> Batch {
    Batch::from_metrics(vec![resource(
        vec![text("cgroup.path", path)],
        vec![gauge(
            "cgroup.memory.working_set",
            vec![(vec![], ts, working_set)],
        )],
    )])
}

#[test]
fn tables_are_bounded_and_stale_series_are_forgotten() {
    let picture = PictureHandle::new(Limits {
        max_cgroups: 2,
        ..Limits::default()
    });
    for (path, ws) in [("/a", 1.0), ("/b", 2.0), ("/c", 3.0)] {
        picture.observe(&cgroup_batch(path, seconds(0), ws));
    }
    let snapshot = picture.snapshot();
    let paths: Vec<&str> = snapshot.cgroups.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(
        paths,
        vec!["/b", "/a"],
        "the third is not kept; largest first"
    );
    assert_eq!(snapshot.dropped_series, 1);
    // 16 minutes later only /c reports: /a and /b are stale and make room.
    picture.observe(&cgroup_batch("/c", seconds(960), 3.0));
    let snapshot = picture.snapshot();
    let paths: Vec<&str> = snapshot.cgroups.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(paths, vec!["/c"]);
    assert_eq!(snapshot.dropped_series, 1);
}

#[test]
fn a_lifted_limit_is_gone_at_the_next_scrape() {
    let picture = PictureHandle::default();
    let with_limit = Batch::from_metrics(vec![resource(
        vec![text("cgroup.path", "/app")],
        vec![
            gauge(
                "cgroup.memory.working_set",
                vec![(vec![], seconds(0), 100.0)],
            ),
            gauge("cgroup.memory.max", vec![(vec![], seconds(0), 1000.0)]),
        ],
    )]);
    picture.observe(&with_limit);
    assert_eq!(picture.snapshot().cgroups[0].limit_bytes, Some(1000.0));
    picture.observe(&cgroup_batch("/app", seconds(10), 110.0));
    assert_eq!(picture.snapshot().cgroups[0].limit_bytes, None);
}

#[test]
fn the_picture_serializes_for_the_status_page() {
    let fixture = FixtureCopy::new("json");
    let picture = PictureHandle::default();
    for batch in growing_scrapes(&fixture, 7) {
        picture.observe(&batch);
    }
    let json = serde_json::to_value(picture.snapshot()).expect("serializes");
    let view = json["cgroups"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["path"] == CONTAINER))
        .expect("the container in the JSON");
    assert_eq!(view["trend"]["source"], "picture");
    assert_eq!(view["limit_bytes"], FIXTURE_MAX);
    assert_eq!(
        view["working_set_history"].as_array().map(Vec::len),
        Some(7)
    );
    assert!(view["working_set_history"][0]["t"].is_u64());
}

fn sample_picture() -> Picture {
    Picture {
        // 01:02:03 UTC on a day.
        taken_at_unix_ms: (1_699_920_000 + 3723) * 1000,
        status_page: Some("http://127.0.0.1:55679/".to_string()),
        cgroups: vec![
            CgroupView {
                path: "/kubepods/pod1/abc".to_string(),
                working_set_bytes: Some(812.0 * MIB as f64),
                limit_bytes: Some(1024.0 * MIB as f64),
                trend: Some(Trend {
                    bytes_per_second: 2.1 * MIB as f64 / 60.0,
                    source: TrendSource::Picture,
                }),
                time_to_limit_seconds: Some(3.0 * 3600.0 + 12.0 * 60.0),
                pressure: vec![Pressure {
                    resource: "memory".to_string(),
                    some_avg10: Some(0.0153),
                    some_avg60: Some(0.0087),
                    full_avg10: Some(0.005),
                    full_avg60: Some(0.003),
                }],
                ..CgroupView::default()
            },
            CgroupView {
                path: "/process_api/aad306c7c3a93bf77d96fcfde6481123".to_string(),
                working_set_bytes: Some(2.88 * 1024.0 * MIB as f64),
                trend: Some(Trend {
                    bytes_per_second: 10.0,
                    source: TrendSource::Picture,
                }),
                ..CgroupView::default()
            },
        ],
        processes: vec![
            ProcessView {
                pid: 4242,
                name: "leaky-service".to_string(),
                pss_bytes: 700.0 * MIB as f64,
                rss_bytes: Some(750.0 * MIB as f64),
                swap_bytes: Some(0.0),
                ..ProcessView::default()
            },
            ProcessView {
                pid: 7,
                name: "oxcol".to_string(),
                pss_bytes: 6.5 * MIB as f64,
                rss_bytes: Some(9.0 * MIB as f64),
                swap_bytes: None,
                ..ProcessView::default()
            },
        ],
        ..Picture::default()
    }
}

#[test]
fn console_block_reads_well_and_aligns() {
    let text = render(&sample_picture(), Style::default());
    assert!(
        !text.contains('\x1b'),
        "no colour codes when not asked:\n{text}"
    );
    assert!(
        text.starts_with("oxcol memory picture · 01:02:03 UTC\n"),
        "{text}"
    );
    assert!(text.contains("812 MiB"), "{text}");
    assert!(text.contains("1.00 GiB"), "{text}");
    assert!(text.contains("79%"), "{text}");
    assert!(text.contains("3h12m at +2.10 MiB/min"), "{text}");
    assert!(text.contains("2.88 GiB"), "{text}");
    assert!(text.contains("no limit"), "{text}");
    assert!(text.contains("stable"), "10 B/s is stable:\n{text}");
    assert!(
        text.contains("memory some 1.5%/0.9% full 0.5%/0.3%"),
        "{text}"
    );
    assert!(text.contains("leaky-service"), "{text}");
    assert!(text.contains("700 MiB"), "{text}");
    assert!(
        text.trim_end()
            .ends_with("status page: http://127.0.0.1:55679/"),
        "{text}"
    );
    // Columns line up: each value column ends at the same place in every row.
    let lines: Vec<&str> = text.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.contains("working set"))
        .expect("a header");
    // In characters, as a terminal shows them (a shortened path holds a 3-byte `…`).
    let end_of = |line: &str, value: &str| {
        line.find(value)
            .map(|i| line[..i].chars().count() + value.chars().count())
    };
    assert_eq!(
        end_of(lines[header], "working set"),
        end_of(lines[header + 1], "812 MiB")
    );
    assert_eq!(
        end_of(lines[header], "working set"),
        end_of(lines[header + 2], "2.88 GiB")
    );
    let processes = lines
        .iter()
        .position(|l| l.contains("PSS"))
        .expect("processes");
    assert_eq!(
        end_of(lines[processes], "PSS"),
        end_of(lines[processes + 1], "700 MiB")
    );
    assert_eq!(
        end_of(lines[processes], "PSS"),
        end_of(lines[processes + 2], "6.50 MiB")
    );
}

#[test]
fn console_colours_only_when_asked_and_says_what_is_missing() {
    let colored = render(
        &sample_picture(),
        Style {
            color: true,
            ..Style::default()
        },
    );
    assert!(colored.contains("\x1b[1m"), "{colored}");
    let empty = render(&Picture::default(), Style::default());
    assert!(empty.contains("no working set yet"), "{empty}");
    assert!(empty.contains("status page: off"), "{empty}");
    let mut soon = sample_picture();
    soon.cgroups[0].time_to_limit_seconds = Some(300.0);
    let text = render(
        &soon,
        Style {
            color: true,
            ..Style::default()
        },
    );
    assert!(
        text.contains("\x1b[31m5m00s at +2.10 MiB/min"),
        "red when close:\n{text}"
    );
}

#[test]
fn human_units() {
    assert_eq!(console::human_bytes(0.0), "0 B");
    assert_eq!(console::human_bytes(1023.0), "1023 B");
    assert_eq!(console::human_bytes(1536.0), "1.50 KiB");
    assert_eq!(console::human_bytes(812.0 * MIB as f64), "812 MiB");
    assert_eq!(console::human_bytes(42.25 * MIB as f64), "42.2 MiB");
    assert_eq!(console::human_bytes(-2.0 * MIB as f64), "-2.00 MiB");
    assert_eq!(console::human_bytes(f64::NAN), "?");
    assert_eq!(console::human_duration(45.0), "45s");
    assert_eq!(console::human_duration(725.0), "12m05s");
    assert_eq!(console::human_duration(11_520.0), "3h12m");
    assert_eq!(console::human_duration(183_600.0), "2d03h");
}

#[test]
fn exporter_config_defaults_and_validation() {
    let config = exporter::Config::default();
    assert_eq!(config.interval.get(), Duration::from_secs(10));
    assert_eq!(config.top_processes, 5);
    assert!(config.validate().is_empty());
    let bad = exporter::Config {
        interval: oxcol_core::GoDuration::from_secs(0),
        top_processes: 5000,
        ..Default::default()
    };
    let problems = bad.validate();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("interval"), "{problems:?}");
}

#[test]
fn the_exporter_prints_once_per_interval_on_a_grid() {
    let config = exporter::Config {
        interval: oxcol_core::GoDuration::from_secs(10),
        color: exporter::ColorMode::Never,
        ..Default::default()
    };
    let picture = PictureHandle::default();
    let exporter = exporter::MemoryPictureExporter::new("memory_picture", &config, picture);
    let start = std::time::Instant::now();
    assert!(
        exporter.due_block(start).is_none(),
        "not before the first second"
    );
    let first = exporter
        .due_block(start + Duration::from_secs(1))
        .expect("the first block");
    assert!(first.starts_with("oxcol memory picture"), "{first}");
    let due = |after: u64| {
        exporter
            .due_block(start + Duration::from_secs(after))
            .is_some()
    };
    assert!(!due(5));
    // The next grid point is 11 s; data 2 s early (a fifth of the interval) prints it.
    assert!(due(9));
    assert!(!due(12));
    // A long pause: one block, and the grid moves on past it.
    assert!(due(65));
    assert!(!due(66));
    assert!(due(69));
}

#[test]
fn wanted_only_with_a_reader() {
    let parse = |yaml: &str| {
        let source = oxcol_config::Source::Text {
            name: "test".to_string(),
            text: yaml.to_string(),
        };
        let root = oxcol_config::load(&[source], &[], &|_| None).expect("the YAML loads");
        let (settings, errors) = crate::settings::read(&root);
        assert!(errors.is_empty(), "{errors:?}");
        let configs = crate::service::decode_all(&settings).expect("valid");
        (settings, configs)
    };
    let base = "receivers:\n  cgroup:\nexporters:\n  debug:\n  memory_picture:\nservice:\n  pipelines:\n    metrics:\n      receivers: [cgroup]\n      exporters: [EXPORTERS]\n";
    let (settings, configs) = parse(&base.replace("EXPORTERS", "debug"));
    assert!(!wanted(&settings, &configs));
    let (settings, configs) = parse(&base.replace("EXPORTERS", "debug, memory_picture"));
    assert!(wanted(&settings, &configs));
    let with_zpages = format!(
        "extensions:\n  zpages:\n    endpoint: 127.0.0.1:55999\n{}",
        base.replace("EXPORTERS", "debug")
            .replace("service:\n", "service:\n  extensions: [zpages]\n")
    );
    let (settings, configs) = parse(&with_zpages);
    assert!(wanted(&settings, &configs));
    let picture = PictureHandle::default();
    picture.configure(&settings, &configs);
    assert_eq!(
        picture.snapshot().status_page.as_deref(),
        Some("http://127.0.0.1:55999/")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_taps_its_pipelines_and_keeps_the_picture_across_a_reload() {
    let fixture = FixtureCopy::new("service");
    let yaml = format!(
        "receivers:\n  cgroup:\n    collection_interval: 100ms\n    self: false\n    root_path: {}\n    paths: [\"{CONTAINER}\"]\nexporters:\n  memory_picture:\n    color: never\nservice:\n  telemetry:\n    metrics:\n      level: none\n  pipelines:\n    metrics:\n      receivers: [cgroup]\n      exporters: [memory_picture]\n",
        fixture.root.display()
    );
    let source = oxcol_config::Source::Text {
        name: "test".to_string(),
        text: yaml,
    };
    let root = oxcol_config::load(&[source], &[], &|_| None).expect("the YAML loads");
    let (settings, errors) = crate::settings::read(&root);
    assert!(errors.is_empty(), "{errors:?}");
    let configs = crate::service::decode_all(&settings).expect("valid");
    let registry = Registry::new();
    let mut kept = crate::service::Kept::default();
    let running = crate::service::start(&settings, &configs, Arc::clone(&registry), &mut kept)
        .await
        .expect("starts");
    let picture = kept.picture.clone().expect("the service made the picture");
    let seen = |picture: &PictureHandle| {
        picture
            .snapshot()
            .cgroups
            .iter()
            .find(|c| c.path == CONTAINER)
            .map(|c| c.working_set_history.len())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen(&picture) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the tap saw no scrape"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A reload: the next start gets the same picture, with what it held.
    let mut kept = running.stop(&crate::service::Keep::default()).await;
    let carried = kept.picture.clone().expect("kept across the stop");
    assert!(Arc::ptr_eq(&carried.inner, &picture.inner));
    let running = crate::service::start(&settings, &configs, registry, &mut kept)
        .await
        .expect("starts again");
    assert!(
        kept.picture
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(&p.inner, &picture.inner))
    );
    assert!(seen(&picture) >= 1);
    running.shutdown().await;
}

#[test]
fn the_pictures_own_trend_is_the_ewma_processors_math() {
    // Irregular scrapes and uneven growth: the picture's own trend (raw data) equals the
    // processor's `.rate.ewma` with the same half-life (2m, its default) and warm-up.
    let fixture = FixtureCopy::new("same-math");
    let config: oxcol_processors::ewma::Config = serde_json::from_value(serde_json::json!({
        "metrics": [{"match": "cgroup.memory.working_set", "rate": true}],
    }))
    .expect("an ewma config");
    let mut ewma = oxcol_processors::ewma::EwmaProcessor::new("ewma", &config, None)
        .expect("the ewma processor builds");
    let picture = PictureHandle::default();
    let mut collector = fixture.collector();
    let mut at = START_SECONDS;
    let mut processor_rate = None;
    for (i, (gap, growth)) in [
        (7, 3),
        (13, 1),
        (10, 8),
        (4, 2),
        (21, 5),
        (9, 0),
        (11, 6),
        (15, 4),
    ]
    .into_iter()
    .enumerate()
    {
        at += gap;
        fixture.set_memory_current(FIXTURE_CURRENT + (i as u64 * 3 + growth) * MIB);
        let batch = Batch::from_metrics(collector.collect(UNIX_EPOCH + Duration::from_secs(at)));
        picture.observe(&batch);
        let out = ewma.process(batch).expect("ewma processes");
        if let oxcol_core::Data::Metrics(resources) = out.data() {
            processor_rate = resources
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .filter(|m| m.name == "cgroup.memory.working_set.rate.ewma")
                .find_map(|m| match &m.data {
                    Some(metric::Data::Gauge(g)) => g.data_points.first().and_then(|p| p.value),
                    _ => None,
                })
                .or(processor_rate);
        }
    }
    let Some(number_data_point::Value::AsDouble(expected)) = processor_rate else {
        panic!("the processor emitted a rate after warm-up");
    };
    let snapshot = picture.snapshot();
    let trend = container(&snapshot).trend.expect("a trend");
    assert_eq!(trend.source, TrendSource::Picture);
    assert!(
        (trend.bytes_per_second - expected).abs() <= expected.abs() * 1e-12,
        "{} vs {expected}",
        trend.bytes_per_second
    );
}

fn process_batch(processes: &[(i64, &str, f64)], ts: u64) -> Batch {
    Batch::from_metrics(
        processes
            .iter()
            .map(|(pid, name, pss)| {
                resource(
                    vec![
                        int("process.pid", *pid),
                        text("process.executable.name", name),
                    ],
                    vec![gauge("process.smaps.pss", vec![(vec![], ts, *pss)])],
                )
            })
            .collect(),
    )
}

#[test]
fn a_process_that_exited_leaves_the_list_after_missing_its_reports() {
    let picture = PictureHandle::default();
    for t in (0..=60).step_by(10) {
        let mut processes = vec![(1, "server", 100.0)];
        if t <= 20 {
            processes.push((2, "build", 500.0));
        }
        picture.observe(&process_batch(&processes, seconds(t)));
        let names: Vec<String> = picture
            .snapshot()
            .processes
            .iter()
            .map(|p| p.name.clone())
            .collect();
        // Missing from two reports is tolerated (a slow scrape); from three it is gone.
        let expected: &[&str] = if t <= 40 {
            &["build", "server"]
        } else {
            &["server"]
        };
        assert_eq!(names, expected, "at {t}s");
    }
}

/// One scrape of two pods through the real `gofit` processor (joined by `k8s.pod.uid`):
/// each pod's cgroup limits and its Go service's GOMAXPROCS and GOMEMLIMIT
/// (client_golang's names; `None` = unset, which the runtime reports as MaxInt64).
fn gofit_scrape(
    gofit: &mut oxcol_processors::gofit::GofitProcessor,
    ts: u64,
    services: &[(&str, f64, Option<f64>)],
) -> Batch {
    let pods = [
        ("checkout", "pod-a", 1.0, 512.0 * MIB as f64),
        ("payments", "pod-b", 2.0, 1024.0 * MIB as f64),
    ];
    let mut resources = Vec::new();
    for (service, uid, cpus, memory) in pods {
        resources.push(resource(
            vec![
                text("k8s.pod.uid", uid),
                text("cgroup.path", &format!("/kubepods/pod{uid}")),
            ],
            vec![
                gauge("cgroup.cpu.max", vec![(vec![], ts, cpus)]),
                gauge("cgroup.memory.max", vec![(vec![], ts, memory)]),
            ],
        ));
        let Some((_, gomaxprocs, gomemlimit)) = services.iter().find(|s| s.0 == service) else {
            continue;
        };
        resources.push(resource(
            vec![
                text("service.name", service),
                text("service.instance.id", "10.0.0.7:8080"),
                text("k8s.pod.uid", uid),
                text("k8s.pod.name", &format!("{service}-7d9f")),
            ],
            vec![
                gauge(
                    "go_sched_gomaxprocs_threads",
                    vec![(vec![], ts, *gomaxprocs)],
                ),
                gauge(
                    "go_gc_gomemlimit_bytes",
                    vec![(vec![], ts, gomemlimit.unwrap_or(9.223_372_036_854_776e18))],
                ),
            ],
        ));
    }
    gofit
        .process(Batch::from_metrics(resources))
        .expect("gofit processes the scrape")
}

fn gofit_processor() -> oxcol_processors::gofit::GofitProcessor {
    let config: oxcol_processors::gofit::Config =
        serde_json::from_value(serde_json::json!({"join_on": ["k8s.pod.uid"]}))
            .expect("a gofit config");
    oxcol_processors::gofit::GofitProcessor::new("gofit", &config, None)
        .expect("the gofit processor builds")
}

#[test]
fn gofit_findings_show_per_service_with_inputs_and_fix_and_cleared_ones_go() {
    let mut gofit = gofit_processor();
    let picture = PictureHandle::default();
    assert_eq!(picture.snapshot().go_fit_checked_unix_ms, None);
    // checkout: GOMAXPROCS 8 on 1 CPU, no GOMEMLIMIT under 512 MiB. payments: GOMAXPROCS 4
    // on 2 CPUs, GOMEMLIMIT 1000 MiB leaving 2.3% of its 1 GiB.
    let misfits = [
        ("checkout", 8.0, None),
        ("payments", 4.0, Some(1000.0 * MIB as f64)),
    ];
    // Sent encoded (an OTLP relay): decoded because gofit's finding metric is a needle.
    let out = gofit_scrape(&mut gofit, seconds(0), &misfits);
    let oxcol_core::Data::Metrics(resources) = out.data() else {
        panic!("gofit's output is decoded");
    };
    let bytes = ExportMetricsServiceRequest {
        resource_metrics: resources.clone(),
    }
    .encode_to_vec();
    let encoded =
        Batch::from_encoded(oxcol_core::Signal::Metrics, bytes.into()).expect("a valid request");
    assert!(model::relevant(&encoded, &model::Needles::new(&[])).is_some());
    picture.observe(&encoded);
    let snapshot = picture.snapshot();
    let found: Vec<(&str, Vec<&str>)> = snapshot
        .go_fit
        .iter()
        .map(|s| {
            (
                s.service.as_str(),
                s.findings.iter().map(|f| f.finding.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (
                "checkout",
                vec!["gomaxprocs_above_cpu_limit", "gomemlimit_unset"]
            ),
            (
                "payments",
                vec![
                    "gomaxprocs_above_cpu_limit",
                    "gomemlimit_too_close_to_memory_limit"
                ]
            ),
        ]
    );
    let checkout = &snapshot.go_fit[0];
    assert_eq!(checkout.instance.as_deref(), Some("10.0.0.7:8080"));
    assert_eq!(checkout.pod.as_deref(), Some("checkout-7d9f"));
    assert_eq!(
        (checkout.gomaxprocs, checkout.cpu_limit),
        (Some(8.0), Some(1.0))
    );
    assert_eq!(
        (checkout.gomemlimit, checkout.memory_limit),
        (None, Some(512.0 * MIB as f64))
    );
    let fixes: Vec<&str> = checkout.findings.iter().map(|f| f.fix.as_str()).collect();
    assert_eq!(
        fixes,
        [
            "set GOMAXPROCS=1, or build with Go 1.25+ which follows the CPU limit",
            "set GOMEMLIMIT=460MiB (memory.max less 10% for non-heap memory)",
        ]
    );
    let payments = &snapshot.go_fit[1];
    assert_eq!(
        (payments.gomemlimit, payments.memory_limit),
        (Some(1000.0 * MIB as f64), Some(1024.0 * MIB as f64))
    );
    assert_eq!(
        payments.findings[1].fix, "set GOMEMLIMIT=921MiB or lower",
        "1 GiB less 10%, rounded down to a MiB"
    );

    // payments is fixed (GOMAXPROCS 2, GOMEMLIMIT 900 MiB): its findings clear and it goes;
    // checkout still does not fit. The same batch seen twice changes nothing.
    let fixed = [
        ("checkout", 8.0, None),
        ("payments", 2.0, Some(900.0 * MIB as f64)),
    ];
    let batch = gofit_scrape(&mut gofit, seconds(15), &fixed);
    let oxcol_core::Data::Metrics(resources) = batch.data() else {
        panic!("decoded");
    };
    let reports = resources
        .iter()
        .flat_map(|r| r.scope_metrics.iter().flat_map(|s| s.metrics.iter()))
        .filter(|m| m.name == oxcol_processors::gofit::METRIC_FINDING)
        .count();
    assert_eq!(reports, 2, "both services are reported (0 = cleared)");
    picture.observe(&batch);
    picture.observe(&batch);
    let snapshot = picture.snapshot();
    let services: Vec<&str> = snapshot.go_fit.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(services, ["checkout"]);
    assert_eq!(snapshot.go_fit[0].findings.len(), 2);
    assert_eq!(
        snapshot.go_fit_checked_unix_ms,
        Some(seconds(15) / 1_000_000)
    );
    // The console prints the section only when there are findings.
    let text = render(&picture.snapshot(), Style::default());
    assert!(
        text.contains("  checkout/10.0.0.7:8080 (pod checkout-7d9f): GOMAXPROCS 8 vs CPU limit 1 · GOMEMLIMIT unset vs memory limit 512 MiB\n"),
        "{text}"
    );
    assert!(
        text.contains("    gomaxprocs_above_cpu_limit: set GOMAXPROCS=1, or build with Go 1.25+ which follows the CPU limit\n"),
        "{text}"
    );
    assert!(!text.contains("payments"), "{text}");
    let fitting = render(&sample_picture(), Style::default());
    assert!(!fitting.contains("Go runtime fit"), "{fitting}");

    // checkout stops reporting while payments (which fits) goes on: checkout is hidden
    // once it has missed more than 2.5 of its 15 s intervals.
    let payments_only = [("payments", 2.0, Some(900.0 * MIB as f64))];
    for t in [30, 45] {
        picture.observe(&gofit_scrape(&mut gofit, seconds(t), &payments_only));
    }
    assert_eq!(
        picture.snapshot().go_fit.len(),
        1,
        "30 s behind: still shown"
    );
    picture.observe(&gofit_scrape(&mut gofit, seconds(60), &payments_only));
    let snapshot = picture.snapshot();
    assert!(snapshot.go_fit.is_empty(), "{:#?}", snapshot.go_fit);
    assert_eq!(
        snapshot.go_fit_checked_unix_ms,
        Some(seconds(60) / 1_000_000)
    );
}

#[test]
fn go_fit_services_are_bounded_and_the_fix_follows_the_configured_headroom() {
    let picture = PictureHandle::new(Limits {
        max_go_services: 1,
        ..Limits::default()
    });
    picture.model().set_fit_headroom(Some(0.2));
    let mut gofit = gofit_processor();
    picture.observe(&gofit_scrape(
        &mut gofit,
        seconds(0),
        &[("checkout", 8.0, None), ("payments", 4.0, None)],
    ));
    let snapshot = picture.snapshot();
    assert_eq!(snapshot.go_fit.len(), 1, "{:#?}", snapshot.go_fit);
    assert_eq!(snapshot.go_fit[0].service, "checkout");
    assert_eq!(snapshot.dropped_series, 1);
    assert_eq!(
        snapshot.go_fit[0].findings[1].fix,
        "set GOMEMLIMIT=409MiB (memory.max less 20% for non-heap memory)"
    );
    // Once checkout is fixed, payments gets the room at its next report.
    picture.observe(&gofit_scrape(
        &mut gofit,
        seconds(15),
        &[
            ("checkout", 1.0, Some(400.0 * MIB as f64)),
            ("payments", 4.0, None),
        ],
    ));
    let services: Vec<String> = picture
        .snapshot()
        .go_fit
        .iter()
        .map(|s| s.service.clone())
        .collect();
    assert_eq!(services, ["payments"]);
}
