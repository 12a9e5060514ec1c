"""Fixtures of the oxcol black-box suite: the sink, oxcol processes, SDK telemetry."""

from __future__ import annotations

import os

import pytest

# Everything here talks to 127.0.0.1 only; never through a proxy from the environment.
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

from canonical import canonical  # noqa: E402
from helpers import Oxcol, Ports  # noqa: E402
from sink import SIGNALS, Sink  # noqa: E402
from telemetry import make_telemetry, send  # noqa: E402


@pytest.fixture(scope="session")
def telemetry():
    """SDK data recorded once, sent many times."""
    return make_telemetry()


@pytest.fixture(scope="session")
def reference(telemetry):
    """The canonical form of the SDK's data as the SDK's own gRPC exporter delivers
    it straight to a sink, per signal: what oxcol's output must equal."""
    with Sink() as direct:
        result = {}
        for signal in SIGNALS:
            send("grpc", signal, telemetry, direct.grpc_endpoint, direct.http_endpoint)
            result[signal] = canonical(signal, direct.requests(signal))
    return result


@pytest.fixture
def sink():
    with Sink() as running:
        yield running


@pytest.fixture
def ports():
    return Ports()


@pytest.fixture
def oxcol(request, tmp_path):
    """Factory: oxcol(config_dict_or_yaml, extra_args=..., env=...) -> a started Oxcol.
    Every instance is stopped at teardown (SIGTERM, 10 s, SIGKILL), pass or fail, and
    its output is attached to a failing test's report."""
    instances = []
    request.node._oxcol_instances = instances

    def start(config=None, **kwargs):
        workdir = tmp_path / f"oxcol-{len(instances)}"
        workdir.mkdir()
        instance = Oxcol(config, workdir=workdir, **kwargs)
        instances.append(instance)
        instance.start()
        return instance

    yield start
    for instance in instances:
        instance.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for index, instance in enumerate(getattr(item, "_oxcol_instances", [])):
            report.sections.append((f"oxcol #{index} output", instance.output()))
