//! `system` scraper: `system.uptime`, the whole seconds since `btime` of `/proc/stat`
//! (gopsutil's `host.Uptime`).

use serde::Deserialize;

use super::emit::{Kind, Out};
use super::{Enabled, Files, MetricInfo, Metrics, done};

pub const METRICS: &[MetricInfo] = &[done("system.uptime", true)];

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub metrics: Metrics,
}

pub struct Scraper {
    enabled: Enabled,
}

impl Scraper {
    pub fn new(config: &Config) -> Scraper {
        Scraper {
            enabled: Enabled::resolve(METRICS, &config.metrics),
        }
    }

    pub fn scrape(&mut self, files: &mut Files, out: &mut Out) -> Result<(), String> {
        if !self.enabled.on("system.uptime") {
            return Ok(());
        }
        let boot = super::boot_time_nanos(files).ok_or("/proc/stat has no btime line")?;
        let uptime = out.now().saturating_sub(boot) / 1_000_000_000;
        out.double(Kind::Gauge, "system.uptime", "s", uptime as f64, &[]);
        Ok(())
    }
}
