"""`oxcol` with no arguments: the embedded default config runs, takes OTLP on
127.0.0.1:4317/4318, prints the memory picture (its metrics pipeline ends in
`memory_picture`) and a summary of the traces and logs it got through `debug`."""

from __future__ import annotations

import re

import pytest

from helpers import http_get, poll, port_open
from telemetry import send

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
        return _total(SPANS, text) >= spans and "oxcol memory picture" in text

    # The picture prints every 10 s (and first after the first scrape of oxcol's cgroup).
    assert poll(summarised, timeout=25), (
        f"within 25 s the memory picture should print and the debug summary should mention {spans} spans\n{instance.output()}"
    )
    text = instance.stdout() + instance.stderr()
    assert _total(SPANS, text) == spans, f"summary counts {_total(SPANS, text)} spans, sent {spans}"
    assert "status page: http://127.0.0.1:55679/" in text, instance.output()

    # The OTLP metrics were accepted into the metrics pipeline (they feed the picture).
    def accepted():
        status, body, _ = http_get("http://127.0.0.1:8888/metrics")
        if status != 200:
            return 0.0
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in body.decode().splitlines()
            if line.startswith("otelcol_receiver_accepted_metric_points{") and 'receiver="otlp"' in line
        )

    assert poll(lambda: accepted() >= points, timeout=10), f"accepted {accepted()} metric points over OTLP, sent {points}"
