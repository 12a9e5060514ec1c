//! `journald` receiver: the systemd journal as OTLP logs, read the way the Collector's
//! journald receiver (stanza's `journald_input`) reads it: a `journalctl --utc
//! --output=json --follow` child with the same arguments for `units`, `priority`,
//! `matches`, `directory`, `files`, `identifiers`, `grep`, ..., one log record per entry
//! ([`entry`]).
//!
//! Delivery: a reader task parses the child's output into a bounded queue (a full queue
//! stops reading, so journalctl blocks: no unbounded buffer); a delivery task sends
//! batches of up to [`MAX_BATCH`] records and retries a refused batch with back-off until
//! the pipelines accept it. Only then is the batch's last cursor written to `storage` (a
//! `file_storage` extension), so a restart resumes (`--after-cursor`) after the last
//! entry the pipelines accepted: nothing acknowledged is read twice, nothing is lost
//! (entries read but not yet accepted when oxcol dies are read again). The Collector
//! stores the cursor before delivering (an entry can be lost).
//!
//! When journalctl exits or is killed it is started again after a back-off (1 s doubling
//! to 30 s, reset after a child that ran for a minute), after the last cursor read.
//! It must never panic on the child's output.

pub mod entry;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use oxcol_core::telemetry::{Counter, ReceiverCounters, Registry};
use oxcol_core::{Batch, Consumers, GoDuration, Signal};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::storage::{StateFile, Storage};
use entry::{Entry, Options};

pub const TYPE: &str = "journald";
pub const ALIASES: &[&str] = &["journald"];

/// Records per delivered batch.
pub const MAX_BATCH: usize = 100;
/// Parsed entries waiting for delivery; past it the reader stops reading.
const QUEUE: usize = 1000;
/// Longest output line kept (an entry); longer ones are skipped and counted.
const MAX_LINE: usize = 16 << 20;
/// Back-off of child restarts.
const RESTART_FIRST: Duration = Duration::from_secs(1);
const RESTART_MAX: Duration = Duration::from_secs(30);
/// A child that ran this long resets the back-off.
const RESTART_RESET_AFTER: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Journal directory (`--directory`). Default: journalctl's (the system journal).
    pub directory: Option<String>,
    /// Journal files (`--file`), when no `directory`.
    pub files: Vec<String>,
    /// `end` (default: only new entries) or `beginning` (`--no-tail`).
    pub start_at: String,
    pub units: Vec<String>,
    pub identifiers: Vec<String>,
    /// `--priority`. Default `info`.
    pub priority: String,
    /// Each map is a group of `FIELD=value` matches (ANDed); groups are ORed (`+`).
    pub matches: Vec<BTreeMap<String, String>>,
    pub grep: String,
    pub dmesg: bool,
    pub all: bool,
    pub namespace: String,
    pub merge: bool,
    pub convert_message_bytes: bool,
    pub include_log_record_original: bool,
    /// chroot for journalctl (absolute; `journalctl_path` must then be absolute).
    pub root_path: String,
    pub journalctl_path: String,
    /// `file_storage/NAME` keeping the cursor across restarts. Default: none (in memory).
    pub storage: Option<String>,
    /// Stanza operators: not supported (only an empty list).
    pub operators: Vec<serde::de::IgnoredAny>,
    pub retry_on_failure: RetryConfig,
    /// Attributes added to every record (plain strings; stanza's `EXPR(...)` is not supported).
    pub attributes: BTreeMap<String, String>,
    /// Resource attributes of every record (plain strings).
    pub resource: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            directory: None,
            files: Vec::new(),
            start_at: "end".to_string(),
            units: Vec::new(),
            identifiers: Vec::new(),
            priority: "info".to_string(),
            matches: Vec::new(),
            grep: String::new(),
            dmesg: false,
            all: false,
            namespace: String::new(),
            merge: false,
            convert_message_bytes: false,
            include_log_record_original: false,
            root_path: String::new(),
            journalctl_path: "journalctl".to_string(),
            storage: None,
            operators: Vec::new(),
            retry_on_failure: RetryConfig::default(),
            attributes: BTreeMap::new(),
            resource: BTreeMap::new(),
        }
    }
}

/// The Collector's `retry_on_failure` of stanza receivers.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// With `false` (the default) oxcol still retries a refused batch (dropping logs the
    /// pipeline refused is what the delivery contract forbids), with `initial_interval`
    /// and `max_interval`, and never gives up.
    pub enabled: bool,
    pub initial_interval: GoDuration,
    pub max_interval: GoDuration,
    /// With `enabled: true`: give up a batch after this long (counted as refused; its
    /// cursor is still stored so it is not read again). 0 = never.
    pub max_elapsed_time: GoDuration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: false,
            initial_interval: GoDuration::from_secs(1),
            max_interval: GoDuration::from_secs(30),
            max_elapsed_time: GoDuration::from_secs(300),
        }
    }
}

