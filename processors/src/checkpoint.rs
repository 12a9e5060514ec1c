//! Checkpoints of the stateful processors (`ewma`, `burnrate`) in a `file_storage`
//! extension's directory, so their state survives a restart.
//!
//! One file per processor id and pipeline: `processor.<id>.<pipeline>.state` (every
//! character outside `[A-Za-z0-9_-]` written as `%XX`). Layout, integers little-endian:
//!
//! ```text
//! 0   8  magic "OXCOLPST"
//! 8   4  crc32 (IEEE) of every byte from offset 12 to the end
//! 12  4  state format version (per processor type)
//! 16  8  config fingerprint (FNV-1a 64 of the config keys the state depends on)
//! 24  8  newest data timestamp in the state (unix ns)
//! 32  8  payload length
//! 40  .. payload: the processor's state, encoded by `Encoder`, compressed as one zstd frame
//! ```
//!
//! Writing is atomic: `<file>.tmp` is written and synced, renamed over the file, and the
//! directory is synced (the syncs follow the extension's `fsync` key). A checkpoint is
//! taken on the wall clock (`checkpoint_interval`, only when state changed since the
//! last one) and at shutdown, after the pipeline drained. The processor encodes its state
//! on the pipeline task; compression and the write run on a thread of their own, which
//! holds at most one snapshot waiting (a newer one replaces it).
//!
//! Restoring never fails start-up: a missing file starts empty; an unreadable, truncated,
//! corrupt or other-version file, or one written for a different config, starts empty,
//! logged with the reason and counted in `oxcol_processor_state_restore_failures{reason}`.
//! A `<file>.lock` held with `flock` keeps a second oxcol from using the same file.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use oxcol_core::telemetry::{Counter, Gauge, Registry};

const MAGIC: &[u8; 8] = b"OXCOLPST";
/// Bytes before the payload.
pub const HEADER_LEN: usize = 40;
/// zstd level of the payload: fast; the encodings are made to compress well.
const ZSTD_LEVEL: i32 = 1;
/// Largest decompressed payload accepted (a corrupt frame must not allocate without bound).
const MAX_PAYLOAD: usize = 4 << 30;

pub use oxcol_core::storage::Storage;

/// Why a checkpoint was not used (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreFailure {
    Unreadable,
    Truncated,
    Corrupt,
    Version,
    ConfigChanged,
}

impl RestoreFailure {
    pub const ALL: [RestoreFailure; 5] = [
        RestoreFailure::Unreadable,
        RestoreFailure::Truncated,
        RestoreFailure::Corrupt,
        RestoreFailure::Version,
        RestoreFailure::ConfigChanged,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RestoreFailure::Unreadable => "unreadable",
            RestoreFailure::Truncated => "truncated",
            RestoreFailure::Corrupt => "corrupt",
            RestoreFailure::Version => "version",
            RestoreFailure::ConfigChanged => "config_changed",
        }
    }
}

/// Self-telemetry of one processor's checkpoints.
#[derive(Clone, Debug, Default)]
pub struct CheckpointCounters {
    /// By reason, in `RestoreFailure::ALL` order.
    pub restore_failures: [Counter; 5],
    pub restored_series: Counter,
    pub restored_timestamp: Gauge,
    pub written: Counter,
    pub write_failures: Counter,
    pub bytes: Gauge,
}

impl CheckpointCounters {
    pub fn new(registry: &Registry, processor: &str) -> CheckpointCounters {
        let p = [("processor", processor)];
        CheckpointCounters {
            restore_failures: RestoreFailure::ALL.map(|reason| {
                registry.counter(
                    "oxcol_processor_state_restore_failures",
                    "Checkpoints of a stateful processor not used at start (it started empty), by reason.",
                    &[("processor", processor), ("reason", reason.label())],
                )
            }),
            restored_series: registry.counter(
                "oxcol_processor_state_restored_series",
                "Series (and SLO groups) a stateful processor restored from its checkpoint at start.",
                &p,
            ),
            restored_timestamp: registry.gauge(
                "oxcol_processor_state_restored_timestamp_seconds",
                "Newest data timestamp in the state restored at start (unix seconds; 0 when it started empty).",
                &p,
            ),
            written: registry.counter(
                "oxcol_processor_state_checkpoints",
                "Checkpoints of a stateful processor written.",
                &p,
            ),
            write_failures: registry.counter(
                "oxcol_processor_state_checkpoint_failures",
                "Checkpoints of a stateful processor that could not be written (the previous one stays).",
                &p,
            ),
            bytes: registry.gauge(
                "oxcol_processor_state_checkpoint_bytes",
                "Size of the last checkpoint written, in bytes.",
                &p,
            ),
        }
    }

