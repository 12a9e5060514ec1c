//! The detectors: each returns the attributes it found, or why it found nothing.
//! Where they look (metadata endpoints, sockets, files, environment) is in [`Endpoints`],
//! so tests point them at fixtures and a server on 127.0.0.1.

use std::collections::HashMap;
use std::time::Duration;

use http::Method;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
use serde::Deserialize;

use super::http::{request, unix_get};
use super::{Config, ResourceAttributes};

/// Whether an attribute is on by default, off by default, or not detected by oxcol (it
/// may be named with `enabled: false` only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrDefault {
    On,
    Off,
    Unsupported,
}

use AttrDefault::{Off, On, Unsupported};

pub const SYSTEM_ATTRIBUTES: &[(&str, AttrDefault)] = &[
    ("host.name", On),
    ("os.type", On),
    ("host.id", Off),
    ("host.arch", Off),
    ("os.description", Off),
    ("os.version", Off),
    ("os.name", Unsupported),
    ("host.ip", Off),
    ("host.mac", Off),
    ("host.cpu.cache.l2.size", Off),
    ("host.cpu.family", Off),
    ("host.cpu.model.id", Off),
    ("host.cpu.model.name", Off),
    ("host.cpu.stepping", Off),
    ("host.cpu.vendor.id", Off),
];

/// The `host.cpu.*` attributes, read from `/proc/cpuinfo` only when one is enabled.
const CPU_ATTRIBUTES: &[&str] = &[
    "host.cpu.cache.l2.size",
    "host.cpu.family",
    "host.cpu.model.id",
    "host.cpu.model.name",
    "host.cpu.stepping",
    "host.cpu.vendor.id",
];
pub const DOCKER_ATTRIBUTES: &[(&str, AttrDefault)] = &[("host.name", On), ("os.type", On)];
pub const K8SNODE_ATTRIBUTES: &[(&str, AttrDefault)] =
    &[("k8s.node.name", On), ("k8s.node.uid", On)];
pub const EC2_ATTRIBUTES: &[(&str, AttrDefault)] = &[
    ("cloud.provider", On),
    ("cloud.platform", On),
    ("cloud.region", On),
    ("cloud.availability_zone", On),
    ("cloud.account.id", On),
    ("host.id", On),
    ("host.image.id", On),
    ("host.type", On),
    ("host.name", On),
];
pub const ECS_ATTRIBUTES: &[(&str, AttrDefault)] = &[
    ("cloud.provider", On),
    ("cloud.platform", On),
    ("cloud.region", On),
    ("cloud.account.id", On),
    ("cloud.availability_zone", On),
    ("aws.ecs.cluster.arn", On),
    ("aws.ecs.task.arn", On),
    ("aws.ecs.task.family", On),
    ("aws.ecs.task.id", On),
    ("aws.ecs.task.revision", On),
    ("aws.ecs.launchtype", On),
    ("aws.log.group.names", On),
    ("aws.log.group.arns", On),
    ("aws.log.stream.names", On),
    ("aws.log.stream.arns", On),
];
pub const GCP_ATTRIBUTES: &[(&str, AttrDefault)] = &[
    ("cloud.provider", On),
    ("cloud.platform", On),
    ("cloud.account.id", On),
    ("cloud.region", On),
    ("cloud.availability_zone", On),
    ("host.id", On),
    ("host.name", On),
    ("host.type", On),
    ("k8s.cluster.name", On),
];
pub const AKS_ATTRIBUTES: &[(&str, AttrDefault)] = &[
    ("cloud.provider", On),
    ("cloud.platform", On),
    ("k8s.cluster.name", Off),
];
pub const AZURE_ATTRIBUTES: &[(&str, AttrDefault)] = &[
    ("cloud.provider", On),
    ("cloud.platform", On),
    ("cloud.region", On),
    ("cloud.availability_zone", On),
    ("cloud.account.id", On),
    ("host.id", On),
    ("host.name", On),
    ("azure.vm.name", On),
    ("azure.vm.size", On),
    ("azure.vm.scaleset.name", On),
    ("azure.resourcegroup.name", On),
];

/// Where detectors look. [`Endpoints::real`] is what a running agent uses.
#[derive(Clone, Debug)]
pub struct Endpoints {
    pub ec2: String,
    pub gcp: String,
    pub azure: String,
    pub docker_socket: String,
    /// `https://host:port` of the Kubernetes API server, from the pod's environment.
    pub k8s_api: Option<String>,
    pub k8s_token_file: String,
    pub k8s_ca_file: String,
    pub machine_id_files: Vec<String>,
    /// Where `os.description` reads the OS release, first that exists (the OpenTelemetry
    /// Go SDK: `/etc/os-release`, then `/usr/lib/os-release`).
    pub os_release_files: Vec<String>,
    /// The `/etc` directory gopsutil reads `os.version` from (`$HOST_ETC` or `/etc`).
    pub etc_dir: String,
    /// `/proc/cpuinfo`, read by the system detector for `host.cpu.*`.
    pub cpuinfo_file: String,
    /// Environment variables seen by detectors; None: the process environment.
    pub env: Option<HashMap<String, String>>,
}

