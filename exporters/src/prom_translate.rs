//! OpenTelemetry -> Prometheus translation, shared by the `prometheusremotewrite` and
//! `prometheus` exporters (OTel spec "Prometheus and OpenMetrics compatibility", with the
//! naming of `prometheus/otlptranslator`).
//!
//! Input: OTLP `ResourceMetrics`. Output: a flat list of Prometheus samples, each with the
//! index of its label set in [`Translation::series`] (`__name__` included, sorted
//! byte-wise, no empty values, no duplicate names) and the index of its metric family
//! (name, type, help, unit). The exporters only group, encode and serve; every naming and
//! labelling rule lives here, so both exporters produce the same series for the same input.
//!
//! Cost: a label set is built without owned strings. Names and values are borrowed from the
//! decoded OTLP (sanitized or stringified copies only where they differ), the labels shared
//! by a resource and scope (promoted attributes, scope labels, `job`, `instance`, external
//! labels) are built once per scope, and each sample's set is merged from those layers
//! straight into its remote write 1.0 encoding (repeated `Label` messages), which is the
//! key of the batch's [`SeriesTable`]: one copy of the bytes per distinct series, a
//! `u32` per sample.
//!
//! This module must never drop data silently: what it cannot translate (an invalid name,
//! delta temporality where it is refused, exponential histograms where native histograms
//! are off, a scale below -4) is counted in
//! [`Translation::dropped_points`] with a reason in [`Translation::problems`].
//!
//! Unit words come from the shared unit table, `oxcol_core::units::prometheus_word`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogramDataPoint, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, SummaryDataPoint, exemplar, exponential_histogram_data_point,
    metric, number_data_point,
};

/// The Prometheus staleness marker (`value.StaleNaN`). Compare bits, never `is_nan()`.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;
/// OTLP `DataPointFlags.FLAG_NO_RECORDED_VALUE`.
const FLAG_NO_RECORDED_VALUE: u32 = 1;

pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

pub fn is_stale_nan(value: f64) -> bool {
    value.to_bits() == STALE_NAN_BITS
}

/// Prometheus metric family type (values as in remote write `MetricMetadata.MetricType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FamilyType {
    Unknown = 0,
    Counter = 1,
    Gauge = 2,
    Histogram = 3,
    Summary = 5,
    Info = 6,
}

impl FamilyType {
    /// The word of the Prometheus text format's `# TYPE` line.
    pub fn text_name(self) -> &'static str {
        match self {
            FamilyType::Counter => "counter",
            FamilyType::Gauge | FamilyType::Info => "gauge",
            FamilyType::Histogram => "histogram",
            FamilyType::Summary => "summary",
            FamilyType::Unknown => "untyped",
        }
    }
}

/// One metric family: what `# HELP`/`# TYPE`/`# UNIT` and remote write metadata say.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// The family name (for counters it ends in `_total` when suffixes are on; histogram
    /// and summary series add `_bucket`/`_sum`/`_count` to it).
    pub name: String,
    pub kind: FamilyType,
    pub help: String,
    /// The Prometheus unit word (`seconds`, `bytes`), empty when none.
    pub unit: String,
}

/// Sorted (byte-wise by name), duplicate-free label pairs, `__name__` included.
pub type Labels = Vec<(String, String)>;

/// One translated sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Index of the label set in [`Translation::series`].
    pub series: u32,
    pub value: f64,
    /// Milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// Start (created) time in ms of counter-like points; 0 when unknown.
    pub start_ms: i64,
    /// Index into [`Translation::families`].
    pub family: u32,
    /// The point had delta temporality (only with [`DeltaHandling::Pass`]): the value is
    /// an increment, to be added to what the series had.
    pub delta: bool,
}

/// What to do with points of delta temporality (Prometheus has no delta type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeltaHandling {
    /// Drop and count them (remote write: the Collector does the same).
    Drop,
    /// Mark them `delta: true`; the caller accumulates (the pull exporter keeps state).
    Pass,
}

/// Translation settings, from the exporters' config keys.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `namespace`: prefix `<namespace>_` to every metric name. Default empty.
    pub namespace: String,
    /// `add_metric_suffixes`: unit and `_total`/`_ratio` suffixes. Default true.
    pub add_metric_suffixes: bool,
    /// `resource_to_telemetry_conversion.enabled`: every resource attribute on every series.
    pub resource_to_telemetry: bool,
    /// `target_info.enabled`: one `target_info` series per resource. Default true.
    pub target_info: bool,
    /// Labels added to every series unless the series already has that label
    /// (`external_labels` / `const_labels`).
    pub extra_labels: Vec<(String, String)>,
    pub delta: DeltaHandling,
    /// Exponential histograms become native histograms ([`Translation::histograms`]);
    /// when false they are dropped and counted. Remote write: true; the pull exporter
    /// (text format has no native histograms): false.
    pub native_histograms: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            namespace: String::new(),
            add_metric_suffixes: true,
            resource_to_telemetry: false,
            target_info: true,
            extra_labels: Vec::new(),
            delta: DeltaHandling::Drop,
            native_histograms: false,
        }
    }
}

/// An exemplar in Prometheus form: labels `trace_id`/`span_id` (hex) and the filtered
/// attributes, sorted, at most 128 characters in all (Prometheus' limit; the attributes
/// go first when it is exceeded).
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    pub labels: Labels,
    pub value: f64,
    pub timestamp_ms: i64,
}

/// A native (sparse, exponential) histogram sample, from an OTLP exponential histogram
/// point. Bucket indexes are Prometheus': index `i` covers `(base^(i-1), base^i]`, which
/// is OTel's index `i-1`. Spans and deltas as in the remote write `Histogram` message.
#[derive(Clone, Debug, PartialEq)]
pub struct NativeHistogram {
    /// Index of the label set in [`Translation::series`].
    pub series: u32,
    pub family: u32,
    pub timestamp_ms: i64,
    pub start_ms: i64,
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: u64,
    pub count: u64,
    pub sum: f64,
    /// (offset, length) spans of the positive buckets.
    pub positive_spans: Vec<(i32, u32)>,
    pub positive_deltas: Vec<i64>,
    pub negative_spans: Vec<(i32, u32)>,
    pub negative_deltas: Vec<i64>,
    pub exemplars: Vec<Exemplar>,
}

/// The samples and histograms of one OTLP resource: `samples[samples]`,
/// `histograms[histograms]`; `key` is a hash of the resource's attributes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResourceSpan {
    pub samples: std::ops::Range<usize>,
    pub histograms: std::ops::Range<usize>,
    pub key: u64,
}

/// The result of translating one batch.
#[derive(Clone, Debug, Default)]
pub struct Translation {
    pub families: Vec<Family>,
    pub samples: Vec<Sample>,
    /// Exemplars with the index of the sample (in `samples`) they belong to.
    pub exemplars: Vec<(usize, Exemplar)>,
    /// Native histograms (only with [`Settings::native_histograms`]).
    pub histograms: Vec<NativeHistogram>,
    /// Which samples and histograms came from which resource, in order.
    pub resources: Vec<ResourceSpan>,
    /// OTLP data points that produced no sample.
    pub dropped_points: u64,
    /// One line per distinct reason for dropped points (bounded).
    pub problems: Vec<String>,
    /// The distinct label sets of `samples` and `histograms`.
    pub series: SeriesTable,
    pub(crate) family_index: HashMap<(String, FamilyType), u32>,
}

impl Translation {
    /// The index of family (`name`, `kind`), added when new.
    pub fn family(&mut self, name: &str, kind: FamilyType, help: &str, unit: &str) -> u32 {
        if let Some(index) = self.family_index.get(&(name.to_string(), kind)) {
            return *index;
        }
        let index = self.families.len() as u32;
        self.families.push(Family {
            name: name.to_string(),
            kind,
            help: help.to_string(),
            unit: unit.to_string(),
        });
        self.family_index.insert((name.to_string(), kind), index);
        index
    }

    fn drop_points(&mut self, count: u64, problem: String) {
        self.dropped_points += count;
        if self.problems.len() < 16 && !self.problems.contains(&problem) {
            self.problems.push(problem);
        }
    }
}

