//! The `container` operator: Kubernetes container log lines in the Docker JSON
//! (`{"log":"...","stream":"stdout","time":"..."}`), CRI-O and containerd CRI
//! (`<time> <stream> <P|F> <log>`) formats, detected per line unless `format` is set.
//!
//! As the Collector: the time goes to the record's timestamp (and the `time` attribute is
//! removed), `log` becomes the body, `stream` the `log.iostream` attribute, the CRI
//! `logtag` stays an attribute; CRI partial lines (`P`) are joined with the next lines of
//! the same file up to the final `F` line (combine_with "", force flush 5 s,
//! `max_log_size` bounding the joined size). With `add_metadata_from_filepath` (default)
//! the resource gets `k8s.namespace.name`, `k8s.pod.name`, `k8s.pod.uid`,
//! `k8s.container.name` and `k8s.container.restart_count` from a
//! `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<n>.log` `log.file.path`.
//!
//! Parsing never panics on any input (fuzzed: fuzz/fuzz_targets/container_log.rs).

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::{Map, Value};

use super::entry::{Entry, Field, Mark};
use super::expr::Expr;
use super::operators::{ContainerConfig, Recombine, RecombineSettings, match_values};
use super::time::{Layout, Location};

static CRIO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?P<time>[^ Z]+) (?P<stream>stdout|stderr) (?P<logtag>[^ ]*) ?(?P<log>.*)$")
        .expect("a valid constant regex")
});
static CONTAINERD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?P<time>[^ ^Z]+Z) (?P<stream>stdout|stderr) (?P<logtag>[^ ]*) ?(?P<log>.*)$")
        .expect("a valid constant regex")
});
static LOG_PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^.*(/|\\)(?P<namespace>[^_]+)_(?P<pod_name>[^_]+)_(?P<uid>[a-f0-9\-]+)(/|\\)(?P<container_name>[^\._]+)(/|\\)(?P<restart_count>\d+)\.log$")
        .expect("a valid constant regex")
});
static CRIO_TIME: LazyLock<Layout> = LazyLock::new(|| {
    Layout::new("gotime", "2006-01-02T15:04:05.999999999Z07:00").expect("a valid constant layout")
});
static GO_TIME: LazyLock<Layout> = LazyLock::new(|| {
    Layout::new("gotime", "2006-01-02T15:04:05.999Z").expect("a valid constant layout")
});

const K8S_METADATA: [(&str, &str); 5] = [
    ("container_name", "k8s.container.name"),
    ("namespace", "k8s.namespace.name"),
    ("pod_name", "k8s.pod.name"),
    ("restart_count", "k8s.container.restart_count"),
    ("uid", "k8s.pod.uid"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Docker,
    Crio,
    Containerd,
}

/// A container log line's parts (the fuzzed parser).
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    pub format: Format,
    pub fields: Map<String, Value>,
    /// Unix nanoseconds.
    pub time: u64,
}

/// Detects the format of `line` (`{` first: Docker; then CRI-O, then containerd).
pub fn detect(line: &str) -> Option<Format> {
    if line.starts_with('{') {
        Some(Format::Docker)
    } else if CRIO.is_match(line) {
        Some(Format::Crio)
    } else if CONTAINERD.is_match(line) {
        Some(Format::Containerd)
    } else {
        None
    }
}

/// Parses one line in `format` (or the detected one): its fields and time.
pub fn parse_line(line: &str, format: Option<Format>) -> Result<Parsed, String> {
    let format = match format {
        Some(f) => f,
        None => detect(line)
            .ok_or_else(|| format!("entry cannot be parsed as container logs: {line:?}"))?,
    };
    let mut fields = match format {
        Format::Docker => match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err("docker log line is not a JSON object".to_string()),
            Err(e) => return Err(format!("docker log line is not JSON: {e}")),
        },
        Format::Crio => match_values(&CRIO, line).ok_or("not a cri-o log line")?,
        Format::Containerd => match_values(&CONTAINERD, line).ok_or("not a containerd log line")?,
    };
    let layout: &Layout = if format == Format::Crio {
        &CRIO_TIME
    } else {
        &GO_TIME
    };
    let Some(time) = fields.remove("time") else {
        return Err("container log line has no time".to_string());
    };
    let time = layout.parse(&time, Location::Utc, 0)?;
    if !fields.contains_key("log") {
        return Err("container log line has no log field".to_string());
    }
    if !fields.contains_key("stream") {
        return Err("container log line has no stream field".to_string());
    }
    Ok(Parsed {
        format,
        fields,
        time,
    })
}

