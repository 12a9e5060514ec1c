//! The `tail_sampling` processor in the real `oxcol` binary: traces sent over OTLP gRPC,
//! with their spans split over two requests, go through `tail_sampling` with
//! `decision_wait: 1s` to a recording sink. Exactly the traces that a `status_code` or a
//! `latency` policy selects must arrive, each whole and once. Late spans must follow the
//! decision.
//!
//! Needs `target/debug/oxcol` (`cargo build -p oxcol`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, status::StatusCode,
};
use oxcol_core::Signal;
use oxcol_core::grpc::RawCodec;
use oxcol_integration::sink::{self, RunningSink, SinkConfig};
use prost::Message;

const TEST_LIMIT: Duration = Duration::from_secs(60);
const TRACES: u8 = 24;

/// What trace `n` is made to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Its last span (sent in the second request) has status ERROR.
    ErrorAtTheEnd,
    /// 800 ms from first start to last end.
    Slow,
    /// 300 ms, all OK.
    Fast,
    /// 450 ms, just under the 500 ms threshold.
    AlmostSlow,
}

fn kind(n: u8) -> Kind {
    match n % 4 {
        0 => Kind::ErrorAtTheEnd,
        1 => Kind::Slow,
        2 => Kind::Fast,
        _ => Kind::AlmostSlow,
    }
}

fn kept(n: u8) -> bool {
    matches!(kind(n), Kind::ErrorAtTheEnd | Kind::Slow)
}

fn trace_id(n: u8) -> Vec<u8> {
    let mut id = vec![0xab; 16];
    id[15] = n;
    id
}

/// Span `index` (0..3) of trace `n`; the third span ends the trace.
fn span(n: u8, index: u8) -> Span {
    let base = 1_700_000_000_000_000_000u64 + u64::from(n) * 10_000_000_000;
    let length_ms = match kind(n) {
        Kind::ErrorAtTheEnd | Kind::Fast => 300,
        Kind::Slow => 800,
        Kind::AlmostSlow => 450,
    };
    let (start_ms, end_ms) = match index {
        0 => (0, length_ms),
        1 => (10, 100),
        _ => (100, 200),
    };
    let code = if index == 2 && kind(n) == Kind::ErrorAtTheEnd {
        StatusCode::Error
    } else {
        StatusCode::Ok
    };
    Span {
        trace_id: trace_id(n),
        span_id: vec![n, index, 1, 1, 1, 1, 1, 1],
        name: format!("trace{n}-span{index}"),
        start_time_unix_nano: base + start_ms * 1_000_000,
        end_time_unix_nano: base + end_ms * 1_000_000,
        status: Some(Status {
            code: code as i32,
            message: String::new(),
        }),
        ..Span::default()
    }
}

fn request(spans: Vec<Span>) -> Bytes {
    let service = KeyValue {
        key: "service.name".into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue("checkout".into())),
        }),
        ..KeyValue::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![service],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
    .into()
}

async fn send(oxcol: &Oxcol, body: Bytes) {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", oxcol.grpc_endpoint()))
            .expect("a valid endpoint")
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .connect()
            .await
            .expect("connects to oxcol");
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.expect("the channel is ready");
    let path = http::uri::PathAndQuery::from_static(Signal::Traces.grpc_path());
    client
        .unary(
            tonic::Request::new(body),
            path,
            RawCodec::<Bytes>::default(),
        )
        .await
        .unwrap_or_else(|status| panic!("oxcol refused spans: {status:?}\n{}", oxcol.log()));
}

/// Every span the sink recorded, as (name, how many times).
fn recorded(dir: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        let request = ExportTraceServiceRequest::decode(bytes.as_slice())
            .expect("the sink recorded a traces request");
        for span in request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            *out.entry(span.name.clone()).or_default() += 1;
        }
    }
    out
}

