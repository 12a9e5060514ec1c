//! Real peers the tests talk to (kube-apiserver, etcd, Prometheus 3, helm, Apache Kafka),
//! built once per machine by `scripts/build-peer` into a cache keyed by each peer's version.
//!
//! `scripts/test` builds every peer before `cargo test` and exports its path as
//! `OXCOL_PEER_<NAME>` (upper case, `-` as `_`, e.g. `OXCOL_PEER_KUBE_APISERVER`); a test run
//! without that variable calls `scripts/build-peer` itself, which returns at once when the
//! peer is cached and otherwise builds it (minutes: see the script's header).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The path `scripts/build-peer <name>` prints: the peer's binary (for `kafka`, its
/// directory of jars). Panics with the build's error when the peer cannot be built, so a
/// test that needs a real peer fails loudly instead of skipping.
pub fn peer(name: &str) -> PathBuf {
    let var = format!("OXCOL_PEER_{}", name.to_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(&var) {
        return PathBuf::from(path);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-peer");
    let output = Command::new(&script)
        .arg(name)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", script.display()));
    assert!(
        output.status.success(),
        "scripts/build-peer {name} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let path = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(
        !path.is_empty(),
        "scripts/build-peer {name} printed no path"
    );
    PathBuf::from(path)
}
