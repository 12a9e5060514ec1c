use super::*;
use crate::helper::testing::*;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

fn at(millis: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_millis(millis)
}

fn connector(config: Config) -> (ServiceGraphConnector, EdgeCounters) {
    let counters = EdgeCounters::default();
    (
        ServiceGraphConnector::new(&config, counters.clone(), at(0)),
        counters,
    )
}

fn totals(out: &[Output], name: &str) -> Vec<(String, String, String, i64)> {
    let resources = metrics_of(&out[0].batch);
    let mut points: Vec<_> = find_metrics(&resources, name)
        .first()
        .map(|m| sum_points(m))
        .unwrap_or_default()
        .into_iter()
        .map(|(a, n)| {
            (
                attribute(&a, "client").unwrap(),
                attribute(&a, "server").unwrap(),
                attribute(&a, "connection_type").unwrap(),
                n,
            )
        })
        .collect();
    points.sort();
    points
}

#[test]
fn client_and_server_spans_join_into_an_edge_in_either_order() {
    let (mut graph, counters) = connector(Config::default());
    let client = with_ids(span("GET", SpanKind::Client, 30, vec![]), 1, 10, None);
    let server = with_ids(span("GET", SpanKind::Server, 20, vec![]), 1, 11, Some(10));
    graph
        .consume(traces(vec![resource_spans("front", vec![client])]), at(0))
        .expect("ok");
    assert_eq!(graph.pending_edges(), 1);
    graph
        .consume(traces(vec![resource_spans("back", vec![server])]), at(10))
        .expect("ok");
    assert_eq!(graph.pending_edges(), 0);
    // Server first, failed.
    let server = with_error(with_ids(
        span("GET", SpanKind::Server, 20, vec![]),
        2,
        21,
        Some(20),
    ));
    let client = with_ids(span("GET", SpanKind::Client, 30, vec![]), 2, 20, None);
    graph
        .consume(
            traces(vec![
                resource_spans("back", vec![server]),
                resource_spans("front", vec![client]),
            ]),
            at(20),
        )
        .expect("ok");
    assert_eq!(counters.total_edges.get(), 2);
    let out = graph.tick(at(100));
    assert_eq!(
        totals(&out, REQUEST_TOTAL),
        vec![("front".into(), "back".into(), String::new(), 2)]
    );
    assert_eq!(
        totals(&out, REQUEST_FAILED_TOTAL),
        vec![("front".into(), "back".into(), String::new(), 1)]
    );
    let resources = metrics_of(&out[0].batch);
    let Some(metric::Data::Histogram(server_latency)) =
        &find_metrics(&resources, REQUEST_SERVER)[0].data
    else {
        panic!("histogram")
    };
    assert_eq!(server_latency.data_points[0].count, 2);
    assert!((server_latency.data_points[0].sum.unwrap() - 0.040).abs() < 1e-9);
    let Some(metric::Data::Histogram(client_latency)) =
        &find_metrics(&resources, REQUEST_CLIENT)[0].data
    else {
        panic!("histogram")
    };
    assert!((client_latency.data_points[0].sum.unwrap() - 0.060).abs() < 1e-9);
    assert_eq!(
        client_latency.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
}

#[test]
fn unpaired_edges_expire_after_the_ttl_and_are_counted() {
    let (mut graph, counters) = connector(Config::default());
    graph
        .consume(
            traces(vec![resource_spans(
                "front",
                vec![with_ids(
                    span("GET", SpanKind::Client, 1, vec![]),
                    1,
                    10,
                    None,
                )],
            )]),
            at(0),
        )
        .expect("ok");
    graph.tick(at(1000));
    assert_eq!(graph.pending_edges(), 1, "younger than the 2s ttl");
    graph.tick(at(2500));
    assert_eq!(graph.pending_edges(), 0);
    assert_eq!(counters.expired_edges.get(), 1);
    assert_eq!(counters.total_edges.get(), 0);
}

#[test]
fn a_full_store_drops_spans() {
    let (mut graph, counters) = connector(Config {
        store: StoreConfig {
            max_items: 2,
            ..StoreConfig::default()
        },
        ..Config::default()
    });
    let spans = (0..5)
        .map(|i| with_ids(span("GET", SpanKind::Client, 1, vec![]), 1, 10 + i, None))
        .collect();
    graph
        .consume(traces(vec![resource_spans("front", spans)]), at(0))
        .expect("ok");
    assert_eq!(graph.pending_edges(), 2);
    assert_eq!(counters.dropped_spans.get(), 3);
}

#[test]
fn database_calls_and_messaging_and_dimensions() {
    let (mut graph, _) = connector(Config {
        dimensions: vec!["env".into()],
        metrics_flush_interval: GoDuration::default(),
        ..Config::default()
    });
    let db = with_ids(
        span(
            "SELECT",
            SpanKind::Client,
            4,
            vec![
                attributes::string("db.name", "orders"),
                attributes::string("env", "prod"),
            ],
        ),
        1,
        10,
        None,
    );
    let producer = with_ids(span("send", SpanKind::Producer, 1, vec![]), 2, 20, None);
    let consumer = with_ids(
        span(
            "recv",
            SpanKind::Consumer,
            1,
            vec![attributes::string("env", "dev")],
        ),
        2,
        21,
        Some(20),
    );
    let out = graph
        .consume(
            traces(vec![
                resource_spans("api", vec![db, producer]),
                resource_spans("worker", vec![consumer]),
            ]),
            at(0),
        )
        .expect("ok");
    // metrics_flush_interval 0: emitted with every batch.
    assert_eq!(
        totals(&out, REQUEST_TOTAL),
        vec![
            ("api".into(), "orders".into(), "database".into(), 1),
            ("api".into(), "worker".into(), "messaging_system".into(), 1)
        ]
    );
    let resources = metrics_of(&out[0].batch);
    let points = sum_points(find_metrics(&resources, REQUEST_TOTAL)[0]);
    let database = points
        .iter()
        .find(|(a, _)| attribute(a, "server").as_deref() == Some("orders"))
        .unwrap();
    assert_eq!(
        attribute(&database.0, "client_env").as_deref(),
        Some("prod")
    );
    let messaging = points
        .iter()
        .find(|(a, _)| attribute(a, "server").as_deref() == Some("worker"))
        .unwrap();
    assert_eq!(
        attribute(&messaging.0, "server_env").as_deref(),
        Some("dev")
    );
    assert!(attribute(&messaging.0, "client_env").is_none());
}

#[test]
fn flushes_follow_the_interval() {
    let (mut graph, _) = connector(Config {
        metrics_flush_interval: GoDuration::from_secs(10),
        ..Config::default()
    });
    assert_eq!(graph.tick_interval(), Some(Duration::from_secs(2)));
    let client = with_ids(span("GET", SpanKind::Client, 30, vec![]), 1, 10, None);
    let server = with_ids(span("GET", SpanKind::Server, 20, vec![]), 1, 11, Some(10));
    assert!(
        graph
            .consume(
                traces(vec![
                    resource_spans("a", vec![client]),
                    resource_spans("b", vec![server])
                ]),
                at(0)
            )
            .expect("ok")
            .is_empty()
    );
    assert_eq!(graph.tick(at(2000)).len(), 1, "first tick flushes");
    assert!(graph.tick(at(4000)).is_empty(), "not yet 10s later");
    assert_eq!(graph.tick(at(12_000)).len(), 1);
}

#[test]
fn validation_reports_every_problem() {
    let config = Config {
        store: StoreConfig {
            ttl: GoDuration::default(),
            max_items: 0,
        },
        latency_histogram_buckets: vec![GoDuration::from_secs(2), GoDuration::from_secs(1)],
        ..Config::default()
    };
    assert_eq!(config.validate().len(), 3, "{:?}", config.validate());
}
