"""Content privacy: what the built-in rules redact on realistic strings (each major provider's key format, JWTs,
emails, card numbers with valid and invalid Luhn checksums) and what they leave alone; rules from
pipelines.yaml; and, through a real collector with capture on, stored content redacted, other conventions'
content treated as content, ordinary numbers untouched."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from clickhouse_connect.driver.client import Client

from spanmeter.config import ConfigError, load_config
from spanmeter.privacy import Redactor, describe_secret, is_content, luhn_valid, url_for_log
from spanmeter.service import Collector

from .conftest import SHIPPED_CONFIG, emit, rows, tracer_provider, wait_for_rows

# Realistic shapes (random characters, the providers' documented prefixes and lengths); none is a live key.
SECRETS = {
    "openai_api_key": [
        "sk-proj-" + "Xq3vB8kLm2Np5Rs7Tu9Wx1Yz4Ab6Cd0Ef" * 4 + "T3BlbkFJ" + "Gh2Ij4Kl6Mn8Op0Qr2St4Uv6Wx8Yz0Ab2Cd",
        "sk-svcacct-Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8L9z0X1c2V3b4N5m6",
        "sk-" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0u1V2w3X4",  # legacy, 48 characters
        "sk-or-v1-" + "0f" * 32,  # OpenRouter, OpenAI-compatible
    ],
    "anthropic_api_key": [
        "sk-ant-api03-" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe" * 3 + "-AbCdEfAA",
        "sk-ant-admin01-" + "Q9w8E7r6T5y4U3i2O1p0" * 4,
    ],
    "google_api_key": ["AIzaSyD4x8Qb2LmN0pRt7Uv9Wx3Yz5Ab1Cd6Efg"],
    "google_oauth_token": ["ya29.a0AfB_byC3dE4fG5hI6jK7lM8nO9pQ0rS1tU2vW3xY4z"],
    "aws_access_key_id": ["AKIAQ3EGRLM5XJ7P2WZN", "ASIAY4LK8WQ2N7D5HX3C"],
    "github_token": ["ghp_" + "R4nd0mT0k3nV4lu3sAbCdEfGhIjKlMnOpQrS", "github_pat_11ABCDEFG0" + "x" * 70],
    "slack_token": ["xoxb-2718281828-3141592653589-Q7wE9rT1yU3iO5pA7sD9fG1h"],
    "slack_webhook_url": ["https://hooks.slack.com/services/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"],
    "stripe_key": ["sk_live_51HqLy2KZvKYlo2C8abc123XYZ"],
    "huggingface_token": ["hf_QwErTyUiOpAsDfGhJkLzXcVbNm1234567890"],
    "groq_api_key": ["gsk_" + "Ab3De6Gh9Jk2Mn5Pq8St1Vw4Yz7" * 2],
    "xai_api_key": ["xai-" + "Zq8Wx7Ec6Rv5Tb4Yn3Um2Ik1Ol0Pa9Sd8Fg7Hj6Kl5Zx4Cv3Bn2Mm1Qq0Ww9Ee8Rr7"],
    "jwt": [
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2"
        "MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    ],
    "email": ["jane.doe+billing@example.co.uk", "ops_team@mail.acme-corp.io"],
    # Visa, Mastercard (51-55 and 2-series), Amex, Discover, JCB, Diners: the networks' published test numbers.
    "card_number": [
        "4111 1111 1111 1111",
        "4012-8888-8888-1881",
        "5555555555554444",
        "2223003122003222",
        "378282246310005",
        "6011111111111117",
        "3530111333300000",
        "30569309025904",
    ],
}


@pytest.mark.parametrize(("rule", "secret"), [(rule, s) for rule, values in SECRETS.items() for s in values])
def test_builtin_rule_redacts_realistic_secret(rule: str, secret: str) -> None:
    text = f'user said: "please use {secret} for this", then left.'
    redacted = Redactor().redact(text)
    assert secret not in redacted
    assert f"[REDACTED:{rule}]" in redacted
    assert redacted.startswith('user said: "please use ') and redacted.endswith(' for this", then left.')


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0", "Authorization: Bearer [REDACTED:bearer_token]"),
        ("authorization: Basic dXNlcjpodW50ZXIy", "authorization: Basic [REDACTED:basic_auth]"),
        (
            "postgres://app:hunter2-s3cret@db.internal:5432/x",
            "postgres://app:[REDACTED:url_credentials]@db.internal:5432/x",
        ),
        (
            '{"api_key": "c0ffee12deadbeef", "max_tokens": 1000000}',
            '{"api_key": "[REDACTED:secret_assignment]", "max_tokens": 1000000}',
        ),
        ("password=Tr0ub4dor-3x&user=bob", "password=[REDACTED:secret_assignment]&user=bob"),
        (
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA==;"
            "EndpointSuffix=core.windows.net",
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=[REDACTED:secret_assignment];"
            "EndpointSuffix=core.windows.net",
        ),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----", "[REDACTED:private_key]"),
    ],
)
def test_credentials_in_context_keep_their_name(text: str, expected: str) -> None:
    assert Redactor().redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # Visa's shape, Luhn fails
        "5555555555554445",
        "378282246310006",
        "started at 1732982400000 (ms) and 1732982400123456789 (ns)",  # timestamps: start with 1
        "order 2024-000123-77, invoice 900000000000001, 128000 tokens, $12,345,678.90",
        "call +1 (415) 555-2671 or 020 7946 0958",
        "trace 4bf92f3577b34da6a3ce929d0e0e4736, span 00f067aa0ba902b7",
        "the bearer of bad news; Bearer responsibilities; a basic question",
        "sk-short and skip-this-line; monkey: bananas; the key point is clarity",
        "max_tokens=4096, temperature=0.2, top_p=1",
        "gpt-4o-2024-08-06 claude-sonnet-4-5 gemini-2.5-flash",
    ],
)
def test_ordinary_text_and_numbers_untouched(text: str) -> None:
    assert Redactor().redact(text) == text


def test_luhn() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112") and not luhn_valid("79927398710")


def test_disabled_rules_and_own_rules() -> None:
    redactor = Redactor(
        rules=[("employee_id", r"EMP-\d{6}", None), ("ticket", r"(?P<p>TCK)-\d+", r"\g<p>-***")],
        disabled=["email"],
    )
    text = "EMP-123456 wrote to jane@example.com about TCK-991 with key AKIAQ3EGRLM5XJ7P2WZN"
    assert redactor.redact(text) == (
        "[REDACTED:employee_id] wrote to jane@example.com about TCK-*** with key [REDACTED:aws_access_key_id]"
    )
    assert Redactor(builtin=False).redact("AKIAQ3EGRLM5XJ7P2WZN") == "AKIAQ3EGRLM5XJ7P2WZN"
    # one pattern, two kinds: disabling Anthropic's leaves OpenAI's
    mixed = Redactor(disabled=["anthropic_api_key"]).redact(
        f"{SECRETS['anthropic_api_key'][0]} {SECRETS['openai_api_key'][2]}"
    )
    assert mixed == f"{SECRETS['anthropic_api_key'][0]} [REDACTED:openai_api_key]"


def test_content_allowlist_is_every_conventions() -> None:
    for key in (
        "gen_ai.input.messages",
        "gen_ai.prompt.0.content",
        "input.value",
        "llm.input_messages.0.message.content",
        "traceloop.entity.input",
        "ai.prompt.messages",
        "gen_ai.content.prompt",
    ):
        assert is_content(key), key
    for key in ("gen_ai.request.model", "url.full", "llm.invocation_parameters", "user.id"):
        assert not is_content(key), key


def test_secret_descriptions_say_no_characters() -> None:
    url = SECRETS["slack_webhook_url"][0]
    assert describe_secret(url) == f"a value of {len(url)} characters"
    assert url_for_log(url) == "https://hooks.slack.com/…"
    assert url_for_log("https://u:p4ss@otlp.example.com:4318/v1?key=abc") == "https://otlp.example.com:4318/…"
    assert url_for_log("http://collector:4318") == "http://collector:4318"


def _config_with(tmp_path: Path, genai: dict) -> Path:
    raw = yaml.safe_load(SHIPPED_CONFIG.read_text())
    raw["processors"]["genai"] = genai
    path = tmp_path / "pipelines.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("genai", "message"),
    [
        ({"redaction": {"rules": [{"name": "x", "regex": "(unclosed"}]}}, "processors.genai.redaction.rules[0]"),
        ({"redaction": {"rules": [{"name": "x", "regex": "a*"}]}}, "matches the empty string"),
        ({"redaction": {"rules": [{"name": "bad name!", "regex": "a"}]}}, "processors.genai.redaction.rules[0].name"),
        ({"redaction": {"disabled_rules": ["emails"]}}, "unknown built-in rule(s) ['emails']"),
    ],
)
def test_redaction_config_errors(tmp_path: Path, genai: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(_config_with(tmp_path, genai), env={})
    assert message in str(error.value)


# --- end to end ------------------------------------------------------------------------------------------

OPENAI_KEY = SECRETS["openai_api_key"][0]
ANTHROPIC_KEY = SECRETS["anthropic_api_key"][0]
CARD = "4111 1111 1111 1111"
NOT_A_CARD = "4111 1111 1111 1112"
PROMPT = json.dumps(
    [
        {
            "role": "user",
            "parts": [
                {
                    "type": "text",
                    "content": f"My OpenAI key is {OPENAI_KEY}, mail jane.doe@example.com, card {CARD}, "
                    f"not a card {NOT_A_CARD}, order 1732982400000, 128000 tokens, employee EMP-123456.",
                }
            ],
        }
    ]
)


def _call(provider, extra: dict) -> str:
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.output_tokens": 5,
        **extra,
    }
    return emit(provider, "chat gpt-4o-mini", attributes)


def test_stored_content_is_redacted_and_bounded(
    start_collector: Callable[..., Collector], store: Client, database: str
) -> None:
    collector = start_collector(
        {
            "processors": {
                "genai": {
                    "capture_content": True,
                    "max_content_length": 2000,
                    "max_content_per_span": 3000,
                    "redaction": {"rules": [{"name": "employee_id", "regex": r"EMP-\d{6}"}]},
                }
            },
            "exporters": {"clickhouse": {"batch": {"max_age": "100ms"}}},
        }
    )
    provider = tracer_provider(
        collector, "http-protobuf", resource={"process.command_args": ["app.py", "--token", ANTHROPIC_KEY]}
    )
    span_id = _call(
        provider,
        {
            "gen_ai.input.messages": PROMPT,
            "gen_ai.output.messages": "x" * 5000,  # past max_content_length: cut to 2000
            "input.value": "A" * 2500,  # OpenInference's content on an OTel span: content, and past the row's bound
            "url.full": f"https://generativelanguage.googleapis.com/v1/models?key={SECRETS['google_api_key'][0]}",
            "app.order_total": "1732982400000",
        },
    )
    provider.shutdown()
    wait_for_rows(collector, 1)
    (row,) = rows(store, database, "span_id = {id:String}", id=span_id)
    content = row["content"]
    stored_prompt = content["gen_ai.input.messages"]
    assert OPENAI_KEY not in stored_prompt and "jane.doe@example.com" not in stored_prompt
    assert CARD not in stored_prompt and "EMP-123456" not in stored_prompt
    for marker in ("openai_api_key", "email", "card_number", "employee_id"):
        assert f"[REDACTED:{marker}]" in stored_prompt
    assert NOT_A_CARD in stored_prompt and "order 1732982400000, 128000 tokens" in stored_prompt
    assert json.loads(stored_prompt)[0]["role"] == "user"  # still the JSON it was
    assert content["gen_ai.output.messages"] == "x" * 2000
    # per row: 3000 characters in all, in the span's attribute order; the rest dropped
    assert sum(map(len, content.values())) <= 3000
    assert "input.value" not in row["span_attributes"]
    # ordinary and resource attributes: credentials redacted, numbers kept
    assert row["span_attributes"]["url.full"].endswith("?key=[REDACTED:google_api_key]")
    assert row["span_attributes"]["app.order_total"] == "1732982400000"
    assert ANTHROPIC_KEY not in row["resource_attributes"]["process.command_args"]
    assert "[REDACTED:anthropic_api_key]" in row["resource_attributes"]["process.command_args"]


def test_without_capture_no_conventions_content_is_stored(collector: Collector, store: Client, database: str) -> None:
    provider = tracer_provider(collector, "grpc")
    span_id = _call(
        provider,
        {
            "gen_ai.input.messages": PROMPT,
            "input.value": "secret prompt",  # OpenInference's content on an OTel span
            "traceloop.entity.input": "secret prompt",
            "ai.prompt.messages": "secret prompt",
            "gen_ai.prompt.0.content": "secret prompt",
        },
    )
    provider.shutdown()
    wait_for_rows(collector, 1)
    (row,) = rows(store, database, "span_id = {id:String}", id=span_id)
    assert row["content"] == {}
    assert "secret prompt" not in json.dumps(row["span_attributes"]) and OPENAI_KEY not in json.dumps(row, default=str)
