//! The Kubernetes API side of `k8sattributes`: which collections it watches (pods with the
//! Collector's filters as selectors, and namespaces, nodes, ReplicaSets when an extracted
//! field needs them; only the `kube-system` namespace for `k8s.cluster.uid` alone) and the
//! watcher thread that keeps the table current.
//!
//! Locating the API (`auth_type`), list + watch, re-list on `410 Gone` and back-off are the
//! shared client's ([`oxcol_core::kube`]); this module only turns lists and events into
//! table changes. It must never block `process`: it only ever holds the table's write lock
//! for one list or one change.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use oxcol_core::kube::{
    self, Api, Change, Collection, Reporter, Sink, WATCH_TIMEOUT, percent_encode,
};
use tokio_util::sync::CancellationToken;

use super::cache::{Kind, MetaObject, Pod, Upserted};
use super::{Config, MAX_PODS, POD_DELETE_GRACE_PERIOD, Shared};

pub use oxcol_core::kube::{ApiConfig, SERVICE_ACCOUNT_DIR, Token, load_kubeconfig};

/// The API server and credentials `auth_type` selects, from `env` and the file system.
pub fn api_config(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ApiConfig, String> {
    kube::api_config(&config.auth_type, &config.context, env)
}

/// The list/watch query of pods: the Collector's filters as selectors.
pub fn pod_selectors(config: &Config, node: &str) -> (String, String) {
    let mut fields: Vec<String> = Vec::new();
    if !node.is_empty() {
        fields.push(format!("spec.nodeName={node}"));
    }
    for filter in &config.filter.fields {
        let op = if filter.op == "not-equals" { "!=" } else { "=" };
        fields.push(format!("{}{op}{}", filter.key, filter.value));
    }
    let labels: Vec<String> = config
        .filter
        .labels
        .iter()
        .map(|filter| match filter.op.as_str() {
            "not-equals" => format!("{}!={}", filter.key, filter.value),
            "exists" => filter.key.clone(),
            "does-not-exist" => format!("!{}", filter.key),
            _ => format!("{}={}", filter.key, filter.value),
        })
        .collect();
    (fields.join(","), labels.join(","))
}

/// One watched collection.
#[derive(Clone, Debug)]
pub struct Watch {
    pub kind: Kind,
    /// `/api/v1/pods`, `/api/v1/namespaces/<ns>/pods`, `/apis/apps/v1/replicasets`, ...
    pub path: String,
    /// `fieldSelector=...&labelSelector=...` (may be empty).
    pub query: String,
}

/// The collections `config` needs watched, pods first.
pub fn plan(config: &Config, rules: &super::cache::Rules, node: &str) -> Vec<Watch> {
    let (fields, labels) = pod_selectors(config, node);
    let mut query = Vec::new();
    if !fields.is_empty() {
        query.push(format!("fieldSelector={}", percent_encode(&fields)));
    }
    if !labels.is_empty() {
        query.push(format!("labelSelector={}", percent_encode(&labels)));
    }
    let namespaced = |resource: &str, group: &str| {
        if config.filter.namespace.is_empty() {
            format!("{group}/{resource}")
        } else {
            format!("{group}/namespaces/{}/{resource}", config.filter.namespace)
        }
    };
    let mut watches = vec![Watch {
        kind: Kind::Pods,
        path: namespaced("pods", "/api/v1"),
        query: query.join("&"),
    }];
    if rules.needs_replicasets() {
        watches.push(Watch {
            kind: Kind::ReplicaSets,
            path: namespaced("replicasets", "/apis/apps/v1"),
            query: String::new(),
        });
    }
    if rules.needs_namespaces() || rules.needs_kube_system_only() {
        // `k8s.cluster.uid` alone needs only kube-system (the Collector's field selector).
        watches.push(Watch {
            kind: Kind::Namespaces,
            path: "/api/v1/namespaces".to_string(),
            query: if rules.needs_kube_system_only() {
                format!(
                    "fieldSelector={}",
                    percent_encode(&format!("metadata.name={}", super::cache::KUBE_SYSTEM))
                )
            } else {
                String::new()
            },
        });
    }
    if rules.needs_nodes() {
        watches.push(Watch {
            kind: Kind::Nodes,
            path: "/api/v1/nodes".to_string(),
            query: if node.is_empty() {
                String::new()
            } else {
                format!(
                    "fieldSelector={}",
                    percent_encode(&format!("metadata.name={node}"))
                )
            },
        });
    }
    watches
}

/// Starts the watcher thread. When the API cannot even be located (no in-cluster
/// environment, no kubeconfig), logs that once and starts nothing: data passes unenriched.
pub fn spawn_watcher(shared: Arc<Shared>, config: &Config, node: String) -> Result<(), String> {
    let api = match api_config(config, &|name| std::env::var(name).ok()) {
        Ok(api) => api,
        Err(problem) => {
            tracing::warn!(
                "processor {}: cannot locate the Kubernetes API: {problem}; data passes without Kubernetes metadata",
                shared.id
            );
            return Ok(());
        }
    };
    let api = Api::new(api)?;
    let watches = plan(config, &shared.rules, &node);
    std::thread::Builder::new()
        .name(format!("k8s-{}", shared.id))
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::error!("processor {}: cannot start the watcher: {error}", shared.id);
                    return;
                }
            };
            runtime.block_on(run(shared, api, watches));
        })
        .map_err(|e| format!("cannot start the watcher thread: {e}"))?;
    Ok(())
}

