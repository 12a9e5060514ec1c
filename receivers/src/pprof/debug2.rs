//! Parser for `/debug/pprof/goroutine?debug=2`, the panic-style dump of every goroutine
//! (`runtime.Stack(buf, all=true)`): per goroutine its state, how many minutes it has
//! waited, its frames and the `created by` function.
//!
//! The dump is read with a byte bound, so the text may end mid-block: a block whose
//! header parsed is kept (state and wait time are in the header), the rest is ignored.
//! Lines that are not what the format promises are skipped, never a panic.
//!
//! Format (golang/go `src/runtime/traceback.go`, goroutineheader and printcreatedby1):
//! `goroutine <id>[ gp=.. m=..] [<status>[ (scan)][, <N> minutes][, locked to thread][, ...]]:`
//! then `<func>(<args>)` / `\t<file>:<line> +0x..` pairs, then
//! `created by <func>[ in goroutine <parent>]` and its file line. Blocks are separated by
//! a blank line. `<N> minutes` is floor((now - waitsince) / 60s), where waitsince is set
//! by the first GC that sees the goroutine blocked: a lower bound, minute granularity.

/// One goroutine of the dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goroutine {
    pub id: u64,
    /// The status or wait reason (`select`, `chan receive`, `IO wait`, `running`, ...).
    pub state: String,
    /// Whole minutes waited as the runtime printed it; 0 when not printed.
    pub wait_minutes: u64,
    /// Function names, innermost first, without arguments.
    pub functions: Vec<String>,
    /// The `created by` function, without the ` in goroutine N` suffix.
    pub created_by: Option<String>,
    /// The block's text as the runtime wrote it (for the leak log record).
    pub text: String,
}

/// Parses a (possibly truncated) debug=2 dump.
pub fn parse(text: &str) -> Vec<Goroutine> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut lines = block.lines().filter(|l| !l.is_empty());
        let Some(header) = lines.next() else { continue };
        let Some((id, state, wait_minutes)) = parse_header(header) else {
            continue;
        };
        let mut functions = Vec::new();
        let mut created_by = None;
        for line in lines {
            if line.starts_with('\t') || line.starts_with("...") {
                continue;
            }
            if let Some(rest) = line.strip_prefix("created by ") {
                let function = rest.split(" in goroutine ").next().unwrap_or(rest);
                created_by = Some(function.trim().to_string());
            } else if let Some(function) = function_name(line) {
                functions.push(function.to_string());
            }
        }
        out.push(Goroutine {
            id,
            state,
            wait_minutes,
            functions,
            created_by,
            text: block.trim_end().to_string(),
        });
    }
    out
}

/// `goroutine 42 [select, 3 minutes]:` -> (42, "select", 3).
fn parse_header(line: &str) -> Option<(u64, String, u64)> {
    let rest = line.strip_prefix("goroutine ")?;
    let (id, rest) = rest.split_once(' ')?;
    let id: u64 = id.parse().ok()?;
    let open = rest.find('[')?;
    let inner = rest[open + 1..].strip_suffix("]:")?;
    let mut parts = inner.split(", ");
    let status = parts.next()?.trim();
    let status = status.strip_suffix(" (scan)").unwrap_or(status);
    let mut wait_minutes = 0;
    for part in parts {
        if let Some(minutes) = part.strip_suffix(" minutes") {
            wait_minutes = minutes.trim().parse().unwrap_or(0);
        }
    }
    if status.is_empty() {
        return None;
    }
    Some((id, status.to_string(), wait_minutes))
}

/// `main.worker(0xc000, ...)` -> `main.worker`. Function names may contain parentheses
/// (`net/http.(*conn).serve`), so the argument list is the last `(`...`)` group.
fn function_name(line: &str) -> Option<&str> {
    let line = line.trim_end();
    if !line.ends_with(')') {
        return None;
    }
    let mut depth = 0usize;
    for (index, ch) in line.char_indices().rev() {
        match ch {
            ')' => depth += 1,
            '(' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    let name = &line[..index];
                    return (!name.is_empty()).then_some(name);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = include_str!("testdata/goroutine-debug2.txt");

    #[test]
    fn real_dump_of_the_leaking_service() {
        let goroutines = parse(DUMP);
        let leaked: Vec<_> = goroutines
            .iter()
            .filter(|g| g.functions.first().map(String::as_str) == Some("main.waitForResult"))
            .collect();
        assert_eq!(leaked.len(), 30, "30 requests leaked 30 goroutines");
        for g in &leaked {
            assert_eq!(g.state, "select");
            assert_eq!(g.created_by.as_deref(), Some("main.leakyHandler"));
        }
        let main = goroutines.iter().find(|g| g.id == 1).expect("goroutine 1");
        assert_eq!(main.state, "IO wait");
        assert_eq!(main.created_by, None, "goroutine 1 has no creator");
        assert_eq!(
            main.functions.first().map(String::as_str),
            Some("internal/poll.runtime_pollWait")
        );
        assert!(
            main.functions
                .iter()
                .any(|f| f == "net/http.(*Server).Serve")
        );
        let running = goroutines
            .iter()
            .find(|g| g.state == "running")
            .expect("the dumping goroutine");
        assert_eq!(
            running.created_by.as_deref(),
            Some("net/http.(*Server).Serve")
        );
    }

    #[test]
    fn headers_with_minutes_scan_and_gp() {
        let text = "goroutine 7 gp=0xc000007a40 m=nil [chan receive (nil chan), 12 minutes, locked to thread]:\nmain.f()\n\t/a.go:1 +0x1\n\n\
goroutine 8 [select (scan), 3 minutes]:\nmain.g(...)\n\t/a.go:2\ncreated by main.h in goroutine 1\n\t/a.go:3 +0x2\n\n\
goroutine 9 [sync.Mutex.Lock]:\n";
        let g = parse(text);
        assert_eq!(g.len(), 3);
        assert_eq!(
            (g[0].id, g[0].state.as_str(), g[0].wait_minutes),
            (7, "chan receive (nil chan)", 12)
        );
        assert_eq!(
            (
                g[1].state.as_str(),
                g[1].wait_minutes,
                g[1].created_by.as_deref()
            ),
            ("select", 3, Some("main.h"))
        );
        assert_eq!(
            (g[2].state.as_str(), g[2].wait_minutes),
            ("sync.Mutex.Lock", 0)
        );
    }

    #[test]
    fn truncated_and_mutated_dumps_never_panic() {
        for cut in (0..DUMP.len()).step_by(7) {
            if DUMP.is_char_boundary(cut) {
                let _ = parse(&DUMP[..cut]);
            }
        }
        let mut rng = oxcol_core::testdata::XorShift64(0x9e37_79b9_7f4a_7c15);
        let bytes = DUMP.as_bytes();
        for _ in 0..300 {
            let mut mutated = bytes.to_vec();
            for _ in 0..8 {
                let seed = rng.next_u64();
                let at = (seed as usize) % mutated.len();
                mutated[at] = (seed >> 32) as u8;
            }
            let _ = parse(&String::from_utf8_lossy(&mutated));
        }
    }
}
