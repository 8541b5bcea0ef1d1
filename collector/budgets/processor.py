"""The `budget` processor: counts priced spans against budgets as they are queued for storage,
writes each threshold crossing once, and has it notified once.

Three threads share the work. The receivers' thread (`queued`) adds the spans' spend to the ledger
and spots crossings; the store thread reconciles spend with ClickHouse every `reconcile_interval`,
writes `budget_status`, and claims crossings in `budget_events`; the notify thread delivers the
crossings this collector claimed, with retries, and hands each outcome back to be recorded.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client
from prometheus_client import Counter

from .. import sampling
from ..exporters import ClickHouseExporter
from ..exporters.config import ClickHouseExporterConfig
from ..forecast import store_weekday_factors
from ..records import SpanRecord
from ..store import connect, first_line
from ..telemetry import CollectorMetrics
from .config import BudgetConfig, BudgetProcessorConfig
from .ledger import Buckets, Key, Ledger, Totals
from .model import Budget, BudgetStatus, Crossing
from .notifiers import deliver, make_notifier
from .runtime import Block, BudgetDefinition, RuntimeBudget, definitions, effective_budgets
from .scope import EACH
from .store import BudgetStore, Delivery
from .windows import Clock, Window, system_clock

__all__ = ["BudgetProcessor"]

logger = logging.getLogger(__name__)

_STOP = object()
_RECONCILE = object()
_FiredKey = tuple[str, str, datetime, int]


def _per_project(budget: BudgetConfig) -> BudgetConfig:
    if "project" in budget.scope:
        return budget
    return budget.model_copy(update={"scope": {"project": EACH, **budget.scope}})


class BudgetProcessor:
    def __init__(
        self,
        config: BudgetProcessorConfig,
        store_config: ClickHouseExporterConfig,
        exporter: ClickHouseExporter | None,
        metrics: CollectorMetrics,
        clock: Clock | None = None,
        per_project: bool = False,
    ) -> None:
        """`exporter`: None for a processor that only reads the store (`load_stored`). `per_project` (keys are
        required): a budget whose scope names no project is kept per project
        (`project: each`), so one project's traffic never counts toward, or trips, another's budget."""
        self.config = config
        self._per_project = per_project
        # Budgets are replaced as a whole (a runtime budget set or removed, a reload): under this lock, so the
        # ledger's budget indexes and `budgets` always agree; `_generation` tells a reconcile it read stale ones.
        self._budgets_lock = threading.RLock()
        self._generation = 0
        self._runtime: list[RuntimeBudget] = []
        self._blocks: list[Block] = []
        self._applied: list[BudgetConfig] = list(config.budgets)
        self.budgets = [Budget.compile(_per_project(b) if per_project else b) for b in config.budgets]
        self.collector_id = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.weekday_factors: tuple[float, ...] | None = None
        """The weekday rhythm of the store's spend (forecast.py), read at reconcile: projections weigh days by it."""
        self._factors_due = 0.0
        self._store_config = store_config
        self._exporter = exporter
        self._clock = clock or system_clock
        self._ledger = Ledger()
        self._fired: set[_FiredKey] = set()
        self._fired_lock = threading.Lock()
        self._work: queue.Queue[Any] = queue.Queue()
        self._deliveries: queue.Queue[Any] = queue.Queue()
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._threads: list[threading.Thread] = []
        self._channels = {
            name: (channel, make_notifier(channel, config.allow_private_targets))
            for name, channel in config.channels.items()
        }
        registry = metrics.registry
        self.crossings = Counter(
            "spanmeter_budget_crossings",
            "Budget threshold crossings this collector wrote",
            ["budget"],
            registry=registry,
        )
        self.notifications = Counter(
            "spanmeter_budget_notifications",
            "Budget notifications by channel and outcome (delivered, failed, refused)",
            ["channel", "outcome"],
            registry=registry,
        )
        self.each_values_capped = Counter(
            "spanmeter_budget_each_values_capped",
            "Spans not counted by an `each` budget already tracking max_each_values values this window",
            ["budget"],
            registry=registry,
        )
        self._each_seen: dict[int, tuple[int, set[tuple[str, ...]]]] = {}  # budget -> (window start, values)
        self._capped_warned: set[str] = set()
        self._warned: set[str] = set()
        self.reconcile_errors = Counter(
            "spanmeter_budget_reconcile_errors", "Failed reads of budget spend from ClickHouse", registry=registry
        )

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Start the threads; waits for the first reconcile, so spend starts from the store."""
        for target, name in ((self._run_store, "store"), (self._run_notify, "notify")):
            thread = threading.Thread(target=target, name=f"spanmeter-budgets-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._ready.wait(timeout)

    def stop(self) -> None:
        self._stopping.set()
        self._work.put(_STOP)
        for thread in self._threads:
            thread.join(30)

    # --- the receivers' side -----------------------------------------------------------------

    def process(self, records: Sequence[SpanRecord]) -> None:
        """Nothing before queueing: spend counts once the exporter has accepted the rows (`queued`)."""

    def queued(self, records: Sequence[SpanRecord]) -> None:
        with self._budgets_lock:
            self._queued(records)

    def _queued(self, records: Sequence[SpanRecord]) -> None:
        if not self.budgets:
            self._ledger.add({}, len(records))
            return
        now = self._clock()
        bounds = [budget.window.bucket_bounds(now) for budget in self.budgets]
        # The period an `each` budget's values are capped in: a day, a month, or N epoch-aligned hours.
        periods = [int(budget.window.period(now)[0].timestamp()) for budget in self.budgets]
        deltas: dict[tuple[Key, int], Totals] = {}
        for record in records:
            for index, budget in enumerate(self.budgets):
                values = budget.scope.match(record)
                if values is None:
                    continue
                bucket = budget.window.bucket(record.timestamp)
                start, end = bounds[index]
                if not start <= bucket < end:
                    continue
                if values and not self._tracks(index, values, periods[index]):
                    continue
                totals = deltas.get(((index, values), bucket))
                if totals is None:
                    totals = deltas[((index, values), bucket)] = Totals()
                threshold = record.sampling_threshold
                totals.add(
                    record.total_cost,
                    record.input_tokens + record.output_tokens,
                    1,
                    sampling.estimated_cost(record.total_cost, threshold),
                    sampling.weight(threshold),
                    1 if threshold else 0,
                )
        self._ledger.add(deltas, len(records))
        if deltas:
            self._check({key for key, _ in deltas}, now)

    def queued_table(self, table: pa.Table) -> None:
        """`queued` for the rows of an Arrow table (`genai_spans` columns): the same deltas in the ledger and the
        same checks, from group-bys per budget; `each` values are admitted (`max_each_values`) once per distinct
        value, in the order of their first row, as `queued` meets them."""
        with self._budgets_lock:
            self._queued_table(table)

    def _queued_table(self, table: pa.Table) -> None:
        rows = table.num_rows
        if not self.budgets:
            self._ledger.add({}, rows)
            return
        now = self._clock()
        deltas: dict[tuple[Key, int], Totals] = {}
        if rows:
            timestamps = np.asarray(table.column("timestamp").cast(pa.int64()).to_numpy(), dtype=np.int64)
            wide = pa.decimal128(20, 0)  # a count; the sum of two and of a group stays within 38 digits
            amounts = pa.table(
                {
                    "cost": table.column("total_cost").combine_chunks(),
                    "tokens": pc.add(
                        table.column("input_tokens").cast(wide), table.column("output_tokens").cast(wide)
                    ).combine_chunks(),
                    **_estimates(table),
                }
            )
            for index, budget in enumerate(self.budgets):
                deltas.update(self._table_deltas(index, budget, table, timestamps, amounts, now))
        self._ledger.add(deltas, rows)
        if deltas:
            self._check({key for key, _ in deltas}, now)

    def _table_deltas(
        self,
        index: int,
        budget: Budget,
        table: pa.Table,
        timestamps: npt.NDArray[np.int64],
        amounts: pa.Table,
        now: datetime,
    ) -> dict[tuple[Key, int], Totals]:
        """One budget's deltas for the rows of `table`."""
        matched, each = budget.scope.match_table(table)
        buckets = budget.window.buckets(timestamps)
        start, end = budget.window.bucket_bounds(now)
        members = np.flatnonzero(matched & (start <= buckets) & (buckets < end))
        if not len(members):
            return {}
        group = np.zeros(len(members), dtype=np.int64)
        values: list[tuple[str, ...]] = [()]
        if each:
            period = int(budget.window.period(now)[0].timestamp())
            taken = pa.array(members)
            encoded = [column.take(taken).dictionary_encode() for column in each]
            codes = np.stack([np.asarray(e.indices.to_numpy(), dtype=np.int64) for e in encoded], axis=1)
            _, first, group, counts = np.unique(
                codes, axis=0, return_index=True, return_inverse=True, return_counts=True
            )
            group = group.reshape(-1)
            dictionaries = [e.dictionary.to_pylist() for e in encoded]
            values = [
                tuple(d[c] for d, c in zip(dictionaries, codes[row].tolist(), strict=True)) for row in first.tolist()
            ]
            tracked = np.zeros(len(values), dtype=bool)
            for distinct in np.argsort(first, kind="stable").tolist():  # in the order `queued` meets them
                tracked[distinct] = self._tracks(index, values[distinct], period)
                if not tracked[distinct] and counts[distinct] > 1:
                    self.each_values_capped.labels(budget.name).inc(int(counts[distinct]) - 1)
            counted = tracked[group]
            members, group = members[counted], group[counted]
        if not len(members):
            return {}
        sums = (
            amounts.take(pa.array(members))
            .append_column("group", pa.array(group))
            .append_column("bucket", pa.array(buckets[members]))
            .group_by(["group", "bucket"], use_threads=False)
            .aggregate(
                [
                    ("cost", "sum"),
                    ("tokens", "sum"),
                    ("cost", "count"),
                    ("estimated_cost", "sum"),
                    ("estimated_requests", "sum"),
                    ("sampled", "sum"),
                ]
            )
            .to_pydict()
        )
        return {
            ((index, values[g]), b): Totals(cost, int(tokens), requests, estimated, weights, sampled)
            for g, b, cost, tokens, requests, estimated, weights, sampled in zip(
                sums["group"],
                sums["bucket"],
                sums["cost_sum"],
                sums["tokens_sum"],
                sums["cost_count"],
                sums["estimated_cost_sum"],
                sums["estimated_requests_sum"],
                sums["sampled_sum"],
                strict=True,
            )
        }

    def _tracks(self, index: int, values: tuple[str, ...], period_start: int) -> bool:
        """Whether this `each` value is counted: the first `max_each_values` of a window are."""
        started, seen = self._each_seen.get(index, (period_start, set()))
        if started != period_start:
            seen = set()
        self._each_seen[index] = (period_start, seen)
        if values in seen:
            return True
        if len(seen) >= self.config.max_each_values:
            name = self.budgets[index].name
            if name not in self._capped_warned:
                self._capped_warned.add(name)
                logger.warning(
                    "budget %r tracks %d values this window (max_each_values): spans with new values are not "
                    "counted toward it until the window ends",
                    name,
                    len(seen),
                )
            self.each_values_capped.labels(name).inc()
            return False
        seen.add(values)
        return True

    # --- status ------------------------------------------------------------------------------

    def status(self, key: Key, now: datetime) -> BudgetStatus:
        index, values = key
        budget = self.budgets[index]
        start, end = budget.window.bounds(now)
        totals = self._ledger.totals(key, int(start.timestamp()), int(end.timestamp()))
        return BudgetStatus(
            budget=budget,
            values=dict(zip(budget.scope.each_keys, values, strict=True)),
            scope_value=budget.scope.scope_value(values),
            window_start=start,
            window_end=end,
            totals=totals,
            percent=budget.percent(totals),
            projected_usd=Window.projected(totals.estimated_cost, start, end, now, self.weekday_factors),
        )

    def statuses(self, now: datetime | None = None) -> list[BudgetStatus]:
        """Every budget; an `each` budget once per value that has spend in the window."""
        now = now or self._clock()
        out: list[BudgetStatus] = []
        with self._budgets_lock:
            for index, budget in enumerate(self.budgets):
                if not budget.scope.each_keys:
                    out.append(self.status((index, ()), now))
                    continue
                for key in self._ledger.keys(index):
                    status = self.status(key, now)
                    if status.totals.requests:
                        out.append(status)
        return out

    def _check(self, keys: set[Key], now: datetime) -> None:
        """Queue a crossing for each threshold reached and not yet written in this window."""
        for key in sorted(keys):
            status = self.status(key, now)
            budget = status.budget
            period_start, period_end = budget.window.period(now)
            for threshold in budget.config.thresholds:
                if status.percent < threshold:
                    break
                fired = (budget.name, status.scope_value, period_start, threshold)
                with self._fired_lock:
                    if fired in self._fired:
                        continue
                    self._fired.add(fired)
                self._work.put(
                    Crossing(
                        budget=budget,
                        scope_value=status.scope_value,
                        values=status.values,
                        window_start=period_start,
                        window_end=period_end,
                        threshold=threshold,
                        totals=status.totals,
                        percent=status.percent,
                        created_at=now,
                        collector_id=self.collector_id,
                    )
                )

    # --- budgets and blocks changed at runtime ------------------------------------------------

    def reconfigure(self, config: BudgetProcessorConfig) -> None:
        """A reloaded pipelines.yaml: its budgets, channels and settings from now on; spend is re-read at once."""
        channels = {name: (c, make_notifier(c, config.allow_private_targets)) for name, c in config.channels.items()}
        with self._budgets_lock:
            self.config = config
            self._channels = channels
            self._apply(*effective_budgets(config.budgets, self._runtime, config.channels))
        self.reconcile_soon()

    def reconcile_soon(self) -> None:
        """Reconcile now rather than at the next interval (a budget or block was just changed through this one)."""
        self._work.put(_RECONCILE)

    def blocks(self, now: datetime | None = None) -> list[Block]:
        """The blocks in force, as of the last reconcile (an expired one drops out at once)."""
        now = now or self._clock()
        return [block for block in self._blocks if block.active(now)]

    def definitions(self) -> list[BudgetDefinition]:
        """Every budget this collector knows, configured and runtime (as of the last reconcile)."""
        return definitions(self.config.budgets, self._runtime)

    def load_stored(self, store: BudgetStore) -> None:
        """The budgets and their spend as stored, without a collector's queued spans and without writing anything:
        what `spanmeter budget status` shows when no collector runs."""
        now = self._clock()
        self._read_runtime(store, now)
        with self._budgets_lock:
            self._ledger.reconcile(self._stored_spend(store, self.budgets, now), 0, range(len(self.budgets)))

    def _stored_spend(self, store: BudgetStore, budgets: Sequence[Budget], now: datetime) -> dict[Key, Buckets]:
        base: dict[Key, Buckets] = {}
        for index, budget in enumerate(budgets):
            start, end = budget.window.bounds(now)
            base.update(store.spend(index, budget, start, end, self.config.max_each_values))
        return base

    def _read_runtime(self, store: BudgetStore, now: datetime) -> None:
        runtime, self._blocks = store.runtime_budgets(), store.blocks(now)
        with self._budgets_lock:
            self._runtime = runtime
            applied, warnings = effective_budgets(self.config.budgets, runtime, self.config.channels)
            self._apply(applied, warnings)

    def _apply(self, applied: list[BudgetConfig], warnings: list[str]) -> None:
        """Replace the budgets (under `_budgets_lock`) when they differ; an unchanged budget keeps its spend."""
        for warning in warnings:
            if warning not in self._warned:
                self._warned.add(warning)
                logger.warning("budgets: %s", warning)
        if applied == self._applied:
            return
        compiled = [Budget.compile(_per_project(b) if self._per_project else b) for b in applied]
        old = {budget.config.model_dump_json(): index for index, budget in enumerate(self.budgets)}
        identities = [budget.config.model_dump_json() for budget in compiled]
        indexes = {old[identity]: index for index, identity in enumerate(identities) if identity in old}
        self._ledger.remap(indexes)
        self._each_seen = {indexes[i]: seen for i, seen in self._each_seen.items() if i in indexes}
        added = sorted({b.name for b in applied} - {b.name for b in self._applied})
        removed = sorted({b.name for b in self._applied} - {b.name for b in applied})
        changed = sorted({b.name for b in applied if b not in self._applied} - set(added))
        self.budgets, self._applied = compiled, list(applied)
        self._generation += 1
        logger.info(
            "budgets now applied: %d (added %s; changed %s; removed %s)", len(compiled), added, changed, removed
        )

    # --- the store thread --------------------------------------------------------------------

    def _run_store(self) -> None:
        store: BudgetStore | None = None
        client = None
        due = 0.0
        try:
            while True:
                if store is None:
                    try:
                        client = connect(
                            self._store_config.endpoint, self._store_config.username, self._store_config.password
                        )
                        store = BudgetStore(client, self._store_config.database, self._store_config.cluster)
                    except Exception as exc:
                        self.reconcile_errors.inc()
                        logger.warning("budgets: cannot open the store, spend counts from now: %s", first_line(exc))
                        self._ready.set()
                if store is not None and time.monotonic() >= due:
                    self._reconcile(store)
                    self._read_weekday_factors(client)
                    due = time.monotonic() + self.config.reconcile_interval
                    self._ready.set()
                try:
                    item = self._work.get(timeout=max(0.0, due - time.monotonic()) if store else 1.0)
                except queue.Empty:
                    continue
                if item is _STOP:
                    break
                if item is _RECONCILE:
                    due = 0.0
                    continue
                if store is not None:
                    self._handle(store, item)
        finally:
            self._deliveries.put(_STOP)
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join(30)
            while store is not None and not self._work.empty():
                item = self._work.get_nowait()
                if isinstance(item, Delivery):
                    self._handle(store, item)
            if client is not None:
                client.close()

    def _read_weekday_factors(self, client: Client | None) -> None:
        """Read here, on the store thread; applied per batch by `status`, which stays cheap."""
        if client is None or time.monotonic() < self._factors_due:
            return
        # Every tenth reconcile (a rhythm of weeks changes slowly); at each one until known (two weeks of spend).
        self._factors_due = time.monotonic() + 10 * self.config.reconcile_interval
        try:
            self.weekday_factors = store_weekday_factors(client, self._store_config.database, self._clock())
            if self.weekday_factors is None:
                self._factors_due = 0.0
        except Exception as exc:
            logger.warning("budgets: cannot read the weekly rhythm of spend, projecting in a line: %s", first_line(exc))

    def _handle(self, store: BudgetStore, item: Crossing | Delivery) -> None:
        try:
            if isinstance(item, Delivery):
                store.record_delivery(item)
            elif store.claim(item):
                self.crossings.labels(item.budget.name).inc()
                logger.warning("%s", item.summary())
                if item.budget.config.channels:
                    self._deliveries.put(item)
        except Exception as exc:
            logger.warning("budgets: cannot write to the store: %s", first_line(exc))

    def _reconcile(self, store: BudgetStore) -> None:
        now = self._clock()
        try:
            self._read_runtime(store, now)
            with self._budgets_lock:
                budgets, generation = list(self.budgets), self._generation
            assert self._exporter is not None, "a processor without an exporter only reads (load_stored)"
            # Under the exporter's insert lock, the sums and stored_rows describe the same rows.
            with self._exporter.insert_lock:
                stored = self._exporter.stored_rows
                base = self._stored_spend(store, budgets, now)
            earliest = min((b.window.period(now)[0] for b in budgets), default=now)
            fired = store.fired(earliest)
            with self._budgets_lock:
                if generation != self._generation:
                    return  # a reload changed the budgets meanwhile: the reconcile it queued reads theirs
                self._ledger.reconcile(base, stored, range(len(budgets)))
                with self._fired_lock:
                    self._fired = {f for f in self._fired if f[2] >= earliest} | fired
                self._check({key for index in range(len(budgets)) for key in self._ledger.keys(index)}, now)
                statuses = self.statuses(now)
            store.write_status(statuses, now)
        except Exception as exc:
            self.reconcile_errors.inc()
            logger.warning("budgets: cannot reconcile spend with the store: %s", first_line(exc))

    # --- the notify thread -------------------------------------------------------------------

    def _run_notify(self) -> None:
        while True:
            crossing = self._deliveries.get()
            if crossing is _STOP:
                return
            for name in crossing.budget.config.channels:
                if name not in self._channels:  # removed by a reload since the crossing
                    continue
                channel, notifier = self._channels[name]
                outcome, attempts, detail = deliver(
                    notifier, crossing, channel.retries, channel.backoff, self._stopping.wait
                )
                self.notifications.labels(name, outcome).inc()
                log = logger.info if outcome == "delivered" else logger.warning
                log(
                    "budgets: %s notification of %s to channel %s after %d attempt(s)%s",
                    outcome,
                    crossing.event_id,
                    name,
                    attempts,
                    f": {detail}" if detail else "",
                )
                self._work.put(Delivery(crossing, name, channel.type, outcome, attempts, detail))


_ESTIMATE = pa.decimal128(38, 15)
"""A weighed cost or weight (sampling.ESTIMATE_PLACES): 23 whole digits hold a cost times 2^56."""


def _estimates(table: pa.Table) -> dict[str, pa.Array]:
    """Per row: the cost weighed by the calls the row stands for, that weight, and whether it was sampled. Only
    sampled rows (few, by design) are weighed one by one in Decimal."""
    cost = table.column("total_cost").combine_chunks()
    thresholds = table.column("sampling_threshold").combine_chunks()
    sampled = pc.cast(pc.greater(thresholds, 0), pa.int64())
    if not pc.max(thresholds).as_py():
        weights = pa.repeat(pa.scalar(sampling.weight(0), _ESTIMATE), len(table))
        return {"estimated_cost": cost.cast(_ESTIMATE), "estimated_requests": weights, "sampled": sampled}
    pairs = list(zip(cost.to_pylist(), thresholds.to_pylist(), strict=True))
    return {
        "estimated_cost": pa.array([sampling.estimated_cost(c, t) for c, t in pairs], _ESTIMATE),
        "estimated_requests": pa.array([sampling.weight(t) for _, t in pairs], _ESTIMATE),
        "sampled": sampled,
    }
