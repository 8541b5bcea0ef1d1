"""`pipelines.yaml`: loading, `${env:VAR}` substitution and validation.

The file follows the OpenTelemetry Collector's shape (receivers / processors / exporters /
service.pipelines, component ids `type[/name]`) so that anyone who has configured a Collector can
read it. Every problem is reported as ``ConfigError`` naming the file and the key path.

Each component's settings are its own model, next to its code (as a Collector component owns its config struct):
`receivers/config.py`, `processors/config.py`, `exporters/config.py`, `budgets/config.py`, `auth.py` (the
`spanmeter_keys` extension), `digest/config.py`, `findings/config.py`. This module validates each component against
the model of its type, and the pipelines and listeners across them. The models are re-exported here.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, NonNegativeInt, ValidationError, model_validator

from .auth import KeyAuthConfig, RateLimitConfig
from .budgets.config import (
    BUDGET_SCOPE_KEYS,
    BUDGET_WINDOW,
    BudgetConfig,
    BudgetProcessorConfig,
    EmailChannelConfig,
    SlackChannelConfig,
    WebhookChannelConfig,
)
from .config_types import KeyedError, StrictModel
from .digest.config import DigestConfig
from .exporters.config import (
    BatchConfig,
    ClickHouseExporterConfig,
    OtlpExporterConfig,
    QueueConfig,
    RetentionConfig,
    RetryConfig,
)
from .findings.config import FindingsConfig
from .privacy import describe_secret
from .processors.config import (
    GenAIProcessorConfig,
    PriceOverride,
    PricingProcessorConfig,
    RedactionConfig,
    RedactionRule,
    TagRule,
    TagsProcessorConfig,
)
from .receivers.config import (
    AuthSettings,
    GrpcProtocolConfig,
    HttpProtocolConfig,
    Listener,
    OtlpReceiverConfig,
    TlsServerConfig,
)

__all__ = [
    "BUDGET_SCOPE_KEYS",
    "BUDGET_WINDOW",
    "AuthSettings",
    "BatchConfig",
    "BudgetConfig",
    "BudgetProcessorConfig",
    "ClickHouseExporterConfig",
    "Config",
    "ConfigError",
    "EmailChannelConfig",
    "GenAIProcessorConfig",
    "GrpcProtocolConfig",
    "HttpProtocolConfig",
    "KeyAuthConfig",
    "OtlpExporterConfig",
    "OtlpReceiverConfig",
    "PipelineConfig",
    "PriceOverride",
    "PricingProcessorConfig",
    "QueueConfig",
    "RateLimitConfig",
    "RedactionConfig",
    "RedactionRule",
    "RetentionConfig",
    "RetryConfig",
    "ServiceConfig",
    "SlackChannelConfig",
    "TagRule",
    "TagsProcessorConfig",
    "TlsServerConfig",
    "WebhookChannelConfig",
    "component_type",
    "load_config",
    "substitute_env",
    "unused_components",
]


class ConfigError(Exception):
    """A configuration problem; the message names the file and the key path."""


# --- service ---------------------------------------------------------------------------------


class PipelineConfig(StrictModel):
    receivers: list[str] = Field(min_length=1)
    processors: list[str] = Field(default_factory=list)
    exporters: list[str] = Field(min_length=1)


class Pipelines(StrictModel):
    traces: PipelineConfig
    metrics: PipelineConfig | None = None
    logs: PipelineConfig | None = None


class TelemetryConfig(StrictModel):
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class ServiceConfig(StrictModel):
    extensions: list[str] = Field(default_factory=list)
    pipelines: Pipelines
    telemetry: TelemetryConfig = TelemetryConfig()
    workers: NonNegativeInt = 0
    """Processes that read, price and tag spans beside the receiving one (0: all in the receiving process)."""


_COMPONENT_MODELS: dict[str, dict[str, type[BaseModel]]] = {
    "extensions": {"spanmeter_keys": KeyAuthConfig, "spanmeter_digest": DigestConfig},
    "receivers": {"otlp": OtlpReceiverConfig},
    "processors": {
        "genai": GenAIProcessorConfig,
        "pricing": PricingProcessorConfig,
        "tags": TagsProcessorConfig,
        "budget": BudgetProcessorConfig,
    },
    "exporters": {"clickhouse": ClickHouseExporterConfig, "otlp": OtlpExporterConfig},
}


def component_type(component_id: str) -> str:
    """`otlp/internal` -> `otlp`, as the Collector names components."""
    return component_id.split("/", 1)[0]


class Config(StrictModel):
    extensions: dict[str, Any] = Field(default_factory=dict)
    receivers: dict[str, Any]
    processors: dict[str, Any] = Field(default_factory=dict)
    exporters: dict[str, Any]
    service: ServiceConfig
    findings: FindingsConfig = FindingsConfig()
    """Thresholds of the findings' rules and how often they are stored (findings/config.py)."""

    @model_validator(mode="before")
    @classmethod
    def _typed_components(cls, data: Any) -> Any:
        """Validate each component against the model of its type (`otlp/2` is an `otlp`)."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        for section, models in _COMPONENT_MODELS.items():
            components = data.get(section)
            if components is None:
                continue
            if not isinstance(components, Mapping):
                raise ValueError(f"{section}: expected a mapping of component ids")
            typed: dict[str, Any] = {}
            for component_id, body in components.items():
                model = models.get(component_type(str(component_id)))
                if model is None:
                    raise KeyedError(
                        (section, component_id), f"unknown component type; expected one of {sorted(models)}"
                    )
                try:
                    typed[component_id] = model.model_validate(body or {})
                except ValidationError as exc:
                    inner = _find_keyed(exc)  # a model's own cross-field check that names its key
                    if inner is not None:
                        raise KeyedError((section, component_id, *inner.path), inner.detail) from None
                    raise KeyedError((section, component_id), exc) from None
            data[section] = typed
        return data

    @model_validator(mode="after")
    def _pipelines_reference_components(self) -> Config:
        sections = {"receivers": self.receivers, "processors": self.processors, "exporters": self.exporters}
        for signal in ("traces", "metrics", "logs"):
            pipeline: PipelineConfig | None = getattr(self.service.pipelines, signal)
            if pipeline is None:
                continue
            for section, declared in sections.items():
                for index, component_id in enumerate(getattr(pipeline, section)):
                    if component_id not in declared:
                        raise KeyedError(
                            ("service", "pipelines", signal, section, index),
                            f"{component_id!r} is not declared under {section}: (declared: {sorted(declared)})",
                        )
        traces = self.service.pipelines.traces
        if not traces.processors or component_type(traces.processors[0]) != "genai":
            raise KeyedError(
                ("service", "pipelines", "traces", "processors"),
                "must start with a genai processor: it turns OTLP spans into rows for the others",
            )
        if not any(component_type(p) == "pricing" for p in traces.processors):
            # Unpriced rows would be stored at $0 and not counted as unpriced: refuse rather than under-report.
            raise KeyedError(
                ("service", "pipelines", "traces", "processors"),
                "needs a pricing processor (e.g. [genai, pricing, tags]): without it every call is stored at $0",
            )
        self._check_listeners()
        self._check_digests()
        stores = [e for e in traces.exporters if component_type(e) == "clickhouse"]
        if len(stores) != 1:
            raise KeyedError(("service", "pipelines", "traces", "exporters"), "needs exactly one clickhouse exporter")
        for signal in ("metrics", "logs"):
            pipeline = getattr(self.service.pipelines, signal)
            if pipeline is not None and any(component_type(e) != "otlp" for e in pipeline.exporters):
                raise KeyedError(
                    ("service", "pipelines", signal, "exporters"), "only otlp exporters can take metrics and logs"
                )
        return self

    def _check_digests(self) -> None:
        """A digest is sent on the traces pipeline's budget processor's channels: each one named must exist."""
        declared: dict[str, Any] = {}
        for processor_id in self.service.pipelines.traces.processors:
            if isinstance(self.processors.get(processor_id), BudgetProcessorConfig):
                declared = dict(self.processors[processor_id].channels)
        for extension_id, extension in self.extensions.items():
            if not isinstance(extension, DigestConfig):
                continue
            if not extension.channels and extension_id in self.service.extensions:
                raise KeyedError(("extensions", extension_id, "channels"), "a digest needs at least one channel")
            for position, channel in enumerate(extension.channels):
                if channel not in declared:
                    raise KeyedError(
                        ("extensions", extension_id, "channels", position),
                        f"unknown channel {channel!r}: a digest uses the budget processor's channels "
                        f"(declared: {sorted(declared)})",
                    )

    def _check_listeners(self) -> None:
        """Every authenticator named exists and is enabled; nothing listens beyond loopback unguarded."""
        for extension_id in self.service.extensions:
            if extension_id not in self.extensions:
                raise KeyedError(("service", "extensions"), f"{extension_id!r} is not declared under extensions:")
        for receiver_id, receiver in self.receivers.items():
            for protocol in ("grpc", "http"):
                listener: Listener | None = getattr(receiver.protocols, protocol)
                if listener is None:
                    continue
                path = ("receivers", receiver_id, "protocols", protocol)
                if listener.auth is not None:
                    name = listener.auth.authenticator
                    if name not in self.extensions or name not in self.service.extensions:
                        raise KeyedError(
                            (*path, "auth", "authenticator"),
                            f"{name!r} must be declared under extensions: and listed in service.extensions",
                        )
                elif not listener.insecure and not _is_loopback(listener.endpoint):  # type: ignore[attr-defined]
                    raise KeyedError(
                        (*path, "endpoint"),
                        "listens beyond loopback without auth: anyone who reaches it could write spend. Add "
                        "auth: {authenticator: spanmeter_keys} (README: Security), or set insecure: true",
                    )


def _is_loopback(endpoint: str) -> bool:
    host = endpoint.rpartition(":")[0].strip("[]") or "127.0.0.1"
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def unused_components(config: Config) -> list[str]:
    """One warning per component no pipeline uses: it is validated but has no effect, so say so at start.

    Processors count only in the traces pipeline: metrics and logs are forwarded unprocessed.
    """
    pipelines = config.service.pipelines
    signals = [p for p in (pipelines.traces, pipelines.metrics, pipelines.logs) if p is not None]
    warnings = []
    for section in ("receivers", "processors", "exporters"):
        named_in = signals if section != "processors" else [pipelines.traces]
        used = {component_id for pipeline in named_in for component_id in getattr(pipeline, section)}
        where = "service.pipelines.traces.processors" if section == "processors" else "any of service.pipelines"
        for component_id, body in getattr(config, section).items():
            if component_id in used:
                continue
            warning = f"{section}.{component_id} is configured but not in {where}: it has no effect"
            if isinstance(body, BudgetProcessorConfig) and body.budgets:
                warning += f" (its {len(body.budgets)} budget(s) are not checked)"
            warnings.append(warning)
    for extension_id in config.extensions:
        if extension_id not in config.service.extensions:
            warnings.append(f"extensions.{extension_id} is configured but not in service.extensions: it has no effect")
    return warnings


# --- loading ---------------------------------------------------------------------------------

_REF_NAME = re.compile(r"^(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$", re.DOTALL)


def substitute_env(value: str, env: Mapping[str, str], where: str, secret: bool = False) -> str:
    """Expand `${env:VAR}`, `${VAR}` and `${env:VAR:-default}` (defaults may nest); `$$` is `$`.

    Values taken from the environment are not expanded again, as in the Collector.
    """
    out: list[str] = []
    i = 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
        elif value.startswith("${", i):
            end = _closing_brace(value, i + 2)
            if end < 0:
                shown = f"(a ${{ at character {i + 1} with no }})" if secret else repr(value[i:])
                raise ConfigError(f"{where}: unterminated substitution {shown}")
            out.append(_expand_reference(value[i + 2 : end], env, where, secret))
            i = end + 1
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    for index in range(start, len(text)):
        if text.startswith("${", index):
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    return -1


def _expand_reference(reference: str, env: Mapping[str, str], where: str, secret: bool) -> str:
    match = _REF_NAME.match(reference)
    if not match:
        raise ConfigError(
            f"{where}: invalid substitution "
            + (f"(${{...}} of {len(reference)} characters)" if secret else f"${{{reference}}}")
            + "; "
            "expected ${env:NAME} or ${env:NAME:-default}"
        )
    name, default = match.group(1), match.group(2)
    if name in env:
        return env[name]
    if default is not None:
        return substitute_env(default, env, where, secret)
    raise ConfigError(f"{where}: environment variable {name} is not set and has no default (${{env:{name}:-...}})")


def _substitute_tree(node: Any, env: Mapping[str, str], file: str, path: tuple[Any, ...]) -> Any:
    if isinstance(node, str):
        # In a secret-bearing value (a password, a token, a URL...) an error does not repeat the text.
        return substitute_env(node, env, f"{file}: {_format_path(path)}", _is_secret(path, node))
    if isinstance(node, dict):
        return {key: _substitute_tree(value, env, file, (*path, key)) for key, value in node.items()}
    if isinstance(node, list):
        return [_substitute_tree(value, env, file, (*path, index)) for index, value in enumerate(node)]
    return node


def _format_path(path: tuple[Any, ...]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def _format_validation_error(file: str, prefix: tuple[Any, ...], error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        path = (*prefix, *(p for p in item["loc"] if p not in ("function-after", "function-before")))
        got = item.get("input")
        detail = item["msg"]
        if item["type"] == "extra_forbidden":
            detail = "unknown key"
        elif item["type"] == "missing":
            detail = "required key is missing"
        elif _is_secret(path, got):  # say which key is wrong, never its value
            if isinstance(got, str) and got:
                detail = detail.replace(f", got {got!r}", "").replace(repr(got), "…").replace(got, "…")
            detail += f" (got {describe_secret(got)})"
        elif not isinstance(got, dict | list) and f"got {got!r}" not in detail:  # our validators name it already
            detail += f" (got {got!r})"
        lines.append(f"{file}: {_format_path(path)}: {detail}")
    return "\n".join(lines)


_SECRET_KEYS = frozenset({"password", "passwd", "secret", "token", "headers", "url", "authorization", "api_key"})
_SECRET_SUFFIXES = ("password", "secret", "_token", "_key")


def _is_secret(path: tuple[Any, ...], value: object) -> bool:
    """Whether a config value may hold a secret, so that an error names its key but not its value: passwords,
    secrets, tokens, keys, headers (any value under them), URLs (a Slack webhook's token is its path), and
    endpoints carrying credentials or a query."""
    for part in path:
        if isinstance(part, str):
            name = part.lower()
            if name in _SECRET_KEYS or name.endswith(_SECRET_SUFFIXES):
                return True
    last = path[-1] if path else ""
    return last == "endpoint" and isinstance(value, str) and ("@" in value or "?" in value)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """The parser's problem and where, without the excerpt of the file it quotes (which may hold a secret)."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        return where + (error.problem or error.context or "cannot be parsed")
    return type(error).__name__


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, substitute and validate a pipelines file; raise ConfigError naming file and key."""
    file = str(path)
    env = os.environ if env is None else env
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: expected a mapping with receivers, processors, exporters and service")
    raw = _substitute_tree(raw, env, file, ())
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        # pydantic wraps errors raised inside model validators; unwrap ours to keep the key path.
        keyed = _find_keyed(exc)
        if keyed is not None:
            if isinstance(keyed.detail, ValidationError):
                raise ConfigError(_format_validation_error(file, keyed.path, keyed.detail)) from None
            raise ConfigError(f"{file}: {_format_path(keyed.path)}: {keyed.detail}") from None
        raise ConfigError(_format_validation_error(file, (), exc)) from None


def _find_keyed(error: ValidationError) -> KeyedError | None:
    """Ours among pydantic's errors, its path under the key of the model that raised it (a nested section's own
    cross-field check names its key from that section)."""
    for item in error.errors():
        cause = item.get("ctx", {}).get("error")
        if isinstance(cause, KeyedError):
            return KeyedError((*item["loc"], *cause.path), cause.detail)
    return None
