//! Unit tests on expositions recorded from the real client_golang service in
//! integration/go (4 requests to /work; see goapp/metrics.go for the values).

use super::*;
use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;

const TEXT: &str = include_str!("testdata/client_golang.txt");
const OPENMETRICS: &str = include_str!("testdata/client_golang.om.txt");

fn job(yaml_like: impl FnOnce(&mut ScrapeConfig)) -> JobScraper {
    job_with_global(&Global::default(), yaml_like)
}

fn job_with_global(global: &Global, yaml_like: impl FnOnce(&mut ScrapeConfig)) -> JobScraper {
    let mut config = ScrapeConfig {
        job_name: "app".to_string(),
        static_configs: vec![StaticConfig {
            targets: vec!["127.0.0.1:9999".to_string()],
            labels: BTreeMap::from([("team".to_string(), "core".to_string())]),
        }],
        ..ScrapeConfig::default()
    };
    yaml_like(&mut config);
    JobScraper::new("prometheus", &config, global, &Registry::new()).expect("valid job")
}

fn scrape_text(job: &mut JobScraper, text: &str, openmetrics: bool, now: u64) -> Vec<Metric> {
    try_scrape_text(job, text, openmetrics).expect("valid");
    job.targets[0].converter.finish(now)
}

fn try_scrape_text(job: &mut JobScraper, text: &str, openmetrics: bool) -> Result<usize, String> {
    let families = parse::parse(text, openmetrics).expect("parses");
    let target = &mut job.targets[0];
    let rules = SampleRules {
        honor_labels: job.honor_labels,
        rules: &job.metric_rules,
        name_validation: job.name_validation,
        external_labels: &job.external_labels,
        sample_limit: job.sample_limit,
    };
    add_families(target, families, &rules)
}

#[test]
fn external_labels_are_added_where_absent() {
    let global = Global {
        external_labels: BTreeMap::from([
            ("cluster".to_string(), "eu-1".to_string()),
            ("team".to_string(), "platform".to_string()),
        ]),
        ..Global::default()
    };
    let mut job = job_with_global(&global, |_| {});
    let metrics = scrape_text(&mut job, TEXT, false, 1_000);
    let Some(metric::Data::Sum(requests)) = &find(&metrics, "app_requests_total").data else {
        panic!("counter is a sum")
    };
    let point = &requests.data_points[0];
    assert_eq!(attr(&point.attributes, "cluster"), Some("eu-1"));
    assert_eq!(
        attr(&point.attributes, "team"),
        Some("core"),
        "a label the sample already has (here the static label) is kept"
    );
}

#[test]
fn sample_limit_fails_the_scrape_and_keeps_nothing() {
    let mut unlimited = job(|_| {});
    let scraped = try_scrape_text(&mut unlimited, TEXT, false).expect("no limit");
    let mut limited = job(|c| c.sample_limit = (scraped - 1) as u64);
    let error = try_scrape_text(&mut limited, TEXT, false).unwrap_err();
    assert!(error.starts_with("sample_limit exceeded"), "{error}");
    assert!(
        limited.targets[0].converter.finish(1_000).is_empty(),
        "nothing of a failed scrape is kept"
    );
    let mut enough = job(|c| c.sample_limit = scraped as u64);
    assert_eq!(try_scrape_text(&mut enough, TEXT, false), Ok(scraped));
}

#[test]
fn params_go_into_the_scrape_url_and_the_param_labels() {
    let job = job(|c| {
        c.params = BTreeMap::from([
            ("module".to_string(), vec!["http_2xx".to_string()]),
            ("target".to_string(), vec!["a".to_string(), "b".to_string()]),
        ]);
    });
    assert_eq!(
        job.targets[0].url.to_string(),
        "http://127.0.0.1:9999/metrics?module=http_2xx&target=a&target=b"
    );
    let relabeled = job_with_global(&Global::default(), |c| {
        c.params = BTreeMap::from([("module".to_string(), vec!["http_2xx".to_string()])]);
        c.relabel_configs = serde_json::from_value(serde_json::json!([
            {"source_labels": ["__param_module"], "target_label": "probe"}
        ]))
        .expect("a relabel rule");
    });
    assert_eq!(relabeled.targets[0].labels.get("probe"), "http_2xx");
}

