"""Injected incidents: a KPI pushed off its baseline for a window, plus the ground truth.

An incident applies to the samples the pipeline would attribute to its window and scope:
a reply (FRT / reply time), a resolve (resolution time / rate) or a survey answer whose
event time falls in ``[start, start + duration)`` while the conversation's team / channel
match. Time KPIs are stretched so that the *completing* event lands in the window with the
multiplied duration; survey KPIs draw scores from a distribution calibrated to the target;
``volume`` multiplies the arrival rate of conversations opened in the window. When
incidents of the same KPI overlap, the first one listed wins.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pipeline.simulator.seasonality import week_table

if TYPE_CHECKING:
    from pipeline.simulator.params import SimulationParams

__all__ = [
    "FACTOR_KPIS",
    "INCIDENT_KPIS",
    "TARGET_KPIS",
    "Incident",
    "ground_truth",
    "parse_duration",
    "parse_incident",
]

FACTOR_KPIS: tuple[str, ...] = ("frt", "reply_time", "resolution_time", "resolution_rate", "volume")
TARGET_KPIS: tuple[str, ...] = ("csat", "nps", "ces")
INCIDENT_KPIS: tuple[str, ...] = FACTOR_KPIS + TARGET_KPIS
# What ``target`` means per survey KPI: the headline number of the contract.
_TARGET_RANGES: dict[str, tuple[float, float, str]] = {
    "csat": (0.0, 100.0, "csat_pct, the % of answers scoring 4-5"),
    "nps": (-100.0, 100.0, "the NPS, -100..100"),
    "ces": (0.0, 100.0, "ces_easy_pct, the % of answers scoring 5-7"),
}
_KEYS = ("kpi", "start", "duration", "team", "channel", "factor", "target")
_EXAMPLE = "kpi=csat,team=billing,start=+30m,duration=40m,target=70"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
}
_WORD = re.compile(r"[a-z][a-z0-9_-]*")


@dataclass(frozen=True)
class Incident:
    """A KPI anomaly: ``factor`` multiplies time KPIs, resolve probability or arrivals;
    ``target`` sets the level of a survey KPI (csat_pct, nps, ces_easy_pct).

    ``team`` / ``channel`` narrow the scope (None = every team / channel).
    """

    kpi: str
    start: datetime
    duration: timedelta
    team: str | None = None
    channel: str | None = None
    factor: float | None = None
    target: float | None = None

    def __post_init__(self) -> None:
        if self.kpi not in INCIDENT_KPIS:
            raise ValueError(
                f"unknown incident kpi {self.kpi!r}; use one of {', '.join(INCIDENT_KPIS)}"
            )
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError(
                f"incident start {self.start.isoformat()} has no UTC offset; add Z or +hh:mm"
            )
        if self.duration <= timedelta(0):
            raise ValueError(f"incident duration must be positive, got {self.duration}")
        if self.team is not None and (not isinstance(self.team, str) or not self.team):
            raise ValueError("incident team must be a non-empty name or omitted")
        if self.channel is not None and _WORD.fullmatch(self.channel) is None:
            raise ValueError(
                f"incident channel {self.channel!r} must be a lower-case word like 'chat'"
            )
        if self.kpi in FACTOR_KPIS:
            if self.target is not None:
                raise ValueError(f"kpi={self.kpi} takes factor=<number>, not target=")
            if self.factor is None or not (math.isfinite(self.factor) and self.factor > 0):
                raise ValueError(
                    f"kpi={self.kpi} needs factor=<number > 0> (e.g. factor=3 triples it, "
                    f"factor=0.5 halves it), got {self.factor}"
                )
        else:
            low, high, meaning = _TARGET_RANGES[self.kpi]
            if self.factor is not None:
                raise ValueError(f"kpi={self.kpi} takes target=<{meaning}>, not factor=")
            if self.target is None or not (
                math.isfinite(self.target) and low <= self.target <= high
            ):
                raise ValueError(
                    f"kpi={self.kpi} needs target=<{meaning}> within {low:g}..{high:g}, "
                    f"got {self.target}"
                )

    @property
    def end(self) -> datetime:
        """Exclusive end of the window."""
        return self.start + self.duration

    @property
    def scope(self) -> dict[str, str | None]:
        """The narrowed dimensions, for reports."""
        return {"team": self.team, "channel": self.channel}


def parse_duration(text: str) -> timedelta:
    """``40m``, ``2h``, ``90s``, ``1h30m``, ``1.5d``, ``250ms``: a positive duration."""
    text = text.strip()
    pos = 0
    total = timedelta(0)
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(
            f"duration {text!r} is not understood; write a number with a unit "
            "(ms, s, m, h, d), e.g. 40m, 2h, 1h30m"
        )
    if total <= timedelta(0):
        raise ValueError(f"duration {text!r} must be positive")
    return total


def _parse_start(text: str, sim_start: datetime | None) -> datetime:
    if text.startswith("+"):
        if sim_start is None:
            raise ValueError(
                f"start={text} is relative to the simulation start; pass sim_start to "
                "parse_incident or give an absolute time such as 2026-11-24T10:00:00Z"
            )
        return sim_start + parse_duration(text[1:])
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"start={text} is neither an RFC 3339 time (2026-11-24T10:00:00Z) nor an offset "
            "from the simulation start (+30m)"
        ) from None
    if parsed.tzinfo is None:
        raise ValueError(f"start={text} has no UTC offset; add Z or +hh:mm")
    return parsed


def _parse_number(key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{key}={text} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{key}={text} must be a finite number")
    return value


def parse_incident(spec: str, sim_start: datetime | None = None) -> Incident:
    """Parse a CLI spec such as ``kpi=frt,channel=chat,start=+30m,duration=20m,factor=3``.

    ``start`` is RFC 3339 with an offset, or ``+<duration>`` after ``sim_start``.
    Raises ``ValueError`` saying what to change.
    """
    if not spec or not spec.strip():
        raise ValueError(f"incident spec is empty; expected e.g. {_EXAMPLE!r}")
    fields: dict[str, str] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep:
            raise ValueError(f"incident spec item {item!r} is not key=value; e.g. {_EXAMPLE!r}")
        if key not in _KEYS:
            raise ValueError(f"unknown incident key {key!r}; allowed keys: {', '.join(_KEYS)}")
        if key in fields:
            raise ValueError(f"incident key {key!r} given twice in {spec!r}")
        if not value:
            raise ValueError(f"incident key {key!r} has an empty value")
        fields[key] = value
    missing = [k for k in ("kpi", "start", "duration") if k not in fields]
    if missing:
        raise ValueError(
            f"incident spec {spec!r} lacks {', '.join(k + '=' for k in missing)}; e.g. {_EXAMPLE!r}"
        )
    return Incident(
        kpi=fields["kpi"].lower(),
        start=_parse_start(fields["start"], sim_start),
        duration=parse_duration(fields["duration"]),
        team=fields.get("team"),
        channel=fields.get("channel"),
        factor=_parse_number("factor", fields["factor"]) if "factor" in fields else None,
        target=_parse_number("target", fields["target"]) if "target" in fields else None,
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def to_us(moment: datetime) -> int:
    """Epoch microseconds of an aware datetime."""
    return (moment - _EPOCH) // _US


class IncidentBook:
    """Runtime lookup of incidents by KPI, in epoch microseconds (internal)."""

    __slots__ = ("_by_kpi",)

    def __init__(self, incidents: tuple[Incident, ...]) -> None:
        by_kpi: dict[str, list[tuple[int, int, str | None, str | None, float]]] = {}
        for inc in incidents:
            start = to_us(inc.start)
            value = inc.factor if inc.factor is not None else inc.target
            assert value is not None
            by_kpi.setdefault(inc.kpi, []).append(
                (start, start + inc.duration // _US, inc.team, inc.channel, value)
            )
        self._by_kpi = by_kpi

    def has(self, kpi: str) -> bool:
        return kpi in self._by_kpi

    def max_factor(self, kpi: str) -> float:
        return max((e[4] for e in self._by_kpi.get(kpi, ())), default=1.0)

    def stretch(self, kpi: str, origin: int, end: int, team: str, channel: str) -> int:
        """End time of a duration from ``origin``: multiplied by the factor of an incident
        whose window holds either the normal or the multiplied end, else unchanged.

        Either-end matching means every sample that completes inside the window carries
        the factor, for slow-downs and speed-ups alike.
        """
        for start, stop, i_team, i_channel, factor in self._by_kpi.get(kpi, ()):
            if (i_team is not None and i_team != team) or (
                i_channel is not None and i_channel != channel
            ):
                continue
            stretched = origin + int((end - origin) * factor)
            if start <= end < stop or start <= stretched < stop:
                return stretched
        return end

    def value_at(self, kpi: str, t: int, team: str, channel: str) -> float | None:
        """Factor or target of the first incident active at ``t`` for this scope."""
        for start, stop, i_team, i_channel, value in self._by_kpi.get(kpi, ()):
            if (
                start <= t < stop
                and (i_team is None or i_team == team)
                and (i_channel is None or i_channel == channel)
            ):
                return value
        return None


# ---------------------------------------------------------------- ground truth


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _mixture_median(components: list[tuple[float, float, float]]) -> float:
    """Median of a mixture of log-normals given as (weight, mu, sigma)."""
    total = sum(w for w, _, _ in components)
    if total <= 0:
        return float("nan")

    def cdf(x: float) -> float:
        lx = math.log(x)
        acc = 0.0
        for w, mu, sigma in components:
            acc += w * (_normal_cdf((lx - mu) / sigma) if sigma > 0 else float(lx >= mu))
        return acc / total

    lo = min(mu for _, mu, _ in components) - 10
    hi = max(mu for _, mu, _ in components) + 10
    for _ in range(100):
        mid = (lo + hi) / 2
        if cdf(math.exp(mid)) < 0.5:
            lo = mid
        else:
            hi = mid
    return math.exp((lo + hi) / 2)


# The contract's default FRT SLA targets; a breach lowers the odds of a 4-5 CSAT answer.
_SLA_S = {"urgent": 300.0, "high": 900.0, "normal": 3600.0, "low": 14400.0}
BREACH_CSAT_PENALTY = 0.15


def _time_components(params: SimulationParams, inc: Incident, attr: str) -> list:
    comps: list[tuple[float, float, float]] = []
    for ch in params.channels:
        if inc.channel is not None and ch.name != inc.channel:
            continue
        dist = getattr(ch, attr)
        for prio in params.priorities:
            scale = prio.time_factor if attr != "resolution" else math.sqrt(prio.time_factor)
            comps.append((ch.weight * prio.weight, dist.mu + math.log(scale), dist.sigma))
    return comps


def _breach_share(params: SimulationParams, inc: Incident) -> float:
    total = acc = 0.0
    for ch in params.channels:
        if inc.channel is not None and ch.name != inc.channel:
            continue
        for prio in params.priorities:
            w = ch.weight * prio.weight
            mu = ch.frt.mu + math.log(prio.time_factor)
            z = (math.log(_SLA_S[prio.name]) - mu) / ch.frt.sigma if ch.frt.sigma else 0.0
            acc += w * (1.0 - _normal_cdf(z))
            total += w
    return acc / total if total else 0.0


def _expected_opened(params: SimulationParams, inc: Incident) -> float:
    """Conversations expected to open in the window and scope without the incident."""
    table = week_table(params.weekend_factors)
    team_w = params.effective_team_weights
    team_share = 1.0 if inc.team is None else team_w[params.teams.index(inc.team)] / sum(team_w)
    ch_total = sum(c.weight for c in params.channels)
    ch_share = (
        1.0
        if inc.channel is None
        else next(c.weight for c in params.channels if c.name == inc.channel) / ch_total
    )
    reg_total = sum(r.weight for r in params.regions)
    start, stop = to_us(inc.start), to_us(inc.end)
    step = 60_000_000
    acc = 0.0
    t = start
    while t < stop:
        span = min(step, stop - t)
        if params.seasonality:
            f = 0.0
            for r in params.regions:
                off = int(r.utc_offset_hours * 60)
                local_h = (t + off * 60_000_000) // 3_600_000_000
                f += r.weight / reg_total * table[(local_h + 72) % 168]
        else:
            f = 1.0
        acc += f * span / 3_600_000_000
        t += span
    return params.conversations_per_hour * team_share * ch_share * acc


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def ground_truth(params: SimulationParams) -> list[dict[str, Any]]:
    """JSON-serialisable record of every injected incident, for a ground-truth file.

    ``baseline`` is what the KPI would be in the window and scope without the incident and
    ``expected`` what the incident should make it. Time KPIs report medians (p50) in
    seconds; survey KPIs the contract's headline numbers. Baselines are model values, not
    measurements: close for frt / reply_time / surveys / volume, rougher for
    resolution_time (messages can outrun the planned resolution) and resolution_rate
    (resolutions lag opens, so the windowed ratio swings with seasonality).
    """
    records: list[dict[str, Any]] = []
    for inc in params.incidents:
        rec: dict[str, Any] = {
            "kpi": inc.kpi,
            "scope": inc.scope,
            "start": _iso(inc.start),
            "end": _iso(inc.end),
            "duration_s": inc.duration.total_seconds(),
            "factor": inc.factor,
            "target": inc.target,
        }
        if inc.kpi in ("frt", "reply_time", "resolution_time"):
            attr = {"frt": "frt", "reply_time": "reply", "resolution_time": "resolution"}[inc.kpi]
            base = _mixture_median(_time_components(params, inc, attr))
            assert inc.factor is not None
            rec.update(metric=f"{inc.kpi}_p50", unit="seconds", baseline=round(base, 3))
            rec["expected"] = round(base * inc.factor, 3)
        elif inc.kpi == "csat":
            share = params.csat_satisfied_share * (
                1 - BREACH_CSAT_PENALTY * _breach_share(params, inc)
            )
            rec.update(metric="csat_pct", unit="percent", baseline=round(100 * share, 2))
            rec["expected"] = inc.target
        elif inc.kpi == "nps":
            base = 100 * (params.nps_promoter_share - params.nps_detractor_share)
            rec.update(metric="nps", unit="score", baseline=round(base, 2), expected=inc.target)
        elif inc.kpi == "ces":
            rec.update(
                metric="ces_easy_pct",
                unit="percent",
                baseline=round(100 * params.ces_easy_share, 2),
                expected=inc.target,
            )
        elif inc.kpi == "resolution_rate":
            p = params.resolve_probability
            base = p * (1 + params.reopen_probability * p)
            assert inc.factor is not None
            rec.update(metric="resolution_rate", unit="ratio", baseline=round(base, 4))
            rec["expected"] = round(base * min(inc.factor, 1 / p), 4)
        else:  # volume
            base = _expected_opened(params, inc)
            assert inc.factor is not None
            rec.update(metric="opened", unit="conversations", baseline=round(base, 1))
            rec["expected"] = round(base * inc.factor, 1)
        records.append(rec)
    return records
