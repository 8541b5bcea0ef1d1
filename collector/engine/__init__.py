"""OTLP requests decoded by the ClickHouse engine instead of Python (the throughput work; not wired yet).

ClickHouse reads OTLP's protobuf natively with a message schema (`otlp_traces.proto`): the nested
resource_spans -> scope_spans -> spans -> attributes become arrays of tuples, `ARRAY JOIN` flattens them
to spans, and each GenAI span is read into the columns of a `genai_spans` row by SQL generated from the
convention tables (`collector/conventions/`), which stay the single source of truth. The Python reader
(`processors/genai.py`) stays the reference: what the engine does not read exactly as it does, it hands back.
"""

from .reader import SCHEMA_FILE, STRUCTURE, EngineBatch, EngineReader, write_length_delimited

__all__ = ["SCHEMA_FILE", "STRUCTURE", "EngineBatch", "EngineReader", "write_length_delimited"]
