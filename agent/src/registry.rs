//! Every component type oxcol has, by kind: its names, the signals it supports, and how
//! its config is decoded and checked. Adding a component is one module in its crate plus
//! one entry here.

use oxcol_config::{decode, ConfigError};
use oxcol_connectors as connectors;
use oxcol_core::Signal;
use oxcol_exporters as exporters;
use oxcol_processors as processors;
use oxcol_receivers as receivers;

use crate::extensions::health_check;
use crate::extensions::headers_setter;
use crate::extensions::pprof as pprof_extension;
use crate::extensions::zpages;
use crate::extensions::{basicauth, bearertokenauth};
use crate::settings::ComponentDef;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Receiver,
    Processor,
    Exporter,
    Extension,
    Connector,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Receiver, Kind::Processor, Kind::Exporter, Kind::Extension, Kind::Connector];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Receiver => "receiver",
            Kind::Processor => "processor",
            Kind::Exporter => "exporter",
            Kind::Extension => "extension",
            Kind::Connector => "connector",
        }
    }

    /// The top-level config section of this kind.
    pub fn section(self) -> &'static str {
        match self {
            Kind::Receiver => "receivers",
            Kind::Processor => "processors",
            Kind::Exporter => "exporters",
            Kind::Extension => "extensions",
            Kind::Connector => "connectors",
        }
    }
}

pub struct TypeInfo {
    pub kind: Kind,
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub signals: &'static [Signal],
    pub stability: &'static str,
}

const ALL_SIGNALS: &[Signal] = &[Signal::Metrics, Signal::Traces, Signal::Logs];

