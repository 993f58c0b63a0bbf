"""Typed, frozen parameters of the load generator.

Every knob has a realistic default so ``SimulationParams()`` alone gives a believable
support floor (four teams, four channels, three regions). Profiles are tuples of small
frozen dataclasses rather than dicts so that parameters are hashable and their iteration
order (which drives the random draws) is fixed by construction.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pipeline.simulator.drift import DriftParams
from pipeline.simulator.incidents import Incident

__all__ = [
    "DEFAULT_CHANNELS",
    "DEFAULT_PRIORITIES",
    "DEFAULT_REGIONS",
    "DEFAULT_SEGMENTS",
    "DEFAULT_START",
    "DEFAULT_TEAMS",
    "ChannelProfile",
    "LogNormal",
    "PriorityProfile",
    "RegionProfile",
    "SegmentProfile",
    "SimulationParams",
]

_WORD = re.compile(r"[a-z][a-z0-9_-]*")
_PRIORITY_NAMES = ("low", "normal", "high", "urgent")
_TIMESTAMP_STYLES = ("ms", "us", "s", "local")


@dataclass(frozen=True, slots=True)
class LogNormal:
    """A log-normal duration given by its median (seconds) and the sigma of its log.

    Median + sigma is how support durations are usually described ("half the chats get a
    reply within a minute, a few wait ten"): sigma 1 puts p90 at ~3.6x the median.
    """

    median_s: float
    sigma: float

    def __post_init__(self) -> None:
        if not self.median_s > 0:
            raise ValueError(f"LogNormal median_s must be > 0 seconds, got {self.median_s}")
        if not 0 <= self.sigma <= 4:
            raise ValueError(f"LogNormal sigma must be within 0..4, got {self.sigma}")

    @property
    def mu(self) -> float:
        """Mean of the log of the duration in seconds."""
        return math.log(self.median_s)


@dataclass(frozen=True, slots=True)
class ChannelProfile:
    """How one channel behaves: its share of arrivals and its time scales.

    ``frt`` and ``reply`` are agent waits (before priority and incident factors);
    ``think`` is the customer's gap before a follow-up message; ``resolution`` is the
    planned open-to-resolve time of a cycle (stretched when the messages run longer);
    ``close_lag`` is the gap between the last message and the resolve.
    ``timestamp_style`` is how this channel's producer writes ``occurred_at``: ``ms``
    (milliseconds, ``Z``), ``us`` (microseconds, ``Z``), ``s`` (seconds, ``Z``) or
    ``local`` (seconds, the region's ``+hh:mm`` offset), so consumers see every shape
    RFC 3339 allows.
    """

    name: str
    weight: float
    frt: LogNormal
    reply: LogNormal
    think: LogNormal
    resolution: LogNormal
    close_lag: LogNormal
    exchanges_mean: float = 2.0
    bots: bool = False
    extra_message_probability: float = 0.2
    timestamp_style: str = "ms"

    def __post_init__(self) -> None:
        if _WORD.fullmatch(self.name) is None:
            raise ValueError(f"channel name {self.name!r} must match ^[a-z][a-z0-9_-]*$")
        if not self.weight >= 0:
            raise ValueError(f"channel {self.name}: weight must be >= 0, got {self.weight}")
        if not self.exchanges_mean >= 1:
            raise ValueError(f"channel {self.name}: exchanges_mean must be >= 1")
        if not 0 <= self.extra_message_probability < 1:
            raise ValueError(f"channel {self.name}: extra_message_probability must be in [0, 1)")
        if self.timestamp_style not in _TIMESTAMP_STYLES:
            raise ValueError(
                f"channel {self.name}: timestamp_style must be one of {_TIMESTAMP_STYLES}"
            )


@dataclass(frozen=True, slots=True)
class RegionProfile:
    """A region: share of arrivals and the fixed UTC offset its seasonality follows.

    Fixed offsets (no DST) keep the simulation a pure function of its parameters.
    """

    name: str
    weight: float
    utc_offset_hours: float

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("region name must be non-empty")
        if not self.weight >= 0:
            raise ValueError(f"region {self.name}: weight must be >= 0")
        minutes = self.utc_offset_hours * 60
        if minutes != int(minutes) or not -14 * 60 <= minutes <= 14 * 60:
            raise ValueError(
                f"region {self.name}: utc_offset_hours must be whole minutes within -14..14"
            )


@dataclass(frozen=True, slots=True)
class PriorityProfile:
    """A priority level, its share, and the multiplier on agent waits (low waits longer)."""

    name: str
    weight: float
    time_factor: float

    def __post_init__(self) -> None:
        if self.name not in _PRIORITY_NAMES:
            raise ValueError(f"priority {self.name!r} must be one of {_PRIORITY_NAMES}")
        if not self.weight >= 0 or not self.time_factor > 0:
            raise ValueError(f"priority {self.name}: weight >= 0 and time_factor > 0 needed")


@dataclass(frozen=True, slots=True)
class SegmentProfile:
    """A customer segment: share of conversations, customer population, monthly value.

    ``population`` customers per region share the segment's conversations with a skew
    (a few customers contact support a lot); ``customer_value`` is log-normal per customer
    and stable over the run.
    """

    name: str
    weight: float
    population: int
    value_median: float
    value_sigma: float

    def __post_init__(self) -> None:
        if _WORD.fullmatch(self.name) is None:
            raise ValueError(f"segment name {self.name!r} must match ^[a-z][a-z0-9_-]*$")
        if not self.weight >= 0 or self.population < 1:
            raise ValueError(f"segment {self.name}: weight >= 0 and population >= 1 needed")
        if not self.value_median > 0 or not self.value_sigma >= 0:
            raise ValueError(f"segment {self.name}: value_median > 0, value_sigma >= 0 needed")


_S, _M, _H = 1.0, 60.0, 3600.0

DEFAULT_CHANNELS: tuple[ChannelProfile, ...] = (
    ChannelProfile(
        "chat", 0.45,
        frt=LogNormal(50 * _S, 1.0), reply=LogNormal(40 * _S, 0.9),
        think=LogNormal(45 * _S, 0.9), resolution=LogNormal(18 * _M, 0.8),
        close_lag=LogNormal(2 * _M, 1.0), exchanges_mean=3.5, bots=True,
        extra_message_probability=0.35, timestamp_style="ms",
    ),
    ChannelProfile(
        "email", 0.30,
        frt=LogNormal(2.5 * _H, 1.0), reply=LogNormal(2 * _H, 1.0),
        think=LogNormal(3 * _H, 1.1), resolution=LogNormal(22 * _H, 0.9),
        close_lag=LogNormal(4 * _H, 1.0), exchanges_mean=1.8, bots=True,
        extra_message_probability=0.1, timestamp_style="local",
    ),
    ChannelProfile(
        "phone", 0.15,
        frt=LogNormal(25 * _S, 0.8), reply=LogNormal(8 * _S, 0.5),
        think=LogNormal(20 * _S, 0.6), resolution=LogNormal(7 * _M, 0.5),
        close_lag=LogNormal(30 * _S, 0.6), exchanges_mean=2.5, bots=False,
        extra_message_probability=0.05, timestamp_style="us",
    ),
    ChannelProfile(
        "social", 0.10,
        frt=LogNormal(25 * _M, 1.0), reply=LogNormal(20 * _M, 1.0),
        think=LogNormal(15 * _M, 1.0), resolution=LogNormal(4 * _H, 0.9),
        close_lag=LogNormal(30 * _M, 1.0), exchanges_mean=2.0, bots=True,
        extra_message_probability=0.3, timestamp_style="s",
    ),
)  # fmt: skip

DEFAULT_REGIONS: tuple[RegionProfile, ...] = (
    RegionProfile("emea", 0.45, 1.0),
    RegionProfile("amer", 0.40, -5.0),
    RegionProfile("apac", 0.15, 8.0),
)

DEFAULT_PRIORITIES: tuple[PriorityProfile, ...] = (
    PriorityProfile("low", 0.15, 1.8),
    PriorityProfile("normal", 0.60, 1.0),
    PriorityProfile("high", 0.20, 0.6),
    PriorityProfile("urgent", 0.05, 0.3),
)

DEFAULT_SEGMENTS: tuple[SegmentProfile, ...] = (
    SegmentProfile("enterprise", 0.12, 400, 15_000.0, 0.9),
    SegmentProfile("smb", 0.33, 6_000, 600.0, 0.8),
    SegmentProfile("consumer", 0.55, 120_000, 25.0, 0.7),
)

DEFAULT_TEAMS: tuple[str, ...] = ("billing", "technical", "accounts", "shipping")

# A Monday, so a default run starts on a working day.
DEFAULT_START = datetime(2026, 11, 23, tzinfo=UTC)


def _check_probability(name: str, value: float, *, upper: float = 1.0) -> None:
    if not 0.0 <= value <= upper:
        raise ValueError(f"{name} must be within 0..{upper}, got {value}")


def _check_weights(kind: str, weights: tuple[float, ...]) -> None:
    if not weights or not sum(weights) > 0:
        raise ValueError(f"{kind}: need at least one entry with a weight > 0")


@dataclass(frozen=True)
class SimulationParams:
    """Everything that determines a simulated stream: same params, same bytes.

    ``conversations_per_hour`` is the peak rate: the rate when every region is at its
    weekday 9-11 am local peak; seasonality (daily curve, quieter weekends) scales it down,
    so the weekly mean is ~0.33 of it (``rate_for_events_per_second`` converts). Repeat
    contacts (``repeat_contact_probability``) come on top of it.

    Probabilities are per conversation unless stated: ``bot_reply_probability`` per cycle
    on channels with bots, ``reassignment_probability`` (one transfer to another team,
    escalating the priority one level with ``escalation_probability``),
    ``resolve_probability`` per cycle (the rest stay open), ``reopen_probability`` per
    resolve (at most two reopens), ``thanks_probability`` (a last customer message that the
    resolve discards), survey response rates per resolve. ``csat_satisfied_share`` is the
    4-5 share after a good experience; an FRT SLA breach or a reopen lowers it.
    ``churn_prone_share`` of the customers are churn-prone: more urgent, reopened and
    repeated conversations and low survey answers (``pipeline.simulator.customers``).

    Faults: ``malformed_rate`` and ``duplicate_rate`` are fractions of all emitted messages
    (sum < 1); ``late_rate`` is the fraction of valid events sent after their event time.
    A late event waits a log-uniform 1 s .. ``late_max_delay`` (default 30 min: ~20% of
    the delays exceed the 10-minute allowed lateness) and the following events of its
    conversation queue behind it, as behind a stalled producer; those count towards the
    rate. Valid events' bytes and event times do not depend on the fault settings (only
    their arrival order does).

    The window is ``[start, start + duration)`` in arrival time; ``drain=True`` instead
    lets conversations opened in it run to completion (reopens and surveys included).
    """

    seed: int = 42
    start: datetime = DEFAULT_START
    duration: timedelta = timedelta(days=1)
    conversations_per_hour: float = 1000.0
    seasonality: bool = True
    teams: tuple[str, ...] = DEFAULT_TEAMS
    team_weights: tuple[float, ...] | None = None
    channels: tuple[ChannelProfile, ...] = DEFAULT_CHANNELS
    regions: tuple[RegionProfile, ...] = DEFAULT_REGIONS
    priorities: tuple[PriorityProfile, ...] = DEFAULT_PRIORITIES
    segments: tuple[SegmentProfile, ...] = DEFAULT_SEGMENTS
    agents_per_team: int = 30
    weekend_factors: tuple[float, float] = (0.35, 0.25)
    bot_reply_probability: float = 0.4
    reassignment_probability: float = 0.12
    escalation_probability: float = 0.25
    resolve_probability: float = 0.93
    reopen_probability: float = 0.08
    thanks_probability: float = 0.3
    repeat_contact_probability: float = 0.06
    churn_prone_share: float = 0.01
    csat_response_rate: float = 0.25
    nps_response_rate: float = 0.10
    ces_response_rate: float = 0.08
    # Survey answers come minutes to hours after the resolve; a live demo scales that down.
    survey_delay_scale: float = 1.0
    csat_satisfied_share: float = 0.88
    nps_promoter_share: float = 0.45
    nps_detractor_share: float = 0.25
    ces_easy_share: float = 0.72
    malformed_rate: float = 0.0
    duplicate_rate: float = 0.0
    late_rate: float = 0.0
    late_max_delay: timedelta = timedelta(minutes=30)
    duplicate_max_delay: timedelta = timedelta(minutes=2)
    incidents: tuple[Incident, ...] = ()
    drain: bool = False
    # Slow drift of satisfaction and agent speed per team (pipeline/simulator/drift.py).
    drift: DriftParams | None = None

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError("start must be timezone-aware, e.g. datetime(..., tzinfo=UTC)")
        if self.duration <= timedelta(0):
            raise ValueError(f"duration must be positive, got {self.duration}")
        if not self.conversations_per_hour >= 0:
            raise ValueError("conversations_per_hour must be >= 0")
        if not self.teams or len(set(self.teams)) != len(self.teams):
            raise ValueError("teams must be a non-empty tuple of distinct names")
        for team in self.teams:
            if not isinstance(team, str) or not team:
                raise ValueError(f"team names must be non-empty strings, got {team!r}")
        if self.team_weights is not None:
            if len(self.team_weights) != len(self.teams):
                raise ValueError("team_weights must have one weight per team (or be None)")
            _check_weights("team_weights", self.team_weights)
        for kind, profiles in (
            ("channels", self.channels),
            ("regions", self.regions),
            ("priorities", self.priorities),
            ("segments", self.segments),
        ):
            names = [p.name for p in profiles]
            if len(set(names)) != len(names):
                raise ValueError(f"{kind}: names must be distinct, got {names}")
            _check_weights(kind, tuple(p.weight for p in profiles))
        if self.agents_per_team < 1:
            raise ValueError("agents_per_team must be >= 1")
        if len(self.weekend_factors) != 2 or not all(0 <= f <= 1 for f in self.weekend_factors):
            raise ValueError("weekend_factors must be (saturday, sunday), each within 0..1")
        for name in (
            "bot_reply_probability",
            "reassignment_probability",
            "escalation_probability",
            "resolve_probability",
            "reopen_probability",
            "thanks_probability",
            "repeat_contact_probability",
            "churn_prone_share",
            "csat_response_rate",
            "nps_response_rate",
            "ces_response_rate",
            "csat_satisfied_share",
            "nps_promoter_share",
            "nps_detractor_share",
            "ces_easy_share",
            "late_rate",
        ):
            _check_probability(name, getattr(self, name))
        if self.nps_promoter_share + self.nps_detractor_share > 1:
            raise ValueError("nps_promoter_share + nps_detractor_share must be <= 1")
        _check_probability("malformed_rate", self.malformed_rate)
        _check_probability("duplicate_rate", self.duplicate_rate)
        if self.malformed_rate + self.duplicate_rate >= 1:
            raise ValueError("malformed_rate + duplicate_rate must be < 1")
        if not 0 < self.survey_delay_scale <= 100:
            raise ValueError(
                f"survey_delay_scale must be within (0, 100], got {self.survey_delay_scale}"
            )
        if self.late_max_delay < timedelta(seconds=1):
            raise ValueError("late_max_delay must be at least 1 second")
        if self.duplicate_max_delay < timedelta(milliseconds=1):
            raise ValueError("duplicate_max_delay must be at least 1 millisecond")
        if self.drift is not None and not isinstance(self.drift, DriftParams):
            raise ValueError(f"drift must be a DriftParams or None, got {self.drift!r}")
        channel_names = {c.name for c in self.channels}
        for incident in self.incidents:
            if not isinstance(incident, Incident):
                raise ValueError(f"incidents must be Incident objects, got {incident!r}")
            if incident.team is not None and incident.team not in self.teams:
                raise ValueError(
                    f"incident {incident.kpi}: team {incident.team!r} is not simulated; "
                    f"use one of {', '.join(self.teams)}"
                )
            if incident.channel is not None and incident.channel not in channel_names:
                raise ValueError(
                    f"incident {incident.kpi}: channel {incident.channel!r} is not simulated; "
                    f"use one of {', '.join(c.name for c in self.channels)}"
                )

    @property
    def end(self) -> datetime:
        """End of the simulated window (exclusive)."""
        return self.start + self.duration

    @property
    def effective_team_weights(self) -> tuple[float, ...]:
        """Team weights, uniform when ``team_weights`` is None."""
        return self.team_weights if self.team_weights is not None else (1.0,) * len(self.teams)
