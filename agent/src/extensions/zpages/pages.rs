//! The pages of the `zpages` extension: server-rendered HTML, no external assets, every
//! value escaped with [`escape`].

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use oxcol_receivers::prometheus::parse::{self, Sample};

use super::{ComponentView, PAGES, PipelineView, Role, State};

/// Text safe inside HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
nav a{margin-right:1em}table{border-collapse:collapse;margin:0.5em 0 1.5em}\
th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:left;vertical-align:top}\
th{background:#eee}td.n{text-align:right;font-family:monospace}code{font-family:monospace}";

/// A whole page: title, the navigation to every page, then `body` (already escaped).
fn page(title: &str, state: &State, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>oxcol: {}</title><style>{STYLE}</style></head><body>\n<nav>",
        escape(title)
    );
    out.push_str(&nav_links(state));
    let _ = write!(
        out,
        "</nav>\n<h1>{}</h1>\n{body}</body></html>\n",
        escape(title)
    );
    out
}

/// The links of the navigation bar: every page, then expvar when enabled.
pub(super) fn nav_links(state: &State) -> String {
    let mut out = String::new();
    for page in PAGES {
        let _ = write!(out, "<a href=\"{}\">{}</a>", page.path, escape(page.title));
    }
    if state.expvar {
        let _ = write!(out, "<a href=\"{}\">Expvar</a>", super::EXPVARZ);
    }
    out
}

/// A two-column table of (name, value) rows.
fn properties(caption: &str, rows: &[(&str, String)]) -> String {
    let mut out = format!("<h2>{}</h2>\n<table>\n", escape(caption));
    for (name, value) in rows {
        let _ = writeln!(
            out,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(name),
            escape(value)
        );
    }
    out.push_str("</table>\n");
    out
}

fn rfc3339(time: std::time::SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    oxcol_ottl::value::format_time(
        i64::try_from(seconds)
            .unwrap_or(i64::MAX / 1_000_000_000)
            .saturating_mul(1_000_000_000),
    )
}

/// `1d 2h 3m 4s`, leading zero units left out.
fn uptime(elapsed: Duration) -> String {
    let total = elapsed.as_secs();
    let (days, hours, minutes, seconds) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    let mut out = String::new();
    for (value, unit) in [(days, "d"), (hours, "h"), (minutes, "m")] {
        if value > 0 || !out.is_empty() {
            let _ = write!(out, "{value}{unit} ");
        }
    }
    let _ = write!(out, "{seconds}s");
    out
}

/// `/debug/servicez`: build and runtime information, links to the other pages.
pub fn servicez(state: &State) -> String {
    let build = [
        ("Command", "oxcol".to_string()),
        ("Description", env!("CARGO_PKG_DESCRIPTION").to_string()),
        ("Version", env!("CARGO_PKG_VERSION").to_string()),
    ];
    let runtime = [
        ("Start time", rfc3339(state.started)),
        ("Uptime", uptime(state.started_at.elapsed())),
        ("OS", std::env::consts::OS.to_string()),
        ("Arch", std::env::consts::ARCH.to_string()),
        ("PID", std::process::id().to_string()),
        ("Pipelines", state.topology.pipelines.len().to_string()),
        (
            "Extensions enabled",
            state
                .topology
                .extensions
                .iter()
                .filter(|e| e.enabled)
                .count()
                .to_string(),
        ),
    ];
    let mut body = properties("Build Info", &build);
    body.push_str(&properties("Runtime Info", &runtime));
    body.push_str("<h2>Pages</h2>\n<ul>\n");
    for page in PAGES.iter().filter(|p| p.path != "/debug/servicez") {
        let _ = writeln!(
            body,
            "<li><a href=\"{}\">{}</a></li>",
            page.path,
            escape(page.title)
        );
    }
    if state.expvar {
        let _ = writeln!(body, "<li><a href=\"{}\">Expvar</a></li>", super::EXPVARZ);
    }
    body.push_str("</ul>\n");
    page("Service oxcol", state, &body)
}

