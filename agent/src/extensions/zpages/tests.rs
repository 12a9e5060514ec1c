use std::sync::Arc;
use std::time::Duration;

use oxcol_core::Signal;
use oxcol_core::telemetry::{ExporterCounters, ProcessorCounters, ReceiverCounters, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::*;

const LIMIT: Duration = Duration::from_secs(5);

fn settings_from(yaml: &str) -> Settings {
    let source = oxcol_config::Source::Text {
        name: "test".to_string(),
        text: yaml.to_string(),
    };
    let root = oxcol_config::load(&[source], &[], &|_| None).expect("the YAML loads");
    let (settings, errors) = crate::settings::read(&root);
    assert!(errors.is_empty(), "{errors:?}");
    settings
}

/// `GET path` over HTTP/1.0 with extra header lines; (status, body), bounded.
async fn get(addr: SocketAddr, path: &str, headers: &str) -> (u16, String) {
    let (status, _, body) = get_with_head(addr, path, headers).await;
    (status, body)
}

/// As [`get`], also returning the response head (status line and headers).
async fn get_with_head(addr: SocketAddr, path: &str, headers: &str) -> (u16, String, String) {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{headers}\r\n");
        stream.write_all(request.as_bytes()).await.expect("sends");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("reads");
        String::from_utf8_lossy(&response).into_owned()
    };
    let text = tokio::time::timeout(LIMIT, exchange)
        .await
        .expect("answers within the limit");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, head.to_string(), body.to_string())
}

struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(
        config: &Config,
        topology: Topology,
        auth: Option<Arc<ServerAuthenticator>>,
        registry: &Arc<Registry>,
    ) -> Server {
        let stop = CancellationToken::new();
        let (addr, task) = serve(
            "zpages",
            config,
            topology,
            auth,
            registry,
            None,
            stop.clone(),
        )
        .await
        .expect("the extension starts");
        Server { addr, stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(LIMIT, self.task)
            .await
            .expect("stops within the limit")
            .expect("the task ends cleanly");
    }
}

fn local() -> Config {
    Config {
        endpoint: "127.0.0.1:0".to_string(),
        ..Config::default()
    }
}

const YAML: &str = "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:4317
processors:
  batch:
exporters:
  debug/<b>x:
connectors:
  forward:
extensions:
  zpages:
  health_check:
service:
  extensions: [zpages]
  pipelines:
    traces/in:
      receivers: [otlp]
      processors: [batch]
      exporters: [forward]
    traces/out:
      receivers: [forward]
      exporters: [debug/<b>x]
";

#[test]
fn config_defaults_and_the_collectors_keys() {
    let config: Config =
        serde_json::from_value(serde_json::json!({})).expect("empty is all defaults");
    assert_eq!(config.endpoint, "127.0.0.1:55679");
    assert!(!config.expvar.enabled);
    assert!(config.validate().is_empty());
    let config: Config = serde_json::from_value(serde_json::json!({"endpoint": "localhost:55679", "expvar": {"enabled": true}, "auth": {"authenticator": "bearertokenauth"}})).expect("the Collector's keys");
    assert!(config.expvar.enabled);
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    assert!(
        serde_json::from_value::<Config>(serde_json::json!({"endpont": "x:1"})).is_err(),
        "unknown keys are refused"
    );
    assert!(
        serde_json::from_value::<Config>(serde_json::json!({"expvar": {"on": true}})).is_err(),
        "unknown expvar keys are refused"
    );
}

#[test]
fn validate_reports_every_problem() {
    let config = Config {
        endpoint: String::new(),
        auth: Some(AuthSettings {
            authenticator: String::new(),
        }),
        ..Config::default()
    };
    let problems = config.validate();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("\"endpoint\" is required"),
        "{problems:?}"
    );
    assert!(
        problems[1].contains("auth.authenticator is required"),
        "{problems:?}"
    );
    let config = Config {
        endpoint: "127.0.0.1".to_string(),
        ..Config::default()
    };
    assert!(
        config.validate()[0].contains("no port"),
        "{:?}",
        config.validate()
    );
}

