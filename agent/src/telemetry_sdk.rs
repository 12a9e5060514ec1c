//! oxcol's own telemetry pushed over OTLP through the OpenTelemetry Rust SDK
//! (`opentelemetry_sdk` + `opentelemetry-otlp`), as the Collector pushes its own through
//! the Go SDK:
//! - `service.telemetry.metrics.readers[].periodic`: every family of the self-telemetry
//!   [`Registry`] becomes an observable instrument of one `SdkMeterProvider` (counters as
//!   observable counters, gauges as observable gauges), read by one `PeriodicReader` per
//!   configured reader;
//! - `service.telemetry.logs.processors[]`: oxcol's `tracing` log, bridged by
//!   `opentelemetry-appender-tracing` into an `SdkLoggerProvider` with batch processors.
//!
//! The exporters are the SDK's; the connections under them are oxcol's own (the gRPC
//! channel of the `otlp` exporter, the HTTP client of `otlphttp`), so TLS, proxies and
//! headers behave as in the pipelines. The SDK exports from its own threads, outside the
//! async runtime: an HTTP request runs as a task on the runtime, and the SDK thread waits
//! for it.
//!
//! Self-telemetry never stops or slows the pipelines: the SDK retries a failed export a few
//! times, then drops it and says so in the log (the next metric push carries the cumulative
//! values again).

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{
    Compression, Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::logs::{
    BatchConfigBuilder, BatchLogProcessor, SdkLogger, SdkLoggerProvider,
};
use opentelemetry_sdk::metrics::{PeriodicReader as SdkPeriodicReader, SdkMeterProvider};
use oxcol_core::Signal;
use oxcol_core::telemetry::{Reading, ReadingKind, Registry};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::telemetry::{PeriodicReader, PushConfig, PushExporter, push_config};

/// Largest answer body read (the OTLP spec's recommended response limit).
const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// How often new families of the registry (components added by a reload) are looked for.
const FAMILY_SCAN: Duration = Duration::from_secs(10);

/// oxcol's hyper client (TLS, proxy, pool of the `otlphttp` exporter) as the SDK's HTTP
/// client.
#[derive(Clone)]
struct RuntimeHttpClient {
    client: Client<oxcol_core::tls::HttpsConnector, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
}

impl std::fmt::Debug for RuntimeHttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RuntimeHttpClient")
    }
}

#[async_trait::async_trait]
impl HttpClient for RuntimeHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let timeout = self.timeout;
        let exchange = self.runtime.spawn(async move {
            let (parts, body) = request.into_parts();
            let request = Request::from_parts(parts, Full::new(body));
            let exchange = async {
                let response = client.request(request).await?;
                let (parts, body) = response.into_parts();
                let body = Limited::new(body, MAX_RESPONSE_BYTES)
                    .collect()
                    .await?
                    .to_bytes();
                Ok::<_, HttpError>(Response::from_parts(parts, body))
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(answer) => answer,
                Err(_) => Err(format!("no answer within {timeout:?}").into()),
            }
        });
        exchange.await.map_err(|e| HttpError::from(e.to_string()))?
    }
}

/// What the SDK's OTLP exporter of one push is built from: oxcol's connection and the
/// exporter's settings.
enum Connection {
    Grpc {
        channel: tonic::transport::Channel,
        metadata: tonic::metadata::MetadataMap,
        gzip: bool,
        timeout: Duration,
    },
    Http {
        client: RuntimeHttpClient,
        url: String,
        protocol: Protocol,
        headers: std::collections::HashMap<String, String>,
        gzip: bool,
        timeout: Duration,
    },
}

/// The connection of `exporter` pushing `signal` (inside the async runtime). `timeout`
/// caps the exporter's own per-request timeout (a reader's or processor's timeout).
fn connection(
    exporter: &PushExporter,
    signal: Signal,
    timeout: Duration,
) -> Result<Connection, String> {
    let (protocol, otlp) = exporter.otlp()?;
    let json = protocol == crate::telemetry::PushProtocol::HttpJson;
    Ok(match push_config(protocol, otlp, signal)? {
        PushConfig::Grpc(config) => Connection::Grpc {
            channel: oxcol_exporters::otlp::lazy_channel(&config)?,
            metadata: oxcol_exporters::otlp::grpc_metadata(&config.headers)?,
            gzip: config.compression == "gzip",
            timeout: config.timeout.get().min(timeout),
        },
        PushConfig::Http(config) => Connection::Http {
            client: RuntimeHttpClient {
                client: oxcol_exporters::otlphttp::http_client(&config)?,
                runtime: tokio::runtime::Handle::current(),
                timeout: config.timeout.get().min(timeout),
            },
            url: config.url_for(signal),
            protocol: if json {
                Protocol::HttpJson
            } else {
                Protocol::HttpBinary
            },
            headers: config.headers.clone().into_iter().collect(),
            gzip: config.compression == "gzip",
            timeout: config.timeout.get().min(timeout),
        },
    })
}

