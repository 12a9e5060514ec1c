//! `oxcol-bench compare`: runs several OTLP collectors (the systems under test) in turn on
//! the same load, round after round (A, B, C, A, B, C, ...) so that machine noise hits all
//! of them alike, and measures for each run what reached the sink and what the system's
//! process tree cost in CPU and memory (from /proc).
//!
//! Each run: start a fresh sink (`oxcol-bench sink`, a child process), start the system
//! from its command template on free 127.0.0.1 ports, wait until it accepts a request and
//! delivers it to the sink (bounded), reset the sink, then load it with the load generator
//! (`crate::load`, in this process) while a sampler thread reads the system's VmRSS; after
//! the load, wait (bounded) until the sink has every accepted point, and stop the system
//! (SIGTERM to its process group, SIGKILL after a grace period; always, also on errors).
//! Idle runs (`rates` entry `None`) skip the load and just sample for the duration.

pub mod procfs;
pub mod report;
pub mod template;

use crate::child::spawn_sink;
use crate::control_client::ControlClient;
use crate::load::{self, Compression, LoadConfig, Protocol};
use crate::otlp::RequestShape;
use oxcol_core::Signal;
use report::{MachineInfo, Report, RunResult, SystemInfo};
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// One system under test: a name and a command-line template.
///
/// Placeholders in the template: `{grpc_port}`, `{http_port}`, `{port1}`..`{port3}` (free
/// 127.0.0.1 ports, fresh per run), `{sink_grpc}` / `{sink_http}` (`127.0.0.1:PORT` of the
/// run's sink), `{work_dir}`, `{round}`, `{system}`, any `--set NAME=VALUE`, and
/// `{config:PATH}`: the file at PATH with the same placeholders substituted, written to the
/// work directory; the placeholder becomes the written file's path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemSpec {
    pub name: String,
    pub command: String,
}

impl SystemSpec {
    /// Parses `NAME=COMMAND TEMPLATE`.
    pub fn parse(text: &str) -> Result<SystemSpec, String> {
        let (name, command) = text
            .split_once('=')
            .ok_or_else(|| format!("--system {text:?}: expected NAME=COMMAND"))?;
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "--system {text:?}: the name must be non-empty letters, digits, '-', '_' or '.'"
            ));
        }
        if command.trim().is_empty() {
            return Err(format!("--system {text:?}: the command is empty"));
        }
        Ok(SystemSpec {
            name: name.to_string(),
            command: command.trim().to_string(),
        })
    }
}

/// Everything `compare` needs.
#[derive(Clone, Debug)]
pub struct CompareConfig {
    pub systems: Vec<SystemSpec>,
    /// Name of the system ratios are computed against (default: the first).
    pub baseline: Option<String>,
    pub rounds: usize,
    /// Loads to run, each in every round: `Some(0.0)` flat out, `Some(r)` r points/s,
    /// `None` idle (no load, sample only).
    pub rates: Vec<Option<f64>>,
    /// How long each load (or idle sample) lasts.
    pub duration: Duration,
    pub shape: RequestShape,
    pub pool: usize,
    pub concurrency: usize,
    pub connections: usize,
    pub compression: Compression,
    /// The `oxcol-bench` binary, started as `sink` for each run.
    pub bench_binary: PathBuf,
    /// Extra placeholders (`--set NAME=VALUE`).
    pub vars: BTreeMap<String, String>,
    /// Directory for generated configs and the systems' logs. Created; removed at the end
    /// unless `keep` is set.
    pub work_dir: PathBuf,
    pub keep: bool,
    /// Start-up (listening + first request delivered) limit per run.
    pub ready_timeout: Duration,
    /// How long to wait after the load for the sink to receive every accepted point.
    pub drain_timeout: Duration,
    /// RSS sampling interval.
    pub sample_interval: Duration,
    /// Pause between runs (lets the previous system's sockets and memory settle).
    pub pause: Duration,
    /// Progress lines go to stderr when set.
    pub verbose: bool,
    pub proc_root: PathBuf,
}

