//! oxcol against the real OpenTelemetry Collector, case by case: every directory of
//! `integration/oracle/cases/` runs through the Collector oracle (scripts/build-oracle) and
//! through `target/debug/oxcol` with the same config and input, and the two canonical
//! outputs must be equal (oxcol_integration::oracle, docs/oracle.md).
//!
//! A case that needs a component oxcol does not have yet is "not run", listed by the
//! component in [`NOT_YET_IN_OXCOL`]; its Collector side still runs, so the case itself
//! stays valid. When oxcol gains the component, the test fails until its entry is removed
//! here, so no case stays switched off by accident.
//!
//! A case's `case.json` may name another Collector build as its oracle (`"oracle":
//! "routing"`, see `oracle::ORACLES`); every oracle the selected cases need must be built,
//! or the test fails saying how to build it.
//!
//! Environment: `OXCOL_ORACLE_OTELCOL` (the oracle binary; scripts/test sets it),
//! `OXCOL_ORACLE_OTELCOL_ROUTING` (the oracle of the routing connector and of
//! resourcedetection, likewise), `OXCOL_ORACLE_CASE=<substring>` (run only matching cases),
//! `OXCOL_ORACLE_SHOW=1` (print each case's canonical Collector output). Needs `cargo build -p oxcol` first.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oxcol_integration::oracle::{self, Case, diff::diff};

/// Component types the cases use that oxcol does not implement yet. The lead removes an
/// entry when the component lands (the test says when one has).
const NOT_YET_IN_OXCOL: &[&str] = &[];

/// Cases run at the same time (each runs two collectors).
const PARALLEL_CASES: usize = 3;

/// Bound on the whole suite.
const SUITE_LIMIT: Duration = Duration::from_secs(300);