async fn run(shared: Arc<Shared>, api: Api, watches: Vec<Watch>) {
    let api = Arc::new(api);
    let stop = CancellationToken::new();
    let reporter = Reporter {
        owner: format!("processor {}", shared.id),
        meanwhile: "data passes without (new) Kubernetes metadata".to_string(),
        relists: shared.telemetry.relists.clone(),
        errors: shared.telemetry.watch_errors.clone(),
    };
    let mut tasks = Vec::new();
    let pending = Arc::new(AtomicUsize::new(watches.len()));
    for watch in watches {
        let collection = Collection {
            path: watch.path.clone(),
            query: watch.query.clone(),
            watch_timeout: WATCH_TIMEOUT,
        };
        let (api, stop, reporter) = (Arc::clone(&api), stop.clone(), reporter.clone());
        let mut sink = TableSink {
            shared: Arc::clone(&shared),
            kind: watch.kind,
            pending: Some(Arc::clone(&pending)),
        };
        tasks.push(tokio::spawn(async move {
            if watch.kind == Kind::Pods {
                kube::list_and_watch::<Pod>(&api, &collection, &mut sink, &reporter, &stop).await;
            } else {
                kube::list_and_watch::<MetaObject>(&api, &collection, &mut sink, &reporter, &stop)
                    .await;
            }
        }));
    }
    // Housekeeping, and the bridge from the processor's stop flag to the watches.
    while !shared.stop.load(Ordering::Relaxed) {
        if let Ok(mut cache) = shared.cache.write() {
            cache.expire(Instant::now(), POD_DELETE_GRACE_PERIOD);
            shared.telemetry.pod_table_size.set(cache.len() as i64);
        }
        for _ in 0..5 {
            if shared.stop.load(Ordering::Relaxed) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }
}

/// Turns the lists and events of one watched collection into table changes.
struct TableSink {
    shared: Arc<Shared>,
    kind: Kind,
    /// Watches not listed once yet (all of them: the table is synced); taken at the first list.
    pending: Option<Arc<AtomicUsize>>,
}

impl TableSink {
    fn listed(&mut self) {
        if let Some(pending) = self.pending.take() {
            if pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                self.shared.synced.store(true, Ordering::Relaxed);
            }
        }
    }
}

fn record(shared: &Shared, upserted: Upserted) {
    match upserted {
        Upserted::Added => shared.telemetry.pods_added.add(1),
        Upserted::Updated => shared.telemetry.pods_updated.add(1),
        Upserted::Dropped => shared.telemetry.pods_dropped.add(1),
        Upserted::Excluded => {}
    }
}

const POISONED: &str = "the pod table lock is poisoned";

impl Sink<Pod> for TableSink {
    fn replace(&mut self, pods: Vec<Pod>) -> Result<(), String> {
        {
            let shared = &self.shared;
            let mut cache = shared.cache.write().map_err(|_| POISONED.to_string())?;
            let keep: HashSet<String> = pods.iter().map(|p| p.metadata.uid.clone()).collect();
            let gone = cache.delete_pods_except(&keep, Instant::now());
            shared.telemetry.pods_deleted.add(gone as u64);
            for pod in pods {
                record(shared, cache.upsert_pod(pod, &shared.rules, MAX_PODS));
            }
            shared.telemetry.pod_table_size.set(cache.len() as i64);
        }
        self.listed();
        Ok(())
    }

    fn apply(&mut self, change: Change, pod: Pod) -> Result<(), String> {
        let shared = &self.shared;
        let mut cache = shared.cache.write().map_err(|_| POISONED.to_string())?;
        if change == Change::Deleted {
            if cache.delete_pod(&pod.metadata.uid, Instant::now()) {
                shared.telemetry.pods_deleted.add(1);
            }
        } else {
            record(shared, cache.upsert_pod(pod, &shared.rules, MAX_PODS));
        }
        shared.telemetry.pod_table_size.set(cache.len() as i64);
        Ok(())
    }
}

impl Sink<MetaObject> for TableSink {
    fn replace(&mut self, objects: Vec<MetaObject>) -> Result<(), String> {
        {
            let mut cache = self
                .shared
                .cache
                .write()
                .map_err(|_| POISONED.to_string())?;
            cache.replace_meta(self.kind, objects.into_iter().map(|o| o.metadata).collect());
        }
        self.listed();
        Ok(())
    }

    fn apply(&mut self, change: Change, object: MetaObject) -> Result<(), String> {
        let mut cache = self
            .shared
            .cache
            .write()
            .map_err(|_| POISONED.to_string())?;
        cache.set_meta(self.kind, object.metadata, change == Change::Deleted);
        Ok(())
    }
}