/// A systemd field name, as journalctl wants it in a match.
fn is_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b == b'_' || b.is_ascii_uppercase())
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.start_at != "end" && self.start_at != "beginning" {
            errors.push(format!(
                "invalid value {:?} for parameter 'start_at' (end or beginning)",
                self.start_at
            ));
        }
        if self.journalctl_path.trim().is_empty() {
            errors.push("'journalctl_path' must be non-whitespace".to_string());
        }
        if !self.root_path.is_empty() {
            if !self.journalctl_path.starts_with('/') {
                errors.push(
                    "'journalctl_path' must be an absolute path when 'root_path' is set"
                        .to_string(),
                );
            }
            if !self.root_path.starts_with('/') {
                errors.push("'root_path' must be an absolute path".to_string());
            }
        }
        for (i, group) in self.matches.iter().enumerate() {
            for key in group.keys().filter(|k| !is_field_name(k)) {
                errors.push(format!(
                    "matches[{i}]: {key:?} is not a valid Systemd field name (upper case letters and _, e.g. _SYSTEMD_UNIT)"
                ));
            }
        }
        if !self.operators.is_empty() {
            errors.push("operators: stanza operators are not supported by oxcol's journald receiver; remove them and transform records with the transform processor".to_string());
        }
        for (key, value) in self.attributes.iter().chain(self.resource.iter()) {
            if value.starts_with("EXPR(") {
                errors.push(format!(
                    "{key}: {value:?}: expressions are not supported (write a plain string)"
                ));
            }
        }
        let retry = &self.retry_on_failure;
        if retry.initial_interval.is_zero() || retry.max_interval < retry.initial_interval {
            errors.push(
                "retry_on_failure: initial_interval must be positive and at most max_interval"
                    .to_string(),
            );
        }
        errors
    }

    /// journalctl's arguments, as the Collector builds them (without the cursor).
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["--utc", "--output=json", "--follow"]
            .map(String::from)
            .to_vec();
        args.push(if self.start_at == "beginning" {
            "--no-tail".to_string()
        } else {
            "--lines=0".to_string()
        });
        for unit in &self.units {
            args.extend(["--unit".to_string(), unit.clone()]);
        }
        for identifier in &self.identifiers {
            args.extend(["--identifier".to_string(), identifier.clone()]);
        }
        args.extend(["--priority".to_string(), self.priority.clone()]);
        if !self.grep.is_empty() {
            args.extend(["--grep".to_string(), self.grep.clone()]);
        }
        if self.dmesg {
            args.push("--dmesg".to_string());
        }
        if !self.namespace.is_empty() {
            args.extend(["--namespace".to_string(), self.namespace.clone()]);
        }
        if let Some(directory) = &self.directory {
            args.extend(["--directory".to_string(), directory.clone()]);
        } else {
            for file in &self.files {
                args.extend(["--file".to_string(), file.clone()]);
            }
        }
        for (i, group) in self.matches.iter().enumerate() {
            if i > 0 {
                args.push("+".to_string());
            }
            // BTreeMap: keys sorted, as the Collector sorts them.
            args.extend(group.iter().map(|(key, value)| format!("{key}={value}")));
        }
        if self.all {
            args.push("--all".to_string());
        }
        if self.merge {
            args.push("--merge".to_string());
        }
        args
    }

    /// The arguments of a child that resumes after `cursor`.
    fn args_after(&self, cursor: Option<&str>) -> Vec<String> {
        let mut args = self.args();
        if let Some(cursor) = cursor.map(str::trim).filter(|c| !c.is_empty()) {
            // Resuming reads everything after the cursor: with `--lines=0` journalctl would
            // show nothing written while no child ran (it wins over the cursor), and with
            // no `--lines` at most 10 entries; `--no-tail` shows all.
            for arg in args.iter_mut().filter(|a| *a == "--lines=0") {
                *arg = "--no-tail".to_string();
            }
            args.extend(["--after-cursor".to_string(), cursor.to_string()]);
        }
        args
    }

    fn options(&self) -> Options {
        Options {
            convert_message_bytes: self.convert_message_bytes,
            include_log_record_original: self.include_log_record_original,
            attributes: self
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// What the tasks share.
struct Shared {
    id: String,
    config: Config,
    /// The cursor of the last entry read from any child (where a restarted child resumes).
    last_read: Mutex<Option<String>>,
    counters: ReceiverCounters,
    malformed: Counter,
    restarts: Counter,
}

/// A running receiver: its tasks end after `shutdown` (the child is killed).
pub struct Running {
    pub tasks: Vec<JoinHandle<()>>,
}

/// Starts the receiver: opens the cursor storage (a locked one fails here, naming the
/// receiver), starts journalctl (a missing binary fails here) and serves until
/// `shutdown`. `storage` is the resolved `storage` extension, if any.
pub async fn start(
    id: &str,
    config: &Config,
    storage: Option<Storage>,
    consumers: Consumers,
    registry: &Arc<Registry>,
    shutdown: CancellationToken,
) -> Result<Running, String> {
    let (state, stored_cursor) = match &storage {
        Some(storage) => {
            let (state, bytes) =
                StateFile::open(storage, TYPE, id).map_err(|e| format!("receiver {id}: {e}"))?;
            let cursor = bytes
                .map(|b| String::from_utf8_lossy(&b).trim().to_string())
                .filter(|c| !c.is_empty());
            (Some(state), cursor)
        }
        None => (None, None),
    };
    let labels = [("receiver", id)];
    let shared = Arc::new(Shared {
        id: id.to_string(),
        config: config.clone(),
        last_read: Mutex::new(stored_cursor),
        counters: ReceiverCounters::new(registry, id, "", Signal::Logs),
        malformed: registry.counter(
            "oxcol_receiver_journald_malformed_entries",
            "journalctl output lines that are not journal entries (skipped).",
            &labels,
        ),
        restarts: registry.counter(
            "oxcol_receiver_journald_restarts",
            "Times journalctl was started again after it exited.",
            &labels,
        ),
    });
    // The first child starts here, so a missing journalctl fails the start.
    let first = spawn_child(&shared).map_err(|e| format!("receiver {id}: {e}"))?;
    let (sender, receiver) = mpsc::channel::<Entry>(QUEUE);
    let resource = Resource {
        attributes: config
            .resource
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.clone(),
                value: Some(entry::any_value(serde_json::Value::String(v.clone()))),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let supervisor = tokio::spawn(supervise(
        Arc::clone(&shared),
        first,
        sender,
        shutdown.clone(),
    ));
    let delivery = tokio::spawn(deliver(
        shared, receiver, state, resource, consumers, shutdown,
    ));
    tracing::info!(receiver = %id, args = ?config.args(), "journald receiver started journalctl");
    Ok(Running {
        tasks: vec![supervisor, delivery],
    })
}

fn spawn_child(shared: &Shared) -> Result<std::process::Child, String> {
    use std::os::unix::process::CommandExt;
    let config = &shared.config;
    let cursor = shared
        .last_read
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let args = config.args_after(cursor.as_deref());
    let mut command = std::process::Command::new(&config.journalctl_path);
    command
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // journalctl ends with oxcol, even when oxcol is killed (-9): the kernel sends it
    // SIGKILL when the spawning thread (a runtime worker, alive as long as oxcol) ends.
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl and getppid are async-signal-safe; nothing is allocated.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl took effect.
            if libc::getppid() != parent {
                return Err(std::io::Error::other(
                    "oxcol exited while starting journalctl",
                ));
            }
            Ok(())
        });
    }
    if !config.root_path.is_empty() {
        let root = std::ffi::CString::new(config.root_path.as_bytes())
            .map_err(|_| format!("root_path {:?} contains a NUL byte", config.root_path))?;
        // SAFETY: chroot and chdir are async-signal-safe and the closure allocates
        // nothing (the path was made before the fork).
        unsafe {
            command.pre_exec(move || {
                if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    tracing::debug!(receiver = %shared.id, journalctl = %config.journalctl_path, ?args, "starting journalctl");
    command.spawn().map_err(|e| {
        format!(
            "cannot start {:?}: {e} (install journalctl, Debian package systemd, or set journalctl_path)",
            config.journalctl_path
        )
    })
}

/// Runs children one after the other until shutdown, restarting with back-off.
async fn supervise(
    shared: Arc<Shared>,
    first: std::process::Child,
    sender: mpsc::Sender<Entry>,
    shutdown: CancellationToken,
) {
    let mut child = Some(first);
    let mut backoff = RESTART_FIRST;
    loop {
        let started = Instant::now();
        if let Some(running) = child.take() {
            run_child(&shared, running, &sender, &shutdown).await;
        }
        if shutdown.is_cancelled() {
            return;
        }
        if started.elapsed() >= RESTART_RESET_AFTER {
            backoff = RESTART_FIRST;
        }
        tracing::warn!(receiver = %shared.id, ?backoff, "journalctl exited; starting it again");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(RESTART_MAX);
        shared.restarts.add(1);
        match spawn_child(&shared) {
            Ok(next) => child = Some(next),
            Err(error) => {
                tracing::error!(receiver = %shared.id, %error, "cannot restart journalctl")
            }
        }
    }
}

/// Runs one child until it exits (or shutdown kills it). Its output is read on threads of
/// their own (blocking reads; a full queue blocks the reader, and so journalctl).
async fn run_child(
    shared: &Arc<Shared>,
    mut child: std::process::Child,
    sender: &mpsc::Sender<Entry>,
    shutdown: &CancellationToken,
) {
    if let Some(stderr) = child.stderr.take() {
        let id = shared.id.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                tracing::warn!(receiver = %id, stderr = %line, "journalctl");
            }
        });
    }
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    if let Some(stdout) = child.stdout.take() {
        let shared = Arc::clone(shared);
        let sender = sender.clone();
        std::thread::spawn(move || {
            read_output(&shared, stdout, &sender);
            let _ = done.send(());
        });
    }
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = finished => {}
    }
    let _ = child.kill();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
}

