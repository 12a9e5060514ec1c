//! `statsd` receiver: StatsD and DogStatsD lines over UDP, TCP or a unix datagram socket,
//! aggregated for `aggregation_interval` and released as OTLP metrics, with the keys,
//! defaults and output of the Collector's `receiver/statsdreceiver` (v0.161).
//!
//! Lines are parsed where they arrive ([`parse`]) and added to one shared aggregator
//! ([`aggregate`]) under a short lock; a flush task takes the interval's state every
//! `aggregation_interval` and hands one batch per client to the pipelines. StatsD has no
//! answer: a malformed line is counted (`otelcol_receiver_received_statsd_metrics
//! {parse_success="false"}`) and skipped, points the pipelines refuse are counted
//! (`otelcol_receiver_refused_metric_points`) and lost. At shutdown the current interval
//! is flushed (the Collector drops it). It must never panic on input.

pub mod aggregate;
pub mod expo;
pub mod parse;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use oxcol_core::telemetry::{Counter, ReceiverCounters, Registry};
use oxcol_core::{Batch, Consumers, GoDuration, Signal};
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use aggregate::{
    Aggregator, CounterType, Dropped, ExplicitBuckets, Observer, Settings, SourceKeying,
};

pub const TYPE: &str = "statsd";
pub const ALIASES: &[&str] = &["statsd"];

/// Default endpoint of the network transports (the Collector's).
pub const DEFAULT_ENDPOINT: &str = "localhost:8125";
/// Default socket of `transport: unixgram`.
pub const DEFAULT_SOCKET: &str = "/var/run/statsd-receiver.sock";
/// Longest TCP line kept; a longer one is counted as malformed and skipped.
pub const MAX_TCP_LINE: usize = 65_536;
/// Largest datagram read (the Collector's buffer).
const MAX_DATAGRAM: usize = 65_527;
/// TCP connections served at once; more wait in the accept backlog.
const MAX_TCP_CONNECTIONS: usize = 1024;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// host:port for udp/tcp (default `localhost:8125`), a socket path for unixgram
    /// (default `/var/run/statsd-receiver.sock`).
    pub endpoint: Option<String>,
    /// `udp` (default), `udp4`, `udp6`, `tcp`, `tcp4`, `tcp6`, `unixgram`.
    pub transport: String,
    /// confignet's client dial settings: accepted, meaningless for a listener.
    pub dialer: Option<serde::de::IgnoredAny>,
    pub aggregation_interval: GoDuration,
    pub enable_ip_only_aggregation: bool,
    pub ignore_host: bool,
    pub enable_metric_type: bool,
    pub enable_simple_tags: bool,
    pub is_monotonic_counter: bool,
    /// `int` (default), `float`, `stochastic_int`.
    pub counter_type: String,
    pub timer_histogram_mapping: Vec<TimerHistogramMapping>,
    /// Mode of the unixgram socket file. Default 0622.
    pub socket_permissions: u32,
    /// SO_RCVBUF of the unixgram socket; 0 = the system default.
    pub socket_buffer_size: usize,
    /// oxcol key: series plus stored samples (summary values, gauge-mapped observations,
    /// set members) held per interval; lines past it are dropped and counted. Default 1000000.
    pub max_points_per_interval: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: None,
            transport: "udp".to_string(),
            dialer: None,
            aggregation_interval: GoDuration::from_secs(60),
            enable_ip_only_aggregation: false,
            ignore_host: false,
            enable_metric_type: false,
            enable_simple_tags: false,
            is_monotonic_counter: false,
            counter_type: "int".to_string(),
            timer_histogram_mapping: ["timer", "histogram", "distribution"]
                .into_iter()
                .map(|statsd_type| TimerHistogramMapping {
                    statsd_type: statsd_type.to_string(),
                    observer_type: "gauge".to_string(),
                    ..Default::default()
                })
                .collect(),
            socket_permissions: 0o622,
            socket_buffer_size: 0,
            max_points_per_interval: 1_000_000,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TimerHistogramMapping {
    /// `timer`/`timing`, `histogram`, `distribution`.
    pub statsd_type: String,
    /// `gauge`, `summary`, `histogram`.
    pub observer_type: String,
    pub histogram: HistogramConfig,
    pub summary: SummaryConfig,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HistogramConfig {
    /// Most buckets per sign of the exponential histogram: 2..16384; 0 = 160.
    pub max_size: i32,
    pub explicit_buckets: Option<Vec<ExplicitBucket>>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExplicitBucket {
    pub matcher_pattern: String,
    pub buckets: Vec<f64>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SummaryConfig {
    /// In [0, 100]. Default 0, 10, 50, 90, 95, 100.
    pub percentiles: Vec<f64>,
}

/// The transport, by family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Udp(Family),
    Tcp(Family),
    Unixgram,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Any,
    V4,
    V6,
}

impl Transport {
    fn parse(text: &str) -> Option<Transport> {
        Some(match text.to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp(Family::Any),
            "udp4" => Transport::Udp(Family::V4),
            "udp6" => Transport::Udp(Family::V6),
            "tcp" => Transport::Tcp(Family::Any),
            "tcp4" => Transport::Tcp(Family::V4),
            "tcp6" => Transport::Tcp(Family::V6),
            "unixgram" => Transport::Unixgram,
            _ => return None,
        })
    }

    /// The `transport` label of the receiver's self-metrics.
    fn label(self) -> &'static str {
        match self {
            Transport::Udp(Family::Any) => "udp",
            Transport::Udp(Family::V4) => "udp4",
            Transport::Udp(Family::V6) => "udp6",
            Transport::Tcp(Family::Any) => "tcp",
            Transport::Tcp(Family::V4) => "tcp4",
            Transport::Tcp(Family::V6) => "tcp6",
            Transport::Unixgram => "unixgram",
        }
    }
}

