//! A receiver's small durable state (a journald cursor, a read position) in the directory
//! of a `file_storage` extension: one file per receiver, `receiver_<type>_<id>`
//! (characters other than `[A-Za-z0-9_-]` written as `_`), replaced atomically.
//!
//! Writing is `<file>.tmp`, synced (the extension's `fsync`), renamed over the file, the
//! directory synced; so after `kill -9` the file holds either the old or the new state,
//! never a torn one. A `<file>.lock` held with `flock` for the receiver's life keeps a
//! second process off the same state. Reading never fails start-up: an unreadable file is
//! logged and treated as absent.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use oxcol_core::storage::Storage;

/// One receiver's state file, locked while it lives.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    fsync: bool,
    _lock: File,
}

fn escape(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl StateFile {
    /// Opens and locks the state of receiver `id` of type `kind`; returns it with the bytes
    /// last written (None when there are none or they cannot be read).
    pub fn open(
        storage: &Storage,
        kind: &str,
        id: &str,
    ) -> Result<(StateFile, Option<Vec<u8>>), String> {
        let dir = &storage.directory;
        if !dir.is_dir() {
            if storage.create_directory {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(storage.directory_permissions)
                    .create(dir)
                    .map_err(|e| {
                        format!(
                            "storage {:?}: cannot create directory {}: {e}",
                            storage.extension,
                            dir.display()
                        )
                    })?;
            } else {
                return Err(format!(
                    "storage {:?}: directory {} does not exist; create it or set create_directory: true on the extension",
                    storage.extension,
                    dir.display()
                ));
            }
        }
        let path = dir.join(format!("receiver_{}_{}", escape(kind), escape(id)));
        let lock_path = path.with_extension("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| {
                format!(
                    "storage {:?}: cannot open {}: {e}",
                    storage.extension,
                    lock_path.display()
                )
            })?;
        let deadline = Instant::now() + storage.lock_timeout;
        loop {
            // SAFETY: flock on a descriptor this function owns.
            let locked =
                unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
            if locked {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "storage {:?}: {} is locked by another process (another oxcol with the same receiver id and directory?)",
                    storage.extension,
                    path.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let state = match fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "unreadable receiver state ignored");
                None
            }
        };
        Ok((
            StateFile {
                path,
                fsync: storage.fsync,
                _lock: lock,
            },
            state,
        ))
    }

    /// Replaces the state with `bytes` (atomically; synced when the extension says so).
    pub fn write(&self, bytes: &[u8]) -> Result<(), String> {
        let tmp = self.path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(bytes)?;
            if self.fsync {
                file.sync_data()?;
            }
            fs::rename(&tmp, &self.path)?;
            if self.fsync {
                if let Some(dir) = self.path.parent() {
                    File::open(dir)?.sync_all()?;
                }
            }
            Ok(())
        };
        write().map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(dir: &std::path::Path) -> Storage {
        Storage {
            extension: "file_storage/test".into(),
            directory: dir.to_path_buf(),
            fsync: true,
            create_directory: true,
            directory_permissions: 0o750,
            lock_timeout: Duration::from_millis(100),
        }
    }

    #[test]
    fn writes_survive_reopen_and_a_second_opener_is_refused() {
        let dir = std::env::temp_dir().join(format!("oxcol-state-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let storage = storage(&dir.join("nested"));
        let (state, before) = StateFile::open(&storage, "journald", "journald/a b").unwrap();
        assert_eq!(before, None);
        assert!(state.path().ends_with("receiver_journald_journald_a_b"));
        state.write(b"cursor-1").unwrap();
        state.write(b"cursor-2").unwrap();
        let error = StateFile::open(&storage, "journald", "journald/a b").unwrap_err();
        assert!(error.contains("locked by another process"), "{error}");
        drop(state);
        let (_, after) = StateFile::open(&storage, "journald", "journald/a b").unwrap();
        assert_eq!(after.as_deref(), Some(&b"cursor-2"[..]));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_directory_without_create_is_an_error() {
        let mut storage = storage(std::path::Path::new("/nonexistent/oxcol/state"));
        storage.create_directory = false;
        let error = StateFile::open(&storage, "journald", "j").unwrap_err();
        assert!(error.contains("create_directory: true"), "{error}");
    }
}
