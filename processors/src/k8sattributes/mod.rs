//! `k8sattributes`: adds Kubernetes metadata (pod, namespace, node, workload, container,
//! labels, annotations) to the resource of every span, metric and log, as the Collector's
//! k8sattributes processor does, with its config unchanged.
//!
//! A background thread lists and watches pods (and namespaces, nodes, ReplicaSets only when
//! an extracted field needs them) through the Kubernetes API ([`client`]) into a bounded
//! in-memory table ([`cache`]); `process` only reads that table. It must never block or
//! refuse the pipeline because of the API server: when the API is unreachable, data passes
//! unenriched (the first failure is logged as a warning, later ones at debug level) and the
//! watcher keeps retrying with a bounded back-off.

pub mod cache;
pub mod client;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use oxcol_core::telemetry::Registry;
use oxcol_core::{Batch, GoDuration, Processor, Refusal, Signal};
use regex::Regex;
use serde::Deserialize;

use cache::{Cache, Rules};

/// The Collector's type since contrib PR 45901 (2026) is `k8s_attributes`; `k8sattributes` is its
/// deprecated spelling, still accepted.
pub const TYPE: &str = "k8s_attributes";
pub const ALIASES: &[&str] = &["k8s_attributes", "k8sattributes"];

/// How long a deleted pod stays in the table so late data still gets its metadata (the
/// Collector's fixed `podDeleteGracePeriod`).
pub const POD_DELETE_GRACE_PERIOD: Duration = Duration::from_secs(120);

/// Most pods the table holds (live plus recently deleted). A node runs at most a few
/// hundred; a cluster-wide gateway watch past this keeps the first pods and counts the
/// rest in `otelcol_otelsvc_k8s_pod_table_dropped`.
pub const MAX_PODS: usize = 100_000;

/// The metadata extracted when `extract.metadata` is not set (the Collector's defaults).
pub const DEFAULT_METADATA: &[&str] = &[
    "k8s.pod.name",
    "k8s.pod.uid",
    "k8s.pod.start_time",
    "k8s.namespace.name",
    "k8s.node.name",
    "k8s.deployment.name",
    "k8s.container.name",
    "container.image.name",
    "container.image.tag",
];

/// Every `extract.metadata` field oxcol extracts.
pub const SUPPORTED_METADATA: &[&str] = &[
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.pod.uid",
    "k8s.pod.hostname",
    "k8s.pod.start_time",
    "k8s.pod.ip",
    "k8s.deployment.name",
    "k8s.deployment.uid",
    "k8s.replicaset.name",
    "k8s.replicaset.uid",
    "k8s.daemonset.name",
    "k8s.daemonset.uid",
    "k8s.statefulset.name",
    "k8s.statefulset.uid",
    "k8s.job.name",
    "k8s.job.uid",
    "k8s.cronjob.name",
    "k8s.node.name",
    "k8s.container.name",
    "container.id",
    "container.image.name",
    "container.image.tag",
    "k8s.cluster.uid",
    "service.name",
    "service.namespace",
    "service.version",
    "service.instance.id",
];

