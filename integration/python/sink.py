"""An OTLP sink: the far end that oxcol's exporters send to, in the tests.

It serves the three OTLP collector services over gRPC (gzip accepted, as grpcio
decompresses on its own) and OTLP/HTTP on /v1/metrics, /v1/traces, /v1/logs
(protobuf or JSON bodies; identity, gzip, deflate or zstd Content-Encoding).
Every request is stored decoded, with the transport headers that tell how it came.
It can answer with a partial_success, fail the next N requests, or delay each answer.
It must never drop or reorder what it was sent: the tests compare against it.
"""

from __future__ import annotations

import base64
import gzip
import http.server
import json
import socket
import threading
import time
import zlib
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import zstandard
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_svc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc as logs_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_svc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as metrics_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_svc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_grpc

from helpers import free_port

SIGNALS = ("metrics", "traces", "logs")

REQUEST_TYPES = {
    "metrics": metrics_svc.ExportMetricsServiceRequest,
    "traces": trace_svc.ExportTraceServiceRequest,
    "logs": logs_svc.ExportLogsServiceRequest,
}
RESPONSE_TYPES = {
    "metrics": metrics_svc.ExportMetricsServiceResponse,
    "traces": trace_svc.ExportTraceServiceResponse,
    "logs": logs_svc.ExportLogsServiceResponse,
}
PARTIAL_TYPES = {
    "metrics": (metrics_svc.ExportMetricsPartialSuccess, "rejected_data_points"),
    "traces": (trace_svc.ExportTracePartialSuccess, "rejected_spans"),
    "logs": (logs_svc.ExportLogsPartialSuccess, "rejected_log_records"),
}

ID_KEYS = ("traceId", "spanId", "parentSpanId")


# ---------------------------------------------------------------------------
# OTLP/JSON <-> protobuf (the OTLP spec's JSON mapping: ids in hex, enums as ints)


def _convert_ids(node, convert):
    if isinstance(node, dict):
        return {
            k: (convert(v) if k in ID_KEYS and isinstance(v, str) else _convert_ids(v, convert))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_convert_ids(v, convert) for v in node]
    return node


def to_otlp_json(message) -> dict:
    """Encode a protobuf OTLP request as OTLP/JSON (lowerCamelCase keys, int64 as
    strings, enums as integers, trace and span ids as hex)."""
    as_dict = json_format.MessageToDict(message, use_integers_for_enums=True)
    return _convert_ids(as_dict, lambda b64: base64.b64decode(b64).hex())


def from_otlp_json(data: bytes, message_type):
    as_dict = json.loads(data or b"{}")
    as_dict = _convert_ids(as_dict, lambda hexid: base64.b64encode(bytes.fromhex(hexid)).decode())
    return json_format.ParseDict(as_dict, message_type(), ignore_unknown_fields=False)


def decompress(body: bytes, encoding: str) -> bytes:
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


# ---------------------------------------------------------------------------


@dataclass
class Received:
    signal: str  # metrics | traces | logs
    transport: str  # grpc | http
    request: object  # the decoded Export*ServiceRequest
    headers: dict = field(default_factory=dict)  # lower-cased names
    encoding: str = "identity"  # grpc-encoding or Content-Encoding as the sink saw it
    content_type: str = ""


@dataclass
class _Failure:
    remaining: int
    grpc_code: grpc.StatusCode
    http_status: int
    message: str
    retry_after: str | None