/// Translates every metric of `resource_metrics`.
pub fn translate(resource_metrics: &[ResourceMetrics], settings: &Settings) -> Translation {
    let mut out = Translation::default();
    // External labels: sorted, first of duplicate names wins, then empty values left out
    // (they never make a label).
    let mut extra: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in &settings.extra_labels {
        extra.entry(key.clone()).or_insert_with(|| value.clone());
    }
    extra.retain(|_, value| !value.is_empty());
    let mut scratch = Scratch::default();
    for resource in resource_metrics {
        translate_resource(resource, settings, &extra, &mut out, &mut scratch);
    }
    out
}

/// Buffers reused for every point of one `translate` call; `'a` borrows the input.
#[derive(Default)]
struct Scratch<'a> {
    /// The point's own layer (its attributes), sorted by name.
    point: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// (sanitized name, key, value) before sorting and joining.
    keyed: Vec<(Cow<'a, str>, &'a str, Cow<'a, str>)>,
    /// The sample's label set, encoded (the series key).
    encoded: Vec<u8>,
    /// A formatted `le`/`quantile` value.
    float: String,
}

/// The label layers shared by every point of one scope of one resource.
struct ScopeLabels {
    /// External labels, overridden by promoted resource attributes, overridden by the
    /// scope labels; sorted by name. The lowest-priority layer.
    low: Vec<(String, String)>,
    /// `instance` and `job` when not empty (sorted): override every attribute.
    high: Vec<(String, String)>,
}

fn translate_resource<'a>(
    resource: &'a ResourceMetrics,
    settings: &Settings,
    extra: &BTreeMap<String, String>,
    out: &mut Translation,
    scratch: &mut Scratch<'a>,
) {
    let attributes: &[KeyValue] = resource
        .resource
        .as_ref()
        .map(|r| r.attributes.as_slice())
        .unwrap_or(&[]);
    let find = |key: &str| {
        attributes
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| any_value_string(kv.value.as_ref()))
    };
    let job = match (find("service.namespace"), find("service.name")) {
        (Some(namespace), Some(name)) if !namespace.is_empty() => format!("{namespace}/{name}"),
        (_, Some(name)) => name,
        _ => String::new(),
    };
    let instance = find("service.instance.id").unwrap_or_default();
    let mut high = Vec::with_capacity(2);
    if !instance.is_empty() {
        high.push(("instance".to_string(), instance));
    }
    if !job.is_empty() {
        high.push(("job".to_string(), job));
    }
    let mut base = LabelBuilder {
        labels: extra.clone(),
    };
    if settings.resource_to_telemetry {
        base.layer(
            attributes
                .iter()
                .map(|kv| (kv.key.as_str(), any_value_string(kv.value.as_ref()))),
        );
    }
    let first_sample = out.samples.len();
    let first_histogram = out.histograms.len();
    for scope_metrics in &resource.scope_metrics {
        let mut scoped = base.clone();
        scoped.layer(scope_labels(scope_metrics.scope.as_ref()));
        let labels = ScopeLabels {
            low: scoped.labels.into_iter().collect(),
            high: high.clone(),
        };
        for metric in &scope_metrics.metrics {
            translate_metric(metric, &labels, settings, out, scratch);
        }
    }
    if settings.target_info
        && (out.samples.len() > first_sample || out.histograms.len() > first_histogram)
    {
        let identifying = ["service.name", "service.namespace", "service.instance.id"];
        let mut info = LabelBuilder::default();
        info.layer(
            attributes
                .iter()
                .filter(|kv| !identifying.contains(&kv.key.as_str()))
                .map(|kv| (kv.key.as_str(), any_value_string(kv.value.as_ref()))),
        );
        if !info.is_empty() {
            let timestamp_ms = out.samples[first_sample..]
                .iter()
                .map(|s| s.timestamp_ms)
                .chain(
                    out.histograms[first_histogram..]
                        .iter()
                        .map(|h| h.timestamp_ms),
                )
                .max()
                .unwrap_or(0);
            let name = prefixed(&settings.namespace, "target_info");
            let family = out.family(&name, FamilyType::Info, "Target metadata", "");
            let info: Vec<(Cow<str>, Cow<str>)> = info
                .labels
                .iter()
                .map(|(k, v)| (Cow::from(k.as_str()), Cow::from(v.as_str())))
                .collect();
            let extra: Vec<(String, String)> =
                extra.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            scratch.encoded.clear();
            encode_label_set(
                &mut scratch.encoded,
                &[("__name__", &name)],
                &high,
                &info,
                &extra,
            );
            let series = out.series.intern(&scratch.encoded);
            out.samples.push(Sample {
                series,
                value: 1.0,
                timestamp_ms,
                start_ms: 0,
                family,
                delta: false,
            });
        }
    }
    out.resources.push(ResourceSpan {
        samples: first_sample..out.samples.len(),
        histograms: first_histogram..out.histograms.len(),
        key: resource_key(attributes),
    });
}

/// A stable hash of a resource's attributes (order-independent).
fn resource_key(attributes: &[KeyValue]) -> u64 {
    let mut pairs: Vec<(String, String)> = attributes
        .iter()
        .map(|kv| (kv.key.clone(), any_value_string(kv.value.as_ref())))
        .collect();
    pairs.sort();
    let mut encoded = Vec::new();
    for (key, value) in &pairs {
        encode_label(&mut encoded, key, value);
    }
    hash_bytes(&encoded)
}

/// `otel_scope_name`, `otel_scope_version` and `otel_scope_<attribute>` (attributes that
/// would collide with the first ones are dropped).
fn scope_labels(scope: Option<&InstrumentationScope>) -> Vec<(String, String)> {
    let Some(scope) = scope else {
        return Vec::new();
    };
    let mut labels: Vec<(String, String)> = Vec::new();
    for kv in &scope.attributes {
        let key = format!("otel_scope_{}", kv.key);
        if [
            "otel_scope_name",
            "otel_scope_version",
            "otel_scope_schema_url",
        ]
        .contains(&key.as_str())
        {
            continue;
        }
        labels.push((key, any_value_string(kv.value.as_ref())));
    }
    labels.push(("otel_scope_name".to_string(), scope.name.clone()));
    labels.push(("otel_scope_version".to_string(), scope.version.clone()));
    labels
}

/// The series names of one metric, formatted once.
struct Names {
    plain: String,
    bucket: String,
    sum: String,
    count: String,
}

