//! The picture as text for a terminal: aligned columns, human units (KiB, MiB, GiB),
//! trends per minute, one block per call. ANSI colour only when asked ([`Style`]); the
//! caller decides that from whether stdout is a terminal.

use std::fmt::Write as _;

use oxcol_processors::gofit::Finding;

use super::{CgroupView, GoFitView, MachineView, Picture, Pressure, Trend};

/// How to render.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    /// ANSI colours and bold.
    pub color: bool,
    /// Processes listed (the largest by PSS).
    pub top_processes: usize,
}

impl Default for Style {
    fn default() -> Self {
        Style {
            color: false,
            top_processes: 5,
        }
    }
}

/// Growth below this many bytes per minute, either way, is "stable".
const STABLE_BYTES_PER_MINUTE: f64 = 64.0 * 1024.0;
/// Time-to-limit below these is shown in yellow / red.
const SOON_SECONDS: f64 = 3600.0;
const VERY_SOON_SECONDS: f64 = 600.0;
/// Widest name column.
const NAME_WIDTH: usize = 36;

const BOLD: &str = "\x1b[1m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// `bytes` in B, KiB, MiB, GiB or TiB with three significant digits (`812 MiB`,
/// `2.88 GiB`, `0 B`).
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if !bytes.is_finite() {
        return "?".to_string();
    }
    let sign = if bytes < 0.0 { "-" } else { "" };
    let mut value = bytes.abs();
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{sign}{value:.0} B");
    }
    let text = if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    };
    format!("{sign}{text} {}", UNITS[unit])
}

/// A duration as `3h12m`, `12m05s`, `45s`, `2d03h`.
pub fn human_duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "?".to_string();
    }
    let total = seconds.round() as u64;
    let (days, hours, minutes, secs) = (
        total / 86_400,
        total % 86_400 / 3600,
        total % 3600 / 60,
        total % 60,
    );
    if days > 0 {
        format!("{days}d{hours:02}h")
    } else if hours > 0 {
        format!("{hours}h{minutes:02}m")
    } else if minutes > 0 {
        format!("{minutes}m{secs:02}s")
    } else {
        format!("{secs}s")
    }
}

/// A growth rate per minute with its sign (`+2.10 MiB/min`), or `stable`.
fn human_rate(bytes_per_second: f64) -> String {
    let per_minute = bytes_per_second * 60.0;
    if per_minute.abs() < STABLE_BYTES_PER_MINUTE {
        return "stable".to_string();
    }
    let sign = if per_minute > 0.0 { "+" } else { "" };
    format!("{sign}{}/min", human_bytes(per_minute))
}

fn percent(ratio: Option<f64>) -> String {
    match ratio {
        Some(r) => format!("{:.1}%", r * 100.0),
        None => "–".to_string(),
    }
}

