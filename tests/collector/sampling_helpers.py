"""OpenTelemetry's consistent probability sampler as an app would configure it, from the SDK itself."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace._sampling_experimental import composable_traceid_ratio_based, composite_sampler
from opentelemetry.sdk.trace.sampling import Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes


class ConsistentSampler(Sampler):
    """The SDK's composite sampler over its trace-id ratio sampler (`ot=th:` in the tracestate of what it keeps),
    deciding every span by its trace id, so a trace is kept or dropped whole.

    Two gaps of opentelemetry-sdk 1.45.2 are bridged: its composite sampler answers the intent's attributes (none)
    in place of the span's, so a span would start without the attributes it was given; and the tracer passes the
    sampler no tracestate, so `composable_parent_threshold` gives children no threshold (ratio on every span
    instead: the same decision for every span of a trace)."""

    def __init__(self, ratio: float) -> None:
        self._sampler = composite_sampler(composable_traceid_ratio_based(ratio))

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        result = self._sampler.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)
        return SamplingResult(result.decision, attributes, result.trace_state)

    def get_description(self) -> str:
        return f"Consistent{{{self._sampler.get_description()}}}"
