//! The table of pods (and the namespaces, nodes and ReplicaSets extraction needs) that
//! `k8sattributes` looks resources up in, and the rules that turn a pod into attributes.
//!
//! Pods are keyed by UID and indexed by IP, container ID and namespace/name. A deleted pod
//! stays (marked) for the grace period so late data still finds it; the table never holds
//! more than [`super::MAX_PODS`] pods. It does no I/O: the watcher fills it, `process`
//! reads it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use regex::Regex;
use serde::Deserialize;

use super::{Config, PodIdentifier, Source};

/// `metadata` of any Kubernetes object: the parts extraction reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectMeta {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub resource_version: String,
    pub creation_timestamp: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub owner_references: Vec<OwnerReference>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct OwnerReference {
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub controller: Option<bool>,
}

/// Any object of which only the metadata is read (namespaces, nodes, ReplicaSets).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct MetaObject {
    pub metadata: ObjectMeta,
}

/// A pod as the API serves it, reduced to what extraction and association read.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Pod {
    pub metadata: ObjectMeta,
    pub spec: PodSpec,
    pub status: PodStatus,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSpec {
    pub node_name: String,
    pub hostname: String,
    pub host_network: bool,
    pub containers: Vec<ContainerSpec>,
    pub init_containers: Vec<ContainerSpec>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct PodStatus {
    #[serde(rename = "podIP")]
    pub pod_ip: String,
    pub start_time: Option<String>,
    pub container_statuses: Vec<ContainerStatus>,
    pub init_container_statuses: Vec<ContainerStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerStatus {
    pub name: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub restart_count: u64,
}

/// A container ID without its runtime prefix (`containerd://abc` -> `abc`).
pub fn bare_container_id(id: &str) -> &str {
    id.split_once("://").map_or(id, |(_, bare)| bare)
}

/// `container.image.name` and `container.image.tag` of an image reference: the tag after
/// the last `:` of the last path element (`latest` when there is neither tag nor digest);
/// a digest (`@sha256:...`) is not part of the name.
pub fn parse_image(image: &str) -> (String, String) {
    let (reference, digest) = match image.split_once('@') {
        Some((reference, digest)) => (reference, Some(digest)),
        None => (image, None),
    };
    let last_slash = reference.rfind('/').map_or(0, |at| at + 1);
    match reference[last_slash..].rfind(':') {
        Some(colon) => {
            let at = last_slash + colon;
            (reference[..at].to_string(), reference[at + 1..].to_string())
        }
        None if digest.is_some() => (reference.to_string(), String::new()),
        None => (reference.to_string(), "latest".to_string()),
    }
}

/// `service.version` from an image reference, as the Collector's
/// `parseServiceVersionFromImage`: the tag, the digest, or `<tag>@<digest>` when there are
/// both; none when the reference has neither (no `latest` default, unlike
/// `container.image.tag`).
pub fn service_version_from_image(image: &str) -> Option<String> {
    let (reference, digest) = image.split_once('@').unwrap_or((image, ""));
    if reference.is_empty() {
        return None;
    }
    let last_slash = reference.rfind('/').map_or(0, |at| at + 1);
    let tag = reference[last_slash..]
        .rsplit_once(':')
        .map_or("", |(_, tag)| tag);
    match (tag.is_empty(), digest.is_empty()) {
        (false, false) => Some(format!("{tag}@{digest}")),
        (true, false) => Some(digest.to_string()),
        (false, true) => Some(tag.to_string()),
        (true, true) => None,
    }
}

/// The Deployment of a ReplicaSet by the Collector's heuristic: the ReplicaSet's name minus
/// `-<pod-template-hash>` (empty when the pod has no such label or the name lacks it).
pub fn deployment_from_replicaset_name(replicaset: &str, template_hash: &str) -> String {
    if template_hash.is_empty() {
        return String::new();
    }
    replicaset
        .strip_suffix(template_hash)
        .and_then(|rest| rest.strip_suffix('-'))
        .filter(|name| !name.is_empty())
        .unwrap_or_default()
        .to_string()
}

/// The CronJob of a Job by its name: the CronJob controller names its Jobs
/// `<cronjob>-<scheduled time in minutes>` (8 digits today).
pub fn cronjob_from_job_name(job: &str) -> String {
    match job.rsplit_once('-') {
        Some((cronjob, suffix))
            if !cronjob.is_empty()
                && suffix.len() >= 8
                && suffix.bytes().all(|b| b.is_ascii_digit()) =>
        {
            cronjob.to_string()
        }
        _ => String::new(),
    }
}

/// Where a label or annotation rule reads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum From {
    Pod,
    Namespace,
    Node,
}

/// One `extract.labels` / `extract.annotations` rule, compiled.
#[derive(Clone, Debug)]
pub struct FieldRule {
    pub tag_name: String,
    pub key: String,
    pub key_regex: Option<Regex>,
    pub from: From,
}

impl FieldRule {
    fn new(config: &super::FieldExtractConfig) -> Result<FieldRule, String> {
        let key_regex = if config.key_regex.is_empty() {
            None
        } else {
            Some(
                Regex::new(&format!("^(?:{})$", config.key_regex))
                    .map_err(|error| format!("key_regex {:?}: {error}", config.key_regex))?,
            )
        };
        let from = match config.from.as_str() {
            "namespace" => From::Namespace,
            "node" => From::Node,
            _ => From::Pod,
        };
        Ok(FieldRule {
            tag_name: config.tag_name.clone(),
            key: config.key.clone(),
            key_regex,
            from,
        })
    }

    /// Adds the attributes this rule takes from `values` (labels or annotations);
    /// `kind` is `labels` or `annotations`.
    fn extract(&self, values: &BTreeMap<String, String>, kind: &str, out: &mut Tags) {
        let from = match self.from {
            From::Pod => "pod",
            From::Namespace => "namespace",
            From::Node => "node",
        };
        match &self.key_regex {
            None => {
                if let Some(value) = values.get(&self.key) {
                    let name = if self.tag_name.is_empty() {
                        format!("k8s.{from}.{kind}.{}", self.key)
                    } else {
                        self.tag_name.clone()
                    };
                    out.set(&name, value);
                }
            }
            Some(regex) => {
                for (key, value) in values {
                    let Some(captures) = regex.captures(key) else {
                        continue;
                    };
                    let name = if self.tag_name.is_empty() {
                        format!("k8s.{from}.{kind}.{key}")
                    } else {
                        let mut name = String::new();
                        captures.expand(&self.tag_name, &mut name);
                        name
                    };
                    out.set(&name, value);
                }
            }
        }
    }
}

/// Attributes in the making, one value per key. [`Tags::set`] replaces an earlier value (a
/// Go map, as the Collector builds a pod's attributes: later rules win); [`Tags::add`]
/// keeps it (as the Collector's `setResourceAttribute` for container, namespace and node
/// attributes, added after the pod's).
#[derive(Debug, Default)]
pub struct Tags(Vec<(String, String)>);

impl Tags {
    pub fn set(&mut self, key: &str, value: &str) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.to_string(),
            None => self.0.push((key.to_string(), value.to_string())),
        }
    }

    pub fn add(&mut self, key: &str, value: &str) {
        if !self.0.iter().any(|(k, _)| k == key) {
            self.0.push((key.to_string(), value.to_string()));
        }
    }

    pub fn into_vec(self) -> Vec<(String, String)> {
        self.0
    }
}