/// Builds one SDK exporter from a [`Connection`]: the same calls on the metric and the log
/// exporter builders.
macro_rules! sdk_exporter {
    ($builder:expr, $connection:expr) => {
        match $connection {
            Connection::Grpc {
                channel,
                metadata,
                gzip,
                timeout,
            } => {
                let builder = $builder
                    .with_tonic()
                    .with_channel(channel)
                    .with_metadata(metadata)
                    .with_timeout(timeout);
                if gzip {
                    builder.with_compression(Compression::Gzip).build()
                } else {
                    builder.build()
                }
            }
            Connection::Http {
                client,
                url,
                protocol,
                headers,
                gzip,
                timeout,
            } => {
                let builder = $builder
                    .with_http()
                    .with_http_client(client)
                    .with_endpoint(url)
                    .with_protocol(protocol)
                    .with_headers(headers)
                    .with_timeout(timeout);
                if gzip {
                    builder.with_compression(Compression::Gzip).build()
                } else {
                    builder.build()
                }
            }
        }
        .map_err(|e| e.to_string())
    };
}

/// Starts pushing the registry's series through every periodic reader; the returned task
/// ends at `shutdown`, after a last push.
pub fn start_metrics_push(
    readers: &[&PeriodicReader],
    registry: &Arc<Registry>,
    resource: opentelemetry_sdk::Resource,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, String> {
    let mut builder = SdkMeterProvider::builder().with_resource(resource);
    for (index, reader) in readers.iter().enumerate() {
        let at = |e: String| {
            format!("service.telemetry.metrics.readers[{index}].periodic.exporter: {e}")
        };
        let temporality = reader
            .exporter
            .otlp()
            .map_err(at)?
            .1
            .temporality()
            .unwrap_or_default();
        let connection = connection(
            &reader.exporter,
            Signal::Metrics,
            Duration::from_millis(reader.timeout.max(1)),
        )
        .map_err(at)?;
        let exporter = sdk_exporter!(
            opentelemetry_otlp::MetricExporter::builder().with_temporality(temporality),
            connection
        )
        .map_err(at)?;
        builder = builder.with_reader(
            SdkPeriodicReader::builder(exporter)
                .with_interval(Duration::from_millis(reader.interval))
                .build(),
        );
        let endpoint = reader
            .exporter
            .otlp()
            .ok()
            .and_then(|(_, o)| o.endpoint.clone())
            .unwrap_or_default();
        tracing::info!(%endpoint, interval_ms = reader.interval, ?temporality, "pushing self-telemetry metrics over OTLP (OpenTelemetry SDK)");
    }
    let provider = builder.build();
    let meter = provider.meter_with_scope(
        opentelemetry::InstrumentationScope::builder("oxcol")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    );
    let registry = Arc::clone(registry);
    let mut seen = HashSet::new();
    observe_new_families(&meter, &registry, &mut seen);
    // New families (a reload's components) are picked up until shutdown.
    let scan_stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = scan_stop.cancelled() => break,
                _ = tokio::time::sleep(FAMILY_SCAN) => observe_new_families(&meter, &registry, &mut seen),
            }
        }
    });
    Ok(stop_at_shutdown(
        shutdown,
        "metrics",
        || {},
        move || provider.shutdown(),
    ))
}