/// Parses the child's output lines into the queue until it ends or the queue closes.
fn read_output(shared: &Shared, stdout: std::process::ChildStdout, sender: &mpsc::Sender<Entry>) {
    use std::io::{BufRead, Read};
    let options = shared.config.options();
    let mut reader = std::io::BufReader::with_capacity(64 << 10, stdout);
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(_) if line.len() > MAX_LINE => {
                shared.malformed.add(1);
                tracing::warn!(receiver = %shared.id, "skipping a journal entry longer than {MAX_LINE} bytes");
                // Drop the rest of that line, in bounded pieces.
                loop {
                    line.clear();
                    match (&mut reader).take(64 << 10).read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line.ends_with(b"\n") => break,
                        Ok(_) => {}
                    }
                }
            }
            Ok(_) => match entry::parse_entry(&line, &options, unix_nanos()) {
                Ok(entry) => {
                    *shared.last_read.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(entry.cursor.clone());
                    if sender.blocking_send(entry).is_err() {
                        return;
                    }
                }
                Err(error) => {
                    shared.malformed.add(1);
                    tracing::warn!(receiver = %shared.id, %error, "failed to parse journal entry");
                }
            },
        }
    }
}

/// Delivers batches; stores the cursor after the pipelines accepted each.
async fn deliver(
    shared: Arc<Shared>,
    mut receiver: mpsc::Receiver<Entry>,
    state: Option<StateFile>,
    resource: Resource,
    consumers: Consumers,
    shutdown: CancellationToken,
) {
    let retry = shared.config.retry_on_failure.clone();
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            first = receiver.recv() => first,
        };
        let Some(first) = first else { return };
        let mut records: Vec<LogRecord> = Vec::with_capacity(MAX_BATCH);
        let mut cursor = first.cursor;
        records.push(first.record);
        while records.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(next) => {
                    cursor = next.cursor;
                    records.push(next.record);
                }
                Err(_) => break,
            }
        }
        let count = records.len() as u64;
        let batch = Batch::from_logs(vec![ResourceLogs {
            resource: Some(resource.clone()),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            schema_url: String::new(),
        }]);
        let started = Instant::now();
        let mut wait = retry.initial_interval.get();
        let accepted = loop {
            match consumers.consume(batch.clone()).await {
                Ok(()) => break true,
                Err(refusal) => {
                    let give_up = retry.enabled
                        && !retry.max_elapsed_time.is_zero()
                        && started.elapsed() >= retry.max_elapsed_time.get();
                    if give_up {
                        tracing::error!(receiver = %shared.id, %refusal, records = count, "giving up journal entries the pipeline refused (retry_on_failure.max_elapsed_time)");
                        break false;
                    }
                    tracing::warn!(receiver = %shared.id, %refusal, ?wait, "the pipeline refused journal entries; retrying");
                    tokio::select! {
                        // Not accepted: not stored; the next start reads them again.
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(retry.max_interval.get());
                }
            }
        };
        if accepted {
            shared.counters.accepted.add(count);
        } else {
            shared.counters.refused.add(count);
        }
        if let Some(state) = &state {
            if let Err(error) = state.write(cursor.as_bytes()) {
                tracing::warn!(receiver = %shared.id, %error, "cannot store the journal cursor (a restart may read entries again)");
            }
        }
    }
}

#[cfg(test)]
mod tests;