enum Verdict {
    Same {
        items: usize,
    },
    NotRun {
        missing: Vec<String>,
        oracle_items: usize,
    },
    Differs(String),
    Failed(String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oxcol_matches_the_collector_on_every_case() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let oxcol = common::oxcol_binary();
    let oxcol_types = oxcol_component_types(&oxcol);
    let landed: Vec<&str> = NOT_YET_IN_OXCOL
        .iter()
        .copied()
        .filter(|name| oxcol_types.iter().any(|t| t == name))
        .collect();

    let oracle_dir = root.join("integration/oracle");
    let mut cases = oracle::load_cases(&oracle_dir.join("cases"), &oracle_dir.join("inputs"))
        .unwrap_or_else(|problem| panic!("{problem}"));
    if let Ok(filter) = std::env::var("OXCOL_ORACLE_CASE") {
        cases.retain(|case| case.name.contains(&filter));
    }
    assert!(
        !cases.is_empty(),
        "no oracle case under {} matches",
        oracle_dir.display()
    );
    let mut oracles: std::collections::BTreeMap<Option<String>, PathBuf> = Default::default();
    for case in &cases {
        let name = case.settings.oracle.clone();
        if let std::collections::btree_map::Entry::Vacant(slot) = oracles.entry(name) {
            let binary = oracle::oracle_binary_named(&root, slot.key().as_deref())
                .unwrap_or_else(|problem| panic!("case {}: {problem}", case.name));
            slot.insert(binary);
        }
    }
    let show = std::env::var_os("OXCOL_ORACLE_SHOW").is_some();
    let work = std::env::temp_dir().join(format!("oxcol-oracle-{}", std::process::id()));

    let limit = Arc::new(tokio::sync::Semaphore::new(PARALLEL_CASES));
    let mut runs = tokio::task::JoinSet::new();
    for (index, case) in cases.into_iter().enumerate() {
        let (limit, oracle, oxcol, work) = (
            limit.clone(),
            oracles[&case.settings.oracle].clone(),
            oxcol.clone(),
            work.join(&case.name),
        );
        let missing: Vec<String> = case
            .components
            .iter()
            .filter(|(_, component_type)| NOT_YET_IN_OXCOL.contains(&component_type.as_str()))
            .map(|(section, component_type)| format!("{section}/{component_type}"))
            .collect();
        runs.spawn(async move {
            let _permit = limit
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let verdict = run(&case, &oracle, &oxcol, &work, missing, show).await;
            (index, case.name, verdict, work)
        });
    }
    let mut results = common::bounded(SUITE_LIMIT, runs.join_all()).await;
    results.sort_by_key(|(index, ..)| *index);

    let mut report = String::new();
    let mut failures = 0;
    for (_, name, verdict, work) in &results {
        match verdict {
            Verdict::Same { items } => {
                report.push_str(&format!("same     {name} ({items} canonical lines)\n"));
                let _ = std::fs::remove_dir_all(work);
            }
            Verdict::NotRun {
                missing,
                oracle_items,
            } => {
                report.push_str(&format!(
                    "not run  {name}: component {} missing in oxcol (Collector side ran: {oracle_items} canonical lines)\n",
                    missing.join(", ")
                ));
                let _ = std::fs::remove_dir_all(work);
            }
            Verdict::Differs(text) => {
                failures += 1;
                report.push_str(&format!(
                    "DIFFERS  {name} (logs and records in {})\n{text}\n",
                    work.display()
                ));
            }
            Verdict::Failed(text) => {
                failures += 1;
                report.push_str(&format!(
                    "FAILED   {name} (logs and records in {})\n{text}\n",
                    work.display()
                ));
            }
        }
    }
    eprintln!(
        "==== Collector oracle: {} cases ====\n{report}",
        results.len()
    );
    let _ = std::fs::remove_dir(&work); // only when empty: every case was the same or not run
    assert!(
        landed.is_empty(),
        "oxcol now has {landed:?}: remove them from NOT_YET_IN_OXCOL in integration/tests/oracle.rs so their oracle cases run"
    );
    assert_eq!(
        failures, 0,
        "{failures} oracle case(s) differ or failed; see the report above"
    );
}

async fn run(
    case: &Case,
    oracle: &Path,
    oxcol: &Path,
    work: &Path,
    missing: Vec<String>,
    show: bool,
) -> Verdict {
    let options = case.options();
    if !missing.is_empty() {
        return match oracle::run_case(oracle, case, &work.join("collector")).await {
            Ok(run) => {
                let lines = run.canonical_lines(options);
                if show {
                    eprintln!("---- {} (Collector)\n{}", case.name, lines.join("\n"));
                }
                Verdict::NotRun {
                    missing,
                    oracle_items: lines.len(),
                }
            }
            Err(problem) => {
                Verdict::Failed(format!("the Collector cannot run this case: {problem}"))
            }
        };
    }
    let (collector_dir, oxcol_dir) = (work.join("collector"), work.join("oxcol"));
    let (expected, actual) = tokio::join!(
        oracle::run_case(oracle, case, &collector_dir),
        oracle::run_case(oxcol, case, &oxcol_dir)
    );
    let expected = match expected {
        Ok(run) => run.canonical_lines(options),
        Err(problem) => {
            return Verdict::Failed(format!("the Collector cannot run this case: {problem}"));
        }
    };
    if show {
        eprintln!("---- {} (Collector)\n{}", case.name, expected.join("\n"));
    }
    let actual = match actual {
        Ok(run) => run.canonical_lines(options),
        Err(problem) => return Verdict::Failed(format!("oxcol cannot run this case: {problem}")),
    };
    match diff("the Collector", &expected, "oxcol", &actual) {
        None => Verdict::Same {
            items: expected.len(),
        },
        Some(text) => Verdict::Differs(format!("{}\n{text}", case.settings.description)),
    }
}

/// Every component type name and alias `oxcol components` lists.
fn oxcol_component_types(oxcol: &PathBuf) -> Vec<String> {
    let output = std::process::Command::new(oxcol)
        .arg("components")
        .output()
        .unwrap_or_else(|error| panic!("cannot run {} components: {error}", oxcol.display()));
    assert!(
        output.status.success(),
        "{} components failed: {}",
        oxcol.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut types = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("- name:") {
            types.push(name.trim().to_string());
        } else if let Some(aliases) = line.strip_prefix("aliases:") {
            types.extend(
                aliases
                    .trim()
                    .trim_matches(['[', ']'])
                    .split(',')
                    .map(|alias| alias.trim().to_string()),
            );
        }
    }
    assert!(
        types.iter().any(|t| t == "otlp"),
        "`oxcol components` listed no otlp component: {types:?}"
    );
    types
}