/// Fields the Collector knows that oxcol does not extract yet (an error, never silence).
const UNSUPPORTED_METADATA: &[&str] = &["k8s.node.uid", "container.image.repo_digests"];

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `serviceAccount` (default: in-cluster token, CA and `KUBERNETES_SERVICE_HOST`/`_PORT`),
    /// `kubeConfig` (`KUBECONFIG` or `~/.kube/config`), `none` (no credentials).
    pub auth_type: String,
    /// With `kubeConfig`: the context to use instead of the file's `current-context`.
    pub context: String,
    /// Only add `k8s.pod.ip` (from the connection); never talk to the API.
    pub passthrough: bool,
    pub extract: ExtractConfig,
    pub filter: FilterConfig,
    pub pod_association: Vec<PodAssociationConfig>,
    pub exclude: ExcludeConfig,
    /// Refuse to start until the pod table is synced (at most `wait_for_metadata_timeout`).
    pub wait_for_metadata: bool,
    /// Default 10s.
    pub wait_for_metadata_timeout: GoDuration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            auth_type: "serviceAccount".to_string(),
            context: String::new(),
            passthrough: false,
            extract: ExtractConfig::default(),
            filter: FilterConfig::default(),
            pod_association: Vec::new(),
            exclude: ExcludeConfig::default(),
            wait_for_metadata: false,
            wait_for_metadata_timeout: GoDuration(Duration::from_secs(10)),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExtractConfig {
    /// Which metadata fields to add; `None` (key absent) = [`DEFAULT_METADATA`].
    pub metadata: Option<Vec<String>>,
    pub labels: Vec<FieldExtractConfig>,
    pub annotations: Vec<FieldExtractConfig>,
    /// Derive `k8s.deployment.name` from the ReplicaSet name and the pod's
    /// `pod-template-hash` label instead of watching ReplicaSets. Default false.
    pub deployment_name_from_replicaset: bool,
    /// Also take every pod annotation `resource.opentelemetry.io/<name>` as the resource
    /// attribute `<name>` (the Collector's `otel_annotations`). Default false.
    pub otel_annotations: bool,
}