pub const TYPES: &[TypeInfo] = &[
    TypeInfo { kind: Kind::Receiver, name: receivers::otlp::TYPE, aliases: receivers::otlp::ALIASES, signals: ALL_SIGNALS, stability: "beta" },
    TypeInfo { kind: Kind::Processor, name: processors::batch::TYPE, aliases: processors::batch::ALIASES, signals: ALL_SIGNALS, stability: "beta" },
    TypeInfo { kind: Kind::Processor, name: processors::memory_limiter::TYPE, aliases: processors::memory_limiter::ALIASES, signals: ALL_SIGNALS, stability: "beta" },
    TypeInfo { kind: Kind::Exporter, name: exporters::otlp::TYPE, aliases: exporters::otlp::ALIASES, signals: ALL_SIGNALS, stability: "beta" },
    TypeInfo { kind: Kind::Exporter, name: exporters::otlphttp::TYPE, aliases: exporters::otlphttp::ALIASES, signals: ALL_SIGNALS, stability: "beta" },
    TypeInfo { kind: Kind::Exporter, name: exporters::debug::TYPE, aliases: exporters::debug::ALIASES, signals: ALL_SIGNALS, stability: "development" },
    TypeInfo { kind: Kind::Exporter, name: exporters::file::TYPE, aliases: exporters::file::ALIASES, signals: ALL_SIGNALS, stability: "alpha" },
    TypeInfo { kind: Kind::Exporter, name: exporters::prometheusremotewrite::TYPE, aliases: exporters::prometheusremotewrite::ALIASES, signals: &[Signal::Metrics], stability: "alpha" },
    TypeInfo { kind: Kind::Exporter, name: exporters::prometheus::TYPE, aliases: exporters::prometheus::ALIASES, signals: &[Signal::Metrics], stability: "alpha" },
    TypeInfo { kind: Kind::Receiver, name: receivers::cgroup::TYPE, aliases: receivers::cgroup::ALIASES, signals: &[Signal::Metrics], stability: "alpha" },
    TypeInfo { kind: Kind::Receiver, name: receivers::smaps::TYPE, aliases: receivers::smaps::ALIASES, signals: &[Signal::Metrics], stability: "alpha" },
    TypeInfo { kind: Kind::Processor, name: processors::relabel::TYPE, aliases: processors::relabel::ALIASES, signals: &[Signal::Metrics], stability: "alpha" },
    TypeInfo { kind: Kind::Processor, name: processors::units::TYPE, aliases: processors::units::ALIASES, signals: &[Signal::Metrics], stability: "alpha" },
    TypeInfo { kind: Kind::Receiver, name: receivers::pprof::TYPE, aliases: receivers::pprof::ALIASES, signals: &[Signal::Metrics, Signal::Logs], stability: "alpha" },
    TypeInfo { kind: Kind::Processor, name: processors::ewma::TYPE, aliases: processors::ewma::ALIASES, signals: &[Signal::Metrics], stability: "alpha" },
    TypeInfo { kind: Kind::Processor, name: processors::burnrate::TYPE, aliases: processors::burnrate::ALIASES, signals: &[Signal::Metrics], stability: "alpha" },
    TypeInfo { kind: Kind::Receiver, name: receivers::prometheus::TYPE, aliases: receivers::prometheus::ALIASES, signals: &[Signal::Metrics], stability: "alpha" },
    TypeInfo { kind: Kind::Extension, name: exporters::disk_queue::config::TYPE, aliases: exporters::disk_queue::config::ALIASES, signals: &[], stability: "alpha" },
    TypeInfo { kind: Kind::Extension, name: bearertokenauth::TYPE, aliases: bearertokenauth::ALIASES, signals: &[], stability: "alpha" },
    TypeInfo { kind: Kind::Extension, name: basicauth::TYPE, aliases: basicauth::ALIASES, signals: &[], stability: "alpha" },
    TypeInfo { kind: Kind::Exporter, name: exporters::debug::LOGGING_TYPE, aliases: exporters::debug::LOGGING_ALIASES, signals: ALL_SIGNALS, stability: "deprecated" },
    TypeInfo { kind: Kind::Extension, name: pprof_extension::TYPE, aliases: pprof_extension::ALIASES, signals: &[], stability: "beta" },
    TypeInfo { kind: Kind::Connector, name: connectors::forward::TYPE, aliases: connectors::forward::ALIASES, signals: ALL_SIGNALS, stability: "beta" },
    TypeInfo { kind: Kind::Connector, name: connectors::routing::TYPE, aliases: connectors::routing::ALIASES, signals: ALL_SIGNALS, stability: "alpha" },
    TypeInfo { kind: Kind::Connector, name: connectors::count::TYPE, aliases: connectors::count::ALIASES, signals: ALL_SIGNALS, stability: "alpha" },
    #[cfg(feature = "spanmetrics")] TypeInfo { kind: Kind::Connector, name: connectors::spanmetrics::TYPE, aliases: connectors::spanmetrics::ALIASES, signals: &[Signal::Traces, Signal::Metrics], stability: "alpha" },
    #[cfg(feature = "servicegraph")] TypeInfo { kind: Kind::Connector, name: connectors::servicegraph::TYPE, aliases: connectors::servicegraph::ALIASES, signals: &[Signal::Traces, Signal::Metrics], stability: "alpha" },
    #[cfg(feature = "tail_sampling")] TypeInfo { kind: Kind::Processor, name: processors::tail_sampling::TYPE, aliases: processors::tail_sampling::ALIASES, signals: &[Signal::Traces], stability: "beta" },
    TypeInfo { kind: Kind::Processor, name: processors::attributes::TYPE, aliases: processors::attributes::ALIASES, signals: ALL_SIGNALS, stability: "beta" },
    TypeInfo { kind: Kind::Processor, name: processors::resource::TYPE, aliases: processors::resource::ALIASES, signals: ALL_SIGNALS, stability: "beta" },
    TypeInfo { kind: Kind::Processor, name: processors::groupbyattrs::TYPE, aliases: processors::groupbyattrs::ALIASES, signals: ALL_SIGNALS, stability: "beta" },
    TypeInfo { kind: Kind::Processor, name: processors::redaction::TYPE, aliases: processors::redaction::ALIASES, signals: ALL_SIGNALS, stability: "beta" },
    TypeInfo { kind: Kind::Processor, name: processors::probabilistic_sampler::TYPE, aliases: processors::probabilistic_sampler::ALIASES, signals: &[Signal::Traces, Signal::Logs], stability: "beta" },
    TypeInfo { kind: Kind::Processor, name: processors::resourcedetection::TYPE, aliases: processors::resourcedetection::ALIASES, signals: ALL_SIGNALS, stability: "beta" },
    TypeInfo { kind: Kind::Processor, name: processors::cumulativetodelta::TYPE, aliases: processors::cumulativetodelta::ALIASES, signals: &[Signal::Metrics], stability: "beta" },
    TypeInfo { kind: Kind::Processor, name: processors::deltatocumulative::TYPE, aliases: processors::deltatocumulative::ALIASES, signals: &[Signal::Metrics], stability: "alpha" },
    TypeInfo { kind: Kind::Processor, name: processors::transform::TYPE, aliases: processors::transform::ALIASES, signals: ALL_SIGNALS, stability: "beta" },
    TypeInfo { kind: Kind::Processor, name: processors::filter::TYPE, aliases: processors::filter::ALIASES, signals: ALL_SIGNALS, stability: "beta" },
    TypeInfo { kind: Kind::Extension, name: headers_setter::TYPE, aliases: headers_setter::ALIASES, signals: &[], stability: "alpha" },
    TypeInfo { kind: Kind::Extension, name: zpages::TYPE, aliases: zpages::ALIASES, signals: &[], stability: "beta" },
    TypeInfo { kind: Kind::Receiver, name: receivers::zipkin::TYPE, aliases: receivers::zipkin::ALIASES, signals: &[Signal::Traces], stability: "beta" },
    TypeInfo { kind: Kind::Receiver, name: receivers::jaeger::TYPE, aliases: receivers::jaeger::ALIASES, signals: &[Signal::Traces], stability: "beta" },
    TypeInfo { kind: Kind::Exporter, name: exporters::zipkin::TYPE, aliases: exporters::zipkin::ALIASES, signals: &[Signal::Traces], stability: "beta" },
    TypeInfo { kind: Kind::Receiver, name: receivers::hostmetrics::TYPE, aliases: receivers::hostmetrics::ALIASES, signals: &[Signal::Metrics], stability: "alpha" },
    TypeInfo { kind: Kind::Processor, name: processors::gofit::TYPE, aliases: processors::gofit::ALIASES, signals: &[Signal::Metrics], stability: "alpha" },
    TypeInfo { kind: Kind::Exporter, name: crate::picture::exporter::TYPE, aliases: crate::picture::exporter::ALIASES, signals: ALL_SIGNALS, stability: "development" },
    #[cfg(feature = "kafka")] TypeInfo { kind: Kind::Exporter, name: exporters::kafka::TYPE, aliases: exporters::kafka::ALIASES, signals: ALL_SIGNALS, stability: "beta" },
    #[cfg(feature = "kafka")] TypeInfo { kind: Kind::Receiver, name: receivers::kafka::TYPE, aliases: receivers::kafka::ALIASES, signals: ALL_SIGNALS, stability: "beta" },
    TypeInfo { kind: Kind::Receiver, name: receivers::statsd::TYPE, aliases: receivers::statsd::ALIASES, signals: &[Signal::Metrics], stability: "beta" },
    TypeInfo { kind: Kind::Receiver, name: receivers::journald::TYPE, aliases: receivers::journald::ALIASES, signals: &[Signal::Logs], stability: "alpha" },
    TypeInfo { kind: Kind::Receiver, name: receivers::filelog::TYPE, aliases: receivers::filelog::ALIASES, signals: &[Signal::Logs], stability: "alpha" },
    #[cfg(feature = "k8sattributes")] TypeInfo { kind: Kind::Processor, name: processors::k8sattributes::TYPE, aliases: processors::k8sattributes::ALIASES, signals: ALL_SIGNALS, stability: "beta" },
    #[cfg(feature = "loadbalancing")] TypeInfo { kind: Kind::Exporter, name: exporters::loadbalancing::TYPE, aliases: exporters::loadbalancing::ALIASES, signals: ALL_SIGNALS, stability: "alpha" },
    // WIRING: one TypeInfo line per component type (keep one line per type, so parallel
    // additions do not collide).
    TypeInfo { kind: Kind::Extension, name: health_check::TYPE, aliases: health_check::ALIASES, signals: &[], stability: "beta" },
];

