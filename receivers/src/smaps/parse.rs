//! Zero-allocation parsers for `/proc/PID/smaps_rollup` and `/proc/PID/stat`.
//!
//! smaps_rollup: a `[rollup]` header line (the maps format) and then `Field:  N kB` lines.
//! Every field is optional (they come and go with kernel versions: Pss_Anon since ~5.3,
//! Pss_Dirty since ~6.0); only `kB` lines are reported, so `THPeligible`/`VmFlags`-like
//! lines without a unit are ignored. `kB` is KiB: values are multiplied by 1024.
//!
//! stat: `comm` sits in parentheses and may contain spaces and `)`, so the line is split
//! at the last `)`.

/// Calls `each(field, bytes)` for every `Field: N kB` line.
pub fn for_each_rollup_field(data: &[u8], mut each: impl FnMut(&[u8], u64)) {
    for line in data.split(|&b| b == b'\n') {
        // Exactly three whitespace-separated words: `Field:`, the number, `kB`.
        let mut words = [&line[..0]; 3];
        if !split_words(line, &mut words) {
            continue;
        }
        let [key, value, unit] = words;
        if unit != b"kB" {
            continue;
        }
        let Some(field) = key.strip_suffix(b":") else { continue };
        if field.is_empty() {
            continue;
        }
        if let Some(kib) = parse_u64(value) {
            each(field, kib.saturating_mul(1024));
        }
    }
}

/// Splits `line` at ASCII whitespace into exactly `words.len()` non-empty words; false
/// when it has more or fewer. One pass over the bytes.
fn split_words<'a>(line: &'a [u8], words: &mut [&'a [u8]]) -> bool {
    let mut count = 0;
    let mut at = 0;
    while at < line.len() {
        if line[at].is_ascii_whitespace() {
            at += 1;
            continue;
        }
        let start = at;
        while at < line.len() && !line[at].is_ascii_whitespace() {
            at += 1;
        }
        if count == words.len() {
            return false;
        }
        words[count] = &line[start..at];
        count += 1;
    }
    count == words.len()
}

fn parse_u64(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 20 {
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

/// The smaps field name in lower snake case: `Pss_Anon` -> `pss_anon`, `AnonHugePages`
/// -> `anon_huge_pages`, `SwapPss` -> `swap_pss`, `KSM` -> `ksm`. Allocates; the caller
/// caches it per field.
pub fn snake_case(field: &[u8]) -> String {
    let mut out = String::with_capacity(field.len() + 4);
    for (i, &b) in field.iter().enumerate() {
        if b.is_ascii_uppercase() {
            let previous = i.checked_sub(1).map(|p| field[p]);
            if previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit()) {
                out.push('_');
            }
            out.push(b.to_ascii_lowercase() as char);
        } else if b.is_ascii_alphanumeric() || b == b'_' {
            out.push(b as char);
        } else {
            out.push('_');
        }
    }
    out
}

/// What the receiver needs from /proc/PID/stat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat<'a> {
    pub comm: &'a [u8],
    pub state: u8,
    pub ppid: u64,
    /// Clock ticks since boot (field 22): with the pid, the identity of a process.
    pub starttime: u64,
}

pub fn parse_stat(data: &[u8]) -> Option<Stat<'_>> {
    let open = data.iter().position(|&b| b == b'(')?;
    let close = data.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let comm = &data[open + 1..close];
    let mut rest = data[close + 1..].split(|b| b.is_ascii_whitespace()).filter(|p| !p.is_empty());
    let state = *rest.next()?.first()?;
    let ppid = parse_u64(rest.next()?)?;
    // After `)`: state is index 0, starttime index 19.
    let starttime = parse_u64(rest.nth(17)?)?;
    Some(Stat { comm, state, ppid, starttime })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc/self/smaps_rollup from this machine (kernel 6.18).
    pub const ROLLUP: &[u8] = b"564cb973e000-7ffd0096d000 ---p 00000000 00:00 0                          [rollup]
