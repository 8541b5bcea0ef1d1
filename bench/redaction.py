"""What redaction costs: the built-in rules on typical values, and the genai processor reading a request of
GenAI spans with redaction of attributes on and off, and with 4 KB of captured content per span.

    python bench/redaction.py [--spans 512] [--rounds 5]

A micro-benchmark in one process (no collector, no store): the medians of `--rounds` runs, in microseconds.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from spanmeter.config import GenAIProcessorConfig, RedactionConfig
from spanmeter.privacy import Redactor
from spanmeter.processors.genai import GenAIProcessor

WORDS = [
    "the",
    "customer",
    "asked",
    "about",
    "a",
    "refund",
    "for",
    "order",
    "42",
    "shipped",
    "last",
    "week",
    "please",
    "check",
    "the",
    "policy",
    "and",
    "answer",
    "briefly",
    "with",
    "the",
    "steps",
    "and",
    "the",
    "expected",
    "delay",
    "in",
    "days",
]


def prose(length: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(length))[:length]


def messages(length: int) -> str:
    text = prose(length - 80)
    return json.dumps([{"role": "user", "parts": [{"type": "text", "content": text}]}])


def median_us(run: Callable[[], object], number: int, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            run()
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times) * 1e6


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def request(spans: int, content: str | None) -> ExportTraceServiceRequest:
    """Spans shaped like bench/ingest.py's (about 20 attributes), plus content when given."""
    now = time.time_ns()
    out = []
    for index in range(spans):
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.response.id": f"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJ{index:06d}",
            "gen_ai.request.temperature": 0.2,
            "gen_ai.request.max_tokens": 1024,
            "gen_ai.usage.input_tokens": 1200 + index % 97,
            "gen_ai.usage.output_tokens": 300,
            "gen_ai.usage.cache_read.input_tokens": 512,
            "server.address": "api.openai.com",
            "server.port": 443,
            "url.full": "https://api.openai.com/v1/chat/completions",
            "gen_ai.openai.response.service_tier": "default",
            "gen_ai.openai.response.system_fingerprint": "fp_44709d6fcb",
            "spanmeter.tag.feature": "support-chat",
            "user.id": f"u-{index % 500}",
            "session.id": f"s-{index % 50}",
            "llm.is_streaming": False,
        }
        if content is not None:
            attributes["gen_ai.input.messages"] = content
        out.append(
            Span(
                trace_id=index.to_bytes(16, "big"),
                span_id=(index + 1).to_bytes(8, "big"),
                name="chat gpt-4o-mini",
                start_time_unix_nano=now - 2_000_000_000,
                end_time_unix_nano=now - 1_000_000_000,
                attributes=[_kv(k, v) for k, v in attributes.items()],
            )
        )
    resource = [_kv("service.name", "support-bot"), _kv("deployment.environment.name", "prod")]
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource={"attributes": resource}, scope_spans=[ScopeSpans(spans=out)])]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    redactor = Redactor()
    values = {
        "short value (model name)": "gpt-4o-mini",
        "response id (38 chars)": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "URL (42 chars)": "https://api.openai.com/v1/chat/completions",
        "4 KB prose": prose(4096),
        "4 KB messages JSON": messages(4096),
        "4 KB messages JSON with a key and an email": messages(4000)[:-10]
        + ' sk-proj-Xq3vB8kLm2Np5Rs7Tu9Wx1Yz4Ab6Cd0Ef jane@example.com"}]}]',
    }
    print("Redactor.redact, built-in rules (median us per value)")
    for name, value in values.items():
        number = 20_000 if len(value) < 100 else 500
        print(f"  {name:45s} {median_us(lambda v=value: redactor.redact(v), number, args.rounds):9.2f}")

    print(f"\nGenAIProcessor.decode, {args.spans} spans of ~20 attributes (median us per span)")
    cases = {
        "attribute redaction off": (GenAIProcessorConfig(redaction=RedactionConfig(attributes=False)), None),
        "attribute redaction on (default)": (GenAIProcessorConfig(), None),
        "capture on, 4 KB content, redaction off": (
            GenAIProcessorConfig(capture_content=True, redaction=RedactionConfig(builtin_rules=False)),
            messages(4096),
        ),
        "capture on, 4 KB content, redacted": (GenAIProcessorConfig(capture_content=True), messages(4096)),
    }
    for name, (config, content) in cases.items():
        processor = GenAIProcessor(config)
        message = request(args.spans, content)
        per_request = median_us(lambda p=processor, m=message: p.decode(m), 3, args.rounds)
        print(f"  {name:45s} {per_request / args.spans:9.2f}")


if __name__ == "__main__":
    main()
