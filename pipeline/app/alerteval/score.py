"""Alerts against ground truth: deadlines, recall, precision, delays, false alerts, flaps.

Deadline of an incident (the issue's definition): the shortest T of 15 min, 30 min, 1 h,
2 h, 4 h, 8 h, 1 day whose first T minutes (in the incident's scope, counted from the
simulated data) hold the samples a one-sided test needs to see the drop at power 0.9 and
significance ``alpha`` (default 0.001), plus 2 minutes. The test is the one the detector
runs: a proportion for CSAT / CES, the share of waits slower than the baseline median
for FRT / reply time (within each channel), a mean for NPS. An incident is *provable*
when such a T exists and it lasts at least T; the recall target counts provable CSAT
drops of >= 10 points and FRT slowdowns of >= 1.5x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from pipeline.app.alerteval.feed import History
from pipeline.simulator import Incident
from streams.alerts.layout import column, hist_slice
from streams.alerts.stats import cdf_at, edge_log, sample_size, z_for_alpha

__all__ = ["LADDER", "IncidentScore", "SeedScore", "score_history"]

LADDER = (15, 30, 60, 120, 240, 480, 1440)
_WEEK = 10080
_PRIMARY = {
    "csat": ("csat_pct",),
    "nps": ("nps",),
    "ces": ("ces_easy_pct",),
    "frt": ("frt_p50", "frt_p90", "frt_p95", "frt_p99", "frt_sla_breach_rate"),
    "reply_time": ("reply_p50", "reply_p90", "reply_p95", "reply_p99"),
    "volume": ("opened", "events"),
    "resolution_rate": ("resolution_rate",),
    "resolution_time": (),
}
# KPIs an incident also moves in the simulator (same root cause, a fair alert).
_SECONDARY = {
    "frt": ("csat_pct", "nps", "ces_easy_pct", "reopen_rate"),
    # An arrival surge also shifts which waits complete when: long waits of the surge
    # complete hours later, which reads as slower first responses and replies.
    "volume": (
        "resolution_rate",
        "one_touch_rate",
        "reopen_rate",
        "events",
        "opened",
        "frt_p50",
        "frt_p90",
        "reply_p50",
        "reply_p90",
        "frt_sla_breach_rate",
    ),
    "resolution_rate": ("one_touch_rate", "reopen_rate", "opened", "events"),
}
_COUNTER = {"csat": "csat_responses", "nps": "nps_responses", "ces": "ces_responses",
            "frt": "frt_count", "reply_time": "reply_count"}  # fmt: skip


@dataclass
class IncidentScore:
    incident: Incident
    start: int  # minute
    end: int  # minute (exclusive)
    p0: float | None = None  # baseline value of the tested share / mean
    p1: float | None = None  # value under the incident
    n_required: float | None = None
    deadline: int | None = None  # T (minutes), None when not provable within a day
    detected_at: int | None = None  # minute of the first matching firing
    rule: str = ""
    target: bool = False  # counts towards the recall target

    @property
    def delay(self) -> int | None:
        """Minutes of incident data up to and including the firing minute."""
        return None if self.detected_at is None else self.detected_at - self.start + 1

    @property
    def in_time(self) -> bool:
        return (
            self.delay is not None and self.deadline is not None and self.delay <= self.deadline + 2
        )


@dataclass
class SeedScore:
    seed: int
    weeks: int
    quiet_weeks: tuple[int, ...]
    teams: tuple[str, ...]
    incidents: list[IncidentScore] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)  # one per firing transition
    refires_30: int = 0
    flaps: int = 0
    events: int = 0
    minutes: int = 0
    reference: dict[str, list[int | None]] = field(default_factory=dict)


def _scope(h: History, inc: Incident) -> np.ndarray:
    return np.array(
        [i for i, (t, c) in enumerate(h.leaves) if t == inc.team and (inc.channel in (None, c))],
        dtype=np.intp,
    )


def _shares(hist: np.ndarray, factor: float) -> tuple[float, float]:
    """(share above the median edge, share above median/factor) of a baseline histogram."""
    n = hist.sum()
    cum = np.cumsum(hist) / max(n, 1)
    edge = min(int((cum < 0.5).sum()), len(hist) - 2)
    shift = math.log(factor) / float(edge_log(1.0))
    above = 1.0 - float(cdf_at(cum[None], np.array([edge - shift]))[0])
    return 1.0 - float(cum[edge]), above


def _requirement(
    h: History, inc: Incident, s: IncidentScore, alpha: float, drop_points: float | None = None
) -> None:
    leaves = _scope(h, inc)
    if not len(leaves):
        return
    hour0 = max((s.start - h.first_minute) // 60 - 168, 0)
    hour1 = (s.start - h.first_minute) // 60
    base = h.hourly[hour0:hour1][:, leaves]  # [hours, leaves, W]
    kpi = inc.kpi
    if kpi in ("csat", "ces"):
        num, den = (
            ("csat_satisfied", "csat_responses") if kpi == "csat" else ("ces_easy", "ces_responses")
        )
        n0 = base[..., column(den)].sum()
        if not n0:
            return
        s.p0 = base[..., column(num)].sum() / n0
        s.p1 = s.p0 - drop_points / 100 if drop_points is not None else (inc.target or 0.0) / 100
    elif kpi == "nps":
        p = base[..., column("nps_promoters")].sum()
        d = base[..., column("nps_detractors")].sum()
        n0 = base[..., column("nps_responses")].sum()
        if not n0:
            return
        mu0, var0 = (p - d) / n0, (p + d) / n0 - ((p - d) / n0) ** 2
        mu1 = (inc.target or 0.0) / 100
        s.p0, s.p1 = mu0, mu1
        delta = mu0 - mu1
        if delta > 0:
            za, zb = z_for_alpha(alpha), z_for_alpha(0.1)
            s.n_required = ((za + zb) * math.sqrt(max(var0, 1e-6)) / delta) ** 2
    elif kpi in ("frt", "reply_time"):
        hs = hist_slice("frt" if kpi == "frt" else "reply")
        per_leaf = base[..., hs].sum(axis=0)  # [leaves, BINS]
        weights = per_leaf.sum(axis=1)
        if not weights.sum():
            return
        pairs = [_shares(row, inc.factor or 1.0) for row in per_leaf if row.sum()]
        w = weights[weights > 0] / weights.sum()
        s.p0 = float(sum(wi * a for wi, (a, _) in zip(w, pairs, strict=True)))
        s.p1 = float(sum(wi * b for wi, (_, b) in zip(w, pairs, strict=True)))
    else:
        return
    worse = s.p0 is not None and s.p1 is not None and (s.p1 < s.p0) == (kpi in ("csat", "ces"))
    if s.n_required is None and worse and s.p0 != s.p1:
        s.n_required = sample_size(s.p0, s.p1, alpha, 0.9)
    if s.n_required is None:
        return
    counter = column(_COUNTER[kpi])
    k0 = s.start - h.first_minute
    for t in LADDER:
        if h.counts[k0 : k0 + t, leaves, counter].sum() >= s.n_required:
            s.deadline = t
            break
    if s.deadline is not None and s.end - s.start >= s.deadline:
        drop = 100 * (s.p0 - s.p1) if kpi == "csat" else 0.0
        s.target = (kpi == "csat" and drop >= 10) or (kpi == "frt" and (inc.factor or 0) >= 1.5)


REFERENCE = (("csat", 40.0), ("csat", 20.0), ("csat", 10.0), ("frt", 3.0), ("frt", 2.0))


def reference_deadlines(h: History, team: str, alpha: float) -> dict[str, list[int | None]]:
    """Deadlines of hypothetical drops of the issue's examples for ``team``, starting at
    10:00 UTC on every weekday after the warm-up week (to compare with the issue)."""
    out: dict[str, list[int | None]] = {}
    days = h.counts.shape[0] // 1440
    for kpi, size in REFERENCE:
        found: list[int | None] = []
        for day in range(7, days - 1):
            if day % 7 in (5, 6):  # the scenario starts on a Monday
                continue
            start = h.first_minute + day * 1440 + 600
            probe = IncidentScore(
                Incident(kpi, datetime.fromtimestamp(start * 60, tz=UTC), timedelta(days=2),
                         team, None, target=None if kpi == "frt" else 0.0,
                         factor=size if kpi == "frt" else None),
                start, start + 2880,
            )  # fmt: skip
            _requirement(
                h, probe.incident, probe, alpha, drop_points=size if kpi == "csat" else None
            )
            found.append(probe.deadline)
        out[f"{kpi} {'-' if kpi == 'csat' else 'x'}{size:g}"] = found
    return out


def _overlaps(group: tuple[str, ...], inc: Incident) -> bool:
    team, channel = group[1], group[2]
    if group[0] in ("region", "priority", "segment"):
        return True
    return (not team or team == inc.team) and (not channel or inc.channel in (None, channel))


def score_history(h: History, kpi_of: dict[str, str], alpha: float = 0.001) -> SeedScore:
    """Score one seed's run; ``kpi_of`` maps rule names to their KPI."""
    sc = h.scenario
    out = SeedScore(sc.seed, sc.weeks, sc.quiet_weeks, tuple(sc.params.teams))
    out.events, out.minutes = h.events, h.minutes
    scores = []
    for inc in sc.params.incidents:
        start = int(inc.start.timestamp()) // 60
        s = IncidentScore(inc, start, start + int(inc.duration.total_seconds()) // 60)
        _requirement(h, inc, s, alpha)
        scores.append(s)
    firing = [t for t in h.transitions if t.state == "firing"]
    last_resolve: dict[tuple[str, tuple[str, ...]], int] = {}
    for t in sorted(h.transitions, key=lambda x: (x.minute, x.state != "resolved")):
        key = (t.rule, t.group)
        if t.state == "resolved":
            last_resolve[key] = t.minute
        elif key in last_resolve:
            gap = t.minute - last_resolve[key]
            out.refires_30 += gap < 30
            out.flaps += gap < 120
    for t in firing:
        kpi = kpi_of[t.rule]
        week = (t.minute - h.first_minute) // _WEEK
        explained = any(
            (kpi in _PRIMARY[s.incident.kpi] or kpi in _SECONDARY.get(s.incident.kpi, ()))
            and _overlaps(t.group, s.incident)
            and s.start - 60 <= t.minute < s.end + 1440
            for s in scores
        )
        out.alerts.append({"rule": t.rule, "kpi": kpi, "group": t.group, "minute": t.minute,
                           "week": week, "explained": explained,
                           "window": t.details.get("window")})  # fmt: skip
    for s in scores:
        for t in firing:
            if (
                kpi_of[t.rule] in _PRIMARY[s.incident.kpi]
                and _overlaps(t.group, s.incident)
                and s.start <= t.minute < s.end + 1440
            ):
                s.detected_at, s.rule = t.minute, t.rule
                break
    out.incidents = scores
    out.reference = reference_deadlines(h, "large", alpha) if "large" in sc.params.teams else {}
    return out
