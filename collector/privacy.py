"""Content privacy: which attributes are prompt and completion content, and redaction of secrets and
personal data from every string the collector stores.

Built-in rules find provider API keys, bearer and basic credentials, JWTs, private keys, credentials in
URLs, `key=value` secrets, emails and card numbers (Luhn-checked, with an issuer's prefix and length, so
ordinary numbers stay). Each rule is its own regex, most starting with a literal or gated on a substring (one
alternation of all of them measured 30x slower with Python's `re`); rules from `pipelines.yaml`
(`processors.genai.redaction.rules`) run after them. A rule runs on a value only when the value is long enough
to hold what it finds; the genai processor scans ordinary attribute values from 20 characters on (content always).

This module imports nothing of the collector but the conventions, so that `config.py` can name the
built-in rules and every component can describe a secret without echoing it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from .conventions import CONVENTIONS

__all__ = [
    "BUILTIN_RULES",
    "CONTENT_ATTRIBUTES",
    "CONTENT_PREFIXES",
    "Redactor",
    "describe_secret",
    "is_content",
    "luhn_valid",
    "url_for_log",
]

CONTENT_ATTRIBUTES: frozenset[str] = frozenset().union(*(c.content_attributes for c in CONVENTIONS))
"""Prompt and completion attributes, as the conventions name them (all of them: a span read with one
convention may carry another's content attributes, e.g. an OpenInference span under an OTel scope)."""
CONTENT_PREFIXES: tuple[str, ...] = tuple(sorted({p for c in CONVENTIONS for p in c.content_prefixes}))
"""Indexed content attributes (`gen_ai.prompt.0.content`, `llm.input_messages.0.message.content`...)."""


def is_content(key: str) -> bool:
    """Whether an attribute is content in any convention: kept only with capture on, never forwarded."""
    return key in CONTENT_ATTRIBUTES or key.startswith(CONTENT_PREFIXES)


@dataclass(frozen=True)
class _Builtin:
    name: str
    pattern: str
    """A regex that starts with a literal where it can: Python's `re` then finds candidates at the speed of a
    substring search; a leading class or boundary makes it try every position (30x slower on prose)."""
    gate: tuple[str, ...] = ()
    """The rule runs only on text containing one of these substrings (a C-speed check)."""
    gate_lower: bool = False
    """The gate is checked on the lowercased text (keywords in any case)."""
    min_length: int = 6
    """The shortest text the rule can match: shorter values are not scanned."""
    keep: str = ""
    """A named group kept as it is (a header's name, a URL's scheme): only the rest is replaced."""
    check: Callable[[re.Match[str]], bool] | None = None
    """Whether a match is really one (card numbers: the issuer's prefix and length, and the Luhn checksum)."""
    names: tuple[tuple[str, str], ...] = ()
    """(prefix, name): one pattern for several kinds (sk-ant- is Anthropic's, sk- OpenAI's)."""
    flags: int = 0


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies (and 90 % of other numbers do not)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


# Issuer prefixes and lengths (ISO/IEC 7812 ranges as the card networks publish them): Visa 4 (13, 16, 19
# digits), Mastercard 51-55 and 2221-2720 (16), American Express 34, 37 (15), Diners Club 300-305, 36, 38, 39
# (14-19), Discover 6011, 644-649, 65 (16-19), JCB 3528-3589 (16-19), UnionPay 62 (16-19), Maestro 50, 56-69.
_CARD_ISSUERS = re.compile(
    r"4(?:\d{12}|\d{15}|\d{18})"
    r"|(?:5[1-5]\d\d|222[1-9]|22[3-9]\d|2[3-6]\d\d|27[01]\d|2720)\d{12}"
    r"|3[47]\d{13}"
    r"|3(?:0[0-5]|[689]\d)\d{11,16}"
    r"|(?:6011|64[4-9]\d|65\d\d|62\d\d|352[89]|35[3-8]\d)\d{12,15}"
    r"|(?:50|5[6-9]|6\d)\d{10,17}"
)


def _is_card_at(match: re.Match[str]) -> bool:
    start = match.start()
    if start and match.string[start - 1] in "0123456789-":  # inside a longer number
        return False
    digits = match.group().replace(" ", "").replace("-", "")
    return _CARD_ISSUERS.fullmatch(digits) is not None and luhn_valid(digits)


_KEY = r"[A-Za-z0-9_-]"
BUILTIN_RULES: tuple[_Builtin, ...] = (
    _Builtin(
        "private_key",
        r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----[\s\S]{0,16384}?-----END (?:[A-Z]+ )*PRIVATE KEY-----",
        gate=("PRIVATE KEY",),
        min_length=40,
    ),
    _Builtin("jwt", r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{8,}", min_length=30),
    # Anthropic: sk-ant-api03-..., sk-ant-admin01-...; OpenAI: sk-proj-..., sk-svcacct-..., sk-admin-..., legacy
    # sk-<48>; also OpenRouter's sk-or-v1-... and DeepSeek's sk-<hex>.
    _Builtin(
        "openai_api_key",
        rf"sk-{_KEY}{{20,}}",
        min_length=23,
        names=(("sk-ant-", "anthropic_api_key"), ("sk-", "openai_api_key")),
    ),
    _Builtin("google_api_key", r"AIza[0-9A-Za-z_-]{35}", min_length=39),
    _Builtin("google_oauth_token", r"ya29\.[0-9A-Za-z_-]{20,}", min_length=25),
    _Builtin("aws_access_key_id", r"A(?:KIA|SIA|BIA|CCA)[0-9A-Z]{16}(?![0-9A-Za-z])", min_length=20),
    _Builtin("github_token", r"g(?:h[pousr]_[A-Za-z0-9]{36,}|ithub_pat_[A-Za-z0-9_]{22,})", min_length=40),
    _Builtin(
        "slack_webhook_url",
        r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]+",
        gate=("hooks.slack.com",),
        min_length=40,
    ),
    _Builtin("slack_token", r"x(?:ox[abposr]-[A-Za-z0-9-]{10,}|app-\d-[A-Za-z0-9-]{10,})", min_length=15),
    _Builtin("stripe_key", r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,}", gate=("k_live_", "k_test_"), min_length=24),
    _Builtin("huggingface_token", r"hf_[A-Za-z0-9]{30,}", min_length=33),
    _Builtin("groq_api_key", r"gsk_[A-Za-z0-9]{40,}", min_length=44),
    _Builtin("xai_api_key", r"xai-[A-Za-z0-9]{40,}", min_length=44),
    _Builtin("replicate_token", r"r8_[A-Za-z0-9]{30,}", min_length=33),
    _Builtin("perplexity_api_key", r"pplx-[A-Za-z0-9]{40,}", min_length=45),
    # `Authorization: Bearer <token>` and a bare `Bearer <token>`: the word kept, the token replaced. A token has
    # a digit or punctuation, so "the bearer of" or "Bearer responsibilities" stay.
    _Builtin(
        "bearer_token",
        r"(?P<bearer_token_keep>[Bb]earer\s+)(?=[A-Za-z0-9._~+/-]*[0-9._~+/-])[A-Za-z0-9._~+/=-]{16,}",
        gate=("earer",),
        min_length=23,
        keep="bearer_token_keep",
    ),
    _Builtin(
        "basic_auth",
        r"(?P<basic_auth_keep>[Bb]asic\s+)(?=[A-Za-z0-9+/]*[0-9+/])[A-Za-z0-9+/]{8,}={0,2}",
        gate=("asic",),
        min_length=14,
        keep="basic_auth_keep",
    ),
    # user:password@ in a URL: the password replaced.
    _Builtin(
        "url_credentials",
        r"(?P<url_credentials_keep>://[^/\s:@]{1,256}:)[^/\s@]{1,256}(?=@)",
        gate=("@",),
        min_length=8,
        keep="url_credentials_keep",
    ),
    # Starts with its class, not a look-behind, so that `re` skips to candidate digits fast; the digit before it
    # is checked in `_is_card_at`.
    _Builtin("card_number", r"[2-6]\d{3}(?:[ -]?\d){9,15}(?!\d)", min_length=13, check=_is_card_at),
)

_EMAIL_DOMAIN = re.compile(r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}\b")
_EMAIL_LOCAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")

_SECRET_NAMES = frozenset(
    {
        "api_key", "apikey", "api-key", "x-api-key", "x_api_key", "secret", "client_secret", "client-secret",
        "secret_key", "secret-key", "secretkey", "secret_access_key", "aws_secret_access_key", "private_key",
        "token", "access_token", "access-token", "auth_token", "auth-token", "refresh_token", "id_token",
        "password", "passwd", "db_password", "accountkey", "sharedaccesskey", "sig",
    }
)  # fmt: skip
"""Names whose value is a secret in `name=value`, `name: value`, `"name": "value"` (compared lowercased)."""
_SECRET_WORDS = ("key", "secret", "token", "passw", "sig")
"""What every name above contains: the text is searched for these (C speed) before any name is read."""
_IDENTIFIER = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
_ASSIGNED_VALUE = re.compile(r"[\"']?\s*[:=]\s*[\"']?(?![\"'\s*])([^\s\"'&,;}]{6,})")


class _Finder:
    """A rule found by code rather than one regex: where a regex would have to try every position."""

    name = ""
    min_length = 6

    def apply(self, text: str) -> str:
        spans = self.find(text)
        if not spans:
            return text
        parts = []
        last = 0
        for start, end in spans:
            parts.append(text[last:start])
            parts.append(f"[REDACTED:{self.name}]")
            last = end
        parts.append(text[last:])
        return "".join(parts)

    def find(self, text: str) -> list[tuple[int, int]]:
        raise NotImplementedError


class _Emails(_Finder):
    """From each `@` (memchr speed), the domain by regex and the local part backwards."""

    name = "email"

    def find(self, text: str) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        at = text.find("@")
        while at >= 0:
            domain = _EMAIL_DOMAIN.match(text, at)
            start = at
            while start > 0 and at - start < 64 and text[start - 1] in _EMAIL_LOCAL:
                start -= 1
            if domain is not None and start < at and (start == 0 or text[start - 1] not in _EMAIL_LOCAL):
                if not spans or start >= spans[-1][1]:
                    spans.append((start, domain.end()))
                at = text.find("@", domain.end())
            else:
                at = text.find("@", at + 1)
        return spans


class _Assignments(_Finder):
    """`api_key=...`, `"password": "..."`, `AccountKey=...` (Azure connection strings), `sig=...` (Azure SAS):
    the value replaced, the name kept."""

    name = "secret_assignment"
    min_length = 10

    def find(self, text: str) -> list[tuple[int, int]]:
        lowered = text.lower()
        if len(lowered) != len(text):  # lowercasing changed lengths (rare letters): positions would not match
            return []
        spans: list[tuple[int, int]] = []
        for word in _SECRET_WORDS:
            index = lowered.find(word)
            while index >= 0:
                start, end = index, index + len(word)
                while start > 0 and lowered[start - 1] in _IDENTIFIER:
                    start -= 1
                while end < len(lowered) and lowered[end] in _IDENTIFIER:
                    end += 1
                if lowered[start:end] in _SECRET_NAMES:
                    value = _ASSIGNED_VALUE.match(text, end)
                    if value is not None:
                        spans.append(value.span(1))
                index = lowered.find(word, end)
        spans.sort()
        merged: list[tuple[int, int]] = []
        for span in spans:
            if not merged or span[0] >= merged[-1][1]:
                merged.append(span)
        return merged


_FINDERS: tuple[_Finder, ...] = (_Assignments(), _Emails())
BUILTIN_NAMES: frozenset[str] = frozenset(
    {r.name for r in BUILTIN_RULES} | {kind for r in BUILTIN_RULES for _, kind in r.names} | {f.name for f in _FINDERS}
)
"""Every built-in rule's name, as `[REDACTED:<name>]` says and `disabled_rules` takes."""


class _Compiled:
    __slots__ = ("check", "disabled", "gate", "keep", "min_length", "name", "names", "regex")

    def __init__(self, rule: _Builtin, disabled: frozenset[str]) -> None:
        self.disabled = disabled
        self.name = rule.name
        self.regex = re.compile(rule.pattern)
        self.gate = rule.gate
        self.min_length = rule.min_length
        self.keep = rule.keep
        self.check = rule.check
        self.names = rule.names

    def apply(self, text: str) -> str:
        # search first: a miss costs half of what sub costs, and almost every value misses.
        if self.regex.search(text) is None:
            return text
        return self.regex.sub(self._replace, text)

    def _replace(self, match: re.Match[str]) -> str:
        found = match.group()
        if self.check is not None and not self.check(match):
            return found
        name = self.name
        for prefix, kind in self.names:
            if found.startswith(prefix):
                name = kind
                break
        if name in self.disabled:
            return found
        if self.keep:
            return match.group(self.keep) + f"[REDACTED:{name}]"
        return f"[REDACTED:{name}]"


class Redactor:
    """Replaces what the rules find with `[REDACTED:<rule>]` (or a rule's own replacement).

    `redact` is called on stored attribute values: it returns the same object when nothing matches. Each rule
    is skipped on text too short for it or without its gate substring, so most values cost a few compares.
    """

    def __init__(
        self,
        rules: Iterable[tuple[str, str, str | None]] = (),
        builtin: bool = True,
        disabled: Iterable[str] = (),
    ) -> None:
        disabled = frozenset(disabled)
        self._regexes = [
            _Compiled(r, disabled)
            for r in BUILTIN_RULES
            if builtin and (any(kind not in disabled for _, kind in r.names) if r.names else r.name not in disabled)
        ]
        self._finders = [f for f in _FINDERS if builtin and f.name not in disabled]
        self._extra = [
            (re.compile(regex), replacement if replacement is not None else f"[REDACTED:{name}]")
            for name, regex, replacement in rules
        ]
        lengths = [r.min_length for r in self._regexes] + [f.min_length for f in self._finders]
        self._shortest = 1 if self._extra else min(lengths, default=1 << 62)
        self.active = bool(lengths or self._extra)

    def redact(self, text: str) -> str:
        length = len(text)
        if length < self._shortest:
            return text
        for rule in self._regexes:
            if length < rule.min_length:
                continue
            if rule.gate:
                for gate in rule.gate:
                    if gate in text:
                        break
                else:
                    continue
            text = rule.apply(text)
        for finder in self._finders:
            if len(text) >= finder.min_length:
                text = finder.apply(text)
        for pattern, replacement in self._extra:
            text = pattern.sub(replacement, text)
        return text


def describe_secret(value: object) -> str:
    """What an error may say of a secret's value: its kind and length, never its characters."""
    if isinstance(value, str):
        return f"a value of {len(value)} characters"
    if isinstance(value, dict | list):
        return f"a {type(value).__name__} of {len(value)} entries"
    return f"a value of type {type(value).__name__}"


def url_for_log(url: str) -> str:
    """A URL as a log line may show it: scheme, host and port; no credentials, path or query (a Slack
    webhook's token is its path, some endpoints take a key in the query)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an invalid URL)"
    if not parts.scheme or not host:
        return "(an invalid URL)"
    if ":" in host:
        host = f"[{host}]"
    return (
        f"{parts.scheme}://{host}{port}/…"
        if parts.path not in ("", "/") or parts.query
        else f"{parts.scheme}://{host}{port}"
    )
