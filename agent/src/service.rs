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
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use oxcol_config::ConfigError;
use oxcol_core::pipeline::PipelineInput;
use oxcol_core::telemetry::{ExporterCounters, ProcessorCounters, Registry};
use oxcol_core::{Consumers, Exporter, Processor, Signal};
use oxcol_exporters::queue::QueuedExporter;
use oxcol_exporters::{debug, otlp, otlphttp};
use oxcol_processors::memory_limiter::{MemoryLimiter, MemoryLimiterProcessor};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::extensions::health_check;
use crate::pipeline::{ConnectorNode, Destination, Pipeline, Stage};
use crate::registry::{ComponentConfig, Kind, decode_component};
use crate::settings::Settings;

/// Capacity of each pipeline's input channel (batches waiting for the pipeline task).
const PIPELINE_INPUT_CAPACITY: usize = 64;
/// How long exporters may drain their queues at shutdown.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

/// Decodes and validates every component config; all errors at once.
pub fn decode_all(
    settings: &Settings,
) -> Result<HashMap<(Kind, String), ComponentConfig>, Vec<ConfigError>> {
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
    check_routing_pipelines(settings, &configs, &mut errors);
    check_used_exporters(settings, &configs, &mut errors);
    // Security: every `auth.authenticator` names an authenticator extension in service.extensions.
    check_authenticator_references(settings, &configs, &mut errors);
    if errors.is_empty() {
        Ok(configs)
    } else {
        Err(errors)
    }
}

/// Problems the Collector reports only for exporters a pipeline uses (it builds only
/// those, and the check is in building): prometheusremotewrite's `endpoint`.
fn check_used_exporters(
    settings: &Settings,
    configs: &HashMap<(Kind, String), ComponentConfig>,
    errors: &mut Vec<ConfigError>,
) {
    for def in settings.components(Kind::Exporter) {
        let used = settings
            .pipelines
            .iter()
            .any(|p| p.exporters.iter().any(|e| e.id == def.id));
        let problems = match configs.get(&(Kind::Exporter, def.id.clone())) {
            Some(ComponentConfig::PrometheusRemoteWriteExporter(c)) if used => {
                c.endpoint_problems()
            }
            _ => continue,
        };
        let location = def
            .node
            .get("endpoint")
            .map(|n| &n.location)
            .unwrap_or(&def.location);
        errors.extend(problems.into_iter().map(|p| {
            ConfigError::at(
                location,
                format!("{} {:?}: {p}", Kind::Exporter.name(), def.id),
            )
        }));
    }
}

/// Routing: every pipeline a `routing` connector's table or `default_pipelines` names is a
/// pipeline that lists the connector in its `receivers` (reported at the connector).
fn check_routing_pipelines(
    settings: &Settings,
    configs: &HashMap<(Kind, String), ComponentConfig>,
    errors: &mut Vec<ConfigError>,
) {
    for def in settings.components(Kind::Connector) {
        let Some(ComponentConfig::RoutingConnector(config)) =
            configs.get(&(Kind::Connector, def.id.clone()))
        else {
            continue;
        };
        for name in config.pipelines() {
            let fed = settings
                .pipelines
                .iter()
                .any(|p| p.id == name && p.receivers.iter().any(|r| r.id == def.id));
            if !fed {
                errors.push(ConfigError::at(&def.location, format!("connector {:?}: routes to pipeline {name:?}, which does not list {:?} in its receivers; add it there or fix the name", def.id, def.id)));
            }
        }
    }
}

/// Disk queues: the storage key (for messages) and `file_storage` id of the exporters
/// that name one.
fn exporter_storage(config: &ComponentConfig) -> Option<(&'static str, &str)> {
    match config {
        ComponentConfig::OtlpExporter(c) => c
            .sending_queue
            .storage
            .as_deref()
            .map(|s| ("sending_queue.storage", s)),
        ComponentConfig::OtlpHttpExporter(c) => c
            .sending_queue
            .storage
            .as_deref()
            .map(|s| ("sending_queue.storage", s)),
        ComponentConfig::PrometheusRemoteWriteExporter(c) => c
            .remote_write_queue
            .storage
            .as_deref()
            .map(|s| ("remote_write_queue.storage", s)),
        ComponentConfig::ZipkinExporter(c) => c
            .sending_queue
            .storage
            .as_deref()
            .map(|s| ("sending_queue.storage", s)),
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

/// Disk queues, checkpoints and receiver state: every exporter's queue storage and every
/// stateful processor's or receiver's `storage` names a `file_storage` extension that is defined and listed in
/// `service.extensions` (reported at the exporter's position, or at the processor's
/// `storage` key).
fn check_storage_references(
    settings: &Settings,
    configs: &HashMap<(Kind, String), ComponentConfig>,
    errors: &mut Vec<ConfigError>,
) {
    let exporters = settings
        .components(Kind::Exporter)
        .iter()
        .filter_map(|def| {
            let (key, storage) = configs
                .get(&(Kind::Exporter, def.id.clone()))
                .and_then(exporter_storage)?;
            Some((def, "exporter", key, storage, &def.location))
        });
    let processors = settings
        .components(Kind::Processor)
        .iter()
        .filter_map(|def| {
            let storage = configs
                .get(&(Kind::Processor, def.id.clone()))
                .and_then(processor_storage)?;
            let location = def
                .node
                .get("storage")
                .map(|n| &n.location)
                .unwrap_or(&def.location);
            Some((def, "processor", "storage", storage, location))
        });
    let receivers = settings
        .components(Kind::Receiver)
        .iter()
        .filter_map(|def| {
            let storage = match configs.get(&(Kind::Receiver, def.id.clone()))? {
                ComponentConfig::JournaldReceiver(c) => c.storage.as_deref()?,
                ComponentConfig::FilelogReceiver(c) => c.storage.as_deref()?,
                _ => return None,
            };
            let location = def
                .node
                .get("storage")
                .map(|n| &n.location)
                .unwrap_or(&def.location);
            Some((def, "receiver", "storage", storage, location))
        });
    for (def, kind, key, storage, location) in exporters.chain(processors).chain(receivers) {
        let problem = match configs.get(&(Kind::Extension, storage.to_string())) {
            None => format!(
                "{key}: extension {storage:?} is not defined under `extensions`; add it (file_storage with a directory) or remove `storage`"
            ),
            Some(ComponentConfig::FileStorage(_))
                if !settings.service_extensions.iter().any(|r| r.id == storage) =>
            {
                format!(
                    "{key}: extension {storage:?} is not listed in service.extensions; add it there"
                )
            }
            Some(ComponentConfig::FileStorage(_)) => continue,
            Some(_) => format!("{key}: extension {storage:?} is not a file_storage extension"),
        };
        errors.push(ConfigError::at(
            location,
            format!("{kind} {:?}: {problem}", def.id),
        ));
    }
}

/// Security: the `auth:` keys of a component, as (config path, authenticator id, server side).
fn auth_references(config: &ComponentConfig) -> Vec<(&'static [&'static str], &str, bool)> {
    type Keys<'a> = Vec<(
        &'static [&'static str],
        &'a Option<oxcol_core::auth::AuthSettings>,
        bool,
    )>;
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
        ComponentConfig::Zpages(c) => vec![(&["auth"], &c.auth, true)],
        ComponentConfig::OtlpExporter(c) => vec![(&["auth"], &c.auth, false)],
        ComponentConfig::OtlpHttpExporter(c) => vec![(&["auth"], &c.auth, false)],
        ComponentConfig::PrometheusRemoteWriteExporter(c) => vec![(&["auth"], &c.auth, false)],
        ComponentConfig::ZipkinExporter(c) => vec![(&["auth"], &c.auth, false)],
        ComponentConfig::ZipkinReceiver(c) => {
            let mut keys: Keys<'_> = vec![(&["auth"], &c.auth, true)];
            if let Some(http) = c.protocols.as_ref().and_then(|p| p.http.as_ref()) {
                keys.push((&["protocols", "http", "auth"], &http.auth, true));
            }
            keys
        }
        ComponentConfig::JaegerReceiver(c) => {
            let mut keys: Keys<'_> = Vec::new();
            if let Some(grpc) = &c.protocols.grpc {
                keys.push((&["protocols", "grpc", "auth"], &grpc.auth, true));
            }
            if let Some(http) = &c.protocols.thrift_http {
                keys.push((&["protocols", "thrift_http", "auth"], &http.auth, true));
            }
            keys
        }
        _ => Vec::new(),
    };
    keys.into_iter()
        .filter_map(|(path, auth, server)| {
            auth.as_ref()
                .map(|a| (path, a.authenticator.as_str(), server))
        })
        .collect()
}

