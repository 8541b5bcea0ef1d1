"""spanmeter's alert rules (provisioning/alerting/rules.yaml): each rule's ClickHouse query and threshold, built
with grafana-foundation-sdk's alerting builders and grouped in the shape Grafana's file provisioning reads.

The SDK's rules and queries are the file format's (pkg/services/provisioning/alerting/rules_types.go, AlertRuleV1
and QueryV1), less three keys of the HTTP API's rule the file has no field for: `folderUID`, `orgID`, `ruleGroup`.
Its `RuleGroup` is the HTTP API's (`title`, `folderUid`, `interval` in seconds), not the file's (`name`, the
`folder` title the dashboards' provider also finds, `interval` as a duration), so the groups are written here.
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import alerting, expr
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import alerting as alerting_models
from grafana_foundation_sdk.models.common import DataSourceRef

from clickhouse_query import DATASOURCE_UID, PLUGIN, ClickHouseQueryBuilder, Format
from queries import ESTIMATED, MODEL, drift_rows

ALERTS: list[dict[str, Any]] = [
    {
        "uid": "spanmeter-daily-spend",
        "title": "Daily LLM spend over threshold",
        "group": "spend",
        "seconds": 86400,
        "sql": """SELECT project, toFloat64(sum(estimated_cost)) AS value FROM genai_spans_hourly
                  WHERE hour >= toStartOfDay(now('UTC')) GROUP BY project""",
        "evaluator": ("gt", 100),
        "summary": "Project {{ $labels.project }} has spent {{ $values.A }} USD on LLM calls today (UTC), "
        "over 100 USD.",
        "description": "Open the spanmeter Overview and Attribution dashboards for this project to see which service, "
        "feature and user drive the spend. If it is expected, raise the threshold in this rule; if not, cap it "
        "with a `block` budget in pipelines.yaml. " + ESTIMATED,
    },
    # Windows of whole minutes from genai_spend_minutely (027): the last 60 before the current minute, and the same
    # 60 on each of the 7 days before. Against windows ending at now() they end up to a minute earlier (the current
    # minute's calls count from the next evaluation, a minute later, as Grafana evaluates each minute); every
    # window is 60 whole minutes, so the last hour is compared with hours of the same length.
    {
        "uid": "spanmeter-spend-spike",
        "title": "LLM spend spike",
        "group": "spend",
        "seconds": 8 * 86400,
        "sql": """SELECT project, value FROM (
                  SELECT project,
                    sumIf(cost, day = 0) AS last_hour,
                    sumIf(cost, day BETWEEN 1 AND 7) / 7 AS mean,
                    sqrt(greatest(sumIf(cost * cost, day BETWEEN 1 AND 7) / 7 - mean * mean, 0)) AS stddev,
                    last_hour / greatest(mean + 3 * stddev, 1) AS value
                  FROM (
                    SELECT project, intDiv(dateDiff('minute', minute, toStartOfMinute(now())) - 1, 1440) AS day,
                      toFloat64(sum(estimated_cost)) AS cost
                    FROM genai_spend_minutely
                    WHERE minute >= toStartOfMinute(now()) - INTERVAL 8 DAY AND minute < toStartOfMinute(now())
                      AND (dateDiff('minute', minute, toStartOfMinute(now())) - 1) % 1440 < 60
                    GROUP BY project, day
                  )
                  GROUP BY project
                  )""",
        "evaluator": ("gt", 1),
        "summary": "Project {{ $labels.project }} spent {{ $values.A }} times its spike limit in the last hour.",
        "description": "The last hour's spend (the 60 whole minutes before this one) is above the mean plus three "
        "standard deviations of the same hour on each of the previous 7 days (and above 1 USD). Check the Overview "
        "dashboard's spend by model and the Attribution dashboard's top users and sessions for a runaway loop, a "
        "retry storm or a new feature. " + ESTIMATED,
    },
    {
        "uid": "spanmeter-budget-exceeded",
        "title": "Budget exceeded",
        "group": "budgets",
        "seconds": 3600,
        "sql": """SELECT budget, scope_value, max(percent) AS value FROM budget_status FINAL
                  WHERE window_end > now() GROUP BY budget, scope_value""",
        "evaluator": ("gt", 99.999),
        "summary": "Budget {{ $labels.budget }} ({{ $labels.scope_value }}) is at {{ $values.A }} % of its limit.",
        "description": "Spend in the budget's current window has reached its limit. Calls in a `block` budget's "
        "scope are refused by the instrumentation's budget gate. See the Budgets dashboard; raise the limit in "
        "pipelines.yaml if the spend is intended, or find its source in the Attribution dashboard.",
    },
    {
        "uid": "spanmeter-unpriced-model",
        "title": "Model that cannot be priced",
        "group": "pricing",
        "seconds": 3600,
        "sql": f"""SELECT provider, {MODEL} AS model, toFloat64(count()) AS value FROM genai_spans
                   WHERE $__timeFilter(timestamp) AND price_status = 'unpriced' GROUP BY provider, model""",
        "evaluator": ("gt", 0),
        "summary": "{{ $values.A }} calls to {{ $labels.provider }} / {{ $labels.model }} in the last hour "
        "could not be priced.",
        "description": "genai-prices does not know this model, so its calls are stored as `unpriced` and missing from "
        "every spend figure. Add a price override for it under processors.pricing.overrides in pipelines.yaml, "
        "restart the collector, and run `spanmeter reprice` to price the stored rows.",
    },
    {
        "uid": "spanmeter-error-rate",
        "title": "LLM error rate over threshold",
        "group": "reliability",
        "seconds": 900,
        "sql": """SELECT service_name AS service, countIf(status_code = 'ERROR') / count() AS value FROM genai_spans
                  WHERE $__timeFilter(timestamp) GROUP BY service HAVING count() >= 20""",
        "evaluator": ("gt", 0.05),
        "summary": "{{ humanizePercentage $values.A.Value }} of LLM calls from {{ $labels.service }} failed "
        "in the last 15 minutes.",
        "description": "More than 5 % of GenAI spans ended in error (at least 20 calls). Look at error_type in "
        "genai_spans for the service: rate limits (429) call for backoff or a higher quota, 5xx for the provider's "
        "status page, context-length errors for the Trends dashboard's prompt drift table.",
    },
    {
        "uid": "spanmeter-prompt-drift",
        "title": "Prompt drift: input tokens per call growing",
        "group": "pricing",
        "seconds": 14 * 86400,
        "sql": f"""SELECT service_name AS service, operation, feature,
                    quantileTDigestMergeIf(0.5)(input_tokens_digest, hour >= toStartOfHour(now() - INTERVAL 7 DAY))
                      / greatest(quantileTDigestMergeIf(0.5)(input_tokens_digest,
                                                             hour < toStartOfHour(now() - INTERVAL 7 DAY)), 1) AS value
                  FROM ({drift_rows("now()", "1 = 1")})
                  GROUP BY service, operation, feature
                  HAVING sumIf(spans, hour < toStartOfHour(now() - INTERVAL 7 DAY)) >= 20
                    AND sumIf(spans, hour >= toStartOfHour(now() - INTERVAL 7 DAY)) >= 20""",
        "evaluator": ("gt", 1.5),
        "summary": "Median input tokens per call of {{ $labels.service }} / {{ $labels.operation }} / "
        "{{ $labels.feature }} grew {{ $values.A }}x against the 7 days before.",
        "description": "Prompts of this series grew by half or more in a week, and cost grows with them. Look for "
        "conversation history or retrieved context that is never trimmed; the Trends dashboard shows when it "
        "started.",
    },
]


# The threshold expression's datasource: Grafana's server-side expressions.
EXPRESSIONS = "__expr__"
# Keys of the SDK's rule (the HTTP API's) that a provisioning file's rule has no field for: its group gives them.
API_ONLY_KEYS = ("folderUID", "orgID", "ruleGroup")


def plain(value: Any) -> Any:
    """An SDK model as plain JSON values (dicts, lists, strings, numbers), through the SDK's own encoder."""
    return json.loads(json.dumps(value, cls=JSONEncoder))