    fn failure(&self, reason: RestoreFailure) -> &Counter {
        let index = RestoreFailure::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        &self.restore_failures[index]
    }
}

/// The checkpoint file name of `processor` in `pipeline`.
pub fn file_name(processor: &str, pipeline: &str) -> String {
    fn escape(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for byte in text.bytes() {
            if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
                out.push(byte as char);
            } else {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
        out
    }
    format!("processor.{}.{}.state", escape(processor), escape(pipeline))
}

/// FNV-1a 64 of `text`: the config fingerprint (stable across runs and builds).
pub fn fingerprint(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A checkpoint read back: the decompressed payload and the newest data timestamp.
#[derive(Debug, PartialEq)]
pub struct Restored {
    pub payload: Vec<u8>,
    pub newest_ts: u64,
}

/// Builds a checkpoint file's bytes.
pub fn encode_file(version: u32, fingerprint: u64, newest_ts: u64, payload: &[u8]) -> Vec<u8> {
    let compressed = zstd::bulk::compress(payload, ZSTD_LEVEL).unwrap_or_else(|error| {
        // zstd fails only on allocation problems; an empty payload is a valid empty state.
        tracing::warn!(%error, "cannot compress a checkpoint; writing an empty state");
        zstd::bulk::compress(&[], ZSTD_LEVEL).unwrap_or_default()
    });
    let mut out = Vec::with_capacity(HEADER_LEN + compressed.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&fingerprint.to_le_bytes());
    out.extend_from_slice(&newest_ts.to_le_bytes());
    out.extend_from_slice(&(compressed.len() as u64).to_le_bytes());
    out.extend_from_slice(&compressed);
    let crc = crc32fast::hash(&out[12..]);
    out[8..12].copy_from_slice(&crc.to_le_bytes());
    out
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Checks a checkpoint file's bytes and returns its payload, or why it cannot be used.
pub fn decode_file(
    bytes: &[u8],
    version: u32,
    fingerprint: u64,
) -> Result<Restored, (RestoreFailure, String)> {
    if bytes.len() < HEADER_LEN {
        return Err((
            RestoreFailure::Truncated,
            format!(
                "{} bytes, shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            ),
        ));
    }
    if &bytes[0..8] != MAGIC {
        return Err((
            RestoreFailure::Corrupt,
            "not an oxcol processor checkpoint (bad magic)".to_string(),
        ));
    }
    let found_version = le_u32(bytes, 12);
    if found_version != version {
        return Err((
            RestoreFailure::Version,
            format!("state format version {found_version}, this oxcol reads version {version}"),
        ));
    }
    let length = le_u64(bytes, 32);
    let actual = (bytes.len() - HEADER_LEN) as u64;
    if length > actual {
        return Err((
            RestoreFailure::Truncated,
            format!("payload of {length} bytes announced, {actual} present"),
        ));
    }
    if length < actual {
        return Err((
            RestoreFailure::Corrupt,
            format!("{} bytes after the announced payload", actual - length),
        ));
    }
    let crc = le_u32(bytes, 8);
    if crc32fast::hash(&bytes[12..]) != crc {
        return Err((RestoreFailure::Corrupt, "checksum mismatch".to_string()));
    }
    let found_fingerprint = le_u64(bytes, 16);
    if found_fingerprint != fingerprint {
        return Err((
            RestoreFailure::ConfigChanged,
            "written with a different configuration of the state's keys".to_string(),
        ));
    }
    // Bounded: a frame claiming more than MAX_PAYLOAD is refused, not allocated.
    let mut payload = Vec::new();
    zstd::stream::Decoder::new(&bytes[HEADER_LEN..])
        .and_then(|decoder| {
            std::io::Read::read_to_end(
                &mut std::io::Read::take(decoder, MAX_PAYLOAD as u64 + 1),
                &mut payload,
            )
        })
        .map_err(|e| (RestoreFailure::Corrupt, format!("cannot decompress: {e}")))?;
    if payload.len() > MAX_PAYLOAD {
        return Err((RestoreFailure::Corrupt, "payload too large".to_string()));
    }
    Ok(Restored {
        payload,
        newest_ts: le_u64(bytes, 24),
    })
}

/// Writes `bytes` to `dir/name` atomically: temp file, sync, rename, sync directory.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8], fsync: bool) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    if fsync {
        file.sync_all()?;
    }
    drop(file);
    fs::rename(&tmp, dir.join(name))?;
    if fsync {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The latest snapshot waiting for the writer thread.
#[derive(Default)]
struct Slot {
    pending: Option<Snapshot>,
    closed: bool,
}

struct Snapshot {
    payload: Vec<u8>,
    newest_ts: u64,
}

struct Target {
    processor: String,
    dir: PathBuf,
    name: String,
    fsync: bool,
    version: u32,
    fingerprint: u64,
    counters: CheckpointCounters,
}

impl Target {
    fn write(&self, snapshot: &Snapshot) {
        let started = Instant::now();
        let bytes = encode_file(
            self.version,
            self.fingerprint,
            snapshot.newest_ts,
            &snapshot.payload,
        );
        match write_atomic(&self.dir, &self.name, &bytes, self.fsync) {
            Ok(()) => {
                self.counters.written.add(1);
                self.counters.bytes.set(bytes.len() as i64);
                tracing::debug!(processor = %self.processor, bytes = bytes.len(), elapsed = ?started.elapsed(), "checkpoint written");
            }
            Err(error) => {
                self.counters.write_failures.add(1);
                tracing::warn!(processor = %self.processor, file = %self.dir.join(&self.name).display(), %error, "cannot write the state checkpoint; the previous one stays (counted in oxcol_processor_state_checkpoint_failures)");
            }
        }
    }
}

/// A processor whose state is checkpointed: the policy every such processor follows,
/// written once. A checkpoint is written when the state changed since the last one and
/// the interval passed (`Processor::tick`), and once more after the pipeline drained
/// (`Processor::shutdown`); the state is encoded only then.
pub(crate) trait Checkpointed {
    /// The checkpointer (None without `storage`) and the changed-since-last flag.
    fn checkpoint_parts(&mut self) -> (&mut Option<Checkpointer>, &mut bool);
    /// The newest data-point time of the state, in nanoseconds since the epoch.
    fn newest_data_ts(&self) -> u64;
    fn encode_state(&self) -> Vec<u8>;

    /// For `Processor::tick`: checkpoints when due and the state changed.
    fn checkpoint_if_due(&mut self) {
        let (checkpoint, dirty) = self.checkpoint_parts();
        if !*dirty || !checkpoint.as_ref().is_some_and(Checkpointer::due) {
            return;
        }
        let (payload, newest_ts) = (self.encode_state(), self.newest_data_ts());
        let (checkpoint, dirty) = self.checkpoint_parts();
        *dirty = false;
        if let Some(checkpoint) = checkpoint.as_mut() {
            checkpoint.submit(payload, newest_ts);
        }
    }

    /// For `Processor::shutdown`: the final checkpoint, after the pipeline drained.
    fn final_checkpoint(&mut self) {
        if self.checkpoint_parts().0.is_none() {
            return;
        }
        let (payload, newest_ts) = (self.encode_state(), self.newest_data_ts());
        if let Some(mut checkpoint) = self.checkpoint_parts().0.take() {
            checkpoint.finish(payload, newest_ts);
        }
    }
}

/// The checkpoint file of one processor instance: restores at start, then writes.
pub struct Checkpointer {
    target: Arc<Target>,
    interval: Duration,
    last: Instant,
    slot: Arc<(Mutex<Slot>, Condvar)>,
    writer: Option<JoinHandle<()>>,
    _lock: File,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("file", &self.target.dir.join(&self.target.name))
            .finish()
    }
}

fn lock(dir: &Path, name: &str, timeout: Duration) -> Result<File, String> {
    let path = dir.join(format!("{name}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) if started.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "{} is locked by another process (another oxcol using the same file_storage directory and processor id?); give each oxcol its own directory",
                    path.display()
                ));
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(format!("cannot lock {}: {e}", path.display()));
            }
        }
    }
}

