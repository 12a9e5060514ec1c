//! The file behind a `file` exporter: a buffered writer that writes whole messages and,
//! with `rotation:`, rotates as the Collector's lumberjack does.
//!
//! Rotation: when a message would take the file past `max_megabytes`, the file is renamed
//! to `<name>-<timestamp><ext>` (timestamp `2006-01-02T15-04-05.000`, UTC unless
//! `localtime`), a new file is opened at the path, and old backups beyond `max_backups` or
//! older than `max_days` are deleted. Unlike lumberjack, a message is never split across
//! two files (a line and its newline are one write), and a backup name already taken is
//! never overwritten (the timestamp moves on by a millisecond).
//!
//! This module must never lose an accepted write silently: every I/O error is returned.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oxcol_core::civil::{civil_from_days, days_from_civil, local_offset};

const MEGABYTE: u64 = 1024 * 1024;
/// Lumberjack's default size when `max_megabytes` is 0.
const DEFAULT_MAX_MEGABYTES: u64 = 100;
const WRITE_BUFFER: usize = 64 * 1024;

/// Rotation settings in the units the writer uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationPolicy {
    pub max_bytes: u64,
    pub max_days: u64,
    /// 0 keeps every backup.
    pub max_backups: u64,
    pub localtime: bool,
}

impl RotationPolicy {
    pub fn new(max_megabytes: u64, max_days: u64, max_backups: u64, localtime: bool) -> Self {
        let megabytes = if max_megabytes == 0 {
            DEFAULT_MAX_MEGABYTES
        } else {
            max_megabytes
        };
        RotationPolicy {
            max_bytes: megabytes.saturating_mul(MEGABYTE),
            max_days,
            max_backups,
            localtime,
        }
    }
}

/// A failed write: `TooLarge` can never succeed, `Io` may (disk full, for instance).
#[derive(Debug)]
pub enum WriteError {
    TooLarge { length: u64, max: u64 },
    Io(io::Error),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::TooLarge { length, max } => write!(
                f,
                "write length {length} exceeds the maximum file size {max} (rotation.max_megabytes)"
            ),
            WriteError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for WriteError {
    fn from(e: io::Error) -> Self {
        WriteError::Io(e)
    }
}

pub struct Sink {
    path: PathBuf,
    file: BufWriter<File>,
    /// Bytes in the current file (written or buffered).
    size: u64,
    rotation: Option<RotationPolicy>,
}

impl Sink {
    /// Opens `path`: truncated unless `append`; with rotation the existing file is
    /// continued (lumberjack's rule) and rotated when the next write would overflow it.
    /// `create_directory` creates the missing parents with that mode.
    pub fn open(
        path: &Path,
        append: bool,
        rotation: Option<RotationPolicy>,
        create_directory: Option<u32>,
    ) -> io::Result<Sink> {
        if let Some(mode) = create_directory
            && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(parent)?;
        }
        let continue_existing = append || rotation.is_some();
        let file = open_file(path, continue_existing)?;
        let size = file.metadata()?.len();
        Ok(Sink {
            path: path.to_path_buf(),
            file: BufWriter::with_capacity(WRITE_BUFFER, file),
            size,
            rotation,
        })
    }

    /// Writes one message made of `parts` (e.g. a length and a body), rotating first if
    /// it would not fit in the current file.
    pub fn write_message(&mut self, parts: &[&[u8]]) -> Result<(), WriteError> {
        let length: u64 = parts.iter().map(|p| p.len() as u64).sum();
        if let Some(rotation) = self.rotation {
            if length > rotation.max_bytes {
                return Err(WriteError::TooLarge {
                    length,
                    max: rotation.max_bytes,
                });
            }
            if self.size + length > rotation.max_bytes {
                self.rotate(rotation, SystemTime::now())?;
            }
        }
        for part in parts {
            self.file.write_all(part)?;
        }
        self.size += length;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    /// Renames the current file to its backup name, opens a new one, prunes backups.
    fn rotate(&mut self, rotation: RotationPolicy, now: SystemTime) -> io::Result<()> {
        self.file.flush()?;
        let mut time = now;
        let mut backup = backup_name(&self.path, time, rotation.localtime);
        while backup.exists() {
            time += Duration::from_millis(1);
            backup = backup_name(&self.path, time, rotation.localtime);
        }
        fs::rename(&self.path, &backup)?;
        self.file = BufWriter::with_capacity(WRITE_BUFFER, open_file(&self.path, false)?);
        self.size = 0;
        if let Err(e) = prune_backups(&self.path, rotation, now) {
            tracing::warn!(path = %self.path.display(), "file exporter: cannot remove old backups: {e}");
        }
        Ok(())
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Err(e) = self.file.flush() {
            tracing::warn!(path = %self.path.display(), "file exporter: final flush failed: {e}");
        }
    }
}

fn open_file(path: &Path, continue_existing: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).mode(0o644);
    if continue_existing {
        options.append(true);
    } else {
        options.write(true).truncate(true);
    }
    options.open(path)
}

