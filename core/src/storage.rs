//! What a component needs from the `file_storage` extension it names in `storage`: the
//! service resolves the extension once (agent/src/service.rs) and hands this to a
//! processor's checkpoints (processors/src/checkpoint.rs) or a receiver's state file
//! (receivers/src/storage.rs).

use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub struct Storage {
    /// The extension id (`file_storage/NAME`), for messages.
    pub extension: String,
    pub directory: PathBuf,
    /// Sync the file and the directory when writing (the extension's `fsync`).
    pub fsync: bool,
    /// Create `directory` when missing (`create_directory`), with `directory_permissions`.
    pub create_directory: bool,
    pub directory_permissions: u32,
    /// How long to wait for another process's lock (`timeout`).
    pub lock_timeout: Duration,
}
