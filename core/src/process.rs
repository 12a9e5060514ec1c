//! Facts about this process (heap in use, RSS, CPU time, memory limits), and a global
//! allocator wrapper that counts bytes in use, so `memory_limiter` can refuse
//! data from an exact, current number instead of a sampled RSS (which lags, and which the
//! system allocator does not always give back after a burst).
//!
//! The binary installs it with `#[global_allocator]`; the cost is one relaxed atomic add
//! per allocation and free. Without it installed, [`allocated_bytes`] returns `None`.

use std::alloc::{GlobalAlloc, Layout};

#[cfg(feature = "mimalloc")]
use mimalloc::MiMalloc as System;
#[cfg(not(feature = "mimalloc"))]
use std::alloc::System;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The system allocator, counting bytes in use.
pub struct CountingAllocator;

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let new_ptr = unsafe { System.realloc(ptr, layout, new_size) };
        if !new_ptr.is_null() {
            if new_size >= layout.size() {
                ALLOCATED.fetch_add(new_size - layout.size(), Ordering::Relaxed);
            } else {
                ALLOCATED.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        new_ptr
    }
}

/// Marks the counting allocator as installed; call once at the start of `main`.
pub fn mark_installed() {
    INSTALLED.store(true, Ordering::Relaxed);
}

/// Heap bytes in use, when the counting allocator is installed.
pub fn allocated_bytes() -> Option<usize> {
    INSTALLED
        .load(Ordering::Relaxed)
        .then(|| ALLOCATED.load(Ordering::Relaxed))
}

/// Resident set size of this process from /proc/self/statm, in bytes.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(resident_pages * page_size())
}

fn page_size() -> u64 {
    // Every Linux platform oxcol targets uses 4 KiB base pages except some arm64/ppc64
    // kernels; read the auxiliary vector's value through /proc/self/smaps if ever needed.
    4096
}

