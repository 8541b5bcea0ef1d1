"""The Python expansion against the plugin's own expectations: strings from grafana/clickhouse-datasource
pkg/macros/macros_test.go (v4.20.0), and the frontend's $__conditionalAll and variable formatting
(src/data/CHDatasource.ts) for All, one value and several values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from .plugin_macros import ALL, QueryContext, Variable, apply_conditional_all, expand, interpolate, replace_variables

FROM = datetime(2014, 11, 12, 11, 45, 26, 123000, tzinfo=UTC)
TO = datetime(2015, 11, 12, 11, 45, 26, 456000, tzinfo=UTC)
CTX = QueryContext(FROM, TO, timedelta(minutes=1))


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "select * from foo where $__timeFilter(cast(sth as timestamp) )",
            "select * from foo where cast(sth as timestamp) >= toDateTime(1415792726) "
            "AND cast(sth as timestamp) <= toDateTime(1447328726)",
        ),
        (
            "select * from foo where $__timeFilter_ms(cast(sth as timestamp))",
            "select * from foo where cast(sth as timestamp) >= fromUnixTimestamp64Milli(1415792726123) "
            "AND cast(sth as timestamp) <= fromUnixTimestamp64Milli(1447328726456)",
        ),
        (
            "select * from foo where ( date >= $__fromTime ) and ( date <= $__toTime ) limit 100",
            "select * from foo where ( date >= toDateTime(1415792726) ) and "
            "( date <= toDateTime(1447328726) ) limit 100",
        ),
        (
            "SELECT $__timeInterval($__fromTime) AS from_time",
            "SELECT toStartOfInterval(toDateTime(toDateTime(1415792726)), INTERVAL 60 second) AS from_time",
        ),
        (
            "SELECT $__timeInterval_ms($__fromTime_ms)",
            "SELECT toStartOfInterval(toDateTime64(fromUnixTimestamp64Milli(1415792726123), 3), "
            "INTERVAL 60000 millisecond)",
        ),
        (
            "select * from foo where $__timeFilter(coalesce(closed_at, $__toTime))",
            "select * from foo where coalesce(closed_at, toDateTime(1447328726)) >= toDateTime(1415792726) "
            "AND coalesce(closed_at, toDateTime(1447328726)) <= toDateTime(1447328726)",
        ),
        (
            r"select * from foo where msg = 'it\'s -- fine' and $__fromTime",
            r"select * from foo where msg = 'it\'s -- fine' and toDateTime(1415792726)",
        ),
        (
            "select $__interval_s, $__timeGroup(t, '5m')",
            "select 60, toStartOfInterval(toDateTime(t), INTERVAL 300 second)",
        ),
        (
            "where $__dateFilter(d)",
            "where d >= toDate('2014-11-12') AND d <= toDate('2015-11-12')",
        ),
    ],
)
def test_macros_expand_as_the_plugin_tests_expect(sql: str, expected: str) -> None:
    assert interpolate(sql, CTX) == expected


def test_interval_is_at_least_one_second_and_bad_arguments_fail() -> None:
    assert interpolate("$__interval_s", QueryContext(FROM, TO, timedelta(milliseconds=200))) == "1"
    with pytest.raises(ValueError, match="expected 1 argument"):
        interpolate("$__timeFilter(a, b)", CTX)
    with pytest.raises(ValueError, match="not a macro"):
        interpolate("$__noSuchMacro(a)", CTX)


SQL = "SELECT 1 WHERE $__conditionalAll(service IN (${service}), $service) AND $__conditionalAll(m IN ($model), $model)"


@pytest.mark.parametrize(
    ("service", "model", "expected"),
    [
        ([ALL], [ALL], "SELECT 1 WHERE 1=1 AND 1=1"),
        (["a"], [ALL], "SELECT 1 WHERE service IN ('a') AND 1=1"),
        (["a", "b"], ["x"], "SELECT 1 WHERE service IN ('a','b') AND m IN ('x')"),
        ([], ["x", "y"], "SELECT 1 WHERE 1=1 AND m IN ('x','y')"),
    ],
)
def test_conditional_all_then_variables(service: list[str], model: list[str], expected: str) -> None:
    variables = {
        "service": Variable("service", service, ["a", "b", "c"]),
        "model": Variable("model", model, ["x", "y"]),
    }
    assert expand(SQL, variables, CTX) == expected


def test_all_without_conditional_all_lists_every_option_and_single_values_go_in_raw() -> None:
    variables = {
        "service": Variable("service", [ALL], ["a", "b"]),
        "key": Variable("key", "it's"),
        "custom": Variable("custom", [ALL], ["a"], all_value="*"),
    }
    assert replace_variables("IN ($service)", variables) == "IN ('a','b')"
    assert replace_variables("x = $key", variables) == "x = it's"
    assert replace_variables("x = ${key:sqlstring}", variables) == "x = 'it''s'"
    assert replace_variables("x = ${key:singlequote}", variables) == "x = 'it\\'s'"
    assert replace_variables("$custom $__timeFilter(t) $unknown", variables) == "* $__timeFilter(t) $unknown"


def test_conditional_all_arguments_split_at_depth_one_only() -> None:
    variables = {"model": Variable("model", ["x"], ["x"])}
    sql = "$__conditionalAll(if(a != '', a, b) IN ($model), $model)"
    assert apply_conditional_all(sql, variables) == "if(a != '', a, b) IN ($model)"