/// The namespace whose UID is `k8s.cluster.uid` (the Collector's choice).
pub const KUBE_SYSTEM: &str = "kube-system";

/// Pod labels the service attributes read (the Kubernetes well-known labels).
const APP_NAME_LABEL: &str = "app.kubernetes.io/name";
const APP_INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
const APP_VERSION_LABEL: &str = "app.kubernetes.io/version";

/// A non-empty string attribute of a resource.
fn string_attribute(resource: &[KeyValue], name: &str) -> Option<String> {
    resource.iter().find(|kv| kv.key == name).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)
                if !s.is_empty() =>
            {
                Some(s.clone())
            }
            _ => None,
        }
    })
}

/// What to extract, decided once from the config.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    pub metadata: Vec<String>,
    pub labels: Vec<FieldRule>,
    pub annotations: Vec<FieldRule>,
    pub exclude: Vec<Regex>,
    pub deployment_name_from_replicaset: bool,
}

impl Rules {
    pub fn new(config: &Config) -> Result<Rules, String> {
        let compile = |rules: &[super::FieldExtractConfig]| {
            rules
                .iter()
                .map(FieldRule::new)
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Rules {
            metadata: config.metadata(),
            labels: compile(&config.extract.labels)?,
            annotations: compile(&config.extract.annotations_with_otel())?,
            exclude: config
                .exclude
                .pods
                .iter()
                .map(|pod| Regex::new(&pod.name).map_err(|e| format!("exclude.pods: {e}")))
                .collect::<Result<_, _>>()?,
            deployment_name_from_replicaset: config.extract.deployment_name_from_replicaset,
        })
    }