/// The canonical type for a name as written (aliases resolved), if oxcol has it.
pub fn canonical_type(kind: Kind, written: &str) -> Option<&'static str> {
    TYPES.iter().find(|t| t.kind == kind && (t.name == written || t.aliases.contains(&written))).map(|t| t.name)
}

/// Component types that a build of oxcol can leave out, each with the cargo feature of the
/// `oxcol` crate that brings it in (agent/Cargo.toml, docs/build-features.md), by every name
/// a config may write (aliases too). All are in the default build; a lean sidecar build
/// (`--no-default-features`) has none of them.
pub const FEATURE_GATED: &[(Kind, &str, &str)] = &[
    (Kind::Receiver, "kafka", "kafka"),
    (Kind::Exporter, "kafka", "kafka"),
    (Kind::Exporter, "loadbalancing", "loadbalancing"),
    (Kind::Processor, "k8s_attributes", "k8sattributes"),
    (Kind::Processor, "k8sattributes", "k8sattributes"),
    (Kind::Processor, "tail_sampling", "tail_sampling"),
    (Kind::Connector, "spanmetrics", "spanmetrics"),
    (Kind::Connector, "span_metrics", "spanmetrics"),
    (Kind::Connector, "servicegraph", "servicegraph"),
];

/// The cargo feature that would bring in a type this build does not have (None when the
/// build has it, or when oxcol has no such type at all).
pub fn left_out_feature(kind: Kind, written: &str) -> Option<&'static str> {
    if canonical_type(kind, written).is_some() {
        return None;
    }
    FEATURE_GATED.iter().find(|(k, name, _)| *k == kind && *name == written).map(|(_, _, feature)| *feature)
}

