//! The sending queue and retry that wrap every exporter (the Collector's exporterhelper):
//! `sending_queue` bounds what waits to be sent, `retry_on_failure` retries retryable
//! failures with exponential backoff and jitter, honouring the server's requested delay.
//!
//! Layers, outermost first: queue (bounded; full -> the pipeline refuses upstream) ->
//! consumers (`num_consumers` concurrent sends) -> retry -> the exporter's single attempt.
//! A batch leaves the queue only as sent, as a permanent failure (counted, logged), or as
//! given up after `max_elapsed_time` or at shutdown (counted, logged). Never silently.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oxcol_core::telemetry::ExporterCounters;
use oxcol_core::{Batch, BatchSettings, ExportError, Exporter, GoDuration, Refusal, Signal};
use rand::Rng;
use serde::Deserialize;
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// `sending_queue` as in the Collector.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Default true. When false, the pipeline waits for each send (with retries).
    pub enabled: bool,
    /// Concurrent senders. Default 10.
    pub num_consumers: usize,
    /// Capacity in batches. Default 1000.
    pub queue_size: usize,
    /// A `file_storage` extension id for a disk queue (not in this release).
    pub storage: Option<String>,
    /// Collector key: wait for room instead of refusing when full. Default false.
    pub blocking: bool,
    /// Collector key: what `queue_size` counts. Only `requests` is supported.
    pub sizer: Option<String>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig { enabled: true, num_consumers: 10, queue_size: 1000, storage: None, blocking: false, sizer: None }
    }
}

impl QueueConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.enabled && self.queue_size == 0 {
            errors.push("sending_queue.queue_size must be greater than 0".to_string());
        }
        if self.enabled && self.num_consumers == 0 {
            errors.push("sending_queue.num_consumers must be greater than 0".to_string());
        }
        if let Some(storage) = &self.storage {
            errors.push(format!(
                "sending_queue.storage: {storage}: disk queues (file_storage) are not supported yet; remove `storage` to use the in-memory queue"
            ));
        }
        if let Some(sizer) = &self.sizer {
            if sizer != "requests" {
                errors.push(format!("sending_queue.sizer: {sizer:?} is not supported; only \"requests\" is"));
            }
        }
        if self.blocking {
            errors.push("sending_queue.blocking: true is not supported; a full queue refuses upstream with a retryable error".to_string());
        }
        errors
    }
}

/// `retry_on_failure` as in the Collector, with its defaults.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Default true.
    pub enabled: bool,
    /// First wait after a failure. Default 5s.
    pub initial_interval: GoDuration,
    /// Jitter: each wait is drawn from [w*(1-f), w*(1+f)]. Default 0.5.
    pub randomization_factor: f64,
    /// Growth of the wait after each failure. Default 1.5.
    pub multiplier: f64,
    /// Upper bound of one wait. Default 30s.
    pub max_interval: GoDuration,
    /// Give up after this long since the first attempt; 0 = never. Default 300s.
    pub max_elapsed_time: GoDuration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: GoDuration::from_secs(5),
            randomization_factor: 0.5,
            multiplier: 1.5,
            max_interval: GoDuration::from_secs(30),
            max_elapsed_time: GoDuration::from_secs(300),
        }
    }
}

impl RetryConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !(0.0..=1.0).contains(&self.randomization_factor) {
            errors.push("retry_on_failure.randomization_factor must be between 0 and 1".to_string());
        }
        if self.multiplier < 1.0 {
            errors.push("retry_on_failure.multiplier must be at least 1".to_string());
        }
        errors
    }

    fn jittered(&self, interval: Duration) -> Duration {
        let factor = self.randomization_factor;
        if factor <= 0.0 {
            return interval;
        }
        let scale = rand::rng().random_range((1.0 - factor)..=(1.0 + factor));
        interval.mul_f64(scale)
    }
}

