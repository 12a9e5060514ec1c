//! The StatsD line parser: one `<name>:<value>|<type>[|@<rate>][|#<tags>][|c:<id>][|T<secs>]`
//! line, with the Collector's rules (its `statsdreceiver/internal/parser`).
//!
//! Rules kept from the Collector, including the surprising ones:
//! - the type is one of `c`, `g`, `h`, `ms`, `d` (oxcol also takes `s`, a set);
//! - the optional parts are read until the first empty part (`a:1|c||#k:v` has no tags);
//! - `#` tags are `k:v` separated by `,`; empty tags are skipped; `k` without a value is an
//!   error unless `enable_simple_tags` (then its value is empty); duplicate keys keep the
//!   last value, and attributes are sorted by key (Go's `attribute.NewSet`);
//! - `c:<id>` adds `container.id` (DogStatsD 1.2); `T<secs>` (DogStatsD 1.3) sets the point
//!   time of counters and gauges and is an error on other types;
//! - a value starting with `+` or `-` is a delta for gauges;
//! - `enable_metric_type` adds `metric_type` (`counter`, `gauge`, `histogram`, `timing`,
//!   `distribution`, `set`), replacing a tag of that name.
//!
//! It borrows from the line and never panics, whatever the bytes (fuzz target
//! `statsd_line`).

use std::fmt;

/// The StatsD metric type of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Timing,
    Distribution,
    /// `s`: not accepted by the Collector; oxcol counts the distinct members per interval.
    Set,
}

impl MetricType {
    fn from_code(code: &str) -> Option<MetricType> {
        Some(match code {
            "c" => MetricType::Counter,
            "g" => MetricType::Gauge,
            "h" => MetricType::Histogram,
            "ms" => MetricType::Timing,
            "d" => MetricType::Distribution,
            "s" => MetricType::Set,
            _ => return None,
        })
    }

    /// The `metric_type` attribute value (the Collector's `FullName`).
    pub fn full_name(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Timing => "timing",
            MetricType::Distribution => "distribution",
            MetricType::Set => "set",
        }
    }
}

/// One parsed line, borrowing from it.
#[derive(Clone, Debug, PartialEq)]
pub struct Line<'a> {
    pub name: &'a str,
    pub metric_type: MetricType,
    /// The number after `:` (for a set: NaN; its member is `raw_value`).
    pub value: f64,
    /// The text after `:` as written.
    pub raw_value: &'a str,
    /// The value starts with `+` or `-` (a gauge delta).
    pub addition: bool,
    /// `@rate`; 0 when absent. Only a rate in (0, 1) scales anything.
    pub sample_rate: f64,
    /// `T<secs>` in nanoseconds; 0 when absent.
    pub timestamp_ns: u64,
    /// Sorted by key, one value per key.
    pub attributes: Vec<(&'a str, &'a str)>,
}

