//! Fixtures in `fixtures/proc` are copies of this machine's /proc files. Each test reads
//! the expected numbers from the fixture text itself with a plain split, independent of the
//! scraper's parsers. Edits to the recordings: `proc/1/` keeps only `mountinfo` (PID 1 is
//! the sandbox's own init here), with its one sandbox-specific mount line removed;
//! `proc/3231/exe` is a symlink standing for the kernel's `exe` link.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, metric};

use super::*;
use crate::cgroup::emit::lookup::{is_gauge, is_monotonic_sum, unit, value};

fn fixture_root() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/hostmetrics/fixtures"
    ))
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_root().join("proc").join(name)).expect("fixture exists")
}

fn config(json: serde_json::Value) -> Config {
    serde_json::from_value(json).expect("config decodes")
}

fn collect(config: &Config) -> Vec<ResourceMetrics> {
    assert_eq!(config.validate(), Vec::<String>::new());
    let mut collector = Collector::new("hostmetrics", config, None).expect("collector builds");
    collector
        .collect(SystemTime::now())
        .expect("scrape succeeds")
}

/// The `ResourceMetrics` of one scraper, by its scope name.
fn scraper<'a>(out: &'a [ResourceMetrics], name: &str) -> &'a ResourceMetrics {
    let scope = format!("{}{name}scraper", emit::SCOPE_PREFIX);
    out.iter()
        .find(|rm| {
            rm.scope_metrics
                .iter()
                .any(|s| s.scope.as_ref().is_some_and(|sc| sc.name == scope))
        })
        .unwrap_or_else(|| panic!("no output of the {name} scraper"))
}

fn is_updown(rm: &ResourceMetrics, name: &str) -> bool {
    crate::cgroup::emit::lookup::find(rm, name)
        .is_some_and(|m| matches!(&m.data, Some(metric::Data::Sum(s)) if !s.is_monotonic && s.aggregation_temporality == 2))
}

fn point_count(rm: &ResourceMetrics, name: &str) -> usize {
    match crate::cgroup::emit::lookup::find(rm, name).and_then(|m| m.data.as_ref()) {
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        _ => 0,
    }
}

fn fixture_config(scrapers: serde_json::Value) -> Config {
    config(serde_json::json!({"root_path": fixture_root(), "scrapers": scrapers}))
}

/// `key value value ...` lines of a fixture, split on whitespace.
fn fixture_words(name: &str, first: &str) -> Vec<String> {
    fixture(name)
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|w| w.first().map(String::as_str) == Some(first))
        .unwrap_or_else(|| panic!("{first} in {name}"))
}

#[test]
fn config_defaults_and_scraper_with_no_value() {
    let c = config(serde_json::json!({"scrapers": {"cpu": null, "memory": {}}}));
    assert_eq!(c.collection_interval.get(), Duration::from_secs(60));
    assert_eq!(c.initial_delay.get(), Duration::from_secs(1));
    assert!(
        c.scrapers.cpu.is_some(),
        "`cpu:` with no value turns the scraper on"
    );
    assert!(c.scrapers.memory.is_some());
    assert!(c.scrapers.load.is_none());
    assert_eq!(c.validate(), Vec::<String>::new());
    assert_eq!(c.proc_dir(), PathBuf::from("/proc"));
    let c = config(serde_json::json!({"root_path": "/hostfs", "scrapers": {"cpu": null}}));
    assert_eq!(c.proc_dir(), PathBuf::from("/hostfs/proc"));
}

#[test]
fn validate_names_every_problem() {
    let c = config(serde_json::json!({
        "collection_interval": "0s",
        "root_path": "relative",
        "scrapers": {
            "nfs": null,
            "process": {"include": {"names": ["("], "match_type": "regexp"}, "resource_attributes": {"process.cgroup": {"enabled": true}}},
            "cpu": {"metrics": {"system.cpu.nope": {"enabled": true}, "system.cpu.physical.count": {"enabled": true}}},
            "network": {"include": {"interfaces": ["eth0"]}},
            "disk": {"exclude": {"devices": ["("], "match_type": "regexp"}},
            "memory": {"metrics": {
                "system.memory.usage": {"attributes": ["state", "cpu"], "aggregation_strategy": "median"},
                "system.memory.limit": {"attributes": []}
            }}
        }
    }));
    let errors = c.validate();
    let expect = [
        "collection_interval",
        "root_path",
        "scrapers.nfs:",
        "scrapers.process.include: names: \"(\"",
        "scrapers.process.resource_attributes.process.cgroup: oxcol does not emit",
        "system.cpu.nope",
        "system.cpu.physical.count: oxcol does not emit",
        "scrapers.network.include: match_type",
        "scrapers.disk.exclude: devices",
        "system.memory.usage.attributes: \"cpu\" is not an attribute of this metric; its attributes are: state",
        "system.memory.usage.aggregation_strategy: \"median\"",
        "system.memory.limit: this metric has no attributes",
    ];
    for needle in expect {
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "no error about {needle:?} in {errors:#?}"
        );
    }
    assert_eq!(errors.len(), expect.len(), "{errors:#?}");
    // A not-done metric switched off explicitly is fine.
    let c = config(
        serde_json::json!({"scrapers": {"cpu": {"metrics": {"system.cpu.physical.count": {"enabled": false}}}}}),
    );
    assert_eq!(c.validate(), Vec::<String>::new());
    assert!(config(serde_json::json!({})).validate()[0].contains("at least one scraper"));
    assert!(
        serde_json::from_value::<Config>(serde_json::json!({"scrapers": {"gpu": null}})).is_err()
    );
    assert!(
        serde_json::from_value::<Config>(serde_json::json!({"scrapers": {"cpu": {"metric": {}}}}))
            .is_err()
    );
}

