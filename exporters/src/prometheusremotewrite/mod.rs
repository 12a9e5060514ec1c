//! The `prometheusremotewrite` exporter: metrics to any Prometheus remote write receiver
//! (Prometheus, Mimir, Thanos, Cortex, VictoriaMetrics), remote write 1.0 by default and
//! 2.0 with `protobuf_message: io.prometheus.write.v2.Request`.
//!
//! One `export` call is one attempt for one batch (the queue and retry wrap it, see
//! `queue.rs`): translate (`prom_translate`), group samples into time-ordered series,
//! shard series by label hash, send each shard's requests concurrently (one shard's
//! requests in order), and classify the outcome: 2xx done; 5xx, 429 (with `Retry-After`)
//! and network errors retryable; every other 4xx permanent, with the reason Prometheus
//! gave. For 2.0 the receiver's `X-Prometheus-Remote-Write-*-Written` answer headers say
//! how much of each request was written: a partial write (400 with the good samples
//! written) fails exactly the rest, and a 2xx that confirms nothing is a 1.x receiver
//! (treated as 415). A 415 is permanent: no silent fallback to 1.0.
//!
//! Ordering: the queue in front of this exporter always has ONE consumer (see
//! [`Config::queue_config`]), so batches go out in the order they arrived, and a series'
//! samples reach the receiver in time order. A retried batch is sent whole again: shards
//! that had already succeeded resend identical samples, which Prometheus accepts silently,
//! so retries never create duplicates.
//!
//! This module must never send a request with unsorted, duplicate or empty-valued labels,
//! or compress with the framed snappy format.

pub mod config;
pub mod encode;
pub mod proto;
pub mod staleness;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use oxcol_core::{Batch, ExportError, ExportOutcome, Exporter};

pub use config::Config;

use crate::prom_translate::{self, DeltaHandling, Settings};
use crate::queue::parse_retry_after;

pub const TYPE: &str = "prometheusremotewrite";
pub const ALIASES: &[&str] = &["prometheusremotewrite", "prometheus_remote_write"];

const USER_AGENT: &str = concat!("oxcol/", env!("CARGO_PKG_VERSION"));
/// Largest response body read; Prometheus' error bodies are one line.
const MAX_RESPONSE_BYTES: usize = 64 << 10;

pub struct RemoteWriteExporter {
    id: String,
    client: Client<oxcol_core::tls::HttpsConnector, Full<Bytes>>,
    uri: http::Uri,
    headers: HeaderMap,
    /// `auth:` credentials, added to each request as they are at that moment.
    credentials: Option<oxcol_core::auth::ClientCredentials>,
    settings: Settings,
    v2: bool,
    send_metadata: bool,
    shards: usize,
    max_batch_size_bytes: usize,
    timeout: Duration,
    staleness: Mutex<staleness::Tracker>,
    /// Evictions already logged (a warning each time the count grows by 10x).
    evictions_logged: std::sync::atomic::AtomicU64,
    telemetry: Telemetry,
}

/// What one request carried, or what a 2.0 receiver said it wrote of it
/// (`X-Prometheus-Remote-Write-{Samples,Histograms,Exemplars}-Written`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Float samples (staleness markers and `target_info` included).
    pub samples: u64,
    /// Native histogram samples.
    pub histograms: u64,
    pub exemplars: u64,
}

impl Counts {
    /// Samples of both kinds: what a data point becomes, and what can fail.
    fn all_samples(&self) -> u64 {
        self.samples + self.histograms
    }
}

/// The receiver's `*-Written` answer headers; `None` when it sent none of them (a 1.x
/// receiver). As the 2.0 spec says, a missing header among present ones means 0; a value
/// that is not a number counts as 0 too.
pub fn written_headers(headers: &HeaderMap) -> Option<Counts> {
    let names = [
        "x-prometheus-remote-write-samples-written",
        "x-prometheus-remote-write-histograms-written",
        "x-prometheus-remote-write-exemplars-written",
    ];
    if !names.iter().any(|name| headers.contains_key(*name)) {
        return None;
    }
    let value = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(Counts {
        samples: value(names[0]),
        histograms: value(names[1]),
        exemplars: value(names[2]),
    })
}

