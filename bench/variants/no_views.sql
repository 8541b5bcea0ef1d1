-- Every materialized view of the schema dropped: with bench/inserts.py --base, what genai_spans alone costs.
DROP VIEW IF EXISTS {db}.genai_input_tokens_3h_mv;
DROP VIEW IF EXISTS {db}.genai_input_tokens_daily_mv;
DROP VIEW IF EXISTS {db}.genai_input_tokens_hourly_mv;
DROP VIEW IF EXISTS {db}.genai_lag_hourly_mv;
DROP VIEW IF EXISTS {db}.genai_latency_3h_mv;
DROP VIEW IF EXISTS {db}.genai_latency_daily_mv;
DROP VIEW IF EXISTS {db}.genai_latency_hourly_mv;
DROP VIEW IF EXISTS {db}.genai_sessions_daily_mv;
DROP VIEW IF EXISTS {db}.genai_sessions_hourly_mv;
DROP VIEW IF EXISTS {db}.genai_spans_hourly_mv;
DROP VIEW IF EXISTS {db}.genai_spans_hourly_stats_mv;
DROP VIEW IF EXISTS {db}.genai_spans_ingested_hourly_mv;
DROP VIEW IF EXISTS {db}.genai_spend_minutely_mv;
DROP VIEW IF EXISTS {db}.genai_tags_hourly_mv;
