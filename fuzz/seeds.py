"""Writes the generated seeds of the fuzz corpus: OTLP protobuf and OTLP/JSON requests of
every signal and metric type, also as Kafka messages with headers (the other seeds are
copies of the repository's fixtures or written by hand; see fuzz/README.md). Run with the project's venv: `../.venv/bin/python seeds.py`."""

import os

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    path = os.path.join(HERE, "seeds", target)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, name), "wb") as f:
        f.write(data)


def attrs(kv, n=2):
    for i in range(n):
        a = kv.add()
        a.key = f"k{i}"
        a.value.string_value = f"v{i}"


def metrics_request():
    req = metrics.ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    attrs(rm.resource.attributes)
    nested = rm.resource.attributes.add()
    nested.key = "nested"
    inner = nested.value.kvlist_value.values.add()
    inner.key = "list"
    inner.value.array_value.values.add().int_value = 7
    inner.value.array_value.values.add().bytes_value = b"\x00\xff"
    sm = rm.scope_metrics.add()
    sm.scope.name = "seed"
    g = sm.metrics.add()
    g.name, g.unit = "g", "By"
    p = g.gauge.data_points.add()
    p.as_double, p.time_unix_nano = 1.5, 1_700_000_000_000_000_000
    attrs(p.attributes)
    s = sm.metrics.add()
    s.name = "s"
    s.sum.is_monotonic, s.sum.aggregation_temporality = True, 2
    for v in (1, 2):
        q = s.sum.data_points.add()
        q.as_int = v
        e = q.exemplars.add()
        e.as_double, e.trace_id = 0.5, b"\x01" * 16
    h = sm.metrics.add()
    h.name = "h"
    hp = h.histogram.data_points.add()
    hp.count, hp.sum = 3, 4.5
    hp.bucket_counts.extend([1, 1, 1])
    hp.explicit_bounds.extend([1.0, 2.0])
    e = sm.metrics.add()
    e.name = "e"
    ep = e.exponential_histogram.data_points.add()
    ep.scale, ep.count, ep.zero_count = 2, 5, 1
    ep.positive.offset = -3
    ep.positive.bucket_counts.extend([1, 2])
    ep.negative.bucket_counts.extend([1])
    u = sm.metrics.add()
    u.name = "u"
    up = u.summary.data_points.add()
    up.count, up.sum = 2, 3.0
    qv = up.quantile_values.add()
    qv.quantile, qv.value = 0.5, 1.0
    return req


def trace_request():
    req = trace.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    attrs(rs.resource.attributes)
    ss = rs.scope_spans.add()
    for i in range(3):
        sp = ss.spans.add()
        sp.trace_id, sp.span_id, sp.name, sp.kind = b"\x02" * 16, bytes([i + 1]) * 8, f"op{i}", 2
        sp.start_time_unix_nano, sp.end_time_unix_nano = 1, 2
        attrs(sp.attributes)
        ev = sp.events.add()
        ev.name = "ev"
        ln = sp.links.add()
        ln.trace_id, ln.span_id = b"\x03" * 16, b"\x04" * 8
        sp.status.code = 2
    return req


def logs_request():
    req = logs.ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    sl = rl.scope_logs.add()
    for i in range(3):
        lr = sl.log_records.add()
        lr.time_unix_nano, lr.severity_number, lr.severity_text = 5, 9, "INFO"
        lr.body.string_value = f"line {i}"
        attrs(lr.attributes)
    return req


def otlp_json(req):
    """OTLP/JSON as the spec writes it: protobuf JSON mapping, but trace and span ids as
    hex (not base64) and enums as integers."""
    import base64
    import json

    def fix(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                    node[key] = base64.b64decode(value).hex()
                else:
                    fix(value)
        elif isinstance(node, list):
            for item in node:
                fix(item)

    tree = json_format.MessageToDict(req, use_integers_for_enums=True)
    fix(tree)
    return json.dumps(tree, indent=2).encode()


# kafka_message: selector byte (signal = s % 3 in metrics, traces, logs; encoding = s / 3 % 2:
# otlp_proto, otlp_json), a byte N, N bytes of headers, then the message value.
KAFKA_HEADERS = b"tenant=acme\nsource=edge-1\nother=x\ntenant=acme-2"
for index, (name, req) in enumerate(
    (("metrics", metrics_request()), ("traces", trace_request()), ("logs", logs_request()))
):
    write("otlp_proto", name, req.SerializeToString())
    write("otlp_json", name + ".json", otlp_json(req))
    headers = KAFKA_HEADERS if index != 1 else b""
    prefix = bytes([index, len(headers)]) + headers
    write("kafka_message", name + "-proto", prefix + req.SerializeToString())
    write("kafka_message", name + "-json", bytes([index + 3]) + prefix[1:] + otlp_json(req))
write("remote_write", "metrics", metrics_request().SerializeToString())
