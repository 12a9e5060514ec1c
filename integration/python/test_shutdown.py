"""SIGTERM / SIGINT: exit 0 within a bounded time, nothing acknowledged is lost."""

from __future__ import annotations

import signal
from collections import Counter

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_svc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as metrics_grpc

from helpers import otlp_exporter, pipeline_config

EXIT_WITHIN = 30.0  # oxcol's own drain bound plus slack; the sink answers in 0.3 s


def burst_request(batch: int, per_batch: int):
    request = metrics_svc.ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = "shutdown-burst"
    metric = rm.scope_metrics.add().metrics.add(name="burst.value", unit="1")
    for i in range(per_batch):
        point = metric.gauge.data_points.add(as_int=batch * 1000 + i, time_unix_nano=1_700_000_000_000_000_000 + i)
        point.attributes.add(key="seq").value.string_value = f"{batch}-{i}"
    return request


def delivered_seqs(sink) -> Counter:
    seen = Counter()
    for request in sink.requests("metrics"):
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for point in metric.gauge.data_points:
                        seen[point.attributes[0].value.string_value] += 1
    return seen


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_drains_everything_acknowledged(signum, sink, ports, oxcol):
    sink.delay_seconds = 0.3
    exporter = otlp_exporter(sink, sending_queue={"enabled": True, "num_consumers": 1, "queue_size": 1000})
    batch = {"timeout": "200ms", "send_batch_size": 50, "send_batch_max_size": 50}
    instance = oxcol(pipeline_config(ports, exporter, batch=batch))
    channel = grpc.insecure_channel(f"127.0.0.1:{ports.grpc}")
    stub = metrics_grpc.MetricsServiceStub(channel)
    acknowledged = Counter()
    batches = 30 if signum == signal.SIGTERM else 10
    for b in range(batches):
        request = burst_request(b, 25)
        stub.Export(request, timeout=10)
        acknowledged.update(f"{b}-{i}" for i in range(25))
    channel.close()
    assert sink.item_count("metrics") < sum(acknowledged.values()), "the burst drained before the stop; test is void"

    instance.signal(signum)
    code = instance.wait(EXIT_WITHIN)
    assert code is not None, f"oxcol still running {EXIT_WITHIN}s after {signum.name}"
    assert code == 0, f"oxcol exited {code} after {signum.name}"
    delivered = delivered_seqs(sink)
    lost = acknowledged - delivered
    assert not lost, f"{sum(lost.values())} acknowledged points never reached the sink, e.g. {list(lost)[:5]}"
    duplicated = delivered - acknowledged
    assert not duplicated, f"points delivered more than once: {list(duplicated)[:5]}"
