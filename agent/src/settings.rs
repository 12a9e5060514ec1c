//! The top level of the Collector's config schema: `receivers`, `processors`,
//! `exporters`, `extensions`, `service` — read from the positioned tree so every problem
//! is reported with `file:line:column`, all at once.
//!
//! This module checks structure and references (ids, types, pipelines, signals); each
//! component's own keys are decoded and validated by the registry.

use oxcol_config::{ConfigError, Location, Node, Value, decode};
use oxcol_core::Signal;

use crate::registry::{self, Kind};
use crate::telemetry::TelemetryConfig;

/// One component as written: `type/name` and its config subtree.
#[derive(Clone, Debug)]
pub struct ComponentDef {
    pub id: String,
    /// The canonical type name (aliases resolved: `otlp_grpc` -> `otlp`).
    pub type_name: &'static str,
    pub node: Node,
    /// Where the id key was written.
    pub location: Location,
}

/// A reference to a component from `service`, with where it was written.
#[derive(Clone, Debug)]
pub struct Reference {
    pub id: String,
    pub location: Location,
}

#[derive(Clone, Debug)]
pub struct PipelineDef {
    pub id: String,
    pub signal: Signal,
    pub receivers: Vec<Reference>,
    pub processors: Vec<Reference>,
    pub exporters: Vec<Reference>,
    pub location: Location,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub receivers: Vec<ComponentDef>,
    pub processors: Vec<ComponentDef>,
    pub exporters: Vec<ComponentDef>,
    pub extensions: Vec<ComponentDef>,
    pub connectors: Vec<ComponentDef>,
    pub service_extensions: Vec<Reference>,
    pub pipelines: Vec<PipelineDef>,
    pub telemetry: TelemetryConfig,
}

impl Settings {
    pub fn components(&self, kind: Kind) -> &[ComponentDef] {
        match kind {
            Kind::Receiver => &self.receivers,
            Kind::Processor => &self.processors,
            Kind::Exporter => &self.exporters,
            Kind::Extension => &self.extensions,
            Kind::Connector => &self.connectors,
        }
    }

    pub fn find(&self, kind: Kind, id: &str) -> Option<&ComponentDef> {
        self.components(kind).iter().find(|c| c.id == id)
    }
}

const TOP_LEVEL_KEYS: &[&str] = &[
    "receivers",
    "processors",
    "exporters",
    "extensions",
    "connectors",
    "service",
];
const SERVICE_KEYS: &[&str] = &["extensions", "pipelines", "telemetry"];
const PIPELINE_KEYS: &[&str] = &["receivers", "processors", "exporters"];

fn entries<'a>(node: &'a Node, what: &str, errors: &mut Vec<ConfigError>) -> &'a [(Node, Node)] {
    match &node.value {
        Value::Map(entries) => entries,
        Value::Null => &[],
        _ => {
            errors.push(ConfigError::at(
                &node.location,
                format!("{what} must be a map, found {}", node.kind()),
            ));
            &[]
        }
    }
}

fn check_keys(node: &Node, allowed: &[&str], what: &str, errors: &mut Vec<ConfigError>) {
    for (key, _) in entries(node, what, &mut Vec::new()) {
        let name = key.scalar_text().unwrap_or_default();
        if !allowed.contains(&name.as_ref()) {
            errors.push(ConfigError::at(
                &key.location,
                format!(
                    "unknown key {name:?} in {what}; expected one of: {}",
                    allowed.join(", ")
                ),
            ));
        }
    }
}

/// Splits `type/name`; checks the id's form.
fn parse_id(id: &str) -> Result<(&str, Option<&str>), String> {
    let (type_part, name) = match id.split_once('/') {
        Some((t, n)) => (t, Some(n)),
        None => (id, None),
    };
    if type_part.is_empty()
        || !type_part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(format!(
            "invalid component id {id:?}: the type part must be letters, digits or _"
        ));
    }
    if name.is_some_and(|n| n.is_empty()) {
        return Err(format!(
            "invalid component id {id:?}: the name after '/' must not be empty"
        ));
    }
    Ok((type_part, name))
}