/// Self-telemetry of what went out and what a 2.0 receiver confirmed, counted per HTTP
/// request that got an answer (a retried request counts again: a receiver writes an
/// identical resent sample again, silently). Detached counters until
/// [`RemoteWriteExporter::with_telemetry`] registers them.
#[derive(Clone, Debug, Default)]
struct Telemetry {
    /// `oxcol_exporter_prometheusremotewrite_sent_{samples,histograms,exemplars}`.
    sent: [oxcol_core::telemetry::Counter; 3],
    /// The Collector's `otelcol_exporter_prometheusremotewrite_written_{samples,histograms,exemplars}`
    /// (2.0 only: from the answer headers).
    written: [oxcol_core::telemetry::Counter; 3],
    /// `oxcol_exporter_prometheusremotewrite_staleness_markers`: absence markers computed.
    staleness_markers: oxcol_core::telemetry::Counter,
    /// `oxcol_exporter_prometheusremotewrite_staleness_evicted_series`: series forgotten
    /// because `staleness_max_series` was reached (they get no marker).
    staleness_evicted: oxcol_core::telemetry::Counter,
}

impl Telemetry {
    fn add(counters: &[oxcol_core::telemetry::Counter; 3], counts: Counts) {
        counters[0].add(counts.samples);
        counters[1].add(counts.histograms);
        counters[2].add(counts.exemplars);
    }
}

/// The result of one HTTP request.
#[derive(Debug)]
enum Sent {
    Ok,
    /// `unwritten`: the samples (float and histogram) of the request that the receiver
    /// did not write: all of them, or what its 2.0 `*-Written` headers say are missing.
    Failed {
        error: ExportError,
        unwritten: u64,
    },
}