impl Endpoints {
    pub fn real() -> Endpoints {
        let docker_socket = std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
            .unwrap_or_else(|| "/var/run/docker.sock".to_string());
        let k8s_api = match (
            std::env::var("KUBERNETES_SERVICE_HOST"),
            std::env::var("KUBERNETES_SERVICE_PORT"),
        ) {
            (Ok(host), Ok(port)) if !host.is_empty() => {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host
                };
                Some(format!("https://{host}:{port}"))
            }
            _ => None,
        };
        Endpoints {
            ec2: "http://169.254.169.254".to_string(),
            gcp: "http://metadata.google.internal".to_string(),
            azure: "http://169.254.169.254".to_string(),
            docker_socket,
            k8s_api,
            k8s_token_file: "/var/run/secrets/kubernetes.io/serviceaccount/token".to_string(),
            k8s_ca_file: "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt".to_string(),
            machine_id_files: vec![
                "/etc/machine-id".to_string(),
                "/var/lib/dbus/machine-id".to_string(),
            ],
            os_release_files: vec![
                "/etc/os-release".to_string(),
                "/usr/lib/os-release".to_string(),
            ],
            etc_dir: std::env::var("HOST_ETC")
                .ok()
                .filter(|dir| !dir.is_empty())
                .unwrap_or_else(|| "/etc".to_string()),
            cpuinfo_file: "/proc/cpuinfo".to_string(),
            env: None,
        }
    }

    fn getenv(&self, name: &str) -> Option<String> {
        match &self.env {
            Some(env) => env.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
    }
}

type Found = Result<Vec<KeyValue>, String>;

/// Collects the enabled attributes of one detector.
struct Builder<'a> {
    toggles: &'a ResourceAttributes,
    known: &'static [(&'static str, AttrDefault)],
    out: Vec<KeyValue>,
}

impl<'a> Builder<'a> {
    fn new(toggles: &'a ResourceAttributes, known: &'static [(&'static str, AttrDefault)]) -> Self {
        Builder {
            toggles,
            known,
            out: Vec::new(),
        }
    }

    fn enabled(&self, name: &str) -> bool {
        match self.toggles.get(name) {
            Some(t) => t.enabled,
            None => self.known.iter().any(|(n, d)| *n == name && *d == On),
        }
    }

    /// Sets `name` when enabled and `value` is not empty.
    fn set(&mut self, name: &str, value: &str) {
        if !value.is_empty() {
            self.set_even_empty(name, value);
        }
    }

    /// Sets `name` when enabled, even to an empty string, as the Collector's generated
    /// `ResourceBuilder.Set*` do where the detector does not check the value.
    fn set_even_empty(&mut self, name: &str, value: &str) {
        if self.enabled(name) {
            self.out.push(string_attribute(name, value));
        }
    }
}

/// The schema URL the Collector's detectors (contrib v0.148.0, semantic conventions
/// v1.39.0) return with what they detect; the `env` detector returns none.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.39.0";

/// The schema URL a detector that succeeded with `found` reports: none for `env`, none for
/// `ecs` and `aks` off their platform (they succeed with nothing there, as the Collector's
/// do, which then return no schema URL either), else [`SCHEMA_URL`].
pub fn schema_url(detector: &str, found: &[KeyValue]) -> &'static str {
    match detector {
        "env" => "",
        "ecs" | "aks" if found.is_empty() => "",
        _ => SCHEMA_URL,
    }
}

pub(crate) fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..KeyValue::default()
    }
}

/// Runs every detector of `config` concurrently, each bounded by `timeout`; results in
/// `detectors` order.
pub async fn run_all(
    id: &str,
    config: &Config,
    endpoints: &Endpoints,
    timeout: Duration,
) -> Vec<(String, Found)> {
    let runs = config.detectors.iter().map(|name| async move {
        let work = run_one(name, config, endpoints, timeout);
        let result = match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within the timeout ({timeout:?})")),
        };
        (name.clone(), result)
    });
    let results = futures::future::join_all(runs).await;
    tracing::debug!(processor = %id, detectors = results.len(), "resource detectors finished");
    results
}

async fn run_one(name: &str, config: &Config, endpoints: &Endpoints, timeout: Duration) -> Found {
    match name {
        "env" => env_detector(endpoints),
        "system" => {
            let (system, endpoints) = (config.system.clone(), endpoints.clone());
            tokio::task::spawn_blocking(move || system_detector(&system, &endpoints))
                .await
                .map_err(|e| format!("system detector stopped: {e}"))?
        }
        "docker" => docker_detector(&config.docker.resource_attributes, endpoints).await,
        "k8snode" => k8snode_detector(&config.k8snode, endpoints, timeout).await,
        "ec2" => ec2_detector(&config.ec2.resource_attributes, endpoints, timeout).await,
        "ecs" => ecs_detector(&config.ecs.resource_attributes, endpoints, timeout).await,
        "gcp" => gcp_detector(&config.gcp.resource_attributes, endpoints, timeout).await,
        "azure" => azure_detector(&config.azure, endpoints, timeout).await,
        "aks" => aks_detector(&config.aks.resource_attributes, endpoints, timeout).await,
        other => Err(format!("unknown detector {other:?}")),
    }
}

// ---- env ----

/// `OTEL_RESOURCE_ATTRIBUTES` (or, when that is empty or unset, the deprecated
/// `OTEL_RESOURCE`, as the Collector falls back to it): `key=value` pairs separated by
/// commas; values are URL-query-unescaped (`%2C` is a comma, `+` a space).
fn env_detector(endpoints: &Endpoints) -> Found {
    let text = ["OTEL_RESOURCE_ATTRIBUTES", "OTEL_RESOURCE"]
        .iter()
        .filter_map(|name| endpoints.getenv(name))
        .map(|text| text.trim().to_string())
        .find(|text| !text.is_empty());
    match text {
        Some(text) => parse_resource_attributes(&text),
        None => Ok(Vec::new()),
    }
}

