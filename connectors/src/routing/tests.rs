use super::*;
use crate::helper::attributes;
use crate::helper::testing::*;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

fn route(
    context: Option<&str>,
    condition: Option<&str>,
    statement: Option<&str>,
    pipelines: &[&str],
) -> Route {
    Route {
        context: context.map(str::to_string),
        condition: condition.map(str::to_string),
        statement: statement.map(str::to_string),
        action: None,
        pipelines: pipelines.iter().map(|p| p.to_string()).collect(),
    }
}

fn services(output: &Output) -> Vec<String> {
    let mut batch = output.batch.clone();
    let resources = std::mem::take(batch.traces_mut().expect("traces"));
    resources
        .iter()
        .map(|r| attribute(&r.resource.as_ref().unwrap().attributes, "service.name").unwrap())
        .collect()
}

fn pipelines(output: &Output) -> Vec<String> {
    output.pipelines.clone().unwrap_or_default()
}

#[test]
fn resources_go_to_the_first_matching_route_or_the_default() {
    let config = Config {
        table: vec![
            route(
                None,
                Some(r#"attributes["service.name"] == "checkout""#),
                None,
                &["traces/a"],
            ),
            route(
                None,
                None,
                Some(r#"route() where IsMatch(attributes["service.name"], "^check")"#),
                &["traces/b"],
            ),
            route(
                None,
                None,
                Some(r#"route() where attributes["service.name"] == "cart""#),
                &["traces/b"],
            ),
        ],
        default_pipelines: vec!["traces/default".into()],
        ..Config::default()
    };
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let mut routing = RoutingConnector::new("routing", &config, Signal::Traces).expect("builds");
    let batch = traces(vec![
        resource_spans("checkout", vec![span("a", SpanKind::Server, 1, vec![])]),
        resource_spans("cart", vec![span("b", SpanKind::Server, 1, vec![])]),
        resource_spans("other", vec![span("c", SpanKind::Server, 1, vec![])]),
    ]);
    let out = routing.consume(batch, SystemTime::now()).expect("routes");
    let summary: Vec<(Vec<String>, Vec<String>)> =
        out.iter().map(|o| (pipelines(o), services(o))).collect();
    assert_eq!(
        summary,
        vec![
            (vec!["traces/a".to_string()], vec!["checkout".to_string()]),
            (vec!["traces/b".to_string()], vec!["cart".to_string()]),
            (
                vec!["traces/default".to_string()],
                vec!["other".to_string()]
            ),
        ],
        "checkout matches the first route only (match once)"
    );
}

#[test]
fn unmatched_data_without_default_pipelines_is_dropped() {
    let config = Config {
        table: vec![route(
            None,
            Some(r#"attributes["service.name"] == "x""#),
            None,
            &["traces/a"],
        )],
        ..Config::default()
    };
    let mut routing = RoutingConnector::new("routing", &config, Signal::Traces).expect("builds");
    let out = routing
        .consume(
            traces(vec![resource_spans(
                "y",
                vec![span("a", SpanKind::Server, 1, vec![])],
            )]),
            SystemTime::now(),
        )
        .expect("ok");
    assert!(out.is_empty());
}

#[test]
fn span_context_splits_a_resource_by_span() {
    let config = Config {
        table: vec![route(
            Some("span"),
            Some(r#"attributes["env"] == "prod""#),
            None,
            &["traces/prod"],
        )],
        default_pipelines: vec!["traces/rest".into()],
        ..Config::default()
    };
    let mut routing = RoutingConnector::new("routing", &config, Signal::Traces).expect("builds");
    let batch = traces(vec![resource_spans(
        "s",
        vec![
            span(
                "a",
                SpanKind::Server,
                1,
                vec![attributes::string("env", "prod")],
            ),
            span("b", SpanKind::Server, 1, vec![]),
            span(
                "c",
                SpanKind::Server,
                1,
                vec![attributes::string("env", "prod")],
            ),
        ],
    )]);
    let out = routing.consume(batch, SystemTime::now()).expect("ok");
    assert_eq!(out.len(), 2);
    assert_eq!(pipelines(&out[0]), vec!["traces/prod"]);
    assert_eq!(out[0].batch.items(), 2);
    assert_eq!(
        services(&out[0]),
        vec!["s"],
        "the resource is copied with the spans"
    );
    assert_eq!(pipelines(&out[1]), vec!["traces/rest"]);
    assert_eq!(out[1].batch.items(), 1);
}

#[test]
fn datapoint_context_splits_metrics_and_log_context_splits_logs() {
    let config = Config {
        table: vec![route(
            Some("datapoint"),
            Some("true"),
            None,
            &["metrics/all"],
        )],
        ..Config::default()
    };
    let mut routing = RoutingConnector::new("routing", &config, Signal::Metrics).expect("builds");
    let request = oxcol_core::testdata::metrics_request(1, 2, 3);
    let out = routing
        .consume(
            Batch::from_metrics(request.resource_metrics),
            SystemTime::now(),
        )
        .expect("ok");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].batch.items(), 6);

    let config = Config {
        table: vec![route(Some("log"), Some("false"), None, &["logs/none"])],
        default_pipelines: vec!["logs/default".into()],
        ..Config::default()
    };
    let mut routing = RoutingConnector::new("routing", &config, Signal::Logs).expect("builds");
    let out = routing
        .consume(
            Batch::from_logs(oxcol_core::testdata::logs_request(2, 3).resource_logs),
            SystemTime::now(),
        )
        .expect("ok");
    assert_eq!(out.len(), 1);
    assert_eq!(pipelines(&out[0]), vec!["logs/default"]);
    assert_eq!(out[0].batch.items(), 6);
}

#[test]
fn a_context_that_does_not_fit_the_signal_matches_nothing() {
    // One config serves every signal the connector routes: the Collector's logs router
    // skips a span route, so its logs go to the default.
    let config = Config {
        table: vec![route(Some("span"), Some("true"), None, &["logs/x"])],
        default_pipelines: vec!["logs/default".into()],
        ..Config::default()
    };
    let mut routing = RoutingConnector::new("routing", &config, Signal::Logs).expect("builds");
    let out = routing
        .consume(
            Batch::from_logs(oxcol_core::testdata::logs_request(1, 2).resource_logs),
            SystemTime::now(),
        )
        .expect("ok");
    assert_eq!(out.len(), 1);
    assert_eq!(pipelines(&out[0]), vec!["logs/default"]);
    assert_eq!(out[0].batch.items(), 2);
}

#[test]
fn routes_run_in_table_order_so_an_earlier_span_route_takes_spans_first() {
    // Collector semantics: each route sees what earlier move routes left, whatever the
    // contexts; a resource route after a span route gets the resource without those spans.
    let config = Config {
        table: vec![
            route(Some("span"), Some(r#"name == "a""#), None, &["traces/a"]),
            route(
                None,
                Some(r#"attributes["service.name"] == "s""#),
                None,
                &["traces/s"],
            ),
        ],
        default_pipelines: vec!["traces/default".into()],
        ..Config::default()
    };
    let mut routing = RoutingConnector::new("routing", &config, Signal::Traces).expect("builds");
    let batch = traces(vec![resource_spans(
        "s",
        vec![
            span("a", SpanKind::Server, 1, vec![]),
            span("b", SpanKind::Server, 1, vec![]),
        ],
    )]);
    let out = routing.consume(batch, SystemTime::now()).expect("ok");
    let summary: Vec<(Vec<String>, u64)> = out
        .iter()
        .map(|o| (pipelines(o), o.batch.items()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (vec!["traces/a".to_string()], 1),
            (vec!["traces/s".to_string()], 1)
        ]
    );
}

#[test]
fn copy_leaves_data_for_later_routes_and_the_default() {
    let mut copy_all = route(None, Some("true"), None, &["traces/archive"]);
    copy_all.action = Some("copy".into());
    let config = Config {
        table: vec![
            copy_all,
            route(Some("span"), Some(r#"name == "a""#), None, &["traces/a"]),
        ],
        default_pipelines: vec!["traces/default".into()],
        ..Config::default()
    };
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let mut routing = RoutingConnector::new("routing", &config, Signal::Traces).expect("builds");
    let batch = traces(vec![resource_spans(
        "s",
        vec![
            span("a", SpanKind::Server, 1, vec![]),
            span("b", SpanKind::Server, 1, vec![]),
        ],
    )]);
    let out = routing.consume(batch, SystemTime::now()).expect("ok");
    let summary: Vec<(Vec<String>, u64)> = out
        .iter()
        .map(|o| (pipelines(o), o.batch.items()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (vec!["traces/archive".to_string()], 2),
            (vec!["traces/a".to_string()], 1),
            (vec!["traces/default".to_string()], 1),
        ]
    );
    let mut bad = route(None, Some("true"), None, &["a"]);
    bad.action = Some("duplicate".into());
    let config = Config {
        table: vec![bad],
        ..Config::default()
    };
    assert!(config.validate()[0].contains("action \"duplicate\""));
}

#[test]
fn a_repeated_route_is_ignored() {
    // The Collector keys routes by context and statement (a condition counts as
    // `route() where <condition>`); the later duplicate keeps no pipelines of its own.
    let config = Config {
        table: vec![
            route(None, Some("true"), None, &["traces/first"]),
            route(None, None, Some("route() where true"), &["traces/second"]),
        ],
        ..Config::default()
    };
    let mut routing = RoutingConnector::new("routing", &config, Signal::Traces).expect("builds");
    assert_eq!(routing.routes.len(), 1);
    let batch = traces(vec![resource_spans(
        "s",
        vec![span("a", SpanKind::Server, 1, vec![])],
    )]);
    let out = routing.consume(batch, SystemTime::now()).expect("ok");
    assert_eq!(out.len(), 1);
    assert_eq!(pipelines(&out[0]), vec!["traces/first"]);
}

#[test]
fn a_data_point_route_copies_the_metric_without_metadata() {
    let config = Config {
        table: vec![route(
            Some("datapoint"),
            Some("true"),
            None,
            &["metrics/all"],
        )],
        ..Config::default()
    };
    let mut routing = RoutingConnector::new("routing", &config, Signal::Metrics).expect("builds");
    let mut request = oxcol_core::testdata::metrics_request(1, 1, 2);
    let metric = &mut request.resource_metrics[0].scope_metrics[0].metrics[0];
    metric.metadata = vec![attributes::string("m", "v")];
    let name = metric.name.clone();
    let mut out = routing
        .consume(
            Batch::from_metrics(request.resource_metrics),
            SystemTime::now(),
        )
        .expect("ok");
    assert_eq!(out.len(), 1);
    let routed = std::mem::take(out[0].batch.metrics_mut().expect("metrics"));
    let metric = &routed[0].scope_metrics[0].metrics[0];
    assert_eq!(metric.name, name);
    assert!(metric.metadata.is_empty());
}

#[test]
fn validation_reports_every_problem() {
    let config = Config {
        table: vec![
            route(None, Some("true"), Some("route()"), &["a"]),
            route(None, None, None, &[]),
            route(Some("request"), Some("true"), None, &["a"]),
            route(None, Some("attributes[ == "), None, &["a"]),
            route(None, None, Some("drop() where true"), &["a"]),
        ],
        ..Config::default()
    };
    let problems = config.validate();
    assert_eq!(problems.len(), 6, "{problems:#?}");
    assert!(problems[0].starts_with("table[0]: set either"));
    assert!(problems[1].starts_with("table[1]: set `condition`"));
    assert!(problems[2].starts_with("table[1]: pipelines is empty"));
    assert!(problems[3].contains("request"));
    assert!(problems[4].starts_with("table[3]: condition"));
    assert!(problems[5].contains("route() where <condition>"));
    assert!(Config::default().validate()[0].contains("table is empty"));
}

#[test]
fn a_failing_condition_refuses_the_batch_as_unavailable_or_is_no_match() {
    // Substring of a missing attribute fails to evaluate.
    let failing = route(
        Some("span"),
        Some(r#"Substring(attributes["none"], 0, 1) == "x""#),
        None,
        &["traces/x"],
    );
    let batch = || {
        traces(vec![resource_spans(
            "s",
            vec![span("a", SpanKind::Server, 1, vec![])],
        )])
    };
    let config = Config {
        table: vec![failing.clone()],
        default_pipelines: vec!["traces/default".into()],
        ..Config::default()
    };
    let mut routing = RoutingConnector::new("routing", &config, Signal::Traces).expect("builds");
    let Err(refusal) = routing.consume(batch(), SystemTime::now()) else {
        panic!("propagate refuses the batch")
    };
    assert!(
        matches!(&refusal, Refusal::Unavailable { reason } if reason.contains("routing")),
        "{refusal:?}"
    );
    let config = Config {
        error_mode: ErrorMode::Ignore,
        ..config
    };
    let mut routing = RoutingConnector::new("routing", &config, Signal::Traces).expect("builds");
    let out = routing
        .consume(batch(), SystemTime::now())
        .expect("ignored");
    assert_eq!(out.len(), 1);
    assert_eq!(pipelines(&out[0]), vec!["traces/default"]);
}
