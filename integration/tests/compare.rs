//! Smoke test of `oxcol-bench compare`: oxcol against oxcol with another config, one round,
//! a short fixed-rate load. Checks that both runs deliver everything to the sink and that
//! the report (JSON and markdown) has the measurements and ratios.
//!
//! Needs `target/debug/oxcol` (`cargo build -p oxcol`; ./scripts/test builds it first).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn compare_runs_two_systems_and_reports_medians_and_ratios() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let oxcol = root.join("target/debug/oxcol");
    assert!(
        oxcol.is_file(),
        "oxcol binary not found at {}: build it first with `cargo build -p oxcol`",
        oxcol.display()
    );
    let dir = std::env::temp_dir().join(format!("oxcol-compare-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The second system: the same pipeline with small batches, written as a template.
    let small = dir.join("small-batches.yaml");
    let template = std::fs::read_to_string(root.join("scripts/compare/oxcol-passthrough.yaml"))
        .unwrap()
        .replace("send_batch_size: 8192", "send_batch_size: 500");
    assert!(template.contains("send_batch_size: 500"));
    std::fs::write(&small, template).unwrap();
    let json = dir.join("report.json");
    let markdown = dir.join("report.md");

    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxcol-bench"))
        .current_dir(&root)
        .args([
            "compare",
            "--rounds",
            "1",
            "--rate",
            "20000",
            "--duration",
            "1500ms",
        ])
        .args([
            "--pause",
            "100ms",
            "--ready-timeout",
            "10s",
            "--drain-timeout",
            "5s",
        ])
        .arg("--system")
        .arg(format!(
            "big={} --config {{config:scripts/compare/oxcol-passthrough.yaml}}",
            oxcol.display()
        ))
        .arg("--system")
        .arg(format!(
            "small={} --config {{config:{}}}",
            oxcol.display(),
            small.display()
        ))
        .arg("--json")
        .arg(&json)
        .arg("--markdown")
        .arg(&markdown)
        .arg("--work-dir")
        .arg(dir.join("work"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: kill the harness if it hangs (its own guards stop the systems).
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("compare did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(status.success(), "compare failed: {stderr}");
    eprintln!("compare took {:?}", started.elapsed());

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{report:#}");
    for run in runs {
        assert!(run["error"].is_null(), "run failed: {run:#}");
        let accepted = run["load"]["accepted_points"].as_u64().unwrap();
        assert!(accepted >= 20_000, "1.5 s at 20k points/s: {run:#}");
        assert_eq!(
            run["delivered_points"].as_u64().unwrap(),
            accepted,
            "{run:#}"
        );
        assert_eq!(run["lost_points"].as_i64().unwrap(), 0);
        assert!(run["cpu_secs"].as_f64().unwrap() > 0.0, "{run:#}");
        assert!(run["rss_peak_mib"].as_f64().unwrap() > 1.0, "{run:#}");
        assert!(run["rss_samples"].as_u64().unwrap() >= 5, "{run:#}");
        assert!(run["cpu_secs_per_million"].as_f64().unwrap() > 0.0);
    }
    let summaries = report["summaries"].as_array().unwrap();
    assert_eq!(summaries.len(), 2);
    assert!(
        summaries[0]["ratio_vs_baseline"].is_null(),
        "big is the baseline"
    );
    let ratio = summaries[1]["ratio_vs_baseline"]["delivered_points_per_sec"]
        .as_f64()
        .unwrap();
    assert!(ratio > 0.5 && ratio < 2.0, "same offered rate: {ratio}");
    let table = std::fs::read_to_string(&markdown).unwrap();
    assert!(table.contains("| 20,000 pts/s | big | 1 |"), "{table}");
    assert!(table.contains("| 20,000 pts/s | small | 1 |"), "{table}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), table);
    assert!(
        !dir.join("work").exists(),
        "the work dir is removed without --keep"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