#[test]
fn cpu_time_matches_the_proc_stat_fixture() {
    let hz = crate::cgroup::emit::clock_ticks_per_second() as f64;
    let text = fixture("stat");
    let cpus: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w[0].starts_with("cpu") && w[0] != "cpu")
        .collect();
    assert!(cpus.len() > 1, "the fixture has several CPUs");
    let states = [
        ("user", 1),
        ("nice", 2),
        ("system", 3),
        ("idle", 4),
        ("wait", 5),
        ("interrupt", 6),
        ("softirq", 7),
        ("steal", 8),
    ];
    // Per CPU with the opt-in `cpu` attribute.
    let per_cpu = collect(&fixture_config(serde_json::json!({"cpu": {"metrics": {
        "system.cpu.time": {"attributes": ["cpu", "state"]}
    }}})));
    let rm = scraper(&per_cpu, "cpu");
    assert_eq!(
        point_count(rm, "system.cpu.time"),
        cpus.len() * 8,
        "8 states per CPU, no aggregate line"
    );
    for w in &cpus {
        for (state, column) in states {
            let ticks: f64 = w[column].parse().unwrap();
            assert_eq!(
                value(rm, "system.cpu.time", &[("cpu", w[0]), ("state", state)]),
                Some(ticks / hz),
                "{} {state}",
                w[0]
            );
        }
    }
    // By default, as in the Collector: `state` only, summed over the CPUs in their order.
    let out = collect(&fixture_config(serde_json::json!({"cpu": null})));
    let rm = scraper(&out, "cpu");
    assert!(is_monotonic_sum(rm, "system.cpu.time"));
    assert_eq!(unit(rm, "system.cpu.time"), Some("s"));
    assert_eq!(point_count(rm, "system.cpu.time"), 8);
    for (state, column) in states {
        let sum = cpus
            .iter()
            .map(|w| w[column].parse::<f64>().unwrap() / hz)
            .fold(0.0, |a, b| a + b);
        assert_eq!(
            value(rm, "system.cpu.time", &[("state", state)]),
            Some(sum),
            "{state}"
        );
    }
    // `aggregation_strategy: max` over the CPUs.
    let max = collect(&fixture_config(serde_json::json!({"cpu": {"metrics": {
        "system.cpu.time": {"aggregation_strategy": "max"}
    }}})));
    let user_max = cpus
        .iter()
        .map(|w| w[1].parse::<f64>().unwrap() / hz)
        .fold(f64::MIN, f64::max);
    assert_eq!(
        value(
            scraper(&max, "cpu"),
            "system.cpu.time",
            &[("state", "user")]
        ),
        Some(user_max)
    );
    assert_eq!(
        crate::cgroup::emit::lookup::find(rm, "system.cpu.time").map(|m| m.description.as_str()),
        Some("Total seconds each logical CPU spent on each mode."),
        "the Collector's description"
    );
    // Off by default.
    assert!(crate::cgroup::emit::lookup::find(rm, "system.cpu.utilization").is_none());
    // On by default: the `processor` lines of the recorded /proc/cpuinfo.
    let processors = fixture("cpuinfo")
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count() as f64;
    assert_eq!(value(rm, "system.cpu.logical.count", &[]), Some(processors));
}

