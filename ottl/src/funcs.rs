//! The OTTL functions oxcol supports: editors (change the item) and converters (compute a
//! value), with their parameters and the Collector's semantics.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, Sum, metric, number_data_point,
};
use regex::Regex;

use crate::ast::{Arg, Call, Expr};
use crate::eval::{Operand, arg_value, eval, eval_keys, operand, read_path, write_path};
use crate::paths::{Field, Key, View, get_field, get_indexed, map_at_mut, value_mut};
use crate::value::{Value, hex_lower, map_put};

/// How a parameter is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Param {
    /// A path the editor reads and writes.
    Target,
    /// Any expression, evaluated per item.
    Get,
    OptGet,
    /// A string literal.
    Str,
    OptStr,
    /// One of these string literals.
    Choice(&'static [&'static str]),
    /// A string literal compiled as a regex at parse time.
    Regex,
    /// A string literal compiled as a glob pattern at parse time.
    Glob,
    Int,
    OptInt,
    Float,
    Bool,
    OptBool,
    StrList,
    /// The name of a hash converter (`SHA256`).
    OptFunc,
}

impl Param {
    pub(crate) fn optional(self) -> bool {
        matches!(
            self,
            Param::OptGet | Param::OptStr | Param::OptInt | Param::OptBool | Param::OptFunc
        )
    }
}

macro_rules! funcs {
    ($($variant:ident = $name:literal, $editor:literal, [$(($pname:literal, $ptype:expr)),* $(,)?];)*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub(crate) enum Func { $($variant),* }
        pub(crate) fn lookup(name: &str) -> Option<Func> {
            match name { $($name => Some(Func::$variant),)* _ => None }
        }
        impl Func {
            pub(crate) fn name(self) -> &'static str {
                match self { $(Func::$variant => $name),* }
            }
            pub(crate) fn is_editor(self) -> bool {
                match self { $(Func::$variant => $editor),* }
            }
            pub(crate) fn params(self) -> &'static [(&'static str, Param)] {
                use Param::*;
                match self { $(Func::$variant => &[$(($pname, $ptype)),*]),* }
            }
        }
        /// Every function name, editors first (for the docs test).
        #[cfg(test)]
        pub(crate) const ALL_NAMES: &[&str] = &[$($name),*];
    };
}

funcs! {
    Set = "set", true, [("target", Target), ("value", Get)];
    DeleteKey = "delete_key", true, [("target", Target), ("key", Get)];
    DeleteMatchingKeys = "delete_matching_keys", true, [("target", Target), ("pattern", Regex)];
    KeepKeys = "keep_keys", true, [("target", Target), ("keys", StrList)];
    KeepMatchingKeys = "keep_matching_keys", true, [("target", Target), ("pattern", Regex)];
    ReplacePattern = "replace_pattern", true, [("target", Target), ("regex", Regex), ("replacement", Get), ("function", OptFunc), ("replacement_format", OptGet)];
    ReplaceAllPatterns = "replace_all_patterns", true, [("target", Target), ("mode", Choice(&["key", "value"])), ("regex", Regex), ("replacement", Get), ("function", OptFunc), ("replacement_format", OptGet)];
    ReplaceMatch = "replace_match", true, [("target", Target), ("pattern", Glob), ("replacement", Get), ("function", OptFunc), ("replacement_format", OptGet)];
    ReplaceAllMatches = "replace_all_matches", true, [("target", Target), ("pattern", Glob), ("replacement", Get), ("function", OptFunc), ("replacement_format", OptGet)];
    TruncateAll = "truncate_all", true, [("target", Target), ("limit", Int)];
    Limit = "limit", true, [("target", Target), ("limit", Int), ("priority_keys", StrList)];
    MergeMaps = "merge_maps", true, [("target", Target), ("source", Get), ("strategy", Choice(&["insert", "update", "upsert"]))];
    Flatten = "flatten", true, [("target", Target), ("prefix", OptStr), ("depth", OptInt), ("conflict", OptBool)];
    Append = "append", true, [("target", Target), ("value", OptGet), ("values", OptGet)];
    ConvertSumToGauge = "convert_sum_to_gauge", true, [];
    ConvertGaugeToSum = "convert_gauge_to_sum", true, [("aggregation_temporality", Choice(&["cumulative", "delta"])), ("is_monotonic", Bool)];
    ExtractSumMetric = "extract_sum_metric", true, [("is_monotonic", Bool), ("suffix", OptStr)];
    ExtractCountMetric = "extract_count_metric", true, [("is_monotonic", Bool), ("suffix", OptStr)];
    ScaleMetric = "scale_metric", true, [("factor", Float), ("unit", OptGet)];
    CopyMetric = "copy_metric", true, [("name", OptGet), ("description", OptGet), ("unit", OptGet)];
    HasAttrKeyOnDatapoint = "HasAttrKeyOnDatapoint", false, [("key", Str)];
    HasAttrOnDatapoint = "HasAttrOnDatapoint", false, [("key", Str), ("expected_value", Str)];
    SetSemconvSpanName = "set_semconv_span_name", true, [("semconv_version", Str), ("original_span_name_attribute", OptStr)];
    Concat = "Concat", false, [("vals", Get), ("delimiter", Get)];
    ConvertCase = "ConvertCase", false, [("target", Get), ("to_case", Choice(&["lower", "upper", "snake", "camel"]))];
    ToLowerCase = "ToLowerCase", false, [("target", Get)];
    ToUpperCase = "ToUpperCase", false, [("target", Get)];
    ToSnakeCase = "ToSnakeCase", false, [("target", Get)];
    ToCamelCase = "ToCamelCase", false, [("target", Get)];
    Len = "Len", false, [("target", Get)];
    IsMatch = "IsMatch", false, [("target", Get), ("pattern", Regex)];
    Int = "Int", false, [("target", Get)];
    Double = "Double", false, [("target", Get)];
    String = "String", false, [("target", Get)];
    Bool = "Bool", false, [("target", Get)];
    Split = "Split", false, [("target", Get), ("delimiter", Str)];
    Substring = "Substring", false, [("target", Get), ("start", Get), ("length", Get)];
    HasPrefix = "HasPrefix", false, [("target", Get), ("prefix", Get)];
    HasSuffix = "HasSuffix", false, [("target", Get), ("suffix", Get)];
    Sha1 = "SHA1", false, [("value", Get)];
    Sha256 = "SHA256", false, [("value", Get)];
    Sha512 = "SHA512", false, [("value", Get)];
    Md5 = "MD5", false, [("value", Get)];
    Fnv = "FNV", false, [("value", Get)];
    ParseJson = "ParseJSON", false, [("target", Get)];
    IsString = "IsString", false, [("value", Get)];
    IsInt = "IsInt", false, [("value", Get)];
    IsDouble = "IsDouble", false, [("value", Get)];
    IsBool = "IsBool", false, [("value", Get)];
    IsMap = "IsMap", false, [("value", Get)];
    IsList = "IsList", false, [("value", Get)];
    Hex = "Hex", false, [("value", Get)];
    UnixNano = "UnixNano", false, [("time", Get)];
    UnixMicro = "UnixMicro", false, [("time", Get)];
    UnixMilli = "UnixMilli", false, [("time", Get)];
    UnixSeconds = "UnixSeconds", false, [("time", Get)];
    TimeFromUnixNano = "TimeFromUnixNano", false, [("unix_nano", Get)];
    Now = "Now", false, [];
    Duration = "Duration", false, [("duration", Get)];
    TraceId = "TraceID", false, [("bytes", Get)];
    SpanId = "SpanID", false, [("bytes", Get)];
    Log = "Log", false, [("value", Get)];
    ExtractPatterns = "ExtractPatterns", false, [("target", Get), ("pattern", Regex)];
    ParseKeyValue = "ParseKeyValue", false, [("target", Get), ("delimiter", OptStr), ("pair_delimiter", OptStr)];
    IsRootSpan = "IsRootSpan", false, [];
    Nanoseconds = "Nanoseconds", false, [("duration", Get)];
    Microseconds = "Microseconds", false, [("duration", Get)];
    Milliseconds = "Milliseconds", false, [("duration", Get)];
    Seconds = "Seconds", false, [("duration", Get)];
    Minutes = "Minutes", false, [("duration", Get)];
    Hours = "Hours", false, [("duration", Get)];
    Year = "Year", false, [("time", Get)];
    Month = "Month", false, [("time", Get)];
    Day = "Day", false, [("time", Get)];
    Weekday = "Weekday", false, [("time", Get)];
    Hour = "Hour", false, [("time", Get)];
    Minute = "Minute", false, [("time", Get)];
    Second = "Second", false, [("time", Get)];
    Nanosecond = "Nanosecond", false, [("time", Get)];
    TruncateTime = "TruncateTime", false, [("time", Get), ("duration", Get)];
    Index = "Index", false, [("target", Get), ("value", Get)];
    Keys = "Keys", false, [("target", Get)];
    Values = "Values", false, [("target", Get)];
    Time = "Time", false, [("time", Get), ("format", Str), ("location", OptStr), ("locale", OptStr)];
    FormatTime = "FormatTime", false, [("time", Get), ("format", Str)];
}

