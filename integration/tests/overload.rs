//! Overload: ten times more input than the exporter can send, against the real `oxcol`
//! binary under a `memory_limiter`. RSS is sampled every 100 ms and must never exceed the
//! configured limit; every refusal must be retryable; every acknowledged point must reach
//! the sink (none lost); the sink's throughput must not collapse during the overload; and
//! once the load drops, the backlog drains and oxcol accepts everything again.
//!
//! The exporter's capacity is fixed by the sink: it answers each request after 100 ms and
//! the exporter has one consumer, so C = 10 requests/s x 200 points = 2000 points/s. The
//! load offers 10 C with client retries (as an SDK retries RESOURCE_EXHAUSTED), then 0.2 C
//! while the backlog drains, then 0.2 C without retries: all of it must be accepted.
//!
//! `OXCOL_OVERLOAD_SECS` (default 10) sets the length of the overload phase;
//! `OXCOL_OVERLOAD_CSV=path` writes the samples (t, RSS, sink points, queue) for the plot
//! (`docs/plot_overload.py`). The recorded 5-minute run is in docs/reliability.md.
//!
//! Run: `cargo build -p oxcol && cargo test -p oxcol-integration --test overload -- --nocapture`

mod common;

use common::*;
use oxcol_integration::load::{self, LoadConfig, LoadSummary, Protocol};
use oxcol_integration::otlp::RequestShape;
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LIMIT_MIB: u64 = 32;
const SPIKE_MIB: u64 = 8;
const MIB: f64 = 1024.0 * 1024.0;
/// 2 resources x 10 metrics x 10 points, 6 attributes each: ~35 KB per request.
const SHAPE: RequestShape = RequestShape {
    resources: 2,
    metrics: 10,
    points: 10,
    attributes: 6,
};
const POINTS_PER_REQUEST: f64 = 200.0;
const SINK_DELAY_MS: u64 = 100;
/// Exporter capacity: one consumer, one request per SINK_DELAY_MS.
const CAPACITY: f64 = POINTS_PER_REQUEST * 1000.0 / SINK_DELAY_MS as f64;

#[derive(Clone, Copy, Debug)]
struct Sample {
    t: f64,
    rss: u64,
    sink_points: u64,
    queue: f64,
    phase: u8,
}

fn load_config(oxcol: &Oxcol, rate: f64, secs: f64, retry: bool, concurrency: usize) -> LoadConfig {
    LoadConfig {
        protocol: Protocol::Grpc,
        endpoint: oxcol.grpc_endpoint(),
        shape: SHAPE,
        pool: 8,
        concurrency,
        connections: 2,
        rate,
        duration: Some(Duration::from_secs_f64(secs)),
        retry,
        request_timeout: Duration::from_secs(10),
        ..LoadConfig::default()
    }
}

