"""The contract's customer rules, evaluated at any event time T over one customer's facts.

Everything here is a pure function of the *set* of facts and T, never of the order in which
they arrived: that is what makes the customer role's results the same on every run although
facts reach it from several source partitions in a different order each time.

At time T ("Customers" in the KPI definitions; W = window, 30 days by default):

* the *window* holds the facts with ``T - W < occurred_at <= T``; counts (conversations
  opened, reopens, FRT breaches, repeat contacts) are over the window, "latest" answers are
  the window's fact with the greatest ``(occurred_at, source partition, source offset)``;
* a *repeat contact* is an opened fact in the window with a resolve of the customer at
  ``t_r``, ``t_r < t_o <= t_r + 7 days`` (the resolve may precede the window);
* the customer's ``segment`` is the latest ``segment`` carried by one of their events and
  ``customer_value`` the one carried with the greatest Kafka timestamp (then source
  partition, then offset: "latest by arrival"), both among the facts of the last
  W + 7 days (the *derivation horizon*);
* a reason's team is the team at the latest fact contributing to it; its ``since`` is the
  earliest time from which the facts now in the window raise it (the answer's own time
  for CSAT/NPS, the k-th earliest counted fact for a count threshold k).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from pipeline.core.config import Settings
from streams.customers.facts import CustomerFact

__all__ = [
    "DAY_US",
    "NOT_AT_RISK",
    "REASONS",
    "Held",
    "Index",
    "Rules",
    "Status",
    "is_empty",
    "status_from_json",
    "status_to_json",
]

DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000
REASONS = ("csat_low", "nps_detractor", "reopens", "repeat_contacts", "urgent_frt_breach")
UNKNOWN_SEGMENT = "unknown"

# Risk status on the timeline: None (not at risk) or ((reason, team), ...) in REASONS order,
# customer_value, segment. Not-at-risk carries no value: its changes are not risk changes.
Status = tuple[tuple[tuple[str, str], ...], float | None, str] | None
NOT_AT_RISK: Status = None


@dataclass(frozen=True, slots=True)
class Rules:
    """Windows (microseconds of event time) and the at-risk thresholds (inclusive)."""

    window_us: int = 30 * DAY_US
    repeat_us: int = 7 * DAY_US
    max_skew_us: int = 7 * DAY_US  # the history stays open at most this far behind W
    lateness_us: int = 600_000_000  # the compute role's allowed lateness
    source_partitions: int = 4  # partitions of the events topic (all must be heard from)
    csat_max: int = 2
    nps_max: int = 6
    reopens_min: int = 2
    repeats_min: int = 3
    urgent_min: int = 1

    @property
    def derive_us(self) -> int:
        """Facts older than this behind T change nothing at T."""
        return self.window_us + self.repeat_us

    @property
    def expire_us(self) -> int:
        """A customer's state is deleted this long after their last fact (by W)."""
        return self.derive_us + self.max_skew_us + 1

    @classmethod
    def from_settings(cls, settings: Settings) -> Rules:
        s = settings.customers
        return cls(
            window_us=s.window_days * DAY_US,
            repeat_us=s.repeat_contact_days * DAY_US,
            max_skew_us=s.history_max_skew_hours * HOUR_US,
            lateness_us=settings.kpi.allowed_lateness_seconds * 1_000_000,
            source_partitions=settings.topics.partitions,
            csat_max=s.at_risk_csat_max,
            nps_max=s.at_risk_nps_max,
            reopens_min=s.at_risk_reopens_min,
            repeats_min=s.at_risk_repeat_contacts_min,
            urgent_min=s.at_risk_urgent_breaches_min,
        )


class Held(NamedTuple):
    """A fact as kept in customer state; tuples sort by (t, partition, offset)."""

    t: int
    p: int
    o: int
    kind: str
    conv: str
    team: str
    prio: str
    resolved: bool
    breach: bool
    score: int | None
    seg: str | None
    value: float | None
    ts: int

    @classmethod
    def of(cls, f: CustomerFact) -> Held:
        return cls(
            f.occurred_us,
            f.partition,
            f.offset,
            f.kind,
            f.conversation_id,
            f.team,
            f.priority,
            f.resolved,
            f.breach,
            f.score,
            f.carried_segment,
            f.carried_value,
            f.timestamp_ms,
        )

    def to_list(self) -> list[Any]:
        return [
            self.t,
            self.p,
            self.o,
            self.kind,
            self.conv,
            self.team,
            self.prio,
            1 if self.resolved else 0,
            1 if self.breach else 0,
            self.score,
            self.seg,
            self.value,
            self.ts,
        ]

    @classmethod
    def from_list(cls, d: Sequence[Any]) -> Held:
        t, p, o, kind, conv, team, prio, res, brk, score, seg, value, ts = d
        return cls(t, p, o, kind, conv, team, prio, bool(res), bool(brk), score, seg, value, ts)