    pub fn wants(&self, field: &str) -> bool {
        self.metadata.iter().any(|f| f == field)
    }

    /// Drops what no rule reads from a pod before it is stored: annotations without a pod
    /// annotation rule (they can be large, e.g. `kubectl.kubernetes.io/last-applied-configuration`),
    /// labels without a pod label rule except `pod-template-hash` (the Deployment name
    /// heuristic), images when no image field is extracted.
    pub fn slim(&self, pod: &mut Pod) {
        if !self.annotations.iter().any(|r| r.from == From::Pod) {
            pod.metadata.annotations.clear();
        }
        if !self.labels.iter().any(|r| r.from == From::Pod) {
            let service_name = self.wants("service.name");
            let service_version = self.wants("service.version");
            pod.metadata.labels.retain(|key, _| {
                key == "pod-template-hash"
                    || (service_name && (key == APP_NAME_LABEL || key == APP_INSTANCE_LABEL))
                    || (service_version && key == APP_VERSION_LABEL)
            });
        }
        if !self.wants_image() {
            for container in pod
                .spec
                .containers
                .iter_mut()
                .chain(&mut pod.spec.init_containers)
            {
                container.image = String::new();
            }
        }
        pod.metadata.resource_version = String::new();
    }

    /// Whether a field reads the containers' images (`service.version` falls back to the
    /// image's tag or digest).
    pub fn wants_image(&self) -> bool {
        self.wants("container.image.name")
            || self.wants("container.image.tag")
            || self.wants("service.version")
    }

    /// Whether any container-level field is extracted (the Collector's
    /// `needContainerAttributes`).
    fn wants_container(&self) -> bool {
        self.wants_image()
            || self.wants("k8s.container.name")
            || self.wants("container.id")
            || self.wants("service.instance.id")
    }

    /// Only the `kube-system` namespace is watched when `k8s.cluster.uid` is the only reason
    /// to watch namespaces.
    pub fn needs_kube_system_only(&self) -> bool {
        self.wants("k8s.cluster.uid") && !self.needs_namespaces()
    }

    fn any_from(&self, from: From) -> bool {
        self.labels
            .iter()
            .chain(&self.annotations)
            .any(|r| r.from == from)
    }

    /// Namespaces are watched only when a rule reads their labels or annotations.
    pub fn needs_namespaces(&self) -> bool {
        self.any_from(From::Namespace)
    }

    pub fn needs_nodes(&self) -> bool {
        self.any_from(From::Node)
    }

    /// ReplicaSets are watched for the Deployment owner, unless the name heuristic is asked for.
    pub fn needs_replicasets(&self) -> bool {
        (self.wants("k8s.deployment.name") && !self.deployment_name_from_replicaset)
            || self.wants("k8s.deployment.uid")
    }
}

/// A pod with this annotation set to `true` gets no metadata (the Collector's).
pub const IGNORE_ANNOTATION: &str = "opentelemetry.io/k8s-processor/ignore";

