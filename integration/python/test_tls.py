"""TLS and mTLS against clients that are not rustls: the OpenTelemetry Python SDK's gRPC
exporter (grpcio, BoringSSL) and HTTP exporter (requests, OpenSSL) send to oxcol's
receivers with a CA, server and client certificates made by the `openssl` CLI. Data
arrives through mutual TLS; a client without a certificate, or with one from another CA,
is refused and the refusal is counted in oxcol's self-telemetry."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from helpers import metric_value, otlp_exporter, pipeline_config, scrape

pytestmark = pytest.mark.timeout(120)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _key_and_csr(name: str, cwd: Path) -> None:
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=cwd,
    )


def _ca(name: str, cwd: Path) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}-key.pem", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=cwd,
    )


def _leaf(name: str, ca: str, usage: str, cwd: Path) -> None:
    _key_and_csr(name, cwd)
    (cwd / f"{name}.ext").write_text(
        # What Python's strict verification (VERIFY_X509_STRICT, on by default since 3.13)
        # requires of a leaf: key identifiers and key usage, besides the SAN.
        f"subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage={usage}\n"
        "keyUsage=critical,digitalSignature\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=cwd,
    )


@pytest.fixture
def pki(tmp_path, monkeypatch):
    """ca.pem signs server.pem and client.pem; other-ca.pem signs stranger.pem.

    requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's CA file (the
    HTTP exporter's certificate_file), so they are removed for these tests."""
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(variable, raising=False)
    _ca("ca", tmp_path)
    _ca("other-ca", tmp_path)
    _leaf("server", "ca", "serverAuth", tmp_path)
    _leaf("client", "ca", "clientAuth", tmp_path)
    _leaf("stranger", "other-ca", "clientAuth", tmp_path)
    return tmp_path


def _mtls_config(ports, sink, pki: Path) -> dict:
    config = pipeline_config(ports, otlp_exporter(sink))
    tls = {
        "cert_file": str(pki / "server.pem"),
        "key_file": str(pki / "server-key.pem"),
        "client_ca_file": str(pki / "ca.pem"),
    }
    for protocol in ("grpc", "http"):
        config["receivers"]["otlp"]["protocols"][protocol]["tls"] = dict(tls)
    return config


def _grpc_metrics_exporter(ports, pki: Path, client: str | None):
    import grpc
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    credentials = grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.pem").read_bytes(),
        private_key=(pki / f"{client}-key.pem").read_bytes() if client else None,
        certificate_chain=(pki / f"{client}.pem").read_bytes() if client else None,
    )
    return OTLPMetricExporter(
        endpoint=f"localhost:{ports.grpc}", credentials=credentials, insecure=False, timeout=3
    )


def _http_metrics_exporter(ports, pki: Path, client: str | None):
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(
        endpoint=f"https://localhost:{ports.http}/v1/metrics",
        certificate_file=str(pki / "ca.pem"),
        client_certificate_file=str(pki / f"{client}.pem") if client else None,
        client_key_file=str(pki / f"{client}-key.pem") if client else None,
        timeout=3,
    )


def _export(exporter, telemetry) -> str:
    try:
        return exporter.export(telemetry.sdk_data("metrics")).name
    finally:
        exporter.shutdown()


def test_sdk_clients_send_through_mutual_tls(oxcol, sink, ports, pki, telemetry):
    oxcol(_mtls_config(ports, sink, pki), ready_port=ports.grpc)
    expected = telemetry.count("metrics")
    assert _export(_grpc_metrics_exporter(ports, pki, "client"), telemetry) == "SUCCESS"
    assert sink.wait_for_items("metrics", expected, timeout=15) >= expected
    assert _export(_http_metrics_exporter(ports, pki, "client"), telemetry) == "SUCCESS"
    assert sink.wait_for_items("metrics", 2 * expected, timeout=15) >= 2 * expected


def test_clients_without_a_trusted_certificate_are_refused_and_counted(oxcol, sink, ports, pki, telemetry):
    oxcol(_mtls_config(ports, sink, pki), ready_port=ports.grpc)
    for client in (None, "stranger"):
        assert _export(_grpc_metrics_exporter(ports, pki, client), telemetry) == "FAILURE", client
        assert _export(_http_metrics_exporter(ports, pki, client), telemetry) == "FAILURE", client
    assert sink.wait_for_items("metrics", 1, timeout=1) == 0, "nothing got through"
    samples = scrape(ports)
    for server in ("otlp/grpc", "otlp/http"):
        refused = metric_value(
            samples, "oxcol_server_connections_closed", server=server, reason="tls_handshake_failed"
        )
        assert refused and refused >= 2, f"{server}: refused handshakes counted: {refused}"
