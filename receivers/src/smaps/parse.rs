//! Zero-allocation parsers for `/proc/PID/smaps_rollup` and `/proc/PID/stat`.
//!
//! smaps_rollup: a `[rollup]` header line (the maps format) and then `Field:  N kB` lines.
//! Every field is optional (they come and go with kernel versions: Pss_Anon since ~5.3,
//! Pss_Dirty since ~6.0); only `kB` lines are reported, so `THPeligible`/`VmFlags`-like
//! lines without a unit are ignored. `kB` is KiB: values are multiplied by 1024.
//!
//! stat: `comm` sits in parentheses and may contain spaces and `)`, so the line is split
//! at the last `)`.

use crate::proc_text::split_words;

/// Calls `each(field, bytes)` for every `Field: N kB` line.
pub fn for_each_rollup_field(data: &[u8], mut each: impl FnMut(&[u8], u64)) {
    for_each_line(data, |line, _| {
        // Exactly three whitespace-separated words: `Field:`, the number, `kB`.
        let mut words = [&line[..0]; 3];
        if !split_words(line, &mut words) {
            return;
        }
        let [key, value, unit] = words;
        if unit != b"kB" {
            return;
        }
        let Some(field) = key.strip_suffix(b":") else {
            return;
        };
        if field.is_empty() {
            return;
        }
        if let Some(kib) = parse_u64(value) {
            each(field, kib.saturating_mul(1024));
        }
    });
}

/// Calls `each(line, offset)` for every `\n`-separated line of `data` and where it
/// starts, exactly like `data.split(|&b| b == b'\n')` (the last line may be empty or
/// unterminated). Newlines are found with `memchr` (SIMD): full smaps is ~1,000 lines
/// per 28 KB for a small process, so this is its hot loop.
#[inline]
pub(crate) fn for_each_line<'a>(data: &'a [u8], mut each: impl FnMut(&'a [u8], usize)) {
    let mut line_start = 0;
    for end in memchr::memchr_iter(b'\n', data) {
        each(data.get(line_start..end).unwrap_or_default(), line_start);
        line_start = end + 1;
    }
    each(data.get(line_start..).unwrap_or_default(), line_start);
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

/// The class of one mapping (VMA) of full `/proc/PID/smaps`, from its pathname and
/// permissions (the rule is in docs/components/smaps.md):
///
/// - `heap`: `[heap]` (the brk heap; glibc malloc's mmap arenas are `anonymous`).
/// - `stack`: `[stack]`, `[stack:TID]` (old kernels named thread stacks).
/// - `vdso`: kernel-provided special mappings: `[vdso]`, `[vvar]`, `[vvar_vclock]`,
///   `[vsyscall]`, `[vectors]`, `[sigpage]`, `[uprobes]`.
/// - `shmem`: shared memory: paths under `/dev/shm/`, `/memfd:` (memfd_create),
///   `/SYSV` (System V shm), `/dev/zero` (a shared anonymous mapping shows as
///   `/dev/zero (deleted)`), `[anon_shmem:NAME]`, and a mapping with no path whose
///   permissions say shared (`s`).
/// - `file`: any other path: executables, libraries, mapped data files, devices, a
///   deleted file (` (deleted)`) that is none of the above.
/// - `anonymous`: private mappings with no path (malloc arenas, Go/JVM heaps, thread
///   stacks) and named ones (`[anon:NAME]`), and any other bracketed name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MappingClass {
    Heap,
    Stack,
    Anonymous,
    File,
    Shmem,
    Vdso,
}

impl MappingClass {
    /// Every class, in the order the receiver emits them.
    pub const ALL: [MappingClass; 6] = [
        MappingClass::Heap,
        MappingClass::Stack,
        MappingClass::Anonymous,
        MappingClass::File,
        MappingClass::Shmem,
        MappingClass::Vdso,
    ];

