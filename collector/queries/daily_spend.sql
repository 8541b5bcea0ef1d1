-- Spend per group and UTC day over [start, end), from the hourly rollup (forecast.py). {group} is one of
-- forecast.BY's columns.
SELECT {group} AS group, toDate(hour) AS day, sum(total_cost) AS spend
FROM {database:Identifier}.genai_spans_hourly
WHERE hour >= toStartOfHour({start:DateTime64(3, 'UTC')})
  AND hour < {end:DateTime64(3, 'UTC')}
  AND ({project:String} = '' OR project = {project:String})
GROUP BY group, day
ORDER BY group, day