/// Security: each `auth.authenticator` is a defined `bearertokenauth`/`basicauth`
/// extension listed in service.extensions, usable on that side (reported at the key).
fn check_authenticator_references(
    settings: &Settings,
    configs: &HashMap<(Kind, String), ComponentConfig>,
    errors: &mut Vec<ConfigError>,
) {
    for kind in [Kind::Receiver, Kind::Exporter, Kind::Extension] {
        for def in settings.components(kind) {
            let Some(config) = configs.get(&(kind, def.id.clone())) else {
                continue;
            };
            for (path, id, server) in auth_references(config) {
                let mut node = Some(&def.node);
                for key in path {
                    node = node.and_then(|n| n.get(key));
                }
                let location = node
                    .and_then(|n| n.get("authenticator"))
                    .map(|n| &n.location)
                    .unwrap_or(&def.location);
                let problem = match configs.get(&(Kind::Extension, id.to_string())) {
                    None => Some(format!(
                        "{}.authenticator {id:?} is not defined under `extensions`; add a bearertokenauth or basicauth extension with that id",
                        path.join(".")
                    )),
                    Some(ComponentConfig::BearerTokenAuth(_) | ComponentConfig::BasicAuth(_))
                        if !settings.service_extensions.iter().any(|r| r.id == id) =>
                    {
                        Some(format!(
                            "{}.authenticator {id:?} is not listed in service.extensions; add it there",
                            path.join(".")
                        ))
                    }
                    Some(ComponentConfig::BasicAuth(b)) if server && b.htpasswd.is_none() => {
                        Some(format!(
                            "{}.authenticator {id:?} has no htpasswd, so it cannot check requests",
                            path.join(".")
                        ))
                    }
                    Some(ComponentConfig::BasicAuth(b)) if !server && b.client_auth.is_none() => {
                        Some(format!(
                            "{}.authenticator {id:?} has no client_auth, so it cannot send credentials",
                            path.join(".")
                        ))
                    }
                    Some(ComponentConfig::HeadersSetter(_)) if server => Some(format!(
                        "{}.authenticator {id:?} is a headers_setter, which only sets headers on exporters; it cannot check requests",
                        path.join(".")
                    )),
                    Some(ComponentConfig::HeadersSetter(_))
                        if !settings.service_extensions.iter().any(|r| r.id == id) =>
                    {
                        Some(format!(
                            "{}.authenticator {id:?} is not listed in service.extensions; add it there",
                            path.join(".")
                        ))
                    }
                    Some(ComponentConfig::HeadersSetter(_))
                        if !kind_sends_setter_headers(config) =>
                    {
                        Some(format!(
                            "{}.authenticator {id:?}: headers_setter works on the otlp and otlphttp exporters only in oxcol",
                            path.join(".")
                        ))
                    }
                    Some(ComponentConfig::HeadersSetter(_)) => None,
                    Some(ComponentConfig::BearerTokenAuth(_) | ComponentConfig::BasicAuth(_)) => {
                        None
                    }
                    Some(_) => Some(format!(
                        "{}.authenticator {id:?} is not an authenticator (use a bearertokenauth or basicauth extension)",
                        path.join(".")
                    )),
                };
                if let Some(problem) = problem {
                    errors.push(ConfigError::at(
                        location,
                        format!("{} {:?}: {problem}", kind.name(), def.id),
                    ));
                }
            }
        }
    }
}

/// Exporters that apply a `headers_setter` authenticator (its headers join their own).
fn kind_sends_setter_headers(config: &ComponentConfig) -> bool {
    matches!(
        config,
        ComponentConfig::OtlpExporter(_)
            | ComponentConfig::OtlpHttpExporter(_)
            | ComponentConfig::ZipkinExporter(_)
    )
}

/// The `headers_setter` authenticator of an `otlp`/`otlphttp` exporter, if it names one,
/// as headers computed per batch from its client metadata.
fn context_headers(
    configs: &HashMap<(Kind, String), ComponentConfig>,
    id: &str,
    auth: &Option<oxcol_core::auth::AuthSettings>,
) -> Option<oxcol_core::client::ContextHeaders> {
    let Some(ComponentConfig::HeadersSetter(setter)) = auth
        .as_ref()
        .and_then(|a| configs.get(&(Kind::Extension, a.authenticator.clone())))
    else {
        return None;
    };
    let lookups = setter.lookups();
    if !lookups.is_empty() {
        tracing::warn!(exporter = id, keys = ?lookups, "headers_setter: oxcol does not carry auth attributes to exporters, so from_attribute headers always get their default_value (or are not sent)");
    }
    Some(setter.context_headers())
}

/// An exporter's `headers:` with those of its `headers_setter` authenticator, if it names
/// one (the exporter's own win on the same name). For exporters that send fixed headers
/// (zipkin, loadbalancing): `from_context` finds nothing there.
fn setter_headers(
    configs: &HashMap<(Kind, String), ComponentConfig>,
    id: &str,
    auth: &Option<oxcol_core::auth::AuthSettings>,
    headers: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    let Some(ComponentConfig::HeadersSetter(setter)) = auth
        .as_ref()
        .and_then(|a| configs.get(&(Kind::Extension, a.authenticator.clone())))
    else {
        return headers.clone();
    };
    let lookups: Vec<String> = setter
        .headers
        .iter()
        .filter_map(|h| h.from_context.clone().or_else(|| h.from_attribute.clone()))
        .collect();
    if !lookups.is_empty() {
        tracing::warn!(exporter = id, keys = ?lookups, "headers_setter: this exporter sends fixed headers, so from_context/from_attribute headers always get their default_value (or are not sent); the otlp and otlphttp exporters read from_context per batch");
    }
    setter.merged_into(headers)
}

/// Security: the client credentials of an exporter's `auth:` (validated in decode_all).
fn client_credentials(
    configs: &HashMap<(Kind, String), ComponentConfig>,
    auth: &Option<oxcol_core::auth::AuthSettings>,
) -> Result<Option<oxcol_core::auth::ClientCredentials>, String> {
    let Some(auth) = auth else { return Ok(None) };
    let credentials = match configs.get(&(Kind::Extension, auth.authenticator.clone())) {
        Some(ComponentConfig::BearerTokenAuth(c)) => c.client_credentials(),
        Some(ComponentConfig::BasicAuth(c)) => c.client_credentials(),
        // Its headers join the exporter's `headers:` (setter_headers).
        Some(ComponentConfig::HeadersSetter(_)) => return Ok(None),
        _ => Err("is not an authenticator extension".to_string()),
    };
    credentials
        .map(Some)
        .map_err(|e| format!("auth.authenticator {:?}: {e}", auth.authenticator))
}

/// Stateful processors: the `storage` key (checkpoints) of those that have one.
fn processor_storage(config: &ComponentConfig) -> Option<&str> {
    match config {
        ComponentConfig::Ewma(c) => c.storage.as_deref(),
        ComponentConfig::Burnrate(c) => c.storage.as_deref(),
        _ => None,
    }
}

/// The settings of the `file_storage` extension `id`, when it is one.
fn file_storage(
    configs: &HashMap<(Kind, String), ComponentConfig>,
    id: &str,
) -> Option<oxcol_core::storage::Storage> {
    let Some(ComponentConfig::FileStorage(c)) = configs.get(&(Kind::Extension, id.to_string()))
    else {
        return None;
    };
    Some(oxcol_core::storage::Storage {
        extension: id.to_string(),
        directory: c.directory.clone().unwrap_or_default().into(),
        fsync: c.fsync,
        create_directory: c.create_directory,
        directory_permissions: u32::from_str_radix(
            c.directory_permissions.trim_start_matches("0o"),
            8,
        )
        .unwrap_or(0o750),
        lock_timeout: c.timeout.get(),
    })
}

/// The checkpoint settings of a processor's `storage` (checked in decode_all).
fn checkpoint_storage(
    configs: &HashMap<(Kind, String), ComponentConfig>,
    storage: Option<&str>,
) -> Option<oxcol_core::storage::Storage> {
    file_storage(configs, storage?)
}