impl RemoteWriteExporter {
    pub fn new(id: &str, config: &Config) -> Result<RemoteWriteExporter, String> {
        let proxy = oxcol_core::proxy::ProxyUrl::from_setting(&config.proxy_url)?;
        let connector = oxcol_core::tls::https_connector_with_proxy(
            Some(&config.tls),
            config.timeout.get().min(Duration::from_secs(10)),
            proxy,
        )?;
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let uri = config
            .endpoint
            .parse::<http::Uri>()
            .map_err(|e| format!("endpoint {:?}: {e}", config.endpoint))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("headers: {name:?} is not a valid header name"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("headers: the value of {name} is not valid"))?;
            headers.insert(name, value);
        }
        let settings = Settings {
            namespace: config.namespace.clone(),
            add_metric_suffixes: config.add_metric_suffixes,
            resource_to_telemetry: config.resource_to_telemetry_conversion.enabled,
            target_info: config.target_info.enabled,
            extra_labels: config
                .external_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            delta: DeltaHandling::Drop,
            native_histograms: true,
        };
        Ok(RemoteWriteExporter {
            id: id.to_string(),
            client,
            uri,
            headers,
            credentials: None,
            settings,
            v2: config.is_v2(),
            send_metadata: config.send_metadata,
            shards: config.shards(),
            max_batch_size_bytes: config.max_batch_size_bytes,
            timeout: config.timeout.get(),
            staleness: Mutex::new(staleness::Tracker::new(
                config.staleness_interval.get(),
                config.staleness_max_series,
            )),
            evictions_logged: std::sync::atomic::AtomicU64::new(0),
            telemetry: Telemetry::default(),
        })
    }

    /// Registers the exporter's own counters (sent and, for 2.0, written samples,
    /// histograms and exemplars) in `registry`, labelled `exporter="<id>"`.
    pub fn with_telemetry(mut self, registry: &oxcol_core::telemetry::Registry) -> Self {
        let labels = [("exporter", self.id.as_str())];
        let kinds = ["samples", "histograms", "exemplars"];
        let sent_help = [
            "Float samples (with staleness markers and target_info) in remote write requests that the receiver answered, retries included.",
            "Native histogram samples in remote write requests that the receiver answered, retries included.",
            "Exemplars in remote write requests that the receiver answered, retries included.",
        ];
        let written_help = [
            "Number of Prometheus Samples that were successfully written to the remote write endpoint (only available when using remote write v2)",
            "Number of Prometheus Histograms that were successfully written to the remote write endpoint (only available when using remote write v2)",
            "Number of Prometheus Exemplars that were successfully written to the remote write endpoint (only available when using remote write v2)",
        ];
        let telemetry = Telemetry {
            staleness_markers: registry.counter(
                "oxcol_exporter_prometheusremotewrite_staleness_markers",
                "Staleness markers computed for series absent from what their resource keeps sending (staleness_interval).",
                &labels,
            ),
            staleness_evicted: registry.counter(
                "oxcol_exporter_prometheusremotewrite_staleness_evicted_series",
                "Series forgotten by staleness tracking because staleness_max_series was reached (they get no marker).",
                &labels,
            ),
            sent: std::array::from_fn(|i| {
                registry.counter(
                    &format!("oxcol_exporter_prometheusremotewrite_sent_{}", kinds[i]),
                    sent_help[i],
                    &labels,
                )
            }),
            written: std::array::from_fn(|i| {
                registry.counter(
                    &format!(
                        "otelcol_exporter_prometheusremotewrite_written_{}",
                        kinds[i]
                    ),
                    written_help[i],
                    &labels,
                )
            }),
        };
        self.telemetry = telemetry;
        self
    }

    /// Adds the `auth:` authenticator's credentials to every request.
    pub fn with_credentials(
        mut self,
        credentials: Option<oxcol_core::auth::ClientCredentials>,
    ) -> RemoteWriteExporter {
        if let Some(credentials) = credentials {
            self.credentials = Some(credentials);
        }
        self
    }

    /// Sends one encoded, snappy-compressed request body that carries `counts`.
    async fn send(&self, compressed: Vec<u8>, counts: Counts) -> Sent {
        let failed = |error| Sent::Failed {
            error,
            unwritten: counts.all_samples(),
        };
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone());
        let Some(headers) = request.headers_mut() else {
            return failed(ExportError::Permanent {
                reason: "cannot build the request".into(),
            });
        };
        headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(USER_AGENT),
        );
        // User headers may replace User-Agent, never the protocol's own headers.
        headers.extend(self.headers.clone());
        if let Some(credentials) = &self.credentials {
            // The value of the moment: a token file may have been rotated.
            headers.insert(credentials.header.clone(), credentials.value());
        }
        headers.insert(
            http::header::CONTENT_ENCODING,
            HeaderValue::from_static("snappy"),
        );
        let (content_type, version) = if self.v2 {
            (
                "application/x-protobuf;proto=io.prometheus.write.v2.Request",
                "2.0.0",
            )
        } else {
            ("application/x-protobuf", "0.1.0")
        };
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        headers.insert(
            "x-prometheus-remote-write-version",
            HeaderValue::from_static(version),
        );
        let request = match request.body(Full::new(Bytes::from(compressed))) {
            Ok(r) => r,
            Err(e) => {
                return failed(ExportError::Permanent {
                    reason: format!("cannot build request: {e}"),
                });
            }
        };
        let exchange = async {
            let response =
                self.client
                    .request(request)
                    .await
                    .map_err(|e| ExportError::Retryable {
                        reason: format!("request to {} failed: {e}", self.uri),
                        after: None,
                    })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, ExportError>((parts, body))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => failed(ExportError::Retryable {
                reason: format!(
                    "no answer from {} within timeout {:?}",
                    self.uri, self.timeout
                ),
                after: None,
            }),
            Ok(Err(e)) => failed(e),
            Ok(Ok((parts, body))) => {
                Telemetry::add(&self.telemetry.sent, counts);
                if self.v2
                    && let Some(written) = written_headers(&parts.headers)
                {
                    Telemetry::add(&self.telemetry.written, written);
                }
                match classify(parts.status, &parts.headers, &body, self.v2, counts) {
                    Ok(()) => Sent::Ok,
                    Err((error, unwritten)) => Sent::Failed { error, unwritten },
                }
            }
        }
    }
}