impl ExtractConfig {
    /// `annotations`, plus the Collector's rule for `otel_annotations: true` (appended last,
    /// as the Collector appends it).
    pub fn annotations_with_otel(&self) -> Vec<FieldExtractConfig> {
        let mut rules = self.annotations.clone();
        if self.otel_annotations {
            rules.push(FieldExtractConfig {
                tag_name: "$1".to_string(),
                key_regex: r"resource\.opentelemetry\.io/(.+)".to_string(),
                from: "pod".to_string(),
                ..Default::default()
            });
        }
        rules
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FieldExtractConfig {
    /// Attribute name; default `k8s.<from>.labels.<key>` / `k8s.<from>.annotations.<key>`.
    /// With `key_regex`, `$1`/`${name}` refer to its capture groups.
    pub tag_name: String,
    pub key: String,
    pub key_regex: String,
    /// `pod` (default), `namespace` or `node`.
    pub from: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// Only pods on this node (`spec.nodeName` field selector).
    pub node: String,
    /// Only pods on the node named by this environment variable (DaemonSets: the downward
    /// API's `spec.nodeName`). Takes precedence over `node`.
    pub node_from_env_var: String,
    /// Only pods in this namespace.
    pub namespace: String,
    /// Field selectors: `op` `equals` (default) or `not-equals`.
    pub fields: Vec<FieldFilterConfig>,
    /// Label selectors: `op` `equals` (default), `not-equals`, `exists`, `does-not-exist`.
    pub labels: Vec<FieldFilterConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FieldFilterConfig {
    pub key: String,
    pub value: String,
    pub op: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PodAssociationConfig {
    pub sources: Vec<PodAssociationSourceConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PodAssociationSourceConfig {
    /// `resource_attribute` or `connection`.
    pub from: String,
    /// The resource attribute (`k8s.pod.uid`, `k8s.pod.ip`, `container.id`, ...).
    pub name: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExcludeConfig {
    /// Pods whose name matches one of these regular expressions get no metadata.
    pub pods: Vec<ExcludePodConfig>,
}

impl Default for ExcludeConfig {
    fn default() -> Self {
        let pods = [
            "jaeger-agent",
            "jaeger-collector",
            "otel-collector",
            "otel-agent",
            "collection-sumologic-otelcol",
        ];
        ExcludeConfig {
            pods: pods
                .iter()
                .map(|name| ExcludePodConfig {
                    name: name.to_string(),
                })
                .collect(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExcludePodConfig {
    pub name: String,
}

/// The Collector allows at most this many sources per association rule.
const MAX_ASSOCIATION_SOURCES: usize = 4;

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !matches!(
            self.auth_type.as_str(),
            "serviceAccount" | "kubeConfig" | "none"
        ) {
            let hint = if self.auth_type == "tls" {
                " (\"tls\" is not supported by oxcol: use kubeConfig with a client certificate)"
            } else {
                ""
            };
            problems.push(format!(
                "auth_type {:?} is not valid: use serviceAccount, kubeConfig or none{hint}",
                self.auth_type
            ));
        }
        if !self.context.is_empty() && self.auth_type != "kubeConfig" {
            problems.push("context is only used with auth_type: kubeConfig".to_string());
        }
        for (index, rule) in self.pod_association.iter().enumerate() {
            if rule.sources.is_empty() {
                problems.push(format!(
                    "pod_association[{index}] has no sources: list at least one (e.g. {{from: resource_attribute, name: k8s.pod.uid}})"
                ));
            }
            if rule.sources.len() > MAX_ASSOCIATION_SOURCES {
                problems.push(format!(
                    "pod_association[{index}] has {} sources: the limit is {MAX_ASSOCIATION_SOURCES}",
                    rule.sources.len()
                ));
            }
            for (position, source) in rule.sources.iter().enumerate() {
                match source.from.as_str() {
                    "connection" => {}
                    "resource_attribute" if !source.name.is_empty() => {}
                    "resource_attribute" => problems.push(format!(
                        "pod_association[{index}].sources[{position}]: from resource_attribute needs a name (e.g. k8s.pod.uid)"
                    )),
                    other => problems.push(format!(
                        "pod_association[{index}].sources[{position}].from {other:?} is not valid: use resource_attribute or connection"
                    )),
                }
            }
        }
        for (section, rules) in [
            ("labels", &self.extract.labels),
            ("annotations", &self.extract.annotations),
        ] {
            for (index, rule) in rules.iter().enumerate() {
                let at = format!("extract.{section}[{index}]");
                if !rule.key.is_empty() && !rule.key_regex.is_empty() {
                    problems.push(format!(
                        "{at}: set key or key_regex, not both (key {:?}, key_regex {:?})",
                        rule.key, rule.key_regex
                    ));
                }
                if rule.key.is_empty() && rule.key_regex.is_empty() {
                    problems.push(format!("{at}: set key or key_regex"));
                }
                if !matches!(rule.from.as_str(), "" | "pod" | "namespace" | "node") {
                    problems.push(format!(
                        "{at}.from {:?} is not valid: use pod, namespace or node",
                        rule.from
                    ));
                }
                if !rule.key_regex.is_empty()
                    && let Err(error) = Regex::new(&format!("^(?:{})$", rule.key_regex))
                {
                    problems.push(format!(
                        "{at}.key_regex is not a valid regular expression: {error}"
                    ));
                }
            }
        }
        for field in self.extract.metadata.iter().flatten() {
            if UNSUPPORTED_METADATA.contains(&field.as_str()) {
                problems.push(format!(
                    "extract.metadata: {field:?} is not supported by oxcol yet: remove it"
                ));
            } else if !SUPPORTED_METADATA.contains(&field.as_str()) {
                problems.push(format!(
                    "extract.metadata: {field:?} is not a supported metadata field (supported: {})",
                    SUPPORTED_METADATA.join(", ")
                ));
            }
        }
        for (index, filter) in self.filter.labels.iter().enumerate() {
            if !matches!(
                filter.op.as_str(),
                "" | "equals" | "not-equals" | "exists" | "does-not-exist"
            ) {
                problems.push(format!(
                    "filter.labels[{index}].op {:?} is not valid: use equals, not-equals, exists or does-not-exist",
                    filter.op
                ));
            }
            if filter.key.is_empty() {
                problems.push(format!("filter.labels[{index}] needs a key"));
            }
        }
        for (index, filter) in self.filter.fields.iter().enumerate() {
            if !matches!(filter.op.as_str(), "" | "equals" | "not-equals") {
                problems.push(format!(
                    "filter.fields[{index}].op {:?} is not valid: use equals or not-equals",
                    filter.op
                ));
            }
            if filter.key.is_empty() {
                problems.push(format!("filter.fields[{index}] needs a key"));
            }
        }
        for (index, pod) in self.exclude.pods.iter().enumerate() {
            if let Err(error) = Regex::new(&pod.name) {
                problems.push(format!(
                    "exclude.pods[{index}].name is not a valid regular expression: {error}"
                ));
            }
        }
        if self.wait_for_metadata && self.wait_for_metadata_timeout.get().is_zero() {
            problems.push("wait_for_metadata_timeout must be above 0 (e.g. 10s)".to_string());
        }
        problems
    }

    /// The metadata fields to extract.
    pub fn metadata(&self) -> Vec<String> {
        match &self.extract.metadata {
            Some(fields) => fields.clone(),
            None => DEFAULT_METADATA.iter().map(|f| f.to_string()).collect(),
        }
    }

    /// The node whose pods are watched: `node_from_env_var`'s value (Err when that
    /// variable is unset or empty), else `node` (empty = every node).
    pub fn node_filter(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
        if self.filter.node_from_env_var.is_empty() {
            return Ok(self.filter.node.clone());
        }
        match env(&self.filter.node_from_env_var) {
            Some(node) if !node.is_empty() => Ok(node),
            _ => Err(format!(
                "filter.node_from_env_var names {:?}, which is not set: set it to the node name \
                 (downward API: valueFrom.fieldRef.fieldPath: spec.nodeName)",
                self.filter.node_from_env_var
            )),
        }
    }
}

/// Where one value of a pod identifier came from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Connection,
    Attribute(String),
}

/// The pod identifier found in one resource: (source, value) per source of the rule that
/// matched.
pub type PodIdentifier = Vec<(Source, String)>;

/// Telemetry series of one processor id.
#[derive(Clone, Default)]
pub struct Telemetry {
    pub pod_table_size: oxcol_core::telemetry::Gauge,
    pub pods_added: oxcol_core::telemetry::Counter,
    pub pods_updated: oxcol_core::telemetry::Counter,
    pub pods_deleted: oxcol_core::telemetry::Counter,
    pub pods_dropped: oxcol_core::telemetry::Counter,
    pub lookup_miss: oxcol_core::telemetry::Counter,
    pub relists: oxcol_core::telemetry::Counter,
    pub watch_errors: oxcol_core::telemetry::Counter,
}

impl Telemetry {
    fn new(registry: Option<&Registry>, id: &str) -> Telemetry {
        let Some(registry) = registry else {
            return Telemetry::default();
        };
        let labels = [("processor", id)];
        Telemetry {
            pod_table_size: registry.gauge(
                "otelcol_otelsvc_k8s_pod_table_size",
                "Pods in the k8sattributes table (live plus deleted within the grace period).",
                &labels,
            ),
            pods_added: registry.counter(
                "otelcol_otelsvc_k8s_pod_added",
                "Pods added to the k8sattributes table.",
                &labels,
            ),
            pods_updated: registry.counter(
                "otelcol_otelsvc_k8s_pod_updated",
                "Pod updates applied to the k8sattributes table.",
                &labels,
            ),
            pods_deleted: registry.counter(
                "otelcol_otelsvc_k8s_pod_deleted",
                "Pod deletions seen by k8sattributes (kept for the grace period).",
                &labels,
            ),
            pods_dropped: registry.counter(
                "otelcol_otelsvc_k8s_pod_table_dropped",
                "Pods not added because the k8sattributes table was full.",
                &labels,
            ),
            lookup_miss: registry.counter(
                "otelcol_otelsvc_k8s_ip_lookup_miss",
                "Resources whose pod identifier matched no pod in the table.",
                &labels,
            ),
            relists: registry.counter(
                "otelcol_k8sattributes_relists",
                "Full lists of a watched resource after the first (410 Gone, errors).",
                &labels,
            ),
            watch_errors: registry.counter(
                "otelcol_k8sattributes_watch_errors",
                "Failed list or watch requests to the Kubernetes API.",
                &labels,
            ),
        }
    }
}

/// State shared by every processor instance of one id and config (one watcher per id,
/// however many pipelines use it), and by its watcher thread.
pub struct Shared {
    pub(crate) cache: RwLock<Cache>,
    pub(crate) rules: Rules,
    pub(crate) stop: AtomicBool,
    pub(crate) synced: AtomicBool,
    pub(crate) telemetry: Telemetry,
    pub(crate) id: String,
}

/// Stops the watcher when the last processor holding it is dropped.
struct WatcherHandle {
    shared: Arc<Shared>,
}

impl Drop for WatcherHandle {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

type WatcherKey = (String, String);

fn watchers() -> &'static Mutex<HashMap<WatcherKey, Weak<WatcherHandle>>> {
    static WATCHERS: std::sync::OnceLock<Mutex<HashMap<WatcherKey, Weak<WatcherHandle>>>> =
        std::sync::OnceLock::new();
    WATCHERS.get_or_init(Mutex::default)
}

pub struct K8sAttributesProcessor {
    id: String,
    passthrough: bool,
    associations: Vec<Vec<Source>>,
    /// None in passthrough mode, or when the watcher could not be set up (logged).
    handle: Option<Arc<WatcherHandle>>,
}

impl K8sAttributesProcessor {
    pub fn new(
        id: &str,
        config: &Config,
        registry: Option<&Registry>,
    ) -> Result<K8sAttributesProcessor, String> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let associations = config
            .pod_association
            .iter()
            .map(|rule| {
                rule.sources
                    .iter()
                    .map(|source| match source.from.as_str() {
                        "connection" => Source::Connection,
                        _ => Source::Attribute(source.name.clone()),
                    })
                    .collect()
            })
            .collect();
        let mut processor = K8sAttributesProcessor {
            id: id.to_string(),
            passthrough: config.passthrough,
            associations,
            handle: None,
        };
        if config.passthrough {
            return Ok(processor);
        }
        let key = (id.to_string(), format!("{config:?}"));
        let existing = watchers()
            .lock()
            .ok()
            .and_then(|map| map.get(&key).and_then(Weak::upgrade));
        let handle = match existing {
            Some(handle) => handle,
            None => {
                let rules = Rules::new(config)?;
                let shared = Arc::new(Shared {
                    cache: RwLock::new(Cache::default()),
                    rules,
                    stop: AtomicBool::new(false),
                    synced: AtomicBool::new(false),
                    telemetry: Telemetry::new(registry, id),
                    id: id.to_string(),
                });
                let node = config.node_filter(&|name| std::env::var(name).ok());
                match node {
                    Ok(node) => client::spawn_watcher(Arc::clone(&shared), config, node)?,
                    Err(problem) => tracing::warn!(
                        "processor {id}: {problem}; no pods are watched and data passes unenriched"
                    ),
                }
                let handle = Arc::new(WatcherHandle { shared });
                if let Ok(mut map) = watchers().lock() {
                    map.retain(|_, weak| weak.strong_count() > 0);
                    map.insert(key, Arc::downgrade(&handle));
                }
                handle
            }
        };
        if config.wait_for_metadata {
            let deadline = Instant::now() + config.wait_for_metadata_timeout.get();
            while !handle.shared.synced.load(Ordering::Relaxed) {
                if Instant::now() >= deadline {
                    return Err(format!(
                        "wait_for_metadata: the pod table was not synced within {:?} \
                         (is the Kubernetes API reachable? set wait_for_metadata: false to start without it)",
                        config.wait_for_metadata_timeout.get()
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        processor.handle = Some(handle);
        Ok(processor)
    }

    /// The pod identifier of a resource: the first association rule whose every source
    /// has a value; without rules, the Collector's default order (`k8s.pod.ip`, `ip`, the
    /// connection, `host.name` when it is an IP address).
    fn identifier(&self, resource: &Resource, connection: Option<IpAddr>) -> PodIdentifier {
        let attribute = |name: &str| {
            resource
                .attributes
                .iter()
                .find(|kv| kv.key == name)
                .and_then(|kv| string_value(kv.value.as_ref()))
                .filter(|value| !value.is_empty())
        };
        if self.associations.is_empty() {
            if let Some(ip) = attribute("k8s.pod.ip").or_else(|| attribute("ip")) {
                return vec![(Source::Attribute("k8s.pod.ip".to_string()), ip)];
            }
            if let Some(ip) = connection {
                return vec![(Source::Connection, ip.to_string())];
            }
            if let Some(host) = attribute("host.name")
                && host.parse::<IpAddr>().is_ok()
            {
                return vec![(Source::Attribute("k8s.pod.ip".to_string()), host)];
            }
            return Vec::new();
        }
        'rules: for rule in &self.associations {
            let mut identifier = Vec::with_capacity(rule.len());
            for source in rule {
                let value = match source {
                    Source::Connection => connection.map(|ip| ip.to_string()),
                    Source::Attribute(name) => attribute(name),
                };
                match value {
                    Some(value) => identifier.push((source.clone(), value)),
                    None => continue 'rules,
                }
            }
            return identifier;
        }
        Vec::new()
    }

    fn enrich(&self, resource: &mut Option<Resource>, connection: Option<IpAddr>) {
        let resource = resource.get_or_insert_with(Resource::default);
        let identifier = self.identifier(resource, connection);
        if let Some((_, ip)) = identifier
            .iter()
            .find(|(source, _)| *source == Source::Connection)
        {
            set_if_absent(&mut resource.attributes, "k8s.pod.ip", ip);
        }
        if self.passthrough {
            return;
        }
        let Some(handle) = &self.handle else { return };
        let shared = &handle.shared;
        let Ok(cache) = shared.cache.read() else {
            return;
        };
        let pod = if identifier.is_empty() {
            None
        } else {
            let pod = cache.find(&identifier);
            if pod.is_none() {
                shared.telemetry.lookup_miss.add(1);
            }
            pod
        };
        // Without a pod the Collector still adds what the resource's own
        // `k8s.namespace.name` / `k8s.node.name` give: namespace and node rules, and
        // `service.namespace`.
        let attributes = match pod {
            Some(pod) => cache.attributes(pod, &shared.rules, &resource.attributes),
            None => cache.attributes_without_pod(&shared.rules, &resource.attributes),
        };
        for (key, value) in attributes {
            set_if_absent(&mut resource.attributes, &key, &value);
        }
    }
}

fn string_value(value: Option<&AnyValue>) -> Option<String> {
    match value?.value.as_ref()? {
        any_value::Value::StringValue(text) => Some(text.clone()),
        any_value::Value::IntValue(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Sets `key` unless the resource already has a non-empty value for it (the Collector
/// never overwrites what the sender set).
fn set_if_absent(attributes: &mut Vec<KeyValue>, key: &str, value: &str) {
    if let Some(existing) = attributes.iter_mut().find(|kv| kv.key == key) {
        if string_value(existing.value.as_ref()).is_some_and(|v| !v.is_empty()) {
            return;
        }
        existing.value = Some(string_any(value));
        return;
    }
    attributes.push(KeyValue {
        key: key.to_string(),
        value: Some(string_any(value)),
        ..Default::default()
    });
}

fn string_any(value: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(value.to_string())),
        ..Default::default()
    }
}

impl Processor for K8sAttributesProcessor {
    fn process(&mut self, mut batch: Batch) -> Result<Batch, Refusal> {
        let id = self.id.clone();
        let refuse = |e: oxcol_core::batch::BatchError| Refusal::Invalid {
            reason: format!("processor {id}: cannot decode the batch: {e}"),
        };
        let connection = batch.client_addr();
        match batch.signal() {
            Signal::Traces => batch
                .traces_mut()
                .map_err(refuse)?
                .iter_mut()
                .for_each(|r| self.enrich(&mut r.resource, connection)),
            Signal::Logs => batch
                .logs_mut()
                .map_err(refuse)?
                .iter_mut()
                .for_each(|r| self.enrich(&mut r.resource, connection)),
            Signal::Metrics => batch
                .metrics_mut()
                .map_err(refuse)?
                .iter_mut()
                .for_each(|r| self.enrich(&mut r.resource, connection)),
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests;
