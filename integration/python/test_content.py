"""The core contract: what the SDK sends to oxcol arrives at the next OTLP endpoint
equal in content (every resource, scope, metric, point, span and log record with its
attributes), for metrics, traces and logs, by every inbound way, through both
exporters, with gzip and zstd on the way out."""

from __future__ import annotations

import pytest

from canonical import canonical, describe_difference
from helpers import otlp_exporter, otlphttp_exporter, pipeline_config
from sink import SIGNALS
from telemetry import INBOUND, send

OUTBOUND = {
    "otlp_gzip": lambda sink: otlp_exporter(sink, compression="gzip"),
    "otlp_none": lambda sink: otlp_exporter(sink, compression="none"),
    "otlphttp_zstd": lambda sink: otlphttp_exporter(sink, compression="zstd"),
    "otlphttp_gzip": lambda sink: otlphttp_exporter(sink, compression="gzip"),
}

CASES = [(inbound, outbound) for inbound in INBOUND for outbound in ("otlp_gzip", "otlphttp_zstd")] + [
    ("grpc", "otlp_none"),
    ("http", "otlphttp_gzip"),
]


def deliver_and_compare(sink, telemetry, reference, send_one):
    for signal in SIGNALS:
        send_one(signal)
    failures = []
    for signal in SIGNALS:
        expected_count = telemetry.count(signal)
        got = sink.wait_for_items(signal, expected_count, timeout=15)
        actual = canonical(signal, sink.requests(signal))
        if got < expected_count:
            failures.append(f"{signal}: only {got} of {expected_count} items arrived within 15 s")
        difference = describe_difference(reference[signal], actual)
        if difference:
            failures.append(f"{signal}: {difference}")
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("inbound,outbound", CASES, ids=[f"{i}-to-{o}" for i, o in CASES])
def test_content_equal(inbound, outbound, telemetry, reference, sink, ports, oxcol):
    oxcol(pipeline_config(ports, OUTBOUND[outbound](sink)))
    deliver_and_compare(
        sink,
        telemetry,
        reference,
        lambda signal: send(inbound, signal, telemetry, f"127.0.0.1:{ports.grpc}", f"http://127.0.0.1:{ports.http}"),
    )
    received = sink.received()
    if outbound.startswith("otlp_"):
        assert {r.transport for r in received} == {"grpc"}
        if outbound == "otlp_gzip":
            assert sink.grpc_uncompressed_messages == 0 and sink.grpc_compressed_messages == len(received), (
                f"compression: gzip on the otlp exporter, but the sink saw {sink.grpc_uncompressed_messages} "
                f"uncompressed gRPC messages and {sink.grpc_compressed_messages} compressed ones"
            )
        else:
            assert sink.grpc_compressed_messages == 0
    else:
        assert {r.transport for r in received} == {"http"}
        want = outbound.split("_")[1]
        encodings = {r.encoding for r in received}
        assert encodings == {want}, f"otlphttp compression: {want}, sink saw Content-Encoding {encodings}"
        assert {r.content_type for r in received} == {"application/x-protobuf"}
