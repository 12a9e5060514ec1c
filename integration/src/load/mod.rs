//! A load generator for OTLP receivers: sends a pool of pre-encoded export requests over
//! OTLP/gRPC or OTLP/HTTP, at a fixed item rate or flat out, and reports what the receiver
//! accepted, refused and failed, with latency percentiles.
//!
//! Requests are encoded (and, for HTTP, compressed) once before the clock starts, so the
//! generator spends its time sending, not building protobuf. It never retries unless asked
//! (`retry`), so by default every refusal shows in the summary.

mod transport;

pub use transport::{Answer, Outcome};

use crate::otlp::{RequestShape, request_pool};
use oxcol_core::Signal;
use oxcol_core::skeleton::count_items;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use transport::Transport;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    Http,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    fn grpc_encoding(self) -> Option<tonic::codec::CompressionEncoding> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some(tonic::codec::CompressionEncoding::Gzip),
            Compression::Zstd => Some(tonic::codec::CompressionEncoding::Zstd),
        }
    }

    fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
        }
    }
}

/// What to send, where, how fast and for how long.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub protocol: Protocol,
    /// `127.0.0.1:4317` for gRPC, `http://127.0.0.1:4318` for HTTP (scheme optional).
    pub endpoint: String,
    pub signal: Signal,
    pub shape: RequestShape,
    /// Distinct requests in the pool, sent round-robin.
    pub pool: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// gRPC channels (HTTP/2 connections) shared by the workers.
    pub connections: usize,
    /// Items (points, spans, log records) per second; 0 sends flat out.
    pub rate: f64,
    /// Stop starting requests after this long. `None` with `total_points` runs until the total is sent.
    pub duration: Option<Duration>,
    /// Stop once this many items have been sent (whole requests: the last may overshoot).
    pub total_points: Option<u64>,
    pub compression: Compression,
    /// Retry refused requests with a small backoff until accepted or the run ends.
    pub retry: bool,
    /// Per-request timeout.
    pub request_timeout: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            protocol: Protocol::Grpc,
            endpoint: "127.0.0.1:4317".to_string(),
            signal: Signal::Metrics,
            shape: RequestShape {
                resources: 4,
                metrics: 10,
                points: 10,
                attributes: 3,
            },
            pool: 16,
            concurrency: 4,
            connections: 1,
            rate: 0.0,
            duration: Some(Duration::from_secs(10)),
            total_points: None,
            compression: Compression::None,
            retry: false,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The JSON summary printed at the end of a run. "points" means items of the chosen signal.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadSummary {
    /// Items in every distinct request sent (a retried request counts once).
    pub sent_points: u64,
    /// Items the receiver accepted (minus those it reported rejected in `partial_success`).
    pub accepted_points: u64,
    /// Items whose last answer was a retryable refusal (gRPC UNAVAILABLE/RESOURCE_EXHAUSTED, HTTP 429/503).
    pub refused_points: u64,
    /// Items whose last answer was anything else that is not success.
    pub failed_points: u64,
    /// Items the receiver reported rejected through `partial_success`.
    #[serde(default)]
    pub partially_rejected_points: u64,
    /// Calls made, retries included.
    pub requests: u64,
    pub elapsed_secs: f64,
    /// `accepted_points / elapsed_secs`.
    pub points_per_sec: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    /// Answers by status: gRPC code names (`OK`, `UNAVAILABLE`), HTTP status codes (`200`, `503`),
    /// or `timeout` / `transport_error`.
    pub status_counts: BTreeMap<String, u64>,
}

/// Per-worker tallies, merged at the end so workers never contend on counters.
#[derive(Default)]
struct Tally {
    sent: u64,
    accepted: u64,
    refused: u64,
    failed: u64,
    partially_rejected: u64,
    requests: u64,
    latencies_micros: Vec<u64>,
    status_counts: BTreeMap<String, u64>,
}

/// The request pool with the item count of each entry.
struct Pool {
    bodies: Vec<bytes::Bytes>,
    items: Vec<u64>,
    /// `prefix_items[i]` = items in entries `0..i`; `prefix_items[len]` = items in one cycle.
    prefix_items: Vec<u64>,
}

impl Pool {
    fn build(config: &LoadConfig) -> Result<Pool, String> {
        let plain = request_pool(config.signal, config.shape, config.pool);
        let mut items = Vec::with_capacity(plain.len());
        let mut bodies = Vec::with_capacity(plain.len());
        for body in plain {
            let count = count_items(config.signal, &body)
                .map_err(|error| format!("pool request is malformed: {error}"))?;
            items.push(count);
            bodies.push(match config.protocol {
                Protocol::Grpc => body,
                Protocol::Http => transport::compress(config.compression, &body)
                    .map_err(|error| format!("cannot compress pool request: {error}"))?,
            });
        }
        let mut prefix_items = vec![0];
        for count in &items {
            prefix_items.push(prefix_items.last().copied().unwrap_or(0) + count);
        }
        if prefix_items.last().copied().unwrap_or(0) == 0 {
            return Err("the request shape holds no items; raise --resources, --metrics and --points above 0".into());
        }
        Ok(Pool {
            bodies,
            items,
            prefix_items,
        })
    }

    fn cycle_items(&self) -> u64 {
        self.prefix_items[self.bodies.len()]
    }

    /// Items sent before ticket `ticket` starts.
    fn items_before(&self, ticket: u64) -> u64 {
        let len = self.bodies.len() as u64;
        (ticket / len) * self.cycle_items() + self.prefix_items[(ticket % len) as usize]
    }
}

