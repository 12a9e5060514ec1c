//! The `prometheusremotewrite` exporter: metrics to any Prometheus remote write receiver
//! (Prometheus, Mimir, Thanos, Cortex, VictoriaMetrics), remote write 1.0 by default and
//! 2.0 with `protobuf_message: io.prometheus.write.v2.Request`.
//!
//! One `export` call is one attempt for one batch (the queue and retry wrap it, see
//! `queue.rs`): translate (`prom_translate`), group samples into time-ordered series,
//! shard series by label hash, send each shard's requests concurrently (one shard's
//! requests in order), and classify the outcome: 2xx done; 5xx, 429 (with `Retry-After`)
//! and network errors retryable; every other 4xx permanent, with the reason Prometheus
//! gave.
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
}

/// The result of one HTTP request.
#[derive(Debug)]
enum Sent {
    Ok,
    Failed(ExportError),
}

impl RemoteWriteExporter {
    pub fn new(id: &str, config: &Config) -> Result<RemoteWriteExporter, String> {
        let connector = oxcol_core::tls::https_connector(Some(&config.tls), config.timeout.get().min(Duration::from_secs(10)))?;
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let uri = config
            .endpoint
            .parse::<http::Uri>()
            .map_err(|e| format!("endpoint {:?}: {e}", config.endpoint))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("headers: {name:?} is not a valid header name"))?;
            let value = HeaderValue::from_str(value).map_err(|_| format!("headers: the value of {name} is not valid"))?;
            headers.insert(name, value);
        }
        let settings = Settings {
            namespace: config.namespace.clone(),
            add_metric_suffixes: config.add_metric_suffixes,
            resource_to_telemetry: config.resource_to_telemetry_conversion.enabled,
            target_info: config.target_info.enabled,
            extra_labels: config.external_labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
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
            staleness: Mutex::new(staleness::Tracker::new(config.staleness_interval.get(), config.staleness_max_series)),
            evictions_logged: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Adds the `auth:` authenticator's credentials to every request.
    pub fn with_credentials(mut self, credentials: Option<oxcol_core::auth::ClientCredentials>) -> RemoteWriteExporter {
        if let Some(credentials) = credentials {
            self.credentials = Some(credentials);
        }
        self
    }

    /// Sends one encoded, snappy-compressed request body.
    async fn send(&self, compressed: Vec<u8>) -> Sent {
        let mut request = Request::builder().method(Method::POST).uri(self.uri.clone());
        let Some(headers) = request.headers_mut() else {
            return Sent::Failed(ExportError::Permanent {
                reason: "cannot build the request".into(),
            });
        };
        headers.insert(http::header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        // User headers may replace User-Agent, never the protocol's own headers.
        headers.extend(self.headers.clone());
        if let Some(credentials) = &self.credentials {
            // The value of the moment: a token file may have been rotated.
            headers.insert(credentials.header.clone(), credentials.value());
        }
        headers.insert(http::header::CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        let (content_type, version) = if self.v2 {
            ("application/x-protobuf;proto=io.prometheus.write.v2.Request", "2.0.0")
        } else {
            ("application/x-protobuf", "0.1.0")
        };
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert("x-prometheus-remote-write-version", HeaderValue::from_static(version));
        let request = match request.body(Full::new(Bytes::from(compressed))) {
            Ok(r) => r,
            Err(e) => {
                return Sent::Failed(ExportError::Permanent {
                    reason: format!("cannot build request: {e}"),
                });
            }
        };
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| ExportError::Retryable {
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
            Err(_) => Sent::Failed(ExportError::Retryable {
                reason: format!("no answer from {} within timeout {:?}", self.uri, self.timeout),
                after: None,
            }),
            Ok(Err(e)) => Sent::Failed(e),
            Ok(Ok((parts, body))) => match classify(parts.status, &parts.headers, &body, self.v2) {
                None => Sent::Ok,
                Some(e) => Sent::Failed(e),
            },
        }
    }
}

/// Classifies a remote write answer; `None` is success.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8], v2: bool) -> Option<ExportError> {
    let detail = String::from_utf8_lossy(&body[..body.len().min(1024)]).trim().to_string();
    let reason = format!(
        "HTTP {}: {}",
        status.as_u16(),
        if detail.is_empty() { "(no reason given)" } else { &detail }
    );
    if status.is_success() {
        // Spec 2.0: a 2xx without any *-Written header on a 2.0 request means a 1.x
        // receiver decoded nothing; treat it as 415.
        let written = [
            "x-prometheus-remote-write-samples-written",
            "x-prometheus-remote-write-histograms-written",
            "x-prometheus-remote-write-exemplars-written",
        ];
        if v2 && !written.iter().any(|h| headers.contains_key(*h)) {
            return Some(ExportError::Permanent {
                reason: format!(
                    "HTTP {} without X-Prometheus-Remote-Write-Samples-Written: the receiver does not understand remote write 2.0 \
                     (treated as 415); set protobuf_message: prometheus.v1.WriteRequest",
                    status.as_u16()
                ),
            });
        }
        return None;
    }
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        let after = headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        return Some(ExportError::Retryable { reason, after });
    }
    if status == StatusCode::UNSUPPORTED_MEDIA_TYPE && v2 {
        return Some(ExportError::Permanent {
            reason: format!("{reason}; the receiver does not accept remote write 2.0, set protobuf_message: prometheus.v1.WriteRequest"),
        });
    }
    Some(ExportError::Permanent { reason })
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
                tracker.observe(&mut translation, Instant::now());
                tracker.evicted
            };
            let logged = self.evictions_logged.load(std::sync::atomic::Ordering::Relaxed);
            if evicted > 0 && evicted >= logged.saturating_mul(10).max(1) {
                self.evictions_logged.store(evicted, std::sync::atomic::Ordering::Relaxed);
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
            let total_samples = total_samples + series.iter().map(|s| s.histograms.len()).sum::<usize>();
            let shards = encode::shard(series, self.shards);
            let mut metadata_pending = self.send_metadata;
            let mut shard_requests = Vec::with_capacity(shards.len());
            // One uncompressed body buffer for every request; only compressed bodies are kept.
            let mut body = Vec::new();
            let mut compressor = encode::Compressor::default();
            for shard in shards {
                let mut bodies = Vec::new();
                for chunk in encode::chunks(shard, self.max_batch_size_bytes) {
                    let samples: usize = chunk.iter().map(|s| s.samples.len() + s.histograms.len()).sum();
                    body.clear();
                    if self.v2 {
                        encode::encode_v2_into(&mut body, &chunk, &translation.families);
                    } else {
                        let metadata = std::mem::take(&mut metadata_pending).then_some(translation.families.as_slice());
                        encode::encode_v1_into(&mut body, &chunk, metadata);
                    }
                    bodies.push((compressor.compress(&body), samples));
                }
                shard_requests.push(bodies);
            }
            drop((body, compressor, translation));
            // Shards in parallel; the requests of one shard one after another, stopping at
            // the first failure (what follows would be retried with the batch anyway).
            let results = futures::future::join_all(shard_requests.into_iter().map(|bodies| async move {
                let mut failed_samples = 0usize;
                let mut error = None;
                for (body, samples) in bodies {
                    if error.is_some() {
                        failed_samples += samples;
                        continue;
                    }
                    let sent = match body {
                        Ok(compressed) => self.send(compressed).await,
                        Err(reason) => Sent::Failed(ExportError::Permanent { reason }),
                    };
                    if let Sent::Failed(e) = sent {
                        failed_samples += samples;
                        error = Some(e);
                    }
                }
                (failed_samples, error)
            }))
            .await;
            let result = combine(results, total_samples, items, outcome);
            if !matches!(result, Err(ExportError::Retryable { .. })) {
                // Delivered or refused for good: the markers are not resent.
                self.staleness.lock().unwrap_or_else(|p| p.into_inner()).delivered();
            }
            result
        })
    }
}

/// One result for the whole batch: retry it if any shard may succeed later; fail it if
/// every shard failed permanently; otherwise report the permanently failed share as
/// rejected (partial success, not retried).
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
        return Err(ExportError::Retryable { reason, after: retry_after });
    }
    if permanent_reasons.is_empty() {
        return Ok(outcome);
    }
    let reason = permanent_reasons.join("; ");
    if failed_samples >= total_samples {
        return Err(ExportError::Permanent { reason });
    }
    // Data points are what the queue counts: estimate the rejected share, rounding up.
    let share = (items as u128 * failed_samples as u128).div_ceil(total_samples.max(1) as u128) as u64;
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
