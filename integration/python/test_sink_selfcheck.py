"""The suite checks itself, without oxcol: the SDK's own exporters, sent straight to
the sink, must yield the same canonical form as the SDK's encoder, by every inbound
way the oxcol tests use; and the canonical form must see a change, a loss and a
duplicate. If these fail, an oxcol failure elsewhere means nothing."""

from __future__ import annotations

import gzip
import json
from collections import Counter

import grpc
import pytest
import zstandard
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_svc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as metrics_grpc

from canonical import canonical, describe_difference
from helpers import http_post
from sink import SIGNALS, Sink, to_otlp_json
from telemetry import INBOUND, send


def test_telemetry_covers_every_kind(telemetry):
    request = telemetry.request("metrics")
    kinds = Counter()
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kinds[metric.WhichOneof("data")] += 1
    assert set(kinds) == {"sum", "gauge", "histogram", "exponential_histogram"}, kinds
    assert len(request.resource_metrics) == 2
    spans = [s for rs in telemetry.request("traces").resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert any(s.links for s in spans) and any(s.events for s in spans)
    assert any(s.status.code == 2 and s.status.message for s in spans)
    assert telemetry.count("metrics") > 20 and telemetry.count("traces") >= 8 and telemetry.count("logs") >= 8


@pytest.mark.parametrize("inbound", INBOUND)
def test_sdk_to_sink_equals_encoder(inbound, telemetry, reference):
    with Sink() as sink:
        for signal in SIGNALS:
            send(inbound, signal, telemetry, sink.grpc_endpoint, sink.http_endpoint)
        for signal in SIGNALS:
            expected = canonical(signal, [telemetry.request(signal)])
            actual = canonical(signal, sink.requests(signal))
            assert actual == expected, describe_difference(expected, actual)
            assert reference[signal] == expected
        if inbound == "grpc_gzip":
            assert sink.grpc_compressed_messages == 3 and sink.grpc_uncompressed_messages == 0
        if inbound == "grpc":
            assert sink.grpc_compressed_messages == 0 and sink.grpc_uncompressed_messages == 3
        if inbound == "http_gzip":
            assert {r.encoding for r in sink.received()} == {"gzip"}
        if inbound == "json":
            assert {r.content_type for r in sink.received()} == {"application/json"}


def test_canonical_sees_differences(telemetry):
    request = telemetry.request("metrics")
    base = canonical("metrics", [request])
    # batching differently is not a difference: split every metric into its own request
    split = []
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                one = metrics_svc.ExportMetricsServiceRequest()
                new_rm = one.resource_metrics.add(resource=rm.resource, schema_url=rm.schema_url)
                new_sm = new_rm.scope_metrics.add(scope=sm.scope, schema_url=sm.schema_url)
                new_sm.metrics.add().CopyFrom(metric)
                split.append(one)
    assert canonical("metrics", split) == base
    # attribute order is not content
    reordered = type(request)()
    reordered.CopyFrom(request)
    attrs = reordered.resource_metrics[0].resource.attributes
    items = list(attrs)[::-1]
    copies = [type(items[0])() for _ in items]
    for c, i in zip(copies, items):
        c.CopyFrom(i)
    del attrs[:]
    attrs.extend(copies)
    assert canonical("metrics", [reordered]) == base
    # a changed value is
    changed = type(request)()
    changed.CopyFrom(request)
    changed.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0].as_int += 1
    assert canonical("metrics", [changed]) != base
    # a changed unit is
    changed.CopyFrom(request)
    changed.resource_metrics[0].scope_metrics[0].metrics[0].unit = "ms"
    assert canonical("metrics", [changed]) != base
    # a duplicate is
    assert canonical("metrics", [request, split[0]]) != base
    # a loss is
    assert canonical("metrics", split[1:]) != base


def test_sink_partial_success_and_failures():
    with Sink() as sink:
        sink.set_partial_success("metrics", 3, "three bad points")
        stub = metrics_grpc.MetricsServiceStub(grpc.insecure_channel(sink.grpc_endpoint))
        response = stub.Export(metrics_svc.ExportMetricsServiceRequest(), timeout=5)
        assert response.partial_success.rejected_data_points == 3
        sink.fail_next(2, grpc.StatusCode.UNAVAILABLE, 503)
        for _ in range(2):
            with pytest.raises(grpc.RpcError) as error:
                stub.Export(metrics_svc.ExportMetricsServiceRequest(), timeout=5)
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        sink.fail_next(1, http_status=503)
        status, _, _ = http_post(
            f"{sink.http_endpoint}/v1/metrics", b"", {"Content-Type": "application/x-protobuf"}
        )
        assert status == 503
        body = zstandard.ZstdCompressor().compress(metrics_svc.ExportMetricsServiceRequest().SerializeToString())
        status, response, _ = http_post(
            f"{sink.http_endpoint}/v1/metrics",
            body,
            {"Content-Type": "application/x-protobuf", "Content-Encoding": "zstd"},
        )
        assert status == 200
        assert metrics_svc.ExportMetricsServiceResponse.FromString(response).partial_success.rejected_data_points == 3
        status, response, _ = http_post(
            f"{sink.http_endpoint}/v1/metrics",
            gzip.compress(b"{}"),
            {"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        assert status == 200 and json.loads(response)["partialSuccess"]["rejectedDataPoints"] == "3"
        assert [r.encoding for r in sink.received()] == ["", "zstd", "gzip"]
        assert sink.failed_requests == 3