fn find<'a>(metrics: &'a [Metric], name: &str) -> &'a Metric {
    metrics.iter().find(|m| m.name == name).unwrap_or_else(|| {
        panic!(
            "{name} missing from {:?}",
            metrics.iter().map(|m| &m.name).collect::<Vec<_>>()
        )
    })
}

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    crate::cgroup::emit::lookup::attr(attributes, key)
}

#[test]
fn client_golang_types_and_values_in_both_formats() {
    for (text, openmetrics) in [(TEXT, false), (OPENMETRICS, true)] {
        let mut job = job(|_| {});
        let metrics = scrape_text(&mut job, text, openmetrics, 1_000);
        let Some(metric::Data::Sum(requests)) = &find(&metrics, "app_requests_total").data else {
            panic!("counter is a sum")
        };
        assert!(requests.is_monotonic);
        assert_eq!(
            requests.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        let ok = requests
            .data_points
            .iter()
            .find(|p| attr(&p.attributes, "code") == Some("200"))
            .expect("code=200");
        assert_eq!(ok.value, Some(number_data_point::Value::AsDouble(4.0)));
        assert_eq!(
            attr(&ok.attributes, "team"),
            Some("core"),
            "static labels on every point"
        );
        assert_eq!(
            attr(&ok.attributes, "job"),
            None,
            "job is the resource's service.name"
        );

        let Some(metric::Data::Histogram(histogram)) =
            &find(&metrics, "app_request_duration_seconds").data
        else {
            panic!("histogram")
        };
        let point = &histogram.data_points[0];
        assert_eq!(point.explicit_bounds, vec![0.1, 0.5, 1.0]);
        assert_eq!(
            point.bucket_counts,
            vec![4, 4, 0, 4],
            "cumulative 4,8,8,12 become per-bucket counts"
        );
        assert_eq!(point.count, 12);
        assert!((point.sum.unwrap_or_default() - 9.4).abs() < 1e-9);

        let Some(metric::Data::Summary(summary)) = &find(&metrics, "app_payload_bytes").data else {
            panic!("summary")
        };
        let point = &summary.data_points[0];
        assert_eq!((point.count, point.sum), (8, 1600.0));
        assert_eq!(
            point
                .quantile_values
                .iter()
                .map(|q| (q.quantile, q.value))
                .collect::<Vec<_>>(),
            vec![(0.5, 100.0), (0.9, 300.0)]
        );

        let Some(metric::Data::Gauge(gauge)) = &find(&metrics, "app_temperature_celsius").data
        else {
            panic!("gauge")
        };
        assert_eq!(
            gauge.data_points[0].value,
            Some(number_data_point::Value::AsDouble(21.5))
        );
        assert!(matches!(
            find(&metrics, "go_goroutines").data,
            Some(metric::Data::Gauge(_))
        ));
    }
}

#[test]
fn vanished_series_get_one_stale_point() {
    let mut job = job(|_| {});
    scrape_text(
        &mut job,
        "# TYPE a counter\na_total{x=\"1\"} 5\na_total{x=\"2\"} 7\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n",
        false,
        1_000,
    );
    let metrics = scrape_text(
        &mut job,
        "# TYPE a counter\na_total{x=\"1\"} 6\n",
        false,
        2_000,
    );
    let Some(metric::Data::Sum(sum)) = &find(&metrics, "a_total").data else {
        panic!("sum")
    };
    let stale = sum
        .data_points
        .iter()
        .find(|p| attr(&p.attributes, "x") == Some("2"))
        .expect("stale point for x=2");
    assert_eq!(stale.flags, convert::NO_RECORDED_VALUE);
    assert_eq!(stale.value, None);
    let live = sum
        .data_points
        .iter()
        .find(|p| attr(&p.attributes, "x") == Some("1"))
        .expect("live");
    assert_eq!(
        (live.flags, live.start_time_unix_nano),
        (0, 1_000),
        "start time is the first sight"
    );
    let Some(metric::Data::Histogram(h)) = &find(&metrics, "h").data else {
        panic!("stale histogram")
    };
    assert_eq!(h.data_points[0].flags, convert::NO_RECORDED_VALUE);
    // Only once.
    let metrics = scrape_text(
        &mut job,
        "# TYPE a counter\na_total{x=\"1\"} 1\n",
        false,
        3_000,
    );
    let Some(metric::Data::Sum(sum)) = &find(&metrics, "a_total").data else {
        panic!("sum")
    };
    assert_eq!(sum.data_points.len(), 1);
    assert_eq!(
        sum.data_points[0].start_time_unix_nano, 3_000,
        "a counter that went down restarts"
    );
}

#[test]
fn relabeling_uses_the_shared_engine() {
    let rules: Vec<RelabelConfig> = serde_json::from_str(
        r#"[{"source_labels": ["__name__"], "regex": "go_.*", "action": "drop"},
            {"source_labels": ["code"], "regex": "5..", "target_label": "class", "replacement": "error"}]"#,
    )
    .expect("rules");
    let target_rules: Vec<RelabelConfig> =
        serde_json::from_str(r#"[{"source_labels": ["__address__"], "regex": "(.*):.*", "target_label": "host", "replacement": "${1}"}]"#).expect("rules");
    let mut job = job(|c| {
        c.metric_relabel_configs = rules;
        c.relabel_configs = target_rules;
    });
    let metrics = scrape_text(&mut job, TEXT, false, 1_000);
    assert!(
        metrics.iter().all(|m| !m.name.starts_with("go_")),
        "go_* dropped"
    );
    let Some(metric::Data::Sum(requests)) = &find(&metrics, "app_requests_total").data else {
        panic!("sum")
    };
    let error = requests
        .data_points
        .iter()
        .find(|p| attr(&p.attributes, "code") == Some("500"))
        .expect("500");
    assert_eq!(attr(&error.attributes, "class"), Some("error"));
    assert_eq!(
        attr(&error.attributes, "host"),
        Some("127.0.0.1"),
        "target relabeling added a target label"
    );
}

#[test]
fn honor_labels_decides_clashes() {
    let text = "x{team=\"scraped\"} 1\n";
    let metrics = scrape_text(&mut job(|_| {}), text, false, 1);
    let Some(metric::Data::Gauge(g)) = &find(&metrics, "x").data else {
        panic!("gauge")
    };
    assert_eq!(attr(&g.data_points[0].attributes, "team"), Some("core"));
    assert_eq!(
        attr(&g.data_points[0].attributes, "exported_team"),
        Some("scraped")
    );
    let metrics = scrape_text(&mut job(|c| c.honor_labels = true), text, false, 1);
    let Some(metric::Data::Gauge(g)) = &find(&metrics, "x").data else {
        panic!("gauge")
    };
    assert_eq!(attr(&g.data_points[0].attributes, "team"), Some("scraped"));
}

#[test]
fn target_relabeling_can_drop_targets_and_set_path() {
    let rules: Vec<RelabelConfig> = serde_json::from_str(
        r#"[{"source_labels": ["__address__"], "regex": ".*:9998", "action": "drop"},
            {"target_label": "__metrics_path__", "replacement": "/custom"},
            {"target_label": "__param_format", "replacement": "text"}]"#,
    )
    .expect("rules");
    let job = job(|c| {
        c.relabel_configs = rules;
        c.static_configs[0]
            .targets
            .push("127.0.0.1:9998".to_string());
    });
    assert_eq!(job.target_count(), 1);
    assert_eq!(
        job.targets[0].url.to_string(),
        "http://127.0.0.1:9999/custom?format=text"
    );
    assert_eq!(job.targets[0].labels.get("instance"), "127.0.0.1:9999");
}

#[test]
fn config_validation() {
    let config: Config = serde_json::from_value(serde_json::json!({"config": {"scrape_configs": [
        {"job_name": "a", "scrape_interval": "5s", "scrape_timeout": "10s", "static_configs": [{"targets": ["http://x:1/metrics"]}],
         "scheme": "ftp", "metric_relabel_configs": [{"action": "bogus"}]}
    ]}}))
    .expect("decodes");
    let errors = config.validate();
    for needle in [
        "greater than scrape_interval",
        "scheme \"ftp\"",
        "must be host:port",
        "unknown relabel action",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "{needle}: {errors:?}"
        );
    }
    let ok: Config = serde_json::from_value(serde_json::json!({"config": {"scrape_configs": [{"job_name": "a", "scrape_interval": "5s", "static_configs": [{"targets": ["127.0.0.1:1"]}]}]}})).expect("decodes");
    assert!(ok.validate().is_empty(), "{:?}", ok.validate());
    assert_eq!(
        ok.config.scrape_configs[0].timeout(&ok.config.global),
        Duration::from_secs(5),
        "the global 10s timeout is capped at the 5s interval"
    );
}
