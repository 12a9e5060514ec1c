//! Loopback helpers for tests: a free port, one bounded HTTP/1.0 GET (so tests need no HTTP
//! client crate), and percent-encoding for query strings.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Longest time one [`http_get`] may take: connect, send, and read the whole answer.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// Lowest port [`free_port`] hands out.
const PORT_FLOOR: u16 = 10_000;

/// A free TCP port on 127.0.0.1 that no other caller of `free_port` in this process gets.
///
/// Ports come from below the kernel's ephemeral range (`ip_local_port_range`, 32768 up by
/// default), so neither `bind(:0)` nor an outgoing connection of any process can take the
/// port between this check and the child binding it. Each process starts at its own
/// PID-derived offset and walks forward, so parallel test binaries do not pick alike; a
/// port is only handed out after binding it succeeded.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ceiling = ephemeral_floor().max(PORT_FLOOR + 1024);
    let span = u32::from(ceiling - PORT_FLOOR);
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = PORT_FLOOR + offset as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {PORT_FLOOR}..{ceiling}")
}

/// First port of the kernel's ephemeral range (32768 when it cannot be read).
fn ephemeral_floor() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// `GET path` (with its query string) from `addr` (`127.0.0.1:PORT`) over HTTP/1.0, so the
/// server closes the connection after an unchunked body; bounded by [`HTTP_TIMEOUT`].
/// Returns the status code and the body, whatever the status.
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let deadline = Instant::now() + HTTP_TIMEOUT;
    let socket: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut stream =
        TcpStream::connect_timeout(&socket, HTTP_TIMEOUT).map_err(|e| format!("{addr}: {e}"))?;
    stream
        .set_write_timeout(Some(HTTP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "GET {path} on {addr}: no complete answer within {HTTP_TIMEOUT:?}"
            ));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(format!("GET {path} on {addr}: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no HTTP status")?;
    Ok((status, body.to_string()))
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for a query value).
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_only_unreserved_characters() {
        assert_eq!(percent_encode("a_Z-9.~"), "a_Z-9.~");
        assert_eq!(
            percent_encode("up{job=\"x\"}[1m] é"),
            "up%7Bjob%3D%22x%22%7D%5B1m%5D%20%C3%A9"
        );
    }

    #[test]
    fn http_get_reads_status_and_body_and_fails_on_a_closed_port() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let addr = listener.local_addr().expect("address").to_string();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accepts");
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buffer).expect("reads the request");
                assert!(n > 0, "the request ends with an empty line");
                request.extend_from_slice(&buffer[..n]);
            }
            let line = String::from_utf8_lossy(&request)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            write!(stream, "HTTP/1.0 404 Not Found\r\n\r\n{line}").expect("answers");
        });
        let (status, body) = http_get(&addr, "/a?b=c").expect("answers");
        server.join().expect("server thread");
        assert_eq!((status, body.as_str()), (404, "GET /a?b=c HTTP/1.0"));
        assert!(http_get(&format!("127.0.0.1:{}", free_port()), "/").is_err());
    }
}
