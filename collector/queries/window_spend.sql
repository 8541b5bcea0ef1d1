-- All spend (of one project, or all) in [start, end) by whole hours, from the hourly rollup: what a budget's
-- share of the spend is measured against.
SELECT sum(total_cost)
FROM {database:Identifier}.genai_spans_hourly
WHERE hour >= toStartOfHour({start:DateTime64(3, 'UTC')})
  AND hour < {end:DateTime64(3, 'UTC')}
  AND ({project:String} = '' OR project = {project:String})
