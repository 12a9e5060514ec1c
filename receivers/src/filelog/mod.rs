//! `filelog` receiver (alias `file_log`): log lines from files, as the Collector's
//! filelog receiver (stanza's fileconsumer plus operators) reads them, as OTLP log records.
//!
//! Every `poll_interval` the `include` globs (minus `exclude`) are matched; files are
//! known by fingerprint (see [`reader`]), cut into entries (see [`split`]), passed through
//! the `operators` (see [`operators`]) and handed to the pipelines in batches. A file's
//! offset advances (and is checkpointed in `storage`) only after the pipelines accepted
//! the batch: on a refusal everything since the last accepted batch is read again after a
//! backoff. So no line is lost across rotations and restarts, and none is sent twice
//! unless oxcol dies between an accepted batch and its checkpoint write.
//!
//! It must never panic on file content, never hold more than one batch and one read
//! chunk per file in memory, and never advance past data the pipeline did not accept.

pub mod checkpoint;
pub mod container;
pub mod entry;
pub mod expr;
pub mod glob;
pub mod operators;
pub mod reader;
pub mod split;
#[cfg(test)]
mod tests;
pub mod time;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use oxcol_core::telemetry::{Counter, ReceiverCounters, Registry};
use oxcol_core::{Batch, Consumers, GoDuration, Signal};
use prost::Message;
use serde::Deserialize;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use crate::storage::Storage;
use entry::{Entry, Mark};
use glob::Glob;
use operators::{Chain, OperatorConfig, Output};
use reader::{Token, Tracker};
use split::{Mode, Splitter};

pub const TYPE: &str = "filelog";
pub const ALIASES: &[&str] = &["filelog", "file_log"];

/// A byte size as stanza reads it: an integer, or a number with `kb`/`kib`/`mb`/`mib`/
/// `gb`/`gib` (decimal units are powers of 1000, binary of 1024; case-insensitive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let t = text.trim().to_ascii_lowercase();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let number: f64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a byte size (e.g. 1024, 16kb, 1MiB)"))?;
        let scale: f64 = match unit.trim() {
            "" | "b" => 1.0,
            "kb" => 1e3,
            "kib" => 1024.0,
            "mb" => 1e6,
            "mib" => 1024.0 * 1024.0,
            "gb" => 1e9,
            "gib" => 1024.0 * 1024.0 * 1024.0,
            other => {
                return Err(format!(
                    "{text:?}: unknown unit {other:?} (b, kb, kib, mb, mib, gb, gib)"
                ));
            }
        };
        Ok(ByteSize((number * scale) as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Float(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Float(f) if f >= 0.0 => Ok(ByteSize(f as u64)),
            Raw::Float(f) => Err(serde::de::Error::custom(format!(
                "byte size {f} is negative"
            ))),
            Raw::Text(t) => ByteSize::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MultilineConfig {
    pub line_start_pattern: Option<String>,
    pub line_end_pattern: Option<String>,
    pub omit_pattern: bool,
}

/// The Collector's consumerretry settings. oxcol always retries a refused batch (it reads
/// it again from the file); these set the wait between tries.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub enabled: bool,
    pub initial_interval: GoDuration,
    pub max_interval: GoDuration,
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

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// `beginning` or `end` (default): where files found in the first poll start.
    pub start_at: String,
    pub include_file_name: bool,
    pub include_file_path: bool,
    pub include_file_name_resolved: bool,
    pub include_file_path_resolved: bool,
    pub poll_interval: GoDuration,
    pub fingerprint_size: ByteSize,
    pub max_log_size: ByteSize,
    pub max_concurrent_files: usize,
    pub max_batches: usize,
    pub encoding: String,
    pub multiline: Option<MultilineConfig>,
    pub force_flush_period: GoDuration,
    pub preserve_leading_whitespaces: bool,
    pub preserve_trailing_whitespaces: bool,
    pub delete_after_read: bool,
    /// A `file_storage` extension id for checkpoints.
    pub storage: Option<String>,
    pub operators: Vec<OperatorConfig>,
    pub retry_on_failure: RetryConfig,
    /// Added to every entry's attributes / resource.
    pub attributes: BTreeMap<String, Value>,
    pub resource: BTreeMap<String, Value>,
    // Collector keys oxcol does not implement: accepted so the message can say so.
    pub ordering_criteria: Option<Value>,
    pub exclude_older_than: Option<Value>,
    pub compression: Option<String>,
    pub header: Option<Value>,
    pub include_file_owner_name: bool,
    pub include_file_owner_group_name: bool,
    pub include_file_record_number: bool,
    pub include_file_record_offset: bool,
    pub acquire_fs_lock: bool,
    pub polls_to_archive: Option<Value>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            include: Vec::new(),
            exclude: Vec::new(),
            start_at: "end".to_string(),
            include_file_name: true,
            include_file_path: false,
            include_file_name_resolved: false,
            include_file_path_resolved: false,
            poll_interval: GoDuration::from_millis(200),
            fingerprint_size: ByteSize(1000),
            max_log_size: ByteSize(1024 * 1024),
            max_concurrent_files: 1024,
            max_batches: 0,
            encoding: "utf-8".to_string(),
            multiline: None,
            force_flush_period: GoDuration::from_millis(500),
            preserve_leading_whitespaces: false,
            preserve_trailing_whitespaces: false,
            delete_after_read: false,
            storage: None,
            operators: Vec::new(),
            retry_on_failure: RetryConfig::default(),
            attributes: BTreeMap::new(),
            resource: BTreeMap::new(),
            ordering_criteria: None,
            exclude_older_than: None,
            compression: None,
            header: None,
            include_file_owner_name: false,
            include_file_owner_group_name: false,
            include_file_record_number: false,
            include_file_record_offset: false,
            acquire_fs_lock: false,
            polls_to_archive: None,
        }
    }
}

