//! `resourcedetection` (also `resource_detection`): detects attributes of the host the
//! agent runs on (environment, OS, Docker, Kubernetes node, EC2, ECS, GCE/GKE, Azure/AKS)
//! once, when the processor is built, and merges them into the resource of every batch of
//! every signal, as the Collector's `resourcedetectionprocessor` (contrib v0.161) does.
//!
//! Detectors run concurrently, each bounded by `timeout`; the build waits at most that
//! long. Their results merge in the order of `detectors`: an attribute found by an earlier
//! detector wins. A detector that fails (no metadata endpoint, no Docker socket, no API
//! server) contributes nothing and says why once in the log. Detection for one processor
//! id runs once per process, shared by every pipeline that names it (the Collector shares
//! its provider the same way).
//!
//! This module must never send traffic anywhere during tests but 127.0.0.1 (the metadata
//! endpoints are overridable through [`Endpoints`], not through config), and never re-run
//! detection per batch.

mod detectors;
mod host;
mod http;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use oxcol_core::telemetry::Registry;
use oxcol_core::{Batch, GoDuration, Processor, Refusal, Signal};
use serde::Deserialize;

pub use detectors::Endpoints;

pub const TYPE: &str = "resourcedetection";
pub const ALIASES: &[&str] = &["resourcedetection", "resource_detection"];

/// Detectors oxcol has.
pub const DETECTORS: &[&str] = &[
    "env", "system", "docker", "k8snode", "ec2", "ecs", "gcp", "azure", "aks",
];

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Detectors to run, in order of precedence. Default: none.
    pub detectors: Vec<String>,
    /// Replace attributes the data already has. Default true.
    #[serde(rename = "override")]
    pub override_: bool,
    /// Longest time detection may take (every detector together). Default 5s.
    pub timeout: GoDuration,
    /// Re-detect this often (wall clock), in the background; a failed refresh keeps the
    /// previous result. Default 0: detect once.
    pub refresh_interval: GoDuration,
    pub system: SystemConfig,
    pub docker: AttributesOnly,
    pub k8snode: K8sNodeConfig,
    pub ec2: Ec2Config,
    pub ecs: AttributesOnly,
    pub gcp: AttributesOnly,
    pub azure: AzureConfig,
    pub aks: AttributesOnly,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            detectors: Vec::new(),
            override_: true,
            timeout: GoDuration::from_secs(5),
            refresh_interval: GoDuration::default(),
            system: SystemConfig::default(),
            docker: AttributesOnly::default(),
            k8snode: K8sNodeConfig::default(),
            ec2: Ec2Config::default(),
            ecs: AttributesOnly::default(),
            gcp: AttributesOnly::default(),
            azure: AzureConfig::default(),
            aks: AttributesOnly::default(),
        }
    }
}