impl Func {
    /// Hash converters may be passed by name to the replace_* editors.
    pub(crate) fn accepts_function_argument_role(self) -> bool {
        matches!(
            self,
            Func::Sha1 | Func::Sha256 | Func::Sha512 | Func::Md5 | Func::Fnv
        )
    }

    /// The one context a function works in, if it is limited to one: the metric
    /// functions to metric, set_semconv_span_name to span.
    pub(crate) fn only_context(self) -> Option<crate::ContextKind> {
        match self {
            Func::ConvertSumToGauge
            | Func::ConvertGaugeToSum
            | Func::ExtractSumMetric
            | Func::ExtractCountMetric
            | Func::ScaleMetric
            | Func::CopyMetric => Some(crate::ContextKind::Metric),
            Func::SetSemconvSpanName => Some(crate::ContextKind::Span),
            Func::HasAttrKeyOnDatapoint | Func::HasAttrOnDatapoint => {
                Some(crate::ContextKind::Metric)
            }
            _ => None,
        }
    }
}

/// Checks made once the arguments are bound.
pub(crate) fn check_call(func: Func, args: &[Arg]) -> Result<(), String> {
    match (func, args) {
        (Func::TruncateAll, [_, Arg::Int(limit)]) if *limit < 0 => {
            Err(format!("limit {limit} cannot be negative"))
        }
        (Func::Limit, [_, Arg::Int(limit), Arg::StrList(keys)]) => {
            if *limit < 0 {
                Err(format!("limit {limit} cannot be negative"))
            } else if keys.len() as i64 > *limit {
                Err(format!(
                    "{} priority keys cannot be more than the limit {limit}",
                    keys.len()
                ))
            } else {
                Ok(())
            }
        }
        (Func::Flatten, [_, _, Arg::Int(depth)]) if *depth < 0 => {
            Err(format!("depth {depth} cannot be negative"))
        }
        (Func::Append, [_, Arg::Absent, Arg::Absent]) => {
            Err("give value or values (at least one of the optional arguments)".to_string())
        }
        (Func::SetSemconvSpanName, [Arg::Str(version), attribute]) => {
            if !SEMCONV_VERSIONS.contains(&version.as_str()) {
                Err(format!(
                    "unsupported semconv version {version:?}: use one of {}",
                    SEMCONV_VERSIONS.join(", ")
                ))
            } else if matches!(attribute, Arg::Str(a) if a.is_empty()) {
                Err("original_span_name_attribute cannot be an empty string".to_string())
            } else {
                Ok(())
            }
        }
        (Func::ExtractPatterns, [_, Arg::Regex(re)])
            if re.capture_names().flatten().next().is_none() =>
        {
            Err(
                "the pattern needs at least one named capture group, e.g. \"(?P<name>\\w+)\""
                    .to_string(),
            )
        }
        (Func::ParseKeyValue, [_, d, p]) => {
            let d = match d {
                Arg::Str(s) if !s.is_empty() => s.as_str(),
                _ => "=",
            };
            let p = match p {
                Arg::Str(s) if !s.is_empty() => s.as_str(),
                _ => " ",
            };
            if d == p {
                Err(format!(
                    "pair delimiter {p:?} cannot be equal to delimiter {d:?}"
                ))
            } else {
                Ok(())
            }
        }
        (Func::Time | Func::FormatTime, [_, Arg::Str(format), rest @ ..]) => {
            if format.is_empty() {
                return Err("format cannot be empty".to_string());
            }
            crate::timefmt::check_format(format)?;
            match rest.first() {
                Some(Arg::Str(loc)) if loc != "UTC" => Err(format!(
                    "location {loc:?} is not supported: oxcol parses times in UTC only (put the offset in the text and use %z)"
                )),
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// A glob (`*`, `?`, `[...]`, `{a,b}`, `\` escapes) as an anchored regex.
pub(crate) fn glob_regex(glob: &str) -> Result<Regex, String> {
    let mut re = String::from("(?s)^");
    let mut chars = glob.chars().peekable();
    let mut in_alt = 0;
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '[' => {
                re.push('[');
                if chars.peek() == Some(&'!') {
                    chars.next();
                    re.push('^');
                }
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == ']' {
                        closed = true;
                        break;
                    }
                    if c == '\\' || c == '[' {
                        re.push('\\');
                    }
                    re.push(c);
                }
                if !closed {
                    return Err("unclosed [".to_string());
                }
                re.push(']');
            }
            '{' => {
                in_alt += 1;
                re.push_str("(?:");
            }
            '}' if in_alt > 0 => {
                in_alt -= 1;
                re.push(')');
            }
            ',' if in_alt > 0 => re.push('|'),
            '\\' => match chars.next() {
                Some(n) => re.push_str(&regex::escape(&n.to_string())),
                None => return Err("pattern ends with \\".to_string()),
            },
            other => re.push_str(&regex::escape(&other.to_string())),
        }
    }
    if in_alt > 0 {
        return Err("unclosed {".to_string());
    }
    re.push('$');
    Regex::new(&re).map_err(|e| e.to_string())
}

/// Argument `i`, or Absent when the call has fewer (never panics on a short list).
fn arg_at(call: &Call, i: usize) -> &Arg {
    call.args.get(i).unwrap_or(&Arg::Absent)
}

fn value_of(call: &Call, i: usize, view: &View<'_>) -> Result<Value, String> {
    Ok(arg_value(arg_at(call, i), view)?.unwrap_or(Value::Nil))
}

fn target_path(call: &Call) -> Result<&crate::ast::PathExpr, String> {
    match call.args.first() {
        Some(Arg::Expr(Expr::Path(p))) => Ok(p),
        _ => Err("internal: target is not a path".to_string()),
    }
}

fn regex_arg(call: &Call, i: usize) -> Result<&Regex, String> {
    match arg_at(call, i) {
        Arg::Regex(r) => Ok(r),
        _ => Err("internal: argument is not a regex".to_string()),
    }
}

fn str_arg(call: &Call, i: usize) -> Option<&str> {
    match arg_at(call, i) {
        Arg::Str(s) => Some(s),
        _ => None,
    }
}

fn int_arg(call: &Call, i: usize) -> Option<i64> {
    match arg_at(call, i) {
        Arg::Int(v) => Some(*v),
        _ => None,
    }
}

fn bool_arg(call: &Call, i: usize) -> bool {
    matches!(arg_at(call, i), Arg::Bool(true))
}

fn expect_string(v: Value, what: &str) -> Result<String, String> {
    match v {
        Value::Str(s) => Ok(s),
        other => Err(format!(
            "{what} must be a string but got {}",
            other.type_name()
        )),
    }
}

/// The replacement for the replace_* editors: the literal replacement, or, with a hash
/// function, the hash of it put into `replacement_format` (`%s`).
fn replacement_text(
    call: &Call,
    replacement_index: usize,
    view: &View<'_>,
    matched: Option<String>,
) -> Result<String, String> {
    let replacement = expect_string(value_of(call, replacement_index, view)?, "replacement")?;
    let Arg::Func(func) = arg_at(call, replacement_index + 1) else {
        return Ok(replacement);
    };
    let input = matched.unwrap_or(replacement);
    let hashed = match hash(*func, Value::Str(input))? {
        Value::Str(s) => s,
        Value::Int(i) => i.to_string(),
        other => other.to_string_like().unwrap_or_default(),
    };
    match arg_value(arg_at(call, replacement_index + 2), view)? {
        Some(Value::Str(format)) => {
            if !format.contains("%s") {
                return Err(format!("replacement_format {format:?} must contain %s"));
            }
            Ok(format.replacen("%s", &hashed, 1))
        }
        Some(other) => Err(format!(
            "replacement_format must be a string but got {}",
            other.type_name()
        )),
        None => Ok(hashed),
    }
}

/// Runs an editor on the item. Returns Ok(()) also when the editor did nothing.
pub(crate) fn call_editor(call: &Call, view: &mut View<'_>) -> Result<(), String> {
    match call.func {
        Func::Set => {
            let value = value_of(call, 1, view)?;
            let path = target_path(call)?;
            // A nil value changes nothing, except that a path read as nil (a missing key,
            // an empty body) written to a map key creates the key with the empty value:
            // the Collector reads such paths as an empty value, not as nil.
            let from_path = matches!(arg_at(call, 1), Arg::Expr(Expr::Path(_)));
            if value.is_nil() && (path.keys.is_empty() || !from_path) {
                return Ok(());
            }
            write_path(path, view, value)
        }
        Func::DeleteKey => {
            let key = match arg_at(call, 1) {
                Arg::Expr(Expr::Lit(Value::Str(key))) => std::borrow::Cow::Borrowed(key.as_str()),
                _ => std::borrow::Cow::Owned(expect_string(value_of(call, 1, view)?, "key")?),
            };
            edit_map(call, view, |m| {
                m.retain(|kv| kv.key != key);
                Ok(())
            })
        }
        Func::DeleteMatchingKeys => {
            let re = regex_arg(call, 1)?;
            edit_map(call, view, |m| {
                m.retain(|kv| !re.is_match(&kv.key));
                Ok(())
            })
        }
        Func::KeepKeys => {
            let Arg::StrList(keys) = arg_at(call, 1) else {
                return Err("internal: keys".to_string());
            };
            edit_map(call, view, |m| {
                m.retain(|kv| keys.contains(&kv.key));
                Ok(())
            })
        }
        Func::KeepMatchingKeys => {
            let re = regex_arg(call, 1)?;
            edit_map(call, view, |m| {
                m.retain(|kv| re.is_match(&kv.key));
                Ok(())
            })
        }
        Func::ReplacePattern => {
            let path = target_path(call)?;
            if let Some(done) = replace_pattern_in_place(call, path, view)? {
                return Ok(done);
            }
            let Value::Str(current) = read_path(path, view)? else {
                return Ok(());
            };
            let re = regex_arg(call, 1)?;
            if !re.is_match(&current) {
                return Ok(());
            }
            let new = replace_regex(call, 2, view, re, &current)?;
            if new != current {
                write_path(path, view, Value::Str(new))
            } else {
                Ok(())
            }
        }
        Func::ReplaceAllPatterns => {
            let re = regex_arg(call, 2)?.clone();
            let by_key = str_arg(call, 1) == Some("key");
            let path = target_path(call)?;
            let Value::Map(mut m) = read_path(path, view)? else {
                return Ok(());
            };
            let mut changed = false;
            for kv in &mut m {
                if by_key {
                    if re.is_match(&kv.key) {
                        let new = replace_regex(call, 3, view, &re, &kv.key)?;
                        changed |= new != kv.key;
                        kv.key = new;
                    }
                } else if let Some(AnyValue {
                    value: Some(any_value::Value::StringValue(s)),
                }) = &mut kv.value
                {
                    if re.is_match(s) {
                        let new = replace_regex(call, 3, view, &re, s)?;
                        changed |= new != *s;
                        *s = new;
                    }
                }
            }
            if by_key {
                // Renamed keys may collide: the later entry wins, keeping the first position.
                let mut deduped: Vec<KeyValue> = Vec::with_capacity(m.len());
                for kv in m {
                    match deduped.iter_mut().find(|d| d.key == kv.key) {
                        Some(d) => d.value = kv.value,
                        None => deduped.push(kv),
                    }
                }
                m = deduped;
            }
            if changed {
                write_path(path, view, Value::Map(m))
            } else {
                Ok(())
            }
        }
        Func::ReplaceMatch => {
            let path = target_path(call)?;
            let Value::Str(current) = read_path(path, view)? else {
                return Ok(());
            };
            if !regex_arg(call, 1)?.is_match(&current) {
                return Ok(());
            }
            let new = replacement_text(call, 2, view, Some(current))?;
            write_path(path, view, Value::Str(new))
        }
        Func::ReplaceAllMatches => {
            let re = regex_arg(call, 1)?.clone();
            let path = target_path(call)?;
            let Value::Map(mut m) = read_path(path, view)? else {
                return Ok(());
            };
            for kv in &mut m {
                if let Some(AnyValue {
                    value: Some(any_value::Value::StringValue(s)),
                }) = &mut kv.value
                {
                    if re.is_match(s) {
                        *s = replacement_text(call, 2, view, Some(s.clone()))?;
                    }
                }
            }
            write_path(path, view, Value::Map(m))
        }
        Func::TruncateAll => {
            let limit = int_arg(call, 1).unwrap_or(0).max(0) as usize;
            edit_map(call, view, |m| {
                for kv in m.iter_mut() {
                    if let Some(AnyValue {
                        value: Some(any_value::Value::StringValue(s)),
                    }) = &mut kv.value
                    {
                        if s.len() > limit {
                            let mut cut = limit;
                            while !s.is_char_boundary(cut) {
                                cut -= 1;
                            }
                            s.truncate(cut);
                        }
                    }
                }
                Ok(())
            })
        }
        Func::Limit => {
            let limit = int_arg(call, 1).unwrap_or(0).max(0) as usize;
            let Arg::StrList(priority) = arg_at(call, 2) else {
                return Err("internal: priority_keys".to_string());
            };
            edit_map(call, view, |m| {
                if m.len() <= limit {
                    return Ok(());
                }
                let mut count = m.iter().filter(|kv| priority.contains(&kv.key)).count();
                m.retain(|kv| {
                    if priority.contains(&kv.key) {
                        return true;
                    }
                    if count < limit {
                        count += 1;
                        return true;
                    }
                    false
                });
                Ok(())
            })
        }
        Func::MergeMaps => {
            let source = match value_of(call, 1, view)? {
                Value::Map(m) => m,
                other => {
                    return Err(format!(
                        "merge_maps source must be a map but got {}",
                        other.type_name()
                    ));
                }
            };
            let strategy = str_arg(call, 2).unwrap_or("upsert").to_string();
            edit_map(call, view, |m| {
                for kv in source {
                    let exists = m.iter().any(|t| t.key == kv.key);
                    let apply = match strategy.as_str() {
                        "insert" => !exists,
                        "update" => exists,
                        _ => true,
                    };
                    if apply {
                        map_put(m, &kv.key, kv.value.unwrap_or_default());
                    }
                }
                Ok(())
            })
        }
        Func::Flatten => {
            let prefix = str_arg(call, 1).map(str::to_string);
            let depth = int_arg(call, 2).map(|d| d as usize).unwrap_or(usize::MAX);
            let conflict = bool_arg(call, 3);
            edit_map(call, view, |m| {
                let mut f = Flattener {
                    out: Vec::with_capacity(m.len()),
                    depth,
                    conflict,
                    seen: std::collections::HashMap::new(),
                };
                let prefix = prefix.as_deref().map_or(String::new(), |p| {
                    if p.is_empty() {
                        String::new()
                    } else {
                        format!("{p}.")
                    }
                });
                f.map(&prefix, std::mem::take(m), 0);
                *m = f.out;
                Ok(())
            })
        }
        Func::Append => {
            let path = target_path(call)?;
            let mut items: Vec<AnyValue> = match read_path(path, view)? {
                Value::Nil => Vec::new(),
                Value::List(l) => l,
                other => vec![other.into_any()?],
            };
            if let Some(v) = arg_value(arg_at(call, 1), view)? {
                if !v.is_nil() {
                    items.push(v.into_any()?);
                }
            }
            if let Some(v) = arg_value(arg_at(call, 2), view)? {
                match v {
                    Value::List(l) => items.extend(l),
                    Value::Nil => {}
                    other => {
                        return Err(format!(
                            "values must be a list but got {}",
                            other.type_name()
                        ));
                    }
                }
            }
            write_path(path, view, Value::List(items))
        }
        Func::CopyMetric => {
            let mut fields = Vec::new();
            for i in 0..3 {
                fields.push(match arg_value(arg_at(call, i), view)? {
                    None | Some(Value::Nil) => None,
                    Some(Value::Str(s)) => Some(s),
                    Some(other) => {
                        return Err(format!(
                            "copy_metric arguments must be strings but got {}",
                            other.type_name()
                        ));
                    }
                });
            }
            let mut copy = view
                .metric
                .get()
                .cloned()
                .ok_or_else(|| "copy_metric works only in the metric context".to_string())?;
            let mut fields = fields.into_iter();
            if let Some(name) = fields.next().flatten() {
                copy.name = name;
            }
            if let Some(description) = fields.next().flatten() {
                copy.description = description;
            }
            if let Some(unit) = fields.next().flatten() {
                copy.unit = unit;
            }
            view.new_metrics.push(copy);
            Ok(())
        }
        Func::ConvertSumToGauge
        | Func::ConvertGaugeToSum
        | Func::ExtractSumMetric
        | Func::ExtractCountMetric
        | Func::ScaleMetric => metric_function(call, view),
        Func::SetSemconvSpanName => {
            let span = view.span.get_mut()?;
            let original = span.name.clone();
            let derived = semconv_span_name(span);
            if derived != original {
                span.name = derived;
                if let Some(attribute) = str_arg(call, 1) {
                    map_put(
                        &mut span.attributes,
                        attribute,
                        AnyValue {
                            value: Some(any_value::Value::StringValue(original)),
                        },
                    );
                }
            }
            Ok(())
        }
        other => Err(format!("{} is not an editor", other.name())),
    }
}

/// Lets `edit` change the target map. A target that is not a map (nil included) is an
/// error, as for the Collector's map getters. The map is changed where it is when the
/// target names one; otherwise it is read, edited and written back.
fn edit_map(
    call: &Call,
    view: &mut View<'_>,
    edit: impl FnOnce(&mut Vec<KeyValue>) -> Result<(), String>,
) -> Result<(), String> {
    let path = target_path(call)?;
    let keys = eval_keys(&path.keys, view)?;
    if let Some(map) = map_at_mut(view, path.field, &keys) {
        return edit(map);
    }
    let mut map = match get_indexed_or_field(view, path.field, &keys)? {
        Value::Map(m) => m,
        other => return Err(format!("expected a map but got {}", other.type_name())),
    };
    edit(&mut map)?;
    write_path(path, view, Value::Map(map))
}

/// Reads `field[keys]` (the field itself without keys).
fn get_indexed_or_field(view: &View<'_>, field: Field, keys: &[Key<'_>]) -> Result<Value, String> {
    if keys.is_empty() {
        Ok(get_field(view, field))
    } else {
        get_indexed(view, field, keys)
    }
}

