//! Unit tests on profiles recorded from the real Go service in integration/go (leak mode,
//! 30 requests, so 30 goroutines parked in main.waitForResult).

use super::profile::{BodyError, inflate, resolve};
use super::*;
use crate::cgroup::emit::lookup::{find, value};
use opentelemetry_proto::tonic::metrics::v1::metric;

const GOROUTINE: &[u8] = include_bytes!("testdata/goroutine.pb.gz");
const HEAP: &[u8] = include_bytes!("testdata/heap.pb.gz");
const ALLOCS: &[u8] = include_bytes!("testdata/allocs.pb.gz");
const BLOCK: &[u8] = include_bytes!("testdata/block.pb.gz");
const THREADCREATE: &[u8] = include_bytes!("testdata/threadcreate.pb.gz");
const INDEX_HTML: &[u8] = include_bytes!("testdata/index.html");
const LIMIT: usize = 16 << 20;

fn resolved(body: &[u8]) -> profile::Resolved {
    resolve(&inflate(body, LIMIT).expect("fixture inflates")).expect("fixture decodes")
}

fn scraper(config: Config) -> PprofScraper {
    PprofScraper::new("pprof", &config, &Registry::new()).expect("valid config")
}

fn test_config() -> Config {
    Config {
        targets: vec![TargetConfig {
            endpoint: "http://127.0.0.1:1".to_string(),
            labels: BTreeMap::from([("service.name".to_string(), "leaky".to_string())]),
        }],
        ..Config::default()
    }
}

#[test]
fn goroutine_profile_resolves_the_leaked_stacks() {
    let profile = resolved(GOROUTINE);
    assert_eq!(
        profile.sample_types,
        vec![("goroutine".to_string(), "count".to_string())]
    );
    let total: i64 = profile.totals()[0];
    assert!(
        (31..=40).contains(&total),
        "30 leaked + a few service goroutines, got {total}"
    );
    let leaked: i64 = profile
        .samples
        .iter()
        .filter(|(frames, _)| profile::innermost_user_function(frames) == "main.waitForResult")
        .map(|(_, v)| v[0])
        .sum();
    assert_eq!(leaked, 30);
    let (frames, _) = profile
        .samples
        .iter()
        .find(|(f, _)| profile::innermost_user_function(f) == "main.waitForResult")
        .expect("leak stack");
    assert_eq!(
        frames.first().map(|f| f.function.as_str()),
        Some("runtime.gopark"),
        "leaf first"
    );
    assert!(
        frames
            .iter()
            .any(|f| f.file.ends_with("goapp/main.go") && f.line > 0)
    );
}

#[test]
fn stack_ids_agree_between_the_proto_and_the_debug2_dump() {
    let profile = resolved(GOROUTINE);
    let (frames, _) = profile
        .samples
        .iter()
        .find(|(f, _)| profile::innermost_user_function(f) == "main.waitForResult")
        .expect("leak stack");
    let from_proto = profile::stack_id(frames.iter().map(|f| f.function.as_str()));
    let dump = debug2::parse(include_str!("testdata/goroutine-debug2.txt"));
    let leaked = dump
        .iter()
        .find(|g| g.functions.first().map(String::as_str) == Some("main.waitForResult"))
        .expect("in dump");
    assert_eq!(
        profile::stack_id(leaked.functions.iter().map(String::as_str)),
        from_proto
    );
    assert_eq!(from_proto.len(), 16);
}

