"""Real telemetry from the OpenTelemetry Python SDK, and the real ways to send it.

`make_telemetry()` records metrics, spans and log records once with the SDK
(in-memory readers/exporters). `send()` hands the same SDK objects to the SDK's
own OTLP exporters (gRPC or HTTP/protobuf, optionally gzip), or, for OTLP/JSON
which the SDK does not ship, encodes the SDK's protobuf request as OTLP JSON and
POSTs it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from opentelemetry import trace as trace_api
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.metrics import Observation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from helpers import http_post
from sink import count_items, to_otlp_json

SCHEMA_URL = "https://opentelemetry.io/schemas/1.26.0"


@dataclass
class Telemetry:
    metrics_data: MetricsData
    spans: list
    logs: list

    def sdk_data(self, signal: str):
        return {"metrics": self.metrics_data, "traces": self.spans, "logs": self.logs}[signal]

    def request(self, signal: str):
        """The OTLP protobuf request the SDK's exporters send for this data."""
        if signal == "metrics":
            return encode_metrics(self.metrics_data)
        if signal == "traces":
            return encode_spans(self.spans)
        return encode_logs(self.logs)

    def count(self, signal: str) -> int:
        return count_items(signal, self.request(signal))


def _resource(service: str, extra: dict) -> Resource:
    return Resource.create({"service.name": service, "service.version": "1.0.0", **extra})


def _record_metrics(resource: Resource, scope_name: str, seed: int) -> MetricsData:
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        resource=resource,
        metric_readers=[reader],
        views=[
            View(instrument_name="e2e.exp_histogram", aggregation=ExponentialBucketHistogramAggregation()),
            View(instrument_name="*"),
        ],
    )
    meter = provider.get_meter(scope_name, "1.2.3", schema_url=SCHEMA_URL, attributes={"scope.kind": "e2e"})
    other_meter = provider.get_meter(scope_name + ".other")

    counter = meter.create_counter("e2e.requests", unit="{request}", description="Requests handled")
    updown = meter.create_up_down_counter("e2e.queue.depth", unit="{item}", description="Items waiting")
    histogram = meter.create_histogram("e2e.duration", unit="s", description="Request duration")
    exp_histogram = meter.create_histogram("e2e.exp_histogram", unit="By", description="Payload sizes")
    float_counter = other_meter.create_counter("e2e.bytes", unit="By")

    for i in range(4):
        attributes = {
            "http.route": f"/api/{i}",
            "http.status_code": 200 + i,
            "ok": i % 2 == 0,
            "ratio": 0.25 * i,
            "tags": ["a", "b", str(i)],
            "ints": [seed, i],
        }
        counter.add(i + 1 + seed, attributes)
        updown.add(5 - 2 * i, {"queue": f"q{i % 2}"})
        histogram.record(0.001 * (i + 1) * (seed + 1), {"http.route": f"/api/{i % 2}"})
        histogram.record(2.5 * (i + 1), {"http.route": f"/api/{i % 2}"})
        exp_histogram.record(2 ** (i + 3) + seed, {"direction": "in"})
        float_counter.add(1.5 * i + 0.125, {"direction": "out" if i % 2 else "in"})

    def observe_temperature(options):
        return [
            Observation(21.5 + seed, {"room": "kitchen", "floor": 1}),
            Observation(-3.25, {"room": "garage", "floor": 0}),
        ]

    def observe_count(options):
        return [Observation(7 + seed, {"state": "idle"}), Observation(3, {"state": "busy"})]

    meter.create_observable_gauge("e2e.temperature", [observe_temperature], unit="Cel", description="Temperature")
    meter.create_observable_up_down_counter("e2e.workers", [observe_count], unit="{worker}")
    meter.create_observable_counter("e2e.cpu.time", [lambda options: [Observation(12.5 + seed, {"cpu": "0"})]], unit="s")

    data = reader.get_metrics_data()
    provider.shutdown()
    return data


def _record_spans(resource: Resource, scope_name: str) -> list:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer(scope_name, "2.0.0", schema_url=SCHEMA_URL, attributes={"scope.kind": "e2e"})

    with tracer.start_as_current_span("linked-target", kind=SpanKind.PRODUCER) as target:
        target.set_attribute("messaging.system", "kafka")
    link_context = target.get_span_context()

    with tracer.start_as_current_span(
        "GET /api/items",
        kind=SpanKind.SERVER,
        attributes={"http.method": "GET", "http.status_code": 500, "retry": True, "weights": [0.5, 1.5]},
        links=[Link(link_context, {"link.reason": "follows", "link.n": 3})],
    ) as root:
        root.add_event("cache.miss", {"cache.key": "items:1", "size": 42})
        root.add_event("no-attributes")
        with tracer.start_as_current_span("SELECT items", kind=SpanKind.CLIENT) as child:
            child.set_attribute("db.system", "postgresql")
            child.set_attribute("db.rows", 17)
            child.set_status(Status(StatusCode.OK))
        with tracer.start_as_current_span("render", kind=SpanKind.INTERNAL) as internal:
            internal.set_attribute("template", "items.html")
            try:
                raise ValueError("template exploded")
            except ValueError as error:
                internal.record_exception(error)
        root.set_status(Status(StatusCode.ERROR, "upstream returned 500"))

    consumer = tracer.start_span("consume", kind=SpanKind.CONSUMER, attributes={"partition": 3})
    consumer.end()

    spans = list(exporter.get_finished_spans())
    provider.shutdown()
    return spans


