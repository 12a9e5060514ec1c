//! The bodies of oxcol's fuzz targets, one function per target. `fuzz_targets/<name>.rs`
//! hands libFuzzer's input to the function of the same name; `tests/replay.rs` runs every
//! function over the seed corpus and the recorded crashes with plain `cargo test`, so the
//! targets stay compiling and the regressions stay fixed without nightly.
//!
//! Every function must never panic, abort, hang or allocate without bound on any input;
//! where there is a property that must hold (a count, a limit, a round trip) it asserts it,
//! so a wrong answer is a crash too.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use oxcol_core::compression::{self, Encoding};
use oxcol_core::relabel::{self, LabelSet, NameValidation, RelabelConfig};
use oxcol_core::{Batch, Signal, skeleton};
use prost::Message;

const SIGNALS: [Signal; 3] = [Signal::Metrics, Signal::Traces, Signal::Logs];

/// Splits the input into a small selector byte and the rest.
fn selector(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((first, rest)) => (*first, rest),
        None => (0, data),
    }
}

/// OTLP protobuf as the receivers take it: the skeleton scan (framing check + count), then
/// what processors and exporters do with a batch: decode, count again, re-encode, split,
/// append. Properties: a request the scan accepts and prost decodes has the same item
/// count both ways; oxcol's own encoding of decoded data passes the scan with that count;
/// a split keeps every item and respects the bound.
pub fn otlp_proto(data: &[u8]) {
    for signal in SIGNALS {
        let scanned = skeleton::count_items(signal, data);
        let entries = skeleton::scan_request(signal, data);
        assert_eq!(
            scanned.is_ok(),
            entries.is_ok(),
            "count_items and scan_request disagree"
        );
        if let (Ok(total), Ok(entries)) = (&scanned, &entries) {
            let sum: u64 = entries.iter().map(|e| e.items).sum();
            assert_eq!(*total, sum, "per-resource counts do not add up");
            for entry in entries {
                assert!(entry.range.end <= data.len(), "entry range past the end");
            }
        }
        let Ok(batch) = Batch::from_encoded(signal, Bytes::copy_from_slice(data)) else {
            continue;
        };
        let items = batch.items();
        // Decode, then recount from the decoded data.
        let mut decoded = batch.clone();
        if decoded.decode().is_ok() {
            decoded.recount();
            assert_eq!(
                items,
                decoded.items(),
                "{signal:?}: skeleton count != decoded count"
            );
            let encoded = decoded.to_bytes();
            let again = Batch::from_encoded(signal, encoded.clone())
                .expect("oxcol's own encoding of decoded data passes the skeleton scan");
            assert_eq!(again.items(), items, "re-encoded count differs");
            assert_eq!(
                encoded.len(),
                decoded.encoded_len(),
                "encoded_len is not the encoded length"
            );
        }
        // Split as the batch processor does, with a small bound so the input is cut.
        let max = u64::from(data.first().copied().unwrap_or(1) % 7) + 1;
        if let Ok(parts) = batch.clone().split(max) {
            let total: u64 = parts.iter().map(Batch::items).sum();
            assert_eq!(total, items, "split lost or invented items");
            for part in &parts {
                // A part may hold more than `max` only when one item cannot be cut.
                assert!(
                    part.items() <= max.max(1) || part.items() == 1,
                    "split exceeded its bound"
                );
            }
        }
        // Append to itself (encoded + encoded) and to a decoded copy.
        let mut doubled = batch.clone();
        if doubled.append(batch.clone()).is_ok() {
            assert_eq!(doubled.items(), items * 2);
        }
    }
}

/// OTLP/JSON as the HTTP receiver parses it: serde_json into the opentelemetry-proto types,
/// then a `Batch`. Properties: the protobuf encoding of what was parsed passes the skeleton
/// scan with the same count, and prost decodes it back.
pub fn otlp_json(data: &[u8]) {
    // Metrics as the receiver parses them: serde, then the strict check of the oneofs
    // (receivers/src/otlp/json.rs), which only accepts what serde accepts.
    let metrics = oxcol_receivers::otlp::json::parse_metrics(data)
        .ok()
        .map(|r| {
            assert!(
                serde_json::from_slice::<ExportMetricsServiceRequest>(data).is_ok(),
                "the strict parse accepted what serde refuses"
            );
            Batch::from_metrics(r.resource_metrics)
        });
    let traces = serde_json::from_slice::<ExportTraceServiceRequest>(data)
        .ok()
        .map(|r| Batch::from_traces(r.resource_spans));
    let logs = serde_json::from_slice::<ExportLogsServiceRequest>(data)
        .ok()
        .map(|r| Batch::from_logs(r.resource_logs));
    for batch in [metrics, traces, logs].into_iter().flatten() {
        let signal = batch.signal();
        let bytes = batch.to_bytes();
        let scanned = Batch::from_encoded(signal, bytes.clone()).unwrap_or_else(|e| {
            panic!("{signal:?}: the encoding of parsed JSON fails the scan: {e}")
        });
        assert_eq!(
            scanned.items(),
            batch.items(),
            "{signal:?}: JSON count != scanned count"
        );
        let mut back = scanned.clone();
        back.decode()
            .unwrap_or_else(|e| panic!("{signal:?}: prost cannot decode what it encoded: {e}"));
        // And the JSON rendering of it (the otlphttp exporter's `encoding: json`).
        match signal {
            Signal::Metrics => {
                let request = ExportMetricsServiceRequest::decode(bytes).expect("decoded above");
                let _ = serde_json::to_vec(&request);
            }
            Signal::Traces => {
                let request = ExportTraceServiceRequest::decode(bytes).expect("decoded above");
                let _ = serde_json::to_vec(&request);
            }
            Signal::Logs => {
                let request = ExportLogsServiceRequest::decode(bytes).expect("decoded above");
                let _ = serde_json::to_vec(&request);
            }
        }
    }
}

