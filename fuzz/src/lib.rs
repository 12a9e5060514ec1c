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
        assert_eq!(data.get(mapping.path_offset..mapping.path_offset + mapping.path.len()), Some(mapping.path));
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
];
