//! The `oxcol-bench` binary end to end: the sink and the load generator as child processes,
//! the way other test suites (and people) run them. Children are killed by `ChildGuard`
//! even when an assertion fails; every wait has a timeout.

use oxcol_integration::child::{ChildGuard, first_line, spawn_sink};
use oxcol_integration::control_client::ControlClient;
use oxcol_integration::load::LoadSummary;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const BENCH: &str = env!("CARGO_BIN_EXE_oxcol-bench");
const WAIT: Duration = Duration::from_secs(30);

/// Runs `oxcol-bench load <args>` and parses its JSON summary.
fn run_load(args: Vec<String>) -> LoadSummary {
    let child = Command::new(BENCH)
        .arg("load")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("oxcol-bench load starts");
    let mut guard = ChildGuard::new(child);
    let stdout = guard.child_mut().stdout.take().expect("stdout is piped");
    let line = first_line(stdout, WAIT).expect("load prints its summary");
    let status = guard.wait_timeout(WAIT).expect("load exits");
    assert!(status.success(), "load exited with {status}");
    serde_json::from_str(&line)
        .unwrap_or_else(|error| panic!("summary {line:?} is not JSON: {error}"))
}

fn arguments(common: &[&str], extra: &[&str]) -> Vec<String> {
    common
        .iter()
        .chain(extra)
        .map(|arg| arg.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_child_against_sink_child_counts_exactly() {
    let (mut sink, addresses) =
        spawn_sink(Path::new(BENCH), &["--fail-next", "2"], WAIT).expect("sink starts");
    let control = ControlClient::new(addresses.control);

    let grpc_endpoint = addresses.grpc.to_string();
    let common = [
        "--resources",
        "2",
        "--metrics",
        "5",
        "--points",
        "4",
        "--total-points",
        "4000",
        "--concurrency",
        "1",
    ];
    let grpc_args = arguments(
        &common,
        &["--endpoint", &grpc_endpoint, "--compression", "zstd"],
    );
    let summary = tokio::task::spawn_blocking(move || run_load(grpc_args))
        .await
        .unwrap();
    assert_eq!(summary.sent_points, 4000, "{summary:?}");
    assert_eq!(
        summary.refused_points, 80,
        "first two requests are refused: {summary:?}"
    );
    assert_eq!(summary.accepted_points, 3920, "{summary:?}");

    let http_endpoint = format!("http://{}", addresses.http);
    let http_args = arguments(
        &common,
        &[
            "--protocol",
            "http",
            "--endpoint",
            &http_endpoint,
            "--compression",
            "gzip",
            "--signal",
            "logs",
        ],
    );
    let summary = tokio::task::spawn_blocking(move || run_load(http_args))
        .await
        .unwrap();
    assert_eq!(summary.accepted_points, 4000, "{summary:?}");

    let stats = control.stats().await.unwrap();
    assert_eq!(
        (stats.metrics.items, stats.logs.items, stats.failed_requests),
        (3920, 4000, 2)
    );

    let pid = sink.id().to_string();
    let terminated = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(terminated.success());
    let status = tokio::task::spawn_blocking(move || sink.wait_timeout(WAIT))
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "sink exits cleanly on SIGTERM: {status}");
}

#[test]
fn bad_flags_are_refused_with_a_message() {
    let output = Command::new(BENCH)
        .args(["sink", "--grpc-code", "busy"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown gRPC code"));
    let output = Command::new(BENCH)
        .args(["load", "--duration", "ten"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
}
