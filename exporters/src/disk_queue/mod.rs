//! The disk queue behind `sending_queue.storage: file_storage/NAME`: append-only segment
//! files of checksummed records (see `record`), and a small `meta` file holding the
//! committed read position.
//!
//! - **Append** (`append`): the record is handed to one writer thread, which takes every
//!   append waiting, writes them with one `pwrite` at the published end of the current
//!   segment, syncs once (`fsync: true`), publishes the new end, and only then answers all
//!   of them (group commit). `append` returning Ok means the record is on disk.
//! - **Read** (`next`/`try_next`): records are read back from the files in order, up to
//!   the published end. Each read record gets a ticket.
//! - **Commit** (`ack`): when the send of a record finished, its ticket is acked. The
//!   committed position advances over the longest prefix of acked tickets; the writer
//!   thread persists it atomically (`meta.tmp`, sync, rename to `meta`, sync directory) and
//!   then deletes the segments wholly before it.
//! - **Bound**: bytes of all live segments. An append that would exceed it is refused.
//! - **Start** (`open`): segments before the committed position are deleted; every other
//!   segment is scanned; a record whose length runs past the end of its file (a torn
//!   write) or whose checksum fails is counted in `corrupt_records` and logged; a torn tail
//!   is cut off (the file truncated), a bad record followed by a good one is skipped.
//!
//! After a crash, records read but not yet committed are read again: at-least-once.

pub mod config;
pub mod record;

pub use config::Config;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use oxcol_core::Signal;
use oxcol_core::telemetry::{Counter, Gauge};
use record::{HEADER_LEN, Header, MAX_PAYLOAD};
use tokio::sync::{Notify, oneshot};

const META: &str = "meta";
const META_TMP: &str = "meta.tmp";
const LOCK: &str = "lock";
const SEGMENT_SUFFIX: &str = ".seg";
/// Most appends one group commit takes.
const MAX_GROUP: usize = 4096;

/// What a queue needs from its `file_storage` extension and the exporter.
#[derive(Clone, Debug)]
pub struct Options {
    /// The queue's own directory (created if missing).
    pub dir: PathBuf,
    pub fsync: bool,
    pub max_bytes: u64,
    pub segment_bytes: u64,
    /// How long to wait for another process's lock on `dir`.
    pub lock_timeout: Duration,
}

impl Options {
    /// The options for exporter `exporter`'s queue of `signal` in the extension's directory.
    pub fn for_exporter(config: &Config, exporter: &str, signal: Signal) -> Options {
        let base = PathBuf::from(config.directory.clone().unwrap_or_default());
        Options {
            dir: base.join(queue_dir_name(exporter, signal)),
            fsync: config.fsync,
            max_bytes: config.max_bytes(),
            segment_bytes: config.segment_bytes(),
            lock_timeout: config.timeout.get(),
        }
    }
}

/// `exporter_<id with every character outside [A-Za-z0-9_-] as _>_<signal>`.
pub fn queue_dir_name(exporter: &str, signal: Signal) -> String {
    let id: String = exporter
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("exporter_{id}_{}", signal.name())
}

/// Metrics a queue updates.
#[derive(Clone, Default)]
pub struct Stats {
    /// Corrupt or torn records found (at start or when read).
    pub corrupt_records: Counter,
    /// Bytes of live segments.
    pub bytes: Gauge,
}

/// A position in the queue: segment id and byte offset in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// A record read back from the queue.
#[derive(Debug)]
pub struct Record {
    pub signal: Signal,
    pub items: u64,
    pub payload: Bytes,
    pub ticket: u64,
}

/// What `open` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Records waiting to be sent.
    pub records: u64,
    /// Items in them.
    pub items: u64,
    /// Corrupt or torn records found and dropped.
    pub corrupt_records: u64,
    /// Bytes cut off torn tails or skipped.
    pub dropped_bytes: u64,
}

/// Why an append was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum AppendError {
    /// The bound would be exceeded: retry later.
    Full,
    /// Writing or syncing failed (disk full, I/O error): retry later.
    Io(String),
    /// The queue is closed.
    Closed,
}