/// The Collector's `labelRegex`: a key of 1-256 ASCII characters (shortest first), `=`,
/// a value of 0-256 ASCII characters (shortest first), then a comma or the end; blanks
/// around key and value dropped. `\s` is Go's ASCII whitespace.
fn label_regex() -> &'static regex::Regex {
    static LABEL: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    LABEL.get_or_init(|| {
        regex::Regex::new(
            r"[\t\n\x0C\r ]*([\x00-\x7F]{1,256}?)[\t\n\x0C\r ]*=[\t\n\x0C\r ]*([\x00-\x7F]{0,256}?)[\t\n\x0C\r ]*(?:,|$)",
        )
        .expect("the label regex is valid")
    })
}

/// Parses `text` as the Collector's env detector does: successive matches of
/// [`label_regex`] must cover the whole text (anything between or after them is an
/// error), so a key may hold a comma (`a=1,b,c=2` gives `b,c`) and a trailing comma is
/// allowed. A later duplicate key replaces the earlier value.
pub(crate) fn parse_resource_attributes(text: &str) -> Found {
    let mut out: Vec<KeyValue> = Vec::new();
    let text = text.trim();
    if text.is_empty() {
        return Ok(out);
    }
    let mut end = 0;
    for captures in label_regex().captures_iter(text) {
        let whole = captures.get(0).expect("group 0 always matches");
        if whole.start() != end {
            return Err(format!(
                "invalid OTEL_RESOURCE_ATTRIBUTES, invalid text: {:?}",
                &text[end..whole.start()]
            ));
        }
        end = whole.end();
        let key = captures.get(1).map_or("", |m| m.as_str());
        let raw = captures.get(2).map_or("", |m| m.as_str());
        let value = query_unescape(raw).ok_or_else(|| {
            format!(
                "invalid OTEL_RESOURCE_ATTRIBUTES: the value of {key:?} is not valid percent-encoding"
            )
        })?;
        match out.iter_mut().find(|kv| kv.key == key) {
            Some(existing) => *existing = string_attribute(key, &value),
            None => out.push(string_attribute(key, &value)),
        }
    }
    if end == 0 {
        return Err(format!("invalid OTEL_RESOURCE_ATTRIBUTES: {text:?}"));
    }
    if end != text.len() {
        return Err(format!(
            "invalid OTEL_RESOURCE_ATTRIBUTES, invalid text: {:?}",
            &text[end..]
        ));
    }
    Ok(out)
}

/// Go's `url.QueryUnescape`: `%XX` escapes and `+` as space; None when malformed.
fn query_unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

// ---- system ----

/// The Collector's system detector: OS type, OS version, architecture, interfaces (when
/// `host.ip` or `host.mac` is on), OS description and CPU (when a `host.cpu.*` is on) are
/// read first and failing to read one fails the detector; then the first hostname source
/// that works names the host. Values are set even when empty (`os.version` on an OS
/// gopsutil does not know), as the Collector's resource builder does.
fn system_detector(config: &super::SystemConfig, endpoints: &Endpoints) -> Found {
    let mut b = Builder::new(&config.resource_attributes, SYSTEM_ATTRIBUTES);
    let default_sources = ["dns".to_string(), "os".to_string()];
    let sources: &[String] = if config.hostname_sources.is_empty() {
        &default_sources
    } else {
        &config.hostname_sources
    };
    let os_version = platform_version(&endpoints.etc_dir);
    let interfaces = if b.enabled("host.ip") || b.enabled("host.mac") {
        super::host::interfaces()?
    } else {
        Vec::new()
    };
    let os_release = endpoints
        .os_release_files
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .unwrap_or_default();
    let description = os_description(&os_release, uname().as_ref());
    if description.is_empty() {
        return Err("failed getting OS description: empty \"os.description\"".to_string());
    }
    let cpu = if CPU_ATTRIBUTES.iter().any(|name| b.enabled(name)) {
        let text = std::fs::read_to_string(&endpoints.cpuinfo_file)
            .map_err(|e| format!("cannot read {}: {e}", endpoints.cpuinfo_file))?;
        super::host::parse_cpuinfo(&text)?
    } else {
        None
    };
    let mut failures = Vec::new();
    let mut hostname = None;
    for source in sources {
        let found = match source.as_str() {
            "os" => os_hostname(),
            "dns" | "cname" => os_hostname().and_then(|h| canonical_name(&h)),
            "lookup" => os_hostname().and_then(|h| reverse_lookup(&h)),
            other => Err(format!("unknown hostname source {other:?}")),
        };
        match found {
            Ok(name) => {
                hostname = Some(name);
                break;
            }
            Err(e) => failures.push(format!("{source}: {e}")),
        }
    }
    let Some(hostname) = hostname else {
        return Err(format!(
            "all hostname sources failed ({})",
            failures.join("; ")
        ));
    };
    b.set_even_empty("host.name", &hostname);
    b.set_even_empty("os.type", os_type());
    b.set_even_empty("os.version", &os_version);
    if b.enabled("host.id") {
        match endpoints.machine_id_files.iter().find_map(|p| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        }) {
            Some(id) => b.set("host.id", &id),
            None => {
                tracing::warn!(files = ?endpoints.machine_id_files, "system detector: no machine id found; host.id not set")
            }
        }
    }
    b.set_even_empty("host.arch", host_arch());
    for (name, values) in [
        ("host.ip", super::host::host_ips(&interfaces)),
        ("host.mac", super::host::host_macs(&interfaces)),
    ] {
        if b.enabled(name) {
            b.out.push(array_attribute(name, &values));
        }
    }
    b.set_even_empty("os.description", &description);
    if let Some(cpu) = cpu {
        set_cpu_attributes(&mut b, &cpu);
    }
    Ok(b.out)
}

