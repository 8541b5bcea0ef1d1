"""What a metrics or logs request costs the receiving thread: counted by native code against parsed by protobuf.

The collector needs a count of a metrics or logs request's items (for its metrics and rate limits) and forwards
the bytes as they came. This times, in one process, on requests shaped like the SDK's (logs: records with a body,
severity, trace context and attributes; metrics: histograms and sums with attributed data points),
`otlp_codec.count_protobuf` (the native count, which checks the bytes as protobuf's parser does) against
protobuf's parse and count (what every request cost before). Medians over rounds, and their ratio.

    python bench/signals.py [--requests 200] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from spanmeter.receivers.otlp_codec import SIGNALS, count_items, count_protobuf, parse_protobuf

RESOURCE = {"service.name": "checkout", "telemetry.sdk.name": "opentelemetry", "telemetry.sdk.language": "python",
            "telemetry.sdk.version": "1.38.0", "deployment.environment.name": "prod"}  # fmt: skip


def _attributes(values: dict[str, str | int]) -> list[KeyValue]:
    attributes = []
    for key, value in values.items():
        attribute = KeyValue(key=key)
        if isinstance(value, int):
            attribute.value.int_value = value
        else:
            attribute.value.string_value = value
        attributes.append(attribute)
    return attributes


def _scope(resources: Any, scopes: str, name: str) -> Any:
    """The one scope of a request's one resource (the SDK's resource attributes)."""
    resource = resources.add()
    resource.resource.attributes.extend(_attributes(RESOURCE))
    scope = getattr(resource, scopes).add()
    scope.scope.name = name
    return scope


def logs_request(records: int) -> bytes:
    request = ExportLogsServiceRequest()
    scope = _scope(request.resource_logs, "scope_logs", "checkout.orders")
    for index in range(records):
        record = scope.log_records.add(
            time_unix_nano=1_760_000_000_000_000_000 + index,
            observed_time_unix_nano=1_760_000_000_000_000_000 + index,
            severity_number=9,
            severity_text="INFO",
            trace_id=index.to_bytes(16, "big"),
            span_id=index.to_bytes(8, "big"),
            flags=1,
        )
        record.body.string_value = f"order {index} placed: 3 items, total 42.50 EUR, paid by card"
        record.attributes.extend(
            _attributes({"code.function": "place_order", "code.lineno": 118, "user.id": f"u-{index % 500}",
                         "order.id": f"o-{index}", "http.route": "/orders"})
        )  # fmt: skip
    return request.SerializeToString()


def metrics_request(metrics: int) -> bytes:
    request = ExportMetricsServiceRequest()
    scope = _scope(request.resource_metrics, "scope_metrics", "opentelemetry.instrumentation.flask")
    for index in range(metrics):
        metric = scope.metrics.add(name=f"http.server.metric_{index}", unit="s", description="a server metric")
        for point in range(10):
            labels = _attributes({"http.route": f"/route/{point}", "http.request.method": "GET",
                                  "http.response.status_code": 200})  # fmt: skip
            if index % 2:
                metric.sum.aggregation_temporality = 2
                metric.sum.is_monotonic = True
                metric.sum.data_points.add(
                    as_int=point * 7, time_unix_nano=1, start_time_unix_nano=0
                ).attributes.extend(labels)
            else:
                metric.histogram.aggregation_temporality = 2
                metric.histogram.data_points.add(
                    count=100, sum=12.5, bucket_counts=[point] * 16, explicit_bounds=[0.005 * 2**b for b in range(15)],
                    min=0.001, max=2.0, time_unix_nano=1, start_time_unix_nano=0,
                ).attributes.extend(labels)  # fmt: skip
    return request.SerializeToString()


def median_seconds(run: Callable[[], int], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    cases = {"logs": (logs_request(512), 512), "metrics": (metrics_request(50), 50)}
    print(f"a metrics or logs request's count on the receiving thread, {args.requests} requests, {args.rounds} rounds")
    print(f"  {'signal':8}{'items':>6}{'bytes':>9}{'native µs an item':>20}{'protobuf µs an item':>22}{'ratio':>8}")
    for signal, (body, items) in cases.items():
        spec = SIGNALS[signal]
        assert count_protobuf(spec, body) == count_items(signal, parse_protobuf(spec, body)) == items

        def native(spec=spec, body=body) -> int:  # type: ignore[no-untyped-def]
            return sum(count_protobuf(spec, body) for _ in range(args.requests))

        def parsed(spec=spec, body=body, signal=signal) -> int:  # type: ignore[no-untyped-def]
            return sum(count_items(signal, parse_protobuf(spec, body)) for _ in range(args.requests))

        scale = 1e6 / (args.requests * items)
        fast, slow = median_seconds(native, args.rounds) * scale, median_seconds(parsed, args.rounds) * scale
        print(f"  {signal:8}{items:6}{len(body):9,}{fast:20.3f}{slow:22.3f}{fast / slow:8.2f}")


if __name__ == "__main__":
    main()