fn read_components(root: &Node, kind: Kind, errors: &mut Vec<ConfigError>) -> Vec<ComponentDef> {
    let section = kind.section();
    let Some(node) = root.get(section) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, value) in entries(node, section, errors) {
        let id = key.scalar_text().unwrap_or_default().to_string();
        let (type_part, _) = match parse_id(&id) {
            Ok(parts) => parts,
            Err(message) => {
                errors.push(ConfigError::at(&key.location, message));
                continue;
            }
        };
        let Some(type_name) = registry::canonical_type(kind, type_part) else {
            if let Some(feature) = registry::left_out_feature(kind, type_part) {
                errors.push(ConfigError::at(
                    &key.location,
                    registry::not_in_build_message(kind, type_part, &id, feature),
                ));
                continue;
            }
            let known = registry::type_names(kind).join(", ");
            errors.push(ConfigError::at(
                &key.location,
                format!(
                    "unknown {} type {type_part:?} for {id:?}; oxcol has: {known}",
                    kind.name()
                ),
            ));
            continue;
        };
        out.push(ComponentDef {
            id,
            type_name,
            node: value.clone(),
            location: key.location.clone(),
        });
    }
    out
}

fn read_references(node: &Node, what: &str, errors: &mut Vec<ConfigError>) -> Vec<Reference> {
    match &node.value {
        Value::Seq(items) => items
            .iter()
            .filter_map(|item| match item.scalar_text() {
                Some(text) => Some(Reference {
                    id: text.to_string(),
                    location: item.location.clone(),
                }),
                None => {
                    errors.push(ConfigError::at(
                        &item.location,
                        format!("{what} entries must be component ids"),
                    ));
                    None
                }
            })
            .collect(),
        Value::Null => Vec::new(),
        _ => {
            errors.push(ConfigError::at(
                &node.location,
                format!("{what} must be a list of component ids"),
            ));
            Vec::new()
        }
    }
}

/// Reads and checks the top-level structure. Returns what could be read, and every error
/// found (the components that were read can still be decoded, to report their errors too).
pub fn read(root: &Node) -> (Settings, Vec<ConfigError>) {
    let mut errors = Vec::new();
    check_keys(root, TOP_LEVEL_KEYS, "the top level", &mut errors);
    let receivers = read_components(root, Kind::Receiver, &mut errors);
    let processors = read_components(root, Kind::Processor, &mut errors);
    let exporters = read_components(root, Kind::Exporter, &mut errors);
    let extensions = read_components(root, Kind::Extension, &mut errors);
    let connectors = read_components(root, Kind::Connector, &mut errors);

    let mut service_extensions = Vec::new();
    let mut pipelines = Vec::new();
    let mut telemetry = TelemetryConfig::default();
    match root.get("service") {
        None => errors.push(ConfigError::new(
            None,
            "the config has no `service` section: add service.pipelines",
        )),
        Some(service) => {
            check_keys(service, SERVICE_KEYS, "service", &mut errors);
            if let Some(node) = service.get("extensions") {
                service_extensions = read_references(node, "service.extensions", &mut errors);
            }
            if let Some(node) = service.get("telemetry") {
                match decode::<TelemetryConfig>(node) {
                    Ok(t) => {
                        for message in t.validate() {
                            errors.push(ConfigError::at(
                                &node.location,
                                format!("service.telemetry: {message}"),
                            ));
                        }
                        telemetry = t;
                    }
                    Err(e) => errors.push(e),
                }
            }
            match service.get("pipelines") {
                None => errors.push(ConfigError::at(
                    &service.location,
                    "service.pipelines is required: define at least one pipeline",
                )),
                Some(node) => {
                    for (key, value) in entries(node, "service.pipelines", &mut errors) {
                        let id = key.scalar_text().unwrap_or_default().to_string();
                        let type_part = id.split('/').next().unwrap_or_default();
                        let Some(signal) = Signal::from_pipeline_type(type_part) else {
                            let message = if type_part == "profiles" {
                                format!(
                                    "pipeline {id:?}: oxcol does not support the profiles signal yet; remove this pipeline (and its receivers and exporters if nothing else uses them)"
                                )
                            } else {
                                format!(
                                    "pipeline {id:?}: the type must be metrics, traces or logs (e.g. metrics/sidecar)"
                                )
                            };
                            errors.push(ConfigError::at(&key.location, message));
                            continue;
                        };
                        check_keys(value, PIPELINE_KEYS, &format!("pipeline {id}"), &mut errors);
                        let get = |name: &str, errors: &mut Vec<ConfigError>| {
                            value
                                .get(name)
                                .map(|n| {
                                    read_references(n, &format!("pipeline {id} {name}"), errors)
                                })
                                .unwrap_or_default()
                        };
                        let pipeline = PipelineDef {
                            receivers: get("receivers", &mut errors),
                            processors: get("processors", &mut errors),
                            exporters: get("exporters", &mut errors),
                            id,
                            signal,
                            location: key.location.clone(),
                        };
                        pipelines.push(pipeline);
                    }
                }
            }
        }
    }

    let settings = Settings {
        receivers,
        processors,
        exporters,
        extensions,
        connectors,
        service_extensions,
        pipelines,
        telemetry,
    };
    check_references(&settings, &mut errors);
    check_connectors(&settings, &mut errors);
    (settings, errors)
}