/// One exporter instance for one signal, with its queue and consumers.
pub struct QueuedExporter {
    id: String,
    signal: Signal,
    sender: std::sync::RwLock<Option<mpsc::Sender<Batch>>>,
    inline: Option<Arc<Sender>>,
    consumers: Mutex<JoinSet<()>>,
    give_up: CancellationToken,
    counters: ExporterCounters,
}

/// The retrying sender shared by the consumers.
struct Sender {
    id: String,
    exporter: Arc<dyn Exporter>,
    retry: RetryConfig,
    counters: ExporterCounters,
    give_up: CancellationToken,
}

impl QueuedExporter {
    /// Starts the consumers. Must be called inside a tokio runtime.
    pub fn start(
        id: &str,
        signal: Signal,
        exporter: Arc<dyn Exporter>,
        queue: &QueueConfig,
        retry: &RetryConfig,
        batching: Option<BatchSettings>,
        counters: ExporterCounters,
    ) -> QueuedExporter {
        let give_up = CancellationToken::new();
        let sender = Arc::new(Sender {
            id: id.to_string(),
            exporter,
            retry: retry.clone(),
            counters: counters.clone(),
            give_up: give_up.clone(),
        });
        let mut consumers = JoinSet::new();
        if !queue.enabled {
            return QueuedExporter {
                id: id.to_string(),
                signal,
                sender: std::sync::RwLock::new(None),
                inline: Some(sender),
                consumers: Mutex::new(consumers),
                give_up,
                counters,
            };
        }
        counters.queue_capacity.set(queue.queue_size as i64);
        let (tx, rx) = mpsc::channel::<Batch>(queue.queue_size);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..queue.num_consumers {
            let rx = Arc::clone(&rx);
            let sender = Arc::clone(&sender);
            consumers.spawn(async move {
                loop {
                    let next = take_batch(&rx, batching, &sender.counters).await;
                    let Some(batch) = next else { break };
                    for piece in split_for_send(batch, batching, &sender.id) {
                        // The outcome is already counted and logged by send_with_retry.
                        let _ = sender.send_with_retry(piece).await;
                    }
                }
            });
        }
        QueuedExporter { id: id.to_string(), signal, sender: std::sync::RwLock::new(Some(tx)), inline: None, consumers: Mutex::new(consumers), give_up, counters }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// Places the batch in the queue, or refuses it when the queue is full. With the queue
    /// disabled, sends it now (with retries) and returns the outcome.
    pub async fn submit(&self, batch: Batch) -> Result<(), Refusal> {
        if let Some(inline) = &self.inline {
            return inline.send_with_retry(batch).await;
        }
        let items = batch.items();
        let attempt = match self.sender.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(sender) => sender.try_send(batch),
            None => return Err(Refusal::Unavailable { reason: format!("exporter {} is shut down", self.id) }),
        };
        match attempt {
            Ok(()) => {
                self.counters.queue_size.add(1);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.enqueue_failed.add(items);
                Err(Refusal::overloaded(format!("sending queue of exporter {} is full", self.id)))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(Refusal::Unavailable { reason: format!("exporter {} is shut down", self.id) })
            }
        }
    }

    /// Stops taking batches, lets the consumers drain the queue until `deadline`, then
    /// makes them give up (what is left is counted as failed and logged).
    pub async fn shutdown(&self, deadline: Instant) {
        self.sender.write().unwrap_or_else(|p| p.into_inner()).take();
        let mut consumers = self.consumers.lock().await;
        let drained = tokio::time::timeout_at(deadline.into(), async {
            while consumers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(exporter = %self.id, "shutdown timeout reached with data still queued or in retry; giving up on it");
            self.give_up.cancel();
            // Consumers now finish promptly: waits are cancelled, queued batches counted.
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while consumers.join_next().await.is_some() {}
            })
            .await;
            consumers.abort_all();
        }
    }
}