/// Smallest `fingerprint_size` (stanza's minimum).
const MIN_FINGERPRINT: u64 = 16;
/// Entries per batch handed to the pipelines.
const BATCH_ENTRIES: usize = 1000;
/// Body bytes per batch.
const BATCH_BYTES: usize = 1 << 20;

fn nop_encoding(encoding: &str) -> Result<bool, String> {
    match encoding.to_ascii_lowercase().as_str() {
        "utf-8" | "utf8" | "" | "ascii" | "us-ascii" => Ok(false),
        "nop" => Ok(true),
        other => Err(format!(
            "encoding {other:?} is not supported; oxcol reads utf-8 (also ascii) and nop (raw bytes)"
        )),
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.include.is_empty() {
            problems.push(
                "include: at least one glob is required (e.g. include: [/var/log/pods/*/*/*.log])"
                    .to_string(),
            );
        }
        for (key, globs) in [("include", &self.include), ("exclude", &self.exclude)] {
            for g in globs {
                if let Err(e) = Glob::new(g) {
                    problems.push(format!("{key}: {e}"));
                }
            }
        }
        if self.start_at != "beginning" && self.start_at != "end" {
            problems.push(format!(
                "start_at {:?} must be beginning or end",
                self.start_at
            ));
        }
        if self.poll_interval.is_zero() {
            problems.push("poll_interval must be more than 0".to_string());
        }
        if self.fingerprint_size.0 < MIN_FINGERPRINT {
            problems.push(format!(
                "fingerprint_size must be at least {MIN_FINGERPRINT} bytes"
            ));
        }
        if self.max_log_size.0 == 0 {
            problems.push("max_log_size must be positive".to_string());
        }
        if self.max_concurrent_files <= 1 {
            problems.push("max_concurrent_files must be greater than 1".to_string());
        }
        if self.delete_after_read && self.start_at == "end" {
            problems.push(
                "delete_after_read cannot be used with start_at: end; set start_at: beginning"
                    .to_string(),
            );
        }
        let nop = match nop_encoding(&self.encoding) {
            Ok(nop) => nop,
            Err(e) => {
                problems.push(e);
                false
            }
        };
        if let Some(m) = &self.multiline {
            if nop && (m.line_start_pattern.is_some() || m.line_end_pattern.is_some()) {
                problems.push("multiline patterns cannot be used with encoding: nop".to_string());
            }
            if m.line_start_pattern.is_some() && m.line_end_pattern.is_some() {
                problems.push(
                    "multiline: only one of line_start_pattern or line_end_pattern can be set"
                        .to_string(),
                );
            }
            for p in m.line_start_pattern.iter().chain(&m.line_end_pattern) {
                if let Err(e) = split::compile(p) {
                    problems.push(format!("multiline: {e}"));
                }
            }
        }
        if let Some(s) = &self.storage {
            if s.is_empty() {
                problems
                    .push("storage: name a file_storage extension or remove the key".to_string());
            }
        }
        let unsupported: [(&str, bool); 10] = [
            ("ordering_criteria", self.ordering_criteria.is_some()),
            ("exclude_older_than", self.exclude_older_than.is_some()),
            (
                "compression",
                self.compression.as_deref().is_some_and(|c| !c.is_empty()),
            ),
            ("header", self.header.is_some()),
            ("include_file_owner_name", self.include_file_owner_name),
            (
                "include_file_owner_group_name",
                self.include_file_owner_group_name,
            ),
            (
                "include_file_record_number",
                self.include_file_record_number,
            ),
            (
                "include_file_record_offset",
                self.include_file_record_offset,
            ),
            ("acquire_fs_lock", self.acquire_fs_lock),
            ("polls_to_archive", self.polls_to_archive.is_some()),
        ];
        for (key, set) in unsupported {
            if set {
                problems.push(format!(
                    "{key} is a Collector setting oxcol does not implement; remove it"
                ));
            }
        }
        problems.extend(operators::problems(&self.operators));
        problems
    }

    fn splitter(&self) -> Result<Splitter, String> {
        let mode = if nop_encoding(&self.encoding)? {
            Mode::Whole
        } else {
            match &self.multiline {
                Some(MultilineConfig {
                    line_start_pattern: Some(p),
                    omit_pattern,
                    ..
                }) => Mode::LineStart {
                    pattern: split::compile(p)?,
                    omit: *omit_pattern,
                },
                Some(MultilineConfig {
                    line_end_pattern: Some(p),
                    omit_pattern,
                    ..
                }) => Mode::LineEnd {
                    pattern: split::compile(p)?,
                    omit: *omit_pattern,
                },
                _ => Mode::Newline,
            }
        };
        Ok(Splitter {
            mode,
            max_log_size: self.max_log_size.0.max(1) as usize,
            preserve_leading: self.preserve_leading_whitespaces,
            preserve_trailing: self.preserve_trailing_whitespaces,
        })
    }
}