fn translate_metric<'a>(
    metric: &'a Metric,
    scope: &ScopeLabels,
    settings: &Settings,
    out: &mut Translation,
    scratch: &mut Scratch<'a>,
) {
    let Some(data) = &metric.data else { return };
    let (kind, monotonic, temporality) = match data {
        metric::Data::Gauge(_) => (
            FamilyType::Gauge,
            false,
            AggregationTemporality::Unspecified,
        ),
        metric::Data::Sum(sum) => {
            let temporality = AggregationTemporality::try_from(sum.aggregation_temporality)
                .unwrap_or(AggregationTemporality::Unspecified);
            let kind = if sum.is_monotonic {
                FamilyType::Counter
            } else {
                FamilyType::Gauge
            };
            (kind, sum.is_monotonic, temporality)
        }
        metric::Data::Histogram(h) => (
            FamilyType::Histogram,
            false,
            AggregationTemporality::try_from(h.aggregation_temporality)
                .unwrap_or(AggregationTemporality::Unspecified),
        ),
        metric::Data::Summary(_) => (
            FamilyType::Summary,
            false,
            AggregationTemporality::Cumulative,
        ),
        metric::Data::ExponentialHistogram(h) => {
            if !settings.native_histograms {
                out.drop_points(
                    h.data_points.len() as u64,
                    format!(
                        "{}: exponential histograms need native histograms, which this exporter does not send; dropped",
                        metric.name
                    ),
                );
                return;
            }
            (
                FamilyType::Histogram,
                false,
                AggregationTemporality::try_from(h.aggregation_temporality)
                    .unwrap_or(AggregationTemporality::Unspecified),
            )
        }
    };
    let points = data_point_count(data);
    let delta = temporality == AggregationTemporality::Delta;
    if delta && settings.delta == DeltaHandling::Drop {
        out.drop_points(
            points,
            format!("{}: delta temporality is not supported by remote write (Prometheus has no delta type); dropped. Use cumulative temporality in the SDK or a deltatocumulative processor", metric.name),
        );
        return;
    }
    if matches!(kind, FamilyType::Histogram) && temporality == AggregationTemporality::Unspecified {
        out.drop_points(
            points,
            format!(
                "{}: histogram without aggregation temporality; dropped",
                metric.name
            ),
        );
        return;
    }
    let is_counter = kind == FamilyType::Counter;
    let name = match metric_name(
        &metric.name,
        &metric.unit,
        is_counter,
        kind == FamilyType::Gauge,
        settings,
    ) {
        Some(name) => name,
        None => {
            out.drop_points(
                points,
                format!(
                    "{:?}: no valid Prometheus metric name can be made from it; dropped",
                    metric.name
                ),
            );
            return;
        }
    };
    let unit = if settings.add_metric_suffixes {
        unit_word(&metric.unit)
    } else {
        String::new()
    };
    let family = out.family(&name, kind, &metric.description, &unit);
    let names = match data {
        metric::Data::Histogram(_) | metric::Data::Summary(_) => Names {
            bucket: format!("{name}_bucket"),
            sum: format!("{name}_sum"),
            count: format!("{name}_count"),
            plain: name,
        },
        _ => Names {
            plain: name,
            bucket: String::new(),
            sum: String::new(),
            count: String::new(),
        },
    };
    let ctx = PointContext {
        scope,
        family,
        delta,
    };
    match data {
        metric::Data::Gauge(g) => g
            .data_points
            .iter()
            .for_each(|p| number_point(&ctx, &names, p, false, out, scratch)),
        metric::Data::Sum(s) => s
            .data_points
            .iter()
            .for_each(|p| number_point(&ctx, &names, p, monotonic, out, scratch)),
        metric::Data::Histogram(h) => h
            .data_points
            .iter()
            .for_each(|p| histogram_point(&ctx, &names, p, out, scratch)),
        metric::Data::Summary(s) => s
            .data_points
            .iter()
            .for_each(|p| summary_point(&ctx, &names, p, out, scratch)),
        metric::Data::ExponentialHistogram(h) => h
            .data_points
            .iter()
            .for_each(|p| exponential_point(&ctx, &names, p, out, scratch)),
    }
}

fn data_point_count(data: &metric::Data) -> u64 {
    (match data {
        metric::Data::Gauge(g) => g.data_points.len(),
        metric::Data::Sum(s) => s.data_points.len(),
        metric::Data::Histogram(h) => h.data_points.len(),
        metric::Data::ExponentialHistogram(h) => h.data_points.len(),
        metric::Data::Summary(s) => s.data_points.len(),
    }) as u64
}

struct PointContext<'s> {
    scope: &'s ScopeLabels,
    family: u32,
    delta: bool,
}

impl PointContext<'_> {
    /// Sets the scratch's point layer to `attributes` (sanitized names, values joined
    /// where keys collide, empty values left out), borrowing from the input.
    fn point_layer<'a>(&self, scratch: &mut Scratch<'a>, attributes: &'a [KeyValue]) {
        scratch.keyed.clear();
        for kv in attributes {
            let value = any_value_cow(kv.value.as_ref());
            if value.is_empty() {
                continue;
            }
            if let Some(name) = label_name_cow(&kv.key) {
                scratch.keyed.push((name, kv.key.as_str(), value));
            }
        }
        // Stable: duplicate keys keep their order, as the old layer did.
        scratch
            .keyed
            .sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        scratch.point.clear();
        for (name, _, value) in scratch.keyed.drain(..) {
            match scratch.point.last_mut() {
                Some((last, joined)) if *last == name => {
                    let mut text = std::mem::take(joined).into_owned();
                    text.push(';');
                    text.push_str(&value);
                    *joined = Cow::Owned(text);
                }
                _ => scratch.point.push((name, value)),
            }
        }
    }

    /// Adds a sample with the scratch's point layer, `__name__` = `name` and the optional
    /// `extra` label (`le`/`quantile`, overriding an attribute of that name).
    fn push(
        &self,
        out: &mut Translation,
        scratch: &mut Scratch<'_>,
        name: &str,
        extra: Option<(&str, f64)>,
        value: f64,
        t: (i64, i64),
    ) {
        let series = self.series(out, scratch, name, extra);
        out.samples.push(Sample {
            series,
            value,
            timestamp_ms: t.0,
            start_ms: t.1,
            family: self.family,
            delta: self.delta,
        });
    }

    fn series(
        &self,
        out: &mut Translation,
        scratch: &mut Scratch<'_>,
        name: &str,
        extra: Option<(&str, f64)>,
    ) -> u32 {
        scratch.encoded.clear();
        match extra {
            Some((key, number)) => {
                scratch.float.clear();
                write_float(&mut scratch.float, number);
                let top = [("__name__", name), (key, scratch.float.as_str())];
                encode_label_set(
                    &mut scratch.encoded,
                    &top,
                    &self.scope.high,
                    &scratch.point,
                    &self.scope.low,
                );
            }
            None => encode_label_set(
                &mut scratch.encoded,
                &[("__name__", name)],
                &self.scope.high,
                &scratch.point,
                &self.scope.low,
            ),
        }
        out.series.intern(&scratch.encoded)
    }
}

/// Merges four label layers, each sorted by name, into one sorted set (the first layer
/// that has a name gives its value) and appends it to `out` as remote write 1.0 `Label`
/// messages.
fn encode_label_set<A: AsRef<str>, B: AsRef<str>, C: AsRef<str>>(
    out: &mut Vec<u8>,
    top: &[(&str, &str)],
    high: &[(A, A)],
    point: &[(B, B)],
    low: &[(C, C)],
) {
    let (mut a, mut b, mut c, mut d) = (0, 0, 0, 0);
    loop {
        let heads = [
            top.get(a).map(|(n, v)| (*n, *v)),
            high.get(b).map(|(n, v)| (n.as_ref(), v.as_ref())),
            point.get(c).map(|(n, v)| (n.as_ref(), v.as_ref())),
            low.get(d).map(|(n, v)| (n.as_ref(), v.as_ref())),
        ];
        let mut best: Option<(&str, &str)> = None;
        for (name, value) in heads.iter().flatten() {
            match best {
                Some((least, _)) if *name >= least => {}
                _ => best = Some((name, value)),
            }
        }
        let Some((name, value)) = best else { break };
        encode_label(out, name, value);
        let at = |head: Option<(&str, &str)>| head.is_some_and(|(n, _)| n == name);
        a += at(heads[0]) as usize;
        b += at(heads[1]) as usize;
        c += at(heads[2]) as usize;
        d += at(heads[3]) as usize;
    }
}

fn millis(nanos: u64) -> i64 {
    (nanos / 1_000_000) as i64
}

fn number_point<'a>(
    ctx: &PointContext<'_>,
    names: &Names,
    point: &'a NumberDataPoint,
    counter_like: bool,
    out: &mut Translation,
    scratch: &mut Scratch<'a>,
) {
    let value = if point.flags & FLAG_NO_RECORDED_VALUE != 0 {
        stale_nan()
    } else {
        match point.value {
            Some(number_data_point::Value::AsDouble(v)) => v,
            Some(number_data_point::Value::AsInt(v)) => v as f64,
            None => {
                out.drop_points(
                    1,
                    format!("{}: data point without a value; dropped", names.plain),
                );
                return;
            }
        }
    };
    let start = if counter_like {
        millis(point.start_time_unix_nano)
    } else {
        0
    };
    ctx.point_layer(scratch, &point.attributes);
    ctx.push(
        out,
        scratch,
        &names.plain,
        None,
        value,
        (millis(point.time_unix_nano), start),
    );
    if counter_like && !is_stale_nan(value) && !point.exemplars.is_empty() {
        let index = out.samples.len() - 1;
        out.exemplars.extend(
            point
                .exemplars
                .iter()
                .filter_map(exemplar)
                .map(|e| (index, e)),
        );
    }
}