/// A receiver's `storage`: the `file_storage` extension it names, which must be defined and
/// listed in `service.extensions` (the error says so, naming the receiver).
fn receiver_storage(
    settings: &Settings,
    configs: &HashMap<(Kind, String), ComponentConfig>,
    receiver: &str,
    storage: Option<&str>,
) -> Result<Option<oxcol_core::storage::Storage>, String> {
    let Some(id) = storage else {
        return Ok(None);
    };
    match file_storage(configs, id) {
        Some(resolved) if settings.service_extensions.iter().any(|r| r.id == id) => {
            Ok(Some(resolved))
        }
        _ => Err(format!(
            "receiver {receiver:?}: storage {id:?} is not a file_storage extension listed in service.extensions; define it under extensions, list it there, or remove storage"
        )),
    }
}

/// Pipelines (and the timers of the connectors they feed) that stop together: level 0 are
/// the pipelines no connector feeds; level n+1 those fed by connectors of level-n pipelines.
#[derive(Default)]
struct StopLevel {
    pipelines_stop: CancellationToken,
    /// Each returns its pipeline's processors that a reload may carry over.
    pipeline_tasks: Vec<JoinHandle<KeptStages>>,
    /// Timers of the connectors fed by this level's pipelines; cancelled once those
    /// pipelines stopped, after a final flush.
    connectors_stop: CancellationToken,
    connector_tasks: Vec<JoinHandle<()>>,
}

pub struct Running {
    receivers_stop: CancellationToken,
    servers_stop: CancellationToken,
    /// Running receivers by id.
    receivers: HashMap<String, KeptReceiver>,
    levels: Vec<StopLevel>,
    server_tasks: Vec<JoinHandle<()>>,
    /// Exporter queues by (id, signal), with the fingerprint of the config they were built from.
    exporters: KeptExporters,
    /// Per pipeline, its processors (id, fingerprint if stateful), for a reload.
    stateful: Vec<StatefulStages>,
    healthy: Arc<AtomicBool>,
    /// The memory picture (kept across reloads).
    picture: crate::picture::PictureHandle,
    /// Fires if a pipeline task ends on its own (a bug or a panic): the service is then
    /// unhealthy.
    pub pipeline_died: CancellationToken,
}

fn build_exporter(
    id: &str,
    config: &ComponentConfig,
    configs: &HashMap<(Kind, String), ComponentConfig>,
    picture: &crate::picture::PictureHandle,
    signal: Signal,
    registry: &Arc<Registry>,
) -> Result<
    (
        Arc<dyn Exporter>,
        oxcol_exporters::queue::QueueConfig,
        oxcol_exporters::queue::RetryConfig,
    ),
    String,
> {
    // Only the loadbalancing exporter uses the signal, and a lean build may leave it out.
    let _ = signal;
    match config {
        ComponentConfig::OtlpExporter(c) => {
            // A headers_setter's headers are computed per batch (from_context).
            Ok((
                Arc::new(
                    otlp::OtlpGrpcExporter::new(c)?
                        .with_credentials(client_credentials(configs, &c.auth)?)?
                        .with_context_headers(context_headers(configs, id, &c.auth)),
                ),
                c.sending_queue.clone(),
                c.retry_on_failure.clone(),
            ))
        }
        ComponentConfig::OtlpHttpExporter(c) => {
            // A headers_setter's headers are computed per batch (from_context).
            Ok((
                Arc::new(
                    otlphttp::OtlpHttpExporter::new(c)?
                        .with_credentials(client_credentials(configs, &c.auth)?)
                        .with_context_headers(context_headers(configs, id, &c.auth)),
                ),
                c.sending_queue.clone(),
                c.retry_on_failure.clone(),
            ))
        }
        ComponentConfig::DebugExporter(c) => {
            // Printing never fails; a small queue keeps it off the pipeline's path.
            let queue = oxcol_exporters::queue::QueueConfig {
                num_consumers: 1,
                ..Default::default()
            };
            Ok((
                Arc::new(debug::DebugExporter::new(id, c)),
                queue,
                Default::default(),
            ))
        }
        ComponentConfig::FileExporter(c) => Ok((
            Arc::new(oxcol_exporters::file::FileExporter::new(id, c)?),
            // One consumer keeps the requests in order in the file. A failed write is
            // retried (a full disk may clear); a request that can never fit is not.
            oxcol_exporters::queue::QueueConfig {
                num_consumers: 1,
                ..Default::default()
            },
            Default::default(),
        )),
        ComponentConfig::PrometheusRemoteWriteExporter(c) => Ok((
            Arc::new(
                oxcol_exporters::prometheusremotewrite::RemoteWriteExporter::new(id, c)?
                    .with_credentials(client_credentials(configs, &c.auth)?)
                    .with_telemetry(registry),
            ),
            c.queue_config(),
            c.retry_on_failure.clone(),
        )),
        ComponentConfig::PrometheusExporter(c) => Ok((
            Arc::new(oxcol_exporters::prometheus::PrometheusExporter::new(id, c)?),
            oxcol_exporters::queue::QueueConfig {
                num_consumers: 1,
                ..Default::default()
            },
            Default::default(),
        )),
        ComponentConfig::ZipkinExporter(c) => {
            let c = &oxcol_exporters::zipkin::Config {
                headers: setter_headers(configs, id, &c.auth, &c.headers),
                ..c.clone()
            };
            Ok((
                Arc::new(
                    oxcol_exporters::zipkin::ZipkinExporter::new(c)?
                        .with_credentials(client_credentials(configs, &c.auth)?),
                ),
                c.sending_queue.clone(),
                c.retry_on_failure.clone(),
            ))
        }
        ComponentConfig::MemoryPicture(c) => Ok((
            Arc::new(crate::picture::exporter::MemoryPictureExporter::new(
                id,
                c,
                picture.clone(),
            )),
            oxcol_exporters::queue::QueueConfig {
                num_consumers: 1,
                ..Default::default()
            },
            Default::default(),
        )),
        #[cfg(feature = "kafka")]
        ComponentConfig::KafkaExporter(c) => Ok((
            Arc::new(oxcol_exporters::kafka::KafkaExporter::new(id, c)?),
            c.sending_queue.clone(),
            c.retry_on_failure.clone(),
        )),
        #[cfg(feature = "loadbalancing")]
        ComponentConfig::LoadBalancingExporter(c) => {
            // protocol.otlp is applied to each backend, with auth and headers_setter as for
            // an otlp exporter; its queue is the one in front of the ring.
            let template = &otlp::Config {
                headers: setter_headers(
                    configs,
                    id,
                    &c.protocol.otlp.auth,
                    &c.protocol.otlp.headers,
                ),
                ..c.protocol.otlp.clone()
            };
            let credentials = client_credentials(configs, &template.auth)?;
            let backends = oxcol_exporters::loadbalancing::otlp_backends(template, credentials);
            let exporter = oxcol_exporters::loadbalancing::LoadBalancer::start(
                id,
                signal,
                c,
                backends,
                None,
                Arc::clone(registry),
            )?;
            let (queue, retry) = c.queue_and_retry();
            Ok((Arc::new(exporter), queue, retry))
        }
        // WIRING: one arm per exporter type.
        _ => Err(format!("{id} is not an exporter")),
    }
}

/// The grouping for the queue of `exporter` and `signal`: the batch processor of the
/// first pipeline of that signal that sends to it and has one. Pipelines that disagree
/// are reported once.
fn batching_for(
    settings: &Settings,
    configs: &HashMap<(Kind, String), ComponentConfig>,
    exporter: &str,
    signal: Signal,
) -> Option<oxcol_core::BatchSettings> {
    let mut chosen: Option<oxcol_core::BatchSettings> = None;
    for pipeline in settings
        .pipelines
        .iter()
        .filter(|p| p.signal == signal && p.exporters.iter().any(|e| e.id == exporter))
    {
        let found = pipeline.processors.iter().find_map(|r| {
            match &configs[&(Kind::Processor, r.id.clone())] {
                ComponentConfig::Batch(c) => Some(c.settings()),
                _ => None,
            }
        });
        match (&chosen, found) {
            (None, found) => chosen = found,
            (Some(a), Some(b)) if *a != b => {
                tracing::warn!(exporter, %signal, "pipelines sending to this exporter use different batch settings; using the first pipeline's");
            }
            _ => {}
        }
    }
    chosen
}

