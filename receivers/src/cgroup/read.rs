//! Reading one cgroup's files into metrics, for v2 and for v1 (mapped to the v2 names
//! where the meaning is the same; the map is in docs/components/cgroup.md).
//!
//! Every file is read whole into one reused buffer (one `read` call per file for these
//! small files, so each value is consistent within its file). The cgroup directory is
//! opened once (`O_PATH`) and its files with `openat` relative to it: the kernel walks
//! one path element per file instead of the whole cgroup path, and no path is built.
//! A missing file means the controller is absent here and is skipped silently; a
//! vanished cgroup, a permission error, an unsupported file (PSI disabled: EOPNOTSUPP)
//! or unparsable content is skipped and counted.

use std::ffi::OsString;
use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use oxcol_core::telemetry::{Counter, Registry};

use super::emit::ResourceBuilder;
use super::locate::{Target, Version};
use super::parse::{self, Limit, Psi};

/// `oxcol_cgroup_read_errors{receiver, reason}`.
pub struct ReadErrors {
    pub vanished: Counter,
    pub permission: Counter,
    pub unsupported: Counter,
    pub io: Counter,
    pub parse: Counter,
}

impl ReadErrors {
    pub fn new(registry: &Registry, receiver: &str) -> ReadErrors {
        let counter = |reason| {
            registry.counter(
                "oxcol_cgroup_read_errors",
                "cgroup files skipped: the cgroup vanished, permission denied, unsupported (PSI off), io error, or unparsable content.",
                &[("receiver", receiver), ("reason", reason)],
            )
        };
        ReadErrors {
            vanished: counter("vanished"),
            permission: counter("permission"),
            unsupported: counter("unsupported"),
            io: counter("io"),
            parse: counter("parse"),
        }
    }

    pub fn count(&self, error: &std::io::Error) {
        match error.kind() {
            ErrorKind::NotFound => self.vanished.add(1),
            ErrorKind::PermissionDenied => self.permission.add(1),
            ErrorKind::Unsupported => self.unsupported.add(1),
            _ if error.raw_os_error() == Some(95) => self.unsupported.add(1), // EOPNOTSUPP
            _ => self.io.add(1),
        }
    }
}

/// The cgroup directory disappeared: stop reading this target.
pub struct Gone;

pub struct Reader {
    /// Always initialised (zeros at first), grown by doubling; a read fills `filled`.
    buffer: Vec<u8>,
    filled: usize,
    path: OsString,
    pub errors: ReadErrors,
    /// USER_HZ, for v1 `cpuacct.stat` (read once at construction).
    clock_ticks: u64,
    /// memory.stat field -> metric name and kind, built once per field.
    stat_names: StatNames,
    /// The directory being read (`O_PATH`), and its path; closed by `release`.
    dir: Option<File>,
    dir_path: OsString,
    /// `dir_path` NUL-terminated, for open(2).
    dir_cpath: Vec<u8>,
}