impl Config {
    fn transport(&self) -> Option<Transport> {
        Transport::parse(&self.transport)
    }

    /// The endpoint, or the transport's default.
    pub fn endpoint(&self) -> String {
        match (&self.endpoint, self.transport()) {
            (Some(endpoint), _) if !endpoint.is_empty() => endpoint.clone(),
            (_, Some(Transport::Unixgram)) => DEFAULT_SOCKET.to_string(),
            _ => DEFAULT_ENDPOINT.to_string(),
        }
    }

    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        match self.transport() {
            None => errors.push(format!(
                "transport {:?} is not supported (udp, udp4, udp6, tcp, tcp4, tcp6, unixgram)",
                self.transport
            )),
            Some(Transport::Unixgram) => {}
            Some(_) => {
                if let Err(problem) = crate::otlp::check_listen_endpoint(&self.endpoint()) {
                    errors.push(format!(
                        "endpoint {:?}: {problem} (write host:port, e.g. localhost:8125)",
                        self.endpoint()
                    ));
                }
            }
        }
        if self.aggregation_interval.is_zero() {
            errors.push("aggregation_interval must be a positive duration (e.g. 60s)".to_string());
        }
        if !matches!(
            self.counter_type.as_str(),
            "" | "int" | "float" | "stochastic_int"
        ) {
            errors.push(format!(
                "invalid counter_type: {:?}, must be one of: int, float, stochastic_int",
                self.counter_type
            ));
        }
        if self.socket_permissions > 0o7777 {
            errors.push(format!(
                "socket_permissions {:o} is not a file mode (write it in octal, e.g. 0622)",
                self.socket_permissions
            ));
        }
        if self.max_points_per_interval == 0 {
            errors.push("max_points_per_interval must be greater than 0".to_string());
        }
        for (i, mapping) in self.timer_histogram_mapping.iter().enumerate() {
            check_mapping(i, mapping, &mut errors);
        }
        errors
    }

    /// The aggregator settings (call after `validate`).
    fn settings(&self) -> Settings {
        let mut timer = Observer::Disabled;
        let mut histogram = Observer::Disabled;
        for mapping in &self.timer_histogram_mapping {
            let observer = observer(mapping);
            match mapping.statsd_type.as_str() {
                "timer" | "timing" => timer = observer,
                "histogram" | "distribution" => histogram = observer,
                _ => {}
            }
        }
        Settings {
            is_monotonic_counter: self.is_monotonic_counter,
            counter_type: match self.counter_type.as_str() {
                "float" => CounterType::Float,
                "stochastic_int" => CounterType::StochasticInt,
                _ => CounterType::Int,
            },
            timer,
            histogram,
            keying: if self.ignore_host {
                SourceKeying::All
            } else if self.enable_ip_only_aggregation {
                SourceKeying::AddressOnly
            } else {
                SourceKeying::AddressAndPort
            },
            max_points_per_interval: self.max_points_per_interval,
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

fn check_mapping(i: usize, mapping: &TimerHistogramMapping, errors: &mut Vec<String>) {
    let at = format!("timer_histogram_mapping[{i}]");
    if mapping.statsd_type.is_empty() || mapping.observer_type.is_empty() {
        errors.push(format!(
            "{at}: statsd_type and observer_type are both required"
        ));
        return;
    }
    if !matches!(
        mapping.statsd_type.as_str(),
        "timer" | "timing" | "histogram" | "distribution"
    ) {
        errors.push(format!("{at}: statsd_type is not a supported mapping for histogram and timing metrics: {:?} (timer, timing, histogram, distribution)", mapping.statsd_type));
    }
    if !matches!(
        mapping.observer_type.as_str(),
        "gauge" | "summary" | "histogram"
    ) {
        errors.push(format!("{at}: observer_type is not supported for histogram and timing metrics: {:?} (gauge, summary, histogram)", mapping.observer_type));
    }
    let histogram = &mapping.histogram;
    if mapping.observer_type == "histogram" {
        if histogram.max_size != 0
            && !(expo::MIN_MAX_SIZE..=expo::MAX_MAX_SIZE).contains(&histogram.max_size)
        {
            errors.push(format!(
                "{at}: histogram max_size out of range: {} (2 to 16384, or 0 for 160)",
                histogram.max_size
            ));
        }
        for (j, bucket) in histogram.explicit_buckets.iter().flatten().enumerate() {
            let at = format!("{at}.histogram.explicit_buckets[{j}]");
            if bucket.matcher_pattern.is_empty() {
                errors.push(format!("{at}: matcher_pattern must not be empty"));
            } else if let Err(e) = regex::Regex::new(&bucket.matcher_pattern) {
                errors.push(format!(
                    "{at}: matcher_pattern is not a valid regular expression: {e}"
                ));
            }
            if bucket.buckets.is_empty() {
                errors.push(format!("{at}: buckets must not be empty"));
            } else if bucket.buckets.windows(2).any(|w| w[0] >= w[1])
                || bucket.buckets.iter().any(|b| !b.is_finite())
            {
                errors.push(format!(
                    "{at}: buckets are not unique or not ascendingly sorted {:?}",
                    bucket.buckets
                ));
            }
        }
    } else if histogram.max_size != 0 || histogram.explicit_buckets.is_some() {
        errors.push(format!(
            "{at}: histogram configuration requires observer_type: histogram"
        ));
    }
    if !mapping.summary.percentiles.is_empty() {
        for percentile in &mapping.summary.percentiles {
            if !(0.0..=100.0).contains(percentile) {
                errors.push(format!(
                    "{at}: summary percentiles out of [0, 100] range: {percentile}"
                ));
            }
        }
        if mapping.observer_type != "summary" {
            errors.push(format!(
                "{at}: summary configuration requires observer_type: summary"
            ));
        }
    }
}

fn observer(mapping: &TimerHistogramMapping) -> Observer {
    match mapping.observer_type.as_str() {
        "gauge" => Observer::Gauge,
        "summary" => Observer::Summary {
            percentiles: if mapping.summary.percentiles.is_empty() {
                aggregate::DEFAULT_PERCENTILES.into()
            } else {
                mapping.summary.percentiles.as_slice().into()
            },
        },
        "histogram" => Observer::Histogram {
            max_size: mapping.histogram.max_size,
            explicit: mapping
                .histogram
                .explicit_buckets
                .iter()
                .flatten()
                .filter_map(|bucket| {
                    Some(ExplicitBuckets {
                        pattern: regex::Regex::new(&bucket.matcher_pattern).ok()?,
                        bounds: bucket.buckets.clone(),
                    })
                })
                .collect(),
        },
        _ => Observer::Disabled,
    }
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// What the transport tasks and the flush task share.
struct Shared {
    id: String,
    aggregator: Mutex<Aggregator>,
    enable_metric_type: bool,
    enable_simple_tags: bool,
    parsed: Counter,
    malformed: Counter,
    dropped_limit: Counter,
    dropped_other: Counter,
    counters: ReceiverCounters,
}

impl Shared {
    /// Parses and aggregates every non-empty line of `text` from `address`.
    fn add_lines<'a>(&self, lines: impl Iterator<Item = &'a str>, address: &str) {
        let now = unix_nanos(SystemTime::now());
        let mut aggregator = self
            .aggregator
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for line in lines.filter(|l| !l.is_empty()) {
            match parse::parse_line(line, self.enable_metric_type, self.enable_simple_tags) {
                Ok(parsed) => match aggregator.add(&parsed, address, now) {
                    Ok(()) => self.parsed.add(1),
                    Err(Dropped::Limit) => {
                        self.parsed.add(1);
                        self.dropped_limit.add(1);
                    }
                    Err(Dropped::NotFinite) => {
                        self.malformed.add(1);
                        tracing::debug!(receiver = %self.id, line, "discarding a NaN or infinite StatsD value");
                    }
                    Err(Dropped::Unmapped) => {
                        self.parsed.add(1);
                        self.dropped_other.add(1);
                    }
                },
                Err(error) => {
                    self.malformed.add(1);
                    tracing::debug!(receiver = %self.id, %error, line, "skipping a malformed StatsD line");
                }
            }
        }
    }

    /// Ends the interval and delivers its metrics, one batch per client.
    async fn flush(&self, consumers: &Consumers) {
        let now = unix_nanos(SystemTime::now());
        let resources = self
            .aggregator
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .flush(now);
        for resource in resources {
            let batch = Batch::from_metrics(vec![resource]);
            let points = batch.items();
            if points == 0 {
                continue;
            }
            let started = std::time::SystemTime::now();
            let result = consumers.consume(batch).await;
            self.counters.finished(
                started,
                points,
                result.as_ref().err().map(ToString::to_string),
            );
            match result {
                Ok(()) => {}
                Err(refusal) => {
                    tracing::warn!(receiver = %self.id, %refusal, points, "the pipeline refused StatsD metrics; they are lost (StatsD has no answer)");
                }
            }
        }
    }
}

/// A running receiver: its tasks finish after `shutdown` is cancelled (the current
/// interval is flushed first).
pub struct Running {
    pub tasks: Vec<JoinHandle<()>>,
    /// The bound address (udp/tcp), for tests that listen on port 0.
    pub address: Option<SocketAddr>,
}

fn resolve(id: &str, endpoint: &str, family: Family) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let problem = |e: String| format!("receiver {id}: endpoint {endpoint:?}: {e}");
    crate::otlp::check_listen_endpoint(endpoint).map_err(problem)?;
    let text = if endpoint.starts_with(':') {
        match family {
            Family::V6 => format!("[::]{endpoint}"),
            _ => format!("0.0.0.0{endpoint}"),
        }
    } else {
        endpoint.to_string()
    };
    let addresses: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| problem(format!("cannot resolve it: {e}")))?
        .collect();
    let pick = match family {
        Family::V4 => addresses.iter().find(|a| a.is_ipv4()),
        Family::V6 => addresses.iter().find(|a| a.is_ipv6()),
        Family::Any => addresses
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addresses.first()),
    };
    pick.copied()
        .ok_or_else(|| problem("resolves to no address of the transport's family".to_string()))
}

