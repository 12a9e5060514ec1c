//! A real Prometheus server for tests (Debian package `prometheus`, installed by
//! scripts/test; `PROMETHEUS_BIN` names another binary): started on a free 127.0.0.1 port
//! with the remote write receiver on and its storage in a temp dir, and queried through
//! its HTTP API. The server is SIGKILLed and the dir removed on drop; its log is printed
//! when the test panics. Every wait is bounded.
//!
//! The API is blocking; `*_async` forms run it on tokio's blocking threads, so async
//! tests never stall their runtime's workers.

use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::child::{ChildGuard, spawn_logged};
use crate::net::{free_port, http_get, percent_encode};

/// Longest wait for `/-/ready` after a start.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait in [`Api::wait_series`].
pub const SERIES_TIMEOUT: Duration = Duration::from_secs(20);

/// The `prometheus` binary: `$PROMETHEUS_BIN`, else the first on `PATH`.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PROMETHEUS_BIN") {
        return PathBuf::from(path);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("the `prometheus` binary is not installed: run scripts/test (it installs the Debian package) or `apt-get install prometheus`")
        })
}

/// The value of an instant-vector sample (`"value": [ts, "text"]`); NaN when absent.
pub fn sample_value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Runs blocking `work` on tokio's blocking threads; a panic in it panics the caller.
async fn unblock<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => panic!("blocking task failed: {error}"),
    }
}

/// The HTTP API of a Prometheus server on 127.0.0.1 (a port: cheap to copy into a thread).
#[derive(Clone, Copy, Debug)]
pub struct Api {
    pub port: u16,
}