def alert_rule(spec: dict[str, Any]) -> dict[str, Any]:
    """Query A (the rule's SQL over its time range) and condition C (A's `value` against the threshold)."""
    kind, threshold = spec["evaluator"]
    query = (
        alerting.Query("A")
        .datasource_uid(DATASOURCE_UID)
        .relative_time_range(alerting_models.RelativeTimeRange(from_val=spec["seconds"], to=0))
        .model(
            ClickHouseQueryBuilder()
            .ref_id("A")
            .datasource(DataSourceRef(type_val=PLUGIN, uid=DATASOURCE_UID))
            .format(Format.TABLE)
            .raw_sql(spec["sql"])
            .interval_ms(60000)
            .max_data_points(43200)
        )
    )
    condition = (
        alerting.Query("C")
        .datasource_uid(EXPRESSIONS)
        .relative_time_range(alerting_models.RelativeTimeRange(from_val=0, to=0))
        .model(
            expr.TypeThreshold()
            .ref_id("C")
            .datasource(DataSourceRef(type_val=EXPRESSIONS, uid=EXPRESSIONS))
            .expression("A")
            .conditions(
                [
                    expr.ExprTypeThresholdConditions().evaluator(
                        expr.ExprTypeThresholdConditionsEvaluator().type(kind).params([threshold])
                    )
                ]
            )
        )
    )
    rule = (
        alerting.Rule(spec["title"])
        .uid(spec["uid"])
        .condition("C")
        .queries([query, condition])
        .no_data_state("OK")
        .exec_err_state("Error")
        .for_val("5m" if spec["group"] != "budgets" else "0s")
        .annotations({"summary": spec["summary"], "description": spec["description"]})
        .labels({"app": "spanmeter", "severity": "critical" if spec["group"] == "budgets" else "warning"})
        .is_paused(False)
    )
    built = plain(rule.build())
    for key in API_ONLY_KEYS:
        del built[key]
    return built


# The folder of the alert rules: Grafana finds it by this title, and so must the dashboard provider
# (provisioning/dashboards/spanmeter.yaml), or a fresh Grafana makes two folders of this name.
RULES_FOLDER = "spanmeter"


def alert_rules() -> dict[str, Any]:
    """The provisioning file: one group per ALERTS group, evaluated every minute, in RULES_FOLDER."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for spec in ALERTS:
        groups.setdefault(spec["group"], []).append(alert_rule(spec))
    return {
        "apiVersion": 1,
        "groups": [
            {"orgId": 1, "name": f"spanmeter-{name}", "folder": RULES_FOLDER, "interval": "1m", "rules": rules}
            for name, rules in groups.items()
        ],
    }