/// Config loading: YAML text through `oxcol_config::load` (parse, merge, `--set`, env
/// expansion), then every component found decoded into the config struct of its type and
/// validated, as the agent's registry does.
pub fn config_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first line, if it starts with `--set `, is also applied as an override.
    let sets: Vec<String> = text
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("#set "))
        .map(|set| vec![set.to_string()])
        .unwrap_or_default();
    let sources = [oxcol_config::Source::Text {
        name: "fuzz".to_string(),
        text: text.to_string(),
    }];
    let env = |name: &str| {
        if name.len() < 8 {
            Some(format!("v-{name}"))
        } else {
            None
        }
    };
    let Ok(root) = oxcol_config::load(&sources, &sets, &env) else {
        return;
    };
    let _ = oxcol_config::to_yaml_redacted(&root);
    for section in ["receivers", "processors", "exporters", "extensions"] {
        let Some(entries) = root.get(section).and_then(|n| n.map_entries()) else {
            continue;
        };
        for (key, node) in entries {
            let Some(id) = key.scalar_text() else {
                continue;
            };
            let type_name = id.split('/').next().unwrap_or("");
            decode_component(section, type_name, node);
        }
    }
}

fn decode_component(section: &str, type_name: &str, node: &oxcol_config::Node) {
    use oxcol_config::decode;
    macro_rules! check {
        ($t:ty) => {
            if let Ok(config) = decode::<$t>(node) {
                let _ = config.validate();
            }
        };
    }
    match (section, type_name) {
        ("receivers", "otlp") => check!(oxcol_receivers::otlp::Config),
        ("receivers", "prometheus") => check!(oxcol_receivers::prometheus::Config),
        ("receivers", "pprof") => check!(oxcol_receivers::pprof::Config),
        ("receivers", "cgroup") => check!(oxcol_receivers::cgroup::Config),
        ("receivers", "smaps") => check!(oxcol_receivers::smaps::Config),
        ("processors", "batch") => check!(oxcol_processors::batch::Config),
        ("processors", "memory_limiter") => check!(oxcol_processors::memory_limiter::Config),
        ("processors", "relabel") => check!(oxcol_processors::relabel::Config),
        ("processors", "units") => check!(oxcol_processors::units::Config),
        ("processors", "ewma") => check!(oxcol_processors::ewma::Config),
        ("processors", "burnrate") => check!(oxcol_processors::burnrate::Config),
        ("exporters", "otlp") => check!(oxcol_exporters::otlp::Config),
        ("exporters", "otlphttp") => check!(oxcol_exporters::otlphttp::Config),
        ("exporters", "debug") => check!(oxcol_exporters::debug::Config),
        ("exporters", "prometheus") => check!(oxcol_exporters::prometheus::Config),
        ("exporters", "prometheusremotewrite") => {
            check!(oxcol_exporters::prometheusremotewrite::Config)
        }
        ("extensions", "file_storage") => check!(oxcol_exporters::disk_queue::Config),
        _ => {}
    }
}

/// Decompression with a size limit (request bodies). The first byte picks the encoding and
/// the limit. Property: the output never exceeds the limit.
pub fn decompress(data: &[u8]) {
    let (sel, body) = selector(data);
    let encoding = match sel % 4 {
        0 => Encoding::Identity,
        1 => Encoding::Gzip,
        2 => Encoding::Zstd,
        _ => Encoding::Deflate,
    };
    let limit = [0usize, 1, 64, 4096, 1 << 20][usize::from(sel / 4) % 5];
    if let Ok(out) = compression::decompress(encoding, Bytes::copy_from_slice(body), limit) {
        assert!(
            out.len() <= limit,
            "decompressed {} bytes past the limit {limit}",
            out.len()
        );
    }
    // And the pprof receiver's own gzip inflate with its limit.
    if let Ok(out) = oxcol_receivers::pprof::profile::inflate(body, limit) {
        assert!(
            out.len() <= limit || !body.starts_with(&[0x1f, 0x8b]),
            "pprof inflate past the limit"
        );
    }
}

