-- Each budget's latest state in its current window (budget_status keeps one row per window, replaced as the
-- collector refreshes it): the most used first.
SELECT
    budget,
    scope_value,
    window_start,
    window_end,
    argMax(spend_usd, updated_at) AS spend_usd,
    argMax(limit_usd, updated_at) AS limit_usd,
    argMax(percent, updated_at) AS percent,
    argMax(projected_usd, updated_at) AS projected_usd,
    argMax(state, updated_at) AS state
FROM {database:Identifier}.budget_status
WHERE window_start <= {now:DateTime64(3, 'UTC')} AND window_end > {now:DateTime64(3, 'UTC')}
GROUP BY budget, scope_value, window_start, window_end
ORDER BY percent DESC, budget, scope_value
LIMIT {limit:UInt32}