/// `resource_attributes: {name: {enabled: bool}}` of one detector.
/// Ordered, so the config's `Debug` text (the detection cache key) is stable.
pub type ResourceAttributes = std::collections::BTreeMap<String, AttributeToggle>;

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AttributeToggle {
    pub enabled: bool,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AttributesOnly {
    pub resource_attributes: ResourceAttributes,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SystemConfig {
    /// Where `host.name` comes from, first that works: `dns`, `os`, `cname`, `lookup`.
    /// Default `[dns, os]`.
    pub hostname_sources: Vec<String>,
    pub resource_attributes: ResourceAttributes,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct K8sNodeConfig {
    /// `serviceAccount` (default) or `none`.
    pub auth_type: String,
    /// Kubeconfig context (only with `auth_type: kubeConfig`, which oxcol does not have).
    pub context: String,
    /// The environment variable holding the node name. Default `K8S_NODE_NAME`.
    pub node_from_env_var: String,
    pub resource_attributes: ResourceAttributes,
}

impl Default for K8sNodeConfig {
    fn default() -> Self {
        K8sNodeConfig {
            auth_type: "serviceAccount".to_string(),
            context: String::new(),
            node_from_env_var: "K8S_NODE_NAME".to_string(),
            resource_attributes: ResourceAttributes::new(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Ec2Config {
    /// Regexes of EC2 tag keys to add (needs the EC2 API; not in oxcol: must stay empty).
    pub tags: Vec<String>,
    pub resource_attributes: ResourceAttributes,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AzureConfig {
    /// Regexes of VM tag names to add as `azure.tag.<name>`. Default none.
    pub tags: Vec<String>,
    pub resource_attributes: ResourceAttributes,
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for (i, name) in self.detectors.iter().enumerate() {
            if !DETECTORS.contains(&name.as_str()) {
                errors.push(format!(
                    "detectors[{i}] {name:?} is not a detector oxcol has (use one of: {})",
                    DETECTORS.join(", ")
                ));
            }
        }
        if self.timeout.is_zero() {
            errors.push("timeout must be greater than zero (default 5s)".to_string());
        }
        for (i, source) in self.system.hostname_sources.iter().enumerate() {
            if !["dns", "os", "cname", "lookup"].contains(&source.as_str()) {
                errors.push(format!("system.hostname_sources[{i}] {source:?} is not valid: use dns, os, cname or lookup"));
            }
        }
        match self.k8snode.auth_type.as_str() {
            "serviceAccount" | "none" => {}
            other => errors.push(format!(
                "k8snode.auth_type {other:?} is not supported by oxcol: use serviceAccount (in a pod) or none"
            )),
        }
        if self.k8snode.node_from_env_var.is_empty() {
            errors.push("k8snode.node_from_env_var must name an environment variable (default K8S_NODE_NAME)".to_string());
        }
        if !self.ec2.tags.is_empty() {
            errors.push(
                "ec2.tags needs the EC2 API, which oxcol does not call: remove ec2.tags"
                    .to_string(),
            );
        }
        for (i, pattern) in self.azure.tags.iter().enumerate() {
            if let Err(e) = regex::Regex::new(pattern) {
                errors.push(format!(
                    "azure.tags[{i}] {pattern:?} is not a valid regexp: {e}"
                ));
            }
        }
        for (key, toggles, known) in [
            (
                "system",
                &self.system.resource_attributes,
                detectors::SYSTEM_ATTRIBUTES,
            ),
            (
                "docker",
                &self.docker.resource_attributes,
                detectors::DOCKER_ATTRIBUTES,
            ),
            (
                "k8snode",
                &self.k8snode.resource_attributes,
                detectors::K8SNODE_ATTRIBUTES,
            ),
            (
                "ec2",
                &self.ec2.resource_attributes,
                detectors::EC2_ATTRIBUTES,
            ),
            (
                "ecs",
                &self.ecs.resource_attributes,
                detectors::ECS_ATTRIBUTES,
            ),
            (
                "gcp",
                &self.gcp.resource_attributes,
                detectors::GCP_ATTRIBUTES,
            ),
            (
                "aks",
                &self.aks.resource_attributes,
                detectors::AKS_ATTRIBUTES,
            ),
            (
                "azure",
                &self.azure.resource_attributes,
                detectors::AZURE_ATTRIBUTES,
            ),
        ] {
            for name in toggles.keys() {
                match known.iter().find(|(n, _)| n == name) {
                    None => errors.push(format!(
                        "{key}.resource_attributes: {name:?} is not an attribute of the {key} detector (known: {})",
                        known.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                    )),
                    Some((_, detectors::AttrDefault::Unsupported)) if toggles[name].enabled => errors.push(format!(
                        "{key}.resource_attributes.{name}: oxcol does not detect this attribute; set enabled: false or remove it"
                    )),
                    Some(_) => {}
                }
            }
        }
        errors
    }
}

/// What detection found: attributes in precedence order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Detected {
    pub attributes: Vec<KeyValue>,
    /// Whether any detector failed (the Collector's detection error).
    pub failed: bool,
    /// The schema URL of the detectors that succeeded, merged as the Collector's
    /// `MergeSchemaURL` (the first non-empty one); empty when none gave one.
    pub schema_url: String,
}

/// The detection result of one processor id, shared by every pipeline that names it, and
/// the state of its periodic refresh.
#[derive(Debug)]
pub struct Shared {
    current: Mutex<Arc<Detected>>,
    refreshing: AtomicBool,
    last_refresh: Mutex<Instant>,
}

impl Shared {
    fn new(detected: Detected) -> Arc<Shared> {
        Arc::new(Shared {
            current: Mutex::new(Arc::new(detected)),
            refreshing: AtomicBool::new(false),
            last_refresh: Mutex::new(Instant::now()),
        })
    }

    /// The latest snapshot.
    pub fn current(&self) -> Arc<Detected> {
        Arc::clone(&self.current.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Installs a refreshed result as the Collector's `Refresh` does: a refresh that
    /// failed does not replace a previous successful, non-empty snapshot.
    fn install(&self, id: &str, refreshed: Detected) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let had_success = !current.failed && !current.attributes.is_empty();
        if had_success && refreshed.failed {
            tracing::warn!(processor = %id, "resource refresh failed; keeping the previous snapshot");
            return;
        }
        *current = Arc::new(refreshed);
    }
}

/// Detection results per processor id and config, for the life of the process.
fn provider_cache() -> &'static Mutex<HashMap<String, Arc<Shared>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Shared>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

pub struct ResourceDetectionProcessor {
    id: String,
    config: Config,
    endpoints: Endpoints,
    shared: Arc<Shared>,
}

impl ResourceDetectionProcessor {
    /// Runs detection (at most `timeout`, once per id and config in this process) against
    /// the real endpoints.
    pub fn new(
        id: &str,
        config: &Config,
        registry: Option<&Registry>,
    ) -> Result<ResourceDetectionProcessor, String> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let endpoints = Endpoints::real();
        let cache_key = format!("{id}\n{config:?}");
        let cached = provider_cache()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&cache_key)
            .cloned();
        let shared = match cached {
            Some(shared) => shared,
            None => {
                let shared = Shared::new(detect(id, config, &endpoints, registry));
                provider_cache()
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(cache_key, Arc::clone(&shared));
                shared
            }
        };
        Ok(ResourceDetectionProcessor {
            id: id.to_string(),
            config: config.clone(),
            endpoints,
            shared,
        })
    }

    /// A processor that detects against `endpoints` now, outside the cache (tests).
    pub fn with_endpoints(
        id: &str,
        config: &Config,
        endpoints: Endpoints,
    ) -> ResourceDetectionProcessor {
        let shared = Shared::new(detect(id, config, &endpoints, None));
        ResourceDetectionProcessor {
            id: id.to_string(),
            config: config.clone(),
            endpoints,
            shared,
        }
    }

    /// A processor merging already-detected attributes (tests).
    pub fn with_detected(
        id: &str,
        config: &Config,
        detected: Detected,
    ) -> ResourceDetectionProcessor {
        ResourceDetectionProcessor {
            id: id.to_string(),
            config: config.clone(),
            endpoints: Endpoints::real(),
            shared: Shared::new(detected),
        }
    }

    /// The latest detection result.
    pub fn detected(&self) -> Arc<Detected> {
        self.shared.current()
    }

    /// Whether a refresh is running in the background.
    pub fn refreshing(&self) -> bool {
        self.shared.refreshing.load(Ordering::Acquire)
    }

    /// Starts a background re-detection when `refresh_interval` has passed since the last
    /// one and none is running (one per processor id, whatever the number of pipelines).
    fn refresh_if_due(&self) {
        let interval = self.config.refresh_interval.get();
        if interval.is_zero() {
            return;
        }
        {
            let mut last = self
                .shared
                .last_refresh
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.elapsed() < interval || self.shared.refreshing.swap(true, Ordering::AcqRel) {
                return;
            }
            *last = Instant::now();
        }
        let (id, config, endpoints, shared) = (
            self.id.clone(),
            self.config.clone(),
            self.endpoints.clone(),
            Arc::clone(&self.shared),
        );
        let spawned = std::thread::Builder::new()
            .name("resourcedetection-refresh".into())
            .spawn(move || {
                let refreshed = detect(&id, &config, &endpoints, None);
                shared.install(&id, refreshed);
                shared.refreshing.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            self.shared.refreshing.store(false, Ordering::Release);
            tracing::warn!(processor = %self.id, error = %e, "resource refresh could not start");
        }
    }
}

/// Merges `from` into `to` as the Collector's `MergeResource`: with `override_` an
/// attribute of `from` replaces one of the same key, else only absent keys are added.
pub fn merge_resource(to: &mut Resource, from: &[KeyValue], override_: bool) {
    for attribute in from {
        match to.attributes.iter_mut().find(|a| a.key == attribute.key) {
            Some(existing) => {
                if override_ {
                    existing.value = attribute.value.clone();
                }
            }
            None => to.attributes.push(attribute.clone()),
        }
    }
}

/// The Collector's `MergeSchemaURL`: `current` unless it is empty, then `new`.
pub fn merge_schema_url(current: &str, new: &str) -> String {
    if current.is_empty() { new } else { current }.to_string()
}

/// Runs every configured detector concurrently, each bounded by `config.timeout`, and
/// merges their results in `detectors` order (earlier wins). Never takes much longer than
/// the timeout: a detector stuck in a blocking call is abandoned.
pub fn detect(
    id: &str,
    config: &Config,
    endpoints: &Endpoints,
    registry: Option<&Registry>,
) -> Detected {
    if config.detectors.is_empty() {
        return Detected::default();
    }
    let timeout = config.timeout.get();
    let (sender, receiver) = std::sync::mpsc::channel();
    let thread_config = config.clone();
    let thread_endpoints = endpoints.clone();
    let thread_id = id.to_string();
    let spawned = std::thread::Builder::new()
        .name("resourcedetection".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = sender.send(Err(format!("cannot start the detection runtime: {e}")));
                    return;
                }
            };
            let results = runtime.block_on(detectors::run_all(
                &thread_id,
                &thread_config,
                &thread_endpoints,
                timeout,
            ));
            let _ = sender.send(Ok(results));
        });
    if let Err(e) = spawned {
        tracing::warn!(processor = %id, error = %e, "resource detection could not start; no attributes detected");
        return Detected {
            failed: true,
            ..Detected::default()
        };
    }
    let results = match receiver.recv_timeout(timeout + Duration::from_millis(500)) {
        Ok(Ok(results)) => results,
        Ok(Err(e)) => {
            tracing::warn!(processor = %id, error = %e, "resource detection failed; no attributes detected");
            return Detected {
                failed: true,
                ..Detected::default()
            };
        }
        Err(_) => {
            tracing::warn!(processor = %id, timeout = ?timeout, "resource detection did not finish within timeout; no attributes detected");
            return Detected {
                failed: true,
                ..Detected::default()
            };
        }
    };
    let mut merged = Resource::default();
    let mut failed = false;
    let mut schema_url = String::new();
    for (name, result) in results {
        let outcome = match result {
            Ok(attributes) => {
                schema_url =
                    merge_schema_url(&schema_url, detectors::schema_url(&name, &attributes));
                merge_resource(&mut merged, &attributes, false);
                "success"
            }
            Err(why) => {
                tracing::warn!(processor = %id, detector = %name, reason = %why, "resource detector detected nothing");
                failed = true;
                "failure"
            }
        };
        if let Some(registry) = registry {
            registry
                .counter(
                    "otelcol_resourcedetection_detector_results",
                    "Resource detector runs, by detector and outcome (success, failure).",
                    &[("processor", id), ("detector", &name), ("outcome", outcome)],
                )
                .add(1);
        }
    }
    tracing::info!(processor = %id, attributes = merged.attributes.len(), "detected resource information");
    Detected {
        attributes: merged.attributes,
        failed,
        schema_url,
    }
}

impl Processor for ResourceDetectionProcessor {
    fn process(&mut self, mut batch: Batch) -> Result<Batch, Refusal> {
        let detected = self.shared.current();
        if detected.attributes.is_empty() && detected.schema_url.is_empty() {
            return Ok(batch);
        }
        let (id, override_) = (&self.id, self.config.override_);
        let invalid = |e: oxcol_core::batch::BatchError| Refusal::Invalid {
            reason: format!("processor {id}: cannot decode the batch: {e}"),
        };
        // As the Collector: the schema URL of the resource (not of its scopes) takes the
        // detected one when it has none; attributes merge only when there are some.
        let merge = |resource: &mut Option<Resource>, schema_url: &mut String| {
            *schema_url = merge_schema_url(schema_url, &detected.schema_url);
            if !detected.attributes.is_empty() {
                merge_resource(
                    resource.get_or_insert_with(Resource::default),
                    &detected.attributes,
                    override_,
                )
            }
        };
        match batch.signal() {
            Signal::Metrics => batch
                .metrics_mut()
                .map_err(invalid)?
                .iter_mut()
                .for_each(|r| merge(&mut r.resource, &mut r.schema_url)),
            Signal::Traces => batch
                .traces_mut()
                .map_err(invalid)?
                .iter_mut()
                .for_each(|r| merge(&mut r.resource, &mut r.schema_url)),
            Signal::Logs => batch
                .logs_mut()
                .map_err(invalid)?
                .iter_mut()
                .for_each(|r| merge(&mut r.resource, &mut r.schema_url)),
        }
        Ok(batch)
    }

    fn tick_interval(&self) -> Option<Duration> {
        let interval = self.config.refresh_interval.get();
        (!interval.is_zero()).then_some(interval)
    }

    fn tick(&mut self) {
        self.refresh_if_due();
    }
}

#[cfg(test)]
mod tests;
