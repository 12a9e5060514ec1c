//! Tests of the loadbalancing exporter with scripted backends and scripted DNS answers.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use oxcol_core::Data;
use oxcol_core::testdata;
use prost::Message;

use super::*;
use crate::prom_translate::any_value_string;

/// A backend that records what it got, or refuses (retryable) while down.
struct Fake {
    up: AtomicBool,
    received: Mutex<Vec<Batch>>,
}

impl Exporter for Fake {
    fn export(&self, batch: Batch) -> BoxFuture<'_, Result<ExportOutcome, ExportError>> {
        let result = if self.up.load(Ordering::SeqCst) {
            self.received.lock().unwrap().push(batch);
            Ok(ExportOutcome::default())
        } else {
            Err(ExportError::Retryable {
                reason: "connection refused".into(),
                after: None,
            })
        };
        Box::pin(async move { result })
    }
}

/// The fake backends by address, created on first use.
#[derive(Clone, Default)]
struct Fleet(Arc<Mutex<HashMap<String, Arc<Fake>>>>);

impl Fleet {
    fn get(&self, address: &str) -> Arc<Fake> {
        self.0
            .lock()
            .unwrap()
            .entry(address.to_string())
            .or_insert_with(|| {
                Arc::new(Fake {
                    up: AtomicBool::new(true),
                    received: Mutex::new(Vec::new()),
                })
            })
            .clone()
    }

    fn factory(&self) -> BackendFactory {
        let fleet = self.clone();
        Arc::new(move |address: &str| Ok(fleet.get(address) as Arc<dyn Exporter>))
    }

    fn set_up(&self, address: &str, up: bool) {
        self.get(address).up.store(up, Ordering::SeqCst);
    }

    /// Items each backend received.
    fn items(&self) -> BTreeMap<String, u64> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(a, f)| {
                (
                    a.clone(),
                    f.received.lock().unwrap().iter().map(Batch::items).sum(),
                )
            })
            .collect()
    }

    /// service.name -> the backends that received it.
    fn services(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (address, fake) in self.0.lock().unwrap().iter() {
            for batch in fake.received.lock().unwrap().iter() {
                let mut batch = batch.clone();
                for resource in batch.metrics_mut().unwrap().iter() {
                    let service = resource
                        .resource
                        .as_ref()
                        .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                        .map(|kv| any_value_string(kv.value.as_ref()))
                        .unwrap_or_default();
                    let backends = out.entry(service).or_default();
                    if !backends.contains(address) {
                        backends.push(address.clone());
                    }
                }
            }
        }
        out
    }
}

fn fast_retry() -> RetryConfig {
    RetryConfig {
        initial_interval: GoDuration::from_millis(10),
        max_interval: GoDuration::from_millis(50),
        max_elapsed_time: GoDuration::from_secs(20),
        ..RetryConfig::default()
    }
}

fn static_config(hostnames: &[&str], routing_key: &str) -> Config {
    let mut config = Config::default();
    config.routing_key = routing_key.to_string();
    config.resolver.static_list = Some(StaticResolver {
        hostnames: hostnames.iter().map(|h| h.to_string()).collect(),
    });
    config.protocol.otlp.retry_on_failure = fast_retry();
    // Synchronous delivery (nothing parked), so a test sees the whole delivery in export().
    config.protocol.otlp.sending_queue.enabled = false;
    config
}

fn encoded_metrics(resources: usize) -> Batch {
    let request = testdata::metrics_request(resources, 2, 3);
    Batch::from_encoded(Signal::Metrics, request.encode_to_vec().into()).unwrap()
}

fn decoded_traces(resources: usize, spans: usize) -> Batch {
    let mut request = testdata::trace_request(resources, spans);
    for (r, resource) in request.resource_spans.iter_mut().enumerate() {
        for (s, span) in resource.scope_spans[0].spans.iter_mut().enumerate() {
            // Four traces per resource, spans of one trace spread over resources.
            span.trace_id = vec![
                (s % 4) as u8 + 1,
                r as u8 % 2,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
            ];
        }
    }
    Batch::from_traces(request.resource_spans)
}

