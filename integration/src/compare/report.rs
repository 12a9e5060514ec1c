//! Results of `compare`: one record per run, medians per system and load, ratios against
//! the baseline system, and the markdown table.

use crate::load::LoadSummary;
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// One run: one system, one round, one load.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RunResult {
    pub system: String,
    pub round: usize,
    /// Offered rate in points/s; 0 = flat out; `None` for an idle run (no load).
    pub rate: Option<f64>,
    /// Set when the run could not be measured (the system did not start, crashed, ...).
    pub error: Option<String>,
    /// What the load generator saw (`None` for idle runs).
    pub load: Option<LoadSummary>,
    /// Points counted at the sink during the window.
    pub delivered_points: u64,
    /// Accepted by the system (per the load generator) minus delivered to the sink.
    pub lost_points: i64,
    /// From the start of the load to the last point reaching the sink (idle: the duration).
    pub window_secs: f64,
    pub delivered_points_per_sec: f64,
    /// utime + stime of the system's process tree over the window.
    pub cpu_secs: f64,
    /// `cpu_secs / window_secs` in % of one core.
    pub cpu_percent: f64,
    /// CPU seconds per million delivered points (`None` when nothing was delivered).
    pub cpu_secs_per_million: Option<f64>,
    /// Delivered points per CPU second of the system: its throughput per core.
    pub points_per_cpu_sec: Option<f64>,
    /// Largest sampled VmRSS (sum over the tree) during the window, MiB.
    pub rss_peak_mib: f64,
    /// Mean of the VmRSS samples during the window, MiB.
    pub rss_mean_mib: f64,
    /// VmHWM (sum over the tree) at the end of the window, MiB: includes start-up peaks.
    pub vm_hwm_mib: f64,
    /// VmRSS right before the load started, MiB.
    pub rss_start_mib: f64,
    pub rss_samples: usize,
    /// Processes in the system's tree.
    pub processes: usize,
    /// CPU seconds of the sink and of this harness (load generator) over the window.
    pub sink_cpu_secs: f64,
    pub harness_cpu_secs: f64,
    /// Busy share of the whole machine over the window (all cores), %.
    pub machine_busy_percent: f64,
    /// Machine CPU seconds used by anything but the system, the sink and the harness.
    pub other_cpu_secs: f64,
    /// `/proc/loadavg` when the run started.
    pub loadavg_start: [f64; 3],
}

/// Medians over the rounds of one system at one load.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub system: String,
    pub rate: Option<f64>,
    pub rounds: usize,
    pub failed_rounds: usize,
    pub delivered_points_per_sec: Option<f64>,
    pub lost_points: Option<f64>,
    pub refused_points: Option<f64>,
    pub cpu_percent: Option<f64>,
    pub cpu_secs_per_million: Option<f64>,
    pub points_per_cpu_sec: Option<f64>,
    pub rss_peak_mib: Option<f64>,
    pub rss_mean_mib: Option<f64>,
    pub vm_hwm_mib: Option<f64>,
    pub machine_busy_percent: Option<f64>,
    /// This system's medians divided by the baseline's at the same load (`None` for the
    /// baseline itself or when either side is missing).
    pub ratio_vs_baseline: Option<Ratios>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Ratios {
    pub baseline: String,
    pub delivered_points_per_sec: Option<f64>,
    pub points_per_cpu_sec: Option<f64>,
    pub cpu_secs_per_million: Option<f64>,
    pub cpu_percent: Option<f64>,
    pub rss_peak_mib: Option<f64>,
    pub rss_mean_mib: Option<f64>,
}

/// The whole report (`--json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub machine: MachineInfo,
    pub settings: serde_json::Value,
    pub systems: Vec<SystemInfo>,
    pub runs: Vec<RunResult>,
    pub summaries: Vec<Summary>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct MachineInfo {
    pub cpus: usize,
    pub loadavg_start: [f64; 3],
    pub loadavg_end: [f64; 3],
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SystemInfo {
    pub name: String,
    pub command: String,
}

/// The median of the values (mean of the middle two for an even count); `None` when empty.
/// NaNs are ignored.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.into_iter().filter(|v| !v.is_nan()).collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

fn ratio(value: Option<f64>, baseline: Option<f64>) -> Option<f64> {
    match (value, baseline) {
        (Some(value), Some(baseline)) if baseline != 0.0 => Some(value / baseline),
        _ => None,
    }
}

fn same_rate(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        (None, None) => true,
        _ => false,
    }
}

