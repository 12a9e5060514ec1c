//! An OTLP sink for tests and benchmarks: it accepts OTLP/gRPC and OTLP/HTTP exports,
//! counts the items in each accepted request exactly, and can inject faults on demand.
//!
//! It must stay much cheaper than the system under test, so it never decodes a request:
//! items are counted with the skeleton scan (`oxcol_core::skeleton::count_items`), and the
//! gRPC side moves raw bytes through [`oxcol_core::grpc::RawCodec`]. Counters only ever
//! include accepted requests; every refused or failed request goes to `failed_requests`.

mod control;
mod grpc;
mod http;
pub mod remote_write;

use bytes::Bytes;
use oxcol_core::Signal;
use oxcol_core::skeleton::count_items;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::otlp::{grpc_code_for_http, http_status_for_grpc, parse_grpc_code};

/// Where the sink listens and how it behaves at start.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub control_addr: SocketAddr,
    pub mode: FaultMode,
    /// When set, every accepted request body (decompressed protobuf) is written there.
    pub record_dir: Option<PathBuf>,
}

impl Default for SinkConfig {
    fn default() -> Self {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        SinkConfig {
            grpc_addr: any_port,
            http_addr: any_port,
            control_addr: any_port,
            mode: FaultMode::default(),
            record_dir: None,
        }
    }
}

/// Fault injection settings, changed at runtime with `POST /mode`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FaultMode {
    /// Fail this many of the next requests, then accept again.
    pub fail_next: u64,
    /// gRPC code of injected failures; when unset, derived from `http_status`
    /// (or `UNAVAILABLE` when neither is set).
    pub grpc_code: Option<String>,
    /// HTTP status of injected failures; when unset, derived from `grpc_code` (or 503).
    pub http_status: Option<u16>,
    /// `Retry-After` header (seconds) on HTTP failures.
    pub retry_after_secs: Option<u64>,
    /// `google.rpc.RetryInfo` delay (seconds) in gRPC failure details.
    pub retry_info_secs: Option<u64>,
    /// Latency added to every request before it is answered.
    pub delay_ms: u64,
    /// Answer every request UNAVAILABLE / 503 until turned off.
    pub down: bool,
    /// Accept, but answer with `partial_success.rejected_<items> = partial_reject`.
    pub partial_reject: u64,
}

/// A `POST /mode` body: every field optional; the ones present replace the current value.
/// `0` clears `http_status`, `retry_after_secs` and `retry_info_secs`; `""` clears `grpc_code`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeUpdate {
    pub fail_next: Option<u64>,
    pub grpc_code: Option<String>,
    pub http_status: Option<u16>,
    pub retry_after_secs: Option<u64>,
    pub retry_info_secs: Option<u64>,
    pub delay_ms: Option<u64>,
    pub down: Option<bool>,
    pub partial_reject: Option<u64>,
}

impl FaultMode {
    /// Applies `update` after checking it; on error nothing changes.
    pub fn apply(&mut self, update: ModeUpdate) -> Result<(), String> {
        if let Some(code) = update.grpc_code.as_deref().filter(|code| !code.is_empty()) {
            parse_grpc_code(code)?;
        }
        if let Some(status) = update
            .http_status
            .filter(|status| *status != 0 && !(100..=599).contains(status))
        {
            return Err(format!(
                "http_status {status} is not an HTTP status code (100..=599), or 0 to clear it"
            ));
        }
        let nonzero = |value: u64| (value != 0).then_some(value);
        if let Some(value) = update.fail_next {
            self.fail_next = value;
        }
        if let Some(code) = update.grpc_code {
            self.grpc_code = (!code.is_empty()).then_some(code);
        }
        if let Some(status) = update.http_status {
            self.http_status = (status != 0).then_some(status);
        }
        if let Some(secs) = update.retry_after_secs {
            self.retry_after_secs = nonzero(secs);
        }
        if let Some(secs) = update.retry_info_secs {
            self.retry_info_secs = nonzero(secs);
        }
        if let Some(ms) = update.delay_ms {
            self.delay_ms = ms;
        }
        if let Some(down) = update.down {
            self.down = down;
        }
        if let Some(count) = update.partial_reject {
            self.partial_reject = count;
        }
        Ok(())
    }

