"""The customer role's batch logic: facts in, customer state (the customer log) out.

One :class:`CustomerLogic` per partition of ``cxpulse.customer-facts`` (the runtime's
:class:`~streams.runtime.contracts.PartitionLogic`). Per batch it

1. decodes the facts and advances the partition's event-time watermark W (the greatest
   ``occurred_at`` among the facts it has read) and, per source partition, its *floor*:
   the compute role stamps every facts record with a time no fact of that source
   partition from then on is older than (``FLOOR_HEADER``), and sends heartbeats (records
   without facts) as it moves on. The smallest floor is the frozen boundary of the risk
   history (see :mod:`streams.customers.state`). Records without it (older builds) count
   with the greatest ``occurred_at`` read minus the allowed lateness, which is only a
   bound once a whole compute batch has been read;
2. adds each customer's new facts to their state (a fact seen before, by source position,
   changes nothing: duplicates never count twice);
3. evaluates every customer that got new facts, and every customer whose status can change
   by W alone (a fact leaving the 30-day window: the *due* index), at W;
4. returns one changelog entry per evaluated customer (its new state, or a tombstone when
   it expired) plus the watermarks and the frozen boundary under :data:`META_KEY`.

Deterministic in (state, messages), as the runtime requires; the results do not depend on
how facts of different source partitions interleave (see :mod:`streams.customers.state`).
"""

from __future__ import annotations

import heapq
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.core.logs import kv
from streams.customers.facts import CustomerFact, FactError, decode_facts, read_floor
from streams.customers.rules import Rules
from streams.customers.state import CustomerState, evaluate, next_due
from streams.runtime.contracts import BatchResult, InputMessage, StateReader

__all__ = ["META_KEY", "CustomerLogic", "CustomerStats"]

log = logging.getLogger(__name__)

# The partition watermark's key in the customer log. 0xFF never starts UTF-8 text, so no
# customer_id can collide with it; readers of the log skip it.
META_KEY = b"\xffwatermark"


@dataclass(slots=True)
class CustomerStats:
    """Counters for the runtime to export (cumulative for this logic instance)."""

    facts: int = 0  # facts read
    duplicates: int = 0  # facts whose source position the state already had
    evaluated: int = 0  # customer evaluations (new facts or due)
    expired: int = 0  # customers deleted after the retention horizon