#[test]
fn cpu_utilization_is_the_share_of_elapsed_ticks() {
    let mut first = String::new();
    let mut second = String::new();
    first.push_str("cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 10 0 10 80 0 0 0 0 0 0\n");
    first.push_str("cpu1 10 0 10 80 0 0 0 0 0 0\n");
    // cpu0 +50 ticks: user +20, system +5, idle +25; cpu1 +50 idle.
    second.push_str("cpu  30 0 15 105 0 0 0 0 0 0\ncpu0 30 0 15 105 0 0 0 0 0 0\n");
    second.push_str("cpu1 10 0 10 130 0 0 0 0 0 0\n");
    let dir = std::env::temp_dir().join(format!("oxcol-hostmetrics-cpu-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("proc")).unwrap();
    std::fs::write(dir.join("proc/stat"), &first).unwrap();
    let c = config(
        serde_json::json!({"root_path": dir, "scrapers": {"cpu": {"metrics": {
            "system.cpu.time": {"enabled": false},
            "system.cpu.utilization": {"enabled": true, "attributes": ["cpu", "state"]},
            "system.cpu.logical.count": {"enabled": true}
        }}}}),
    );
    let mut averaged = Collector::new(
        "h",
        &config(
            serde_json::json!({"root_path": dir, "scrapers": {"cpu": {"metrics": {
                "system.cpu.utilization": {"enabled": true}
            }}}}),
        ),
        None,
    )
    .unwrap();
    averaged.collect(SystemTime::now()).unwrap();
    let mut collector = Collector::new("h", &c, None).unwrap();
    let out = collector.collect(SystemTime::now()).unwrap();
    let rm = scraper(&out, "cpu");
    assert!(
        crate::cgroup::emit::lookup::find(rm, "system.cpu.time").is_none(),
        "disabled"
    );
    assert!(
        crate::cgroup::emit::lookup::find(rm, "system.cpu.utilization").is_none(),
        "no previous scrape yet"
    );
    assert_eq!(value(rm, "system.cpu.logical.count", &[]), Some(2.0));
    assert!(is_updown(rm, "system.cpu.logical.count"));
    std::fs::write(dir.join("proc/stat"), &second).unwrap();
    // By default the CPUs' shares are averaged, as in the Collector.
    let out = averaged.collect(SystemTime::now()).unwrap();
    let rm = scraper(&out, "cpu");
    assert_eq!(point_count(rm, "system.cpu.utilization"), 8);
    assert_eq!(
        value(rm, "system.cpu.utilization", &[("state", "user")]),
        Some(0.2)
    );
    assert_eq!(
        value(rm, "system.cpu.utilization", &[("state", "idle")]),
        Some(0.75)
    );
    let out = collector.collect(SystemTime::now()).unwrap();
    let rm = scraper(&out, "cpu");
    assert!(is_gauge(rm, "system.cpu.utilization"));
    assert_eq!(
        value(
            rm,
            "system.cpu.utilization",
            &[("cpu", "cpu0"), ("state", "user")]
        ),
        Some(0.4)
    );
    assert_eq!(
        value(
            rm,
            "system.cpu.utilization",
            &[("cpu", "cpu0"), ("state", "system")]
        ),
        Some(0.1)
    );
    assert_eq!(
        value(
            rm,
            "system.cpu.utilization",
            &[("cpu", "cpu0"), ("state", "idle")]
        ),
        Some(0.5)
    );
    assert_eq!(
        value(
            rm,
            "system.cpu.utilization",
            &[("cpu", "cpu0"), ("state", "steal")]
        ),
        Some(0.0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn memory_matches_the_meminfo_fixture() {
    let out = collect(&fixture_config(serde_json::json!({"memory": {"metrics": {
        "system.memory.utilization": {"enabled": true},
        "system.memory.limit": {"enabled": true},
        "system.linux.memory.available": {"enabled": true},
        "system.linux.memory.dirty": {"enabled": true}
    }}})));
    let rm = scraper(&out, "memory");
    let kib = |key: &str| {
        fixture_words("meminfo", &format!("{key}:"))[1]
            .parse::<f64>()
            .unwrap()
            * 1024.0
    };
    let (total, free, buffers, cached, srec, sunrec) = (
        kib("MemTotal"),
        kib("MemFree"),
        kib("Buffers"),
        kib("Cached"),
        kib("SReclaimable"),
        kib("SUnreclaim"),
    );
    assert!(is_updown(rm, "system.memory.usage"));
    assert_eq!(unit(rm, "system.memory.usage"), Some("By"));
    let usage = |state| value(rm, "system.memory.usage", &[("state", state)]).unwrap();
    assert_eq!(usage("free"), free);
    assert_eq!(usage("buffered"), buffers);
    assert_eq!(
        usage("cached"),
        cached + srec,
        "gopsutil counts reclaimable slab as cache"
    );
    assert_eq!(usage("slab_reclaimable"), srec);
    assert_eq!(usage("slab_unreclaimable"), sunrec);
    // The Collector's UseLinuxMemAvailable gate (beta, on by default in v0.161).
    assert_eq!(usage("used"), total - kib("MemAvailable"));
    assert_eq!(value(rm, "system.memory.limit", &[]), Some(total));
    assert_eq!(
        value(rm, "system.linux.memory.available", &[]),
        Some(kib("MemAvailable"))
    );
    assert_eq!(
        value(rm, "system.linux.memory.dirty", &[]),
        Some(kib("Dirty"))
    );
    assert!(is_gauge(rm, "system.memory.utilization"));
    assert_eq!(
        value(rm, "system.memory.utilization", &[("state", "free")]),
        Some(free / total)
    );
}

#[test]
fn load_matches_the_loadavg_fixture_and_cpu_average_divides() {
    let words = fixture_words(
        "loadavg",
        fixture("loadavg").split_whitespace().next().unwrap(),
    );
    let out = collect(&fixture_config(serde_json::json!({"load": null})));
    let rm = scraper(&out, "load");
    for (name, word) in [
        ("system.cpu.load_average.1m", 0),
        ("system.cpu.load_average.5m", 1),
        ("system.cpu.load_average.15m", 2),
    ] {
        assert!(is_gauge(rm, name));
        assert_eq!(unit(rm, name), Some("{thread}"));
        assert_eq!(
            value(rm, name, &[]),
            Some(words[word].parse::<f64>().unwrap()),
            "{name}"
        );
    }
    let out = collect(&fixture_config(
        serde_json::json!({"load": {"cpu_average": true}}),
    ));
    let cpus = load::affinity_cpus() as f64;
    let got = value(scraper(&out, "load"), "system.cpu.load_average.5m", &[]).unwrap();
    assert_eq!(got, words[1].parse::<f64>().unwrap() / cpus);
}

#[test]
fn network_matches_the_net_dev_and_tcp_fixtures() {
    let out = collect(&fixture_config(serde_json::json!({"network": {"metrics": {
        "system.network.conntrack.count": {"enabled": true},
        "system.network.conntrack.max": {"enabled": true}
    }}})));
    let rm = scraper(&out, "network");
    let dev = fixture("net/dev");
    let interfaces: Vec<(String, Vec<f64>)> = dev
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(_, rest)| rest.split_whitespace().count() == 16)
        .map(|(name, rest)| {
            (
                name.trim().to_string(),
                rest.split_whitespace()
                    .map(|v| v.parse().unwrap())
                    .collect(),
            )
        })
        .collect();
    assert!(interfaces.iter().any(|(n, _)| n == "lo"));
    for (name, v) in &interfaces {
        for (metric, rx, tx) in [
            ("system.network.io", 0, 8),
            ("system.network.packets", 1, 9),
            ("system.network.errors", 2, 10),
            ("system.network.dropped", 3, 11),
        ] {
            assert!(is_monotonic_sum(rm, metric));
            assert_eq!(
                value(rm, metric, &[("device", name), ("direction", "receive")]),
                Some(v[rx]),
                "{metric} {name}"
            );
            assert_eq!(
                value(rm, metric, &[("device", name), ("direction", "transmit")]),
                Some(v[tx]),
                "{metric} {name}"
            );
        }
    }
    assert_eq!(unit(rm, "system.network.packets"), Some("{packets}"));
    assert_eq!(unit(rm, "system.network.errors"), Some("{errors}"));
    // Connections: every tcp/tcp6 line counted once under its state.
    let mut established = 0.0;
    let mut listen = 0.0;
    let mut lines = 0.0;
    for file in ["net/tcp", "net/tcp6"] {
        for line in fixture(file).lines().skip(1) {
            lines += 1.0;
            match line.split_whitespace().nth(3) {
                Some("01") => established += 1.0,
                Some("0A") => listen += 1.0,
                _ => {}
            }
        }
    }
    let conn = |state| {
        value(
            rm,
            "system.network.connections",
            &[("protocol", "tcp"), ("state", state)],
        )
    };
    assert!(is_updown(rm, "system.network.connections"));
    assert_eq!(conn("ESTABLISHED"), Some(established));
    assert_eq!(conn("LISTEN"), Some(listen));
    assert_eq!(
        conn("FIN_WAIT_1"),
        Some(0.0),
        "the Collector's fixed list is always reported"
    );
    assert_eq!(
        conn("FIN_WAIT1"),
        None,
        "gopsutil's spelling only when a connection is in that state (none in the fixture)"
    );
    let total: f64 = [
        "CLOSE_WAIT",
        "CLOSE",
        "CLOSING",
        "ESTABLISHED",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "LAST_ACK",
        "LISTEN",
        "SYN_SENT",
        "SYN_RECV",
        "TIME_WAIT",
    ]
    .iter()
    .filter_map(|s| conn(s))
    .sum();
    assert_eq!(total, lines);
    let count: f64 = fixture("sys/net/netfilter/nf_conntrack_count")
        .trim()
        .parse()
        .unwrap();
    let max: f64 = fixture("sys/net/netfilter/nf_conntrack_max")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        value(rm, "system.network.conntrack.count", &[]),
        Some(count)
    );
    assert_eq!(value(rm, "system.network.conntrack.max", &[]), Some(max));
}

#[test]
fn network_filters_devices() {
    let out = collect(&fixture_config(serde_json::json!({"network": {
        "exclude": {"interfaces": ["^lo$"], "match_type": "regexp"},
        "metrics": {"system.network.connections": {"enabled": false}}
    }})));
    let rm = scraper(&out, "network");
    assert_eq!(value(rm, "system.network.io", &[("device", "lo")]), None);
    assert!(point_count(rm, "system.network.io") > 0);
    assert!(crate::cgroup::emit::lookup::find(rm, "system.network.connections").is_none());
    let out = collect(&fixture_config(
        serde_json::json!({"network": {"include": {"interfaces": ["lo"], "match_type": "strict"}}}),
    ));
    assert_eq!(
        point_count(scraper(&out, "network"), "system.network.io"),
        2,
        "only lo, both directions"
    );
}

#[test]
fn disk_matches_the_diskstats_fixture() {
    let out = collect(&fixture_config(serde_json::json!({"disk": null})));
    let rm = scraper(&out, "disk");
    let text = fixture("diskstats");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() >= 14)
        .collect();
    assert!(!rows.is_empty());
    // gopsutil leaves out devices whose counters are all zero (loop0, zram0).
    let (unused, rows): (Vec<_>, Vec<_>) = rows
        .into_iter()
        .partition(|w| w[3..14].iter().all(|v| *v == "0"));
    assert!(!unused.is_empty() && !rows.is_empty());
    for w in &unused {
        assert_eq!(
            value(
                rm,
                "system.disk.io",
                &[("device", w[2]), ("direction", "read")]
            ),
            None,
            "{}",
            w[2]
        );
    }
    for w in &rows {
        let n = |i: usize| w[i].parse::<f64>().unwrap();
        let dev = w[2];
        let rw = |d| [("device", dev), ("direction", d)];
        assert_eq!(
            value(rm, "system.disk.io", &rw("read")),
            Some(n(5) * 512.0),
            "{dev}"
        );
        assert_eq!(
            value(rm, "system.disk.io", &rw("write")),
            Some(n(9) * 512.0)
        );
        assert_eq!(value(rm, "system.disk.operations", &rw("read")), Some(n(3)));
        assert_eq!(
            value(rm, "system.disk.operations", &rw("write")),
            Some(n(7))
        );
        assert_eq!(value(rm, "system.disk.merged", &rw("read")), Some(n(4)));
        assert_eq!(value(rm, "system.disk.merged", &rw("write")), Some(n(8)));
        assert_eq!(
            value(rm, "system.disk.operation_time", &rw("read")),
            Some(n(6) / 1000.0)
        );
        assert_eq!(
            value(rm, "system.disk.operation_time", &rw("write")),
            Some(n(10) / 1000.0)
        );
        assert_eq!(
            value(rm, "system.disk.pending_operations", &[("device", dev)]),
            Some(n(11))
        );
        assert_eq!(
            value(rm, "system.disk.io_time", &[("device", dev)]),
            Some(n(12) / 1000.0)
        );
        assert_eq!(
            value(rm, "system.disk.weighted_io_time", &[("device", dev)]),
            Some(n(13) / 1000.0)
        );
    }
    assert!(is_updown(rm, "system.disk.pending_operations"));
    assert!(is_monotonic_sum(rm, "system.disk.io_time"));
    assert_eq!(unit(rm, "system.disk.operations"), Some("{operations}"));
}

#[test]
fn cumulative_sums_start_at_boot_time() {
    let out = collect(&fixture_config(serde_json::json!({"cpu": null})));
    let btime: u64 = fixture_words("stat", "btime")[1].parse().unwrap();
    let rm = scraper(&out, "cpu");
    let m = crate::cgroup::emit::lookup::find(rm, "system.cpu.time").unwrap();
    let Some(metric::Data::Sum(s)) = &m.data else {
        panic!("a sum")
    };
    assert!(
        s.data_points
            .iter()
            .all(|p| p.start_time_unix_nano == btime * 1_000_000_000)
    );
    // Gauges too: the Collector's mdatagen sets the start on every point.
    let out = collect(&fixture_config(serde_json::json!({"load": null})));
    let m = crate::cgroup::emit::lookup::find(scraper(&out, "load"), "system.cpu.load_average.1m")
        .unwrap();
    let Some(metric::Data::Gauge(g)) = &m.data else {
        panic!("a gauge")
    };
    assert_eq!(g.data_points[0].start_time_unix_nano, btime * 1_000_000_000);
}

#[test]
fn a_failing_scraper_does_not_drop_the_others() {
    let dir =
        std::env::temp_dir().join(format!("oxcol-hostmetrics-partial-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("proc")).unwrap();
    std::fs::write(dir.join("proc/loadavg"), fixture("loadavg")).unwrap();
    let c =
        config(serde_json::json!({"root_path": dir, "scrapers": {"load": null, "memory": null}}));
    let mut collector = Collector::new("h", &c, None).unwrap();
    let out = collector
        .collect(SystemTime::now())
        .expect("load still succeeds");
    assert_eq!(out.len(), 1);
    scraper(&out, "load");
    std::fs::remove_file(dir.join("proc/loadavg")).unwrap();
    let error = collector
        .collect(SystemTime::now())
        .expect_err("every scraper failed");
    assert!(
        error.contains("\"h\"") && error.contains("loadavg") && error.contains("meminfo"),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn garbage_files_never_panic() {
    for data in [
        &b""[..],
        b"\n\n",
        b"cpu0 x y z\n",
        b"lo: 1 2\n",
        b"MemTotal: kB\n",
        b"7 0 loop0 1 2 3\n",
        &[0xff, 0xfe, b':', b'\n'],
    ] {
        let mut cpus = Vec::new();
        cpu::parse_stat(data, &mut cpus);
        let _ = memory::parse_meminfo(data);
        let _ = load::parse_loadavg(data);
        network::for_each_interface(data, |_| {});
        disk::for_each_disk(data, |_| {});
        let mut counts = [0; 12];
        network::count_tcp_states(data, &mut counts);
        let _ = filesystem::parse_mountinfo(data, true, &[]);
        let _ = filesystem::physical_fs_types(data);
        let _ = paging::parse_swaps(data);
        let _ = paging::parse_vmstat(data);
    }
    assert_eq!(
        memory::parse_meminfo(b"MemFree: 1 kB\n"),
        None,
        "no MemTotal"
    );
}

/// This machine's real /proc against independent reads (sysinfo(2), sysconf(3), traffic
/// generated here).
#[test]
fn live_proc_agrees_with_the_kernel() {
    let c = config(serde_json::json!({"scrapers": {
        "cpu": {"metrics": {"system.cpu.logical.count": {"enabled": true}}},
        "memory": {"metrics": {"system.memory.limit": {"enabled": true}}},
        "network": {"include": {"interfaces": ["lo"], "match_type": "strict"}},
        "load": null,
        "disk": null
    }}));
    let mut collector = Collector::new("live", &c, None).unwrap();
    let before = collector.collect(SystemTime::now()).unwrap();
    // SAFETY: sysinfo fills the struct it is given.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::sysinfo(&mut info) }, 0);
    let mem_total = info.totalram as f64 * info.mem_unit as f64;
    assert_eq!(
        value(scraper(&before, "memory"), "system.memory.limit", &[]),
        Some(mem_total)
    );
    // SAFETY: sysconf only reads a value.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } as f64;
    assert_eq!(
        value(scraper(&before, "cpu"), "system.cpu.logical.count", &[]),
        Some(online)
    );
    assert_eq!(point_count(scraper(&before, "cpu"), "system.cpu.time"), 8);
    let lo_rx = |out: &[ResourceMetrics]| {
        value(
            scraper(out, "network"),
            "system.network.io",
            &[("device", "lo"), ("direction", "receive")],
        )
        .unwrap()
    };

    // 4 MiB over loopback.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::Read as _;
        let (mut socket, _) = listener.accept().unwrap();
        let mut sink = Vec::new();
        socket.read_to_end(&mut sink).unwrap();
        sink.len()
    });
    {
        use std::io::Write as _;
        let mut socket = std::net::TcpStream::connect(address).unwrap();
        socket.write_all(&vec![7u8; 4 << 20]).unwrap();
    }
    assert_eq!(reader.join().unwrap(), 4 << 20);
    let after = collector.collect(SystemTime::now()).unwrap();
    let grown = lo_rx(&after) - lo_rx(&before);
    assert!(
        grown >= (4 << 20) as f64,
        "loopback receive bytes grew by {grown}, less than the 4 MiB sent"
    );
    let load = value(scraper(&after, "load"), "system.cpu.load_average.1m", &[]).unwrap();
    assert!(load >= 0.0);
    assert!(point_count(scraper(&after, "disk"), "system.disk.io") > 0);
}

fn statvfs_independent(path: &std::path::Path) -> libc::statvfs {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: NUL-terminated path; statvfs fills the struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st
}

#[test]
fn filesystem_selects_physical_mounts_of_the_mountinfo_fixture() {
    let text = fixture("1/mountinfo");
    let physical: Vec<String> = fixture("filesystems")
        .lines()
        .filter(|l| !l.starts_with("nodev"))
        .map(|l| l.trim().to_string())
        .collect();
    // Independent selection: fields after " - " are type and source.
    let expected: Vec<(String, String, String)> = text
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mut r = right.split_whitespace();
            let (fs_type, device) = (r.next()?.to_string(), r.next()?.to_string());
            let mountpoint = left.split_whitespace().nth(4)?.to_string();
            physical
                .contains(&fs_type)
                .then_some((device, mountpoint, fs_type))
        })
        .collect();
    assert!(
        !expected.is_empty(),
        "the fixture has a physical root mount"
    );
    let out = collect(&fixture_config(
        serde_json::json!({"filesystem": {"metrics": {"system.filesystem.utilization": {"enabled": true}}}}),
    ));
    let rm = scraper(&out, "filesystem");
    assert!(is_updown(rm, "system.filesystem.usage"));
    assert_eq!(unit(rm, "system.filesystem.inodes.usage"), Some("{inodes}"));
    assert_eq!(
        point_count(rm, "system.filesystem.usage"),
        expected.len() * 3,
        "used, free, reserved per mount"
    );
    // Every mount point is statvfs'd under root_path: here the fixture directory.
    let st = statvfs_independent(&fixture_root());
    let frsize = st.f_frsize as f64;
    for (device, mountpoint, fs_type) in &expected {
        let attrs = |state| {
            [
                ("device", device.as_str()),
                ("mountpoint", mountpoint.as_str()),
                ("type", fs_type.as_str()),
                ("mode", "rw"),
                ("state", state),
            ]
        };
        let total = st.f_blocks as f64 * frsize;
        let used = value(rm, "system.filesystem.usage", &attrs("used")).unwrap();
        let free = value(rm, "system.filesystem.usage", &attrs("free")).unwrap();
        let reserved = value(rm, "system.filesystem.usage", &attrs("reserved")).unwrap();
        assert_eq!(used + free + reserved, total, "{mountpoint}");
        // The disk is shared with running builds: free space moves between two statvfs calls.
        assert!(
            (free - st.f_bavail as f64 * frsize).abs() < 2e9,
            "{mountpoint} free {free}"
        );
        assert!(reserved >= 0.0);
        let inodes = value(rm, "system.filesystem.inodes.usage", &attrs("used")).unwrap()
            + value(rm, "system.filesystem.inodes.usage", &attrs("free")).unwrap();
        assert_eq!(inodes, st.f_files as f64);
        let utilization = value(
            rm,
            "system.filesystem.utilization",
            &[("mountpoint", mountpoint.as_str())],
        )
        .unwrap();
        assert!((utilization - used / (used + free)).abs() < 1e-9);
    }
}

#[test]
fn filesystem_virtual_and_filters() {
    let out = collect(&fixture_config(serde_json::json!({"filesystem": {
        "include_virtual_filesystems": true,
        "exclude_fs_types": {"fs_types": ["ext4"], "match_type": "strict"},
        "exclude_mount_points": {"mount_points": ["^/sys"], "match_type": "regexp"}
    }})));
    let rm = scraper(&out, "filesystem");
    // /proc exists under the fixture root; /dev does not (an error; the rest is delivered).
    assert!(
        value(
            rm,
            "system.filesystem.usage",
            &[("mountpoint", "/proc"), ("type", "proc"), ("state", "free")]
        )
        .is_some()
    );
    assert!(
        value(rm, "system.filesystem.usage", &[("mountpoint", "/")]).is_none(),
        "ext4 excluded"
    );
    assert!(value(rm, "system.filesystem.usage", &[("mountpoint", "/dev")]).is_none());
    let c = config(
        serde_json::json!({"scrapers": {"filesystem": {"include_fs_types": {"fs_types": ["ext4"]}}}}),
    );
    assert!(
        c.validate()[0].contains("scrapers.filesystem.include_fs_types: match_type"),
        "{:?}",
        c.validate()
    );
}

#[test]
fn mountinfo_modes_and_escapes() {
    let m = filesystem::parse_mountinfo(
        b"28 27 0:25 / /mnt/a\\040b ro,nosuid - tmpfs tools ro,size=4k\n27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\nbad line\n",
        true,
        &[],
    );
    assert_eq!(m.len(), 2);
    assert_eq!(
        (
            m[0].mountpoint.as_str(),
            m[0].mode,
            m[0].fs_type.as_str(),
            m[0].device.as_str()
        ),
        ("/mnt/a b", "ro", "tmpfs", "tools")
    );
    assert_eq!(
        (m[1].mountpoint.as_str(), m[1].mode, m[1].device.as_str()),
        ("/", "rw", "/dev/vda"),
        "optional fields skipped"
    );
    let lines = b"27 1 254:0 / / rw - ext4 /dev/vda rw\n\
40 27 254:0 /var/lib/data /data rw - ext4 /dev/vda rw\n\
41 27 254:1 / /ro rw - ext4 /dev/vdb ro\n\
42 27 0:4 net:[4026531840] /run/netns/a rw - nsfs nsfs rw\n\
43 27 0:30 / /tmp rw - tmpfs tmpfs rw\n";
    let physical = vec!["ext4".to_string()];
    let all = filesystem::parse_mountinfo(lines, true, &physical);
    let by_mount = |m: &[filesystem::Mount], at: &str| {
        m.iter()
            .find(|x| x.mountpoint == at)
            .map(|x| (x.device.clone(), x.mode))
    };
    assert_eq!(
        by_mount(&all, "/data"),
        Some(("/dev/vda".to_string(), "rw")),
        "a bind mount keeps the device"
    );
    assert_eq!(
        by_mount(&all, "/ro"),
        Some(("/dev/vdb".to_string(), "ro")),
        "ro on the superblock"
    );
    assert_eq!(
        by_mount(&all, "/run/netns/a"),
        Some(("net:[4026531840]".to_string(), "rw")),
        "root as device"
    );
    let physical_only = filesystem::parse_mountinfo(lines, false, &physical);
    let points: Vec<&str> = physical_only
        .iter()
        .map(|m| m.mountpoint.as_str())
        .collect();
    assert_eq!(points, ["/", "/ro"], "no binds, no virtual file systems");
}

#[test]
fn live_root_filesystem_agrees_with_df() {
    let output = std::process::Command::new("df")
        .args(["-B1", "--output=size,avail", "/"])
        .output();
    let Ok(output) = output else {
        return eprintln!("no df here");
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let numbers: Vec<f64> = text
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let out = collect(&config(
        serde_json::json!({"scrapers": {"filesystem": {"include_mount_points": {"mount_points": ["/"], "match_type": "strict"}}}}),
    ));
    let rm = scraper(&out, "filesystem");
    let total: f64 = ["used", "free", "reserved"]
        .iter()
        .map(|s| {
            value(
                rm,
                "system.filesystem.usage",
                &[("mountpoint", "/"), ("state", s)],
            )
            .unwrap()
        })
        .sum();
    assert_eq!(total, numbers[0], "size of / as df reports it");
    let free = value(
        rm,
        "system.filesystem.usage",
        &[("mountpoint", "/"), ("state", "free")],
    )
    .unwrap();
    assert!(
        (free - numbers[1]).abs() < 2e9,
        "free {free} vs df avail {}",
        numbers[1]
    );
}

#[test]
fn paging_matches_the_vmstat_fixture_times_gopsutils_factor() {
    let out = collect(&fixture_config(serde_json::json!({"paging": null})));
    let rm = scraper(&out, "paging");
    let counter = |key: &str| fixture_words("vmstat", key)[1].parse::<f64>().unwrap() * 4096.0;
    let ops = |direction, kind| {
        value(
            rm,
            "system.paging.operations",
            &[("direction", direction), ("type", kind)],
        )
    };
    assert_eq!(ops("page_in", "major"), Some(counter("pswpin")));
    assert_eq!(ops("page_out", "major"), Some(counter("pswpout")));
    assert_eq!(ops("page_in", "minor"), Some(counter("pgpgin")));
    assert_eq!(ops("page_out", "minor"), Some(counter("pgpgout")));
    assert_eq!(
        value(rm, "system.paging.faults", &[("type", "major")]),
        Some(counter("pgmajfault"))
    );
    assert_eq!(
        value(rm, "system.paging.faults", &[("type", "minor")]),
        Some(counter("pgfault") - counter("pgmajfault"))
    );
    assert!(is_monotonic_sum(rm, "system.paging.operations"));
    assert_eq!(unit(rm, "system.paging.faults"), Some("{faults}"));
    // This machine has no swap: the recorded /proc/swaps is a header only.
    let swap_devices = fixture("swaps").lines().count() - 1;
    assert_eq!(point_count(rm, "system.paging.usage"), swap_devices * 2);
}

#[test]
fn paging_usage_per_swap_device() {
    // The format of /proc/swaps with devices (this machine has none to record).
    let swaps = paging::parse_swaps(
        b"Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/sda2 partition\t8388604\t\t1024\t\t-2\n/swapfile file 1000 0 -3\n",
    )
    .unwrap();
    assert_eq!(swaps.len(), 2);
    assert_eq!(
        (swaps[0].device.as_str(), swaps[0].total, swaps[0].used),
        ("/dev/sda2", 8388604 * 1024, 1024 * 1024)
    );
    assert!(paging::parse_swaps(b"Name Type Size Used\n").is_err());
    assert!(paging::parse_swaps(b"Filename Type Size Used Priority\n/x file big 0 -1\n").is_err());
    let dir = std::env::temp_dir().join(format!("oxcol-hostmetrics-swap-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("proc")).unwrap();
    std::fs::write(
        dir.join("proc/swaps"),
        "Filename Type Size Used Priority\n/swapfile file 1000 250 -2\n",
    )
    .unwrap();
    let c = config(
        serde_json::json!({"root_path": dir, "scrapers": {"paging": {"metrics": {"system.paging.utilization": {"enabled": true}}}}}),
    );
    let mut collector = Collector::new("h", &c, None).unwrap();
    // No vmstat here: usage is still delivered (a partial failure).
    let out = collector
        .collect(SystemTime::now())
        .expect("usage was read");
    let rm = scraper(&out, "paging");
    assert_eq!(
        value(
            rm,
            "system.paging.usage",
            &[("device", "/swapfile"), ("state", "used")]
        ),
        Some(250.0 * 1024.0)
    );
    assert_eq!(
        value(
            rm,
            "system.paging.usage",
            &[("device", "/swapfile"), ("state", "free")]
        ),
        Some(750.0 * 1024.0)
    );
    assert_eq!(
        value(
            rm,
            "system.paging.utilization",
            &[("device", "/swapfile"), ("state", "used")]
        ),
        Some(0.25)
    );
    assert!(crate::cgroup::emit::lookup::find(rm, "system.paging.operations").is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn processes_count_the_fixture_pids_and_take_running_blocked_from_stat() {
    let out = collect(&fixture_config(serde_json::json!({"processes": null})));
    let rm = scraper(&out, "processes");
    // Independent count of the fixture's PID directories by their state letter. The PID 1
    // directory holds only mountinfo (like a process that exited mid-scrape).
    let mut by_letter: std::collections::BTreeMap<String, f64> = Default::default();
    let mut pid_dirs = 0.0;
    for entry in std::fs::read_dir(fixture_root().join("proc"))
        .unwrap()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.chars().all(|c| c.is_ascii_digit()) {
            pid_dirs += 1.0;
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let letter = stat
                .rsplit_once(')')
                .unwrap()
                .1
                .split_whitespace()
                .next()
                .unwrap()
                .to_string();
            *by_letter.entry(letter).or_default() += 1.0;
        }
    }
    assert!(!by_letter.is_empty());
    assert!(is_updown(rm, "system.processes.count"));
    assert_eq!(unit(rm, "system.processes.count"), Some("{processes}"));
    let count = |status| value(rm, "system.processes.count", &[("status", status)]);
    assert_eq!(count("sleeping"), by_letter.get("S").copied());
    assert_eq!(count("idle"), by_letter.get("I").copied());
    let misc = |key: &str| fixture_words("stat", key)[1].parse::<f64>().unwrap();
    assert_eq!(
        count("running"),
        Some(misc("procs_running")),
        "from /proc/stat, not the PID walk"
    );
    assert_eq!(count("blocked"), Some(misc("procs_blocked")));
    assert_eq!(
        value(rm, "system.processes.created", &[]),
        Some(misc("processes"))
    );
    assert!(is_monotonic_sum(rm, "system.processes.created"));
    // More PID directories than statuses counted: `unknown` holds the rest (the Collector).
    let known: f64 = ["S", "I"]
        .iter()
        .filter_map(|l| by_letter.get(*l))
        .sum::<f64>()
        + misc("procs_running")
        + misc("procs_blocked");
    assert_eq!(
        count("unknown"),
        (pid_dirs > known).then_some(pid_dirs - known)
    );
}

#[test]
fn process_state_letters() {
    assert_eq!(processes::state_letter(b"12 (a) b) c) Z 1 2"), Some(b'Z'));
    assert_eq!(processes::state_letter(b"12 (no close"), None);
    assert_eq!(processes::status_of(b'Z'), "zombies");
    assert_eq!(processes::status_of(b'D'), "blocked");
    assert_eq!(processes::status_of(b'X'), "unknown");
}

#[test]
fn system_uptime_is_seconds_since_btime() {
    let out = collect(&fixture_config(serde_json::json!({"system": null})));
    let rm = scraper(&out, "system");
    let btime: f64 = fixture_words("stat", "btime")[1].parse().unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let uptime = value(rm, "system.uptime", &[]).unwrap();
    assert!(is_gauge(rm, "system.uptime"));
    assert_eq!(uptime.fract(), 0.0);
    assert!(
        (now - btime - uptime).abs() <= 2.0,
        "uptime {uptime}, now - btime {}",
        now - btime
    );
}

#[test]
fn live_processes_and_uptime_agree_with_the_kernel() {
    let c = config(serde_json::json!({"scrapers": {"processes": null, "system": null}}));
    let out = collect(&c);
    let total: f64 = [
        "running", "blocked", "sleeping", "idle", "stopped", "zombies", "unknown", "paging",
    ]
    .iter()
    .filter_map(|s| {
        value(
            scraper(&out, "processes"),
            "system.processes.count",
            &[("status", s)],
        )
    })
    .sum();
    let pids = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .count() as f64;
    // running/blocked come from /proc/stat, the rest from the walk: close to the PID count.
    assert!(
        (total - pids).abs() <= 10.0 + pids * 0.1,
        "{total} counted vs {pids} PIDs"
    );
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let got = value(scraper(&out, "system"), "system.uptime", &[]).unwrap();
    assert!(
        (got - uptime).abs() <= 2.0,
        "system.uptime {got} vs /proc/uptime {uptime}"
    );
}

fn int_attr(rm: &ResourceMetrics, key: &str) -> Option<i64> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    rm.resource
        .as_ref()?
        .attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::IntValue(i) => Some(*i),
            _ => None,
        })
}

#[test]
fn process_metrics_match_the_fixture_pid_files() {
    use crate::cgroup::emit::lookup::resource_attr;
    let proc_dir = fixture_root().join("proc");
    // The fixture process with an `exe` link; the others (PID 1, kernel threads) have none.
    let with_exe: Vec<String> = std::fs::read_dir(&proc_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("exe").symlink_metadata().is_ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let pids = std::fs::read_dir(&proc_dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
                && e.path().join("stat").exists()
        })
        .count();
    assert_eq!(with_exe.len(), 1);
    let pid = &with_exe[0];
    let c = fixture_config(serde_json::json!({"process": {"metrics": {
        "process.threads": {"enabled": true},
        "process.paging.faults": {"enabled": true},
        "process.context_switches": {"enabled": true},
        "process.disk.operations": {"enabled": true}
    }}}));
    assert_eq!(c.validate(), Vec::<String>::new());
    let config = c.scrapers.process.as_ref().unwrap();
    let mut scraper = process::Scraper::new(config, &fixture_root()).unwrap();
    let mut files = Files::new(proc_dir.clone());
    let (out, result) = scraper.scrape(
        &mut files,
        2_000_000_000_000_000_000,
        1_000_000_000_000_000_000,
    );
    let error = result.expect_err("PIDs without exe are reported");
    assert!(
        error.starts_with(&format!("{} process errors", pids - 1)),
        "{error}"
    );
    assert_eq!(
        out.len(),
        pids,
        "an unreadable exe does not drop the process"
    );
    let rm = out
        .iter()
        .find(|rm| int_attr(rm, "process.pid") == Some(pid.parse().unwrap()))
        .unwrap();
    let kernel_thread = out
        .iter()
        .find(|rm| crate::cgroup::emit::lookup::resource_attr(rm, "process.command") == Some(""))
        .expect("a kernel thread");
    assert_eq!(
        crate::cgroup::emit::lookup::resource_attr(kernel_thread, "process.executable.path"),
        Some("")
    );
    let read = |f: &str| std::fs::read_to_string(proc_dir.join(pid).join(f)).unwrap();
    let stat = read("stat");
    let after: Vec<f64> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .skip(1)
        .map(|w| w.parse().unwrap())
        .collect();
    let hz = crate::cgroup::emit::clock_ticks_per_second() as f64;
    assert_eq!(int_attr(rm, "process.pid"), Some(pid.parse().unwrap()));
    assert_eq!(int_attr(rm, "process.parent_pid"), Some(after[0] as i64));
    assert_eq!(
        resource_attr(rm, "process.executable.path"),
        Some(
            std::fs::read_link(proc_dir.join(pid).join("exe"))
                .unwrap()
                .to_str()
                .unwrap()
        )
    );
    let name = read("status")
        .lines()
        .find_map(|l| l.strip_prefix("Name:"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(
        resource_attr(rm, "process.executable.name"),
        Some(name.as_str())
    );
    let cmdline = read("cmdline");
    let args: Vec<&str> = cmdline.split('\0').filter(|a| !a.is_empty()).collect();
    assert_eq!(resource_attr(rm, "process.command"), Some(args[0]));
    assert_eq!(
        resource_attr(rm, "process.command_line"),
        Some(args.join(" ").as_str())
    );
    let uid = read("status")
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let passwd = std::fs::read_to_string(fixture_root().join("etc/passwd")).unwrap();
    let owner = passwd
        .lines()
        .find(|l| l.split(':').nth(2) == Some(uid.as_str()))
        .unwrap()
        .split(':')
        .next()
        .unwrap();
    assert_eq!(resource_attr(rm, "process.owner"), Some(owner));
    // after[k] is stat word k+1 after ")" (state skipped): utime is word 11.
    assert_eq!(
        value(rm, "process.cpu.time", &[("state", "user")]),
        Some(after[10] / hz)
    );
    assert_eq!(
        value(rm, "process.cpu.time", &[("state", "system")]),
        Some(after[11] / hz)
    );
    assert_eq!(
        value(rm, "process.cpu.time", &[("state", "wait")]),
        Some(after[38] / hz)
    );
    assert_eq!(value(rm, "process.threads", &[]), Some(after[16]));
    assert_eq!(
        value(rm, "process.paging.faults", &[("type", "minor")]),
        Some(after[6])
    );
    assert_eq!(
        value(rm, "process.paging.faults", &[("type", "major")]),
        Some(after[8])
    );
    let statm: Vec<f64> = read("statm")
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    let page = super::memory::page_size() as f64;
    assert_eq!(
        value(rm, "process.memory.usage", &[]),
        Some(statm[1] * page)
    );
    assert_eq!(
        value(rm, "process.memory.virtual", &[]),
        Some(statm[0] * page)
    );
    assert!(is_updown(rm, "process.memory.usage"));
    let io = read("io");
    let io_value = |k: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}: ")))
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    assert_eq!(
        value(rm, "process.disk.io", &[("direction", "read")]),
        Some(io_value("rchar"))
    );
    assert_eq!(
        value(rm, "process.disk.io", &[("direction", "write")]),
        Some(io_value("wchar"))
    );
    assert_eq!(
        value(rm, "process.disk.operations", &[("direction", "read")]),
        Some(io_value("syscr"))
    );
    let switches = |k: &str| {
        read("status")
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:")))
            .unwrap()
            .trim()
            .parse::<f64>()
            .unwrap()
    };
    assert_eq!(
        value(rm, "process.context_switches", &[("type", "voluntary")]),
        Some(switches("voluntary_ctxt_switches"))
    );
    assert_eq!(
        value(rm, "process.context_switches", &[("type", "involuntary")]),
        Some(switches("nonvoluntary_ctxt_switches"))
    );
    // Sums start when the process started: boot + starttime ticks.
    let m = crate::cgroup::emit::lookup::find(rm, "process.cpu.time").unwrap();
    let Some(metric::Data::Sum(s)) = &m.data else {
        panic!("a sum")
    };
    assert_eq!(
        s.data_points[0].start_time_unix_nano,
        1_000_000_000_000_000_000 + (after[18] * 1e9 / hz) as u64
    );

    // Muted: no error; excluded by name: nothing.
    let c = fixture_config(
        serde_json::json!({"process": {"mute_process_exe_error": true, "exclude": {"names": [name], "match_type": "strict"}}}),
    );
    let mut scraper =
        process::Scraper::new(c.scrapers.process.as_ref().unwrap(), &fixture_root()).unwrap();
    let (out, result) = scraper.scrape(
        &mut files,
        2_000_000_000_000_000_000,
        1_000_000_000_000_000_000,
    );
    assert!(
        result.is_ok() && out.len() == pids - 1,
        "{result:?} {}",
        out.len()
    );
}

#[test]
fn live_process_scrape_finds_this_test_process() {
    let exe = std::env::current_exe().unwrap();
    let name = exe.file_name().unwrap().to_str().unwrap().to_string();
    let c = config(serde_json::json!({"scrapers": {"process": {
        "include": {"names": [name], "match_type": "strict"},
        "mute_process_exe_error": true,
        "metrics": {"process.open_file_descriptors": {"enabled": true}, "process.uptime": {"enabled": true},
            "process.context_switches": {"enabled": true}, "process.memory.utilization": {"enabled": true}}
    }}}));
    // A thread that switched voluntarily at least 20 times and is alive during the scrape:
    // a multi-threaded process's switches are summed over its threads, as the Collector's.
    let (slept, wait) = std::sync::mpsc::channel::<()>();
    let (done, finish) = std::sync::mpsc::channel::<()>();
    let sleeper = std::thread::spawn(move || {
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(1));
        }
        slept.send(()).unwrap();
        let _ = finish.recv_timeout(Duration::from_secs(30));
    });
    wait.recv_timeout(Duration::from_secs(30)).unwrap();
    let main_thread_voluntary = |status: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let main_before = main_thread_voluntary(
        &std::fs::read_to_string(format!("/proc/self/task/{}/status", std::process::id())).unwrap(),
    );
    let out = collect(&c);
    done.send(()).unwrap();
    sleeper.join().unwrap();
    let me = i64::from(std::process::id());
    let rm = out
        .iter()
        .find(|rm| int_attr(rm, "process.pid") == Some(me))
        .expect("this process is scraped, its long name matched through exe");
    let statm: Vec<f64> = std::fs::read_to_string("/proc/self/statm")
        .unwrap()
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    let rss = value(rm, "process.memory.usage", &[]).unwrap();
    let independent = statm[1] * super::memory::page_size() as f64;
    assert!(
        (rss - independent).abs() < independent * 0.5,
        "rss {rss} vs statm {independent}"
    );
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count() as f64;
    assert!((value(rm, "process.open_file_descriptors", &[]).unwrap() - fds).abs() <= 5.0);
    assert!(value(rm, "process.uptime", &[]).unwrap() >= 0.0);
    assert_eq!(
        crate::cgroup::emit::lookup::resource_attr(rm, "process.executable.path"),
        exe.to_str()
    );
    let voluntary = value(rm, "process.context_switches", &[("type", "voluntary")]).unwrap();
    assert!(
        voluntary >= main_before + 20.0,
        "{voluntary} switches summed over the threads, main thread alone {main_before}"
    );
    // The Collector's number: a percentage (gopsutil's MemoryPercent), not a fraction.
    let total = super::memory::parse_meminfo(&std::fs::read("/proc/meminfo").unwrap())
        .unwrap()
        .total as f64;
    let percent = value(rm, "process.memory.utilization", &[]).unwrap();
    assert!(
        (percent - 100.0 * rss / total).abs() < 100.0 * rss / total * 0.5,
        "{percent} vs rss {rss} of {total}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_delay_delays_only_the_first_scrape_and_errors_are_counted() {
    use crate::scraper::Scraper as _;
    let registry = Registry::new();
    let c = fixture_config(serde_json::json!({"load": null, "memory": null}));
    let c = Config {
        initial_delay: GoDuration::from_millis(300),
        ..c
    };
    let mut scraper = HostmetricsScraper::new("hostmetrics/delay", &c, &registry).unwrap();
    let started = std::time::Instant::now();
    let out = scraper.scrape(SystemTime::now()).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "first scrape after initial_delay"
    );
    assert_eq!(out.metrics.len(), 2);
    let started = std::time::Instant::now();
    scraper.scrape(SystemTime::now()).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "later scrapes at once"
    );

    // A failing scraper is counted under the receiver's id.
    let dir = std::env::temp_dir().join(format!("oxcol-hostmetrics-count-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("proc")).unwrap();
    std::fs::write(dir.join("proc/loadavg"), fixture("loadavg")).unwrap();
    let c = config(
        serde_json::json!({"root_path": dir, "initial_delay": "0s", "scrapers": {"load": null, "memory": null}}),
    );
    let mut scraper = HostmetricsScraper::new("hostmetrics/count", &c, &registry).unwrap();
    scraper.scrape(SystemTime::now()).await.unwrap();
    let text = registry.render_prometheus();
    assert!(
        text.lines()
            .any(|l| l.starts_with("oxcol_hostmetrics_scraper_errors")
                && l.contains("hostmetrics/count")
                && l.ends_with(" 1")),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn processes_unknown_takes_the_pids_not_counted() {
    let dir = std::env::temp_dir().join(format!("oxcol-hostmetrics-procs-{}", std::process::id()));
    for (pid, stat) in [
        ("10", Some("10 (a) S 1")),
        ("11", Some("11 (b) R 1")),
        ("12", None),
        ("13", None),
    ] {
        std::fs::create_dir_all(dir.join("proc").join(pid)).unwrap();
        if let Some(stat) = stat {
            std::fs::write(dir.join("proc").join(pid).join("stat"), stat).unwrap();
        }
    }
    // 4 PID directories, 2 readable: sleeping 1, running 0 and blocked 0 from /proc/stat.
    std::fs::write(
        dir.join("proc/stat"),
        "cpu0 1 1 1 1\nprocesses 99\nprocs_running 0\nprocs_blocked 0\n",
    )
    .unwrap();
    let out = collect(&config(
        serde_json::json!({"root_path": dir, "scrapers": {"processes": null}}),
    ));
    let rm = scraper(&out, "processes");
    let count = |status| value(rm, "system.processes.count", &[("status", status)]);
    assert_eq!(count("sleeping"), Some(1.0));
    assert_eq!(
        count("running"),
        Some(0.0),
        "from procs_running, not the R process"
    );
    assert_eq!(count("unknown"), Some(3.0), "4 PIDs - 1 known");
    assert_eq!(value(rm, "system.processes.created", &[]), Some(99.0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cpu_frequency_from_the_cpuinfo_fixture() {
    let out = collect(&fixture_config(
        serde_json::json!({"cpu": {"metrics": {"system.cpu.frequency": {"enabled": true}}}}),
    ));
    let rm = scraper(&out, "cpu");
    let text = fixture("cpuinfo");
    let mut processor = String::new();
    let mut checked = 0;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim() {
            "processor" => processor = value.trim().to_string(),
            "cpu MHz" => {
                let hz = value.trim().parse::<f64>().unwrap() * 1e6;
                let cpu = format!("cpu{processor}");
                assert_eq!(value_of(rm, &cpu), Some(hz));
                checked += 1;
            }
            _ => {}
        }
    }
    assert!(checked > 0, "the recorded cpuinfo has cpu MHz lines");
    assert!(is_gauge(rm, "system.cpu.frequency"));
    assert_eq!(unit(rm, "system.cpu.frequency"), Some("Hz"));

    fn value_of(rm: &ResourceMetrics, cpu: &str) -> Option<f64> {
        value(rm, "system.cpu.frequency", &[("cpu", cpu)])
    }
}
