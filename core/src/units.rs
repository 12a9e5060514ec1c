//! The unit table: UCUM-style metric units (and the common non-UCUM spellings seen in the
//! wild) with their base unit and the factor to it, and the unit words that appear in
//! metric names (`latency_ms`, `heap_kb`), and the unit words of Prometheus metric names
//! ([`prometheus_word`]). Shared by the `units` processor and the Prometheus translation
//! of the `prometheusremotewrite` and `prometheus` exporters: the one unit table of oxcol.
//!
//! Base units are OpenTelemetry's: seconds `s`, bytes `By`, ratio `1`. Decimal prefixes
//! (`kBy`, `KB`, `MB`) are powers of 1000, binary ones (`KiBy`, `KiB`) powers of 1024, as
//! UCUM defines them. (Linux `/proc` "kB" means KiB: receivers say `KiBy` for those.)
//! This module only maps names and numbers; it never touches data.

/// What a unit measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dimension {
    Time,
    Bytes,
    Ratio,
}

impl Dimension {
    /// The base unit (UCUM) of the dimension.
    pub fn base_unit(self) -> &'static str {
        match self {
            Dimension::Time => "s",
            Dimension::Bytes => "By",
            Dimension::Ratio => "1",
        }
    }

    /// The word for the base unit in Prometheus-style metric names.
    pub fn base_word(self) -> &'static str {
        match self {
            Dimension::Time => "seconds",
            Dimension::Bytes => "bytes",
            Dimension::Ratio => "ratio",
        }
    }
}

/// A known unit: its dimension and the factor that converts a value to the base unit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Known {
    pub dimension: Dimension,
    pub factor: f64,
}

const KI: f64 = 1024.0;

/// Looks up a simple unit (no `/`). `None` for units this table does not know.
pub fn lookup(unit: &str) -> Option<Known> {
    use Dimension::*;
    let (dimension, factor) = match unit {
        "ns" => (Time, 1e-9),
        "us" | "µs" | "μs" => (Time, 1e-6),
        "ms" => (Time, 1e-3),
        "s" => (Time, 1.0),
        "min" => (Time, 60.0),
        "h" => (Time, 3600.0),
        "d" => (Time, 86400.0),
        "By" | "B" => (Bytes, 1.0),
        "KiBy" | "KiB" => (Bytes, KI),
        "MiBy" | "MiB" => (Bytes, KI * KI),
        "GiBy" | "GiB" => (Bytes, KI * KI * KI),
        "TiBy" | "TiB" => (Bytes, KI * KI * KI * KI),
        "kBy" | "KBy" | "kB" | "KB" => (Bytes, 1e3),
        "MBy" | "MB" => (Bytes, 1e6),
        "GBy" | "GB" => (Bytes, 1e9),
        "TBy" | "TB" => (Bytes, 1e12),
        "1" => (Ratio, 1.0),
        "%" => (Ratio, 0.01),
        _ => return None,
    };
    Some(Known { dimension, factor })
}

/// A unit converted to base units: the new unit text and the factor.
#[derive(Clone, Debug, PartialEq)]
pub struct Conversion {
    pub unit: String,
    pub factor: f64,
    /// The dimension of the numerator (for renaming), `None` for a compound unit.
    pub dimension: Option<Dimension>,
}

/// Converts `unit` to base units: simple units by the table, `a/b` when both parts are
/// known (`KiBy/s` -> `By/s` x1024; `ms/min`), annotations (`{requests}`) and the empty
/// unit as they are (factor 1). `None` when any part is unknown.
pub fn to_base(unit: &str) -> Option<Conversion> {
    if unit.is_empty() || (unit.starts_with('{') && unit.ends_with('}') && !unit[1..].contains('{'))
    {
        return Some(Conversion {
            unit: unit.to_string(),
            factor: 1.0,
            dimension: None,
        });
    }
    if let Some((numerator, denominator)) = unit.split_once('/') {
        let top = part_to_base(numerator)?;
        let bottom = part_to_base(denominator)?;
        return Some(Conversion {
            unit: format!("{}/{}", top.0, bottom.0),
            factor: top.1 / bottom.1,
            dimension: None,
        });
    }
    let known = lookup(unit)?;
    Some(Conversion {
        unit: known.dimension.base_unit().to_string(),
        factor: known.factor,
        dimension: Some(known.dimension),
    })
}