/// Every cgroup and /proc parser of the cgroup receiver, on the same bytes (each file
/// format is plain text with lines of fields).
pub fn cgroup_parse(data: &[u8]) {
    use oxcol_receivers::cgroup::{k8s, locate, parse};
    let _ = parse::parse_u64(data);
    let _ = parse::parse_i64(data);
    let _ = parse::parse_decimal(data);
    let _ = parse::trim(data);
    let _ = parse::parse_limit(data);
    let _ = parse::parse_v1_limit(data);
    let _ = parse::parse_psi(data);
    let _ = parse::parse_cpu_max(data);
    parse::for_each_flat(data, |_, _| {});
    parse::for_each_nested(data, |_, _, _| {});
    parse::for_each_blkio(data, |_, _, _| {});
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = k8s::parse(text);
        let _ = locate::normalize(text);
        // /proc/self/cgroup and /proc/self/mountinfo: split the input in two at a NUL.
        let (cgroup, mountinfo) = text.split_once('\0').unwrap_or((text, text));
        let _ = locate::self_targets(cgroup, mountinfo);
        let (pattern, path) = text.split_once('\n').unwrap_or((text, text));
        let _ = locate::glob_match(pattern, path);
    }
}

/// The smaps receiver's /proc parsers: `smaps_rollup` fields, `stat`, field names, full
/// `smaps` (mappings, their class, the `detailed` breakdown with its top files).
pub fn smaps_parse(data: &[u8]) {
    use oxcol_receivers::smaps::{detailed, parse};
    parse::for_each_rollup_field(data, |field, _| {
        let _ = parse::snake_case(field);
    });
    let _ = parse::parse_stat(data);
    let _ = parse::snake_case(data);
    parse::for_each_mapping(data, |mapping| {
        assert_eq!(
            data.get(mapping.path_offset..mapping.path_offset + mapping.path.len()),
            Some(mapping.path)
        );
        let _ = parse::MappingClass::of(mapping.perms, mapping.path);
    });
    let mut breakdown = detailed::Breakdown::default();
    breakdown.parse(data, 3);
    assert!(breakdown.files.len() <= 3);
    for file in &breakdown.files {
        assert!(data.get(file.path.clone()).is_some());
    }
}

/// pprof: profile bodies (gzip or plain protobuf, with the receiver's inflate limit) and
/// resolution into stacks; goroutine `debug=2` text.
pub fn pprof(data: &[u8]) {
    use oxcol_receivers::pprof::{debug2, profile};
    let (sel, body) = selector(data);
    if sel & 1 == 0 {
        if let Ok(plain) = profile::inflate(body, 1 << 20) {
            if let Ok(resolved) = profile::resolve(&plain) {
                let _ = resolved.totals();
                let _ = resolved.value_index("inuse_space");
                for (frames, _) in resolved.samples.iter().take(64) {
                    let _ = profile::stack_text(frames);
                    let _ = profile::innermost_user_function(frames);
                    let _ = profile::entry_function(frames);
                    let _ = profile::stack_id(frames.iter().map(|f| f.function.as_str()));
                }
            }
        }
    } else {
        let text = String::from_utf8_lossy(body);
        for goroutine in debug2::parse(&text) {
            let _ = profile::stack_id(goroutine.functions.iter().map(String::as_str));
        }
    }
}

/// Prometheus text and OpenMetrics exposition parsing, then the receiver's conversion to
/// OTLP metrics (the same per-sample steps as the prometheus receiver).
pub fn prometheus_text(data: &[u8]) {
    use oxcol_receivers::prometheus::convert::{Converter, Kind};
    use oxcol_receivers::prometheus::parse::{self, FamilyType};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse::parse_float(text);
    for openmetrics in [false, true] {
        let Ok(families) = parse::parse(text, openmetrics) else {
            continue;
        };
        let mut converter = Converter::default();
        for family in families {
            let kind = match family.kind {
                FamilyType::Counter => Kind::Counter,
                FamilyType::Histogram => Kind::Histogram,
                FamilyType::Summary => Kind::Summary,
                _ => Kind::Gauge,
            };
            for sample in family.samples {
                converter.add(
                    kind,
                    &family.name,
                    &sample.name,
                    sample.labels,
                    sample.value,
                );
            }
        }
        let _ = converter.finish(1_700_000_000_000_000_000);
    }
}

/// Relabel rules: a JSON list of `relabel_config` (the YAML shape) compiled as Prometheus
/// does (Go regex syntax translated to Rust's), then applied to a label set. If the input
/// is not such a list, its text is compiled as one regex.
pub fn relabel(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (rules_text, labels_text) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(configs) = serde_json::from_str::<Vec<RelabelConfig>>(rules_text) else {
        let _ = relabel::compile_anchored(text);
        return;
    };
    for validation in [NameValidation::Utf8, NameValidation::Legacy] {
        let Ok(rules) = relabel::compile(&configs, validation) else {
            continue;
        };
        let mut labels = LabelSet::new();
        for pair in labels_text.split(',') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            labels.set(name, value.to_string());
        }
        if relabel::process(&mut labels, &rules) {
            let _ = relabel::check_result(&labels, validation);
        }
    }
}