/// Pipelines name defined components of the right kind and signal; every pipeline has a
/// receiver and an exporter; extensions listed in service are defined.
fn check_references(settings: &Settings, errors: &mut Vec<ConfigError>) {
    if settings.pipelines.is_empty() && errors.is_empty() {
        errors.push(ConfigError::new(
            None,
            "service.pipelines defines no pipeline",
        ));
    }
    for reference in &settings.service_extensions {
        if settings.find(Kind::Extension, &reference.id).is_none() {
            errors.push(ConfigError::at(
                &reference.location,
                format!(
                    "service.extensions: extension {:?} is not defined under `extensions`",
                    reference.id
                ),
            ));
        }
    }
    for pipeline in &settings.pipelines {
        if pipeline.receivers.is_empty() {
            errors.push(ConfigError::at(
                &pipeline.location,
                format!("pipeline {:?} must have at least one receiver", pipeline.id),
            ));
        }
        if pipeline.exporters.is_empty() {
            errors.push(ConfigError::at(
                &pipeline.location,
                format!("pipeline {:?} must have at least one exporter", pipeline.id),
            ));
        }
        for (kind, references) in [
            (Kind::Receiver, &pipeline.receivers),
            (Kind::Processor, &pipeline.processors),
            (Kind::Exporter, &pipeline.exporters),
        ] {
            let mut seen: Vec<&str> = Vec::new();
            for reference in references.iter() {
                if seen.contains(&reference.id.as_str()) {
                    errors.push(ConfigError::at(
                        &reference.location,
                        format!(
                            "pipeline {:?} lists {} {:?} twice",
                            pipeline.id,
                            kind.name(),
                            reference.id
                        ),
                    ));
                }
                seen.push(&reference.id);
                // A connector in `receivers` or `exporters` is checked by check_connectors.
                if kind != Kind::Processor
                    && settings.find(Kind::Connector, &reference.id).is_some()
                    && settings.find(kind, &reference.id).is_none()
                {
                    continue;
                }
                match settings.find(kind, &reference.id) {
                    None => errors.push(ConfigError::at(
                        &reference.location,
                        format!(
                            "pipeline {:?} references {} {:?}, which is not defined under `{}`",
                            pipeline.id,
                            kind.name(),
                            reference.id,
                            kind.section()
                        ),
                    )),
                    Some(def) => {
                        if !registry::supports(kind, def.type_name, pipeline.signal) {
                            errors.push(ConfigError::at(
                                &reference.location,
                                format!(
                                    "{} {:?} does not support {} (pipeline {:?})",
                                    kind.name(),
                                    reference.id,
                                    pipeline.signal,
                                    pipeline.id
                                ),
                            ));
                        }
                    }
                }
            }
        }
        let batches = pipeline
            .processors
            .iter()
            .filter(|r| {
                settings
                    .find(Kind::Processor, &r.id)
                    .is_some_and(|d| d.type_name == "batch")
            })
            .count();
        if batches > 1 {
            errors.push(ConfigError::at(&pipeline.location, format!("pipeline {:?} has more than one batch processor; oxcol allows one per pipeline", pipeline.id)));
        }
    }
}