/// Takes the next batch to send from the queue. With batching, keeps taking queued
/// batches (waiting up to `timeout` for more) until `send_batch_size` items are gathered.
/// One consumer gathers at a time; the others are sending meanwhile.
async fn take_batch(rx: &Mutex<mpsc::Receiver<Batch>>, batching: Option<BatchSettings>, counters: &ExporterCounters) -> Option<Batch> {
    let mut rx = rx.lock().await;
    let mut batch = rx.recv().await?;
    counters.queue_size.add(-1);
    let Some(settings) = batching else { return Some(batch) };
    let deadline = tokio::time::Instant::now() + settings.timeout;
    while batch.items() < settings.send_batch_size {
        let more = match rx.try_recv() {
            Ok(more) => more,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(more)) => more,
                Ok(None) | Err(_) => break,
            },
        };
        counters.queue_size.add(-1);
        if let Err(error) = batch.append(more) {
            // Only batches of this queue's signal are ever queued.
            tracing::error!(%error, "cannot merge queued batches");
        }
    }
    Some(batch)
}

/// Cuts a gathered batch to `send_batch_max_size`.
fn split_for_send(batch: Batch, batching: Option<BatchSettings>, id: &str) -> Vec<Batch> {
    let max = batching.map(|b| b.send_batch_max_size).unwrap_or(0);
    if max == 0 || batch.items() <= max {
        return vec![batch];
    }
    match batch.clone().split(max) {
        Ok(pieces) => pieces,
        Err(error) => {
            tracing::warn!(exporter = %id, %error, "cannot split batch to send_batch_max_size; sending it whole");
            vec![batch]
        }
    }
}

impl Sender {
    async fn send_with_retry(&self, batch: Batch) -> Result<(), Refusal> {
        let items = batch.items();
        let started = Instant::now();
        let mut interval = self.retry.initial_interval.get();
        loop {
            if self.give_up.is_cancelled() {
                self.counters.send_failed.add(items);
                tracing::error!(exporter = %self.id, items, "dropping data: shutting down before it could be sent");
                return Err(Refusal::Unavailable { reason: "exporter shutting down".into() });
            }
            let attempt = tokio::select! {
                result = self.exporter.export(batch.clone()) => result,
                _ = self.give_up.cancelled() => continue,
            };
            match attempt {
                Ok(outcome) => {
                    let rejected = outcome.rejected.min(items);
                    self.counters.sent.add(items - rejected);
                    if rejected > 0 || !outcome.message.is_empty() {
                        self.counters.send_failed.add(rejected);
                        tracing::warn!(exporter = %self.id, rejected, message = %outcome.message, "partial success: the destination rejected part of the data (not retried)");
                    }
                    return Ok(());
                }
                Err(ExportError::Permanent { reason }) => {
                    self.counters.send_failed.add(items);
                    tracing::error!(exporter = %self.id, items, %reason, "dropping data: permanent error, not retried");
                    return Err(Refusal::Invalid { reason });
                }
                Err(ExportError::Retryable { reason, after }) => {
                    if !self.retry.enabled {
                        self.counters.send_failed.add(items);
                        tracing::error!(exporter = %self.id, items, %reason, "dropping data: send failed and retry_on_failure is disabled");
                        return Err(Refusal::Unavailable { reason });
                    }
                    let wait = self.retry.jittered(interval).max(after.unwrap_or_default());
                    let max_elapsed = self.retry.max_elapsed_time.get();
                    if !max_elapsed.is_zero() && started.elapsed() + wait > max_elapsed {
                        self.counters.send_failed.add(items);
                        tracing::error!(exporter = %self.id, items, %reason, "dropping data: no more retries left (max_elapsed_time)");
                        return Err(Refusal::Unavailable { reason });
                    }
                    self.counters.retries.add(items);
                    tracing::debug!(exporter = %self.id, %reason, wait_ms = wait.as_millis() as u64, "send failed, will retry");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.give_up.cancelled() => {}
                    }
                    interval = interval.mul_f64(self.retry.multiplier).min(self.retry.max_interval.get());
                }
            }
        }
    }
}

