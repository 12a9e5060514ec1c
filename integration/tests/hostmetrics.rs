//! The `host_metrics` receiver (the Collector's type name since v0.154; `hostmetrics` is its older spelling)
//! through the real `oxcol` binary: this machine's /proc -> otlp exporter -> an in-process
//! sink that records every request. Checks the metric names, units, types and attributes
//! the Collector documents, and that the memory states add up to MemTotal.
//!
//! Needs `target/debug/oxcol` (`cargo build -p oxcol`). Every wait is bounded.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use common::{Oxcol, otlp_exporter};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric, number_data_point};
use oxcol_integration::sink::{self, SinkConfig};
use prost::Message;

/// (kind, unit, attribute keys) of a metric as exported.
type Shape = (String, String, BTreeSet<String>);

fn shape(m: &Metric) -> Shape {
    let (kind, points) = match &m.data {
        Some(metric::Data::Gauge(g)) => ("gauge".to_string(), &g.data_points),
        Some(metric::Data::Sum(s)) => (
            format!(
                "sum monotonic={} temporality={}",
                s.is_monotonic, s.aggregation_temporality
            ),
            &s.data_points,
        ),
        _ => panic!("{} is neither a gauge nor a sum", m.name),
    };
    let keys = points
        .iter()
        .flat_map(|p| p.attributes.iter().map(|a| a.key.clone()))
        .collect();
    (kind, m.unit.clone(), keys)
}

fn recorded(dir: &Path) -> Vec<ExportMetricsServiceRequest> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter(|p| p.to_string_lossy().ends_with("metrics.pb"))
        .filter_map(|p| std::fs::read(p).ok())
        .filter_map(|b| ExportMetricsServiceRequest::decode(b.as_slice()).ok())
        .collect()
}

