//! Which directories to read: the layout of the hierarchy at `root_path` (pure v2, v1, or
//! the v1/v2 hybrid), the cgroup oxcol itself runs in (`self`), and discovery by globs.
//!
//! How the layout is found: a v2 (unified) hierarchy has `cgroup.controllers` at its
//! root; a v1 hierarchy has one directory per controller (`memory/`, `cpu/`, `cpuacct/`,
//! `blkio/`, `pids/`, often symlinks to a combined `cpu,cpuacct` mount). A hybrid host is
//! a v1 layout with a v2 mount at `unified/`, which carries only PSI (`*.pressure`) and
//! `cpu.stat`; it is read for a cgroup when the same path exists there.
//!
//! `self` never assumes `/sys/fs/cgroup`: it reads `/proc/self/cgroup` and the mount
//! points from `/proc/self/mountinfo` (fstype `cgroup2`, or `cgroup` with the controller
//! in the super options), as the kernel doc recommends.

use std::path::{Path, PathBuf};

/// The directories of one cgroup, per controller. `None` means "not on this host".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dirs {
    /// The v2 directory: every controller on a pure v2 host; only PSI and cpu.stat on a
    /// hybrid one.
    pub unified: Option<PathBuf>,
    pub memory: Option<PathBuf>,
    pub cpu: Option<PathBuf>,
    pub cpuacct: Option<PathBuf>,
    pub blkio: Option<PathBuf>,
    pub pids: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub fn name(self) -> &'static str {
        match self {
            Version::V1 => "1",
            Version::V2 => "2",
        }
    }
}

/// One cgroup to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The cgroup's path as the kernel names it (`/kubepods.slice/...`, `/` for the root).
    pub path: String,
    /// The version of the hierarchy its memory controller is on.
    pub version: Version,
    pub dirs: Dirs,
}

/// The hierarchy mounted at `root_path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    V2 {
        root: PathBuf,
    },
    /// `unified` is the hybrid v2 mount, when present.
    V1 {
        root: PathBuf,
        unified: Option<PathBuf>,
    },
}

const V1_CONTROLLERS: [&str; 5] = ["memory", "cpu", "cpuacct", "blkio", "pids"];

pub fn detect_layout(root: &Path) -> Option<Layout> {
    if root.join("cgroup.controllers").exists() {
        return Some(Layout::V2 {
            root: root.to_path_buf(),
        });
    }
    if V1_CONTROLLERS.iter().any(|c| root.join(c).is_dir()) {
        let unified = root.join("unified");
        let unified = unified
            .join("cgroup.controllers")
            .exists()
            .then_some(unified);
        return Some(Layout::V1 {
            root: root.to_path_buf(),
            unified,
        });
    }
    None
}

fn join_cgroup(base: &Path, cgroup_path: &str) -> PathBuf {
    let relative = cgroup_path.trim_start_matches('/');
    if relative.is_empty() {
        base.to_path_buf()
    } else {
        base.join(relative)
    }
}