/// `dir/<stem>-` and `<ext>` of the backups of `path` (ext with its dot, or empty).
fn backup_affixes(path: &Path) -> (PathBuf, String, String) {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Go's filepath.Ext: from the last dot of the name (`.json`; a bare `.env` too).
    let ext = name
        .rfind('.')
        .map(|i| name[i..].to_string())
        .unwrap_or_default();
    let stem = name[..name.len() - ext.len()].to_string();
    (dir, format!("{stem}-"), ext)
}

/// `<dir>/<stem>-<2006-01-02T15-04-05.000><ext>` for `time`.
pub fn backup_name(path: &Path, time: SystemTime, localtime: bool) -> PathBuf {
    let (_, prefix, ext) = backup_affixes(path);
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut seconds = since_epoch.as_secs() as i64;
    if localtime {
        seconds += local_offset(seconds);
    }
    let stamp = format_timestamp(seconds, since_epoch.subsec_millis());
    path.with_file_name(format!("{prefix}{stamp}{ext}"))
}

/// Go's `2006-01-02T15-04-05.000` of a (zone-adjusted) unix time.
fn format_timestamp(seconds: i64, millis: u32) -> String {
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}-{:02}-{:02}.{millis:03}",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// The unix time (as if UTC) and the name of a backup, if `name` is one of `path`'s.
fn parse_backup(name: &str, prefix: &str, ext: &str) -> Option<i64> {
    let stamp = name.strip_prefix(prefix)?.strip_suffix(ext)?;
    let bytes = stamp.as_bytes();
    if bytes.len() != 23 {
        return None;
    }
    let layout = b"dddd-dd-ddTdd-dd-dd.ddd";
    for (b, l) in bytes.iter().zip(layout) {
        let ok = if *l == b'd' {
            b.is_ascii_digit()
        } else {
            b == l
        };
        if !ok {
            return None;
        }
    }
    let number = |range: std::ops::Range<usize>| stamp[range].parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    Some(
        days_from_civil(year, month as u32, day as u32) * 86_400
            + hour * 3600
            + minute * 60
            + second,
    )
}

/// Deletes the backups beyond `max_backups` (oldest first) and those older than
/// `max_days`, judged by the time in their names (as lumberjack does).
fn prune_backups(path: &Path, rotation: RotationPolicy, now: SystemTime) -> io::Result<()> {
    if rotation.max_backups == 0 && rotation.max_days == 0 {
        return Ok(());
    }
    let (dir, prefix, ext) = backup_affixes(path);
    let mut backups: Vec<(i64, PathBuf)> = Vec::new();
    for entry in fs::read_dir(&dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(time) = parse_backup(&name, &prefix, &ext) {
            backups.push((time, entry.path()));
        }
    }
    // Newest first; equal seconds fall back to the name (which holds the milliseconds).
    backups.sort_by(|a, b| b.cmp(a));
    let mut remove: Vec<PathBuf> = Vec::new();
    if rotation.max_backups > 0 && backups.len() as u64 > rotation.max_backups {
        remove.extend(
            backups
                .drain(rotation.max_backups as usize..)
                .map(|(_, p)| p),
        );
    }
    if rotation.max_days > 0 {
        let now_seconds = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
        let cutoff = now_seconds - (rotation.max_days as i64).saturating_mul(86_400);
        remove.extend(
            backups
                .iter()
                .filter(|(time, _)| *time < cutoff)
                .map(|(_, p)| p.clone()),
        );
    }
    for path in remove {
        if let Err(e) = fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_use_go_layout_and_parse_back() {
        // 2022-09-14T05:02:14.173Z, the Collector README's example.
        let seconds = days_from_civil(2022, 9, 14) * 86_400 + 5 * 3600 + 2 * 60 + 14;
        let time = UNIX_EPOCH + Duration::from_millis(seconds as u64 * 1000 + 173);
        let name = backup_name(Path::new("dir/data.json"), time, false);
        assert_eq!(name, PathBuf::from("dir/data-2022-09-14T05-02-14.173.json"));
        assert_eq!(
            parse_backup("data-2022-09-14T05-02-14.173.json", "data-", ".json"),
            Some(seconds)
        );
        assert_eq!(
            backup_name(Path::new("noext"), time, false),
            PathBuf::from("noext-2022-09-14T05-02-14.173")
        );
        assert_eq!(parse_backup("data-2022-09-14.json", "data-", ".json"), None);
        assert_eq!(parse_backup("data.json", "data-", ".json"), None);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }
}
