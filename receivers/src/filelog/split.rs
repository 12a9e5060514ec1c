//! Cutting a file's bytes into log entries (stanza's split funcs): by newline (a trailing
//! `\r` dropped), by `multiline.line_start_pattern` (an entry runs from one match to the
//! next; text before the first match is an entry of its own), by
//! `multiline.line_end_pattern` (an entry ends where a match ends), or not at all
//! (`encoding: nop`: chunks of `max_log_size`). Patterns are multi-line (`(?m)`), so `^`
//! matches at every line start.
//!
//! An entry never exceeds `max_log_size` bytes: with no boundary in that many bytes, the
//! first `max_log_size` bytes are an entry and the rest continues in the next one.
//! Leading and trailing whitespace are trimmed unless preserved; entries empty after
//! trimming are skipped (as the Collector's default trim does).

use std::ops::Range;

use regex::bytes::Regex;

#[derive(Clone, Debug)]
pub enum Mode {
    Newline,
    LineStart {
        pattern: Regex,
        omit: bool,
    },
    LineEnd {
        pattern: Regex,
        omit: bool,
    },
    /// `encoding: nop`: no splitting, chunks of at most `max_log_size`.
    Whole,
}

#[derive(Clone, Debug)]
pub struct Splitter {
    pub mode: Mode,
    pub max_log_size: usize,
    pub preserve_leading: bool,
    pub preserve_trailing: bool,
}

/// One cut: consume `advance` bytes; the entry is `token` (a range of the input), or
/// nothing when it trimmed to empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    pub advance: usize,
    pub token: Option<Range<usize>>,
}

impl Splitter {
    /// The next cut of `data` (which starts at an entry boundary), or None when more data
    /// is needed. `flush`: no more data is coming for now (the flush period passed), so
    /// what is left is an entry.
    pub fn next(&self, data: &[u8], flush: bool) -> Option<Cut> {
        if data.is_empty() {
            return None;
        }
        let max = self.max_log_size.max(1);
        let window = &data[..data.len().min(max)];
        // A full window with more behind it cannot be the end of the data.
        let window_flush = flush && window.len() == data.len();
        let found = self.split(window, window_flush);
        let (advance, token) = match found {
            Some(found) => found,
            None if window.len() >= max => (max, 0..max),
            None => return None,
        };
        Some(Cut {
            advance,
            token: self.trim(data, token),
        })
    }

    fn split(&self, data: &[u8], flush: bool) -> Option<(usize, Range<usize>)> {
        match &self.mode {
            Mode::Newline => match memchr::memchr(b'\n', data) {
                Some(i) => {
                    let end = if i > 0 && data[i - 1] == b'\r' {
                        i - 1
                    } else {
                        i
                    };
                    Some((i + 1, 0..end))
                }
                None if flush => Some((data.len(), 0..data.len())),
                None => None,
            },
            Mode::Whole => flush.then_some((data.len(), 0..data.len())),
            Mode::LineStart { pattern, omit } => {
                let mut matches = pattern.find_iter(data);
                let Some(first) = matches.next() else {
                    return flush.then_some((data.len(), 0..data.len()));
                };
                if first.start() != 0 {
                    return Some((first.start(), 0..first.start()));
                }
                if first.end() == data.len() && !flush {
                    return None;
                }
                let token_start = if *omit { first.end() } else { 0 };
                if let Some(second) = matches.find(|m| m.start() > first.end()) {
                    return Some((second.start(), token_start..second.start()));
                }
                flush.then_some((data.len(), token_start..data.len()))
            }
            Mode::LineEnd { pattern, omit } => {
                let Some(found) = pattern.find(data) else {
                    return flush.then_some((data.len(), 0..data.len()));
                };
                if found.end() + 1 == data.len() && !flush {
                    return None;
                }
                let end = if *omit { found.start() } else { found.end() };
                Some((found.end(), 0..end))
            }
        }
    }

    fn trim(&self, data: &[u8], mut token: Range<usize>) -> Option<Range<usize>> {
        let space = |b: u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
        if !self.preserve_leading {
            while token.start < token.end && space(data[token.start]) {
                token.start += 1;
            }
        }
        if !self.preserve_trailing {
            while token.end > token.start && space(data[token.end - 1]) {
                token.end -= 1;
            }
        }
        if token.is_empty() && !(self.preserve_leading && self.preserve_trailing) {
            return None;
        }
        Some(token)
    }
}

/// Compiles a multiline pattern the way stanza does (multi-line mode).
pub fn compile(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("(?m){pattern}")).map_err(|e| format!("invalid pattern {pattern:?}: {e}"))
}