/// Opens `name` (a file name, no `/`) relative to the directory `dir`.
fn open_at(dir: RawFd, name: &str) -> std::io::Result<File> {
    let mut cname = [0u8; 64];
    let bytes = name.as_bytes();
    if bytes.len() >= cname.len() || bytes.contains(&0) {
        return Err(ErrorKind::InvalidInput.into());
    }
    cname[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: `cname` is NUL-terminated (zeros after the name, which has no NUL) and
    // outlives the call; `dir` is an open descriptor owned by the Reader.
    let fd = unsafe { libc::openat(dir, cname.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat and nothing else owns it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

impl Reader {
    pub fn new(errors: ReadErrors) -> Reader {
        Reader {
            buffer: vec![0; 16 * 1024],
            filled: 0,
            path: OsString::with_capacity(512),
            errors,
            clock_ticks: super::emit::clock_ticks_per_second(),
            stat_names: StatNames::default(),
            dir: None,
            dir_path: OsString::with_capacity(512),
            dir_cpath: Vec::with_capacity(512),
        }
    }

    /// The descriptor of `dir`, opened with `O_PATH` unless it is the one already open.
    /// `None` if it cannot be opened: the caller falls back to opening by full path,
    /// which reports the error as before.
    fn open_dir(&mut self, dir: &Path) -> Option<RawFd> {
        if let Some(open) = &self.dir {
            if self.dir_path.as_os_str() == dir.as_os_str() {
                return Some(open.as_raw_fd());
            }
        }
        self.dir = None;
        let bytes = dir.as_os_str().as_bytes();
        if bytes.contains(&0) {
            return None;
        }
        self.dir_cpath.clear();
        self.dir_cpath.extend_from_slice(bytes);
        self.dir_cpath.push(0);
        // SAFETY: `dir_cpath` is NUL-terminated with no NUL inside and outlives the call.
        let fd = unsafe {
            libc::open(
                self.dir_cpath.as_ptr().cast(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` was just returned by open and nothing else owns it.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        self.dir_path.clear();
        self.dir_path.push(dir.as_os_str());
        let raw = file.as_raw_fd();
        self.dir = Some(file);
        Some(raw)
    }

    /// The inode of `dir` (the identity of a cgroup directory), from the descriptor the
    /// reads that follow use.
    pub fn inode(&mut self, dir: &Path) -> std::io::Result<u64> {
        if self.open_dir(dir).is_some() {
            if let Some(open) = &self.dir {
                return open.metadata().map(|m| m.ino());
            }
        }
        std::fs::metadata(dir).map(|m| m.ino())
    }

    /// Closes the directory: a removed cgroup is not kept alive between scrapes.
    pub fn release(&mut self) {
        self.dir = None;
    }

    /// Reads `dir/name` whole. `Ok(None)`: skipped (missing silently, or counted).
    pub fn read(&mut self, dir: &Path, name: &str) -> Result<Option<&[u8]>, Gone> {
        self.filled = 0;
        let file = match self.open_dir(dir) {
            Some(fd) => open_at(fd, name),
            None => {
                self.path.clear();
                self.path.push(dir.as_os_str());
                self.path.push("/");
                self.path.push(name);
                File::open(Path::new(&self.path))
            }
        };
        // Plain reads until EOF: no statx + lseek size hint per file as `read_to_end`
        // makes (cgroupfs reports size 0 anyway).
        let result = file.and_then(|mut file| crate::smaps::read_all(&mut file, &mut self.buffer));
        match result {
            Ok(filled) => {
                self.filled = filled;
                Ok(Some(&self.buffer[..filled]))
            }
            Err(error) if error.kind() == ErrorKind::NotFound => {
                if dir.exists() {
                    Ok(None) // this kernel or this cgroup has no such file
                } else {
                    self.errors.vanished.add(1);
                    Err(Gone)
                }
            }
            // ENODEV: reading a file of a cgroup that was removed while open.
            Err(error) if error.raw_os_error() == Some(19) => {
                self.errors.vanished.add(1);
                Err(Gone)
            }
            Err(error) => {
                self.errors.count(&error);
                Ok(None)
            }
        }
    }
}

const MEMORY_STAT: &str = "cgroup.memory.stat.";

/// memory.stat fields that count events or pages (monotonic sums); the rest are bytes.
fn is_event_counter(field: &[u8]) -> bool {
    const PREFIXES: [&[u8]; 9] = [
        b"pg",
        b"workingset_",
        b"thp_",
        b"numa_",
        b"pswp",
        b"swpin",
        b"swpout",
        b"zswpin",
        b"zswpout",
    ];
    PREFIXES.iter().any(|p| field.starts_with(p)) || field == b"zswpwb"
}

/// memory.stat field -> (`cgroup.memory.stat.<field>`, is a counter), built the first
/// time a field is seen. Fields come in the same order in every cgroup's file, so the
/// entry after the last one found is tried first: a lookup is one comparison.
#[derive(Default)]
struct StatNames {
    entries: Vec<(Box<[u8]>, Box<str>, bool)>,
    next: usize,
}

impl StatNames {
    /// Call before each file.
    fn restart(&mut self) {
        self.next = 0;
    }

    fn lookup(&mut self, field: &[u8]) -> Option<(&str, bool)> {
        let index = match self
            .entries
            .get(self.next)
            .filter(|(f, _, _)| &**f == field)
        {
            Some(_) => self.next,
            None => match self.entries.iter().position(|(f, _, _)| &**f == field) {
                Some(i) => i,
                None => {
                    let name = std::str::from_utf8(field).ok()?;
                    // A bound on what a hostile or broken file can make us keep.
                    if self.entries.len() >= 1024 {
                        return None;
                    }
                    self.entries.push((
                        field.into(),
                        format!("{MEMORY_STAT}{name}").into_boxed_str(),
                        is_event_counter(field),
                    ));
                    self.entries.len() - 1
                }
            },
        };
        self.next = index + 1;
        self.entries
            .get(index)
            .map(|(_, name, counter)| (&**name, *counter))
    }
}

fn emit_stat_field(builder: &mut ResourceBuilder, names: &mut StatNames, field: &[u8], value: u64) {
    let Some((name, counter)) = names.lookup(field) else {
        return;
    };
    if counter {
        builder.counter_int(name, "1", value, &[]);
    } else {
        builder.gauge_int(name, "By", clamp(value), &[]);
    }
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn emit_limit(
    builder: &mut ResourceBuilder,
    metric: &str,
    limit: Option<Limit>,
    errors: &ReadErrors,
) {
    match limit {
        Some(Limit::Value(v)) => builder.gauge_int(metric, "By", clamp(v), &[]),
        Some(Limit::Unlimited) => {}
        None => errors.parse.add(1),
    }
}

fn emit_working_set(
    builder: &mut ResourceBuilder,
    current: Option<u64>,
    inactive_file: Option<u64>,
) {
    if let (Some(current), Some(inactive_file)) = (current, inactive_file) {
        builder.gauge_int(
            "cgroup.memory.working_set",
            "By",
            clamp(current.saturating_sub(inactive_file)),
            &[],
        );
    }
}

/// Reads every file of `target`; what was read before a vanish is kept.
pub fn read_target(reader: &mut Reader, target: &Target, builder: &mut ResourceBuilder) {
    let _ = match target.version {
        Version::V2 => target
            .dirs
            .unified
            .as_deref()
            .map(|dir| read_v2(reader, dir, builder)),
        Version::V1 => Some(read_v1(reader, target, builder)),
    };
}

fn read_v2(reader: &mut Reader, dir: &Path, builder: &mut ResourceBuilder) -> Result<(), Gone> {
    let mut name = String::with_capacity(64);
    let mut current = None;
    if let Some(data) = reader.read(dir, "memory.current")? {
        match parse::parse_u64(parse::trim(data)) {
            Some(v) => {
                current = Some(v);
                builder.gauge_int("cgroup.memory.current", "By", clamp(v), &[]);
            }
            None => reader.errors.parse.add(1),
        }
    }
    for (file, metric) in [
        ("memory.max", "cgroup.memory.max"),
        ("memory.high", "cgroup.memory.high"),
        ("memory.low", "cgroup.memory.low"),
        ("memory.min", "cgroup.memory.min"),
        ("memory.peak", "cgroup.memory.peak"),
        ("memory.swap.current", "cgroup.memory.swap.current"),
        ("memory.swap.high", "cgroup.memory.swap.high"),
        ("memory.swap.max", "cgroup.memory.swap.max"),
        ("memory.swap.peak", "cgroup.memory.swap.peak"),
        ("memory.zswap.current", "cgroup.memory.zswap.current"),
        ("memory.zswap.max", "cgroup.memory.zswap.max"),
    ] {
        if let Some(data) = reader.read(dir, file)? {
            let limit = parse::parse_limit(data);
            emit_limit(builder, metric, limit, &reader.errors);
        }
    }
    let mut inactive_file = None;
    if reader.read(dir, "memory.stat")?.is_some() {
        let Reader {
            buffer,
            filled,
            stat_names,
            ..
        } = &mut *reader;
        stat_names.restart();
        parse::for_each_flat(&buffer[..*filled], |key, value| {
            if key == b"inactive_file" {
                inactive_file = Some(value);
            }
            emit_stat_field(builder, stat_names, key, value);
        });
    }
    emit_working_set(builder, current, inactive_file);
    for (file, metric) in [
        ("memory.events", "cgroup.memory.events"),
        ("memory.events.local", "cgroup.memory.events.local"),
        ("memory.swap.events", "cgroup.memory.swap.events"),
    ] {
        if let Some(data) = reader.read(dir, file)? {
            builder.reserve_points(8);
            parse::for_each_flat(data, |key, value| {
                if let Ok(event) = std::str::from_utf8(key) {
                    builder.counter_int(metric, "1", value, &[("event", event)]);
                }
            });
        }
    }
    if let Some(data) = reader.read(dir, "cpu.stat")? {
        parse::for_each_flat(data, |key, value| {
            let Ok(field) = std::str::from_utf8(key) else {
                return;
            };
            name.clear();
            name.push_str("cgroup.cpu.stat.");
            match field.strip_suffix("_usec") {
                Some(stem) => {
                    name.push_str(stem);
                    builder.counter_f64(&name, "s", value as f64 / 1e6, &[]);
                }
                None => {
                    name.push_str(field);
                    builder.counter_int(&name, "1", value, &[]);
                }
            }
        });
    }
    if let Some(data) = reader.read(dir, "cpu.max")? {
        match parse::parse_cpu_max(data) {
            Some((Limit::Value(quota), period)) if period > 0 => {
                builder.gauge_f64("cgroup.cpu.max", "{cpu}", quota as f64 / period as f64, &[])
            }
            Some(_) => {}
            None => reader.errors.parse.add(1),
        }
    }
    if let Some(data) = reader.read(dir, "io.stat")? {
        let devices = data.iter().filter(|&&b| b == b'\n').count();
        for (key, unit) in [
            ("rbytes", "By"),
            ("wbytes", "By"),
            ("dbytes", "By"),
            ("rios", "1"),
            ("wios", "1"),
            ("dios", "1"),
        ] {
            name.clear();
            name.push_str("cgroup.io.stat.");
            name.push_str(key);
            builder.reserve_points(devices);
            parse::for_each_nested(data, |device, subkey, value| {
                if subkey == key.as_bytes() {
                    if let Ok(device) = std::str::from_utf8(device) {
                        builder.counter_int(&name, unit, value, &[("device", device)]);
                    }
                }
            });
        }
    }
    read_pids(reader, dir, builder)?;
    read_pressure(reader, dir, builder)
}

fn read_pids(reader: &mut Reader, dir: &Path, builder: &mut ResourceBuilder) -> Result<(), Gone> {
    if let Some(data) = reader.read(dir, "pids.current")? {
        match parse::parse_u64(parse::trim(data)) {
            Some(v) => builder.gauge_int("cgroup.pids.current", "1", clamp(v), &[]),
            None => reader.errors.parse.add(1),
        }
    }
    if let Some(data) = reader.read(dir, "pids.max")? {
        match parse::parse_limit(data) {
            Some(Limit::Value(v)) => builder.gauge_int("cgroup.pids.max", "1", clamp(v), &[]),
            Some(Limit::Unlimited) => {}
            None => reader.errors.parse.add(1),
        }
    }
    if let Some(data) = reader.read(dir, "pids.peak")? {
        match parse::parse_u64(parse::trim(data)) {
            Some(v) => builder.gauge_int("cgroup.pids.peak", "1", clamp(v), &[]),
            None => reader.errors.parse.add(1),
        }
    }
    if let Some(data) = reader.read(dir, "pids.events")? {
        builder.reserve_points(2);
        parse::for_each_flat(data, |key, value| {
            if let Ok(event) = std::str::from_utf8(key) {
                builder.counter_int("cgroup.pids.events", "1", value, &[("event", event)]);
            }
        });
    }
    Ok(())
}

fn read_pressure(
    reader: &mut Reader,
    dir: &Path,
    builder: &mut ResourceBuilder,
) -> Result<(), Gone> {
    let mut found: [(&str, Option<Psi>); 4] =
        [("cpu", None), ("memory", None), ("io", None), ("irq", None)];
    for (resource, slot) in &mut found {
        let file = match *resource {
            "cpu" => "cpu.pressure",
            "memory" => "memory.pressure",
            "io" => "io.pressure",
            _ => "irq.pressure",
        };
        if let Some(data) = reader.read(dir, file)? {
            *slot = Some(parse::parse_psi(data));
        }
    }
    let lines = |psi: &Psi| [("some", psi.some), ("full", psi.full)];
    let count: usize = found
        .iter()
        .filter_map(|(_, psi)| psi.as_ref())
        .map(|psi| usize::from(psi.some.is_some()) + usize::from(psi.full.is_some()))
        .sum();
    builder.reserve_points(count);
    for (resource, psi) in &found {
        let Some(psi) = psi else { continue };
        for (kind, line) in lines(psi) {
            if let Some(line) = line {
                builder.counter_f64(
                    "cgroup.pressure.stall_time",
                    "s",
                    line.total_usec as f64 / 1e6,
                    &[("resource", resource), ("kind", kind)],
                );
            }
        }
    }
    builder.reserve_points(count * 3);
    for (resource, psi) in &found {
        let Some(psi) = psi else { continue };
        for (kind, line) in lines(psi) {
            if let Some(line) = line {
                for (window, value) in [
                    ("10s", line.avg10),
                    ("60s", line.avg60),
                    ("300s", line.avg300),
                ] {
                    builder.gauge_f64(
                        "cgroup.pressure.avg",
                        "1",
                        value / 100.0,
                        &[("resource", resource), ("kind", kind), ("window", window)],
                    );
                }
            }
        }
    }
    Ok(())
}

/// The v2 name of a hierarchical (`total_`) v1 memory.stat key; `None` for local and
/// `hierarchical_*` keys. `total_swap` is handled apart (it is `memory.swap.current`).
fn v1_stat_name(key: &str) -> Option<&str> {
    let key = key.strip_prefix("total_")?;
    Some(match key {
        "cache" => "file",
        "rss" => "anon",
        "rss_huge" => "anon_thp",
        "mapped_file" => "file_mapped",
        "dirty" => "file_dirty",
        "writeback" => "file_writeback",
        other => other,
    })
}

fn read_v1(
    reader: &mut Reader,
    target: &Target,
    builder: &mut ResourceBuilder,
) -> Result<(), Gone> {
    let mut name = String::with_capacity(64);
    if let Some(dir) = target.dirs.memory.as_deref() {
        let mut current = None;
        if let Some(data) = reader.read(dir, "memory.usage_in_bytes")? {
            match parse::parse_u64(parse::trim(data)) {
                Some(v) => {
                    current = Some(v);
                    builder.gauge_int("cgroup.memory.current", "By", clamp(v), &[]);
                }
                None => reader.errors.parse.add(1),
            }
        }
        for (file, metric) in [
            ("memory.limit_in_bytes", "cgroup.memory.max"),
            ("memory.max_usage_in_bytes", "cgroup.memory.peak"),
        ] {
            if let Some(data) = reader.read(dir, file)? {
                let limit = parse::parse_v1_limit(data);
                emit_limit(builder, metric, limit, &reader.errors);
            }
        }
        let mut inactive_file = None;
        let mut swap = None;
        if reader.read(dir, "memory.stat")?.is_some() {
            let Reader {
                buffer,
                filled,
                stat_names,
                ..
            } = &mut *reader;
            stat_names.restart();
            parse::for_each_flat(&buffer[..*filled], |key, value| {
                let Ok(key) = std::str::from_utf8(key) else {
                    return;
                };
                if key == "total_swap" {
                    swap = Some(value);
                    return;
                }
                let Some(field) = v1_stat_name(key) else {
                    return;
                };
                if field == "inactive_file" {
                    inactive_file = Some(value);
                }
                emit_stat_field(builder, stat_names, field.as_bytes(), value);
            });
        }
        if let Some(swap) = swap {
            builder.gauge_int("cgroup.memory.swap.current", "By", clamp(swap), &[]);
        }
        emit_working_set(builder, current, inactive_file);
        // v1 has no memory.events; failcnt counts hits of the limit (v2 `max`), and
        // oom_control's oom_kill is v2's `oom_kill`.
        if let Some(data) = reader.read(dir, "memory.failcnt")? {
            match parse::parse_u64(parse::trim(data)) {
                Some(v) => builder.counter_int("cgroup.memory.events", "1", v, &[("event", "max")]),
                None => reader.errors.parse.add(1),
            }
        }
        if let Some(data) = reader.read(dir, "memory.oom_control")? {
            parse::for_each_flat(data, |key, value| {
                if key == b"oom_kill" {
                    builder.counter_int(
                        "cgroup.memory.events",
                        "1",
                        value,
                        &[("event", "oom_kill")],
                    );
                }
            });
        }
    }
    if let Some(dir) = target.dirs.cpuacct.as_deref() {
        let mut user_and_system = 0;
        for (file, metric) in [
            ("cpuacct.usage", "cgroup.cpu.stat.usage"),
            ("cpuacct.usage_user", "cgroup.cpu.stat.user"),
            ("cpuacct.usage_sys", "cgroup.cpu.stat.system"),
        ] {
            if let Some(data) = reader.read(dir, file)? {
                match parse::parse_u64(parse::trim(data)) {
                    Some(ns) => {
                        builder.counter_f64(metric, "s", ns as f64 / 1e9, &[]);
                        user_and_system += usize::from(file != "cpuacct.usage");
                    }
                    None => reader.errors.parse.add(1),
                }
            }
        }
        // Kernels before 4.7 have no cpuacct.usage_user/usage_sys: cpuacct.stat has
        // user/system in USER_HZ ticks (coarser, but the same meaning).
        if user_and_system == 0 {
            let ticks = reader.clock_ticks as f64;
            if let Some(data) = reader.read(dir, "cpuacct.stat")? {
                parse::for_each_flat(data, |key, value| match key {
                    b"user" => {
                        builder.counter_f64("cgroup.cpu.stat.user", "s", value as f64 / ticks, &[])
                    }
                    b"system" => builder.counter_f64(
                        "cgroup.cpu.stat.system",
                        "s",
                        value as f64 / ticks,
                        &[],
                    ),
                    _ => {}
                });
            }
        }
    }
    if let Some(dir) = target.dirs.cpu.as_deref() {
        if let Some(data) = reader.read(dir, "cpu.stat")? {
            parse::for_each_flat(data, |key, value| {
                let Ok(field) = std::str::from_utf8(key) else {
                    return;
                };
                name.clear();
                name.push_str("cgroup.cpu.stat.");
                match field.strip_suffix("_time") {
                    // v1 throttled_time / burst_time are nanoseconds (v2 uses µs).
                    Some(stem) => {
                        name.push_str(stem);
                        builder.counter_f64(&name, "s", value as f64 / 1e9, &[]);
                    }
                    None => {
                        name.push_str(field);
                        builder.counter_int(&name, "1", value, &[]);
                    }
                }
            });
        }
        let quota = reader
            .read(dir, "cpu.cfs_quota_us")?
            .and_then(|d| parse::parse_i64(parse::trim(d)));
        let period = reader
            .read(dir, "cpu.cfs_period_us")?
            .and_then(|d| parse::parse_u64(parse::trim(d)));
        if let (Some(quota), Some(period)) = (quota, period) {
            if quota > 0 && period > 0 {
                builder.gauge_f64("cgroup.cpu.max", "{cpu}", quota as f64 / period as f64, &[]);
            }
        }
    }
    if let Some(dir) = target.dirs.blkio.as_deref() {
        for (files, keys) in [
            (
                [
                    "blkio.throttle.io_service_bytes_recursive",
                    "blkio.throttle.io_service_bytes",
                ],
                [
                    ("Read", "rbytes", "By"),
                    ("Write", "wbytes", "By"),
                    ("Discard", "dbytes", "By"),
                ],
            ),
            (
                [
                    "blkio.throttle.io_serviced_recursive",
                    "blkio.throttle.io_serviced",
                ],
                [
                    ("Read", "rios", "1"),
                    ("Write", "wios", "1"),
                    ("Discard", "dios", "1"),
                ],
            ),
        ] {
            let mut data = None;
            for file in files {
                if reader.read(dir, file)?.is_some() {
                    data = Some(file);
                    break;
                }
            }
            if data.is_none() {
                continue;
            }
            // The buffer still holds the file just read.
            let Some(data) = reader.last() else { continue };
            for (op, key, unit) in keys {
                name.clear();
                name.push_str("cgroup.io.stat.");
                name.push_str(key);
                parse::for_each_blkio(data, |device, read_op, value| {
                    if read_op == op.as_bytes() && device.contains(&b':') {
                        if let Ok(device) = std::str::from_utf8(device) {
                            builder.counter_int(&name, unit, value, &[("device", device)]);
                        }
                    }
                });
            }
        }
    }
    if let Some(dir) = target.dirs.pids.as_deref() {
        read_pids(reader, dir, builder)?;
    }
    if let Some(dir) = target.dirs.unified.as_deref() {
        read_pressure(reader, dir, builder)?;
    }
    Ok(())
}

impl Reader {
    /// The content of the last successful read.
    fn last(&self) -> Option<&[u8]> {
        self.buffer.get(..self.filled)
    }
}
