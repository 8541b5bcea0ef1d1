"""Tags: from spanmeter's instrumentation attributes (`spanmeter.tag.*`, `user.id`, `session.id`)
and from rules in pipelines.yaml, into the `tags` map and the promoted columns."""

from __future__ import annotations

from collections.abc import Callable

from clickhouse_connect.driver.client import Client

from spanmeter.service import Collector

from .conftest import emit, rows, tracer_provider, wait_for_rows
from .test_pricing_e2e import AT_NS, genai_attributes

RULES = {
    "processors": {
        "tags": {
            "rules": [
                {"tag": "team", "from": "resource.team.name"},
                {"tag": "route", "from": "span.http.route", "regex": r"^/api/(?P<value>[^/]+)"},
                {"tag": "tenant", "from": "span.http.host", "regex": r"^([a-z]+)\.example\.com$"},
                {"tag": "feature", "from": "span.app.feature"},
            ]
        }
    },
    "exporters": {"clickhouse": {"batch": {"max_age": "100ms"}}},
}


def test_tags_from_rules_and_span_attributes(
    start_collector: Callable[..., Collector], store: Client, database: str
) -> None:
    collector = start_collector(RULES)
    provider = tracer_provider(collector, resource={"team.name": "search", "spanmeter.project": "acme"})
    usage = {"input": 10, "output": 5}
    tagged = emit(
        provider,
        "chat",
        genai_attributes(
            "openai",
            "gpt-4o-mini",
            usage,
            **{
                "spanmeter.tag.feature": "chat",
                "spanmeter.tag.experiment": "b",
                "user.id": "u-42",
                "session.id": "s-1",
                "gen_ai.conversation.id": "conv-9",
                "http.route": "/api/answers/{id}",
                "http.host": "globex.example.com",
            },
        ),
        AT_NS,
    )
    by_rule = emit(
        provider, "chat", genai_attributes("openai", "gpt-4o-mini", usage, **{"app.feature": "search"}), AT_NS
    )
    no_match = emit(
        provider, "chat", genai_attributes("openai", "gpt-4o-mini", usage, **{"http.route": "/health"}), AT_NS
    )
    wait_for_rows(collector, 3)
    stored = {row["span_id"]: row for row in rows(store, database)}

    row = stored[tagged]
    assert row["tags"] == {
        "feature": "chat",
        "experiment": "b",
        "team": "search",
        "route": "answers",
        "tenant": "globex",
    }
    assert (row["feature"], row["user_id"], row["session_id"]) == ("chat", "u-42", "s-1")
    assert row["conversation_id"] == "conv-9"
    assert row["project"] == "acme"
    # Tag attributes are read into `tags`, not repeated among the span attributes.
    assert not any(key.startswith("spanmeter.tag.") for key in row["span_attributes"])
    assert row["span_attributes"]["http.route"] == "/api/answers/{id}"

    assert stored[by_rule]["feature"] == "search"
    assert stored[by_rule]["tags"]["feature"] == "search"
    assert "route" not in stored[no_match]["tags"]
    assert stored[no_match]["feature"] == ""


def test_prompt_text_is_dropped_unless_capture_is_on(
    start_collector: Callable[..., Collector], store: Client, database: str
) -> None:
    content = {
        "gen_ai.input.messages": '[{"role":"user","parts":[{"type":"text","content":"my secret"}]}]',
        "gen_ai.prompt.0.content": "my secret",
        "gen_ai.request.temperature": 0.2,
    }
    collector = start_collector({"exporters": {"clickhouse": {"batch": {"max_age": "100ms"}}}})
    emit(tracer_provider(collector), "chat", genai_attributes("openai", "gpt-4o", {"input": 1, "output": 1}, **content))
    wait_for_rows(collector, 1)
    [row] = rows(store, database)
    assert "my secret" not in str(row)
    assert row["span_attributes"]["gen_ai.request.temperature"] == "0.2"
