//! A real Prometheus 3 server for remote write 2.0 tests: the `prometheus3` peer
//! (Prometheus 3.16, built once per machine by `scripts/build-peer prometheus3`), started
//! on a free 127.0.0.1 port with its storage in a temp dir, the remote write receiver on
//! and the protobuf messages it accepts chosen by the test. It is queried through the
//! same [`Api`] as the Debian 2.x server of [`crate::prometheus`]; it is SIGKILLed and its
//! dir removed on drop, and its log printed when the test panics. Every wait is bounded.
//!
//! This module never starts a build of the peer by itself beyond what
//! [`crate::peers::peer`] does (which returns at once when the peer is cached).

use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::child::{ChildGuard, spawn_appending};
use crate::net::free_port;
use crate::prometheus::Api;

/// Longest wait for `/-/ready` after a start.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// `--web.remote-write-receiver.accepted-protobuf-messages` value of remote write 1.0.
pub const WRITE_V1: &str = "prometheus.WriteRequest";
/// `--web.remote-write-receiver.accepted-protobuf-messages` value of remote write 2.0.
pub const WRITE_V2: &str = "io.prometheus.write.v2.Request";

/// A running Prometheus 3 with its storage dir; derefs to its [`Api`].
pub struct Prometheus3 {
    guard: Option<ChildGuard>,
    binary: PathBuf,
    dir: PathBuf,
    flags: Vec<String>,
    api: Api,
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// Runs blocking `work` on tokio's blocking threads; a panic in it panics the caller.
async fn unblock<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => panic!("blocking task failed: {error}"),
    }
}

impl Prometheus3 {
    /// Starts Prometheus 3 accepting the remote write messages `accepted` ([`WRITE_V1`],
    /// [`WRITE_V2`]) with the extra `flags` (e.g. `--enable-feature=exemplar-storage`), and
    /// waits until it is ready; panics with its log otherwise.
    pub async fn start(accepted: &[&str], flags: &[&str]) -> Prometheus3 {
        let binary = crate::peers::peer("prometheus3");
        let dir = std::env::temp_dir().join(format!(
            "oxcol-prometheus3-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(dir.join("data")).expect("creates the storage dir");
        std::fs::write(
            dir.join("prometheus.yml"),
            "global:\n  scrape_interval: 1m\n",
        )
        .expect("writes prometheus.yml");
        let mut flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        flags.push(format!(
            "--web.remote-write-receiver.accepted-protobuf-messages={}",
            accepted.join(",")
        ));
        let mut prometheus = Prometheus3 {
            guard: None,
            binary,
            dir,
            flags,
            api: Api { port: free_port() },
        };
        prometheus.launch().await;
        prometheus
    }

    /// Starts the server process (again, after [`Prometheus3::kill`]: same port, same
    /// storage, log appended) and waits until it is ready.
    pub async fn launch(&mut self) {
        let mut command = Command::new(&self.binary);
        command
            .arg(format!(
                "--config.file={}",
                self.dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={}", self.api.addr()))
            .arg("--web.enable-remote-write-receiver")
            .args(&self.flags);
        self.guard = Some(spawn_appending(
            &mut command,
            &self.dir.join("prometheus.log"),
        ));
        let api = self.api;
        if !unblock(move || api.wait_ready(READY_TIMEOUT)).await {
            let exit = self.exit_status();
            panic!(
                "prometheus 3 not ready within {READY_TIMEOUT:?} (exit: {exit:?}):\n{}",
                self.log()
            );
        }
    }

    /// The exit status if the server has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.guard
            .as_mut()
            .and_then(|guard| guard.child_mut().try_wait().ok().flatten())
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.guard.take();
    }

    /// The server's stdout and stderr so far (every run).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    pub fn api(&self) -> Api {
        self.api
    }
}

impl std::ops::Deref for Prometheus3 {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for Prometheus3 {
    fn drop(&mut self) {
        self.guard.take();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "---- prometheus 3 log (last {} lines) ----\n{}",
                tail.len(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
