"""One customer's state, its evaluation at the partition watermark, and its log encoding.

The state holds the customer's facts of the retention horizon (derivation horizon + the
history's correction span), de-duplicated by source position, and the risk *timeline*: the
transitions of the last correction span (``written`` filtered) plus the status in effect
before it (``base``). Each evaluation at watermark W recomputes the timeline over
(L, W], L = min(previous evaluation, W - correction), from the facts; transitions at or
before L are final. So a fact arriving up to ``correction`` behind W (a source partition
lagging behind the others) still lands at its own event time in the history, and with
every fact that punctual the history is a function of the set of facts alone.

The changelog value (JSON, versioned) is the state *and* what the sink writes: the health
summary at W (``h``), the transitions of this evaluation (``tw``) and the transition times
it withdrew (``g``).
"""

from __future__ import annotations

import json
from bisect import insort
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from streams.customers.facts import CustomerFact
from streams.customers.rules import (
    Held,
    Index,
    Rules,
    Status,
    is_empty,
    status_from_json,
    status_to_json,
)

__all__ = ["STATE_VERSION", "CustomerState", "evaluate", "next_due"]

STATE_VERSION = 1
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode


@dataclass(slots=True)
class CustomerState:
    """Facts sorted by (t, partition, offset) and the outcome of the last evaluation."""

    customer_id: str
    facts: list[Held] = field(default_factory=list)
    evaluated_us: int | None = None  # the watermark of the last evaluation
    base: Status = None  # status in effect at evaluated_us - correction
    written: list[tuple[int, Status]] = field(default_factory=list)
    gone: list[int] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    positions: set[tuple[int, int]] = field(default_factory=set)

    def add(self, facts: Iterable[CustomerFact]) -> int:
        """Insert facts not seen yet (by source position); returns how many were new."""
        added = 0
        for fact in facts:
            pos = (fact.partition, fact.offset)
            if pos in self.positions:
                continue
            self.positions.add(pos)
            insort(self.facts, Held.of(fact))
            added += 1
        return added

    def open_transitions(self, rules: Rules) -> list[tuple[int, Status]]:
        """The transitions still correctable: those after evaluated_us - correction."""
        if self.evaluated_us is None:
            return []
        cut = self.evaluated_us - rules.correction_us
        return [(at, s) for at, s in self.written if at > cut]

    def to_bytes(self) -> bytes:
        return _encode(
            {
                "v": STATE_VERSION,
                "c": self.customer_id,
                "w": self.evaluated_us,
                "f": [f.to_list() for f in self.facts],
                "b": status_to_json(self.base),
                "tw": [[at, status_to_json(s)] for at, s in self.written],
                "g": self.gone,
                "h": self.summary,
            }
        ).encode("utf-8")

    @classmethod
    def from_bytes(cls, value: bytes) -> CustomerState:
        d = json.loads(value)
        if type(d) is not dict or d.get("v") != STATE_VERSION:
            version = d.get("v") if type(d) is dict else None
            raise ValueError(f"unknown customer-log version {version!r} (this build reads 1)")
        facts = [Held.from_list(x) for x in d["f"]]
        return cls(
            customer_id=d["c"],
            facts=facts,
            evaluated_us=d["w"],
            base=status_from_json(d["b"]),
            written=[(at, status_from_json(s)) for at, s in d["tw"]],
            gone=list(d["g"]),
            summary=d["h"],
            positions={(f.p, f.o) for f in facts},
        )


def evaluate(cs: CustomerState, watermark_us: int, rules: Rules) -> int | None:
    """Bring ``cs`` to the watermark: timeline, summary, pruning.

    Returns when ``cs`` must be evaluated again without new facts (its status can change
    then), or None when it expired (delete it). A customer expires when nothing of them is
    left within the retention horizon and the last record already showed an empty window,
    so the final health row and the last transition are written before the state goes.
    """
    index = Index(cs.facts, rules)
    w = watermark_us
    if cs.evaluated_us is None:
        lo: int | None = None
        before: Status = None
        old: list[tuple[int, Status]] = []
    else:
        lo = min(cs.evaluated_us, w - rules.correction_us)
        old = cs.open_transitions(rules)
        before = cs.base
        for at, s in old:
            if at <= lo:
                before = s
    written = index.timeline(lo, w, before)
    new_ats = {at for at, _ in written}
    gone = [at for at, _ in old if (lo is None or at > lo) and at not in new_ats]
    base = before
    cut = w - rules.correction_us
    for at, s in written:
        if at <= cut:
            base = s
    summary = index.summary(w)
    was_empty = is_empty(cs.summary)
    horizon = w - rules.retain_us
    if cs.facts and cs.facts[0].t <= horizon:
        cs.facts = [f for f in cs.facts if f.t > horizon]
        cs.positions = {(f.p, f.o) for f in cs.facts}
    summary["last"] = cs.facts[-1].t if cs.facts else None  # within the retention horizon
    cs.evaluated_us = w
    cs.base = base
    cs.written = written
    cs.gone = gone
    cs.summary = summary
    if not cs.facts and not written and not gone and was_empty and is_empty(summary):
        return None
    # Pruned facts change nothing after the cut, so the index still answers for the rest.
    return next_due(cs, rules, index)


def next_due(cs: CustomerState, rules: Rules, index: Index | None = None) -> int | None:
    """When ``cs`` must be evaluated again without new facts: its status can change then,
    or it expires (with no facts left: at the next batch, once this record is out)."""
    w = cs.evaluated_us
    if w is None:
        return None
    if not cs.facts:
        return w
    due = (index or Index(cs.facts, rules)).next_change(w)
    expiry = cs.facts[-1].t + rules.retain_us
    return expiry if due is None or expiry < due else due
