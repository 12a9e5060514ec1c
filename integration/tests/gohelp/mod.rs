//! Helpers for the tests that run real Go services (pprof.rs, prometheus_receiver.rs,
//! processor_chain.rs):
//! build integration/go once, run a service on a free port, run oxcol, and capture what
//! oxcol exports (OTLP/JSON over HTTP) in memory.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use oxcol_integration::child::{ChildGuard, first_line, spawn_logged};
pub use oxcol_integration::net::{free_port, http_get};
use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `go build` of integration/go/goapp, once per test binary.
pub fn goapp_binary() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = workspace().join("target/go/goapp");
            let status = Command::new("go")
                .args(["build", "-o"])
                .arg(&out)
                .arg("./goapp")
                .current_dir(workspace().join("integration/go"))
                .status()
                .map_err(|e| format!("cannot run `go build` (is Go installed?): {e}"))?;
            if status.success() {
                Ok(out)
            } else {
                Err(format!("go build failed: {status}"))
            }
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A running goapp; killed on drop.
pub struct GoService {
    pub addr: String,
    _child: ChildGuard,
}

impl GoService {
    pub fn start(mode: &str, extra: &[&str]) -> GoService {
        GoService::start_with_env(mode, extra, &[])
    }

    /// [`GoService::start`] with environment variables set for it (GOMAXPROCS, ...).
    pub fn start_with_env(mode: &str, extra: &[&str], env: &[(&str, &str)]) -> GoService {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut child = ChildGuard::new(
            Command::new(goapp_binary())
                .args(["-mode", mode, "-addr", &addr])
                .args(extra)
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("goapp starts"),
        );
        let stdout = child.child_mut().stdout.take().expect("piped stdout");
        let line = first_line(stdout, Duration::from_secs(10)).expect("goapp prints its address");
        assert!(line.starts_with("listening on"), "{line}");
        GoService {
            addr,
            _child: child,
        }
    }

    /// GET `path`; the body, or "" on error.
    pub fn get(&self, path: &str) -> String {
        http_get(&self.addr, path)
            .map(|(_, body)| body)
            .unwrap_or_default()
    }
}

/// oxcol running a config, its stdout and stderr in a log file; killed on drop (the log
/// is printed when the test panics).
pub struct Oxcol {
    child: ChildGuard,
    log_path: PathBuf,
    config_path: Option<PathBuf>,
}

/// oxcol running `config` (YAML text).
pub fn oxcol(config: &str) -> Oxcol {
    let config_path = std::env::temp_dir().join(format!(
        "oxcol-go-{}-{}.yaml",
        std::process::id(),
        free_port()
    ));
    std::fs::write(&config_path, config).expect("config written");
    let mut oxcol = Oxcol::run(&config_path, &[], &[]);
    oxcol.config_path = Some(config_path);
    oxcol
}

impl Oxcol {
    /// `oxcol --config <config>` with `--set` overrides and extra environment variables.
    pub fn run(config: &Path, sets: &[&str], env: &[(&str, String)]) -> Oxcol {
        let binary = workspace().join("target/debug/oxcol");
        assert!(binary.is_file(), "build oxcol first: cargo build -p oxcol");
        let log_path = std::env::temp_dir().join(format!(
            "oxcol-go-{}-{}.log",
            std::process::id(),
            free_port()
        ));
        let mut command = Command::new(binary);
        command.arg("--config").arg(config);
        for set in sets {
            command.args(["--set", set]);
        }
        command.envs(env.iter().map(|(k, v)| (k, v)));
        Oxcol {
            child: spawn_logged(&mut command, &log_path),
            log_path,
            config_path: None,
        }
    }

