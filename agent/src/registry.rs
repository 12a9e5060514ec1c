//! Every component type oxcol has, by kind: its names, the signals it supports, and how
//! its config is decoded and checked. Adding a component is one module in its crate plus
//! one entry here.

use oxcol_config::{decode, ConfigError};
use oxcol_core::Signal;
use oxcol_exporters as exporters;
use oxcol_processors as processors;
use oxcol_receivers as receivers;

use crate::extensions::health_check;
use crate::extensions::{basicauth, bearertokenauth};
use crate::settings::ComponentDef;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Receiver,
    Processor,
    Exporter,
    Extension,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Receiver, Kind::Processor, Kind::Exporter, Kind::Extension];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Receiver => "receiver",
            Kind::Processor => "processor",
            Kind::Exporter => "exporter",
            Kind::Extension => "extension",
        }
    }

    /// The top-level config section of this kind.
    pub fn section(self) -> &'static str {
        match self {
            Kind::Receiver => "receivers",
            Kind::Processor => "processors",
            Kind::Exporter => "exporters",
            Kind::Extension => "extensions",
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
    // WIRING: one TypeInfo line per component type (keep one line per type, so parallel
    // additions do not collide).
    TypeInfo { kind: Kind::Extension, name: health_check::TYPE, aliases: health_check::ALIASES, signals: &[], stability: "beta" },
];

/// The canonical type for a name as written (aliases resolved), if oxcol has it.
pub fn canonical_type(kind: Kind, written: &str) -> Option<&'static str> {
    TYPES.iter().find(|t| t.kind == kind && (t.name == written || t.aliases.contains(&written))).map(|t| t.name)
}

pub fn type_names(kind: Kind) -> Vec<&'static str> {
    TYPES.iter().filter(|t| t.kind == kind).map(|t| t.name).collect()
}

pub fn supports(kind: Kind, type_name: &str, signal: Signal) -> bool {
    TYPES.iter().any(|t| t.kind == kind && t.name == type_name && t.signals.contains(&signal))
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
pub fn decode_component(kind: Kind, def: &ComponentDef) -> Result<ComponentConfig, Vec<ConfigError>> {
    match (kind, def.type_name) {
        (Kind::Receiver, "otlp") => typed(kind, def, receivers::otlp::Config::validate).map(ComponentConfig::OtlpReceiver),
        (Kind::Processor, "batch") => typed(kind, def, processors::batch::Config::validate).map(ComponentConfig::Batch),
        (Kind::Processor, "memory_limiter") => typed(kind, def, processors::memory_limiter::Config::validate).map(ComponentConfig::MemoryLimiter),
        (Kind::Exporter, "otlp") => typed(kind, def, exporters::otlp::Config::validate).map(ComponentConfig::OtlpExporter),
        (Kind::Exporter, "otlphttp") => typed(kind, def, exporters::otlphttp::Config::validate).map(ComponentConfig::OtlpHttpExporter),
        (Kind::Exporter, "debug") => typed(kind, def, exporters::debug::Config::validate).map(ComponentConfig::DebugExporter),
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
            if !signals.is_empty() {
                out.push_str(&format!("    signals: [{}]\n", signals.join(", ")));
            }
            if !aliases.is_empty() {
                out.push_str(&format!("    aliases: [{}]\n", aliases.iter().map(|a| **a).collect::<Vec<_>>().join(", ")));
            }
        }
    }
    out
}
