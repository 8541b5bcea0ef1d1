"""The OTLP/gRPC receiver: the trace, metrics and logs services' Export methods (gzip included).

Handlers take raw bytes and parse them themselves, so a body that is not protobuf is answered
INVALID_ARGUMENT with a message (grpc's own deserializer would answer INTERNAL) and the bytes can
be forwarded unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import grpc
from google.rpc.error_details_pb2 import RetryInfo

from ..auth import AuthError, KeyAuthenticator, bearer_token, require_sender
from ..pipeline import Backpressure, TelemetryRouter, TracesPipeline
from ..telemetry import CollectorMetrics
from ..tls import describe_tls, grpc_server_credentials
from .config import GrpcProtocolConfig
from .otlp_codec import SIGNALS, BadRequest, count_protobuf, split_traces

__all__ = ["OtlpGrpcReceiver"]

logger = logging.getLogger(__name__)

_SERVICES = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
}
_MIB = 1024 * 1024

Handler = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]


class OtlpGrpcReceiver:
    def __init__(
        self,
        config: GrpcProtocolConfig,
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
        self._server: grpc.aio.Server | None = None
        self.port = 0

    async def bind(self) -> None:
        """Take the port, or raise OSError naming the endpoint; serves nothing until `start`."""
        limit = self._config.max_recv_msg_size_mib * _MIB
        server = grpc.aio.server(
            maximum_concurrent_rpcs=self._config.max_concurrent_requests,  # more: RESOURCE_EXHAUSTED (retried)
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", 4 * _MIB),
                # grpcio sets SO_REUSEPORT by default: a second collector on this port would bind too,
                # and the kernel would split the senders' spans between the two stores.
                ("grpc.so_reuseport", 0),
            ],
        )
        for signal, service in _SERVICES.items():
            handler = grpc.unary_unary_rpc_method_handler(self._handler(signal))
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {"Export": handler}),))
        try:
            if self._config.tls is None:
                self.port = server.add_insecure_port(self._config.endpoint)
            else:
                self.port = server.add_secure_port(self._config.endpoint, grpc_server_credentials(self._config.tls))
        except RuntimeError:
            raise OSError(
                f"cannot listen for OTLP/gRPC on {self._config.endpoint}: "
                "the address is in use (another collector?) or not available"
            ) from None
        self._server = server

    async def start(self) -> None:
        if self._server is None:
            await self.bind()
        assert self._server is not None
        await self._server.start()
        host = self._config.endpoint.rsplit(":", 1)[0]
        logger.info("OTLP/gRPC receiver listening on %s:%d (%s)", host, self.port, describe_tls(self._config.tls))

    async def stop(self, grace: float = 5.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)

    def _handler(self, signal: str) -> Handler:
        spec = SIGNALS[signal]

        async def export(body: bytes, context: grpc.aio.ServicerContext) -> bytes:
            self._metrics.requests.labels(signal, "grpc").inc()
            principal = None
            if self._authenticator is not None:  # before the body is decoded
                try:
                    principal = await self._authenticator.authenticate(_authorization(context))
                    require_sender(principal)
                except AuthError as exc:
                    code = grpc.StatusCode.PERMISSION_DENIED if exc.forbidden else grpc.StatusCode.UNAUTHENTICATED
                    await context.abort(code, str(exc))
            try:
                if signal == "traces":
                    split, _ = split_traces(self._traces.prefilter, body)
                    items = split.spans
                else:
                    items = count_protobuf(spec, body)
            except BadRequest as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            if principal is not None and self._authenticator is not None:
                wait = self._authenticator.throttle(principal, items)
                if wait:
                    self._metrics.spans_refused.labels("rate_limited").inc(items)
                    retry = RetryInfo()
                    retry.retry_delay.FromNanoseconds(int(wait * 1e9))
                    await context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"the key {principal.key_id} is over its rate limit; retry in {wait:.2f}s",
                        trailing_metadata=(("google.rpc.retryinfo-bin", retry.SerializeToString()),),
                    )
            if signal == "traces":
                try:
                    await self._traces.consume(split, body, principal)
                except Backpressure as exc:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            else:
                self._telemetry.consume(signal, items, body)
            response = spec.response()
            return response.SerializeToString()

        return export


def _authorization(context: grpc.aio.ServicerContext) -> str | None:
    """The key from the `authorization` metadata (gRPC's form of the HTTP header)."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return bearer_token(value if isinstance(value, str) else value.decode(errors="replace"))
    return None
