//! `file` exporter: writes every batch to a file, as the Collector's contrib
//! `fileexporter` does: one OTLP/JSON request per line (`format: json`), or OTLP protobuf
//! requests each after its 4-byte big-endian length (`format: proto`, and any
//! `compression`, where each message is zstd-compressed on its own).
//!
//! One file per exporter id: the metrics, traces and logs pipelines that name the same
//! `file` exporter share its writer (the Collector shares one component per config), so
//! their requests interleave in one file. The file is opened when the exporter is built
//! (an unwritable path fails the start), buffered, flushed every `flush_interval` and when
//! the last pipeline using it stops.
//!
//! With `format: proto` and no compression the bytes that arrived are written as they
//! are, never decoded. It must never report success for a message it did not hand to the
//! file, and never panic on data.

mod config;
#[cfg(test)]
mod tests;
pub mod writer;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use oxcol_core::{Batch, ExportError, ExportOutcome, Exporter};

pub use config::{
    COMPRESSION_ZSTD, Config, DEFAULT_RESOURCE_ATTRIBUTE, FORMAT_JSON, FORMAT_PROTO, GroupBy,
    Rotation,
};
use writer::{RotationPolicy, Sink, WriteError};

pub const TYPE: &str = "file";
pub const ALIASES: &[&str] = &["file"];

/// The open file of one exporter id, shared by its signals.
struct SharedFile {
    sink: Mutex<Sink>,
    /// No runtime to run the periodic flush on (only outside the agent): flush after
    /// every message instead.
    flush_each_write: bool,
}

impl SharedFile {
    fn lock(&self) -> std::sync::MutexGuard<'_, Sink> {
        self.sink.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Files open by exporter id, with the config they were opened with. Weak: the file
/// closes (and flushes) when its last exporter is dropped.
type OpenFiles = HashMap<String, (Config, Weak<SharedFile>)>;

fn open_files() -> &'static Mutex<OpenFiles> {
    static OPEN: std::sync::OnceLock<Mutex<OpenFiles>> = std::sync::OnceLock::new();
    OPEN.get_or_init(|| Mutex::new(HashMap::new()))
}

pub struct FileExporter {
    id: String,
    file: Arc<SharedFile>,
    json: bool,
    zstd: bool,
    length_prefixed: bool,
}

impl FileExporter {
    /// Opens (or joins, for another signal of the same id) the exporter's file.
    pub fn new(id: &str, config: &Config) -> Result<FileExporter, String> {
        let file = {
            let mut open = open_files().lock().unwrap_or_else(|p| p.into_inner());
            open.retain(|_, (_, weak)| weak.strong_count() > 0);
            let existing = match open.get(id) {
                Some((opened_with, weak)) if opened_with == config => weak.upgrade(),
                _ => None,
            };
            match existing {
                Some(file) => file,
                None => {
                    let file = open_shared(config)?;
                    open.insert(id.to_string(), (config.clone(), Arc::downgrade(&file)));
                    file
                }
            }
        };
        Ok(FileExporter {
            id: id.to_string(),
            file,
            json: config.format == FORMAT_JSON,
            zstd: config.compression == COMPRESSION_ZSTD,
            length_prefixed: config.length_prefixed(),
        })
    }

    /// One message: the encoded (and maybe compressed) request, framed, written.
    fn write(&self, mut batch: Batch) -> Result<ExportOutcome, ExportError> {
        if batch.is_empty() {
            return Ok(ExportOutcome::default());
        }
        let permanent = |reason: String| ExportError::Permanent { reason };
        let mut body = if self.json {
            crate::otlp_json::encode(&mut batch).map_err(permanent)?
        } else {
            batch.to_bytes()
        };
        if self.zstd {
            body = zstd::bulk::compress(&body, 0)
                .map(Bytes::from)
                .map_err(|e| permanent(format!("zstd compression failed: {e}")))?;
        }
        let length;
        let parts: [&[u8]; 2] = if self.length_prefixed {
            let Ok(n) = u32::try_from(body.len()) else {
                return Err(permanent(format!(
                    "a message of {} bytes does not fit the 4-byte length prefix",
                    body.len()
                )));
            };
            length = n.to_be_bytes();
            [&length, &body]
        } else {
            [&body, b"\n"]
        };
        let write_error = |e: WriteError| match e {
            WriteError::TooLarge { .. } => permanent(e.to_string()),
            WriteError::Io(e) => ExportError::Retryable {
                reason: format!("cannot write the file: {e}"),
                after: None,
            },
        };
        let mut sink = self.file.lock();
        sink.write_message(&parts).map_err(write_error)?;
        if self.file.flush_each_write {
            sink.flush().map_err(|e| write_error(WriteError::Io(e)))?;
        }
        Ok(ExportOutcome::default())
    }
}

impl Exporter for FileExporter {
    fn export(&self, batch: Batch) -> BoxFuture<'_, Result<ExportOutcome, ExportError>> {
        let result = self.write(batch);
        if let Err(e) = &result {
            tracing::debug!(exporter = %self.id, "write failed: {e}");
        }
        Box::pin(async move { result })
    }
}

/// Opens the file and starts its periodic flush.
fn open_shared(config: &Config) -> Result<Arc<SharedFile>, String> {
    let path = Path::new(&config.path);
    let rotation = config
        .rotation
        .as_ref()
        .map(|r| RotationPolicy::new(r.max_megabytes, r.max_days, r.max_backups, r.localtime));
    let create_directory = if config.create_directory {
        Some(config.directory_mode()?)
    } else {
        None
    };
    let sink = Sink::open(path, config.append, rotation, create_directory).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound && !config.create_directory {
            "; create its directory, or set create_directory: true"
        } else {
            ""
        };
        format!("cannot open {:?} for writing: {e}{hint}", config.path)
    })?;
    let runtime = tokio::runtime::Handle::try_current().ok();
    let file = Arc::new(SharedFile {
        sink: Mutex::new(sink),
        flush_each_write: runtime.is_none(),
    });
    if let Some(runtime) = runtime {
        runtime.spawn(flush_periodically(
            Arc::downgrade(&file),
            config.flush_every(),
            config.path.clone(),
        ));
    }
    Ok(file)
}

/// Flushes the file's buffer every `interval` until the file is closed.
async fn flush_periodically(file: Weak<SharedFile>, interval: Duration, path: String) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(file) = file.upgrade() else { return };
        if let Err(e) = file.lock().flush() {
            tracing::warn!(path = %path, "file exporter: flush failed: {e}");
        }
    }
}