    fn failure_codes(&self) -> (tonic::Code, u16) {
        let grpc_code = self
            .grpc_code
            .as_deref()
            .and_then(|code| parse_grpc_code(code).ok());
        match (grpc_code, self.http_status) {
            (Some(code), Some(status)) => (code, status),
            (Some(code), None) => (code, http_status_for_grpc(code)),
            (None, Some(status)) => (grpc_code_for_http(status), status),
            (None, None) => (tonic::Code::Unavailable, 503),
        }
    }

    /// Decides the fate of one request, consuming one `fail_next` if it fails.
    fn take_verdict(&mut self) -> Verdict {
        if self.down {
            return Verdict::Fail(Failure {
                grpc_code: tonic::Code::Unavailable,
                http_status: 503,
                retry_after_secs: self.retry_after_secs,
                retry_info_secs: self.retry_info_secs,
                message: "sink is down (fault injection)".to_string(),
            });
        }
        if self.fail_next > 0 {
            self.fail_next -= 1;
            let (grpc_code, http_status) = self.failure_codes();
            return Verdict::Fail(Failure {
                grpc_code,
                http_status,
                retry_after_secs: self.retry_after_secs,
                retry_info_secs: self.retry_info_secs,
                message: "injected failure (fail_next)".to_string(),
            });
        }
        Verdict::Accept {
            partial_reject: self.partial_reject,
        }
    }
}

enum Verdict {
    Accept { partial_reject: u64 },
    Fail(Failure),
}

/// A request the sink refuses, with how to say so on either protocol.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub grpc_code: tonic::Code,
    pub http_status: u16,
    pub retry_after_secs: Option<u64>,
    pub retry_info_secs: Option<u64>,
    pub message: String,
}

impl Failure {
    fn malformed(reason: String) -> Failure {
        Failure {
            grpc_code: tonic::Code::InvalidArgument,
            http_status: 400,
            retry_after_secs: None,
            retry_info_secs: None,
            message: reason,
        }
    }
}

/// An accepted request: the encoded response to send back.
pub(crate) struct Accepted {
    pub response: Bytes,
}

#[derive(Default)]
struct SignalCounters {
    requests: AtomicU64,
    items: AtomicU64,
    rejected_items: AtomicU64,
}

/// Counters of one signal, as reported by `GET /stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalStats {
    /// Accepted requests.
    pub requests: u64,
    /// Accepted items (minus those reported back as rejected by `partial_reject`).
    pub items: u64,
    /// Items answered as rejected through `partial_success`.
    #[serde(default)]
    pub rejected_items: u64,
}

/// The sink's counters, as reported by `GET /stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkStats {
    pub metrics: SignalStats,
    pub traces: SignalStats,
    pub logs: SignalStats,
    /// Requests answered with an error (injected, down, or malformed).
    pub failed_requests: u64,
    /// Decompressed bytes of accepted requests.
    pub bytes: u64,
}

impl SinkStats {
    pub fn signal(&self, signal: Signal) -> SignalStats {
        match signal {
            Signal::Metrics => self.metrics,
            Signal::Traces => self.traces,
            Signal::Logs => self.logs,
        }
    }
}

/// State shared by the gRPC, HTTP and control servers of one sink.
pub struct SinkState {
    counters: [SignalCounters; 3],
    failed_requests: AtomicU64,
    bytes: AtomicU64,
    mode: Mutex<FaultMode>,
    record_dir: Option<PathBuf>,
    next_record: AtomicU64,
}

fn signal_index(signal: Signal) -> usize {
    match signal {
        Signal::Metrics => 0,
        Signal::Traces => 1,
        Signal::Logs => 2,
    }
}

