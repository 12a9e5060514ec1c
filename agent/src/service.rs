//! The service: builds the running graph from validated settings, starts it, and stops it.
//!
//! Build and start order (downstream first, as the Collector does): exporters (one queue
//! per exporter id and signal, shared by the pipelines that name it), then pipelines with
//! their processors, then extensions and self-telemetry, and receivers last, so nothing
//! is accepted before there is somewhere to put it.
//!
//! Stop order: health turns unhealthy; receivers stop accepting and answer what is in
//! flight; pipelines take what is left in their inputs and flush their batch stage;
//! exporters drain their queues until the shutdown deadline, then give up on what is left
//! (counted and logged); extensions and self-telemetry stop last.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxcol_config::ConfigError;
use oxcol_core::pipeline::PipelineInput;
use oxcol_core::telemetry::{ExporterCounters, ProcessorCounters, Registry};
use oxcol_core::{Consumers, Exporter, Signal};
use oxcol_exporters::queue::QueuedExporter;
use oxcol_exporters::{debug, otlp, otlphttp};
use oxcol_processors::memory_limiter::{MemoryLimiter, MemoryLimiterProcessor};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::extensions::health_check;
use crate::pipeline::{Pipeline, Stage};
use crate::registry::{decode_component, ComponentConfig, Kind};
use crate::settings::Settings;

/// Capacity of each pipeline's input channel (batches waiting for the pipeline task).
const PIPELINE_INPUT_CAPACITY: usize = 64;
/// How long exporters may drain their queues at shutdown.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

/// Decodes and validates every component config; all errors at once.
pub fn decode_all(settings: &Settings) -> Result<HashMap<(Kind, String), ComponentConfig>, Vec<ConfigError>> {
    let mut configs = HashMap::new();
    let mut errors = Vec::new();
    for kind in Kind::ALL {
        for def in settings.components(kind) {
            match decode_component(kind, def) {
                Ok(config) => {
                    configs.insert((kind, def.id.clone()), config);
                }
                Err(mut e) => errors.append(&mut e),
            }
        }
    }
    check_storage_references(settings, &configs, &mut errors);
    // Security: every `auth.authenticator` names an authenticator extension in service.extensions.
    check_authenticator_references(settings, &configs, &mut errors);
    if errors.is_empty() {
        Ok(configs)
    } else {
        Err(errors)
    }
}

/// Disk queues: the storage key (for messages) and `file_storage` id of the exporters
/// that name one.
fn exporter_storage(config: &ComponentConfig) -> Option<(&'static str, &str)> {
    match config {
        ComponentConfig::OtlpExporter(c) => c.sending_queue.storage.as_deref().map(|s| ("sending_queue.storage", s)),
        ComponentConfig::OtlpHttpExporter(c) => c.sending_queue.storage.as_deref().map(|s| ("sending_queue.storage", s)),
        ComponentConfig::PrometheusRemoteWriteExporter(c) => c.remote_write_queue.storage.as_deref().map(|s| ("remote_write_queue.storage", s)),
        _ => None,
    }
}

/// Disk queues without an extension: prometheusremotewrite's `wal.directory` (the
/// Collector's key) gives the storage settings itself.
fn exporter_wal(config: &ComponentConfig) -> Option<oxcol_exporters::disk_queue::Config> {
    match config {
        ComponentConfig::PrometheusRemoteWriteExporter(c) => c.wal_storage(),
        _ => None,
    }
}

/// Disk queues and checkpoints: every exporter's queue storage and every stateful
/// processor's `storage` names a `file_storage` extension that is defined and listed in
/// `service.extensions` (reported at the exporter's position, or at the processor's
/// `storage` key).
fn check_storage_references(settings: &Settings, configs: &HashMap<(Kind, String), ComponentConfig>, errors: &mut Vec<ConfigError>) {
    let exporters = settings.components(Kind::Exporter).iter().filter_map(|def| {
        let (key, storage) = configs.get(&(Kind::Exporter, def.id.clone())).and_then(exporter_storage)?;
        Some((def, "exporter", key, storage, &def.location))
    });
    let processors = settings.components(Kind::Processor).iter().filter_map(|def| {
        let storage = configs.get(&(Kind::Processor, def.id.clone())).and_then(processor_storage)?;
        let location = def.node.get("storage").map(|n| &n.location).unwrap_or(&def.location);
        Some((def, "processor", "storage", storage, location))
    });
    for (def, kind, key, storage, location) in exporters.chain(processors) {
        let problem = match configs.get(&(Kind::Extension, storage.to_string())) {
            None => format!("{key}: extension {storage:?} is not defined under `extensions`; add it (file_storage with a directory) or remove `storage`"),
            Some(ComponentConfig::FileStorage(_)) if !settings.service_extensions.iter().any(|r| r.id == storage) => {
                format!("{key}: extension {storage:?} is not listed in service.extensions; add it there")
            }
            Some(ComponentConfig::FileStorage(_)) => continue,
            Some(_) => format!("{key}: extension {storage:?} is not a file_storage extension"),
        };
        errors.push(ConfigError::at(location, format!("{kind} {:?}: {problem}", def.id)));
    }
}

