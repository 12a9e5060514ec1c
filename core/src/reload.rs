//! Material read from files that may change under a running oxcol (certificates, CAs,
//! bearer tokens): read at start, where an error is a start-up error, and read again
//! while running, where an error keeps the previous value.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A value loaded from files (a certificate and key, a verifier built from a CA file, a
/// bearer token) and loaded again at the first use after each `every`, or never when `every` is None.
/// With `when_changed`, a reload happens only when that file's modification time
/// changed. A failed reload keeps the previous value and logs why (never a secret: the
/// errors name files and parser complaints only).
pub struct Reloading<T: ?Sized> {
    what: String,
    every: Option<Duration>,
    watched: Option<std::path::PathBuf>,
    load: Box<dyn Fn() -> Result<Arc<T>, String> + Send + Sync>,
    current: Mutex<Loaded<T>>,
    /// The value when it is never reloaded (`every` None): read without the lock, which a
    /// request or handshake path would otherwise take every time.
    fixed: Option<Arc<T>>,
}

struct Loaded<T: ?Sized> {
    checked: Instant,
    modified: Option<std::time::SystemTime>,
    value: Arc<T>,
}

fn modified(path: &Option<std::path::PathBuf>) -> Option<std::time::SystemTime> {
    std::fs::metadata(path.as_ref()?).ok()?.modified().ok()
}

impl<T: ?Sized> Reloading<T> {
    /// Loads now: an error here is a start-up error.
    pub fn new(
        what: String,
        every: Option<Duration>,
        load: impl Fn() -> Result<Arc<T>, String> + Send + Sync + 'static,
    ) -> Result<Reloading<T>, String> {
        let value = load()?;
        Ok(Reloading {
            what,
            fixed: every.is_none().then(|| Arc::clone(&value)),
            every,
            watched: None,
            load: Box::new(load),
            current: Mutex::new(Loaded {
                checked: Instant::now(),
                modified: None,
                value,
            }),
        })
    }

    /// Reload only when `path`'s modification time differs from the last load's.
    pub fn when_changed(mut self, path: Option<std::path::PathBuf>) -> Reloading<T> {
        let current = self.current.get_mut().unwrap_or_else(|p| p.into_inner());
        current.modified = modified(&path);
        self.watched = path;
        self
    }

    /// The current value, reloaded first when due.
    pub fn get(&self) -> Arc<T> {
        if let Some(value) = &self.fixed {
            return Arc::clone(value);
        }
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(every) = self.every {
            if current.checked.elapsed() >= every {
                current.checked = Instant::now();
                let stamp = modified(&self.watched);
                let changed = self.watched.is_none() || stamp != current.modified;
                if changed {
                    match (self.load)() {
                        Ok(value) => {
                            current.value = value;
                            current.modified = stamp;
                            tracing::debug!(what = %self.what, "reloaded");
                        }
                        Err(error) => {
                            tracing::warn!(what = %self.what, %error, "cannot reload; keeping the previous value")
                        }
                    }
                }
            }
        }
        Arc::clone(&current.value)
    }
}

impl<T: ?Sized> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("what", &self.what)
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}
