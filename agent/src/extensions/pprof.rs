//! `pprof` extension: profiles of oxcol itself over HTTP, in the pprof protobuf format
//! that `go tool pprof` reads, at the Collector's paths and keys (`pprofextension`):
//!
//! - `GET /debug/pprof/profile?seconds=N` (default 30): a CPU profile. Stacks are sampled
//!   100 times a second (Go's rate) by the `pprof` crate's SIGPROF sampler, then encoded
//!   here with the `profile.proto` types of `oxcol-receivers` (the crate's own encoder
//!   pins a second prost major). Sample types `samples/count` and `cpu/nanoseconds`, one
//!   `thread` label per sample, as Go's CPU profiles.
//! - `GET /debug/pprof/heap`: the bytes in use by oxcol's counting allocator
//!   (`oxcol_core::process`), as one `inuse_space/bytes` sample on one location. It says
//!   how much, not where: no allocation call sites are recorded (that would cost every
//!   allocation a stack walk).
//! - `GET /debug/pprof/`: the list of the above.
//!
//! `save_to_file` profiles the CPU from start to shutdown and writes the profile there, as
//! the Collector does. `block_profile_fraction` and `mutex_profile_fraction` are Go
//! runtime rates with no Rust equivalent: accepted, without effect.
//!
//! Must never: profile twice at once (the sampler is process-wide: a second request is
//! refused with 409), or hold a request longer than the `seconds` it asked for plus the
//! encoding.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};
use oxcol_receivers::pprof::proto;
use prost::Message;
use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const TYPE: &str = "pprof";
pub const ALIASES: &[&str] = &["pprof"];

/// Samples per second, as Go's `runtime/pprof` CPU profiler.
#[cfg_attr(not(feature = "pprof-extension"), allow(dead_code))]
const FREQUENCY: i32 = 100;
/// Longest CPU profile one request may ask for.
const MAX_SECONDS: u64 = 600;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listen address. Default `127.0.0.1:1777` (the Collector's `localhost:1777`).
    pub endpoint: String,
    /// Go's block profile rate; accepted, no effect in oxcol.
    pub block_profile_fraction: i64,
    /// Go's mutex profile rate; accepted, no effect in oxcol.
    pub mutex_profile_fraction: i64,
    /// When set: profile the CPU from start to shutdown and write the profile here.
    pub save_to_file: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: "127.0.0.1:1777".to_string(),
            block_profile_fraction: 0,
            mutex_profile_fraction: 0,
            save_to_file: String::new(),
        }
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if let Err(problem) = oxcol_receivers::otlp::check_listen_endpoint(&self.endpoint) {
            errors.push(format!(
                "endpoint {:?}: {problem} (write host:port, e.g. 127.0.0.1:1777)",
                self.endpoint
            ));
        }
        if self.block_profile_fraction < 0 {
            errors.push("block_profile_fraction must not be negative".to_string());
        }
        if self.mutex_profile_fraction < 0 {
            errors.push("mutex_profile_fraction must not be negative".to_string());
        }
        if !self.save_to_file.is_empty() && !cfg!(feature = "pprof-extension") {
            errors.push("save_to_file needs the CPU profiler, which this oxcol was built without (cargo feature pprof-extension)".to_string());
        }
        errors
    }
}

/// A string table under construction (`string_table[0]` is "").
#[derive(Default)]
struct Strings {
    table: Vec<String>,
    index: std::collections::HashMap<String, i64>,
}

impl Strings {
    fn new() -> Strings {
        let mut strings = Strings::default();
        strings.get("");
        strings
    }

    fn get(&mut self, text: &str) -> i64 {
        if let Some(index) = self.index.get(text) {
            return *index;
        }
        let index = self.table.len() as i64;
        self.table.push(text.to_string());
        self.index.insert(text.to_string(), index);
        index
    }
}