/// Remote write (the exporter side: oxcol receives no remote write): OTLP metrics decoded
/// from protobuf, translated to Prometheus series, grouped, sharded, chunked, encoded as
/// remote write 1.0 and 2.0 and snappy-compressed.
pub fn remote_write(data: &[u8]) {
    use oxcol_exporters::prom_translate::{self, Settings};
    use oxcol_exporters::prometheusremotewrite::encode;
    let Ok(request) = ExportMetricsServiceRequest::decode(data) else {
        return;
    };
    let translation = prom_translate::translate(&request.resource_metrics, &Settings::default());
    let (series, _) = encode::group_series(&translation);
    let v1 = encode::encode_v1(&series, Some(&translation.families));
    let v2 = encode::encode_v2(&series, &translation.families);
    let _ = encode::snappy(&v1);
    let _ = encode::snappy(&v2);
    for chunk in encode::chunks(series.clone(), 512) {
        let _ = encode::encode_v1(&chunk, None);
    }
    let _ = encode::shard(series, 3);
}

/// The jaeger receiver's Thrift readers (binary `Batch` of `POST /api/traces`, agent
/// `emitBatch` in binary and compact) and its gRPC `PostSpansRequest` decode, then the
/// translation to OTLP. A batch the Thrift readers accept always translates (their ids
/// have the right length) into at most as many spans as it had.
pub fn jaeger_thrift(data: &[u8]) {
    use oxcol_receivers::jaeger::{model, thrift, translate};
    let decoded = [
        thrift::decode_binary_batch(data),
        thrift::decode_binary_agent(data),
        thrift::decode_compact_agent(data),
    ];
    for batch in decoded.into_iter().flatten() {
        let spans = batch.spans.len();
        let out = translate::batch_to_resource_spans(batch, translate::Flavor::Thrift)
            .expect("a decoded Thrift batch translates");
        let translated: usize = out
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        assert!(translated <= spans, "{translated} spans out of {spans}");
    }
    if let Ok(request) = <model::PostSpansRequest as prost::Message>::decode(data) {
        let _ = translate::batch_to_resource_spans(
            request.batch.unwrap_or_default(),
            translate::Flavor::Proto,
        );
    }
}

/// The statsd receiver's line parser and aggregator: any bytes, split into lines, parse
/// (with every flag combination) without panicking; an accepted line has a name and
/// sorted, unique attribute keys; aggregating the accepted lines into summaries and
/// small exponential histograms and flushing never panics, and no histogram side holds
/// more buckets than its `max_size`.
pub fn statsd_line(data: &[u8]) {
    use oxcol_receivers::statsd::aggregate::{
        Aggregator, CounterType, Observer, Settings, SourceKeying,
    };
    use oxcol_receivers::statsd::parse::parse_line;
    let text = String::from_utf8_lossy(data);
    let settings = Settings {
        is_monotonic_counter: true,
        counter_type: CounterType::Int,
        timer: Observer::Histogram {
            max_size: 4,
            explicit: std::sync::Arc::from(Vec::new()),
        },
        histogram: Observer::Summary {
            percentiles: std::sync::Arc::from(vec![0.0, 50.0, 100.0]),
        },
        keying: SourceKeying::AddressOnly,
        max_points_per_interval: 1000,
        version: String::new(),
    };
    let mut aggregator = Aggregator::new(settings, 1);
    for (i, line) in text.split('\n').enumerate() {
        for (metric_type, simple_tags) in [(false, false), (true, true)] {
            let Ok(parsed) = parse_line(line, metric_type, simple_tags) else {
                continue;
            };
            assert!(!parsed.name.is_empty());
            assert!(
                parsed.attributes.windows(2).all(|w| w[0].0 < w[1].0),
                "{:?}",
                parsed.attributes
            );
            let address = if i % 2 == 0 { "10.0.0.1:5" } else { "[::1]:6" };
            let _ = aggregator.add(&parsed, address, 2);
        }
    }
    for resource in aggregator.flush(3) {
        for metric in resource.scope_metrics.iter().flat_map(|s| &s.metrics) {
            if let Some(
                opentelemetry_proto::tonic::metrics::v1::metric::Data::ExponentialHistogram(h),
            ) = &metric.data
            {
                for point in &h.data_points {
                    for side in [&point.positive, &point.negative].into_iter().flatten() {
                        assert!(
                            side.bucket_counts.len() <= 4,
                            "{} buckets",
                            side.bucket_counts.len()
                        );
                    }
                }
            }
        }
    }
}