/// gopsutil's `PlatformInformation` version (the Collector's `os.version`), read from
/// `etc` as gopsutil reads `/etc` on Linux: the first release file that exists and is not
/// empty decides (Oracle, Slackware, Debian and its derivatives through `lsb-release`,
/// Red Hat-like, Gentoo, SUSE, Arch, Alpine), then `os-release`'s `VERSION_ID`, then
/// `lsb-release`. Empty when nothing says.
pub(crate) fn platform_version(etc: &str) -> String {
    let read = |name: &str| -> Option<String> {
        std::fs::read_to_string(format!("{etc}/{name}"))
            .ok()
            .filter(|text| !text.is_empty())
    };
    // gopsutil's ReadLines: lines without their ending; joined without separator.
    let joined = |text: &str| text.lines().collect::<String>().to_lowercase();
    let first_line = |text: &str| text.lines().next().unwrap_or("").to_string();
    let (lsb_id, lsb_release) = lsb_release(etc);
    if let Some(text) = read("oracle-release").or_else(|| read("enterprise-release")) {
        return redhatish_version(&joined(&text));
    }
    if let Some(text) = read("slackware-version") {
        return joined(&text).replacen("slackware ", "", 1);
    }
    if let Some(text) = read("debian_version") {
        return match lsb_id.as_str() {
            "Ubuntu" | "LinuxMint" | "Kylin" | "\"Cumulus Linux\"" | "uos" | "Deepin" => {
                lsb_release
            }
            _ => first_line(&text),
        };
    }
    for name in [
        "neokylin-release",
        "redhat-release",
        "system-release",
        "gentoo-release",
    ] {
        if let Some(text) = read(name) {
            return redhatish_version(&joined(&text));
        }
    }
    if let Some(text) = read("SuSE-release") {
        return suse_version(&text);
    }
    if read("arch-release").is_some() {
        return lsb_release;
    }
    if let Some(text) = read("alpine-release") {
        return first_line(&text);
    }
    if let Some(text) = read("os-release") {
        return text
            .lines()
            .rev()
            .find_map(|line| {
                let mut fields = line.split('=');
                let (key, value) = (fields.next()?, fields.next()?);
                (key == "VERSION_ID").then(|| trim_quotes(value).to_string())
            })
            .unwrap_or_default();
    }
    lsb_release
}

/// `DISTRIB_ID` and `DISTRIB_RELEASE` of `lsb-release`, quotes removed (gopsutil; it runs
/// `/usr/bin/lsb_release` when the file is missing, which oxcol does not).
fn lsb_release(etc: &str) -> (String, String) {
    let text = std::fs::read_to_string(format!("{etc}/lsb-release")).unwrap_or_default();
    let (mut id, mut release) = (String::new(), String::new());
    for line in text.lines() {
        let mut fields = line.split('=');
        let (Some(key), Some(value)) = (fields.next(), fields.next()) else {
            continue;
        };
        match key {
            "DISTRIB_ID" => id = value.replace('"', ""),
            "DISTRIB_RELEASE" => release = value.replace('"', ""),
            _ => {}
        }
    }
    (id, release)
}

/// gopsutil's `getRedhatishVersion` on the lower-cased, joined file.
fn redhatish_version(text: &str) -> String {
    if text.contains("rawhide") {
        return "rawhide".to_string();
    }
    static RELEASE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RELEASE
        .get_or_init(|| regex::Regex::new(r"release (\w[\d.]*)").expect("valid regex"))
        .captures(text)
        .and_then(|c| c.get(1))
        .map(|m| m.as_str().to_string())
        .unwrap_or_default()
}

/// gopsutil's `getSuseVersion`: `VERSION = x` then `.PATCHLEVEL`.
fn suse_version(text: &str) -> String {
    static VERSION: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    static PATCH: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let version_re =
        VERSION.get_or_init(|| regex::Regex::new(r"VERSION = ([\d.]+)").expect("valid regex"));
    let patch_re =
        PATCH.get_or_init(|| regex::Regex::new(r"PATCHLEVEL = (\d+)").expect("valid regex"));
    let mut version = String::new();
    for line in text.lines() {
        if let Some(c) = version_re.captures(line) {
            version = c[1].to_string();
        } else if let Some(c) = patch_re.captures(line) {
            version = format!("{version}.{}", &c[1]);
        }
    }
    version
}

/// gopsutil's `trimQuotes`: one pair of surrounding double quotes.
fn trim_quotes(text: &str) -> &str {
    if text.len() >= 2 && text.starts_with('"') && text.ends_with('"') {
        &text[1..text.len() - 1]
    } else {
        text
    }
}

/// The Collector's formats: family, model id and vendor as the file writes them (strings),
/// stepping as a decimal string, the L2 cache size as the number of KiB the file gives (an
/// int, although the convention says bytes: the Collector passes gopsutil's number on).
fn set_cpu_attributes(b: &mut Builder<'_>, cpu: &super::host::CpuInfo) {
    b.set_even_empty("host.cpu.vendor.id", &cpu.vendor_id);
    b.set_even_empty("host.cpu.family", &cpu.family);
    b.set("host.cpu.model.id", &cpu.model);
    b.set_even_empty("host.cpu.model.name", &cpu.model_name);
    b.set_even_empty("host.cpu.stepping", &cpu.stepping.to_string());
    if b.enabled("host.cpu.cache.l2.size") {
        b.out.push(KeyValue {
            key: "host.cpu.cache.l2.size".to_string(),
            value: Some(AnyValue {
                value: Some(any_value::Value::IntValue(i64::from(cpu.cache_size))),
            }),
            ..KeyValue::default()
        });
    }
}