/// Exporter queues that a reload carries over, by (id, signal), each with the fingerprint
/// of the config it was built from ([`exporter_fingerprints`]).
pub type KeptExporters = HashMap<(String, Signal), (String, Arc<QueuedExporter>)>;

/// Stateful processors ([`processor_fingerprint`] says which) that a reload carries over with their state, by
/// (pipeline id, processor id), each with its fingerprint ([`processor_fingerprint`]).
pub type KeptStages = HashMap<(String, String), (String, Stage)>;

/// The processors of one running pipeline, in order: (id, fingerprint of the stateful
/// ones), and the indexes a reload carries over (they get no `shutdown()`).
struct StatefulStages {
    pipeline: String,
    stages: Vec<(String, Option<String>)>,
    carried: Arc<std::sync::Mutex<std::collections::HashSet<usize>>>,
}

/// The fingerprints of the stateful processors of `settings`, by (pipeline id, processor id).
pub fn stage_fingerprints(
    settings: &Settings,
    configs: &HashMap<(Kind, String), ComponentConfig>,
) -> HashMap<(String, String), String> {
    let mut out = HashMap::new();
    for pipeline in &settings.pipelines {
        for reference in &pipeline.processors {
            let Some(config) = configs.get(&(Kind::Processor, reference.id.clone())) else {
                continue;
            };
            if let Some(fingerprint) =
                processor_fingerprint(settings, config, &reference.id, pipeline.signal)
            {
                out.insert((pipeline.id.clone(), reference.id.clone()), fingerprint);
            }
        }
    }
    out
}

/// A running receiver: its own stop token, tasks, and the consumers handle a reload
/// re-points at the new pipelines (so an unchanged receiver keeps its port and connections).
pub struct KeptReceiver {
    fingerprint: String,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    consumers: Consumers,
}

impl Drop for KeptReceiver {
    /// A receiver nobody runs any more (a failed start dropped it) stops and frees its port.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The fingerprint of each receiver a pipeline uses: its resolved YAML, the YAML of its
/// authenticator extensions and the signals it feeds (which services it offers).
pub fn receiver_fingerprints(
    settings: &Settings,
    configs: &HashMap<(Kind, String), ComponentConfig>,
) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for def in &settings.receivers {
        let mut signals: Vec<String> = settings
            .pipelines
            .iter()
            .filter(|p| p.receivers.iter().any(|r| r.id == def.id))
            .map(|p| p.signal.to_string())
            .collect();
        if signals.is_empty() {
            continue;
        }
        signals.sort();
        signals.dedup();
        let mut fingerprint = format!(
            "{}\n--- signals {signals:?}",
            oxcol_config::to_yaml(&def.node)
        );
        if let Some(config) = configs.get(&(Kind::Receiver, def.id.clone())) {
            for (_, extension, _) in auth_references(config) {
                if let Some(ext) = settings.find(Kind::Extension, extension) {
                    fingerprint.push_str(&format!(
                        "\n--- extension {extension}\n{}",
                        oxcol_config::to_yaml(&ext.node)
                    ));
                }
            }
        }
        out.insert(def.id.clone(), fingerprint);
    }
    out
}

/// What a reload keeps of the running service: the parts whose fingerprints are equal in
/// the new config.
#[derive(Default)]
pub struct Keep {
    pub exporters: std::collections::HashSet<(String, Signal)>,
    pub stages: HashMap<(String, String), String>,
    pub receivers: std::collections::HashSet<String>,
}

/// What a reload hands from the stopped service to the next [`start`].
#[derive(Default)]
pub struct Kept {
    pub exporters: KeptExporters,
    pub stages: KeptStages,
    pub receivers: HashMap<String, KeptReceiver>,
    /// The memory picture, so its histories survive a reload.
    pub picture: Option<crate::picture::PictureHandle>,
}

/// The fingerprint of a processor whose state a reload keeps (None for the others): its
/// resolved YAML, its pipeline's signal and its `storage` extension's YAML. These are the
/// processors that hold state between batches and run only from their pipeline's task
/// (batches and ticks, no task of their own), so moving one into the new pipeline carries
/// all of it: ewma/burnrate series, tail_sampling's pending traces and decisions, the
/// running totals of cumulativetodelta/deltatocumulative, gofit's open findings.
fn processor_fingerprint(
    settings: &Settings,
    config: &ComponentConfig,
    id: &str,
    signal: Signal,
) -> Option<String> {
    let stateful = match config {
        ComponentConfig::Ewma(_)
        | ComponentConfig::Burnrate(_)
        | ComponentConfig::CumulativeToDelta(_)
        | ComponentConfig::DeltaToCumulative(_)
        | ComponentConfig::Gofit(_) => true,
        #[cfg(feature = "tail_sampling")]
        ComponentConfig::TailSampling(_) => true,
        _ => false,
    };
    if !stateful {
        return None;
    }
    let mut fingerprint = format!(
        "{}\n--- signal {signal}",
        oxcol_config::to_yaml(&settings.find(Kind::Processor, id)?.node)
    );
    if let Some(ext) =
        processor_storage(config).and_then(|storage| settings.find(Kind::Extension, storage))
    {
        fingerprint.push_str(&format!(
            "\n--- storage\n{}",
            oxcol_config::to_yaml(&ext.node)
        ));
    }
    Some(fingerprint)
}

/// What an exporter queue is built from, per (exporter id, signal) in use: the exporter's
/// resolved YAML, the YAML of the extensions it depends on (its `auth.authenticator`, its
/// queue `storage`) and the grouping of the batch processor feeding it. Equal fingerprints
/// mean a reload can keep the running queue (contents, disk queue, connections).
pub fn exporter_fingerprints(
    settings: &Settings,
    configs: &HashMap<(Kind, String), ComponentConfig>,
) -> HashMap<(String, Signal), String> {
    let mut out = HashMap::new();
    for pipeline in &settings.pipelines {
        for reference in &pipeline.exporters {
            let (Some(def), Some(config)) = (
                settings.find(Kind::Exporter, &reference.id),
                configs.get(&(Kind::Exporter, reference.id.clone())),
            ) else {
                continue;
            };
            let mut fingerprint = oxcol_config::to_yaml(&def.node);
            let auth = auth_references(config)
                .into_iter()
                .map(|(_, id, _)| id.to_string());
            for extension in auth.chain(exporter_storage(config).map(|(_, id)| id.to_string())) {
                if let Some(ext) = settings.find(Kind::Extension, &extension) {
                    fingerprint.push_str(&format!(
                        "\n--- extension {extension}\n{}",
                        oxcol_config::to_yaml(&ext.node)
                    ));
                }
            }
            fingerprint.push_str(&format!(
                "\n--- batching {:?}",
                batching_for(settings, configs, &reference.id, pipeline.signal)
            ));
            out.insert((reference.id.clone(), pipeline.signal), fingerprint);
        }
    }
    out
}

/// A processor as a pipeline stage holds it: boxed, with its construction error as text.
fn boxed<P: Processor + 'static, E: std::fmt::Display>(
    built: Result<P, E>,
) -> Result<Box<dyn Processor>, String> {
    built
        .map(|processor| Box::new(processor) as Box<dyn Processor>)
        .map_err(|e| e.to_string())
}