impl Checkpointer {
    /// Opens the checkpoint of `processor` in `pipeline`: locks it, reads what a previous
    /// run left (None when missing or unusable: logged and counted, never an error), and
    /// starts the writer thread. Errors only when the directory cannot be used at all.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        storage: &Storage,
        processor: &str,
        pipeline: &str,
        version: u32,
        fingerprint: u64,
        interval: Duration,
        registry: Option<&Registry>,
    ) -> Result<(Checkpointer, Option<Restored>), String> {
        let dir = storage.directory.clone();
        if storage.create_directory {
            use std::os::unix::fs::DirBuilderExt;
            fs::DirBuilder::new()
                .recursive(true)
                .mode(storage.directory_permissions)
                .create(&dir)
                .map_err(|e| {
                    format!(
                        "cannot create the {} directory {}: {e}",
                        storage.extension,
                        dir.display()
                    )
                })?;
        } else if !dir.is_dir() {
            return Err(format!(
                "the {} directory {} does not exist; create it or set create_directory: true",
                storage.extension,
                dir.display()
            ));
        }
        let name = file_name(processor, pipeline);
        let lock = lock(&dir, &name, storage.lock_timeout)?;
        let counters = registry
            .map(|r| CheckpointCounters::new(r, processor))
            .unwrap_or_default();
        let path = dir.join(&name);
        let restored = match fs::read(&path) {
            Ok(bytes) => match decode_file(&bytes, version, fingerprint) {
                Ok(restored) => Some(restored),
                Err((reason, detail)) => {
                    counters.failure(reason).add(1);
                    tracing::warn!(processor, file = %path.display(), reason = reason.label(), %detail, "state checkpoint not used: starting empty (counted in oxcol_processor_state_restore_failures)");
                    None
                }
            },
            Err(error) if error.kind() == ErrorKind::NotFound => {
                tracing::info!(processor, file = %path.display(), "no state checkpoint yet: starting empty");
                None
            }
            Err(error) => {
                counters.failure(RestoreFailure::Unreadable).add(1);
                tracing::warn!(processor, file = %path.display(), %error, reason = "unreadable", "state checkpoint not used: starting empty (counted in oxcol_processor_state_restore_failures)");
                None
            }
        };
        let target = Arc::new(Target {
            processor: processor.to_string(),
            dir,
            name,
            fsync: storage.fsync,
            version,
            fingerprint,
            counters,
        });
        let slot: Arc<(Mutex<Slot>, Condvar)> = Arc::default();
        let writer = {
            let (target, slot) = (Arc::clone(&target), Arc::clone(&slot));
            std::thread::Builder::new()
                .name("oxcol-checkpoint".to_string())
                .spawn(move || writer_loop(&target, &slot))
                .map_err(|e| format!("cannot start the checkpoint writer thread: {e}"))?
        };
        Ok((
            Checkpointer {
                target,
                interval,
                last: Instant::now(),
                slot,
                writer: Some(writer),
                _lock: lock,
            },
            restored,
        ))
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    pub fn counters(&self) -> &CheckpointCounters {
        &self.target.counters
    }

    /// Whether a checkpoint is due on the wall clock (90% of the interval, so a pipeline
    /// ticking at the interval does not skip every other tick).
    pub fn due(&self) -> bool {
        self.last.elapsed() >= self.interval.mul_f64(0.9)
    }

    /// Hands a snapshot to the writer thread (replacing one still waiting).
    pub fn submit(&mut self, payload: Vec<u8>, newest_ts: u64) {
        self.last = Instant::now();
        let (lock, ready) = &*self.slot;
        let mut slot = lock.lock().unwrap_or_else(|p| p.into_inner());
        slot.pending = Some(Snapshot { payload, newest_ts });
        ready.notify_one();
    }

    /// Writes the final snapshot and waits for it (shutdown).
    pub fn finish(&mut self, payload: Vec<u8>, newest_ts: u64) {
        self.stop_writer();
        self.target.write(&Snapshot { payload, newest_ts });
    }

    fn stop_writer(&mut self) {
        {
            let (lock, ready) = &*self.slot;
            let mut slot = lock.lock().unwrap_or_else(|p| p.into_inner());
            slot.closed = true;
            // A snapshot still waiting is older than the final one: not worth writing.
            slot.pending = None;
            ready.notify_one();
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }

    /// Restore counters: `series` restored, newest data timestamp.
    pub fn restored(&self, series: usize, newest_ts: u64) {
        self.target.counters.restored_series.add(series as u64);
        self.target
            .counters
            .restored_timestamp
            .set((newest_ts / 1_000_000_000) as i64);
    }

    /// Counts a checkpoint that was read but could not be decoded.
    pub fn decode_failed(&self, detail: &str) {
        self.target.counters.failure(RestoreFailure::Corrupt).add(1);
        tracing::warn!(processor = %self.target.processor, file = %self.target.dir.join(&self.target.name).display(), reason = "corrupt", %detail, "state checkpoint not used: starting empty (counted in oxcol_processor_state_restore_failures)");
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Without `finish` (a processor dropped without shutdown): let the writer finish
        // what it was given and end.
        {
            let (lock, ready) = &*self.slot;
            let mut slot = lock.lock().unwrap_or_else(|p| p.into_inner());
            slot.closed = true;
            ready.notify_one();
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn writer_loop(target: &Target, slot: &(Mutex<Slot>, Condvar)) {
    let (lock, ready) = slot;
    loop {
        let snapshot = {
            let mut slot = lock.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(snapshot) = slot.pending.take() {
                    break snapshot;
                }
                if slot.closed {
                    return;
                }
                slot = ready.wait(slot).unwrap_or_else(|p| p.into_inner());
            }
        };
        target.write(&snapshot);
    }
}

/// A compact little-endian encoding for state payloads.
#[derive(Default)]
pub struct Encoder {
    pub buf: Vec<u8>,
}

impl Encoder {
    pub fn with_capacity(capacity: usize) -> Encoder {
        Encoder {
            buf: Vec::with_capacity(capacity),
        }
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }
    pub fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }
    pub fn str(&mut self, s: &str) {
        self.len(s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }
}

/// Reads what `Encoder` wrote; every read is bounds-checked (corrupt input is an error,
/// never a panic or an unbounded allocation).
pub struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(data: &'a [u8]) -> Decoder<'a> {
        Decoder { data, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.data.len())
            .ok_or_else(|| format!("state ends early (at byte {})", self.pos))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32, String> {
        let mut word = [0u8; 4];
        word.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(word))
    }
    pub fn u64(&mut self) -> Result<u64, String> {
        let mut word = [0u8; 8];
        word.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(word))
    }
    pub fn i64(&mut self) -> Result<i64, String> {
        Ok(self.u64()? as i64)
    }
    pub fn f64(&mut self) -> Result<f64, String> {
        Ok(f64::from_bits(self.u64()?))
    }
    /// A count of items of at least `min_item_bytes` each (checked against what is left).
    pub fn len(&mut self, min_item_bytes: usize) -> Result<usize, String> {
        let n = self.u64()?;
        let left = (self.data.len() - self.pos) as u64;
        if n.saturating_mul(min_item_bytes.max(1) as u64) > left {
            return Err(format!(
                "count {n} at byte {} exceeds the state's size",
                self.pos
            ));
        }
        Ok(n as usize)
    }
    pub fn str(&mut self) -> Result<String, String> {
        let n = self.len(1)?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "invalid UTF-8 in state".to_string())
    }
    pub fn finished(&self) -> Result<(), String> {
        if self.pos == self.data.len() {
            Ok(())
        } else {
            Err(format!(
                "{} unread bytes after the state",
                self.data.len() - self.pos
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(dir: &Path) -> Storage {
        Storage {
            extension: "file_storage".to_string(),
            directory: dir.to_path_buf(),
            fsync: true,
            create_directory: false,
            directory_permissions: 0o750,
            lock_timeout: Duration::from_millis(50),
        }
    }

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("oxcol-ckpt-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("creates a scratch dir");
        dir
    }

    #[test]
    fn file_names_are_unambiguous() {
        assert_eq!(
            file_name("burnrate/slo", "metrics"),
            "processor.burnrate%2Fslo.metrics.state"
        );
        assert_ne!(file_name("a.b", "c"), file_name("a", "b.c"));
        assert_ne!(file_name("a_b", "c"), file_name("a", "b_c"));
    }

    #[test]
    fn file_round_trip_and_every_kind_of_damage_is_classified() {
        let payload: Vec<u8> = (0..10_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let bytes = encode_file(3, 77, 1234, &payload);
        assert_eq!(
            decode_file(&bytes, 3, 77),
            Ok(Restored {
                payload: payload.clone(),
                newest_ts: 1234
            })
        );
        let reason = |bytes: &[u8], version, fp| {
            decode_file(bytes, version, fp).map(|_| ()).map_err(|e| e.0)
        };
        assert_eq!(reason(&bytes, 4, 77), Err(RestoreFailure::Version));
        assert_eq!(reason(&bytes, 3, 78), Err(RestoreFailure::ConfigChanged));
        assert_eq!(
            reason(&bytes[..bytes.len() - 1], 3, 77),
            Err(RestoreFailure::Truncated)
        );
        assert_eq!(reason(&bytes[..10], 3, 77), Err(RestoreFailure::Truncated));
        assert_eq!(reason(&[], 3, 77), Err(RestoreFailure::Truncated));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(reason(&longer, 3, 77), Err(RestoreFailure::Corrupt));
        // Every single flipped bit outside the version field is caught.
        for at in (0..bytes.len()).filter(|at| !(12..16).contains(at)) {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x10;
            assert!(
                reason(&flipped, 3, 77).is_err(),
                "flip at byte {at} not detected"
            );
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = oxcol_core::testdata::XorShift64(0x9e37_79b9_7f4a_7c15);
        let good = encode_file(1, 1, 1, b"hello state");
        for round in 0..2000 {
            let state = rng.next_u64();
            let mut bytes = if round % 2 == 0 {
                good.clone()
            } else {
                vec![0u8; (state % 97) as usize]
            };
            for (i, byte) in bytes.iter_mut().enumerate() {
                if (state >> (i % 64)) & 3 == 0 {
                    *byte = (state >> 8) as u8 ^ i as u8;
                }
            }
            let _ = decode_file(&bytes, 1, 1);
            let mut d = Decoder::new(&bytes);
            let _ = (d.len(8), d.str(), d.f64());
        }
    }

    #[test]
    fn atomic_write_replaces_and_the_writer_thread_writes_on_submit_and_finish() {
        let dir = scratch("writer");
        let registry = Registry::new();
        let (mut ckpt, restored) = Checkpointer::open(
            &storage(&dir),
            "ewma/x",
            "metrics",
            1,
            9,
            Duration::from_secs(30),
            Some(&registry),
        )
        .expect("opens");
        assert!(restored.is_none());
        ckpt.submit(b"first".to_vec(), 10);
        let deadline = Instant::now() + Duration::from_secs(5);
        while ckpt.counters().written.get() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(ckpt.counters().written.get(), 1);
        ckpt.finish(b"second".to_vec(), 20);
        assert_eq!(ckpt.counters().written.get(), 2);
        assert!(
            !dir.join(format!("{}.tmp", file_name("ewma/x", "metrics")))
                .exists()
        );
        // A second instance cannot take the same file while the first holds it.
        let second = Checkpointer::open(
            &storage(&dir),
            "ewma/x",
            "metrics",
            1,
            9,
            Duration::from_secs(30),
            None,
        );
        assert!(
            second
                .as_ref()
                .err()
                .is_some_and(|e| e.contains("locked by another process")),
            "{:?}",
            second.err()
        );
        drop(ckpt);
        let (_again, restored) = Checkpointer::open(
            &storage(&dir),
            "ewma/x",
            "metrics",
            1,
            9,
            Duration::from_secs(30),
            None,
        )
        .expect("reopens");
        assert_eq!(
            restored,
            Some(Restored {
                payload: b"second".to_vec(),
                newest_ts: 20
            })
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_directory_is_an_error_unless_created() {
        let dir = scratch("mkdir").join("sub/dir");
        let err = Checkpointer::open(
            &storage(&dir),
            "ewma",
            "metrics",
            1,
            1,
            Duration::from_secs(1),
            None,
        )
        .err();
        assert!(err.is_some_and(|e| {
            e.contains("does not exist; create it or set create_directory: true")
        }));
        let created = Storage {
            create_directory: true,
            ..storage(&dir)
        };
        assert!(
            Checkpointer::open(
                &created,
                "ewma",
                "metrics",
                1,
                1,
                Duration::from_secs(1),
                None
            )
            .is_ok()
        );
        assert!(dir.is_dir());
        let _ = fs::remove_dir_all(dir.parent().and_then(Path::parent).expect("scratch parent"));
    }
}