/// The config error for a component whose type this build left out.
pub fn not_in_build_message(kind: Kind, written: &str, id: &str, feature: &str) -> String {
    format!("{} type {written:?} is not in this build (cargo feature `{feature}`), used by {id:?}; build oxcol with `--features {feature}` or with its default features", kind.name())
}

pub fn type_names(kind: Kind) -> Vec<&'static str> {
    TYPES.iter().filter(|t| t.kind == kind).map(|t| t.name).collect()
}

pub fn supports(kind: Kind, type_name: &str, signal: Signal) -> bool {
    TYPES.iter().any(|t| t.kind == kind && t.name == type_name && t.signals.contains(&signal))
}

/// The (from-signal, to-signal) pairs a connector type supports: from the pipelines that
/// name it in `exporters` to those that name it in `receivers`.
pub fn connector_pairs(type_name: &str) -> &'static [(Signal, Signal)] {
    match type_name {
        connectors::forward::TYPE => connectors::forward::PAIRS,
        connectors::routing::TYPE => connectors::routing::PAIRS,
        connectors::count::TYPE => connectors::count::PAIRS,
        #[cfg(feature = "spanmetrics")] connectors::spanmetrics::TYPE => connectors::spanmetrics::PAIRS,
        #[cfg(feature = "servicegraph")] connectors::servicegraph::TYPE => connectors::servicegraph::PAIRS,
        // WIRING: one arm per connector type.
        _ => &[],
    }
}

