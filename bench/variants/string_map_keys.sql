-- A variant for bench/inserts.py, measured at 0.95x (noisy) with 15-18 % more bytes on disk and not built (bench/README.md):
-- the three attribute maps of genai_spans with plain String keys instead of LowCardinality(String).
ALTER TABLE {db}.genai_spans MODIFY COLUMN span_attributes Map(String, String);
ALTER TABLE {db}.genai_spans MODIFY COLUMN resource_attributes Map(String, String);
ALTER TABLE {db}.genai_spans MODIFY COLUMN tags Map(String, String)