fn nanos_since_epoch(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// One stack as sampled: frames leaf first, each a function name with file and line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(not(feature = "pprof-extension"), allow(dead_code))]
pub struct Frame {
    pub function: String,
    pub file: String,
    pub line: i64,
}

/// Encodes CPU samples (`stack, thread name, count`) as a Go-style CPU profile.
#[cfg_attr(not(feature = "pprof-extension"), allow(dead_code))]
pub fn cpu_profile(
    stacks: &[(Vec<Frame>, String, i64)],
    frequency: i32,
    start: SystemTime,
    duration: Duration,
) -> proto::Profile {
    let mut strings = Strings::new();
    let period = 1_000_000_000 / i64::from(frequency.max(1));
    let sample_type = vec![
        proto::ValueType {
            r#type: strings.get("samples"),
            unit: strings.get("count"),
        },
        proto::ValueType {
            r#type: strings.get("cpu"),
            unit: strings.get("nanoseconds"),
        },
    ];
    let thread_key = strings.get("thread");
    let mut functions: std::collections::HashMap<Frame, u64> = std::collections::HashMap::new();
    let mut function_table = Vec::new();
    let mut location_table = Vec::new();
    let mut samples = Vec::new();
    for (stack, thread, count) in stacks {
        let mut location_id = Vec::with_capacity(stack.len());
        for frame in stack {
            let id = match functions.get(frame) {
                Some(id) => *id,
                None => {
                    let id = function_table.len() as u64 + 1;
                    function_table.push(proto::Function {
                        id,
                        name: strings.get(&frame.function),
                        filename: strings.get(&frame.file),
                        ..Default::default()
                    });
                    location_table.push(proto::Location {
                        id,
                        line: vec![proto::Line {
                            function_id: id,
                            line: frame.line,
                            ..Default::default()
                        }],
                        ..Default::default()
                    });
                    functions.insert(frame.clone(), id);
                    id
                }
            };
            location_id.push(id);
        }
        samples.push(proto::Sample {
            location_id,
            value: vec![*count, count.saturating_mul(period)],
            label: vec![proto::Label {
                key: thread_key,
                str: strings.get(thread),
                num: 0,
                num_unit: 0,
            }],
        });
    }
    proto::Profile {
        sample_type,
        sample: samples,
        location: location_table,
        function: function_table,
        period_type: Some(proto::ValueType {
            r#type: strings.get("cpu"),
            unit: strings.get("nanoseconds"),
        }),
        period,
        time_nanos: nanos_since_epoch(start),
        duration_nanos: duration.as_nanos() as i64,
        default_sample_type: 0,
        string_table: strings.table,
        ..Default::default()
    }
}

/// The heap profile: oxcol's allocated bytes in use as one sample.
pub fn heap_profile(in_use_bytes: i64, now: SystemTime) -> proto::Profile {
    let mut strings = Strings::new();
    let sample_type = vec![proto::ValueType {
        r#type: strings.get("inuse_space"),
        unit: strings.get("bytes"),
    }];
    let function = proto::Function {
        id: 1,
        name: strings.get("oxcol heap in use (call sites not recorded)"),
        filename: strings.get("oxcol"),
        ..Default::default()
    };
    proto::Profile {
        sample_type: sample_type.clone(),
        sample: vec![proto::Sample {
            location_id: vec![1],
            value: vec![in_use_bytes],
            label: Vec::new(),
        }],
        location: vec![proto::Location {
            id: 1,
            line: vec![proto::Line {
                function_id: 1,
                line: 0,
                ..Default::default()
            }],
            ..Default::default()
        }],
        function: vec![function],
        period_type: sample_type.into_iter().next(),
        period: 0,
        time_nanos: nanos_since_epoch(now),
        duration_nanos: 0,
        default_sample_type: 0,
        string_table: strings.table,
        ..Default::default()
    }
}

/// A profile as Go serves one: gzip-compressed protobuf.
pub fn encode(profile: &proto::Profile) -> Result<Vec<u8>, String> {
    oxcol_core::compression::compress(
        oxcol_core::compression::Encoding::Gzip,
        &profile.encode_to_vec(),
    )
    .map_err(|e| format!("cannot compress the profile: {e}"))
}

#[cfg(feature = "pprof-extension")]
mod sampler {
    use super::*;

    /// A running CPU profile of the whole process.
    pub struct Running {
        guard: pprof::ProfilerGuard<'static>,
        start: SystemTime,
    }

    pub fn start() -> Result<Running, String> {
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(FREQUENCY)
            // Unwinding through these from a signal handler can deadlock (pprof-rs advice).
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()
            .map_err(|e| format!("cannot start the CPU profiler: {e}"))?;
        Ok(Running {
            guard,
            start: SystemTime::now(),
        })
    }

    impl Running {
        /// Stops and encodes the profile.
        pub fn finish(self) -> Result<proto::Profile, String> {
            let report = self
                .guard
                .report()
                .build()
                .map_err(|e| format!("cannot build the CPU profile: {e}"))?;
            let stacks: Vec<(Vec<Frame>, String, i64)> = report
                .data
                .iter()
                .map(|(frames, count)| {
                    let stack = frames
                        .frames
                        .iter()
                        .flatten()
                        .map(|symbol| Frame {
                            function: symbol.name(),
                            file: symbol.filename().into_owned(),
                            line: i64::from(symbol.lineno()),
                        })
                        .collect();
                    (stack, frames.thread_name_or_id(), *count as i64)
                })
                .collect();
            let duration = SystemTime::now()
                .duration_since(self.start)
                .unwrap_or_default();
            Ok(cpu_profile(
                &stacks,
                report.timing.frequency,
                self.start,
                duration,
            ))
        }
    }
}

#[cfg(not(feature = "pprof-extension"))]
mod sampler {
    use super::*;

    pub struct Running;

    pub fn start() -> Result<Running, String> {
        Err(
            "this oxcol was built without the CPU profiler (cargo feature pprof-extension)"
                .to_string(),
        )
    }

    impl Running {
        pub fn finish(self) -> Result<proto::Profile, String> {
            Err("no CPU profiler".to_string())
        }
    }
}

/// `seconds=N` of a query string, as Go's handler reads it (default 30).
fn seconds_param(query: Option<&str>) -> u64 {
    query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("seconds=")?.parse().ok())
        .unwrap_or(30)
}

