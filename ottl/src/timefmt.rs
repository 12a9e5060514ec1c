//! strptime-style time parsing and formatting for the `Time` and `FormatTime` converters
//! (the directives of the Collector's ctimefmt), in UTC.

use crate::value::{civil_from_days, days_from_civil};

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

/// Directives oxcol understands.
const DIRECTIVES: &str = "YymdeHIpMSfLzZbhBaAFTD%";

/// Checks a format once at parse time.
pub(crate) fn check_format(format: &str) -> Result<(), String> {
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some(d) if DIRECTIVES.contains(d) => {}
                Some(d) => {
                    return Err(format!(
                        "directive %{d} is not supported (supported: %Y %y %m %d %e %H %I %p %M %S %f %L %z %Z %b %h %B %a %A %F %T %D %%)"
                    ));
                }
                None => return Err("format ends with %".to_string()),
            }
        }
    }
    Ok(())
}

fn expand(format: &str) -> String {
    format
        .replace("%F", "%Y-%m-%d")
        .replace("%T", "%H:%M:%S")
        .replace("%D", "%m/%d/%y")
}

struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl Cursor<'_> {
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }
    fn number(&mut self, max_digits: usize) -> Result<i64, String> {
        let digits: String = self
            .rest()
            .chars()
            .take(max_digits)
            .take_while(char::is_ascii_digit)
            .collect();
        if digits.is_empty() {
            return Err(format!("expected a number at {:?}", self.rest()));
        }
        self.pos += digits.len();
        digits
            .parse()
            .map_err(|_| "number out of range".to_string())
    }
    fn name(&mut self, names: &[&str]) -> Result<usize, String> {
        let rest = self.rest().to_lowercase();
        for (i, n) in names.iter().enumerate() {
            let full = n.to_lowercase();
            if rest.starts_with(&full) {
                self.pos += full.len();
                return Ok(i);
            }
        }
        for (i, n) in names.iter().enumerate() {
            let short = n[..3].to_lowercase();
            if rest.starts_with(&short) {
                self.pos += 3;
                return Ok(i);
            }
        }
        Err(format!("expected a name at {:?}", self.rest()))
    }
}

/// Parses `text` with `format` into nanoseconds since the epoch.
pub(crate) fn parse(text: &str, format: &str) -> Result<i64, String> {
    let format = expand(format);
    let mut c = Cursor { text, pos: 0 };
    let (mut year, mut month, mut day) = (1970i64, 1u32, 1u32);
    let (mut hour, mut minute, mut second, mut nanos) = (0i64, 0i64, 0i64, 0i64);
    let mut pm: Option<bool> = None;
    let mut offset_secs = 0i64;
    let mut f = format.chars();
    while let Some(fc) = f.next() {
        if fc != '%' {
            match c.rest().chars().next() {
                Some(tc) if tc == fc => c.pos += tc.len_utf8(),
                _ => return Err(format!("{text:?} does not match the format {format:?}")),
            }
            continue;
        }
        match f.next().unwrap_or('%') {
            'Y' => year = c.number(4)?,
            'y' => {
                let y = c.number(2)?;
                year = if y >= 69 { 1900 + y } else { 2000 + y };
            }
            'm' => month = c.number(2)? as u32,
            'd' => day = c.number(2)? as u32,
            'e' => {
                if c.rest().starts_with(' ') {
                    c.pos += 1;
                }
                day = c.number(2)? as u32;
            }
            'H' | 'I' => hour = c.number(2)?,
            'p' => {
                let r = c.rest().to_uppercase();
                pm = Some(if r.starts_with("PM") {
                    true
                } else if r.starts_with("AM") {
                    false
                } else {
                    return Err(format!("expected AM or PM at {:?}", c.rest()));
                });
                c.pos += 2;
            }
            'M' => minute = c.number(2)?,
            'S' => second = c.number(2)?,
            'f' | 'L' => {
                let digits: String = c
                    .rest()
                    .chars()
                    .take(9)
                    .take_while(char::is_ascii_digit)
                    .collect();
                if digits.is_empty() {
                    return Err(format!("expected fractional seconds at {:?}", c.rest()));
                }
                c.pos += digits.len();
                nanos = format!("{digits:0<9}").parse().unwrap_or(0);
            }
            'z' => {
                let r = c.rest();
                if r.starts_with('Z') {
                    c.pos += 1;
                } else {
                    let sign = match r.chars().next() {
                        Some('+') => 1,
                        Some('-') => -1,
                        _ => return Err(format!("expected a UTC offset at {r:?}")),
                    };
                    c.pos += 1;
                    let h = c.number(2)?;
                    if c.rest().starts_with(':') {
                        c.pos += 1;
                    }
                    let m = c.number(2)?;
                    offset_secs = sign * (h * 3600 + m * 60);
                }
            }
            'Z' => {
                let r = c.rest();
                let zone: String = r
                    .chars()
                    .take_while(|ch| ch.is_ascii_alphabetic())
                    .collect();
                if !matches!(zone.as_str(), "UTC" | "GMT" | "Z") {
                    return Err(format!(
                        "time zone {zone:?} is not supported (only UTC, GMT, Z)"
                    ));
                }
                c.pos += zone.len();
            }
            'b' | 'h' | 'B' => month = c.name(&MONTHS)? as u32 + 1,
            'a' | 'A' => {
                c.name(&DAYS)?;
            }
            '%' => {
                if !c.rest().starts_with('%') {
                    return Err(format!("{text:?} does not match the format {format:?}"));
                }
                c.pos += 1;
            }
            other => return Err(format!("directive %{other} is not supported")),
        }
    }
    if !c.rest().is_empty() {
        return Err(format!("extra text {:?} after the time", c.rest()));
    }
    if let Some(pm) = pm {
        hour = (hour % 12) + if pm { 12 } else { 0 };
    }
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(format!("{text:?} is not a valid date and time"));
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    secs.checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(nanos))
        .ok_or_else(|| "time out of range".to_string())
}

