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
fn a_context_that_does_not_fit_the_signal_is_refused_at_build() {
    let config = Config {
        table: vec![route(Some("span"), Some("true"), None, &["logs/x"])],
        ..Config::default()
    };
    let error = RoutingConnector::new("routing", &config, Signal::Logs)
        .err()
        .expect("span context on logs");
    assert!(error.contains("context span cannot route logs"), "{error}");
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