/// Medians per (system, rate), in the order systems and rates were given, with ratios
/// against `baseline`.
pub fn summarize(
    runs: &[RunResult],
    systems: &[String],
    rates: &[Option<f64>],
    baseline: &str,
) -> Vec<Summary> {
    let mut summaries = Vec::new();
    for &rate in rates {
        for system in systems {
            let all: Vec<&RunResult> = runs
                .iter()
                .filter(|run| &run.system == system && same_rate(run.rate, rate))
                .collect();
            let ok: Vec<&RunResult> = all
                .iter()
                .copied()
                .filter(|run| run.error.is_none())
                .collect();
            let med =
                |f: &dyn Fn(&RunResult) -> Option<f64>| median(ok.iter().filter_map(|run| f(run)));
            let loaded = rate.is_some();
            summaries.push(Summary {
                system: system.clone(),
                rate,
                rounds: all.len(),
                failed_rounds: all.len() - ok.len(),
                delivered_points_per_sec: if loaded {
                    med(&|r| Some(r.delivered_points_per_sec))
                } else {
                    None
                },
                lost_points: if loaded {
                    med(&|r| Some(r.lost_points as f64))
                } else {
                    None
                },
                refused_points: if loaded {
                    med(&|r| r.load.as_ref().map(|l| l.refused_points as f64))
                } else {
                    None
                },
                cpu_percent: med(&|r| Some(r.cpu_percent)),
                cpu_secs_per_million: med(&|r| r.cpu_secs_per_million),
                points_per_cpu_sec: med(&|r| r.points_per_cpu_sec),
                rss_peak_mib: med(&|r| Some(r.rss_peak_mib)),
                rss_mean_mib: med(&|r| Some(r.rss_mean_mib)),
                vm_hwm_mib: med(&|r| Some(r.vm_hwm_mib)),
                machine_busy_percent: med(&|r| Some(r.machine_busy_percent)),
                ratio_vs_baseline: None,
            });
        }
    }
    let reference: Vec<Summary> = summaries.clone();
    for summary in &mut summaries {
        if summary.system == baseline {
            continue;
        }
        let Some(base) = reference
            .iter()
            .find(|s| s.system == baseline && same_rate(s.rate, summary.rate))
        else {
            continue;
        };
        summary.ratio_vs_baseline = Some(Ratios {
            baseline: baseline.to_string(),
            delivered_points_per_sec: ratio(
                summary.delivered_points_per_sec,
                base.delivered_points_per_sec,
            ),
            points_per_cpu_sec: ratio(summary.points_per_cpu_sec, base.points_per_cpu_sec),
            cpu_secs_per_million: ratio(summary.cpu_secs_per_million, base.cpu_secs_per_million),
            cpu_percent: ratio(summary.cpu_percent, base.cpu_percent),
            rss_peak_mib: ratio(summary.rss_peak_mib, base.rss_peak_mib),
            rss_mean_mib: ratio(summary.rss_mean_mib, base.rss_mean_mib),
        });
    }
    summaries
}

fn num(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) if v.abs() >= 10_000.0 => group_thousands(v.round() as i64),
        Some(v) => format!("{v:.decimals$}"),
        None => "-".to_string(),
    }
}

fn group_thousands(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0 {
        out.insert(0, '-');
    }
    out
}

/// `x` as a ratio for the table: `1.23x`, or `-`.
fn times(value: Option<f64>) -> String {
    value.map_or("-".to_string(), |v| format!("{v:.2}x"))
}

fn rate_label(rate: Option<f64>) -> String {
    match rate {
        None => "idle".to_string(),
        Some(0.0) => "flat out".to_string(),
        Some(r) => format!("{} pts/s", group_thousands(r.round() as i64)),
    }
}

