//! `filesystem` scraper: the mounts of `<root_path>/proc/1/mountinfo` (falling back to
//! `/proc/self/mountinfo`), sized with `statvfs(2)` on `<root_path><mountpoint>`. Without
//! `include_virtual_filesystems`, only mounts whose type `/proc/filesystems` lists without
//! `nodev` (physical file systems) and no bind mounts, as gopsutil v4 selects them.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::emit::{Kind, Out};
use super::filter::{DeviceFilter, MatchConfig};
use super::{Enabled, Files, MetricInfo, Metrics, done};
use crate::smaps::parse::for_each_line;

pub const METRICS: &[MetricInfo] = &[
    done("system.filesystem.usage", true),
    done("system.filesystem.inodes.usage", true),
    done("system.filesystem.utilization", false),
];

/// `include_fs_types`/`exclude_fs_types`: `{fs_types: [...], match_type: strict|regexp}`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FsTypeMatch {
    pub fs_types: Vec<String>,
    pub match_type: String,
}

/// `include_mount_points`/`exclude_mount_points`: `{mount_points: [...], match_type}`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MountPointMatch {
    pub mount_points: Vec<String>,
    pub match_type: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub metrics: Metrics,
    pub include_devices: Option<MatchConfig>,
    pub exclude_devices: Option<MatchConfig>,
    pub include_fs_types: Option<FsTypeMatch>,
    pub exclude_fs_types: Option<FsTypeMatch>,
    pub include_mount_points: Option<MountPointMatch>,
    pub exclude_mount_points: Option<MountPointMatch>,
    /// Also report virtual file systems (tmpfs, proc, cgroup, ...). Default false.
    pub include_virtual_filesystems: bool,
}

fn as_match<T>(
    m: &Option<T>,
    parts: impl Fn(&T) -> (&Vec<String>, &String),
) -> Option<MatchConfig> {
    m.as_ref().map(|m| {
        let (values, match_type) = parts(m);
        MatchConfig {
            devices: values.clone(),
            match_type: match_type.clone(),
        }
    })
}