/// Self-telemetry of one filelog receiver.
#[derive(Clone)]
struct Counters {
    logs: ReceiverCounters,
    checkpoint_failures: Counter,
    retries: Counter,
}

/// Everything one receiver's reading loop owns.
pub struct FileLog {
    id: String,
    config: Config,
    include: Vec<Glob>,
    exclude: Vec<Glob>,
    tracker: Tracker,
    chain: Chain,
    nop: bool,
    checkpoint: Option<checkpoint::Checkpoint>,
}

/// What one delivery attempt of a batch gave.
pub enum Delivered {
    Accepted,
    Refused(String),
}

impl FileLog {
    /// Builds the reader (opens and locks the checkpoint when `storage` is set).
    pub fn new(id: &str, config: &Config, storage: Option<&Storage>) -> Result<FileLog, String> {
        let fail = |e: String| format!("receiver {id:?}: {e}");
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(fail(problems.join("; ")));
        }
        let (checkpoint, restored) = match storage {
            Some(storage) => {
                let (c, known) = checkpoint::Checkpoint::open(storage, id).map_err(fail)?;
                (Some(c), known)
            }
            None => (None, Vec::new()),
        };
        let chain = Chain::build(&config.operators).map_err(|p| fail(p.join("; ")))?;
        let settings = reader::Settings {
            fingerprint_size: config.fingerprint_size.0 as usize,
            splitter: config.splitter().map_err(fail)?,
            start_at_beginning: config.start_at == "beginning",
            force_flush_period: config.force_flush_period.get(),
            max_concurrent_files: config.max_concurrent_files,
            delete_after_read: config.delete_after_read,
        };
        let globs = |list: &[String]| {
            list.iter()
                .map(|g| Glob::new(g))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(FileLog {
            id: id.to_string(),
            include: globs(&config.include).map_err(fail)?,
            exclude: globs(&config.exclude).map_err(fail)?,
            tracker: Tracker::new(settings, restored),
            chain,
            nop: nop_encoding(&config.encoding).map_err(fail)?,
            config: config.clone(),
            checkpoint,
        })
    }

