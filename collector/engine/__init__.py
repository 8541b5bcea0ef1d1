"""OTLP requests decoded by the ClickHouse engine instead of Python.

A small C module (`_flatten.c`) walks the protobuf wire format of the fields the engine reads and writes one
row per span (and one per resource) in ClickHouse's Native format; where it is not built, ClickHouse reads the
requests itself with a message schema (`otlp_traces.proto`) and `ARRAY JOIN`s flatten them. Either way each GenAI
span is read into the columns of a `genai_spans` row by SQL generated from the convention tables
(`collector/conventions/`), which stay the single source of truth. The Python reader
(`processors/genai.py`) stays the reference: what the engine does not read exactly as it does, it hands back.
"""

from .reader import SCHEMA_FILE, STRUCTURE, EngineBatch, EngineReader, write_length_delimited

__all__ = ["SCHEMA_FILE", "STRUCTURE", "EngineBatch", "EngineReader", "write_length_delimited"]
