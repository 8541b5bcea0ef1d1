"""Spend per budget, scope value and bucket: what ClickHouse held at the last reconcile, plus what this
collector has queued for storage since, without counting a row twice.

The exporter stores rows in the order they were queued (one writer, FIFO) and counts them
(`stored_rows`). Each batch this collector adds is tagged with its position in that order; a
reconcile reads the store's sums together with `stored_rows` (under the exporter's insert lock, so
both describe the same rows) and forgets the batches at or below it, because the sums include them.
Rows queued by other collectors reach this one through the store at the next reconcile.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

__all__ = ["Key", "Ledger", "Totals"]

_ZERO = Decimal(0)

# (budget index, each-values)
Key = tuple[int, tuple[str, ...]]


@dataclass
class Totals:
    cost: Decimal = _ZERO
    tokens: int = 0
    requests: int = 0
    estimated_cost: Decimal = _ZERO
    """`cost` with each row weighed by the calls it stands for (probability sampling, sampling.py)."""
    estimated_requests: Decimal = _ZERO
    sampled: int = 0
    """Rows kept by probability sampling: while there are any, the estimates are not the exact sums."""

    def add(
        self,
        cost: Decimal,
        tokens: int,
        requests: int,
        estimated_cost: Decimal,
        estimated_requests: Decimal,
        sampled: int,
    ) -> None:
        self.cost += cost
        self.tokens += tokens
        self.requests += requests
        self.estimated_cost += estimated_cost
        self.estimated_requests += estimated_requests
        self.sampled += sampled

    def merge(self, other: Totals, sign: int = 1) -> None:
        self.add(
            other.cost * sign,
            other.tokens * sign,
            other.requests * sign,
            other.estimated_cost * sign,
            other.estimated_requests * sign,
            other.sampled * sign,
        )


Buckets = dict[int, Totals]  # bucket start (epoch s) -> totals


class Ledger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._base: dict[Key, Buckets] = {}
        self._pending: dict[Key, Buckets] = {}
        self._batches: deque[tuple[int, dict[tuple[Key, int], Totals]]] = deque()
        self._position = 0
        self._reconciled = 0  # stored rows the base includes

    def add(self, deltas: dict[tuple[Key, int], Totals], rows: int) -> None:
        """A batch of `rows` rows the exporter has just queued; `deltas` are the in-scope ones."""
        with self._lock:
            self._position += rows
            if not deltas or self._position <= self._reconciled:
                return  # already stored, and in the base read at the last reconcile
            self._batches.append((self._position, deltas))
            for (key, bucket), totals in deltas.items():
                self._pending.setdefault(key, {}).setdefault(bucket, Totals()).merge(totals)

    def reconcile(self, base: dict[Key, Buckets], stored_position: int, budgets: Iterable[int]) -> None:
        """Replace the stored spend of `budgets` with `base`, read when `stored_position` rows were stored."""
        budgets = set(budgets)
        with self._lock:
            for key in [k for k in self._base if k[0] in budgets]:
                del self._base[key]
            self._base.update(base)
            self._reconciled = max(self._reconciled, stored_position)
            while self._batches and self._batches[0][0] <= stored_position:
                _, deltas = self._batches.popleft()
                for (key, bucket), totals in deltas.items():
                    buckets = self._pending[key]
                    buckets[bucket].merge(totals, -1)
                    if not buckets[bucket].requests:
                        del buckets[bucket]
                    if not buckets:
                        del self._pending[key]

    def remap(self, indexes: Mapping[int, int]) -> None:
        """The budgets were replaced: budget `old` is now `indexes[old]`; spend of budgets not in `indexes` is
        forgotten (a changed budget starts again from the store at the next reconcile)."""
        with self._lock:
            self._base = _renamed(self._base, indexes)
            self._pending = _renamed(self._pending, indexes)
            batches: deque[tuple[int, dict[tuple[Key, int], Totals]]] = deque()
            for position, deltas in self._batches:
                kept = {
                    ((indexes[index], values), bucket): totals
                    for ((index, values), bucket), totals in deltas.items()
                    if index in indexes
                }
                batches.append((position, kept))  # kept even when empty: positions stay in order
            self._batches = batches

    def totals(self, key: Key, start: int, end: int) -> Totals:
        """Spend of buckets in [start, end)."""
        result = Totals()
        with self._lock:
            for source in (self._base, self._pending):
                for bucket, totals in source.get(key, {}).items():
                    if start <= bucket < end:
                        result.merge(totals)
        return result

    def keys(self, budget: int) -> list[Key]:
        with self._lock:
            return sorted({k for k in (*self._base, *self._pending) if k[0] == budget})


def _renamed(spend: dict[Key, Buckets], indexes: Mapping[int, int]) -> dict[Key, Buckets]:
    return {(indexes[index], values): buckets for (index, values), buckets in spend.items() if index in indexes}
