//! Zero-allocation parsers for the cgroup interface files (v1 and v2).
//!
//! Every parser takes the whole file as bytes (read in one go into a buffer the scraper
//! reuses) and either returns plain values or calls back with borrowed keys. None of them
//! allocates, and none panics on any input: unknown keys are ignored, malformed lines are
//! skipped, missing keys are simply not reported (the kernel adds keys between versions
//! and in the middle of files, cgroup-v2.rst: "use the keys to look up specific values").

/// A single-value file such as `memory.max`: a number, or the literal `max` (no limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Value(u64),
    Unlimited,
}

/// v1 reports "unlimited" as a huge page-aligned number (9223372036854771712 on 4 KiB
/// pages); anything at or above 2^62 is treated as no limit.
pub const V1_UNLIMITED_THRESHOLD: u64 = 1 << 62;

/// Parses an unsigned decimal integer; `None` for anything else (empty, sign, overflow).
pub fn parse_u64(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(value)
}

/// Parses a signed decimal integer (v1 `cpu.cfs_quota_us` is `-1` when unlimited).
pub fn parse_i64(bytes: &[u8]) -> Option<i64> {
    match bytes.split_first() {
        Some((b'-', rest)) => parse_u64(rest)
            .and_then(|v| i64::try_from(v).ok())
            .map(|v| -v),
        _ => parse_u64(bytes).and_then(|v| i64::try_from(v).ok()),
    }
}

/// Parses a non-negative decimal with an optional fraction (PSI `avg10=1.23`).
pub fn parse_decimal(bytes: &[u8]) -> Option<f64> {
    let (whole, fraction) = match bytes.iter().position(|&b| b == b'.') {
        Some(dot) => (&bytes[..dot], &bytes[dot + 1..]),
        None => (bytes, &[][..]),
    };
    let mut value = parse_u64(whole)? as f64;
    if !fraction.is_empty() {
        if fraction.len() > 18 {
            return None;
        }
        value += parse_u64(fraction)? as f64 / 10f64.powi(fraction.len() as i32);
    }
    Some(value)
}

/// Strips ASCII whitespace at both ends.
pub fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}

/// A v2 single-value file: a number or `max`.
pub fn parse_limit(bytes: &[u8]) -> Option<Limit> {
    let text = trim(bytes);
    if text == b"max" {
        return Some(Limit::Unlimited);
    }
    parse_u64(text).map(Limit::Value)
}

/// A v1 byte limit: a number, where anything >= 2^62 means unlimited.
pub fn parse_v1_limit(bytes: &[u8]) -> Option<Limit> {
    let value = parse_u64(trim(bytes))?;
    Some(if value >= V1_UNLIMITED_THRESHOLD {
        Limit::Unlimited
    } else {
        Limit::Value(value)
    })
}

/// Splits on ASCII whitespace without allocating.
fn fields(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
}

/// A flat keyed file (`memory.stat`, `memory.events`, `cpu.stat`, v1 `cpuacct.stat`,
/// `memory.oom_control`): calls `each(key, value)` for every `key value` line whose value
/// is an unsigned integer. Other lines are skipped.
pub fn for_each_flat(bytes: &[u8], mut each: impl FnMut(&[u8], u64)) {
    crate::smaps::parse::for_each_line(bytes, |line, _| {
        if let Some((key, value)) = two_words(line) {
            if let Some(value) = parse_u64(value) {
                each(key, value);
            }
        }
    });
}

/// The two ASCII-whitespace-separated words of `line`; `None` if it has more or fewer.
/// One pass over the bytes (memory.stat has ~60 lines per cgroup).
fn two_words(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut words: [&[u8]; 2] = [&[], &[]];
    crate::proc_text::split_words(line, &mut words).then_some((words[0], words[1]))
}

/// One PSI line (`some` or `full`): averages in percent and the total stall time in µs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PsiLine {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    pub total_usec: u64,
}

/// A PSI file (`memory.pressure`, `/proc/pressure/cpu`, ...). Either line may be absent
/// (`irq.pressure` has only `full`; kernels before 5.13 print no cpu `full` system-wide).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Psi {
    pub some: Option<PsiLine>,
    pub full: Option<PsiLine>,
}

pub fn parse_psi(bytes: &[u8]) -> Psi {
    let mut psi = Psi::default();
    for line in bytes.split(|&b| b == b'\n') {
        let mut parts = fields(line);
        let slot = match parts.next() {
            Some(b"some") => &mut psi.some,
            Some(b"full") => &mut psi.full,
            _ => continue,
        };
        let mut parsed = PsiLine::default();
        let mut seen_total = false;
        for pair in parts {
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            let (key, value) = (&pair[..eq], &pair[eq + 1..]);
            match key {
                b"avg10" => parsed.avg10 = parse_decimal(value).unwrap_or(0.0),
                b"avg60" => parsed.avg60 = parse_decimal(value).unwrap_or(0.0),
                b"avg300" => parsed.avg300 = parse_decimal(value).unwrap_or(0.0),
                b"total" => {
                    if let Some(total) = parse_u64(value) {
                        parsed.total_usec = total;
                        seen_total = true;
                    }
                }
                _ => {}
            }
        }
        // A line without a readable total is not trusted at all.
        if seen_total {
            *slot = Some(parsed);
        }
    }
    psi
}

