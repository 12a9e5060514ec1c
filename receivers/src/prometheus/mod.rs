//! `prometheus` receiver: scrapes `/metrics` of services (Go services built on
//! client_golang, exporters) with the subset of Prometheus' `scrape_configs` listed in
//! docs/components/prometheus-receiver.md, and turns what it reads into OTLP metrics
//! (see `convert` for the mapping and staleness).
//!
//! Relabeling (`relabel_configs` on targets, `metric_relabel_configs` on samples) is
//! `oxcol_core::relabel`, the one implementation the `relabel` processor also uses; this
//! module must never grow a second one. Every `scrape_config` runs as its own scrape loop
//! with its own interval; every target is scraped independently, so a target that is
//! down only turns its own `up` to 0 and its series stale.

pub mod convert;
pub mod parse;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use oxcol_core::GoDuration;
use oxcol_core::relabel::{self, LabelSet, NameValidation, RelabelConfig, Rule};
use oxcol_core::telemetry::Registry;
use serde::Deserialize;

use crate::cgroup::emit::{string_attribute, unix_nanos};
use crate::scrape_http::{BasicAuth, HttpScraper, Overflow, TlsSettings, credential_headers};
use crate::scraper::{ScrapeOutput, Scraper};
use convert::{Converter, Kind};
use parse::FamilyType;

pub const TYPE: &str = "prometheus";
pub const ALIASES: &[&str] = &["prometheus"];
pub const SCOPE: &str = "oxcol/receiver/prometheus";

/// Largest exposition read from one target (Prometheus' `body_size_limit` is not
/// configurable here yet).
pub const MAX_BODY_BYTES: usize = 64 << 20;

const ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1";