/// `replace_pattern` on a string stored in a map (or the log body) with a literal
/// replacement and no hash function, changed where it is. None when the general path
/// must run (another target or replacement, or no string there).
fn replace_pattern_in_place(
    call: &Call,
    path: &crate::ast::PathExpr,
    view: &mut View<'_>,
) -> Result<Option<()>, String> {
    let Some(template) = &call.template else {
        return Ok(None);
    };
    if path.keys.is_empty() && path.field != Field::LogBody {
        return Ok(None);
    }
    let re = regex_arg(call, 1)?;
    let keys = eval_keys(&path.keys, view)?;
    let Some(AnyValue {
        value: Some(any_value::Value::StringValue(current)),
    }) = value_mut(view, path.field, &keys)
    else {
        return Ok(None);
    };
    if let std::borrow::Cow::Owned(new) = re.replace_all(current, template) {
        *current = new;
    }
    Ok(Some(()))
}

fn replace_regex(
    call: &Call,
    replacement_index: usize,
    view: &View<'_>,
    re: &Regex,
    current: &str,
) -> Result<String, String> {
    if matches!(arg_at(call, replacement_index + 1), Arg::Func(_)) {
        // With a hash function the expanded replacement of each match is hashed.
        let mut out = String::new();
        let mut last = 0;
        let template = expect_string(value_of(call, replacement_index, view)?, "replacement")?;
        for caps in re.captures_iter(current) {
            let Some(m) = caps.get(0) else { continue };
            let mut expanded = String::new();
            caps.expand(&go_template(&template), &mut expanded);
            out.push_str(&current[last..m.start()]);
            out.push_str(&replacement_text(
                call,
                replacement_index,
                view,
                Some(expanded),
            )?);
            last = m.end();
        }
        out.push_str(&current[last..]);
        return Ok(out);
    }
    let template = expect_string(value_of(call, replacement_index, view)?, "replacement")?;
    Ok(re
        .replace_all(current, go_template(&template).as_str())
        .into_owned())
}