impl std::fmt::Display for AppendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppendError::Full => f.write_str("disk queue is full"),
            AppendError::Io(e) => write!(f, "disk queue write failed: {e}"),
            AppendError::Closed => f.write_str("disk queue is closed"),
        }
    }
}

enum Message {
    Append {
        header: [u8; HEADER_LEN],
        payload: Bytes,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Commit(Position),
}

/// Published state shared by the writer and readers.
struct State {
    /// Live segments and their published (readable, synced) lengths.
    segments: BTreeMap<u64, u64>,
    /// The segment being written.
    write_segment: u64,
}

struct Shared {
    state: Mutex<State>,
    published: Notify,
    used_bytes: AtomicU64,
    max_bytes: u64,
    input_closed: AtomicBool,
    stats: Stats,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct ReadCursor {
    pos: Position,
    file: Option<(u64, File)>,
    next_ticket: u64,
    /// Bad records found (and counted) at start: skipped without counting again.
    known_bad: std::collections::HashSet<Position>,
}

#[derive(Default)]
struct Acks {
    /// Ticket -> (position after the record, acked).
    in_flight: BTreeMap<u64, (Position, bool)>,
    committed: Position,
}

/// One queue. Appends, reads and acks may come from any task.
pub struct DiskQueue {
    dir: PathBuf,
    shared: Arc<Shared>,
    to_writer: Mutex<Option<mpsc::Sender<Message>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    cursor: tokio::sync::Mutex<ReadCursor>,
    acks: Mutex<Acks>,
}

fn segment_name(id: u64) -> String {
    format!("{id:020}{SEGMENT_SUFFIX}")
}

fn io_context(what: &str, path: &Path, error: std::io::Error) -> String {
    format!("{what} {}: {error}", path.display())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn read_meta(dir: &Path) -> Option<Position> {
    let text = fs::read_to_string(dir.join(META)).ok()?;
    let mut parts = text.split_whitespace();
    let (tag, segment, offset, check) = (
        parts.next()?,
        parts.next()?.parse::<u64>().ok()?,
        parts.next()?.parse::<u64>().ok()?,
        parts.next()?.parse::<u32>().ok()?,
    );
    (tag == "oxcolq1" && check == crc32fast::hash(format!("{segment} {offset}").as_bytes()))
        .then_some(Position { segment, offset })
}

fn write_meta(dir: &Path, pos: Position, fsync: bool) -> std::io::Result<()> {
    let tmp = dir.join(META_TMP);
    let text = format!(
        "oxcolq1 {} {} {}\n",
        pos.segment,
        pos.offset,
        crc32fast::hash(format!("{} {}", pos.segment, pos.offset).as_bytes())
    );
    let mut file = File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    if fsync {
        file.sync_all()?;
    }
    fs::rename(&tmp, dir.join(META))?;
    if fsync {
        sync_dir(dir)?;
    }
    Ok(())
}

/// The outcome of scanning one segment from offset 0.
struct Scan {
    /// Length of the valid prefix (the file is cut there).
    valid_len: u64,
    /// Record boundaries (start offsets) with their items, bad records excluded.
    records: Vec<(u64, u64)>,
    /// Start offsets of whole records whose checksum failed (skipped when read).
    bad: Vec<u64>,
    corrupt: u64,
    dropped_bytes: u64,
}

fn read_header(file: &File, offset: u64) -> std::io::Result<Header> {
    let mut bytes = [0u8; HEADER_LEN];
    file.read_exact_at(&mut bytes, offset)?;
    Ok(Header::parse(&bytes))
}

/// Checks the record at `offset` of a file `file_len` long: `Ok(Some(header))` if whole
/// and valid, `Ok(None)` if whole but its checksum fails, `Err` if it runs past the end.
fn check_record(file: &File, offset: u64, file_len: u64) -> Result<Option<Header>, ()> {
    if offset + HEADER_LEN as u64 > file_len {
        return Err(());
    }
    let header = read_header(file, offset).map_err(|_| ())?;
    if header.len > MAX_PAYLOAD || offset + header.record_len() > file_len {
        return Err(());
    }
    let mut payload = vec![0u8; header.len as usize];
    file.read_exact_at(&mut payload, offset + HEADER_LEN as u64)
        .map_err(|_| ())?;
    Ok(header.verify(&payload).ok().map(|_| header))
}

fn scan_segment(file: &File) -> std::io::Result<Scan> {
    let file_len = file.metadata()?.len();
    let mut scan = Scan {
        valid_len: 0,
        records: Vec::new(),
        bad: Vec::new(),
        corrupt: 0,
        dropped_bytes: 0,
    };
    let mut offset = 0;
    while offset < file_len {
        match check_record(file, offset, file_len) {
            Ok(Some(header)) => {
                scan.records.push((offset, header.items));
                offset += header.record_len();
            }
            Ok(None) => {
                // Whole but bad: skip it if what follows is a good record or the end of
                // the file; otherwise its length cannot be trusted and the rest is cut.
                let header = read_header(file, offset)?;
                let next = offset + header.record_len();
                if next == file_len || matches!(check_record(file, next, file_len), Ok(Some(_))) {
                    scan.corrupt += 1;
                    scan.dropped_bytes += header.record_len();
                    scan.bad.push(offset);
                    offset = next;
                } else {
                    break;
                }
            }
            Err(()) => break,
        }
    }
    if offset < file_len {
        scan.corrupt += 1;
        scan.dropped_bytes += file_len - offset;
    }
    scan.valid_len = offset;
    Ok(scan)
}

fn acquire_lock(dir: &Path, timeout: Duration) -> Result<File, String> {
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_context("cannot open", &path, e))?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) if started.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "{} is locked by another process (another oxcol using the same file_storage directory?); give each oxcol its own directory",
                    dir.display()
                ));
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_context("cannot lock", &path, e)),
        }
    }
}