/// Builds and starts everything. Exporter queues in `kept` whose fingerprint equals the
/// new config's are used as they are instead of being built again (a reload). Errors name
/// the component.
pub async fn start(
    settings: &Settings,
    configs: &HashMap<(Kind, String), ComponentConfig>,
    registry: Arc<Registry>,
    kept: &mut Kept,
) -> Result<Running, String> {
    let healthy = Arc::new(AtomicBool::new(false));
    let receivers_stop = CancellationToken::new();
    let servers_stop = CancellationToken::new();
    let pipeline_died = CancellationToken::new();
    // WIRING: picture. One memory picture per process, carried across reloads in `Kept`;
    // pipelines get its tap only when something reads it (zpages, memory_picture).
    let picture = kept
        .picture
        .get_or_insert_with(crate::picture::PictureHandle::default)
        .clone();
    picture.configure(settings, configs);
    let picture_tap = crate::picture::wanted(settings, configs).then(|| picture.clone());

    // Exporters: one queue per (id, signal) in use, grouping as the batch processor of the
    // pipelines feeding it says.
    let mut queues: KeptExporters = HashMap::new();
    let fingerprints = exporter_fingerprints(settings, configs);
    for pipeline in &settings.pipelines {
        for reference in &pipeline.exporters {
            let key = (reference.id.clone(), pipeline.signal);
            if queues.contains_key(&key) || settings.find(Kind::Connector, &reference.id).is_some()
            {
                continue;
            }
            let fingerprint = fingerprints.get(&key).cloned().unwrap_or_default();
            if let Some((old, queue)) = kept.exporters.get(&key) {
                if *old == fingerprint {
                    queues.insert(key, (fingerprint, Arc::clone(queue)));
                    continue;
                }
            }
            let config = &configs[&(Kind::Exporter, reference.id.clone())];
            let (exporter, queue, retry) = build_exporter(
                &reference.id,
                config,
                configs,
                &picture,
                pipeline.signal,
                &registry,
            )
            .map_err(|e| format!("exporter {:?}: {e}", reference.id))?;
            let counters = ExporterCounters::new(&registry, &reference.id, pipeline.signal);
            // The exporter's own `sending_queue.batch` wins over a batch processor's.
            let batching = queue
                .batching()
                .or_else(|| batching_for(settings, configs, &reference.id, pipeline.signal));
            // Disk queue: `sending_queue.storage: file_storage/NAME` resolves to that
            // extension's config (checked in decode_all); the queue lives in its directory.
            // prometheusremotewrite's `wal.directory` carries its own settings.
            let storage = match queue
                .storage
                .as_ref()
                .and_then(|s| configs.get(&(Kind::Extension, s.clone())))
            {
                Some(ComponentConfig::FileStorage(storage)) => Some(storage.clone()),
                _ => exporter_wal(config),
            };
            let queued = match storage {
                Some(storage) => QueuedExporter::start_durable(
                    &reference.id,
                    pipeline.signal,
                    exporter,
                    &queue,
                    &retry,
                    batching,
                    counters,
                    &registry,
                    &storage,
                )
                .map_err(|e| format!("exporter {:?}: {e}", reference.id))?,
                None => QueuedExporter::start(
                    &reference.id,
                    pipeline.signal,
                    exporter,
                    &queue,
                    &retry,
                    batching,
                    counters,
                ),
            };
            queues.insert(key, (fingerprint, Arc::new(queued)));
        }
    }

    // Pipelines, and the consumers each receiver gets. Pipelines fed by connectors are
    // built first, so a connector's downstream inputs exist when its upstream is built.
    let mut consumers: HashMap<String, Consumers> = HashMap::new();
    let pipeline_levels = pipeline_levels(settings);
    let mut levels: Vec<StopLevel> = Vec::new();
    levels.resize_with(
        pipeline_levels.iter().max().map_or(1, |l| l + 1),
        StopLevel::default,
    );
    let mut inputs: HashMap<usize, PipelineInput> = HashMap::new();
    let mut nodes: HashMap<(String, Signal, Signal), Arc<ConnectorNode>> = HashMap::new();
    let instance_id = collector_instance_id(settings);
    let mut limiters: HashMap<String, Arc<MemoryLimiter>> = HashMap::new();
    let mut stateful: Vec<StatefulStages> = Vec::new();
    let mut build_order: Vec<usize> = (0..settings.pipelines.len()).collect();
    build_order.sort_by_key(|index| std::cmp::Reverse(pipeline_levels[*index]));
    for index in build_order {
        let pipeline = &settings.pipelines[index];
        let (sender, input) = mpsc::channel(PIPELINE_INPUT_CAPACITY);
        let mut processors = Vec::new();
        let mut stage_ids = Vec::new();
        let mut admissions: Vec<Arc<dyn oxcol_core::Admission>> = Vec::new();
        for reference in &pipeline.processors {
            let counters =
                ProcessorCounters::new(&registry, &reference.id, &pipeline.id, pipeline.signal);
            // Reload: an unchanged stateful processor of the same pipeline goes on with its state.
            let fingerprint = processor_fingerprint(
                settings,
                &configs[&(Kind::Processor, reference.id.clone())],
                &reference.id,
                pipeline.signal,
            );
            let stage_key = (pipeline.id.clone(), reference.id.clone());
            if let Some(fingerprint) = &fingerprint {
                if kept
                    .stages
                    .get(&stage_key)
                    .is_some_and(|(old, _)| old == fingerprint)
                {
                    if let Some((_, stage)) = kept.stages.remove(&stage_key) {
                        tracing::info!(pipeline = %pipeline.id, processor = %reference.id, "processor unchanged; its state is kept");
                        processors.push(stage);
                        stage_ids.push((reference.id.clone(), Some(fingerprint.clone())));
                        continue;
                    }
                }
            }
            let id = reference.id.as_str();
            let built: Result<Box<dyn Processor>, String> = match &configs
                [&(Kind::Processor, reference.id.clone())]
            {
                // Applied by the exporter queues (batching_for).
                ComponentConfig::Batch(_) => continue,
                ComponentConfig::MemoryLimiter(c) => {
                    // One limiter per id, shared by every pipeline that names it.
                    let limiter = limiters
                        .entry(reference.id.clone())
                        .or_insert_with(|| MemoryLimiter::new(id, c))
                        .clone();
                    admissions.push(limiter.clone());
                    Ok(Box::new(MemoryLimiterProcessor(limiter)))
                }
                ComponentConfig::Relabel(c) => {
                    boxed(oxcol_processors::relabel::RelabelProcessor::new(
                        id,
                        c,
                        oxcol_processors::relabel::RelabelCounters::new(&registry, id),
                    ))
                }
                ComponentConfig::Units(c) => boxed(oxcol_processors::units::UnitsProcessor::new(
                    id,
                    c,
                    Some(Arc::clone(&registry)),
                )),
                // Checkpoints: restore now, write from the pipeline's ticks and at shutdown.
                ComponentConfig::Ewma(c) => {
                    oxcol_processors::ewma::EwmaProcessor::new(id, c, Some(&registry)).and_then(
                        |processor| match checkpoint_storage(configs, c.storage.as_deref()) {
                            Some(storage) => boxed(processor.with_storage(
                                &storage,
                                &pipeline.id,
                                Some(&registry),
                            )),
                            None => boxed(Ok::<_, String>(processor)),
                        },
                    )
                }
                ComponentConfig::Burnrate(c) => {
                    oxcol_processors::burnrate::BurnrateProcessor::new(id, c, Some(&registry))
                        .and_then(|processor| {
                            match checkpoint_storage(configs, c.storage.as_deref()) {
                                Some(storage) => boxed(processor.with_storage(
                                    &storage,
                                    &pipeline.id,
                                    Some(&registry),
                                )),
                                None => boxed(Ok::<_, String>(processor)),
                            }
                        })
                }
                #[cfg(feature = "tail_sampling")]
                ComponentConfig::TailSampling(c) => {
                    boxed(oxcol_processors::tail_sampling::TailSamplingProcessor::new(
                        id,
                        c,
                        Some(&registry),
                    ))
                }
                ComponentConfig::Attributes(c) => boxed(
                    oxcol_processors::attributes::AttributesProcessor::new(id, c, pipeline.signal),
                ),
                ComponentConfig::Resource(c) => {
                    boxed(oxcol_processors::resource::ResourceProcessor::new(id, c))
                }
                ComponentConfig::GroupByAttrs(c) => {
                    boxed(oxcol_processors::groupbyattrs::GroupByAttrsProcessor::new(
                        id,
                        c,
                        Some(Arc::clone(&registry)),
                    ))
                }
                ComponentConfig::Redaction(c) => {
                    boxed(oxcol_processors::redaction::RedactionProcessor::new(id, c))
                }
                ComponentConfig::ProbabilisticSampler(c) => boxed(
                    oxcol_processors::probabilistic_sampler::ProbabilisticSampler::new(
                        id,
                        c,
                        Some(Arc::clone(&registry)),
                    ),
                ),
                // Detection runs here, once per id (bounded by `timeout`), shared by every pipeline.
                ComponentConfig::ResourceDetection(c) => boxed(
                    oxcol_processors::resourcedetection::ResourceDetectionProcessor::new(
                        id,
                        c,
                        Some(&registry),
                    ),
                ),
                ComponentConfig::CumulativeToDelta(c) => boxed(
                    oxcol_processors::cumulativetodelta::CumulativeToDeltaProcessor::new(
                        id,
                        c,
                        Some(&registry),
                    ),
                ),
                ComponentConfig::DeltaToCumulative(c) => boxed(
                    oxcol_processors::deltatocumulative::DeltaToCumulativeProcessor::new(
                        id,
                        c,
                        Some(&registry),
                    ),
                ),
                ComponentConfig::Transform(c) => {
                    boxed(oxcol_processors::transform::TransformProcessor::new(id, c))
                }
                ComponentConfig::Filter(c) => {
                    boxed(oxcol_processors::filter::FilterProcessor::new(id, c))
                }
                ComponentConfig::Gofit(c) => boxed(oxcol_processors::gofit::GofitProcessor::new(
                    id,
                    c,
                    Some(&registry),
                )),
                #[cfg(feature = "k8sattributes")]
                ComponentConfig::K8sAttributes(c) => boxed(
                    oxcol_processors::k8sattributes::K8sAttributesProcessor::new(
                        id,
                        c,
                        Some(&registry),
                    ),
                ),
                // WIRING: one arm per processor type, building a Box<dyn Processor> (boxed(...)).
                _ => return Err(format!("processor {id:?} cannot be built")),
            };
            let processor = built.map_err(|e| format!("processor {id:?}: {e}"))?;
            let stage = Stage {
                processor,
                counters,
            };
            processors.push(stage);
            stage_ids.push((reference.id.clone(), fingerprint));
        }
        let mut exporters = Vec::new();
        for reference in &pipeline.exporters {
            if let Some(def) = settings.find(Kind::Connector, &reference.id) {
                // One connector instance per (id, from-signal, to-signal), shared by the
                // upstream pipelines of that signal, as in the Collector.
                for (_, downstream) in crate::settings::connector_edges(settings, pipeline)
                    .into_iter()
                    .filter(|(via, _)| via.id == def.id)
                {
                    let to = settings.pipelines[downstream].signal;
                    let key = (def.id.clone(), pipeline.signal, to);
                    if let Some(node) = nodes.get(&key) {
                        if !exporters
                            .iter()
                            .any(|d| matches!(d, Destination::Connector(n) if Arc::ptr_eq(n, node)))
                        {
                            exporters.push(Destination::Connector(Arc::clone(node)));
                        }
                        continue;
                    }
                    let connector = build_connector(
                        def,
                        &configs[&(Kind::Connector, def.id.clone())],
                        pipeline.signal,
                        &instance_id,
                        &registry,
                    )
                    .map_err(|e| format!("connector {:?}: {e}", def.id))?;
                    let targets = settings
                        .pipelines
                        .iter()
                        .enumerate()
                        .filter(|(_, p)| {
                            p.signal == to && p.receivers.iter().any(|r| r.id == def.id)
                        })
                        .filter_map(|(i, p)| {
                            let mut one = Consumers::new();
                            one.add(to, inputs.get(&i)?.clone());
                            Some((p.id.clone(), one))
                        })
                        .collect();
                    let node = Arc::new(ConnectorNode::new(
                        &def.id,
                        pipeline.signal,
                        to,
                        connector,
                        targets,
                        &registry,
                    ));
                    if let Some(every) = node.tick_interval() {
                        let level = &mut levels[pipeline_levels[index]];
                        level.connector_tasks.push(spawn_connector_timer(
                            Arc::clone(&node),
                            every,
                            level.connectors_stop.clone(),
                        ));
                    }
                    nodes.insert(key, Arc::clone(&node));
                    exporters.push(Destination::Connector(node));
                }
            } else {
                exporters.push(Destination::Queue(Arc::clone(
                    &queues[&(reference.id.clone(), pipeline.signal)].1,
                )));
            }
        }
        let running = Pipeline {
            id: pipeline.id.clone(),
            input,
            processors,
            exporters,
            tap: picture_tap.clone(),
        };
        let carried = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        stateful.push(StatefulStages {
            pipeline: pipeline.id.clone(),
            stages: stage_ids.clone(),
            carried: Arc::clone(&carried),
        });
        let level = &mut levels[pipeline_levels[index]];
        let stop = level.pipelines_stop.clone();
        let receivers_stopped = receivers_stop.clone();
        let died = pipeline_died.clone();
        let id = pipeline.id.clone();
        let carried_for_task = carried;
        level.pipeline_tasks.push(tokio::spawn(async move {
            let stages = running
                .run(stop.clone(), Arc::clone(&carried_for_task))
                .await;
            // A pipeline also ends when every receiver feeding it has stopped.
            if !stop.is_cancelled() && !receivers_stopped.is_cancelled() {
                tracing::error!(pipeline = %id, "pipeline stopped unexpectedly");
                died.cancel();
            }
            // The ones carried over, for a reload.
            let carried = carried_for_task
                .lock()
                .map(|c| c.clone())
                .unwrap_or_else(|p| p.into_inner().clone());
            stage_ids
                .into_iter()
                .zip(stages)
                .enumerate()
                .filter(|(index, _)| carried.contains(index))
                .filter_map(|(_, ((processor, fingerprint), stage))| {
                    Some(((id.clone(), processor), (fingerprint?, stage)))
                })
                .collect()
        }));
        let pipeline_input = PipelineInput {
            pipeline: pipeline.id.clone(),
            sender,
            admissions,
        };
        for reference in pipeline
            .receivers
            .iter()
            .filter(|r| settings.find(Kind::Receiver, &r.id).is_some())
        {
            consumers
                .entry(reference.id.clone())
                .or_default()
                .add(pipeline.signal, pipeline_input.clone());
        }
        inputs.insert(index, pipeline_input);
    }
    for def in &settings.connectors {
        if !nodes.keys().any(|(id, _, _)| *id == def.id) {
            tracing::warn!(connector = %def.id, "connector is defined but used by no pipeline; not started");
        }
    }

    // Security: server authenticators of the bearertokenauth/basicauth extensions in
    // service.extensions, by id (files are read here; errors name the extension).
    let mut authenticators: HashMap<String, Arc<oxcol_core::auth::ServerAuthenticator>> =
        HashMap::new();
    for reference in &settings.service_extensions {
        let built = match &configs[&(Kind::Extension, reference.id.clone())] {
            ComponentConfig::BearerTokenAuth(c) => Some(c.server_authenticator()),
            ComponentConfig::BasicAuth(c) if c.htpasswd.is_some() => Some(c.server_authenticator()),
            _ => None,
        };
        if let Some(built) = built {
            authenticators.insert(
                reference.id.clone(),
                Arc::new(built.map_err(|e| format!("extension {:?}: {e}", reference.id))?),
            );
        }
    }

    // Extensions and self-telemetry.
    let mut server_tasks = Vec::new();
    for reference in &settings.service_extensions {
        if let ComponentConfig::HealthCheck(c) = &configs[&(Kind::Extension, reference.id.clone())]
        {
            let auth = c
                .auth
                .as_ref()
                .and_then(|a| authenticators.get(&a.authenticator).cloned());
            let (_, task) = health_check::serve(
                &reference.id,
                c,
                Arc::clone(&healthy),
                auth,
                &registry,
                servers_stop.clone(),
            )
            .await?;
            server_tasks.push(task);
        }
        if let ComponentConfig::PprofExtension(c) =
            &configs[&(Kind::Extension, reference.id.clone())]
        {
            let (_, tasks) =
                crate::extensions::pprof::serve(&reference.id, c, &registry, servers_stop.clone())
                    .await?;
            server_tasks.extend(tasks);
        }
        if let ComponentConfig::Zpages(c) = &configs[&(Kind::Extension, reference.id.clone())] {
            let auth = c
                .auth
                .as_ref()
                .and_then(|a| authenticators.get(&a.authenticator).cloned());
            let topology = crate::extensions::zpages::Topology::new(settings);
            let (_, task) = crate::extensions::zpages::serve(
                &reference.id,
                c,
                topology,
                auth,
                &registry,
                Some(picture.clone()),
                servers_stop.clone(),
            )
            .await?;
            server_tasks.push(task);
        }
    }
    server_tasks.extend(
        crate::telemetry::start(&settings.telemetry, &registry, servers_stop.clone()).await?,
    );

    // Receivers last. A reload re-points an unchanged receiver at the new pipelines.
    let mut receiver_tasks = Vec::new();
    let mut receivers = HashMap::new();
    let receiver_prints = receiver_fingerprints(settings, configs);
    for def in &settings.receivers {
        let Some(receiver_consumers) = consumers.remove(&def.id) else {
            tracing::warn!(receiver = %def.id, "receiver is defined but used by no pipeline; not started");
            continue;
        };
        let fingerprint = receiver_prints.get(&def.id).cloned().unwrap_or_default();
        if let Some(old) = kept.receivers.remove(&def.id) {
            if old.fingerprint == fingerprint {
                old.consumers.resume_with(&receiver_consumers);
                tracing::info!(receiver = %def.id, "receiver unchanged; it keeps running");
                receivers.insert(def.id.clone(), old);
                continue;
            }
        }
        // This receiver's own stop token (the shared `receivers_stop` marks the service stopping).
        let receivers_stop = CancellationToken::new();
        let handle = receiver_consumers.clone();
        let first_task = receiver_tasks.len();
        match &configs[&(Kind::Receiver, def.id.clone())] {
            ComponentConfig::OtlpReceiver(c) => {
                let running = oxcol_receivers::otlp::start(
                    &def.id,
                    c,
                    receiver_consumers,
                    &registry,
                    receivers_stop.clone(),
                    &authenticators,
                )
                .await?;
                receiver_tasks.extend(running.tasks);
            }
            ComponentConfig::CgroupReceiver(c) => {
                let scraper = oxcol_receivers::cgroup::CgroupScraper::new(&def.id, c, &registry);
                receiver_tasks.push(oxcol_receivers::scraper::spawn(
                    &def.id,
                    c.collection_interval.get(),
                    scraper,
                    receiver_consumers,
                    &registry,
                    receivers_stop.clone(),
                ));
            }
            ComponentConfig::SmapsReceiver(c) => {
                let scraper = oxcol_receivers::smaps::SmapsScraper::new(&def.id, c, &registry);
                receiver_tasks.push(oxcol_receivers::scraper::spawn(
                    &def.id,
                    c.collection_interval.get(),
                    scraper,
                    receiver_consumers,
                    &registry,
                    receivers_stop.clone(),
                ));
            }
            ComponentConfig::PprofReceiver(c) => {
                let scraper = oxcol_receivers::pprof::PprofScraper::new(&def.id, c, &registry)?;
                receiver_tasks.push(oxcol_receivers::scraper::spawn(
                    &def.id,
                    c.collection_interval.get(),
                    scraper,
                    receiver_consumers,
                    &registry,
                    receivers_stop.clone(),
                ));
            }
            ComponentConfig::PrometheusReceiver(c) => {
                for (interval, scraper) in c.scrapers(&def.id, &registry)? {
                    receiver_tasks.push(oxcol_receivers::scraper::spawn(
                        &def.id,
                        interval,
                        scraper,
                        receiver_consumers.clone(),
                        &registry,
                        receivers_stop.clone(),
                    ));
                }
            }
            ComponentConfig::ZipkinReceiver(c) => {
                let running = oxcol_receivers::zipkin::start(
                    &def.id,
                    c,
                    receiver_consumers,
                    &registry,
                    receivers_stop.clone(),
                    &authenticators,
                )
                .await?;
                receiver_tasks.push(running.task);
            }
            ComponentConfig::JaegerReceiver(c) => {
                let running = oxcol_receivers::jaeger::start(
                    &def.id,
                    c,
                    receiver_consumers,
                    &registry,
                    receivers_stop.clone(),
                    &authenticators,
                )
                .await?;
                receiver_tasks.extend(running.tasks);
            }
            ComponentConfig::HostmetricsReceiver(c) => {
                let scraper =
                    oxcol_receivers::hostmetrics::HostmetricsScraper::new(&def.id, c, &registry)?;
                receiver_tasks.push(oxcol_receivers::scraper::spawn(
                    &def.id,
                    c.collection_interval.get(),
                    scraper,
                    receiver_consumers,
                    &registry,
                    receivers_stop.clone(),
                ));
            }
            #[cfg(feature = "kafka")]
            ComponentConfig::KafkaReceiver(c) => {
                receiver_tasks.extend(oxcol_receivers::kafka::start(
                    &def.id,
                    c,
                    receiver_consumers,
                    &registry,
                    receivers_stop.clone(),
                )?);
            }
            ComponentConfig::StatsdReceiver(c) => {
                let running = oxcol_receivers::statsd::start(
                    &def.id,
                    c,
                    receiver_consumers,
                    &registry,
                    receivers_stop.clone(),
                )
                .await?;
                receiver_tasks.extend(running.tasks);
            }
            ComponentConfig::JournaldReceiver(c) => {
                let storage = receiver_storage(settings, configs, &def.id, c.storage.as_deref())?;
                let running = oxcol_receivers::journald::start(
                    &def.id,
                    c,
                    storage,
                    receiver_consumers,
                    &registry,
                    receivers_stop.clone(),
                )
                .await?;
                receiver_tasks.extend(running.tasks);
            }
            ComponentConfig::FilelogReceiver(c) => {
                let storage = receiver_storage(settings, configs, &def.id, c.storage.as_deref())?;
                let running = oxcol_receivers::filelog::start(
                    &def.id,
                    c,
                    storage.as_ref(),
                    receiver_consumers,
                    &registry,
                    receivers_stop.clone(),
                )?;
                receiver_tasks.push(running.task);
            }
            // WIRING: one arm per receiver type. Pull receivers:
            // receiver_tasks.push(oxcol_receivers::scraper::spawn(&def.id, interval, scraper, receiver_consumers, &registry, receivers_stop.clone()));
            _ => return Err(format!("receiver {:?} cannot be built", def.id)),
        }
        let tasks = receiver_tasks.drain(first_task..).collect();
        receivers.insert(
            def.id.clone(),
            KeptReceiver {
                fingerprint,
                stop: receivers_stop,
                tasks,
                consumers: handle,
            },
        );
    }

    healthy.store(true, Ordering::Relaxed);
    let exporters = queues;
    Ok(Running {
        stateful,
        receivers_stop,
        servers_stop,
        receivers,
        levels,
        server_tasks,
        exporters,
        healthy,
        picture,
        pipeline_died,
    })
}

