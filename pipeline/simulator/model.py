"""Building blocks of the generator: emitted events, channel timing, per-conversation state.

Split out of :mod:`pipeline.simulator.generator` so each module reads in one sitting.
"""

from __future__ import annotations

import json
import math
import random
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from json.encoder import c_make_encoder as _c_make_encoder  # type: ignore[attr-defined]
from json.encoder import encode_basestring_ascii
from typing import Any

from pipeline.simulator.params import ChannelProfile, LogNormal

KINDS: tuple[str, ...] = ("valid", "duplicate", "malformed")

# Valid events per opened conversation with the default parameters, measured over a
# 14-day drained run (opened + messages + bot replies + assignments + resolves + reopens
# + surveys). Other parameter choices move it (chat-heavy mixes run longer).
MEAN_EVENTS_PER_CONVERSATION = 9.9

_SEC = 1_000_000
_MIN = 60 * _SEC
_HOUR = 60 * _MIN
_DAY = 24 * _HOUR
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_WAIT = 5 * _DAY  # cap on any single drawn duration: keeps the heavy tail finite
_SURVEY_CAP = 3 * _DAY
_REOPEN_CAP = 6 * _DAY
_REPEAT_CAP = 7 * _DAY - _HOUR  # a repeat contact is within 7 days of the resolve
_MAX_CYCLES = 3  # opened + up to two reopens
_SLA_US = {"urgent": 5 * _MIN, "high": 15 * _MIN, "normal": _HOUR, "low": 4 * _HOUR}
_PRIORITY_ORDER = ("low", "normal", "high", "urgent")
_UUID_CLEAR = ~((0xF << 76) | (0x3 << 62))
_UUID_SET = (0x4 << 76) | (0x2 << 62)
_PRECISION = {"ms": 1_000, "us": 1, "s": _SEC, "local": _SEC}
_encode = json.JSONEncoder(separators=(",", ":")).encode
if _c_make_encoder is not None:
    # JSONEncoder.encode builds a C encoder per call; reusing one halves the cost.
    _c_encode = _c_make_encoder(
        None, None, encode_basestring_ascii, None, ":", ",", False, False, True
    )

    def _dumps(obj: dict[str, Any]) -> str:
        """Compact JSON, byte-identical to json.dumps(obj, separators=(",", ":"))."""
        return "".join(_c_encode(obj, 0))

else:  # pragma: no cover - CPython always has the C accelerator
    _dumps = _encode

_OPENED = "conversation.opened"
_CUSTOMER = "message.customer"
_AGENT = "message.agent"
_ASSIGNED = "conversation.assigned"
_RESOLVED = "conversation.resolved"
_REOPENED = "conversation.reopened"

# Effects applied when a main-timeline event is *emitted*, so that a survey released
# between two events sees the conversation as it stands at the survey's time.
_FX_NONE, _FX_TEAM, _FX_BREACH, _FX_REOPEN = 0, 1, 2, 3