impl DiskQueue {
    /// Opens (or creates) the queue in `options.dir`, recovering what a previous run left.
    /// Corrupt records never stop the start: they are counted, logged and dropped.
    pub fn open(
        name: &str,
        options: &Options,
        stats: Stats,
    ) -> Result<(DiskQueue, Recovery), String> {
        let dir = options.dir.clone();
        fs::create_dir_all(&dir)
            .map_err(|e| io_context("cannot create queue directory", &dir, e))?;
        let lock = acquire_lock(&dir, options.lock_timeout)?;
        let _ = fs::remove_file(dir.join(META_TMP));
        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| io_context("cannot list", &dir, e))? {
            let entry = entry.map_err(|e| io_context("cannot list", &dir, e))?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SEGMENT_SUFFIX)) else {
                continue;
            };
            if let Ok(id) = stem.parse::<u64>() {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let meta = read_meta(&dir);
        if meta.is_none() && dir.join(META).exists() {
            tracing::warn!(
                queue = name,
                "disk queue meta file is unreadable; reading from the oldest segment (data may be sent twice)"
            );
        }
        let mut recovery = Recovery::default();
        let mut segments = BTreeMap::new();
        let mut read_pos = None;
        let mut known_bad = std::collections::HashSet::new();
        for &id in &ids {
            let path = dir.join(segment_name(id));
            if meta.is_some_and(|m| id < m.segment) {
                fs::remove_file(&path)
                    .map_err(|e| io_context("cannot delete consumed segment", &path, e))?;
                continue;
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| io_context("cannot open segment", &path, e))?;
            let scan =
                scan_segment(&file).map_err(|e| io_context("cannot read segment", &path, e))?;
            if file.metadata().map(|m| m.len()).unwrap_or(1) == 0 {
                // An empty segment a previous run created and never wrote.
                let _ = fs::remove_file(&path);
                continue;
            }
            if scan.valid_len < file.metadata().map(|m| m.len()).unwrap_or(0) {
                file.set_len(scan.valid_len)
                    .map_err(|e| io_context("cannot truncate torn segment", &path, e))?;
                file.sync_all()
                    .map_err(|e| io_context("cannot sync", &path, e))?;
            }
            if scan.corrupt > 0 {
                tracing::warn!(queue = name, segment = %path.display(), corrupt_records = scan.corrupt, dropped_bytes = scan.dropped_bytes, "disk queue: corrupt or torn records found at start (a crash during a write); dropped them and continuing");
            }
            recovery.corrupt_records += scan.corrupt;
            recovery.dropped_bytes += scan.dropped_bytes;
            // Where reading starts in this segment: the committed offset in the committed
            // segment (moved to the next record boundary if it is not one), else 0.
            let start = match meta {
                Some(m) if m.segment == id => scan
                    .records
                    .iter()
                    .map(|r| r.0)
                    .find(|o| *o >= m.offset)
                    .unwrap_or(scan.valid_len),
                _ => 0,
            };
            if read_pos.is_none() {
                read_pos = Some(Position {
                    segment: id,
                    offset: start,
                });
            }
            for (offset, items) in &scan.records {
                if *offset >= start {
                    recovery.records += 1;
                    recovery.items += items;
                }
            }
            segments.insert(id, scan.valid_len);
            known_bad.extend(scan.bad.iter().map(|offset| Position {
                segment: id,
                offset: *offset,
            }));
        }
        stats.corrupt_records.add(recovery.corrupt_records);
        // The segment to write: a new one after the last, so a segment once read past is
        // never appended to (and torn tails are never written over).
        let write_segment = ids
            .last()
            .map(|l| l + 1)
            .unwrap_or(1)
            .max(meta.map(|m| m.segment + 1).unwrap_or(1));
        let write_path = dir.join(segment_name(write_segment));
        let write_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&write_path)
            .map_err(|e| io_context("cannot create segment", &write_path, e))?;
        if options.fsync {
            sync_dir(&dir).map_err(|e| io_context("cannot sync", &dir, e))?;
        }
        segments.insert(write_segment, 0);
        let read_pos = read_pos.unwrap_or(Position {
            segment: write_segment,
            offset: 0,
        });
        let used: u64 = segments.values().sum();
        stats.bytes.set(used as i64);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                segments,
                write_segment,
            }),
            published: Notify::new(),
            used_bytes: AtomicU64::new(used),
            max_bytes: options.max_bytes,
            input_closed: AtomicBool::new(false),
            stats,
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            dir: dir.clone(),
            fsync: options.fsync,
            segment_bytes: options.segment_bytes,
            shared: Arc::clone(&shared),
            file: write_file,
            segment: write_segment,
            end: 0,
            committed: read_pos,
            meta_failing: false,
            _lock: lock,
            name: name.to_string(),
        };
        let handle = std::thread::Builder::new()
            .name("oxcol-disk-queue".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| format!("cannot start the disk queue writer thread: {e}"))?;
        let queue = DiskQueue {
            dir,
            shared,
            to_writer: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            cursor: tokio::sync::Mutex::new(ReadCursor {
                pos: read_pos,
                file: None,
                next_ticket: 0,
                known_bad,
            }),
            acks: Mutex::new(Acks {
                in_flight: BTreeMap::new(),
                committed: read_pos,
            }),
        };
        Ok((queue, recovery))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of live segments (what the bound counts).
    pub fn used_bytes(&self) -> u64 {
        self.shared.used_bytes.load(Ordering::Relaxed)
    }

    /// Appends a record; returns once it is written (and synced with `fsync`).
    pub async fn append(
        &self,
        signal: Signal,
        items: u64,
        payload: Bytes,
    ) -> Result<(), AppendError> {
        if payload.len() as u64 > MAX_PAYLOAD as u64 {
            return Err(AppendError::Io(format!(
                "a request of {} bytes is larger than a disk queue record may be ({MAX_PAYLOAD} bytes)",
                payload.len()
            )));
        }
        let len = HEADER_LEN as u64 + payload.len() as u64;
        // Reserve room first, so concurrent appends cannot overshoot the bound together.
        let before = self.shared.used_bytes.fetch_add(len, Ordering::SeqCst);
        if before + len > self.shared.max_bytes {
            self.shared.used_bytes.fetch_sub(len, Ordering::SeqCst);
            return Err(AppendError::Full);
        }
        let header = record::header(signal, items, &payload);
        let (reply, answer) = oneshot::channel();
        let sent = match self
            .to_writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            Some(tx) => tx
                .send(Message::Append {
                    header,
                    payload,
                    reply,
                })
                .is_ok(),
            None => false,
        };
        if !sent {
            self.shared.used_bytes.fetch_sub(len, Ordering::SeqCst);
            return Err(AppendError::Closed);
        }
        match answer.await {
            Ok(Ok(())) => Ok(()),
            // The writer released the reservation.
            Ok(Err(e)) => Err(AppendError::Io(e)),
            Err(_) => Err(AppendError::Closed),
        }
    }

    /// The next record, if one is readable now.
    pub async fn try_next(&self) -> Option<Record> {
        let mut cursor = self.cursor.lock().await;
        self.read_one(&mut cursor)
    }

    /// Waits for the next record. `None` once the input is closed (`close_input`) and
    /// everything was read, or when `stop` fires.
    pub async fn next(&self, stop: &tokio_util::sync::CancellationToken) -> Option<Record> {
        loop {
            let notified = self.shared.published.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut cursor = self.cursor.lock().await;
                if let Some(record) = self.read_one(&mut cursor) {
                    return Some(record);
                }
            }
            if self.shared.input_closed.load(Ordering::SeqCst) || stop.is_cancelled() {
                return None;
            }
            tokio::select! {
                _ = notified => {}
                _ = stop.cancelled() => return None,
            }
        }
    }

    /// Waits up to `deadline` for the next record.
    pub async fn next_until(&self, deadline: tokio::time::Instant) -> Option<Record> {
        loop {
            let notified = self.shared.published.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut cursor = self.cursor.lock().await;
                if let Some(record) = self.read_one(&mut cursor) {
                    return Some(record);
                }
            }
            if self.shared.input_closed.load(Ordering::SeqCst) {
                return None;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    fn read_one(&self, cursor: &mut ReadCursor) -> Option<Record> {
        loop {
            let (published, has_later) = {
                let state = self.shared.lock();
                let published = state.segments.get(&cursor.pos.segment).copied();
                let later = state
                    .segments
                    .range(cursor.pos.segment + 1..)
                    .next()
                    .map(|(id, _)| *id);
                (published, later)
            };
            let Some(published) = published else {
                // Only possible if the cursor's segment was never live; move on.
                cursor.pos = Position {
                    segment: has_later?,
                    offset: 0,
                };
                continue;
            };
            if cursor.pos.offset >= published {
                // A segment with a later one is complete: the writer never goes back.
                cursor.pos = Position {
                    segment: has_later?,
                    offset: 0,
                };
                cursor.file = None;
                continue;
            }
            if cursor.file.as_ref().map(|f| f.0) != Some(cursor.pos.segment) {
                let path = self.dir.join(segment_name(cursor.pos.segment));
                match File::open(&path) {
                    Ok(file) => cursor.file = Some((cursor.pos.segment, file)),
                    Err(error) => {
                        tracing::error!(segment = %path.display(), %error, "disk queue: cannot open segment to read; skipping it");
                        self.shared.stats.corrupt_records.add(1);
                        cursor.pos.offset = published;
                        continue;
                    }
                }
            }
            let file = &cursor.file.as_ref()?.1;
            match read_record(file, cursor.pos.offset, published) {
                Ok((header, signal, payload)) => {
                    let end = Position {
                        segment: cursor.pos.segment,
                        offset: cursor.pos.offset + header.record_len(),
                    };
                    let ticket = cursor.next_ticket;
                    cursor.next_ticket += 1;
                    cursor.pos = end;
                    self.acks
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .in_flight
                        .insert(ticket, (end, false));
                    return Some(Record {
                        signal,
                        items: header.items,
                        payload,
                        ticket,
                    });
                }
                Err(ReadError::Bad { record_len }) => {
                    // A whole record whose checksum fails: skip just it.
                    if !cursor.known_bad.remove(&cursor.pos) {
                        tracing::error!(
                            segment = cursor.pos.segment,
                            offset = cursor.pos.offset,
                            "disk queue: record fails its checksum; skipping it"
                        );
                        self.shared.stats.corrupt_records.add(1);
                    }
                    cursor.pos.offset += record_len;
                }
                Err(ReadError::Unreadable(reason)) => {
                    // Verified at start or written in this run: the disk changed under us.
                    tracing::error!(
                        segment = cursor.pos.segment,
                        offset = cursor.pos.offset,
                        reason,
                        "disk queue: unreadable record; skipping the rest of this segment"
                    );
                    self.shared.stats.corrupt_records.add(1);
                    cursor.pos.offset = published;
                }
            }
        }
    }

    /// Marks records as done (sent, or failed for good). The committed position advances
    /// over every record before the oldest one still in flight.
    pub fn ack(&self, tickets: &[u64]) {
        let commit = {
            let mut acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
            for ticket in tickets {
                if let Some(entry) = acks.in_flight.get_mut(ticket) {
                    entry.1 = true;
                }
            }
            let mut advanced = None;
            while let Some(entry) = acks.in_flight.first_entry() {
                if !entry.get().1 {
                    break;
                }
                advanced = Some(entry.remove().0);
            }
            if let Some(pos) = advanced {
                acks.committed = pos;
            }
            advanced
        };
        if let Some(pos) = commit {
            if let Some(tx) = self
                .to_writer
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
            {
                let _ = tx.send(Message::Commit(pos));
            }
        }
    }

    pub fn is_input_closed(&self) -> bool {
        self.shared.input_closed.load(Ordering::SeqCst)
    }

    /// No more appends will come: `next` returns `None` once everything was read.
    pub fn close_input(&self) {
        self.shared.input_closed.store(true, Ordering::SeqCst);
        self.shared.published.notify_waiters();
    }

    /// Stops the writer after it has persisted the last commit. Records not acked stay
    /// on disk for the next start.
    pub fn close(&self) {
        self.close_input();
        self.to_writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = handle.join();
        }
    }
}

