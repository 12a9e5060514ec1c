//! `loadbalancing` exporter: spreads data over a tier of OTLP/gRPC backends (gateways) by
//! consistent hashing, so every trace, service, resource, metric or stream lands on one
//! backend (the Collector's loadbalancingexporter config, unchanged).
//!
//! One batch is split by `routing_key` into one piece per backend of the ring ([`routing`],
//! [`ring`]); each piece goes out through an `otlp` exporter built from `protocol.otlp` for
//! that backend. The sending queue of `protocol.otlp` sits in front of the ring (built by the
//! service like any exporter's), and `protocol.otlp.retry_on_failure` is applied here, per
//! piece, against the ring *of the moment*: a piece retrying for a backend that left the ring
//! (DNS answer or the Service's EndpointSlices changed, or ejected for refusing) is split
//! again through the new ring instead of being dropped with that backend's exporter, as the
//! Collector does.
//!
//! This module must never drop a piece silently: every piece is delivered, rejected by its
//! backend (counted as a partial success), or given up after `max_elapsed_time` (counted).

pub mod resolver;
pub mod ring;
pub mod routing;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use oxcol_core::kube;
use oxcol_core::telemetry::{Counter, Gauge, Registry};
use oxcol_core::{Batch, ExportError, ExportOutcome, Exporter, GoDuration, Signal};
use rand::Rng;
use serde::Deserialize;
use serde::de::IgnoredAny;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::client::ClientCredentials;
use crate::otlp;
use crate::queue::{QueueConfig, RetryConfig};
use resolver::{Lookup, SystemLookup, endpoint_with_port, resolve_dns};
use ring::Ring;
use routing::{ROUTING_KEYS, RoutingKey};

pub const TYPE: &str = "loadbalancing";
pub const ALIASES: &[&str] = &["loadbalancing"];

