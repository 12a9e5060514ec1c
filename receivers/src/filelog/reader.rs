//! Which files are read and how far (stanza's fileconsumer): files are known by their
//! fingerprint, the first `fingerprint_size` bytes, so a renamed file (rotation by
//! rename + create, or a copy under another name) is recognised and read on from its
//! offset, and a file whose start changed (copytruncate, or a new file at the old path) is
//! a new file read from its beginning.
//!
//! Each file has two positions: `read` (how far entries were cut) and `committed` (how far
//! the pipeline accepted them). Only `committed` is checkpointed; when the pipeline
//! refuses, every file goes back to `committed` and is read again (at-least-once).
//!
//! A file that no longer matches the globs (renamed away by rotation) is read to its end
//! through the handle still open, then closed; its fingerprint stays known for a while, so
//! it is not read again if it shows up under another matched name.
//!
//! Memory: one chunk buffer per read (at most `max_log_size` plus 64 KiB), no per-file
//! buffers between polls (an unfinished last line is read again next poll).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::entry::Mark;
use super::split::Splitter;

/// The attributes a file gives its entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileAttrs {
    pub name: String,
    pub path: String,
    pub name_resolved: String,
    pub path_resolved: String,
}

impl FileAttrs {
    fn of(path: &Path) -> FileAttrs {
        let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let name = |p: &Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        FileAttrs {
            name: name(path),
            path: path.to_string_lossy().into_owned(),
            name_resolved: name(&resolved),
            path_resolved: resolved.to_string_lossy().into_owned(),
        }
    }
}

/// One cut entry, as bytes, with its file.
#[derive(Clone, Debug)]
pub struct Token {
    /// None for a range that trimmed to nothing (blank lines).
    pub bytes: Option<Vec<u8>>,
    pub mark: Mark,
    pub attrs: Arc<FileAttrs>,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub fingerprint_size: usize,
    pub splitter: Splitter,
    pub start_at_beginning: bool,
    pub force_flush_period: Duration,
    pub max_concurrent_files: usize,
    pub delete_after_read: bool,
}

/// A file known by fingerprint, restored from a checkpoint or found by a poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    pub fingerprint: Vec<u8>,
    pub offset: u64,
    pub path: String,
}

struct Tracked {
    id: u64,
    attrs: Arc<FileAttrs>,
    file: Option<File>,
    fingerprint: Vec<u8>,
    committed: u64,
    read: u64,
    /// An unfinished entry waits at `read`: since when, and the file size then.
    waiting: Option<(Instant, u64)>,
    /// Matched in the latest poll.
    active: bool,
    /// Polls since it was last matched.
    unseen_polls: u32,
}

/// Polls after which a file no longer seen is forgotten (stanza keeps 3 polls' worth).
const FORGET_AFTER_POLLS: u32 = 3;
/// Bytes read from a file per read call.
const CHUNK: usize = 64 * 1024;

pub struct Tracker {
    settings: Settings,
    files: Vec<Tracked>,
    next_id: u64,
    polled_once: bool,
}

