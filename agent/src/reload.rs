//! Reload without a restart: SIGHUP (or, with `--watch-config`, a change of a `--config`
//! file) reads every `--config` source and `--set` again and applies the new config in
//! the same process.
//!
//! A config that does not load or validate is refused: every problem is logged as
//! `file:line:column: message`, `oxcol_config_reloads{outcome="refused"}` counts it, and
//! the running config keeps going untouched.
//!
//! A valid config replaces the running one in the shutdown order, then starts as at
//! start-up: receivers stop accepting (answering what is in flight, ports released),
//! pipelines take what is left in their inputs, connectors flush, then exporter queues
//! whose fingerprint changed (their YAML, the extensions they use, the batch grouping
//! feeding them; see `service::exporter_fingerprints`) or that are gone drain and close,
//! while the unchanged ones keep running, with their queue contents, disk queue and
//! connections, and are handed to the new pipelines. Nothing a receiver acknowledged is
//! lost: it is in a queue that either goes on or drains. If the new config cannot start
//! (a port is taken), the previous config is started again with the same kept queues.
//!
//! Self-telemetry: `oxcol_config_reloads{outcome="done"|"refused"}` and
//! `oxcol_config_info{hash}` = 1 for the running config (0 for the configs it replaced);
//! the hash is also in the start and reload log lines.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use oxcol_core::telemetry::{Counter, Gauge, Registry};

use crate::service::{self, Kept, Running};
use crate::{ConfigArgs, Loaded};

/// How often `--watch-config` reads the config files.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// Attempts to start the previous config again when the new one could not start.
const FALLBACK_ATTEMPTS: usize = 5;

/// A 64-bit hash of `bytes`, stable for one oxcol binary.
fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// The hash of a resolved config (files merged, `--set` applied, env expanded), as 16 hex
/// digits: equal configs give equal hashes, whatever their sources' formatting.
pub fn config_hash(root: &oxcol_config::Node) -> String {
    format!(
        "{:016x}",
        hash_bytes(oxcol_config::to_yaml(root).as_bytes())
    )
}

/// The files among the `--config` sources (`env:` and `yaml:` sources have none).
pub fn watched_files(configs: &[String]) -> Vec<PathBuf> {
    configs
        .iter()
        .filter(|spec| !spec.starts_with("env:") && !spec.starts_with("yaml:"))
        .map(|spec| PathBuf::from(spec.strip_prefix("file:").unwrap_or(spec)))
        .collect()
}

/// `--watch-config`: polls the content of the config files. Reading follows symlinks, so
/// a Kubernetes ConfigMap update (the `..data` symlink swapped to a new directory) is seen
/// as the content change it is; a touch without a change is not.
pub struct Watcher {
    files: Vec<PathBuf>,
    last: u64,
    interval: Duration,
}

impl Watcher {
    pub fn new(files: Vec<PathBuf>) -> Watcher {
        Watcher::with_interval(files, WATCH_INTERVAL)
    }

    fn with_interval(files: Vec<PathBuf>, interval: Duration) -> Watcher {
        let last = contents_hash(&files);
        Watcher {
            files,
            last,
            interval,
        }
    }

    /// Takes the current contents as seen (after a reload, whatever triggered it).
    pub fn refresh(&mut self) {
        self.last = contents_hash(&self.files);
    }

    /// Returns once the contents differ from the last seen.
    pub async fn changed(&mut self) {
        loop {
            tokio::time::sleep(self.interval).await;
            let now = tokio::task::block_in_place(|| contents_hash(&self.files));
            if now != self.last {
                self.last = now;
                return;
            }
        }
    }

    /// [`Watcher::changed`], or never without a watcher.
    pub async fn changed_opt(watcher: &mut Option<Watcher>) {
        match watcher {
            Some(watcher) => watcher.changed().await,
            None => std::future::pending().await,
        }
    }
}

/// One hash over every file's content (a file that cannot be read hashes its error, so
/// its disappearance and return are changes too).
fn contents_hash(files: &[PathBuf]) -> u64 {
    let mut all = Vec::new();
    for file in files {
        match std::fs::read(file) {
            Ok(bytes) => all.extend_from_slice(&hash_bytes(&bytes).to_le_bytes()),
            Err(error) => {
                all.extend_from_slice(format!("{}: {:?}", file.display(), error.kind()).as_bytes())
            }
        }
    }
    hash_bytes(&all)
}

/// The running config and the reload self-telemetry.
pub struct Reloader {
    args: ConfigArgs,
    current: Loaded,
    registry: Arc<Registry>,
    done: Counter,
    refused: Counter,
    info: Gauge,
    process_metrics: bool,
}

impl Reloader {
    pub fn new(args: ConfigArgs, loaded: Loaded, registry: Arc<Registry>) -> Reloader {
        let help = "Config reloads (SIGHUP or --watch-config) by outcome: done, or refused (invalid config or it could not start).";
        let done = registry.counter("oxcol_config_reloads", help, &[("outcome", "done")]);
        let refused = registry.counter("oxcol_config_reloads", help, &[("outcome", "refused")]);
        let info = info_gauge(&registry, &loaded.hash);
        Reloader {
            args,
            current: loaded,
            registry,
            done,
            refused,
            info,
            process_metrics: false,
        }
    }

