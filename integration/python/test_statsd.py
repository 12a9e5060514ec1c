"""A real StatsD client (the `statsd` package from PyPI) -> oxcol's `statsd` receiver over
UDP and TCP -> OTLP -> sink: counters (with increments, decrements and a sample rate),
gauges (set and +/- deltas), timers (as a summary) and sets arrive aggregated over one
interval with the Collector's names, types and temporality. The interval is long, so
everything falls in one interval, released by the flush at shutdown."""

from __future__ import annotations

import random
import time

import pytest
import statsd

from helpers import free_port, metric_value, otlp_exporter, pipeline_config, poll, scrape

pytestmark = pytest.mark.oxcol

DELTA = 1  # AGGREGATION_TEMPORALITY_DELTA


def points_by_name(requests):
    """name -> list of (kind, point) over every request."""
    found = {}
    for request in requests:
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                scope = scope_metrics.scope.name
                assert scope == "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/statsdreceiver"
                for metric in scope_metrics.metrics:
                    kind = metric.WhichOneof("data")
                    data = getattr(metric, kind)
                    for point in data.data_points:
                        found.setdefault(metric.name, []).append((kind, data, point))
    return found


def send_everything(client, prefix: str):
    client.incr(f"{prefix}.jobs", 3)
    client.incr(f"{prefix}.jobs")
    client.decr(f"{prefix}.jobs")
    client.gauge(f"{prefix}.temp", 20)
    client.gauge(f"{prefix}.temp", 5, delta=True)
    client.gauge(f"{prefix}.temp", -2, delta=True)
    for ms in (10, 20, 30, 40):
        client.timing(f"{prefix}.latency", ms)
    for member in ("alice", "bob", "alice"):
        client.set(f"{prefix}.users", member)
    # A sampled counter: the client sends `|@0.5` (random() is pinned to 0 below).
    client.incr(f"{prefix}.sampled", 1, rate=0.5)


def test_statsd_client_over_udp_and_tcp(sink, ports, oxcol, monkeypatch):
    udp_port, tcp_port = free_port(), free_port()
    config = pipeline_config(ports, otlp_exporter(sink))
    mapping = [
        {"statsd_type": "timer", "observer_type": "summary", "summary": {"percentiles": [0, 50, 100]}},
        {"statsd_type": "histogram", "observer_type": "histogram"},
    ]
    config["receivers"]["statsd/udp"] = {
        "endpoint": f"127.0.0.1:{udp_port}",
        "aggregation_interval": "60s",
        "timer_histogram_mapping": mapping,
    }
    config["receivers"]["statsd/tcp"] = {
        "endpoint": f"127.0.0.1:{tcp_port}",
        "transport": "tcp",
        "aggregation_interval": "60s",
        "is_monotonic_counter": True,
        "timer_histogram_mapping": mapping,
    }
    config["service"]["pipelines"]["metrics"]["receivers"] = ["otlp", "statsd/udp", "statsd/tcp"]
    instance = oxcol(config)

    monkeypatch.setattr(random, "random", lambda: 0.0)
    udp = statsd.StatsClient("127.0.0.1", udp_port)
    send_everything(udp, "udp")
    tcp = statsd.TCPStatsClient("127.0.0.1", tcp_port, timeout=5)
    send_everything(tcp, "tcp")
    tcp.close()
    # A malformed line over UDP is counted and skipped.
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.sendto(b"not-a-statsd-line", ("127.0.0.1", udp_port))

    lines_per_client = 3 + 3 + 4 + 3 + 1
    for receiver, expected in (("statsd/udp", lines_per_client), ("statsd/tcp", lines_per_client)):
        assert poll(
            lambda: (metric_value(scrape(ports), "otelcol_receiver_received_statsd_metrics", receiver=receiver, parse_success="true") or 0) >= expected,
            timeout=15,
        ), f"{receiver} did not read every line\n{instance.output()}"
    assert poll(
        lambda: metric_value(scrape(ports), "otelcol_receiver_received_statsd_metrics", receiver="statsd/udp", parse_success="false") == 1,
        timeout=10,
    )
    assert sink.item_count("metrics") == 0, "nothing is released before the interval ends"

    # Shutdown ends the interval: its metrics are flushed before the pipelines stop.
    instance.stop()
    assert instance.returncode == 0, instance.output()
    found = points_by_name(sink.requests("metrics"))

    for prefix, monotonic in (("udp", False), ("tcp", True)):
        ((kind, data, point),) = found[f"{prefix}.jobs"]
        assert kind == "sum" and data.aggregation_temporality == DELTA and data.is_monotonic == monotonic
        assert point.as_int == 3 + 1 - 1
        assert point.start_time_unix_nano < point.time_unix_nano

        ((kind, _, point),) = found[f"{prefix}.sampled"]
        assert point.as_int == 2, "1 at rate 0.5 counts 2"

        ((kind, _, point),) = found[f"{prefix}.temp"]
        assert kind == "gauge" and point.as_double == 23.0

        ((kind, _, point),) = found[f"{prefix}.latency"]
        assert kind == "summary"
        assert point.count == 4 and point.sum == 100.0
        assert [(q.quantile, q.value) for q in point.quantile_values] == [(0.0, 10.0), (0.5, 20.0), (1.0, 40.0)]

        ((kind, _, point),) = found[f"{prefix}.users"]
        assert kind == "gauge" and point.as_int == 2, "two distinct members"


def test_statsd_interval_flush_while_running(sink, ports, oxcol):
    """With a short interval, counts arrive while oxcol runs, one interval after another."""
    udp_port = free_port()
    config = pipeline_config(ports, otlp_exporter(sink))
    config["receivers"]["statsd"] = {"endpoint": f"127.0.0.1:{udp_port}", "aggregation_interval": "500ms"}
    config["service"]["pipelines"]["metrics"]["receivers"] = ["otlp", "statsd"]
    instance = oxcol(config)
    client = statsd.StatsClient("127.0.0.1", udp_port)
    for _ in range(5):
        client.incr("ticks")
    assert sink.wait_for_items("metrics", 1, timeout=10) >= 1, instance.output()
    time.sleep(0.7)
    client.incr("ticks", 10)
    deadline = time.monotonic() + 10
    total = 0
    while time.monotonic() < deadline:
        total = sum(p.as_int for _, _, p in points_by_name(sink.requests("metrics")).get("ticks", []))
        if total >= 15:
            break
        time.sleep(0.1)
    assert total == 15, instance.output()
    assert len(points_by_name(sink.requests("metrics"))["ticks"]) >= 2, "two intervals, two points"
