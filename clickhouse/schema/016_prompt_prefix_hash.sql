-- A salted hash of a call's prompt prefix (system prompt and first messages), which spanmeter's instrumentation
-- sends as the span attribute `spanmeter.prompt.prefix_hash` (opt-in, README: Findings). Calls sharing a prefix
-- share the hash, so the findings see repeated prompts without the prompts being stored. Both readers keep the
-- attribute among span_attributes; this column is filled from it by ClickHouse at insert (rows are inserted
-- without the column), so the engine and the Python reader store the same value by construction.
ALTER TABLE {database:Identifier}.genai_spans
    ADD COLUMN IF NOT EXISTS prompt_prefix_hash String
        DEFAULT span_attributes['spanmeter.prompt.prefix_hash'] CODEC(ZSTD(1)) AFTER content