/// The self-telemetry series as they are now, read once per request.
pub(super) struct Counts(Vec<Sample>);

impl Counts {
    pub(super) fn read(state: &State) -> Counts {
        // The registry renders the exposition text the pages read back: one code path
        // for what /metrics and the pages show.
        let text = state.registry.render_prometheus();
        match parse::parse(&text, false) {
            Ok(families) => Counts(families.into_iter().flat_map(|f| f.samples).collect()),
            Err(error) => {
                tracing::warn!(%error, "zpages: cannot read the self-telemetry registry; counts left out");
                Counts(Vec::new())
            }
        }
    }

    /// Sum of the samples named `name` whose labels include every `labels` pair; `None`
    /// when no series matches.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for sample in self.0.iter().filter(|s| s.name == name) {
            if labels
                .iter()
                .all(|(k, v)| sample.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            {
                *found.get_or_insert(0.0) += sample.value;
            }
        }
        found
    }
}

fn number(value: Option<f64>) -> String {
    match value {
        None => "-".to_string(),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", v as i64),
        Some(v) => format!("{v}"),
    }
}

fn add(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
    }
}

/// The live counts of `component` where `pipeline` names it (stage: receivers,
/// processors or exporters), as (label, value) pairs.
pub(super) fn component_counts(
    counts: &Counts,
    pipeline: &PipelineView,
    stage: &str,
    component: &ComponentView,
) -> Vec<(&'static str, Option<f64>)> {
    let id = component.id.as_str();
    let item = pipeline.signal.item_name();
    let signal = pipeline.signal.name();
    match (component.role, stage) {
        (Role::Receiver, _) => vec![
            (
                "accepted",
                counts.sum(
                    &format!("otelcol_receiver_accepted_{item}"),
                    &[("receiver", id)],
                ),
            ),
            (
                "refused",
                counts.sum(
                    &format!("otelcol_receiver_refused_{item}"),
                    &[("receiver", id)],
                ),
            ),
        ],
        (Role::Processor, _) => {
            let labels = [
                ("processor", id),
                ("pipeline", pipeline.id.as_str()),
                ("otel_signal", signal),
            ];
            vec![
                (
                    "incoming",
                    counts.sum("otelcol_processor_incoming_items", &labels),
                ),
                (
                    "outgoing",
                    counts.sum("otelcol_processor_outgoing_items", &labels),
                ),
                (
                    "refused",
                    counts.sum(
                        &format!("otelcol_processor_refused_{item}"),
                        &[("processor", id)],
                    ),
                ),
            ]
        }
        (Role::Exporter, _) => {
            let queue = [("exporter", id), ("data_type", signal)];
            vec![
                (
                    "sent",
                    counts.sum(
                        &format!("otelcol_exporter_sent_{item}"),
                        &[("exporter", id)],
                    ),
                ),
                (
                    "send failed",
                    counts.sum(
                        &format!("otelcol_exporter_send_failed_{item}"),
                        &[("exporter", id)],
                    ),
                ),
                (
                    "enqueue failed",
                    counts.sum(
                        &format!("otelcol_exporter_enqueue_failed_{item}"),
                        &[("exporter", id)],
                    ),
                ),
                (
                    "queue size",
                    counts.sum("otelcol_exporter_queue_size", &queue),
                ),
                (
                    "queue capacity",
                    counts.sum("otelcol_exporter_queue_capacity", &queue),
                ),
            ]
        }
        (Role::Connector, "receivers") => {
            let name = "otelcol_connector_produced_items";
            let labels = |outcome| {
                [
                    ("otelcol_component_id", id),
                    ("otelcol_pipeline_id", pipeline.id.as_str()),
                    ("otelcol_component_outcome", outcome),
                ]
            };
            vec![
                ("produced", counts.sum(name, &labels("success"))),
                (
                    "failed or refused",
                    add(
                        counts.sum(name, &labels("failure")),
                        counts.sum(name, &labels("refused")),
                    ),
                ),
            ]
        }
        (Role::Connector, _) => {
            let name = "otelcol_connector_consumed_items";
            let labels = |outcome| {
                [
                    ("otelcol_component_id", id),
                    ("otelcol_signal", signal),
                    ("otelcol_component_outcome", outcome),
                ]
            };
            vec![
                ("consumed", counts.sum(name, &labels("success"))),
                (
                    "failed or refused",
                    add(
                        counts.sum(name, &labels("failure")),
                        counts.sum(name, &labels("refused")),
                    ),
                ),
            ]
        }
    }
}