/// How often an ejected backend is probed (an empty export request) to come back.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `otlp:` every key of the `otlp` exporter except `endpoint` (ignored, as in the
    /// Collector), applied to each backend.
    pub protocol: Protocol,
    pub resolver: ResolverConfig,
    /// `traceID` (default for traces and logs), `service` (default for metrics),
    /// `resource`, `metric`, `streamID` or `attributes`.
    pub routing_key: String,
    /// With `routing_key: attributes`: the attributes whose values make the key.
    pub routing_attributes: Vec<String>,
    /// The Collector's exporter-level resilience keys (off by default there). oxcol applies
    /// `protocol.otlp`'s queue and retry in front of the ring, so these are accepted only
    /// at their defaults (see validate).
    pub timeout: GoDuration,
    pub retry_on_failure: RetryConfig,
    pub sending_queue: QueueConfig,
    /// oxcol: take a backend out of the ring once it has refused (retryable failures, no
    /// success in between) for this long; it is probed every second and comes back at its
    /// first success. Default 0s: off (ejecting breaks stickiness while it lasts).
    pub eject_refusing_backend_after: GoDuration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            protocol: Protocol::default(),
            resolver: ResolverConfig::default(),
            routing_key: String::new(),
            routing_attributes: Vec::new(),
            timeout: GoDuration::from_secs(0),
            retry_on_failure: RetryConfig {
                enabled: false,
                ..RetryConfig::default()
            },
            sending_queue: QueueConfig {
                enabled: false,
                ..QueueConfig::default()
            },
            eject_refusing_backend_after: GoDuration::from_secs(0),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Protocol {
    pub otlp: otlp::Config,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ResolverConfig {
    #[serde(rename = "static")]
    pub static_list: Option<StaticResolver>,
    pub dns: Option<DnsResolver>,
    pub k8s: Option<K8sResolver>,
    /// Not supported: reported by validate.
    pub aws_cloud_map: Option<IgnoredAny>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StaticResolver {
    /// `host` or `host:port` (4317 when no port is given).
    pub hostnames: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsResolver {
    /// The name whose addresses (all A and AAAA records) are the backends. Required.
    pub hostname: String,
    /// Port of every backend. Default 4317.
    pub port: Option<Port>,
    /// Re-resolution interval. Default 5s.
    pub interval: GoDuration,
    /// Bound of one resolution. Default 1s.
    pub timeout: GoDuration,
}

impl Default for DnsResolver {
    fn default() -> Self {
        DnsResolver {
            hostname: String::new(),
            port: None,
            interval: GoDuration::from_secs(5),
            timeout: GoDuration::from_secs(1),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct K8sResolver {
    /// The Service whose ready endpoints are the backends: `name` (in this pod's own
    /// namespace, else `default`), `name.namespace` or `name.namespace.svc.<cluster domain>`.
    /// Required.
    pub service: String,
    /// Ports of every backend; each endpoint is a backend once per port. Default `[4317]`.
    pub ports: Vec<i64>,
    /// The watch's `timeoutSeconds`: the API server ends each watch after this long and it
    /// is resumed from where it stopped. Default 1m (the Collector's since contrib PR 46206;
    /// 0s means the default).
    pub timeout: GoDuration,
    /// Backends by `<pod hostname>.<service>.<namespace>:<port>` instead of `<ip>:<port>`
    /// (a headless Service of a StatefulSet). Default false.
    pub return_hostnames: bool,
}

impl Default for K8sResolver {
    fn default() -> Self {
        K8sResolver {
            service: String::new(),
            ports: Vec::new(),
            timeout: GoDuration::from_secs(60),
            return_hostnames: false,
        }
    }
}

impl K8sResolver {
    /// `ports`, or 4317 when none is given (validate has checked the range).
    fn ports(&self) -> Vec<u16> {
        if self.ports.is_empty() {
            return vec![4317];
        }
        self.ports
            .iter()
            .filter_map(|p| u16::try_from(*p).ok())
            .collect()
    }

    fn watch_timeout(&self) -> Duration {
        match self.timeout.get() {
            zero if zero.is_zero() => Duration::from_secs(60),
            timeout => timeout,
        }
    }
}

/// The Collector reads `port` as a string; YAML users write a number too.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Port {
    Number(u64),
    Text(String),
}

impl Port {
    fn text(&self) -> String {
        match self {
            Port::Number(n) => n.to_string(),
            Port::Text(t) => t.clone(),
        }
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !self.routing_key.is_empty() && !ROUTING_KEYS.contains(&self.routing_key.as_str()) {
            errors.push(format!(
                "routing_key {:?} is not supported; use one of {}",
                self.routing_key,
                ROUTING_KEYS.join(", ")
            ));
        }
        if self.routing_key == "attributes" && self.routing_attributes.is_empty() {
            errors.push(
                "routing_attributes must be specified when routing_key is \"attributes\""
                    .to_string(),
            );
        }
        if self.routing_key != "attributes" && !self.routing_attributes.is_empty() {
            errors.push(format!("routing_attributes can only be used when routing_key is \"attributes\"; got {:?}. Remove routing_attributes or set routing_key to \"attributes\"", self.routing_key));
        }
        let resolver = &self.resolver;
        if resolver.aws_cloud_map.is_some() {
            errors.push("resolver.aws_cloud_map is not supported in oxcol; use resolver.dns or resolver.static".to_string());
        }
        let chosen = [
            resolver.static_list.is_some(),
            resolver.dns.is_some(),
            resolver.k8s.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if chosen == 0 && resolver.aws_cloud_map.is_none() {
            errors.push("resolver: no resolver specified; add resolver.static.hostnames, resolver.dns.hostname or resolver.k8s.service".to_string());
        }
        if chosen > 1 {
            errors.push(
                "resolver: only one resolver should be specified; keep one of static, dns and k8s"
                    .to_string(),
            );
        }
        if let Some(list) = &resolver.static_list {
            if list.hostnames.is_empty() {
                errors.push("resolver.static.hostnames: no endpoints specified; list the backends as host:port".to_string());
            }
            for name in &list.hostnames {
                let uri = format!("http://{}", endpoint_with_port(name));
                if name.is_empty() || uri.parse::<http::Uri>().is_err() {
                    errors.push(format!(
                        "resolver.static.hostnames: {name:?} is not a host or host:port"
                    ));
                }
            }
        }
        if let Some(dns) = &resolver.dns {
            if dns.hostname.is_empty() {
                errors.push(
                    "resolver.dns.hostname is required: the name whose addresses are the backends"
                        .to_string(),
                );
            }
            if let Some(port) = &dns.port {
                if port.text().parse::<u16>().is_err() {
                    errors.push(format!(
                        "resolver.dns.port {:?} is not a port number",
                        port.text()
                    ));
                }
            }
            if dns.interval.get().is_zero() {
                errors.push("resolver.dns.interval must be positive".to_string());
            }
            if dns.timeout.get().is_zero() {
                errors.push("resolver.dns.timeout must be positive".to_string());
            }
        }
        if let Some(k8s) = &resolver.k8s {
            if let Err(problem) = resolver::parse_service(&k8s.service, None) {
                errors.push(problem);
            }
            for port in &k8s.ports {
                if !(1..=65535).contains(port) {
                    errors.push(format!(
                        "resolver.k8s.ports: {port} is not a port number (1 to 65535)"
                    ));
                }
            }
        }
        // protocol.otlp: checked as the otlp exporter checks itself, with a backend's address.
        let template = otlp::Config {
            endpoint: "placeholder:4317".to_string(),
            ..self.protocol.otlp.clone()
        };
        errors.extend(
            template
                .validate()
                .into_iter()
                .map(|e| format!("protocol.otlp.{e}")),
        );
        if self.protocol.otlp.sending_queue.storage.is_some() {
            errors.push("protocol.otlp.sending_queue.storage is not supported yet for loadbalancing; remove it (the queue in front of the ring is in memory)".to_string());
        }
        if !self.timeout.get().is_zero()
            || self.retry_on_failure.enabled
            || self.sending_queue.enabled
        {
            errors.push("timeout, retry_on_failure and sending_queue at the top level of loadbalancing are not supported yet; set them under protocol.otlp, which oxcol applies in front of the ring".to_string());
        }
        errors
    }

    /// The queue the service builds in front of the ring, and the retry it applies there
    /// (none: pieces are retried here, per backend, against the current ring).
    pub fn queue_and_retry(&self) -> (QueueConfig, RetryConfig) {
        (
            self.protocol.otlp.sending_queue.clone(),
            RetryConfig {
                enabled: false,
                ..RetryConfig::default()
            },
        )
    }
}

/// Builds the exporter of one backend from its address (`host:port`).
pub type BackendFactory = Arc<dyn Fn(&str) -> Result<Arc<dyn Exporter>, String> + Send + Sync>;

/// The factory of real backends: an `otlp` exporter per backend from `protocol.otlp`, with
/// the `auth:` credentials (resolved by the service).
pub fn otlp_backends(
    template: &otlp::Config,
    credentials: Option<ClientCredentials>,
) -> BackendFactory {
    let template = template.clone();
    Arc::new(move |address: &str| {
        let config = otlp::Config {
            endpoint: address.to_string(),
            ..template.clone()
        };
        let exporter =
            otlp::OtlpGrpcExporter::new(&config)?.with_credentials(credentials.clone())?;
        Ok(Arc::new(exporter) as Arc<dyn Exporter>)
    })
}

/// Self-telemetry with the Collector's names, plus re-routed items.
struct Telemetry {
    registry: Arc<Registry>,
    id: String,
    num_backends: Gauge,
    resolutions_ok: Counter,
    resolutions_failed: Counter,
    backend_updates: Counter,
    rerouted: Counter,
    parked_dropped: Counter,
}

impl Telemetry {
    fn new(registry: Arc<Registry>, id: &str, resolver: &'static str, signal: Signal) -> Telemetry {
        let base = [("exporter", id), ("resolver", resolver)];
        let resolutions = |success: &str| {
            registry.counter(
                "otelcol_loadbalancer_num_resolutions",
                "Number of times the resolver has triggered new resolutions.",
                &[
                    ("exporter", id),
                    ("resolver", resolver),
                    ("success", success),
                ],
            )
        };
        Telemetry {
            num_backends: registry.gauge(
                "otelcol_loadbalancer_num_backends",
                "Current number of backends in use.",
                &base,
            ),
            resolutions_ok: resolutions("true"),
            resolutions_failed: resolutions("false"),
            backend_updates: registry.counter(
                "otelcol_loadbalancer_num_backend_updates",
                "Number of times the list of backends was updated.",
                &base,
            ),
            parked_dropped: registry.counter(
                "oxcol_loadbalancer_dropped_items",
                "Items given up after their queue already let them go (retried in the background, then max_elapsed_time or a permanent refusal).",
                &[("exporter", id), ("data_type", signal.name())],
            ),
            rerouted: registry.counter(
                "oxcol_loadbalancer_rerouted_items",
                "Items (points, spans, log records) sent to another backend than the one a previous attempt failed on, because the ring changed.",
                &[("exporter", id), ("data_type", signal.name())],
            ),
            id: id.to_string(),
            registry,
        }
    }

    fn outcome(&self, endpoint: &str, success: bool) -> Counter {
        self.registry.counter(
            "otelcol_loadbalancer_backend_outcome",
            "Number of successes and failures for each endpoint.",
            &[
                ("exporter", self.id.as_str()),
                ("endpoint", endpoint),
                ("success", if success { "true" } else { "false" }),
            ],
        )
    }
}

/// One backend of the ring.
struct Backend {
    /// The ring name (as resolved: `host`, `host:port`, `ip:port`).
    name: String,
    exporter: Arc<dyn Exporter>,
    /// Since when every attempt failed with a retryable error (None after a success).
    refusing_since: Mutex<Option<Instant>>,
    succeeded: Counter,
    failed: Counter,
}

/// The ring in use, with the backend of each of its endpoints (same order).
struct RingState {
    ring: Ring,
    backends: Vec<Arc<Backend>>,
}

#[derive(Default)]
struct Membership {
    /// What the resolver answered last.
    resolved: Vec<String>,
    /// Ejected for refusing (oxcol's opt-in); kept out of the ring while resolved.
    ejected: HashSet<String>,
    /// Built backends by ring name (those of the resolved list).
    backends: HashMap<String, Arc<Backend>>,
}

struct Inner {
    id: String,
    signal: Signal,
    routing: RoutingKey,
    retry: RetryConfig,
    eject_after: Option<Duration>,
    factory: BackendFactory,
    membership: Mutex<Membership>,
    ring: watch::Sender<Arc<RingState>>,
    telemetry: Telemetry,
    stop: CancellationToken,
    /// Pieces retried by tasks of their own, and their bound (`sending_queue.queue_size`).
    parked: std::sync::atomic::AtomicUsize,
    park_capacity: usize,
}

/// The exporter: one per (id, signal); cancels its resolver and probes when dropped.
pub struct LoadBalancer {
    inner: Arc<Inner>,
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        self.inner.stop.cancel();
    }
}

impl LoadBalancer {
    /// Builds the exporter for `signal` and starts its resolver. Must be called inside a
    /// tokio runtime. `lookup` answers DNS queries (the system resolver unless a test
    /// scripts it).
    pub fn start(
        id: &str,
        signal: Signal,
        config: &Config,
        factory: BackendFactory,
        lookup: Option<Arc<dyn Lookup>>,
        registry: Arc<Registry>,
    ) -> Result<LoadBalancer, String> {
        let routing =
            RoutingKey::for_signal(&config.routing_key, &config.routing_attributes, signal)?;
        let resolver_name = if config.resolver.k8s.is_some() {
            "k8s"
        } else if config.resolver.dns.is_some() {
            "dns"
        } else {
            "static"
        };
        // Located before anything starts: an exporter that cannot reach the API does not
        // start (the Collector's newInClusterClient fails the same way).
        let kube_api = match &config.resolver.k8s {
            Some(k8s) => {
                let service =
                    resolver::parse_service(&k8s.service, kube::own_namespace().as_deref())?;
                let api = kube::default_api_config(&|name| std::env::var(name).ok())
                    .and_then(kube::Api::new)
                    .map_err(|problem| {
                        format!("resolver.k8s: cannot locate the Kubernetes API: {problem}")
                    })?;
                Some((api, service))
            }
            None => None,
        };
        let eject_after = Some(config.eject_refusing_backend_after.get()).filter(|d| !d.is_zero());
        let (ring, _) = watch::channel(Arc::new(RingState {
            ring: Ring::default(),
            backends: Vec::new(),
        }));
        let inner = Arc::new(Inner {
            id: id.to_string(),
            signal,
            routing,
            retry: config.protocol.otlp.retry_on_failure.clone(),
            eject_after,
            factory,
            membership: Mutex::new(Membership::default()),
            ring,
            telemetry: Telemetry::new(registry, id, resolver_name, signal),
            stop: CancellationToken::new(),
            parked: std::sync::atomic::AtomicUsize::new(0),
            // Without a queue, acknowledging means delivered: nothing is parked.
            park_capacity: if config.protocol.otlp.sending_queue.enabled {
                config.protocol.otlp.sending_queue.queue_size
            } else {
                0
            },
        });
        if let Some(list) = &config.resolver.static_list {
            inner.telemetry.resolutions_ok.add(1);
            inner.set_resolved(list.hostnames.clone());
        } else if let (Some(k8s), Some((api, service))) = (&config.resolver.k8s, kube_api) {
            tokio::spawn(watch_service(
                Arc::downgrade(&inner),
                k8s.clone(),
                api,
                service,
            ));
        } else if let Some(dns) = &config.resolver.dns {
            let lookup = lookup.unwrap_or_else(|| Arc::new(SystemLookup));
            tokio::spawn(resolve_periodically(
                Arc::downgrade(&inner),
                dns.clone(),
                lookup,
            ));
        } else {
            return Err("no resolver configured".to_string());
        }
        tokio::spawn(adopt_handed_over(
            Arc::downgrade(&inner),
            (id.to_string(), signal),
        ));
        Ok(LoadBalancer { inner })
    }

    /// The endpoints of the ring now (sorted).
    pub fn endpoints(&self) -> Vec<String> {
        self.inner.ring.borrow().ring.endpoints().to_vec()
    }
}

/// Resolves `dns.hostname` now and every `interval` until the exporter is gone.
async fn resolve_periodically(
    inner: std::sync::Weak<Inner>,
    dns: DnsResolver,
    lookup: Arc<dyn Lookup>,
) {
    let port = dns.port.as_ref().map(Port::text);
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let stop = strong.stop.clone();
        match resolve_dns(&lookup, &dns.hostname, port.as_deref(), dns.timeout.get()).await {
            Ok(endpoints) => {
                strong.telemetry.resolutions_ok.add(1);
                strong.set_resolved(endpoints);
            }
            Err(error) => {
                strong.telemetry.resolutions_failed.add(1);
                tracing::warn!(exporter = %strong.id, hostname = %dns.hostname, %error, "DNS resolution failed; keeping the last list of backends");
            }
        }
        drop(strong);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(dns.interval.get()) => {}
        }
    }
}

/// Watches the EndpointSlices of `service` (label `kubernetes.io/service-name`) until the
/// exporter is gone; every list and change sets the resolved list. A failed list or watch
/// keeps the last list (the ring stays as it was) and is retried with back-off.
async fn watch_service(
    inner: std::sync::Weak<Inner>,
    k8s: K8sResolver,
    api: kube::Api,
    service: resolver::ServiceRef,
) {
    let Some(strong) = inner.upgrade() else {
        return;
    };
    let stop = strong.stop.clone();
    let reporter = kube::Reporter {
        owner: format!("exporter {}", strong.id),
        meanwhile: "the ring keeps its last backends".to_string(),
        relists: Counter::default(),
        errors: strong.telemetry.resolutions_failed.clone(),
    };
    tracing::info!(exporter = %strong.id, service = %service.name, namespace = %service.namespace, ports = ?k8s.ports(), "loadbalancing: watching the Service's EndpointSlices");
    drop(strong);
    let collection = kube::Collection {
        path: format!(
            "/apis/discovery.k8s.io/v1/namespaces/{}/endpointslices",
            service.namespace
        ),
        query: format!(
            "labelSelector={}",
            kube::percent_encode(&format!("kubernetes.io/service-name={}", service.name))
        ),
        watch_timeout: k8s.watch_timeout(),
    };
    let mut sink = SliceSink {
        inner,
        ports: k8s.ports(),
        return_hostnames: k8s.return_hostnames,
        service,
        known: resolver::ServiceEndpoints::default(),
    };
    kube::list_and_watch::<resolver::EndpointSlice>(&api, &collection, &mut sink, &reporter, &stop)
        .await;
}

/// Keeps the hosts of every EndpointSlice of the Service and publishes the endpoints.
struct SliceSink {
    inner: std::sync::Weak<Inner>,
    service: resolver::ServiceRef,
    ports: Vec<u16>,
    return_hostnames: bool,
    known: resolver::ServiceEndpoints,
}

impl SliceSink {
    fn hosts(
        &self,
        inner: &Inner,
        slice: &resolver::EndpointSlice,
    ) -> std::collections::BTreeSet<String> {
        let hosts = resolver::slice_hosts(slice, self.return_hostnames);
        if hosts.missing_hostnames > 0 {
            inner.telemetry.resolutions_failed.add(1);
            tracing::warn!(exporter = %inner.id, slice = %slice.metadata.name, endpoints = hosts.missing_hostnames, "return_hostnames: ready endpoints without a hostname are left out until they have one (is the Service the StatefulSet's serviceName?)");
        }
        hosts.hosts
    }

    fn publish(&self, inner: &Inner) {
        inner.telemetry.resolutions_ok.add(1);
        inner.set_resolved(
            self.known
                .endpoints(&self.service, &self.ports, self.return_hostnames),
        );
    }
}

const EXPORTER_GONE: &str = "the exporter is gone";

impl kube::Sink<resolver::EndpointSlice> for SliceSink {
    fn replace(&mut self, slices: Vec<resolver::EndpointSlice>) -> Result<(), String> {
        let inner = self.inner.upgrade().ok_or(EXPORTER_GONE)?;
        self.known.clear();
        for slice in &slices {
            let hosts = self.hosts(&inner, slice);
            self.known.set(&slice.metadata.name, hosts);
        }
        self.publish(&inner);
        Ok(())
    }

    fn apply(
        &mut self,
        change: kube::Change,
        slice: resolver::EndpointSlice,
    ) -> Result<(), String> {
        let inner = self.inner.upgrade().ok_or(EXPORTER_GONE)?;
        if change == kube::Change::Deleted {
            self.known.remove(&slice.metadata.name);
        } else {
            let hosts = self.hosts(&inner, &slice);
            self.known.set(&slice.metadata.name, hosts);
        }
        self.publish(&inner);
        Ok(())
    }
}

impl Inner {
    fn membership(&self) -> std::sync::MutexGuard<'_, Membership> {
        self.membership.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new answer from the resolver.
    fn set_resolved(&self, mut endpoints: Vec<String>) {
        endpoints.sort();
        endpoints.dedup();
        let mut membership = self.membership();
        if membership.resolved == endpoints {
            return;
        }
        membership.resolved = endpoints;
        let resolved = membership.resolved.clone();
        membership.ejected.retain(|e| resolved.contains(e));
        membership
            .backends
            .retain(|name, _| resolved.contains(name));
        self.rebuild(&mut membership);
    }

    /// Publishes the ring of the resolved backends minus the ejected ones (all resolved
    /// ones if every one is ejected: ejecting never empties the ring).
    fn rebuild(&self, membership: &mut Membership) {
        let mut active: Vec<String> = membership
            .resolved
            .iter()
            .filter(|e| !membership.ejected.contains(*e))
            .cloned()
            .collect();
        if active.is_empty() {
            active = membership.resolved.clone();
        }
        let mut usable = Vec::new();
        for name in active {
            if !membership.backends.contains_key(&name) {
                match (self.factory)(&endpoint_with_port(&name)) {
                    Ok(exporter) => {
                        let backend = Backend {
                            succeeded: self.telemetry.outcome(&name, true),
                            failed: self.telemetry.outcome(&name, false),
                            name: name.clone(),
                            exporter,
                            refusing_since: Mutex::new(None),
                        };
                        membership.backends.insert(name.clone(), Arc::new(backend));
                    }
                    Err(error) => {
                        tracing::error!(exporter = %self.id, endpoint = %name, %error, "cannot create the exporter of this backend; it is left out of the ring");
                        continue;
                    }
                }
            }
            usable.push(name);
        }
        let ring = Ring::new(&usable);
        if ring == self.ring.borrow().ring {
            return;
        }
        let backends = ring
            .endpoints()
            .iter()
            .filter_map(|name| membership.backends.get(name).cloned())
            .collect();
        tracing::info!(exporter = %self.id, backends = ?ring.endpoints(), "loadbalancing: ring updated");
        self.telemetry
            .num_backends
            .set(ring.endpoints().len() as i64);
        self.telemetry.backend_updates.add(1);
        self.ring
            .send_replace(Arc::new(RingState { ring, backends }));
    }

    /// Records the outcome of one attempt on `backend`; ejects it when it has refused for
    /// longer than `eject_refusing_backend_after`.
    fn record(
        self: &Arc<Self>,
        backend: &Arc<Backend>,
        result: &Result<ExportOutcome, ExportError>,
    ) {
        let mut since = backend
            .refusing_since
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(_) => {
                backend.succeeded.add(1);
                *since = None;
            }
            Err(error) => {
                backend.failed.add(1);
                if !matches!(error, ExportError::Retryable { .. }) {
                    return;
                }
                let first = *since.get_or_insert_with(Instant::now);
                drop(since);
                if let Some(after) = self.eject_after {
                    if first.elapsed() >= after {
                        self.eject(backend);
                    }
                }
            }
        }
    }

    fn eject(self: &Arc<Self>, backend: &Arc<Backend>) {
        let mut membership = self.membership();
        if !membership.resolved.contains(&backend.name)
            || !membership.ejected.insert(backend.name.clone())
        {
            return;
        }
        tracing::warn!(exporter = %self.id, endpoint = %backend.name, "backend refused for longer than eject_refusing_backend_after; taking it out of the ring until it answers again");
        self.rebuild(&mut membership);
        drop(membership);
        tokio::spawn(probe(Arc::downgrade(self), Arc::clone(backend)));
    }

    /// Sends `batch`: split through the ring, each piece to its backend; failed pieces are
    /// retried (with `protocol.otlp.retry_on_failure`) through the ring of that moment.
    async fn deliver(self: &Arc<Self>, batch: Batch) -> Result<ExportOutcome, ExportError> {
        // Pieces still to send, with the backend their last attempt failed on. Whatever is
        // in it when this future is dropped (a reload stopped this exporter) is handed to
        // the next exporter of the same id and signal.
        let pending = Pending {
            key: (self.id.clone(), batch.signal()),
            pieces: vec![(None, batch)],
            in_flight: Vec::new(),
        };
        self.deliver_pending(pending, true).await
    }

    /// The delivery loop. With `park`, pieces that failed once are retried by a task of
    /// their own (while fewer than `sending_queue.queue_size` are parked), so the queue's
    /// consumer goes on with the next batch instead of waiting for a failing backend.
    fn deliver_pending(
        self: &Arc<Self>,
        pending: Pending,
        park: bool,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<ExportOutcome, ExportError>> + Send + '_>,
    > {
        Box::pin(self.deliver_loop(pending, park))
    }

    async fn deliver_loop(
        self: &Arc<Self>,
        mut pending: Pending,
        park: bool,
    ) -> Result<ExportOutcome, ExportError> {
        let signal = pending.key.1;
        let started = Instant::now();
        let mut interval = self.retry.initial_interval.get();
        let mut changes = self.ring.subscribe();
        let mut rejected = 0u64;
        let mut messages: Vec<String> = Vec::new();
        loop {
            let state = changes.borrow_and_update().clone();
            let mut after: Option<Duration> = None;
            let mut last_reason = String::from(
                "no backends in the ring (the resolver has not answered yet, or answered nothing)",
            );
            if !state.ring.is_empty() {
                let mut groups: BTreeMap<usize, Batch> = BTreeMap::new();
                for (failed_on, piece) in std::mem::take(&mut pending.pieces) {
                    let parts = routing::split(piece, &self.routing, &state.ring).map_err(|e| {
                        ExportError::Permanent {
                            reason: format!("cannot split the batch by routing key: {e}"),
                        }
                    })?;
                    for (index, part) in parts {
                        if failed_on
                            .as_deref()
                            .is_some_and(|f| f != state.ring.endpoints()[index])
                        {
                            self.telemetry.rerouted.add(part.items());
                        }
                        match groups.get_mut(&index) {
                            Some(group) => {
                                if let Err(e) = group.append(part) {
                                    return Err(ExportError::Permanent {
                                        reason: format!("cannot merge pieces: {e}"),
                                    });
                                }
                            }
                            None => {
                                groups.insert(index, part);
                            }
                        }
                    }
                }
                pending.in_flight = groups
                    .into_iter()
                    .filter_map(|(index, piece)| Some((state.backends.get(index)?.clone(), piece)))
                    .collect();
                let sends = pending
                    .in_flight
                    .iter()
                    .map(|(backend, piece)| backend.exporter.export(piece.clone()));
                let results = futures::future::join_all(sends).await;
                let sent = std::mem::take(&mut pending.in_flight);
                for ((backend, piece), result) in sent.into_iter().zip(results) {
                    self.record(&backend, &result);
                    match result {
                        Ok(outcome) => {
                            rejected += outcome.rejected.min(piece.items());
                            if !outcome.message.is_empty() {
                                messages.push(format!("{}: {}", backend.name, outcome.message));
                            }
                        }
                        Err(ExportError::Permanent { reason }) => {
                            tracing::error!(exporter = %self.id, endpoint = %backend.name, items = piece.items(), %reason, "dropping data: the backend refused it permanently (not retried)");
                            rejected += piece.items();
                            messages.push(format!("{}: {reason}", backend.name));
                        }
                        Err(ExportError::Retryable {
                            reason,
                            after: wait,
                        }) => {
                            after = after.max(wait);
                            last_reason = format!("{}: {reason}", backend.name);
                            pending.pieces.push((Some(backend.name.clone()), piece));
                        }
                    }
                }
            }
            if pending.pieces.is_empty() {
                return Ok(ExportOutcome {
                    rejected,
                    message: messages.join("; "),
                });
            }
            let pending_items: u64 = pending.pieces.iter().map(|(_, b)| b.items()).sum();
            if park
                && self.retry.enabled
                && self.park_capacity > 0
                && self.try_park(pending.pieces.len())
            {
                let parked = Pending {
                    key: pending.key.clone(),
                    pieces: std::mem::take(&mut pending.pieces),
                    in_flight: Vec::new(),
                };
                let count = parked.pieces.len();
                let inner = Arc::clone(self);
                tokio::spawn(async move {
                    let result = inner.deliver_pending(parked, false).await;
                    inner
                        .parked
                        .fetch_sub(count, std::sync::atomic::Ordering::AcqRel);
                    match result {
                        Ok(outcome) if outcome.rejected > 0 => {
                            inner.telemetry.parked_dropped.add(outcome.rejected);
                        }
                        _ => {}
                    }
                });
                return Ok(ExportOutcome {
                    rejected,
                    message: messages.join("; "),
                });
            }
            // An empty ring leaves the batch unsplit in `pending`.
            let wait = jittered(&self.retry, interval).max(after.unwrap_or_default());
            let max_elapsed = self.retry.max_elapsed_time.get();
            let out_of_time = !max_elapsed.is_zero() && started.elapsed() + wait > max_elapsed;
            if !self.retry.enabled || out_of_time {
                let why = if out_of_time {
                    "no more retries left (max_elapsed_time)"
                } else {
                    "retry_on_failure is disabled"
                };
                tracing::error!(exporter = %self.id, %signal, items = pending_items, reason = %last_reason, "dropping data: {why}");
                messages.push(last_reason);
                pending.pieces.clear();
                return Ok(ExportOutcome {
                    rejected: rejected + pending_items,
                    message: messages.join("; "),
                });
            }
            tracing::debug!(exporter = %self.id, reason = %last_reason, wait_ms = wait.as_millis() as u64, "send failed, will retry");
            // A ring change (a backend left or came back) retries at once through the new ring.
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = changes.changed() => {}
                _ = self.stop.cancelled() => {
                    // The exporter is gone: `pending` goes to its successor (Drop).
                    return Err(ExportError::Retryable {
                        reason: format!("exporter {} stopped; its unsent data goes to the next one", self.id),
                        after: None,
                    });
                }
            }
            interval = interval
                .mul_f64(self.retry.multiplier)
                .min(self.retry.max_interval.get());
        }
    }
}

impl Inner {
    /// Reserves room for `pieces` parked pieces, if the bound allows.
    fn try_park(&self, pieces: usize) -> bool {
        use std::sync::atomic::Ordering;
        self.parked
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |parked| {
                (parked + pieces <= self.park_capacity).then_some(parked + pieces)
            })
            .is_ok()
    }
}

/// Data a stopped exporter could not deliver, by (exporter id, signal), for the exporter
/// that replaces it (a reload): delivered through the new ring instead of being dropped.
static HANDED_OVER: Mutex<Vec<((String, Signal), Batch)>> = Mutex::new(Vec::new());

/// The pieces of one delivery not yet delivered; handed over when dropped unfinished.
struct Pending {
    key: (String, Signal),
    pieces: Vec<(Option<String>, Batch)>,
    in_flight: Vec<(Arc<Backend>, Batch)>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let pieces = std::mem::take(&mut self.pieces).into_iter().map(|(_, b)| b);
        let in_flight = std::mem::take(&mut self.in_flight)
            .into_iter()
            .map(|(_, b)| b);
        let left: Vec<Batch> = pieces.chain(in_flight).filter(|b| b.items() > 0).collect();
        if left.is_empty() {
            return;
        }
        let items: u64 = left.iter().map(Batch::items).sum();
        tracing::info!(exporter = %self.key.0, signal = %self.key.1, items, "loadbalancing stopped with data not yet delivered; keeping it for the exporter that replaces it");
        let mut handed = HANDED_OVER.lock().unwrap_or_else(|p| p.into_inner());
        handed.extend(left.into_iter().map(|b| (self.key.clone(), b)));
    }
}

