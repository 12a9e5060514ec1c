//! Turns a pprof HTTP body into resolved stacks: gzip detection, a bounded inflate, the
//! protobuf decode, and the walk from sample to location to function names.
//!
//! It must never trust the body: every index into the string, location and function
//! tables is checked (a bad index reads as `"?"`), sizes are bounded before and after
//! inflating, and nothing here panics on any input (see the fuzz-style tests).

use std::collections::HashMap;
use std::io::Read;

use prost::Message;

use super::proto;

/// Why a body is not a usable profile; the text is what the user reads in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Looks like an HTML page (a proxy, a login page, the pprof index).
    Html,
    /// The gzip stream is cut short or corrupt.
    Gzip(String),
    /// Inflated past the configured limit.
    TooLarge(usize),
    /// Not a protobuf `Profile`, or one that breaks the format's rules.
    Garbage(String),
}

impl BodyError {
    /// A short, stable name for the error counter's `reason` label.
    pub fn reason(&self) -> &'static str {
        match self {
            BodyError::Html => "html",
            BodyError::Gzip(_) => "gzip",
            BodyError::TooLarge(_) => "too_large",
            BodyError::Garbage(_) => "garbage",
        }
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Html => write!(
                f,
                "the answer is an HTML page, not a pprof profile; check that the endpoint is the service's net/http/pprof (e.g. http://127.0.0.1:6060)"
            ),
            BodyError::Gzip(e) => write!(f, "the gzip body is truncated or corrupt: {e}"),
            BodyError::TooLarge(limit) => write!(
                f,
                "the profile inflates to more than {limit} bytes; raise max_body_size if this target is expected to be that large"
            ),
            BodyError::Garbage(e) => write!(f, "the body is not a pprof profile: {e}"),
        }
    }
}

/// Inflates `body` when it starts with the gzip magic `1f 8b`; plain protobuf bodies pass
/// through. At most `limit` inflated bytes are accepted.
pub fn inflate(body: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    if body.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
        let decoder = flate2::read::MultiGzDecoder::new(body);
        decoder
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| BodyError::Gzip(e.to_string()))?;
        if out.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        Ok(out)
    } else {
        let start = body
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(body.len());
        let head = &body[start..body.len().min(start + 64)];
        let lower = String::from_utf8_lossy(head).to_ascii_lowercase();
        if lower.starts_with("<!doctype") || lower.starts_with("<html") || lower.starts_with("<") {
            return Err(BodyError::Html);
        }
        if body.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        Ok(body.to_vec())
    }
}

/// One frame of a resolved stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub function: String,
    pub file: String,
    pub line: i64,
}

/// A decoded profile with its stacks resolved to frames (leaf first).
#[derive(Debug, Default)]
pub struct Resolved {
    /// `(type, unit)` per value index, e.g. `("inuse_space", "bytes")`.
    pub sample_types: Vec<(String, String)>,
    /// `(frames, values)` per sample.
    pub samples: Vec<(Vec<Frame>, Vec<i64>)>,
}

impl Resolved {
    /// The index of the value of type `name`, if the profile has it.
    pub fn value_index(&self, name: &str) -> Option<usize> {
        self.sample_types.iter().position(|(t, _)| t == name)
    }

    /// The sum over samples of each value.
    pub fn totals(&self) -> Vec<i64> {
        let mut totals = vec![0i64; self.sample_types.len()];
        for (_, values) in &self.samples {
            for (total, value) in totals.iter_mut().zip(values) {
                *total = total.saturating_add(*value);
            }
        }
        totals
    }
}