/// Binds the transport (a taken port fails here, naming the receiver) and serves until
/// `shutdown`.
pub async fn start(
    id: &str,
    config: &Config,
    consumers: Consumers,
    registry: &Arc<Registry>,
    shutdown: CancellationToken,
) -> Result<Running, String> {
    let transport = config.transport().ok_or_else(|| {
        format!(
            "receiver {id}: transport {:?} is not supported",
            config.transport
        )
    })?;
    let received = |success: &str| {
        registry.counter(
            "otelcol_receiver_received_statsd_metrics",
            "Number of statsd metrics received.",
            &[("receiver", id), ("parse_success", success)],
        )
    };
    let dropped = |reason: &str| {
        registry.counter(
            "oxcol_receiver_statsd_dropped_lines",
            "Parsed StatsD lines not aggregated, by reason.",
            &[("receiver", id), ("reason", reason)],
        )
    };
    let shared = Arc::new(Shared {
        id: id.to_string(),
        aggregator: Mutex::new(Aggregator::new(
            config.settings(),
            unix_nanos(SystemTime::now()),
        )),
        enable_metric_type: config.enable_metric_type,
        enable_simple_tags: config.enable_simple_tags,
        parsed: received("true"),
        malformed: received("false"),
        dropped_limit: dropped("limit"),
        dropped_other: dropped("unmapped"),
        counters: ReceiverCounters::new(registry, id, transport.label(), Signal::Metrics),
    });
    let endpoint = config.endpoint();
    let (address, server) = match transport {
        Transport::Udp(family) => {
            let address = resolve(id, &endpoint, family)?;
            let socket = tokio::net::UdpSocket::bind(address).await.map_err(|e| {
                format!("receiver {id}: cannot listen on UDP {address}: {e} (is another StatsD server running? set endpoint)")
            })?;
            let bound = socket.local_addr().map_err(|e| e.to_string())?;
            let task = tokio::spawn(serve_udp(socket, Arc::clone(&shared), shutdown.clone()));
            (Some(bound), task)
        }
        Transport::Tcp(family) => {
            let address = resolve(id, &endpoint, family)?;
            let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
                format!("receiver {id}: cannot listen on TCP {address}: {e} (is another StatsD server running? set endpoint)")
            })?;
            let bound = listener.local_addr().map_err(|e| e.to_string())?;
            let task = tokio::spawn(serve_tcp(listener, Arc::clone(&shared), shutdown.clone()));
            (Some(bound), task)
        }
        Transport::Unixgram => {
            let socket = bind_unixgram(id, &endpoint, config)?;
            let task = tokio::spawn(serve_unixgram(
                socket,
                endpoint.clone(),
                Arc::clone(&shared),
                shutdown.clone(),
            ));
            (None, task)
        }
    };
    let interval = config.aggregation_interval.get();
    let flusher = tokio::spawn(flush_loop(shared, consumers, interval, shutdown));
    tracing::info!(receiver = %id, endpoint = %address.map_or(endpoint, |a| a.to_string()), transport = transport.label(), "StatsD receiver listening");
    Ok(Running {
        tasks: vec![server, flusher],
        address,
    })
}

