"""Bad input over HTTP (and one over gRPC): a clear status, and oxcol keeps serving."""

from __future__ import annotations

import gzip
import http.client

import grpc
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_svc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as metrics_grpc

from helpers import otlp_exporter, pipeline_config

LIMIT = 100_000  # max_request_body_size configured on the HTTP receiver, bytes
PROTOBUF = "application/x-protobuf"


def post(port: int, body: bytes, headers: dict):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/v1/metrics", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def good_request() -> bytes:
    request = metrics_svc.ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="good.after.bad")
    metric.gauge.data_points.add(as_int=1)
    return request.SerializeToString()


@pytest.fixture
def running(sink, ports, oxcol):
    config = pipeline_config(
        ports, otlp_exporter(sink), http_receiver={"max_request_body_size": LIMIT}
    )
    config["receivers"]["otlp"]["protocols"]["grpc"]["max_recv_msg_size_mib"] = 1
    oxcol(config)
    return ports


def bomb() -> bytes:
    return gzip.compress(b"\x00" * (LIMIT * 50), compresslevel=9)


CASES = {
    "malformed_protobuf": (b"\x0a\xff\xff\xff\xff\x0f garbage", {"Content-Type": PROTOBUF}, {400}),
    "wrong_content_type": (good_request(), {"Content-Type": "text/plain"}, {415}),
    "body_too_large": (b"\x00" * (LIMIT * 2), {"Content-Type": PROTOBUF}, {413}),
    "gzip_bomb": (None, {"Content-Type": PROTOBUF, "Content-Encoding": "gzip"}, {400, 413}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_http_input_then_good(case, running, sink):
    body, headers, statuses = CASES[case]
    if case == "gzip_bomb":
        body = bomb()
        assert len(body) < 16 * 1024
    status, response, response_headers = post(running.http, body, headers)
    assert status in statuses, f"{case}: status {status}, want one of {statuses}; body {response[:300]!r}"
    if case == "malformed_protobuf":
        assert response_headers.get("content-type", "").startswith(PROTOBUF), response_headers
        parsed = status_pb2.Status.FromString(response)
        assert parsed.message, f"400 body is not a google.rpc.Status with a message: {response[:300]!r}"
    status, response, _ = post(running.http, good_request(), {"Content-Type": PROTOBUF})
    assert status == 200, f"after {case}, a good request got {status} {response[:300]!r}"
    assert sink.wait_for_items("metrics", 1) == 1, "the good request after the bad one did not reach the sink"


def test_grpc_message_too_large_then_good(running, sink):
    channel = grpc.insecure_channel(f"127.0.0.1:{running.grpc}")
    stub = metrics_grpc.MetricsServiceStub(channel)
    request = metrics_svc.ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="big", description="x" * (2 << 20))
    metric.gauge.data_points.add(as_int=1)
    with pytest.raises(grpc.RpcError) as error:
        stub.Export(request, timeout=10)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.value
    stub.Export(metrics_svc.ExportMetricsServiceRequest.FromString(good_request()), timeout=10)
    assert sink.wait_for_items("metrics", 1) == 1
    channel.close()