/// The filelog receiver's container log line parsers (Docker JSON, CRI-O, containerd):
/// any bytes, split into lines, parsed detected and as each format, never panic; an accepted
/// line has `log` and `stream` and no `time` left in its fields; the `container` operator on
/// those lines (partial `P` lines recombined, k8s metadata from the path) never panics and
/// never loses a line's file range (every range is emitted, dropped or held).
pub fn container_log(data: &[u8]) {
    use oxcol_receivers::filelog::container::{Format, parse_line};
    use oxcol_receivers::filelog::entry::{Entry, Mark};
    use oxcol_receivers::filelog::operators::{Chain, OperatorConfig, Output};
    let text = String::from_utf8_lossy(data);
    for format in [
        None,
        Some(Format::Docker),
        Some(Format::Crio),
        Some(Format::Containerd),
    ] {
        for line in text.split('\n') {
            if let Ok(parsed) = parse_line(line, format) {
                assert!(parsed.fields.contains_key("log") && parsed.fields.contains_key("stream"));
                assert!(!parsed.fields.contains_key("time"));
            }
        }
    }
    let configs: Vec<OperatorConfig> =
        serde_json::from_value(serde_json::json!([{"type": "container", "max_log_size": 64}]))
            .expect("a valid constant operator config");
    let Ok(mut chain) = Chain::build(&configs) else {
        panic!("the container operator builds");
    };
    let now = std::time::Instant::now();
    let mut out = Output::default();
    let mut ranges = 0usize;
    for (i, line) in text.split('\n').enumerate() {
        let mut entry = Entry {
            body: serde_json::Value::String(line.to_string()),
            marks: vec![Mark {
                file: 1,
                start: i as u64,
                end: i as u64 + 1,
            }],
            ..Default::default()
        };
        let path = if i % 2 == 0 {
            "/var/log/pods/ns_pod_0a-1b/c/0.log"
        } else {
            "/x/y.log"
        };
        entry.attributes.insert(
            "log.file.path".into(),
            serde_json::Value::String(path.into()),
        );
        ranges += 1;
        chain.process(entry, now, &mut out);
    }
    let emitted: usize = out.entries.iter().map(|e| e.marks.len()).sum();
    assert_eq!(emitted + out.dropped.len() + chain.held().len(), ranges);
    chain.flush(now, true, &mut out);
    assert!(chain.held().is_empty());
}

/// Protobuf-encodes OTLP spans and scans them back: the scan must accept what oxcol
/// produced and count as many spans as the data holds.
fn check_traces(resource_spans: Vec<opentelemetry_proto::tonic::trace::v1::ResourceSpans>) {
    let batch = Batch::from_traces(resource_spans);
    let scanned = Batch::from_encoded(Signal::Traces, batch.to_bytes())
        .unwrap_or_else(|e| panic!("the encoding of translated spans fails the scan: {e}"));
    assert_eq!(
        scanned.items(),
        batch.items(),
        "translated count != scanned count"
    );
}

/// The zipkin receiver's decoders: v1 JSON, v2 JSON and v2 protobuf (`ListOfSpans`), each
/// with and without `parse_string_tags`, through the translation to OTLP. Properties: the
/// translation keeps every span the decoder accepted (v1: every non-null array element;
/// v2: every parsed span), and its protobuf encoding passes the skeleton scan with that
/// count.
pub fn zipkin(data: &[u8]) {
    use oxcol_receivers::zipkin::{translate, v1};
    let v1_spans = serde_json::from_slice::<Vec<serde_json::Value>>(data)
        .ok()
        .map(|spans| spans.iter().filter(|s| !s.is_null()).count());
    for parse_string_tags in [false, true] {
        if let Ok(out) = v1::parse_json_v1(data, parse_string_tags, 1_700_000_000_000_000_000) {
            let spans: usize = out
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum();
            // (serde skips unknown fields without checking their UTF-8, so the typed
            // parse may accept what the `Value` parse refuses.)
            if let Some(elements) = v1_spans {
                assert_eq!(spans, elements, "v1: spans out != JSON array elements");
            }
            check_traces(out);
        }
    }
    for parsed in [
        translate::parse_json_v2(data),
        translate::parse_proto_v2(data),
    ] {
        let Ok(spans) = parsed else {
            continue;
        };
        for parse_string_tags in [false, true] {
            let count = spans.len();
            if let Ok(out) = translate::to_otlp(spans.clone(), parse_string_tags) {
                let translated: usize = out
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .map(|s| s.spans.len())
                    .sum();
                assert_eq!(translated, count, "v2: translated spans != parsed spans");
                check_traces(out);
            }
        }
    }
    // The receiver's entry points (the same steps, as the HTTP handler calls them).
    let _ = oxcol_receivers::zipkin::decode_v1(data, true);
    let _ = oxcol_receivers::zipkin::decode_v2(false, data, false);
    let _ = oxcol_receivers::zipkin::decode_v2(true, data, false);
}

/// The small fixed batches OTTL statements run on: 1 resource, 1 scope, and 2 spans (the
/// first with an event and a link), 4 metrics (gauge, sum, histogram, summary, 2 points
/// each) and 2 log records.
struct OttlData {
    traces: Vec<opentelemetry_proto::tonic::trace::v1::ResourceSpans>,
    metrics: Vec<opentelemetry_proto::tonic::metrics::v1::ResourceMetrics>,
    logs: Vec<opentelemetry_proto::tonic::logs::v1::ResourceLogs>,
}