/// How often a running exporter looks for data its predecessor handed over late.
const HANDOVER_POLL: Duration = Duration::from_millis(100);

/// Delivers, through this exporter's ring, the data a stopped exporter of the same id and
/// signal could not deliver (a reload). Not only once at the start: the predecessor's
/// deliveries hand over what they hold when they end, and one waiting on a dead backend
/// may end after this exporter started, so this looks again every `HANDOVER_POLL` for as
/// long as the exporter runs.
async fn adopt_handed_over(inner: std::sync::Weak<Inner>, key: (String, Signal)) {
    let mut first = true;
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let handed = take_handed_over(&key);
        if !handed.is_empty() {
            let items: u64 = handed.iter().map(Batch::items).sum();
            tracing::info!(exporter = %strong.id, signal = %key.1, items, late = !first, "delivering the data the previous exporter of this id left undelivered");
            for batch in handed {
                let inner = Arc::clone(&strong);
                tokio::spawn(async move {
                    let items = batch.items();
                    inner.telemetry.rerouted.add(items);
                    match inner.deliver(batch).await {
                        Ok(outcome) if outcome.rejected > 0 => {
                            tracing::error!(exporter = %inner.id, rejected = outcome.rejected, message = %outcome.message, "handed-over data partly rejected")
                        }
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!(exporter = %inner.id, items, %error, "handed-over data not delivered")
                        }
                    }
                });
            }
        }
        first = false;
        let stop = strong.stop.clone();
        drop(strong);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(HANDOVER_POLL) => {}
        }
    }
}

