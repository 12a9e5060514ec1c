//! Facts about this process (heap in use, RSS, CPU time, memory limits), and a global
//! allocator wrapper that counts bytes in use, so `memory_limiter` can refuse
//! data from an exact, current number instead of a sampled RSS (which lags, and which the
//! system allocator does not always give back after a burst).
//!
//! The binary installs it with `#[global_allocator]`; the cost is one relaxed atomic add
//! per allocation and free. Without it installed, [`allocated_bytes`] returns `None`.

use std::alloc::{GlobalAlloc, Layout, System};
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
    INSTALLED.load(Ordering::Relaxed).then(|| ALLOCATED.load(Ordering::Relaxed))
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
            vec![format!("/sys/fs/cgroup{path}/memory.max"), format!("/sys/fs/cgroup/unified{path}/memory.max")]
        } else if controllers.split(',').any(|c| c == "memory") {
            vec![format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"), "/sys/fs/cgroup/memory/memory.limit_in_bytes".to_string()]
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