/// Classifies a remote write answer to a request that carried `sent`: `Ok` is success,
/// otherwise the error and how many of its samples (float and histogram) the receiver did
/// not write. For 2.0 that is what the `*-Written` headers say is missing (a partial
/// write: Prometheus 3 writes the good samples of a request and answers 400 for the
/// rest); without them, all of the request's samples.
pub fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    v2: bool,
    sent: Counts,
) -> Result<(), (ExportError, u64)> {
    let detail = String::from_utf8_lossy(&body[..body.len().min(1024)])
        .trim()
        .to_string();
    let reason = format!(
        "HTTP {}: {}",
        status.as_u16(),
        if detail.is_empty() {
            "(no reason given)"
        } else {
            &detail
        }
    );
    let written = if v2 { written_headers(headers) } else { None };
    let unwritten = match written {
        Some(written) => sent.all_samples().saturating_sub(written.all_samples()),
        None => sent.all_samples(),
    };
    if status.is_success() {
        if !v2 {
            return Ok(());
        }
        let confirmed = written.unwrap_or_default();
        if sent.all_samples() + sent.exemplars > 0
            && confirmed.all_samples() + confirmed.exemplars == 0
        {
            // Spec 2.0 (and Prometheus' own sender): a 2xx that confirms nothing written
            // comes from a 1.x receiver that decoded nothing of the 2.0 message; treat it
            // as 415.
            return Err((
                ExportError::Permanent {
                    reason: format!(
                        "HTTP {} with {}: the receiver does not understand remote write 2.0 \
                         (treated as 415); set protobuf_message: prometheus.v1.WriteRequest",
                        status.as_u16(),
                        if written.is_none() {
                            "no X-Prometheus-Remote-Write-*-Written header"
                        } else {
                            "X-Prometheus-Remote-Write-*-Written headers of 0"
                        }
                    ),
                },
                sent.all_samples(),
            ));
        }
        if unwritten > 0 {
            return Err((
                ExportError::Permanent {
                    reason: format!(
                        "HTTP {}, but the receiver wrote only {} of {} samples and histograms \
                         (X-Prometheus-Remote-Write-*-Written)",
                        status.as_u16(),
                        confirmed.all_samples(),
                        sent.all_samples()
                    ),
                },
                unwritten,
            ));
        }
        return Ok(());
    }
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        let after = headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        return Err((ExportError::Retryable { reason, after }, sent.all_samples()));
    }
    if status == StatusCode::UNSUPPORTED_MEDIA_TYPE && v2 {
        return Err((
            ExportError::Permanent {
                reason: format!(
                    "{reason}; the receiver does not accept remote write 2.0, set protobuf_message: prometheus.v1.WriteRequest"
                ),
            },
            unwritten,
        ));
    }
    Err((ExportError::Permanent { reason }, unwritten))
}

