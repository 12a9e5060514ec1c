//! `pprof` receiver: scrapes Go services' `net/http/pprof` endpoints and turns profiles
//! into metrics: goroutines per stack signature (top-k plus `other`), the oldest wait per
//! goroutine state, heap in-use and allocated bytes per function, block/mutex contention,
//! and goroutine-leak suspects (Scenario 2), each suspect also as one OTel log record with
//! its full stack.
//!
//! Every target is scraped on its own: one that is down, slow, answers HTML or sends a
//! broken profile is logged once per change of state, counted in
//! `oxcol_pprof_scrape_errors{receiver,target,profile,reason}`, and leaves the other
//! targets and the next scrape alone.
//!
//! It must never hurt the service it watches: the debug=0 profiles are cheap for the
//! target, but the debug=2 dump stops the world while it formats every stack, so it is
//! off by default and, when on, rate-limited and skipped above a goroutine count.

pub mod debug2;
pub mod leak;
pub mod profile;
pub mod proto;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::resource::v1::Resource;
use oxcol_core::GoDuration;
use oxcol_core::telemetry::{Counter, Registry};
use serde::Deserialize;

use crate::cgroup::emit::{ResourceBuilder, string_attribute, unix_nanos};
use crate::scrape_http::{
    BasicAuth, FetchError, HttpScraper, Overflow, TlsSettings, credential_headers,
};
use crate::scraper::{ScrapeOutput, Scraper};
use profile::{BodyError, Frame, entry_function, innermost_user_function, stack_id, stack_text};

pub const TYPE: &str = "pprof";
pub const ALIASES: &[&str] = &["pprof"];

/// The instrumentation scope of every metric and log record this receiver emits.
pub const SCOPE: &str = "oxcol/receiver/pprof";