/// An OTLP exemplar as a Prometheus one: `trace_id`/`span_id` as lowercase hex labels
/// (left off when empty or all zero), the filtered attributes as labels. Exemplars
/// without a value are skipped.
pub fn exemplar(e: &opentelemetry_proto::tonic::metrics::v1::Exemplar) -> Option<Exemplar> {
    let value = match e.value.as_ref()? {
        exemplar::Value::AsDouble(v) => *v,
        exemplar::Value::AsInt(v) => *v as f64,
    };
    let mut ids = LabelBuilder::default();
    for (key, bytes) in [("span_id", &e.span_id), ("trace_id", &e.trace_id)] {
        if bytes.iter().any(|b| *b != 0) {
            ids.set(key, bytes.iter().map(|b| format!("{b:02x}")).collect());
        }
    }
    let mut all = LabelBuilder::default();
    all.layer(
        e.filtered_attributes
            .iter()
            .map(|kv| (kv.key.as_str(), any_value_string(kv.value.as_ref()))),
    );
    all.labels.extend(ids.labels.clone());
    let length = |labels: &BTreeMap<String, String>| {
        labels
            .iter()
            .map(|(k, v)| k.chars().count() + v.chars().count())
            .sum::<usize>()
    };
    // Prometheus refuses exemplars whose label names and values exceed 128 characters.
    let labels = if length(&all.labels) <= 128 {
        all.labels
    } else {
        ids.labels
    };
    if length(&labels) > 128 {
        return None;
    }
    Some(Exemplar {
        labels: labels.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
        value,
        timestamp_ms: millis(e.time_unix_nano),
    })
}

fn histogram_point<'a>(
    ctx: &PointContext<'_>,
    names: &Names,
    point: &'a HistogramDataPoint,
    out: &mut Translation,
    scratch: &mut Scratch<'a>,
) {
    let stale = point.flags & FLAG_NO_RECORDED_VALUE != 0;
    if !stale
        && !point.bucket_counts.is_empty()
        && point.bucket_counts.len() != point.explicit_bounds.len() + 1
    {
        out.drop_points(
            1,
            format!(
                "{}: histogram point with {} bucket counts for {} bounds; dropped",
                names.plain,
                point.bucket_counts.len(),
                point.explicit_bounds.len()
            ),
        );
        return;
    }
    let t = (
        millis(point.time_unix_nano),
        millis(point.start_time_unix_nano),
    );
    ctx.point_layer(scratch, &point.attributes);
    let value = |v: f64| if stale { stale_nan() } else { v };
    let first_bucket = out.samples.len();
    let mut cumulative = 0u64;
    for (index, bound) in point.explicit_bounds.iter().enumerate() {
        cumulative += point.bucket_counts.get(index).copied().unwrap_or(0);
        ctx.push(
            out,
            scratch,
            &names.bucket,
            Some(("le", *bound)),
            value(cumulative as f64),
            t,
        );
    }
    ctx.push(
        out,
        scratch,
        &names.bucket,
        Some(("le", f64::INFINITY)),
        value(point.count as f64),
        t,
    );
    if !stale {
        // Each exemplar goes on the first bucket whose bound holds its value (`+Inf` last).
        for e in point.exemplars.iter().filter_map(exemplar) {
            let bucket = point
                .explicit_bounds
                .iter()
                .position(|b| e.value <= *b)
                .unwrap_or(point.explicit_bounds.len());
            out.exemplars.push((first_bucket + bucket, e));
        }
    }
    if let Some(sum) = point.sum {
        ctx.push(out, scratch, &names.sum, None, value(sum), t);
    }
    ctx.push(
        out,
        scratch,
        &names.count,
        None,
        value(point.count as f64),
        t,
    );
}

/// Largest schema Prometheus accepts; finer OTel scales are merged down to it.
const MAX_SCHEMA: i32 = 8;
/// Smallest schema Prometheus accepts (and OTel's smallest useful scale).
const MIN_SCHEMA: i32 = -4;

fn exponential_point<'a>(
    ctx: &PointContext<'_>,
    names: &Names,
    point: &'a ExponentialHistogramDataPoint,
    out: &mut Translation,
    scratch: &mut Scratch<'a>,
) {
    let t = (
        millis(point.time_unix_nano),
        millis(point.start_time_unix_nano),
    );
    ctx.point_layer(scratch, &point.attributes);
    if point.flags & FLAG_NO_RECORDED_VALUE != 0 {
        // The series ended: a float staleness marker (Prometheus applies it to histogram
        // series too).
        ctx.push(out, scratch, &names.plain, None, stale_nan(), t);
        return;
    }
    if point.scale < MIN_SCHEMA {
        out.drop_points(
            1,
            format!(
                "{}: exponential histogram scale {} is below Prometheus' smallest schema -4; dropped",
                names.plain, point.scale
            ),
        );
        return;
    }
    let schema = point.scale.min(MAX_SCHEMA);
    let shift = (point.scale - schema) as u32;
    let (positive_spans, positive_deltas) = native_buckets(point.positive.as_ref(), shift);
    let (negative_spans, negative_deltas) = native_buckets(point.negative.as_ref(), shift);
    let series = ctx.series(out, scratch, &names.plain, None);
    out.histograms.push(NativeHistogram {
        series,
        family: ctx.family,
        timestamp_ms: t.0,
        start_ms: t.1,
        schema,
        zero_threshold: point.zero_threshold,
        zero_count: point.zero_count,
        count: point.count,
        sum: point.sum.unwrap_or(0.0),
        positive_spans,
        positive_deltas,
        negative_spans,
        negative_deltas,
        exemplars: point.exemplars.iter().filter_map(exemplar).collect(),
    });
}

/// OTel buckets (offset, counts; index `i` covers `(base^i, base^(i+1)]`) as Prometheus
/// spans and deltas (index `i+1`), merged by `2^shift` when the OTel scale is finer than
/// schema 8. Runs of up to two empty buckets stay inside a span (as Prometheus does);
/// longer runs start a new span.
fn native_buckets(
    buckets: Option<&exponential_histogram_data_point::Buckets>,
    shift: u32,
) -> (Vec<(i32, u32)>, Vec<i64>) {
    let Some(buckets) = buckets else {
        return (Vec::new(), Vec::new());
    };
    // (Prometheus index, count), ascending, merged.
    let mut merged: Vec<(i64, u64)> = Vec::new();
    for (i, count) in buckets.bucket_counts.iter().enumerate() {
        if *count == 0 {
            continue;
        }
        let otel_index = buckets.offset as i64 + i as i64;
        let index = (otel_index >> shift) + 1;
        match merged.last_mut() {
            Some(last) if last.0 == index => last.1 += count,
            _ => merged.push((index, *count)),
        }
    }
    let mut spans: Vec<(i32, u32)> = Vec::new();
    let mut deltas = Vec::with_capacity(merged.len());
    let mut previous_count = 0i64;
    let mut last_index: Option<i64> = None;
    for (index, count) in merged {
        match last_index {
            Some(last) if index - last - 1 <= 2 => {
                // Fill the gap with empty buckets inside the current span.
                for _ in 0..(index - last - 1) {
                    deltas.push(-previous_count);
                    previous_count = 0;
                }
                if let Some(span) = spans.last_mut() {
                    span.1 += (index - last) as u32;
                }
            }
            Some(last) => spans.push(((index - last - 1) as i32, 1)),
            None => spans.push((index as i32, 1)),
        }
        deltas.push(count as i64 - previous_count);
        previous_count = count as i64;
        last_index = Some(index);
    }
    (spans, deltas)
}

