//! End to end over real files: two `--config` files, a `--set`, env expansion, then a
//! typed decode whose errors must name the file that holds the offending line.

use std::path::PathBuf;

use oxcol_config::{Location, Source, decode, load, to_yaml_redacted};
use serde::Deserialize;

fn fixture(name: &str) -> Source {
    Source::File(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
}

fn env(name: &str) -> Option<String> {
    match name {
        "BACKEND_TOKEN" => Some("t0ps3cret".into()),
        "QUEUE_SIZE" => Some("5000".into()),
        _ => None,
    }
}

#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "only the decode errors are under test")]
#[serde(deny_unknown_fields)]
struct Queue {
    queue_size: u16,
    num_consumers: u16,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "only the decode errors are under test")]
#[serde(deny_unknown_fields)]
struct OtlpExporter {
    endpoint: String,
    compression: String,
    #[serde(default)]
    headers: std::collections::HashMap<String, String>,
    sending_queue: Option<Queue>,
}

#[test]
fn two_files_a_set_and_env_expansion() {
    let sets = vec!["exporters::otlp/backend::endpoint=other:4317".to_owned()];
    let root = load(
        &[fixture("base.yaml"), fixture("override.yaml")],
        &sets,
        &env,
    )
    .unwrap();
    let backend = root.get("exporters").unwrap().get("otlp/backend").unwrap();
    assert_eq!(backend.get("compression").unwrap().as_str(), Some("zstd"));
    assert_eq!(
        backend.get("endpoint").unwrap().location,
        Location::new("--set", 1, 35)
    );
    let queue_size = backend
        .get("sending_queue")
        .unwrap()
        .get("queue_size")
        .unwrap();
    assert_eq!(queue_size.as_i64(), Some(5000));
    assert!(queue_size.location.source.ends_with("override.yaml"));
    let http = root
        .get("receivers")
        .unwrap()
        .get("otlp")
        .unwrap()
        .get("protocols")
        .unwrap()
        .get("http")
        .unwrap();
    assert_eq!(
        http.get("endpoint").unwrap().as_str(),
        Some("127.0.0.1:4318")
    );
    assert_eq!(
        backend
            .get("headers")
            .unwrap()
            .get("authorization")
            .unwrap()
            .as_str(),
        Some("Bearer t0ps3cret")
    );

    // The typo `num_consumer` lives in the second file: the error says so, at the key.
    let error = decode::<OtlpExporter>(backend).unwrap_err();
    let location = error.location.clone().unwrap();
    assert!(
        location.source.ends_with("tests/fixtures/override.yaml"),
        "{error}"
    );
    assert_eq!((location.line, location.column), (7, 7), "{error}");
    assert!(
        error.message.contains("unknown field `num_consumer`"),
        "{error}"
    );

    let printed = to_yaml_redacted(&root);
    assert!(!printed.contains("t0ps3cret"), "{printed}");
    assert!(printed.contains("compression: zstd"), "{printed}");
}
