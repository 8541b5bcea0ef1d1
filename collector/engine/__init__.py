"""OTLP requests decoded by the ClickHouse engine instead of Python (the throughput work; not wired yet).

ClickHouse reads OTLP's protobuf natively with a message schema (`otlp_traces.proto`): the nested
resource_spans -> scope_spans -> spans -> attributes become arrays of tuples, `ARRAY JOIN` flattens them
to spans, and the attributes a convention names are read from a per-span map. The SQL is generated from
the convention tables (`collector/conventions/`), which stay the single source of truth; the Python
reader (`processors/genai.py`) stays the reference until this path matches it row for row.
"""

from .decode import SCHEMA_FILE, decode_sql, length_delimited

__all__ = ["SCHEMA_FILE", "decode_sql", "length_delimited"]