/// `text` cut in the middle to `width` characters.
fn fit(text: &str, width: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= width {
        return text.to_string();
    }
    let head = width.saturating_sub(1) / 2;
    let tail = width.saturating_sub(1) - head;
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// Hours, minutes and seconds (UTC) of a time in ms since the epoch.
fn clock(unix_ms: u64) -> String {
    let seconds = unix_ms / 1000;
    format!(
        "{:02}:{:02}:{:02} UTC",
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

struct Painter {
    color: bool,
}

impl Painter {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color && !code.is_empty() {
            format!("{code}{text}{RESET}")
        } else {
            text.to_string()
        }
    }
}

/// The name a cgroup is shown by: its path, or `pod … / container …` when known.
fn cgroup_name(view: &CgroupView) -> String {
    let container = view.resource.get("container.id").map(|id| fit(id, 12));
    let pod = view
        .resource
        .get("k8s.pod.name")
        .cloned()
        .or_else(|| view.resource.get("k8s.pod.uid").map(|uid| fit(uid, 13)));
    match (pod, container) {
        (Some(pod), Some(container)) => format!("pod {pod} container {container}"),
        (Some(pod), None) => format!("pod {pod}"),
        _ => view.path.clone(),
    }
}

/// The name in the pressure section: a cgroup that has no memory row (on a hybrid v1/v2
/// host, PSI comes from the v2 cgroup) says which hierarchy it is.
fn pressure_name(view: &CgroupView) -> String {
    let name = fit(&cgroup_name(view), NAME_WIDTH);
    match (view.working_set_bytes, view.resource.get("cgroup.version")) {
        (None, Some(version)) => format!("{name} (cgroup v{version})"),
        _ => name,
    }
}

/// The trend cell and the time-to-limit cell, with the colour of the latter.
fn trend_cells(
    limit: Option<f64>,
    trend: Option<Trend>,
    time_to_limit: Option<f64>,
) -> (String, String, &'static str) {
    let trend_text = match trend {
        Some(t) => human_rate(t.bytes_per_second),
        None => "warming up".to_string(),
    };
    let rate = trend.map(|t| human_rate(t.bytes_per_second));
    let (ttl, code) = match (limit, time_to_limit) {
        (None, _) => ("no limit".to_string(), ""),
        (Some(_), Some(s)) if s <= 0.0 => ("AT THE LIMIT".to_string(), RED),
        (Some(_), Some(s)) => {
            let code = if s < VERY_SOON_SECONDS {
                RED
            } else if s < SOON_SECONDS {
                YELLOW
            } else {
                ""
            };
            let at = rate.map(|r| format!(" at {r}")).unwrap_or_default();
            (format!("{}{at}", human_duration(s)), code)
        }
        (Some(_), None) => match trend {
            None => ("warming up".to_string(), DIM),
            Some(t) if t.bytes_per_second * 60.0 >= STABLE_BYTES_PER_MINUTE => {
                // Growing, yet no prediction: beyond the 24h horizon.
                ("more than 24h".to_string(), "")
            }
            Some(_) => ("stable".to_string(), ""),
        },
    };
    (trend_text, ttl, code)
}

fn pressure_text(pressure: &[Pressure]) -> String {
    pressure
        .iter()
        .filter(|p| matches!(p.resource.as_str(), "memory" | "cpu" | "io"))
        .map(|p| {
            let mut text = format!(
                "{} some {}/{}",
                p.resource,
                percent(p.some_avg10),
                percent(p.some_avg60)
            );
            // cpu "full" is about a whole cgroup being stalled on CPU: rare, left out.
            if p.resource != "cpu" && (p.full_avg10.is_some() || p.full_avg60.is_some()) {
                let _ = write!(
                    text,
                    " full {}/{}",
                    percent(p.full_avg10),
                    percent(p.full_avg60)
                );
            }
            text
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// How a Go service is named: `service.name/service.instance.id (pod …)`.
fn go_service_name(view: &GoFitView) -> String {
    let mut name = match (view.service.as_str(), view.instance.as_deref()) {
        ("", Some(instance)) => instance.to_string(),
        ("", None) => "(unnamed)".to_string(),
        (service, Some(instance)) => format!("{service}/{instance}"),
        (service, None) => service.to_string(),
    };
    if let Some(pod) = &view.pod {
        let _ = write!(name, " (pod {pod})");
    }
    name
}

/// A Go service's inputs side by side: `GOMAXPROCS 8 vs CPU limit 1 · GOMEMLIMIT unset vs
/// memory limit 512 MiB`, then the GC and throttled shares when known.
fn go_fit_inputs(view: &GoFitView) -> String {
    let number = |v: Option<f64>| match v {
        Some(v) if v.fract() == 0.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
        None => "–".to_string(),
    };
    let unset = Finding::GomemlimitUnset.name();
    let gomemlimit = match view.gomemlimit {
        Some(bytes) => human_bytes(bytes),
        None if view.findings.iter().any(|f| f.finding == unset) => "unset".to_string(),
        None => "–".to_string(),
    };
    let mut text = format!(
        "GOMAXPROCS {} vs CPU limit {} · GOMEMLIMIT {gomemlimit} vs memory limit {}",
        number(view.gomaxprocs),
        number(view.cpu_limit),
        view.memory_limit
            .map(human_bytes)
            .unwrap_or_else(|| "–".to_string()),
    );
    if let Some(share) = view.gc_cpu_share {
        let _ = write!(text, " · GC {} of CPU", percent(Some(share)));
    }
    if let Some(share) = view.cpu_throttled_share {
        let _ = write!(text, " · throttled {} of periods", percent(Some(share)));
    }
    text
}

/// One row of the memory table.
struct Row {
    name: String,
    current: String,
    limit: String,
    used: String,
    trend: String,
    ttl: String,
    ttl_code: &'static str,
}

fn cgroup_row(view: &CgroupView) -> Row {
    let (trend, ttl, ttl_code) =
        trend_cells(view.limit_bytes, view.trend, view.time_to_limit_seconds);
    Row {
        name: fit(&cgroup_name(view), NAME_WIDTH),
        current: view
            .working_set_bytes
            .map(human_bytes)
            .unwrap_or_else(|| "–".to_string()),
        limit: view
            .limit_bytes
            .map(human_bytes)
            .unwrap_or_else(|| "no limit".to_string()),
        used: match (view.working_set_bytes, view.limit_bytes) {
            (Some(ws), Some(limit)) if limit > 0.0 => format!("{:.0}%", ws / limit * 100.0),
            _ => "–".to_string(),
        },
        trend,
        ttl,
        ttl_code,
    }
}

fn machine_row(view: &MachineView) -> Row {
    let (trend, ttl, ttl_code) =
        trend_cells(view.total_bytes, view.trend, view.time_to_limit_seconds);
    let name = if view.host.is_empty() {
        "machine".to_string()
    } else {
        format!("machine {}", view.host)
    };
    Row {
        name: fit(&name, NAME_WIDTH),
        current: view
            .used_bytes
            .map(human_bytes)
            .unwrap_or_else(|| "–".to_string()),
        limit: view
            .total_bytes
            .map(human_bytes)
            .unwrap_or_else(|| "no limit".to_string()),
        used: match (view.used_bytes, view.total_bytes) {
            (Some(used), Some(total)) if total > 0.0 => format!("{:.0}%", used / total * 100.0),
            _ => "–".to_string(),
        },
        trend,
        ttl,
        ttl_code,
    }
}

/// The picture as one block of text ending in a newline.
pub fn render(picture: &Picture, style: Style) -> String {
    let p = Painter { color: style.color };
    let mut out = String::new();
    let title = format!("oxcol memory picture · {}", clock(picture.taken_at_unix_ms));
    let _ = writeln!(out, "{}", p.paint(BOLD, &title));

    // Working set against limit, one row per cgroup with memory, then machines.
    let memory: Vec<&CgroupView> = picture
        .cgroups
        .iter()
        .filter(|c| c.working_set_bytes.is_some())
        .collect();
    let rows: Vec<Row> = memory
        .iter()
        .map(|c| cgroup_row(c))
        .chain(picture.machines.iter().map(machine_row))
        .collect();
    if rows.is_empty() {
        let _ = writeln!(
            out,
            "  no working set yet: waiting for the cgroup receiver's first scrape (the root cgroup has none; add hostmetrics' memory scraper to see the machine)"
        );
    } else {
        let name_width = rows
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(0)
            .max("cgroup".len());
        let header = format!(
            "  {:<name_width$}  {:>11}  {:>10}  {:>4}  {:<14}  time to limit",
            "cgroup", "working set", "limit", "used", "trend"
        );
        let _ = writeln!(out, "{}", p.paint(BOLD, &header));
        for row in &rows {
            let _ = writeln!(
                out,
                "  {:<name_width$}  {:>11}  {:>10}  {:>4}  {:<14}  {}",
                row.name,
                row.current,
                row.limit,
                row.used,
                row.trend,
                p.paint(row.ttl_code, &row.ttl),
            );
        }
    }

    // PSI of every cgroup that has it (on a hybrid host the v2 cgroup carries it).
    let with_pressure: Vec<&CgroupView> = picture
        .cgroups
        .iter()
        .filter(|c| !c.pressure.is_empty())
        .take(rows.len().max(1) + 1)
        .collect();
    if !with_pressure.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            p.paint(BOLD, "  pressure (share of time stalled, avg10/avg60)")
        );
        let names: Vec<String> = with_pressure.iter().map(|c| pressure_name(c)).collect();
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        for (cgroup, name) in with_pressure.iter().zip(names) {
            let _ = writeln!(out, "  {name:<width$}  {}", pressure_text(&cgroup.pressure));
        }
    }

    // Top processes by PSS.
    let processes: Vec<_> = picture.processes.iter().take(style.top_processes).collect();
    if !processes.is_empty() {
        let name_width = processes
            .iter()
            .map(|p| p.name.chars().count())
            .max()
            .unwrap_or(0)
            .max("name".len());
        let header = format!(
            "  {:>8}  {:<name_width$}  {:>10}  {:>10}  {:>10}",
            "pid", "name", "PSS", "RSS", "swap"
        );
        let _ = writeln!(
            out,
            "{}",
            p.paint(BOLD, &format!("{header}   (top processes by PSS)"))
        );
        for process in processes {
            let _ = writeln!(
                out,
                "  {:>8}  {:<name_width$}  {:>10}  {:>10}  {:>10}",
                process.pid,
                process.name,
                human_bytes(process.pss_bytes),
                process
                    .rss_bytes
                    .map(human_bytes)
                    .unwrap_or_else(|| "–".to_string()),
                process
                    .swap_bytes
                    .map(human_bytes)
                    .unwrap_or_else(|| "–".to_string()),
            );
        }
    }

    // Leak suspects and SLOs, when the data has them.
    for suspect in &picture.leak_suspects {
        let line = format!(
            "  goroutine leak suspect: {} {} (+{:.2}/s, {} goroutines, created by {})",
            suspect.target,
            suspect.function,
            suspect.growth_per_second,
            suspect
                .goroutines
                .map(|g| format!("{g:.0}"))
                .unwrap_or_else(|| "?".to_string()),
            if suspect.creator.is_empty() {
                "?"
            } else {
                &suspect.creator
            },
        );
        let _ = writeln!(out, "{}", p.paint(YELLOW, &line));
    }
    for slo in &picture.slos {
        let firing: Vec<&str> = slo
            .alerts
            .iter()
            .filter(|a| a.firing)
            .map(|a| a.severity.as_str())
            .collect();
        let rates: Vec<String> = slo
            .burn_rates
            .iter()
            .map(|b| format!("{} {:.2}", b.window, b.rate))
            .collect();
        let line = format!(
            "  SLO {}: burn rate {}{}{}",
            slo.name,
            if rates.is_empty() {
                "–".to_string()
            } else {
                rates.join(", ")
            },
            slo.error_budget_remaining
                .map(|b| format!("; budget left {:.0}%", b * 100.0))
                .unwrap_or_default(),
            if firing.is_empty() {
                String::new()
            } else {
                format!("; ALERT {}", firing.join(", "))
            },
        );
        let code = if firing.is_empty() { "" } else { RED };
        let _ = writeln!(out, "{}", p.paint(code, &line));
    }
    // Go services whose runtime does not fit their container, when there are any.
    if !picture.go_fit.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            p.paint(BOLD, "  Go runtime fit (gofit findings and their fix)")
        );
        for service in &picture.go_fit {
            let _ = writeln!(
                out,
                "  {}: {}",
                go_service_name(service),
                go_fit_inputs(service)
            );
            for finding in &service.findings {
                let line = if finding.fix.is_empty() {
                    format!("    {}", finding.finding)
                } else {
                    format!("    {}: {}", finding.finding, finding.fix)
                };
                let _ = writeln!(out, "{}", p.paint(YELLOW, &line));
            }
        }
    }
    if picture.dropped_series > 0 {
        let _ = writeln!(
            out,
            "  ({} series not shown: the picture's tables are full)",
            picture.dropped_series
        );
    }
    match &picture.status_page {
        Some(url) => {
            let _ = writeln!(out, "  status page: {url}");
        }
        None => {
            let _ = writeln!(
                out,
                "  status page: off (add the zpages extension to service.extensions)"
            );
        }
    }
    out
}
