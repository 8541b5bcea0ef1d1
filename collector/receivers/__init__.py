"""Receivers: OTLP over gRPC (:4317) and HTTP (:4318), for traces, metrics and logs."""

from .otlp_grpc import OtlpGrpcReceiver
from .otlp_http import OtlpHttpReceiver

__all__ = ["OtlpGrpcReceiver", "OtlpHttpReceiver"]