    fn entry(&self, token: Token, observed: u64) -> Entry {
        let bytes = token.bytes.unwrap_or_default();
        let mut entry = Entry {
            observed,
            marks: vec![token.mark],
            ..Default::default()
        };
        if self.nop {
            entry.raw_body = Some(bytes);
        } else {
            entry.body = Value::String(match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            });
        }
        let attrs = &token.attrs;
        for (on, key, value) in [
            (self.config.include_file_name, "log.file.name", &attrs.name),
            (self.config.include_file_path, "log.file.path", &attrs.path),
            (
                self.config.include_file_name_resolved,
                "log.file.name_resolved",
                &attrs.name_resolved,
            ),
            (
                self.config.include_file_path_resolved,
                "log.file.path_resolved",
                &attrs.path_resolved,
            ),
        ] {
            if on {
                entry
                    .attributes
                    .insert(key.to_string(), Value::String(value.clone()));
            }
        }
        for (k, v) in &self.config.attributes {
            entry.attributes.insert(k.clone(), v.clone());
        }
        for (k, v) in &self.config.resource {
            entry.resource.insert(k.clone(), v.clone());
        }
        entry
    }

    /// Matches the globs (start of a poll).
    pub fn discover(&mut self) {
        let paths = glob::find_files(&self.include, &self.exclude);
        self.tracker.discover(&paths);
    }

    /// Reads one batch: the entries to send and every mark the batch completes. `force`
    /// flushes what operators hold (at shutdown). Returns whether more may be waiting.
    pub fn next_batch(&mut self, now: Instant, force: bool) -> (Output, bool) {
        let mut tokens = Vec::new();
        let more = self
            .tracker
            .read(now, BATCH_ENTRIES, BATCH_BYTES, &mut tokens);
        let observed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut out = Output::default();
        for token in tokens {
            if token.bytes.is_none() {
                out.dropped.push(token.mark);
                continue;
            }
            let entry = self.entry(token, observed);
            self.chain.process(entry, now, &mut out);
        }
        self.chain.flush(now, force, &mut out);
        (out, more)
    }

    /// The pipelines' answer for a batch from `next_batch`; `done`: its [`Output::marks`].
    pub fn settle(&mut self, done: &[Mark], delivered: &Delivered) -> Result<(), String> {
        match delivered {
            Delivered::Accepted => {
                let held = self.chain.held();
                if self.tracker.commit(done, &held) {
                    if let Some(c) = &mut self.checkpoint {
                        c.save(&self.tracker.known())?;
                    }
                }
                Ok(())
            }
            Delivered::Refused(_) => {
                self.tracker.rewind();
                self.chain.clear();
                Ok(())
            }
        }
    }

    /// End of a poll: close files read to their end that no longer match.
    pub fn finish_poll(&mut self) -> Result<(), String> {
        self.tracker.close_finished();
        if let Some(c) = &mut self.checkpoint {
            c.save(&self.tracker.known())?;
        }
        Ok(())
    }

    pub fn waiting(&self) -> bool {
        self.tracker.waiting()
    }
}

/// A running receiver.
pub struct Running {
    pub task: JoinHandle<()>,
}

/// Starts the reading loop on a blocking thread; it stops (after handing over what
/// operators hold) when `stop` is cancelled.
pub fn start(
    id: &str,
    config: &Config,
    storage: Option<&Storage>,
    consumers: Consumers,
    registry: &Arc<Registry>,
    stop: CancellationToken,
) -> Result<Running, String> {
    let mut filelog = FileLog::new(id, config, storage)?;
    let labels = [("receiver", id)];
    let counters = Counters {
        logs: ReceiverCounters::new(registry, id, "", Signal::Logs),
        checkpoint_failures: registry.counter(
            "oxcol_receiver_filelog_checkpoint_failures",
            "Checkpoint writes of a filelog receiver that failed (the previous checkpoint stays).",
            &labels,
        ),
        retries: registry.counter(
            "oxcol_receiver_filelog_retries",
            "Batches a filelog receiver reads again because the pipelines refused them.",
            &labels,
        ),
    };
    let runtime = tokio::runtime::Handle::current();
    let poll_interval = config.poll_interval.get();
    let retry = config.retry_on_failure.clone();
    let task = tokio::task::spawn_blocking(move || {
        run(
            &mut filelog,
            &consumers,
            &runtime,
            &counters,
            poll_interval,
            &retry,
            &stop,
        );
    });
    Ok(Running { task })
}

