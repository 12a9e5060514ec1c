//! Parser for the Prometheus text exposition format (0.0.4) and OpenMetrics 1.0 text:
//! `# HELP`, `# TYPE`, `# UNIT`, `# EOF`, samples `name{l="v",...} value [timestamp]`,
//! OpenMetrics exemplars (` # {...} v [ts]`, skipped), escapes `\\`, `\"`, `\n`.
//!
//! Samples are grouped into families the way Prometheus does: a sample whose name is a
//! declared family plus a type suffix (`_bucket`, `_sum`, `_count`, `_total`, `_created`,
//! `_gcount`, `_gsum`, `_info`) belongs to that family; a sample of an undeclared name is
//! its own untyped family. A malformed line fails the scrape with the line number (as
//! Prometheus does), never a panic.

/// The declared type of a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FamilyType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Untyped,
}

impl FamilyType {
    fn parse(text: &str) -> FamilyType {
        match text {
            "counter" => FamilyType::Counter,
            "gauge" => FamilyType::Gauge,
            "histogram" => FamilyType::Histogram,
            "gaugehistogram" => FamilyType::GaugeHistogram,
            "summary" => FamilyType::Summary,
            "info" => FamilyType::Info,
            "stateset" => FamilyType::StateSet,
            _ => FamilyType::Untyped,
        }
    }

    fn suffixes(self) -> &'static [&'static str] {
        match self {
            FamilyType::Counter => &["_total", "_created"],
            FamilyType::Histogram => &["_bucket", "_sum", "_count", "_created"],
            FamilyType::GaugeHistogram => &["_bucket", "_gsum", "_gcount"],
            FamilyType::Summary => &["_sum", "_count", "_created"],
            FamilyType::Info => &["_info"],
            _ => &[],
        }
    }
}

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The full sample name (`app_request_duration_seconds_bucket`).
    pub name: String,
    /// Labels as written, in order.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: String,
    pub kind: FamilyType,
    pub help: String,
    pub unit: String,
    pub samples: Vec<Sample>,
}

/// Parses a whole exposition. `openmetrics` only changes what is required (`# EOF`).
pub fn parse(text: &str, openmetrics: bool) -> Result<Vec<Family>, String> {
    let mut families: Vec<Family> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut saw_eof = false;
    for (number, line) in text.lines().enumerate() {
        let line_number = number + 1;
        let line = line.trim_end_matches('\r');
        if saw_eof {
            if line.trim().is_empty() {
                continue;
            }
            return Err(format!("line {line_number}: data after # EOF"));
        }
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.trim_start();
            if comment == "EOF" {
                saw_eof = true;
                continue;
            }
            let mut parts = comment.splitn(3, ' ');
            let keyword = parts.next().unwrap_or_default();
            let (Some(name), rest) = (parts.next(), parts.next().unwrap_or_default()) else {
                continue;
            };
            let slot = match keyword {
                "HELP" | "TYPE" | "UNIT" => *index.entry(name.to_string()).or_insert_with(|| {
                    families.push(Family {
                        name: name.to_string(),
                        kind: FamilyType::Untyped,
                        help: String::new(),
                        unit: String::new(),
                        samples: Vec::new(),
                    });
                    families.len() - 1
                }),
                _ => continue,
            };
            let family = &mut families[slot];
            match keyword {
                "HELP" => family.help = unescape(rest, false),
                "TYPE" => family.kind = FamilyType::parse(rest.trim()),
                _ => family.unit = rest.trim().to_string(),
            }
            continue;
        }
        let sample =
            parse_sample(line).map_err(|e| format!("line {line_number}: {e}: {line:?}"))?;
        let slot = family_of(&sample.name, &families, &index).unwrap_or_else(|| {
            let slot = families.len();
            families.push(Family {
                name: sample.name.clone(),
                kind: FamilyType::Untyped,
                help: String::new(),
                unit: String::new(),
                samples: Vec::new(),
            });
            index.insert(sample.name.clone(), slot);
            slot
        });
        families[slot].samples.push(sample);
    }
    if openmetrics && !saw_eof {
        return Err("the OpenMetrics exposition does not end with # EOF (truncated?)".to_string());
    }
    families.retain(|f| !f.samples.is_empty());
    Ok(families)
}