/// A replacement template prepared once: literal text and capture group numbers, read
/// with the regex crate's rules (as `Captures::expand`): `$$` is `$`; `$name` takes the
/// longest run of letters, digits and `_`, `${name}` anything up to `}`; a name that is a
/// number is a group index, otherwise a group name; an unknown group expands to nothing;
/// a `$` that starts no reference is literal.
#[derive(Clone, Debug)]
pub(crate) struct Template {
    pieces: Vec<Piece>,
}

#[derive(Clone, Debug)]
enum Piece {
    Lit(String),
    Group(usize),
}

impl Template {
    /// The template of a `replace_pattern` call whose replacement is a string literal and
    /// that has no hash function.
    pub(crate) fn prepare(func: Func, args: &[Arg]) -> Option<Template> {
        if func != Func::ReplacePattern {
            return None;
        }
        let (Some(Arg::Regex(re)), Some(Arg::Expr(Expr::Lit(Value::Str(text))))) =
            (args.get(1), args.get(2))
        else {
            return None;
        };
        if !matches!(args.get(3), None | Some(Arg::Absent)) {
            return None;
        }
        Some(Template::parse(text, re))
    }

    pub(crate) fn parse(text: &str, re: &Regex) -> Template {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('$') {
            lit.push_str(&rest[..i]);
            rest = &rest[i..];
            if rest[1..].starts_with('$') {
                lit.push('$');
                rest = &rest[2..];
                continue;
            }
            let Some((name, end)) = cap_ref(rest) else {
                lit.push('$');
                rest = &rest[1..];
                continue;
            };
            rest = &rest[end..];
            let index = match name.parse::<usize>() {
                Ok(i) => Some(i),
                Err(_) => re.capture_names().position(|n| n == Some(name)),
            };
            if let Some(index) = index {
                if !lit.is_empty() {
                    pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                pieces.push(Piece::Group(index));
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Template { pieces }
    }
}

/// The group reference at the start of `rep` (which starts with `$`): its name and the
/// length of the reference.
fn cap_ref(rep: &str) -> Option<(&str, usize)> {
    let bytes = rep.as_bytes();
    if bytes.len() <= 1 {
        return None;
    }
    if bytes[1] == b'{' {
        let close = rep[2..].find('}')? + 2;
        return Some((&rep[2..close], close + 1));
    }
    let end = 1 + bytes[1..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .count();
    (end > 1).then(|| (&rep[1..end], end))
}

impl regex::Replacer for &Template {
    fn replace_append(&mut self, caps: &regex::Captures<'_>, dst: &mut String) {
        for piece in &self.pieces {
            match piece {
                Piece::Lit(s) => dst.push_str(s),
                Piece::Group(i) => {
                    if let Some(m) = caps.get(*i) {
                        dst.push_str(m.as_str());
                    }
                }
            }
        }
    }

    fn no_expansion(&mut self) -> Option<std::borrow::Cow<'_, str>> {
        match self.pieces.as_slice() {
            [] => Some(std::borrow::Cow::Borrowed("")),
            [Piece::Lit(s)] => Some(std::borrow::Cow::Borrowed(s)),
            _ => None,
        }
    }
}

/// Go's regexp `$name` takes the longest run of letters, digits and underscores as the
/// name, as Rust's does; `$$` is a literal `$` in both. The template is used as is.
fn go_template(template: &str) -> String {
    template.to_string()
}

/// The Collector's (v0.161) flatten: nested maps become `a.b` keys and list items
/// `a.0`, `a.1` (maps in lists are flattened too), up to `depth` levels. A list inside a
/// list gets its items' indexes appended without a dot (`a.20`), as the Collector does.
/// With `conflict`, a key produced again gets `.0`, `.1`... appended instead of
/// overwriting the first.
struct Flattener {
    out: Vec<KeyValue>,
    depth: usize,
    conflict: bool,
    seen: std::collections::HashMap<String, usize>,
}

impl Flattener {
    fn put(&mut self, key: String, value: AnyValue) {
        if !self.conflict {
            map_put(&mut self.out, &key, value);
            return;
        }
        match self.seen.get_mut(&key) {
            Some(n) => {
                let renamed = format!("{key}.{n}");
                *n += 1;
                map_put(&mut self.out, &renamed, value);
            }
            None => {
                self.seen.insert(key.clone(), 0);
                map_put(&mut self.out, &key, value);
            }
        }
    }

    /// `prefix` ends with "." (or is empty).
    fn map(&mut self, prefix: &str, map: Vec<KeyValue>, level: usize) {
        for kv in map {
            let key = format!("{prefix}{}", kv.key);
            self.value(key, kv.value.unwrap_or_default(), level, true);
        }
    }

    fn value(&mut self, key: String, value: AnyValue, level: usize, dotted_list: bool) {
        match value.value {
            Some(any_value::Value::KvlistValue(inner)) if level < self.depth => {
                self.map(&format!("{key}."), inner.values, level + 1)
            }
            Some(any_value::Value::ArrayValue(list)) if level < self.depth => {
                let prefix = if dotted_list {
                    format!("{key}.")
                } else {
                    key.clone()
                };
                for (i, item) in list.values.into_iter().enumerate() {
                    // With conflict resolution the Collector puts scalar items under the
                    // list's own key (then `.0`, `.1`... as conflicts).
                    let nested = matches!(
                        item.value,
                        Some(any_value::Value::KvlistValue(_) | any_value::Value::ArrayValue(_))
                    );
                    let item_key = if self.conflict && !nested {
                        key.clone()
                    } else {
                        format!("{prefix}{i}")
                    };
                    self.value(item_key, item, level + 1, false);
                }
            }
            other => self.put(key, AnyValue { value: other }),
        }
    }
}

/// The metric-context functions.
fn metric_function(call: &Call, view: &mut View<'_>) -> Result<(), String> {
    let metric = view.metric.get_mut()?;
    match call.func {
        Func::ConvertSumToGauge => {
            if let Some(metric::Data::Sum(sum)) = &mut metric.data {
                let points = std::mem::take(&mut sum.data_points);
                metric.data = Some(metric::Data::Gauge(Gauge {
                    data_points: points,
                }));
            }
            Ok(())
        }
        Func::ConvertGaugeToSum => {
            let temporality = if str_arg(call, 0) == Some("delta") {
                AggregationTemporality::Delta
            } else {
                AggregationTemporality::Cumulative
            };
            if let Some(metric::Data::Gauge(gauge)) = &mut metric.data {
                let points = std::mem::take(&mut gauge.data_points);
                metric.data = Some(metric::Data::Sum(Sum {
                    data_points: points,
                    aggregation_temporality: temporality as i32,
                    is_monotonic: bool_arg(call, 1),
                }));
            }
            Ok(())
        }
        Func::ExtractSumMetric | Func::ExtractCountMetric => {
            let count = call.func == Func::ExtractCountMetric;
            let suffix = str_arg(call, 1)
                .unwrap_or(if count { "_count" } else { "_sum" })
                .to_string();
            let (temporality, points): (i32, Vec<NumberDataPoint>) = match &metric.data {
                Some(metric::Data::Histogram(h)) => (
                    h.aggregation_temporality,
                    h.data_points
                        .iter()
                        .filter(|p| count || p.sum.is_some())
                        .map(|p| {
                            extracted(
                                &p.attributes,
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                                p.sum,
                                p.count,
                                count,
                            )
                        })
                        .collect(),
                ),
                Some(metric::Data::ExponentialHistogram(h)) => (
                    h.aggregation_temporality,
                    h.data_points
                        .iter()
                        .filter(|p| count || p.sum.is_some())
                        .map(|p| {
                            extracted(
                                &p.attributes,
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                                p.sum,
                                p.count,
                                count,
                            )
                        })
                        .collect(),
                ),
                Some(metric::Data::Summary(s)) => (
                    AggregationTemporality::Cumulative as i32,
                    s.data_points
                        .iter()
                        .map(|p| {
                            extracted(
                                &p.attributes,
                                p.start_time_unix_nano,
                                p.time_unix_nano,
                                Some(p.sum),
                                p.count,
                                count,
                            )
                        })
                        .collect(),
                ),
                _ => return Ok(()),
            };
            if points.is_empty() {
                return Ok(());
            }
            let new = Metric {
                name: format!("{}{suffix}", metric.name),
                description: metric.description.clone(),
                unit: if count {
                    "1".to_string()
                } else {
                    metric.unit.clone()
                },
                metadata: Vec::new(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: points,
                    aggregation_temporality: temporality,
                    is_monotonic: bool_arg(call, 0),
                })),
            };
            view.new_metrics.push(new);
            Ok(())
        }
        Func::ScaleMetric => {
            let Arg::Float(factor) = *arg_at(call, 0) else {
                return Err("internal: factor".to_string());
            };
            let unit = match arg_value(arg_at(call, 1), view)? {
                Some(Value::Str(s)) => Some(s),
                Some(Value::Nil) | None => None,
                Some(other) => {
                    return Err(format!(
                        "unit must be a string but got {}",
                        other.type_name()
                    ));
                }
            };
            let metric = view.metric.get_mut()?;
            let scale_number = |p: &mut NumberDataPoint| {
                p.value = match p.value {
                    Some(number_data_point::Value::AsDouble(d)) => {
                        Some(number_data_point::Value::AsDouble(d * factor))
                    }
                    Some(number_data_point::Value::AsInt(i)) => {
                        Some(number_data_point::Value::AsInt((i as f64 * factor) as i64))
                    }
                    None => None,
                };
                for e in &mut p.exemplars {
                    scale_exemplar(e, factor);
                }
            };
            match &mut metric.data {
                Some(metric::Data::Gauge(g)) => g.data_points.iter_mut().for_each(scale_number),
                Some(metric::Data::Sum(s)) => s.data_points.iter_mut().for_each(scale_number),
                Some(metric::Data::Histogram(h)) => {
                    for p in &mut h.data_points {
                        p.sum = p.sum.map(|v| v * factor);
                        p.min = p.min.map(|v| v * factor);
                        p.max = p.max.map(|v| v * factor);
                        p.explicit_bounds.iter_mut().for_each(|b| *b *= factor);
                        p.exemplars
                            .iter_mut()
                            .for_each(|e| scale_exemplar(e, factor));
                    }
                }
                Some(metric::Data::Summary(s)) => {
                    for p in &mut s.data_points {
                        p.sum *= factor;
                        p.quantile_values.iter_mut().for_each(|q| q.value *= factor);
                    }
                }
                Some(metric::Data::ExponentialHistogram(_)) => {
                    return Err("scale_metric does not support exponential histograms".to_string());
                }
                None => {}
            }
            if let Some(unit) = unit {
                metric.unit = unit;
            }
            Ok(())
        }
        _ => Err("internal: not a metric function".to_string()),
    }
}

fn scale_exemplar(e: &mut opentelemetry_proto::tonic::metrics::v1::Exemplar, factor: f64) {
    use opentelemetry_proto::tonic::metrics::v1::exemplar;
    e.value = match e.value {
        Some(exemplar::Value::AsDouble(d)) => Some(exemplar::Value::AsDouble(d * factor)),
        Some(exemplar::Value::AsInt(i)) => Some(exemplar::Value::AsInt((i as f64 * factor) as i64)),
        None => None,
    };
}

fn extracted(
    attributes: &[KeyValue],
    start: u64,
    time: u64,
    sum: Option<f64>,
    count: u64,
    want_count: bool,
) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attributes.to_vec(),
        start_time_unix_nano: start,
        time_unix_nano: time,
        value: Some(if want_count {
            number_data_point::Value::AsInt(count as i64)
        } else {
            number_data_point::Value::AsDouble(sum.unwrap_or(0.0))
        }),
        ..Default::default()
    }
}