/// Makes every family of the registry not yet in `seen` an observable instrument whose
/// callback reads that family's series when the SDK collects.
fn observe_new_families(meter: &Meter, registry: &Arc<Registry>, seen: &mut HashSet<String>) {
    for (name, help, kind) in registry.families() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let registry = Arc::clone(registry);
        let family = name.clone();
        let read = move |mut f: Box<dyn FnMut(Reading, &[KeyValue]) + '_>| {
            registry.read_family(&family, |labels, reading| {
                let attributes: Vec<KeyValue> = labels
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
                    .collect();
                f(reading, &attributes);
            })
        };
        // The instruments live as long as the provider: the callbacks stay registered
        // when the handles are dropped.
        match kind {
            ReadingKind::Counter => {
                meter
                    .u64_observable_counter(name)
                    .with_description(help)
                    .with_callback(move |observer| {
                        read(Box::new(|reading, attributes| {
                            if let Reading::Counter(value) = reading {
                                observer.observe(value, attributes)
                            }
                        }))
                    })
                    .build();
            }
            ReadingKind::Gauge => {
                meter
                    .i64_observable_gauge(name)
                    .with_description(help)
                    .with_callback(move |observer| {
                        read(Box::new(|reading, attributes| {
                            if let Reading::Gauge(value) = reading {
                                observer.observe(value, attributes)
                            }
                        }))
                    })
                    .build();
            }
            ReadingKind::ComputedGauge => {
                meter
                    .f64_observable_gauge(name)
                    .with_description(help)
                    .with_callback(move |observer| {
                        read(Box::new(|reading, attributes| {
                            if let Reading::ComputedGauge(value) = reading {
                                observer.observe(value, attributes)
                            }
                        }))
                    })
                    .build();
            }
        }
    }
}

type Bridge = OpenTelemetryTracingBridge<SdkLoggerProvider, SdkLogger>;

/// The log bridge of the running config (None: logs go to `output_paths` only), with the
/// number of the start that installed it, so that an old config's shutdown does not remove
/// a newer bridge.
static LOG_BRIDGE: RwLock<Option<(u64, Bridge)>> = RwLock::new(None);
static LOG_BRIDGE_STARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The `tracing` layer that hands oxcol's log events to the running config's log bridge.
/// Installed once with the log subscriber ([`crate::telemetry::init_logging`]).
pub struct LogBridgeLayer;

impl<S> tracing_subscriber::Layer<S> for LogBridgeLayer
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        // The exporters' own clients and the SDK log through tracing too: exporting their
        // lines would feed every failed export back into the exporter.
        let target = event.metadata().target();
        if ["opentelemetry", "hyper", "h2", "tonic", "tower", "rustls"]
            .iter()
            .any(|t| target.starts_with(t))
        {
            return;
        }
        let bridge = LOG_BRIDGE.read().unwrap_or_else(|p| p.into_inner());
        if let Some((_, bridge)) = bridge.as_ref() {
            tracing_subscriber::Layer::<S>::on_event(bridge, event, ctx);
        }
    }
}

/// One processor of `logs.processors` or `traces.processors`, resolved: its batch
/// settings (`simple` as a short batch), the delay between exports and its connection.
struct Resolved {
    delay: Duration,
    max_queue_size: usize,
    max_export_batch_size: usize,
    connection: Connection,
}

/// Resolves every processor of `section` (`logs`, `traces`) for `signal`; errors name the
/// processor. `default_delay`: the Go SDK's default `schedule_delay` for the signal.
fn resolve_processors(
    processors: &[crate::telemetry::LogProcessor],
    section: &str,
    signal: Signal,
    default_delay: u64,
) -> Result<Vec<Resolved>, String> {
    let mut resolved = Vec::new();
    for (index, processor) in processors.iter().enumerate() {
        let at = |e: String| format!("service.telemetry.{section}.processors[{index}]: {e}");
        let settings = processor.settings().map_err(at)?;
        let timeout = Duration::from_millis(settings.export_timeout.max(1));
        let max_queue_size = settings.max_queue_size.max(1);
        resolved.push(Resolved {
            delay: Duration::from_millis(settings.schedule_delay.unwrap_or(default_delay).max(1)),
            max_queue_size,
            max_export_batch_size: settings.max_export_batch_size.clamp(1, max_queue_size),
            connection: connection(&settings.exporter, signal, timeout).map_err(at)?,
        });
    }
    Ok(resolved)
}