/// One pod in the table.
#[derive(Debug)]
pub struct Entry {
    pub pod: Arc<Pod>,
    /// When the watch reported it deleted; it leaves the table a grace period later.
    pub deleted_at: Option<Instant>,
}

/// Which watched kind a table change is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Pods,
    Namespaces,
    Nodes,
    ReplicaSets,
}

/// What an upsert did (for self-telemetry).
#[derive(Debug, PartialEq, Eq)]
pub enum Upserted {
    Added,
    Updated,
    /// The table is full: the pod was not added.
    Dropped,
    /// The pod matches an `exclude` rule.
    Excluded,
}

#[derive(Debug, Default)]
pub struct Cache {
    pods: HashMap<String, Entry>,
    by_ip: HashMap<String, String>,
    by_container: HashMap<String, String>,
    by_name: HashMap<(String, String), String>,
    pub namespaces: HashMap<String, ObjectMeta>,
    pub nodes: HashMap<String, ObjectMeta>,
    pub replicasets: HashMap<String, ObjectMeta>,
}

impl Cache {
    /// Pods in the table (live and within their grace period).
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    pub fn pod(&self, uid: &str) -> Option<&Entry> {
        self.pods.get(uid)
    }

    /// Adds or replaces a pod and points its IP, container IDs and name at it.
    pub fn upsert_pod(&mut self, mut pod: Pod, rules: &Rules, max_pods: usize) -> Upserted {
        let ignored = pod
            .metadata
            .annotations
            .get(IGNORE_ANNOTATION)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        if ignored
            || rules
                .exclude
                .iter()
                .any(|re| re.is_match(&pod.metadata.name))
        {
            return Upserted::Excluded;
        }
        let uid = pod.metadata.uid.clone();
        if uid.is_empty() {
            return Upserted::Excluded;
        }
        rules.slim(&mut pod);
        let existed = self.pods.contains_key(&uid);
        if !existed && self.pods.len() >= max_pods {
            self.evict_one_deleted();
            if self.pods.len() >= max_pods {
                return Upserted::Dropped;
            }
        }
        if let Some(old) = self.pods.get(&uid) {
            let old = Arc::clone(&old.pod);
            self.unindex(&old);
        }
        let pod = Arc::new(pod);
        if !pod.status.pod_ip.is_empty() && !pod.spec.host_network {
            self.by_ip.insert(pod.status.pod_ip.clone(), uid.clone());
        }
        for status in pod
            .status
            .container_statuses
            .iter()
            .chain(&pod.status.init_container_statuses)
        {
            let id = bare_container_id(&status.container_id);
            if !id.is_empty() {
                self.by_container.insert(id.to_string(), uid.clone());
            }
        }
        self.by_name.insert(
            (pod.metadata.namespace.clone(), pod.metadata.name.clone()),
            uid.clone(),
        );
        self.pods.insert(
            uid,
            Entry {
                pod,
                deleted_at: None,
            },
        );
        if existed {
            Upserted::Updated
        } else {
            Upserted::Added
        }
    }

    /// Marks a pod deleted; it stays findable until [`Cache::expire`] removes it.
    pub fn delete_pod(&mut self, uid: &str, now: Instant) -> bool {
        match self.pods.get_mut(uid) {
            Some(entry) if entry.deleted_at.is_none() => {
                entry.deleted_at = Some(now);
                true
            }
            _ => false,
        }
    }

    /// Marks deleted every live pod whose UID is not in `keep` (after a re-list).
    pub fn delete_pods_except(
        &mut self,
        keep: &std::collections::HashSet<String>,
        now: Instant,
    ) -> usize {
        let gone: Vec<String> = self
            .pods
            .iter()
            .filter(|(uid, entry)| entry.deleted_at.is_none() && !keep.contains(*uid))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in &gone {
            self.delete_pod(uid, now);
        }
        gone.len()
    }