/// The receiver's config: as in the Collector, a Prometheus config under `config:`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub config: PrometheusConfig,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    pub global: Global,
    pub scrape_configs: Vec<ScrapeConfig>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Global {
    /// Default `1m` (Prometheus' default).
    pub scrape_interval: GoDuration,
    /// Default `10s`.
    pub scrape_timeout: GoDuration,
    /// Labels added to every scraped sample that does not have them (after metric
    /// relabeling), as the Collector's receiver appends them. Default none.
    pub external_labels: BTreeMap<String, String>,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            scrape_interval: GoDuration::from_secs(60),
            scrape_timeout: GoDuration::from_secs(10),
            external_labels: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScrapeConfig {
    /// Required; becomes the `job` label and `service.name`.
    pub job_name: String,
    /// Default: `global.scrape_interval`.
    pub scrape_interval: Option<GoDuration>,
    /// Default: `global.scrape_timeout`, capped at the scrape interval.
    pub scrape_timeout: Option<GoDuration>,
    /// Default `/metrics`.
    pub metrics_path: String,
    /// `http` (default) or `https` (with `tls_config`).
    pub scheme: String,
    /// Target lists with their extra labels. Default none.
    pub static_configs: Vec<StaticConfig>,
    /// Target relabeling, before the scrape. Default none.
    pub relabel_configs: Vec<RelabelConfig>,
    /// Sample relabeling, after the scrape (not applied to `up` and the other synthetic
    /// series). Default none.
    pub metric_relabel_configs: Vec<RelabelConfig>,
    /// On a clash between a scraped label and a target label, keep the scraped one
    /// (true) or keep the target's and rename the scraped one `exported_<name>` (false,
    /// default).
    pub honor_labels: bool,
    /// Default none.
    pub basic_auth: Option<BasicAuth>,
    /// `type` (default `Bearer`) and `credentials` or `credentials_file`. Default none.
    pub authorization: Option<Authorization>,
    /// TLS for `scheme: https` (see `scrape_http::TlsSettings`). Default: system CAs.
    pub tls_config: TlsSettings,
    /// `utf8` (default) or `legacy`, as Prometheus' `metric_name_validation_scheme`.
    pub metric_name_validation_scheme: NameValidation,
    /// Most samples one scrape may keep after metric relabeling; more fails the scrape
    /// (`up` 0, nothing kept), as in Prometheus. Default 0: no limit.
    pub sample_limit: u64,
    /// URL query parameters of the scrape (`module: [http_2xx]`); the first value of each
    /// is also the `__param_<name>` label that target relabeling sees. Default none.
    pub params: BTreeMap<String, Vec<String>>,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        ScrapeConfig {
            job_name: String::new(),
            scrape_interval: None,
            scrape_timeout: None,
            metrics_path: "/metrics".to_string(),
            scheme: "http".to_string(),
            static_configs: Vec::new(),
            relabel_configs: Vec::new(),
            metric_relabel_configs: Vec::new(),
            honor_labels: false,
            basic_auth: None,
            authorization: None,
            tls_config: TlsSettings::default(),
            metric_name_validation_scheme: NameValidation::default(),
            sample_limit: 0,
            params: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StaticConfig {
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Authorization {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub credentials: Option<String>,
    pub credentials_file: Option<String>,
}

impl ScrapeConfig {
    pub fn interval(&self, global: &Global) -> Duration {
        self.scrape_interval.unwrap_or(global.scrape_interval).get()
    }

    pub fn timeout(&self, global: &Global) -> Duration {
        match self.scrape_timeout {
            Some(t) => t.get(),
            None => global.scrape_timeout.get().min(self.interval(global)),
        }
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let global = &self.config.global;
        if self.config.scrape_configs.is_empty() {
            errors.push("config.scrape_configs is empty; add a job, e.g. `- job_name: app\\n  static_configs: [{targets: [\"127.0.0.1:8080\"]}]`".to_string());
        }
        let mut names = std::collections::HashSet::new();
        for (i, job) in self.config.scrape_configs.iter().enumerate() {
            let at = format!("config.scrape_configs[{i}] ({:?})", job.job_name);
            if job.job_name.is_empty() {
                errors.push(format!("config.scrape_configs[{i}]: job_name is required"));
            } else if !names.insert(job.job_name.clone()) {
                errors.push(format!(
                    "{at}: job_name is used twice; job names must be unique"
                ));
            }
            if job.interval(global).is_zero() || job.timeout(global).is_zero() {
                errors.push(format!(
                    "{at}: scrape_interval and scrape_timeout must be greater than zero"
                ));
            }
            if job.timeout(global) > job.interval(global) {
                errors.push(format!(
                    "{at}: scrape_timeout is greater than scrape_interval; lower the timeout"
                ));
            }
            if job.scheme != "http" && job.scheme != "https" {
                errors.push(format!(
                    "{at}: scheme {:?} is not supported; use http or https",
                    job.scheme
                ));
            }
            if !job.metrics_path.starts_with('/') {
                errors.push(format!(
                    "{at}: metrics_path {:?} must start with /",
                    job.metrics_path
                ));
            }
            for e in job.tls_config.validate(job.scheme == "https") {
                errors.push(format!("{at}: tls_config: {e}"));
            }
            if job.basic_auth.is_some() && job.authorization.is_some() {
                errors.push(format!(
                    "{at}: at most one of basic_auth and authorization may be set"
                ));
            }
            for (key, rules) in [
                ("relabel_configs", &job.relabel_configs),
                ("metric_relabel_configs", &job.metric_relabel_configs),
            ] {
                if let Err(problems) = relabel::compile(rules, job.metric_name_validation_scheme) {
                    errors.extend(problems.into_iter().map(|p| format!("{at}: {key}{p}")));
                }
            }
            for static_config in &job.static_configs {
                for target in &static_config.targets {
                    if target.contains("://") || target.contains('/') || target.is_empty() {
                        errors.push(format!("{at}: target {target:?} must be host:port (no scheme or path; use scheme and metrics_path)"));
                    }
                }
            }
        }
        errors
    }

    /// One scrape loop per job: (interval, scraper).
    pub fn scrapers(
        &self,
        id: &str,
        registry: &Arc<Registry>,
    ) -> Result<Vec<(Duration, JobScraper)>, String> {
        self.config
            .scrape_configs
            .iter()
            .map(|job| {
                Ok((
                    job.interval(&self.config.global),
                    JobScraper::new(id, job, &self.config.global, registry)?,
                ))
            })
            .collect()
    }
}

struct Target {
    /// `scheme://address/path?params` after target relabeling.
    url: http::Uri,
    /// Labels of every series: job, instance and the static labels.
    labels: LabelSet,
    resource: Vec<KeyValue>,
    converter: Converter,
    failing: Option<String>,
}

pub struct JobScraper {
    id: String,
    job: String,
    timeout: Duration,
    honor_labels: bool,
    metric_rules: Vec<Rule>,
    name_validation: NameValidation,
    external_labels: Vec<(String, String)>,
    sample_limit: u64,
    http: HttpScraper,
    targets: Vec<Target>,
}

impl JobScraper {
    pub fn new(
        id: &str,
        job: &ScrapeConfig,
        global: &Global,
        _registry: &Arc<Registry>,
    ) -> Result<JobScraper, String> {
        let fail = |e: String| format!("receiver {id:?}, job {:?}: {e}", job.job_name);
        let target_rules =
            relabel::compile(&job.relabel_configs, job.metric_name_validation_scheme)
                .map_err(|e| fail(e.join("; ")))?;
        let metric_rules = relabel::compile(
            &job.metric_relabel_configs,
            job.metric_name_validation_scheme,
        )
        .map_err(|e| fail(e.join("; ")))?;
        let bearer = match &job.authorization {
            None => None,
            Some(auth) => {
                if auth
                    .kind
                    .as_deref()
                    .is_some_and(|k| !k.eq_ignore_ascii_case("bearer"))
                {
                    return Err(fail(
                        "authorization.type other than Bearer is not supported".to_string(),
                    ));
                }
                match (&auth.credentials, &auth.credentials_file) {
                    (Some(c), _) => Some(c.clone()),
                    (None, Some(file)) => Some(
                        std::fs::read_to_string(file)
                            .map_err(|e| {
                                fail(format!("authorization.credentials_file {file:?}: {e}"))
                            })?
                            .trim()
                            .to_string(),
                    ),
                    (None, None) => None,
                }
            }
        };
        let headers =
            credential_headers(&BTreeMap::new(), bearer.as_deref(), job.basic_auth.as_ref())
                .map_err(fail)?;
        let interval = job.interval(global);
        let timeout = job.timeout(global);
        let mut targets = Vec::new();
        for static_config in &job.static_configs {
            for address in &static_config.targets {
                let mut labels = LabelSet::new();
                labels.set("__address__", address.clone());
                labels.set("__scheme__", job.scheme.clone());
                labels.set("__metrics_path__", job.metrics_path.clone());
                labels.set("__scrape_interval__", GoDuration(interval).to_string());
                labels.set("__scrape_timeout__", GoDuration(timeout).to_string());
                labels.set("job", job.job_name.clone());
                for (name, values) in &job.params {
                    if let Some(first) = values.first() {
                        labels.set(&format!("__param_{name}"), first.clone());
                    }
                }
                for (k, v) in &static_config.labels {
                    labels.set(k, v.clone());
                }
                if !relabel::process(&mut labels, &target_rules) {
                    continue;
                }
                let address = labels.get("__address__").to_string();
                if address.is_empty() {
                    continue;
                }
                let mut query: Vec<String> = labels
                    .iter()
                    .filter_map(|(k, v)| k.strip_prefix("__param_").map(|p| format!("{p}={v}")))
                    .collect();
                // A parameter's further values, after the one its label carries.
                query.extend(job.params.iter().flat_map(|(name, values)| {
                    values
                        .iter()
                        .skip(1)
                        .map(move |value| format!("{name}={value}"))
                }));
                query.sort();
                let url = format!(
                    "{}://{}{}{}{}",
                    labels.get("__scheme__"),
                    address,
                    labels.get("__metrics_path__"),
                    if query.is_empty() { "" } else { "?" },
                    query.join("&")
                );
                let url: http::Uri = url
                    .parse()
                    .map_err(|e| fail(format!("target URL {url:?}: {e}")))?;
                if !matches!(url.scheme_str(), Some("http") | Some("https")) {
                    return Err(fail(format!(
                        "target {url}: the scheme must be http or https"
                    )));
                }
                if labels.get("instance").is_empty() {
                    labels.set("instance", address.clone());
                }
                let final_labels = LabelSet::from_pairs(
                    labels
                        .iter()
                        .filter(|(k, _)| !k.starts_with("__"))
                        .map(|(k, v)| (k.to_string(), v.to_string())),
                );
                let (host, port) = address.rsplit_once(':').unwrap_or((address.as_str(), ""));
                let mut resource = vec![
                    string_attribute("service.name", final_labels.get("job")),
                    string_attribute("service.instance.id", final_labels.get("instance")),
                    string_attribute("server.address", host),
                    string_attribute("url.scheme", url.scheme_str().unwrap_or("http")),
                ];
                if !port.is_empty() {
                    resource.push(string_attribute("server.port", port));
                }
                targets.push(Target {
                    url,
                    labels: final_labels,
                    resource,
                    converter: Converter::default(),
                    failing: None,
                });
            }
        }
        Ok(JobScraper {
            id: id.to_string(),
            job: job.job_name.clone(),
            timeout,
            honor_labels: job.honor_labels,
            metric_rules,
            name_validation: job.metric_name_validation_scheme,
            external_labels: global
                .external_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            sample_limit: job.sample_limit,
            http: HttpScraper::new(headers, timeout, &job.tls_config)
                .map_err(|e| format!("job {:?}: tls_config: {e}", job.job_name))?,
            targets,
        })
    }

    pub fn target_count(&self) -> usize {
        self.targets.len()
    }
}

impl Scraper for JobScraper {
    fn scrape(&mut self, now: SystemTime) -> BoxFuture<'_, Result<ScrapeOutput, String>> {
        Box::pin(async move {
            let now_nanos = unix_nanos(now);
            let (http, timeout) = (&self.http, self.timeout);
            let fetches = futures::future::join_all(self.targets.iter().map(|target| async move {
                let started = Instant::now();
                let result = http
                    .get(
                        &target.url,
                        &[(http::header::ACCEPT, http::HeaderValue::from_static(ACCEPT))],
                        timeout,
                        MAX_BODY_BYTES,
                        Overflow::Fail,
                    )
                    .await;
                (result, started.elapsed())
            }))
            .await;
            let mut output = ScrapeOutput::default();
            for (target, (result, elapsed)) in self.targets.iter_mut().zip(fetches) {
                let outcome = result.map_err(|e| e.to_string()).and_then(|fetched| {
                    let openmetrics = fetched
                        .headers
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.starts_with("application/openmetrics-text"));
                    let text = std::str::from_utf8(&fetched.body).map_err(|_| "the exposition is not UTF-8".to_string())?;
                    if text.trim_start().starts_with('<') {
                        return Err("the answer is an HTML page, not a metrics exposition; check metrics_path".to_string());
                    }
                    parse::parse(text, openmetrics)
                });
                let (up, scraped) = match outcome {
                    Ok(families) => match add_families(
                        target,
                        families,
                        &SampleRules {
                            honor_labels: self.honor_labels,
                            rules: &self.metric_rules,
                            name_validation: self.name_validation,
                            external_labels: &self.external_labels,
                            sample_limit: self.sample_limit,
                        },
                    ) {
                        Ok(count) => (true, count),
                        Err(e) => {
                            report(&self.id, &self.job, target, Some(e));
                            (false, 0)
                        }
                    },
                    Err(e) => {
                        report(&self.id, &self.job, target, Some(e));
                        (false, 0)
                    }
                };
                if up {
                    report(&self.id, &self.job, target, None);
                }
                let common: Vec<(String, String)> = target
                    .labels
                    .iter()
                    .filter(|(k, _)| *k != "job" && *k != "instance")
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let mut metrics = target.converter.finish(now_nanos);
                let attributes: Vec<KeyValue> =
                    common.iter().map(|(k, v)| string_attribute(k, v)).collect();
                metrics.push(synthetic(
                    "up",
                    "",
                    if up { 1.0 } else { 0.0 },
                    now_nanos,
                    &attributes,
                ));
                metrics.push(synthetic(
                    "scrape_duration_seconds",
                    "s",
                    elapsed.as_secs_f64(),
                    now_nanos,
                    &attributes,
                ));
                metrics.push(synthetic(
                    "scrape_samples_scraped",
                    "",
                    scraped as f64,
                    now_nanos,
                    &attributes,
                ));
                output.metrics.push(ResourceMetrics {
                    resource: Some(Resource {
                        attributes: target.resource.clone(),
                        ..Default::default()
                    }),
                    scope_metrics: vec![ScopeMetrics {
                        scope: Some(InstrumentationScope {
                            name: SCOPE.to_string(),
                            version: env!("CARGO_PKG_VERSION").to_string(),
                            ..Default::default()
                        }),
                        metrics,
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                });
            }
            Ok(output)
        })
    }
}

/// Logs a target's state on change only.
fn report(id: &str, job: &str, target: &mut Target, error: Option<String>) {
    match (&target.failing, error) {
        (None, Some(e)) => {
            tracing::warn!(receiver = id, job, target = %target.url, "scrape failed: {e}; logged again only when this changes");
            target.failing = Some(e);
        }
        (Some(previous), Some(e)) if *previous != e => {
            tracing::warn!(receiver = id, job, target = %target.url, "scrape failed: {e}");
            target.failing = Some(e);
        }
        (Some(_), None) => {
            tracing::info!(receiver = id, job, target = %target.url, "scrapes succeed again");
            target.failing = None;
        }
        _ => {}
    }
}

fn synthetic(name: &str, unit: &str, value: f64, now: u64, attributes: &[KeyValue]) -> Metric {
    Metric {
        name: name.to_string(),
        unit: unit.to_string(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                attributes: attributes.to_vec(),
                time_unix_nano: now,
                value: Some(number_data_point::Value::AsDouble(value)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    }
}

/// What happens to each scraped sample, from the job's config.
struct SampleRules<'a> {
    honor_labels: bool,
    rules: &'a [Rule],
    name_validation: NameValidation,
    external_labels: &'a [(String, String)],
    /// 0: no limit.
    sample_limit: u64,
}

/// Merges target labels, applies metric relabeling, adds the external labels, and feeds
/// the converter. Returns the number of samples scraped; an invalid result or more kept
/// samples than `sample_limit` fails the scrape and feeds nothing, as in Prometheus.
fn add_families(
    target: &mut Target,
    families: Vec<parse::Family>,
    job: &SampleRules<'_>,
) -> Result<usize, String> {
    let mut scraped = 0;
    let mut kept: Vec<(Kind, String, String, Vec<(String, String)>, f64)> = Vec::new();
    for family in families {
        let kind = match family.kind {
            FamilyType::Counter => Kind::Counter,
            FamilyType::Histogram => Kind::Histogram,
            FamilyType::Summary => Kind::Summary,
            _ => Kind::Gauge,
        };
        for sample in family.samples {
            scraped += 1;
            let mut labels = LabelSet::new();
            for (name, value) in &sample.labels {
                labels.set(name, value.clone());
            }
            for (name, value) in target.labels.iter() {
                let clash = !labels.get(name).is_empty();
                if clash && job.honor_labels {
                    continue;
                }
                if clash {
                    let scraped_value = labels.get(name).to_string();
                    labels.set(&format!("exported_{name}"), scraped_value);
                }
                labels.set(name, value.to_string());
            }
            labels.set("__name__", sample.name.clone());
            if !relabel::process(&mut labels, job.rules) {
                continue;
            }
            relabel::check_result(&labels, job.name_validation)?;
            for (name, value) in job.external_labels {
                if labels.get(name).is_empty() {
                    labels.set(name, value.clone());
                }
            }
            let name = labels.get("__name__").to_string();
            // A sample renamed by metric relabeling leaves its family: it becomes a gauge.
            let (kind, family_name) = if name == sample.name {
                (kind, family.name.clone())
            } else {
                (Kind::Gauge, name.clone())
            };
            let attributes: Vec<(String, String)> = labels
                .iter()
                .filter(|(k, _)| *k != "__name__" && *k != "job" && *k != "instance")
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            kept.push((kind, family_name, name, attributes, sample.value));
        }
    }
    if job.sample_limit > 0 && kept.len() as u64 > job.sample_limit {
        return Err(format!(
            "sample_limit exceeded: {} samples after metric relabeling, the limit is {}",
            kept.len(),
            job.sample_limit
        ));
    }
    for (kind, family_name, name, attributes, value) in kept {
        target
            .converter
            .add(kind, &family_name, &name, attributes, value);
    }
    Ok(scraped)
}

#[cfg(test)]
mod tests;
