//! `network` scraper: per interface counters from `/proc/net/dev`, TCP connections by
//! state from `/proc/net/tcp` and `/proc/net/tcp6`, conntrack from
//! `/proc/sys/net/netfilter/nf_conntrack_{count,max}`.

use serde::Deserialize;

use super::emit::{Kind, Out};
use super::filter::{DeviceFilter, MatchConfig};
use super::{Enabled, Files, MetricInfo, Metrics, done};
use crate::cgroup::parse::{parse_u64, trim};
use crate::smaps::parse::for_each_line;

pub const METRICS: &[MetricInfo] = &[
    done("system.network.packets", true),
    done("system.network.dropped", true),
    done("system.network.errors", true),
    done("system.network.io", true),
    done("system.network.connections", true),
    done("system.network.conntrack.count", false),
    done("system.network.conntrack.max", false),
];

/// `include`/`exclude`: `{interfaces: [...], match_type: strict|regexp}`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InterfaceMatch {
    pub interfaces: Vec<String>,
    pub match_type: String,
}

impl InterfaceMatch {
    pub fn as_match(&self) -> MatchConfig {
        MatchConfig {
            devices: self.interfaces.clone(),
            match_type: self.match_type.clone(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub metrics: Metrics,
    pub include: Option<InterfaceMatch>,
    pub exclude: Option<InterfaceMatch>,
}

/// One interface's line of `/proc/net/dev`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Interface<'a> {
    pub name: &'a str,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Calls `each` for every interface line (`  eth0: 1 2 3 ...`, 16 numbers).
pub fn for_each_interface<'a>(data: &'a [u8], mut each: impl FnMut(&Interface<'a>)) {
    for_each_line(data, |line, _| {
        let Some(colon) = memchr::memchr(b':', line) else {
            return;
        };
        let Ok(name) = std::str::from_utf8(trim(&line[..colon])) else {
            return;
        };
        let mut values = [0u64; 16];
        let mut words = line[colon + 1..]
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty());
        for slot in &mut values {
            match words.next().and_then(parse_u64) {
                Some(v) => *slot = v,
                None => return,
            }
        }
        each(&Interface {
            name,
            rx_bytes: values[0],
            rx_packets: values[1],
            rx_errors: values[2],
            rx_dropped: values[3],
            tx_bytes: values[8],
            tx_packets: values[9],
            tx_errors: values[10],
            tx_dropped: values[11],
        });
    });
}

/// The states the Collector always reports (zero when absent), as it spells them.
const ALWAYS: [&str; 12] = [
    "CLOSE_WAIT",
    "CLOSE",
    "CLOSING",
    "DELETE",
    "ESTABLISHED",
    "FIN_WAIT_1",
    "FIN_WAIT_2",
    "LAST_ACK",
    "LISTEN",
    "SYN_SENT",
    "SYN_RECV",
    "TIME_WAIT",
];

/// The kernel's TCP state numbers (the `st` column, hex) as gopsutil names them on Linux.
fn tcp_state_name(state: u64) -> Option<&'static str> {
    Some(match state {
        0x01 => "ESTABLISHED",
        0x02 => "SYN_SENT",
        0x03 => "SYN_RECV",
        0x04 => "FIN_WAIT1",
        0x05 => "FIN_WAIT2",
        0x06 => "TIME_WAIT",
        0x07 => "CLOSE",
        0x08 => "CLOSE_WAIT",
        0x09 => "LAST_ACK",
        0x0A => "LISTEN",
        0x0B => "CLOSING",
        _ => return None,
    })
}

/// Adds the connections of a `/proc/net/tcp{,6}` file to `counts` (indexed by state).
pub fn count_tcp_states(data: &[u8], counts: &mut [u64; 12]) {
    for_each_line(data, |line, _| {
        let mut words = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty());
        // sl local_address rem_address st
        let Some(state) = words.nth(3) else { return };
        let Ok(text) = std::str::from_utf8(state) else {
            return;
        };
        if let Ok(n) = u64::from_str_radix(text, 16)
            && (1..=11).contains(&n)
        {
            counts[n as usize] += 1;
        }
    });
}