#[test]
fn goroutine_metrics_top_k_and_other() {
    let config = Config {
        goroutine_stacks: GoroutineStacks {
            top_k: 1,
            ..Default::default()
        },
        ..test_config()
    };
    let mut scraper = scraper(config.clone());
    let mut builder = ResourceBuilder::new(1, 1, 16);
    let mut logs = Vec::new();
    let profile = resolved(GOROUTINE);
    goroutine_metrics(
        &config,
        &mut scraper.targets[0],
        &profile,
        SystemTime::now(),
        &mut builder,
        &mut logs,
    );
    let rm = builder.finish(vec![], SCOPE);
    let total = value(&rm, "go.goroutine.count", &[]).expect("count");
    assert_eq!(total, profile.totals()[0] as f64);
    let top = value(
        &rm,
        "go.goroutine.stack.count",
        &[
            ("go.stack.function", "main.waitForResult"),
            ("go.stack.creator", "main.waitForResult"),
        ],
    )
    .expect("top stack");
    assert_eq!(top, 30.0);
    let other = value(&rm, "go.goroutine.stack.count", &[("go.stack.id", "other")]).expect("other");
    assert_eq!(top + other, total, "top-k plus other add up to the total");
    let Some(metric::Data::Gauge(g)) =
        &find(&rm, "go.goroutine.stack.count").and_then(|m| m.data.clone())
    else {
        panic!("gauge")
    };
    assert_eq!(g.data_points.len(), 2);
    assert!(logs.is_empty(), "one scrape is no leak");
}

#[test]
fn a_growing_signature_becomes_one_log_record() {
    let config = Config {
        leak_detection: LeakDetection {
            enabled: true,
            window: GoDuration::from_secs(10),
            min_growth: 5,
        },
        ..test_config()
    };
    let mut scraper = scraper(config.clone());
    let profile = resolved(GOROUTINE);
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut records = Vec::new();
    let mut growth = None;
    for second in 0..12u64 {
        // Scale the leaked stack's count up by 3 a second.
        let mut grown = profile::Resolved {
            sample_types: profile.sample_types.clone(),
            samples: profile.samples.clone(),
        };
        for (frames, values) in &mut grown.samples {
            if profile::innermost_user_function(frames) == "main.waitForResult" {
                values[0] += (second * 3) as i64;
            }
        }
        let mut builder = ResourceBuilder::new(1, 1, 16);
        goroutine_metrics(
            &config,
            &mut scraper.targets[0],
            &grown,
            base + Duration::from_secs(second),
            &mut builder,
            &mut records,
        );
        let rm = builder.finish(vec![], SCOPE);
        if let Some(g) = value(
            &rm,
            "go.goroutine.leak.growth",
            &[("go.stack.function", "main.waitForResult")],
        ) {
            growth = Some(g);
        }
    }
    assert_eq!(records.len(), 1, "exactly one record per suspect");
    let growth = growth.expect("growth metric emitted");
    assert!((growth - 3.0).abs() < 1e-6, "3 goroutines/s, got {growth}");
    let Some(any_value::Value::StringValue(body)) =
        records[0].body.as_ref().and_then(|b| b.value.clone())
    else {
        panic!("string body")
    };
    assert!(
        body.contains("main.waitForResult") && body.contains("goapp/main.go:"),
        "full stack in body: {body}"
    );
    assert_eq!(records[0].event_name, "go.goroutine.leak.suspect");
}

#[test]
fn heap_totals_and_functions() {
    let profile = resolved(HEAP);
    let types: Vec<&str> = profile
        .sample_types
        .iter()
        .map(|(t, _)| t.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "alloc_objects",
            "alloc_space",
            "inuse_objects",
            "inuse_space"
        ]
    );
    let config = Config {
        heap_stacks: HeapStacks { top_k: 2 },
        ..test_config()
    };
    let mut builder = ResourceBuilder::new(1, 1, 16);
    heap_metrics(&config, &profile, &mut builder);
    let rm = builder.finish(vec![], SCOPE);
    let totals = profile.totals();
    assert_eq!(value(&rm, "go.heap.inuse", &[]), Some(totals[3] as f64));
    assert_eq!(
        value(&rm, "go.heap.allocated.objects", &[]),
        Some(totals[0] as f64)
    );
    assert!(totals[1] > 0, "the service allocated");
    let Some(metric::Data::Gauge(g)) =
        &find(&rm, "go.heap.function.inuse").and_then(|m| m.data.clone())
    else {
        panic!("gauge")
    };
    let sum: i64 = g
        .data_points
        .iter()
        .map(|p| match p.value {
            Some(number_data_point::Value::AsInt(i)) => i,
            _ => 0,
        })
        .sum();
    assert_eq!(
        sum, totals[3],
        "per-function in-use bytes add up to the total"
    );
    assert!(g.data_points.len() <= 3);
    // allocs is the same data.
    assert_eq!(resolved(ALLOCS).sample_types.len(), 4);
}