fn os_type() -> &'static str {
    match std::env::consts::OS {
        "macos" => "darwin",
        "illumos" => "solaris",
        other => other,
    }
}

/// `host.arch` in semantic-convention values.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "arm" => "arm32",
        "powerpc" => "ppc32",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        other => other,
    }
}

/// `os.description` as the OpenTelemetry Go SDK builds it on Linux (what the Collector
/// uses): `<release> (<sysname> <nodename> <release> <version> <machine>)`, where
/// `<release>` is `NAME VERSION` (or `NAME VERSION_ID`) of the os-release file, else its
/// `PRETTY_NAME`; just the uname part when the file says nothing.
pub(crate) fn os_description(os_release: &str, uname: Option<&Uname>) -> String {
    let values = parse_os_release(os_release);
    let get = |key: &str| values.get(key).map(String::as_str).unwrap_or("");
    let version = match get("VERSION") {
        "" => get("VERSION_ID"),
        version => version,
    };
    let release = if !get("NAME").is_empty() && !version.is_empty() {
        format!("{} {version}", get("NAME"))
    } else {
        get("PRETTY_NAME").to_string()
    };
    let kernel = uname.map(|u| {
        format!(
            "{} {} {} {} {}",
            u.sysname, u.nodename, u.release, u.version, u.machine
        )
    });
    match (release.is_empty(), kernel) {
        (false, Some(k)) => format!("{release} ({k})"),
        (_, Some(k)) => k,
        // No uname: the Go SDK fails; oxcol keeps what the release file says.
        (_, None) => release,
    }
}

/// The Go SDK's os-release parser: `KEY=value` lines (blank and `#` lines skipped), keys
/// and values trimmed, one pair of matching quotes removed, then `\$ \" \' \\ \``
/// unescaped; a later key replaces an earlier one.
fn parse_os_release(text: &str) -> HashMap<String, String> {
    let mut values = HashMap::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.is_empty() {
            continue;
        }
        let value = value.trim();
        let bytes = value.as_bytes();
        let unquoted = if bytes.len() >= 2
            && (bytes[0] == b'"' || bytes[0] == b'\'')
            && bytes[0] == bytes[bytes.len() - 1]
        {
            &value[1..value.len() - 1]
        } else {
            value
        };
        values.insert(key.trim().to_string(), unescape_os_release(unquoted));
    }
    values
}

/// Go's `strings.NewReplacer` of the SDK: each `\x` pair for x in `$ " ' \ `` becomes x,
/// left to right, without rescanning.
fn unescape_os_release(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(&next) = chars.peek()
            && matches!(next, '$' | '"' | '\'' | '\\' | '`')
        {
            out.push(next);
            chars.next();
            continue;
        }
        out.push(c);
    }
    out
}

pub(crate) struct Uname {
    sysname: String,
    nodename: String,
    release: String,
    version: String,
    machine: String,
}

fn uname() -> Option<Uname> {
    // SAFETY: utsname is plain data; uname fills it with NUL-terminated strings.
    let mut buf: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut buf) } != 0 {
        return None;
    }
    let field = |chars: &[libc::c_char]| {
        let bytes: Vec<u8> = chars
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Some(Uname {
        sysname: field(&buf.sysname),
        nodename: field(&buf.nodename),
        release: field(&buf.release),
        version: field(&buf.version),
        machine: field(&buf.machine),
    })
}

fn os_hostname() -> Result<String, String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return Err(format!("gethostname: {}", std::io::Error::last_os_error()));
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    if name.is_empty() {
        Err("the OS hostname is empty".to_string())
    } else {
        Ok(name)
    }
}

/// The canonical name of `host` from the resolver (`/etc/hosts`, DNS): its FQDN.
fn canonical_name(host: &str) -> Result<String, String> {
    let c_host = std::ffi::CString::new(host).map_err(|_| "hostname has a NUL byte".to_string())?;
    // SAFETY: hints is zeroed plain data; getaddrinfo's result is freed with freeaddrinfo.
    unsafe {
        let mut hints: libc::addrinfo = std::mem::zeroed();
        hints.ai_flags = libc::AI_CANONNAME;
        hints.ai_family = libc::AF_UNSPEC;
        let mut result: *mut libc::addrinfo = std::ptr::null_mut();
        let rc = libc::getaddrinfo(c_host.as_ptr(), std::ptr::null(), &hints, &mut result);
        if rc != 0 || result.is_null() {
            return Err(format!("cannot resolve {host:?} (getaddrinfo error {rc})"));
        }
        let canon = (*result).ai_canonname;
        let name = if canon.is_null() {
            None
        } else {
            Some(
                std::ffi::CStr::from_ptr(canon)
                    .to_string_lossy()
                    .into_owned(),
            )
        };
        libc::freeaddrinfo(result);
        name.map(|n| n.trim_end_matches('.').to_string())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("no canonical name for {host:?}"))
    }
}

