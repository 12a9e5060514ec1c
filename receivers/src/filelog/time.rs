//! Timestamp parsing as stanza's time parser does it: `layout_type: strptime` (the
//! default; directives translated to a Go layout as observiq/ctimefmt does), `gotime` (Go's
//! reference-time layouts), `epoch` (`s`, `ms`, `us`, `ns`, `s.ms`, `s.us`, `s.ns`).
//! A time without a year gets the current year; without a zone, the configured location
//! (`UTC`, or `Local`: the machine's zone).
//!
//! Written here because no crate in the workspace parses Go layouts; the Collector's
//! semantics (optional fractional seconds after seconds, `.999` and `.000` digits, `Z07:00`)
//! are what configs rely on.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Literal(String),
    Year4,
    Year2,
    Month,
    MonthPadded,
    MonthName,
    MonthFull,
    Day,
    DayPadded,
    DaySpace,
    Weekday,
    WeekdayFull,
    Hour24,
    Hour12,
    Hour12Padded,
    Minute,
    MinutePadded,
    Second,
    SecondPadded,
    Fraction,
    PmUpper,
    PmLower,
    ZoneName,
    /// `Z07:00` style: `Z` allowed for UTC.
    Offset {
        z: bool,
    },
    YearDay,
}

#[derive(Clone, Debug)]
pub enum Layout {
    Go(Vec<Item>),
    Epoch(EpochUnit),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpochUnit {
    S,
    Ms,
    Us,
    Ns,
    SMs,
    SUs,
    SNs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    Utc,
    Local,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// A Go reference-time layout as items.
pub fn go_layout(layout: &str) -> Result<Vec<Item>, String> {
    const TOKENS: &[(&str, Item)] = &[
        ("January", Item::MonthFull),
        ("Jan", Item::MonthName),
        ("Monday", Item::WeekdayFull),
        ("Mon", Item::Weekday),
        ("MST", Item::ZoneName),
        ("2006", Item::Year4),
        ("Z07:00", Item::Offset { z: true }),
        ("Z0700", Item::Offset { z: true }),
        ("Z07", Item::Offset { z: true }),
        ("-07:00", Item::Offset { z: false }),
        ("-0700", Item::Offset { z: false }),
        ("-07", Item::Offset { z: false }),
        ("002", Item::YearDay),
        ("01", Item::MonthPadded),
        ("02", Item::DayPadded),
        ("_2", Item::DaySpace),
        ("03", Item::Hour12Padded),
        ("04", Item::MinutePadded),
        ("05", Item::SecondPadded),
        ("06", Item::Year2),
        ("15", Item::Hour24),
        ("PM", Item::PmUpper),
        ("pm", Item::PmLower),
        ("1", Item::Month),
        ("2", Item::Day),
        ("3", Item::Hour12),
        ("4", Item::Minute),
        ("5", Item::Second),
    ];
    let mut items = Vec::new();
    let mut literal = String::new();
    let mut rest = layout;
    'outer: while !rest.is_empty() {
        // Fractional seconds: `.000`, `.999`, `,000`, `,999`.
        if let Some(after) = rest.strip_prefix(['.', ',']) {
            let digits = after.chars().take_while(|c| *c == '0' || *c == '9').count();
            let next_digit = after[digits..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit());
            if digits > 0 && !next_digit {
                flush(&mut literal, &mut items);
                items.push(Item::Fraction);
                rest = &after[digits..];
                continue;
            }
        }
        for (token, item) in TOKENS {
            if let Some(after) = rest.strip_prefix(token) {
                flush(&mut literal, &mut items);
                items.push(item.clone());
                rest = after;
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        literal.push(c);
        rest = &rest[c.len_utf8()..];
    }
    flush(&mut literal, &mut items);
    Ok(items)
}

fn flush(literal: &mut String, items: &mut Vec<Item>) {
    if !literal.is_empty() {
        items.push(Item::Literal(std::mem::take(literal)));
    }
}

/// A strptime layout as a Go layout (observiq/ctimefmt's table).
pub fn strptime_to_go(layout: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = layout.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(d) = chars.next() else {
            return Err(format!("layout {layout:?} ends with a lone %"));
        };
        out.push_str(match d {
            'Y' => "2006",
            'y' => "06",
            'm' => "01",
            'o' => "_1",
            'q' => "1",
            'b' | 'h' => "Jan",
            'B' => "January",
            'd' => "02",
            'e' => "_2",
            'g' => "2",
            'a' => "Mon",
            'A' => "Monday",
            'H' => "15",
            'l' => "3",
            'I' => "03",
            'p' => "PM",
            'P' => "pm",
            'M' => "04",
            'S' => "05",
            'L' => "999",
            'f' => "999",
            's' => "999",
            'Z' => "MST",
            'z' => "Z0700",
            'w' => "-07",
            'i' => "-07",
            'j' => "-07:00",
            'k' => "-07:00:00",
            'D' => "01/02/06",
            'x' => "01/02/06",
            'F' => "2006-01-02",
            'T' | 'X' => "15:04:05",
            'r' => "03:04:05 pm",
            'R' => "15:04",
            'n' => "\n",
            't' => "\t",
            '%' => "%",
            'c' => "Mon Jan 02 15:04:05 2006",
            other => {
                return Err(format!(
                    "layout {layout:?}: directive %{other} is not supported"
                ));
            }
        });
    }
    Ok(out)
}

pub fn epoch_unit(layout: &str) -> Result<EpochUnit, String> {
    Ok(match layout {
        "s" => EpochUnit::S,
        "ms" => EpochUnit::Ms,
        "us" => EpochUnit::Us,
        "ns" => EpochUnit::Ns,
        "s.ms" => EpochUnit::SMs,
        "s.us" => EpochUnit::SUs,
        "s.ns" => EpochUnit::SNs,
        other => {
            return Err(format!(
                "epoch layout {other:?} is not one of s, ms, us, ns, s.ms, s.us, s.ns"
            ));
        }
    })
}

impl Layout {
    pub fn new(layout_type: &str, layout: &str) -> Result<Layout, String> {
        match layout_type {
            "strptime" | "" => {
                // %L, %f and %s are fractional digit runs (any count is read).
                Ok(Layout::Go(go_layout(&strptime_to_go(layout)?)?))
            }
            "gotime" => Ok(Layout::Go(go_layout(layout)?)),
            "epoch" => Ok(Layout::Epoch(epoch_unit(layout)?)),
            other => Err(format!(
                "layout_type {other:?} is not one of strptime, gotime, epoch"
            )),
        }
    }

    /// Unix nanoseconds of `value`.
    pub fn parse(&self, value: &Value, location: Location, now_year: i64) -> Result<u64, String> {
        match self {
            Layout::Epoch(unit) => parse_epoch(*unit, value),
            Layout::Go(items) => {
                let Value::String(text) = value else {
                    return Err(format!("time value {value} is not a string"));
                };
                parse_go(items, text, location, now_year)
            }
        }
    }
}

fn parse_epoch(unit: EpochUnit, value: &Value) -> Result<u64, String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => return Err(format!("epoch value {other} is not a number or string")),
    };
    let bad = || format!("{text:?} is not an epoch time for this layout");
    let scale = |unit: EpochUnit| match unit {
        EpochUnit::S | EpochUnit::SMs | EpochUnit::SUs | EpochUnit::SNs => 1_000_000_000u128,
        EpochUnit::Ms => 1_000_000,
        EpochUnit::Us => 1_000,
        EpochUnit::Ns => 1,
    };
    let (int_part, frac_part) = match text.split_once('.') {
        Some((i, f)) => (i, f),
        None => (text.as_str(), ""),
    };
    if matches!(
        unit,
        EpochUnit::Ms | EpochUnit::Us | EpochUnit::Ns | EpochUnit::S
    ) && !frac_part.is_empty()
    {
        // Numbers printed with a fraction (JSON floats): take the whole part's scale.
        let whole: f64 = text.parse().map_err(|_| bad())?;
        return Ok((whole * scale(unit) as f64) as u64);
    }
    let int: u128 = int_part.parse().map_err(|_| bad())?;
    // Checked: the whole part may have any number of digits (u128 holds 38).
    let mut nanos = int.checked_mul(scale(unit)).ok_or_else(bad)?;
    if !frac_part.is_empty() {
        if !frac_part.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let digits: String = frac_part
            .chars()
            .chain(std::iter::repeat('0'))
            .take(9)
            .collect();
        nanos = nanos
            .checked_add(digits.parse::<u128>().map_err(|_| bad())?)
            .ok_or_else(bad)?;
    }
    u64::try_from(nanos).map_err(|_| bad())
}

