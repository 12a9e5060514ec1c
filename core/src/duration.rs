//! Durations as the OpenTelemetry Collector writes them in YAML: Go's
//! `time.ParseDuration` syntax (`200ms`, `1m30s`, `1.5h`, `10us`, `0`).
//!
//! A bare integer is accepted as nanoseconds, as Go's mapstructure hook does for
//! `time.Duration` fields. This module only parses and prints; it never reads a clock.

use std::fmt;
use std::time::Duration;

/// A `std::time::Duration` that deserializes from Go duration strings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    pub const fn from_secs(secs: u64) -> Self {
        GoDuration(Duration::from_secs(secs))
    }
    pub const fn from_millis(ms: u64) -> Self {
        GoDuration(Duration::from_millis(ms))
    }
    pub fn get(self) -> Duration {
        self.0
    }
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<GoDuration> for Duration {
    fn from(d: GoDuration) -> Duration {
        d.0
    }
}

/// Parses Go's duration syntax: an optional sign (negative is refused), then one or more
/// `<decimal><unit>` pairs with unit one of `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`.
/// `"0"` alone needs no unit.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let original = text;
    let text = text.trim();
    let invalid = || {
        format!(
            "invalid duration {original:?}: expected a number and a unit such as \"200ms\", \"5s\", \"1m30s\" (units: ns, us, ms, s, m, h)"
        )
    };
    if text.is_empty() {
        return Err(invalid());
    }
    if text.starts_with('-') {
        return Err(format!(
            "invalid duration {original:?}: must not be negative"
        ));
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| {
                format!("invalid duration {original:?}: missing unit after the number")
            })?;
        if number_len == 0 {
            return Err(invalid());
        }
        let number: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_nanos = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        total_nanos += number * unit_nanos;
    }
    if !total_nanos.is_finite() || total_nanos > u64::MAX as f64 {
        return Err(format!("invalid duration {original:?}: too large"));
    }
    Ok(Duration::from_nanos(total_nanos.round() as u64))
}

/// Formats like Go's `Duration.String` for the common cases (`1m30s`, `200ms`, `0s`).
pub fn format_go_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}us", trim_float(nanos as f64 / 1e3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_float(nanos as f64 / 1e6));
    }
    let mut out = String::new();
    let total_secs = duration.as_secs_f64();
    let hours = (total_secs / 3600.0).floor();
    let minutes = ((total_secs - hours * 3600.0) / 60.0).floor();
    let seconds = total_secs - hours * 3600.0 - minutes * 60.0;
    if hours > 0.0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0.0 || minutes > 0.0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{}s", trim_float(seconds)));
    out
}

fn trim_float(value: f64) -> String {
    let text = format!("{value:.9}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_go_duration(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for GoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = GoDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"200ms\", \"5s\" or \"1m30s\"")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<GoDuration, E> {
                parse_go_duration(text).map(GoDuration).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, nanos: u64) -> Result<GoDuration, E> {
                Ok(GoDuration(Duration::from_nanos(nanos)))
            }
            fn visit_i64<E: serde::de::Error>(self, nanos: i64) -> Result<GoDuration, E> {
                u64::try_from(nanos)
                    .map(|n| GoDuration(Duration::from_nanos(n)))
                    .map_err(|_| E::custom("a duration must not be negative"))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl serde::Serialize for GoDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_go_duration(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_syntax() {
        assert_eq!(
            parse_go_duration("200ms").unwrap(),
            Duration::from_millis(200)
        );
        assert_eq!(parse_go_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_go_duration("1.5h").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_go_duration("10us").unwrap(),
            Duration::from_micros(10)
        );
        assert_eq!(
            parse_go_duration("10µs").unwrap(),
            Duration::from_micros(10)
        );
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_go_duration("7ns").unwrap(), Duration::from_nanos(7));
    }

    #[test]
    fn rejects_bad_input_with_a_hint() {
        for bad in ["", "5", "5x", "-1s", "s", "1.2.3s", "ms5"] {
            let err = parse_go_duration(bad).unwrap_err();
            assert!(err.contains("invalid duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for text in ["200ms", "1m30s", "5s", "0s", "1h0m0s", "10us"] {
            let parsed = parse_go_duration(text).unwrap();
            assert_eq!(
                parse_go_duration(&format_go_duration(parsed)).unwrap(),
                parsed,
                "{text}"
            );
        }
        assert_eq!(format_go_duration(Duration::from_secs(90)), "1m30s");
    }
}