/// Normalizes a user- or kernel-written cgroup path to `/a/b` form.
pub fn normalize(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 1);
    for element in path.split('/').filter(|e| !e.is_empty() && *e != ".") {
        out.push('/');
        out.push_str(element);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

impl Layout {
    /// The target for `path` (kernel form) in this layout.
    pub fn target(&self, path: &str) -> Target {
        let path = normalize(path);
        match self {
            Layout::V2 { root } => Target {
                dirs: Dirs {
                    unified: Some(join_cgroup(root, &path)),
                    ..Dirs::default()
                },
                path,
                version: Version::V2,
            },
            Layout::V1 { root, unified } => {
                let dir = |controller: &str| {
                    let base = root.join(controller);
                    base.is_dir().then(|| join_cgroup(&base, &path))
                };
                let unified = unified
                    .as_ref()
                    .map(|u| join_cgroup(u, &path))
                    .filter(|d| d.is_dir());
                Target {
                    dirs: Dirs {
                        unified,
                        memory: dir("memory"),
                        cpu: dir("cpu"),
                        cpuacct: dir("cpuacct"),
                        blkio: dir("blkio"),
                        pids: dir("pids"),
                    },
                    path,
                    version: Version::V1,
                }
            }
        }
    }

    /// The tree discovery walks: the v2 root, or the v1 memory hierarchy.
    fn walk_root(&self) -> PathBuf {
        match self {
            Layout::V2 { root } => root.clone(),
            Layout::V1 { root, .. } => root.join("memory"),
        }
    }

    /// Every cgroup under the walk root down to `max_depth` levels whose path matches one
    /// of `include` and none of `exclude`. Symlinks are not followed. Directories that
    /// vanish during the walk are skipped.
    pub fn discover(
        &self,
        include: &[String],
        exclude: &[String],
        max_depth: usize,
    ) -> Vec<String> {
        let mut found = Vec::new();
        let mut stack: Vec<(PathBuf, String, usize)> = vec![(self.walk_root(), String::new(), 0)];
        while let Some((dir, relative, depth)) = stack.pop() {
            if depth >= max_depth {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if !kind.is_dir() {
                    continue;
                }
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let child = if relative.is_empty() {
                    name.to_string()
                } else {
                    format!("{relative}/{name}")
                };
                if include.iter().any(|p| glob_match(p, &child))
                    && !exclude.iter().any(|p| glob_match(p, &child))
                {
                    found.push(format!("/{child}"));
                }
                stack.push((entry.path(), child, depth + 1));
            }
        }
        found.sort_unstable();
        found
    }
}

/// Matches a cgroup path (no leading `/`) against a glob: `*` and `?` within one path
/// element, `**` any number of elements (including none; a trailing `**` needs at
/// least one, so `a/**` is everything below `a`, not `a`). A leading `/` in the pattern
/// is ignored.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern
        .trim_start_matches('/')
        .split('/')
        .filter(|e| !e.is_empty())
        .collect();
    let path: Vec<&str> = path
        .trim_start_matches('/')
        .split('/')
        .filter(|e| !e.is_empty())
        .collect();
    match_elements(&pattern, &path)
}

/// Element-wise glob match, one pass per pattern element over the set of path positions
/// reachable so far: O(pattern x path), whatever the number of `**` (trying every skip
/// recursively was exponential in them; found by the `cgroup_parse` fuzz target).
fn match_elements(pattern: &[&str], path: &[&str]) -> bool {
    // reachable[j]: the pattern elements so far match exactly the first j path elements.
    let mut reachable = vec![false; path.len() + 1];
    reachable[0] = true;
    for (i, element) in pattern.iter().enumerate() {
        let mut next = vec![false; path.len() + 1];
        if *element == "**" {
            // `**` takes any number of elements; a trailing `**` means "everything below"
            // (at least one element), as in gitignore.
            let trailing = i + 1 == pattern.len();
            let mut seen = false;
            for j in 0..=path.len() {
                if !trailing {
                    seen |= reachable[j];
                }
                next[j] = seen;
                if trailing {
                    seen |= reachable[j];
                }
            }
        } else {
            for j in 0..path.len() {
                if reachable[j] && match_element(element.as_bytes(), path[j].as_bytes()) {
                    next[j + 1] = true;
                }
            }
        }
        reachable = next;
    }
    reachable[path.len()]
}

fn match_element(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative wildcard match with single-star backtracking.
    let (mut p, mut t) = (0, 0);
    let (mut star, mut star_t) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            star_t = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            star_t += 1;
            t = star_t;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// One mount from /proc/self/mountinfo that is a cgroup hierarchy.
#[derive(Debug)]
struct CgroupMount<'a> {
    /// Root of the mount inside the hierarchy (field 4); usually `/`.
    root: &'a str,
    mount_point: &'a str,
    v2: bool,
    controllers: &'a str,
}

fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount<'_>> {
    let mut mounts = Vec::new();
    for line in mountinfo.lines() {
        // `id parent maj:min root mount_point options [optional fields] - fstype source super_options`
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let before: Vec<&str> = before.split(' ').collect();
        let mut after = after.split(' ');
        let (Some(fstype), _, Some(super_options)) = (after.next(), after.next(), after.next())
        else {
            continue;
        };
        if before.len() < 5 || !(fstype == "cgroup2" || fstype == "cgroup") {
            continue;
        }
        mounts.push(CgroupMount {
            root: before[3],
            mount_point: before[4],
            v2: fstype == "cgroup2",
            controllers: super_options,
        });
    }
    mounts
}

