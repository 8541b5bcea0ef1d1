"""Base for the provider instrumentors: patching, exact restore, and one span per call."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import wrapt
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]  # its module is "type: ignore"
from opentelemetry.trace import Tracer

from ._budget import check_budget
from ._genai import Call, in_model_span
from ._processor import install_tag_processor, warn_if_unexported
from ._stream import stream_proxy
from .version import __version__

_logger = logging.getLogger(__name__)

# wrapt 2 proxies derive from BaseObjectProxy (its ObjectProxy is a subclass); wrapt 1 has ObjectProxy only.
_PROXY_BASE: type = getattr(wrapt, "BaseObjectProxy", wrapt.ObjectProxy)

OnResult = Callable[[Any, Call], Any]


@dataclass
class Plan:
    """What one intercepted call becomes: its span, the kwargs sent on, and how to read the result.

    ``on_result`` gets the SDK's return value and the open call; it must return what the
    caller gets (the value itself, or a stream proxy) and end the span unless it streams.
    ``on_error`` gives extra attributes for a failed call (e.g. what a stream said so far).
    """

    operation: str
    provider: str
    model: str | None
    attributes: Mapping[str, Any]
    kwargs: dict[str, Any]
    on_result: OnResult


def respond(stream: bool, observer: Callable[[], Any], read: Callable[[Any], Mapping[str, Any]]) -> OnResult:
    """The usual ``on_result``: wrap a stream with a fresh observer, else record the response and end."""

    def on_result(result: Any, call: Call) -> Any:
        if stream:
            return stream_proxy(result, call, observer())
        call.finish(read(result))
        return result

    return on_result


Planner = Callable[[Any, tuple[Any, ...], dict[str, Any]], "Plan | None"]


@dataclass(frozen=True)
class Target:
    """A method to wrap: ``module``, ``Class.method``, and the planner for its calls."""

    module: str
    name: str
    planner: Planner
    is_async: bool = False


@dataclass
class _Patch:
    owner: Any
    attribute: str
    original: Any
    wrapper: Any = field(default=None)


def _resolve(module_name: str, dotted: str) -> tuple[Any, str]:
    owner: Any = importlib.import_module(module_name)
    *path, attribute = dotted.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, attribute


class SpanmeterInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Wraps each ``Target`` with a span per call; ``uninstrument()`` puts the originals back."""

    _scope: str = "spanmeter_instrumentation"
    _dependencies: Collection[str] = ()

    # BaseInstrumentor is a singleton whose __init__ runs on every ``Instrumentor()``,
    # so state is set in _instrument, never in __init__.
    _patches: list[_Patch]
    _tracer: Tracer
    _tracer_provider: Any = None
    _warned_duplicate = False

    def instrumentation_dependencies(self) -> Collection[str]:
        return self._dependencies

    def _targets(self, **kwargs: Any) -> Sequence[Target]:
        raise NotImplementedError

    def _instrument(self, **kwargs: Any) -> None:
        tracer_provider = kwargs.get("tracer_provider")
        install_tag_processor(tracer_provider)
        self._tracer_provider = tracer_provider
        self._tracer = trace.get_tracer(self._scope, __version__, tracer_provider)
        self._patches = []
        for target in self._targets(**kwargs):
            self._patch(target)

    def _uninstrument(self, **kwargs: Any) -> None:
        while self._patches:
            patch = self._patches.pop()
            if patch.owner.__dict__.get(patch.attribute) is patch.wrapper:
                setattr(patch.owner, patch.attribute, patch.original)
            else:
                _logger.warning(
                    "spanmeter: %s.%s was re-wrapped by another library; leaving it in place",
                    getattr(patch.owner, "__qualname__", patch.owner),
                    patch.attribute,
                )

    def _patch(self, target: Target) -> None:
        try:
            owner, attribute = _resolve(target.module, target.name)
            original = owner.__dict__[attribute]
        except (ImportError, AttributeError, KeyError):
            _logger.debug("spanmeter: %s.%s not in this SDK version", target.module, target.name)
            return
        if any(p.owner is owner and p.attribute == attribute for p in self._patches):
            return  # the same class under another module path (an SDK alias)
        if isinstance(original, _PROXY_BASE):
            _logger.warning(
                "spanmeter: %s.%s is already wrapped by another instrumentation; not instrumenting it, so "
                "each call keeps one span (set OTEL_PYTHON_DISABLED_INSTRUMENTATIONS to choose)",
                target.module,
                target.name,
            )
            return
        make = self._async_wrapper if target.is_async else self._sync_wrapper
        wrapper = wrapt.FunctionWrapper(original, make(target.planner))
        setattr(owner, attribute, wrapper)
        self._patches.append(_Patch(owner, attribute, original, wrapper))

    def _plan(self, planner: Planner, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Plan | None:
        if in_model_span():
            if not self._warned_duplicate:
                self._warned_duplicate = True
                _logger.warning(
                    "spanmeter: another instrumentation already traces %s calls; skipping ours so each call has "
                    "one span (set OTEL_PYTHON_DISABLED_INSTRUMENTATIONS to choose)",
                    self._scope,
                )
            return None
        try:
            return planner(instance, args, kwargs)
        except Exception:  # a telemetry bug must never break the caller's request
            _logger.debug("spanmeter: could not read request", exc_info=True)
            return None

    def _start(self, plan: Plan) -> Call:
        """The call's span; first the budget gate, which raises before the provider is called."""
        check_budget(plan.provider, plan.model, self._tracer)
        # Judged at the first call, not at instrument(): the app may set its provider up in between.
        warn_if_unexported(self._tracer_provider)
        return Call(self._tracer, plan.operation, plan.provider, plan.model, plan.attributes)

    @staticmethod
    def _result(plan: Plan, result: Any, call: Call) -> Any:
        try:
            return plan.on_result(result, call)
        except Exception:
            _logger.debug("spanmeter: could not read response", exc_info=True)
            call.finish()
            return result

    def _sync_wrapper(self, planner: Planner) -> Callable[..., Any]:
        def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            plan = self._plan(planner, instance, args, kwargs)
            if plan is None:
                return wrapped(*args, **kwargs)
            call = self._start(plan)
            token = call.activate()
            try:
                result = wrapped(*args, **plan.kwargs)
            except Exception as error:
                call.fail(error)
                raise
            except BaseException:
                call.finish()
                raise
            finally:
                call.deactivate(token)
            return self._result(plan, result, call)

        return wrapper

    def _async_wrapper(self, planner: Planner) -> Callable[..., Any]:
        async def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            plan = self._plan(planner, instance, args, kwargs)
            if plan is None:
                return await wrapped(*args, **kwargs)
            call = self._start(plan)
            token = call.activate()
            try:
                result = await wrapped(*args, **plan.kwargs)
            except Exception as error:
                call.fail(error)
                raise
            except BaseException:
                call.finish()
                raise
            finally:
                call.deactivate(token)
            return self._result(plan, result, call)

        return wrapper
