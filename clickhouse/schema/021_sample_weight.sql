-- Probability sampling, counted honestly: the rejection threshold T a sampled span carried in its tracestate
-- (`ot=th:HEX`, OpenTelemetry's consistent probability sampling; 0 when it carried none). The row stands for
-- 2^56 / (2^56 - T) calls: reports and budgets sum cost and calls weighted by it, as estimates, beside the exact
-- sums of the rows stored. The integer T is stored rather than the weight: it is exactly what the sender wrote,
-- and sums of money take the weight as a ratio of integers (in Decimal), not a rounded float.
-- `sample_weight` is that weight as a float, for ad-hoc queries and dashboards (computed when read).
ALTER TABLE {database:Identifier}.genai_spans
    ADD COLUMN IF NOT EXISTS sampling_threshold UInt64 DEFAULT 0 CODEC(T64, ZSTD(1)) AFTER content,
    ADD COLUMN IF NOT EXISTS sample_weight Float64
        ALIAS 72057594037927936 / (72057594037927936 - sampling_threshold) AFTER sampling_threshold