fn ottl_data() -> &'static OttlData {
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    use oxcol_core::testdata;
    static DATA: std::sync::OnceLock<OttlData> = std::sync::OnceLock::new();
    DATA.get_or_init(|| {
        let mut traces = testdata::trace_request(1, 2).resource_spans;
        let span = &mut traces[0].scope_spans[0].spans[0];
        span.events.push(Event {
            time_unix_nano: span.start_time_unix_nano + 5,
            name: "exception".to_string(),
            attributes: vec![testdata::string_attribute("exception.message", "boom")],
            dropped_attributes_count: 0,
        });
        span.links.push(Link {
            trace_id: vec![9; 16],
            span_id: vec![9; 8],
            ..Default::default()
        });
        OttlData {
            traces,
            metrics: testdata::metrics_request(1, 4, 2).resource_metrics,
            logs: testdata::logs_request(1, 2).resource_logs,
        }
    })
}

/// OTTL: the text parsed as a statement and as a condition in every context, its syntax
/// checked without a context, and the context inferred from its lines (flat form). A
/// statement that parses runs (error_mode ignore) on the fixed batches of its signal(s);
/// a condition that parses is evaluated on every item of its context. Property: whatever
/// a statement wrote still encodes as OTLP that the skeleton scan accepts with the same
/// item count.
pub fn ottl(data: &[u8]) {
    use oxcol_ottl::{ContextKind, DataPointRef, ErrorMode, Item, StatementGroup};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = oxcol_ottl::check_syntax(text);
    let lines: Vec<&str> = text.lines().collect();
    let _ = oxcol_ottl::infer_context(&lines);
    let fixed = ottl_data();
    for context in ContextKind::ALL {
        if let Ok(statement) = oxcol_ottl::parse_statement(text, context) {
            let group =
                StatementGroup::new(context, vec![statement], Vec::new(), ErrorMode::Ignore);
            let mut ignored = Vec::new();
            let (traces, metrics, logs) = match context {
                ContextKind::Resource | ContextKind::Scope => (true, true, true),
                ContextKind::Span | ContextKind::SpanEvent => (true, false, false),
                ContextKind::Metric | ContextKind::DataPoint => (false, true, false),
                ContextKind::Log => (false, false, true),
            };
            let mut batches = Vec::new();
            if traces {
                let mut data = fixed.traces.clone();
                if group.run_traces(&mut data, &mut ignored).is_ok() {
                    batches.push(Batch::from_traces(data));
                }
            }
            if metrics {
                let mut data = fixed.metrics.clone();
                if group.run_metrics(&mut data, &mut ignored).is_ok() {
                    batches.push(Batch::from_metrics(data));
                }
            }
            if logs {
                let mut data = fixed.logs.clone();
                if group.run_logs(&mut data, &mut ignored).is_ok() {
                    batches.push(Batch::from_logs(data));
                }
            }
            for batch in batches {
                let signal = batch.signal();
                let scanned = Batch::from_encoded(signal, batch.to_bytes()).unwrap_or_else(|e| {
                    panic!("{signal:?}: what {text:?} wrote fails the scan: {e}")
                });
                assert_eq!(
                    scanned.items(),
                    batch.items(),
                    "{signal:?}: count after {text:?}"
                );
            }
        }
        if let Ok(condition) = oxcol_ottl::parse_condition(text, context) {
            let mut items = Vec::new();
            for rs in &fixed.traces {
                let resource = rs.resource.as_ref();
                items.push(Item::Resource { resource });
                for ss in &rs.scope_spans {
                    let scope = ss.scope.as_ref();
                    items.push(Item::Scope { resource, scope });
                    for span in &ss.spans {
                        items.push(Item::Span {
                            resource,
                            scope,
                            span,
                        });
                        for event in &span.events {
                            items.push(Item::SpanEvent {
                                resource,
                                scope,
                                span,
                                event,
                            });
                        }
                    }
                }
            }
            for rm in &fixed.metrics {
                let resource = rm.resource.as_ref();
                for sm in &rm.scope_metrics {
                    let scope = sm.scope.as_ref();
                    for metric in &sm.metrics {
                        items.push(Item::Metric {
                            resource,
                            scope,
                            metric,
                        });
                        for point in DataPointRef::of_metric(metric) {
                            items.push(Item::DataPoint {
                                resource,
                                scope,
                                metric,
                                point,
                            });
                        }
                    }
                }
            }
            for rl in &fixed.logs {
                let resource = rl.resource.as_ref();
                for sl in &rl.scope_logs {
                    let scope = sl.scope.as_ref();
                    for log in &sl.log_records {
                        items.push(Item::Log {
                            resource,
                            scope,
                            log,
                        });
                    }
                }
            }
            for item in items.iter().filter(|i| i.context() == context) {
                let _ = condition.matches(item);
            }
        }
    }
}

