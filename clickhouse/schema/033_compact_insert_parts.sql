-- One file per insert instead of one per column stream. An insert into genai_spans (up to batch.max_rows, 50,000
-- rows by default: a few MiB compressed) made a wide part, about 177 files, each column's data and marks apart;
-- below `min_bytes_for_wide_part` a part is compact, its columns in one data file and one marks file. In the
-- embedded store, inserts alternated between the two settings took 0.91x the CPU a row compact (7.37 µs against
-- 8.13) and 164 fewer files created and later deleted an insert (under a backlog the filesystem's inode work had
-- shown as 4 % of the collector's CPU; bench/README.md). Merges still write wide parts once a part outgrows
-- 256 MiB, so the large parts the reports scan read only the columns a query names. The rollups' parts are small
-- and compact already under the default (10 MiB).
ALTER TABLE {database:Identifier}.genai_spans MODIFY SETTING min_bytes_for_wide_part = 268435456