impl Drop for DiskQueue {
    fn drop(&mut self) {
        self.close();
    }
}

enum ReadError {
    /// Whole, but the checksum fails.
    Bad {
        record_len: u64,
    },
    Unreadable(&'static str),
}

fn read_record(
    file: &File,
    offset: u64,
    published: u64,
) -> Result<(Header, Signal, Bytes), ReadError> {
    if offset + HEADER_LEN as u64 > published {
        return Err(ReadError::Unreadable(
            "record header runs past the published end",
        ));
    }
    let header = read_header(file, offset)
        .map_err(|_| ReadError::Unreadable("cannot read record header"))?;
    if header.len > MAX_PAYLOAD || offset + header.record_len() > published {
        return Err(ReadError::Unreadable(
            "record length runs past the published end",
        ));
    }
    let mut payload = vec![0u8; header.len as usize];
    file.read_exact_at(&mut payload, offset + HEADER_LEN as u64)
        .map_err(|_| ReadError::Unreadable("cannot read record payload"))?;
    let signal = header.verify(&payload).map_err(|_| ReadError::Bad {
        record_len: header.record_len(),
    })?;
    Ok((header, signal, Bytes::from(payload)))
}

/// The writer thread's state.
struct Writer {
    name: String,
    dir: PathBuf,
    fsync: bool,
    segment_bytes: u64,
    shared: Arc<Shared>,
    file: File,
    segment: u64,
    /// Published end of `segment`.
    end: u64,
    /// The last persisted commit position.
    committed: Position,
    /// The last `meta` write failed (logged once until one succeeds).
    meta_failing: bool,
    _lock: File,
}

type Pending = (u64, oneshot::Sender<Result<(), String>>);

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Message>) {
        let mut buf: Vec<u8> = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut pending: Vec<Pending> = Vec::new();
            let mut commit = None;
            buf.clear();
            let mut message = Some(first);
            while let Some(m) = message.take() {
                match m {
                    Message::Append {
                        header,
                        payload,
                        reply,
                    } => {
                        buf.extend_from_slice(&header);
                        buf.extend_from_slice(&payload);
                        pending.push((HEADER_LEN as u64 + payload.len() as u64, reply));
                    }
                    Message::Commit(pos) => commit = Some(pos),
                }
                if pending.len() < MAX_GROUP {
                    message = rx.try_recv().ok();
                }
            }
            if !pending.is_empty() {
                self.write_group(&buf, pending);
            }
            if let Some(pos) = commit {
                self.commit(pos);
            }
            if buf.capacity() > (16 << 20) {
                buf = Vec::new();
            }
        }
    }

    fn rotate(&mut self) -> Result<(), String> {
        let next = self.segment + 1;
        let path = self.dir.join(segment_name(next));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| io_context("cannot create segment", &path, e))?;
        if self.fsync {
            sync_dir(&self.dir).map_err(|e| io_context("cannot sync", &self.dir, e))?;
        }
        self.file = file;
        self.segment = next;
        self.end = 0;
        let mut state = self.shared.lock();
        state.segments.insert(next, 0);
        state.write_segment = next;
        Ok(())
    }

    fn write_group(&mut self, buf: &[u8], pending: Vec<Pending>) {
        let result = (|| {
            if self.end > 0 && self.end + buf.len() as u64 > self.segment_bytes {
                self.rotate()?;
            }
            let path = || self.dir.join(segment_name(self.segment));
            self.file
                .write_all_at(buf, self.end)
                .map_err(|e| io_context("cannot write", &path(), e))?;
            if self.fsync {
                self.file
                    .sync_data()
                    .map_err(|e| io_context("cannot sync", &path(), e))?;
            }
            Ok::<(), String>(())
        })();
        match result {
            Ok(()) => {
                self.end += buf.len() as u64;
                {
                    let mut state = self.shared.lock();
                    state.segments.insert(self.segment, self.end);
                }
                self.shared
                    .stats
                    .bytes
                    .set(self.shared.used_bytes.load(Ordering::Relaxed) as i64);
                self.shared.published.notify_waiters();
                for (_, reply) in pending {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(error) => {
                // Cut what may have been written; the next group writes at the same place.
                let _ = self.file.set_len(self.end);
                let reserved: u64 = pending.iter().map(|p| p.0).sum();
                self.shared.used_bytes.fetch_sub(reserved, Ordering::SeqCst);
                tracing::warn!(queue = %self.name, %error, records = pending.len(), "disk queue: append failed; refusing the data upstream (retryable)");
                for (_, reply) in pending {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }

    fn commit(&mut self, pos: Position) {
        if pos <= self.committed && !self.meta_failing {
            return;
        }
        match write_meta(&self.dir, pos, self.fsync) {
            Ok(()) => {
                self.committed = pos;
                self.meta_failing = false;
            }
            Err(error) => {
                // Not fatal: the next commit tries again; a crash meanwhile re-sends data.
                // Consumed segments are still deleted below (a full disk must free up); a
                // stale `meta` naming a deleted segment only means reading resumes at the
                // oldest segment left, which holds nothing older than the commit.
                if !self.meta_failing {
                    tracing::warn!(queue = %self.name, %error, "disk queue: cannot persist the read position (data may be sent twice after a crash)");
                }
                self.meta_failing = true;
            }
        }
        // Everything written was sent: start a new segment so this one can go too (else
        // a full disk would stay full until the segment reached its size).
        if pos
            == (Position {
                segment: self.segment,
                offset: self.end,
            })
            && self.end > 0
        {
            if let Err(error) = self.rotate() {
                tracing::warn!(queue = %self.name, %error, "disk queue: cannot start a new segment");
            }
        }
        // Delete segments wholly before the committed position.
        let doomed: Vec<(u64, u64)> = {
            let mut state = self.shared.lock();
            let write_segment = state.write_segment;
            let doomed: Vec<(u64, u64)> = state
                .segments
                .iter()
                .filter(|(id, len)| {
                    **id < pos.segment
                        || (**id == pos.segment && pos.offset >= **len && **id != write_segment)
                })
                .map(|(id, len)| (*id, *len))
                .collect();
            for (id, _) in &doomed {
                state.segments.remove(id);
            }
            doomed
        };
        for (id, len) in doomed {
            let path = self.dir.join(segment_name(id));
            if let Err(error) = fs::remove_file(&path) {
                tracing::warn!(queue = %self.name, segment = %path.display(), %error, "disk queue: cannot delete a consumed segment");
            }
            self.shared.used_bytes.fetch_sub(len, Ordering::SeqCst);
        }
        self.shared
            .stats
            .bytes
            .set(self.shared.used_bytes.load(Ordering::Relaxed) as i64);
    }
}

/// Reads a whole file (tests and tools).
pub fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    File::open(path)?.read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests;
