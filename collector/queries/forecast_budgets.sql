-- Each budget's window in force at {now}, as the collectors last wrote it (budget_status), for a forecast to its end.
SELECT budget, scope_value, window_start, window_end, spend_usd, limit_usd
FROM {database:Identifier}.budget_status FINAL
WHERE window_start <= {now:DateTime64(3, 'UTC')} AND window_end > {now:DateTime64(3, 'UTC')}
ORDER BY budget, scope_value, updated_at DESC
LIMIT 1 BY budget, scope_value