/// Decodes an (inflated) profile and resolves every sample's stack.
pub fn resolve(bytes: &[u8]) -> Result<Resolved, BodyError> {
    let profile = proto::Profile::decode(bytes).map_err(|e| BodyError::Garbage(e.to_string()))?;
    let strings = &profile.string_table;
    if strings.first().is_some_and(|s| !s.is_empty()) {
        return Err(BodyError::Garbage(
            "string_table[0] is not empty".to_string(),
        ));
    }
    if profile.sample_type.is_empty() {
        return Err(BodyError::Garbage(
            "the profile declares no sample_type".to_string(),
        ));
    }
    let string = |index: i64| -> String {
        usize::try_from(index)
            .ok()
            .and_then(|i| strings.get(i))
            .cloned()
            .unwrap_or_else(|| "?".to_string())
    };
    let functions: HashMap<u64, (String, String)> = profile
        .function
        .iter()
        .map(|f| (f.id, (string(f.name), string(f.filename))))
        .collect();
    // location id -> its frames, innermost (inlined) first, as in the profile.
    let locations: HashMap<u64, Vec<Frame>> = profile
        .location
        .iter()
        .map(|location| {
            let frames = location
                .line
                .iter()
                .map(|line| {
                    let (function, file) = functions
                        .get(&line.function_id)
                        .cloned()
                        .unwrap_or_else(|| ("?".to_string(), "?".to_string()));
                    Frame {
                        function,
                        file,
                        line: line.line,
                    }
                })
                .collect();
            (location.id, frames)
        })
        .collect();
    let sample_types: Vec<(String, String)> = profile
        .sample_type
        .iter()
        .map(|t| (string(t.r#type), string(t.unit)))
        .collect();
    let mut samples = Vec::with_capacity(profile.sample.len());
    for sample in &profile.sample {
        if sample.value.len() != sample_types.len() {
            return Err(BodyError::Garbage(format!(
                "a sample has {} values for {} sample types",
                sample.value.len(),
                sample_types.len()
            )));
        }
        let mut frames = Vec::with_capacity(sample.location_id.len());
        for id in &sample.location_id {
            match locations.get(id) {
                Some(location_frames) => frames.extend(location_frames.iter().cloned()),
                None => frames.push(Frame {
                    function: "?".to_string(),
                    file: "?".to_string(),
                    line: 0,
                }),
            }
        }
        samples.push((frames, sample.value.clone()));
    }
    Ok(Resolved {
        sample_types,
        samples,
    })
}

/// True for frames that belong to the Go runtime's machinery rather than to the code
/// that parked the goroutine: `runtime.*`, `internal/*` and linknamed runtime hooks
/// such as `sync.runtime_SemacquireMutex`.
pub fn is_runtime_frame(function: &str) -> bool {
    function.starts_with("runtime.")
        || function.starts_with("internal/")
        || function.contains(".runtime_")
}

/// The innermost frame outside the runtime (`go.stack.function`), or the leaf when the
/// whole stack is runtime (GC workers).
pub fn innermost_user_function(frames: &[Frame]) -> &str {
    frames
        .iter()
        .find(|f| !is_runtime_frame(&f.function))
        .or_else(|| frames.first())
        .map_or("?", |f| f.function.as_str())
}

/// The goroutine's entry function: the outermost frame other than `runtime.goexit`.
pub fn entry_function(frames: &[Frame]) -> &str {
    frames
        .iter()
        .rev()
        .find(|f| f.function != "runtime.goexit")
        .map_or("?", |f| f.function.as_str())
}

/// The stable signature of a stack (`go.stack.id`): FNV-1a 64 over the function names of
/// its frames outside the runtime (all frames when every frame is runtime), as 16 hex
/// digits. Names, not addresses: the id survives a rebuild and a restart, and the
/// debug=2 dump (which hides runtime frames) gives the same id for the same stack.
pub fn stack_id<'a>(functions: impl Iterator<Item = &'a str> + Clone) -> String {
    let user: Vec<&str> = functions.clone().filter(|f| !is_runtime_frame(f)).collect();
    let names: Vec<&str> = if user.is_empty() {
        functions.collect()
    } else {
        user
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for name in names {
        for byte in name.bytes().chain(std::iter::once(b'\n')) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// A stack as text, one `function\n\tfile:line` pair per frame, leaf first (the layout
/// of a Go traceback, so it reads like a debug=2 dump).
pub fn stack_text(frames: &[Frame]) -> String {
    let mut text = String::new();
    for frame in frames {
        text.push_str(&frame.function);
        text.push_str("\n\t");
        text.push_str(&frame.file);
        text.push(':');
        text.push_str(&frame.line.to_string());
        text.push('\n');
    }
    text
}
