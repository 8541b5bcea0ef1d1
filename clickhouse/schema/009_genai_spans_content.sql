-- Captured prompt and completion text (processors.genai.capture_content) in a column of its own, so that
-- retention can empty it (a column TTL resets the column, here to an empty map) while the row and its cost
-- stay. The TTL itself follows exporters.clickhouse.retention.content and is set at start (retention.py).
-- Rows stored before this column existed keep their captured text in span_attributes.
ALTER TABLE {database:Identifier}.genai_spans
    ADD COLUMN IF NOT EXISTS content Map(LowCardinality(String), String) CODEC(ZSTD(1)) AFTER resource_attributes
