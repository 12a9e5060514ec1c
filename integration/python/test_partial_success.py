"""Partial success is passed on and counted, not retried; empty requests succeed."""

from __future__ import annotations

import json
import time

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_svc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc as logs_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_svc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as metrics_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_svc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_grpc

from helpers import http_post, metric_value, otlp_exporter, pipeline_config, poll, scrape
from sink import SIGNALS
from telemetry import send

FAILED_METRIC = {
    "metrics": "otelcol_exporter_send_failed_metric_points",
    "traces": "otelcol_exporter_send_failed_spans",
    "logs": "otelcol_exporter_send_failed_log_records",
}
REJECTED = {"metrics": 5, "traces": 2, "logs": 3}


def test_partial_success_counted_not_retried(telemetry, sink, ports, oxcol):
    for signal in SIGNALS:
        sink.set_partial_success(signal, REJECTED[signal], f"sink rejected some {signal}")
    retry = {"enabled": True, "initial_interval": "50ms", "max_interval": "100ms", "max_elapsed_time": "5s"}
    oxcol(pipeline_config(ports, otlp_exporter(sink, retry_on_failure=retry)))
    for signal in SIGNALS:
        send("grpc", signal, telemetry, f"127.0.0.1:{ports.grpc}", f"http://127.0.0.1:{ports.http}")
    for signal in SIGNALS:
        assert sink.wait_for_items(signal, telemetry.count(signal)) == telemetry.count(signal)

    def counted():
        samples = scrape(ports)
        return all(
            metric_value(samples, FAILED_METRIC[s], exporter="otlp") == REJECTED[s] for s in SIGNALS
        ) and samples

    samples = poll(counted, timeout=10) or scrape(ports)
    for signal in SIGNALS:
        value = metric_value(samples, FAILED_METRIC[signal], exporter="otlp")
        assert value == REJECTED[signal], (
            f"{FAILED_METRIC[signal]}{{exporter=\"otlp\"}} = {value}, want {REJECTED[signal]} "
            f"(the sink answered partial_success rejected={REJECTED[signal]})"
        )
    # A retry would come after initial_interval (50 ms); watch for one well past that.
    time.sleep(1.0)
    for signal in SIGNALS:
        requests = sink.received(signal)
        assert len(requests) == 1, f"{signal}: sink got {len(requests)} requests; a partial success must not be retried"


def test_empty_requests_succeed(sink, ports, oxcol):
    oxcol(pipeline_config(ports, otlp_exporter(sink)))
    base = f"http://127.0.0.1:{ports.http}"
    for signal in SIGNALS:
        status, body, _ = http_post(f"{base}/v1/{signal}", b"", {"Content-Type": "application/x-protobuf"})
        assert status == 200, f"empty protobuf body to /v1/{signal} -> {status} {body[:200]!r}"
        status, body, headers = http_post(f"{base}/v1/{signal}", b"{}", {"Content-Type": "application/json"})
        assert status == 200, f"empty JSON object to /v1/{signal} -> {status} {body[:200]!r}"
        json.loads(body)
    channel = grpc.insecure_channel(f"127.0.0.1:{ports.grpc}")
    metrics_grpc.MetricsServiceStub(channel).Export(metrics_svc.ExportMetricsServiceRequest(), timeout=5)
    trace_grpc.TraceServiceStub(channel).Export(trace_svc.ExportTraceServiceRequest(), timeout=5)
    logs_grpc.LogsServiceStub(channel).Export(logs_svc.ExportLogsServiceRequest(), timeout=5)
    # a resource with no scopes, a scope with no metrics
    request = metrics_svc.ExportMetricsServiceRequest()
    request.resource_metrics.add().scope_metrics.add()
    request.resource_metrics.add()
    metrics_grpc.MetricsServiceStub(channel).Export(request, timeout=5)
    channel.close()