/// Security: the `auth:` keys of a component, as (config path, authenticator id, server side).
fn auth_references(config: &ComponentConfig) -> Vec<(&'static [&'static str], &str, bool)> {
    type Keys<'a> = Vec<(&'static [&'static str], &'a Option<oxcol_core::auth::AuthSettings>, bool)>;
    let keys: Keys<'_> = match config {
        ComponentConfig::OtlpReceiver(c) => {
            let mut keys: Keys<'_> = Vec::new();
            if let Some(grpc) = &c.protocols.grpc {
                keys.push((&["protocols", "grpc", "auth"], &grpc.auth, true));
            }
            if let Some(http) = &c.protocols.http {
                keys.push((&["protocols", "http", "auth"], &http.auth, true));
            }
            keys
        }
        ComponentConfig::HealthCheck(c) => vec![(&["auth"], &c.auth, true)],
        ComponentConfig::OtlpExporter(c) => vec![(&["auth"], &c.auth, false)],
        ComponentConfig::OtlpHttpExporter(c) => vec![(&["auth"], &c.auth, false)],
        ComponentConfig::PrometheusRemoteWriteExporter(c) => vec![(&["auth"], &c.auth, false)],
        _ => Vec::new(),
    };
    keys.into_iter().filter_map(|(path, auth, server)| auth.as_ref().map(|a| (path, a.authenticator.as_str(), server))).collect()
}

/// Security: each `auth.authenticator` is a defined `bearertokenauth`/`basicauth`
/// extension listed in service.extensions, usable on that side (reported at the key).
fn check_authenticator_references(settings: &Settings, configs: &HashMap<(Kind, String), ComponentConfig>, errors: &mut Vec<ConfigError>) {
    for kind in [Kind::Receiver, Kind::Exporter, Kind::Extension] {
        for def in settings.components(kind) {
            let Some(config) = configs.get(&(kind, def.id.clone())) else { continue };
            for (path, id, server) in auth_references(config) {
                let mut node = Some(&def.node);
                for key in path {
                    node = node.and_then(|n| n.get(key));
                }
                let location = node.and_then(|n| n.get("authenticator")).map(|n| &n.location).unwrap_or(&def.location);
                let problem = match configs.get(&(Kind::Extension, id.to_string())) {
                    None => Some(format!("{}.authenticator {id:?} is not defined under `extensions`; add a bearertokenauth or basicauth extension with that id", path.join("."))),
                    Some(ComponentConfig::BearerTokenAuth(_) | ComponentConfig::BasicAuth(_)) if !settings.service_extensions.iter().any(|r| r.id == id) => {
                        Some(format!("{}.authenticator {id:?} is not listed in service.extensions; add it there", path.join(".")))
                    }
                    Some(ComponentConfig::BasicAuth(b)) if server && b.htpasswd.is_none() => Some(format!("{}.authenticator {id:?} has no htpasswd, so it cannot check requests", path.join("."))),
                    Some(ComponentConfig::BasicAuth(b)) if !server && b.client_auth.is_none() => Some(format!("{}.authenticator {id:?} has no client_auth, so it cannot send credentials", path.join("."))),
                    Some(ComponentConfig::BearerTokenAuth(_) | ComponentConfig::BasicAuth(_)) => None,
                    Some(_) => Some(format!("{}.authenticator {id:?} is not an authenticator (use a bearertokenauth or basicauth extension)", path.join("."))),
                };
                if let Some(problem) = problem {
                    errors.push(ConfigError::at(location, format!("{} {:?}: {problem}", kind.name(), def.id)));
                }
            }
        }
    }
}

