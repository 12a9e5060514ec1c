//! The loop every pull receiver (cgroup, smaps, pprof, prometheus) runs: every
//! `collection_interval`, ask the pipelines whether they take data (memory_limiter), run
//! one scrape, hand the result to the pipelines, count the outcome.
//!
//! A scrape that fails, or that the pipelines refuse, is skipped and counted; the next
//! tick runs as usual. Scrapes never overlap: a slow scrape delays the next tick
//! (`MissedTickBehavior::Delay`) rather than piling up.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use oxcol_core::telemetry::{Counter, ReceiverCounters, Registry};
use oxcol_core::{Batch, Consumers, Signal};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One scrape's result: metrics for the pipelines, and optionally logs (e.g. a leak
/// suspect's stack) for the logs pipelines.
#[derive(Default)]
pub struct ScrapeOutput {
    pub metrics: Vec<opentelemetry_proto::tonic::metrics::v1::ResourceMetrics>,
    /// Metrics already encoded, for a scraper that writes protobuf directly instead of
    /// building `metrics` (smaps: the OTLP object model was ~half of its scrape cost).
    /// Delivered as its own batch, after `metrics`.
    pub encoded_metrics: Option<EncodedMetrics>,
    pub logs: Vec<opentelemetry_proto::tonic::logs::v1::ResourceLogs>,
}

/// An encoded `ExportMetricsServiceRequest` and its number of data points (known to the
/// writer, so the batch needs no skeleton scan to count them).
#[derive(Clone, Debug, Default)]
pub struct EncodedMetrics {
    pub bytes: bytes::Bytes,
    pub points: u64,
}

/// What a pull receiver implements. `now` is the scrape's timestamp (use it for data
/// points, so one scrape has one time).
pub trait Scraper: Send + 'static {
    fn scrape(&mut self, now: SystemTime) -> BoxFuture<'_, Result<ScrapeOutput, String>>;
}

/// Counters of a scraping receiver.
#[derive(Clone, Debug)]
pub struct ScrapeCounters {
    pub metrics: ReceiverCounters,
    pub logs: ReceiverCounters,
    /// Scrapes that failed as a whole.
    pub scrape_errors: Counter,
    /// Scrapes skipped because the pipelines refused (memory limit, queues full).
    pub scrapes_skipped: Counter,
}

impl ScrapeCounters {
    pub fn new(registry: &Registry, receiver: &str) -> Self {
        let labels = [("receiver", receiver)];
        ScrapeCounters {
            metrics: ReceiverCounters::new(registry, receiver, "scrape", Signal::Metrics),
            logs: ReceiverCounters::new(registry, receiver, "scrape", Signal::Logs),
            scrape_errors: registry.counter(
                "oxcol_receiver_scrape_errors",
                "Scrapes that failed as a whole.",
                &labels,
            ),
            scrapes_skipped: registry.counter(
                "oxcol_receiver_scrapes_skipped",
                "Scrapes skipped because the pipelines refused data (memory limit or full queues).",
                &labels,
            ),
        }
    }
}

/// Runs `scraper` every `interval` until `shutdown`. The first scrape runs at once.
pub fn spawn(
    id: &str,
    interval: Duration,
    mut scraper: impl Scraper,
    consumers: Consumers,
    registry: &Arc<Registry>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let counters = ScrapeCounters::new(registry, id);
    let id = id.to_string();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            if consumers.admit(Signal::Metrics).is_err() {
                counters.scrapes_skipped.add(1);
                continue;
            }
            let output = tokio::select! {
                _ = shutdown.cancelled() => break,
                output = scraper.scrape(SystemTime::now()) => output,
            };
            match output {
                Ok(output) => deliver(&id, output, &consumers, &counters).await,
                Err(error) => {
                    counters.scrape_errors.add(1);
                    tracing::debug!(receiver = %id, %error, "scrape failed");
                }
            }
        }
    })
}

async fn deliver(id: &str, output: ScrapeOutput, consumers: &Consumers, counters: &ScrapeCounters) {
    let encoded = output.encoded_metrics.map_or_else(
        || Batch::empty(Signal::Metrics),
        |encoded| Batch::from_encoded_counted(Signal::Metrics, encoded.bytes, encoded.points),
    );
    for (batch, signal_counters) in [
        (Batch::from_metrics(output.metrics), &counters.metrics),
        (encoded, &counters.metrics),
        (Batch::from_logs(output.logs), &counters.logs),
    ] {
        if batch.is_empty() || !consumers.accepts(batch.signal()) {
            continue;
        }
        let items = batch.items();
        let started = std::time::SystemTime::now();
        let result = consumers.consume(batch).await;
        signal_counters.finished(
            started,
            items,
            result.as_ref().err().map(ToString::to_string),
        );
        match result {
            Ok(()) => {}
            Err(refusal) => {
                counters.scrapes_skipped.add(1);
                tracing::debug!(receiver = %id, %refusal, "pipelines refused a scrape");
            }
        }
    }
}