/// The name of the first address of `host`, by reverse lookup.
fn reverse_lookup(host: &str) -> Result<String, String> {
    let c_host = std::ffi::CString::new(host).map_err(|_| "hostname has a NUL byte".to_string())?;
    // SAFETY: as in canonical_name; getnameinfo writes at most the given buffer length.
    unsafe {
        let mut hints: libc::addrinfo = std::mem::zeroed();
        hints.ai_family = libc::AF_UNSPEC;
        let mut result: *mut libc::addrinfo = std::ptr::null_mut();
        let rc = libc::getaddrinfo(c_host.as_ptr(), std::ptr::null(), &hints, &mut result);
        if rc != 0 || result.is_null() {
            return Err(format!("cannot resolve {host:?} (getaddrinfo error {rc})"));
        }
        let mut name = [0 as libc::c_char; 1025];
        let rc = libc::getnameinfo(
            (*result).ai_addr,
            (*result).ai_addrlen,
            name.as_mut_ptr(),
            name.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        );
        libc::freeaddrinfo(result);
        if rc != 0 {
            return Err(format!(
                "reverse lookup of {host:?} failed (getnameinfo error {rc})"
            ));
        }
        Ok(std::ffi::CStr::from_ptr(name.as_ptr())
            .to_string_lossy()
            .trim_end_matches('.')
            .to_string())
    }
}

// ---- docker ----

#[derive(Deserialize)]
struct DockerInfo {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "OSType", default)]
    os_type: String,
}

async fn docker_detector(toggles: &ResourceAttributes, endpoints: &Endpoints) -> Found {
    let socket = &endpoints.docker_socket;
    if !std::path::Path::new(socket).exists() {
        return Err(format!("no Docker socket at {socket}"));
    }
    let text = unix_get(socket, "/info").await?.ok_text("Docker /info")?;
    let info: DockerInfo =
        serde_json::from_str(&text).map_err(|e| format!("Docker /info: unexpected answer: {e}"))?;
    let mut b = Builder::new(toggles, DOCKER_ATTRIBUTES);
    b.set("host.name", &info.name);
    b.set("os.type", &info.os_type.to_ascii_lowercase());
    Ok(b.out)
}

// ---- k8snode ----

async fn k8snode_detector(
    config: &super::K8sNodeConfig,
    endpoints: &Endpoints,
    timeout: Duration,
) -> Found {
    let node = endpoints.getenv(&config.node_from_env_var).filter(|n| !n.is_empty()).ok_or_else(|| {
        format!(
            "the node name is not set: set the environment variable {} (e.g. from the downward API, spec.nodeName)",
            config.node_from_env_var
        )
    })?;
    let api = endpoints
        .k8s_api
        .as_deref()
        .ok_or("not in a Kubernetes pod (KUBERNETES_SERVICE_HOST/PORT are not set), so the node uid cannot be read")?;
    let mut headers: Vec<(&str, String)> = Vec::new();
    let mut tls = oxcol_core::tls::TlsClientConfig::default();
    if config.auth_type == "serviceAccount" {
        let token = std::fs::read_to_string(&endpoints.k8s_token_file).map_err(|e| {
            format!(
                "cannot read the service account token {}: {e}",
                endpoints.k8s_token_file
            )
        })?;
        headers.push(("authorization", format!("Bearer {}", token.trim())));
        tls.ca_file = Some(endpoints.k8s_ca_file.clone());
    }
    let header_refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let uri = format!("{api}/api/v1/nodes/{node}");
    let text = request(Method::GET, &uri, &header_refs, Some(&tls), timeout)
        .await?
        .ok_text("Kubernetes API")?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("Kubernetes API: unexpected answer: {e}"))?;
    let uid = json
        .pointer("/metadata/uid")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let mut b = Builder::new(&config.resource_attributes, K8SNODE_ATTRIBUTES);
    b.set("k8s.node.name", &node);
    b.set("k8s.node.uid", uid);
    Ok(b.out)
}

// ---- ec2 ----

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Ec2Identity {
    region: String,
    availability_zone: String,
    account_id: String,
    instance_id: String,
    image_id: String,
    instance_type: String,
}

async fn ec2_detector(
    toggles: &ResourceAttributes,
    endpoints: &Endpoints,
    timeout: Duration,
) -> Found {
    let base = &endpoints.ec2;
    // IMDSv2: a session token first; IMDSv1 (no token) if the PUT is refused.
    let token = request(
        Method::PUT,
        &format!("{base}/latest/api/token"),
        &[("x-aws-ec2-metadata-token-ttl-seconds", "21600")],
        None,
        timeout,
    )
    .await
    .map_err(|e| format!("the EC2 metadata service did not answer: {e}"))?
    .ok_text("EC2 metadata token")
    .ok();
    let headers: Vec<(&str, &str)> = token
        .as_deref()
        .map(|t| vec![("x-aws-ec2-metadata-token", t)])
        .unwrap_or_default();
    let text = request(
        Method::GET,
        &format!("{base}/latest/dynamic/instance-identity/document"),
        &headers,
        None,
        timeout,
    )
    .await?
    .ok_text("EC2 instance identity document")?;
    let identity: Ec2Identity =
        serde_json::from_str(&text).map_err(|e| format!("EC2 instance identity document: {e}"))?;
    let hostname = request(
        Method::GET,
        &format!("{base}/latest/meta-data/hostname"),
        &headers,
        None,
        timeout,
    )
    .await?
    .ok_text("EC2 hostname")?;
    let mut b = Builder::new(toggles, EC2_ATTRIBUTES);
    b.set("cloud.provider", "aws");
    b.set("cloud.platform", "aws_ec2");
    b.set("cloud.region", &identity.region);
    b.set("cloud.account.id", &identity.account_id);
    b.set("cloud.availability_zone", &identity.availability_zone);
    b.set("host.id", &identity.instance_id);
    b.set("host.image.id", &identity.image_id);
    b.set("host.type", &identity.instance_type);
    b.set("host.name", hostname.trim());
    Ok(b.out)
}

// ---- ecs ----