/// The task that ends a provider: at `shutdown`, `uninstall` (so nothing new reaches it),
/// then the SDK's shutdown on a blocking thread (it exports what waits, and blocks while it
/// does).
fn stop_at_shutdown(
    shutdown: CancellationToken,
    what: &'static str,
    uninstall: impl FnOnce() + Send + 'static,
    stop: impl FnOnce() -> opentelemetry_sdk::error::OTelSdkResult + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        shutdown.cancelled().await;
        uninstall();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(error) = stop() {
                tracing::warn!(%error, "self-telemetry {what}: the last export at shutdown failed");
            }
        })
        .await;
    })
}

/// Starts exporting oxcol's log through `processors`; the returned task ends at
/// `shutdown`, after the records waiting are exported.
pub fn start_log_export(
    processors: &[crate::telemetry::LogProcessor],
    resource: opentelemetry_sdk::Resource,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, String> {
    let mut builder = SdkLoggerProvider::builder().with_resource(resource);
    for (index, resolved) in resolve_processors(processors, "logs", Signal::Logs, 1000)?
        .into_iter()
        .enumerate()
    {
        let exporter = sdk_exporter!(
            opentelemetry_otlp::LogExporter::builder(),
            resolved.connection
        )
        .map_err(|e| format!("service.telemetry.logs.processors[{index}]: {e}"))?;
        let config = BatchConfigBuilder::default()
            .with_scheduled_delay(resolved.delay)
            .with_max_queue_size(resolved.max_queue_size)
            .with_max_export_batch_size(resolved.max_export_batch_size)
            .build();
        builder = builder.with_log_processor(
            BatchLogProcessor::builder(exporter)
                .with_batch_config(config)
                .build(),
        );
    }
    let provider = builder.build();
    let start = LOG_BRIDGE_STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    let bridge = OpenTelemetryTracingBridge::new(&provider);
    let old = LOG_BRIDGE
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .replace((start, bridge));
    drop(old);
    tracing::info!(
        processors = processors.len(),
        "exporting oxcol's log over OTLP (OpenTelemetry SDK)"
    );
    let uninstall = move || {
        let mut bridge = LOG_BRIDGE.write().unwrap_or_else(|p| p.into_inner());
        if bridge
            .as_ref()
            .is_some_and(|(installed, _)| *installed == start)
        {
            *bridge = None;
        }
    };
    Ok(stop_at_shutdown(shutdown, "logs", uninstall, move || {
        provider.shutdown()
    }))
}

/// The number of the running config's span export, so that an old config's shutdown does
/// not remove a newer tracer.
static TRACER_STARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Starts exporting oxcol's own spans (receivers' requests and exporters' send attempts,
/// `oxcol_core::telemetry::record_span`) through `processors`; the returned task ends at
/// `shutdown`, after the spans waiting are exported.
pub fn start_trace_export(
    processors: &[crate::telemetry::LogProcessor],
    resource: opentelemetry_sdk::Resource,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, String> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    for (index, resolved) in resolve_processors(processors, "traces", Signal::Traces, 5000)?
        .into_iter()
        .enumerate()
    {
        let exporter = sdk_exporter!(
            opentelemetry_otlp::SpanExporter::builder(),
            resolved.connection
        )
        .map_err(|e| format!("service.telemetry.traces.processors[{index}]: {e}"))?;
        let config = BatchConfigBuilder::default()
            .with_scheduled_delay(resolved.delay)
            .with_max_queue_size(resolved.max_queue_size)
            .with_max_export_batch_size(resolved.max_export_batch_size)
            .build();
        builder = builder.with_span_processor(
            BatchSpanProcessor::builder(exporter)
                .with_batch_config(config)
                .build(),
        );
    }
    let provider = builder.build();
    let tracer = provider.tracer_with_scope(
        opentelemetry::InstrumentationScope::builder("oxcol")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    );
    let start = TRACER_STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    oxcol_core::telemetry::set_self_tracer(Some(opentelemetry::global::BoxedTracer::new(
        Box::new(tracer),
    )));
    tracing::info!(
        processors = processors.len(),
        "exporting oxcol's own spans over OTLP (OpenTelemetry SDK)"
    );
    let uninstall = move || {
        if TRACER_STARTS.load(std::sync::atomic::Ordering::Relaxed) == start {
            oxcol_core::telemetry::set_self_tracer(None);
        }
    };
    Ok(stop_at_shutdown(shutdown, "spans", uninstall, move || {
        provider.shutdown()
    }))
}