async fn flush_loop(
    shared: Arc<Shared>,
    consumers: Consumers,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => shared.flush(&consumers).await,
        }
    }
    // Give the transport a moment to hand over what it already read, then flush the
    // interval in progress (bounded: the pipelines are still running at this point).
    tokio::task::yield_now().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), shared.flush(&consumers)).await;
}

/// Splits a datagram into lines; the Collector keeps each line as sent (no trimming).
fn datagram_lines(packet: &[u8]) -> impl Iterator<Item = &str> {
    packet
        .split(|b| *b == b'\n')
        .filter_map(|line| std::str::from_utf8(line).ok())
}

async fn serve_udp(
    socket: tokio::net::UdpSocket,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => break,
            received = socket.recv_from(&mut buffer) => received,
        };
        match received {
            Ok((n, from)) => {
                let packet = &buffer[..n];
                count_invalid_utf8(&shared, packet);
                shared.add_lines(datagram_lines(packet), &from.to_string());
            }
            Err(error) => tracing::debug!(receiver = %shared.id, %error, "UDP receive failed"),
        }
    }
}

/// Lines that are not UTF-8 are malformed (Go would keep the bytes; no client sends them).
fn count_invalid_utf8(shared: &Shared, packet: &[u8]) {
    let invalid = packet
        .split(|b| *b == b'\n')
        .filter(|line| std::str::from_utf8(line).is_err())
        .count();
    if invalid > 0 {
        shared.malformed.add(invalid as u64);
    }
}

