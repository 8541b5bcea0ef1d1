-- Fewer rewrites of each stored row. Every insert makes a part in genai_spans and one in each rollup its views
-- write; ClickHouse then merges parts of similar size, `merge_selector_base` (5) of them at a time or so, so a
-- row is rewritten once per level of merging. With a base of 20 there are about half the levels: in the embedded
-- store, 40 inserts of 50,000 rows took 21-22 µs of CPU a row, inserts and merges together, against 25-26 with 5
-- (bench/README.md), while a partition holds more parts at a time (8 instead of 4 for those 2 million rows; each
-- part's granules are still skipped by the primary key). The setting exists from ClickHouse 24.11.
ALTER TABLE {database:Identifier}.genai_spans MODIFY SETTING merge_selector_base = 20;

ALTER TABLE {database:Identifier}.genai_spans_hourly MODIFY SETTING merge_selector_base = 20;

ALTER TABLE {database:Identifier}.genai_spans_hourly_stats MODIFY SETTING merge_selector_base = 20;

ALTER TABLE {database:Identifier}.genai_sessions_hourly MODIFY SETTING merge_selector_base = 20;

ALTER TABLE {database:Identifier}.genai_tags_hourly MODIFY SETTING merge_selector_base = 20;

ALTER TABLE {database:Identifier}.genai_spans_ingested_hourly MODIFY SETTING merge_selector_base = 20;

ALTER TABLE {database:Identifier}.genai_latency_hourly MODIFY SETTING merge_selector_base = 20;

ALTER TABLE {database:Identifier}.genai_latency_daily MODIFY SETTING merge_selector_base = 20;

ALTER TABLE {database:Identifier}.genai_input_tokens_hourly MODIFY SETTING merge_selector_base = 20;

ALTER TABLE {database:Identifier}.genai_input_tokens_daily MODIFY SETTING merge_selector_base = 20;

ALTER TABLE {database:Identifier}.genai_lag_hourly MODIFY SETTING merge_selector_base = 20;

ALTER TABLE {database:Identifier}.genai_sessions_daily MODIFY SETTING merge_selector_base = 20;

ALTER TABLE {database:Identifier}.genai_spend_minutely MODIFY SETTING merge_selector_base = 20;

ALTER TABLE {database:Identifier}.genai_latency_3h MODIFY SETTING merge_selector_base = 20;

ALTER TABLE {database:Identifier}.genai_input_tokens_3h MODIFY SETTING merge_selector_base = 20