/// Takes the data handed over by a stopped exporter of the same id and signal.
fn take_handed_over(key: &(String, Signal)) -> Vec<Batch> {
    let mut handed = HANDED_OVER.lock().unwrap_or_else(|p| p.into_inner());
    let (mine, others): (Vec<_>, Vec<_>) = handed.drain(..).partition(|(k, _)| k == key);
    *handed = others;
    mine.into_iter().map(|(_, b)| b).collect()
}

/// `interval` drawn from [i*(1-f), i*(1+f)] (the queue's backoff jitter).
fn jittered(retry: &RetryConfig, interval: Duration) -> Duration {
    let factor = retry.randomization_factor;
    if factor <= 0.0 {
        return interval;
    }
    interval.mul_f64(rand::rng().random_range((1.0 - factor)..=(1.0 + factor)))
}

/// Probes an ejected backend with an empty export request until it answers (back into the
/// ring), leaves the resolved list, or the exporter is gone.
async fn probe(inner: std::sync::Weak<Inner>, backend: Arc<Backend>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let stop = strong.stop.clone();
        drop(strong);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(PROBE_INTERVAL) => {}
        }
        let Some(strong) = inner.upgrade() else {
            return;
        };
        if !strong.membership().ejected.contains(&backend.name) {
            return;
        }
        let signal = strong.signal;
        if backend.exporter.export(Batch::empty(signal)).await.is_ok() {
            *backend
                .refusing_since
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = None;
            let mut membership = strong.membership();
            if membership.ejected.remove(&backend.name) {
                tracing::info!(exporter = %strong.id, endpoint = %backend.name, "ejected backend answers again; back in the ring");
                strong.rebuild(&mut membership);
            }
            return;
        }
    }
}

impl Exporter for LoadBalancer {
    fn export(&self, batch: Batch) -> BoxFuture<'_, Result<ExportOutcome, ExportError>> {
        Box::pin(self.inner.deliver(batch))
    }
}