#[test]
fn config_is_checked_with_every_problem_named() {
    let empty = Config::default();
    let errors = empty.validate();
    assert!(
        errors.iter().any(|e| e.contains("no resolver specified")),
        "{errors:?}"
    );
    assert!(static_config(&["a:4317"], "").validate().is_empty());

    let mut bad = static_config(&[], "spanID");
    bad.routing_attributes = vec!["tenant".into()];
    bad.resolver.dns = Some(DnsResolver {
        port: Some(Port::Text("http".into())),
        ..DnsResolver::default()
    });
    bad.retry_on_failure.enabled = true;
    bad.protocol.otlp.compression = "brotli".into();
    let errors = bad.validate();
    for expected in [
        "routing_key \"spanID\"",
        "routing_attributes can only be used",
        "only one resolver",
        "no endpoints specified",
        "hostname is required",
        "not a port number",
        "top level of loadbalancing",
        "protocol.otlp.compression",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "missing {expected:?} in {errors:?}"
        );
    }
    let attributes = static_config(&["a"], "attributes");
    assert!(attributes.validate()[0].contains("routing_attributes must be specified"));
}

#[test]
fn collector_yaml_keys_decode_for_every_resolver() {
    let config: Config = serde_json::from_value(serde_json::json!({
        "routing_key": "streamID",
        "protocol": {"otlp": {"timeout": "1s", "tls": {"insecure": true}, "sending_queue": {"queue_size": 50}}},
        "resolver": {"dns": {"hostname": "gateways.svc", "port": 55690}}
    }))
    .unwrap();
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let dns = config.resolver.dns.as_ref().unwrap();
    assert_eq!(
        (
            dns.port.as_ref().unwrap().text(),
            dns.interval.get(),
            dns.timeout.get()
        ),
        (
            "55690".to_string(),
            Duration::from_secs(5),
            Duration::from_secs(1)
        )
    );
    assert_eq!(config.queue_and_retry().0.queue_size, 50);
    assert!(
        !config.queue_and_retry().1.enabled,
        "pieces are retried in the exporter"
    );
    let k8s: Config = serde_json::from_value(serde_json::json!({
        "resolver": {"k8s": {"service": "lb-svc.kube-public", "ports": [4317, 14317], "return_hostnames": true}}
    }))
    .unwrap();
    assert!(k8s.validate().is_empty(), "{:?}", k8s.validate());
    let resolver = k8s.resolver.k8s.as_ref().unwrap();
    assert_eq!(resolver.ports(), [4317, 14317]);
    assert_eq!(resolver.watch_timeout(), Duration::from_secs(60));
    assert!(resolver.return_hostnames);
    let defaults: K8sResolver =
        serde_json::from_value(serde_json::json!({"service": "lb", "timeout": "0s"})).unwrap();
    assert_eq!(
        (
            defaults.ports(),
            defaults.watch_timeout(),
            defaults.return_hostnames
        ),
        (vec![4317], Duration::from_secs(60), false)
    );
    let bad: Config = serde_json::from_value(serde_json::json!({
        "resolver": {"k8s": {"service": "lb.ns.foo.bar", "ports": [0, 70000]},
                     "dns": {"hostname": "gateways"}}
    }))
    .unwrap();
    let errors = bad.validate();
    for expected in [
        "not a valid Kubernetes service FQDN",
        "0 is not a port",
        "70000 is not a port",
        "only one resolver",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "missing {expected:?} in {errors:?}"
        );
    }
    let missing: Config =
        serde_json::from_value(serde_json::json!({"resolver": {"k8s": {"ports": [4317]}}}))
            .unwrap();
    assert!(
        missing.validate()[0].contains("resolver.k8s.service is required"),
        "{:?}",
        missing.validate()
    );
    assert!(
        serde_json::from_value::<Config>(serde_json::json!({"resolver": {"srv": {}}})).is_err()
    );
}

#[test]
fn routing_key_defaults_and_signal_checks_follow_the_collector() {
    assert_eq!(
        RoutingKey::for_signal("", &[], Signal::Traces),
        Ok(RoutingKey::TraceId)
    );
    assert_eq!(
        RoutingKey::for_signal("", &[], Signal::Logs),
        Ok(RoutingKey::TraceId)
    );
    assert_eq!(
        RoutingKey::for_signal("", &[], Signal::Metrics),
        Ok(RoutingKey::Service)
    );
    let error = RoutingKey::for_signal("traceID", &[], Signal::Metrics).unwrap_err();
    assert!(error.contains("cannot route metrics"), "{error}");
    assert!(RoutingKey::for_signal("metric", &[], Signal::Traces).is_err());
}

