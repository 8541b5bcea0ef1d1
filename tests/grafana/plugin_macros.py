"""What Grafana 12 and grafana-clickhouse-datasource 4.20 do to a query's SQL before ClickHouse sees it, in Python.

Three steps, in the plugin's order (grafana/clickhouse-datasource, tag v4.20.0):

1. `$__conditionalAll(condition, $var)`: the frontend, `applyConditionalAll` in src/data/CHDatasource.ts. From the
   last occurrence backwards, its arguments are split by `getMacroArgs` (commas at bracket depth 1, quotes not
   considered); when the variable's current value, as JavaScript's `toString()` renders it, is `''` or `$__all`,
   the call becomes `1=1`, otherwise the condition.
2. Template variables: Grafana's `templateSrv.replace(sql, scopedVars, format)` with the plugin's `format`
   (CHDatasource.ts): an array (a multi-value selection, or All) becomes `'a','b'` (values not escaped); a single
   value is put in as it is. All without a custom all value means every option. `${var:sqlstring}` and
   `${var:singlequote}` use Grafana's own formats. Unknown names (`$__timeFilter`, ...) are left alone.
3. Macros: the backend, `Interpolate` in pkg/macros/macros.go (on grafana/macropro): `$__timeFilter(col)`,
   `$__fromTime`, `$__timeInterval(col)`, `$__interval_s`, ... Arguments are trimmed, macros nested in arguments
   expand innermost first; times are Unix seconds (`toDateTime(N)`) or milliseconds
   (`fromUnixTimestamp64Milli(N)`), intervals whole seconds, at least 1.

Not copied from the plugin: re-implemented from reading those files and pkg/macros/macros_test.go, whose expected
strings tests/grafana/test_macros.py checks this module against.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

ALL = "$__all"


@dataclass
class Variable:
    """A dashboard variable as the frontend holds it: `value` is `current.value` (a list for multi-value)."""

    name: str
    value: str | list[str]
    options: list[str] = field(default_factory=list)
    all_value: str | None = None

    def is_all(self) -> bool:
        return self.value == ALL or (isinstance(self.value, list) and ALL in self.value)


@dataclass(frozen=True)
class QueryContext:
    """The time range and interval of one query (backend: sqlutil.Query)."""

    start: datetime
    end: datetime
    interval: timedelta


# --- 1. $__conditionalAll (src/data/CHDatasource.ts: applyConditionalAll, getMacroArgs) -----------------------------


def _js_string(value: str | list[str]) -> str:
    return ",".join(value) if isinstance(value, list) else value


def macro_args(query: str, args_index: int) -> list[str]:
    """getMacroArgs: `args_index` is the index of the opening bracket."""
    args: list[str] = []
    depth = 0
    last = 1
    tail = query[args_index:]
    for match in re.finditer(r"\(|\)|,", tail):
        token, end = match.group(0), match.end()
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        if token == "," and depth == 1:
            args.append(tail[last : end - 1])
            last = end
        if depth == 0:
            args.append(tail[last : end - 1])
            return args
    return []


_VARIABLE_IN_ARG = re.compile(r"(?<=\$\{)[\w\d]+(?=\})|(?<=\$)[\w\d]+")


def apply_conditional_all(query: str, variables: Mapping[str, Variable]) -> str:
    macro = "$__conditionalAll("
    index = query.rfind(macro)
    while index != -1:
        params = macro_args(query, index + len(macro) - 1)
        if len(params) != 2:
            return query
        phrase = params[0]
        match = _VARIABLE_IN_ARG.search(params[1].strip())
        if match and match.group(0) in variables and _js_string(variables[match.group(0)].value) in ("", ALL):
            phrase = "1=1"
        call = f"{macro}{params[0]},{params[1]})"
        replaced = query.replace(call, phrase, 1)
        if replaced == query:  # the plugin would loop forever here
            raise ValueError(f"cannot expand {call!r}")
        query = replaced
        index = query.rfind(macro)
    return query


# --- 2. template variables (Grafana's TemplateSrv.replace with the plugin's format function) -----------------------

# Grafana's variable syntaxes: $name, [[name]] / [[name:format]], ${name} / ${name:format}.
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}")


def _plugin_format(value: str | list[str]) -> str:
    if isinstance(value, list):
        return "'" + "','".join(value) + "'"
    return value


def _sqlstring(value: str | list[str]) -> str:
    values = value if isinstance(value, list) else [value]
    return ",".join("'" + v.replace("'", "''") + "'" for v in values)


def _singlequote(value: str | list[str]) -> str:
    values = value if isinstance(value, list) else [value]
    return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)


def _raw(value: str | list[str]) -> str:
    return ",".join(value) if isinstance(value, list) else value


FORMATS: dict[str, Callable[[str | list[str]], str]] = {
    "sqlstring": _sqlstring,
    "singlequote": _singlequote,
    "raw": _raw,
}


def replace_variables(query: str, variables: Mapping[str, Variable]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        explicit = match.group(3) or match.group(6)
        variable = variables.get(name)
        if variable is None:
            return match.group(0)
        value: str | list[str] = variable.value
        if variable.is_all():
            if variable.all_value is not None:
                return variable.all_value
            value = list(variable.options)
        if explicit:
            if explicit not in FORMATS:
                raise ValueError(f"format {explicit!r} of ${{{name}}} is not one this module implements")
            return FORMATS[explicit](value)
        return _plugin_format(value)

    return _VARIABLE.sub(substitute, query)


# --- 3. backend macros (pkg/macros/macros.go) --------------------------------------------------------------------


def _seconds(moment: datetime) -> int:
    return math.floor(moment.timestamp())


def _millis(moment: datetime) -> int:
    return math.floor(moment.timestamp() * 1000)


def _datetime(moment: datetime) -> str:
    return f"toDateTime({_seconds(moment)})"


def _datetime64(moment: datetime) -> str:
    return f"fromUnixTimestamp64Milli({_millis(moment)})"


def _date(moment: datetime) -> str:
    return f"toDate('{moment.astimezone(UTC):%Y-%m-%d}')"


def _interval_ms(ctx: QueryContext) -> int:
    return int(max(ctx.interval.total_seconds() * 1000, 1))


def _interval_seconds(ctx: QueryContext) -> int:
    return int(max(ctx.interval.total_seconds(), 1))


_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def _go_duration_seconds(text: str) -> float:
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"$__timeGroup: invalid interval {text!r}")
    return sum(float(n) * _GO_UNITS[u] for n, u in parts)


def _args(name: str, count: int) -> Callable[[Callable[..., str]], Callable[[QueryContext, list[str]], str]]:
    def wrap(handler: Callable[..., str]) -> Callable[[QueryContext, list[str]], str]:
        def call(ctx: QueryContext, args: list[str]) -> str:
            if len(args) != count:
                raise ValueError(f"{name} expected {count} argument(s), received {len(args)}")
            return handler(ctx, *args)

        return call

    return wrap


def _time_group(ctx: QueryContext, column: str, period: str) -> str:
    seconds = round(_go_duration_seconds(period.strip().strip("'\"")))
    if seconds <= 0:
        raise ValueError(f"$__timeGroup: interval must be positive, got {period!r}")
    return f"toStartOfInterval(toDateTime({column.strip()}), INTERVAL {seconds} second)"


MACROS: dict[str, Callable[[QueryContext, list[str]], str]] = {
    "fromTime": lambda ctx, _: _datetime(ctx.start),
    "toTime": lambda ctx, _: _datetime(ctx.end),
    "fromTime_ms": lambda ctx, _: _datetime64(ctx.start),
    "toTime_ms": lambda ctx, _: _datetime64(ctx.end),
    "interval_s": lambda ctx, _: str(_interval_seconds(ctx)),
    "timeFilter": _args("$__timeFilter", 1)(
        lambda ctx, c: f"{c} >= {_datetime(ctx.start)} AND {c} <= {_datetime(ctx.end)}"
    ),
    "timeFilter_ms": _args("$__timeFilter_ms", 1)(
        lambda ctx, c: f"{c} >= {_datetime64(ctx.start)} AND {c} <= {_datetime64(ctx.end)}"
    ),
    "dateFilter": _args("$__dateFilter", 1)(lambda ctx, c: f"{c} >= {_date(ctx.start)} AND {c} <= {_date(ctx.end)}"),
    "timeFrom": _args("$__timeFrom", 1)(lambda ctx, c: f"{c} >= {_datetime(ctx.start)}"),
    "timeTo": _args("$__timeTo", 1)(lambda ctx, c: f"{c} <= {_datetime(ctx.end)}"),
    "timeInterval": _args("$__timeInterval", 1)(
        lambda ctx, c: f"toStartOfInterval(toDateTime({c}), INTERVAL {_interval_seconds(ctx)} second)"
    ),
    "timeInterval_ms": _args("$__timeInterval_ms", 1)(
        lambda ctx, c: f"toStartOfInterval(toDateTime64({c}, 3), INTERVAL {_interval_ms(ctx)} millisecond)"
    ),
    "timeGroup": _args("$__timeGroup", 2)(_time_group),
}
for _alias in ("dateTimeFilter", "dt"):
    MACROS[_alias] = _args(f"$__{_alias}", 2)(
        lambda ctx, d, t: (
            f"({d} >= {_date(ctx.start)} AND {d} <= {_date(ctx.end)}) AND "
            f"({t} >= {_datetime(ctx.start)} AND {t} <= {_datetime(ctx.end)})"
        )
    )

_MACRO = re.compile(r"\$__(\w+)")


def _quoted_end(sql: str, start: int) -> int:
    """Index after the string literal or backtick identifier opening at `start` (backslash escapes honoured)."""
    quote = sql[start]
    i = start + 1
    while i < len(sql):
        if sql[i] == "\\":
            i += 2
            continue
        if sql[i] == quote:
            return i + 1
        i += 1
    raise ValueError(f"unterminated {quote} at {start}")


def _outside_quotes(text: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """(index, character, bracket depth after it) for each character outside string literals and backticks."""
    depth, i = 0, start
    while i < len(text):
        char = text[i]
        if char in "'`":
            i = _quoted_end(text, i)
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        yield i, char, depth
        i += 1


def _closing_bracket(sql: str, start: int) -> int:
    for i, char, depth in _outside_quotes(sql, start):
        if char == ")" and depth == 0:
            return i
    raise ValueError(f"unbalanced bracket at {start}")


def _split_top_level(text: str) -> list[str]:
    parts, last = [], 0
    for i, char, depth in _outside_quotes(text):
        if char == "," and depth == 0:
            parts.append(text[last:i])
            last = i + 1
    parts.append(text[last:])
    return [] if parts == [""] else parts


def interpolate(sql: str, ctx: QueryContext) -> str:
    """pkg/macros/macros.go Interpolate. Comments are refused rather than lexed: spanmeter's SQL has none."""
    out: list[str] = []
    i = 0
    while i < len(sql):
        char = sql[i]
        if char in "'`":
            end = _quoted_end(sql, i)
            out.append(sql[i:end])
            i = end
            continue
        if sql.startswith("--", i) or sql.startswith("/*", i):
            raise ValueError("SQL comments are not supported by this expansion")
        match = _MACRO.match(sql, i)
        if match is None:
            out.append(char)
            i += 1
            continue
        name, end = match.group(1), match.end()
        args: list[str] = []
        if end < len(sql) and sql[end] == "(":
            close = _closing_bracket(sql, end)
            args = [interpolate(arg, ctx).strip() for arg in _split_top_level(sql[end + 1 : close])]
            end = close + 1
        if name not in MACROS:
            raise ValueError(f"$__{name} is not a macro of grafana-clickhouse-datasource 4.20")
        out.append(MACROS[name](ctx, args))
        i = end
    return "".join(out)