/// Formats nanoseconds since the epoch with `format`, in UTC.
pub(crate) fn format(ns: i64, format: &str) -> String {
    let format = expand(format);
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let weekday = (days + 4).rem_euclid(7) as usize;
    let mut out = String::new();
    let mut f = format.chars();
    while let Some(fc) = f.next() {
        if fc != '%' {
            out.push(fc);
            continue;
        }
        match f.next().unwrap_or('%') {
            'Y' => out.push_str(&format!("{year:04}")),
            'y' => out.push_str(&format!("{:02}", year.rem_euclid(100))),
            'm' => out.push_str(&format!("{month:02}")),
            'd' => out.push_str(&format!("{day:02}")),
            'e' => out.push_str(&format!("{day:2}")),
            'H' => out.push_str(&format!("{hour:02}")),
            'I' => out.push_str(&format!(
                "{:02}",
                if hour % 12 == 0 { 12 } else { hour % 12 }
            )),
            'p' => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            'M' => out.push_str(&format!("{minute:02}")),
            'S' => out.push_str(&format!("{second:02}")),
            'f' => out.push_str(&format!("{:06}", nanos / 1_000)),
            'L' => out.push_str(&format!("{:03}", nanos / 1_000_000)),
            'z' => out.push_str("+0000"),
            'Z' => out.push_str("UTC"),
            'b' | 'h' => out.push_str(&MONTHS[(month - 1) as usize][..3]),
            'B' => out.push_str(MONTHS[(month - 1) as usize]),
            'a' => out.push_str(&DAYS[weekday][..3]),
            'A' => out.push_str(DAYS[weekday]),
            other => {
                out.push('%');
                if other != '%' {
                    out.push(other);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        let ns = parse("2023-11-14T22:13:20.123Z", "%Y-%m-%dT%H:%M:%S.%L%z").unwrap();
        assert_eq!(ns, 1_700_000_000_123_000_000);
        assert_eq!(
            parse("14/Nov/2023:23:13:20 +0100", "%d/%b/%Y:%H:%M:%S %z").unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            parse(
                "Tue, 14 November 23 10:13:20 PM UTC",
                "%a, %d %B %y %I:%M:%S %p %Z"
            )
            .unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            parse("2023-11-14 22:13:20", "%F %T").unwrap(),
            1_700_000_000_000_000_000
        );
        assert!(parse("2023-13-14", "%Y-%m-%d").is_err());
        assert!(parse("2023-11-14 extra", "%Y-%m-%d").is_err());
        assert!(parse("x", "%Y").is_err());
        assert_eq!(
            format(1_700_000_000_123_456_789, "%Y-%m-%dT%H:%M:%S.%f %A %b %I%p"),
            "2023-11-14T22:13:20.123456 Tuesday Nov 10PM"
        );
        assert!(check_format("%Y-%Q").is_err());
        assert!(check_format("%Y-%m-%d %%").is_ok());
    }
}