fn string_like(v: Value) -> Option<String> {
    v.to_string_like()
}

/// A getter that must produce a string (nil is an error, as for the Collector's
/// StringGetter).
fn require_string(v: Value, what: &str) -> Result<String, String> {
    match v {
        Value::Str(s) => Ok(s),
        other => Err(format!(
            "{what} expected a string but got {}",
            other.type_name()
        )),
    }
}

fn hash(func: Func, v: Value) -> Result<Value, String> {
    let s = require_string(v, func.name())?;
    Ok(match func {
        Func::Sha1 => Value::Str(hex_lower(
            ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, s.as_bytes()).as_ref(),
        )),
        Func::Sha256 => Value::Str(hex_lower(
            ring::digest::digest(&ring::digest::SHA256, s.as_bytes()).as_ref(),
        )),
        Func::Sha512 => Value::Str(hex_lower(
            ring::digest::digest(&ring::digest::SHA512, s.as_bytes()).as_ref(),
        )),
        Func::Md5 => Value::Str(hex_lower(&md5::compute(s.as_bytes()).0)),
        Func::Fnv => {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in s.as_bytes() {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            Value::Int(h as i64)
        }
        _ => return Err("internal: not a hash".to_string()),
    })
}

/// Semantic-convention versions `set_semconv_span_name` accepts.
const SEMCONV_VERSIONS: &[&str] = &[
    "1.37.0", "1.38.0", "1.39.0", "1.40.0", "1.41.0", "1.42.0", "1.43.0",
];