/// Security: the client credentials of an exporter's `auth:` (validated in decode_all).
fn client_credentials(configs: &HashMap<(Kind, String), ComponentConfig>, auth: &Option<oxcol_core::auth::AuthSettings>) -> Result<Option<oxcol_core::auth::ClientCredentials>, String> {
    let Some(auth) = auth else { return Ok(None) };
    let credentials = match configs.get(&(Kind::Extension, auth.authenticator.clone())) {
        Some(ComponentConfig::BearerTokenAuth(c)) => c.client_credentials(),
        Some(ComponentConfig::BasicAuth(c)) => c.client_credentials(),
        _ => Err("is not an authenticator extension".to_string()),
    };
    credentials.map(Some).map_err(|e| format!("auth.authenticator {:?}: {e}", auth.authenticator))
}

/// Stateful processors: the `storage` key (checkpoints) of those that have one.
fn processor_storage(config: &ComponentConfig) -> Option<&str> {
    match config {
        ComponentConfig::Ewma(c) => c.storage.as_deref(),
        ComponentConfig::Burnrate(c) => c.storage.as_deref(),
        _ => None,
    }
}

/// The checkpoint settings of a processor's `storage` (checked in decode_all).
fn checkpoint_storage(configs: &HashMap<(Kind, String), ComponentConfig>, storage: Option<&str>) -> Option<oxcol_processors::checkpoint::Storage> {
    let id = storage?;
    let Some(ComponentConfig::FileStorage(c)) = configs.get(&(Kind::Extension, id.to_string())) else { return None };
    Some(oxcol_processors::checkpoint::Storage {
        extension: id.to_string(),
        directory: c.directory.clone().unwrap_or_default().into(),
        fsync: c.fsync,
        create_directory: c.create_directory,
        directory_permissions: u32::from_str_radix(c.directory_permissions.trim_start_matches("0o"), 8).unwrap_or(0o750),
        lock_timeout: c.timeout.get(),
    })
}

pub struct Running {
    receivers_stop: CancellationToken,
    pipelines_stop: CancellationToken,
    servers_stop: CancellationToken,
    receiver_tasks: Vec<JoinHandle<()>>,
    pipeline_tasks: Vec<JoinHandle<()>>,
    server_tasks: Vec<JoinHandle<()>>,
    exporters: Vec<Arc<QueuedExporter>>,
    healthy: Arc<AtomicBool>,
    /// Fires if a pipeline task ends on its own (a bug or a panic): the service is then
    /// unhealthy.
    pub pipeline_died: CancellationToken,
}

fn build_exporter(id: &str, config: &ComponentConfig, configs: &HashMap<(Kind, String), ComponentConfig>) -> Result<(Arc<dyn Exporter>, oxcol_exporters::queue::QueueConfig, oxcol_exporters::queue::RetryConfig), String> {
    match config {
        ComponentConfig::OtlpExporter(c) => Ok((Arc::new(otlp::OtlpGrpcExporter::new(c)?.with_credentials(client_credentials(configs, &c.auth)?)?), c.sending_queue.clone(), c.retry_on_failure.clone())),
        ComponentConfig::OtlpHttpExporter(c) => Ok((Arc::new(otlphttp::OtlpHttpExporter::new(c)?.with_credentials(client_credentials(configs, &c.auth)?)), c.sending_queue.clone(), c.retry_on_failure.clone())),
        ComponentConfig::DebugExporter(c) => {
            // Printing never fails; a small queue keeps it off the pipeline's path.
            let queue = oxcol_exporters::queue::QueueConfig { num_consumers: 1, ..Default::default() };
            Ok((Arc::new(debug::DebugExporter::new(id, c)), queue, Default::default()))
        }
        ComponentConfig::PrometheusRemoteWriteExporter(c) => Ok((Arc::new(oxcol_exporters::prometheusremotewrite::RemoteWriteExporter::new(id, c)?.with_credentials(client_credentials(configs, &c.auth)?)), c.queue_config(), c.retry_on_failure.clone())),
        ComponentConfig::PrometheusExporter(c) => Ok((Arc::new(oxcol_exporters::prometheus::PrometheusExporter::new(id, c)?), oxcol_exporters::queue::QueueConfig { num_consumers: 1, ..Default::default() }, Default::default())),
        // WIRING: one arm per exporter type.
        _ => Err(format!("{id} is not an exporter")),
    }
}