fn under_mount(mount: &CgroupMount<'_>, cgroup_path: &str) -> PathBuf {
    let path = cgroup_path
        .strip_suffix(" (deleted)")
        .unwrap_or(cgroup_path);
    // Mount points in mountinfo escape spaces as \040.
    let mount_point = mount.mount_point.replace("\\040", " ");
    let relative = if mount.root != "/" {
        path.strip_prefix(mount.root).unwrap_or(path)
    } else {
        path
    };
    join_cgroup(Path::new(&mount_point), relative)
}

/// The cgroup(s) a process is in, from its `/proc/PID/cgroup` and `/proc/self/mountinfo`.
///
/// Pure v2: one target. v1 or hybrid: a v1 target (memory, cpu, cpuacct, blkio, pids at
/// the memory controller's path) and, when the v2 line names a different path (as on a
/// hybrid host where `0::/`), a second v2 target for that v2 cgroup's PSI and cpu.stat.
pub fn self_targets(proc_cgroup: &str, mountinfo: &str) -> Vec<Target> {
    let mounts = cgroup_mounts(mountinfo);
    let mut v1 = Dirs::default();
    let mut v1_path: Option<String> = None;
    let mut v2: Option<(String, PathBuf)> = None;
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let path = path.strip_suffix(" (deleted)").unwrap_or(path);
        if controllers.is_empty() {
            if let Some(mount) = mounts.iter().find(|m| m.v2) {
                v2 = Some((normalize(path), under_mount(mount, path)));
            }
            continue;
        }
        for controller in controllers.split(',') {
            let Some(mount) = mounts
                .iter()
                .find(|m| !m.v2 && m.controllers.split(',').any(|c| c == controller))
            else {
                continue;
            };
            let dir = Some(under_mount(mount, path));
            match controller {
                "memory" => {
                    v1.memory = dir;
                    v1_path = Some(normalize(path));
                }
                "cpu" => v1.cpu = dir,
                "cpuacct" => v1.cpuacct = dir,
                "blkio" => v1.blkio = dir,
                "pids" => v1.pids = dir,
                _ => {}
            }
        }
    }
    let mut targets = Vec::new();
    match (v1_path, v2) {
        (Some(path), v2) => {
            let mut extra = None;
            if let Some((v2_path, v2_dir)) = v2 {
                if v2_path == path {
                    v1.unified = Some(v2_dir);
                } else {
                    extra = Some(Target {
                        path: v2_path,
                        version: Version::V2,
                        dirs: Dirs {
                            unified: Some(v2_dir),
                            ..Dirs::default()
                        },
                    });
                }
            }
            targets.push(Target {
                path,
                version: Version::V1,
                dirs: v1,
            });
            targets.extend(extra);
        }
        (None, Some((path, dir))) => targets.push(Target {
            path,
            version: Version::V2,
            dirs: Dirs {
                unified: Some(dir),
                ..Dirs::default()
            },
        }),
        (None, None) => {}
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(
            "kubepods.slice/**",
            "kubepods.slice/kubepods-burstable.slice"
        ));
        assert!(glob_match("/kubepods.slice/**", "kubepods.slice/a/b/c"));
        assert!(!glob_match("kubepods.slice/**", "kubepods.slice"));
        assert!(glob_match("kubepods/**", "kubepods/burstable/pod1/abc"));
        assert!(glob_match(
            "**/*.scope",
            "kubepods.slice/a.slice/cri-containerd-1.scope"
        ));
        assert!(!glob_match("**/*.scope", "kubepods.slice/a.slice"));
        assert!(glob_match("**/crio-conmon-*", "k/p/crio-conmon-abc.scope"));
        assert!(glob_match(
            "system.slice/?ocker.service",
            "system.slice/docker.service"
        ));
        assert!(!glob_match("system.slice/*", "system.slice/a/b"));
        assert!(glob_match("**", "anything/at/all"));
    }

    /// This machine's hybrid layout: memory on v1, a cgroup2 mount at unified/ with `0::/`.
    /// Regression (fuzz target `cgroup_parse`): a pattern with many `**` against a deep
    /// path took exponential time (it timed out the fuzzer; the real input is in
    /// fuzz/regressions/cgroup_parse). Now linear in pattern x path.
    #[test]
    fn many_double_stars_match_in_polynomial_time() {
        let pattern = "**/".repeat(40) + "x";
        let path = "a/".repeat(60) + "b";
        assert!(!glob_match(&pattern, &path));
        assert!(glob_match(&pattern, &("a/".repeat(60) + "x")));
        let artifact = "**/**/**/**/krst*/**/**/**/krst/kuct rc";
        assert!(!glob_match(artifact, &"krst/".repeat(200)));
    }

    /// The element-wise matcher agrees with the plain recursive definition on every short
    /// pattern and path over a small alphabet.
    #[test]
    fn globs_agree_with_the_recursive_definition() {
        fn reference(pattern: &[&str], path: &[&str]) -> bool {
            match pattern.split_first() {
                None => path.is_empty(),
                Some((&"**", [])) => !path.is_empty(),
                Some((&"**", rest)) => (0..=path.len()).any(|skip| reference(rest, &path[skip..])),
                Some((first, rest)) => path.split_first().is_some_and(|(e, path_rest)| {
                    match_element(first.as_bytes(), e.as_bytes()) && reference(rest, path_rest)
                }),
            }
        }
        let pattern_elements = ["**", "a", "*", "b?"];
        let path_elements = ["a", "b", "bc"];
        let mut rng = oxcol_core::testdata::XorShift64(0x2545_f491_4f6c_dd1d);
        let mut next = |n: usize| rng.below(n as u64) as usize;
        for _ in 0..5000 {
            let pattern: Vec<&str> = (0..next(6)).map(|_| pattern_elements[next(4)]).collect();
            let path: Vec<&str> = (0..next(6)).map(|_| path_elements[next(3)]).collect();
            assert_eq!(
                match_elements(&pattern, &path),
                reference(&pattern, &path),
                "{pattern:?} vs {path:?}"
            );
        }
    }

    #[test]
    fn self_on_hybrid_host() {
        let cgroup = "9:name=systemd:/\n8:pids:/\n7:blkio:/\n4:memory:/process_api/8f11e01cb8d6c7f334f20676c02751ff\n2:cpuacct:/\n1:cpu:/\n0::/\n";
        let mountinfo = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n\
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio\n\
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n\
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        let targets = self_targets(cgroup, mountinfo);
        assert_eq!(targets.len(), 2);
        assert_eq!(
            targets[0].path,
            "/process_api/8f11e01cb8d6c7f334f20676c02751ff"
        );
        assert_eq!(targets[0].version, Version::V1);
        assert_eq!(
            targets[0].dirs.memory.as_deref(),
            Some(Path::new(
                "/sys/fs/cgroup/memory/process_api/8f11e01cb8d6c7f334f20676c02751ff"
            ))
        );
        assert_eq!(
            targets[0].dirs.cpu.as_deref(),
            Some(Path::new("/sys/fs/cgroup/cpu"))
        );
        assert_eq!(targets[0].dirs.unified, None);
        assert_eq!(targets[1].path, "/");
        assert_eq!(targets[1].version, Version::V2);
        assert_eq!(
            targets[1].dirs.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn self_on_pure_v2_in_a_pod_with_a_nested_mount_root() {
        let cgroup =
            "0::/kubepods.slice/kubepods-burstable.slice/x.slice/cri-containerd-abc.scope\n";
        let mountinfo = "30 25 0:26 /kubepods.slice/kubepods-burstable.slice /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let targets = self_targets(cgroup, mountinfo);
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].version, Version::V2);
        assert_eq!(
            targets[0].dirs.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/x.slice/cri-containerd-abc.scope"))
        );
        // A deleted cgroup (zombie) keeps its name without the suffix.
        let targets = self_targets(
            "0::/gone (deleted)\n",
            "1 1 0:1 / /cg rw - cgroup2 cgroup2 rw\n",
        );
        assert_eq!(targets[0].path, "/gone");
    }

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize(""), "/");
        assert_eq!(normalize("/"), "/");
        assert_eq!(normalize("a//b/"), "/a/b");
    }
}