    /// Removes pods deleted more than `grace` before `now`.
    pub fn expire(&mut self, now: Instant, grace: std::time::Duration) {
        let expired: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, e)| {
                e.deleted_at
                    .is_some_and(|at| now.duration_since(at) >= grace)
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in expired {
            if let Some(entry) = self.pods.remove(&uid) {
                self.unindex(&entry.pod);
            }
        }
    }

    fn evict_one_deleted(&mut self) {
        let oldest = self
            .pods
            .iter()
            .filter_map(|(uid, e)| e.deleted_at.map(|at| (at, uid.clone())))
            .min();
        if let Some((_, uid)) = oldest
            && let Some(entry) = self.pods.remove(&uid)
        {
            self.unindex(&entry.pod);
        }
    }

    /// Drops index entries that still point at `pod` (a newer pod may own the IP now).
    fn unindex(&mut self, pod: &Pod) {
        let uid = &pod.metadata.uid;
        if self.by_ip.get(&pod.status.pod_ip) == Some(uid) {
            self.by_ip.remove(&pod.status.pod_ip);
        }
        for status in pod
            .status
            .container_statuses
            .iter()
            .chain(&pod.status.init_container_statuses)
        {
            let id = bare_container_id(&status.container_id);
            if self.by_container.get(id) == Some(uid) {
                self.by_container.remove(id);
            }
        }
        let name = (pod.metadata.namespace.clone(), pod.metadata.name.clone());
        if self.by_name.get(&name) == Some(uid) {
            self.by_name.remove(&name);
        }
    }

    /// Replaces or removes one namespace, node or ReplicaSet.
    pub fn set_meta(&mut self, kind: Kind, meta: ObjectMeta, deleted: bool) {
        let (map, key) = match kind {
            Kind::Namespaces => (&mut self.namespaces, meta.name.clone()),
            Kind::Nodes => (&mut self.nodes, meta.name.clone()),
            Kind::ReplicaSets => (&mut self.replicasets, meta.uid.clone()),
            Kind::Pods => return,
        };
        if deleted {
            map.remove(&key);
        } else {
            map.insert(key, meta);
        }
    }

    /// Replaces every namespace, node or ReplicaSet (after a list).
    pub fn replace_meta(&mut self, kind: Kind, items: Vec<ObjectMeta>) {
        match kind {
            Kind::Namespaces => {
                self.namespaces = items.into_iter().map(|m| (m.name.clone(), m)).collect();
            }
            Kind::Nodes => self.nodes = items.into_iter().map(|m| (m.name.clone(), m)).collect(),
            Kind::ReplicaSets => {
                self.replicasets = items.into_iter().map(|m| (m.uid.clone(), m)).collect();
            }
            Kind::Pods => {}
        }
    }

    /// The pod an identifier points at: candidates from the most selective source, then
    /// every source must match that pod.
    pub fn find(&self, identifier: &PodIdentifier) -> Option<&Pod> {
        let value_of = |name: &str| {
            identifier.iter().find_map(|(source, value)| match source {
                Source::Attribute(attribute) if attribute == name => Some(value.as_str()),
                _ => None,
            })
        };
        let candidate = if let Some(uid) = value_of("k8s.pod.uid") {
            Some(uid.to_string())
        } else if let Some(id) = value_of("container.id") {
            self.by_container.get(bare_container_id(id)).cloned()
        } else if let (Some(namespace), Some(name)) =
            (value_of("k8s.namespace.name"), value_of("k8s.pod.name"))
        {
            self.by_name
                .get(&(namespace.to_string(), name.to_string()))
                .cloned()
        } else {
            identifier.iter().find_map(|(source, value)| match source {
                Source::Connection => self.by_ip.get(value).cloned(),
                Source::Attribute(name)
                    if matches!(name.as_str(), "k8s.pod.ip" | "ip" | "host.name") =>
                {
                    self.by_ip.get(value).cloned()
                }
                Source::Attribute(_) => None,
            })
        }?;
        let pod = &self.pods.get(&candidate)?.pod;
        identifier
            .iter()
            .all(|(source, value)| matches_pod(pod, source, value))
            .then_some(pod.as_ref())
    }