#[derive(Deserialize, Default)]
#[serde(default)]
struct EcsTask {
    #[serde(rename = "TaskARN")]
    task_arn: String,
    #[serde(rename = "Family")]
    family: String,
    #[serde(rename = "Revision")]
    revision: String,
    #[serde(rename = "Cluster")]
    cluster: String,
    #[serde(rename = "AvailabilityZone")]
    availability_zone: String,
    #[serde(rename = "LaunchType")]
    launch_type: String,
    #[serde(rename = "Containers")]
    containers: Vec<EcsContainer>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct EcsContainer {
    #[serde(rename = "DockerId")]
    docker_id: String,
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "KnownStatus")]
    known_status: String,
    #[serde(rename = "LogDriver")]
    log_driver: String,
    #[serde(rename = "LogOptions")]
    log_options: EcsLogOptions,
}

#[derive(Deserialize, Default, PartialEq)]
#[serde(default)]
struct EcsLogOptions {
    #[serde(rename = "awslogs-group")]
    group: String,
    #[serde(rename = "awslogs-region")]
    region: String,
    #[serde(rename = "awslogs-stream")]
    stream: String,
}

/// ECS task metadata endpoint (v4, else v3), from the task's environment. Outside ECS
/// it detects nothing, successfully, as the Collector's detector does.
async fn ecs_detector(
    toggles: &ResourceAttributes,
    endpoints: &Endpoints,
    timeout: Duration,
) -> Found {
    let Some(base) = endpoints
        .getenv("ECS_CONTAINER_METADATA_URI_V4")
        .or_else(|| endpoints.getenv("ECS_CONTAINER_METADATA_URI"))
        .filter(|u| !u.is_empty())
    else {
        return Ok(Vec::new());
    };
    let text = request(Method::GET, &format!("{base}/task"), &[], None, timeout)
        .await
        .map_err(|e| format!("unable to fetch task metadata: {e}"))?
        .ok_text("ECS task metadata")?;
    let task: EcsTask =
        serde_json::from_str(&text).map_err(|e| format!("ECS task metadata: {e}"))?;
    let mut b = Builder::new(toggles, ECS_ATTRIBUTES);
    b.set("cloud.provider", "aws");
    b.set("cloud.platform", "aws_ecs");
    b.set("aws.ecs.task.arn", &task.task_arn);
    b.set("aws.ecs.task.family", &task.family);
    b.set("aws.ecs.task.revision", &task.revision);
    // arn:aws:ecs:REGION:ACCOUNT:task/[CLUSTER/]ID
    let parts: Vec<&str> = task.task_arn.split(':').collect();
    let (region, account, task_id) = match parts.as_slice() {
        [_, _, _, region, account, rest, ..] => (
            *region,
            *account,
            rest.rsplit('/').next().unwrap_or_default(),
        ),
        _ => ("", "", ""),
    };
    b.set("cloud.account.id", account);
    b.set("cloud.region", region);
    b.set("aws.ecs.task.id", task_id);
    let cluster_arn = if task.cluster.contains(':') {
        task.cluster.clone()
    } else {
        format!("arn:aws:ecs:{region}:{account}:cluster/{}", task.cluster)
    };
    b.set("aws.ecs.cluster.arn", &cluster_arn);
    b.set("cloud.availability_zone", &task.availability_zone);
    match task.launch_type.to_ascii_lowercase().as_str() {
        "ec2" => b.set("aws.ecs.launchtype", "ec2"),
        "fargate" => b.set("aws.ecs.launchtype", "fargate"),
        _ => {}
    }
    // Our own container, to leave it out of the log groups (the agent runs as a sidecar).
    let own = request(Method::GET, &base, &[], None, timeout)
        .await?
        .ok_text("ECS container metadata")?;
    let own: EcsContainer =
        serde_json::from_str(&own).map_err(|e| format!("ECS container metadata: {e}"))?;
    let logs: Vec<&EcsLogOptions> = task
        .containers
        .iter()
        .filter(|c| {
            c.kind == "NORMAL"
                && c.known_status == "RUNNING"
                && c.log_driver == "awslogs"
                && c.docker_id != own.docker_id
                && c.log_options != EcsLogOptions::default()
        })
        .map(|c| &c.log_options)
        .collect();
    if !logs.is_empty() {
        let group_arn = |l: &EcsLogOptions| {
            format!("arn:aws:logs:{}:{account}:log-group:{}", l.region, l.group)
        };
        let lists: [(&str, Vec<String>); 4] = [
            (
                "aws.log.group.names",
                logs.iter().map(|l| l.group.clone()).collect(),
            ),
            (
                "aws.log.group.arns",
                logs.iter().map(|l| group_arn(l)).collect(),
            ),
            (
                "aws.log.stream.names",
                logs.iter().map(|l| l.stream.clone()).collect(),
            ),
            (
                "aws.log.stream.arns",
                logs.iter()
                    .map(|l| format!("{}:log-stream:{}", group_arn(l), l.stream))
                    .collect(),
            ),
        ];
        for (name, values) in lists {
            if b.enabled(name) {
                b.out.push(array_attribute(name, &values));
            }
        }
    }
    Ok(b.out)
}

fn array_attribute(key: &str, values: &[String]) -> KeyValue {
    let values = values
        .iter()
        .map(|v| AnyValue {
            value: Some(any_value::Value::StringValue(v.clone())),
        })
        .collect();
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue { values })),
        }),
        ..KeyValue::default()
    }
}

// ---- gcp ----