    pub fn hash(&self) -> &str {
        &self.current.hash
    }

    pub fn pipelines(&self) -> usize {
        self.current.settings.pipelines.len()
    }

    /// Starts the current config (the first start).
    pub async fn start(&mut self) -> Result<Running, String> {
        self.start_current(&mut Kept::default()).await
    }

    async fn start_current(&mut self, kept: &mut Kept) -> Result<Running, String> {
        // The process metrics are registered once for the life of the process.
        if !self.process_metrics && self.current.settings.telemetry.metrics.level != "none" {
            crate::telemetry::register_process_metrics(&self.registry);
            self.process_metrics = true;
        }
        service::start(
            &self.current.settings,
            &self.current.configs,
            Arc::clone(&self.registry),
            kept,
        )
        .await
    }

    /// Reads the config again and applies it (see the module doc). Returns the running
    /// service: the new one, or `running` itself when the new config is refused. An error
    /// only when neither the new nor the previous config could start.
    pub async fn reload(&mut self, running: Running, why: &str) -> Result<Running, String> {
        tracing::info!(reason = why, "reloading the configuration");
        let loaded = match tokio::task::block_in_place(|| crate::load_checked(&self.args)) {
            Ok(loaded) => loaded,
            Err(errors) => {
                for error in &errors {
                    tracing::error!("{error}");
                }
                self.refused.add(1);
                tracing::error!(reason = why, problems = errors.len(), hash = %self.current.hash, "config reload refused: the new configuration has {} problem{}; the running configuration keeps going", errors.len(), if errors.len() == 1 { "" } else { "s" });
                return Ok(running);
            }
        };
        if loaded.hash == self.current.hash {
            self.done.add(1);
            tracing::info!(reason = why, hash = %loaded.hash, "config reloaded: unchanged, nothing to do");
            return Ok(running);
        }
        let keep = running.keep_for(&loaded.settings, &loaded.configs);
        let stopped = running.exporter_count() - keep.exporters.len();
        let kept_receivers = keep.receivers.len();
        let mut kept = running.stop(&keep).await;
        let stateful = kept.stages.len();
        let previous = std::mem::replace(&mut self.current, loaded);
        match self.start_current(&mut kept).await {
            Ok(running) => {
                self.done.add(1);
                self.info.set(0);
                self.info = info_gauge(&self.registry, &self.current.hash);
                let kept_processors = stateful - kept.stages.len();
                let kept_exporters = kept.exporters.len();
                tracing::info!(
                    reason = why,
                    hash = %self.current.hash,
                    previous_hash = %previous.hash,
                    kept_receivers,
                    kept_exporters,
                    stopped_exporters = stopped,
                    kept_processors,
                    "config reloaded"
                );
                Ok(running)
            }
            Err(error) => {
                self.refused.add(1);
                tracing::error!(reason = why, hash = %self.current.hash, "config reload refused: the new configuration cannot start: {error}; starting the previous one again");
                self.current = previous;
                self.fall_back(&mut kept).await
            }
        }
    }