/// A low-cardinality span name from the span's semantic-convention attributes (HTTP, RPC,
/// database, messaging, by span kind); the current name when none applies.
fn semconv_span_name(span: &opentelemetry_proto::tonic::trace::v1::Span) -> String {
    let get = |key: &str| -> Option<String> {
        span.attributes.iter().find(|a| a.key == key).map(|a| {
            Value::from_any_opt(a.value.as_ref())
                .to_string_like()
                .unwrap_or_default()
        })
    };
    let either = |key: &str, old: &str| get(key).or_else(|| get(old));
    let address = || {
        get("server.address").map(|a| match get("server.port") {
            Some(p) => format!("{a}:{p}"),
            None => a,
        })
    };
    let http = |target_key: &str| -> Option<String> {
        let method = either("http.request.method", "http.method")?;
        let method = if method == "_OTHER" {
            "HTTP".to_string()
        } else {
            method
        };
        Some(match get(target_key) {
            Some(target) => format!("{method} {target}"),
            None => method,
        })
    };
    let rpc = || -> Option<String> {
        let system = get("rpc.system")?;
        let method = either("rpc.method", "rpc.grpc.method");
        let service = either("rpc.service", "rpc.grpc.service");
        Some(match (service, method) {
            (Some(s), Some(m)) => format!("{s}/{m}"),
            (None, Some(m)) => m,
            (Some(s), None) => format!("{s}/*"),
            (None, None) => system,
        })
    };
    let db = || -> Option<String> {
        let system = either("db.system.name", "db.system")?;
        if let Some(summary) = get("db.query.summary") {
            return Some(summary);
        }
        let namespace = either("db.namespace", "db.name");
        let qualified = |name: String| match &namespace {
            Some(ns) if !ns.is_empty() => format!("{ns}.{name}"),
            _ => name,
        };
        let target = get("db.collection.name")
            .map(qualified)
            .or_else(|| get("db.stored_procedure.name").map(qualified))
            .or_else(|| namespace.clone().filter(|n| !n.is_empty()))
            .or_else(address)
            .filter(|t| !t.is_empty());
        let operation = either("db.operation.name", "db.operation").filter(|o| !o.is_empty());
        Some(match (operation, target) {
            (Some(o), Some(t)) => format!("{o} {t}"),
            (Some(o), None) => o,
            (None, Some(t)) => t,
            (None, None) => system,
        })
    };
    let messaging = || -> Option<String> {
        let system = get("messaging.system")?;
        let flag = |key: &str| {
            span.attributes.iter().any(|a| {
                a.key == key
                    && matches!(
                        a.value.as_ref().and_then(|v| v.value.as_ref()),
                        Some(any_value::Value::BoolValue(true))
                    )
            })
        };
        let destination = if flag("messaging.destination.temporary") {
            Some("(temporary)".to_string())
        } else if flag("messaging.destination.anonymous") {
            Some("(anonymous)".to_string())
        } else {
            get("messaging.destination.template")
                .or_else(|| either("messaging.destination.name", "messaging.destination"))
                .or_else(address)
        }
        .filter(|d| !d.is_empty());
        let operation = either("messaging.operation.name", "messaging.operation");
        Some(match (operation, destination) {
            (Some(o), Some(d)) => format!("{o} {d}"),
            (None, Some(d)) => d,
            (Some(o), None) => o,
            (None, None) => system,
        })
    };
    let derived = match span.kind {
        2 => http("http.route").or_else(rpc).or_else(messaging),
        5 | 4 => messaging(),
        3 => http("url.template")
            .or_else(rpc)
            .or_else(db)
            .or_else(messaging),
        _ => None,
    };
    derived.unwrap_or_else(|| span.name.clone())
}

/// Splits `text` at `delimiter` outside double or single quotes; the quotes are removed
/// and empty pieces dropped.
fn split_quoted(text: &str, delimiter: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if quote.is_none() && rest.starts_with(delimiter) {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            rest = &rest[delimiter.len()..];
            continue;
        }
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => current.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    if quote.is_some() {
        return Err(format!(
            "never reached the end of a quoted value in {text:?}"
        ));
    }
    if !current.is_empty() {
        out.push(current);
    }
    Ok(out)
}

fn snake_case(s: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1);
            let boundary = prev.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit())
                || (prev.is_some_and(|p| p.is_uppercase())
                    && next.is_some_and(|n| n.is_lowercase()));
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else if c == ' ' || c == '-' || c == '.' || c == '_' {
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
        } else {
            out.push(c);
        }
    }
    out.trim_end_matches('_').to_string()
}

