//! `include`/`exclude` globs as the Collector's file matcher (doublestar) reads them:
//! `*` and `?` within one path segment, `**` across any number of segments, `[abc]`,
//! `[a-z]`, `[!x]`/`[^x]` classes and `{a,b}` alternatives. Matching is on the whole
//! path. Finding files walks only below each pattern's literal prefix directory.
//!
//! No crate in the workspace does this, and the translation to a regex is short.

use std::path::{Path, PathBuf};

use regex::Regex;

#[derive(Clone, Debug)]
pub struct Glob {
    pub pattern: String,
    regex: Regex,
    /// The directory below which matches can lie (the segments before the first wildcard).
    base: PathBuf,
    /// Whether a match can be deeper than the pattern's segment count (`**`).
    recursive: bool,
    /// Segments below `base` a match has (when not recursive).
    depth: usize,
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("an empty glob matches nothing; remove it".to_string());
        }
        let regex = Regex::new(&translate(pattern)?)
            .map_err(|e| format!("glob {pattern:?} cannot be compiled: {e}"))?;
        let segments: Vec<&str> = pattern.split('/').collect();
        let literal = segments
            .iter()
            .take_while(|s| !s.contains(['*', '?', '[', '{']))
            .count();
        // The last segment is the file name: even without wildcards it is not a directory.
        let literal = literal.min(segments.len().saturating_sub(1));
        let base = if literal == 0 {
            PathBuf::from(if pattern.starts_with('/') { "/" } else { "." })
        } else {
            let joined = segments[..literal].join("/");
            PathBuf::from(if joined.is_empty() {
                "/".to_string()
            } else {
                joined
            })
        };
        Ok(Glob {
            pattern: pattern.to_string(),
            regex,
            base,
            recursive: pattern.contains("**"),
            depth: segments.len() - literal,
        })
    }

    pub fn matches(&self, path: &str) -> bool {
        self.regex.is_match(path)
    }

    /// Regular files (symlinks followed) whose path matches, sorted.
    pub fn find(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let max_depth = if self.recursive { 64 } else { self.depth };
        self.walk(&self.base.clone(), 1, max_depth, &mut out);
        out.sort();
        out
    }

    fn walk(&self, dir: &Path, depth: usize, max_depth: usize, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = if dir == Path::new(".") && !self.pattern.starts_with("./") {
                PathBuf::from(entry.file_name())
            } else {
                entry.path()
            };
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                if depth < max_depth {
                    self.walk(&path, depth + 1, max_depth, out);
                }
            } else if meta.is_file() && self.matches(&path.to_string_lossy()) {
                out.push(path);
            }
        }
    }
}

/// The glob as an anchored regex.
fn translate(pattern: &str) -> Result<String, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::from("^");
    let mut i = 0;
    let mut in_braces = 0usize;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                // `**/` matches zero or more directories; a trailing `**` anything.
                if chars.get(i + 2) == Some(&'/') {
                    out.push_str("(?:[^/]*/)*");
                    i += 3;
                } else {
                    out.push_str(".*");
                    i += 2;
                }
                continue;
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            '[' => {
                let Some(close) = chars[i + 1..].iter().position(|c| *c == ']') else {
                    return Err(format!("glob {pattern:?}: unclosed ["));
                };
                let body: String = chars[i + 1..i + 1 + close].iter().collect();
                let body = match body.strip_prefix(['!', '^']) {
                    Some(rest) => format!("^{}", rest.replace('\\', "\\\\")),
                    None => body.replace('\\', "\\\\"),
                };
                out.push('[');
                out.push_str(&body);
                out.push(']');
                i += close + 2;
                continue;
            }
            '{' => {
                in_braces += 1;
                out.push_str("(?:");
            }
            '}' if in_braces > 0 => {
                in_braces -= 1;
                out.push(')');
            }
            ',' if in_braces > 0 => out.push('|'),
            '\\' if i + 1 < chars.len() => {
                out.push_str(&regex::escape(&chars[i + 1].to_string()));
                i += 2;
                continue;
            }
            other => out.push_str(&regex::escape(&other.to_string())),
        }
        i += 1;
    }
    if in_braces > 0 {
        return Err(format!("glob {pattern:?}: unclosed {{"));
    }
    out.push('$');
    Ok(out)
}

/// Every file matching an include glob and no exclude glob, sorted and deduplicated.
pub fn find_files(include: &[Glob], exclude: &[Glob]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = include
        .iter()
        .flat_map(Glob::find)
        .filter(|path| {
            let text = path.to_string_lossy();
            !exclude.iter().any(|g| g.matches(&text))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}
