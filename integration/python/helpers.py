"""Process, port and polling helpers for the oxcol black-box tests.

`Oxcol` starts the real binary with a config file and always stops it (SIGTERM,
then SIGKILL after 10 s). Nothing here knows oxcol's internals: only its CLI,
its ports and its Prometheus text.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def oxcol_binary() -> Path:
    return Path(os.environ.get("OXCOL_BIN") or REPO / "target" / "debug" / "oxcol")


def require_oxcol() -> Path:
    """The oxcol binary, or a test failure that says how to get one (never a skip)."""
    import pytest

    path = oxcol_binary()
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"oxcol binary not found at {path}: build it with `cargo build -p oxcol` "
            f"(or `cargo build`) in {REPO}, or point OXCOL_BIN at it",
            pytrace=False,
        )
    return path


_PORT_FLOOR = 10_000
_next_port = itertools.count()


def _ephemeral_floor() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free 127.0.0.1 port no other call in this process gets.

    Taken below the kernel's ephemeral range, so no bind(:0) or outgoing connection of
    another process can take it before the test's child binds it (the same rule as
    integration/src/net.rs `free_port`; the offset differs by PID).
    """
    ceiling = max(_ephemeral_floor(), _PORT_FLOOR + 1024)
    span = ceiling - _PORT_FLOOR
    start = (os.getpid() * 7919 + 4099) % span
    for _ in range(span):
        port = _PORT_FLOOR + (start + next(_next_port)) % span
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port in {_PORT_FLOOR}..{ceiling}")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def poll(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Call predicate until it returns something truthy or the time is up; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def http_post(url: str, body: bytes, headers: dict, timeout: float = 10.0) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as error:
        return error.code, error.read(), {k.lower(): v for k, v in error.headers.items()}


# ---------------------------------------------------------------------------
# Prometheus text


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?\s*$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> list[tuple[str, dict, float]]:
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, labels, value = match.groups()
        try:
            number = float(value)
        except ValueError:
            continue
        samples.append((name, dict(_LABEL.findall(labels or "")), number))
    return samples


def metric_value(samples, name: str, **labels) -> float | None:
    """Sum of the samples named `name` (or `name_total`, as newer Collectors spell
    counters) whose labels include `labels`; None when there is no such series."""
    names = {name, name + "_total"}
    found = [v for n, l, v in samples if n in names and all(l.get(k) == str(w) for k, w in labels.items())]
    return sum(found) if found else None


def has_metric(samples, name: str) -> bool:
    return any(n == name or n.startswith(name + "_") for n, _, _ in samples)


# ---------------------------------------------------------------------------