fn summary_point<'a>(
    ctx: &PointContext<'_>,
    names: &Names,
    point: &'a SummaryDataPoint,
    out: &mut Translation,
    scratch: &mut Scratch<'a>,
) {
    let stale = point.flags & FLAG_NO_RECORDED_VALUE != 0;
    let t = (
        millis(point.time_unix_nano),
        millis(point.start_time_unix_nano),
    );
    ctx.point_layer(scratch, &point.attributes);
    let value = |v: f64| if stale { stale_nan() } else { v };
    let mut quantiles: Vec<_> = point.quantile_values.iter().collect();
    quantiles.sort_by(|a, b| a.quantile.total_cmp(&b.quantile));
    for q in quantiles {
        ctx.push(
            out,
            scratch,
            &names.plain,
            Some(("quantile", q.quantile)),
            value(q.value),
            t,
        );
    }
    ctx.push(out, scratch, &names.sum, None, value(point.sum), t);
    ctx.push(
        out,
        scratch,
        &names.count,
        None,
        value(point.count as f64),
        t,
    );
}

/// A float as Prometheus writes it in `le`/`quantile` and the text format: shortest
/// round-trip decimal (Go's `FormatFloat(f, 'f', -1, 64)` for ordinary values),
/// `+Inf`, `-Inf`, `NaN`.
pub fn format_float(value: f64) -> String {
    let mut out = String::new();
    write_float(&mut out, value);
    out
}

/// [`format_float`] appended to `out`.
pub fn write_float(out: &mut String, value: f64) {
    use std::fmt::Write;
    if value.is_nan() {
        out.push_str("NaN");
    } else if value == f64::INFINITY {
        out.push_str("+Inf");
    } else if value == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{value}");
    }
}

/// Builds a label set in layers: later layers override earlier ones for the same
/// sanitized name; within one layer, OTel keys that sanitize to the same name have their
/// values joined with `;` in the order of the original keys.
#[derive(Clone, Debug, Default)]
struct LabelBuilder {
    labels: BTreeMap<String, String>,
}

impl LabelBuilder {
    fn layer<K: AsRef<str>>(&mut self, pairs: impl IntoIterator<Item = (K, String)>) {
        let mut layer: BTreeMap<String, Vec<(K, String)>> = BTreeMap::new();
        for (key, value) in pairs {
            if value.is_empty() {
                continue;
            }
            if let Some(name) = label_name(key.as_ref()) {
                layer.entry(name).or_default().push((key, value));
            }
        }
        for (name, mut values) in layer {
            values.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
            let joined = values
                .into_iter()
                .map(|(_, v)| v)
                .collect::<Vec<_>>()
                .join(";");
            self.labels.insert(name, joined);
        }
    }

    fn set(&mut self, name: &str, value: String) {
        self.labels.insert(name.to_string(), value);
    }

    fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// An OTel attribute key as a Prometheus label name: characters outside `[a-zA-Z0-9_]`
/// become `_`, runs of `_` collapse, a leading digit gets `key_`. `None` when nothing
/// valid is left (only underscores, or empty).
pub fn label_name(key: &str) -> Option<String> {
    let mut name = String::with_capacity(key.len());
    for c in key.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '_' };
        if c == '_' && name.ends_with('_') {
            continue;
        }
        name.push(c);
    }
    if name.chars().all(|c| c == '_') {
        return None;
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert_str(0, "key_");
    }
    Some(name)
}

/// [`label_name`] without a copy when `key` already is a valid label name.
fn label_name_cow(key: &str) -> Option<Cow<'_, str>> {
    let bytes = key.as_bytes();
    let valid = !bytes.is_empty()
        && !bytes[0].is_ascii_digit()
        && bytes.iter().any(|b| *b != b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        && !bytes.windows(2).any(|w| w == b"__");
    if valid {
        Some(Cow::Borrowed(key))
    } else {
        label_name(key).map(Cow::Owned)
    }
}

fn prefixed(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{}_{name}", sanitize_tokens(namespace).join("_"))
    }
}

/// Splits on every character outside `[a-zA-Z0-9:]` (underscore included), dropping empty
/// tokens: `metric@@##$$name` -> `[metric, name]`.
fn sanitize_tokens(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == ':'))
        .filter(|t| !t.is_empty())
        .collect()
}

/// The Prometheus metric name of an OTel metric. `counter`: a monotonic sum (gets
/// `_total`); `gauge`: gets `_ratio` for unit `1`. `None` when no valid name is left.
pub fn metric_name(
    name: &str,
    unit: &str,
    counter: bool,
    gauge: bool,
    settings: &Settings,
) -> Option<String> {
    let mut tokens: Vec<String> = sanitize_tokens(name)
        .into_iter()
        .map(str::to_string)
        .collect();
    if tokens.is_empty() {
        return None;
    }
    if settings.add_metric_suffixes {
        let (main, per) = unit_words(unit);
        if !main.is_empty() && !tokens.contains(&main) {
            tokens.push(main);
        }
        if !per.is_empty() && !name_has_per(&tokens, &per) {
            tokens.push("per".to_string());
            tokens.push(per);
        }
        if counter {
            tokens.retain(|t| t != "total");
            tokens.push("total".to_string());
        }
        if gauge && unit == "1" && !tokens.iter().any(|t| t == "ratio") {
            tokens.push("ratio".to_string());
        }
    }
    let mut joined = tokens.join("_");
    if joined.starts_with(|c: char| c.is_ascii_digit()) {
        joined.insert(0, '_');
    }
    Some(prefixed(&settings.namespace, &joined))
}

fn name_has_per(tokens: &[String], per: &str) -> bool {
    tokens.windows(2).any(|w| w[0] == "per" && w[1] == per)
}

/// The unit word used as a suffix and in metadata (`By/s` -> `bytes_per_second`).
pub fn unit_word(unit: &str) -> String {
    match unit_words(unit) {
        (main, per) if per.is_empty() => main,
        (main, per) if main.is_empty() => format!("per_{per}"),
        (main, per) => format!("{main}_per_{per}"),
    }
}

/// (main word, per word) of a UCUM unit; empty strings for none.
fn unit_words(unit: &str) -> (String, String) {
    let (main, per) = match unit.split_once('/') {
        Some((main, per)) => (main.trim(), Some(per.trim())),
        None => (unit.trim(), None),
    };
    let word = |u: &str, table: fn(&str) -> Option<&'static str>| -> String {
        if u.is_empty() || u.contains('{') || u.contains('}') {
            return String::new();
        }
        match table(u) {
            Some(w) => w.to_string(),
            None => sanitize_tokens(u).join("_"),
        }
    };
    let main_word = word(main, oxcol_core::units::prometheus_word);
    let per_word = per
        .map(|p| word(p, oxcol_core::units::prometheus_per_word))
        .unwrap_or_default();
    (main_word, per_word)
}

/// An OTel attribute value as a label value (AnyValue stringification rules).
pub fn any_value_string(value: Option<&AnyValue>) -> String {
    let Some(value) = value.and_then(|v| v.value.as_ref()) else {
        return String::new();
    };
    match value {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => format_float(*d),
        any_value::Value::BytesValue(b) => base64(b),
        any_value::Value::ArrayValue(_) | any_value::Value::KvlistValue(_) => {
            any_value_json(value).to_string()
        }
        any_value::Value::StringValueStrindex(_) => String::new(),
    }
}

/// [`any_value_string`], borrowing string values.
fn any_value_cow(value: Option<&AnyValue>) -> Cow<'_, str> {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => Cow::Borrowed(s),
        _ => Cow::Owned(any_value_string(value)),
    }
}

fn any_value_json(value: &any_value::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        any_value::Value::StringValue(s) => J::String(s.clone()),
        any_value::Value::BoolValue(b) => J::Bool(*b),
        any_value::Value::IntValue(i) => J::from(*i),
        any_value::Value::DoubleValue(d) => serde_json::Number::from_f64(*d)
            .map(J::Number)
            .unwrap_or_else(|| J::String(format_float(*d))),
        any_value::Value::BytesValue(b) => J::String(base64(b)),
        any_value::Value::ArrayValue(a) => J::Array(
            a.values
                .iter()
                .filter_map(|v| v.value.as_ref())
                .map(any_value_json)
                .collect(),
        ),
        any_value::Value::KvlistValue(kv) => J::Object(
            kv.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value
                            .as_ref()
                            .and_then(|v| v.value.as_ref())
                            .map(any_value_json)
                            .unwrap_or(J::Null),
                    )
                })
                .collect(),
        ),
        any_value::Value::StringValueStrindex(_) => J::Null,
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The distinct label sets of one translation. Each is stored once, encoded as remote
/// write 1.0 `TimeSeries.labels` (repeated `Label { name = 1, value = 2 }` messages, field
/// 1): the exporter copies the bytes into requests as they are, and the bytes are the
/// identity of the series (equal label sets encode equally because they are sorted).
#[derive(Clone, Debug, Default)]
pub struct SeriesTable {
    bytes: Vec<u8>,
    entries: Vec<SeriesEntry>,
    /// Hash -> first entry with that hash (others chained through `SeriesEntry::next`).
    index: HashMap<u64, u32, BuildHasherDefault<IdentityHasher>>,
}