/// `/debug/pipelinez`: every pipeline, its components in order with their live counts.
pub fn pipelinez(state: &State) -> String {
    let counts = Counts::read(state);
    let mut body = String::new();
    if state.topology.pipelines.is_empty() {
        body.push_str("<p>No pipeline is running.</p>\n");
    }
    body.push_str("<p>Counts are the self-telemetry series (the same as <code>/metrics</code>) at the time of the request. Receiver and exporter counts are per component and signal, summed over every pipeline that shares it; processor counts are per pipeline. <code>-</code>: no series yet.</p>\n");
    for pipeline in &state.topology.pipelines {
        let flow = |list: &[ComponentView]| {
            list.iter()
                .map(|c| escape(&c.id))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            body,
            "<h2 id=\"{id}\">Pipeline <code>{id}</code> ({signal})</h2>\n<p>[{}] &rarr; [{}] &rarr; [{}]</p>",
            flow(&pipeline.receivers),
            flow(&pipeline.processors),
            flow(&pipeline.exporters),
            id = escape(&pipeline.id),
            signal = pipeline.signal.name(),
        );
        body.push_str("<table>\n<tr><th>Stage</th><th>Component</th><th>Type</th><th>Kind</th><th>Counts</th></tr>\n");
        for (stage, list) in [
            ("receivers", &pipeline.receivers),
            ("processors", &pipeline.processors),
            ("exporters", &pipeline.exporters),
        ] {
            for component in list {
                let mut cell = component_counts(&counts, pipeline, stage, component)
                    .into_iter()
                    .map(|(label, value)| format!("{label}: {}", number(value)))
                    .collect::<Vec<_>>()
                    .join(", ");
                if component.type_name == "batch" {
                    cell.push_str(" (batching is done in the exporter queues)");
                }
                let _ = writeln!(
                    body,
                    "<tr><td>{stage}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&component.id),
                    escape(&component.type_name),
                    component.role.name(),
                    escape(&cell),
                );
            }
        }
        body.push_str("</table>\n");
    }
    page("Pipelines", state, &body)
}

/// `/debug/extensionz`: every defined extension and whether it runs.
pub fn extensionz(state: &State) -> String {
    let mut body = String::new();
    if state.topology.extensions.is_empty() {
        body.push_str("<p>No extension is defined.</p>\n");
    }
    body.push_str("<table>\n<tr><th>Extension</th><th>Type</th><th>Status</th></tr>\n");
    for extension in &state.topology.extensions {
        let status = if extension.enabled {
            "running"
        } else {
            "not started (not listed in service.extensions)"
        };
        let _ = writeln!(
            body,
            "<tr><td><code>{}</code></td><td>{}</td><td>{status}</td></tr>",
            escape(&extension.id),
            escape(&extension.type_name),
        );
    }
    body.push_str("</table>\n");
    page("Extensions", state, &body)
}

/// `/debug/featurez`: oxcol has no feature gates.
pub fn featurez(state: &State) -> String {
    let body = "<p>oxcol has no feature gates: <code>--feature-gates</code> is accepted for compatibility with the Collector and changes nothing.</p>\n\
<table>\n<tr><th>ID</th><th>Enabled</th><th>Stage</th><th>Description</th><th>From version</th><th>To version</th></tr>\n</table>\n";
    page("Feature Gates", state, body)
}