class Oxcol:
    """A running oxcol. Use as a context manager, or through the `oxcol` fixture
    which also attaches its output to a failing test's report."""

    def __init__(
        self,
        config=None,
        *,
        extra_args=(),
        env=None,
        workdir: Path | None = None,
        ready_url: str | None = None,
        ready_port: int | None = None,
        binary: Path | None = None,
        args: list[str] | None = None,
    ):
        self.binary = binary or require_oxcol()
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="oxcol-"))
        self.config_path = None
        if config is not None:
            self.config_path = self.workdir / "config.yaml"
            text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
            self.config_path.write_text(text)
        if args is None:
            args = ["--config", str(self.config_path)] if self.config_path else []
        self.args = [str(self.binary), *args, *extra_args]
        self.env = {**os.environ, **(env or {})}
        self.ready_url = ready_url
        self.ready_port = ready_port
        if isinstance(config, dict) and not (ready_url or ready_port):
            self.ready_url, self.ready_port = _readiness_from_config(config)
        self.stdout_path = self.workdir / "oxcol.stdout"
        self.stderr_path = self.workdir / "oxcol.stderr"
        self.process: subprocess.Popen | None = None
        self.returncode: int | None = None

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> "Oxcol":
        self._stdout = open(self.stdout_path, "wb")
        self._stderr = open(self.stderr_path, "wb")
        self.process = subprocess.Popen(
            self.args, stdout=self._stdout, stderr=self._stderr, env=self.env, cwd=self.workdir
        )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"oxcol exited with {self.process.returncode} before it was ready\n{self.output()}"
                )
            if self.ready_url:
                try:
                    status, _, _ = http_get(self.ready_url, timeout=0.5)
                    if status == 200:
                        return
                except OSError:
                    pass
            elif self.ready_port:
                if port_open(self.ready_port):
                    return
            else:
                return
            time.sleep(0.05)
        raise AssertionError(
            f"oxcol not ready within {timeout}s (waited for {self.ready_url or self.ready_port})\n{self.output()}"
        )

    def signal(self, signum: int):
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int | None:
        try:
            self.returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self):
        """SIGTERM, up to 10 s, then SIGKILL. Safe to call twice."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGTERM)
                self.returncode = self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.returncode = self.process.wait()
        else:
            self.returncode = self.process.returncode
        for handle in (self._stdout, self._stderr):
            handle.close()

    def __enter__(self) -> "Oxcol":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()

    # -- output -------------------------------------------------------------------

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def output(self, limit: int = 20000) -> str:
        return (
            f"--- oxcol {' '.join(self.args)}\n--- stdout:\n{self.stdout()[-limit:]}\n"
            f"--- stderr:\n{self.stderr()[-limit:]}"
        )


def _readiness_from_config(config: dict):
    extensions = config.get("extensions") or {}
    for name, settings in extensions.items():
        if name.split("/")[0] == "health_check" and settings and "endpoint" in settings:
            return f"http://{settings['endpoint']}/", None
    protocols = ((config.get("receivers") or {}).get("otlp") or {}).get("protocols") or {}
    for proto in ("grpc", "http"):
        endpoint = (protocols.get(proto) or {}).get("endpoint")
        if endpoint:
            return None, int(str(endpoint).rsplit(":", 1)[1])
    return None, None


def run_cli(args, timeout: float = 20.0, env=None, cwd=None) -> subprocess.CompletedProcess:
    """Run an oxcol subcommand to completion."""
    binary = require_oxcol()
    return subprocess.run(
        [str(binary), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


# ---------------------------------------------------------------------------
# configs


class Ports:
    """Free loopback ports for one oxcol instance."""

    def __init__(self):
        self.grpc = free_port()
        self.http = free_port()
        self.health = free_port()
        self.telemetry = free_port()

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health}/"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.telemetry}/metrics"


def pipeline_config(ports: Ports, exporters: dict, *, batch=None, http_receiver=None, telemetry=None) -> dict:
    """The standard Collector config of the tests: otlp in (gRPC + HTTP) -> batch -> `exporters`."""
    names = list(exporters)
    http_settings = {"endpoint": f"127.0.0.1:{ports.http}", **(http_receiver or {})}
    return {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"127.0.0.1:{ports.grpc}"},
                    "http": http_settings,
                }
            }
        },
        "processors": {"batch": batch or {"timeout": "200ms"}},
        "exporters": exporters,
        "extensions": {"health_check": {"endpoint": f"127.0.0.1:{ports.health}"}},
        "service": {
            "extensions": ["health_check"],
            "telemetry": telemetry or {"metrics": {"address": f"127.0.0.1:{ports.telemetry}"}},
            "pipelines": {
                signal: {"receivers": ["otlp"], "processors": ["batch"], "exporters": names}
                for signal in ("metrics", "traces", "logs")
            },
        },
    }


def otlp_exporter(sink, **extra) -> dict:
    return {"otlp": {"endpoint": sink.grpc_endpoint, "tls": {"insecure": True}, **extra}}


def otlphttp_exporter(sink, **extra) -> dict:
    return {"otlphttp": {"endpoint": sink.http_endpoint, **extra}}


def scrape(ports: Ports):
    try:
        status, body, _ = http_get(ports.metrics_url)
    except OSError as error:
        raise AssertionError(f"oxcol self-telemetry not served at {ports.metrics_url}: {error}") from None
    assert status == 200, f"GET {ports.metrics_url} -> {status}"
    return parse_prometheus(body.decode())