/// Sleeps `duration`, waking early when `stop` is cancelled; returns whether stopped.
fn sleep_or_stop(duration: Duration, stop: &CancellationToken) -> bool {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        if stop.is_cancelled() {
            return true;
        }
        std::thread::sleep((deadline - Instant::now()).min(Duration::from_millis(20)));
    }
    stop.is_cancelled()
}

/// Hands entries to the pipelines as one encoded export request (what queues and
/// exporters pass on without decoding).
fn deliver(
    filelog: &FileLog,
    entries: Vec<Entry>,
    consumers: &Consumers,
    runtime: &tokio::runtime::Handle,
    counters: &Counters,
) -> Delivered {
    if entries.is_empty() {
        return Delivered::Accepted;
    }
    let items = entries.len() as u64;
    let request = ExportLogsServiceRequest {
        resource_logs: entry::to_resource_logs(entries),
    };
    let batch = Batch::from_encoded_counted(Signal::Logs, request.encode_to_vec().into(), items);
    let started = std::time::SystemTime::now();
    let result = runtime.block_on(consumers.consume(batch));
    counters.logs.finished(
        started,
        items,
        result.as_ref().err().map(ToString::to_string),
    );
    match result {
        Ok(()) => Delivered::Accepted,
        Err(refusal) => {
            tracing::debug!(receiver = %filelog.id, %refusal, "filelog: the pipelines refused a batch; it is read again");
            Delivered::Refused(refusal.to_string())
        }
    }
}

fn run(
    filelog: &mut FileLog,
    consumers: &Consumers,
    runtime: &tokio::runtime::Handle,
    counters: &Counters,
    poll_interval: Duration,
    retry: &RetryConfig,
    stop: &CancellationToken,
) {
    let mut backoff = retry.initial_interval.get().max(Duration::from_millis(10));
    'polls: loop {
        if stop.is_cancelled() {
            break;
        }
        if consumers.admit(Signal::Logs).is_ok() {
            filelog.discover();
            loop {
                let (out, more) = filelog.next_batch(Instant::now(), false);
                if out.entries.is_empty() && out.dropped.is_empty() && !more {
                    break;
                }
                let done = out.marks();
                let delivered = deliver(filelog, out.entries, consumers, runtime, counters);
                let refused = matches!(delivered, Delivered::Refused(_));
                if let Err(error) = filelog.settle(&done, &delivered) {
                    counters.checkpoint_failures.add(1);
                    tracing::warn!(receiver = %filelog.id, %error, "filelog: checkpoint write failed");
                }
                if refused {
                    counters.retries.add(1);
                    if sleep_or_stop(backoff, stop) {
                        break 'polls;
                    }
                    backoff = (backoff * 2).min(retry.max_interval.get().max(backoff));
                    continue 'polls;
                }
                backoff = retry.initial_interval.get().max(Duration::from_millis(10));
                if !more || stop.is_cancelled() {
                    break;
                }
            }
            if let Err(error) = filelog.finish_poll() {
                counters.checkpoint_failures.add(1);
                tracing::warn!(receiver = %filelog.id, %error, "filelog: checkpoint write failed");
            }
        }
        // An unfinished entry is flushed after force_flush_period: poll again by then.
        let wait = if filelog.waiting() {
            poll_interval.min(
                filelog
                    .config
                    .force_flush_period
                    .get()
                    .max(Duration::from_millis(10)),
            )
        } else {
            poll_interval
        };
        if sleep_or_stop(wait, stop) {
            break;
        }
    }
    // Hand over what operators still hold (bounded: the pipelines are still running).
    let (out, _) = filelog.next_batch(Instant::now(), true);
    if !out.entries.is_empty() || !out.dropped.is_empty() {
        let done = out.marks();
        let delivered = deliver(filelog, out.entries, consumers, runtime, counters);
        if let Err(error) = filelog.settle(&done, &delivered) {
            tracing::warn!(receiver = %filelog.id, %error, "filelog: checkpoint write failed at shutdown");
        }
    }
}
