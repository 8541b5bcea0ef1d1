-- Fewer rewrites of each stored span. Every insert makes a part in genai_spans; ClickHouse then merges parts of
-- similar size, about `merge_selector_base` (5) of them at a time, so a row is rewritten once per level of
-- merging, its maps and text decompressed and compressed again each time. With a base of 20 there are about half
-- the levels: in the embedded store, 40 inserts of 50,000 rows took ~21 µs of CPU a row, inserts and merges
-- together, against ~26 with 5 (bench/README.md), while a partition holds more parts at a time (8 instead of 4 for
-- those 2 million rows; each part's granules are still skipped by the primary key). The rollups keep the default:
-- their parts are a few hundred rows, cheap to merge, and with 20 the dashboards' queries read ~110 of them
-- instead of ~30 after those inserts (4-5 ms a query instead of 2.5-3). The setting exists from ClickHouse 24.11.
ALTER TABLE {database:Identifier}.genai_spans MODIFY SETTING merge_selector_base = 20