pub struct Scraper {
    enabled: Enabled,
    filter: DeviceFilter,
}

impl Scraper {
    pub fn new(config: &Config) -> Result<Scraper, String> {
        Ok(Scraper {
            enabled: Enabled::resolve(METRICS, &config.metrics),
            filter: DeviceFilter::new(
                &config.include.as_ref().map(InterfaceMatch::as_match),
                &config.exclude.as_ref().map(InterfaceMatch::as_match),
            )
            .map_err(|e| format!("scrapers.network: {e}"))?,
        })
    }

    pub fn scrape(&mut self, files: &mut Files, out: &mut Out) -> Result<(), String> {
        let per_interface = [
            "system.network.packets",
            "system.network.dropped",
            "system.network.errors",
            "system.network.io",
        ];
        if per_interface.iter().any(|m| self.enabled.on(m)) {
            let data = files.read("net/dev")?;
            let mut interfaces = Vec::new();
            for_each_interface(data, |i| {
                if self.filter.passes(i.name) {
                    interfaces.push(*i);
                }
            });
            type TransmitReceive = fn(&Interface) -> (u64, u64);
            let metrics: [(&'static str, &'static str, TransmitReceive); 4] = [
                ("system.network.packets", "{packets}", |i| {
                    (i.tx_packets, i.rx_packets)
                }),
                ("system.network.dropped", "{packets}", |i| {
                    (i.tx_dropped, i.rx_dropped)
                }),
                ("system.network.errors", "{errors}", |i| {
                    (i.tx_errors, i.rx_errors)
                }),
                ("system.network.io", "By", |i| (i.tx_bytes, i.rx_bytes)),
            ];
            for (name, unit, values) in metrics {
                if !self.enabled.on(name) {
                    continue;
                }
                for interface in &interfaces {
                    let (transmit, receive) = values(interface);
                    out.int(
                        Kind::Counter,
                        name,
                        unit,
                        transmit,
                        &[("device", interface.name), ("direction", "transmit")],
                    );
                    out.int(
                        Kind::Counter,
                        name,
                        unit,
                        receive,
                        &[("device", interface.name), ("direction", "receive")],
                    );
                }
            }
        }
        if self.enabled.on("system.network.connections") {
            let mut counts = [0u64; 12];
            count_tcp_states(files.read("net/tcp")?, &mut counts);
            // A kernel without IPv6 has no tcp6.
            if let Ok(data) = files.read("net/tcp6") {
                count_tcp_states(data, &mut counts);
            }
            let mut states: Vec<(&str, u64)> = ALWAYS.iter().map(|s| (*s, 0)).collect();
            for (n, count) in counts.iter().enumerate() {
                let Some(name) = tcp_state_name(n as u64) else {
                    continue;
                };
                match states.iter_mut().find(|(s, _)| *s == name) {
                    Some(entry) => entry.1 += count,
                    // gopsutil's FIN_WAIT1/FIN_WAIT2: only when a connection is in them.
                    None if *count > 0 => states.push((name, *count)),
                    None => {}
                }
            }
            states.sort_unstable();
            for (state, count) in states {
                out.int(
                    Kind::UpDown,
                    "system.network.connections",
                    "{connections}",
                    count,
                    &[("protocol", "tcp"), ("state", state)],
                );
            }
        }
        for (name, file) in [
            (
                "system.network.conntrack.count",
                "sys/net/netfilter/nf_conntrack_count",
            ),
            (
                "system.network.conntrack.max",
                "sys/net/netfilter/nf_conntrack_max",
            ),
        ] {
            if self.enabled.on(name) {
                let data = files.read(file)?;
                let value =
                    parse_u64(trim(data)).ok_or_else(|| format!("{file} is not a number"))?;
                out.int(Kind::UpDown, name, "{entries}", value, &[]);
            }
        }
        Ok(())
    }
}
