"""Processors: `prefilter` sets aside, from a request's bytes, the spans that cannot be GenAI; `genai` reads OTLP
spans into rows; `pricing` and `tags` fill in what rows cost and whom they are for. Each takes the records of one
request and changes them in place."""

from .genai import DecodeResult, GenAIProcessor
from .prefilter import GenAIPrefilter, Split
from .pricing import PricingProcessor
from .tags import TagsProcessor

__all__ = ["DecodeResult", "GenAIPrefilter", "GenAIProcessor", "PricingProcessor", "Split", "TagsProcessor"]
