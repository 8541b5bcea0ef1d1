"""Per-key rate limits: a token bucket of spans per key, so one noisy sender cannot starve the others.

A request takes as many tokens as it has spans; a bucket without enough answers how long until it
has them, which the receivers send back as OTLP's retryable throttling answer (gRPC
RESOURCE_EXHAUSTED with RetryInfo, HTTP 429 with Retry-After), so the SDKs retry by themselves. A
request larger than the whole bucket is let through once the bucket is full, or it could never pass.
"""

from __future__ import annotations

import threading
import time

__all__ = ["RateLimiter"]


class RateLimiter:
    def __init__(self, spans_per_second: float, burst: int) -> None:
        self._rate = spans_per_second
        self._burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str, spans: int) -> float:
        """0 when `spans` may pass now (and are taken), else the seconds to wait before retrying."""
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - at) * self._rate)
            need = min(float(spans), self._burst)
            if tokens >= need:
                self._buckets[key] = (tokens - spans, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (need - tokens) / self._rate