impl Default for CompareConfig {
    fn default() -> Self {
        CompareConfig {
            systems: Vec::new(),
            baseline: None,
            rounds: 3,
            rates: vec![Some(0.0)],
            duration: Duration::from_secs(20),
            shape: RequestShape {
                resources: 4,
                metrics: 10,
                points: 10,
                attributes: 3,
            },
            pool: 16,
            concurrency: 4,
            connections: 1,
            compression: Compression::None,
            bench_binary: PathBuf::from("oxcol-bench"),
            vars: BTreeMap::new(),
            work_dir: std::env::temp_dir().join(format!("oxcol-compare-{}", std::process::id())),
            keep: false,
            ready_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            sample_interval: Duration::from_millis(100),
            pause: Duration::from_secs(1),
            verbose: true,
            proc_root: PathBuf::from("/proc"),
        }
    }
}

/// Names reserved for the placeholders `compare` fills in itself.
const RESERVED: [&str; 10] = [
    "grpc_port",
    "http_port",
    "port1",
    "port2",
    "port3",
    "sink_grpc",
    "sink_http",
    "work_dir",
    "round",
    "system",
];

impl CompareConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.systems.is_empty() {
            return Err("give at least one --system NAME=COMMAND".into());
        }
        for (i, system) in self.systems.iter().enumerate() {
            if self.systems[..i].iter().any(|s| s.name == system.name) {
                return Err(format!("system name {:?} is given twice", system.name));
            }
        }
        if let Some(baseline) = &self.baseline
            && !self.systems.iter().any(|s| &s.name == baseline)
        {
            return Err(format!(
                "--baseline {baseline:?} is not one of the --system names"
            ));
        }
        if self.rounds == 0 || self.rounds > 1000 {
            return Err(format!("--rounds {} must be 1..=1000", self.rounds));
        }
        if self.rates.is_empty() {
            return Err("give at least one rate".into());
        }
        for rate in self.rates.iter().flatten() {
            if !(rate.is_finite() && *rate >= 0.0) {
                return Err(format!(
                    "rate {rate} must be 0 (flat out) or positive points/s"
                ));
            }
        }
        if self.duration.is_zero() {
            return Err("--duration must be positive".into());
        }
        if let Some(name) = self
            .vars
            .keys()
            .find(|k| RESERVED.contains(&k.as_str()) || k.starts_with("config:"))
        {
            return Err(format!(
                "--set {name}=...: {{{name}}} is filled in by compare itself"
            ));
        }
        // Every template must resolve (config files exist, no unknown placeholder).
        let probe = RunVars::probe(self);
        for system in &self.systems {
            expand_command(system, &probe, None)
                .map_err(|error| format!("system {}: {error}", system.name))?;
        }
        Ok(())
    }

    fn baseline(&self) -> String {
        self.baseline
            .clone()
            .unwrap_or_else(|| self.systems[0].name.clone())
    }

    fn log(&self, message: impl AsRef<str>) {
        if self.verbose {
            eprintln!("compare: {}", message.as_ref());
        }
    }
}

/// The placeholder values of one run.
struct RunVars {
    values: BTreeMap<String, String>,
    work_dir: PathBuf,
    grpc_port: u16,
}

impl RunVars {
    fn new(
        config: &CompareConfig,
        system: &str,
        round: usize,
        sink_grpc: String,
        sink_http: String,
    ) -> Result<RunVars, String> {
        let ports: Vec<u16> = (0..5).map(|_| crate::net::free_port()).collect();
        let mut values = config.vars.clone();
        for (name, port) in ["grpc_port", "http_port", "port1", "port2", "port3"]
            .iter()
            .zip(&ports)
        {
            values.insert(name.to_string(), port.to_string());
        }
        values.insert("sink_grpc".into(), sink_grpc);
        values.insert("sink_http".into(), sink_http);
        values.insert("work_dir".into(), config.work_dir.display().to_string());
        values.insert("round".into(), round.to_string());
        values.insert("system".into(), system.to_string());
        Ok(RunVars {
            values,
            work_dir: config.work_dir.clone(),
            grpc_port: ports[0],
        })
    }