_CSAT_LOW = ((3, 0.40), (2, 0.25), (1, 0.35))
_NPS_DETRACTOR = ((6, 0.45), (5, 0.25), (4, 0.10), (3, 0.07), (2, 0.05), (1, 0.03), (0, 0.05))
_CES_EASY = ((7, 0.35), (6, 0.40), (5, 0.25))
_CES_HARD = ((4, 0.40), (3, 0.25), (2, 0.20), (1, 0.15))
_SURVEY_DELAYS = {
    "survey.csat": LogNormal(25 * 60, 1.2),
    "survey.nps": LogNormal(3 * 3600, 1.0),
    "survey.ces": LogNormal(40 * 60, 1.1),
}
_CSAT_REOPEN_PENALTY = 0.25


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One message to produce: ``key`` = conversation id, ``value`` = the exact bytes.

    ``arrival`` >= ``occurred_at`` is when to send it (the CLI sleeps until it in real-time
    mode); ``kind`` is ``valid``, ``duplicate`` or ``malformed``; ``event_type`` is the
    event's ``type`` (for malformed messages, the type of the event it was derived from);
    ``reason`` is the dead-letter reason the contract assigns to a malformed message.
    """

    key: str
    value: bytes
    occurred_at: datetime
    kind: str
    arrival: datetime
    event_type: str = ""
    reason: str | None = None

    @property
    def delay(self) -> timedelta:
        """How far behind its event time the message is sent."""
        return self.arrival - self.occurred_at


def _pick(rng: random.Random, cumulative: tuple[float, ...]) -> int:
    """Index drawn from cumulative weights (short lists: a scan beats bisect)."""
    u = rng.random() * cumulative[-1]
    for i, c in enumerate(cumulative):
        if u < c:
            return i
    return len(cumulative) - 1


def _cumulative(weights: Iterable[float]) -> tuple[float, ...]:
    acc = 0.0
    out: list[float] = []
    for w in weights:
        acc += w
        out.append(acc)
    return tuple(out)


def _pick_score(rng: random.Random, table: tuple[tuple[int, float], ...]) -> int:
    u = rng.random()
    for score, w in table:
        u -= w
        if u < 0:
            return score
    return table[-1][0]


def _splitmix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


_STD_NORMAL = statistics.NormalDist()


class _Channel:
    """A channel profile pre-converted to log-microseconds for the hot loop."""

    __slots__ = (
        "bots",
        "close",
        "extra_p",
        "frt",
        "name",
        "precision",
        "q",
        "reply",
        "resolution",
        "style",
        "think",
    )

    def __init__(self, profile: ChannelProfile) -> None:
        def conv(d: LogNormal) -> tuple[float, float]:
            return (math.log(d.median_s * _SEC), d.sigma)

        self.name = profile.name
        self.frt = conv(profile.frt)
        self.reply = conv(profile.reply)
        self.think = conv(profile.think)
        self.resolution = conv(profile.resolution)
        self.close = conv(profile.close_lag)
        m = profile.exchanges_mean
        self.q = (m - 1.0) / m  # geometric extra exchanges with mean m - 1
        self.bots = profile.bots
        self.extra_p = profile.extra_message_probability
        self.style = profile.timestamp_style
        self.precision = _PRECISION[profile.timestamp_style]


class _Conv:
    """Mutable state of one simulated conversation."""

    __slots__ = (
        "agent",
        "breached",
        "ch",
        "churn",
        "cid",
        "customer_id",
        "customer_value",
        "offset_min",
        "prio",
        "region",
        "region_i",
        "reopened",
        "segment",
        "segment_i",
        "stamp",
        "t0",
        "team",
        "team_emitted",
    )

    cid: str
    t0: int
    ch: _Channel
    region: str
    region_i: int
    offset_min: int
    team: str
    team_emitted: str
    agent: str
    prio: int
    segment: str
    segment_i: int
    stamp: Callable[[int], str]
    customer_id: str
    customer_value: float
    breached: bool
    reopened: bool
    churn: bool  # the customer is churn-prone (pipeline.simulator.customers)


class _TimeFormatter:
    """RFC 3339 strings from epoch microseconds, one formatter per (style, UTC offset).

    The date-and-minute prefix is cached because consecutive events share it; formatting
    a datetime per event would cost more than the rest of the event.
    """

    __slots__ = ("_cache", "_stampers")

    def __init__(self) -> None:
        self._cache: dict[int, str] = {}
        self._stampers: dict[tuple[str, int], Callable[[int], str]] = {}

    def _prefix(self, minute: int) -> str:
        if len(self._cache) > 200_000:
            self._cache.clear()
        prefix = (_EPOCH + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:")
        self._cache[minute] = prefix
        return prefix

    def stamper(self, style: str, offset_min: int) -> Callable[[int], str]:
        """A function epoch-us -> RFC 3339 text in ``style`` (see ChannelProfile)."""
        key = (style, offset_min)
        found = self._stampers.get(key)
        if found is not None:
            return found
        cache, make = self._cache, self._prefix
        sign = "-" if offset_min < 0 else "+"
        hh, mm = divmod(abs(offset_min), 60)
        suffix = f"{sign}{hh:02d}:{mm:02d}"
        shift = offset_min * _MIN

        def ms(t: int) -> str:
            minute, rest = divmod(t, _MIN)
            prefix = cache.get(minute) or make(minute)
            return f"{prefix}{rest // _SEC:02d}.{rest % _SEC // 1000:03d}Z"

        def us(t: int) -> str:
            minute, rest = divmod(t, _MIN)
            prefix = cache.get(minute) or make(minute)
            return f"{prefix}{rest // _SEC:02d}.{rest % _SEC:06d}Z"

        def s(t: int) -> str:
            minute, rest = divmod(t, _MIN)
            prefix = cache.get(minute) or make(minute)
            return f"{prefix}{rest // _SEC:02d}Z"

        def local(t: int) -> str:
            minute, rest = divmod(t + shift, _MIN)
            prefix = cache.get(minute) or make(minute)
            return f"{prefix}{rest // _SEC:02d}{suffix}"

        fn = {"ms": ms, "us": us, "s": s, "local": local}[style]
        self._stampers[key] = fn
        return fn


# Stage-1 heap sentinels (compared by identity, never ordered: the counter breaks ties).


# Stage-1 heap sentinels (compared by identity, never ordered: the counter breaks ties).
_ARRIVAL = object()
_FOLLOWUP = object()