/// The kafka receiver's message handling without librdkafka: the value decoded per signal
/// and encoding (the same decoders as `otlp_proto` and `otlp_json`), then the wanted
/// headers set as `kafka.header.*` resource attributes (which decodes an encoded batch).
/// Input: a selector byte (signal = s % 3, encoding = s / 3 % 2: proto, JSON), a byte N,
/// N bytes of headers (`key=value` or `key` lines), the rest is the message value.
/// Properties: adding the attributes keeps the item count; every resource then holds each
/// header attribute exactly once, with the value of the last header of that name; the
/// result still encodes and passes the skeleton scan with that count.
pub fn kafka_message(data: &[u8]) {
    use oxcol_core::kafka::Encoding;
    use oxcol_receivers::kafka_message;
    let (sel, rest) = selector(data);
    let signal = SIGNALS[usize::from(sel) % 3];
    let encoding = if (sel / 3) % 2 == 0 {
        Encoding::OtlpProto
    } else {
        Encoding::OtlpJson
    };
    let (header_len, rest) = selector(rest);
    let (header_block, payload) = rest.split_at(usize::from(header_len).min(rest.len()));
    let headers: Vec<(&str, Option<&[u8]>)> = header_block
        .split(|b| *b == b'\n')
        .filter_map(|line| {
            let (key, value) = match line.iter().position(|b| *b == b'=') {
                Some(at) => (&line[..at], Some(&line[at + 1..])),
                None => (line, None),
            };
            std::str::from_utf8(key).ok().map(|key| (key, value))
        })
        .collect();
    let wanted = ["tenant".to_string(), "source".to_string(), String::new()];
    let attributes = kafka_message::header_attributes(headers.iter().copied(), &wanted);
    assert_eq!(
        attributes.len(),
        headers
            .iter()
            .filter(|(k, _)| wanted.iter().any(|w| w == k))
            .count()
    );
    let Ok(mut batch) = kafka_message::decode(signal, encoding, payload) else {
        return;
    };
    assert_eq!(batch.signal(), signal);
    let items = batch.items();
    if kafka_message::add_resource_attributes(&mut batch, &attributes).is_err() {
        // Only an encoded batch that does not decode can fail here.
        assert!(!attributes.is_empty() && encoding == Encoding::OtlpProto);
        return;
    }
    assert_eq!(
        batch.items(),
        items,
        "header attributes changed the item count"
    );
    let resources: Vec<Vec<opentelemetry_proto::tonic::common::v1::KeyValue>> = match signal {
        Signal::Metrics => match batch.metrics_mut() {
            Ok(r) => r
                .iter()
                .map(|r| r.resource.clone().unwrap_or_default().attributes)
                .collect(),
            Err(_) => return,
        },
        Signal::Traces => match batch.traces_mut() {
            Ok(r) => r
                .iter()
                .map(|r| r.resource.clone().unwrap_or_default().attributes)
                .collect(),
            Err(_) => return,
        },
        Signal::Logs => match batch.logs_mut() {
            Ok(r) => r
                .iter()
                .map(|r| r.resource.clone().unwrap_or_default().attributes)
                .collect(),
            Err(_) => return,
        },
    };
    for resource in &resources {
        for attribute in &attributes {
            let same: Vec<_> = resource.iter().filter(|a| a.key == attribute.key).collect();
            let last = attributes.iter().rev().find(|a| a.key == attribute.key);
            assert_eq!(same.len(), 1, "{} not exactly once", attribute.key);
            assert_eq!(
                Some(same[0]),
                last,
                "{} has not the last value",
                attribute.key
            );
        }
    }
    let scanned = Batch::from_encoded(signal, batch.to_bytes()).unwrap_or_else(|e| {
        panic!("{signal:?}: the batch with header attributes fails the scan: {e}")
    });
    assert_eq!(scanned.items(), items);
}