#[test]
fn service_routing_cuts_encoded_batches_without_decoding_them() {
    let ring = Ring::new(&["a:1".into(), "b:1".into(), "c:1".into()]);
    let batch = encoded_metrics(12);
    let total = batch.items();
    let pieces = routing::split(batch, &RoutingKey::Service, &ring).unwrap();
    assert!(
        pieces.len() > 1,
        "12 services should reach more than one of 3 backends"
    );
    let mut sum = 0;
    for (index, piece) in &pieces {
        sum += piece.items();
        assert!(
            matches!(piece.data(), Data::Encoded(_)),
            "the piece was decoded"
        );
        let mut decoded = piece.clone();
        for resource in decoded.metrics_mut().unwrap().iter() {
            let service = resource.resource.as_ref().unwrap().attributes[0].clone();
            let name = any_value_string(service.value.as_ref());
            assert_eq!(
                ring.endpoint_for(name.as_bytes()),
                Some(ring.endpoints()[*index].as_str())
            );
        }
    }
    assert_eq!(sum, total);
}

#[test]
fn trace_routing_keeps_each_trace_on_one_backend() {
    let ring = Ring::new(&["a:1".into(), "b:1".into(), "c:1".into(), "d:1".into()]);
    let batch = decoded_traces(4, 16);
    let total = batch.items();
    let pieces = routing::split(batch, &RoutingKey::TraceId, &ring).unwrap();
    let mut owner_of_trace: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut sum = 0;
    for (index, mut piece) in pieces {
        sum += piece.items();
        for resource in piece.traces_mut().unwrap().iter() {
            for span in &resource.scope_spans[0].spans {
                let previous = owner_of_trace.insert(span.trace_id.clone(), index);
                assert!(previous.is_none_or(|p| p == index), "a trace was split");
                assert_eq!(
                    ring.endpoint_for(&span.trace_id),
                    Some(ring.endpoints()[index].as_str())
                );
            }
        }
    }
    assert_eq!(sum, total);
    assert_eq!(owner_of_trace.len(), 8);
}

#[test]
fn metric_stream_and_attribute_routing_conserve_points() {
    let ring = Ring::new(&["a:1".into(), "b:1".into(), "c:1".into()]);
    for key in [
        RoutingKey::Metric,
        RoutingKey::StreamId,
        RoutingKey::Resource,
        RoutingKey::Attributes(vec!["attr.0".into(), "service.name".into()]),
    ] {
        let batch = Batch::from_metrics(testdata::metrics_request(3, 4, 20).resource_metrics);
        let total = batch.items();
        let pieces = routing::split(batch, &key, &ring).unwrap();
        assert_eq!(
            pieces.iter().map(|(_, b)| b.items()).sum::<u64>(),
            total,
            "{key:?}"
        );
        assert!(pieces.len() > 1, "{key:?} sent everything to one backend");
        // The same point always goes the same way.
        let again = routing::split(
            Batch::from_metrics(testdata::metrics_request(3, 4, 20).resource_metrics),
            &key,
            &ring,
        )
        .unwrap();
        let sizes =
            |p: &Vec<(usize, Batch)>| p.iter().map(|(i, b)| (*i, b.items())).collect::<Vec<_>>();
        assert_eq!(sizes(&pieces), sizes(&again), "{key:?}");
    }
    // Attributes: the key is the Collector's "name=value|" form, found on the resource first.
    let ring_of_one_key = |key: &[u8]| ring.endpoint_for(key).map(str::to_string);
    let batch = Batch::from_metrics(testdata::metrics_request(1, 1, 1).resource_metrics);
    let pieces = routing::split(
        batch,
        &RoutingKey::Attributes(vec!["service.name".into(), "missing".into()]),
        &ring,
    )
    .unwrap();
    assert_eq!(
        Some(ring.endpoints()[pieces[0].0].clone()),
        ring_of_one_key(b"service.name=checkout-0|missing=|")
    );
}

#[tokio::test]
async fn each_service_lands_on_exactly_one_backend() {
    let fleet = Fleet::default();
    let config = static_config(&["gw-1:4317", "gw-2:4317", "gw-3:4317"], "service");
    let lb = LoadBalancer::start(
        "loadbalancing",
        Signal::Metrics,
        &config,
        fleet.factory(),
        None,
        Registry::new(),
    )
    .unwrap();
    for _ in 0..5 {
        let outcome = lb.export(encoded_metrics(20)).await.unwrap();
        assert_eq!(outcome.rejected, 0);
    }
    let services = fleet.services();
    assert_eq!(services.len(), 20);
    for (service, backends) in &services {
        assert_eq!(backends.len(), 1, "{service} reached {backends:?}");
    }
    let items = fleet.items();
    assert_eq!(items.values().sum::<u64>(), 5 * encoded_metrics(20).items());
    assert_eq!(items.len(), 3, "{items:?}");
}