    /// The attributes `rules` take from `pod` (plus its namespace, node, owners), given the
    /// resource's existing attributes, in the Collector's order and precedence:
    ///
    /// 1. the pod's own attributes, where a later value replaces an earlier one: metadata
    ///    fields (`service.name` starts as the pod name), owners (`service.name` becomes the
    ///    ReplicaSet, DaemonSet, StatefulSet or Job name, then the Deployment or CronJob name),
    ///    pod label rules, the `app.kubernetes.io/name` then `/instance` label for
    ///    `service.name` and `app.kubernetes.io/version` for `service.version`, then pod
    ///    annotation rules (so `otel_annotations` wins over the labels);
    /// 2. the container's attributes ([`Cache::container_attributes`]), never replacing 1;
    /// 3. namespace rules, `service.namespace`, and node rules, never replacing 1 or 2.
    ///
    /// Every key appears once; `process` adds each unless the resource already has it.
    pub fn attributes(
        &self,
        pod: &Pod,
        rules: &Rules,
        resource: &[KeyValue],
    ) -> Vec<(String, String)> {
        let mut tags = Tags::default();
        let meta = &pod.metadata;
        for field in &rules.metadata {
            let value = match field.as_str() {
                "k8s.namespace.name" | "service.namespace" => meta.namespace.clone(),
                "k8s.pod.name" => meta.name.clone(),
                "k8s.pod.uid" => meta.uid.clone(),
                "k8s.pod.hostname" => pod.spec.hostname.clone(),
                "k8s.pod.ip" => pod.status.pod_ip.clone(),
                "k8s.pod.start_time" => meta.creation_timestamp.clone().unwrap_or_default(),
                "k8s.node.name" => pod.spec.node_name.clone(),
                "k8s.cluster.uid" => self
                    .namespaces
                    .get(KUBE_SYSTEM)
                    .map(|namespace| namespace.uid.clone())
                    .unwrap_or_default(),
                "service.name" => meta.name.clone(),
                _ => continue,
            };
            if !value.is_empty() {
                tags.set(field, &value);
            }
        }
        self.owner_attributes(pod, rules, &mut tags);
        for rule in rules.labels.iter().filter(|r| r.from == From::Pod) {
            rule.extract(&meta.labels, "labels", &mut tags);
        }
        let label = |key: &str| meta.labels.get(key);
        if rules.wants("service.name") {
            // app.kubernetes.io/instance has precedence over app.kubernetes.io/name.
            for key in [APP_NAME_LABEL, APP_INSTANCE_LABEL] {
                if let Some(value) = label(key) {
                    tags.set("service.name", value);
                }
            }
        }
        if rules.wants("service.version")
            && let Some(value) = label(APP_VERSION_LABEL)
        {
            tags.set("service.version", value);
        }
        for rule in rules.annotations.iter().filter(|r| r.from == From::Pod) {
            rule.extract(&meta.annotations, "annotations", &mut tags);
        }
        self.container_attributes(pod, rules, resource, &mut tags);
        self.namespace_and_node_attributes(&meta.namespace, &pod.spec.node_name, rules, &mut tags);
        tags.into_vec()
    }

    /// What a resource whose pod is unknown (no identifier, or no pod matches it) still
    /// gets, as in the Collector: the namespace rules and `service.namespace` of its own
    /// `k8s.namespace.name`, and the node rules of its own `k8s.node.name`.
    pub fn attributes_without_pod(
        &self,
        rules: &Rules,
        resource: &[KeyValue],
    ) -> Vec<(String, String)> {
        let mut tags = Tags::default();
        let namespace = string_attribute(resource, "k8s.namespace.name").unwrap_or_default();
        let node = string_attribute(resource, "k8s.node.name").unwrap_or_default();
        self.namespace_and_node_attributes(&namespace, &node, rules, &mut tags);
        tags.into_vec()
    }

