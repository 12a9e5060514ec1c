"""health_check answers 200 while the pipelines run."""

from helpers import http_get, otlp_exporter, pipeline_config


def test_health_200_while_running(sink, ports, oxcol):
    instance = oxcol(pipeline_config(ports, otlp_exporter(sink)))
    for _ in range(3):
        status, body, _ = http_get(ports.health_url)
        assert status == 200, f"GET {ports.health_url} -> {status} {body[:200]!r}"
    instance.stop()
    assert instance.returncode == 0