fn check_answers(what: &str, summary: &LoadSummary) {
    assert_eq!(
        summary.failed_points, 0,
        "{what}: every refusal must be retryable: {summary:?}"
    );
    for code in summary.status_counts.keys() {
        assert!(
            ["OK", "RESOURCE_EXHAUSTED", "UNAVAILABLE"].contains(&code.as_str()),
            "{what}: unexpected answer {code}: {summary:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_times_overload_stays_under_the_memory_limit_loses_nothing_and_recovers() {
    let overload_secs: f64 = std::env::var("OXCOL_OVERLOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10.0);
    bounded(Duration::from_secs_f64(overload_secs + 100.0), async {
        let sink = start_sink().await;
        set_mode(&sink, json!({"delay_ms": SINK_DELAY_MS}));
        let components = format!(
            "processors:\n  memory_limiter:\n    check_interval: 1s\n    limit_mib: {LIMIT_MIB}\n    spike_limit_mib: {SPIKE_MIB}\nexporters:\n{}",
            otlp_exporter(
                "otlp",
                &sink,
                "    compression: none\n    sending_queue:\n      queue_size: 100000\n      num_consumers: 1\n    retry_on_failure:\n      max_elapsed_time: 0s\n",
            )
        );
        let oxcol = Oxcol::start(
            "",
            &components,
            "    metrics:\n      receivers: [otlp]\n      processors: [memory_limiter]\n      exporters: [otlp]\n",
        )
        .await;

        // The sampler: RSS, sink points and queue size every 100 ms, tagged with the phase.
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::new(Mutex::new(Vec::new()));
        let phase = Arc::new(std::sync::atomic::AtomicU8::new(0));
        let started = Instant::now();
        let sampler = {
            let (samples, phase, state) = (samples.clone(), phase.clone(), sink.state.clone());
            let pid = oxcol.pid();
            let metrics_port = oxcol.metrics_port;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tick.tick().await;
                    let Some(rss) = rss_bytes(pid) else { break };
                    let queue = queue_size(metrics_port).await.unwrap_or(f64::NAN);
                    let sample = Sample {
                        t: started.elapsed().as_secs_f64(),
                        rss,
                        sink_points: state.stats().metrics.items,
                        queue,
                        phase: phase.load(std::sync::atomic::Ordering::Relaxed),
                    };
                    samples.lock().expect("sampler lock").push(sample);
                }
            })
        };

        // Phase 1: 10 x capacity, with client retries.
        phase.store(1, std::sync::atomic::Ordering::Relaxed);
        let sink_before = sink.state.stats().metrics.items;
        let overload = load::run(load_config(&oxcol, 10.0 * CAPACITY, overload_secs, true, 32)).await.expect("load runs");
        let sink_during = sink.state.stats().metrics.items - sink_before;
        eprintln!("overload ({overload_secs} s at {} points/s): {overload:?}", 10.0 * CAPACITY);
        check_answers("overload", &overload);
        assert!(
            overload.status_counts.get("RESOURCE_EXHAUSTED").copied().unwrap_or(0) > 0,
            "the overload was never refused: {overload:?}"
        );
        let goodput = sink_during as f64 / overload.elapsed_secs;
        eprintln!("sink throughput during the overload: {goodput:.0} points/s (capacity {CAPACITY:.0})");
        assert!(goodput > 0.7 * CAPACITY, "the exporter's throughput collapsed under overload: {goodput:.0} points/s");

        // Phase 2: the load drops to 0.2 x capacity (with retries) until the backlog drains.
        phase.store(2, std::sync::atomic::Ordering::Relaxed);
        let drain_started = Instant::now();
        let mut drain = LoadSummary::default();
        loop {
            let part = load::run(load_config(&oxcol, 0.2 * CAPACITY, 2.0, true, 4)).await.expect("load runs");
            check_answers("drain", &part);
            drain.accepted_points += part.accepted_points;
            drain.sent_points += part.sent_points;
            drain.refused_points += part.refused_points;
            let queued = oxcol.metric("otelcol_exporter_queue_size", &[("exporter", "otlp")]).await;
            if queued <= 1.0 {
                break;
            }
            assert!(drain_started.elapsed() < Duration::from_secs(90), "the backlog did not drain in 90 s ({queued} batches left)");
        }
        let drain_secs = drain_started.elapsed().as_secs_f64();
        eprintln!("backlog drained in {drain_secs:.1} s under 0.2 x load: {drain:?}");

        // Phase 3: still 0.2 x capacity, no retries: everything is accepted at once.
        phase.store(3, std::sync::atomic::Ordering::Relaxed);
        let after = load::run(load_config(&oxcol, 0.2 * CAPACITY, 3.0, false, 4)).await.expect("load runs");
        eprintln!("after the overload: {after:?}");
        check_answers("after", &after);
        assert_eq!(after.refused_points, 0, "refusals continue after the load dropped: {after:?}");
        assert!(after.accepted_points as f64 >= 0.2 * CAPACITY * 3.0 * 0.8, "throughput did not recover: {after:?}");

        // Nothing acknowledged is lost (and nothing is sent twice).
        let acknowledged = overload.accepted_points + drain.accepted_points + after.accepted_points;
        let stats = wait_sink(&sink, Duration::from_secs(30), |s| s.metrics.items >= acknowledged).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let delivered = sink.state.stats().metrics.items;
        phase.store(4, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
        sampler.abort();
        assert_eq!(delivered, acknowledged, "acknowledged {acknowledged}, delivered {delivered} ({stats:?})");

        // RSS never above the limit.
        let samples = samples.lock().expect("sampler lock").clone();
        let max = samples.iter().map(|s| s.rss).max().unwrap_or(0);
        let refused_by_limiter = oxcol
            .metric("oxcol_receiver_rejected_requests", &[("reason", "memory_limit")])
            .await;
        eprintln!(
            "RESULT overload: {} samples, max RSS {:.1} MiB (limit {LIMIT_MIB}), requests refused by the memory_limiter {refused_by_limiter}, \
             sent {} acknowledged {acknowledged} delivered {delivered} lost 0, drain {drain_secs:.1} s",
            samples.len(),
            max as f64 / MIB,
            overload.sent_points + drain.sent_points + after.sent_points,
        );
        assert!(samples.len() as f64 >= (overload_secs + drain_secs) * 10.0 * 0.8, "only {} RSS samples", samples.len());
        assert!(max < LIMIT_MIB << 20, "RSS reached {:.1} MiB, above the {LIMIT_MIB} MiB limit", max as f64 / MIB);
        assert!(refused_by_limiter > 0.0, "the memory_limiter never refused: the queue, not the limiter, bounded memory");

        if let Ok(path) = std::env::var("OXCOL_OVERLOAD_CSV") {
            let mut out = std::fs::File::create(&path).expect("creates the CSV");
            writeln!(out, "t_s,rss_mib,sink_points,queue_batches,phase").expect("writes");
            for s in &samples {
                writeln!(out, "{:.2},{:.2},{},{},{}", s.t, s.rss as f64 / MIB, s.sink_points, s.queue, s.phase).expect("writes");
            }
            eprintln!("samples written to {path}");
        }
    })
    .await;
}

/// `otelcol_exporter_queue_size` from the self-metrics endpoint (bounded wait).
async fn queue_size(port: u16) -> Option<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        metric_sum(
            &String::from_utf8_lossy(&response),
            "otelcol_exporter_queue_size",
            &[],
        )
    };
    tokio::time::timeout(Duration::from_secs(1), exchange)
        .await
        .ok()
        .flatten()
}
