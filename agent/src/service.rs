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
    if errors.is_empty() {
        Ok(configs)
    } else {
        Err(errors)
    }
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

fn build_exporter(id: &str, config: &ComponentConfig) -> Result<(Arc<dyn Exporter>, oxcol_exporters::queue::QueueConfig, oxcol_exporters::queue::RetryConfig), String> {
    match config {
        ComponentConfig::OtlpExporter(c) => Ok((Arc::new(otlp::OtlpGrpcExporter::new(c)?), c.sending_queue.clone(), c.retry_on_failure.clone())),
        ComponentConfig::OtlpHttpExporter(c) => Ok((Arc::new(otlphttp::OtlpHttpExporter::new(c)?), c.sending_queue.clone(), c.retry_on_failure.clone())),
        ComponentConfig::DebugExporter(c) => {
            // Printing never fails; a small queue keeps it off the pipeline's path.
            let queue = oxcol_exporters::queue::QueueConfig { num_consumers: 1, ..Default::default() };
            Ok((Arc::new(debug::DebugExporter::new(id, c)), queue, Default::default()))
        }
        ComponentConfig::PrometheusRemoteWriteExporter(c) => Ok((Arc::new(oxcol_exporters::prometheusremotewrite::RemoteWriteExporter::new(id, c)?), c.queue_config(), c.retry_on_failure.clone())),
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
            let (exporter, queue, retry) = build_exporter(&reference.id, config).map_err(|e| format!("exporter {:?}: {e}", reference.id))?;
            let counters = ExporterCounters::new(&registry, &reference.id, pipeline.signal);
            let batching = batching_for(settings, configs, &reference.id, pipeline.signal);
            let queued = QueuedExporter::start(&reference.id, pipeline.signal, exporter, &queue, &retry, batching, counters);
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

    // Extensions and self-telemetry.
    let mut server_tasks = Vec::new();
    for reference in &settings.service_extensions {
        if let ComponentConfig::HealthCheck(c) = &configs[&(Kind::Extension, reference.id.clone())] {
            let (_, task) = health_check::serve(&reference.id, c, Arc::clone(&healthy), servers_stop.clone()).await?;
            server_tasks.push(task);
        }
    }
    if let Some(address) = settings.telemetry.metrics.listen_address()? {
        crate::telemetry::register_process_metrics(&registry);
        let (_, task) = crate::telemetry::serve_metrics(&address, Arc::clone(&registry), servers_stop.clone()).await?;
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
                let running = oxcol_receivers::otlp::start(&def.id, c, receiver_consumers, &registry, receivers_stop.clone()).await?;
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