fn take_digits(text: &str, min: usize, max: usize) -> Option<(i64, &str)> {
    let n = text
        .chars()
        .take(max)
        .take_while(|c| c.is_ascii_digit())
        .count();
    if n < min {
        return None;
    }
    Some((text[..n].parse().ok()?, &text[n..]))
}

fn take_name<'a>(text: &'a str, names: &[&str], abbreviated: bool) -> Option<(usize, &'a str)> {
    for (i, name) in names.iter().enumerate() {
        let name = if abbreviated { &name[..3] } else { name };
        // `get`: the text may have a multi-byte character where the name would end.
        if text
            .get(..name.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(name))
        {
            return Some((i, &text[name.len()..]));
        }
    }
    None
}

fn parse_go(items: &[Item], text: &str, location: Location, now_year: i64) -> Result<u64, String> {
    let bad = |what: &str| format!("cannot parse {text:?}: {what}");
    let mut rest = text;
    let (mut year, mut month, mut day, mut hour, mut minute, mut second) =
        (None, 1i64, 1i64, 0i64, 0i64, 0i64);
    let mut nanos = 0i64;
    let mut pm: Option<bool> = None;
    let mut offset: Option<i64> = None;
    let mut yday: Option<i64> = None;
    for (index, item) in items.iter().enumerate() {
        match item {
            Item::Literal(lit) => {
                rest = rest
                    .strip_prefix(lit.as_str())
                    .ok_or_else(|| bad(&format!("expected {lit:?} at {rest:?}")))?;
            }
            Item::Year4 => {
                let (v, r) = take_digits(rest, 4, 4).ok_or_else(|| bad("year"))?;
                year = Some(v);
                rest = r;
            }
            Item::Year2 => {
                let (v, r) = take_digits(rest, 2, 2).ok_or_else(|| bad("year"))?;
                year = Some(if v >= 69 { 1900 + v } else { 2000 + v });
                rest = r;
            }
            Item::Month | Item::MonthPadded => {
                let min = if *item == Item::MonthPadded { 2 } else { 1 };
                let trimmed = rest.trim_start_matches(' ');
                let (v, r) = take_digits(trimmed, min, 2).ok_or_else(|| bad("month"))?;
                month = v;
                rest = r;
            }
            Item::MonthName | Item::MonthFull => {
                let (i, r) = take_name(rest, &MONTHS, *item == Item::MonthName)
                    .ok_or_else(|| bad("month name"))?;
                month = i as i64 + 1;
                rest = r;
            }
            Item::Day | Item::DayPadded | Item::DaySpace => {
                let trimmed = if *item == Item::DaySpace {
                    rest.trim_start_matches(' ')
                } else {
                    rest
                };
                let min = if *item == Item::DayPadded { 2 } else { 1 };
                let (v, r) = take_digits(trimmed, min, 2).ok_or_else(|| bad("day"))?;
                day = v;
                rest = r;
            }
            Item::YearDay => {
                let (v, r) = take_digits(rest, 3, 3).ok_or_else(|| bad("day of year"))?;
                yday = Some(v);
                rest = r;
            }
            Item::Weekday | Item::WeekdayFull => {
                let (_, r) =
                    take_name(rest, &DAYS, *item == Item::Weekday).ok_or_else(|| bad("weekday"))?;
                rest = r;
            }
            Item::Hour24 | Item::Hour12 | Item::Hour12Padded => {
                let min = if *item == Item::Hour12 { 1 } else { 2 };
                let (v, r) = take_digits(rest, min, 2).ok_or_else(|| bad("hour"))?;
                hour = v;
                rest = r;
            }
            Item::Minute | Item::MinutePadded => {
                let min = if *item == Item::Minute { 1 } else { 2 };
                let (v, r) = take_digits(rest, min, 2).ok_or_else(|| bad("minute"))?;
                minute = v;
                rest = r;
            }
            Item::Second | Item::SecondPadded => {
                let min = if *item == Item::Second { 1 } else { 2 };
                let (v, r) = take_digits(rest, min, 2).ok_or_else(|| bad("second"))?;
                second = v;
                rest = r;
                // Go accepts a fraction after the seconds even when the layout has none.
                if !matches!(items.get(index + 1), Some(Item::Fraction)) {
                    if let Some(after) = rest.strip_prefix(['.', ',']) {
                        if after.starts_with(|c: char| c.is_ascii_digit()) {
                            let (n, r) = fraction(after);
                            nanos = n;
                            rest = r;
                        }
                    }
                }
            }
            Item::Fraction => {
                if let Some(after) = rest.strip_prefix(['.', ',']) {
                    let (n, r) = fraction(after);
                    nanos = n;
                    rest = r;
                }
            }
            Item::PmUpper | Item::PmLower => {
                let head = rest.get(..2).unwrap_or("");
                pm = Some(match head.to_ascii_lowercase().as_str() {
                    "pm" => true,
                    "am" => false,
                    _ => return Err(bad("AM/PM")),
                });
                rest = &rest[2..];
            }
            Item::ZoneName => {
                let n = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
                if n < 3 {
                    return Err(bad("zone name"));
                }
                if matches!(&rest[..n], "UTC" | "GMT" | "Z") {
                    offset = Some(0);
                }
                rest = &rest[n..];
                // Zone names other than UTC/GMT: the location's rule (as Go without tzdata).
            }
            Item::Offset { z } => {
                if *z {
                    if let Some(r) = rest.strip_prefix('Z') {
                        offset = Some(0);
                        rest = r;
                        continue;
                    }
                }
                let sign = match rest.chars().next() {
                    Some('+') => 1,
                    Some('-') => -1,
                    _ => return Err(bad("zone offset")),
                };
                let r = &rest[1..];
                let (h, r) = take_digits(r, 2, 2).ok_or_else(|| bad("zone offset"))?;
                let r = r.strip_prefix(':').unwrap_or(r);
                let (m, r) = take_digits(r, 0, 2).unwrap_or((0, r));
                offset = Some(sign * (h * 3600 + m * 60));
                rest = r;
            }
        }
    }
    if !rest.is_empty() {
        return Err(bad(&format!("extra text {rest:?}")));
    }
    if let Some(pm) = pm {
        if pm && hour < 12 {
            hour += 12;
        } else if !pm && hour == 12 {
            hour = 0;
        }
    }
    let year = year.unwrap_or(now_year);
    let days = match yday {
        Some(yday) => days_from_civil(year, 1, 1) + yday - 1,
        None => {
            if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
                return Err(bad("month or day out of range"));
            }
            days_from_civil(year, month as u32, day as u32)
        }
    };
    if hour > 23 || minute > 59 || second > 60 {
        return Err(bad("time of day out of range"));
    }
    let local_seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    let offset = match offset {
        Some(o) => o,
        None => match location {
            Location::Utc => 0,
            Location::Local => local_offset(local_seconds),
        },
    };
    let unix = local_seconds - offset;
    if unix < 0 {
        return Err(bad("before 1970"));
    }
    // Years past 2554 do not fit in u64 nanoseconds.
    (unix as u64)
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(nanos as u64))
        .ok_or_else(|| bad("too far in the future for nanoseconds since 1970"))
}

fn fraction(text: &str) -> (i64, &str) {
    let n = text.chars().take_while(|c| c.is_ascii_digit()).count();
    let digits: String = text[..n]
        .chars()
        .chain(std::iter::repeat('0'))
        .take(9)
        .collect();
    (digits.parse().unwrap_or(0), &text[n..])
}

pub use oxcol_core::civil::days_from_civil;
use oxcol_core::civil::{civil_from_days, local_offset};

/// The year of a unix time (for times without a year).
pub fn year_of(unix_seconds: i64) -> i64 {
    civil_from_days(unix_seconds.div_euclid(86_400)).0
}