/// A nested keyed file (`io.stat`): calls `each(key, subkey, value)` for every
/// `subkey=value` pair with an unsigned integer value (`8:0 rbytes=1 wbytes=2 ...`).
pub fn for_each_nested(bytes: &[u8], mut each: impl FnMut(&[u8], &[u8], u64)) {
    for line in bytes.split(|&b| b == b'\n') {
        let mut parts = fields(line);
        let Some(key) = parts.next() else { continue };
        for pair in parts {
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            if let Some(value) = parse_u64(&pair[eq + 1..]) {
                each(key, &pair[..eq], value);
            }
        }
    }
}

/// v2 `cpu.max`: `$MAX $PERIOD`, where `$MAX` may be `max`. Returns (quota, period) in
/// µs.
pub fn parse_cpu_max(bytes: &[u8]) -> Option<(Limit, u64)> {
    let mut parts = fields(bytes);
    let quota = match parts.next()? {
        b"max" => Limit::Unlimited,
        other => Limit::Value(parse_u64(other)?),
    };
    let period = parse_u64(parts.next()?)?;
    Some((quota, period))
}

/// v1 `blkio.throttle.io_service_bytes(_recursive)` / `io_serviced(_recursive)`:
/// `MAJ:MIN Op value` lines plus a final `Total value`. Calls `each(device, op, value)`
/// for device lines; the op is `Read`, `Write`, `Sync`, `Async`, `Discard` or `Total`.
pub fn for_each_blkio(bytes: &[u8], mut each: impl FnMut(&[u8], &[u8], u64)) {
    for line in bytes.split(|&b| b == b'\n') {
        let mut parts = fields(line);
        let (Some(device), Some(op), Some(value), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if let Some(value) = parse_u64(value) {
            each(device, op, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_values_and_max() {
        assert_eq!(parse_limit(b"max\n"), Some(Limit::Unlimited));
        assert_eq!(parse_limit(b"536870912\n"), Some(Limit::Value(536_870_912)));
        assert_eq!(parse_limit(b"0\n"), Some(Limit::Value(0)));
        assert_eq!(parse_limit(b""), None);
        assert_eq!(parse_limit(b"-1\n"), None);
        assert_eq!(parse_limit(b"99999999999999999999999\n"), None);
        assert_eq!(
            parse_v1_limit(b"9223372036854771712\n"),
            Some(Limit::Unlimited)
        );
        assert_eq!(
            parse_v1_limit(b"268435456\n"),
            Some(Limit::Value(268_435_456))
        );
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"50000"), Some(50_000));
    }

    #[test]
    fn flat_keyed_skips_junk_and_keeps_order() {
        let mut seen = Vec::new();
        for_each_flat(
            b"anon 4096\nfile 8192\ngarbage\nbad x\nthree a b\n\nnew_key 7\n",
            |k, v| seen.push((String::from_utf8_lossy(k).into_owned(), v)),
        );
        assert_eq!(
            seen,
            vec![
                ("anon".into(), 4096),
                ("file".into(), 8192),
                ("new_key".into(), 7)
            ]
        );
    }

    #[test]
    fn psi_both_lines_and_missing_full() {
        let psi = parse_psi(b"some avg10=10.22 avg60=16.07 avg300=13.24 total=105912401\nfull avg10=0.00 avg60=0.60 avg300=1.25 total=15843534\n");
        let some = psi.some.unwrap();
        assert!(
            (some.avg10 - 10.22).abs() < 1e-9
                && (some.avg60 - 16.07).abs() < 1e-9
                && (some.avg300 - 13.24).abs() < 1e-9
        );
        assert_eq!(some.total_usec, 105_912_401);
        assert_eq!(psi.full.unwrap().total_usec, 15_843_534);
        // Kernels 4.20-5.12: no cpu `full` line; irq.pressure: only `full`.
        let psi = parse_psi(b"some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
        assert!(psi.some.is_some() && psi.full.is_none());
        let psi = parse_psi(b"full avg10=0.00 avg60=0.00 avg300=0.00 total=12\n");
        assert!(psi.some.is_none() && psi.full.unwrap().total_usec == 12);
        assert_eq!(parse_psi(b"some avg10=1.00\n"), Psi::default());
    }

    #[test]
    fn io_stat_any_pairs() {
        let mut seen = Vec::new();
        for_each_nested(b"259:0 rbytes=1048576 wbytes=4096 rios=12 wios=1 dbytes=0 dios=0 cost.usage=5\n8:0 rbytes=7 junk wbytes=x\n", |d, k, v| {
            seen.push(format!("{}/{}={v}", String::from_utf8_lossy(d), String::from_utf8_lossy(k)))
        });
        assert_eq!(
            seen,
            [
                "259:0/rbytes=1048576",
                "259:0/wbytes=4096",
                "259:0/rios=12",
                "259:0/wios=1",
                "259:0/dbytes=0",
                "259:0/dios=0",
                "259:0/cost.usage=5",
                "8:0/rbytes=7"
            ]
        );
    }

    #[test]
    fn cpu_max_forms() {
        assert_eq!(
            parse_cpu_max(b"max 100000\n"),
            Some((Limit::Unlimited, 100_000))
        );
        assert_eq!(
            parse_cpu_max(b"50000 100000\n"),
            Some((Limit::Value(50_000), 100_000))
        );
        assert_eq!(parse_cpu_max(b"50000\n"), None);
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal(b"0.00"), Some(0.0));
        assert_eq!(parse_decimal(b"100.00"), Some(100.0));
        assert_eq!(parse_decimal(b"1.5"), Some(1.5));
        assert_eq!(parse_decimal(b"1.x"), None);
        assert_eq!(parse_decimal(b""), None);
    }

    /// The first, iterator-based flat parser: the reference for `for_each_flat`.
    fn reference_flat(bytes: &[u8]) -> Vec<(Vec<u8>, u64)> {
        let mut out = Vec::new();
        for line in bytes.split(|&b| b == b'\n') {
            let mut parts = fields(line);
            let (Some(key), Some(value), None) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            if let Some(value) = parse_u64(value) {
                out.push((key.to_vec(), value));
            }
        }
        out
    }

    #[test]
    fn flat_parser_matches_reference_on_mutated_input() {
        let seed: &[u8] = b"anon 113246208\nfile 41943040\nkernel 2097152\ninactive_file 41943040\npgfault 1017\nworkingset_refault_anon 0\n";
        let mut rng = oxcol_core::testdata::XorShift64(0x1234_5678_9ABC_DEF1);
        let mut next = || rng.next_u64();
        let mut seen = 0;
        for _ in 0..5_000 {
            let mut input = seed.to_vec();
            for _ in 0..(next() % 10) {
                let at = (next() as usize) % (input.len() + 1);
                match next() % 3 {
                    0 if at < input.len() => {
                        input[at] = [b' ', b'\t', b'\n', b'\r', 0x0c, b'7', b'x', 0xff]
                            [(next() % 8) as usize]
                    }
                    1 => input.insert(
                        at,
                        [b' ', b'\n', b'\t', b'9', b'_', 0xff][(next() % 6) as usize],
                    ),
                    _ if at < input.len() => {
                        input.remove(at);
                    }
                    _ => {}
                }
            }
            let mut got = Vec::new();
            for_each_flat(&input, |k, v| got.push((k.to_vec(), v)));
            assert_eq!(
                got,
                reference_flat(&input),
                "{}",
                String::from_utf8_lossy(&input)
            );
            seen += got.len();
        }
        assert!(
            seen > 5_000 * 3,
            "mutations leave most lines valid ({seen})"
        );
    }

    /// Property test: random bytes and mutated real files never panic any parser.
    #[test]
    fn parsers_never_panic_on_mutated_input() {
        let seeds: [&[u8]; 4] = [
            b"anon 4096\nfile 8192\ninactive_file 100\n",
            b"some avg10=10.22 avg60=16.07 avg300=13.24 total=105912401\nfull avg10=0.00 avg60=0.60 avg300=1.25 total=15843534\n",
            b"259:0 rbytes=1048576 wbytes=4096 rios=12 wios=1 dbytes=0 dios=0\n",
            b"8:0 Read 4096\n8:0 Write 0\nTotal 4096\n",
        ];
        let mut rng = oxcol_core::testdata::XorShift64(0x9E37_79B9_7F4A_7C15);
        let mut next = || rng.next_u64();
        let mut sink = 0u64;
        for round in 0..20_000 {
            let seed = seeds[round % seeds.len()];
            let mut input = seed.to_vec();
            for _ in 0..(next() % 6) {
                let at = (next() as usize) % (input.len() + 1);
                match next() % 3 {
                    0 if at < input.len() => input[at] = next() as u8,
                    1 => input.insert(
                        at,
                        [b' ', b'=', b'\n', b'.', b'9', b'-', 0xff][(next() % 7) as usize],
                    ),
                    _ if at < input.len() => {
                        input.remove(at);
                    }
                    _ => {}
                }
            }
            if round % 10 == 0 {
                input = (0..(next() % 64)).map(|_| next() as u8).collect();
            }
            for_each_flat(&input, |_, v| sink = sink.wrapping_add(v));
            for_each_nested(&input, |_, _, v| sink = sink.wrapping_add(v));
            for_each_blkio(&input, |_, _, v| sink = sink.wrapping_add(v));
            let psi = parse_psi(&input);
            sink = sink.wrapping_add(psi.some.map_or(0, |l| l.total_usec));
            let _ = (
                parse_limit(&input),
                parse_v1_limit(&input),
                parse_cpu_max(&input),
                parse_decimal(&input),
                parse_i64(&input),
            );
        }
        assert!(sink > 0, "mutations of valid input still yield some values");
    }
}
