//! The `cgroup` and `smaps` receivers end to end through the real `oxcol` binary, and
//! `oxcol validate` on every shipped config in configs/.
//!
//! Needs `target/debug/oxcol` (`cargo build -p oxcol`; ./scripts/test builds it first).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn oxcol_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/oxcol");
    assert!(
        path.is_file(),
        "oxcol binary not found at {}: build it first with `cargo build -p oxcol`",
        path.display()
    );
    path
}

/// Kills the child on drop so a failed assertion leaves nothing running.
struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_shipped_config_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("configs/ exists") {
        let path = entry.expect("readable configs/ entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let output = Command::new(oxcol_binary())
            .args(["validate", "--config"])
            .arg(&path)
            .output()
            .expect("oxcol runs");
        assert!(
            output.status.success(),
            "{} does not validate:\n{}{}",
            path.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        checked.push(
            path.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        );
    }
    for required in ["default.yaml", "sidecar.yaml", "node-agent.yaml"] {
        assert!(
            checked.iter().any(|c| c == required),
            "{required} missing from configs/ ({checked:?})"
        );
    }
}

#[test]
fn cgroup_and_smaps_metrics_reach_an_exporter() {
    let config =
        std::env::temp_dir().join(format!("oxcol-memory-truth-{}.yaml", std::process::id()));
    std::fs::write(
        &config,
        "receivers:\n  cgroup:\n    collection_interval: 200ms\n  smaps:\n    collection_interval: 200ms\n\
exporters:\n  debug:\n    verbosity: detailed\n    sampling_initial: 100\n\
service:\n  telemetry:\n    metrics:\n      level: none\n  pipelines:\n    metrics:\n      receivers: [cgroup, smaps]\n      exporters: [debug]\n",
    )
    .expect("temp config written");
    let child = Command::new(oxcol_binary())
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("oxcol starts");
    let mut guard = Guard(child);
    let mut stderr = guard.0.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        let mut chunk = [0u8; 8192];
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match stderr.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => log.push_str(&String::from_utf8_lossy(&chunk[..n])),
            }
            if log.contains("cgroup.memory.working_set") && log.contains("process.smaps.pss_anon") {
                break;
            }
        }
        log
    });
    // Bounded: the reader returns on its deadline or once both names were printed; kill
    // oxcol if it is still blocked reading after that.
    let started = Instant::now();
    while !reader.is_finished() && started.elapsed() < Duration::from_secs(25) {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(guard);
    let log = reader.join().expect("reader thread");
    let _ = std::fs::remove_file(&config);
    assert!(
        log.contains("cgroup.memory.working_set"),
        "no cgroup metrics in the debug output:\n{log}"
    );
    assert!(
        log.contains("process.smaps.pss_anon"),
        "no smaps metrics in the debug output:\n{log}"
    );
}