Rss:                1688 kB
Pss:                 278 kB
Pss_Dirty:           112 kB
Pss_Anon:            112 kB
Pss_File:            166 kB
Pss_Shmem:             0 kB
Shared_Clean:       1536 kB
Shared_Dirty:          0 kB
Private_Clean:        40 kB
Private_Dirty:       112 kB
Referenced:         1688 kB
Anonymous:           112 kB
KSM:                   0 kB
LazyFree:              0 kB
AnonHugePages:         0 kB
ShmemPmdMapped:        0 kB
FilePmdMapped:         0 kB
Shared_Hugetlb:        0 kB
Private_Hugetlb:       0 kB
Swap:                  0 kB
SwapPss:               0 kB
Locked:                0 kB
";

    #[test]
    fn rollup_fields_in_bytes() {
        let mut fields = Vec::new();
        for_each_rollup_field(ROLLUP, |f, v| fields.push((snake_case(f), v)));
        assert_eq!(fields.len(), 22);
        assert_eq!(fields[0], ("rss".to_string(), 1688 * 1024));
        assert_eq!(fields[3], ("pss_anon".to_string(), 112 * 1024));
        assert_eq!(fields[9], ("private_dirty".to_string(), 112 * 1024));
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        for expected in ["pss_dirty", "shared_clean", "ksm", "lazy_free", "anon_huge_pages", "shmem_pmd_mapped", "file_pmd_mapped", "shared_hugetlb", "swap", "swap_pss", "locked"] {
            assert!(names.contains(&expected), "{expected} in {names:?}");
        }
    }

    /// The hot-path parser agrees with the `procfs` crate on the same bytes.
    #[test]
    fn cross_check_with_procfs() {
        use procfs::FromBufRead;
        for data in [ROLLUP.to_vec(), std::fs::read("/proc/self/smaps_rollup").unwrap()] {
            let reference = procfs::process::SmapsRollup::from_buf_read(&data[..]).unwrap();
            let map = &reference.memory_map_rollup.0[0].extension.map;
            let mut count = 0;
            for_each_rollup_field(&data, |field, bytes| {
                count += 1;
                assert_eq!(map.get(std::str::from_utf8(field).unwrap()), Some(&bytes), "{}", String::from_utf8_lossy(field));
            });
            assert_eq!(count, map.len());
        }
    }

    /// The first, iterator-based line parser: the reference for the one-pass splitter.
    fn reference_fields(data: &[u8]) -> Vec<(Vec<u8>, u64)> {
        let mut out = Vec::new();
        for line in data.split(|&b| b == b'\n') {
            let mut parts = line.split(|b| b.is_ascii_whitespace()).filter(|p| !p.is_empty());
            let (Some(key), Some(value), Some(b"kB"), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let Some(field) = key.strip_suffix(b":") else { continue };
            if field.is_empty() {
                continue;
            }
            if let Some(kib) = parse_u64(value) {
                out.push((field.to_vec(), kib.saturating_mul(1024)));
            }
        }
        out
    }

    #[test]
    fn one_pass_parser_matches_reference_on_mutated_input() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut lines = 0;
        for _ in 0..3_000 {
            let mut input = ROLLUP.to_vec();
            for _ in 0..(next() % 12) {
                let at = (next() as usize) % (input.len() + 1);
                match next() % 3 {
                    0 if at < input.len() => input[at] = [b' ', b'\t', b':', b'k', b'B', b'7', b'\n', 0x0c][(next() % 8) as usize],
                    1 => input.insert(at, [b' ', b':', b'\n', b'\r', b'9', b'x', 0xff][(next() % 7) as usize]),
                    _ if at < input.len() => {
                        input.remove(at);
                    }
                    _ => {}
                }
            }
            let mut got = Vec::new();
            for_each_rollup_field(&input, |f, v| got.push((f.to_vec(), v)));
            assert_eq!(got, reference_fields(&input), "{}", String::from_utf8_lossy(&input));
            lines += got.len();
        }
        assert!(lines > 15_000, "mutations must leave most lines valid ({lines})");
    }

    #[test]
    fn stat_with_hostile_comm() {
        let stat = parse_stat(b"3353 (cat) R 3348 3348 2292 0 -1 4194304 99 0 0 0 0 0 0 0 20 0 1 0 18417 5652480 200 18446744073709551615").unwrap();
        assert_eq!((stat.comm, stat.state, stat.ppid, stat.starttime), (&b"cat"[..], b'R', 3348, 18417));
        let stat = parse_stat(b"77 (a) b) (c) S 1 77 77 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 999 0 0").unwrap();
        assert_eq!((stat.comm, stat.starttime), (&b"a) b) (c"[..], 999));
        assert_eq!(parse_stat(b"1 (x) S 0"), None);
        assert_eq!(parse_stat(b")("), None);
    }

    #[test]
    fn parsers_never_panic_on_mutated_input() {
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let stat_seed: &[u8] = b"3353 (cat) R 3348 3348 2292 0 -1 4194304 99 0 0 0 0 0 0 0 20 0 1 0 18417 5652480 200 1";
        let mut total = 0u64;
        for round in 0..20_000 {
            let mut input = if round % 2 == 0 { ROLLUP.to_vec() } else { stat_seed.to_vec() };
            for _ in 0..(next() % 8) {
                let at = (next() as usize) % (input.len() + 1);
                match next() % 3 {
                    0 if at < input.len() => input[at] = next() as u8,
                    1 => input.insert(at, [b' ', b':', b'\n', b'(', b')', b'9', 0xff][(next() % 7) as usize]),
                    _ if at < input.len() => {
                        input.remove(at);
                    }
                    _ => {}
                }
            }
            if round % 10 == 0 {
                input = (0..(next() % 64)).map(|_| next() as u8).collect();
            }
            for_each_rollup_field(&input, |f, v| {
                total = total.wrapping_add(v);
                let _ = snake_case(f);
            });
            if let Some(stat) = parse_stat(&input) {
                total = total.wrapping_add(stat.starttime);
            }
        }
        assert!(total > 0);
    }
}