pub fn connector_supports(type_name: &str, from: Signal, to: Signal) -> bool {
    connector_pairs(type_name).contains(&(from, to))
}

/// A decoded, validated component config.
#[derive(Clone, Debug)]
pub enum ComponentConfig {
    OtlpReceiver(receivers::otlp::Config),
    Batch(processors::batch::Config),
    MemoryLimiter(processors::memory_limiter::Config),
    OtlpExporter(exporters::otlp::Config),
    OtlpHttpExporter(exporters::otlphttp::Config),
    DebugExporter(exporters::debug::Config),
    FileExporter(exporters::file::Config),
    HealthCheck(health_check::Config),
    PrometheusRemoteWriteExporter(exporters::prometheusremotewrite::Config),
    PrometheusExporter(exporters::prometheus::Config),
    CgroupReceiver(receivers::cgroup::Config),
    SmapsReceiver(receivers::smaps::Config),
    Relabel(processors::relabel::Config),
    Units(processors::units::Config),
    PprofReceiver(receivers::pprof::Config),
    Ewma(processors::ewma::Config),
    Burnrate(processors::burnrate::Config),
    PrometheusReceiver(receivers::prometheus::Config),
    FileStorage(exporters::disk_queue::Config),
    BearerTokenAuth(bearertokenauth::Config),
    BasicAuth(basicauth::Config),
    PprofExtension(pprof_extension::Config),
    ForwardConnector(connectors::forward::Config),
    RoutingConnector(connectors::routing::Config),
    CountConnector(connectors::count::Config),
    #[cfg(feature = "spanmetrics")] SpanMetricsConnector(connectors::spanmetrics::Config),
    #[cfg(feature = "servicegraph")] ServiceGraphConnector(connectors::servicegraph::Config),
    #[cfg(feature = "tail_sampling")] TailSampling(processors::tail_sampling::Config),
    Attributes(processors::attributes::Config),
    Resource(processors::resource::Config),
    GroupByAttrs(processors::groupbyattrs::Config),
    Redaction(processors::redaction::Config),
    ProbabilisticSampler(processors::probabilistic_sampler::Config),
    ResourceDetection(processors::resourcedetection::Config),
    CumulativeToDelta(processors::cumulativetodelta::Config),
    DeltaToCumulative(processors::deltatocumulative::Config),
    Transform(processors::transform::Config),
    Filter(processors::filter::Config),
    HeadersSetter(headers_setter::Config),
    Zpages(zpages::Config),
    ZipkinReceiver(receivers::zipkin::Config),
    JaegerReceiver(receivers::jaeger::Config),
    ZipkinExporter(exporters::zipkin::Config),
    HostmetricsReceiver(receivers::hostmetrics::Config),
    Gofit(processors::gofit::Config),
    MemoryPicture(crate::picture::exporter::Config),
    #[cfg(feature = "kafka")] KafkaExporter(exporters::kafka::Config),
    #[cfg(feature = "kafka")] KafkaReceiver(receivers::kafka::Config),
    StatsdReceiver(receivers::statsd::Config),
    JournaldReceiver(receivers::journald::Config),
    FilelogReceiver(receivers::filelog::Config),
    #[cfg(feature = "k8sattributes")] K8sAttributes(processors::k8sattributes::Config),
    #[cfg(feature = "loadbalancing")] LoadBalancingExporter(exporters::loadbalancing::Config),
    // WIRING: one variant per component type.
}

fn typed<T: serde::de::DeserializeOwned>(kind: Kind, def: &ComponentDef, validate: impl Fn(&T) -> Vec<String>) -> Result<T, Vec<ConfigError>> {
    // A component written with no value (`batch:`) decodes as all defaults.
    let config: T = decode(&def.node).map_err(|e| vec![e])?;
    let problems = validate(&config);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems.into_iter().map(|p| ConfigError::at(&def.location, format!("{} {:?}: {p}", kind.name(), def.id))).collect())
    }
}