#[tokio::test]
async fn a_backend_that_is_down_gets_its_data_when_it_is_back() {
    let fleet = Fleet::default();
    let registry = Registry::new();
    let config = static_config(&["gw-1:4317", "gw-2:4317"], "service");
    let lb = Arc::new(
        LoadBalancer::start(
            "loadbalancing",
            Signal::Metrics,
            &config,
            fleet.factory(),
            None,
            registry.clone(),
        )
        .unwrap(),
    );
    fleet.set_up("gw-2:4317", false);
    let sending = tokio::spawn({
        let lb = lb.clone();
        async move { lb.export(encoded_metrics(10)).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!sending.is_finished(), "returned while a backend was down");
    fleet.set_up("gw-2:4317", true);
    let outcome = sending.await.unwrap().unwrap();
    assert_eq!(outcome.rejected, 0);
    assert_eq!(
        fleet.items().values().sum::<u64>(),
        encoded_metrics(10).items()
    );
    let text = registry.render_prometheus();
    assert!(text.contains("otelcol_loadbalancer_backend_outcome{exporter=\"loadbalancing\",endpoint=\"gw-2:4317\",success=\"false\"}"), "{text}");
    assert!(
        text.contains(
            "otelcol_loadbalancer_num_backends{exporter=\"loadbalancing\",resolver=\"static\"} 2"
        ),
        "{text}"
    );
}

/// DNS answers scripted by the test; `None` fails the resolution.
struct ScriptedDns(Mutex<Option<Vec<IpAddr>>>);

impl Lookup for ScriptedDns {
    fn lookup<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, String>> {
        let answer = self.0.lock().unwrap().clone();
        Box::pin(async move { answer.ok_or_else(|| "SERVFAIL".to_string()) })
    }
}

fn ips(list: &[&str]) -> Option<Vec<IpAddr>> {
    Some(list.iter().map(|ip| ip.parse().unwrap()).collect())
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn data_retrying_for_a_backend_that_leaves_the_dns_answer_is_routed_again() {
    let fleet = Fleet::default();
    let registry = Registry::new();
    let dns = Arc::new(ScriptedDns(Mutex::new(ips(&[
        "10.0.0.1", "10.0.0.2", "10.0.0.3",
    ]))));
    let mut config = static_config(&[], "service");
    config.resolver.static_list = None;
    config.resolver.dns = Some(DnsResolver {
        hostname: "gateways".into(),
        interval: GoDuration::from_millis(50),
        ..DnsResolver::default()
    });
    // Retries are slow: the reroute must come from the ring change, not the next retry.
    config.protocol.otlp.retry_on_failure.initial_interval = GoDuration::from_secs(30);
    config.protocol.otlp.retry_on_failure.max_interval = GoDuration::from_secs(30);
    config.protocol.otlp.retry_on_failure.max_elapsed_time = GoDuration::from_secs(0);
    let lb = Arc::new(
        LoadBalancer::start(
            "lb",
            Signal::Metrics,
            &config,
            fleet.factory(),
            Some(dns.clone()),
            registry.clone(),
        )
        .unwrap(),
    );
    wait_for("the first resolution", || lb.endpoints().len() == 3).await;
    // No port configured: ring names are bare IPs, backends get 4317.
    assert_eq!(lb.endpoints(), vec!["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    fleet.set_up("10.0.0.3:4317", false);
    let batch = encoded_metrics(30);
    let total = batch.items();
    let sending = tokio::spawn({
        let lb = lb.clone();
        async move { lb.export(batch).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!sending.is_finished());
    let delivered_before = fleet.items().values().sum::<u64>();
    assert!(
        delivered_before < total,
        "nothing was held for the dead backend"
    );
    // A failed resolution keeps the ring.
    *dns.0.lock().unwrap() = None;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(lb.endpoints().len(), 3);
    // The backend leaves the answer: its data goes to the two others at once.
    *dns.0.lock().unwrap() = ips(&["10.0.0.1", "10.0.0.2"]);
    let outcome = tokio::time::timeout(Duration::from_secs(5), sending)
        .await
        .expect("not rerouted on the ring change")
        .unwrap()
        .unwrap();
    assert_eq!(outcome.rejected, 0);
    let items = fleet.items();
    assert_eq!(items.get("10.0.0.3:4317").copied().unwrap_or(0), 0);
    assert_eq!(items.values().sum::<u64>(), total, "{items:?}");
    let text = registry.render_prometheus();
    let rerouted = total - delivered_before;
    assert!(
        text.contains(&format!(
            "oxcol_loadbalancer_rerouted_items{{exporter=\"lb\",data_type=\"metrics\"}} {rerouted}"
        )),
        "{text}"
    );
    assert!(text.contains("otelcol_loadbalancer_num_resolutions{exporter=\"lb\",resolver=\"dns\",success=\"false\"}"), "{text}");
    assert!(
        text.contains("otelcol_loadbalancer_num_backends{exporter=\"lb\",resolver=\"dns\"} 2"),
        "{text}"
    );
}

#[tokio::test]
async fn a_refusing_backend_is_ejected_only_when_asked_and_comes_back() {
    let fleet = Fleet::default();
    let mut config = static_config(&["gw-1:4317", "gw-2:4317", "gw-3:4317"], "service");
    config.eject_refusing_backend_after = GoDuration::from_millis(200);
    let lb = Arc::new(
        LoadBalancer::start(
            "lb-eject",
            Signal::Metrics,
            &config,
            fleet.factory(),
            None,
            Registry::new(),
        )
        .unwrap(),
    );
    fleet.set_up("gw-2:4317", false);
    let batch = encoded_metrics(30);
    let total = batch.items();
    let outcome = tokio::time::timeout(Duration::from_secs(5), lb.export(batch))
        .await
        .expect("the refusing backend was not ejected")
        .unwrap();
    assert_eq!(outcome.rejected, 0);
    assert_eq!(lb.endpoints(), vec!["gw-1:4317", "gw-3:4317"]);
    assert_eq!(fleet.items().values().sum::<u64>(), total);
    // Back up: the probe puts it back in the ring.
    fleet.set_up("gw-2:4317", true);
    wait_for("the backend to come back", || lb.endpoints().len() == 3).await;

    // Off by default: the same outage only waits. (The export dropped at the timeout hands
    // its data to the next exporter of this id: an id of its own keeps it out of the other
    // tests of this binary.)
    let fleet = Fleet::default();
    let config = static_config(&["gw-1:4317", "gw-2:4317", "gw-3:4317"], "service");
    let lb = LoadBalancer::start(
        "lb-eject",
        Signal::Metrics,
        &config,
        fleet.factory(),
        None,
        Registry::new(),
    )
    .unwrap();
    fleet.set_up("gw-2:4317", false);
    assert!(
        tokio::time::timeout(Duration::from_millis(600), lb.export(encoded_metrics(30)))
            .await
            .is_err()
    );
    assert_eq!(lb.endpoints().len(), 3);
}

#[tokio::test]
async fn without_retries_a_failed_piece_is_counted_as_rejected() {
    let fleet = Fleet::default();
    let mut config = static_config(&["gw-1:4317", "gw-2:4317"], "service");
    config.protocol.otlp.retry_on_failure.enabled = false;
    let lb = LoadBalancer::start(
        "lb",
        Signal::Metrics,
        &config,
        fleet.factory(),
        None,
        Registry::new(),
    )
    .unwrap();
    fleet.set_up("gw-1:4317", false);
    let batch = encoded_metrics(10);
    let total = batch.items();
    let outcome = lb.export(batch).await.unwrap();
    let delivered = fleet.items().values().sum::<u64>();
    assert!(delivered > 0 && delivered < total);
    assert_eq!(outcome.rejected, total - delivered);
    assert!(outcome.message.contains("gw-1:4317"), "{}", outcome.message);
}

/// A send under way through exporter `id` (ring gw-1 + gw-2, gw-2 refusing): part of the
/// batch is delivered to gw-1, the rest held for gw-2 and retried. Returns the exporter,
/// the send, the batch's items and what was delivered so far.
async fn exporter_holding_data_for_a_refusing_backend(
    fleet: &Fleet,
    id: &str,
) -> (
    Arc<LoadBalancer>,
    tokio::task::JoinHandle<Result<ExportOutcome, ExportError>>,
    u64,
    u64,
) {
    let old = Arc::new(
        LoadBalancer::start(
            id,
            Signal::Metrics,
            &static_config(&["gw-1:4317", "gw-2:4317"], "service"),
            fleet.factory(),
            None,
            Registry::new(),
        )
        .unwrap(),
    );
    fleet.set_up("gw-2:4317", false);
    let batch = encoded_metrics(20);
    let total = batch.items();
    let sending = tokio::spawn({
        let old = old.clone();
        async move { old.export(batch).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let delivered_before = fleet.items().values().sum::<u64>();
    assert!(delivered_before < total);
    (old, sending, total, delivered_before)
}

/// The exporter that replaces `id` at a reload: its config has gw-2 no more.
fn replacement_without_gw2(fleet: &Fleet, id: &str, registry: Arc<Registry>) -> LoadBalancer {
    LoadBalancer::start(
        id,
        Signal::Metrics,
        &static_config(&["gw-1:4317"], "service"),
        fleet.factory(),
        None,
        registry,
    )
    .unwrap()
}

#[tokio::test]
async fn data_left_by_a_stopped_exporter_goes_to_its_replacement() {
    let fleet = Fleet::default();
    let (old, sending, total, delivered_before) =
        exporter_holding_data_for_a_refusing_backend(&fleet, "lb/handover").await;
    // A reload: the old exporter's send is abandoned (its queue gave up) and it is dropped.
    sending.abort();
    let _ = sending.await;
    drop(old);
    // What was held for gw-2 goes to gw-1.
    let registry = Registry::new();
    let _new = replacement_without_gw2(&fleet, "lb/handover", registry.clone());
    wait_for("the handed-over data", || {
        fleet.items().values().sum::<u64>() == total
    })
    .await;
    assert_eq!(fleet.items().get("gw-2:4317").copied().unwrap_or(0), 0);
    let text = registry.render_prometheus();
    assert!(
        text.contains(&format!("oxcol_loadbalancer_rerouted_items{{exporter=\"lb/handover\",data_type=\"metrics\"}} {}", total - delivered_before)),
        "{text}"
    );
}

/// The old exporter's delivery may end (and hand over what it holds) only after the
/// replacement has started, e.g. while it waited on a dead backend: that data is delivered
/// too, not left behind.
#[tokio::test]
async fn data_handed_over_after_the_replacement_started_is_delivered_too() {
    let fleet = Fleet::default();
    let (old, sending, total, _) =
        exporter_holding_data_for_a_refusing_backend(&fleet, "lb/late-handover").await;
    // The replacement starts first, while the old send still holds its pieces ...
    let _new = replacement_without_gw2(&fleet, "lb/late-handover", Registry::new());
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ... and only then is the old send abandoned and the old exporter dropped.
    sending.abort();
    let _ = sending.await;
    drop(old);
    wait_for("the late handed-over data", || {
        fleet.items().values().sum::<u64>() == total
    })
    .await;
    assert_eq!(fleet.items().get("gw-2:4317").copied().unwrap_or(0), 0);
}

#[tokio::test]
async fn with_a_queue_pieces_for_a_failing_backend_are_retried_apart_within_a_bound() {
    let fleet = Fleet::default();
    let registry = Registry::new();
    let mut config = static_config(&["gw-1:4317", "gw-2:4317"], "service");
    config.protocol.otlp.sending_queue.enabled = true;
    config.protocol.otlp.sending_queue.queue_size = 2;
    let lb = Arc::new(
        LoadBalancer::start(
            "lb/park",
            Signal::Metrics,
            &config,
            fleet.factory(),
            None,
            registry,
        )
        .unwrap(),
    );
    fleet.set_up("gw-2:4317", false);
    let batch = encoded_metrics(10);
    let total = batch.items();
    // Two batches: their pieces for gw-2 are parked, the consumer is free at once.
    for _ in 0..2 {
        let outcome = tokio::time::timeout(Duration::from_secs(2), lb.export(batch.clone()))
            .await
            .expect("a consumer waited for a failing backend although the park had room")
            .unwrap();
        assert_eq!(outcome.rejected, 0);
    }
    assert!(fleet.items().values().sum::<u64>() < 2 * total);
    // The park is full: the third waits in place (backpressure), bounded memory.
    let third = tokio::spawn({
        let lb = lb.clone();
        let batch = batch.clone();
        async move { lb.export(batch).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !third.is_finished(),
        "more parked than sending_queue.queue_size"
    );
    fleet.set_up("gw-2:4317", true);
    third.await.unwrap().unwrap();
    wait_for("the parked pieces", || {
        fleet.items().values().sum::<u64>() == 3 * total
    })
    .await;
}
