"""The OTLP/HTTP receiver: `POST /v1/traces`, `/v1/metrics`, `/v1/logs` with protobuf or JSON
bodies, optionally gzip-compressed, answered as the OTLP/HTTP spec says (the response in the
request's encoding; errors as a google.rpc.Status; 503 + Retry-After when the collector is full).

The same port serves `POST /v1/calls` (calls as flat JSON, `calls_json`) and the collector's API (health,
metrics); see `spanmeter.api`.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import status_pb2

from ..auth import PRINCIPAL, AuthError, KeyAuthenticator, bearer_token, require_sender
from ..pipeline import Backpressure, TelemetryRouter, TracesPipeline
from ..telemetry import CollectorMetrics
from ..tls import ReloadingSslContext, describe_tls
from .calls_json import CallsJsonReceiver
from .config import HttpProtocolConfig
from .otlp_codec import (
    SIGNALS,
    BadRequest,
    BodyTooLarge,
    count_items,
    count_protobuf,
    gunzip,
    parse_json,
    split_traces,
)

__all__ = ["OtlpHttpReceiver"]

logger = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_MIB = 1024 * 1024
_GRPC_INVALID_ARGUMENT = 3
_GRPC_RESOURCE_EXHAUSTED = 8
_GRPC_PERMISSION_DENIED = 7
_GRPC_UNAVAILABLE = 14
_GRPC_UNAUTHENTICATED = 16


class OtlpHttpReceiver:
    def __init__(
        self,
        config: HttpProtocolConfig,
        traces: TracesPipeline,
        telemetry: TelemetryRouter,
        metrics: CollectorMetrics,
        authenticator: KeyAuthenticator | None = None,
    ) -> None:
        self._config = config
        self._authenticator = authenticator
        self._traces = traces
        self._telemetry = telemetry
        self._metrics = metrics
        self._limit = config.max_request_body_size_mib * _MIB
        self.app = web.Application(client_max_size=self._limit)
        self._in_flight = 0
        if authenticator is not None:
            self.app.middlewares.append(self._authenticate)
        for signal in SIGNALS:
            self.app.router.add_post(f"/v1/{signal}", self._handler(signal))
        # Calls as flat JSON, into the same traces pipeline (GET /v1/calls, the listing, is the API's).
        CallsJsonReceiver(config, traces, metrics, authenticator).register(self.app)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def bind(self) -> None:
        """Take the port, or raise OSError naming the endpoint; `start` then reports it listening."""
        host, _, port = self._config.endpoint.rpartition(":")
        # auto_decompress off: the handler inflates gzip itself, bounded by the body size limit.
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, auto_decompress=False)
        await self._runner.setup()
        # SO_REUSEADDR only (a restart may rebind at once); never SO_REUSEPORT, which would let a
        # second collector share the port and take part of the traffic.
        # With TLS the API on this port is https too: one listener.
        tls = ReloadingSslContext(self._config.tls).context if self._config.tls is not None else None
        site = web.TCPSite(
            self._runner, host or "127.0.0.1", int(port), ssl_context=tls, reuse_address=True, reuse_port=False
        )
        try:
            await site.start()
        except OSError as exc:
            raise OSError(f"cannot listen for OTLP/HTTP on {self._config.endpoint}: {exc.strerror}") from None
        server: Any = site._server  # aiohttp exposes the bound port only here
        self.port = server.sockets[0].getsockname()[1] if server and server.sockets else int(port)

    async def start(self) -> None:
        if self._runner is None:
            await self.bind()
        host = self._config.endpoint.rpartition(":")[0]
        logger.info(
            "OTLP/HTTP receiver listening on %s:%d (%s; also %s)",
            host,
            self.port,
            describe_tls(self._config.tls),
            ", ".join(self.api_paths()),
        )

    def api_paths(self) -> list[str]:
        """What else this port serves (the API's GET routes), for the start log."""
        paths = {
            route.resource.canonical for route in self.app.router.routes() if route.method == "GET" and route.resource
        }
        return sorted(paths)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Every `/v1/` route needs a key, checked before the body is read; health and /metrics stay open.
        The principal is left on the request for the handlers (`request[PRINCIPAL]`)."""
        if not request.path.startswith("/v1/"):
            return await handler(request)
        assert self._authenticator is not None
        otlp = request.path.removeprefix("/v1/") in SIGNALS
        try:
            principal = await self._authenticator.authenticate(bearer_token(request.headers.get("Authorization")))
            if otlp:
                require_sender(principal)
        except AuthError as exc:
            status, code = (403, _GRPC_PERMISSION_DENIED) if exc.forbidden else (401, _GRPC_UNAUTHENTICATED)
            if otlp:
                reply = _status(status, _reply_type(request), code, str(exc))
            else:
                reply = web.json_response({"error": str(exc)}, status=status)
            if status == 401:
                reply.headers["WWW-Authenticate"] = "Bearer"
            return reply
        request[PRINCIPAL] = principal
        return await handler(request)

    def _handler(self, signal: str):  # type: ignore[no-untyped-def]
        spec = SIGNALS[signal]

        async def export(request: web.Request) -> web.Response:
            self._metrics.requests.labels(signal, "http").inc()
            if self._in_flight >= self._config.max_concurrent_requests:
                reply = _status(503, _reply_type(request), _GRPC_UNAVAILABLE, "too many requests at once; retry")
                reply.headers["Retry-After"] = "1"
                return reply
            self._in_flight += 1
            try:
                return await handle(request)
            finally:
                self._in_flight -= 1

        async def handle(request: web.Request) -> web.Response:
            content_type = request.content_type
            if content_type not in (PROTOBUF, JSON):
                return _status(
                    415,
                    JSON,
                    _GRPC_INVALID_ARGUMENT,
                    f"Content-Type must be {PROTOBUF} or {JSON}, got {content_type or 'none'}",
                )
            try:
                body = await request.read()
                encoding = request.headers.get("Content-Encoding", "").lower()
                if encoding == "gzip":
                    body = gunzip(body, self._limit)
                elif encoding not in ("", "identity"):
                    return _status(
                        415, content_type, _GRPC_INVALID_ARGUMENT, f"unsupported Content-Encoding {encoding!r}"
                    )
                if signal == "traces":
                    split, raw = split_traces(self._traces.prefilter, body, as_json=content_type == JSON)
                    items = split.spans
                elif content_type == PROTOBUF:
                    raw = body
                    items = count_protobuf(spec, body)
                else:
                    message = parse_json(spec, body)
                    raw = message.SerializeToString()
                    items = count_items(signal, message)
            except web.HTTPRequestEntityTooLarge:
                return _status(413, content_type, _GRPC_RESOURCE_EXHAUSTED, f"body exceeds {self._limit} bytes")
            except BodyTooLarge as exc:
                return _status(413, content_type, _GRPC_RESOURCE_EXHAUSTED, str(exc))
            except BadRequest as exc:
                return _status(400, content_type, _GRPC_INVALID_ARGUMENT, str(exc))

            principal = request.get(PRINCIPAL)
            if principal is not None and self._authenticator is not None:
                wait = self._authenticator.throttle(principal, items)
                if wait:
                    self._metrics.spans_refused.labels("rate_limited").inc(items)
                    reply = _status(
                        429,
                        content_type,
                        _GRPC_RESOURCE_EXHAUSTED,
                        f"the key {principal.key_id} is over its rate limit; retry in {wait:.2f}s",
                    )
                    reply.headers["Retry-After"] = str(max(1, math.ceil(wait)))
                    return reply
            if signal == "traces":
                try:
                    await self._traces.consume(split, raw, principal)
                except Backpressure as exc:
                    reply = _status(503, content_type, _GRPC_UNAVAILABLE, str(exc))
                    reply.headers["Retry-After"] = str(exc.retry_after)
                    return reply
            else:
                self._telemetry.consume(signal, items, raw)
            response = spec.response()
            return _encode(200, content_type, response)

        return export


def _reply_type(request: web.Request) -> str:
    """Answer in the request's encoding when it is one of OTLP's, else JSON."""
    return request.content_type if request.content_type in (PROTOBUF, JSON) else JSON


def _status(http_status: int, content_type: str, code: int, message: str) -> web.Response:
    return _encode(http_status, content_type, status_pb2.Status(code=code, message=message))


def _encode(http_status: int, content_type: str, message: Message) -> web.Response:
    if content_type == PROTOBUF:
        return web.Response(status=http_status, body=message.SerializeToString(), content_type=PROTOBUF)
    return web.Response(
        status=http_status,
        text=json_format.MessageToJson(message, indent=None),
        content_type=JSON,
    )