    fn namespace_and_node_attributes(
        &self,
        namespace: &str,
        node: &str,
        rules: &Rules,
        tags: &mut Tags,
    ) {
        if !namespace.is_empty() {
            if let Some(meta) = self.namespaces.get(namespace) {
                for (key, value) in Self::object_attributes(meta, rules, From::Namespace) {
                    tags.add(&key, &value);
                }
            }
            if rules.wants("service.namespace") {
                tags.add("service.namespace", namespace);
            }
        }
        if !node.is_empty()
            && let Some(meta) = self.nodes.get(node)
        {
            for (key, value) in Self::object_attributes(meta, rules, From::Node) {
                tags.add(&key, &value);
            }
        }
    }

    /// The label then annotation rules of one namespace or node (later rules win).
    fn object_attributes(meta: &ObjectMeta, rules: &Rules, from: From) -> Vec<(String, String)> {
        let mut tags = Tags::default();
        for rule in rules.labels.iter().filter(|r| r.from == from) {
            rule.extract(&meta.labels, "labels", &mut tags);
        }
        for rule in rules.annotations.iter().filter(|r| r.from == from) {
            rule.extract(&meta.annotations, "annotations", &mut tags);
        }
        tags.into_vec()
    }

    fn owner_attributes(&self, pod: &Pod, rules: &Rules, tags: &mut Tags) {
        let mut set = |field: &str, value: &str| {
            if rules.wants(field) && !value.is_empty() {
                tags.set(field, value);
            }
        };
        for owner in &pod.metadata.owner_references {
            match owner.kind.as_str() {
                "ReplicaSet" => {
                    set("k8s.replicaset.name", &owner.name);
                    set("k8s.replicaset.uid", &owner.uid);
                    set("service.name", &owner.name);
                    // A watched ReplicaSet names its Deployment (none when it has no
                    // Deployment owner); otherwise the name heuristic.
                    let replicaset = self.replicasets.get(&owner.uid);
                    let deployment = replicaset.and_then(|rs| {
                        rs.owner_references
                            .iter()
                            .find(|o| o.kind == "Deployment" && o.controller.unwrap_or(false))
                    });
                    let name = match (replicaset, deployment) {
                        (_, Some(deployment)) => deployment.name.clone(),
                        (Some(_), None) => String::new(),
                        (None, None) => deployment_from_replicaset_name(
                            &owner.name,
                            pod.metadata
                                .labels
                                .get("pod-template-hash")
                                .map_or("", String::as_str),
                        ),
                    };
                    set("k8s.deployment.name", &name);
                    // The Deployment name wins over the ReplicaSet name.
                    set("service.name", &name);
                    if let Some(deployment) = deployment {
                        set("k8s.deployment.uid", &deployment.uid);
                    }
                }
                "DaemonSet" => {
                    set("k8s.daemonset.name", &owner.name);
                    set("k8s.daemonset.uid", &owner.uid);
                    set("service.name", &owner.name);
                }
                "StatefulSet" => {
                    set("k8s.statefulset.name", &owner.name);
                    set("k8s.statefulset.uid", &owner.uid);
                    set("service.name", &owner.name);
                }
                "Job" => {
                    set("k8s.job.name", &owner.name);
                    set("k8s.job.uid", &owner.uid);
                    set("service.name", &owner.name);
                    let cronjob = cronjob_from_job_name(&owner.name);
                    set("k8s.cronjob.name", &cronjob);
                    // The CronJob name wins over the Job name.
                    set("service.name", &cronjob);
                }
                _ => {}
            }
        }
    }