/// `/debug/tracez`: oxcol records no spans of its own.
pub fn tracez(state: &State) -> String {
    let body = "<p>oxcol records no spans of its own yet, so there are no span summaries or latency buckets to show. (The Collector's tracez lists the spans of its own instrumentation.) Traces that flow through the pipelines are not recorded here; see <a href=\"/debug/pipelinez\">Pipelines</a> for their counts.</p>\n";
    page("Traces", state, body)
}

/// `--set` values and inline YAML configs may hold secrets: shown without their values.
fn redacted_cmdline(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut after_set = false;
    for arg in args {
        let redacted = if after_set {
            Some(arg.split_once('=').map_or_else(
                || "[REDACTED]".to_string(),
                |(path, _)| format!("{path}=[REDACTED]"),
            ))
        } else if let Some(value) = arg.strip_prefix("--set=") {
            Some(value.split_once('=').map_or_else(
                || "--set=[REDACTED]".to_string(),
                |(path, _)| format!("--set={path}=[REDACTED]"),
            ))
        } else if arg.starts_with("yaml:") || arg.starts_with("--config=yaml:") {
            Some(format!(
                "{}yaml:[REDACTED]",
                if arg.starts_with("--config=") {
                    "--config="
                } else {
                    ""
                }
            ))
        } else {
            None
        };
        after_set = arg == "--set";
        out.push(redacted.unwrap_or(arg));
    }
    out
}

/// `/debug/expvarz`: process variables as JSON (Go's expvar serves `cmdline` and
/// `memstats`; oxcol serves `cmdline`, redacted, and its own process figures).
pub fn expvarz(state: &State) -> String {
    let value = serde_json::json!({
        "cmdline": redacted_cmdline(std::env::args()),
        "oxcol": {
            "version": env!("CARGO_PKG_VERSION"),
            "start_time": rfc3339(state.started),
            "uptime_seconds": state.started_at.elapsed().as_secs_f64(),
            "allocated_bytes": oxcol_core::process::allocated_bytes(),
            "resident_bytes": oxcol_core::process::resident_bytes(),
        },
    });
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_html_special_character() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("plain/id_1"), "plain/id_1");
    }

    #[test]
    fn uptime_leaves_out_leading_zero_units() {
        assert_eq!(uptime(Duration::from_secs(5)), "5s");
        assert_eq!(uptime(Duration::from_secs(3600 + 2)), "1h 0m 2s");
        assert_eq!(uptime(Duration::from_secs(2 * 86_400 + 61)), "2d 0h 1m 1s");
    }

    #[test]
    fn numbers_are_integers_when_whole_and_dash_when_absent() {
        assert_eq!(number(Some(42.0)), "42");
        assert_eq!(number(Some(1.5)), "1.5");
        assert_eq!(number(None), "-");
        assert_eq!(add(None, Some(2.0)), Some(2.0));
        assert_eq!(add(None, None), None);
    }

    #[test]
    fn cmdline_hides_set_values_and_inline_yaml() {
        let args = [
            "oxcol",
            "--config",
            "yaml:exporters::otlp::headers::x: secret",
            "--set",
            "exporters.otlp.headers.authorization=Bearer s3cret",
            "--set=a.b=c",
            "--config",
            "/etc/oxcol.yaml",
        ];
        let shown = redacted_cmdline(args.iter().map(|a| a.to_string()));
        assert_eq!(
            shown,
            [
                "oxcol",
                "--config",
                "yaml:[REDACTED]",
                "--set",
                "exporters.otlp.headers.authorization=[REDACTED]",
                "--set=a.b=[REDACTED]",
                "--config",
                "/etc/oxcol.yaml"
            ]
        );
        assert!(!shown.join(" ").contains("s3cret"));
    }

    #[test]
    fn start_time_is_rfc3339_utc() {
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(86_400 + 3661)),
            "1970-01-02T01:01:01Z"
        );
    }
}