/// Parses an HTTP `Retry-After` value: delay seconds or an HTTP-date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::future::BoxFuture;
    use oxcol_core::telemetry::Registry;
    use oxcol_core::ExportOutcome;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Fails `failures` times with `error`, then succeeds.
    struct Flaky {
        failures: usize,
        error: ExportError,
        calls: AtomicUsize,
    }

    impl Exporter for Flaky {
        fn export(&self, _batch: Batch) -> BoxFuture<'_, Result<ExportOutcome, ExportError>> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            let result = if call < self.failures { Err(self.error.clone()) } else { Ok(ExportOutcome::default()) };
            Box::pin(async move { result })
        }
    }

    fn fast_retry() -> RetryConfig {
        RetryConfig {
            initial_interval: GoDuration::from_millis(5),
            max_interval: GoDuration::from_millis(20),
            max_elapsed_time: GoDuration::from_secs(5),
            ..RetryConfig::default()
        }
    }

    fn batch() -> Batch {
        Batch::from_metrics(oxcol_core::testdata::metrics_request(1, 1, 3).resource_metrics)
    }

    #[tokio::test]
    async fn retries_retryable_errors_until_success() {
        let registry = Registry::new();
        let counters = ExporterCounters::new(&registry, "otlp", Signal::Metrics);
        let flaky = Arc::new(Flaky {
            failures: 3,
            error: ExportError::Retryable { reason: "unavailable".into(), after: None },
            calls: AtomicUsize::new(0),
        });
        let queued = QueuedExporter::start("otlp", Signal::Metrics, flaky.clone(), &QueueConfig::default(), &fast_retry(), None, counters.clone());
        queued.submit(batch()).await.unwrap();
        queued.shutdown(Instant::now() + Duration::from_secs(5)).await;
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 4);
        assert_eq!(counters.sent.get(), 3);
        assert_eq!(counters.send_failed.get(), 0);
        assert_eq!(counters.retries.get(), 9);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let registry = Registry::new();
        let counters = ExporterCounters::new(&registry, "otlp", Signal::Metrics);
        let flaky = Arc::new(Flaky {
            failures: 10,
            error: ExportError::Permanent { reason: "bad request".into() },
            calls: AtomicUsize::new(0),
        });
        let queued = QueuedExporter::start("otlp", Signal::Metrics, flaky.clone(), &QueueConfig::default(), &fast_retry(), None, counters.clone());
        queued.submit(batch()).await.unwrap();
        queued.shutdown(Instant::now() + Duration::from_secs(5)).await;
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 1);
        assert_eq!(counters.send_failed.get(), 3);
        assert_eq!(counters.sent.get(), 0);
    }

    #[tokio::test]
    async fn server_delay_is_honoured_and_full_queue_refuses() {
        let registry = Registry::new();
        let counters = ExporterCounters::new(&registry, "otlp", Signal::Metrics);
        let flaky = Arc::new(Flaky {
            failures: 1,
            error: ExportError::Retryable { reason: "throttled".into(), after: Some(Duration::from_millis(300)) },
            calls: AtomicUsize::new(0),
        });
        let queue = QueueConfig { num_consumers: 1, queue_size: 1, ..QueueConfig::default() };
        let queued = QueuedExporter::start("otlp", Signal::Metrics, flaky.clone(), &queue, &fast_retry(), None, counters.clone());
        let started = Instant::now();
        queued.submit(batch()).await.unwrap();
        // Give the consumer time to take the first batch into its retry wait.
        tokio::time::sleep(Duration::from_millis(50)).await;
        queued.submit(batch()).await.unwrap();
        let refused = queued.submit(batch()).await.unwrap_err();
        assert!(matches!(refused, Refusal::Overloaded { .. }), "{refused:?}");
        assert_eq!(counters.enqueue_failed.get(), 3);
        queued.shutdown(Instant::now() + Duration::from_secs(5)).await;
        assert!(started.elapsed() >= Duration::from_millis(300), "the RetryInfo/Retry-After delay was not honoured");
        assert_eq!(counters.sent.get(), 6);
    }

    #[tokio::test]
    async fn shutdown_gives_up_on_a_dead_backend_and_counts_it() {
        let registry = Registry::new();
        let counters = ExporterCounters::new(&registry, "otlp", Signal::Metrics);
        let dead = Arc::new(Flaky {
            failures: usize::MAX,
            error: ExportError::Retryable { reason: "connection refused".into(), after: None },
            calls: AtomicUsize::new(0),
        });
        let queued = QueuedExporter::start("otlp", Signal::Metrics, dead, &QueueConfig::default(), &fast_retry(), None, counters.clone());
        queued.submit(batch()).await.unwrap();
        queued.shutdown(Instant::now() + Duration::from_millis(200)).await;
        assert_eq!(counters.send_failed.get(), 3);
        assert_eq!(counters.sent.get(), 0);
    }

    /// Records the item count of every batch it is given.
    #[derive(Default)]
    struct Recorder {
        sizes: std::sync::Mutex<Vec<u64>>,
    }

    impl Exporter for Recorder {
        fn export(&self, batch: Batch) -> BoxFuture<'_, Result<ExportOutcome, ExportError>> {
            self.sizes.lock().unwrap().push(batch.items());
            Box::pin(async { Ok(ExportOutcome::default()) })
        }
    }

    #[tokio::test]
    async fn batching_gathers_up_to_size_and_cuts_to_max() {
        let registry = Registry::new();
        let counters = ExporterCounters::new(&registry, "otlp", Signal::Metrics);
        let recorder = Arc::new(Recorder::default());
        let batching = BatchSettings { send_batch_size: 9, send_batch_max_size: 10, timeout: Duration::from_millis(100) };
        let queue = QueueConfig { num_consumers: 1, ..QueueConfig::default() };
        let queued = QueuedExporter::start("otlp", Signal::Metrics, recorder.clone(), &queue, &fast_retry(), Some(batching), counters.clone());
        // Ten batches of 3 points, queued at once: gathered to >= 9, cut to <= 10.
        for _ in 0..10 {
            queued.submit(batch()).await.unwrap();
        }
        queued.shutdown(Instant::now() + Duration::from_secs(5)).await;
        let sizes = recorder.sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<u64>(), 30);
        assert!(sizes.iter().all(|s| *s <= 10), "{sizes:?}");
        assert!(sizes.len() <= 4, "expected gathering, got {sizes:?}");
        assert_eq!(counters.queue_size.get(), 0);
        assert_eq!(counters.sent.get(), 30);
    }

    #[tokio::test]
    async fn batching_sends_a_partial_batch_after_the_timeout() {
        let registry = Registry::new();
        let counters = ExporterCounters::new(&registry, "otlp", Signal::Metrics);
        let recorder = Arc::new(Recorder::default());
        let batching = BatchSettings { send_batch_size: 1000, send_batch_max_size: 0, timeout: Duration::from_millis(50) };
        let queued = QueuedExporter::start("otlp", Signal::Metrics, recorder.clone(), &QueueConfig::default(), &fast_retry(), Some(batching), counters.clone());
        queued.submit(batch()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(recorder.sizes.lock().unwrap().clone(), vec![3], "the partial batch was not sent after the timeout");
        queued.shutdown(Instant::now() + Duration::from_secs(5)).await;
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        let future = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
        let parsed = parse_retry_after(&future).unwrap();
        assert!(parsed > Duration::from_secs(100) && parsed <= Duration::from_secs(120), "{parsed:?}");
        assert_eq!(parse_retry_after("soon"), None);
    }
}