#[derive(Clone, Copy, Debug)]
struct SeriesEntry {
    start: u32,
    end: u32,
    hash: u64,
    /// The next entry with the same hash, `u32::MAX` for none.
    next: u32,
}

impl SeriesTable {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The index of the label set encoded as `encoded`, added when new.
    pub fn intern(&mut self, encoded: &[u8]) -> u32 {
        let hash = hash_bytes(encoded);
        let mut last = None;
        if let Some(first) = self.index.get(&hash) {
            let mut at = *first;
            while let Some(entry) = self.entries.get(at as usize) {
                if &self.bytes[entry.start as usize..entry.end as usize] == encoded {
                    return at;
                }
                last = Some(at);
                at = entry.next;
            }
        }
        let index = self.entries.len() as u32;
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(encoded);
        self.entries.push(SeriesEntry {
            start,
            end: self.bytes.len() as u32,
            hash,
            next: u32::MAX,
        });
        match last {
            Some(last) => self.entries[last as usize].next = index,
            None => {
                self.index.insert(hash, index);
            }
        }
        index
    }

    /// The index of a label set given as sorted, duplicate-free pairs.
    pub fn intern_labels<K: AsRef<str>, V: AsRef<str>>(&mut self, labels: &[(K, V)]) -> u32 {
        let mut encoded = Vec::new();
        for (name, value) in labels {
            encode_label(&mut encoded, name.as_ref(), value.as_ref());
        }
        self.intern(&encoded)
    }

    /// Series `index` encoded as repeated remote write 1.0 `Label` messages (empty when out
    /// of range).
    pub fn encoded(&self, index: u32) -> &[u8] {
        self.entries
            .get(index as usize)
            .map(|e| &self.bytes[e.start as usize..e.end as usize])
            .unwrap_or(&[])
    }

    /// A stable 64-bit hash of series `index` (the same label set always has the same
    /// hash, in every batch and process): for sharding and staleness tracking.
    pub fn hash(&self, index: u32) -> u64 {
        self.entries
            .get(index as usize)
            .map(|e| e.hash)
            .unwrap_or(0)
    }

    /// The (name, value) pairs of series `index`, sorted.
    pub fn labels(&self, index: u32) -> EncodedLabels<'_> {
        EncodedLabels {
            rest: self.encoded(index),
        }
    }

    /// The labels of series `index` as owned pairs.
    pub fn owned(&self, index: u32) -> Labels {
        self.labels(index)
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }
}

/// Iterates over label sets encoded by [`encode_label`].
#[derive(Clone, Debug)]
pub struct EncodedLabels<'t> {
    rest: &'t [u8],
}

impl<'t> EncodedLabels<'t> {
    pub fn new(encoded: &'t [u8]) -> EncodedLabels<'t> {
        EncodedLabels { rest: encoded }
    }
}

impl<'t> Iterator for EncodedLabels<'t> {
    type Item = (&'t str, &'t str);

    fn next(&mut self) -> Option<(&'t str, &'t str)> {
        // 0x0a len { 0x0a len name 0x12 len value }
        let (label, rest) = read_plain(self.rest, 0x0a)?;
        let (name, after) = read_plain(label, 0x0a)?;
        let (value, _) = read_plain(after, 0x12)?;
        self.rest = rest;
        Some((
            std::str::from_utf8(name).unwrap_or(""),
            std::str::from_utf8(value).unwrap_or(""),
        ))
    }
}

/// A length-delimited field with tag byte `tag`: (its bytes, the bytes after it).
fn read_plain(bytes: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (first, mut rest) = bytes.split_first()?;
    if *first != tag {
        return None;
    }
    let mut len = 0usize;
    let mut shift = 0;
    loop {
        let (byte, after) = rest.split_first()?;
        rest = after;
        len |= ((byte & 0x7f) as usize) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 35 {
            return None;
        }
    }
    if rest.len() < len {
        return None;
    }
    Some((&rest[..len], &rest[len..]))
}

/// Appends one remote write 1.0 `TimeSeries.labels` entry: `0x0a len Label { 0x0a len
/// name 0x12 len value }`, exactly as prost encodes `Label { name, value }` with both set.
pub fn encode_label(out: &mut Vec<u8>, name: &str, value: &str) {
    let inner = 1
        + varint_len(name.len() as u64)
        + name.len()
        + 1
        + varint_len(value.len() as u64)
        + value.len();
    out.push(0x0a);
    put_varint(out, inner as u64);
    out.push(0x0a);
    put_varint(out, name.len() as u64);
    out.extend_from_slice(name.as_bytes());
    out.push(0x12);
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value.as_bytes());
}

/// Protobuf base-128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Encoded length of a varint.
pub fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// A stable 64-bit hash of bytes (8 bytes at a time, then the murmur3 finalizer). Not
/// seeded: the same label set hashes the same in every process, so a series stays on its
/// shard.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut hash = K ^ bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        hash = (hash.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        hash = (hash.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// A `Hasher` for keys that already are good 64-bit hashes (a `u64` passes through);
/// byte strings go through [`hash_bytes`]. Not seeded: series hashes must be the same in
/// every batch (shards, staleness). Crafted colliding label sets cost extra comparisons in
/// one batch (the table chains them), never a merged series.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityHasher(u64);

