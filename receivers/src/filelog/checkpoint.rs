//! The filelog receiver's checkpoints in its `storage` (a `file_storage` extension's
//! directory, through [`crate::storage::StateFile`]: file `receiver_filelog_<id>`, written
//! atomically, locked while the receiver runs): every known file's fingerprint, committed
//! offset and last path, so a restart reads on where the pipeline last accepted data (no
//! line lost; none read twice unless oxcol died between the pipeline's answer and the
//! checkpoint write).
//!
//! Content, JSON: `{"version":1,"files":[{"fingerprint":"<hex>","offset":N,"path":"..."}]}`.
//! A corrupt or other-version checkpoint is logged and ignored (the receiver then follows
//! `start_at`); it never stops start-up.

use serde::{Deserialize, Serialize};

use super::reader::Known;
use crate::storage::{StateFile, Storage};

#[derive(Serialize, Deserialize)]
struct FileRecord {
    fingerprint: String,
    offset: u64,
    path: String,
}

#[derive(Serialize, Deserialize)]
struct Document {
    version: u32,
    files: Vec<FileRecord>,
}

pub struct Checkpoint {
    state: StateFile,
    last_written: Option<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The known files a checkpoint's bytes hold (empty, logged, when they are not one).
pub fn decode(bytes: &[u8]) -> Vec<Known> {
    match serde_json::from_slice::<Document>(bytes) {
        Ok(doc) if doc.version == 1 => doc
            .files
            .into_iter()
            .filter_map(|f| {
                Some(Known {
                    fingerprint: unhex(&f.fingerprint)?,
                    offset: f.offset,
                    path: f.path,
                })
            })
            .collect(),
        Ok(doc) => {
            tracing::warn!(
                version = doc.version,
                "filelog: checkpoint of an unknown version ignored"
            );
            Vec::new()
        }
        Err(error) => {
            tracing::warn!(%error, "filelog: corrupt checkpoint ignored");
            Vec::new()
        }
    }
}

pub fn encode(files: &[Known]) -> String {
    let doc = Document {
        version: 1,
        files: files
            .iter()
            .map(|k| FileRecord {
                fingerprint: hex(&k.fingerprint),
                offset: k.offset,
                path: k.path.clone(),
            })
            .collect(),
    };
    serde_json::to_string(&doc).unwrap_or_default()
}

impl Checkpoint {
    /// Opens (and locks) the checkpoint of receiver `id`; returns it with the files it holds.
    pub fn open(storage: &Storage, id: &str) -> Result<(Checkpoint, Vec<Known>), String> {
        let (state, bytes) = StateFile::open(storage, super::TYPE, id)?;
        let known = bytes.as_deref().map(decode).unwrap_or_default();
        Ok((
            Checkpoint {
                state,
                last_written: None,
            },
            known,
        ))
    }

    /// Writes the known files if they changed since the last write.
    pub fn save(&mut self, files: &[Known]) -> Result<(), String> {
        let text = encode(files);
        if self.last_written.as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        self.state.write(text.as_bytes())?;
        self.last_written = Some(text);
        Ok(())
    }
}