/// Decodes and validates one component's config.
/// Like `typed`, for components holding OTTL (transform, filter): each problem is placed
/// at the YAML node of its statement, and at the column of the position inside the
/// statement when the statement is written on one line.
fn ottl_typed<T: serde::de::DeserializeOwned>(kind: Kind, def: &ComponentDef, problems: impl Fn(&T) -> Vec<oxcol_ottl::config::ConfigProblem>) -> Result<T, Vec<ConfigError>> {
    use oxcol_ottl::config::{scalar_column, PathSegment};
    let config: T = decode(&def.node).map_err(|e| vec![e])?;
    let problems = problems(&config);
    if problems.is_empty() {
        return Ok(config);
    }
    Err(problems
        .into_iter()
        .map(|problem| {
            let mut node = Some(&def.node);
            for segment in &problem.path {
                node = node.and_then(|n| match segment {
                    PathSegment::Key(k) => n.get(k),
                    PathSegment::Index(i) => n.as_seq().and_then(|items| items.get(*i)),
                });
            }
            let mut location = node.map_or_else(|| def.location.clone(), |n| n.location.clone());
            if let (Some(offset), Some(text)) = (problem.offset, node.and_then(|n| n.as_str())) {
                let line = std::fs::read_to_string(&*location.source).ok().and_then(|src| src.lines().nth(location.line.saturating_sub(1)).map(str::to_string));
                if let Some(column) = line.and_then(|line| scalar_column(&line, location.column, text, offset)) {
                    location.column = column;
                }
            }
            ConfigError::at(&location, format!("{} {:?}: {problem}", kind.name(), def.id))
        })
        .collect())
}