impl std::hash::Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = self.0.rotate_left(5) ^ hash_bytes(bytes);
    }

    fn write_u8(&mut self, value: u8) {
        // `str` hashes end with a 0xff marker byte: mixing it in cheaply is enough.
        self.0 = self.0.rotate_left(5) ^ value as u64;
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
    use opentelemetry_proto::tonic::metrics::v1::{Gauge, Histogram, ScopeMetrics, Sum, Summary};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use oxcol_core::testdata::string_attribute;

    fn name(name: &str, unit: &str, counter: bool, gauge: bool) -> Option<String> {
        metric_name(name, unit, counter, gauge, &Settings::default())
    }

    #[test]
    fn metric_names_follow_otlptranslator() {
        // The facts from otlptranslator's metric_namer_test.go (spec section 6).
        assert_eq!(
            name("requests", "", true, false).as_deref(),
            Some("requests_total")
        );
        assert_eq!(
            name("cpu_usage", "1", false, true).as_deref(),
            Some("cpu_usage_ratio")
        );
        assert_eq!(
            name("items", "1", true, false).as_deref(),
            Some("items_total")
        );
        assert_eq!(
            name("response_time", "ms", false, true).as_deref(),
            Some("response_time_milliseconds")
        );
        assert_eq!(
            name("memory_usage", "By", false, true).as_deref(),
            Some("memory_usage_bytes")
        );
        assert_eq!(
            name("requests", "1/s", false, true).as_deref(),
            Some("requests_per_second")
        );
        assert_eq!(
            name("throughput", "By/s", false, true).as_deref(),
            Some("throughput_bytes_per_second")
        );
        assert_eq!(
            name("custom_metric", "{custom}", false, true).as_deref(),
            Some("custom_metric")
        );
        assert_eq!(
            name("custom_metric", "By/{custom}", false, true).as_deref(),
            Some("custom_metric_bytes")
        );
        assert_eq!(
            name("response_time_seconds", "s", false, true).as_deref(),
            Some("response_time_seconds")
        );
        assert_eq!(
            name("123metric", "", false, true).as_deref(),
            Some("_123metric")
        );
        assert_eq!(
            name("metric@@##$$name", "", false, true).as_deref(),
            Some("metric_name")
        );
        assert_eq!(name("@#$%", "", false, true), None);
        // The DESIGN.md example, and _total moved to the end.
        assert_eq!(
            name("cgroup.memory.current", "By", false, true).as_deref(),
            Some("cgroup_memory_current_bytes")
        );
        assert_eq!(
            name("http.total.requests", "", true, false).as_deref(),
            Some("http_requests_total")
        );
        let plain = Settings {
            add_metric_suffixes: false,
            namespace: "my app".into(),
            ..Settings::default()
        };
        assert_eq!(
            metric_name("http.server.duration", "s", false, false, &plain).as_deref(),
            Some("my_app_http_server_duration")
        );
    }

    #[test]
    fn label_names_are_sanitized() {
        assert_eq!(
            label_name("http.request.method").as_deref(),
            Some("http_request_method")
        );
        assert_eq!(label_name("a..b").as_deref(), Some("a_b"));
        assert_eq!(label_name("2xx").as_deref(), Some("key_2xx"));
        assert_eq!(label_name("___"), None);
        assert_eq!(label_name(""), None);
    }

    #[test]
    fn colliding_keys_join_in_key_order_and_empty_values_vanish() {
        let gauge = metric::Data::Gauge(Gauge {
            data_points: vec![number(
                1.0,
                vec![
                    string_attribute("foo/bar", "a"),
                    string_attribute("foo.bar", "b"),
                    string_attribute("empty", ""),
                ],
            )],
        });
        let out = translate(
            &[resource(vec![], vec![metric("m", "", gauge)])],
            &Settings::default(),
        );
        // "foo.bar" < "foo/bar" byte-wise, so b;a.
        assert_eq!(
            out.series.owned(out.samples[0].series),
            vec![
                ("__name__".to_string(), "m".to_string()),
                ("foo_bar".to_string(), "b;a".to_string()),
                ("otel_scope_name".to_string(), "lib".to_string()),
                ("otel_scope_version".to_string(), "1.2".to_string()),
            ]
        );
    }

    #[test]
    fn series_table_interns_and_decodes() {
        let mut table = SeriesTable::default();
        let long = "v".repeat(300);
        let a = table.intern_labels(&[("__name__", "up"), ("job", long.as_str())]);
        let b = table.intern_labels(&[("__name__", "up"), ("job", "x")]);
        assert_eq!(
            table.intern_labels(&[("__name__", "up"), ("job", long.as_str())]),
            a
        );
        assert_ne!(a, b);
        assert_eq!(table.len(), 2);
        assert_eq!(
            table.labels(a).collect::<Vec<_>>(),
            vec![("__name__", "up"), ("job", long.as_str())]
        );
        assert_eq!(table.hash(b), hash_bytes(table.encoded(b)));
        // The encoding is prost's for repeated `Label` messages (field 1 of TimeSeries).
        assert_eq!(
            table.encoded(b),
            &[
                0x0a, 0x0e, 0x0a, 0x08, b'_', b'_', b'n', b'a', b'm', b'e', b'_', b'_', 0x12, 0x02,
                b'u', b'p', 0x0a, 0x08, 0x0a, 0x03, b'j', b'o', b'b', 0x12, 0x01, b'x'
            ][..]
        );
        for value in [0u64, 1, 127, 128, 300, 16_384, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value), "{value}");
        }
        // Out of range: empty, never a panic.
        assert_eq!(table.labels(99).count(), 0);
    }

    fn resource(attributes: Vec<KeyValue>, metrics: Vec<Metric>) -> ResourceMetrics {
        ResourceMetrics {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "lib".into(),
                    version: "1.2".into(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }
    }

    fn metric(name: &str, unit: &str, data: metric::Data) -> Metric {
        Metric {
            name: name.into(),
            description: "help text".into(),
            unit: unit.into(),
            metadata: vec![],
            data: Some(data),
        }
    }

    fn number(value: f64, attributes: Vec<KeyValue>) -> NumberDataPoint {
        NumberDataPoint {
            attributes,
            start_time_unix_nano: 1_000_000_000,
            time_unix_nano: 2_000_000_000,
            value: Some(number_data_point::Value::AsDouble(value)),
            ..Default::default()
        }
    }

    /// The samples as `name=value,... value @ts` lines (`scope`: with the otel_scope_* labels).
    fn render_with(out: &Translation, scope: bool) -> Vec<String> {
        out.samples
            .iter()
            .map(|s| {
                let labels: Vec<String> = out
                    .series
                    .labels(s.series)
                    .filter(|(k, _)| scope || !k.starts_with("otel_scope"))
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                format!(
                    "{} {} @{}",
                    labels.join(","),
                    format_float(s.value),
                    s.timestamp_ms
                )
            })
            .collect()
    }

    fn service() -> Vec<KeyValue> {
        vec![
            string_attribute("service.name", "checkout"),
            string_attribute("service.namespace", "shop"),
            string_attribute("service.instance.id", "pod-1"),
            string_attribute("host.name", "node-7"),
        ]
    }

    #[test]
    fn series_get_job_instance_scope_and_a_target_info() {
        let sum = metric::Data::Sum(Sum {
            data_points: vec![number(5.0, vec![string_attribute("http.method", "GET")])],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        });
        let input = vec![resource(
            service(),
            vec![metric("http.requests", "{request}", sum)],
        )];
        let out = translate(&input, &Settings::default());
        assert_eq!(
            render_with(&out, true),
            vec![
                "__name__=http_requests_total,http_method=GET,instance=pod-1,job=shop/checkout,otel_scope_name=lib,otel_scope_version=1.2 5 @2000",
                "__name__=target_info,host_name=node-7,instance=pod-1,job=shop/checkout 1 @2000",
            ]
        );
        assert_eq!(out.samples[0].start_ms, 1000);
        assert_eq!(
            out.families[0],
            Family {
                name: "http_requests_total".into(),
                kind: FamilyType::Counter,
                help: "help text".into(),
                unit: String::new()
            }
        );
        // Promoting resource attributes; target_info off; external labels never override.
        let settings = Settings {
            resource_to_telemetry: true,
            target_info: false,
            extra_labels: vec![
                ("cluster".into(), "eu".into()),
                ("job".into(), "ignored".into()),
            ],
            ..Settings::default()
        };
        let out = translate(&input, &settings);
        assert_eq!(
            render_with(&out, true),
            vec![
                "__name__=http_requests_total,cluster=eu,host_name=node-7,http_method=GET,instance=pod-1,job=shop/checkout,otel_scope_name=lib,otel_scope_version=1.2,service_instance_id=pod-1,service_name=checkout,service_namespace=shop 5 @2000"
            ]
        );
    }

    #[test]
    fn histograms_have_cumulative_buckets_and_summaries_quantiles() {
        let histogram = metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                time_unix_nano: 3_000_000_000,
                count: 10,
                sum: Some(12.5),
                bucket_counts: vec![1, 2, 3, 4],
                explicit_bounds: vec![0.1, 0.5, 1.0],
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        });
        let summary = metric::Data::Summary(Summary {
            data_points: vec![SummaryDataPoint {
                time_unix_nano: 3_000_000_000,
                count: 4,
                sum: 8.0,
                quantile_values: vec![
                    ValueAtQuantile {
                        quantile: 0.99,
                        value: 3.0,
                    },
                    ValueAtQuantile {
                        quantile: 0.5,
                        value: 1.5,
                    },
                ],
                ..Default::default()
            }],
        });
        let input = vec![resource(
            vec![],
            vec![
                metric("rpc.duration", "s", histogram),
                metric("latency", "ms", summary),
            ],
        )];
        let out = translate(
            &input,
            &Settings {
                target_info: false,
                ..Settings::default()
            },
        );
        assert_eq!(
            render_with(&out, false),
            vec![
                "__name__=rpc_duration_seconds_bucket,le=0.1 1 @3000",
                "__name__=rpc_duration_seconds_bucket,le=0.5 3 @3000",
                "__name__=rpc_duration_seconds_bucket,le=1 6 @3000",
                "__name__=rpc_duration_seconds_bucket,le=+Inf 10 @3000",
                "__name__=rpc_duration_seconds_sum 12.5 @3000",
                "__name__=rpc_duration_seconds_count 10 @3000",
                "__name__=latency_milliseconds,quantile=0.5 1.5 @3000",
                "__name__=latency_milliseconds,quantile=0.99 3 @3000",
                "__name__=latency_milliseconds_sum 8 @3000",
                "__name__=latency_milliseconds_count 4 @3000",
            ]
        );
    }

    #[test]
    fn delta_is_dropped_or_passed_and_no_recorded_value_is_stale() {
        let delta = metric::Data::Sum(Sum {
            data_points: vec![number(3.0, vec![]), number(4.0, vec![])],
            aggregation_temporality: AggregationTemporality::Delta as i32,
            is_monotonic: true,
        });
        let input = vec![resource(vec![], vec![metric("hits", "", delta)])];
        let dropped = translate(&input, &Settings::default());
        assert_eq!((dropped.samples.len(), dropped.dropped_points), (0, 2));
        assert!(
            dropped.problems[0].contains("delta temporality"),
            "{:?}",
            dropped.problems
        );
        let passed = translate(
            &input,
            &Settings {
                delta: DeltaHandling::Pass,
                ..Settings::default()
            },
        );
        assert_eq!(passed.samples.len(), 2);
        assert!(passed.samples.iter().all(|s| s.delta));

        let mut stale_point = number(1.0, vec![]);
        stale_point.flags = 1;
        let gauge = metric::Data::Gauge(Gauge {
            data_points: vec![stale_point, number(f64::NAN, vec![])],
        });
        let out = translate(
            &[resource(vec![], vec![metric("temp", "Cel", gauge)])],
            &Settings::default(),
        );
        assert_eq!(out.samples[0].value.to_bits(), STALE_NAN_BITS);
        assert!(out.samples[1].value.is_nan() && !is_stale_nan(out.samples[1].value));
    }

    #[test]
    fn exemplars_carry_trace_ids_and_sit_on_the_right_bucket() {
        use opentelemetry_proto::tonic::metrics::v1::Exemplar as OtelExemplar;
        let ex = |value: f64, attrs: Vec<KeyValue>| OtelExemplar {
            filtered_attributes: attrs,
            time_unix_nano: 2_500_000_000,
            value: Some(exemplar::Value::AsDouble(value)),
            span_id: vec![0xab; 8],
            trace_id: vec![0x01; 16],
        };
        let histogram = metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                time_unix_nano: 3_000_000_000,
                count: 3,
                bucket_counts: vec![1, 1, 1],
                explicit_bounds: vec![0.1, 0.5],
                exemplars: vec![
                    ex(0.3, vec![string_attribute("user", "u1")]),
                    ex(9.0, vec![]),
                ],
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        });
        let mut counter_point = number(5.0, vec![]);
        counter_point.exemplars = vec![ex(1.0, vec![string_attribute("x", &"y".repeat(200))])];
        let sum = metric::Data::Sum(Sum {
            data_points: vec![counter_point],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        });
        let input = vec![resource(
            vec![],
            vec![metric("d", "s", histogram), metric("c", "", sum)],
        )];
        let out = translate(&input, &Settings::default());
        let on: Vec<(String, f64, Labels)> = out
            .exemplars
            .iter()
            .map(|(i, e)| {
                let labels = out.series.owned(out.samples[*i].series);
                let le = labels
                    .iter()
                    .find(|(k, _)| k == "le")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                (
                    format!("{}{{{le}}}", labels[0].1),
                    e.value,
                    e.labels.clone(),
                )
            })
            .collect();
        let ids = |extra: Option<(&str, &str)>| {
            let mut l: Labels = vec![
                ("span_id".into(), "abababababababab".into()),
                ("trace_id".into(), "01".repeat(16)),
            ];
            if let Some((k, v)) = extra {
                l.push((k.into(), v.into()));
            }
            l.sort();
            l
        };
        assert_eq!(
            on,
            vec![
                (
                    "d_seconds_bucket{0.5}".to_string(),
                    0.3,
                    ids(Some(("user", "u1")))
                ),
                ("d_seconds_bucket{+Inf}".to_string(), 9.0, ids(None)),
                // Over 128 characters with the attribute: only the ids are kept.
                ("c_total{}".to_string(), 1.0, ids(None)),
            ]
        );
        assert_eq!(out.exemplars[0].1.timestamp_ms, 2500);
    }

    #[test]
    fn exponential_histograms_become_native_histograms() {
        use opentelemetry_proto::tonic::metrics::v1::ExponentialHistogram;
        use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
        let point = |scale: i32, offset: i32, counts: Vec<u64>| ExponentialHistogramDataPoint {
            time_unix_nano: 3_000_000_000,
            start_time_unix_nano: 1_000_000_000,
            count: counts.iter().sum::<u64>() + 2,
            sum: Some(10.0),
            scale,
            zero_count: 2,
            positive: Some(Buckets {
                offset,
                bucket_counts: counts,
            }),
            ..Default::default()
        };
        let data = metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![
                // OTel indexes 0,1 then a gap of 3 empty buckets (new span), then 5; and a
                // gap of 1 (filled).
                point(0, 0, vec![1, 2, 0, 0, 0, 4, 0, 1]),
                // Scale 10 merged to 8 (4 buckets per bucket): OTel 0..=3 -> 0, 4 -> 1.
                point(10, 0, vec![1, 1, 1, 1, 5]),
                point(-5, 0, vec![1]),
            ],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        });
        let input = vec![resource(vec![], vec![metric("lat", "s", data.clone())])];
        let settings = Settings {
            native_histograms: true,
            ..Settings::default()
        };
        let out = translate(&input, &settings);
        assert_eq!(out.histograms.len(), 2);
        assert_eq!(
            (out.dropped_points, out.problems.len()),
            (1, 1),
            "scale -5 is refused: {:?}",
            out.problems
        );
        let h = &out.histograms[0];
        assert_eq!(out.series.owned(h.series)[0].1, "lat_seconds");
        assert_eq!(
            (
                h.schema,
                h.count,
                h.zero_count,
                h.sum,
                h.start_ms,
                h.timestamp_ms
            ),
            (0, 10, 2, 10.0, 1000, 3000)
        );
        assert_eq!(h.positive_spans, vec![(1, 2), (3, 3)]);
        assert_eq!(h.positive_deltas, vec![1, 1, 2, -4, 1]);
        let merged = &out.histograms[1];
        assert_eq!(
            (
                merged.schema,
                merged.positive_spans.clone(),
                merged.positive_deltas.clone()
            ),
            (8, vec![(1, 2)], vec![4, 1])
        );
        assert_eq!(out.families[0].kind, FamilyType::Histogram);
        // Without native histograms (the pull exporter) they are dropped and counted.
        let off = translate(&input, &Settings::default());
        assert_eq!((off.histograms.len(), off.dropped_points), (0, 3));
    }

    #[test]
    fn random_names_never_panic_and_stay_valid() {
        let mut rng = oxcol_core::testdata::XorShift64(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5000 {
            let seed = rng.next_u64();
            let len = (seed % 12) as usize;
            let text: String = (0..len)
                .map(|i| char::from_u32(((seed >> (i * 5)) % 0x250) as u32).unwrap_or('x'))
                .collect();
            if let Some(name) = metric_name(
                &text,
                &text,
                seed.is_multiple_of(2),
                seed.is_multiple_of(3),
                &Settings::default(),
            ) {
                assert!(
                    !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()),
                    "{text:?} -> {name:?}"
                );
                assert!(
                    name.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                    "{text:?} -> {name:?}"
                );
            }
            if let Some(label) = label_name(&text) {
                assert!(
                    label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{text:?} -> {label:?}"
                );
                assert!(!label.starts_with(|c: char| c.is_ascii_digit()));
            }
        }
        assert_eq!(base64(b"hello"), "aGVsbG8=");
    }
}