    /// The `mapping.class` attribute value.
    pub fn name(self) -> &'static str {
        match self {
            MappingClass::Heap => "heap",
            MappingClass::Stack => "stack",
            MappingClass::Anonymous => "anonymous",
            MappingClass::File => "file",
            MappingClass::Shmem => "shmem",
            MappingClass::Vdso => "vdso",
        }
    }

    /// Position in [`MappingClass::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The class of a mapping with these permissions (`rw-p`) and pathname (empty for
    /// none).
    pub fn of(perms: &[u8], path: &[u8]) -> MappingClass {
        let shared = perms.get(3) == Some(&b's');
        if path.is_empty() {
            return if shared {
                MappingClass::Shmem
            } else {
                MappingClass::Anonymous
            };
        }
        if path[0] == b'[' {
            const SPECIAL: [&[u8]; 6] = [
                b"[vdso]",
                b"[vvar",
                b"[vsyscall]",
                b"[vectors]",
                b"[sigpage]",
                b"[uprobes]",
            ];
            return if path == b"[heap]" {
                MappingClass::Heap
            } else if path.starts_with(b"[stack]") || path.starts_with(b"[stack:") {
                MappingClass::Stack
            } else if SPECIAL.iter().any(|s| path.starts_with(s)) {
                MappingClass::Vdso
            } else if path.starts_with(b"[anon_shmem:") || shared {
                MappingClass::Shmem
            } else {
                MappingClass::Anonymous
            };
        }
        const SHMEM: [&[u8]; 4] = [b"/dev/shm/", b"/memfd:", b"/SYSV", b"/dev/zero"];
        if SHMEM.iter().any(|s| path.starts_with(s)) {
            MappingClass::Shmem
        } else {
            MappingClass::File
        }
    }
}

/// One mapping of full `/proc/PID/smaps`, with the fields the detailed mode reads (in
/// bytes; a field the kernel did not print is 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mapping<'a> {
    /// `r-xp`, `rw-s`, ...
    pub perms: &'a [u8],
    /// The pathname as the kernel prints it (newlines escaped as `\012`, a deleted
    /// file with ` (deleted)` appended); empty for none.
    pub path: &'a [u8],
    /// Where `path` starts in the input, so callers can keep ranges instead of slices.
    pub path_offset: usize,
    pub rss: u64,
    pub pss: u64,
    pub swap: u64,
}

/// The header line of a mapping (`start-end perms offset dev inode [path]`): the
/// permissions and the pathname with its offset in `line`. `None` for any other line.
fn parse_mapping_header(line: &[u8]) -> Option<(&[u8], &[u8], usize)> {
    let mut at = 0;
    let word = |at: &mut usize| -> Option<(usize, usize)> {
        while *at < line.len() && line[*at] == b' ' {
            *at += 1;
        }
        let start = *at;
        while *at < line.len() && line[*at] != b' ' {
            *at += 1;
        }
        (*at > start).then_some((start, *at))
    };
    let (s, e) = word(&mut at)?;
    let range = &line[s..e];
    let dash = range.iter().position(|&b| b == b'-')?;
    let hex = |part: &[u8]| !part.is_empty() && part.iter().all(u8::is_ascii_hexdigit);
    if !hex(&range[..dash]) || !hex(&range[dash + 1..]) {
        return None;
    }
    let (s, e) = word(&mut at)?;
    let perms = &line[s..e];
    if perms.len() != 4 {
        return None;
    }
    let (s, e) = word(&mut at)?; // offset
    if !hex(&line[s..e]) {
        return None;
    }
    let (s, e) = word(&mut at)?; // dev MAJ:MIN
    if !line[s..e]
        .iter()
        .all(|&b| b.is_ascii_hexdigit() || b == b':')
    {
        return None;
    }
    let (s, e) = word(&mut at)?; // inode
    if !line[s..e].iter().all(u8::is_ascii_digit) {
        return None;
    }
    while at < line.len() && line[at] == b' ' {
        at += 1;
    }
    Some((perms, &line[at..], at))
}