impl Config {
    /// The three filter pairs as device-style match configs: (key, include, exclude).
    pub fn filters(&self) -> [(&'static str, Option<MatchConfig>, Option<MatchConfig>); 3] {
        [
            (
                "devices",
                self.include_devices.clone(),
                self.exclude_devices.clone(),
            ),
            (
                "fs_types",
                as_match(&self.include_fs_types, |m| (&m.fs_types, &m.match_type)),
                as_match(&self.exclude_fs_types, |m| (&m.fs_types, &m.match_type)),
            ),
            (
                "mount_points",
                as_match(&self.include_mount_points, |m| {
                    (&m.mount_points, &m.match_type)
                }),
                as_match(&self.exclude_mount_points, |m| {
                    (&m.mount_points, &m.match_type)
                }),
            ),
        ]
    }
}

/// One line of mountinfo.
#[derive(Clone, Debug, PartialEq)]
pub struct Mount {
    pub device: String,
    pub mountpoint: String,
    pub fs_type: String,
    /// `rw`, `ro` or `unknown`, from the mount and superblock options.
    pub mode: &'static str,
    /// `maj:min` of the mount (resolves `/dev/root`).
    pub major_minor: String,
}

/// Undoes mountinfo's octal escapes (`\040` is a space).
fn unescape(field: &[u8]) -> String {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && i + 3 < field.len()
            && field[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (field[i + 1] - b'0') as u32 * 64
                + (field[i + 2] - b'0') as u32 * 8
                + (field[i + 3] - b'0') as u32;
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo (`id parent maj:min root mountpoint options [optional...] - type
/// source super`) as gopsutil v4 does: the device is the source when it is a path or the
/// mount's root is `/`, else the root; a later mount of an already seen `maj:min` takes
/// the first one's device; a mount of a sub-directory of a path-backed file system is a
/// bind mount (left out unless `all`); `ro` on the mount or the superblock makes it `ro`.
/// Malformed lines are skipped. `physical`: the types kept unless `all`.
pub fn parse_mountinfo(data: &[u8], all: bool, physical: &[String]) -> Vec<Mount> {
    let mut mounts = Vec::new();
    let mut seen_ids: Vec<(Vec<u8>, String)> = Vec::new();
    for_each_line(data, |line, _| {
        let words: Vec<&[u8]> = line
            .split(|b| *b == b' ')
            .filter(|w| !w.is_empty())
            .collect();
        let Some(dash) = words.iter().position(|w| *w == b"-") else {
            return;
        };
        if dash < 5 || words.len() < dash + 3 {
            return;
        }
        let (id, root, mountpoint) = (words[2], words[3], words[4]);
        let mount_options: Vec<&[u8]> = if dash > 5 {
            words[5].split(|b| *b == b',').collect()
        } else {
            Vec::new()
        };
        let fs_type = String::from_utf8_lossy(words[dash + 1]).into_owned();
        let source = words[dash + 2];
        let super_options: Vec<&[u8]> = words
            .get(dash + 3)
            .map(|w| w.split(|b| *b == b',').collect())
            .unwrap_or_default();
        if !all && !physical.contains(&fs_type) {
            return;
        }
        let own = if source.starts_with(b"/") || root == b"/" {
            source
        } else {
            root
        };
        let subvolume = super_options
            .iter()
            .find_map(|o| o.strip_prefix(b"subvol="))
            .is_some_and(|v| v == root);
        let bind = source.starts_with(b"/") && root != b"/" && !subvolume;
        let device = match seen_ids.iter().find(|(seen, _)| seen.as_slice() == id) {
            Some((_, first)) => first.clone(),
            None => {
                let d = String::from_utf8_lossy(own).into_owned();
                seen_ids.push((id.to_vec(), d.clone()));
                d
            }
        };
        if !all && bind {
            return;
        }
        let has = |options: &[&[u8]], o: &[u8]| options.contains(&o);
        let mode = if has(&mount_options, b"ro") || has(&super_options, b"ro") {
            "ro"
        } else if has(&mount_options, b"rw") {
            "rw"
        } else {
            "unknown"
        };
        mounts.push(Mount {
            device,
            mountpoint: unescape(mountpoint),
            fs_type,
            mode,
            major_minor: String::from_utf8_lossy(id).into_owned(),
        });
    });
    mounts
}

/// The physical file system types of `/proc/filesystems` (lines without `nodev`).
pub fn physical_fs_types(data: &[u8]) -> Vec<String> {
    let mut types = Vec::new();
    for_each_line(data, |line, _| {
        let text = String::from_utf8_lossy(line);
        let mut words = text.split_whitespace();
        match (words.next(), words.next()) {
            (Some("nodev"), Some("zfs")) => types.push("zfs".to_string()),
            (Some(t), None) => types.push(t.to_string()),
            _ => {}
        }
    });
    types
}

/// `statvfs(2)` of a path, as gopsutil's `disk.Usage` computes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    pub total: u64,
    pub free: u64,
    pub used: u64,
    pub inodes_free: u64,
    pub inodes_used: u64,
}

pub fn statvfs(path: &Path) -> Option<Usage> {
    let path = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `path` is NUL-terminated; statvfs writes only into `stat`.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let frsize = stat.f_frsize as u64;
    let blocks = stat.f_blocks as u64;
    let bfree = stat.f_bfree as u64;
    let files = stat.f_files as u64;
    let ffree = stat.f_ffree as u64;
    Some(Usage {
        total: blocks.saturating_mul(frsize),
        free: (stat.f_bavail as u64).saturating_mul(frsize),
        used: blocks.saturating_sub(bfree).saturating_mul(frsize),
        inodes_free: ffree,
        inodes_used: files.saturating_sub(ffree),
    })
}

pub struct Scraper {
    enabled: Enabled,
    devices: DeviceFilter,
    fs_types: DeviceFilter,
    mount_points: DeviceFilter,
    include_virtual: bool,
    root: PathBuf,
}

impl Scraper {
    pub fn new(config: &Config, root: &Path) -> Result<Scraper, String> {
        let [(_, di, de), (_, ti, te), (_, mi, me)] = config.filters();
        let filter = |i, e, key: &str| {
            DeviceFilter::new(&i, &e).map_err(|err| format!("scrapers.filesystem {key}: {err}"))
        };
        Ok(Scraper {
            enabled: Enabled::resolve(METRICS, &config.metrics),
            devices: filter(di, de, "devices")?,
            fs_types: filter(ti, te, "fs_types")?,
            mount_points: filter(mi, me, "mount_points")?,
            include_virtual: config.include_virtual_filesystems,
            root: root.to_path_buf(),
        })
    }

    /// The mounts to report, before statvfs.
    pub fn mounts(&self, files: &mut Files) -> Result<Vec<Mount>, String> {
        let physical = if self.include_virtual {
            Vec::new()
        } else {
            physical_fs_types(files.read("filesystems")?)
        };
        let mut mounts = match files.read("1/mountinfo") {
            Ok(data) => parse_mountinfo(data, self.include_virtual, &physical),
            Err(_) => parse_mountinfo(
                files.read("self/mountinfo")?,
                self.include_virtual,
                &physical,
            ),
        };
        for m in &mut mounts {
            // gopsutil: /dev/root is named after its block device; /dev/mapper links resolved.
            if m.device == "/dev/root"
                && let Ok(target) =
                    std::fs::read_link(self.root.join("sys/dev/block").join(&m.major_minor))
                && let Some(base) = target.file_name()
            {
                m.device = format!("/dev/{}", base.to_string_lossy());
            } else if let Some(rest) = m.device.strip_prefix("/dev/mapper/")
                && let Ok(real) = std::fs::canonicalize(self.root.join("dev/mapper").join(rest))
            {
                m.device = real.to_string_lossy().into_owned();
            }
        }
        let mut seen: Vec<(String, String)> = Vec::new();
        Ok(mounts
            .into_iter()
            .filter(|m| {
                // The same device on the same mount point (mounted over twice) once.
                let key = (m.device.clone(), m.mountpoint.clone());
                let new = !seen.contains(&key);
                seen.push(key);
                new
            })
            .filter(|m| {
                self.devices.passes(&m.device)
                    && self.fs_types.passes(&m.fs_type)
                    && self.mount_points.passes(&m.mountpoint)
            })
            .collect())
    }

    pub fn scrape(&mut self, files: &mut Files, out: &mut Out) -> Result<(), String> {
        if !self.enabled.any() {
            return Ok(());
        }
        let mut sized = Vec::new();
        let mut errors = Vec::new();
        for mount in self.mounts(files)? {
            let path = self.root.join(mount.mountpoint.trim_start_matches('/'));
            match statvfs(&path) {
                Some(usage) => sized.push((mount, usage)),
                // Reported, as in the Collector; the other mounts are still delivered.
                None => errors.push(format!(
                    "statvfs {}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                )),
            }
        }
        for (m, u) in &sized {
            let attrs = |state| {
                [
                    ("device", m.device.as_str()),
                    ("mode", m.mode),
                    ("mountpoint", &m.mountpoint),
                    ("type", &m.fs_type),
                    ("state", state),
                ]
            };
            if self.enabled.on("system.filesystem.usage") {
                let reserved = u.total.saturating_sub(u.used).saturating_sub(u.free);
                out.int(
                    Kind::UpDown,
                    "system.filesystem.usage",
                    "By",
                    u.used,
                    &attrs("used"),
                );
                out.int(
                    Kind::UpDown,
                    "system.filesystem.usage",
                    "By",
                    u.free,
                    &attrs("free"),
                );
                out.int(
                    Kind::UpDown,
                    "system.filesystem.usage",
                    "By",
                    reserved,
                    &attrs("reserved"),
                );
            }
        }
        if self.enabled.on("system.filesystem.inodes.usage") {
            for (m, u) in &sized {
                let attrs = |state| {
                    [
                        ("device", m.device.as_str()),
                        ("mode", m.mode),
                        ("mountpoint", &m.mountpoint),
                        ("type", &m.fs_type),
                        ("state", state),
                    ]
                };
                out.int(
                    Kind::UpDown,
                    "system.filesystem.inodes.usage",
                    "{inodes}",
                    u.inodes_used,
                    &attrs("used"),
                );
                out.int(
                    Kind::UpDown,
                    "system.filesystem.inodes.usage",
                    "{inodes}",
                    u.inodes_free,
                    &attrs("free"),
                );
            }
        }
        if self.enabled.on("system.filesystem.utilization") {
            for (m, u) in &sized {
                let denominator = u.used.saturating_add(u.free);
                let ratio = if denominator == 0 {
                    0.0
                } else {
                    u.used as f64 / denominator as f64
                };
                let attrs = [
                    ("device", m.device.as_str()),
                    ("mode", m.mode),
                    ("mountpoint", &m.mountpoint),
                    ("type", &m.fs_type),
                ];
                out.double(
                    Kind::Gauge,
                    "system.filesystem.utilization",
                    "1",
                    ratio,
                    &attrs,
                );
            }
        }
        Ok(())
    }
}