fn profile_response(profile: Result<proto::Profile, String>, name: &str) -> Response {
    match profile.and_then(|p| encode(&p)) {
        Ok(body) => {
            let mut response = body.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
                response
                    .headers_mut()
                    .insert(header::CONTENT_DISPOSITION, value);
            }
            response
        }
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error).into_response(),
    }
}

/// Whether a CPU profile is running (the sampler is one per process).
static PROFILING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Holds the process-wide profiling slot; released on drop.
struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        PROFILING
            .compare_exchange(
                false,
                true,
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
            )
            .ok()
            .map(|_| Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        PROFILING.store(false, std::sync::atomic::Ordering::Release);
    }
}

async fn cpu(uri: http::Uri, shutdown: CancellationToken) -> Response {
    let seconds = seconds_param(uri.query()).clamp(1, MAX_SECONDS);
    let Some(_slot) = Slot::take() else {
        return (
            StatusCode::CONFLICT,
            "a CPU profile is already being taken (one at a time); retry when it ends",
        )
            .into_response();
    };
    let running = match sampler::start() {
        Ok(running) => running,
        Err(error) => return (StatusCode::NOT_IMPLEMENTED, error).into_response(),
    };
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(seconds)) => {}
        _ = shutdown.cancelled() => {}
    }
    let profile = tokio::task::spawn_blocking(move || running.finish())
        .await
        .unwrap_or_else(|e| Err(format!("the profile encoder failed: {e}")));
    profile_response(profile, "profile")
}

async fn heap() -> Response {
    let in_use = oxcol_core::process::allocated_bytes().unwrap_or(0) as i64;
    profile_response(Ok(heap_profile(in_use, SystemTime::now())), "heap")
}

const INDEX: &str = "/debug/pprof/\n\nprofile?seconds=N  CPU profile of oxcol (default 30 s), pprof protobuf\nheap               bytes in use (one total, no call sites), pprof protobuf\n";