/// The profiles a target can be asked for.
pub const PROFILES: &[&str] = &[
    "goroutine",
    "heap",
    "allocs",
    "block",
    "mutex",
    "threadcreate",
];

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How often to scrape every target. Default `15s`.
    pub collection_interval: GoDuration,
    /// Bound on one target's whole scrape (all its profiles). Default `5s`.
    pub timeout: GoDuration,
    /// The services to scrape. Default none (at least one is required).
    pub targets: Vec<TargetConfig>,
    /// Profiles to read: `goroutine`, `heap`, `allocs`, `block`, `mutex`,
    /// `threadcreate`. Default `[goroutine, heap]`.
    pub profiles: Vec<String>,
    pub goroutine_stacks: GoroutineStacks,
    pub heap_stacks: HeapStacks,
    pub leak_detection: LeakDetection,
    /// Largest profile accepted, in bytes, both as sent and after inflating.
    /// Default 16777216 (16 MiB).
    pub max_body_size: usize,
    /// Headers added to every request. Default none.
    pub headers: BTreeMap<String, String>,
    /// `Authorization: Bearer <token>`. Default none.
    pub bearer_token: Option<String>,
    /// Basic auth (`username`, `password` or `password_file`). Default none.
    pub basic_auth: Option<BasicAuth>,
    /// TLS client settings for `https://` targets (see `scrape_http::TlsSettings`). Default: system CAs.
    pub tls: TlsSettings,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TargetConfig {
    /// Base URL of the service's net/http/pprof, e.g. `http://127.0.0.1:6060`; the
    /// receiver appends `/debug/pprof/<profile>`. Required.
    pub endpoint: String,
    /// Resource attributes of everything from this target (e.g. `service.name`).
    /// Default none.
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GoroutineStacks {
    /// Stack signatures reported one by one; the rest are summed into `other`. Default 50.
    pub top_k: usize,
    /// Also read `?debug=2` for wait states, wait minutes and `created by`. Default false
    /// (it stops the target's world while it writes; see the component doc).
    pub debug2: bool,
    /// Read the debug=2 dump at most this often. Default `1m`.
    pub debug2_interval: GoDuration,
    /// Skip the debug=2 dump while the target has more goroutines than this. Default 10000.
    pub debug2_max_goroutines: u64,
    /// Bytes of the debug=2 dump read; the rest is dropped. Default 4194304 (4 MiB).
    pub debug2_max_bytes: usize,
}

impl Default for GoroutineStacks {
    fn default() -> Self {
        GoroutineStacks {
            top_k: 50,
            debug2: false,
            debug2_interval: GoDuration::from_secs(60),
            debug2_max_goroutines: 10_000,
            debug2_max_bytes: 4 << 20,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HeapStacks {
    /// Functions reported one by one in `go.heap.function.*`; the rest are `other`.
    /// Default 20; 0 turns the per-function metrics off.
    pub top_k: usize,
}

impl Default for HeapStacks {
    fn default() -> Self {
        HeapStacks { top_k: 20 }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LeakDetection {
    /// Default true (needs the `goroutine` profile).
    pub enabled: bool,
    /// How far back the growth of a signature is judged. Default `10m`.
    pub window: GoDuration,
    /// Net growth (goroutines) over the window before a signature is a suspect. Default 20.
    pub min_growth: u64,
}

impl Default for LeakDetection {
    fn default() -> Self {
        LeakDetection {
            enabled: true,
            window: GoDuration::from_secs(600),
            min_growth: 20,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            collection_interval: GoDuration::from_secs(15),
            timeout: GoDuration::from_secs(5),
            targets: Vec::new(),
            profiles: vec!["goroutine".to_string(), "heap".to_string()],
            goroutine_stacks: GoroutineStacks::default(),
            heap_stacks: HeapStacks::default(),
            leak_detection: LeakDetection::default(),
            max_body_size: 16 << 20,
            headers: BTreeMap::new(),
            bearer_token: None,
            basic_auth: None,
            tls: TlsSettings::default(),
        }
    }
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.collection_interval.is_zero() {
            errors.push("collection_interval must be greater than zero (e.g. 15s)".to_string());
        }
        if self.timeout.is_zero() {
            errors.push("timeout must be greater than zero (e.g. 5s)".to_string());
        }
        if self.targets.is_empty() {
            errors.push("targets is empty; add one, e.g. `targets: [{endpoint: \"http://127.0.0.1:6060\"}]`".to_string());
        }
        for target in &self.targets {
            if target.endpoint.is_empty() {
                errors.push("targets: a target has no endpoint; write e.g. `endpoint: http://127.0.0.1:6060`".to_string());
                continue;
            }
            if let Err(e) = base_uri(&target.endpoint) {
                errors.push(e);
            }
        }
        let any_https = self
            .targets
            .iter()
            .any(|t| t.endpoint.starts_with("https://"));
        errors.extend(
            self.tls
                .validate(any_https)
                .into_iter()
                .map(|e| format!("tls: {e}")),
        );
        for profile in &self.profiles {
            if !PROFILES.contains(&profile.as_str()) {
                errors.push(format!(
                    "profiles: {profile:?} is not a profile oxcol reads; use any of {}",
                    PROFILES.join(", ")
                ));
            }
        }
        if self.profiles.is_empty() {
            errors.push(format!(
                "profiles is empty; list at least one of {}",
                PROFILES.join(", ")
            ));
        }
        if self.goroutine_stacks.top_k == 0 || self.goroutine_stacks.top_k > 10_000 {
            errors.push(format!(
                "goroutine_stacks.top_k must be between 1 and 10000, not {}",
                self.goroutine_stacks.top_k
            ));
        }
        if self.heap_stacks.top_k > 10_000 {
            errors.push(format!(
                "heap_stacks.top_k must be at most 10000, not {}",
                self.heap_stacks.top_k
            ));
        }
        if self.goroutine_stacks.debug2 && self.goroutine_stacks.debug2_max_bytes < 4096 {
            errors.push("goroutine_stacks.debug2_max_bytes must be at least 4096".to_string());
        }
        if self.leak_detection.enabled {
            if self.leak_detection.window.get() < self.collection_interval.get() * 4 {
                errors.push(format!(
                    "leak_detection.window ({}) must be at least 4 collection_intervals ({}) so the rule has enough samples",
                    self.leak_detection.window, self.collection_interval
                ));
            }
            if !self.profiles.iter().any(|p| p == "goroutine") {
                errors.push("leak_detection needs the goroutine profile: add goroutine to profiles or set leak_detection.enabled: false".to_string());
            }
        }
        if self.max_body_size < 1024 {
            errors.push("max_body_size must be at least 1024 bytes".to_string());
        }
        if let Err(e) = credential_headers(&self.headers, self.bearer_token.as_deref(), None) {
            errors.push(e);
        }
        if self.bearer_token.is_some() && self.basic_auth.is_some() {
            errors.push("set bearer_token or basic_auth, not both".to_string());
        }
        errors
    }
}

fn base_uri(endpoint: &str) -> Result<String, String> {
    let trimmed = endpoint.trim_end_matches('/');
    let with_path = format!("{trimmed}/debug/pprof/goroutine");
    match with_path.parse::<http::Uri>() {
        Ok(uri)
            if matches!(uri.scheme_str(), Some("http") | Some("https")) && uri.host().is_some() =>
        {
            Ok(trimmed.to_string())
        }
        _ => Err(format!(
            "targets: endpoint {endpoint:?} is not an http:// or https:// URL; write e.g. http://127.0.0.1:6060"
        )),
    }
}

/// The last outcome of one target's scrape, so errors are logged on change only.
#[derive(Clone, PartialEq)]
enum Health {
    Unknown,
    Ok,
    Failing(&'static str),
}

struct Target {
    endpoint: String,
    base: String,
    resource: Vec<KeyValue>,
    /// When this receiver first scraped the target: the start of its cumulative sums.
    start_time_unix_nano: u64,
    detector: leak::Detector,
    /// The last scrape's state; a change is logged.
    health: Health,
    /// From the last debug=2 dump: stack id -> (created by, one goroutine's text).
    creators: HashMap<String, (String, String)>,
    last_debug2: Option<SystemTime>,
    last_goroutines: u64,
}

/// What one target's scrape produced.
struct TargetOutput {
    metrics: Option<ResourceMetrics>,
    logs: Vec<LogRecord>,
    /// (profile, error) for every profile that failed.
    errors: Vec<(&'static str, String, &'static str)>,
}

pub struct PprofScraper {
    id: String,
    config: Config,
    http: HttpScraper,
    targets: Vec<Target>,
    registry: Arc<Registry>,
    error_counters: HashMap<(usize, &'static str, &'static str), Counter>,
}

impl PprofScraper {
    pub fn new(
        id: &str,
        config: &Config,
        registry: &Arc<Registry>,
    ) -> Result<PprofScraper, String> {
        let headers = credential_headers(
            &config.headers,
            config.bearer_token.as_deref(),
            config.basic_auth.as_ref(),
        )
        .map_err(|e| format!("receiver {id:?}: {e}"))?;
        let targets = config
            .targets
            .iter()
            .map(|t| {
                let base = base_uri(&t.endpoint).map_err(|e| format!("receiver {id:?}: {e}"))?;
                let mut resource: Vec<KeyValue> = t
                    .labels
                    .iter()
                    .map(|(k, v)| string_attribute(k, v))
                    .collect();
                if !t.labels.contains_key("url.full") {
                    resource.push(string_attribute("url.full", &base));
                }
                Ok(Target {
                    endpoint: t.endpoint.clone(),
                    base,
                    resource,
                    start_time_unix_nano: 0,
                    detector: leak::Detector::new(
                        config.leak_detection.window.get(),
                        config.leak_detection.min_growth,
                    ),
                    health: Health::Unknown,
                    creators: HashMap::new(),
                    last_debug2: None,
                    last_goroutines: 0,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(PprofScraper {
            id: id.to_string(),
            config: config.clone(),
            http: HttpScraper::new(headers, config.timeout.get(), &config.tls)
                .map_err(|e| format!("tls: {e}"))?,
            targets,
            registry: Arc::clone(registry),
            error_counters: HashMap::new(),
        })
    }

    fn count_error(&mut self, target: usize, profile: &'static str, reason: &'static str) {
        let registry = &self.registry;
        let id = &self.id;
        let endpoint = &self.targets[target].endpoint;
        self.error_counters
            .entry((target, profile, reason))
            .or_insert_with(|| {
                registry.counter(
                    "oxcol_pprof_scrape_errors",
                    "pprof profiles that could not be read, by target, profile and reason.",
                    &[
                        ("receiver", id),
                        ("target", endpoint),
                        ("profile", profile),
                        ("reason", reason),
                    ],
                )
            })
            .add(1);
    }
}

impl Scraper for PprofScraper {
    fn scrape(&mut self, now: SystemTime) -> BoxFuture<'_, Result<ScrapeOutput, String>> {
        Box::pin(async move {
            let outputs = {
                let (config, http) = (&self.config, &self.http);
                futures::future::join_all(
                    self.targets
                        .iter_mut()
                        .map(|target| scrape_target(config, http, target, now)),
                )
                .await
            };
            let mut output = ScrapeOutput::default();
            for (index, result) in outputs.into_iter().enumerate() {
                for (profile, _, reason) in &result.errors {
                    self.count_error(index, profile, reason);
                }
                // One log line per change of the target's state, not per scrape or profile.
                let target = &mut self.targets[index];
                let state = match result.errors.first() {
                    None => Health::Ok,
                    Some((_, _, reason)) => Health::Failing(reason),
                };
                if state != target.health {
                    match (&state, &target.health) {
                        (Health::Ok, Health::Failing(_)) => {
                            tracing::info!(receiver = %self.id, target = %target.endpoint, "the target's profiles read again")
                        }
                        (Health::Ok, _) => {}
                        (Health::Failing(reason), _) => {
                            let detail: Vec<String> = result
                                .errors
                                .iter()
                                .map(|(profile, message, _)| format!("{profile}: {message}"))
                                .collect();
                            tracing::warn!(receiver = %self.id, target = %target.endpoint, reason, "cannot read pprof profiles ({}); logged again only when this changes", detail.join("; "));
                        }
                        _ => {}
                    }
                    target.health = state;
                }
                if let Some(metrics) = result.metrics {
                    output.metrics.push(metrics);
                }
                if !result.logs.is_empty() {
                    output.logs.push(ResourceLogs {
                        resource: Some(Resource {
                            attributes: target.resource.clone(),
                            ..Default::default()
                        }),
                        scope_logs: vec![ScopeLogs {
                            scope: Some(scope()),
                            log_records: result.logs,
                            schema_url: String::new(),
                        }],
                        schema_url: String::new(),
                    });
                }
            }
            Ok(output)
        })
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: SCOPE.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    }
}

fn fetch_error_text(e: &FetchError, body_error: Option<&BodyError>) -> (String, &'static str) {
    match body_error {
        Some(b) => (b.to_string(), b.reason()),
        None => (e.to_string(), e.reason()),
    }
}

/// Reads one profile as resolved stacks.
async fn fetch_profile(
    config: &Config,
    http: &HttpScraper,
    base: &str,
    name: &str,
    timeout: Duration,
) -> Result<profile::Resolved, (String, &'static str)> {
    let uri: http::Uri = format!("{base}/debug/pprof/{name}")
        .parse()
        .map_err(|e| (format!("bad URL: {e}"), "config"))?;
    let fetched = http
        .get(&uri, &[], timeout, config.max_body_size, Overflow::Fail)
        .await
        .map_err(|e| fetch_error_text(&e, None))?;
    let inflated = profile::inflate(&fetched.body, config.max_body_size)
        .map_err(|e| (e.to_string(), e.reason()))?;
    profile::resolve(&inflated).map_err(|e| (e.to_string(), e.reason()))
}

async fn scrape_target(
    config: &Config,
    http: &HttpScraper,
    target: &mut Target,
    now: SystemTime,
) -> TargetOutput {
    let now_nanos = unix_nanos(now);
    if target.start_time_unix_nano == 0 {
        target.start_time_unix_nano = now_nanos;
    }
    let deadline = tokio::time::Instant::now() + config.timeout.get();
    let remaining = || {
        deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut builder = ResourceBuilder::new(now_nanos, target.start_time_unix_nano, 16);
    let mut logs = Vec::new();
    let mut errors = Vec::new();
    let reads_heap = config.profiles.iter().any(|p| p == "heap");
    for name in PROFILES
        .iter()
        .copied()
        .filter(|p| config.profiles.iter().any(|c| c == p))
    {
        // allocs is the heap profile with another default sample type: one read is enough.
        if name == "allocs" && reads_heap {
            continue;
        }
        let resolved = match fetch_profile(config, http, &target.base, name, remaining()).await {
            Ok(resolved) => resolved,
            Err((message, reason)) => {
                errors.push((name, message, reason));
                continue;
            }
        };
        match name {
            "goroutine" => {
                if config.goroutine_stacks.debug2
                    && let Err((message, reason)) =
                        maybe_read_debug2(config, http, target, now, remaining(), &mut builder)
                            .await
                {
                    errors.push(("goroutine_debug2", message, reason));
                }
                goroutine_metrics(config, target, &resolved, now, &mut builder, &mut logs);
            }
            "heap" | "allocs" => heap_metrics(config, &resolved, &mut builder),
            other => totals_metrics(other, &resolved, &mut builder),
        }
    }
    let metrics = (!builder.is_empty()).then(|| builder.finish(target.resource.clone(), SCOPE));
    TargetOutput {
        metrics,
        logs,
        errors,
    }
}

/// Reads the debug=2 dump when it is due and the target is small enough; emits
/// `go.goroutine.wait.oldest` and remembers each signature's creator and stack text.
async fn maybe_read_debug2(
    config: &Config,
    http: &HttpScraper,
    target: &mut Target,
    now: SystemTime,
    timeout: Duration,
    builder: &mut ResourceBuilder,
) -> Result<(), (String, &'static str)> {
    let stacks = &config.goroutine_stacks;
    let due = target.last_debug2.is_none_or(|last| {
        now.duration_since(last).unwrap_or_default() >= stacks.debug2_interval.get()
    });
    if !due || target.last_goroutines > stacks.debug2_max_goroutines {
        return Ok(());
    }
    target.last_debug2 = Some(now);
    let uri: http::Uri = format!("{}/debug/pprof/goroutine?debug=2", target.base)
        .parse()
        .map_err(|e| (format!("bad URL: {e}"), "config"))?;
    let fetched = http
        .get(
            &uri,
            &[],
            timeout,
            stacks.debug2_max_bytes,
            Overflow::Truncate,
        )
        .await
        .map_err(|e| fetch_error_text(&e, None))?;
    let text = String::from_utf8_lossy(&fetched.body);
    if text.trim_start().starts_with('<') {
        return Err((BodyError::Html.to_string(), "html"));
    }
    let goroutines = debug2::parse(&text);
    if goroutines.is_empty() && !text.trim().is_empty() {
        return Err((
            "the debug=2 dump has no goroutine header; is this a Go net/http/pprof endpoint?"
                .to_string(),
            "garbage",
        ));
    }
    let mut oldest: BTreeMap<&str, u64> = BTreeMap::new();
    target.creators.clear();
    for g in &goroutines {
        let entry = oldest.entry(g.state.as_str()).or_insert(0);
        *entry = (*entry).max(g.wait_minutes * 60);
        if let Some(creator) = &g.created_by {
            let id = stack_id(g.functions.iter().map(String::as_str));
            target
                .creators
                .entry(id)
                .or_insert_with(|| (creator.clone(), g.text.clone()));
        }
    }
    for (state, seconds) in oldest {
        builder.gauge_int(
            "go.goroutine.wait.oldest",
            "s",
            seconds as i64,
            &[("go.goroutine.state", state)],
        );
    }
    Ok(())
}

struct Signature {
    id: String,
    function: String,
    creator: String,
    count: u64,
    frames: Vec<Frame>,
}

fn goroutine_metrics(
    config: &Config,
    target: &mut Target,
    resolved: &profile::Resolved,
    now: SystemTime,
    builder: &mut ResourceBuilder,
    logs: &mut Vec<LogRecord>,
) {
    let value_index = resolved.value_index("goroutine").unwrap_or(0);
    let mut by_id: HashMap<String, Signature> = HashMap::new();
    let mut total: u64 = 0;
    for (frames, values) in &resolved.samples {
        let count = values.get(value_index).copied().unwrap_or(0).max(0) as u64;
        total = total.saturating_add(count);
        let id = stack_id(frames.iter().map(|f| f.function.as_str()));
        by_id
            .entry(id.clone())
            .and_modify(|s| s.count = s.count.saturating_add(count))
            .or_insert_with(|| {
                let creator = target
                    .creators
                    .get(&id)
                    .map_or_else(|| entry_function(frames).to_string(), |(c, _)| c.clone());
                Signature {
                    id,
                    function: innermost_user_function(frames).to_string(),
                    creator,
                    count,
                    frames: frames.clone(),
                }
            });
    }
    target.last_goroutines = total;
    builder.gauge_int("go.goroutine.count", "{goroutine}", total as i64, &[]);
    let mut signatures: Vec<Signature> = by_id.into_values().collect();
    signatures.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.id.cmp(&b.id)));
    let top_k = config.goroutine_stacks.top_k;
    for s in signatures.iter().take(top_k) {
        builder.gauge_int(
            "go.goroutine.stack.count",
            "{goroutine}",
            s.count as i64,
            &[
                ("go.stack.function", &s.function),
                ("go.stack.creator", &s.creator),
                ("go.stack.id", &s.id),
            ],
        );
    }
    if signatures.len() > top_k {
        let other: u64 = signatures[top_k..].iter().map(|s| s.count).sum();
        builder.gauge_int(
            "go.goroutine.stack.count",
            "{goroutine}",
            other as i64,
            &[
                ("go.stack.function", "other"),
                ("go.stack.creator", "other"),
                ("go.stack.id", "other"),
            ],
        );
    }
    if !config.leak_detection.enabled {
        return;
    }
    let counts: HashMap<String, u64> = signatures.iter().map(|s| (s.id.clone(), s.count)).collect();
    let seconds = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let suspects = target.detector.observe(seconds, &counts);
    for suspect in suspects {
        let Some(signature) = signatures.iter().find(|s| s.id == suspect.id) else {
            continue;
        };
        let attributes = [
            ("go.stack.function", signature.function.as_str()),
            ("go.stack.creator", signature.creator.as_str()),
            ("go.stack.id", signature.id.as_str()),
        ];
        builder.gauge_f64(
            "go.goroutine.leak.growth",
            "{goroutine}/s",
            suspect.growth_per_second,
            &attributes,
        );
        if suspect.new {
            logs.push(leak_record(
                config,
                target,
                signature,
                &suspect,
                unix_nanos(now),
            ));
        }
    }
}

fn leak_record(
    config: &Config,
    target: &Target,
    signature: &Signature,
    suspect: &leak::Suspect,
    time_unix_nano: u64,
) -> LogRecord {
    let stack = match target.creators.get(&signature.id) {
        Some((_, text)) => text.clone(),
        None => format!(
            "{}created by {} (entry function; enable goroutine_stacks.debug2 for the creator)\n",
            stack_text(&signature.frames),
            signature.creator
        ),
    };
    let body = format!(
        "goroutine leak suspect: {count} goroutines in {function} (created by {creator}), +{net} over the last {window} ({rate:.3}/s), stack {id}:\n{stack}",
        count = suspect.count,
        function = signature.function,
        creator = signature.creator,
        net = suspect.net_growth,
        window = config.leak_detection.window,
        rate = suspect.growth_per_second,
        id = signature.id,
    );
    let double = |key: &str, value: f64| KeyValue {
        key: key.to_string(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::DoubleValue(value)),
        }),
    };
    LogRecord {
        time_unix_nano,
        observed_time_unix_nano: time_unix_nano,
        severity_number: SeverityNumber::Warn as i32,
        severity_text: "WARN".to_string(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body)),
        }),
        attributes: vec![
            string_attribute("event.name", "go.goroutine.leak.suspect"),
            string_attribute("go.stack.function", &signature.function),
            string_attribute("go.stack.creator", &signature.creator),
            string_attribute("go.stack.id", &signature.id),
            double("go.goroutine.count", suspect.count),
            double("go.goroutine.leak.growth", suspect.growth_per_second),
        ],
        event_name: "go.goroutine.leak.suspect".to_string(),
        ..Default::default()
    }
}

/// Heap (and allocs): totals of the four sample types, and per-function in-use and
/// allocated bytes for the top functions by in-use bytes.
fn heap_metrics(config: &Config, resolved: &profile::Resolved, builder: &mut ResourceBuilder) {
    let totals = resolved.totals();
    let index = |name: &str| resolved.value_index(name);
    let total = |name: &str| {
        index(name)
            .and_then(|i| totals.get(i))
            .copied()
            .unwrap_or(0)
            .max(0)
    };
    if index("inuse_space").is_none() && index("alloc_space").is_none() {
        return;
    }
    builder.gauge_int("go.heap.inuse", "By", total("inuse_space"), &[]);
    builder.gauge_int(
        "go.heap.inuse.objects",
        "{object}",
        total("inuse_objects"),
        &[],
    );
    builder.counter_int("go.heap.allocated", "By", total("alloc_space") as u64, &[]);
    builder.counter_int(
        "go.heap.allocated.objects",
        "{object}",
        total("alloc_objects") as u64,
        &[],
    );
    let top_k = config.heap_stacks.top_k;
    if top_k == 0 {
        return;
    }
    let (inuse, alloc) = (index("inuse_space"), index("alloc_space"));
    let mut by_function: HashMap<&str, (i64, i64)> = HashMap::new();
    for (frames, values) in &resolved.samples {
        let entry = by_function
            .entry(innermost_user_function(frames))
            .or_default();
        entry.0 = entry
            .0
            .saturating_add(inuse.and_then(|i| values.get(i)).copied().unwrap_or(0));
        entry.1 = entry
            .1
            .saturating_add(alloc.and_then(|i| values.get(i)).copied().unwrap_or(0));
    }
    let mut functions: Vec<(&str, (i64, i64))> = by_function.into_iter().collect();
    functions.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(b.1.1.cmp(&a.1.1)).then(a.0.cmp(b.0)));
    let mut other = (0i64, 0i64);
    for (rank, (function, (inuse, alloc))) in functions.iter().enumerate() {
        if rank < top_k {
            builder.gauge_int(
                "go.heap.function.inuse",
                "By",
                *inuse,
                &[("go.stack.function", function)],
            );
        } else {
            other.0 = other.0.saturating_add(*inuse);
            other.1 = other.1.saturating_add(*alloc);
        }
    }
    if functions.len() > top_k {
        builder.gauge_int(
            "go.heap.function.inuse",
            "By",
            other.0,
            &[("go.stack.function", "other")],
        );
    }
    for (function, (_, alloc)) in functions.iter().take(top_k) {
        builder.counter_int(
            "go.heap.function.allocated",
            "By",
            (*alloc).max(0) as u64,
            &[("go.stack.function", function)],
        );
    }
    if functions.len() > top_k {
        builder.counter_int(
            "go.heap.function.allocated",
            "By",
            other.1.max(0) as u64,
            &[("go.stack.function", "other")],
        );
    }
}

/// block, mutex, threadcreate: the profile's totals.
fn totals_metrics(name: &str, resolved: &profile::Resolved, builder: &mut ResourceBuilder) {
    let totals = resolved.totals();
    let total = |value: &str| {
        resolved
            .value_index(value)
            .and_then(|i| totals.get(i))
            .copied()
            .unwrap_or(0)
            .max(0) as u64
    };
    match name {
        "block" | "mutex" => {
            builder.counter_int(
                &format!("go.{name}.contentions"),
                "{contention}",
                total("contentions"),
                &[],
            );
            builder.counter_f64(
                &format!("go.{name}.delay"),
                "s",
                total("delay") as f64 / 1e9,
                &[],
            );
        }
        "threadcreate" => {
            builder.counter_int("go.thread.created", "{thread}", total("threadcreate"), &[])
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