async fn wait_for_spans(sink: &RunningSink, at_least: u64) {
    wait_sink(sink, Duration::from_secs(15), |s| {
        s.traces.items >= at_least
    })
    .await;
    // Anything extra (a duplicate, a wrongly kept trace) would come with the same tick.
    tokio::time::sleep(Duration::from_millis(2500)).await;
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_selected_traces_arrive_whole_and_once() {
    bounded(TEST_LIMIT, async {
        let scratch = Scratch(std::env::temp_dir().join(format!("oxcol-tail-sampling-{}", std::process::id())));
        let record = scratch.0.join("sink");
        let sink = sink::start(SinkConfig { record_dir: Some(record.clone()), ..SinkConfig::default() })
            .await
            .expect("starts the sink");
        let components = format!(
            "processors:
  tail_sampling:
    decision_wait: 1s
    policies:
      - {{name: errors, type: status_code, status_code: {{status_codes: [ERROR]}}}}
      - {{name: slow, type: latency, latency: {{threshold_ms: 500}}}}
exporters:
{}",
            otlp_exporter("otlp", &sink, "")
        );
        let pipelines = "    traces:\n      receivers: [otlp]\n      processors: [tail_sampling]\n      exporters: [otlp]\n";
        let oxcol = Oxcol::start("", &components, pipelines).await;

        // Spans 0 and 1 of every trace first, span 2 (with the errors) 300 ms later:
        // both within the decision wait.
        send(&oxcol, request((0..TRACES).flat_map(|n| [span(n, 0), span(n, 1)]).collect())).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        send(&oxcol, request((0..TRACES).map(|n| span(n, 2)).collect())).await;

        let kept_traces: Vec<u8> = (0..TRACES).filter(|n| kept(*n)).collect();
        let expected: BTreeMap<String, usize> =
            kept_traces.iter().flat_map(|n| (0..3).map(move |i| (format!("trace{n}-span{i}"), 1))).collect();
        wait_for_spans(&sink, expected.len() as u64).await;
        let got = recorded(&record);
        assert_eq!(got, expected, "exactly the error and slow traces, every span once\n{}", oxcol.log());

        // Late spans follow the decision: one for a kept trace passes, one for a dropped
        // trace (even with an error) does not.
        let mut late_kept = span(1, 3);
        late_kept.name = "late-kept".into();
        let mut late_dropped = span(2, 3);
        late_dropped.name = "late-dropped".into();
        late_dropped.status = Some(Status { code: StatusCode::Error as i32, message: String::new() });
        send(&oxcol, request(vec![late_kept, late_dropped])).await;
        wait_for_spans(&sink, expected.len() as u64 + 1).await;
        let got = recorded(&record);
        assert_eq!(got.get("late-kept"), Some(&1), "{got:?}");
        assert_eq!(got.get("late-dropped"), None, "{got:?}");
        assert_eq!(got.len(), expected.len() + 1, "{got:?}");

        // The Collector's self-telemetry.
        let text = oxcol.metrics_text().await;
        let sampled = |policy: &str| {
            metric_sum(&text, "otelcol_processor_tail_sampling_count_traces_sampled", &[("policy", policy), ("decision", "sampled")])
        };
        let errors = kept_traces.iter().filter(|n| kind(**n) == Kind::ErrorAtTheEnd).count() as f64;
        let slow = kept_traces.iter().filter(|n| kind(**n) == Kind::Slow).count() as f64;
        assert_eq!(sampled("errors"), Some(errors), "{text}");
        assert_eq!(sampled("slow"), Some(slow), "{text}");
        let decided = |decision: &str| {
            metric_sum(&text, "otelcol_processor_tail_sampling_global_count_traces_sampled", &[("decision", decision)])
        };
        assert_eq!(decided("sampled"), Some(kept_traces.len() as f64), "{text}");
        assert_eq!(decided("not_sampled"), Some(f64::from(TRACES) - kept_traces.len() as f64), "{text}");
        assert_eq!(
            metric_sum(&text, "otelcol_processor_tail_sampling_new_trace_id_received", &[]),
            Some(f64::from(TRACES)),
            "{text}"
        );
        let distinct: BTreeSet<u8> = kept_traces.iter().map(|n| n % 4).collect();
        assert_eq!(distinct, BTreeSet::from([0, 1]), "the test covers both policies");
        sink.shutdown();
    })
    .await;
}
