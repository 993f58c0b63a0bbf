"""One customer's state, its evaluation at the partition watermark, and its log encoding.

The state holds the customer's facts (de-duplicated by source position) and the risk
*timeline*. Transitions up to the partition's *frozen* boundary F are final; later ones
are recomputed from the facts at every evaluation. The partition publishes F with each
batch (the customer log's watermark record, the sink's ``customer_progress``) and never
rewrites what it published as final, even for a customer not evaluated since. The customer
role sets F just below the oldest event time a fact may still carry: the smallest *floor*
of the source partitions (each compute batch stamps its facts with its watermark at the
start minus the allowed lateness), but never more than ``max_skew`` behind W. Facts from
every source partition then land at their own event time, however far one partition lags
behind another, and the history is a function of the set of facts alone. A fact older than
F (a lag beyond ``max_skew``) changes the history from F + 1 on.

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
    evaluated_us: int | None = None  # W of the last evaluation
    frozen_us: int | None = None  # transitions at or before it are final
    base: Status = None  # the status in effect at frozen_us
    written: list[tuple[int, Status]] = field(default_factory=list)  # by the last evaluation
    gone: list[int] = field(default_factory=list)  # withdrawn by the last evaluation
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

    def to_bytes(self) -> bytes:
        return _encode(
            {
                "v": STATE_VERSION,
                "c": self.customer_id,
                "w": self.evaluated_us,
                "z": self.frozen_us,
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
            frozen_us=d["z"],
            base=status_from_json(d["b"]),
            written=[(at, status_from_json(s)) for at, s in d["tw"]],
            gone=list(d["g"]),
            summary=d["h"],
            positions={(f.p, f.o) for f in facts},
        )


def evaluate(
    cs: CustomerState,
    watermark_us: int,
    frozen_us: int,
    rules: Rules,
    final_us: int | None = None,
) -> int | None:
    """Bring ``cs`` to watermark W with the partition's frozen boundary F (F <= W).

    Recomputes the timeline after the customer's previous boundary, or after ``final_us``
    (the boundary the partition published with its previous batch) when that is later:
    what the partition once called final never changes, even for a customer not evaluated
    since, whatever fact comes later. Also the summary at W, and drops the facts no later
    evaluation needs. Returns when ``cs`` must be evaluated again without new facts (its
    status can change then), or None when it expired (delete it): nothing left in state,
    and the last record already showed an empty window and every transition, so the final
    health row and the last change are out before the state goes.
    """
    index = Index(cs.facts, rules)
    w = watermark_us
    lo = cs.frozen_us
    before = cs.base
    if final_us is not None and (lo is None or final_us > lo):
        # Transitions the customer wrote up to the published boundary are final.
        for at, s in cs.written:
            if (lo is None or at > lo) and at <= final_us:
                before = s
        lo = final_us
    old = [(at, s) for at, s in cs.written if lo is None or at > lo]
    written = index.timeline(lo, w, before)
    new_ats = {at for at, _ in written}
    gone = [at for at, _ in old if at not in new_ats]
    frozen = frozen_us if lo is None or frozen_us > lo else lo
    base = before
    for at, s in written:
        if at <= frozen:
            base = s
    summary = index.summary(w)
    was_empty = cs.summary is not None and is_empty(cs.summary)  # a first record is always out
    # Points after the boundary read facts of the derivation horizon before them.
    horizon = frozen - rules.derive_us
    if cs.facts and cs.facts[0].t <= horizon:
        cs.facts = [f for f in cs.facts if f.t > horizon]
        cs.positions = {(f.p, f.o) for f in cs.facts}
    cs.evaluated_us = w
    cs.frozen_us = frozen
    cs.base = base
    cs.written = written
    cs.gone = gone
    cs.summary = summary
    # Nothing left, and nothing the sink has not seen: the state can go.
    if not cs.facts and written == old and not gone and was_empty and is_empty(summary):
        return None
    # Pruned facts change nothing after the boundary, so the index still answers.
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
    expiry = cs.facts[-1].t + rules.expire_us
    return expiry if due is None or expiry < due else due