fn family_of(
    name: &str,
    families: &[Family],
    index: &std::collections::HashMap<String, usize>,
) -> Option<usize> {
    if let Some(&slot) = index.get(name) {
        // A declared family named exactly like the sample (gauge, untyped, summary
        // quantiles, 0.0.4 counters that carry _total in the family name).
        return Some(slot);
    }
    for suffix in [
        "_bucket", "_sum", "_count", "_total", "_created", "_gcount", "_gsum", "_info",
    ] {
        if let Some(base) = name.strip_suffix(suffix)
            && let Some(&slot) = index.get(base)
            && families[slot].kind.suffixes().contains(&suffix)
        {
            return Some(slot);
        }
    }
    None
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ', '\t']).ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("empty metric name".to_string());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if rest.starts_with('{') {
        let (parsed, after) = parse_labels(&rest[1..])?;
        labels = parsed;
        rest = after;
    }
    // Drop an OpenMetrics exemplar.
    let rest = rest.split(" # ").next().unwrap_or(rest);
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = parse_float(value).ok_or_else(|| format!("{value:?} is not a number"))?;
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<f64>()
            .map_err(|_| format!("{timestamp:?} is not a timestamp"))?;
    }
    if fields.next().is_some() {
        return Err("unexpected text after the timestamp".to_string());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

type Labels = Vec<(String, String)>;

/// Parses `l="v",...}`; returns the labels and the text after `}`.
fn parse_labels(mut text: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start();
        if let Some(after) = text.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = text.find('=').ok_or("a label has no '='")?;
        let name = text[..eq].trim();
        if name.is_empty() || name.contains([',', '}', '"']) {
            return Err(format!("bad label name {name:?}"));
        }
        text = text[eq + 1..].trim_start();
        let body = text
            .strip_prefix('"')
            .ok_or("a label value is not quoted")?;
        let mut end = None;
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                end = Some(i);
                break;
            }
        }
        let end = end.ok_or("a label value is not closed")?;
        labels.push((name.to_string(), unescape(&body[..end], true)));
        text = body[end + 1..].trim_start();
        if let Some(after) = text.strip_prefix(',') {
            text = after;
        } else if !text.starts_with('}') {
            return Err("expected ',' or '}' after a label".to_string());
        }
    }
}

/// `\\` -> `\`, `\n` -> newline, and in label values `\"` -> `"`.
fn unescape(text: &str, quotes: bool) -> String {
    if !text.contains('\\') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some('"') if quotes => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

pub fn parse_float(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = include_str!("testdata/client_golang.txt");
    const OPENMETRICS: &str = include_str!("testdata/client_golang.om.txt");

    fn family<'a>(families: &'a [Family], name: &str) -> &'a Family {
        families
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("family {name} missing"))
    }

    #[test]
    fn real_client_golang_text_format() {
        let families = parse(TEXT, false).expect("parses");
        let requests = family(&families, "app_requests_total");
        assert_eq!(requests.kind, FamilyType::Counter);
        assert_eq!(requests.samples.len(), 2);
        let histogram = family(&families, "app_request_duration_seconds");
        assert_eq!(histogram.kind, FamilyType::Histogram);
        assert_eq!(
            histogram.samples.len(),
            4 + 2,
            "3 buckets + Inf, sum, count"
        );
        let summary = family(&families, "app_payload_bytes");
        assert_eq!(summary.kind, FamilyType::Summary);
        assert_eq!(family(&families, "go_goroutines").kind, FamilyType::Gauge);
        assert_eq!(
            family(&families, "go_gc_duration_seconds").kind,
            FamilyType::Summary
        );
    }

    #[test]
    fn real_client_golang_openmetrics() {
        let families = parse(OPENMETRICS, true).expect("parses");
        let requests = family(&families, "app_requests");
        assert_eq!(requests.kind, FamilyType::Counter);
        assert!(
            requests
                .samples
                .iter()
                .any(|s| s.name == "app_requests_total")
        );
        assert_eq!(
            family(&families, "app_request_duration_seconds").kind,
            FamilyType::Histogram
        );
        let truncated = &OPENMETRICS[..OPENMETRICS.len() - 6];
        assert!(parse(truncated, true).is_err(), "no # EOF");
    }

    #[test]
    fn labels_escapes_exemplars_and_special_values() {
        let text = "# TYPE x counter\nx_total{a=\"q\\\"uote\",b=\"back\\\\slash\",c=\"new\\nline\",} 3 1700000000000 # {trace_id=\"abc\"} 1 1700000000.1\ny +Inf\nz{} NaN\n";
        let families = parse(text, false).expect("parses");
        let x = family(&families, "x");
        assert_eq!(
            x.samples[0].labels,
            vec![
                ("a".into(), "q\"uote".into()),
                ("b".into(), "back\\slash".into()),
                ("c".into(), "new\nline".into())
            ]
        );
        assert_eq!(x.samples[0].value, 3.0);
        assert_eq!(family(&families, "y").samples[0].value, f64::INFINITY);
        assert!(family(&families, "z").samples[0].value.is_nan());
        assert_eq!(family(&families, "y").kind, FamilyType::Untyped);
    }

    #[test]
    fn malformed_lines_name_the_line() {
        for bad in [
            "a{b=\"c\" 1\n",
            "a{b=c} 1\n",
            "a notanumber\n",
            "a 1 2 3\n",
            "a{=\"x\"} 1\n",
        ] {
            let error = parse(bad, false).expect_err(bad);
            assert!(error.starts_with("line 1:"), "{error}");
        }
    }

    #[test]
    fn mutated_expositions_never_panic() {
        let mut rng = oxcol_core::testdata::XorShift64(0x1234_5678_9abc_def1);
        for round in 0..1500 {
            let source = if round % 2 == 0 { TEXT } else { OPENMETRICS };
            let mut bytes = source.as_bytes().to_vec();
            for _ in 0..6 {
                let seed = rng.next_u64();
                let at = (seed as usize) % bytes.len();
                let alphabet = b"{}\",=\\ #\n\t0aZ_+-.";
                bytes[at] = alphabet[(seed >> 40) as usize % alphabet.len()];
            }
            let _ = parse(&String::from_utf8_lossy(&bytes), round % 2 == 1);
        }
    }
}
