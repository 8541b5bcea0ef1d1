"""The `otlp` receiver's settings: its gRPC and HTTP listeners, their TLS and who may connect."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from ..config_types import KeyedError, Seconds, StrictModel
from ..tls import tls_problem

__all__ = [
    "AuthSettings",
    "GrpcProtocolConfig",
    "HttpProtocolConfig",
    "Listener",
    "OtlpProtocols",
    "OtlpReceiverConfig",
    "TlsServerConfig",
]


class AuthSettings(StrictModel):
    authenticator: str
    """The id of a `spanmeter_keys` extension (under `extensions:` and `service.extensions`)."""


class Listener(StrictModel):
    """Who may connect: both OTLP protocols take these."""

    auth: AuthSettings | None = None
    insecure: bool = False
    """Listen beyond loopback without `auth`: refused unless set (anyone reaching the port could write spend)."""
    max_concurrent_requests: PositiveInt = 256
    """Export requests handled at once; more are answered retryable (gRPC RESOURCE_EXHAUSTED, HTTP 503)."""


class TlsServerConfig(StrictModel):
    """A listener's TLS, keyed as the OpenTelemetry Collector's configtls; with it the port speaks only TLS.
    Relative paths are from the working directory."""

    cert_file: str = Field(min_length=1)
    key_file: str = Field(min_length=1)
    client_ca_file: str | None = None
    """mTLS: clients must present a certificate this CA bundle verifies."""
    min_version: Literal["1.2", "1.3"] = "1.2"
    reload_interval: Seconds | None = None
    """Look for renewed files this often (at a new connection); unset: read once at start."""


class GrpcProtocolConfig(Listener):
    endpoint: str = "127.0.0.1:4317"
    max_recv_msg_size_mib: PositiveInt = 16
    tls: TlsServerConfig | None = None


class HttpProtocolConfig(Listener):
    endpoint: str = "127.0.0.1:4318"
    max_request_body_size_mib: PositiveInt = 16
    tls: TlsServerConfig | None = None


class OtlpProtocols(StrictModel):
    grpc: GrpcProtocolConfig | None = None
    http: HttpProtocolConfig | None = None


class OtlpReceiverConfig(StrictModel):
    protocols: OtlpProtocols = OtlpProtocols(grpc=GrpcProtocolConfig(), http=HttpProtocolConfig())

    @field_validator("protocols")
    @classmethod
    def _at_least_one(cls, protocols: OtlpProtocols) -> OtlpProtocols:
        if protocols.grpc is None and protocols.http is None:
            raise ValueError("enable at least one of grpc, http")
        return protocols

    @model_validator(mode="after")
    def _tls_files(self) -> OtlpReceiverConfig:
        """Certificate files are read at load: a missing or mismatched file is an error naming its key."""
        for name in ("grpc", "http"):
            protocol = getattr(self.protocols, name)
            if protocol is None or protocol.tls is None:
                continue
            where = ("protocols", name, "tls")
            if name == "grpc" and protocol.tls.min_version == "1.3":
                raise KeyedError(
                    (*where, "min_version"),
                    "grpcio cannot require TLS 1.3 (it accepts 1.2 and 1.3); use 1.2 here, or 1.3 on http only",
                )
            problem = tls_problem(protocol.tls)
            if problem is not None:
                raise KeyedError((*where, problem[0]), problem[1])
        return self
