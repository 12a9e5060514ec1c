"""The CLI contract: validate, components, print-config, env expansion, merging."""

from __future__ import annotations

import re

import pytest
import yaml

from helpers import free_port, otlp_exporter, pipeline_config, run_cli
from sink import SIGNALS
from telemetry import send

BAD_CONFIG = """\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:4317
        bogus_key: 1
processors:
  batch:
    timeout: [1]
exporters:
  otlp:
    tls:
      insecure: true
  foo/bar:
    x: 1
service:
  pipelines:
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlp, nope]
"""

# (acceptable lines, a word the message must contain or None, what the problem is)
BAD_CONFIG_PROBLEMS = [
    ({6}, "bogus_key", "unknown key inside a receiver"),
    ({9}, None, "wrong type: timeout: [1]"),
    ({11, 12}, "endpoint", "otlp exporter without the required endpoint"),
    ({14}, "foo", "component of unknown type foo/bar"),
    ({21}, "nope", "pipeline naming an undefined exporter"),
]
# Not yet: "a traces pipeline using a metrics-only processor" - the spine has no
# metrics-only processor; add it here when one lands.

ERROR_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<column>\d+): (?P<message>.+)$")


def good_config(sink_endpoint="127.0.0.1:4317") -> dict:
    ports = type("P", (), {"grpc": 4317, "http": 4318, "health": 13133, "telemetry": 8888})
    config = pipeline_config(ports, {"otlp": {"endpoint": sink_endpoint, "tls": {"insecure": True}}})
    return config


def test_validate_good(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump(good_config(), sort_keys=False))
    result = run_cli(["validate", "--config", str(path)])
    assert result.returncode == 0, f"validate of a good file exited {result.returncode}\n{result.stdout}\n{result.stderr}"


def test_validate_bad_reports_every_problem_with_position(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_CONFIG)
    result = run_cli(["validate", "--config", str(path)])
    output = result.stdout + result.stderr
    assert result.returncode == 1, f"validate of a bad file exited {result.returncode}\n{output}"
    errors = []
    for line in output.splitlines():
        match = ERROR_LINE.match(line.strip())
        if match and match["file"].endswith("bad.yaml"):
            errors.append((int(match["line"]), int(match["column"]), match["message"]))
    assert errors, f"no `file:line:column: message` lines in the output:\n{output}"
    missing = []
    for lines, word, what in BAD_CONFIG_PROBLEMS:
        if not any(
            line in lines and (word is None or word.lower() in message.lower()) for line, _, message in errors
        ):
            missing.append(f"{what}: expected at line {sorted(lines)}" + (f" mentioning {word!r}" if word else ""))
    assert not missing, "problems not reported:\n  " + "\n  ".join(missing) + f"\noutput:\n{output}"
    assert all(column >= 1 for _, column, _ in errors)


def test_components_lists_spine():
    result = run_cli(["components"])
    assert result.returncode == 0, result.stderr
    kinds = {}
    current = None
    for line in result.stdout.splitlines():
        heading = re.match(r"^\s*-?\s*(receivers|processors|exporters|extensions|connectors)\b", line, re.I)
        if heading:
            current = heading.group(1).lower()
            kinds.setdefault(current, set())
            line = line[heading.end():]
        if current:
            kinds[current].update(re.findall(r"[a-z][a-z0-9_]*", line))
    want = {
        "receivers": {"otlp"},
        "processors": {"batch", "memory_limiter"},
        "exporters": {"otlp", "otlphttp", "debug"},
        "extensions": {"health_check"},
    }
    for kind, names in want.items():
        assert names <= kinds.get(kind, set()), f"{kind}: want {names}, listed {kinds.get(kind)}\n{result.stdout}"


def test_print_config_redacts_secrets_and_expands_env(tmp_path):
    config = good_config("${env:OXCOL_E2E_ENDPOINT}")
    config["exporters"]["otlp"]["headers"] = {"authorization": "Bearer s3cret"}
    path = tmp_path / "secret.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = run_cli(["print-config", "--config", str(path)], env={"OXCOL_E2E_ENDPOINT": "127.0.0.1:9999"})
    assert result.returncode == 0, result.stderr
    assert "s3cret" not in result.stdout + result.stderr, f"secret printed:\n{result.stdout}"
    assert "authorization" in result.stdout, f"the header key should still be shown:\n{result.stdout}"
    assert "127.0.0.1:9999" in result.stdout, f"env not expanded in print-config:\n{result.stdout}"
    printed = yaml.safe_load(result.stdout)
    assert printed["exporters"]["otlp"]["endpoint"] == "127.0.0.1:9999"


def _send_and_expect(telemetry, ports, sink):
    send("grpc", "metrics", telemetry, f"127.0.0.1:{ports.grpc}", f"http://127.0.0.1:{ports.http}")
    want = telemetry.count("metrics")
    got = sink.wait_for_items("metrics", want, timeout=15)
    assert got == want, f"{got} of {want} points reached the sink"


@pytest.mark.parametrize(
    "form", ["${env:SINK_ENDPOINT}", "${SINK_ENDPOINT}", "${env:OXCOL_E2E_UNSET_VAR:-DEFAULT}"]
)
def test_env_expansion(form, telemetry, sink, ports, oxcol):
    endpoint = form.replace("DEFAULT", sink.grpc_endpoint)
    config = pipeline_config(ports, {"otlp": {"endpoint": endpoint, "tls": {"insecure": True}}})
    oxcol(config, env={"SINK_ENDPOINT": sink.grpc_endpoint})
    _send_and_expect(telemetry, ports, sink)


def test_configs_merge_and_set_overrides(telemetry, sink, ports, oxcol, tmp_path):
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    first = tmp_path / "first.yaml"
    first.write_text(yaml.safe_dump(pipeline_config(ports, {"otlp": {"endpoint": dead, "tls": {"insecure": True}}})))
    second = tmp_path / "second.yaml"
    second.write_text(yaml.safe_dump({"exporters": {"otlp": {"endpoint": sink.grpc_endpoint}}}))
    instance = oxcol(None, args=["--config", str(first), "--config", str(second)], ready_url=ports.health_url)
    _send_and_expect(telemetry, ports, sink)
    instance.stop()
    assert instance.returncode == 0

    sink.clear()
    second.write_text(yaml.safe_dump({"exporters": {"otlp": {"endpoint": dead}}}))
    oxcol(
        None,
        args=["--config", str(first), "--config", str(second), "--set", f"exporters.otlp.endpoint={sink.grpc_endpoint}"],
        ready_url=ports.health_url,
    )
    _send_and_expect(telemetry, ports, sink)