/// One side of `a/b`: a known unit, `1`, or an annotation.
fn part_to_base(part: &str) -> Option<(String, f64)> {
    if part.starts_with('{') && part.ends_with('}') {
        return Some((part.to_string(), 1.0));
    }
    let known = lookup(part)?;
    Some((known.dimension.base_unit().to_string(), known.factor))
}

/// The unit a word in a metric name stands for (`ms`, `millis`, `kb`, `percent`...),
/// case-insensitive. Base words (`seconds`, `bytes`, `ratio`) are included.
pub fn unit_of_name_token(token: &str) -> Option<Known> {
    use Dimension::*;
    let lower = token.to_ascii_lowercase();
    let unit = match lower.as_str() {
        "ns" | "nanos" | "nanoseconds" => "ns",
        "us" | "micros" | "microseconds" => "us",
        "ms" | "millis" | "milliseconds" => "ms",
        "seconds" | "secs" | "sec" => "s",
        "minutes" | "mins" => "min",
        "hours" => "h",
        "days" => "d",
        "bytes" => "By",
        "kb" | "kilobytes" => "kBy",
        "kib" | "kibibytes" => "KiBy",
        "mb" | "megabytes" => "MBy",
        "mib" | "mebibytes" => "MiBy",
        "gb" | "gigabytes" => "GBy",
        "gib" | "gibibytes" => "GiBy",
        "percent" | "pct" => "%",
        "ratio" => "1",
        _ => return None,
    };
    let known = lookup(unit)?;
    debug_assert!(matches!(known.dimension, Time | Bytes | Ratio));
    Some(known)
}

/// The word Prometheus metric names use for a UCUM unit (`s` -> `seconds`, `By` ->
/// `bytes`, `1` -> empty), per OpenTelemetry's Prometheus compatibility spec
/// (`prometheus/otlptranslator`). `None` for units outside the spec's table (callers
/// then use the unit text, sanitized).
pub fn prometheus_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tebibytes",
        "KBy" | "kBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        "1" => "",
        _ => return None,
    })
}

/// The word after `per_` for the denominator of `a/b` units (`s` -> `second`, `m` ->
/// `minute`); other units fall back to [`prometheus_word`].
pub fn prometheus_per_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return prometheus_word(unit),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_factors() {
        assert_eq!(
            to_base("ms").map(|c| (c.unit, c.factor)),
            Some(("s".to_string(), 1e-3))
        );
        assert_eq!(to_base("KiBy").map(|c| c.factor), Some(1024.0));
        assert_eq!(
            to_base("MB").map(|c| (c.unit, c.factor)),
            Some(("By".to_string(), 1e6))
        );
        assert_eq!(
            to_base("%").map(|c| (c.unit, c.factor)),
            Some(("1".to_string(), 0.01))
        );
        assert_eq!(
            to_base("KiBy/s").map(|c| (c.unit, c.factor)),
            Some(("By/s".to_string(), 1024.0))
        );
        assert_eq!(
            to_base("{requests}/min").map(|c| c.unit),
            Some("{requests}/s".to_string())
        );
        assert_eq!(to_base("{requests}").map(|c| c.factor), Some(1.0));
        assert_eq!(to_base("furlong"), None);
        assert_eq!(to_base("By/fortnight"), None);
    }

    #[test]
    fn name_tokens() {
        assert_eq!(unit_of_name_token("MS").map(|k| k.factor), Some(1e-3));
        assert_eq!(
            unit_of_name_token("kb").map(|k| k.dimension),
            Some(Dimension::Bytes)
        );
        assert_eq!(unit_of_name_token("latency"), None);
    }
}