def _record_logs(resource: Resource, scope_name: str) -> list:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger(scope_name, "3.0.0", schema_url=SCHEMA_URL, attributes={"scope.kind": "e2e"})
    other_logger = provider.get_logger(scope_name + ".other")

    tracer_provider = TracerProvider(resource=resource)
    tracer = tracer_provider.get_tracer("log-context")
    base = 1_700_000_000_000_000_000
    with tracer.start_as_current_span("with-logs") as span:
        context = trace_api.set_span_in_context(span)
        logger.emit(
            timestamp=base + 1,
            observed_timestamp=base + 2,
            context=context,
            severity_number=SeverityNumber.WARN,
            severity_text="WARN",
            body="disk almost full",
            attributes={"disk": "/dev/sda1", "used.ratio": 0.93, "mounted": True},
        )
    logger.emit(
        timestamp=base + 10,
        observed_timestamp=base + 11,
        severity_number=SeverityNumber.ERROR,
        severity_text="ERROR",
        body={"event": "login.failed", "user": {"id": 42, "name": "ada"}, "attempts": [1, 2, 3]},
        attributes={"source.ip": "10.0.0.1"},
        event_name="user.login",
    )
    logger.emit(timestamp=base + 20, observed_timestamp=base + 21, severity_number=SeverityNumber.INFO, body=12345)
    other_logger.emit(timestamp=base + 30, observed_timestamp=base + 31, body=["x", 1, 2.5, False])
    other_logger.emit(timestamp=base + 40, observed_timestamp=base + 41, body=b"\x00\x01binary")
    tracer_provider.shutdown()

    logs = list(exporter.get_finished_logs())
    provider.shutdown()
    return logs


def make_telemetry() -> Telemetry:
    """Two services (two resources), several scopes, every instrument kind."""
    resource_a = _resource("e2e-checkout", {"deployment.environment": "test", "host.cpu.count": 2})
    resource_b = _resource("e2e-inventory", {"deployment.environment": "test", "k8s.pod.labels": ["a", "b"]})
    metrics_a = _record_metrics(resource_a, "e2e.meter", seed=1)
    metrics_b = _record_metrics(resource_b, "e2e.meter", seed=2)
    metrics = MetricsData(resource_metrics=[*metrics_a.resource_metrics, *metrics_b.resource_metrics])
    spans = _record_spans(resource_a, "e2e.tracer") + _record_spans(resource_b, "e2e.tracer")
    logs = _record_logs(resource_a, "e2e.logger") + _record_logs(resource_b, "e2e.logger")
    return Telemetry(metrics, spans, logs)


# ---------------------------------------------------------------------------
# sending

INBOUND = ("grpc", "grpc_gzip", "http", "http_gzip", "json")


def _grpc_exporter(signal: str, endpoint: str, gzip: bool):
    from grpc import Compression

    compression = Compression.Gzip if gzip else Compression.NoCompression
    if signal == "metrics":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as E
    elif signal == "traces":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as E
    else:
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as E
    return E(endpoint=endpoint, insecure=True, compression=compression, timeout=10)


def _http_exporter(signal: str, base_url: str, gzip: bool):
    from opentelemetry.exporter.otlp.proto.http import Compression

    compression = Compression.Gzip if gzip else Compression.NoCompression
    if signal == "metrics":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as E
    elif signal == "traces":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as E
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as E
    return E(endpoint=f"{base_url}/v1/{signal}", compression=compression, timeout=10)


def send(inbound: str, signal: str, telemetry: Telemetry, grpc_endpoint: str, http_base_url: str):
    """Send one signal's data the given way. Raises AssertionError unless accepted.
    Returns the response (JSON dict for 'json', else the SDK's result)."""
    data = telemetry.sdk_data(signal)
    if inbound in ("grpc", "grpc_gzip"):
        exporter = _grpc_exporter(signal, grpc_endpoint, inbound == "grpc_gzip")
    elif inbound in ("http", "http_gzip"):
        exporter = _http_exporter(signal, http_base_url, inbound == "http_gzip")
    elif inbound == "json":
        body = json.dumps(to_otlp_json(telemetry.request(signal))).encode()
        status, response, headers = http_post(
            f"{http_base_url}/v1/{signal}", body, {"Content-Type": "application/json"}
        )
        assert status == 200, f"OTLP/JSON POST /v1/{signal} -> {status}: {response[:500]!r}"
        content_type = headers.get("content-type", "")
        assert content_type.startswith("application/json"), f"JSON request answered with {content_type!r}"
        try:
            return json.loads(response)
        except ValueError as error:
            raise AssertionError(f"OTLP/JSON response is not JSON: {response[:200]!r}") from error
    else:
        raise ValueError(inbound)
    try:
        result = exporter.export(data)
    finally:
        exporter.shutdown()
    assert result.name == "SUCCESS", f"SDK {inbound} export of {signal} returned {result}"
    return result