/// Calls `each` for every mapping of full `/proc/PID/smaps`: a header line (it starts
/// with a lowercase hex digit, as the kernel prints addresses) and the `Rss:`, `Pss:` and
/// `Swap:` lines after it (`Key: N kB`, the key at the start of the line). Every other
/// line (the other ~20 fields, `VmFlags`, `THPeligible`) is skipped after one look at its
/// first byte: full smaps is ~25 lines per mapping, so this is the hot loop of
/// `detailed`. Does not allocate. Lines before the first header are ignored.
pub fn for_each_mapping(data: &[u8], mut each: impl FnMut(&Mapping<'_>)) {
    let mut current: Option<Mapping<'_>> = None;
    for_each_line(data, |line, start| match line.first() {
        // Only 3 of the ~24 field lines matter: test their prefix before the call.
        Some(b'R' | b'P' | b'S')
            if line.starts_with(b"Rss:")
                || line.starts_with(b"Pss:")
                || line.starts_with(b"Swap:") =>
        {
            if let Some(mapping) = current.as_mut() {
                set_mapping_field(mapping, line);
            }
        }
        Some(b) if b.is_ascii_digit() || (b'a'..=b'f').contains(b) => {
            if let Some((perms, path, at)) = parse_mapping_header(line) {
                if let Some(done) = current.take() {
                    each(&done);
                }
                current = Some(Mapping {
                    perms,
                    path,
                    path_offset: start + at,
                    ..Mapping::default()
                });
            }
        }
        _ => {}
    });
    if let Some(done) = current {
        each(&done);
    }
}

/// `Rss:`, `Pss:` or `Swap:` with exactly a number and `kB` after it.
fn set_mapping_field(mapping: &mut Mapping<'_>, line: &[u8]) {
    let (slot, rest) = if let Some(rest) = line.strip_prefix(b"Rss:") {
        (&mut mapping.rss, rest)
    } else if let Some(rest) = line.strip_prefix(b"Pss:") {
        (&mut mapping.pss, rest)
    } else if let Some(rest) = line.strip_prefix(b"Swap:") {
        (&mut mapping.swap, rest)
    } else {
        return;
    };
    if let Some(kib) = kib_value(rest) {
        *slot = kib.saturating_mul(1024);
    }
}

/// What follows the key of a `Key: N kB` line: whitespace, the number, whitespace, `kB`,
/// optional whitespace; anything else is `None` (the key word must end right at the
/// colon). The same lines `split_words` + `parse_u64` accept, in one pass.
fn kib_value(rest: &[u8]) -> Option<u64> {
    let skip = |at: &mut usize| {
        while *at < rest.len() && rest[*at].is_ascii_whitespace() {
            *at += 1;
        }
    };
    let mut at = 0;
    skip(&mut at);
    if at == 0 {
        return None;
    }
    let digits = at;
    while at < rest.len() && !rest[at].is_ascii_whitespace() {
        at += 1;
    }
    let value = parse_u64(&rest[digits..at])?;
    let unit = at;
    skip(&mut at);
    if at == unit || rest.get(at..at + 2) != Some(b"kB") {
        return None;
    }
    at += 2;
    let end = at;
    skip(&mut at);
    (at == rest.len() && (end == rest.len() || rest[end].is_ascii_whitespace())).then_some(value)
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
    let mut rest = data[close + 1..]
        .split(|b| b.is_ascii_whitespace())
        .filter(|p| !p.is_empty());
    let state = *rest.next()?.first()?;
    let ppid = parse_u64(rest.next()?)?;
    // After `)`: state is index 0, starttime index 19.
    let starttime = parse_u64(rest.nth(17)?)?;
    Some(Stat {
        comm,
        state,
        ppid,
        starttime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc/self/smaps_rollup from this machine (kernel 6.18).
    pub const ROLLUP: &[u8] =
        b"564cb973e000-7ffd0096d000 ---p 00000000 00:00 0                          [rollup]
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
        for expected in [
            "pss_dirty",
            "shared_clean",
            "ksm",
            "lazy_free",
            "anon_huge_pages",
            "shmem_pmd_mapped",
            "file_pmd_mapped",
            "shared_hugetlb",
            "swap",
            "swap_pss",
            "locked",
        ] {
            assert!(names.contains(&expected), "{expected} in {names:?}");
        }
    }

    /// The hot-path parser agrees with the `procfs` crate on the same bytes.
    #[test]
    fn cross_check_with_procfs() {
        use procfs::FromBufRead;
        for data in [
            ROLLUP.to_vec(),
            std::fs::read("/proc/self/smaps_rollup").unwrap(),
        ] {
            let reference = procfs::process::SmapsRollup::from_buf_read(&data[..]).unwrap();
            let map = &reference.memory_map_rollup.0[0].extension.map;
            let mut count = 0;
            for_each_rollup_field(&data, |field, bytes| {
                count += 1;
                assert_eq!(
                    map.get(std::str::from_utf8(field).unwrap()),
                    Some(&bytes),
                    "{}",
                    String::from_utf8_lossy(field)
                );
            });
            assert_eq!(count, map.len());
        }
    }

    /// The first, iterator-based line parser: the reference for the one-pass splitter.
    fn reference_fields(data: &[u8]) -> Vec<(Vec<u8>, u64)> {
        let mut out = Vec::new();
        for line in data.split(|&b| b == b'\n') {
            let mut parts = line
                .split(|b| b.is_ascii_whitespace())
                .filter(|p| !p.is_empty());
            let (Some(key), Some(value), Some(b"kB"), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Some(field) = key.strip_suffix(b":") else {
                continue;
            };
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
        let mut rng = oxcol_core::testdata::XorShift64(0x9E37_79B9_7F4A_7C15);
        let mut next = || rng.next_u64();
        let mut lines = 0;
        for _ in 0..3_000 {
            let mut input = ROLLUP.to_vec();
            for _ in 0..(next() % 12) {
                let at = (next() as usize) % (input.len() + 1);
                match next() % 3 {
                    0 if at < input.len() => {
                        input[at] = [b' ', b'\t', b':', b'k', b'B', b'7', b'\n', 0x0c]
                            [(next() % 8) as usize]
                    }
                    1 => input.insert(
                        at,
                        [b' ', b':', b'\n', b'\r', b'9', b'x', 0xff][(next() % 7) as usize],
                    ),
                    _ if at < input.len() => {
                        input.remove(at);
                    }
                    _ => {}
                }
            }
            let mut got = Vec::new();
            for_each_rollup_field(&input, |f, v| got.push((f.to_vec(), v)));
            assert_eq!(
                got,
                reference_fields(&input),
                "{}",
                String::from_utf8_lossy(&input)
            );
            lines += got.len();
        }
        assert!(
            lines > 15_000,
            "mutations must leave most lines valid ({lines})"
        );
    }

    /// Full /proc/PID/smaps recorded on this machine (kernel 6.18): `sleep` (glibc,
    /// [heap], libraries, locale files) and a static Go program with a /dev/shm mapping.
    pub const SLEEP_SMAPS: &[u8] = include_bytes!("../../tests/fixtures/smaps/sleep-glibc.smaps");
    pub const GO_SMAPS: &[u8] = include_bytes!("../../tests/fixtures/smaps/go-static.smaps");

    #[test]
    fn mapping_classes() {
        let cases: [(&str, &str, MappingClass); 22] = [
            ("rw-p", "[heap]", MappingClass::Heap),
            ("rw-p", "[stack]", MappingClass::Stack),
            ("rw-p", "[stack:1234]", MappingClass::Stack),
            ("r-xp", "[vdso]", MappingClass::Vdso),
            ("r--p", "[vvar]", MappingClass::Vdso),
            ("r--p", "[vvar_vclock]", MappingClass::Vdso),
            ("--xp", "[vsyscall]", MappingClass::Vdso),
            ("r-xp", "[vectors]", MappingClass::Vdso),
            ("rw-p", "", MappingClass::Anonymous),
            ("---p", "", MappingClass::Anonymous),
            ("rw-p", "[anon:libc_malloc]", MappingClass::Anonymous),
            ("rw-s", "", MappingClass::Shmem),
            ("rw-s", "[anon_shmem:pool]", MappingClass::Shmem),
            ("rw-s", "/dev/shm/oxcol-smaps-fixture", MappingClass::Shmem),
            (
                "rw-s",
                "/memfd:wayland-cursor (deleted)",
                MappingClass::Shmem,
            ),
            ("rw-s", "/SYSV00000000 (deleted)", MappingClass::Shmem),
            ("rw-s", "/dev/zero (deleted)", MappingClass::Shmem),
            (
                "r-xp",
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
                MappingClass::File,
            ),
            (
                "r--s",
                "/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache",
                MappingClass::File,
            ),
            ("rw-s", "/var/lib/db/data.mdb", MappingClass::File),
            ("r-xp", "/usr/bin/app (deleted)", MappingClass::File),
            ("rw-p", "[unknown]", MappingClass::Anonymous),
        ];
        for (perms, path, class) in cases {
            assert_eq!(
                MappingClass::of(perms.as_bytes(), path.as_bytes()),
                class,
                "{perms} {path}"
            );
        }
        assert_eq!(MappingClass::ALL.map(|c| c.index()), [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn smaps_mappings_from_a_real_file() {
        let mut mappings = Vec::new();
        for_each_mapping(SLEEP_SMAPS, |m| {
            mappings.push((
                String::from_utf8_lossy(m.perms).into_owned(),
                String::from_utf8_lossy(m.path).into_owned(),
                m.rss,
                m.pss,
                m.swap,
                m.path_offset,
            ))
        });
        let headers = SLEEP_SMAPS
            .split(|&b| b == b'\n')
            .filter(|l| l.first().is_some_and(u8::is_ascii_hexdigit) && l.contains(&b'-'))
            .count();
        assert_eq!(mappings.len(), headers);
        assert_eq!(mappings.len(), 37);
        assert_eq!(
            (
                mappings[0].0.as_str(),
                mappings[0].1.as_str(),
                mappings[0].2,
                mappings[0].3
            ),
            ("r--p", "/usr/bin/sleep", 8 * 1024, 8 * 1024)
        );
        let heap = mappings.iter().find(|m| m.1 == "[heap]").unwrap();
        assert_eq!((heap.2, heap.3), (16 * 1024, 16 * 1024));
        let anonymous = mappings.iter().filter(|m| m.1.is_empty()).count();
        assert_eq!(anonymous, 3, "`rw-p 00000000 00:00 0 ` lines have no path");
        // path_offset points at the path in the input.
        for m in &mappings {
            assert_eq!(&SLEEP_SMAPS[m.5..m.5 + m.1.len()], m.1.as_bytes());
        }
        // Pss summed over mappings: each mapping's value is truncated to a KiB, the
        // rollup's sum is not, so the sum is at most the rollup and short by < 1 KiB per
        // mapping. Rss is in whole pages: equal.
        let (rss, pss): (u64, u64) = mappings.iter().fold((0, 0), |(r, p), m| (r + m.2, p + m.3));
        assert_eq!(rss, 1812 * 1024);
        assert_eq!(pss, 213 * 1024);
        let mut go = 0;
        for_each_mapping(GO_SMAPS, |_| go += 1);
        assert_eq!(go, 32);
        // smaps_rollup fed to the smaps parser: one mapping, [rollup].
        let mut rollup = Vec::new();
        for_each_mapping(ROLLUP, |m| rollup.push((m.path.to_vec(), m.rss)));
        assert_eq!(rollup, [(b"[rollup]".to_vec(), 1688 * 1024)]);
    }

    /// A plain, iterator-based smaps parser: the reference for `for_each_mapping`.
    fn reference_mappings(data: &[u8]) -> Vec<(Vec<u8>, Vec<u8>, u64, u64, u64)> {
        let mut out: Vec<(Vec<u8>, Vec<u8>, u64, u64, u64)> = Vec::new();
        for line in data.split(|&b| b == b'\n') {
            let hex = |w: &[u8]| !w.is_empty() && w.iter().all(u8::is_ascii_hexdigit);
            if !line
                .first()
                .is_some_and(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            {
                let words: Vec<&[u8]> = line
                    .split(|b| b.is_ascii_whitespace())
                    .filter(|w| !w.is_empty())
                    .collect();
                if words.len() == 3 && words[2] == b"kB" && line.starts_with(words[0]) {
                    if let (Some(last), Some(kib)) = (out.last_mut(), parse_u64(words[1])) {
                        match words[0] {
                            b"Rss:" => last.2 = kib.saturating_mul(1024),
                            b"Pss:" => last.3 = kib.saturating_mul(1024),
                            b"Swap:" => last.4 = kib.saturating_mul(1024),
                            _ => {}
                        }
                    }
                }
                continue;
            }
            let words: Vec<&[u8]> = line
                .split(|&b| b == b' ')
                .filter(|w| !w.is_empty())
                .collect();
            if words.len() < 5 {
                continue;
            }
            let Some((start, end)) = words[0]
                .iter()
                .position(|&b| b == b'-')
                .map(|d| (&words[0][..d], &words[0][d + 1..]))
            else {
                continue;
            };
            if !hex(start)
                || !hex(end)
                || words[1].len() != 4
                || !hex(words[2])
                || !words[3].iter().all(|&b| b.is_ascii_hexdigit() || b == b':')
                || !words[4].iter().all(u8::is_ascii_digit)
            {
                continue;
            }
            // The path: everything after the fifth word and the spaces that follow it.
            let mut seen = 0;
            let mut at = 0;
            while seen < 5 {
                while line[at] == b' ' {
                    at += 1;
                }
                while at < line.len() && line[at] != b' ' {
                    at += 1;
                }
                seen += 1;
            }
            while at < line.len() && line[at] == b' ' {
                at += 1;
            }
            out.push((words[1].to_vec(), line[at..].to_vec(), 0, 0, 0));
        }
        out
    }

    #[test]
    fn lines_agree_with_split() {
        let mut rng = oxcol_core::testdata::XorShift64(0x0123_4567_89AB_CDEF);
        let mut next = || rng.next_u64();
        // Newlines at every position and in runs, bytes around them, lengths up to 40.
        for round in 0..20_000 {
            let len = round % 41;
            let data: Vec<u8> = (0..len)
                .map(|_| [b'\n', 0x0b, 0x8a, 0x09, b'a', 0xff, 0x00, 0x0a][(next() % 8) as usize])
                .collect();
            let mut got = Vec::new();
            for_each_line(&data, |line, offset| {
                assert_eq!(&data[offset..offset + line.len()], line);
                got.push(line.to_vec());
            });
            let expected: Vec<Vec<u8>> = data.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
            assert_eq!(got, expected, "{data:?}");
        }
    }

    #[test]
    fn smaps_parser_matches_reference_on_mutated_input() {
        let mut rng = oxcol_core::testdata::XorShift64(0x5851_F42D_4C95_7F2D);
        let mut next = || rng.next_u64();
        let mut mappings = 0;
        for round in 0..1_500 {
            let mut input = if round % 2 == 0 {
                SLEEP_SMAPS.to_vec()
            } else {
                GO_SMAPS.to_vec()
            };
            for _ in 0..(next() % 40) {
                let at = (next() as usize) % (input.len() + 1);
                match next() % 3 {
                    0 if at < input.len() => {
                        input[at] = [
                            b' ', b'\t', b':', b'-', b'k', b'B', b'7', b'f', b'\n', b'[', 0xff,
                        ][(next() % 11) as usize]
                    }
                    1 => input.insert(
                        at,
                        [b' ', b':', b'\n', b'-', b'9', b'x', b's', 0xff][(next() % 8) as usize],
                    ),
                    _ if at < input.len() => {
                        input.remove(at);
                    }
                    _ => {}
                }
            }
            let mut got = Vec::new();
            for_each_mapping(&input, |m| {
                assert_eq!(&input[m.path_offset..m.path_offset + m.path.len()], m.path);
                let _ = MappingClass::of(m.perms, m.path);
                got.push((m.perms.to_vec(), m.path.to_vec(), m.rss, m.pss, m.swap));
            });
            assert_eq!(
                got,
                reference_mappings(&input),
                "{}",
                String::from_utf8_lossy(&input)
            );
            mappings += got.len();
        }
        assert!(
            mappings > 1_500 * 25,
            "mutations must leave most mappings valid ({mappings})"
        );
    }

    #[test]
    fn stat_with_hostile_comm() {
        let stat = parse_stat(b"3353 (cat) R 3348 3348 2292 0 -1 4194304 99 0 0 0 0 0 0 0 20 0 1 0 18417 5652480 200 18446744073709551615").unwrap();
        assert_eq!(
            (stat.comm, stat.state, stat.ppid, stat.starttime),
            (&b"cat"[..], b'R', 3348, 18417)
        );
        let stat =
            parse_stat(b"77 (a) b) (c) S 1 77 77 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 999 0 0")
                .unwrap();
        assert_eq!((stat.comm, stat.starttime), (&b"a) b) (c"[..], 999));
        assert_eq!(parse_stat(b"1 (x) S 0"), None);
        assert_eq!(parse_stat(b")("), None);
    }

    #[test]
    fn parsers_never_panic_on_mutated_input() {
        let mut rng = oxcol_core::testdata::XorShift64(0x2545_F491_4F6C_DD1D);
        let mut next = || rng.next_u64();
        let stat_seed: &[u8] = b"3353 (cat) R 3348 3348 2292 0 -1 4194304 99 0 0 0 0 0 0 0 20 0 1 0 18417 5652480 200 1";
        let mut total = 0u64;
        for round in 0..20_000 {
            let mut input = if round % 2 == 0 {
                ROLLUP.to_vec()
            } else {
                stat_seed.to_vec()
            };
            for _ in 0..(next() % 8) {
                let at = (next() as usize) % (input.len() + 1);
                match next() % 3 {
                    0 if at < input.len() => input[at] = next() as u8,
                    1 => input.insert(
                        at,
                        [b' ', b':', b'\n', b'(', b')', b'9', 0xff][(next() % 7) as usize],
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
            for_each_rollup_field(&input, |f, v| {
                total = total.wrapping_add(v);
                let _ = snake_case(f);
            });
            if let Some(stat) = parse_stat(&input) {
                total = total.wrapping_add(stat.starttime);
            }
            for_each_mapping(&input, |m| {
                total = total.wrapping_add(m.pss);
                let _ = MappingClass::of(m.perms, m.path);
            });
        }
        assert!(total > 0);
    }
}
