"""`oxcol` with no arguments: the embedded default config runs, takes OTLP on
127.0.0.1:4317/4318 and prints a summary of what it got through `debug`."""

from __future__ import annotations

import re

import pytest

from helpers import poll, port_open
from telemetry import send

POINTS = re.compile(r"data[ _.]?points?\W{0,4}(\d+)", re.I)
SPANS = re.compile(r"(?<!resource )(?<!resource_)\bspans\W{0,4}(\d+)", re.I)


def _total(pattern, text):
    return sum(int(n) for n in pattern.findall(text))


def test_default_config_receives_and_summarises(telemetry, oxcol):
    taken = [p for p in (4317, 4318) if port_open(p)]
    if taken:
        pytest.skip(f"ports {taken} already in use on this machine; the default config needs 4317 and 4318")
    instance = oxcol(None, args=[], ready_port=4317)
    assert poll(lambda: port_open(4318), timeout=10), "default config does not listen on 127.0.0.1:4318"
    send("grpc", "metrics", telemetry, "127.0.0.1:4317", "http://127.0.0.1:4318")
    send("http", "traces", telemetry, "127.0.0.1:4317", "http://127.0.0.1:4318")
    points, spans = telemetry.count("metrics"), telemetry.count("traces")

    def summarised():
        text = instance.stdout() + instance.stderr()
        return _total(POINTS, text) >= points and _total(SPANS, text) >= spans

    assert poll(summarised, timeout=10), (
        f"within 10 s the debug summary should mention {points} data points and {spans} spans\n{instance.output()}"
    )
    text = instance.stdout() + instance.stderr()
    # The default config also scrapes oxcol's own cgroup and smaps into the metrics
    # pipeline, so the metrics summary counts those points too; spans come only from OTLP.
    assert _total(POINTS, text) >= points, f"summary counts {_total(POINTS, text)} data points, sent {points}"
    assert _total(SPANS, text) == spans, f"summary counts {_total(SPANS, text)} spans, sent {spans}"