#[test]
fn topology_marks_connectors_and_enabled_extensions() {
    let topology = Topology::new(&settings_from(YAML));
    let ids: Vec<&str> = topology.pipelines.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["traces/in", "traces/out"]);
    assert_eq!(
        topology.pipelines[0].exporters[0],
        ComponentView {
            id: "forward".into(),
            type_name: "forward".into(),
            role: Role::Connector
        }
    );
    assert_eq!(topology.pipelines[1].receivers[0].role, Role::Connector);
    assert_eq!(
        topology.pipelines[0].receivers[0],
        ComponentView {
            id: "otlp".into(),
            type_name: "otlp".into(),
            role: Role::Receiver
        }
    );
    let extensions: Vec<(&str, bool)> = topology
        .extensions
        .iter()
        .map(|e| (e.id.as_str(), e.enabled))
        .collect();
    assert_eq!(extensions, [("zpages", true), ("health_check", false)]);
}

#[tokio::test]
async fn pages_show_pipelines_components_counts_and_escape_ids() {
    let registry = Registry::new();
    ReceiverCounters::new(&registry, "otlp", "grpc", Signal::Traces)
        .accepted
        .add(7);
    ReceiverCounters::new(&registry, "otlp", "http", Signal::Traces)
        .accepted
        .add(2);
    ProcessorCounters::new(&registry, "batch", "traces/in", Signal::Traces)
        .incoming
        .add(9);
    let exporter = ExporterCounters::new(&registry, "debug/<b>x", Signal::Traces);
    exporter.sent.add(5);
    exporter.queue_capacity.set(1000);
    let server = Server::start(
        &local(),
        Topology::new(&settings_from(YAML)),
        None,
        &registry,
    )
    .await;

    let (status, page) = get(server.addr, "/debug/pipelinez", "").await;
    assert_eq!(status, 200);
    for wanted in [
        "Pipeline <code>traces/in</code> (traces)",
        "Pipeline <code>traces/out</code> (traces)",
        "<code>otlp</code>",
        "<code>forward</code>",
        "accepted: 9, refused: 0",
        "incoming: 9",
        "sent: 5",
        "queue capacity: 1000",
        "debug/&lt;b&gt;x",
        "connector",
    ] {
        assert!(page.contains(wanted), "pipelinez lacks {wanted:?}:\n{page}");
    }
    assert!(!page.contains("<b>x"), "ids are escaped:\n{page}");

    let (status, page) = get(server.addr, "/debug/servicez", "").await;
    assert_eq!(status, 200);
    for wanted in [
        env!("CARGO_PKG_VERSION"),
        "Start time",
        "Uptime",
        "href=\"/debug/pipelinez\"",
        "href=\"/debug/extensionz\"",
        "href=\"/debug/featurez\"",
    ] {
        assert!(page.contains(wanted), "servicez lacks {wanted:?}:\n{page}");
    }
    assert!(
        !page.contains("/debug/expvarz"),
        "no expvar link when disabled"
    );

    let (_, page) = get(server.addr, "/debug/extensionz", "").await;
    assert!(
        page.contains("<td><code>zpages</code></td><td>zpages</td><td>running</td>"),
        "{page}"
    );
    assert!(
        page.contains("<td><code>health_check</code></td><td>health_check</td><td>not started"),
        "{page}"
    );
    let (_, page) = get(server.addr, "/debug/featurez", "").await;
    assert!(
        page.contains("no feature gates") && page.contains("<th>ID</th>"),
        "{page}"
    );
    let (_, page) = get(server.addr, "/debug/tracez", "").await;
    assert!(page.contains("records no spans"), "{page}");

    assert_eq!(
        get(server.addr, "/debug/rpcz", "").await.0,
        404,
        "rpcz is gone from the Collector too"
    );
    assert_eq!(
        get(server.addr, "/debug/expvarz", "").await.0,
        404,
        "expvarz only when enabled"
    );

    // Counts are live: read at each request.
    ReceiverCounters::new(&registry, "otlp", "grpc", Signal::Traces)
        .accepted
        .add(100);
    let (_, page) = get(server.addr, "/debug/pipelinez", "").await;
    assert!(page.contains("accepted: 109"), "{page}");
    server.stop().await;
}

