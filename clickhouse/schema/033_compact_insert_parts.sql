-- One file per insert instead of one per column stream. An insert into genai_spans (up to batch.max_rows, 50,000
-- rows by default: some 16 MiB uncompressed, the size ClickHouse compares) made a wide part, about 177 files, each
-- column's data and marks apart; below `min_bytes_for_wide_part` a part is compact, its columns in one data file
-- and one marks file, so an insert creates (and its merge later deletes) 164 fewer files. Inserts and the merges
-- they cause together took 0.76x the CPU a row (`bench/inserts.py`, four alternated runs; bench/README.md).
-- Merges write wide parts once a part outgrows 256 MiB (about 17 inserts of the benchmark's spans), so the large
-- parts reports scan read only the columns a query names. The rollups' parts are small and compact already under
-- the default (10 MiB).
ALTER TABLE {database:Identifier}.genai_spans MODIFY SETTING min_bytes_for_wide_part = 268435456
