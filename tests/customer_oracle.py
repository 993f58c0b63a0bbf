"""An independent recomputation of the customer rules, straight from raw events.

Written from the contract ("Customers" in kpi-definitions.md) and the choices documented in
README "Customers" and docs/clickhouse.md, sharing no code with ``streams.customers``:
validity, duplicates, lateness and the conversation's state come from the conversation
oracle (``tests/oracle.py``), which it extends by observing each accepted event. Favours
being obviously right over being fast: every time is evaluated by filtering the customer's
facts afresh.

Results: per customer, the health *as of* the watermark of its customer partition, the full
risk timeline (every change of status, in event time), and the low survey answers.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.oracle import DEFAULT_SLA_S, FIELD_TABLE, _Conversation, _Recompute

DAY = 86_400_000_000
KINDS_ALWAYS = (
    "conversation.opened",
    "conversation.reopened",
    "conversation.resolved",
    "survey.csat",
    "survey.nps",
    "survey.ces",
)


@dataclass(frozen=True)
class Params:
    window_days: float = 30
    repeat_days: float = 7
    csat_max: int = 2
    nps_max: int = 6
    reopens_min: int = 2
    repeats_min: int = 3
    urgent_min: int = 1
    followup: tuple[int, int, int] = (2, 6, 3)  # csat, nps, ces maxima

    @property
    def window(self) -> int:
        return round(self.window_days * DAY)

    @property
    def horizon(self) -> int:
        """How far back value and segment are looked for (window + repeat gap)."""
        return round((self.window_days + self.repeat_days) * DAY)


@dataclass(frozen=True)
class Fact:
    t: int
    partition: int
    offset: int
    arrival: int  # Kafka timestamp, ms
    type: str
    conversation: str
    team: str
    priority: str
    breach: bool
    resolved: bool
    score: int | None
    segment: str | None  # carried by the event
    value: float | None  # carried by the event


@dataclass
class CustomerOracle:
    params: Params
    facts: dict[str, list[Fact]] = field(default_factory=dict)
    watermarks: dict[int, int] = field(default_factory=dict)  # customer partition -> W
    partition_of: dict[str, int] = field(default_factory=dict)
    followups: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    # ------------------------------------------------------------------ the rules at T

    def _window(self, customer: str, T: int) -> list[Fact]:
        return [f for f in self.facts[customer] if T - self.params.window < f.t <= T]

    def reasons(self, customer: str, T: int) -> list[tuple[str, str, int, int]]:
        """(reason, team, since, evidence) holding at T, in the documented order."""
        p = self.params
        win = self._window(customer, T)
        out = []
        for name, kind, limit in (
            ("csat_low", "survey.csat", p.csat_max),
            ("nps_detractor", "survey.nps", p.nps_max),
        ):
            answers = [f for f in win if f.type == kind]
            if answers:
                latest = max(answers, key=lambda f: (f.t, f.partition, f.offset))
                if latest.score <= limit:
                    out.append((name, latest.team, latest.t, latest.score))
        resolves = [f.t for f in self.facts[customer] if f.type == "conversation.resolved"]
        repeat = round(p.repeat_days * DAY)
        counted = (
            ("reopens", [f for f in win if f.type == "conversation.reopened"], p.reopens_min),
            (
                "repeat_contacts",
                [
                    f
                    for f in win
                    if f.type == "conversation.opened"
                    and any(r < f.t <= r + repeat for r in resolves)
                ],
                p.repeats_min,
            ),
            (
                "urgent_frt_breach",
                [f for f in win if f.breach and f.priority == "urgent"],
                p.urgent_min,
            ),
        )
        for name, facts, minimum in counted:
            if len(facts) >= minimum:
                key = sorted(facts, key=lambda f: (f.t, f.partition, f.offset))
                out.append((name, key[-1].team, key[minimum - 1].t, len(facts)))
        return out

    def value(self, customer: str, T: int) -> float | None:
        carried = [
            f
            for f in self.facts[customer]
            if f.value is not None and T - self.params.horizon < f.t <= T
        ]
        if not carried:
            return None
        return max(carried, key=lambda f: (f.arrival, f.partition, f.offset)).value

    def segment(self, customer: str, T: int) -> str:
        carried = [
            f
            for f in self.facts[customer]
            if f.segment is not None and T - self.params.horizon < f.t <= T
        ]
        if not carried:
            return "unknown"
        return max(carried, key=lambda f: (f.t, f.partition, f.offset)).segment or "unknown"

    def status(self, customer: str, T: int) -> tuple[Any, ...] | None:
        reasons = self.reasons(customer, T)
        if not reasons:
            return None
        pairs = tuple((r, team) for r, team, _, _ in reasons)
        return (pairs, self.value(customer, T), self.segment(customer, T))

    def health(self, customer: str) -> dict[str, Any]:
        """The customer's health at its partition's watermark."""
        T = self.watermarks[self.partition_of[customer]]
        win = self._window(customer, T)
        last: dict[str, Fact] = {}
        for f in win:
            if f.conversation not in last or (f.partition, f.offset) > (
                last[f.conversation].partition,
                last[f.conversation].offset,
            ):
                last[f.conversation] = f
        resolves = [f.t for f in self.facts[customer] if f.type == "conversation.resolved"]
        repeat = round(self.params.repeat_days * DAY)

        def latest(kind: str) -> tuple[int, int] | None:
            answers = [f for f in win if f.type == kind]
            if not answers:
                return None
            f = max(answers, key=lambda f: (f.t, f.partition, f.offset))
            return (f.score, f.t)

        kept = [f.t for f in self.facts[customer] if f.t > T - self.params.horizon]
        return {
            "as_of": T,
            "opened": sum(f.type == "conversation.opened" for f in win),
            "reopens": sum(f.type == "conversation.reopened" for f in win),
            "breaches": sum(f.breach for f in win),
            "urgent": sum(f.breach and f.priority == "urgent" for f in win),
            "repeats": sum(
                f.type == "conversation.opened" and any(r < f.t <= r + repeat for r in resolves)
                for f in win
            ),
            "open": sum(not f.resolved for f in last.values()),
            "csat": latest("survey.csat"),
            "nps": latest("survey.nps"),
            "ces": latest("survey.ces"),
            "reasons": self.reasons(customer, T),
            "value": self.value(customer, T),
            "segment": self.segment(customer, T),
            "last": max(kept) if kept else None,
        }

    def timeline(self, customer: str) -> list[tuple[int, tuple[Any, ...] | None]]:
        """Every change of the customer's risk status up to its partition's watermark."""
        T_end = self.watermarks[self.partition_of[customer]]
        points = set()
        for f in self.facts[customer]:
            points.update((f.t, f.t + self.params.window))
            if f.value is not None or f.segment is not None:
                points.add(f.t + self.params.horizon)
        out: list[tuple[int, tuple[Any, ...] | None]] = []
        prev = None
        for x in sorted(x for x in points if x <= T_end):
            s = self.status(customer, x)
            if s != prev:
                out.append((x, s))
                prev = s
        return out

    def revenue_at(self, timelines: dict[str, list[Any]], T: int) -> dict[tuple[str, str], Any]:
        """(grouping, key) -> [customers, revenue] at time T, from the timelines."""
        out: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [0, 0.0])
        for tl in timelines.values():
            status = None
            for at, s in tl:
                if at > T:
                    break
                status = s
            if status is None:
                continue
            pairs, value, segment = status
            v = value or 0.0
            keys = [("overall", ""), ("segment", segment)]
            keys += [("team", t) for t in sorted({t for _, t in pairs})]
            keys += [("reason", r) for r, _ in pairs]
            for key in keys:
                out[key][0] += 1
                out[key][1] += v
        return dict(out)


class _Observe(_Recompute):
    """The conversation oracle, plus a look at every accepted event."""

    def __init__(self, params: Params, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.params = params
        self.position: tuple[int, int, int] = (0, 0, 0)
        self.raw: dict[str, Any] = {}
        self.facts: dict[str, list[Fact]] = defaultdict(list)
        self.followups: dict[tuple[str, str], dict[str, Any]] = {}

    def accept(self, conv: _Conversation, event: Any) -> None:
        minute = event.occurred_us // 60_000_000
        row = self.out.minutes.get(("overall", (), minute))
        breaches_before = row["frt_breaches"] if row else 0
        super().accept(conv, event)
        breach = self.out.minutes[("overall", (), minute)]["frt_breaches"] > breaches_before
        kind = event.type
        if kind == "conversation.resolved":
            conv.customer_resolved = True  # type: ignore[attr-defined]
        elif kind in ("conversation.opened", "conversation.reopened"):
            conv.customer_resolved = False  # type: ignore[attr-defined]
        if "customer_value" in event.fields:
            conv.customer_value = float(event.fields["customer_value"])  # type: ignore[attr-defined]
        partition, offset, arrival = self.position
        customer = conv.given.get("customer_id")
        fields = event.fields
        # Documented rule: facts of a known customer, for the kinds the rules read, an FRT
        # breach, or an event carrying a customer field.
        relevant = (
            kind in KINDS_ALWAYS
            or breach
            or any(f in fields for f in ("customer_id", "segment", "customer_value"))
        )
        if customer is not None and relevant:
            self.facts[customer].append(
                Fact(
                    event.occurred_us,
                    partition,
                    offset,
                    arrival,
                    kind,
                    event.conversation_id,
                    conv.current("team"),
                    conv.current("priority"),
                    breach,
                    getattr(conv, "customer_resolved", False),
                    fields.get("score"),
                    fields.get("segment"),
                    float(fields["customer_value"]) if "customer_value" in fields else None,
                )
            )
        surveys = ("survey.csat", "survey.nps", "survey.ces")
        limits = dict(zip(surveys, self.params.followup, strict=True))
        if kind in limits and fields["score"] <= limits[kind]:
            self.followups[(event.conversation_id, event.event_id)] = {
                "survey": kind[7:],
                "score": fields["score"],
                "customer_id": customer or "",
                "customer_value": getattr(conv, "customer_value", None),
                "segment": conv.current("segment"),
                "team": conv.current("team"),
                "channel": conv.current("channel"),
                "priority": conv.current("priority"),
                "region": conv.current("region"),
                "answered_us": event.occurred_us,
                "extra": {k: v for k, v in self.raw.items() if k not in FIELD_TABLE},
                "position": (partition, offset),
            }


def recompute_customers(
    messages: Iterable[tuple[int, int, int, bytes]],
    partition_of: Callable[[str], int],
    params: Params | None = None,
) -> CustomerOracle:
    """One clean pass over ``(partition, offset, kafka timestamp ms, value)`` messages."""
    params = params or Params()
    run = _Observe(params, allowed_lateness_s=600, retention_days=7, sla_s=DEFAULT_SLA_S)
    for partition, offset, ts, raw in messages:
        run.position = (partition, offset, ts)
        try:
            run.raw = json.loads(raw)
        except ValueError:
            run.raw = {}
        if not isinstance(run.raw, dict):
            run.raw = {}
        run.message(partition, offset, raw)
    out = CustomerOracle(params, facts=dict(run.facts), followups=run.followups)
    for customer, facts in out.facts.items():
        p = partition_of(customer)
        out.partition_of[customer] = p
        latest = max(f.t for f in facts)
        if latest > out.watermarks.get(p, latest - 1):
            out.watermarks[p] = latest
    return out
