//! `memory_limiter`: refuses data while oxcol's memory is above its soft limit
//! (`limit - spike_limit`), so the process stays inside its memory budget under any input
//! rate. Refusals are retryable; the client backs off and sends again.
//!
//! Unlike the Collector's, which samples the Go heap every `check_interval` and checks
//! inside the pipeline (after the body was read and decoded), oxcol's limiter is also an
//! admission check that receivers consult *before* they read a request body, against the
//! current heap-in-use count kept by oxcol's counting allocator. Data is refused before it
//! is buffered. Without the counting allocator (unit tests), it samples RSS.
//!
//! Memory usage here is the larger of (heap in use + the non-heap baseline) and the
//! resident set size. The baseline is RSS minus heap at start, lowered to the smallest
//! value any later RSS sample shows: start-up pages (the binary's code touched while
//! starting, released after start) must not count as usage for ever. When only RSS is high (the allocator keeps freed
//! pages), the limiter hands them back (`malloc_trim`) instead of refusing for ever.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use oxcol_core::process;
use oxcol_core::{Admission, Batch, GoDuration, Processor, Refusal};
use serde::Deserialize;

pub const TYPE: &str = "memory_limiter";
pub const ALIASES: &[&str] = &["memory_limiter"];

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Required by the Collector (> 0). oxcol checks on every request; this interval is
    /// used for the RSS fallback sampling and the state-change log.
    pub check_interval: GoDuration,
    /// Hard limit in MiB.
    pub limit_mib: u64,
    /// Headroom below the hard limit; refusing starts at `limit - spike`. Default 20% of
    /// the limit.
    pub spike_limit_mib: Option<u64>,
    /// Hard limit as a percentage of the cgroup memory limit, or host memory without one.
    pub limit_percentage: u64,
    /// Spike as a percentage (used with `limit_percentage`).
    pub spike_limit_percentage: Option<u64>,
    /// Collector keys about Go's GC; accepted and ignored (no GC in oxcol).
    pub min_gc_interval_when_soft_limited: Option<GoDuration>,
    pub min_gc_interval_when_hard_limited: Option<GoDuration>,
}

impl Config {
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.check_interval.is_zero() {
            errors.push("check_interval must be greater than zero (e.g. 1s)".to_string());
        }
        if self.limit_mib == 0 && self.limit_percentage == 0 {
            errors.push(
                "set limit_mib or limit_percentage: a memory_limiter needs a limit".to_string(),
            );
        }
        if self.limit_mib > 0 && self.limit_percentage > 0 {
            errors.push("set only one of limit_mib and limit_percentage".to_string());
        }
        if self.limit_percentage > 100 || self.spike_limit_percentage.is_some_and(|p| p > 100) {
            errors.push("percentages must be between 0 and 100".to_string());
        }
        if let Some(spike) = self.spike_limit_mib {
            if self.limit_mib > 0 && spike >= self.limit_mib {
                errors.push(format!(
                    "spike_limit_mib ({spike}) must be smaller than limit_mib ({})",
                    self.limit_mib
                ));
            }
        }
        errors
    }

    /// (hard, soft) limits in bytes. Percentages resolve against the cgroup limit, else
    /// host memory.
    pub fn limits_bytes(&self) -> (u64, u64) {
        const MIB: u64 = 1 << 20;
        if self.limit_mib > 0 {
            let hard = self.limit_mib * MIB;
            let spike = self.spike_limit_mib.map(|s| s * MIB).unwrap_or(hard / 5);
            return (hard, hard.saturating_sub(spike));
        }
        let total = process::cgroup_memory_limit_bytes()
            .or_else(process::host_memory_bytes)
            .unwrap_or(0);
        let hard = total / 100 * self.limit_percentage;
        let spike = total / 100
            * self
                .spike_limit_percentage
                .unwrap_or(self.limit_percentage / 5);
        (hard, hard.saturating_sub(spike))
    }
}

/// How often the resident set size is read (/proc/self/statm, a few microseconds): at
/// 20 ms a burst between two samples has little time to take it past the hard limit.
const RSS_SAMPLE_MS: u64 = 20;

/// The limiter; shared between the pipeline (as a processor) and its receivers (as an
/// admission check).
#[derive(Debug)]
pub struct MemoryLimiter {
    id: String,
    soft_limit: u64,
    hard_limit: u64,
    /// Non-heap memory: RSS minus heap in use, the smallest value seen since start.
    baseline: AtomicU64,
    refusing: AtomicBool,
    refusals: AtomicU64,
    /// Last RSS sample and when it was taken (ms since an arbitrary start).
    rss: AtomicU64,
    rss_sampled_at: AtomicU64,
    last_trim: AtomicU64,
}

fn now_millis() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
        + 1_000_000
}

