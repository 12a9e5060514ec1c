"""oxcol's own metrics, as Prometheus text, with the Collector's names and labels."""

from __future__ import annotations

import pytest

from helpers import has_metric, metric_value, otlp_exporter, pipeline_config, poll, scrape
from sink import SIGNALS
from telemetry import send

ITEM = {"metrics": "metric_points", "traces": "spans", "logs": "log_records"}


@pytest.mark.parametrize("form", ["address", "readers"])
def test_counts_match_what_was_sent(form, telemetry, sink, ports, oxcol):
    if form == "address":
        telemetry_config = {"metrics": {"address": f"127.0.0.1:{ports.telemetry}"}}
    else:
        telemetry_config = {
            "metrics": {
                "readers": [{"pull": {"exporter": {"prometheus": {"host": "127.0.0.1", "port": ports.telemetry}}}}]
            }
        }
    oxcol(pipeline_config(ports, otlp_exporter(sink), telemetry=telemetry_config))
    for signal in SIGNALS:
        send("grpc", signal, telemetry, f"127.0.0.1:{ports.grpc}", f"http://127.0.0.1:{ports.http}")
    for signal in SIGNALS:
        assert sink.wait_for_items(signal, telemetry.count(signal)) == telemetry.count(signal)

    expected = {}
    for signal in SIGNALS:
        item = ITEM[signal]
        expected[(f"otelcol_receiver_accepted_{item}", "receiver", "otlp", "grpc")] = telemetry.count(signal)
        expected[(f"otelcol_exporter_sent_{item}", "exporter", "otlp", None)] = telemetry.count(signal)

    def current():
        samples = scrape(ports)
        values = {}
        for (name, label, component, transport) in expected:
            labels = {label: component}
            if transport:
                labels["transport"] = transport
            values[name] = metric_value(samples, name, **labels)
        return samples, values

    def settled():
        samples, values = current()
        return (samples, values) if all(values[key[0]] == want for key, want in expected.items()) else None

    samples, values = poll(settled, timeout=10) or current()
    wrong = {k[0]: (values[k[0]], v) for k, v in expected.items() if values[k[0]] != v}
    assert not wrong, "self-telemetry (name: (got, want)): " + repr(wrong)
    assert has_metric(samples, "otelcol_exporter_queue_capacity"), "otelcol_exporter_queue_capacity missing"
    rss = [v for n, _, v in samples if n.startswith("otelcol_process_memory_rss")]
    assert rss and rss[0] > 0, f"otelcol_process_memory_rss: {rss}"