pub fn decode_component(kind: Kind, def: &ComponentDef) -> Result<ComponentConfig, Vec<ConfigError>> {
    match (kind, def.type_name) {
        (Kind::Receiver, "otlp") => typed(kind, def, receivers::otlp::Config::validate).map(ComponentConfig::OtlpReceiver),
        (Kind::Processor, "batch") => typed(kind, def, processors::batch::Config::validate).map(ComponentConfig::Batch),
        (Kind::Processor, "memory_limiter") => typed(kind, def, processors::memory_limiter::Config::validate).map(ComponentConfig::MemoryLimiter),
        (Kind::Exporter, "otlp") => typed(kind, def, exporters::otlp::Config::validate).map(ComponentConfig::OtlpExporter),
        (Kind::Exporter, "otlphttp") => typed(kind, def, exporters::otlphttp::Config::validate).map(ComponentConfig::OtlpHttpExporter),
        (Kind::Exporter, "debug") => typed(kind, def, exporters::debug::Config::validate).map(ComponentConfig::DebugExporter),
        (Kind::Exporter, "file") => typed(kind, def, exporters::file::Config::validate).map(ComponentConfig::FileExporter),
        (Kind::Extension, "health_check") => typed(kind, def, health_check::Config::validate).map(ComponentConfig::HealthCheck),
        (Kind::Exporter, "prometheusremotewrite") => typed(kind, def, exporters::prometheusremotewrite::Config::validate).map(ComponentConfig::PrometheusRemoteWriteExporter),
        (Kind::Exporter, "prometheus") => typed(kind, def, exporters::prometheus::Config::validate).map(ComponentConfig::PrometheusExporter),
        (Kind::Receiver, "cgroup") => typed(kind, def, receivers::cgroup::Config::validate).map(ComponentConfig::CgroupReceiver),
        (Kind::Receiver, "smaps") => typed(kind, def, receivers::smaps::Config::validate).map(ComponentConfig::SmapsReceiver),
        (Kind::Processor, "relabel") => typed(kind, def, processors::relabel::Config::validate).map(ComponentConfig::Relabel),
        (Kind::Processor, "units") => typed(kind, def, processors::units::Config::validate).map(ComponentConfig::Units),
        (Kind::Receiver, "pprof") => typed(kind, def, receivers::pprof::Config::validate).map(ComponentConfig::PprofReceiver),
        (Kind::Processor, "ewma") => typed(kind, def, processors::ewma::Config::validate).map(ComponentConfig::Ewma),
        (Kind::Processor, "burnrate") => typed(kind, def, processors::burnrate::Config::validate).map(ComponentConfig::Burnrate),
        (Kind::Receiver, "prometheus") => typed(kind, def, receivers::prometheus::Config::validate).map(ComponentConfig::PrometheusReceiver),
        (Kind::Extension, "file_storage") => typed(kind, def, exporters::disk_queue::Config::validate).map(ComponentConfig::FileStorage),
        (Kind::Extension, "bearertokenauth") => typed(kind, def, bearertokenauth::Config::validate).map(ComponentConfig::BearerTokenAuth),
        (Kind::Extension, "basicauth") => typed(kind, def, basicauth::Config::validate).map(ComponentConfig::BasicAuth),
        (Kind::Exporter, "logging") => typed(kind, def, exporters::debug::LoggingConfig::validate).map(|c| ComponentConfig::DebugExporter(c.to_debug())),
        (Kind::Extension, "pprof") => typed(kind, def, pprof_extension::Config::validate).map(ComponentConfig::PprofExtension),
        (Kind::Connector, "forward") => typed(kind, def, connectors::forward::Config::validate).map(ComponentConfig::ForwardConnector),
        (Kind::Connector, "routing") => typed(kind, def, connectors::routing::Config::validate).map(ComponentConfig::RoutingConnector),
        (Kind::Connector, "count") => typed(kind, def, connectors::count::Config::validate).map(ComponentConfig::CountConnector),
        #[cfg(feature = "spanmetrics")] (Kind::Connector, "spanmetrics") => typed(kind, def, connectors::spanmetrics::Config::validate).map(ComponentConfig::SpanMetricsConnector),
        #[cfg(feature = "servicegraph")] (Kind::Connector, "servicegraph") => typed(kind, def, connectors::servicegraph::Config::validate).map(ComponentConfig::ServiceGraphConnector),
        #[cfg(feature = "tail_sampling")] (Kind::Processor, "tail_sampling") => typed(kind, def, processors::tail_sampling::Config::validate).map(ComponentConfig::TailSampling),
        (Kind::Processor, "attributes") => typed(kind, def, processors::attributes::Config::validate).map(ComponentConfig::Attributes),
        (Kind::Processor, "resource") => typed(kind, def, processors::resource::Config::validate).map(ComponentConfig::Resource),
        (Kind::Processor, "groupbyattrs") => typed(kind, def, processors::groupbyattrs::Config::validate).map(ComponentConfig::GroupByAttrs),
        (Kind::Processor, "redaction") => typed(kind, def, processors::redaction::Config::validate).map(ComponentConfig::Redaction),
        (Kind::Processor, "probabilistic_sampler") => typed(kind, def, processors::probabilistic_sampler::Config::validate).map(ComponentConfig::ProbabilisticSampler),
        (Kind::Processor, "resourcedetection") => typed(kind, def, processors::resourcedetection::Config::validate).map(ComponentConfig::ResourceDetection),
        (Kind::Processor, "cumulativetodelta") => typed(kind, def, processors::cumulativetodelta::Config::validate).map(ComponentConfig::CumulativeToDelta),
        (Kind::Processor, "deltatocumulative") => typed(kind, def, processors::deltatocumulative::Config::validate).map(ComponentConfig::DeltaToCumulative),
        (Kind::Processor, "transform") => ottl_typed(kind, def, processors::transform::Config::problems).map(ComponentConfig::Transform),
        (Kind::Processor, "filter") => ottl_typed(kind, def, processors::filter::Config::problems).map(ComponentConfig::Filter),
        (Kind::Extension, "headers_setter") => typed(kind, def, headers_setter::Config::validate).map(ComponentConfig::HeadersSetter),
        (Kind::Extension, "zpages") => typed(kind, def, zpages::Config::validate).map(ComponentConfig::Zpages),
        (Kind::Receiver, "zipkin") => typed(kind, def, receivers::zipkin::Config::validate).map(ComponentConfig::ZipkinReceiver),
        (Kind::Receiver, "jaeger") => typed(kind, def, receivers::jaeger::Config::validate).map(ComponentConfig::JaegerReceiver),
        (Kind::Exporter, "zipkin") => typed(kind, def, exporters::zipkin::Config::validate).map(ComponentConfig::ZipkinExporter),
        (Kind::Receiver, "host_metrics") => typed(kind, def, receivers::hostmetrics::Config::validate).map(ComponentConfig::HostmetricsReceiver),
        (Kind::Processor, "gofit") => typed(kind, def, processors::gofit::Config::validate).map(ComponentConfig::Gofit),
        (Kind::Exporter, "memory_picture") => typed(kind, def, crate::picture::exporter::Config::validate).map(ComponentConfig::MemoryPicture),
        #[cfg(feature = "kafka")] (Kind::Exporter, "kafka") => typed(kind, def, exporters::kafka::Config::validate).map(ComponentConfig::KafkaExporter),
        #[cfg(feature = "kafka")] (Kind::Receiver, "kafka") => typed(kind, def, receivers::kafka::Config::validate).map(ComponentConfig::KafkaReceiver),
        (Kind::Receiver, "statsd") => typed(kind, def, receivers::statsd::Config::validate).map(ComponentConfig::StatsdReceiver),
        (Kind::Receiver, "journald") => typed(kind, def, receivers::journald::Config::validate).map(ComponentConfig::JournaldReceiver),
        (Kind::Receiver, "filelog") => typed(kind, def, receivers::filelog::Config::validate).map(ComponentConfig::FilelogReceiver),
        #[cfg(feature = "k8sattributes")] (Kind::Processor, "k8s_attributes") => typed(kind, def, processors::k8sattributes::Config::validate).map(ComponentConfig::K8sAttributes),
        #[cfg(feature = "loadbalancing")] (Kind::Exporter, "loadbalancing") => typed(kind, def, exporters::loadbalancing::Config::validate).map(ComponentConfig::LoadBalancingExporter),
        // WIRING: one decode arm per component type.
        (kind, other) => Err(vec![ConfigError::at(&def.location, format!("{} type {other:?} has no decoder (a bug in oxcol's registry)", kind.name()))]),
    }
}

/// The text of `oxcol components`.
pub fn components_listing() -> String {
    let mut out = String::new();
    for kind in Kind::ALL {
        out.push_str(kind.section());
        out.push_str(":\n");
        for info in TYPES.iter().filter(|t| t.kind == kind) {
            let signals: Vec<&str> = info.signals.iter().map(|s| s.name()).collect();
            let aliases: Vec<&&str> = info.aliases.iter().filter(|a| **a != info.name).collect();
            out.push_str(&format!("  - name: {}\n    stability: {}\n", info.name, info.stability));
            if kind == Kind::Connector {
                let pairs: Vec<String> = connector_pairs(info.name).iter().map(|(from, to)| format!("{from}_to_{to}")).collect();
                out.push_str(&format!("    signals: [{}]\n", pairs.join(", ")));
            } else if !signals.is_empty() {
                out.push_str(&format!("    signals: [{}]\n", signals.join(", ")));
            }
            if !aliases.is_empty() {
                out.push_str(&format!("    aliases: [{}]\n", aliases.iter().map(|a| **a).collect::<Vec<_>>().join(", ")));
            }
        }
    }
    out
}