/// Returns freed heap pages to the system, at most once a second. True when it ran.
fn trim_allocator(last_trim: &AtomicU64) -> bool {
    let now = now_millis();
    let last = last_trim.load(Ordering::Relaxed);
    if now.saturating_sub(last) < 1000
        || last_trim
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only releases free memory held by glibc's allocator; it
        // takes no pointers and is safe to call from any thread.
        unsafe {
            libc::malloc_trim(0);
        }
        true
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

impl MemoryLimiter {
    pub fn new(id: &str, config: &Config) -> Arc<MemoryLimiter> {
        let (hard_limit, soft_limit) = config.limits_bytes();
        let baseline = match (process::resident_bytes(), process::allocated_bytes()) {
            (Some(rss), Some(heap)) => rss.saturating_sub(heap as u64),
            _ => 0,
        };
        tracing::info!(
            processor = id,
            hard_limit_mib = hard_limit >> 20,
            soft_limit_mib = soft_limit >> 20,
            baseline_mib = baseline >> 20,
            "memory limiter ready"
        );
        Arc::new(MemoryLimiter {
            id: id.to_string(),
            soft_limit,
            hard_limit,
            baseline: AtomicU64::new(baseline),
            refusing: AtomicBool::new(false),
            refusals: AtomicU64::new(0),
            rss: AtomicU64::new(process::resident_bytes().unwrap_or(0)),
            rss_sampled_at: AtomicU64::new(now_millis()),
            last_trim: AtomicU64::new(0),
        })
    }

    /// Current memory usage in bytes as the limiter sees it: the larger of heap in use
    /// plus baseline and the resident set size (sampled at most every [`RSS_SAMPLE_MS`]). RSS
    /// counts what the allocator holds but does not use; when that alone puts usage over
    /// the soft limit, free memory is handed back to the system (`malloc_trim`) so the
    /// limiter does not keep refusing after a burst has been sent.
    pub fn usage_bytes(&self) -> u64 {
        let Some(heap) = process::allocated_bytes() else {
            return process::resident_bytes().unwrap_or(0);
        };
        let heap_usage = heap as u64 + self.baseline.load(Ordering::Relaxed);
        let mut rss = self.sampled_rss();
        if rss >= self.soft_limit && heap_usage < self.soft_limit {
            if trim_allocator(&self.last_trim) {
                rss = process::resident_bytes().unwrap_or(rss);
                self.rss.store(rss, Ordering::Relaxed);
            }
        }
        heap_usage.max(rss)
    }

    fn sampled_rss(&self) -> u64 {
        let now = now_millis();
        let last = self.rss_sampled_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= RSS_SAMPLE_MS
            && self
                .rss_sampled_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            if let Some(rss) = process::resident_bytes() {
                self.rss.store(rss, Ordering::Relaxed);
                if let Some(heap) = process::allocated_bytes() {
                    self.baseline
                        .fetch_min(rss.saturating_sub(heap as u64), Ordering::Relaxed);
                }
            }
        }
        self.rss.load(Ordering::Relaxed)
    }

    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }

    fn check(&self) -> Result<(), Refusal> {
        let usage = self.usage_bytes();
        let over = usage >= self.soft_limit;
        let was = self.refusing.swap(over, Ordering::Relaxed);
        if over != was {
            if over {
                tracing::warn!(processor = %self.id, usage_mib = usage >> 20, soft_limit_mib = self.soft_limit >> 20, hard_limit_mib = self.hard_limit >> 20, "memory usage above the soft limit: refusing data (retryable) until it drops");
            } else {
                tracing::info!(processor = %self.id, usage_mib = usage >> 20, "memory usage back below the soft limit: accepting data");
            }
        }
        if over {
            self.refusals.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::overloaded(format!(
                "data refused due to high memory usage ({} MiB used, soft limit {} MiB)",
                usage >> 20,
                self.soft_limit >> 20
            )));
        }
        Ok(())
    }
}

impl Admission for MemoryLimiter {
    fn admit(&self) -> Result<(), Refusal> {
        self.check()
    }
}

/// The processor face of a shared limiter.
pub struct MemoryLimiterProcessor(pub Arc<MemoryLimiter>);

impl Processor for MemoryLimiterProcessor {
    fn process(&mut self, batch: Batch) -> Result<Batch, Refusal> {
        self.0.check()?;
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(Config::default().validate().len() >= 2);
        let ok = Config {
            check_interval: GoDuration::from_secs(1),
            limit_mib: 100,
            ..Config::default()
        };
        assert!(ok.validate().is_empty());
        let bad_spike = Config {
            spike_limit_mib: Some(100),
            ..ok.clone()
        };
        assert!(bad_spike.validate()[0].contains("spike_limit_mib"));
    }

    #[test]
    fn limits_default_spike_is_a_fifth() {
        let config = Config {
            check_interval: GoDuration::from_secs(1),
            limit_mib: 100,
            ..Config::default()
        };
        assert_eq!(config.limits_bytes(), (100 << 20, 80 << 20));
        let pct = Config {
            check_interval: GoDuration::from_secs(1),
            limit_percentage: 50,
            ..Config::default()
        };
        let (hard, soft) = pct.limits_bytes();
        assert!(hard > 0 && soft < hard);
    }

    #[test]
    fn refuses_above_the_soft_limit_and_recovers() {
        // Unit tests run without the counting allocator, so usage is RSS (several MiB).
        let tiny = MemoryLimiter::new(
            "memory_limiter",
            &Config {
                check_interval: GoDuration::from_secs(1),
                limit_mib: 1,
                ..Config::default()
            },
        );
        let refusal = tiny.admit().unwrap_err();
        assert!(refusal.is_retryable());
        assert!(refusal.reason().contains("high memory usage"));
        assert_eq!(tiny.refusals(), 1);
        let roomy = MemoryLimiter::new(
            "memory_limiter",
            &Config {
                check_interval: GoDuration::from_secs(1),
                limit_mib: 100_000,
                ..Config::default()
            },
        );
        assert!(roomy.admit().is_ok());
        let mut processor = MemoryLimiterProcessor(roomy);
        assert!(
            processor
                .process(Batch::empty(oxcol_core::Signal::Logs))
                .is_ok()
        );
    }
}