async fn gcp_detector(
    toggles: &ResourceAttributes,
    endpoints: &Endpoints,
    timeout: Duration,
) -> Found {
    let base = &endpoints.gcp;
    let get = |path: &'static str| async move {
        request(
            Method::GET,
            &format!("{base}/computeMetadata/v1/{path}"),
            &[("metadata-flavor", "Google")],
            None,
            timeout,
        )
        .await?
        .ok_text(path)
        .map(|s| s.trim().to_string())
    };
    let project = get("project/project-id")
        .await
        .map_err(|e| format!("not on Google Cloud (metadata server: {e})"))?;
    let mut b = Builder::new(toggles, GCP_ATTRIBUTES);
    b.set("cloud.provider", "gcp");
    b.set("cloud.account.id", &project);
    if endpoints
        .getenv("KUBERNETES_SERVICE_HOST")
        .is_some_and(|h| !h.is_empty())
    {
        // GKE: the cluster's name and location come from the node's instance attributes.
        b.set("cloud.platform", "gcp_kubernetes_engine");
        let location = get("instance/attributes/cluster-location").await?;
        // "us-central1-c" is a zone (zonal cluster), "us-central1" a region.
        match location.matches('-').count() {
            2 => b.set("cloud.availability_zone", &location),
            1 => b.set("cloud.region", &location),
            _ => return Err(format!("unrecognized GKE cluster location {location:?}")),
        }
        b.set(
            "k8s.cluster.name",
            &get("instance/attributes/cluster-name").await?,
        );
        b.set("host.id", &get("instance/id").await?);
        // Not available with workload identity: then left out.
        if let Ok(name) = get("instance/name").await {
            b.set("host.name", &name);
        }
        return Ok(b.out);
    }
    b.set("cloud.platform", "gcp_compute_engine");
    let zone_path = get("instance/zone").await?;
    let zone = last_segment(&zone_path);
    let region = zone.rsplit_once('-').map(|(r, _)| r).unwrap_or_default();
    let (id, name, machine_type) = (
        get("instance/id").await?,
        get("instance/name").await?,
        get("instance/machine-type").await?,
    );
    b.set("cloud.region", region);
    b.set("cloud.availability_zone", zone);
    b.set("host.id", &id);
    b.set("host.name", &name);
    b.set("host.type", last_segment(&machine_type));
    Ok(b.out)
}

fn last_segment(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

// ---- azure ----

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AzureCompute {
    location: String,
    name: String,
    vm_id: String,
    vm_size: String,
    subscription_id: String,
    resource_group_name: String,
    vm_scale_set_name: String,
    zone: String,
    tags_list: Vec<AzureTag>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AzureTag {
    name: String,
    value: String,
}

/// The Azure instance metadata of this VM.
async fn azure_compute(endpoints: &Endpoints, timeout: Duration) -> Result<AzureCompute, String> {
    let uri = format!(
        "{}/metadata/instance/compute?api-version=2020-09-01&format=json",
        endpoints.azure
    );
    let text = request(Method::GET, &uri, &[("metadata", "true")], None, timeout)
        .await
        .map_err(|e| format!("not on an Azure VM (instance metadata service: {e})"))?
        .ok_text("Azure instance metadata")?;
    serde_json::from_str(&text).map_err(|e| format!("Azure instance metadata: {e}"))
}

/// AKS: in a pod (`KUBERNETES_SERVICE_HOST` set) on an Azure VM. Elsewhere it detects
/// nothing, successfully, as the Collector's detector does.
async fn aks_detector(
    toggles: &ResourceAttributes,
    endpoints: &Endpoints,
    timeout: Duration,
) -> Found {
    if endpoints
        .getenv("KUBERNETES_SERVICE_HOST")
        .is_none_or(|h| h.is_empty())
    {
        return Ok(Vec::new());
    }
    let Ok(compute) = azure_compute(endpoints, timeout).await else {
        return Ok(Vec::new());
    };
    let mut b = Builder::new(toggles, AKS_ATTRIBUTES);
    b.set("cloud.provider", "azure");
    b.set("cloud.platform", "azure_aks");
    // The node resource group is named MC_<group>_<cluster>_<location>.
    let parts: Vec<&str> = compute.resource_group_name.split('_').collect();
    if parts.len() >= 4 && parts[0].eq_ignore_ascii_case("mc") {
        b.set("k8s.cluster.name", parts[parts.len() - 2]);
    }
    Ok(b.out)
}

async fn azure_detector(
    config: &super::AzureConfig,
    endpoints: &Endpoints,
    timeout: Duration,
) -> Found {
    let compute = azure_compute(endpoints, timeout).await?;
    let mut b = Builder::new(&config.resource_attributes, AZURE_ATTRIBUTES);
    b.set("cloud.provider", "azure");
    b.set("cloud.platform", "azure_vm");
    b.set("host.name", &compute.name);
    b.set("cloud.region", &compute.location);
    b.set("cloud.availability_zone", &compute.zone);
    b.set("host.id", &compute.vm_id);
    b.set("cloud.account.id", &compute.subscription_id);
    b.set("azure.vm.name", &compute.name);
    b.set("azure.vm.size", &compute.vm_size);
    b.set("azure.vm.scaleset.name", &compute.vm_scale_set_name);
    b.set("azure.resourcegroup.name", &compute.resource_group_name);
    let patterns: Vec<regex::Regex> = config
        .tags
        .iter()
        .filter_map(|p| regex::Regex::new(p).ok())
        .collect();
    for tag in &compute.tags_list {
        if patterns.iter().any(|re| re.is_match(&tag.name)) {
            b.out.push(string_attribute(
                &format!("azure.tag.{}", tag.name),
                &tag.value,
            ));
        }
    }
    Ok(b.out)
}