/// The grouping for the queue of `exporter` and `signal`: the batch processor of the
/// first pipeline of that signal that sends to it and has one. Pipelines that disagree
/// are reported once.
fn batching_for(settings: &Settings, configs: &HashMap<(Kind, String), ComponentConfig>, exporter: &str, signal: Signal) -> Option<oxcol_core::BatchSettings> {
    let mut chosen: Option<oxcol_core::BatchSettings> = None;
    for pipeline in settings.pipelines.iter().filter(|p| p.signal == signal && p.exporters.iter().any(|e| e.id == exporter)) {
        let found = pipeline.processors.iter().find_map(|r| match &configs[&(Kind::Processor, r.id.clone())] {
            ComponentConfig::Batch(c) => Some(c.settings()),
            _ => None,
        });
        match (chosen, found) {
            (None, found) => chosen = found,
            (Some(a), Some(b)) if a != b => {
                tracing::warn!(exporter, %signal, "pipelines sending to this exporter use different batch settings; using the first pipeline's");
            }
            _ => {}
        }
    }
    chosen
}

/// Builds and starts everything. Errors name the component.
pub async fn start(settings: &Settings, configs: &HashMap<(Kind, String), ComponentConfig>, registry: Arc<Registry>) -> Result<Running, String> {
    let healthy = Arc::new(AtomicBool::new(false));
    let receivers_stop = CancellationToken::new();
    let pipelines_stop = CancellationToken::new();
    let servers_stop = CancellationToken::new();
    let pipeline_died = CancellationToken::new();

    // Exporters: one queue per (id, signal) in use, grouping as the batch processor of the
    // pipelines feeding it says.
    let mut queues: HashMap<(String, Signal), Arc<QueuedExporter>> = HashMap::new();
    for pipeline in &settings.pipelines {
        for reference in &pipeline.exporters {
            let key = (reference.id.clone(), pipeline.signal);
            if queues.contains_key(&key) {
                continue;
            }
            let config = &configs[&(Kind::Exporter, reference.id.clone())];
            let (exporter, queue, retry) = build_exporter(&reference.id, config, configs).map_err(|e| format!("exporter {:?}: {e}", reference.id))?;
            let counters = ExporterCounters::new(&registry, &reference.id, pipeline.signal);
            let batching = batching_for(settings, configs, &reference.id, pipeline.signal);
            // Disk queue: `sending_queue.storage: file_storage/NAME` resolves to that
            // extension's config (checked in decode_all); the queue lives in its directory.
            // prometheusremotewrite's `wal.directory` carries its own settings.
            let storage = match queue.storage.as_ref().and_then(|s| configs.get(&(Kind::Extension, s.clone()))) {
                Some(ComponentConfig::FileStorage(storage)) => Some(storage.clone()),
                _ => exporter_wal(config),
            };
            let queued = match storage {
                Some(storage) => {
                    QueuedExporter::start_durable(&reference.id, pipeline.signal, exporter, &queue, &retry, batching, counters, &registry, &storage).map_err(|e| format!("exporter {:?}: {e}", reference.id))?
                }
                None => QueuedExporter::start(&reference.id, pipeline.signal, exporter, &queue, &retry, batching, counters),
            };
            queues.insert(key, Arc::new(queued));
        }
    }

    // Pipelines, and the consumers each receiver gets.
    let mut consumers: HashMap<String, Consumers> = HashMap::new();
    let mut pipeline_tasks = Vec::new();
    let mut limiters: HashMap<String, Arc<MemoryLimiter>> = HashMap::new();
    for pipeline in &settings.pipelines {
        let (sender, input) = mpsc::channel(PIPELINE_INPUT_CAPACITY);
        let mut processors = Vec::new();
        let mut admissions: Vec<Arc<dyn oxcol_core::Admission>> = Vec::new();
        for reference in &pipeline.processors {
            let counters = ProcessorCounters::new(&registry, &reference.id, &pipeline.id, pipeline.signal);
            let stage = match &configs[&(Kind::Processor, reference.id.clone())] {
                // Applied by the exporter queues (batching_for).
                ComponentConfig::Batch(_) => continue,
                ComponentConfig::MemoryLimiter(c) => {
                    // One limiter per id, shared by every pipeline that names it.
                    let limiter = limiters.entry(reference.id.clone()).or_insert_with(|| MemoryLimiter::new(&reference.id, c)).clone();
                    admissions.push(limiter.clone());
                    Stage { processor: Box::new(MemoryLimiterProcessor(limiter)), counters }
                }
                ComponentConfig::Relabel(c) => {
                    let relabel_counters = oxcol_processors::relabel::RelabelCounters::new(&registry, &reference.id);
                    let processor = oxcol_processors::relabel::RelabelProcessor::new(&reference.id, c, relabel_counters).map_err(|e| format!("processor {:?}: {e}", reference.id))?;
                    Stage { processor: Box::new(processor), counters }
                }
                ComponentConfig::Units(c) => {
                    let processor = oxcol_processors::units::UnitsProcessor::new(&reference.id, c, Some(Arc::clone(&registry))).map_err(|e| format!("processor {:?}: {e}", reference.id))?;
                    Stage { processor: Box::new(processor), counters }
                }
                ComponentConfig::Ewma(c) => {
                    let mut processor = oxcol_processors::ewma::EwmaProcessor::new(&reference.id, c, Some(&registry)).map_err(|e| format!("processor {:?}: {e}", reference.id))?;
                    // Checkpoints: restore now, write from the pipeline's ticks and at shutdown.
                    if let Some(storage) = checkpoint_storage(configs, c.storage.as_deref()) {
                        processor = processor.with_storage(&storage, &pipeline.id, Some(&registry)).map_err(|e| format!("processor {:?}: {e}", reference.id))?;
                    }
                    Stage { processor: Box::new(processor), counters }
                }
                ComponentConfig::Burnrate(c) => {
                    let mut processor = oxcol_processors::burnrate::BurnrateProcessor::new(&reference.id, c, Some(&registry)).map_err(|e| format!("processor {:?}: {e}", reference.id))?;
                    if let Some(storage) = checkpoint_storage(configs, c.storage.as_deref()) {
                        processor = processor.with_storage(&storage, &pipeline.id, Some(&registry)).map_err(|e| format!("processor {:?}: {e}", reference.id))?;
                    }
                    Stage { processor: Box::new(processor), counters }
                }
                // WIRING: one arm per processor type, building a Stage.
                _ => return Err(format!("processor {:?} cannot be built", reference.id)),
            };
            processors.push(stage);
        }
        let exporters = pipeline.exporters.iter().map(|r| Arc::clone(&queues[&(r.id.clone(), pipeline.signal)])).collect();
        let running = Pipeline { id: pipeline.id.clone(), input, processors, exporters };
        let stop = pipelines_stop.clone();
        let receivers_stopped = receivers_stop.clone();
        let died = pipeline_died.clone();
        let id = pipeline.id.clone();
        pipeline_tasks.push(tokio::spawn(async move {
            running.run(stop.clone()).await;
            // A pipeline also ends when every receiver feeding it has stopped.
            if !stop.is_cancelled() && !receivers_stopped.is_cancelled() {
                tracing::error!(pipeline = %id, "pipeline stopped unexpectedly");
                died.cancel();
            }
        }));
        for reference in &pipeline.receivers {
            consumers.entry(reference.id.clone()).or_default().add(
                pipeline.signal,
                PipelineInput { pipeline: pipeline.id.clone(), sender: sender.clone(), admissions: admissions.clone() },
            );
        }
    }

    // Security: server authenticators of the bearertokenauth/basicauth extensions in
    // service.extensions, by id (files are read here; errors name the extension).
    let mut authenticators: HashMap<String, Arc<oxcol_core::auth::ServerAuthenticator>> = HashMap::new();
    for reference in &settings.service_extensions {
        let built = match &configs[&(Kind::Extension, reference.id.clone())] {
            ComponentConfig::BearerTokenAuth(c) => Some(c.server_authenticator()),
            ComponentConfig::BasicAuth(c) if c.htpasswd.is_some() => Some(c.server_authenticator()),
            _ => None,
        };
        if let Some(built) = built {
            authenticators.insert(reference.id.clone(), Arc::new(built.map_err(|e| format!("extension {:?}: {e}", reference.id))?));
        }
    }

    // Extensions and self-telemetry.
    let mut server_tasks = Vec::new();
    for reference in &settings.service_extensions {
        if let ComponentConfig::HealthCheck(c) = &configs[&(Kind::Extension, reference.id.clone())] {
            let auth = c.auth.as_ref().and_then(|a| authenticators.get(&a.authenticator).cloned());
            let (_, task) = health_check::serve(&reference.id, c, Arc::clone(&healthy), auth, &registry, servers_stop.clone()).await?;
            server_tasks.push(task);
        }
    }
    if let Some(address) = settings.telemetry.metrics.listen_address()? {
        crate::telemetry::register_process_metrics(&registry);
        let (_, task) = crate::telemetry::serve_metrics(&address, settings.telemetry.metrics.tls(), Arc::clone(&registry), servers_stop.clone()).await?;
        server_tasks.push(task);
    }

    // Receivers last.
    let mut receiver_tasks = Vec::new();
    for def in &settings.receivers {
        let Some(receiver_consumers) = consumers.remove(&def.id) else {
            tracing::warn!(receiver = %def.id, "receiver is defined but used by no pipeline; not started");
            continue;
        };
        match &configs[&(Kind::Receiver, def.id.clone())] {
            ComponentConfig::OtlpReceiver(c) => {
                let running = oxcol_receivers::otlp::start(&def.id, c, receiver_consumers, &registry, receivers_stop.clone(), &authenticators).await?;
                receiver_tasks.extend(running.tasks);
            }
            ComponentConfig::CgroupReceiver(c) => {
                let scraper = oxcol_receivers::cgroup::CgroupScraper::new(&def.id, c, &registry);
                receiver_tasks.push(oxcol_receivers::scraper::spawn(&def.id, c.collection_interval.get(), scraper, receiver_consumers, &registry, receivers_stop.clone()));
            }
            ComponentConfig::SmapsReceiver(c) => {
                let scraper = oxcol_receivers::smaps::SmapsScraper::new(&def.id, c, &registry);
                receiver_tasks.push(oxcol_receivers::scraper::spawn(&def.id, c.collection_interval.get(), scraper, receiver_consumers, &registry, receivers_stop.clone()));
            }
            ComponentConfig::PprofReceiver(c) => {
                let scraper = oxcol_receivers::pprof::PprofScraper::new(&def.id, c, &registry)?;
                receiver_tasks.push(oxcol_receivers::scraper::spawn(&def.id, c.collection_interval.get(), scraper, receiver_consumers, &registry, receivers_stop.clone()));
            }
            ComponentConfig::PrometheusReceiver(c) => {
                for (interval, scraper) in c.scrapers(&def.id, &registry)? {
                    receiver_tasks.push(oxcol_receivers::scraper::spawn(&def.id, interval, scraper, receiver_consumers.clone(), &registry, receivers_stop.clone()));
                }
            }
            // WIRING: one arm per receiver type. Pull receivers:
            // receiver_tasks.push(oxcol_receivers::scraper::spawn(&def.id, interval, scraper, receiver_consumers, &registry, receivers_stop.clone()));
            _ => return Err(format!("receiver {:?} cannot be built", def.id)),
        }
    }

    healthy.store(true, Ordering::Relaxed);
    let exporters = queues.into_values().collect();
    Ok(Running { receivers_stop, pipelines_stop, servers_stop, receiver_tasks, pipeline_tasks, server_tasks, exporters, healthy, pipeline_died })
}