    /// Waits up to `limit`, polling every `every`, until `GET /metrics` on `metrics_addr`
    /// answers 200 with a body; panics with the log if oxcol exits first or the time passes.
    pub fn wait_metrics(&mut self, metrics_addr: &str, limit: Duration, every: Duration) {
        let ready = wait_every(limit, every, || {
            if let Ok(Some(status)) = self.child.child_mut().try_wait() {
                panic!(
                    "oxcol exited during start-up with {status}:\n{}",
                    self.log()
                );
            }
            http_get(metrics_addr, "/metrics")
                .ok()
                .filter(|(status, body)| *status == 200 && !body.is_empty())
        });
        assert!(
            ready.is_some(),
            "oxcol did not serve its /metrics within {limit:?}:\n{}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn stop_and_log(&mut self) -> String {
        let _ = self.child.child_mut().kill();
        let _ = self.child.wait_timeout(Duration::from_secs(5));
        self.log()
    }
}

impl Drop for Oxcol {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- oxcol log ----\n{}", self.stop_and_log());
        }
        if let Some(config_path) = &self.config_path {
            let _ = std::fs::remove_file(config_path);
        }
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// An OTLP/HTTP JSON receiver that keeps every request body; any other path answers an
/// HTML page (a stand-in for a proxy's login page).
pub struct Capture {
    pub addr: String,
    metrics: Arc<Mutex<Vec<Value>>>,
    logs: Arc<Mutex<Vec<Value>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Capture {
    pub fn start() -> Capture {
        let metrics = Arc::new(Mutex::new(Vec::new()));
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr").to_string();
        let (m, l) = (Arc::clone(&metrics), Arc::clone(&logs));
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let store = |target: Arc<Mutex<Vec<Value>>>| {
                    move |body: axum::body::Bytes| async move {
                        if let Ok(value) = serde_json::from_slice::<Value>(&body) {
                            target.lock().unwrap_or_else(|p| p.into_inner()).push(value);
                        }
                        ([("content-type", "application/json")], "{}")
                    }
                };
                let app = axum::Router::new()
                    .route("/v1/metrics", axum::routing::post(store(m)))
                    .route("/v1/logs", axum::routing::post(store(l)))
                    .fallback(|| async {
                        (
                            [("content-type", "text/html")],
                            "<!DOCTYPE html><html><body>Sign in</body></html>",
                        )
                    });
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Capture {
            addr,
            metrics,
            logs,
            _stop: stop,
        }
    }

    /// The `exporters:` block sending to this capture.
    pub fn exporter_yaml(&self) -> String {
        format!(
            "exporters:\n  otlphttp:\n    endpoint: \"http://{}\"\n    encoding: json\n    compression: none\n",
            self.addr
        )
    }

    pub fn metrics(&self) -> Vec<Value> {
        self.metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn logs(&self) -> Vec<Value> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every metric named `name` seen so far, in arrival order, with its resource.
    pub fn metric_instances(&self, name: &str) -> Vec<(Value, Value)> {
        let mut out = Vec::new();
        for request in self.metrics() {
            for rm in request["resourceMetrics"].as_array().into_iter().flatten() {
                for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                    for metric in sm["metrics"].as_array().into_iter().flatten() {
                        if metric["name"] == name {
                            out.push((rm["resource"].clone(), metric.clone()));
                        }
                    }
                }
            }
        }
        out
    }

    /// (attributes, value) of every number point of `name`.
    pub fn points(&self, name: &str) -> Vec<(Value, f64)> {
        self.metric_instances(name)
            .into_iter()
            .flat_map(|(_, metric)| number_points(&metric))
            .collect()
    }

    /// (service.name of the resource, value) of every number point of `name`.
    pub fn points_by_resource(&self, name: &str) -> Vec<(String, f64)> {
        self.metric_instances(name)
            .into_iter()
            .flat_map(|(resource, metric)| {
                let service = attr(&resource["attributes"], "service.name").unwrap_or_default();
                number_points(&metric)
                    .into_iter()
                    .map(move |(_, v)| (service.clone(), v))
            })
            .collect()
    }
}

/// (attributes, value) of a gauge's or sum's points.
pub fn number_points(metric: &Value) -> Vec<(Value, f64)> {
    let points = metric["gauge"]["dataPoints"]
        .as_array()
        .or_else(|| metric["sum"]["dataPoints"].as_array());
    points
        .into_iter()
        .flatten()
        .map(|p| {
            let value = match (&p["asInt"], &p["asDouble"]) {
                (Value::String(s), _) => s.parse().unwrap_or(f64::NAN),
                (Value::Number(n), _) => n.as_f64().unwrap_or(f64::NAN),
                (_, Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
                (_, Value::String(s)) => s.parse().unwrap_or(f64::NAN),
                _ => f64::NAN,
            };
            (p["attributes"].clone(), value)
        })
        .collect()
}

/// The string value of attribute `key` in an OTLP/JSON attribute list.
pub fn attr(attributes: &Value, key: &str) -> Option<String> {
    attributes
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == key)
        .and_then(|kv| kv["value"]["stringValue"].as_str().map(str::to_string))
}

/// Polls `check` every 200 ms until it returns Some or `limit` passes.
pub fn wait_for<T>(limit: Duration, check: impl FnMut() -> Option<T>) -> Option<T> {
    wait_every(limit, Duration::from_millis(200), check)
}

/// Polls `check` every `every` until it returns Some or `limit` passes.
pub fn wait_every<T>(
    limit: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(value) = check() {
            return Some(value);
        }
        std::thread::sleep(every);
    }
    None
}