use opentelemetry_proto::tonic::metrics::v1::number_data_point;

#[test]
fn block_and_threadcreate_totals() {
    let mut builder = ResourceBuilder::new(1, 1, 16);
    totals_metrics("block", &resolved(BLOCK), &mut builder);
    totals_metrics("threadcreate", &resolved(THREADCREATE), &mut builder);
    let rm = builder.finish(vec![], SCOPE);
    assert_eq!(
        value(&rm, "go.block.contentions", &[]),
        Some(0.0),
        "the service never set a block profile rate"
    );
    assert!(value(&rm, "go.thread.created", &[]).expect("threads") >= 1.0);
}

#[test]
fn broken_bodies_are_named() {
    assert_eq!(inflate(INDEX_HTML, LIMIT), Err(BodyError::Html));
    let truncated = &GOROUTINE[..GOROUTINE.len() / 2];
    assert!(
        matches!(inflate(truncated, LIMIT), Err(BodyError::Gzip(_))),
        "{:?}",
        inflate(truncated, LIMIT)
    );
    assert!(matches!(
        inflate(GOROUTINE, 100),
        Err(BodyError::TooLarge(100))
    ));
    assert!(matches!(
        resolve(b"\xff\xff\xff garbage"),
        Err(BodyError::Garbage(_))
    ));
    // A plain (ungzipped) profile is accepted.
    let plain = inflate(GOROUTINE, LIMIT).expect("inflates");
    assert!(resolve(&inflate(&plain, LIMIT).expect("plain passes")).is_ok());
}

#[test]
fn random_and_mutated_bodies_never_panic() {
    let plain = inflate(GOROUTINE, LIMIT).expect("inflates");
    let heap = inflate(HEAP, LIMIT).expect("inflates");
    let mut rng = oxcol_core::testdata::XorShift64(0x2545_f491_4f6c_dd1d);
    let mut next = || rng.next_u64();
    for round in 0..2000 {
        let source = if round % 2 == 0 { &plain } else { &heap };
        let mut body = source.clone();
        for _ in 0..(1 + next() % 6) {
            let at = (next() as usize) % body.len();
            body[at] = next() as u8;
        }
        if round % 5 == 0 {
            body.truncate((next() as usize) % body.len());
        }
        if let Ok(profile) = resolve(&body) {
            let mut builder = ResourceBuilder::new(1, 1, 16);
            heap_metrics(&test_config(), &profile, &mut builder);
            totals_metrics("block", &profile, &mut builder);
        }
        let random: Vec<u8> = (0..(next() % 512)).map(|_| next() as u8).collect();
        let _ = inflate(&random, 4096).map(|b| resolve(&b));
        let mut gz = GOROUTINE.to_vec();
        let at = 10 + (next() as usize) % (gz.len() - 10);
        gz[at] ^= 0x5a;
        let _ = inflate(&gz, LIMIT).map(|b| resolve(&b));
    }
}

#[test]
fn config_validation_names_the_fix() {
    assert!(
        test_config().validate().is_empty(),
        "{:?}",
        test_config().validate()
    );
    let errors = Config::default().validate();
    assert!(
        errors.iter().any(|e| e.contains("targets is empty")),
        "{errors:?}"
    );
    let bad = Config {
        profiles: vec!["cpu".to_string()],
        targets: vec![TargetConfig {
            endpoint: "http://x:6060".to_string(),
            ..Default::default()
        }],
        tls: TlsSettings {
            ca_file: Some("/ca.pem".to_string()),
            ..Default::default()
        },
        leak_detection: LeakDetection {
            window: GoDuration::from_secs(30),
            ..Default::default()
        },
        ..Config::default()
    };
    let errors = bad.validate();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("\"cpu\" is not a profile")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("no target uses https")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("at least 4 collection_intervals")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("needs the goroutine profile")),
        "{errors:?}"
    );
}