/// Runs the load and returns its summary.
pub async fn run(config: LoadConfig) -> Result<LoadSummary, String> {
    if config.duration.is_none() && config.total_points.is_none() {
        return Err("the run never ends: give a duration or a total of points".into());
    }
    let pool = Arc::new(Pool::build(&config)?);
    let transport = Arc::new(Transport::new(
        config.protocol,
        &config.endpoint,
        config.signal,
        config.compression,
        config.connections,
        config.concurrency,
    )?);
    let config = Arc::new(config);
    let next_ticket = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = config.duration.map(|duration| start + duration);
    let workers: Vec<_> = (0..config.concurrency.max(1))
        .map(|worker| {
            let (config, pool, transport, next_ticket) = (
                config.clone(),
                pool.clone(),
                transport.clone(),
                next_ticket.clone(),
            );
            tokio::spawn(async move {
                run_worker(
                    worker,
                    &config,
                    &pool,
                    &transport,
                    &next_ticket,
                    start,
                    deadline,
                )
                .await
            })
        })
        .collect();
    let mut total = Tally::default();
    for worker in workers {
        let tally = worker
            .await
            .map_err(|error| format!("a load worker panicked: {error}"))?;
        merge(&mut total, tally);
    }
    let elapsed_secs = start.elapsed().as_secs_f64();
    Ok(summarize(total, elapsed_secs))
}

async fn run_worker(
    worker: usize,
    config: &LoadConfig,
    pool: &Pool,
    transport: &Transport,
    next_ticket: &AtomicU64,
    start: Instant,
    deadline: Option<Instant>,
) -> Tally {
    let mut tally = Tally::default();
    let past_deadline = |at: Instant| deadline.is_some_and(|deadline| at >= deadline);
    loop {
        let ticket = next_ticket.fetch_add(1, Ordering::Relaxed);
        let items_before = pool.items_before(ticket);
        if config
            .total_points
            .is_some_and(|total| items_before >= total)
        {
            break;
        }
        if config.rate > 0.0 {
            let due = start + Duration::from_secs_f64(items_before as f64 / config.rate);
            if past_deadline(due) {
                break;
            }
            tokio::time::sleep_until(due.into()).await;
        }
        if past_deadline(Instant::now()) {
            break;
        }
        let entry = (ticket % pool.bodies.len() as u64) as usize;
        let items = pool.items[entry];
        tally.sent += items;
        let mut backoff = Duration::from_millis(10);
        loop {
            let sent_at = Instant::now();
            let answer = transport
                .send(
                    config.signal,
                    worker,
                    pool.bodies[entry].clone(),
                    config.request_timeout,
                )
                .await;
            tally
                .latencies_micros
                .push(sent_at.elapsed().as_micros() as u64);
            tally.requests += 1;
            *tally.status_counts.entry(answer.status).or_default() += 1;
            match answer.outcome {
                Outcome::Accepted { rejected } => {
                    let rejected = rejected.min(items);
                    tally.accepted += items - rejected;
                    tally.partially_rejected += rejected;
                    break;
                }
                Outcome::Refused | Outcome::Unreachable
                    if config.retry && !past_deadline(Instant::now() + backoff) =>
                {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                Outcome::Refused => {
                    tally.refused += items;
                    break;
                }
                Outcome::Failed | Outcome::Unreachable => {
                    tally.failed += items;
                    break;
                }
            }
        }
    }
    tally
}

fn merge(total: &mut Tally, tally: Tally) {
    total.sent += tally.sent;
    total.accepted += tally.accepted;
    total.refused += tally.refused;
    total.failed += tally.failed;
    total.partially_rejected += tally.partially_rejected;
    total.requests += tally.requests;
    total.latencies_micros.extend(tally.latencies_micros);
    for (status, count) in tally.status_counts {
        *total.status_counts.entry(status).or_default() += count;
    }
}

fn summarize(mut total: Tally, elapsed_secs: f64) -> LoadSummary {
    total.latencies_micros.sort_unstable();
    let percentile_ms = |quantile: f64| {
        let latencies = &total.latencies_micros;
        if latencies.is_empty() {
            return 0.0;
        }
        let index = ((latencies.len() - 1) as f64 * quantile).round() as usize;
        latencies[index] as f64 / 1000.0
    };
    LoadSummary {
        sent_points: total.sent,
        accepted_points: total.accepted,
        refused_points: total.refused,
        failed_points: total.failed,
        partially_rejected_points: total.partially_rejected,
        requests: total.requests,
        elapsed_secs,
        points_per_sec: if elapsed_secs > 0.0 {
            total.accepted as f64 / elapsed_secs
        } else {
            0.0
        },
        latency_p50_ms: percentile_ms(0.50),
        latency_p99_ms: percentile_ms(0.99),
        status_counts: total.status_counts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_before_walks_the_pool_cycle() {
        let pool = Pool {
            bodies: vec![bytes::Bytes::new(); 3],
            items: vec![10, 20, 30],
            prefix_items: vec![0, 10, 30, 60],
        };
        let starts: Vec<u64> = (0..5).map(|ticket| pool.items_before(ticket)).collect();
        assert_eq!(starts, [0, 10, 30, 60, 70]);
    }

    #[test]
    fn percentiles_come_from_sorted_latencies() {
        let tally = Tally {
            latencies_micros: (1..=100).rev().map(|ms| ms * 1000).collect(),
            ..Default::default()
        };
        let summary = summarize(tally, 1.0);
        assert_eq!(summary.latency_p50_ms, 51.0);
        assert_eq!(summary.latency_p99_ms, 99.0);
    }
}