impl SinkState {
    pub fn new(mode: FaultMode, record_dir: Option<PathBuf>) -> SinkState {
        SinkState {
            counters: Default::default(),
            failed_requests: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            mode: Mutex::new(mode),
            record_dir,
            next_record: AtomicU64::new(0),
        }
    }

    fn lock_mode(&self) -> std::sync::MutexGuard<'_, FaultMode> {
        // A poisoned lock only means a panic elsewhere; the mode itself is always valid.
        self.mode
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn mode(&self) -> FaultMode {
        self.lock_mode().clone()
    }

    pub fn update_mode(&self, update: ModeUpdate) -> Result<FaultMode, String> {
        let mut mode = self.lock_mode();
        mode.apply(update)?;
        Ok(mode.clone())
    }

    pub fn stats(&self) -> SinkStats {
        let signal_stats = |signal: Signal| {
            let counters = &self.counters[signal_index(signal)];
            SignalStats {
                requests: counters.requests.load(Ordering::Relaxed),
                items: counters.items.load(Ordering::Relaxed),
                rejected_items: counters.rejected_items.load(Ordering::Relaxed),
            }
        };
        SinkStats {
            metrics: signal_stats(Signal::Metrics),
            traces: signal_stats(Signal::Traces),
            logs: signal_stats(Signal::Logs),
            failed_requests: self.failed_requests.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    /// Zeroes every counter; the fault mode and the record sequence are kept.
    pub fn reset(&self) {
        for counters in &self.counters {
            counters.requests.store(0, Ordering::Relaxed);
            counters.items.store(0, Ordering::Relaxed);
            counters.rejected_items.store(0, Ordering::Relaxed);
        }
        self.failed_requests.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
    }

    /// Handles one export whose body is already decompressed protobuf.
    pub(crate) async fn export(&self, signal: Signal, body: Bytes) -> Result<Accepted, Failure> {
        let delay_ms = self.lock_mode().delay_ms;
        if delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
        let verdict = self.lock_mode().take_verdict();
        let partial_reject = match verdict {
            Verdict::Fail(failure) => {
                self.failed_requests.fetch_add(1, Ordering::Relaxed);
                return Err(failure);
            }
            Verdict::Accept { partial_reject } => partial_reject,
        };
        let items = match count_items(signal, &body) {
            Ok(items) => items,
            Err(error) => {
                self.failed_requests.fetch_add(1, Ordering::Relaxed);
                return Err(Failure::malformed(format!(
                    "cannot read {signal} request: {error}"
                )));
            }
        };
        if let Some(dir) = &self.record_dir {
            let sequence = self.next_record.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("{sequence:08}-{signal}.pb"));
            if let Err(error) = tokio::fs::write(&path, &body).await {
                self.failed_requests.fetch_add(1, Ordering::Relaxed);
                return Err(Failure {
                    grpc_code: tonic::Code::Internal,
                    http_status: 500,
                    retry_after_secs: None,
                    retry_info_secs: None,
                    message: format!("sink cannot record to {}: {error}", path.display()),
                });
            }
        }
        let rejected = partial_reject.min(items);
        let counters = &self.counters[signal_index(signal)];
        counters.requests.fetch_add(1, Ordering::Relaxed);
        counters
            .items
            .fetch_add(items - rejected, Ordering::Relaxed);
        counters
            .rejected_items
            .fetch_add(rejected, Ordering::Relaxed);
        self.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        let message = if rejected > 0 {
            "rejected by sink (partial_reject fault injection)"
        } else {
            ""
        };
        Ok(Accepted {
            response: crate::otlp::export_response(signal, rejected, message),
        })
    }
}

/// A sink serving on its three ports. Dropping it stops the servers.
pub struct RunningSink {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub control_addr: SocketAddr,
    pub state: Arc<SinkState>,
    shutdown: watch::Sender<bool>,
}

impl RunningSink {
    /// The start-up line the binary prints: `{"grpc":..,"http":..,"control":..}`.
    pub fn addresses_json(&self) -> String {
        format!(
            r#"{{"grpc":"{}","http":"{}","control":"{}"}}"#,
            self.grpc_addr, self.http_addr, self.control_addr
        )
    }