/// The filelog receiver's parsing operators. Each line of the input is also tried as a Go,
/// strptime and epoch timestamp layout (parsing the next line with it), as an `if`/`expr`
/// expression (evaluated on an entry of the next line) and as a field path. Then, when the
/// first line is a JSON list of operators, the chain it builds runs on the other lines;
/// otherwise two fixed chains run on every line: `regex_parser` (named groups, embedded
/// `timestamp` (gotime) and `severity`) into `recombine` (`is_first_entry`, per source),
/// and `json_parser` (embedded epoch `timestamp` and `severity` with a mapping) into
/// `time_parser` (strptime) and `severity_parser` (preset otel). Properties: a fixed chain
/// never loses a line's file range (each is emitted, dropped or held, exactly once); any
/// chain emits, drops or holds every range at least once (a router may copy an entry)
/// and holds nothing after a forced flush.
pub fn filelog(data: &[u8]) {
    use oxcol_receivers::filelog::entry::{Entry, Field, Mark};
    use oxcol_receivers::filelog::expr::Expr;
    use oxcol_receivers::filelog::operators::{self, Chain, OperatorConfig, Output};
    use oxcol_receivers::filelog::time::{Layout, Location};
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.split('\n').collect();
    let entry_of = |i: usize, line: &str| {
        let mut entry = Entry {
            body: serde_json::Value::String(line.to_string()),
            marks: vec![Mark {
                file: 1,
                start: i as u64,
                end: i as u64 + 1,
            }],
            ..Default::default()
        };
        let path = if i % 3 == 0 {
            "/var/log/a.log"
        } else {
            "/var/log/b.log"
        };
        entry.attributes.insert(
            "log.file.path".into(),
            serde_json::Value::String(path.into()),
        );
        entry
    };
    for (i, pair) in lines.windows(2).enumerate().take(16) {
        let (first, next) = (pair[0], pair[1]);
        for kind in ["gotime", "strptime", "epoch"] {
            if let Ok(layout) = Layout::new(kind, first) {
                let value = serde_json::Value::String(next.to_string());
                let _ = layout.parse(&value, Location::Utc, 2024);
                if let Ok(number) = next.parse::<f64>() {
                    let _ = layout.parse(&serde_json::json!(number), Location::Utc, 2024);
                }
            }
        }
        if let Ok(expr) = Expr::parse(first) {
            let entry = entry_of(i, next);
            let _ = expr.eval(&entry);
            let _ = expr.matches(&entry);
        }
        if let Ok(field) = Field::parse(first) {
            let mut entry = entry_of(i, next);
            let _ = entry.get(&field);
            entry.set(&field, serde_json::Value::String(next.to_string()));
            let _ = entry.delete(&field);
        }
        let _ = operators::parse_json_object(first);
    }
    let now = std::time::Instant::now();
    let run = |configs: &[OperatorConfig], lines: &[&str], exact: bool| {
        let Ok(mut chain) = Chain::build(configs) else {
            return;
        };
        let mut out = Output::default();
        for (i, line) in lines.iter().enumerate() {
            chain.process(entry_of(i, line), now, &mut out);
        }
        let emitted: usize = out.entries.iter().map(|e| e.marks.len()).sum();
        let accounted = emitted + out.dropped.len() + chain.held().len();
        if exact {
            assert_eq!(
                accounted,
                lines.len(),
                "a line's file range was lost or doubled"
            );
        } else {
            assert!(accounted >= lines.len(), "a line's file range was lost");
        }
        chain.flush(now, true, &mut out);
        assert!(chain.held().is_empty(), "held after a forced flush");
        for entry in &out.entries {
            let _ = entry.to_log_record();
        }
    };
    if let Some((first, rest)) = lines.split_first()
        && let Ok(configs) = serde_json::from_str::<Vec<OperatorConfig>>(first)
    {
        let _ = operators::problems(&configs);
        run(&configs, rest, false);
        return;
    }
    static FIXED: std::sync::OnceLock<[Vec<OperatorConfig>; 2]> = std::sync::OnceLock::new();
    let fixed = FIXED.get_or_init(|| {
        let chain = |json| serde_json::from_value(json).expect("a valid constant operator config");
        [
            chain(serde_json::json!([
                {"type": "regex_parser", "on_error": "send_quiet",
                 "regex": r"^(?P<time>\d{4}-\d{2}-\d{2}T\S+) (?P<sev>[A-Za-z]+)(?: \[(?P<thread>[^\]]*)\])? (?P<msg>.*)$",
                 "timestamp": {"parse_from": "attributes.time", "layout_type": "gotime",
                               "layout": "2006-01-02T15:04:05.999999999Z07:00"},
                 "severity": {"parse_from": "attributes.sev"}},
                {"type": "recombine", "combine_field": "body", "combine_with": "\n",
                 "is_first_entry": r#"attributes.sev != nil or body matches "^\\d""#,
                 "max_batch_size": 5, "max_log_size": 256}
            ])),
            chain(serde_json::json!([
                {"type": "json_parser", "on_error": "send_quiet",
                 "timestamp": {"parse_from": "attributes.ts", "layout_type": "epoch", "layout": "s.ms"},
                 "severity": {"parse_from": "attributes.level",
                              "mapping": {"warn": "w", "error": ["e", "err"], "fatal": {"min": 500, "max": 599}}}},
                {"type": "time_parser", "on_error": "send_quiet", "parse_from": "attributes.time",
                 "layout": "%Y-%m-%d %H:%M:%S.%L %z"},
                {"type": "severity_parser", "on_error": "send_quiet", "parse_from": "attributes.lvl",
                 "preset": "otel", "overwrite_text": true}
            ])),
        ]
    });
    for configs in fixed {
        run(configs, &lines, true);
    }
}

/// Every target by name, for the replay test and the fallback driver.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("otlp_proto", otlp_proto),
    ("otlp_json", otlp_json),
    ("config_load", config_load),
    ("decompress", decompress),
    ("cgroup_parse", cgroup_parse),
    ("smaps_parse", smaps_parse),
    ("pprof", pprof),
    ("prometheus_text", prometheus_text),
    ("relabel", relabel),
    ("remote_write", remote_write),
    ("jaeger_thrift", jaeger_thrift),
    ("statsd_line", statsd_line),
    ("container_log", container_log),
    ("zipkin", zipkin),
    ("ottl", ottl),
    ("kafka_message", kafka_message),
    ("filelog", filelog),
];