/// Why a line was not accepted; the text says which part is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    NoType,
    NoValue,
    EmptyName,
    EmptyValue,
    UnsupportedType(String),
    SampleRate(String),
    Tag(String),
    TimestampOnType,
    Timestamp(String),
    UnknownPart(String),
    Value(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NoType => f.write_str("invalid message format: no |<type>"),
            ParseError::NoValue => f.write_str("invalid <name>:<value> format: no ':'"),
            ParseError::EmptyName => f.write_str("empty metric name"),
            ParseError::EmptyValue => f.write_str("empty metric value"),
            ParseError::UnsupportedType(t) => write!(
                f,
                "unsupported metric type: {t:?} (c, g, h, ms, d, s are supported)"
            ),
            ParseError::SampleRate(r) => write!(f, "parse sample rate: {r:?}"),
            ParseError::Tag(t) => write!(
                f,
                "invalid tag format: {t:?} (write key:value, or set enable_simple_tags for tags without a value)"
            ),
            ParseError::TimestampOnType => {
                f.write_str("only GAUGE and COUNT metrics support a timestamp")
            }
            ParseError::Timestamp(t) => write!(f, "invalid timestamp: {t:?}"),
            ParseError::UnknownPart(p) => write!(f, "unrecognized message part: {p:?}"),
            ParseError::Value(v) => write!(f, "parse metric value string: {v:?}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Go's `strings.Cut`: the text before and after the first `separator`, and whether it
/// was found (when not: the whole text and an empty rest).
fn cut(text: &str, separator: char) -> (&str, &str, bool) {
    match text.split_once(separator) {
        Some((before, after)) => (before, after, true),
        None => (text, "", false),
    }
}

/// Go's `strconv.ParseFloat(s, 64)` for the forms StatsD clients write: decimal numbers
/// with an optional sign and exponent, `Inf`/`Infinity`/`NaN` in any case. (Go's hex
/// floats and digit underscores are not accepted.)
pub fn parse_float(text: &str) -> Option<f64> {
    // Rust's parser takes the same decimal grammar; it rejects nothing Go accepts except
    // hex floats, and accepts nothing Go rejects.
    text.parse::<f64>().ok()
}

/// Parses one line (without its newline).
pub fn parse_line(
    line: &str,
    enable_metric_type: bool,
    enable_simple_tags: bool,
) -> Result<Line<'_>, ParseError> {
    let (name_value, rest, found) = cut(line, '|');
    if !found {
        return Err(ParseError::NoType);
    }
    let (name, raw_value, found) = cut(name_value, ':');
    if !found {
        return Err(ParseError::NoValue);
    }
    if name.is_empty() {
        return Err(ParseError::EmptyName);
    }
    if raw_value.is_empty() {
        return Err(ParseError::EmptyValue);
    }
    let addition = raw_value.starts_with(['-', '+']);
    let (type_code, mut parts, _) = cut(rest, '|');
    let metric_type = MetricType::from_code(type_code)
        .ok_or_else(|| ParseError::UnsupportedType(type_code.to_string()))?;

    let mut attributes: Vec<(&str, &str)> = Vec::new();
    let mut sample_rate = 0.0;
    let mut timestamp_ns = 0u64;
    loop {
        let (part, after, _) = cut(parts, '|');
        parts = after;
        if part.is_empty() {
            break;
        }
        if let Some(rate) = part.strip_prefix('@') {
            sample_rate = parse_float(rate).ok_or_else(|| ParseError::SampleRate(rate.into()))?;
        } else if let Some(tags) = part.strip_prefix('#') {
            for tag in tags.split(',').filter(|t| !t.is_empty()) {
                let (key, value, _) = cut(tag, ':');
                if key.is_empty() || (value.is_empty() && !enable_simple_tags) {
                    return Err(ParseError::Tag(tag.to_string()));
                }
                attributes.push((key, value));
            }
        } else if let Some(container_id) = part.strip_prefix("c:") {
            if !container_id.is_empty() {
                attributes.push(("container.id", container_id));
            }
        } else if let Some(seconds) = part.strip_prefix('T') {
            if !matches!(metric_type, MetricType::Counter | MetricType::Gauge) {
                return Err(ParseError::TimestampOnType);
            }
            // Go's ParseUint: ASCII digits only (no sign), within u64.
            let parsed = if seconds.bytes().all(|b| b.is_ascii_digit()) {
                seconds.parse::<u64>().ok()
            } else {
                None
            };
            let seconds = parsed.ok_or_else(|| ParseError::Timestamp(seconds.into()))?;
            // Go multiplies in uint64 and wraps.
            timestamp_ns = seconds.wrapping_mul(1_000_000_000);
        } else {
            return Err(ParseError::UnknownPart(part.to_string()));
        }
    }
    let value = if metric_type == MetricType::Set {
        f64::NAN
    } else {
        parse_float(raw_value).ok_or_else(|| ParseError::Value(raw_value.into()))?
    };
    if enable_metric_type {
        attributes.push(("metric_type", metric_type.full_name()));
    }
    Ok(Line {
        name,
        metric_type,
        value,
        raw_value,
        addition,
        sample_rate,
        timestamp_ns,
        attributes: attribute_set(attributes),
    })
}

/// Go's `attribute.NewSet`: sorted by key (stable), and for a key given more than once
/// the last value wins.
fn attribute_set<'a>(mut attributes: Vec<(&'a str, &'a str)>) -> Vec<(&'a str, &'a str)> {
    if attributes.len() < 2 {
        return attributes;
    }
    attributes.sort_by(|a, b| a.0.cmp(b.0));
    let mut out: Vec<(&str, &str)> = Vec::with_capacity(attributes.len());
    for (key, value) in attributes {
        match out.last_mut() {
            Some(last) if last.0 == key => last.1 = value,
            _ => out.push((key, value)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Line<'_>, ParseError> {
        parse_line(line, false, false)
    }

    #[test]
    fn counter_with_rate_tags_container_and_timestamp() {
        let line = parse("req.count:20|c|@0.25|#b:2,a:1|c:abc123|T1700000000").unwrap();
        assert_eq!(line.name, "req.count");
        assert_eq!(line.metric_type, MetricType::Counter);
        assert_eq!(line.value, 20.0);
        assert_eq!(line.sample_rate, 0.25);
        assert_eq!(line.timestamp_ns, 1_700_000_000_000_000_000);
        assert_eq!(
            line.attributes,
            vec![("a", "1"), ("b", "2"), ("container.id", "abc123")]
        );
        assert!(!line.addition);
    }

    #[test]
    fn every_type_code() {
        for (code, kind) in [
            ("c", MetricType::Counter),
            ("g", MetricType::Gauge),
            ("h", MetricType::Histogram),
            ("ms", MetricType::Timing),
            ("d", MetricType::Distribution),
            ("s", MetricType::Set),
        ] {
            let text = format!("x:1|{code}");
            assert_eq!(parse(&text).unwrap().metric_type, kind, "{code}");
        }
        assert_eq!(parse("x:1|x"), Err(ParseError::UnsupportedType("x".into())));
        assert_eq!(parse("x:1|"), Err(ParseError::UnsupportedType("".into())));
    }

    #[test]
    fn gauge_deltas_are_additions() {
        let plus = parse("g:+2|g").unwrap();
        assert!(plus.addition);
        assert_eq!(plus.value, 2.0);
        let minus = parse("g:-1.5|g").unwrap();
        assert!(minus.addition);
        assert_eq!(minus.value, -1.5);
        assert!(!parse("g:3|g").unwrap().addition);
    }

    #[test]
    fn malformed_lines_name_the_problem() {
        assert_eq!(parse("nothing"), Err(ParseError::NoType));
        assert_eq!(parse("name|c"), Err(ParseError::NoValue));
        assert_eq!(parse(":1|c"), Err(ParseError::EmptyName));
        assert_eq!(parse("a:|c"), Err(ParseError::EmptyValue));
        assert_eq!(parse("a:x|c"), Err(ParseError::Value("x".into())));
        assert_eq!(parse("a:1|c|@x"), Err(ParseError::SampleRate("x".into())));
        assert_eq!(parse("a:1|c|#k"), Err(ParseError::Tag("k".into())));
        assert_eq!(parse("a:1|c|#:v"), Err(ParseError::Tag(":v".into())));
        assert_eq!(
            parse("a:1|c|zzz"),
            Err(ParseError::UnknownPart("zzz".into()))
        );
        assert_eq!(parse("a:1|ms|T10"), Err(ParseError::TimestampOnType));
        assert_eq!(
            parse("a:1|c|T+10"),
            Err(ParseError::Timestamp("+10".into()))
        );
        assert_eq!(parse("a:1|c|T"), Err(ParseError::Timestamp("".into())));
        // The type is checked before the value.
        assert_eq!(parse("a:x|q"), Err(ParseError::UnsupportedType("q".into())));
    }

    #[test]
    fn optional_parts_stop_at_the_first_empty_part() {
        let line = parse("a:1|c||#k:v").unwrap();
        assert!(line.attributes.is_empty());
        // Even an invalid part after the empty one is not read.
        assert!(parse("a:1|c||garbage").is_ok());
    }

    #[test]
    fn simple_tags_and_empty_tag_sets() {
        assert_eq!(
            parse_line("a:1|c|#k,j:1", false, true).unwrap().attributes,
            vec![("j", "1"), ("k", "")]
        );
        assert!(parse("a:1|c|#").unwrap().attributes.is_empty());
        assert_eq!(parse("a:1|c|#,,k:v,").unwrap().attributes, vec![("k", "v")]);
        // `k:v:w`: the value is everything after the first ':'.
        assert_eq!(
            parse("a:1|c|#k:v:w").unwrap().attributes,
            vec![("k", "v:w")]
        );
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_and_metric_type_wins() {
        assert_eq!(
            parse("a:1|c|#k:1,k:2").unwrap().attributes,
            vec![("k", "2")]
        );
        let line = parse_line("a:1|ms|#metric_type:mine,z:1", true, false).unwrap();
        assert_eq!(line.attributes, vec![("metric_type", "timing"), ("z", "1")]);
    }

    #[test]
    fn set_members_are_text() {
        let line = parse("users:alice|s").unwrap();
        assert_eq!(line.metric_type, MetricType::Set);
        assert_eq!(line.raw_value, "alice");
        assert!(parse("users:1|s|T5").is_err());
    }

    #[test]
    fn float_forms() {
        assert_eq!(parse_float("1e3"), Some(1000.0));
        assert_eq!(parse_float("+1.5"), Some(1.5));
        assert_eq!(parse_float(".5"), Some(0.5));
        assert!(parse_float("NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_float("-Inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_float("1_0"), None);
        assert_eq!(parse_float(""), None);
    }

    #[test]
    fn never_panics_on_odd_bytes() {
        for line in [
            "|",
            ":|",
            "a:1|c|@",
            "a:1|c|#,",
            "a:1|c|c:",
            "\u{0}:\u{0}|c",
            "a:1|c|T99999999999999999999",
            "a:1|c|T18446744073709551615",
            "é:1|g|#é:é",
        ] {
            let _ = parse_line(line, true, true);
        }
        // A timestamp that overflows when scaled wraps as in Go.
        let line = parse("a:1|c|T18446744073709551615").unwrap();
        assert_eq!(
            line.timestamp_ns,
            18446744073709551615u64.wrapping_mul(1_000_000_000)
        );
    }
}
