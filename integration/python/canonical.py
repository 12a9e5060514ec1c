"""A canonical form of OTLP requests, for comparing two streams by content.

Requests are flattened to one entry per data point / span / log record, each
carrying its resource, its scope and (for points) its metric's identity, so that
two streams compare equal however a batcher merged or split the requests. The
result is a Counter: duplicated items must be duplicated on both sides.
Attribute lists are sorted by key (their order is not content); nothing else is
normalised: a changed value, a lost field or a lost item shows as a difference.
"""

from __future__ import annotations

from collections import Counter

from google.protobuf import text_format
from google.protobuf.descriptor import FieldDescriptor

_KEY_VALUE = "opentelemetry.proto.common.v1.KeyValue"


def _is_repeated(field) -> bool:
    flag = getattr(field, "is_repeated", None)
    if flag is not None:
        return flag
    return field.label == FieldDescriptor.LABEL_REPEATED


def _normalised(message):
    copy = type(message)()
    copy.CopyFrom(message)
    _sort_attributes(copy)
    return copy


def _sort_attributes(message):
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if _is_repeated(field):
            for item in value:
                _sort_attributes(item)
            if field.name == "attributes" and field.message_type.full_name == _KEY_VALUE:
                ordered = sorted(value, key=lambda kv: kv.key)
                copies = []
                for kv in ordered:
                    c = type(kv)()
                    c.CopyFrom(kv)
                    copies.append(c)
                del value[:]
                value.extend(copies)
        else:
            _sort_attributes(value)


def _text(message) -> str:
    return text_format.MessageToString(_normalised(message), as_one_line=True)


def canonical_metrics(requests) -> Counter:
    items = Counter()
    for request in requests:
        for rm in request.resource_metrics:
            resource = (_text(rm.resource), rm.schema_url)
            for sm in rm.scope_metrics:
                scope = (_text(sm.scope), sm.schema_url)
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    data = getattr(metric, kind) if kind else None
                    identity = metric.__class__()
                    identity.CopyFrom(metric)
                    identity.ClearField(kind) if kind else None
                    meta = (
                        _text(identity),
                        kind,
                        getattr(data, "aggregation_temporality", None),
                        getattr(data, "is_monotonic", None),
                    )
                    for point in data.data_points if data is not None else ():
                        items[("metric", resource, scope, meta, _text(point))] += 1
    return items


def canonical_traces(requests) -> Counter:
    items = Counter()
    for request in requests:
        for rs in request.resource_spans:
            resource = (_text(rs.resource), rs.schema_url)
            for ss in rs.scope_spans:
                scope = (_text(ss.scope), ss.schema_url)
                for span in ss.spans:
                    items[("span", resource, scope, _text(span))] += 1
    return items


def canonical_logs(requests) -> Counter:
    items = Counter()
    for request in requests:
        for rl in request.resource_logs:
            resource = (_text(rl.resource), rl.schema_url)
            for sl in rl.scope_logs:
                scope = (_text(sl.scope), sl.schema_url)
                for record in sl.log_records:
                    items[("log", resource, scope, _text(record))] += 1
    return items


CANONICAL = {"metrics": canonical_metrics, "traces": canonical_traces, "logs": canonical_logs}


def canonical(signal: str, requests) -> Counter:
    return CANONICAL[signal](requests)


def describe_difference(expected: Counter, actual: Counter, limit: int = 5) -> str:
    """A readable account of how two canonical forms differ ('' when equal)."""
    if expected == actual:
        return ""
    missing = expected - actual
    extra = actual - expected
    lines = [
        f"{sum(expected.values())} items expected, {sum(actual.values())} received; "
        f"{sum(missing.values())} missing or changed, {sum(extra.values())} unexpected or changed"
    ]
    for title, diff in (("missing (expected, not received)", missing), ("unexpected (received, not expected)", extra)):
        if diff:
            lines.append(f"-- {title}:")
            for item, count in list(diff.items())[:limit]:
                lines.append(f"  x{count} " + " | ".join(str(part) for part in item)[:1500])
    return "\n".join(lines)