/// The markdown table of the summaries (medians over the rounds).
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| load | system | rounds | delivered pts/s | lost | refused | CPU % of a core | CPU s / M pts | pts per CPU s | peak RSS MiB | mean RSS MiB | VmHWM MiB | machine busy % | vs baseline: pts/CPU s | CPU s/M | peak RSS |"
    );
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for s in &report.summaries {
        let ratios = s.ratio_vs_baseline.as_ref();
        let rounds = if s.failed_rounds > 0 {
            format!("{} ({} failed)", s.rounds, s.failed_rounds)
        } else {
            s.rounds.to_string()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            rate_label(s.rate),
            s.system,
            rounds,
            num(s.delivered_points_per_sec, 0),
            num(s.lost_points, 0),
            num(s.refused_points, 0),
            num(s.cpu_percent, 2),
            num(s.cpu_secs_per_million, 3),
            num(s.points_per_cpu_sec, 0),
            num(s.rss_peak_mib, 1),
            num(s.rss_mean_mib, 1),
            num(s.vm_hwm_mib, 1),
            num(s.machine_busy_percent, 0),
            times(ratios.and_then(|r| r.points_per_cpu_sec)),
            times(ratios.and_then(|r| r.cpu_secs_per_million)),
            times(ratios.and_then(|r| r.rss_peak_mib)),
        );
    }
    let m = &report.machine;
    let _ = writeln!(
        out,
        "\nMedians over rounds; ratios are this system / baseline. Machine: {} CPUs, load average {:.2} {:.2} {:.2} at start, {:.2} {:.2} {:.2} at end.",
        m.cpus,
        m.loadavg_start[0],
        m.loadavg_start[1],
        m.loadavg_start[2],
        m.loadavg_end[0],
        m.loadavg_end[1],
        m.loadavg_end[2]
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median([]), None);
        assert_eq!(median([3.0]), Some(3.0));
        assert_eq!(median([5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median([f64::NAN, 2.0, 8.0]), Some(5.0));
        assert_eq!(median([f64::NAN]), None);
    }

    fn run(
        system: &str,
        round: usize,
        rate: Option<f64>,
        pps: f64,
        cpu_per_m: f64,
        rss: f64,
    ) -> RunResult {
        RunResult {
            system: system.into(),
            round,
            rate,
            delivered_points_per_sec: pps,
            cpu_secs_per_million: Some(cpu_per_m),
            points_per_cpu_sec: Some(1e6 / cpu_per_m),
            rss_peak_mib: rss,
            ..RunResult::default()
        }
    }

    #[test]
    fn summaries_take_medians_per_system_and_rate_and_ratio_against_the_baseline() {
        let flat = Some(0.0);
        let mut failed = run("b", 3, flat, 0.0, 99.0, 999.0);
        failed.error = Some("did not start".into());
        let runs = vec![
            run("a", 0, flat, 100.0, 0.5, 10.0),
            run("b", 0, flat, 50.0, 2.0, 40.0),
            run("a", 1, flat, 300.0, 0.3, 30.0),
            run("b", 1, flat, 70.0, 1.0, 20.0),
            run("a", 2, flat, 200.0, 0.4, 20.0),
            run("b", 2, flat, 60.0, 1.2, 30.0),
            failed,
            run("a", 0, Some(10.0), 10.0, 5.0, 5.0),
        ];
        let systems = vec!["a".to_string(), "b".to_string()];
        let summaries = summarize(&runs, &systems, &[flat, Some(10.0)], "a");
        assert_eq!(summaries.len(), 4);
        let a = &summaries[0];
        assert_eq!((a.system.as_str(), a.rounds, a.failed_rounds), ("a", 3, 0));
        assert_eq!(a.delivered_points_per_sec, Some(200.0));
        assert_eq!(a.cpu_secs_per_million, Some(0.4));
        assert_eq!(a.ratio_vs_baseline, None);
        let b = &summaries[1];
        assert_eq!((b.rounds, b.failed_rounds), (4, 1));
        assert_eq!(b.rss_peak_mib, Some(30.0), "the failed round is left out");
        let ratios = b.ratio_vs_baseline.as_ref().unwrap();
        assert_eq!(ratios.delivered_points_per_sec, Some(60.0 / 200.0));
        assert_eq!(ratios.cpu_secs_per_million, Some(1.2 / 0.4));
        assert_eq!(ratios.rss_peak_mib, Some(30.0 / 20.0));
        // b has no run at 10 pts/s: medians and ratios are absent, not zero.
        let b10 = &summaries[3];
        assert_eq!((b10.rounds, b10.delivered_points_per_sec), (0, None));
        assert_eq!(
            b10.ratio_vs_baseline.as_ref().unwrap().points_per_cpu_sec,
            None
        );
    }

    #[test]
    fn markdown_has_a_row_per_summary() {
        let runs = vec![
            run("oxcol", 0, Some(0.0), 1_536_164.0, 0.35, 98.9),
            run("peer", 0, Some(0.0), 500_000.0, 1.4, 200.0),
        ];
        let report = Report {
            summaries: summarize(
                &runs,
                &["oxcol".into(), "peer".into()],
                &[Some(0.0)],
                "oxcol",
            ),
            ..Report::default()
        };
        let table = markdown(&report);
        assert!(
            table.contains("| flat out | oxcol | 1 | 1,536,164 |"),
            "{table}"
        );
        assert!(
            table.contains("| flat out | peer | 1 | 500,000 |"),
            "{table}"
        );
        assert!(table.contains("| 4.00x | 2.02x |"), "{table}");
        assert_eq!(
            table
                .lines()
                .filter(|l| l.starts_with("| flat out"))
                .count(),
            2
        );
        assert_eq!(rate_label(Some(10_000.0)), "10,000 pts/s");
        assert_eq!(rate_label(None), "idle");
        assert_eq!(group_thousands(-1234567), "-1,234,567");
    }
}