async fn serve_tcp(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let acquired = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => permit,
        };
        let Ok(permit) = acquired else { break };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let shared = Arc::clone(&shared);
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    serve_tcp_connection(stream, peer.to_string(), shared, stop).await;
                    drop(permit);
                });
            }
            Err(error) => {
                tracing::debug!(receiver = %shared.id, %error, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Reads newline-separated lines (each trimmed, as the Collector does) until the peer
/// closes; a line longer than [`MAX_TCP_LINE`] is skipped and counted.
async fn serve_tcp_connection(
    mut stream: tokio::net::TcpStream,
    peer: String,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut skipping = false;
    let mut chunk = vec![0u8; 8192];
    loop {
        let read = tokio::select! {
            _ = shutdown.cancelled() => break,
            read = stream.read(&mut chunk) => read,
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut data = &chunk[..n];
        let mut complete: Vec<Vec<u8>> = Vec::new();
        while let Some(newline) = data.iter().position(|b| *b == b'\n') {
            if skipping {
                skipping = false;
            } else {
                pending.extend_from_slice(&data[..newline]);
                complete.push(std::mem::take(&mut pending));
            }
            data = &data[newline + 1..];
        }
        if !skipping {
            pending.extend_from_slice(data);
            if pending.len() > MAX_TCP_LINE {
                pending.clear();
                skipping = true;
                shared.malformed.add(1);
                tracing::debug!(receiver = %shared.id, peer, "skipping a StatsD line longer than {MAX_TCP_LINE} bytes");
            }
        }
        if !complete.is_empty() {
            let mut invalid = 0;
            let lines: Vec<&str> = complete
                .iter()
                .filter_map(|line| match std::str::from_utf8(line) {
                    Ok(text) => Some(text.trim()),
                    Err(_) => {
                        invalid += 1;
                        None
                    }
                })
                .collect();
            if invalid > 0 {
                shared.malformed.add(invalid);
            }
            shared.add_lines(lines.into_iter(), &peer);
        }
    }
}

fn bind_unixgram(
    id: &str,
    path: &str,
    config: &Config,
) -> Result<tokio::net::UnixDatagram, String> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    // A socket left by an instance that was killed is removed (never another file).
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
    let socket = tokio::net::UnixDatagram::bind(path)
        .map_err(|e| format!("receiver {id}: cannot bind the unixgram socket {path:?}: {e}"))?;
    if config.socket_buffer_size > 0 {
        set_receive_buffer(&socket, config.socket_buffer_size).map_err(|e| {
            format!(
                "receiver {id}: socket_buffer_size {}: {e}",
                config.socket_buffer_size
            )
        })?;
    }
    std::fs::set_permissions(
        path,
        std::fs::Permissions::from_mode(config.socket_permissions),
    )
    .map_err(|e| {
        format!(
            "receiver {id}: socket_permissions {:o} on {path:?}: {e}",
            config.socket_permissions
        )
    })?;
    Ok(socket)
}

/// SO_RCVBUF, as `socket_buffer_size` asks (the kernel may cap or double it).
fn set_receive_buffer(socket: &impl std::os::fd::AsRawFd, bytes: usize) -> std::io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt on a socket this process owns, with a pointer to a live c_int
    // and its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

async fn serve_unixgram(
    socket: tokio::net::UnixDatagram,
    path: String,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => break,
            received = socket.recv(&mut buffer) => received,
        };
        match received {
            Ok(n) => {
                let packet = &buffer[..n];
                count_invalid_utf8(&shared, packet);
                // Unix datagram peers are unnamed: the source is the socket (as the Collector).
                shared.add_lines(datagram_lines(packet), &path);
            }
            Err(error) => tracing::debug!(receiver = %shared.id, %error, "unixgram receive failed"),
        }
    }
    let _ = std::fs::remove_file(&path);
}

#[cfg(test)]
mod tests;