def status_to_json(s: Status) -> Any:
    if s is None:
        return None
    reasons, value, segment = s
    return [[list(r) for r in reasons], value, segment]


def status_from_json(d: Any) -> Status:
    if d is None:
        return None
    reasons, value, segment = d
    return (tuple((r, team) for r, team in reasons), value, segment)


def _count(times: list[int], lo: int, hi: int) -> tuple[int, int]:
    """Index range [i, j) of the sorted times in (lo, hi]."""
    return bisect_right(times, lo), bisect_right(times, hi)


class Index:
    """Sorted views of one customer's facts (sorted by (t, p, o)) for evaluating at any T."""

    __slots__ = (
        "breach_t",
        "carriers",
        "counted",
        "facts",
        "opened_t",
        "rules",
        "seg_t",
        "segs",
        "surveys",
        "times",
        "value_t",
        "values",
    )

    def __init__(self, facts: Sequence[Held], rules: Rules) -> None:
        self.facts = facts
        self.rules = rules
        self.times = [f.t for f in facts]
        surveys: dict[str, list[Held]] = {"csat": [], "nps": [], "ces": []}
        reopens: list[Held] = []
        urgent: list[Held] = []
        opened: list[Held] = []
        resolve_t: list[int] = []
        for f in facts:
            kind = f.kind
            if kind in surveys:
                surveys[kind].append(f)
            elif kind == "reopened":
                reopens.append(f)
            elif kind == "opened":
                opened.append(f)
            elif kind == "resolved":
                resolve_t.append(f.t)
            if f.breach and f.prio == "urgent":
                urgent.append(f)
        self.surveys = {k: (v, [f.t for f in v]) for k, v in surveys.items()}
        repeat_us = rules.repeat_us
        repeats = []
        for f in opened:
            # t_r < t_o <= t_r + repeat  <=>  t_o - repeat <= t_r < t_o
            i = bisect_left(resolve_t, f.t - repeat_us)
            if i < len(resolve_t) and resolve_t[i] < f.t:
                repeats.append(f)
        self.counted = (
            ("reopens", reopens, [f.t for f in reopens], rules.reopens_min),
            ("repeat_contacts", repeats, [f.t for f in repeats], rules.repeats_min),
            ("urgent_frt_breach", urgent, [f.t for f in urgent], rules.urgent_min),
        )
        self.opened_t = [f.t for f in opened]
        self.breach_t = [f.t for f in facts if f.breach]
        self.values = [f for f in facts if f.value is not None]
        self.value_t = [f.t for f in self.values]
        self.segs = [f for f in facts if f.seg is not None]
        self.seg_t = [f.t for f in self.segs]
        self.carriers = [f.t for f in facts if f.value is not None or f.seg is not None]

    # ------------------------------------------------------------------ at one time T

    def latest_survey(self, kind: str, T: int) -> Held | None:
        facts, times = self.surveys[kind]
        i = bisect_right(times, T) - 1
        if i >= 0 and times[i] > T - self.rules.window_us:
            return facts[i]
        return None

    def reasons(self, T: int) -> list[tuple[str, str, int, int]]:
        """(reason, team, since, evidence) of every reason that holds at T, in REASONS order.

        Evidence: the answer's score (csat_low, nps_detractor) or the count in the window.
        """
        r = self.rules
        out = []
        answers = (("csat_low", "csat", r.csat_max), ("nps_detractor", "nps", r.nps_max))
        for name, kind, limit in answers:
            f = self.latest_survey(kind, T)
            if f is not None and f.score is not None and f.score <= limit:
                out.append((name, f.team, f.t, f.score))
        lo = T - r.window_us
        for name, facts, times, minimum in self.counted:
            i, j = _count(times, lo, T)
            if j - i >= minimum:
                out.append((name, facts[j - 1].team, times[i + minimum - 1], j - i))
        return out

    def value(self, T: int) -> float | None:
        """customer_value: latest by arrival (Kafka timestamp, partition, offset)."""
        i, j = _count(self.value_t, T - self.rules.derive_us, T)
        best: Held | None = None
        for f in self.values[i:j]:
            if best is None or (f.ts, f.p, f.o) > (best.ts, best.p, best.o):
                best = f
        return None if best is None else best.value

    def segment(self, T: int) -> str:
        i = bisect_right(self.seg_t, T) - 1
        if i >= 0 and self.seg_t[i] > T - self.rules.derive_us:
            return self.segs[i].seg or UNKNOWN_SEGMENT
        return UNKNOWN_SEGMENT

    def status(self, T: int) -> Status:
        reasons = self.reasons(T)
        if not reasons:
            return NOT_AT_RISK
        return (tuple((name, team) for name, team, _, _ in reasons), self.value(T), self.segment(T))

    def summary(self, T: int) -> dict[str, Any]:
        """The customer's health at T (what ``customer_health`` shows)."""
        r = self.rules
        lo = T - r.window_us

        def n(times: list[int]) -> int:
            i, j = _count(times, lo, T)
            return j - i

        last: dict[str, Held] = {}  # conversation -> its last fact in the window (offsets)
        i, j = _count(self.times, lo, T)
        for f in self.facts[i:j]:
            seen = last.get(f.conv)
            if seen is None or (f.p, f.o) > (seen.p, seen.o):
                last[f.conv] = f
        surveys = {}
        for kind in ("csat", "nps", "ces"):
            f = self.latest_survey(kind, T)
            surveys[kind] = None if f is None else [f.score, f.t]
        counted = {name: n(times) for name, _, times, _ in self.counted}
        return {
            "opened": n(self.opened_t),
            "reopens": counted["reopens"],
            "breaches": n(self.breach_t),
            "urgent": counted["urgent_frt_breach"],
            "repeats": counted["repeat_contacts"],
            "open": sum(1 for f in last.values() if not f.resolved),
            **surveys,
            "reasons": [list(x) for x in self.reasons(T)],
            "value": self.value(T),
            "segment": self.segment(T),
            "last": self.times[-1] if self.times and self.times[-1] > lo - r.repeat_us else None,
        }

    # ------------------------------------------------------------------ over time

    def change_points(self, lo: int | None, hi: int) -> list[int]:
        """Times in (lo, hi] at which the status can change: facts entering the window,
        leaving it, and value/segment carriers leaving the derivation horizon."""
        w, d = self.rules.window_us, self.rules.derive_us
        pts = set()
        for t in self.times:
            pts.add(t)
            pts.add(t + w)
        for t in self.carriers:
            pts.add(t + d)
        return sorted(x for x in pts if (lo is None or x > lo) and x <= hi)

    def timeline(self, lo: int | None, hi: int, before: Status) -> list[tuple[int, Status]]:
        """Transitions (at, new status) in (lo, hi], given the status ``before`` at lo.

        lo + 1 is always a point: a fact older than lo (later than the history allows)
        changes the status from there on.
        """
        out = []
        prev = before
        points = self.change_points(lo, hi)
        if lo is not None and lo + 1 <= hi and (not points or points[0] != lo + 1):
            points.insert(0, lo + 1)
        for x in points:
            s = self.status(x)
            if s != prev:
                out.append((x, s))
                prev = s
        return out

    def next_change(self, after: int) -> int | None:
        """The first time after ``after`` at which the status can change, or None."""
        w, d = self.rules.window_us, self.rules.derive_us
        best = None
        for x in (*(t + w for t in self.times), *(t + d for t in self.carriers)):
            if x > after and (best is None or x < best):
                best = x
        return best


def is_empty(summary: dict[str, Any] | None) -> bool:
    """No fact in the window: nothing to show but value, segment and last event."""
    if summary is None:
        return True
    return (
        not summary["reasons"]
        and summary["opened"] == summary["reopens"] == summary["breaches"] == 0
        and summary["repeats"] == summary["open"] == 0
        and summary["csat"] is None
        and summary["nps"] is None
        and summary["ces"] is None
    )