impl Exporter for RemoteWriteExporter {
    fn export(&self, mut batch: Batch) -> BoxFuture<'_, Result<ExportOutcome, ExportError>> {
        Box::pin(async move {
            let items = batch.items();
            let resource_metrics = batch.metrics_mut().map_err(|e| ExportError::Permanent {
                reason: format!("cannot decode the batch: {e}"),
            })?;
            let mut translation = prom_translate::translate(resource_metrics, &self.settings);
            // The translation owns what it needs: the decoded batch is not held while
            // encoding and sending (the queue keeps its own copy for a retry).
            drop(batch);
            let evicted = {
                let mut tracker = self.staleness.lock().unwrap_or_else(|p| p.into_inner());
                let before = (tracker.markers, tracker.evicted);
                tracker.observe(&mut translation, Instant::now());
                self.telemetry
                    .staleness_markers
                    .add(tracker.markers.saturating_sub(before.0));
                self.telemetry
                    .staleness_evicted
                    .add(tracker.evicted.saturating_sub(before.1));
                tracker.evicted
            };
            let logged = self
                .evictions_logged
                .load(std::sync::atomic::Ordering::Relaxed);
            if evicted > 0 && evicted >= logged.saturating_mul(10).max(1) {
                self.evictions_logged
                    .store(evicted, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(exporter = %self.id, evicted, "staleness tracking is full (staleness_max_series): least recently seen series were forgotten and will get no staleness marker");
            }
            let (series, replaced) = encode::group_series(&translation);
            if replaced > 0 {
                tracing::debug!(exporter = %self.id, replaced, "samples with a repeated timestamp in one series: kept the last");
            }
            let total_samples: usize = series.iter().map(|s| s.samples.len()).sum();
            let mut outcome = ExportOutcome::default();
            if translation.dropped_points > 0 {
                outcome.rejected = translation.dropped_points.min(items);
                outcome.message = translation.problems.join("; ");
            }
            if series.is_empty() {
                return Ok(outcome);
            }
            let total_samples =
                total_samples + series.iter().map(|s| s.histograms.len()).sum::<usize>();
            let shards = encode::shard(series, self.shards);
            let mut metadata_pending = self.send_metadata;
            let mut shard_requests = Vec::with_capacity(shards.len());
            // One uncompressed body buffer for every request; only compressed bodies are kept.
            let mut body = Vec::new();
            let mut compressor = encode::Compressor::default();
            for shard in shards {
                let mut bodies = Vec::new();
                for chunk in encode::chunks(shard, self.max_batch_size_bytes) {
                    let counts = Counts {
                        samples: chunk.iter().map(|s| s.samples.len() as u64).sum(),
                        histograms: chunk.iter().map(|s| s.histograms.len() as u64).sum(),
                        exemplars: chunk.iter().map(|s| s.exemplars.len() as u64).sum(),
                    };
                    body.clear();
                    if self.v2 {
                        encode::encode_v2_into(&mut body, &chunk, &translation.families);
                    } else {
                        let metadata = std::mem::take(&mut metadata_pending)
                            .then_some(translation.families.as_slice());
                        encode::encode_v1_into(&mut body, &chunk, metadata);
                    }
                    bodies.push((compressor.compress(&body), counts));
                }
                shard_requests.push(bodies);
            }
            drop((body, compressor, translation));
            // Shards in parallel; the requests of one shard one after another. A retryable
            // failure stops the shard (the whole batch is sent again, in order); after a
            // permanent one the shard goes on: the other requests are independent data.
            let results =
                futures::future::join_all(shard_requests.into_iter().map(|bodies| async move {
                    let mut results = Vec::with_capacity(bodies.len());
                    for (body, counts) in bodies {
                        let sent = match body {
                            Ok(compressed) => self.send(compressed, counts).await,
                            Err(reason) => Sent::Failed {
                                error: ExportError::Permanent { reason },
                                unwritten: counts.all_samples(),
                            },
                        };
                        match sent {
                            Sent::Ok => {}
                            Sent::Failed { error, unwritten } => {
                                let retry = matches!(error, ExportError::Retryable { .. });
                                results.push((unwritten as usize, Some(error)));
                                if retry {
                                    break;
                                }
                            }
                        }
                    }
                    results
                }))
                .await
                .into_iter()
                .flatten()
                .collect();
            let result = combine(results, total_samples, items, outcome);
            if !matches!(result, Err(ExportError::Retryable { .. })) {
                // Delivered or refused for good: the markers are not resent.
                self.staleness
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .delivered();
            }
            result
        })
    }
}

/// One result for the whole batch from the failed requests' (unwritten samples, error):
/// retry it if any request may succeed later; fail it if every sample failed permanently;
/// otherwise report the permanently failed share as rejected (partial success, not
/// retried), with the reasons (also when nothing was lost, e.g. refused exemplars).
fn combine(
    results: Vec<(usize, Option<ExportError>)>,
    total_samples: usize,
    items: u64,
    mut outcome: ExportOutcome,
) -> Result<ExportOutcome, ExportError> {
    let mut retry_after: Option<Duration> = None;
    let mut retryable_reason = None;
    let mut permanent_reasons = Vec::new();
    let mut failed_samples = 0usize;
    for (failed, error) in results {
        match error {
            Some(ExportError::Retryable { reason, after }) => {
                retry_after = retry_after.max(after);
                retryable_reason.get_or_insert(reason);
            }
            Some(ExportError::Permanent { reason }) => {
                failed_samples += failed;
                if !permanent_reasons.contains(&reason) {
                    permanent_reasons.push(reason);
                }
            }
            None => {}
        }
    }
    if let Some(reason) = retryable_reason {
        return Err(ExportError::Retryable {
            reason,
            after: retry_after,
        });
    }
    if permanent_reasons.is_empty() {
        return Ok(outcome);
    }
    let reason = permanent_reasons.join("; ");
    if failed_samples >= total_samples {
        return Err(ExportError::Permanent { reason });
    }
    // Data points are what the queue counts: estimate the rejected share, rounding up.
    let share =
        (items as u128 * failed_samples as u128).div_ceil(total_samples.max(1) as u128) as u64;
    outcome.rejected = (outcome.rejected + share).min(items);
    outcome.message = if outcome.message.is_empty() {
        reason
    } else {
        format!("{}; {reason}", outcome.message)
    };
    Ok(outcome)
}

#[cfg(test)]
mod tests;