class CustomerLogic:
    """Customer state of one customer-facts partition (see the module docstring)."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.watermark_us: int | None = None
        self.source_max: dict[int, int] = {}  # source partition -> greatest occurred_at read
        self.floors: dict[int, int] = {}  # source partition -> its latest floor
        self.frozen_us: int | None = None  # the boundary published with the last batch
        self.stats = CustomerStats()
        self._due: dict[bytes, int] = {}  # key -> the time its status can change next
        self._heap: list[tuple[int, bytes]] = []  # (due, key); stale entries are skipped

    def open(self, state: StateReader) -> None:
        """Recover the watermark and the due index from the committed state."""
        for key, value in state.items():
            if key == META_KEY:
                meta = json.loads(value)
                self.watermark_us = meta["w"]
                self.source_max = {int(p): t for p, t in meta["s"].items()}
                self.floors = {int(p): t for p, t in meta.get("l", {}).items()}
                self.frozen_us = meta.get("f")
                if self.frozen_us is None:  # written before "f" existed
                    self.frozen_us = self.frozen_boundary(meta["w"], self.source_max, self.floors)
                continue
            cs = CustomerState.from_bytes(value)
            due = next_due(cs, self.rules)
            if due is not None:
                self._schedule(key, due)
        log.info(
            "customer partition ready",
            extra=kv(customers=len(self._due), watermark_us=self.watermark_us),
        )

    def process(self, messages: Sequence[InputMessage], state: StateReader) -> BatchResult:
        incoming: dict[bytes, list[CustomerFact]] = {}
        wm = self.watermark_us
        source_max = dict(self.source_max)
        floors = dict(self.floors)
        for msg in messages:
            if msg.value is None:
                raise FactError(f"customer facts {msg.partition}/{msg.offset}: empty value")
            try:
                facts = decode_facts(msg.value)
            except FactError as exc:
                raise FactError(f"customer facts {msg.partition}/{msg.offset}: {exc}") from None
            try:
                stamped = read_floor(msg.headers)
            except FactError as exc:
                raise FactError(f"customer facts {msg.partition}/{msg.offset}: {exc}") from None
            if stamped is not None:
                source, floor = stamped
                if floor > floors.get(source, floor - 1):
                    floors[source] = floor
            for fact in facts:
                self.stats.facts += 1
                t = fact.occurred_us
                if wm is None or t > wm:
                    wm = t
                if t > source_max.get(fact.partition, t - 1):
                    source_max[fact.partition] = t
                incoming.setdefault(fact.customer_id.encode("utf-8"), []).append(fact)
        result = BatchResult()
        if wm is None:
            return result
        changed: dict[bytes, CustomerState] = {}
        for key, facts in incoming.items():
            cs = _load(key, state, facts[0].customer_id)
            added = cs.add(facts)
            self.stats.duplicates += len(facts) - added
            if added:
                changed[key] = cs
        heap = self._heap
        while heap and heap[0][0] <= wm:
            due, key = heapq.heappop(heap)
            if self._due.get(key) != due:
                continue  # superseded by a later schedule
            del self._due[key]
            if key not in changed:
                raw = state.get(key)
                if raw is not None:
                    changed[key] = CustomerState.from_bytes(raw)
        frozen = self.frozen_boundary(wm, source_max, floors)
        if self.frozen_us is not None and frozen < self.frozen_us:
            frozen = self.frozen_us  # what was once published final stays final
        for key, cs in changed.items():
            self.stats.evaluated += 1
            due = evaluate(cs, wm, frozen, self.rules, self.frozen_us)
            if due is None:
                self._due.pop(key, None)  # its heap entries are skipped when they come up
                result.changelog[key] = None
                self.stats.expired += 1
            else:
                self._schedule(key, due)
                result.changelog[key] = cs.to_bytes()
        if wm != self.watermark_us or source_max != self.source_max or floors != self.floors:
            # "f" is for readers of the log (the sink's customer_progress): the risk
            # history of this partition is final up to it.
            meta = {
                "w": wm,
                "s": {str(p): t for p, t in sorted(source_max.items())},
                "l": {str(p): t for p, t in sorted(floors.items())},
                "f": frozen,
            }
            result.changelog[META_KEY] = json.dumps(meta, separators=(",", ":")).encode()
            self.watermark_us = wm
            self.source_max = source_max
            self.floors = floors
            self.frozen_us = frozen
        return result

    def frozen_boundary(
        self, wm: int, source_max: dict[int, int], floors: dict[int, int] | None = None
    ) -> int:
        """The newest event time no fact can still change: below every source partition's
        floor (or W - max_skew, whichever is later)."""
        rules = self.rules
        floors = floors or {}
        boundary = wm - rules.max_skew_us
        heard = set(source_max) | set(floors)
        if len(heard) >= rules.source_partitions:
            low = min(
                floors[p] if p in floors else source_max[p] - rules.lateness_us for p in heard
            )
            if low - 1 > boundary:
                boundary = low - 1
        return min(boundary, wm)

    def _schedule(self, key: bytes, due: int) -> None:
        if self._due.get(key) != due:
            self._due[key] = due
            heapq.heappush(self._heap, (due, key))
            if len(self._heap) > 2 * len(self._due) + 1024:
                # Superseded entries wait for their time to be skipped; drop them now and
                # then, so the heap stays within a few entries per customer.
                self._heap = [(d, k) for k, d in self._due.items()]
                heapq.heapify(self._heap)


def _load(key: bytes, state: StateReader, customer_id: str) -> CustomerState:
    raw = state.get(key)
    return CustomerState(customer_id) if raw is None else CustomerState.from_bytes(raw)
