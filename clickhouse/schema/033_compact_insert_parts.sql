-- One file per insert instead of one per column stream. An insert into genai_spans (up to batch.max_rows, 50,000
-- rows by default: tens of MiB) made a wide part, about 177 files, each column's data and marks apart; below
-- `min_bytes_for_wide_part` a part is compact, its columns in one data file and one marks file, so an insert
-- creates (and its merge later deletes) 164 fewer files. The insert alone took 0.91x the CPU a row; inserts and
-- the merges they cause together, 0.85x and 1.00x in two sets of alternated runs (`bench/inserts.py`,
-- bench/README.md): no dearer, fewer files on the collector's disk. Merges write wide parts once a part outgrows
-- 256 MiB (about 17 inserts of the benchmark's spans), so the large parts reports scan read only the columns a
-- query names. The rollups' parts are small and compact already under the default (10 MiB).
ALTER TABLE {database:Identifier}.genai_spans MODIFY SETTING min_bytes_for_wide_part = 268435456