fn camel_case(s: &str) -> String {
    let mut out = String::new();
    let mut upper_next = true;
    for c in s.chars() {
        if c == '_' || c == ' ' || c == '-' || c == '.' {
            upper_next = true;
        } else if upper_next {
            out.extend(c.to_uppercase());
            upper_next = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn convert_case(v: Value, case: &str) -> Result<Value, String> {
    let s = match v {
        Value::Nil => return Ok(Value::Nil),
        Value::Str(s) => s,
        other => return Err(format!("expected a string but got {}", other.type_name())),
    };
    Ok(Value::Str(match case {
        "lower" => s.to_lowercase(),
        "upper" => s.to_uppercase(),
        "snake" => snake_case(&s),
        _ => camel_case(&s),
    }))
}

fn to_time_nanos(v: Value, func: &str) -> Result<i64, String> {
    match v {
        Value::Time(t) => Ok(t),
        other => Err(format!(
            "{func} expected a time but got {}",
            other.type_name()
        )),
    }
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn bytes_like(v: Value) -> Result<Vec<u8>, String> {
    Ok(match v {
        Value::Bytes(b) => b,
        Value::Str(s) => s.into_bytes(),
        Value::Int(i) => i.to_be_bytes().to_vec(),
        Value::Double(d) => d.to_bits().to_be_bytes().to_vec(),
        Value::Bool(b) => vec![u8::from(b)],
        other => return Err(format!("expected bytes but got {}", other.type_name())),
    })
}

/// Evaluates a converter.
pub(crate) fn call_converter(call: &Call, view: &View<'_>) -> Result<Value, String> {
    let arg = |i: usize| value_of(call, i, view);
    Ok(match call.func {
        Func::Concat => {
            let delimiter = require_string(arg(1)?, "Concat delimiter")?;
            let items: Vec<Value> = match arg_at(call, 0) {
                Arg::Expr(Expr::List(items)) => items
                    .iter()
                    .map(|e| eval(e, view))
                    .collect::<Result<_, _>>()?,
                _ => match arg(0)? {
                    Value::List(l) => l.iter().map(Value::from_any).collect(),
                    other => {
                        return Err(format!(
                            "Concat expects a list of values but got {}",
                            other.type_name()
                        ));
                    }
                },
            };
            let parts: Vec<String> = items
                .into_iter()
                .map(|v| string_like(v).unwrap_or_else(|| "<nil>".to_string()))
                .collect();
            Value::Str(parts.join(&delimiter))
        }
        Func::ConvertCase => convert_case(arg(0)?, str_arg(call, 1).unwrap_or("lower"))?,
        Func::ToLowerCase => convert_case(arg(0)?, "lower")?,
        Func::ToUpperCase => convert_case(arg(0)?, "upper")?,
        Func::ToSnakeCase => convert_case(arg(0)?, "snake")?,
        Func::ToCamelCase => convert_case(arg(0)?, "camel")?,
        Func::Len => match arg(0)? {
            Value::Str(s) => Value::Int(s.len() as i64),
            Value::Bytes(b) => Value::Int(b.len() as i64),
            Value::Map(m) => Value::Int(m.len() as i64),
            Value::List(l) => Value::Int(l.len() as i64),
            other => return Err(format!("Len: unsupported type {}", other.type_name())),
        },
        Func::IsMatch => {
            let target = match arg_at(call, 0) {
                Arg::Expr(e) => operand(e, view)?,
                _ => Operand::Val(std::borrow::Cow::Owned(arg(0)?)),
            };
            if let Some(s) = target.as_str() {
                Value::Bool(regex_arg(call, 1)?.is_match(s))
            } else {
                match string_like(target.into_value()) {
                    Some(s) => Value::Bool(regex_arg(call, 1)?.is_match(&s)),
                    None => Value::Bool(false),
                }
            }
        }
        Func::Int => match arg(0)? {
            Value::Int(i) => Value::Int(i),
            Value::Double(d) => Value::Int(d as i64),
            Value::Bool(b) => Value::Int(i64::from(b)),
            Value::Str(s) => s.parse::<i64>().map_or(Value::Nil, Value::Int),
            Value::Nil => Value::Nil,
            other => return Err(format!("Int: unsupported type {}", other.type_name())),
        },
        Func::Double => match arg(0)? {
            Value::Int(i) => Value::Double(i as f64),
            Value::Double(d) => Value::Double(d),
            Value::Bool(b) => Value::Double(if b { 1.0 } else { 0.0 }),
            Value::Str(s) => s.trim().parse::<f64>().map_or(Value::Nil, Value::Double),
            Value::Nil => Value::Nil,
            other => return Err(format!("Double: unsupported type {}", other.type_name())),
        },
        Func::String => string_like(arg(0)?).map_or(Value::Nil, Value::Str),
        Func::Bool => match arg(0)? {
            Value::Bool(b) => Value::Bool(b),
            Value::Int(i) => Value::Bool(i != 0),
            Value::Double(d) => Value::Bool(d != 0.0),
            Value::Str(s) => match s.as_str() {
                "1" | "t" | "T" | "TRUE" | "true" | "True" => Value::Bool(true),
                "0" | "f" | "F" | "FALSE" | "false" | "False" => Value::Bool(false),
                _ => Value::Nil,
            },
            Value::Nil => Value::Nil,
            other => return Err(format!("Bool: unsupported type {}", other.type_name())),
        },
        Func::Split => {
            let s = require_string(arg(0)?, "Split")?;
            let delimiter = str_arg(call, 1).unwrap_or("");
            let parts: Vec<AnyValue> = if delimiter.is_empty() {
                s.chars()
                    .map(|c| AnyValue {
                        value: Some(any_value::Value::StringValue(c.to_string())),
                    })
                    .collect()
            } else {
                s.split(delimiter)
                    .map(|p| AnyValue {
                        value: Some(any_value::Value::StringValue(p.to_string())),
                    })
                    .collect()
            };
            Value::List(parts)
        }
        Func::Substring => {
            let s = require_string(arg(0)?, "Substring")?;
            let Value::Int(start) = arg(1)? else {
                return Err("Substring start must be an int".to_string());
            };
            let Value::Int(length) = arg(2)? else {
                return Err("Substring length must be an int".to_string());
            };
            if start < 0 {
                return Err(format!(
                    "invalid range for Substring: start {start} cannot be negative"
                ));
            }
            if length <= 0 {
                return Err(format!(
                    "invalid range for Substring: length {length} must be positive"
                ));
            }
            let (start, end) = (
                start as usize,
                (start as usize).saturating_add(length as usize),
            );
            if end > s.len() {
                return Err(format!(
                    "invalid range for Substring: {end} is beyond the length {}",
                    s.len()
                ));
            }
            match s.get(start..end) {
                Some(sub) => Value::Str(sub.to_string()),
                None => {
                    return Err(
                        "invalid range for Substring: it cuts a multi-byte character".to_string(),
                    );
                }
            }
        }
        Func::HasPrefix | Func::HasSuffix => {
            let s = require_string(arg(0)?, call.func.name())?;
            let affix = require_string(arg(1)?, call.func.name())?;
            Value::Bool(if call.func == Func::HasPrefix {
                s.starts_with(&affix)
            } else {
                s.ends_with(&affix)
            })
        }
        Func::Sha1 | Func::Sha256 | Func::Sha512 | Func::Md5 | Func::Fnv => {
            hash(call.func, arg(0)?)?
        }
        Func::ParseJson => {
            let s = require_string(arg(0)?, "ParseJSON")?;
            let json: serde_json::Value =
                serde_json::from_str(&s).map_err(|e| format!("ParseJSON: {e}"))?;
            match json {
                serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
                    Value::from_json(&json)
                }
                _ => return Err("ParseJSON: the text must be a JSON object or array".to_string()),
            }
        }
        Func::IsString => Value::Bool(matches!(arg(0)?, Value::Str(_))),
        Func::IsInt => Value::Bool(matches!(arg(0)?, Value::Int(_))),
        Func::IsDouble => Value::Bool(matches!(arg(0)?, Value::Double(_))),
        Func::IsBool => Value::Bool(matches!(arg(0)?, Value::Bool(_))),
        Func::IsMap => Value::Bool(matches!(arg(0)?, Value::Map(_))),
        Func::IsList => Value::Bool(matches!(arg(0)?, Value::List(_))),
        Func::Hex => Value::Str(hex_lower(&bytes_like(arg(0)?)?)),
        Func::UnixNano => Value::Int(to_time_nanos(arg(0)?, "UnixNano")?),
        Func::UnixMicro => Value::Int(to_time_nanos(arg(0)?, "UnixMicro")?.div_euclid(1_000)),
        Func::UnixMilli => Value::Int(to_time_nanos(arg(0)?, "UnixMilli")?.div_euclid(1_000_000)),
        Func::UnixSeconds => {
            Value::Int(to_time_nanos(arg(0)?, "UnixSeconds")?.div_euclid(1_000_000_000))
        }
        Func::TimeFromUnixNano => match arg(0)? {
            Value::Int(i) => Value::Time(i),
            other => {
                return Err(format!(
                    "TimeFromUnixNano expected an int but got {}",
                    other.type_name()
                ));
            }
        },
        Func::Now => Value::Time(now_nanos()),
        Func::Duration => {
            let s = require_string(arg(0)?, "Duration")?;
            let (negative, text) = match s.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, s.as_str()),
            };
            let d = oxcol_core::duration::parse_go_duration(text)?;
            let ns =
                i64::try_from(d.as_nanos()).map_err(|_| "Duration out of range".to_string())?;
            Value::Duration(if negative { -ns } else { ns })
        }
        Func::TraceId | Func::SpanId => {
            let len = if call.func == Func::TraceId { 16 } else { 8 };
            match arg(0)? {
                Value::Bytes(b) if b.len() == len => Value::Bytes(b),
                Value::Bytes(b) => {
                    return Err(format!(
                        "{} needs exactly {len} bytes but got {}",
                        call.func.name(),
                        b.len()
                    ));
                }
                other => {
                    return Err(format!(
                        "{} expected bytes but got {}",
                        call.func.name(),
                        other.type_name()
                    ));
                }
            }
        }
        Func::Log => match arg(0)? {
            Value::Int(i) if i > 0 => Value::Double((i as f64).ln()),
            Value::Double(d) if d > 0.0 => Value::Double(d.ln()),
            Value::Int(_) | Value::Double(_) => {
                return Err("Log: the value must be greater than zero".to_string());
            }
            other => return Err(format!("Log: unsupported type {}", other.type_name())),
        },
        Func::ExtractPatterns => {
            let text = require_string(arg(0)?, "ExtractPatterns")?;
            let re = regex_arg(call, 1)?;
            let mut out = Vec::new();
            if let Some(caps) = re.captures(&text) {
                for name in re.capture_names().flatten() {
                    if let Some(m) = caps.name(name) {
                        map_put(
                            &mut out,
                            name,
                            AnyValue {
                                value: Some(any_value::Value::StringValue(m.as_str().to_string())),
                            },
                        );
                    }
                }
            }
            Value::Map(out)
        }
        Func::ParseKeyValue => {
            let text = require_string(arg(0)?, "ParseKeyValue")?;
            if text.is_empty() {
                return Err("ParseKeyValue: cannot parse from empty target".to_string());
            }
            let delimiter = str_arg(call, 1).filter(|d| !d.is_empty()).unwrap_or("=");
            let pair_delimiter = str_arg(call, 2).filter(|d| !d.is_empty()).unwrap_or(" ");
            let mut out = Vec::new();
            for pair in split_quoted(&text, pair_delimiter)? {
                let Some((k, v)) = pair.split_once(delimiter) else {
                    return Err(format!("ParseKeyValue: cannot split {pair:?} into 2 items"));
                };
                map_put(
                    &mut out,
                    k.trim(),
                    AnyValue {
                        value: Some(any_value::Value::StringValue(v.trim().to_string())),
                    },
                );
            }
            Value::Map(out)
        }
        Func::HasAttrKeyOnDatapoint | Func::HasAttrOnDatapoint => {
            let Some(metric) = view.metric.get() else {
                return Err(format!(
                    "{} works only in the metric context",
                    call.func.name()
                ));
            };
            let key = str_arg(call, 0).unwrap_or("");
            let expected = str_arg(call, 1);
            let hit = |attrs: &[KeyValue]| {
                attrs.iter().any(|a| {
                    a.key == key
                        && expected.is_none_or(|e| matches!(a.value.as_ref().and_then(|v| v.value.as_ref()), Some(any_value::Value::StringValue(s)) if s == e))
                })
            };
            Value::Bool(match &metric.data {
                None => false,
                Some(metric::Data::Gauge(g)) => g.data_points.iter().any(|p| hit(&p.attributes)),
                Some(metric::Data::Sum(x)) => x.data_points.iter().any(|p| hit(&p.attributes)),
                Some(metric::Data::Histogram(h)) => {
                    h.data_points.iter().any(|p| hit(&p.attributes))
                }
                Some(metric::Data::ExponentialHistogram(h)) => {
                    h.data_points.iter().any(|p| hit(&p.attributes))
                }
                Some(metric::Data::Summary(x)) => x.data_points.iter().any(|p| hit(&p.attributes)),
            })
        }
        Func::Nanoseconds
        | Func::Microseconds
        | Func::Milliseconds
        | Func::Seconds
        | Func::Minutes
        | Func::Hours => {
            let ns = match arg(0)? {
                Value::Duration(d) => d,
                other => {
                    return Err(format!(
                        "{} expected a duration but got {}",
                        call.func.name(),
                        other.type_name()
                    ));
                }
            };
            match call.func {
                Func::Nanoseconds => Value::Int(ns),
                Func::Microseconds => Value::Int(ns / 1_000),
                Func::Milliseconds => Value::Int(ns / 1_000_000),
                Func::Seconds => Value::Double(ns as f64 / 1e9),
                Func::Minutes => Value::Double(ns as f64 / 6e10),
                _ => Value::Double(ns as f64 / 3.6e12),
            }
        }
        Func::Year
        | Func::Month
        | Func::Day
        | Func::Weekday
        | Func::Hour
        | Func::Minute
        | Func::Second
        | Func::Nanosecond => {
            let ns = to_time_nanos(arg(0)?, call.func.name())?;
            let secs = ns.div_euclid(1_000_000_000);
            let days = secs.div_euclid(86_400);
            let rem = secs.rem_euclid(86_400);
            let (y, m, d) = crate::value::civil_from_days(days);
            Value::Int(match call.func {
                Func::Year => y,
                Func::Month => i64::from(m),
                Func::Day => i64::from(d),
                Func::Weekday => (days + 4).rem_euclid(7),
                Func::Hour => rem / 3600,
                Func::Minute => rem % 3600 / 60,
                Func::Second => rem % 60,
                _ => ns.rem_euclid(1_000_000_000),
            })
        }
        Func::TruncateTime => {
            let ns = to_time_nanos(arg(0)?, "TruncateTime")?;
            match arg(1)? {
                Value::Duration(d) if d > 0 => Value::Time(ns - ns.rem_euclid(d)),
                Value::Duration(_) => Value::Time(ns),
                other => {
                    return Err(format!(
                        "TruncateTime expected a duration but got {}",
                        other.type_name()
                    ));
                }
            }
        }
        Func::Index => match (arg(0)?, arg(1)?) {
            (Value::Str(s), Value::Str(needle)) => {
                Value::Int(s.find(&needle).map_or(-1, |i| i as i64))
            }
            (Value::List(items), needle) => {
                let needle = needle.into_any()?;
                Value::Int(
                    items
                        .iter()
                        .position(|i| *i == needle)
                        .map_or(-1, |i| i as i64),
                )
            }
            (Value::Str(_), other) => {
                return Err(format!(
                    "Index of a string needs a string value but got {}",
                    other.type_name()
                ));
            }
            (other, _) => {
                return Err(format!(
                    "Index expected a string or a list but got {}",
                    other.type_name()
                ));
            }
        },
        Func::Keys | Func::Values => match arg(0)? {
            Value::Map(m) => Value::List(
                m.into_iter()
                    .map(|kv| {
                        if call.func == Func::Keys {
                            AnyValue {
                                value: Some(any_value::Value::StringValue(kv.key)),
                            }
                        } else {
                            kv.value.unwrap_or_default()
                        }
                    })
                    .collect(),
            ),
            other => {
                return Err(format!(
                    "{} expected a map but got {}",
                    call.func.name(),
                    other.type_name()
                ));
            }
        },
        Func::IsRootSpan => match view.span.get() {
            Some(span) => Value::Bool(span.parent_span_id.iter().all(|b| *b == 0)),
            None => return Err("IsRootSpan works only in the span context".to_string()),
        },
        Func::Time => {
            let text = require_string(arg(0)?, "Time")?;
            Value::Time(crate::timefmt::parse(
                &text,
                str_arg(call, 1).unwrap_or(""),
            )?)
        }
        Func::FormatTime => Value::Str(crate::timefmt::format(
            to_time_nanos(arg(0)?, "FormatTime")?,
            str_arg(call, 1).unwrap_or(""),
        )),
        other => return Err(format!("{} is an editor, not a converter", other.name())),
    })
}