/// CPU seconds (user + system) this process has used, from /proc/self/stat.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Total memory of the host from /proc/meminfo, in bytes.
pub fn host_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The memory limit of this process's cgroup (v2 `memory.max`, or v1
/// `memory.limit_in_bytes`), when there is a real one.
pub fn cgroup_memory_limit_bytes() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let candidates = if controllers.is_empty() {
            vec![
                format!("/sys/fs/cgroup{path}/memory.max"),
                format!("/sys/fs/cgroup/unified{path}/memory.max"),
            ]
        } else if controllers.split(',').any(|c| c == "memory") {
            vec![
                format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"),
                "/sys/fs/cgroup/memory/memory.limit_in_bytes".to_string(),
            ]
        } else {
            continue;
        };
        for file in candidates {
            if let Ok(text) = std::fs::read_to_string(&file) {
                let text = text.trim();
                if text == "max" {
                    continue;
                }
                if let Ok(limit) = text.parse::<u64>() {
                    // v1 reports "unlimited" as a huge page-aligned number.
                    if limit < (1u64 << 60) {
                        return Some(limit);
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_facts_are_readable_here() {
        assert!(resident_bytes().unwrap() > 0);
        assert!(cpu_seconds().unwrap() >= 0.0);
        assert!(host_memory_bytes().unwrap() > 1 << 20);
        // Not installed in unit tests.
        assert_eq!(allocated_bytes(), None);
    }
}

/// What [`release_clean_file_pages`] dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReleasedPages {
    /// Mappings advised.
    pub mappings: usize,
    /// Resident bytes those mappings had before.
    pub resident_bytes: u64,
}

/// Unmaps, from this process only, the resident pages of its read-only private file
/// mappings (the executable's code and constants, shared libraries) that hold no private
/// copy of any page. Start-up runs code once (config parsing, validation, building every
/// component) that the steady state never runs again; its pages stay counted in RSS for
/// the life of the process even though they are clean page cache. `MADV_DONTNEED` on such
/// a mapping only drops page-table entries: the next access faults the same bytes back in
/// from the page cache (a minor fault), so nothing can be lost. Mappings that are writable,
/// shared, anonymous, or hold any anonymous (copy-on-write) page, such as the relocated
/// RELRO region, are never touched.
pub fn release_clean_file_pages() -> std::io::Result<ReleasedPages> {
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut released = ReleasedPages::default();
    for mapping in clean_file_mappings(&smaps) {
        // SAFETY: the range is a whole mapping of this process, read-only, private and
        // file-backed with no anonymous pages, so MADV_DONTNEED discards only page-table
        // entries that the kernel restores from the file on the next access.
        let result = unsafe {
            libc::madvise(
                mapping.start as *mut libc::c_void,
                mapping.len,
                libc::MADV_DONTNEED,
            )
        };
        if result == 0 {
            released.mappings += 1;
            released.resident_bytes += mapping.resident_bytes;
        }
    }
    Ok(released)
}

/// One mapping of /proc/self/smaps that [`release_clean_file_pages`] may advise.
#[derive(Debug, PartialEq, Eq)]
struct CleanMapping {
    start: usize,
    len: usize,
    resident_bytes: u64,
}

/// The mappings of an smaps text that are private, not writable, backed by a file (an
/// absolute path, not `[vdso]` and the like, not deleted), resident, and without any
/// anonymous or locked page.
fn clean_file_mappings(smaps: &str) -> Vec<CleanMapping> {
    struct Current {
        candidate: Option<CleanMapping>,
        anonymous_kib: u64,
        locked_kib: u64,
    }
    fn finish(current: Option<Current>, out: &mut Vec<CleanMapping>) {
        if let Some(Current {
            candidate: Some(mapping),
            anonymous_kib: 0,
            locked_kib: 0,
        }) = current
        {
            if mapping.resident_bytes > 0 {
                out.push(mapping);
            }
        }
    }
    let mut out = Vec::new();
    let mut current: Option<Current> = None;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if let Some((start, end)) = first
            .split_once('-')
            .filter(|(a, _)| !a.is_empty() && a.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            finish(current.take(), &mut out);
            let perms = words.next().unwrap_or("");
            let path = words.nth(3).unwrap_or("");
            let deleted = line.ends_with("(deleted)");
            let eligible = perms.len() == 4
                && !perms.contains('w')
                && perms.ends_with('p')
                && path.starts_with('/')
                && !deleted;
            let range = usize::from_str_radix(start, 16)
                .ok()
                .zip(usize::from_str_radix(end, 16).ok())
                .filter(|(a, b)| b > a);
            let candidate = match (eligible, range) {
                (true, Some((start, end))) => Some(CleanMapping {
                    start,
                    len: end - start,
                    resident_bytes: 0,
                }),
                _ => None,
            };
            current = Some(Current {
                candidate,
                anonymous_kib: 0,
                locked_kib: 0,
            });
            continue;
        }
        let Some(current) = current.as_mut() else {
            continue;
        };
        let kib = || {
            words
                .clone()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match first {
            "Rss:" => {
                if let Some(mapping) = current.candidate.as_mut() {
                    mapping.resident_bytes = kib() * 1024;
                }
            }
            // An unparsable count is treated as present: never advise what we cannot read.
            "Anonymous:" => {
                current.anonymous_kib = words
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(u64::MAX)
            }
            "Locked:" => {
                current.locked_kib = words
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(u64::MAX)
            }
            _ => {}
        }
    }
    finish(current, &mut out);
    out
}

#[cfg(test)]
mod release_tests {
    use super::*;

    const SMAPS: &str = "\
55b94c702000-55b94ca3d000 r--p 00000000 08:01 1234 /usr/bin/oxcol
Rss:                1272 kB
Anonymous:             0 kB
Locked:                0 kB
55b94ca3d000-55b94d4ec000 r-xp 0033b000 08:01 1234 /usr/bin/oxcol
Rss:                6460 kB
Anonymous:             0 kB
Locked:                0 kB
55b94d4ec000-55b94d567000 r--p 00dea000 08:01 1234 /usr/bin/oxcol
Rss:                 492 kB
Anonymous:           488 kB
Locked:                0 kB
55b94d567000-55b94d56a000 rw-p 00e65000 08:01 1234 /usr/bin/oxcol
Rss:                  12 kB
Anonymous:            12 kB
Locked:                0 kB
7f9aee290000-7f9aee2b6000 r--s 00000000 08:01 99 /dev/shm/segment
Rss:                 148 kB
Anonymous:             0 kB
Locked:                0 kB
7f9aee2b6000-7f9aee40c000 r-xp 00026000 08:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                1000 kB
Anonymous:             0 kB
Locked:                4 kB
7f9aee40c000-7f9aee45f000 r-xp 00000000 08:01 78 /tmp/old (deleted)
Rss:                 192 kB
Anonymous:             0 kB
Locked:                0 kB
7f9aee482000-7f9aee4f6000 r-xp 00000000 08:01 79 /usr/lib/x86_64-linux-gnu/libm.so.6
Rss:                   0 kB
Anonymous:             0 kB
Locked:                0 kB
7ffd1c3f3000-7ffd1c3f5000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   8 kB
Anonymous:             0 kB
Locked:                0 kB
7f0000000000-7f0000001000 r-xp 00000000 00:00 0
Rss:                   4 kB
Anonymous:             0 kB
";

    #[test]
    fn only_clean_private_read_only_file_mappings_are_chosen() {
        let chosen = clean_file_mappings(SMAPS);
        assert_eq!(
            chosen,
            vec![
                CleanMapping {
                    start: 0x55b94c702000,
                    len: 0x55b94ca3d000 - 0x55b94c702000,
                    resident_bytes: 1272 * 1024
                },
                CleanMapping {
                    start: 0x55b94ca3d000,
                    len: 0x55b94d4ec000 - 0x55b94ca3d000,
                    resident_bytes: 6460 * 1024
                },
            ],
            "RELRO with anonymous pages, writable, shared, locked, deleted, non-resident, vdso and anonymous mappings are skipped"
        );
    }

    #[test]
    fn a_mapping_whose_counts_cannot_be_read_is_skipped() {
        let text = "55b94c702000-55b94ca3d000 r--p 00000000 08:01 1234 /usr/bin/oxcol\nRss: 1272 kB\nAnonymous: lots kB\n";
        assert!(clean_file_mappings(text).is_empty());
        assert!(clean_file_mappings("garbage\n\n-\nzz-yy r-xp\n").is_empty());
    }

    #[test]
    fn releasing_keeps_this_process_running_and_lowers_its_file_pages() {
        // Code and constants of this test binary are paged back in on use: calling into
        // them afterwards (formatting, the regex engine) must keep working.
        let before = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let released = release_clean_file_pages().unwrap();
        assert!(
            released.mappings > 0,
            "a test binary has clean read-only file mappings: {released:?}"
        );
        let again = clean_file_mappings(&std::fs::read_to_string("/proc/self/smaps").unwrap());
        let resident_after: u64 = again.iter().map(|m| m.resident_bytes).sum();
        let resident_before: u64 = clean_file_mappings(&before)
            .iter()
            .map(|m| m.resident_bytes)
            .sum();
        assert!(
            resident_after < resident_before,
            "{resident_after} < {resident_before}"
        );
        let re = regex::Regex::new(r"^(\d+)-(\d+)$").unwrap();
        assert_eq!(
            format!("{:?}", re.captures("12-34").map(|c| c[2].to_string())),
            "Some(\"34\")"
        );
    }
}