    /// Starts the previous config again, retrying while the failed start releases its ports.
    async fn fall_back(&mut self, kept: &mut Kept) -> Result<Running, String> {
        let mut last = String::new();
        for attempt in 1..=FALLBACK_ATTEMPTS {
            match self.start_current(kept).await {
                Ok(running) => {
                    tracing::info!(hash = %self.current.hash, "the previous configuration runs again");
                    return Ok(running);
                }
                Err(error) => {
                    tracing::warn!(
                        attempt,
                        "the previous configuration cannot start yet: {error}"
                    );
                    last = error;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        Err(format!(
            "neither the new nor the previous configuration could start: {last}"
        ))
    }
}

fn info_gauge(registry: &Registry, hash: &str) -> Gauge {
    let gauge = registry.gauge(
        "oxcol_config_info",
        "The running configuration: 1 for its hash (0 for configurations it replaced).",
        &[("hash", hash)],
    );
    gauge.set(1);
    gauge
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(yaml: &str) -> oxcol_config::Node {
        let source = oxcol_config::Source::Text {
            name: "test".to_string(),
            text: yaml.to_string(),
        };
        oxcol_config::load(&[source], &[], &|_| None).expect("the YAML loads")
    }

    #[test]
    fn config_hash_follows_the_resolved_content_not_the_formatting() {
        let a = config_hash(&root("exporters:\n  debug:\n    verbosity: basic\n"));
        let b = config_hash(&root("exporters: {debug: {verbosity: basic}}\n"));
        let c = config_hash(&root("exporters:\n  debug:\n    verbosity: detailed\n"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 16);
    }

    /// The exporter, receiver and stateful-processor fingerprints of a config.
    type Prints = (
        std::collections::HashMap<(String, oxcol_core::Signal), String>,
        std::collections::HashMap<String, String>,
        std::collections::HashMap<(String, String), String>,
    );

    fn prints(yaml: &str) -> Prints {
        let (settings, errors) = crate::settings::read(&root(yaml));
        assert!(errors.is_empty(), "{errors:?}");
        let configs = service::decode_all(&settings).expect("the config is valid");
        (
            service::exporter_fingerprints(&settings, &configs),
            service::receiver_fingerprints(&settings, &configs),
            service::stage_fingerprints(&settings, &configs),
        )
    }

    const BASE: &str = "extensions:
  bearertokenauth/out:
    token: one
  file_storage/s:
    directory: /tmp/a
receivers:
  otlp:
    protocols:
      grpc:
processors:
  batch:
    send_batch_size: 100
  ewma:
    metrics:
      - match: g
    storage: file_storage/s
exporters:
  otlp/a:
    endpoint: a:4317
    auth:
      authenticator: bearertokenauth/out
  otlp/b:
    endpoint: b:4317
service:
  extensions: [bearertokenauth/out, file_storage/s]
  pipelines:
    metrics:
      receivers: [otlp]
      processors: [ewma, batch]
      exporters: [otlp/a, otlp/b]
";

    #[test]
    fn fingerprints_change_with_what_a_part_is_built_from_and_only_then() {
        use oxcol_core::Signal;
        let a = ("otlp/a".to_string(), Signal::Metrics);
        let b = ("otlp/b".to_string(), Signal::Metrics);
        let ewma = ("metrics".to_string(), "ewma".to_string());
        let base = prints(BASE);
        assert_eq!(base.0.len(), 2);
        assert_eq!(
            base.2.len(),
            1,
            "only ewma is a stateful processor: {:?}",
            base.2.keys()
        );
        // Another exporter's endpoint: only that one changes.
        let other = prints(&BASE.replace("b:4317", "c:4317"));
        assert_eq!(other.0[&a], base.0[&a]);
        assert_ne!(other.0[&b], base.0[&b]);
        assert_eq!(other.1, base.1);
        assert_eq!(other.2, base.2);
        // The authenticator's token: the exporter that uses it changes.
        let token = prints(&BASE.replace("token: one", "token: two"));
        assert_ne!(token.0[&a], base.0[&a]);
        assert_eq!(token.0[&b], base.0[&b]);
        // The batch grouping feeding the queues: both change.
        let batch = prints(&BASE.replace("send_batch_size: 100", "send_batch_size: 200"));
        assert_ne!(batch.0[&a], base.0[&a]);
        assert_ne!(batch.0[&b], base.0[&b]);
        assert_eq!(batch.2, base.2);
        // The storage of ewma: its state is not carried to a different checkpoint directory.
        let storage = prints(&BASE.replace("/tmp/a", "/tmp/b"));
        assert_ne!(storage.2[&ewma], base.2[&ewma]);
        // A new signal for the receiver: it offers another service, so it restarts.
        let traces = prints(&format!(
            "{BASE}    traces:\n      receivers: [otlp]\n      exporters: [otlp/b]\n"
        ));
        assert_ne!(traces.1["otlp"], base.1["otlp"]);
        // Formatting alone changes nothing.
        let reformatted = prints(&BASE.replace("    endpoint: a:4317", "    endpoint: \"a:4317\""));
        assert_eq!(reformatted.0, base.0);
    }

    #[test]
    fn watched_files_are_the_file_sources() {
        let specs = [
            "a.yaml".to_string(),
            "file:/etc/b.yaml".to_string(),
            "env:X".to_string(),
            "yaml:a::b".to_string(),
        ];
        assert_eq!(
            watched_files(&specs),
            vec![PathBuf::from("a.yaml"), PathBuf::from("/etc/b.yaml")]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watcher_sees_a_configmap_symlink_swap_and_not_a_touch() {
        let dir = std::env::temp_dir().join(format!("oxcol-reload-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("v1")).expect("mkdir");
        std::fs::create_dir_all(dir.join("v2")).expect("mkdir");
        std::fs::write(dir.join("v1/config.yaml"), "a: 1\n").expect("write");
        std::fs::write(dir.join("v2/config.yaml"), "a: 2\n").expect("write");
        // The kubelet's layout: config.yaml -> ..data/config.yaml, ..data -> v1.
        std::os::unix::fs::symlink("v1", dir.join("..data")).expect("symlink");
        std::os::unix::fs::symlink("..data/config.yaml", dir.join("config.yaml")).expect("symlink");
        let mut watcher =
            Watcher::with_interval(vec![dir.join("config.yaml")], Duration::from_millis(20));
        // Same content rewritten: no change within several polls.
        std::fs::write(dir.join("v1/config.yaml"), "a: 1\n").expect("write");
        assert!(
            tokio::time::timeout(Duration::from_millis(200), watcher.changed())
                .await
                .is_err()
        );
        // The swap: a new ..data link renamed over the old one.
        std::os::unix::fs::symlink("v2", dir.join("..data_tmp")).expect("symlink");
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("rename");
        assert!(
            tokio::time::timeout(Duration::from_secs(2), watcher.changed())
                .await
                .is_ok()
        );
        // Seen once: no second report for the same content.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), watcher.changed())
                .await
                .is_err()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