async fn join_all_bounded(tasks: Vec<JoinHandle<()>>, limit: Duration, what: &str) {
    let waiting = futures::future::join_all(tasks);
    if tokio::time::timeout(limit, waiting).await.is_err() {
        tracing::warn!("{what} did not stop within {limit:?}; continuing shutdown");
    }
}

impl Running {
    /// Stops everything in order; returns when exporters drained or gave up.
    pub async fn shutdown(self) {
        self.healthy.store(false, Ordering::Relaxed);
        tracing::info!("shutting down: receivers stop accepting");
        self.receivers_stop.cancel();
        join_all_bounded(self.receiver_tasks, Duration::from_secs(10), "receivers").await;
        self.pipelines_stop.cancel();
        join_all_bounded(self.pipeline_tasks, Duration::from_secs(10), "pipelines").await;
        let deadline = Instant::now() + SHUTDOWN_DRAIN;
        futures::future::join_all(self.exporters.iter().map(|e| e.shutdown(deadline))).await;
        self.servers_stop.cancel();
        join_all_bounded(self.server_tasks, Duration::from_secs(2), "extensions").await;
        tracing::info!("shutdown complete");
    }

    pub fn set_unhealthy(&self) {
        self.healthy.store(false, Ordering::Relaxed);
    }
}