/// The Collector's connector rules, every violation at its position: a connector id is not
/// also a receiver's or exporter's id; a connector named in a pipeline's `exporters` feeds
/// at least one pipeline whose signal it supports (and the mirror for `receivers`); and no
/// loop of pipelines and connectors (data would circulate forever). A defined connector that
/// no pipeline uses is ignored, as by the Collector.
fn check_connectors(settings: &Settings, errors: &mut Vec<ConfigError>) {
    for def in &settings.connectors {
        for kind in [Kind::Receiver, Kind::Exporter] {
            if settings.find(kind, &def.id).is_some() {
                errors.push(ConfigError::at(
                    &def.location,
                    format!("connector {:?}: ambiguous id: a {} has the same id; rename one of them so pipelines say which they mean", def.id, kind.name()),
                ));
            }
        }
        let exporting: Vec<(&PipelineDef, &Reference)> = settings
            .pipelines
            .iter()
            .filter_map(|p| p.exporters.iter().find(|r| r.id == def.id).map(|r| (p, r)))
            .collect();
        let receiving: Vec<(&PipelineDef, &Reference)> = settings
            .pipelines
            .iter()
            .filter_map(|p| p.receivers.iter().find(|r| r.id == def.id).map(|r| (p, r)))
            .collect();
        let pairs = registry::connector_pairs(def.type_name);
        // The signals it can feed from `from`, and those that can feed it into `to`.
        let targets = |from: Signal| {
            pairs
                .iter()
                .filter(|p| p.0 == from)
                .map(|p| p.1.name())
                .collect::<Vec<_>>()
                .join(" or ")
        };
        let sources = |to: Signal| {
            pairs
                .iter()
                .filter(|p| p.1 == to)
                .map(|p| p.0.name())
                .collect::<Vec<_>>()
                .join(" or ")
        };
        for (pipeline, reference) in &exporting {
            if receiving.iter().any(|(to, _)| {
                registry::connector_supports(def.type_name, pipeline.signal, to.signal)
            }) {
                continue;
            }
            let fix = match targets(pipeline.signal) {
                to if to.is_empty() => {
                    format!("{} takes no {} data", def.type_name, pipeline.signal)
                }
                to => format!("add it to the receivers of a {to} pipeline"),
            };
            errors.push(ConfigError::at(
                &reference.location,
                format!("connector {:?} used as exporter in [{}] pipeline but not used in any supported receiver pipeline; {fix}", def.id, pipeline.id),
            ));
        }
        for (pipeline, reference) in &receiving {
            if exporting.iter().any(|(from, _)| {
                registry::connector_supports(def.type_name, from.signal, pipeline.signal)
            }) {
                continue;
            }
            let fix = match sources(pipeline.signal) {
                from if from.is_empty() => {
                    format!("{} emits no {} data", def.type_name, pipeline.signal)
                }
                from => format!("add it to the exporters of a {from} pipeline"),
            };
            errors.push(ConfigError::at(
                &reference.location,
                format!("connector {:?} used as receiver in [{}] pipeline but not used in any supported exporter pipeline; {fix}", def.id, pipeline.id),
            ));
        }
    }
    check_connector_cycles(settings, errors);
}

/// The pipelines a pipeline feeds through connectors: (connector reference in its
/// `exporters`, index of the downstream pipeline).
pub fn connector_edges<'a>(
    settings: &'a Settings,
    from: &'a PipelineDef,
) -> Vec<(&'a Reference, usize)> {
    let mut out = Vec::new();
    for reference in &from.exporters {
        let Some(def) = settings.find(Kind::Connector, &reference.id) else {
            continue;
        };
        for (index, to) in settings.pipelines.iter().enumerate() {
            if to.receivers.iter().any(|r| r.id == reference.id)
                && registry::connector_supports(def.type_name, from.signal, to.signal)
            {
                out.push((reference, index));
            }
        }
    }
    out
}