    /// Dummy values, to check templates before anything starts.
    fn probe(config: &CompareConfig) -> RunVars {
        let mut values = config.vars.clone();
        for name in RESERVED {
            values.insert(name.to_string(), "1".to_string());
        }
        RunVars {
            values,
            work_dir: config.work_dir.clone(),
            grpc_port: 1,
        }
    }

    fn lookup(&self, name: &str) -> Result<String, String> {
        self.values.get(name).cloned().ok_or_else(|| {
            format!(
                "unknown placeholder {{{name}}} (known: {}, config:PATH)",
                self.values.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }
}

/// Expands a system's command template into argv. `{config:PATH}` files are substituted and
/// written to the work dir when `write_as` is given (name prefix), else only checked.
fn expand_command(
    system: &SystemSpec,
    vars: &RunVars,
    write_as: Option<&str>,
) -> Result<Vec<String>, String> {
    let mut configs = 0;
    let line = template::substitute(&system.command, |name| {
        let Some(path) = name.strip_prefix("config:") else {
            return vars.lookup(name);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read config template {path}: {error}"))?;
        let expanded = template::substitute(&text, |name| vars.lookup(name))
            .map_err(|error| format!("config template {path}: {error}"))?;
        configs += 1;
        let extension = Path::new(path)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("yaml");
        let target = vars.work_dir.join(format!(
            "{}-config{configs}.{extension}",
            write_as.unwrap_or("probe")
        ));
        if write_as.is_some() {
            std::fs::write(&target, expanded)
                .map_err(|error| format!("cannot write {}: {error}", target.display()))?;
        }
        Ok(target.display().to_string())
    })?;
    let words = template::split_words(&line)?;
    if words.is_empty() {
        return Err("the command is empty".into());
    }
    Ok(words)
}

/// A started system under test: its own process group, stopped on drop (SIGTERM to the
/// group, SIGKILL after 5 s), even when the run fails or panics.
struct SystemGuard {
    child: Option<std::process::Child>,
    pid: u32,
    log_path: PathBuf,
}

impl SystemGuard {
    fn start(argv: &[String], log_path: &Path) -> Result<SystemGuard, String> {
        let log = std::fs::File::create(log_path)
            .map_err(|error| format!("cannot create {}: {error}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|error| format!("cannot dup the log file: {error}"))?;
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .map_err(|error| format!("cannot start {:?}: {error}", argv[0]))?;
        Ok(SystemGuard {
            pid: child.id(),
            child: Some(child),
            log_path: log_path.to_path_buf(),
        })
    }

    /// `Some(description)` when the process has exited.
    fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(format!("exited ({status})")),
            Ok(None) => None,
            Err(error) => Some(format!("cannot be waited for: {error}")),
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        format!("last lines of {}:\n{tail}", self.log_path.display())
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let group = format!("-{}", self.pid);
        let signal_group = |signal: &str| {
            let _ = Command::new("kill")
                .args([signal, "--", &group])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        if matches!(child.try_wait(), Ok(None)) {
            signal_group("-TERM");
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Whatever is left of the group (the leader, or children it left behind).
        signal_group("-KILL");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for SystemGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Samples the tree's RSS on a thread until dropped or `finish`ed.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Vec<procfs::TreeSample>>>,
}

impl Sampler {
    fn start(proc_root: PathBuf, pid: u32, interval: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match procfs::sample_tree(&proc_root, pid) {
                    Some(sample) => samples.push(sample),
                    None => break,
                }
                std::thread::sleep(interval);
            }
            samples
        });
        Sampler {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> Vec<procfs::TreeSample> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|handle| handle.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// CPU ticks of the system tree, the sink, this process, and the machine, at one moment.
#[derive(Clone, Copy)]
struct Snapshot {
    at: Instant,
    tree: procfs::TreeSample,
    sink_ticks: u64,
    self_ticks: u64,
    machine: (u64, u64),
}

fn snapshot(proc_root: &Path, pid: u32, sink_pid: u32) -> Result<Snapshot, String> {
    let tree =
        procfs::sample_tree(proc_root, pid).ok_or_else(|| format!("process {pid} is gone"))?;
    Ok(Snapshot {
        at: Instant::now(),
        tree,
        sink_ticks: procfs::process_cpu_ticks(proc_root, sink_pid).unwrap_or(0),
        self_ticks: procfs::process_cpu_ticks(proc_root, std::process::id()).unwrap_or(0),
        machine: procfs::machine_ticks(proc_root).unwrap_or((0, 0)),
    })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Runs the whole comparison and returns the report (also when some runs failed: their
/// `error` says why).
pub async fn run(config: CompareConfig) -> Result<Report, String> {
    config.validate()?;
    std::fs::create_dir_all(&config.work_dir)
        .map_err(|error| format!("cannot create {}: {error}", config.work_dir.display()))?;
    let ticks = procfs::clock_ticks_per_second();
    let loadavg_start = procfs::loadavg(&config.proc_root).unwrap_or_default();
    let mut runs = Vec::new();
    let total = config.rounds * config.rates.len() * config.systems.len();
    for round in 0..config.rounds {
        for &rate in &config.rates {
            for system in &config.systems {
                config.log(format!(
                    "run {}/{total}: {} round {} {}",
                    runs.len() + 1,
                    system.name,
                    round + 1,
                    match rate {
                        None => "idle".to_string(),
                        Some(0.0) => "flat out".to_string(),
                        Some(r) => format!("{r} points/s"),
                    }
                ));
                let result = match run_one(&config, system, round, rate, ticks).await {
                    Ok(result) => result,
                    Err(error) => {
                        config.log(format!("{}: {error}", system.name));
                        RunResult {
                            system: system.name.clone(),
                            round,
                            rate,
                            error: Some(error),
                            ..RunResult::default()
                        }
                    }
                };
                if result.error.is_none() {
                    config.log(format!(
                        "  {} delivered {} points ({:.0}/s), lost {}, cpu {:.2} s ({:.1}%), peak rss {:.1} MiB",
                        system.name,
                        result.delivered_points,
                        result.delivered_points_per_sec,
                        result.lost_points,
                        result.cpu_secs,
                        result.cpu_percent,
                        result.rss_peak_mib
                    ));
                }
                runs.push(result);
                tokio::time::sleep(config.pause).await;
            }
        }
    }
    let names: Vec<String> = config.systems.iter().map(|s| s.name.clone()).collect();
    let summaries = report::summarize(&runs, &names, &config.rates, &config.baseline());
    if !config.keep {
        let _ = std::fs::remove_dir_all(&config.work_dir);
    }
    Ok(Report {
        machine: MachineInfo {
            cpus: procfs::cpu_count(&config.proc_root),
            loadavg_start,
            loadavg_end: procfs::loadavg(&config.proc_root).unwrap_or_default(),
        },
        settings: settings_json(&config),
        systems: config
            .systems
            .iter()
            .map(|s| SystemInfo {
                name: s.name.clone(),
                command: s.command.clone(),
            })
            .collect(),
        runs,
        summaries,
    })
}

fn settings_json(config: &CompareConfig) -> serde_json::Value {
    serde_json::json!({
        "rounds": config.rounds,
        "rates": config.rates,
        "duration_secs": config.duration.as_secs_f64(),
        "request": {
            "resources": config.shape.resources,
            "metrics": config.shape.metrics,
            "points": config.shape.points,
            "attributes": config.shape.attributes,
            "points_per_request": config.shape.items_per_request(),
        },
        "pool": config.pool,
        "concurrency": config.concurrency,
        "connections": config.connections,
        "compression": format!("{:?}", config.compression),
        "baseline": config.baseline(),
        "vars": config.vars,
    })
}

fn load_config(config: &CompareConfig, endpoint: String) -> LoadConfig {
    LoadConfig {
        protocol: Protocol::Grpc,
        endpoint,
        signal: Signal::Metrics,
        shape: config.shape,
        pool: config.pool,
        concurrency: config.concurrency,
        connections: config.connections,
        rate: 0.0,
        duration: Some(config.duration),
        total_points: None,
        compression: config.compression,
        retry: false,
        request_timeout: Duration::from_secs(10),
    }
}

async fn run_one(
    config: &CompareConfig,
    system: &SystemSpec,
    round: usize,
    rate: Option<f64>,
    ticks: u64,
) -> Result<RunResult, String> {
    let proc_root = config.proc_root.as_path();
    let loadavg_start = procfs::loadavg(proc_root).unwrap_or_default();
    let (sink_guard, sink) = spawn_sink(&config.bench_binary, &[], Duration::from_secs(10))?;
    let control = ControlClient::new(sink.control);
    let vars = RunVars::new(
        config,
        &system.name,
        round,
        sink.grpc.to_string(),
        sink.http.to_string(),
    )?;
    let tag = format!("{}-r{round}-{}", system.name, rate_tag(rate));
    let argv = expand_command(system, &vars, Some(&tag))?;
    let mut guard = SystemGuard::start(&argv, &config.work_dir.join(format!("{tag}.log")))?;
    let endpoint = format!("127.0.0.1:{}", vars.grpc_port);

    // Ready: listening, then one request accepted and delivered to the sink.
    let deadline = Instant::now() + config.ready_timeout;
    let fail = |guard: &SystemGuard, what: String| format!("{what}; {}", guard.log_tail());
    loop {
        if let Some(exit) = guard.exited() {
            return Err(fail(
                &guard,
                format!("{} {exit} before listening on {endpoint}", system.name),
            ));
        }
        if tokio::net::TcpStream::connect(&endpoint).await.is_ok() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(fail(
                &guard,
                format!(
                    "{} not listening on {endpoint} within {:?}",
                    system.name, config.ready_timeout
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut warm = load_config(config, endpoint.clone());
    warm.concurrency = 1;
    warm.duration = None;
    warm.total_points = Some(1);
    warm.retry = true;
    warm.request_timeout = Duration::from_secs(2);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(fail(
                &guard,
                format!(
                    "{} did not deliver a first request within {:?}",
                    system.name, config.ready_timeout
                ),
            ));
        }
        warm.duration = Some(remaining.min(Duration::from_secs(5)));
        let summary = load::run(warm.clone()).await?;
        if summary.accepted_points > 0 {
            break;
        }
        if let Some(exit) = guard.exited() {
            return Err(fail(
                &guard,
                format!("{} {exit} during start-up", system.name),
            ));
        }
    }
    loop {
        if control.stats().await?.metrics.items > 0 {
            break;
        }
        if Instant::now() >= deadline {
            return Err(fail(
                &guard,
                format!(
                    "{} accepted a first request but did not deliver it to the sink within {:?}",
                    system.name, config.ready_timeout
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the warm-up batch settle, then count from zero.
    tokio::time::sleep(Duration::from_millis(500)).await;
    control.reset().await?;

    let pid = guard.pid;
    let sink_pid = sink_guard.id();
    let start = snapshot(proc_root, pid, sink_pid)?;
    let sampler = Sampler::start(config.proc_root.clone(), pid, config.sample_interval);
    let (load_summary, end, delivered) = match rate {
        None => {
            tokio::time::sleep(config.duration).await;
            let end = snapshot(proc_root, pid, sink_pid)?;
            (None, end, control.stats().await?.metrics.items)
        }
        Some(rate) => {
            let mut load = load_config(config, endpoint.clone());
            load.rate = rate;
            let summary = load::run(load).await?;
            // Drain: until the sink has every accepted point, or nothing arrives for 2 s, or
            // the drain limit. The window ends at the last increase.
            let drain_deadline = Instant::now() + config.drain_timeout;
            let mut last = snapshot(proc_root, pid, sink_pid)?;
            let mut delivered = control.stats().await?.metrics.items;
            let mut last_change = Instant::now();
            while delivered < summary.accepted_points
                && Instant::now() < drain_deadline
                && last_change.elapsed() < Duration::from_secs(2)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let now = control.stats().await?.metrics.items;
                if now != delivered {
                    delivered = now;
                    last_change = Instant::now();
                    last = snapshot(proc_root, pid, sink_pid)?;
                }
            }
            (Some(summary), last, delivered)
        }
    };
    let samples = sampler.finish();
    if let Some(exit) = guard.exited() {
        return Err(fail(
            &guard,
            format!("{} {exit} during the load", system.name),
        ));
    }
    guard.stop();
    drop(sink_guard);

    let window = end.at.duration_since(start.at).as_secs_f64().max(1e-9);
    let secs = |ticks_delta: u64| ticks_delta as f64 / ticks as f64;
    let cpu_secs = secs(end.tree.cpu_ticks.saturating_sub(start.tree.cpu_ticks));
    let sink_cpu_secs = secs(end.sink_ticks.saturating_sub(start.sink_ticks));
    let harness_cpu_secs = secs(end.self_ticks.saturating_sub(start.self_ticks));
    let (busy, total) = (
        end.machine.0.saturating_sub(start.machine.0),
        end.machine.1.saturating_sub(start.machine.1),
    );
    let machine_busy_secs = secs(busy);
    let rss: Vec<u64> = samples
        .iter()
        .map(|s| s.rss_kib)
        .chain([end.tree.rss_kib])
        .collect();
    let accepted = load_summary.as_ref().map_or(0, |s| s.accepted_points);
    Ok(RunResult {
        system: system.name.clone(),
        round,
        rate,
        error: None,
        lost_points: accepted as i64 - delivered as i64,
        delivered_points: delivered,
        load: load_summary,
        window_secs: window,
        delivered_points_per_sec: delivered as f64 / window,
        cpu_secs,
        cpu_percent: 100.0 * cpu_secs / window,
        cpu_secs_per_million: (delivered > 0).then(|| cpu_secs * 1e6 / delivered as f64),
        points_per_cpu_sec: (delivered > 0 && cpu_secs > 0.0).then(|| delivered as f64 / cpu_secs),
        rss_peak_mib: mib(rss.iter().copied().max().unwrap_or(0)),
        rss_mean_mib: mib(rss.iter().sum::<u64>()) / rss.len().max(1) as f64,
        vm_hwm_mib: mib(end.tree.hwm_kib),
        rss_start_mib: mib(start.tree.rss_kib),
        rss_samples: rss.len(),
        processes: end.tree.processes,
        sink_cpu_secs,
        harness_cpu_secs,
        machine_busy_percent: if total > 0 {
            100.0 * busy as f64 / total as f64
        } else {
            0.0
        },
        other_cpu_secs: (machine_busy_secs - cpu_secs - sink_cpu_secs - harness_cpu_secs).max(0.0),
        loadavg_start,
    })
}

fn rate_tag(rate: Option<f64>) -> String {
    match rate {
        None => "idle".into(),
        Some(0.0) => "flat".into(),
        Some(r) => format!("{}", r.round() as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_specs_parse() {
        assert_eq!(
            SystemSpec::parse("oxcol=target/release/oxcol --config {config:a.yaml}").unwrap(),
            SystemSpec {
                name: "oxcol".into(),
                command: "target/release/oxcol --config {config:a.yaml}".into()
            }
        );
        // Only the first '=' separates: the command may contain more.
        assert_eq!(
            SystemSpec::parse("r=bin --x=1").unwrap().command,
            "bin --x=1"
        );
        assert!(SystemSpec::parse("no-equals").is_err());
        assert!(SystemSpec::parse("=cmd").is_err());
        assert!(SystemSpec::parse("a b=cmd").is_err());
        assert!(SystemSpec::parse("a=  ").is_err());
    }

    fn config_with(systems: &[&str], dir: &Path) -> CompareConfig {
        CompareConfig {
            systems: systems
                .iter()
                .map(|s| SystemSpec::parse(s).unwrap())
                .collect(),
            work_dir: dir.to_path_buf(),
            verbose: false,
            ..CompareConfig::default()
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("oxcol-compare-test-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn commands_expand_with_run_ports_and_config_files() {
        let dir = temp_dir("expand");
        let template = dir.join("sys.yaml");
        std::fs::write(
            &template,
            "endpoint: 127.0.0.1:{grpc_port}\nto: {sink_grpc}\nx: {{literal}}\nk: {key}\n",
        )
        .unwrap();
        let mut config = config_with(
            &[&format!(
                "a=/bin/prog --config {{config:{}}} --port '{{grpc_port}}' {{key}}",
                template.display()
            )],
            &dir,
        );
        config.vars.insert("key".into(), "v a l".into());
        config.validate().unwrap();
        let vars =
            RunVars::new(&config, "a", 2, "127.0.0.1:7".into(), "127.0.0.1:8".into()).unwrap();
        let argv = expand_command(&config.systems[0], &vars, Some("a-r2")).unwrap();
        let written = dir.join("a-r2-config1.yaml");
        assert_eq!(
            argv,
            vec![
                "/bin/prog".to_string(),
                "--config".into(),
                written.display().to_string(),
                "--port".into(),
                vars.grpc_port.to_string(),
                "v".into(),
                "a".into(),
                "l".into()
            ]
        );
        assert_eq!(
            std::fs::read_to_string(&written).unwrap(),
            format!(
                "endpoint: 127.0.0.1:{}\nto: 127.0.0.1:7\nx: {{literal}}\nk: v a l\n",
                vars.grpc_port
            )
        );
        let ports: std::collections::BTreeSet<_> =
            ["grpc_port", "http_port", "port1", "port2", "port3"]
                .iter()
                .map(|n| vars.values[*n].clone())
                .collect();
        assert_eq!(ports.len(), 5, "the run's ports differ");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn validation_names_the_problem() {
        let dir = temp_dir("validate");
        let err = |config: CompareConfig| config.validate().unwrap_err();
        assert!(err(config_with(&[], &dir)).contains("at least one --system"));
        assert!(err(config_with(&["a=x", "a=y"], &dir)).contains("twice"));
        assert!(err(config_with(&["a=x {nope}"], &dir)).contains("unknown placeholder {nope}"));
        assert!(
            err(config_with(&["a=x {config:/does/not/exist.yaml}"], &dir))
                .contains("cannot read config template")
        );
        let mut config = config_with(&["a=x"], &dir);
        config.baseline = Some("b".into());
        assert!(err(config).contains("--baseline"));
        let mut config = config_with(&["a=x"], &dir);
        config.vars.insert("grpc_port".into(), "1".into());
        assert!(err(config).contains("filled in by compare"));
        let mut config = config_with(&["a=x"], &dir);
        config.rates = vec![Some(-1.0)];
        assert!(err(config).contains("rate"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_system_guard_stops_the_whole_process_group() {
        let dir = temp_dir("guard");
        let argv: Vec<String> = ["sh", "-c", "sleep 30 & sleep 30 & wait"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let guard = SystemGuard::start(&argv, &dir.join("g.log")).unwrap();
        let root = guard.pid;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut tree = Vec::new();
        while Instant::now() < deadline {
            tree = procfs::descendants(root, &procfs::process_table(Path::new("/proc")));
            if tree.len() == 3 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(tree.len(), 3);
        let started = Instant::now();
        drop(guard);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "SIGTERM ends sh and its sleeps"
        );
        std::thread::sleep(Duration::from_millis(100));
        for pid in tree {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            assert!(
                stat.is_empty() || stat.contains(") Z"),
                "process {pid} survived: {stat}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