impl Api {
    /// `127.0.0.1:PORT`.
    pub fn addr(self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The remote write receiver's URL.
    pub fn write_url(self) -> String {
        format!("http://{}/api/v1/write", self.addr())
    }

    /// A bounded `GET path`: (status, body).
    pub fn get(self, path: &str) -> Result<(u16, String), String> {
        http_get(&self.addr(), path)
    }

    pub async fn get_async(self, path: &str) -> Result<(u16, String), String> {
        let path = path.to_owned();
        unblock(move || self.get(&path)).await
    }

    /// Polls `/-/ready` until it answers 200 or `limit` passes.
    pub fn wait_ready(self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok((200, _)) = self.get("/-/ready") {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `data` of a successful JSON answer to `GET path`.
    fn data(self, path: &str) -> Result<Value, String> {
        let (status, body) = self.get(path)?;
        let json: Value =
            serde_json::from_str(&body).map_err(|e| format!("{status} {e}: {body}"))?;
        if status != 200 || json["status"] != "success" {
            return Err(format!("{status}: {body}"));
        }
        Ok(json["data"].clone())
    }

    /// An instant query, at `at` (seconds since the epoch) or at the newest data: the
    /// `data.result` array.
    pub fn try_query(self, promql: &str, at: Option<f64>) -> Result<Vec<Value>, String> {
        let time = at.map(|at| format!("&time={at:.3}")).unwrap_or_default();
        let data = self.data(&format!(
            "/api/v1/query?query={}{time}",
            percent_encode(promql)
        ))?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// [`Api::try_query`] at the newest data; panics on an error answer.
    pub fn query(self, promql: &str) -> Vec<Value> {
        self.try_query(promql, None)
            .unwrap_or_else(|e| panic!("query {promql}: {e}"))
    }

    pub async fn query_async(self, promql: &str) -> Vec<Value> {
        let promql = promql.to_owned();
        unblock(move || self.query(&promql)).await
    }

    /// [`Api::try_query`] at `at`; panics on an error answer.
    pub fn query_at(self, promql: &str, at: f64) -> Vec<Value> {
        self.try_query(promql, Some(at))
            .unwrap_or_else(|e| panic!("query {promql} at {at}: {e}"))
    }

    pub async fn query_at_async(self, promql: &str, at: f64) -> Vec<Value> {
        let promql = promql.to_owned();
        unblock(move || self.query_at(&promql, at)).await
    }

    /// The single value of `promql`; panics unless exactly one series answers.
    pub fn value(self, promql: &str) -> f64 {
        let result = self.query(promql);
        assert_eq!(
            result.len(),
            1,
            "{promql} should give one series: {result:?}"
        );
        sample_value(&result[0])
    }

    /// Polls `promql` until it returns at least `count` series or [`SERIES_TIMEOUT`]
    /// passes; the last result.
    pub fn wait_series(self, promql: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + SERIES_TIMEOUT;
        loop {
            let result = self.query(promql);
            if result.len() >= count || Instant::now() >= deadline {
                return result;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub async fn wait_series_async(self, promql: &str, count: usize) -> Vec<Value> {
        let promql = promql.to_owned();
        unblock(move || self.wait_series(&promql, count)).await
    }

    /// The label sets (JSON objects) of the stored series matching `selector`
    /// (`/api/v1/series`).
    pub fn series(self, selector: &str) -> Result<Vec<Value>, String> {
        let data = self.data(&format!(
            "/api/v1/series?match%5B%5D={}",
            percent_encode(selector)
        ))?;
        data.as_array()
            .cloned()
            .ok_or_else(|| format!("no series array: {data}"))
    }
}

/// A running Prometheus server with its storage dir; killed (SIGKILL) and removed on drop.
/// Derefs to its [`Api`].
pub struct Prometheus {
    guard: Option<ChildGuard>,
    dir: PathBuf,
    flags: Vec<String>,
    api: Api,
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

impl Prometheus {
    /// Starts Prometheus with `config` as its prometheus.yml, the remote write receiver
    /// on and `flags` (e.g. `--enable-feature=...`); waits up to [`READY_TIMEOUT`] for it
    /// to be ready and panics with its log otherwise.
    pub fn start(config: &str, flags: &[&str]) -> Prometheus {
        let mut prometheus = Prometheus::prepare(config, flags);
        prometheus.launch();
        prometheus
    }

    pub async fn start_async(config: &str, flags: &[&str]) -> Prometheus {
        let mut prometheus = Prometheus::prepare(config, flags);
        prometheus.launch_async().await;
        prometheus
    }

    /// Starts Prometheus over a TSDB backfilled from `openmetrics` (an OpenMetrics text
    /// ending in `# EOF`) with `promtool tsdb create-blocks-from openmetrics`, so queries
    /// see series with the timestamps the text gives; `flags` as in [`Prometheus::start`].
    pub fn backfilled(openmetrics: &str, flags: &[&str]) -> Prometheus {
        let mut prometheus = Prometheus::prepare("global:\n  scrape_interval: 1m\n", flags);
        let input = prometheus.dir.join("series.om");
        std::fs::write(&input, openmetrics).expect("writes the OpenMetrics input");
        let promtool = binary().with_file_name("promtool");
        let output = Command::new(&promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(prometheus.dir.join("data"))
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (Debian package prometheus; scripts/test installs it)",
                    promtool.display()
                )
            });
        assert!(
            output.status.success(),
            "promtool create-blocks-from failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        prometheus.launch();
        prometheus
    }

    fn prepare(config: &str, flags: &[&str]) -> Prometheus {
        let dir = std::env::temp_dir().join(format!(
            "oxcol-prometheus-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(dir.join("data")).expect("creates the storage dir");
        std::fs::write(dir.join("prometheus.yml"), config).expect("writes prometheus.yml");
        Prometheus {
            guard: None,
            dir,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            api: Api { port: free_port() },
        }
    }

    /// Starts the server process (again, after [`Prometheus::kill`]: same port, same
    /// storage) and waits until it is ready.
    pub fn launch(&mut self) {
        self.spawn();
        let ready = self.api.wait_ready(READY_TIMEOUT);
        self.assert_ready(ready);
    }

    pub async fn launch_async(&mut self) {
        self.spawn();
        let api = self.api;
        let ready = unblock(move || api.wait_ready(READY_TIMEOUT)).await;
        self.assert_ready(ready);
    }

    fn spawn(&mut self) {
        let mut command = Command::new(binary());
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
        self.guard = Some(spawn_logged(&mut command, &self.dir.join("prometheus.log")));
    }

    fn assert_ready(&mut self, ready: bool) {
        if !ready {
            let exit = self.exit_status();
            panic!(
                "prometheus not ready within {READY_TIMEOUT:?} (exit: {exit:?}):\n{}",
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

    /// The server's stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    pub fn api(&self) -> Api {
        self.api
    }
}

impl std::ops::Deref for Prometheus {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.guard.take();
        if std::thread::panicking() {
            eprintln!("---- prometheus log ----\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
