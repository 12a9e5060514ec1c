//! A real single-node Apache Kafka (KRaft, broker and controller in one JVM) for tests:
//! the jars of `peers::peer("kafka")`, on 127.0.0.1 with free ports and a temp data dir.
//!
//! Start formats the data dir (`kafka.tools.StorageTool format`), runs `kafka.Kafka`, and
//! waits (bounded) until a topic can be created. [`Kafka::kill`] and [`Kafka::restart`]
//! stop it with SIGKILL and start it again on the same ports and data, for the
//! broker-restart tests. The JVM is always killed when the value is dropped (ChildGuard),
//! also when the test panics. Topic admin and raw produce use the Kafka CLI classes, so
//! tests need no Kafka client of their own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::child::{ChildGuard, spawn_appending};
use crate::net::free_port;

/// Longest wait for the broker to accept a topic creation after start.
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

pub struct Kafka {
    guard: Option<ChildGuard>,
    libs: PathBuf,
    dir: PathBuf,
    pub port: u16,
}

impl Kafka {
    /// Formats a new data dir and starts the broker; panics (with the broker's log) when
    /// it is not ready within [`READY_TIMEOUT`].
    pub fn start() -> Kafka {
        let libs = crate::peers::peer("kafka");
        let dir = std::env::temp_dir().join(format!(
            "oxcol-kafka-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(dir.join("data")).expect("creates the Kafka temp dir");
        let (port, controller_port) = (free_port(), free_port());
        let properties = format!(
            "process.roles=broker,controller\n\
             node.id=1\n\
             controller.quorum.voters=1@127.0.0.1:{controller_port}\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
             controller.listener.names=CONTROLLER\n\
             inter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n\
             log.dirs={data}\n\
             num.partitions=4\n\
             offsets.topic.replication.factor=1\n\
             offsets.topic.num.partitions=4\n\
             transaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\n\
             group.initial.rebalance.delay.ms=0\n\
             auto.create.topics.enable=true\n\
             log.flush.interval.messages=1\n",
            data = dir.join("data").display(),
        );
        std::fs::write(dir.join("server.properties"), properties)
            .expect("writes server.properties");
        let format = Command::new("java")
            .arg("-cp")
            .arg(classpath(&libs))
            .arg("kafka.tools.StorageTool")
            .args(["format", "-t", &cluster_id(), "-c"])
            .arg(dir.join("server.properties"))
            .stdin(Stdio::null())
            .output()
            .expect("runs java (Java 17 is needed for the Kafka tests)");
        assert!(
            format.status.success(),
            "kafka StorageTool format failed: {}\n{}",
            String::from_utf8_lossy(&format.stdout),
            String::from_utf8_lossy(&format.stderr)
        );
        let mut kafka = Kafka {
            guard: None,
            libs,
            dir,
            port,
        };
        kafka.run();
        kafka
    }

    /// `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kafka.log")).unwrap_or_default()
    }

    /// Starts the JVM on the existing data dir and waits until it serves metadata.
    fn run(&mut self) {
        let guard = spawn_appending(
            Command::new("java")
                .args(["-Xms128m", "-Xmx512m", "-XX:+UseSerialGC"])
                .arg("-cp")
                .arg(classpath(&self.libs))
                .arg("kafka.Kafka")
                .arg(self.dir.join("server.properties")),
            &self.dir.join("kafka.log"),
        );
        self.guard = Some(guard);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.guard.as_mut().map(|g| g.child_mut().try_wait()) {
                panic!(
                    "kafka exited during start-up with {status}\n{}",
                    self.tail()
                );
            }
            // Listing topics answers only once the broker has joined its own quorum.
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.tool(&["--list"]).is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "kafka was not ready within {READY_TIMEOUT:?}\n{}",
                self.tail()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Kills the broker (SIGKILL): clients see it vanish mid-stream.
    pub fn kill(&mut self) {
        self.guard.take();
    }

    /// Kills the broker if it runs, then starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }

    /// Creates `topic` with `partitions` partitions (bounded retries while the broker settles).
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let partitions = partitions.to_string();
            match self.tool(&[
                "--create",
                "--if-not-exists",
                "--topic",
                topic,
                "--partitions",
                &partitions,
                "--replication-factor",
                "1",
            ]) {
                Ok(_) => return,
                Err(error) if Instant::now() >= deadline => {
                    panic!("cannot create topic {topic}: {error}\n{}", self.tail())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    /// Writes each of `values` as one message to `topic` (Kafka's console producer, one
    /// line per message: values must not contain a newline).
    pub fn produce_lines(&self, topic: &str, values: &[&[u8]]) {
        let mut input = Vec::new();
        for value in values {
            assert!(
                !value.contains(&b'\n'),
                "a console-producer value has no newline"
            );
            input.extend_from_slice(value);
            input.push(b'\n');
        }
        let mut child = Command::new("java")
            .arg("-cp")
            .arg(classpath(&self.libs))
            .arg("org.apache.kafka.tools.ConsoleProducer")
            .args(["--bootstrap-server", &self.bootstrap(), "--topic", topic])
            .args(["--producer-property", "acks=all"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts the Kafka console producer");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("piped stdin");
            stdin
                .write_all(&input)
                .expect("writes to the console producer");
        }
        let mut guard = ChildGuard::new(child);
        let status = guard
            .wait_timeout(Duration::from_secs(60))
            .expect("the console producer finishes within 60 s");
        assert!(status.success(), "the console producer failed: {status}");
    }

    /// Runs `TopicCommand` with `args`; its stdout, or stdout+stderr on failure.
    fn tool(&self, args: &[&str]) -> Result<String, String> {
        let admin = self.dir.join("admin.properties");
        std::fs::write(
            &admin,
            "request.timeout.ms=5000\ndefault.api.timeout.ms=10000\n",
        )
        .map_err(|e| e.to_string())?;
        let mut command = Command::new("java");
        command
            .arg("-cp")
            .arg(classpath(&self.libs))
            .arg("org.apache.kafka.tools.TopicCommand")
            .args(["--bootstrap-server", &self.bootstrap()])
            .arg("--command-config")
            .arg(&admin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = command
            .spawn()
            .map_err(|e| format!("cannot run java: {e}"))?;
        let output = wait_output(child, Duration::from_secs(30))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    fn tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().rev().take(40).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        self.guard.take();
        if std::thread::panicking() {
            eprintln!("---- kafka log (last lines) ----\n{}", self.tail());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits for a child's output up to `timeout`, killing it when the time is up.
fn wait_output(
    child: std::process::Child,
    timeout: Duration,
) -> Result<std::process::Output, String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(timeout) {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => {
            // The thread owns the child: end it by its pid so the thread returns.
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            Err(format!("java did not finish within {timeout:?}"))
        }
    }
}

fn classpath(libs: &Path) -> String {
    format!("{}/*", libs.display())
}

/// A random Kafka cluster id: 16 bytes, URL-safe base64 without padding (22 characters).
fn cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ u64::from(std::process::id()) << 32;
    let mut bytes = [0u8; 16];
    for byte in bytes.iter_mut() {
        // xorshift64: no need for a strong generator, only for a non-zero id.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *byte = (seed >> 24) as u8;
    }
    bytes[0] |= 1;
    let mut out = String::new();
    let mut bits = 0u32;
    let mut count = 0;
    for byte in bytes {
        bits = (bits << 8) | u32::from(byte);
        count += 8;
        while count >= 6 {
            count -= 6;
            out.push(ALPHABET[((bits >> count) & 63) as usize] as char);
        }
    }
    if count > 0 {
        out.push(ALPHABET[((bits << (6 - count)) & 63) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn cluster_ids_are_22_url_safe_characters() {
        let id = super::cluster_id();
        assert_eq!(id.len(), 22, "{id}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }
}