/// Serves the profiles until `shutdown`; with `save_to_file`, also profiles the CPU for
/// the whole run and writes the profile when `shutdown` fires.
pub async fn serve(
    id: &str,
    config: &Config,
    registry: &oxcol_core::telemetry::Registry,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, Vec<JoinHandle<()>>), String> {
    let address = oxcol_receivers::otlp::resolve_endpoint(&config.endpoint)
        .map_err(|e| format!("extension {id}: endpoint {:?}: {e}", config.endpoint))?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("extension {id}: cannot listen on {address}: {e} (set endpoint)"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let mut tasks = Vec::new();
    if !config.save_to_file.is_empty() {
        let slot = Slot::take().ok_or_else(|| format!("extension {id}: another pprof extension already profiles the CPU; set save_to_file on one only"))?;
        let running = sampler::start().map_err(|e| format!("extension {id}: save_to_file: {e}"))?;
        let path = config.save_to_file.clone();
        let stop = shutdown.clone();
        let name = id.to_string();
        tasks.push(tokio::spawn(async move {
            stop.cancelled().await;
            let written = running.finish().and_then(|p| encode(&p)).and_then(|bytes| std::fs::write(&path, bytes).map_err(|e| format!("cannot write {path:?}: {e}")));
            match written {
                Ok(()) => tracing::info!(extension = %name, file = %path, "CPU profile of the whole run written"),
                Err(error) => tracing::error!(extension = %name, %error, "save_to_file failed"),
            }
            drop(slot);
        }));
    }
    let stop = shutdown.clone();
    let router = Router::new()
        .route("/debug/pprof/", get(|| async { INDEX }))
        .route(
            "/debug/pprof/profile",
            get(move |uri: http::Uri| cpu(uri, stop.clone())),
        )
        .route("/debug/pprof/heap", get(heap));
    let mut limits = oxcol_core::listen::ServerLimits::http(None, None);
    let name = id.to_string();
    limits.stats = Some(oxcol_core::listen::ConnectionStats::new(registry, &name));
    let incoming =
        oxcol_core::listen::incoming(&name, listener, None, limits.clone(), shutdown.clone());
    tracing::info!(extension = %name, endpoint = %bound, "pprof listening at /debug/pprof/");
    tasks.push(tokio::spawn(async move {
        oxcol_core::listen::serve_http(
            &name,
            incoming,
            router,
            &limits,
            shutdown,
            Duration::from_secs(2),
        )
        .await;
    }));
    Ok((bound, tasks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_profiles_share_functions_and_scale_by_the_period() {
        let a = Frame {
            function: "oxcol::work".into(),
            file: "src/work.rs".into(),
            line: 10,
        };
        let b = Frame {
            function: "main".into(),
            file: "src/main.rs".into(),
            line: 3,
        };
        let stacks = vec![
            (vec![a.clone(), b.clone()], "oxcol".to_string(), 5),
            (vec![b.clone()], "tokio-1".to_string(), 2),
        ];
        let profile = cpu_profile(
            &stacks,
            100,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1),
            Duration::from_secs(2),
        );
        assert_eq!(profile.string_table[0], "");
        assert_eq!(
            profile.function.len(),
            2,
            "main is one function however many stacks have it"
        );
        assert_eq!(profile.sample[0].location_id, vec![1, 2]);
        assert_eq!(profile.sample[1].location_id, vec![2]);
        assert_eq!(
            profile.sample[0].value,
            vec![5, 50_000_000],
            "5 samples at 100 Hz are 50 ms"
        );
        assert_eq!(profile.period, 10_000_000);
        assert_eq!(profile.duration_nanos, 2_000_000_000);
        assert_eq!(profile.time_nanos, 1_000_000_000);
        let name = |index: i64| profile.string_table[index as usize].as_str();
        assert_eq!(name(profile.sample_type[1].r#type), "cpu");
        assert_eq!(name(profile.sample[1].label[0].str), "tokio-1");
        assert_eq!(name(profile.function[0].name), "oxcol::work");
        // Round trip through the wire format (gzip + protobuf, as served).
        let bytes = encode(&profile).unwrap();
        let plain = oxcol_core::compression::decompress(
            oxcol_core::compression::Encoding::Gzip,
            bytes.into(),
            1 << 20,
        )
        .unwrap();
        assert_eq!(proto::Profile::decode(plain).unwrap(), profile);
    }

    #[test]
    fn seconds_come_from_the_query_as_in_go() {
        assert_eq!(seconds_param(None), 30);
        assert_eq!(seconds_param(Some("seconds=5")), 5);
        assert_eq!(seconds_param(Some("debug=1&seconds=2")), 2);
        assert_eq!(seconds_param(Some("seconds=x")), 30);
    }

    #[test]
    fn the_heap_profile_is_one_total() {
        let profile = heap_profile(12345, SystemTime::UNIX_EPOCH);
        assert_eq!(profile.sample.len(), 1);
        assert_eq!(profile.sample[0].value, vec![12345]);
        assert_eq!(
            profile.string_table[profile.sample_type[0].r#type as usize],
            "inuse_space"
        );
    }

    #[test]
    fn defaults_and_validation() {
        let config = Config::default();
        assert_eq!(config.endpoint, "127.0.0.1:1777");
        assert!(config.validate().is_empty());
        let bad = Config {
            endpoint: "nowhere".into(),
            block_profile_fraction: -1,
            ..Config::default()
        };
        assert_eq!(bad.validate().len(), 2, "{:?}", bad.validate());
        assert!(
            Config {
                endpoint: ":1888".into(),
                ..Config::default()
            }
            .validate()
            .is_empty()
        );
    }

    #[cfg(feature = "pprof-extension")]
    #[test]
    fn the_sampler_sees_a_busy_thread() {
        let _slot = Slot::take().expect("no other profile in this test binary");
        let running = sampler::start().expect("start the profiler");
        // 300 ms of this thread's own CPU time (not wall time: on a loaded 2-core machine
        // the thread may get far less than 300 ms of CPU in 300 ms), bounded by 10 s.
        let thread_cpu_ticks = || -> u64 {
            let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
            let after = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
            // After the command: state, then ...; utime and stime (fields 14 and 15 of
            // proc(5)) are the 12th and 13th, as in oxcol_core::process::cpu_seconds.
            let fields: Vec<&str> = after.split_whitespace().collect();
            let ticks = |i: usize| {
                fields
                    .get(i)
                    .and_then(|f| f.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            ticks(11) + ticks(12)
        };
        let start_ticks = thread_cpu_ticks();
        let wall_limit = std::time::Instant::now() + Duration::from_secs(10);
        let mut x = 0u64;
        while thread_cpu_ticks() < start_ticks + 30 && std::time::Instant::now() < wall_limit {
            for _ in 0..100_000 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
            }
        }
        std::hint::black_box(x);
        let profile = running.finish().expect("a profile");
        let total: i64 = profile.sample.iter().map(|s| s.value[0]).sum();
        assert!(
            total > 5,
            "300 ms of this thread's CPU at 100 Hz should give ~30 samples, got {total}"
        );
    }
}