    /// `http://` base URL of the OTLP/HTTP endpoint.
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// Stops accepting connections and lets the servers drain.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

impl Drop for RunningSink {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds the three listeners and starts the servers on the current tokio runtime.
pub async fn start(config: SinkConfig) -> std::io::Result<RunningSink> {
    if let Some(dir) = &config.record_dir {
        std::fs::create_dir_all(dir)?;
    }
    let bind = |addr: SocketAddr, what: &'static str| async move {
        TcpListener::bind(addr).await.map_err(|error| {
            std::io::Error::new(
                error.kind(),
                format!("sink cannot listen for {what} on {addr}: {error}"),
            )
        })
    };
    let grpc_listener = bind(config.grpc_addr, "OTLP/gRPC").await?;
    let http_listener = bind(config.http_addr, "OTLP/HTTP").await?;
    let control_listener = bind(config.control_addr, "control").await?;
    let state = Arc::new(SinkState::new(config.mode, config.record_dir));
    let (shutdown, shutdown_signal) = watch::channel(false);
    let sink = RunningSink {
        grpc_addr: grpc_listener.local_addr()?,
        http_addr: http_listener.local_addr()?,
        control_addr: control_listener.local_addr()?,
        state: state.clone(),
        shutdown,
    };
    tokio::spawn(grpc::serve(
        grpc_listener,
        state.clone(),
        stopped(shutdown_signal.clone()),
    ));
    tokio::spawn(http::serve(
        http_listener,
        state.clone(),
        stopped(shutdown_signal.clone()),
    ));
    tokio::spawn(control::serve(
        control_listener,
        state,
        stopped(shutdown_signal),
    ));
    Ok(sink)
}

/// Resolves when shutdown is requested or the sink handle is gone.
async fn stopped(mut signal: watch::Receiver<bool>) {
    let _ = signal.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_next_is_consumed_then_requests_are_accepted() {
        let mut mode = FaultMode {
            fail_next: 2,
            ..Default::default()
        };
        assert!(
            matches!(mode.take_verdict(), Verdict::Fail(f) if f.grpc_code == tonic::Code::Unavailable && f.http_status == 503)
        );
        assert!(matches!(mode.take_verdict(), Verdict::Fail(_)));
        assert!(matches!(
            mode.take_verdict(),
            Verdict::Accept { partial_reject: 0 }
        ));
    }

    #[test]
    fn failure_codes_derive_each_other() {
        let mut mode = FaultMode::default();
        mode.apply(ModeUpdate {
            grpc_code: Some("resource_exhausted".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(mode.failure_codes(), (tonic::Code::ResourceExhausted, 429));
        mode.apply(ModeUpdate {
            grpc_code: Some(String::new()),
            http_status: Some(400),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(mode.failure_codes(), (tonic::Code::InvalidArgument, 400));
    }

    #[test]
    fn invalid_update_changes_nothing() {
        let mut mode = FaultMode::default();
        let update = ModeUpdate {
            fail_next: Some(5),
            grpc_code: Some("busy".into()),
            ..Default::default()
        };
        assert!(mode.apply(update).is_err());
        assert_eq!(mode, FaultMode::default());
        let json = r#"{"fail_next": 1, "typo": true}"#;
        assert!(serde_json::from_str::<ModeUpdate>(json).is_err());
    }

    #[tokio::test]
    async fn malformed_body_is_refused_and_not_counted() {
        let state = SinkState::new(FaultMode::default(), None);
        let failure = state
            .export(Signal::Metrics, Bytes::from_static(&[0x0a, 0xff]))
            .await
            .err()
            .unwrap();
        assert_eq!(failure.grpc_code, tonic::Code::InvalidArgument);
        let stats = state.stats();
        assert_eq!((stats.metrics.requests, stats.failed_requests), (0, 1));
    }
}