/// Each pipeline's stop level: 0 when no connector feeds it, else one more than the
/// highest level of the pipelines feeding it (the graph has no cycle: settings checked).
fn pipeline_levels(settings: &Settings) -> Vec<usize> {
    let mut levels = vec![0; settings.pipelines.len()];
    // Longest paths settle within one pass per pipeline.
    for _ in 0..settings.pipelines.len() {
        let mut changed = false;
        for (from, pipeline) in settings.pipelines.iter().enumerate() {
            for (_, to) in crate::settings::connector_edges(settings, pipeline) {
                if levels[to] < levels[from] + 1 {
                    levels[to] = levels[from] + 1;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    levels
}

/// One connector instance for (from, to) signals.
fn build_connector(
    def: &crate::settings::ComponentDef,
    config: &ComponentConfig,
    from: Signal,
    instance_id: &str,
    registry: &Registry,
) -> Result<Box<dyn oxcol_connectors::Connector>, String> {
    use oxcol_connectors::{count, forward, routing};
    // Only spanmetrics and servicegraph use these, and a lean build may leave both out.
    let _ = (instance_id, registry);
    Ok(match config {
        ComponentConfig::RoutingConnector(c) => {
            Box::new(routing::RoutingConnector::new(&def.id, c, from)?)
        }
        ComponentConfig::CountConnector(c) => Box::new(count::CountConnector::new(c)?),
        #[cfg(feature = "spanmetrics")]
        ComponentConfig::SpanMetricsConnector(c) => Box::new(
            oxcol_connectors::spanmetrics::SpanMetricsConnector::new(c)
                .with_instance_id(instance_id),
        ),
        #[cfg(feature = "servicegraph")]
        ComponentConfig::ServiceGraphConnector(c) => {
            use oxcol_connectors::servicegraph;
            let labels = [("connector", def.id.as_str())];
            let counters = servicegraph::EdgeCounters {
                total_edges: registry.counter(
                    "otelcol_connector_servicegraph_total_edges",
                    "Total number of unique edges.",
                    &labels,
                ),
                expired_edges: registry.counter(
                    "otelcol_connector_servicegraph_expired_edges",
                    "Number of edges that expired before finding their pair.",
                    &labels,
                ),
                dropped_spans: registry.counter(
                    "otelcol_connector_servicegraph_dropped_spans",
                    "Number of spans dropped when trying to add edges (store full).",
                    &labels,
                ),
                dropped_series: registry.counter(
                    "oxcol_connector_servicegraph_dropped_series",
                    "New edge series dropped because the connector's series bound was reached.",
                    &labels,
                ),
            };
            Box::new(servicegraph::ServiceGraphConnector::new(
                c,
                counters,
                std::time::SystemTime::now(),
            ))
        }
        ComponentConfig::ForwardConnector(_) => Box::new(forward::ForwardConnector),
        // WIRING: one arm per connector type.
        _ => return Err("is not a connector".to_string()),
    })
}

/// The Collector's `collector.instance.id` (a spanmetrics dimension): the attribute of that
/// name in `service.telemetry.resource`, else a random UUID for this process.
fn collector_instance_id(settings: &Settings) -> String {
    let configured = settings
        .telemetry
        .resource
        .attributes
        .iter()
        .find(|(name, _)| name == "collector.instance.id")
        .and_then(|(_, value)| value.as_ref());
    match configured {
        Some(serde_json::Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => random_uuid(),
    }
}

/// A version-4 UUID from the kernel's random source (time and pid if it cannot be read).
fn random_uuid() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes[..12].copy_from_slice(&nanos.to_le_bytes()[..12]);
        bytes[12..].copy_from_slice(&std::process::id().to_le_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Ticks a connector that emits on a timer; on stop, a final flush.
fn spawn_connector_timer(
    node: Arc<ConnectorNode>,
    every: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticker.tick() => node.tick().await,
            }
        }
        node.shutdown().await;
    })
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
        tracing::info!("shutting down: receivers stop accepting");
        let _ = self.stop(&Keep::default()).await;
        tracing::info!("shutdown complete");
    }

    /// How many exporter queues run.
    pub fn exporter_count(&self) -> usize {
        self.exporters.len()
    }

    /// What a reload to `settings` can keep: the exporter queues, stateful processors and
    /// receivers whose fingerprints are unchanged.
    pub fn keep_for(
        &self,
        settings: &Settings,
        configs: &HashMap<(Kind, String), ComponentConfig>,
    ) -> Keep {
        let exporters = exporter_fingerprints(settings, configs);
        let stages = stage_fingerprints(settings, configs);
        let receivers = receiver_fingerprints(settings, configs);
        let running_stages = self.stateful.iter().flat_map(|p| {
            p.stages.iter().filter_map(|(id, fingerprint)| {
                Some(((p.pipeline.clone(), id.clone()), fingerprint.clone()?))
            })
        });
        Keep {
            exporters: self
                .exporters
                .iter()
                .filter(|(key, (fingerprint, _))| exporters.get(*key) == Some(fingerprint))
                .map(|(key, _)| key.clone())
                .collect(),
            stages: running_stages
                .filter(|(key, fingerprint)| stages.get(key) == Some(fingerprint))
                .collect(),
            receivers: self
                .receivers
                .iter()
                .filter(|(id, r)| receivers.get(*id) == Some(&r.fingerprint))
                .map(|(id, _)| id.clone())
                .collect(),
        }
    }

    /// Stops everything in the shutdown order, except the exporter queues in `keep`, which
    /// go on sending and are returned for the next [`start`]. The other queues drain (until
    /// [`SHUTDOWN_DRAIN`]) and close, so a disk queue is released before a new queue opens it.
    /// The stateful processors ([`processor_fingerprint`]) whose fingerprint is in `keep_stages` come
    /// back too, after their pipeline drained, without a `shutdown()`.
    /// Receivers in `keep.receivers` keep running, paused (their new batches wait) until
    /// the next [`start`] re-points them.
    pub async fn stop(mut self, keep: &Keep) -> Kept {
        let keep_stages = &keep.stages;
        self.healthy.store(false, Ordering::Relaxed);
        for pipeline in &self.stateful {
            let carried: std::collections::HashSet<usize> = pipeline
                .stages
                .iter()
                .enumerate()
                .filter(|(_, (id, fingerprint))| {
                    fingerprint.is_some()
                        && keep_stages.get(&(pipeline.pipeline.clone(), id.clone()))
                            == fingerprint.as_ref()
                })
                .map(|(index, _)| index)
                .collect();
            *pipeline.carried.lock().unwrap_or_else(|p| p.into_inner()) = carried;
        }
        self.receivers_stop.cancel();
        let mut kept_receivers = HashMap::new();
        let mut receiver_tasks = Vec::new();
        for (id, mut receiver) in std::mem::take(&mut self.receivers) {
            if keep.receivers.contains(&id) {
                receiver.consumers.pause();
                kept_receivers.insert(id, receiver);
            } else {
                receiver.stop.cancel();
                receiver_tasks.append(&mut receiver.tasks);
            }
        }
        join_all_bounded(receiver_tasks, Duration::from_secs(10), "receivers").await;
        // Pipelines fed by connectors stop after the pipelines feeding them drained and
        // those connectors made their final flush.
        let mut stages = KeptStages::new();
        for level in self.levels {
            level.pipelines_stop.cancel();
            let waiting = futures::future::join_all(level.pipeline_tasks);
            match tokio::time::timeout(Duration::from_secs(10), waiting).await {
                Ok(results) => stages.extend(results.into_iter().flatten().flatten()),
                Err(_) => tracing::warn!(
                    "pipelines did not stop within 10s; continuing (their processors' state is not kept)"
                ),
            }
            level.connectors_stop.cancel();
            join_all_bounded(level.connector_tasks, Duration::from_secs(10), "connectors").await;
        }
        let deadline = Instant::now() + SHUTDOWN_DRAIN;
        let (kept, stopping): (KeptExporters, KeptExporters) = self
            .exporters
            .into_iter()
            .partition(|(key, _)| keep.exporters.contains(key));
        futures::future::join_all(stopping.values().map(|(_, e)| e.shutdown(deadline))).await;
        for ((id, signal), (_, queue)) in stopping {
            // The pipelines that held it have ended; this is the last handle, so its disk
            // queue (and the directory lock) is released now.
            if Arc::strong_count(&queue) > 1 {
                tracing::warn!(exporter = %id, %signal, "exporter queue is still referenced after stopping; its disk queue is released when the last reference goes");
            }
        }
        self.servers_stop.cancel();
        join_all_bounded(self.server_tasks, Duration::from_secs(2), "extensions").await;
        Kept {
            exporters: kept,
            stages,
            receivers: kept_receivers,
            picture: Some(self.picture),
        }
    }

    pub fn set_unhealthy(&self) {
        self.healthy.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod used_exporter_tests {
    use super::*;

    fn errors_of(yaml: &str) -> Vec<String> {
        let source = oxcol_config::Source::Text {
            name: "test".to_string(),
            text: yaml.to_string(),
        };
        let root = oxcol_config::load(&[source], &[], &|_| None).expect("the YAML loads");
        let (settings, errors) = crate::settings::read(&root);
        assert!(errors.is_empty(), "{errors:?}");
        match decode_all(&settings) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.message).collect(),
        }
    }

    #[test]
    fn remote_write_endpoint_is_required_only_when_a_pipeline_uses_the_exporter() {
        let unused = "receivers:\n  otlp:\n    protocols:\n      grpc:\nexporters:\n  debug:\n  prometheusremotewrite:\n    endpoint: \"\"\nservice:\n  pipelines:\n    metrics:\n      receivers: [otlp]\n      exporters: [debug]\n";
        assert_eq!(errors_of(unused), Vec::<String>::new());
        let used = unused.replace(
            "exporters: [debug]",
            "exporters: [debug, prometheusremotewrite]",
        );
        let errors = errors_of(&used);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("exporter \"prometheusremotewrite\": endpoint is required"),
            "{errors:?}"
        );
        let not_a_url = used.replace("endpoint: \"\"", "endpoint: prometheus:9090");
        let errors = errors_of(&not_a_url);
        assert!(
            errors.len() == 1 && errors[0].contains("is not a valid http:// URL"),
            "{errors:?}"
        );
    }
}