/// Reports each loop pipeline -> connector -> pipeline -> ... once, at the first
/// connector reference of the loop.
fn check_connector_cycles(settings: &Settings, errors: &mut Vec<ConfigError>) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit<'a>(
        settings: &'a Settings,
        at: usize,
        marks: &mut Vec<Mark>,
        path: &mut Vec<(usize, &'a Reference)>,
        found: &mut Vec<Vec<(usize, &'a Reference)>>,
    ) {
        marks[at] = Mark::OnPath;
        for (reference, next) in connector_edges(settings, &settings.pipelines[at]) {
            path.push((at, reference));
            match marks[next] {
                Mark::OnPath => {
                    let start = path.iter().position(|(p, _)| *p == next).unwrap_or(0);
                    found.push(path[start..].to_vec());
                }
                Mark::New => visit(settings, next, marks, path, found),
                Mark::Done => {}
            }
            path.pop();
        }
        marks[at] = Mark::Done;
    }
    let mut marks = vec![Mark::New; settings.pipelines.len()];
    let mut found = Vec::new();
    for start in 0..settings.pipelines.len() {
        if marks[start] == Mark::New {
            visit(settings, start, &mut marks, &mut Vec::new(), &mut found);
        }
    }
    for cycle in found {
        let Some((first, reference)) = cycle.first() else {
            continue;
        };
        let mut text = String::new();
        for (pipeline, via) in &cycle {
            text.push_str(&format!(
                "pipeline {:?} -> connector {:?} -> ",
                settings.pipelines[*pipeline].id, via.id
            ));
        }
        text.push_str(&format!("pipeline {:?}", settings.pipelines[*first].id));
        errors.push(ConfigError::at(&reference.location, format!("cycle detected: {text}; data would loop forever: remove one of these connectors from a pipeline")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcol_config::{Source, load};

    fn read_text(text: &str) -> (Settings, Vec<ConfigError>) {
        let root = load(
            &[Source::Text {
                name: "c.yaml".into(),
                text: text.into(),
            }],
            &[],
            &|_| None,
        )
        .expect("valid YAML");
        read(&root)
    }

    fn messages(errors: &[ConfigError]) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_good_config_reads_with_aliases_resolved() {
        let (settings, errors) = read_text(
            "receivers:\n  otlp:\nexporters:\n  otlp_grpc/backend:\n    endpoint: x:1\nservice:\n  pipelines:\n    traces/a:\n      receivers: [otlp]\n      exporters: [otlp_grpc/backend]\n",
        );
        assert!(errors.is_empty(), "{:?}", messages(&errors));
        assert_eq!(settings.exporters[0].type_name, "otlp");
        assert_eq!(settings.pipelines[0].signal, Signal::Traces);
        assert_eq!(settings.pipelines[0].id, "traces/a");
    }

    #[test]
    fn every_structural_problem_is_reported_with_its_position() {
        let text = "\
receivers:
  otlp:
  sqlquery:
processors:
  batch:
exporters:
  debug:
extension:
  foo:
service:
  extensions: [health_check]
  pipelines:
    metrics:
      receivers: [otlp, otlp, nope]
      processors: [batch]
      exporters: [debug]
    spans:
      receivers: [otlp]
      exporters: [debug]
    logs:
      receivers: [otlp]
";
        let (_, errors) = read_text(text);
        let got = messages(&errors);
        let expect = [
            "c.yaml:3:3: unknown receiver type \"sqlquery\"",
            "c.yaml:8:1: unknown key \"extension\" in the top level",
            "c.yaml:11:16: service.extensions: extension \"health_check\" is not defined",
            "c.yaml:14:25: pipeline \"metrics\" lists receiver \"otlp\" twice",
            "c.yaml:14:31: pipeline \"metrics\" references receiver \"nope\"",
            "c.yaml:17:5: pipeline \"spans\": the type must be metrics, traces or logs",
            "c.yaml:20:5: pipeline \"logs\" must have at least one exporter",
        ];
        for prefix in expect {
            assert!(
                got.iter().any(|m| m.starts_with(prefix)),
                "missing {prefix:?} in {got:#?}"
            );
        }
        assert_eq!(got.len(), expect.len(), "{got:#?}");
    }

    #[test]
    fn a_profiles_pipeline_is_refused_by_name() {
        let (_, errors) = read_text(
            "receivers:\n  otlp:\nexporters:\n  debug:\nservice:\n  pipelines:\n    profiles/ebpf:\n      receivers: [otlp]\n      exporters: [debug]\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n",
        );
        let got = messages(&errors);
        assert_eq!(
            got,
            [
                "c.yaml:7:5: pipeline \"profiles/ebpf\": oxcol does not support the profiles signal yet; remove this pipeline (and its receivers and exporters if nothing else uses them)"
            ],
            "{got:#?}"
        );
    }

    const CONNECTOR_BASE: &str = "receivers:\n  otlp:\nexporters:\n  debug:\nconnectors:\n  forward:\n  forward/b:\n  spanmetrics:\n  count:\n";

    #[test]
    fn connectors_join_pipelines_when_used_on_both_sides() {
        let text = format!(
            "{CONNECTOR_BASE}service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [spanmetrics, forward]\n    traces/2:\n      receivers: [forward]\n      exporters: [debug]\n    metrics:\n      receivers: [spanmetrics]\n      exporters: [debug]\n"
        );
        let (settings, errors) = read_text(&text);
        assert!(errors.is_empty(), "{:?}", messages(&errors));
        assert_eq!(settings.connectors.len(), 4);
        let edges: Vec<(String, usize)> = connector_edges(&settings, &settings.pipelines[0])
            .into_iter()
            .map(|(r, to)| (r.id.clone(), to))
            .collect();
        assert_eq!(
            edges,
            vec![("spanmetrics".to_string(), 2), ("forward".to_string(), 1)]
        );
    }

    #[test]
    fn a_connector_used_on_one_side_only_is_an_error_at_its_position() {
        let text = format!(
            "{CONNECTOR_BASE}service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [forward]\n    metrics:\n      receivers: [forward/b]\n      exporters: [debug]\n"
        );
        let (_, errors) = read_text(&text);
        let got = messages(&errors);
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(got[0].starts_with("c.yaml:14:19: connector \"forward\" used as exporter in [traces] pipeline but not used in any supported receiver pipeline; add it to the receivers of a traces pipeline"), "{got:#?}");
        assert!(got[1].starts_with("c.yaml:16:19: connector \"forward/b\" used as receiver in [metrics] pipeline but not used in any supported exporter pipeline; add it to the exporters of a metrics pipeline"), "{got:#?}");
    }

    #[test]
    fn an_unsupported_signal_pair_is_an_error() {
        // spanmetrics: traces -> metrics only; forward: same signal only.
        let text = format!(
            "{CONNECTOR_BASE}service:\n  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [spanmetrics, forward]\n    metrics:\n      receivers: [spanmetrics, forward]\n      exporters: [debug]\n"
        );
        let (_, errors) = read_text(&text);
        let got = messages(&errors);
        assert_eq!(got.len(), 4, "{got:#?}");
        assert!(
            got.iter().any(|m| m
                .contains("connector \"spanmetrics\" used as exporter in [logs] pipeline")
                && m.contains("spanmetrics takes no logs data")),
            "{got:#?}"
        );
        assert!(
            got.iter().any(|m| m
                .contains("connector \"forward\" used as receiver in [metrics] pipeline")
                && m.contains("add it to the exporters of a metrics pipeline")),
            "{got:#?}"
        );
    }

    #[test]
    fn cycles_through_connectors_are_reported_once_with_the_loop() {
        let text = format!(
            "{CONNECTOR_BASE}service:\n  pipelines:\n    traces/a:\n      receivers: [otlp, forward/b]\n      exporters: [forward]\n    traces/b:\n      receivers: [forward]\n      exporters: [forward/b, debug]\n"
        );
        let (_, errors) = read_text(&text);
        let got = messages(&errors);
        assert_eq!(
            got,
            [
                "c.yaml:14:19: cycle detected: pipeline \"traces/a\" -> connector \"forward\" -> pipeline \"traces/b\" -> connector \"forward/b\" -> pipeline \"traces/a\"; data would loop forever: remove one of these connectors from a pipeline"
            ],
        );
        // A pipeline feeding itself.
        let text = format!(
            "{CONNECTOR_BASE}service:\n  pipelines:\n    logs:\n      receivers: [otlp, forward]\n      exporters: [forward, debug]\n"
        );
        let got = messages(&read_text(&text).1);
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].contains("pipeline \"logs\" -> connector \"forward\" -> pipeline \"logs\""),
            "{got:#?}"
        );
    }

    #[test]
    fn unused_connectors_are_accepted_and_ambiguous_ids_are_not() {
        let text = "receivers:\n  otlp:\n  forward:\nexporters:\n  debug:\nconnectors:\n  count:\nservice:\n  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [debug]\n";
        let got = messages(&read_text(text).1);
        // `forward` is not a receiver type; count is unused, which the Collector allows.
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].contains("unknown receiver type \"forward\""),
            "{got:#?}"
        );
        assert!(registry::connector_supports(
            "count",
            Signal::Logs,
            Signal::Metrics
        ));
        assert!(!registry::connector_supports(
            "count",
            Signal::Logs,
            Signal::Logs
        ));
        assert_eq!(
            registry::canonical_type(Kind::Connector, "span_metrics"),
            Some("spanmetrics"),
            "the Collector's new spelling"
        );
    }

    #[test]
    fn signal_support_is_checked_per_pipeline() {
        // health_check supports no signal, so naming it as a receiver fails on kind first;
        // the support check itself is exercised through the registry.
        assert!(registry::supports(Kind::Exporter, "debug", Signal::Logs));
        assert!(!registry::supports(
            Kind::Extension,
            "health_check",
            Signal::Metrics
        ));
        let (_, errors) = read_text(
            "receivers:\n  otlp:\nexporters:\n  debug:\nservice:\n  pipelines:\n    metrics:\n      receivers: [otlp]\n      exporters: [otlp]\n",
        );
        assert!(
            messages(&errors)[0].contains("exporter \"otlp\", which is not defined"),
            "{:?}",
            messages(&errors)
        );
    }

    #[test]
    fn a_type_left_out_of_the_build_is_named_with_its_cargo_feature() {
        assert_eq!(
            registry::not_in_build_message(Kind::Receiver, "kafka", "kafka/in", "kafka"),
            "receiver type \"kafka\" is not in this build (cargo feature `kafka`), used by \"kafka/in\"; build oxcol with `--features kafka` or with its default features"
        );
        // Not a type oxcol has in any build: the plain "unknown type" error stays.
        assert_eq!(registry::left_out_feature(Kind::Receiver, "nosuch"), None);
        let (_, errors) = read_text(
            "receivers:\n  nosuch:\nexporters:\n  debug:\nservice:\n  pipelines:\n    logs:\n      receivers: [nosuch]\n      exporters: [debug]\n",
        );
        assert!(
            messages(&errors)[0].contains("unknown receiver type \"nosuch\""),
            "{:?}",
            messages(&errors)
        );
    }

    /// In the default build every feature-gated name is a type (or alias) the registry has,
    /// so the table cannot name a type that does not exist.
    #[cfg(all(
        feature = "kafka",
        feature = "loadbalancing",
        feature = "k8sattributes",
        feature = "tail_sampling",
        feature = "spanmetrics",
        feature = "servicegraph"
    ))]
    #[test]
    fn feature_gated_names_are_types_of_the_full_build() {
        for (kind, name, _) in registry::FEATURE_GATED {
            assert!(
                registry::canonical_type(*kind, name).is_some(),
                "{} {name}",
                kind.name()
            );
            assert_eq!(registry::left_out_feature(*kind, name), None);
        }
    }

    /// Runs only in a build without the `kafka` feature (not in CI's default build):
    /// `cargo test -p oxcol --no-default-features`.
    #[cfg(not(feature = "kafka"))]
    #[test]
    fn a_kafka_receiver_in_a_lean_build_names_the_feature() {
        let (_, errors) = read_text(
            "receivers:\n  kafka/in:\nexporters:\n  debug:\nservice:\n  pipelines:\n    logs:\n      receivers: [kafka/in]\n      exporters: [debug]\n",
        );
        assert!(
            messages(&errors)[0]
                .contains("receiver type \"kafka\" is not in this build (cargo feature `kafka`)"),
            "{:?}",
            messages(&errors)
        );
    }
}
