//! Child processes for end-to-end tests: a guard that kills the child when dropped (even
//! when the test panics), and a helper that starts `oxcol-bench sink` and reads its ports.

use serde::Deserialize;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Kills and reaps the child process when dropped.
pub struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard { child: Some(child) }
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn child_mut(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("ChildGuard holds its child until dropped")
    }

    /// Waits for the child to exit by itself, up to `timeout`; kills it when the time is up.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<std::process::ExitStatus, String> {
        let deadline = std::time::Instant::now() + timeout;
        let child = self.child_mut();
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if std::time::Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "process {} did not exit within {timeout:?}; killed it",
                        child.id()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(error) => {
                    return Err(format!("cannot wait for process {}: {error}", child.id()));
                }
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Spawns `command` with stdin closed and stdout and stderr written to the file `log`
/// (created anew); panics naming the program when it cannot start.
pub fn spawn_logged(command: &mut Command, log: &Path) -> ChildGuard {
    let file = std::fs::File::create(log)
        .unwrap_or_else(|error| panic!("cannot create {}: {error}", log.display()));
    spawn_into(command, file)
}

/// As [`spawn_logged`], appending to `log`: a process restarted by a test keeps the
/// log of its earlier runs.
pub fn spawn_appending(command: &mut Command, log: &Path) -> ChildGuard {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|error| panic!("cannot open {}: {error}", log.display()));
    spawn_into(command, file)
}

fn spawn_into(command: &mut Command, file: std::fs::File) -> ChildGuard {
    let stdout = file.try_clone().expect("clones the log handle");
    let child = command
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(file)
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "cannot start {}: {error}",
                command.get_program().to_string_lossy()
            )
        });
    ChildGuard::new(child)
}

/// The addresses a sink prints on its first stdout line.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub struct SinkAddresses {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub control: SocketAddr,
}

/// Starts `binary sink --grpc 127.0.0.1:0 --http 127.0.0.1:0 --control 127.0.0.1:0 <extra_args>`
/// and returns it with the addresses it bound, read from its first stdout line.
///
/// `binary` is the `oxcol-bench` executable (`env!("CARGO_BIN_EXE_oxcol-bench")` in this
/// package's integration tests). The rest of its stdout is drained in the background.
pub fn spawn_sink(
    binary: &Path,
    extra_args: &[&str],
    timeout: Duration,
) -> Result<(ChildGuard, SinkAddresses), String> {
    let child = Command::new(binary)
        .args([
            "sink",
            "--grpc",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
        ])
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|error| format!("cannot start {}: {error}", binary.display()))?;
    let mut guard = ChildGuard::new(child);
    let stdout = guard
        .child_mut()
        .stdout
        .take()
        .expect("stdout was piped above");
    let line = first_line(stdout, timeout)?;
    let addresses = serde_json::from_str(&line).map_err(|error| {
        format!("sink start-up line {line:?} is not the addresses JSON: {error}")
    })?;
    Ok((guard, addresses))
}

/// Reads the first line of `stream` within `timeout`, then keeps draining it on a thread.
pub fn first_line(
    stream: impl std::io::Read + Send + 'static,
    timeout: Duration,
) -> Result<String, String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stream).lines();
        let first = lines.next();
        let _ = sender.send(first);
        for _ in lines {}
    });
    match receiver.recv_timeout(timeout) {
        Ok(Some(Ok(line))) => Ok(line),
        Ok(Some(Err(error))) => Err(format!("cannot read child stdout: {error}")),
        Ok(None) => Err("child closed stdout before printing its first line".to_string()),
        Err(_) => Err(format!("child printed nothing within {timeout:?}")),
    }
}
