"""The OpenTelemetry Python SDK's Zipkin JSON exporter -> oxcol's `zipkin` receiver ->
OTLP -> sink: every SDK span arrives with its ids, name, kind, times and attributes,
translated as the Collector's zipkin receiver does."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.zipkin.json import ZipkinExporter
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind

from helpers import free_port, otlp_exporter, pipeline_config

pytestmark = pytest.mark.oxcol

# Zipkin has no INTERNAL kind: the SDK sends none, and the receiver maps none to UNSPECIFIED.
KINDS = {SpanKind.SERVER: 2, SpanKind.CLIENT: 3, SpanKind.PRODUCER: 4, SpanKind.CONSUMER: 5, SpanKind.INTERNAL: 0}


def attribute(attributes, key):
    for kv in attributes:
        if kv.key == key:
            return kv.value.string_value
    return None


def test_sdk_zipkin_json_spans_arrive_as_otlp(telemetry, sink, ports, oxcol):
    zipkin_port = free_port()
    config = pipeline_config(ports, otlp_exporter(sink))
    config["receivers"]["zipkin"] = {"endpoint": f"127.0.0.1:{zipkin_port}"}
    config["service"]["pipelines"]["traces"]["receivers"] = ["otlp", "zipkin"]
    oxcol(config)

    exporter = ZipkinExporter(endpoint=f"http://127.0.0.1:{zipkin_port}/api/v2/spans")
    # The SDK's exporter names every span of one export after the first span's service,
    # so each service's spans go in their own export.
    services = {}
    for span in telemetry.spans:
        services.setdefault(span.resource.attributes["service.name"], []).append(span)
    for spans in services.values():
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    assert sink.wait_for_items("traces", len(telemetry.spans)) == len(telemetry.spans)

    arrived = {}
    for request in sink.requests("traces"):
        for resource_spans in request.resource_spans:
            service = attribute(resource_spans.resource.attributes, "service.name")
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    arrived[(span.trace_id, span.span_id)] = (service, span)
    assert len(arrived) == len(telemetry.spans)
    for sdk_span in telemetry.spans:
        context = sdk_span.get_span_context()
        key = (context.trace_id.to_bytes(16, "big"), context.span_id.to_bytes(8, "big"))
        service, span = arrived[key]
        assert service == sdk_span.resource.attributes["service.name"]
        assert span.name == sdk_span.name
        assert span.kind == KINDS[sdk_span.kind], sdk_span.name
        if sdk_span.parent is not None:
            assert span.parent_span_id == sdk_span.parent.span_id.to_bytes(8, "big")
        # Zipkin carries microseconds.
        assert abs(span.start_time_unix_nano - sdk_span.start_time) < 1000
        assert abs(span.end_time_unix_nano - sdk_span.end_time) < 1000
        assert len(span.events) == len(sdk_span.events)
        for key_name, value in sdk_span.attributes.items():
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                # Zipkin tags are strings; parse_string_tags is off.
                assert attribute(span.attributes, key_name) == str(value), key_name

    root = next(span for _, span in arrived.values() if span.name == "GET /api/items")
    # The SDK writes otel.status_code=ERROR (a name the Collector's translator does not
    # know) and error=<description>: any `error` tag makes the status an error, and a
    # value other than "true" also stays an attribute, as with the Collector.
    assert attribute(root.attributes, "error") == "upstream returned 500"
    assert root.status.code == 2