fn int_points(m: &Metric) -> Vec<(String, i64)> {
    let Some(metric::Data::Sum(s)) = &m.data else {
        return Vec::new();
    };
    s.data_points
        .iter()
        .filter_map(|p| {
            let state = p
                .attributes
                .iter()
                .find(|a| a.key == "state")?
                .value
                .as_ref()?
                .value
                .as_ref()?;
            let opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(state) =
                state
            else {
                return None;
            };
            let Some(number_data_point::Value::AsInt(v)) = p.value else {
                return None;
            };
            Some((state.clone(), v))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_metrics_reach_the_sink_with_the_collectors_names() {
    let record =
        std::env::temp_dir().join(format!("oxcol-hostmetrics-sink-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&record);
    std::fs::create_dir_all(&record).unwrap();
    let sink = sink::start(SinkConfig {
        record_dir: Some(record.clone()),
        ..SinkConfig::default()
    })
    .await
    .expect("sink starts");
    let components = format!(
        "  host_metrics:\n    collection_interval: 300ms\n    initial_delay: 0s\n    scrapers:\n      cpu:\n      memory:\n      load:\n      network:\n      disk:\n      filesystem:\n      paging:\n      processes:\n      system:\n      process:\n        mute_process_exe_error: true\n        include: {{names: [oxcol], match_type: strict}}\n\
exporters:\n{}",
        otlp_exporter("otlp", &sink, "")
    );
    let oxcol = Oxcol::start(
        "",
        &components,
        "    metrics:\n      receivers: [otlp, host_metrics]\n      exporters: [otlp]\n",
    )
    .await;

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut shapes: BTreeMap<String, Shape> = BTreeMap::new();
    let mut memory_checked = false;
    let mut own_process = false;
    while std::time::Instant::now() < deadline {
        for request in recorded(&record) {
            for rm in &request.resource_metrics {
                let pid = rm
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|a| a.key == "process.pid"))
                    .and_then(|a| a.value.as_ref()?.value.clone());
                if pid
                    == Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(
                            i64::from(oxcol.pid()),
                        ),
                    )
                {
                    own_process = true;
                }
                for sm in &rm.scope_metrics {
                    for m in &sm.metrics {
                        shapes.insert(m.name.clone(), shape(m));
                        if m.name == "system.memory.usage" {
                            // used = MemTotal - MemAvailable: within 1 GiB of a read made now.
                            let points: BTreeMap<String, i64> = int_points(m).into_iter().collect();
                            let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
                            let kib = |key: &str| -> i64 {
                                meminfo
                                    .lines()
                                    .find(|l| l.starts_with(key))
                                    .unwrap()
                                    .split_whitespace()
                                    .nth(1)
                                    .unwrap()
                                    .parse()
                                    .unwrap()
                            };
                            let used = (kib("MemTotal:") - kib("MemAvailable:")) * 1024;
                            assert!(
                                (points["used"] - used).abs() < 1 << 30,
                                "memory states {points:?}, used now {used}"
                            );
                            assert_eq!(points.len(), 6, "{points:?}");
                            memory_checked = true;
                        }
                    }
                }
            }
        }
        if shapes.len() >= 29 && memory_checked && own_process {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cumulative = "sum monotonic=true temporality=2";
    let updown = "sum monotonic=false temporality=2";
    let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let expected: Vec<(&str, &str, &str, &[&str])> = vec![
        // `cpu` is opt-in in the Collector: summed over the CPUs by default.
        ("system.cpu.time", cumulative, "s", &["state"]),
        ("system.memory.usage", updown, "By", &["state"]),
        ("system.cpu.load_average.1m", "gauge", "{thread}", &[]),
        ("system.cpu.load_average.5m", "gauge", "{thread}", &[]),
        ("system.cpu.load_average.15m", "gauge", "{thread}", &[]),
        (
            "system.network.io",
            cumulative,
            "By",
            &["device", "direction"],
        ),
        (
            "system.network.packets",
            cumulative,
            "{packets}",
            &["device", "direction"],
        ),
        (
            "system.network.errors",
            cumulative,
            "{errors}",
            &["device", "direction"],
        ),
        (
            "system.network.dropped",
            cumulative,
            "{packets}",
            &["device", "direction"],
        ),
        (
            "system.network.connections",
            updown,
            "{connections}",
            &["protocol", "state"],
        ),
        ("system.disk.io", cumulative, "By", &["device", "direction"]),
        (
            "system.disk.operations",
            cumulative,
            "{operations}",
            &["device", "direction"],
        ),
        ("system.disk.io_time", cumulative, "s", &["device"]),
        (
            "system.disk.operation_time",
            cumulative,
            "s",
            &["device", "direction"],
        ),
        ("system.disk.weighted_io_time", cumulative, "s", &["device"]),
        (
            "system.disk.pending_operations",
            updown,
            "{operations}",
            &["device"],
        ),
        (
            "system.disk.merged",
            cumulative,
            "{operations}",
            &["device", "direction"],
        ),
        ("system.cpu.logical.count", updown, "{cpu}", &[]),
        (
            "system.filesystem.usage",
            updown,
            "By",
            &["device", "mode", "mountpoint", "type", "state"],
        ),
        (
            "system.filesystem.inodes.usage",
            updown,
            "{inodes}",
            &["device", "mode", "mountpoint", "type", "state"],
        ),
        // No swap on the test machines: system.paging.usage has no device to report.
        (
            "system.paging.operations",
            cumulative,
            "{operations}",
            &["direction", "type"],
        ),
        ("system.paging.faults", cumulative, "{faults}", &["type"]),
        ("system.processes.count", updown, "{processes}", &["status"]),
        ("system.processes.created", cumulative, "{processes}", &[]),
        ("system.uptime", "gauge", "s", &[]),
        ("process.cpu.time", cumulative, "s", &["state"]),
        ("process.memory.usage", updown, "By", &[]),
        ("process.memory.virtual", updown, "By", &[]),
        ("process.disk.io", cumulative, "By", &["direction"]),
    ];
    for (name, kind, unit, attributes) in &expected {
        let got = shapes.get(*name).unwrap_or_else(|| {
            panic!(
                "{name} never reached the sink; got {:?}\nlog:\n{}",
                shapes.keys(),
                oxcol.log()
            )
        });
        assert_eq!(
            got,
            &(kind.to_string(), unit.to_string(), keys(attributes)),
            "{name}"
        );
    }
    assert_eq!(
        shapes.len(),
        expected.len(),
        "only the default metrics: {:?}",
        shapes.keys()
    );
    assert!(memory_checked);
    assert!(
        own_process,
        "the oxcol process itself is scraped by the process scraper"
    );
    drop(oxcol);
    let _ = std::fs::remove_dir_all(&record);
}
