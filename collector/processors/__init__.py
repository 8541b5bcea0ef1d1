"""Processors: `genai` reads OTLP spans into rows; `pricing` and `tags` fill in what rows cost and whom
they are for. Each takes the records of one request and changes them in place."""

from .genai import DecodeResult, GenAIProcessor
from .pricing import PricingProcessor
from .tags import TagsProcessor

__all__ = ["DecodeResult", "GenAIProcessor", "PricingProcessor", "TagsProcessor"]