class Sink:
    """Start with `with Sink() as sink:`; `sink.grpc_endpoint` is host:port,
    `sink.http_endpoint` is http://host:port."""

    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.grpc_port = free_port()
        self.http_port = free_port()
        self._lock = threading.Condition()
        self._received: list[Received] = []
        self._partial: dict[str, tuple[int, str]] = {}
        self._failure: _Failure | None = None
        self.delay_seconds = 0.0
        self.failed_requests = 0  # requests the sink answered with an error on purpose
        self._grpc_server = None
        self._http_server = None
        self._sniffer = None

    # -- configuration ------------------------------------------------------

    @property
    def grpc_endpoint(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def set_partial_success(self, signal: str, rejected: int, message: str = "rejected by sink"):
        with self._lock:
            self._partial[signal] = (rejected, message)

    def fail_next(
        self,
        count: int,
        grpc_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        http_status: int = 503,
        message: str = "sink told to fail",
        retry_after: str | None = None,
    ):
        with self._lock:
            self._failure = _Failure(count, grpc_code, http_status, message, retry_after)

    # -- inspection ---------------------------------------------------------

    def received(self, signal: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._received if signal is None or r.signal == signal]

    def requests(self, signal: str) -> list:
        return [r.request for r in self.received(signal)]

    def clear(self):
        with self._lock:
            self._received.clear()

    def item_count(self, signal: str) -> int:
        return sum(count_items(signal, r.request) for r in self.received(signal))

    def wait_for_items(self, signal: str, count: int, timeout: float = 15.0) -> int:
        """Wait until at least `count` items of `signal` arrived; return how many did."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                have = sum(count_items(signal, r.request) for r in self._received if r.signal == signal)
                remaining = deadline - time.monotonic()
                if have >= count or remaining <= 0:
                    return have
                self._lock.wait(min(remaining, 0.05))

    def wait_for_requests(self, signal: str, count: int, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                have = sum(1 for r in self._received if r.signal == signal)
                remaining = deadline - time.monotonic()
                if have >= count or remaining <= 0:
                    return have
                self._lock.wait(min(remaining, 0.05))

    # -- the one place every request goes through ---------------------------

    def _handle(self, received: Received):
        """Store the request (unless told to fail it). Returns (failure|None, response)."""
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        with self._lock:
            failure = self._failure
            if failure is not None and failure.remaining > 0:
                failure.remaining -= 1
                self.failed_requests += 1
                return failure, None
            self._received.append(received)
            self._lock.notify_all()
            response = RESPONSE_TYPES[received.signal]()
            if received.signal in self._partial:
                rejected, message = self._partial[received.signal]
                partial_type, count_field = PARTIAL_TYPES[received.signal]
                response.partial_success.CopyFrom(partial_type(**{count_field: rejected, "error_message": message}))
            return None, response

    # -- gRPC -----------------------------------------------------------------

    def _grpc_export(self, signal: str, request, context):
        metadata = {k.lower(): v for k, v in context.invocation_metadata()}
        encoding = metadata.get("grpc-encoding", "")  # grpcio hides it; see _Http2Sniffer
        failure, response = self._handle(Received(signal, "grpc", request, metadata, encoding))
        if failure is not None:
            if failure.retry_after is not None:
                context.set_trailing_metadata((("x-retry-after", failure.retry_after),))
            context.abort(failure.grpc_code, failure.message)
        return response

    def _start_grpc(self):
        sink = self

        class Metrics(metrics_grpc.MetricsServiceServicer):
            def Export(self, request, context):
                return sink._grpc_export("metrics", request, context)

        class Traces(trace_grpc.TraceServiceServicer):
            def Export(self, request, context):
                return sink._grpc_export("traces", request, context)

        class Logs(logs_grpc.LogsServiceServicer):
            def Export(self, request, context):
                return sink._grpc_export("logs", request, context)

        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=16),
            options=[
                ("grpc.max_receive_message_length", 256 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
            ],
        )
        metrics_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
        trace_grpc.add_TraceServiceServicer_to_server(Traces(), server)
        logs_grpc.add_LogsServiceServicer_to_server(Logs(), server)
        inner_port = free_port()
        bound = server.add_insecure_port(f"{self.host}:{inner_port}")
        if bound != inner_port:
            raise RuntimeError(f"sink could not bind gRPC on {self.host}:{inner_port}")
        server.start()
        self._grpc_server = server
        self._sniffer = _Http2Sniffer(self.grpc_port, inner_port, self.host)

    @property
    def grpc_compressed_messages(self) -> int:
        """gRPC messages that arrived with the compressed flag set (grpc-encoding in use)."""
        return self._sniffer.compressed_messages

    @property
    def grpc_uncompressed_messages(self) -> int:
        return self._sniffer.uncompressed_messages

    # -- HTTP -----------------------------------------------------------------

    def _start_http(self):
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def _reply(self, status: int, body: bytes, content_type: str, extra=()):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in extra:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                signal = self.path.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
                if not self.path.startswith("/v1/") or signal not in SIGNALS:
                    self._reply(404, b"not found", "text/plain")
                    return
                content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
                encoding = (self.headers.get("Content-Encoding") or "identity").lower()
                is_json = content_type == "application/json"
                try:
                    raw = decompress(body, encoding)
                    if is_json:
                        request = from_otlp_json(raw, REQUEST_TYPES[signal])
                    elif content_type == "application/x-protobuf":
                        request = REQUEST_TYPES[signal].FromString(raw)
                    else:
                        self._reply(415, b"unsupported content type", "text/plain")
                        return
                except Exception as error:  # noqa: BLE001 - the sink reports anything undecodable
                    self._reply(400, str(error).encode(), "text/plain")
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                failure, response = sink._handle(Received(signal, "http", request, headers, encoding, content_type))
                if failure is not None:
                    status = status_pb2.Status(code=failure.grpc_code.value[0], message=failure.message)
                    extra = [("Retry-After", failure.retry_after)] if failure.retry_after else []
                    self._reply(failure.http_status, status.SerializeToString(), "application/x-protobuf", extra)
                    return
                if is_json:
                    self._reply(200, json.dumps(to_otlp_json(response)).encode(), "application/json")
                else:
                    self._reply(200, response.SerializeToString(), "application/x-protobuf")

        server = http.server.ThreadingHTTPServer((self.host, self.http_port), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, name="sink-http", daemon=True)
        thread.start()
        self._http_server = server

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> "Sink":
        self._start_grpc()
        self._start_http()
        return self

    def stop(self):
        if self._grpc_server is not None:
            self._sniffer.close()
            self._grpc_server.stop(grace=None)
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()

    def __enter__(self) -> "Sink":
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class _Http2Sniffer:
    """A TCP forwarder in front of the sink's gRPC server that reads the client's
    HTTP/2 frames as they pass (bytes are forwarded unchanged) and counts gRPC
    messages by their compressed flag: grpcio hides `grpc-encoding` from the
    servicer, but the first byte of each length-prefixed gRPC message tells
    whether the client compressed it."""

    PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

    def __init__(self, listen_port: int, target_port: int, host: str = "127.0.0.1"):
        self.listen_port = listen_port
        self.target = (host, target_port)
        self.compressed_messages = 0
        self.uncompressed_messages = 0
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, listen_port))
        self._listener.listen(64)
        self._closed = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="sink-h2-sniffer", daemon=True).start()

    def close(self):
        self._closed = True
        for sock in [self._listener, *self._sockets]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self):
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source, destination, parse):
        buffer = b""
        preface_done = False
        # per stream: bytes of the current gRPC message still to skip, and a partial prefix
        message_state: dict[int, list] = {}
        try:
            while True:
                chunk = source.recv(65536)
                if not chunk:
                    break
                if not parse:
                    destination.sendall(chunk)
                    continue
                # Count before forwarding, so a message is counted before the server can
                # answer it (and the test can see it arrive).
                buffer += chunk
                if not preface_done and len(buffer) >= len(self.PREFACE):
                    buffer = buffer[len(self.PREFACE):]
                    preface_done = True
                while preface_done and len(buffer) >= 9:
                    length = int.from_bytes(buffer[0:3], "big")
                    if len(buffer) < 9 + length:
                        break
                    frame_type, flags = buffer[3], buffer[4]
                    stream = int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF
                    payload = buffer[9 : 9 + length]
                    buffer = buffer[9 + length :]
                    if frame_type == 0:  # DATA
                        if flags & 0x8:  # PADDED
                            pad = payload[0]
                            payload = payload[1 : len(payload) - pad]
                        self._messages(message_state.setdefault(stream, [0, b""]), payload)
                destination.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, destination):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _messages(self, state, payload: bytes):
        while payload:
            if state[0] > 0:  # inside a message body
                take = min(state[0], len(payload))
                state[0] -= take
                payload = payload[take:]
                continue
            need = 5 - len(state[1])
            state[1] += payload[:need]
            payload = payload[need:]
            if len(state[1]) == 5:
                with self._lock:
                    if state[1][0] == 1:
                        self.compressed_messages += 1
                    else:
                        self.uncompressed_messages += 1
                state[0] = int.from_bytes(state[1][1:5], "big")
                state[1] = b""


def count_items(signal: str, request) -> int:
    """Data points (metrics), spans (traces) or log records (logs) in a request."""
    total = 0
    if signal == "metrics":
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    if kind:
                        total += len(getattr(metric, kind).data_points)
    elif signal == "traces":
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                total += len(ss.spans)
    else:
        for rl in request.resource_logs:
            for sl in rl.scope_logs:
                total += len(sl.log_records)
    return total