    /// The container attributes, as the Collector's `addContainerAttributes`. The container
    /// is the one the resource's `k8s.container.name` names (checked first) or whose status
    /// has the resource's `container.id`; a resource with neither gets the pod's only
    /// container (one container ID among the statuses, or one container name). A named
    /// container the pod does not have gets nothing.
    ///
    /// - `k8s.container.name`, `container.id`, `service.instance.id`
    ///   (`<namespace>.<pod>.<container>`): only for a container with a status;
    /// - `container.image.name`, `container.image.tag`, `service.version` (the image's tag,
    ///   digest or `<tag>@<digest>`): from the container's spec.
    ///
    /// None of them replaces a pod-level value (e.g. `service.version` from the
    /// `app.kubernetes.io/version` label or an annotation).
    fn container_attributes(
        &self,
        pod: &Pod,
        rules: &Rules,
        resource: &[KeyValue],
        tags: &mut Tags,
    ) {
        if !rules.wants_container() {
            return;
        }
        let statuses = || {
            pod.status
                .container_statuses
                .iter()
                .chain(&pod.status.init_container_statuses)
        };
        let specs = || pod.spec.containers.iter().chain(&pod.spec.init_containers);
        // The Collector's `Containers.ByName`: specs (only when an image field or
        // `service.instance.id` is extracted), then statuses; `ByID`: statuses by bare ID
        // (the last one wins).
        let with_specs = rules.wants_image() || rules.wants("service.instance.id");
        let mut names: Vec<&str> = Vec::new();
        let spec_names = specs().filter(|_| with_specs).map(|c| c.name.as_str());
        for name in spec_names.chain(statuses().map(|s| s.name.as_str())) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let mut by_id: Vec<(&str, &str)> = Vec::new();
        for status in statuses() {
            let id = bare_container_id(&status.container_id);
            match by_id.iter_mut().find(|(known, _)| *known == id) {
                Some(entry) => entry.1 = status.name.as_str(),
                None => by_id.push((id, status.name.as_str())),
            }
        }
        let name = match (
            string_attribute(resource, "k8s.container.name"),
            string_attribute(resource, "container.id"),
        ) {
            (Some(name), _) => names.iter().find(|n| **n == name).copied(),
            (None, Some(id)) => by_id
                .iter()
                .find(|(known, _)| *known == bare_container_id(&id))
                .map(|(_, name)| *name),
            (None, None) if by_id.len() == 1 => Some(by_id[0].1),
            (None, None) if names.len() == 1 => Some(names[0]),
            (None, None) => None,
        };
        let Some(name) = name else { return };
        let status = statuses().find(|s| s.name == name);
        if status.is_some() && rules.wants("k8s.container.name") {
            tags.add("k8s.container.name", name);
        }
        if rules.wants_image()
            && let Some(spec) = specs().find(|c| c.name == name)
            && !spec.image.is_empty()
        {
            let (image, tag) = parse_image(&spec.image);
            if rules.wants("container.image.name") {
                tags.add("container.image.name", &image);
            }
            if rules.wants("container.image.tag") && !tag.is_empty() {
                tags.add("container.image.tag", &tag);
            }
            if rules.wants("service.version")
                && let Some(version) = service_version_from_image(&spec.image)
            {
                tags.add("service.version", &version);
            }
        }
        let Some(status) = status else { return };
        if rules.wants("service.instance.id") {
            let id = format!(
                "{}.{}.{}",
                pod.metadata.namespace, pod.metadata.name, status.name
            );
            tags.add("service.instance.id", &id);
        }
        if rules.wants("container.id") && !status.container_id.is_empty() {
            tags.add("container.id", bare_container_id(&status.container_id));
        }
    }
}

/// Whether one identifier source agrees with the pod.
fn matches_pod(pod: &Pod, source: &Source, value: &str) -> bool {
    match source {
        Source::Connection => pod.status.pod_ip == value && !pod.spec.host_network,
        Source::Attribute(name) => match name.as_str() {
            "k8s.pod.uid" => pod.metadata.uid == value,
            "k8s.pod.name" => pod.metadata.name == value,
            "k8s.namespace.name" => pod.metadata.namespace == value,
            "k8s.pod.ip" | "ip" | "host.name" => pod.status.pod_ip == value,
            "container.id" => pod
                .status
                .container_statuses
                .iter()
                .chain(&pod.status.init_container_statuses)
                .any(|s| bare_container_id(&s.container_id) == bare_container_id(value)),
            // Any other attribute: a pod label of that name that an `extract.labels` rule
            // keeps (the Collector matches against the pod's extracted attributes).
            other => pod.metadata.labels.get(other).is_some_and(|v| v == value),
        },
    }
}