#[tokio::test]
async fn status_page_and_its_json_are_served_with_the_picture() {
    let registry = Registry::new();
    ReceiverCounters::new(&registry, "otlp", "grpc", Signal::Traces)
        .accepted
        .add(7);
    let stop = CancellationToken::new();
    let (addr, task) = serve(
        "zpages",
        &local(),
        Topology::new(&settings_from(YAML)),
        None,
        &registry,
        Some(crate::picture::PictureHandle::default()),
        stop.clone(),
    )
    .await
    .expect("the extension starts");
    let server = Server { addr, stop, task };

    let (status, page) = get(server.addr, "/", "").await;
    assert_eq!(status, 200);
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    assert!(page.contains("data-api=\"/api/status\"") && page.contains("<script>"));
    let (_, servicez) = get(server.addr, "/debug/servicez", "").await;
    assert!(
        servicez.contains("href=\"/\""),
        "the other pages link to it"
    );

    let (status, body) = get(server.addr, status::API_STATUS, "").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["pipelines"][0]["id"], "traces/in");
    assert_eq!(
        json["pipelines"][0]["receivers"][0]["counts"][0]["value"],
        7.0
    );
    assert!(
        json["picture"]["cgroups"].is_array(),
        "the picture is in: {json}"
    );
    server.stop().await;
}

#[tokio::test]
async fn expvarz_serves_json_when_enabled() {
    let registry = Registry::new();
    let config = Config {
        expvar: ExpvarConfig { enabled: true },
        ..local()
    };
    let server = Server::start(&config, Topology::default(), None, &registry).await;
    let (status, body) = get(server.addr, EXPVARZ, "").await;
    assert_eq!(status, 200);
    let value: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert!(
        value["cmdline"].as_array().is_some_and(|a| !a.is_empty()),
        "{value}"
    );
    assert_eq!(value["oxcol"]["version"], env!("CARGO_PKG_VERSION"));
    let (_, page) = get(server.addr, "/debug/servicez", "").await;
    assert!(page.contains("href=\"/debug/expvarz\""), "{page}");
    server.stop().await;
}

#[tokio::test]
async fn auth_refuses_every_page_without_the_token() {
    let registry = Registry::new();
    let bearer = crate::extensions::bearertokenauth::Config {
        token: Some("t0k3n".to_string()),
        ..Default::default()
    };
    let auth = Arc::new(bearer.server_authenticator().expect("an authenticator"));
    let config = Config {
        expvar: ExpvarConfig { enabled: true },
        ..local()
    };
    let server = Server::start(&config, Topology::default(), Some(auth), &registry).await;
    for page in PAGES
        .iter()
        .map(|p| p.path)
        .chain([EXPVARZ, status::API_STATUS])
    {
        let (status, head, body) = get_with_head(server.addr, page, "").await;
        assert_eq!(status, 401, "{page} without a token");
        assert!(
            head.to_ascii_lowercase()
                .contains("www-authenticate: basic realm=\"oxcol\", bearer"),
            "{page}: a challenge a browser can answer: {head}"
        );
        assert!(body.is_empty(), "{page} shows nothing: {body}");
        assert_eq!(
            get(server.addr, page, "Authorization: Bearer wrong\r\n")
                .await
                .0,
            401,
            "{page} with a wrong token"
        );
        assert_eq!(
            get(server.addr, page, "Authorization: Bearer t0k3n\r\n")
                .await
                .0,
            200,
            "{page} with the token"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_taken_port_is_an_error_naming_the_extension() {
    let registry = Registry::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let port = taken.local_addr().expect("an address").port();
    let config = Config {
        endpoint: format!("127.0.0.1:{port}"),
        ..Config::default()
    };
    let error = serve(
        "zpages/debug",
        &config,
        Topology::default(),
        None,
        &registry,
        None,
        CancellationToken::new(),
    )
    .await
    .expect_err("refused");
    assert!(
        error.contains("extension zpages/debug") && error.contains("cannot listen"),
        "{error}"
    );
}