# --- the whole path -------------------------------------------------------------------------------------------------


def expand(sql: str, variables: Mapping[str, Variable], ctx: QueryContext) -> str:
    """Frontend then backend, as for a dashboard panel or a variable's query."""
    return interpolate(replace_variables(apply_conditional_all(sql, variables), variables), ctx)


# Grafana's interval rounding (rangeutil.roundInterval): the bucket a panel of ~`resolution` points gets.
_ROUNDING_MS: Sequence[tuple[int, int]] = (
    (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000), (3500, 2000), (7500, 5000),
    (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000), (90000, 60000), (210000, 120000),
    (450000, 300000), (1050000, 600000), (2100000, 1200000), (5400000, 1800000), (9000000, 3600000),
    (16200000, 7200000), (32400000, 10800000), (86400000, 21600000), (604800000, 86400000),
    (1814400000, 604800000), (3628800000, 2592000000),
)  # fmt: skip


def panel_interval(
    start: datetime, end: datetime, resolution: int = 1000, minimum: timedelta | None = None
) -> timedelta:
    raw_ms = (end - start).total_seconds() * 1000 / resolution
    rounded = next((ms for limit, ms in _ROUNDING_MS if raw_ms < limit), 31536000000)
    interval = timedelta(milliseconds=rounded)
    return max(interval, minimum) if minimum else interval


_GRAFANA_DURATION = re.compile(r"^(\d+)([smhdwy])$")
_GRAFANA_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def grafana_duration(text: str) -> timedelta:
    """`30d`, `1h`, `now-7d` without `now-`: Grafana's relative time units."""
    match = _GRAFANA_DURATION.match(text.removeprefix("now-"))
    if not match:
        raise ValueError(f"unsupported Grafana duration {text!r}")
    return timedelta(seconds=int(match.group(1)) * _GRAFANA_UNITS[match.group(2)])