impl Tracker {
    pub fn new(settings: Settings, restored: Vec<Known>) -> Tracker {
        let mut tracker = Tracker {
            settings,
            files: Vec::new(),
            next_id: 1,
            polled_once: false,
        };
        for known in restored {
            let id = tracker.take_id();
            tracker.files.push(Tracked {
                id,
                attrs: Arc::new(FileAttrs::of(Path::new(&known.path))),
                file: None,
                fingerprint: known.fingerprint,
                committed: known.offset,
                read: known.offset,
                waiting: None,
                active: false,
                unseen_polls: 0,
            });
        }
        tracker
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Matches `paths` (sorted) against the known files: known ones continue at their
    /// offset, new ones start at 0 (or at their end in the first poll with `start_at: end`).
    pub fn discover(&mut self, paths: &[PathBuf]) {
        for tracked in &mut self.files {
            tracked.active = false;
        }
        let mut claimed: Vec<u64> = Vec::new();
        let fp_size = self.settings.fingerprint_size;
        for path in paths {
            if claimed.len() >= self.settings.max_concurrent_files {
                tracing::debug!(path = %path.display(), "filelog: max_concurrent_files reached; the file waits for a later poll");
                break;
            }
            let Ok(file) = File::open(path) else {
                continue;
            };
            let Ok(len) = file.metadata().map(|m| m.len()) else {
                continue;
            };
            let fingerprint = read_prefix(&file, fp_size.min(len as usize));
            if fingerprint.is_empty() {
                continue; // empty files wait until they have data
            }
            // The longest known fingerprint this file's start begins with.
            let found = self
                .files
                .iter()
                .enumerate()
                .filter(|(_, t)| {
                    !t.fingerprint.is_empty() && fingerprint.starts_with(&t.fingerprint)
                })
                .max_by_key(|(_, t)| t.fingerprint.len())
                .map(|(i, _)| i);
            match found {
                Some(i) if claimed.contains(&self.files[i].id) => {
                    // A second name for a file already matched in this poll (a copy
                    // mid-rotation): read it once.
                }
                Some(i) => {
                    let tracked = &mut self.files[i];
                    claimed.push(tracked.id);
                    tracked.fingerprint = fingerprint;
                    tracked.active = true;
                    tracked.unseen_polls = 0;
                    let moved = tracked.attrs.path != path.to_string_lossy();
                    if moved || tracked.file.is_none() {
                        tracked.attrs = Arc::new(FileAttrs::of(path));
                        tracked.file = Some(file);
                    }
                    if len < tracked.read {
                        // Shorter than what was read, same start: truncated and rewritten.
                        tracked.read = 0;
                        tracked.committed = 0;
                    }
                }
                None => {
                    let start = if self.polled_once || self.settings.start_at_beginning {
                        0
                    } else {
                        len
                    };
                    let id = self.take_id();
                    claimed.push(id);
                    self.files.push(Tracked {
                        id,
                        attrs: Arc::new(FileAttrs::of(path)),
                        file: Some(file),
                        fingerprint,
                        committed: start,
                        read: start,
                        waiting: None,
                        active: true,
                        unseen_polls: 0,
                    });
                }
            }
        }
        self.polled_once = true;
        for tracked in &mut self.files {
            if !tracked.active {
                tracked.unseen_polls = tracked.unseen_polls.saturating_add(1);
                // A handle kept on a file no longer matched is read to its end only while
                // the file still starts as known: one truncated and rewritten in place
                // (copytruncate without the copy matched) is another file now.
                let still_same = tracked.file.as_ref().is_some_and(|file| {
                    read_prefix(file, tracked.fingerprint.len()) == tracked.fingerprint
                });
                if !still_same {
                    tracked.file = None;
                }
            }
        }
        // Forget files long unseen whose data is all committed (and closed).
        self.files
            .retain(|t| t.active || t.file.is_some() || t.unseen_polls <= FORGET_AFTER_POLLS);
    }

    /// Cuts entries from every open file into `out` until `max_entries` or `max_bytes`
    /// is reached. Returns whether a file may have more to read now.
    pub fn read(
        &mut self,
        now: Instant,
        max_entries: usize,
        max_bytes: usize,
        out: &mut Vec<Token>,
    ) -> bool {
        let mut bytes_total = 0usize;
        let mut buf = Vec::new();
        for tracked in &mut self.files {
            let Some(file) = &tracked.file else {
                continue;
            };
            let Ok(len) = file.metadata().map(|m| m.len()) else {
                continue;
            };
            if len < tracked.read {
                if tracked.active {
                    // Truncated in place: the new content is another file's start; the next
                    // poll sees a new fingerprint.
                    tracked.read = len;
                    tracked.committed = tracked.committed.min(len);
                }
                continue;
            }
            loop {
                if out.len() >= max_entries || bytes_total >= max_bytes {
                    return true;
                }
                let available = len - tracked.read;
                if available == 0 {
                    tracked.waiting = None;
                    break;
                }
                let want = (available as usize).min(self.settings.splitter.max_log_size + CHUNK);
                buf.resize(want, 0);
                let got = read_at(file, &mut buf, tracked.read);
                buf.truncate(got);
                if got == 0 {
                    break;
                }
                // Flush an unfinished entry once the file stopped growing for the period.
                let flush = match tracked.waiting {
                    Some((since, size)) if size == len => {
                        now.duration_since(since) >= self.settings.force_flush_period
                    }
                    _ => false,
                };
                let mut consumed = 0usize;
                let at_end = tracked.read + got as u64 == len;
                while consumed < buf.len() {
                    if out.len() >= max_entries || bytes_total >= max_bytes {
                        break;
                    }
                    let rest = &buf[consumed..];
                    let Some(cut) = self.settings.splitter.next(rest, flush && at_end) else {
                        break;
                    };
                    let start = tracked.read + consumed as u64;
                    consumed += cut.advance;
                    bytes_total += cut.token.as_ref().map_or(0, |r| r.len());
                    out.push(Token {
                        // None: trimmed to nothing; only its range is committed.
                        bytes: cut.token.map(|range| rest[range].to_vec()),
                        mark: Mark {
                            file: tracked.id,
                            start,
                            end: tracked.read + consumed as u64,
                        },
                        attrs: Arc::clone(&tracked.attrs),
                    });
                }
                tracked.read += consumed as u64;
                if consumed == 0 {
                    // An unfinished entry: wait for more data or the flush period.
                    if !matches!(tracked.waiting, Some((_, size)) if size == len) {
                        tracked.waiting = Some((now, len));
                    }
                    break;
                }
                tracked.waiting = None;
            }
        }
        false
    }

    /// The pipeline accepted entries up to these marks: advance `committed`, but never past
    /// the start of an entry still held by an operator (`held`).
    pub fn commit(&mut self, done: &[Mark], held: &[Mark]) -> bool {
        let mut by_file: HashMap<u64, u64> = HashMap::new();
        for mark in done {
            let slot = by_file.entry(mark.file).or_insert(0);
            *slot = (*slot).max(mark.end);
        }
        let mut changed = false;
        for tracked in &mut self.files {
            let Some(end) = by_file.get(&tracked.id) else {
                continue;
            };
            let cap = held
                .iter()
                .filter(|m| m.file == tracked.id)
                .map(|m| m.start)
                .min()
                .unwrap_or(u64::MAX);
            let next = (*end).min(cap).min(tracked.read);
            if next > tracked.committed {
                tracked.committed = next;
                changed = true;
            }
        }
        changed
    }

    /// The pipeline refused: read again from what was committed.
    pub fn rewind(&mut self) {
        for tracked in &mut self.files {
            tracked.read = tracked.committed;
            tracked.waiting = None;
        }
    }

    /// Closes files no longer matched whose data is all read and committed (and deletes
    /// fully read files with `delete_after_read`).
    pub fn close_finished(&mut self) {
        let delete = self.settings.delete_after_read;
        for tracked in &mut self.files {
            let Some(file) = &tracked.file else {
                continue;
            };
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let done = tracked.committed >= len && tracked.read >= len;
            if done && delete && tracked.active {
                if let Err(error) = std::fs::remove_file(&tracked.attrs.path) {
                    tracing::warn!(path = %tracked.attrs.path, %error, "filelog: cannot delete a fully read file");
                }
                tracked.file = None;
                tracked.active = false;
            } else if done && !tracked.active {
                tracked.file = None;
            }
        }
        // Bound open handles: the least recently seen closed first.
        let open = self.files.iter().filter(|t| t.file.is_some()).count();
        if open > self.settings.max_concurrent_files {
            let mut candidates: Vec<(u32, usize)> = self
                .files
                .iter()
                .enumerate()
                .filter(|(_, t)| t.file.is_some() && !t.active)
                .map(|(i, t)| (t.unseen_polls, i))
                .collect();
            candidates.sort_by(|a, b| b.cmp(a));
            for (_, i) in candidates
                .into_iter()
                .take(open - self.settings.max_concurrent_files)
            {
                self.files[i].file = None;
            }
        }
    }

    /// What a checkpoint holds: every known file's fingerprint and committed offset.
    pub fn known(&self) -> Vec<Known> {
        self.files
            .iter()
            .map(|t| Known {
                fingerprint: t.fingerprint.clone(),
                offset: t.committed,
                path: t.attrs.path.clone(),
            })
            .collect()
    }

    /// Whether an entry sits unfinished in a file (a poll sooner than `poll_interval` may
    /// flush it).
    pub fn waiting(&self) -> bool {
        self.files.iter().any(|t| t.waiting.is_some())
    }
}

fn read_prefix(file: &File, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    let got = read_at(file, &mut buf, 0);
    buf.truncate(got);
    buf
}

/// Reads as much as `buf` holds at `offset` (short only at the end of the file or on error).
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> usize {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    done
}