pub struct Container {
    format: Option<Format>,
    metadata_from_path: bool,
    from: Field,
    to: Field,
    recombine: Recombine,
}

impl Container {
    pub fn from_config(c: &ContainerConfig) -> Result<Container, String> {
        let format = match c.format.as_deref() {
            None | Some("") => None,
            Some("docker") => Some(Format::Docker),
            Some("crio") => Some(Format::Crio),
            Some("containerd") => Some(Format::Containerd),
            Some(other) => {
                return Err(format!(
                    "format {other:?} is not one of docker, crio, containerd (or leave it out to detect per line)"
                ));
            }
        };
        Ok(Container {
            format,
            metadata_from_path: c.add_metadata_from_filepath.unwrap_or(true),
            from: c.parse_from.clone().unwrap_or_else(Field::body),
            to: c.parse_to.clone().unwrap_or(Field {
                root: super::entry::Root::Attributes,
                path: Vec::new(),
            }),
            recombine: Recombine::new(RecombineSettings {
                field: Field::body(),
                with: String::new(),
                first: false,
                condition: Expr::parse("attributes.logtag == 'F'")
                    .map_err(|e| format!("internal: {e}"))?,
                source: Field::attribute("log.file.path"),
                max_batch_size: 1000,
                max_unmatched_batch_size: 100,
                newest: false,
                force_flush: Duration::from_secs(5),
                max_sources: 1000,
                max_log_size: c.max_log_size.map(|b| b.0 as usize).unwrap_or(0),
            }),
        })
    }

    /// Parses one entry; completed entries go to `out` (CRI partial lines wait).
    pub fn process(
        &mut self,
        mut entry: Entry,
        now: Instant,
        _year: i64,
        out: &mut Vec<Entry>,
    ) -> Result<(), String> {
        let line = match entry.get(&self.from) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => return Err(format!("type {other} cannot be parsed as container logs")),
            None => return Err(format!("field {} does not exist", self.from)),
        };
        let parsed = parse_line(&line, self.format)?;
        entry.delete(&self.from);
        let mut fields = parsed.fields;
        let log = fields.remove("log").unwrap_or(Value::Null);
        let stream = fields.remove("stream").unwrap_or(Value::Null);
        entry.merge(&self.to, fields);
        entry.timestamp = Some(parsed.time);
        entry.set(&Field::body(), log);
        entry.attributes.insert("log.iostream".to_string(), stream);
        if self.metadata_from_path {
            let path = entry
                .attributes
                .get("log.file.path")
                .and_then(Value::as_str)
                .ok_or("the log.file.path attribute is missing (set include_file_path: true) or not a string")?;
            let values =
                match_values(&LOG_PATH, path).ok_or("failed to detect a valid log path")?;
            for (key, attribute) in K8S_METADATA {
                if let Some(value) = values.get(key) {
                    entry.resource.insert(attribute.to_string(), value.clone());
                }
            }
        }
        if parsed.format == Format::Docker {
            out.push(entry);
        } else {
            self.recombine.push(entry, now, out);
        }
        Ok(())
    }

    pub fn flush(&mut self, now: Instant, force: bool, out: &mut Vec<Entry>) {
        self.recombine.flush(now, force, out);
    }

    pub fn held(&self, out: &mut Vec<Mark>) {
        self.recombine.held(out);
    }

    pub fn clear(&mut self) {
        self.recombine.clear();
    }
}
