"""The streaming, deterministic event generator.

Two stages, both heaps, so a 30-day history streams in bounded memory:

1. *Event time.* New conversations arrive by a thinned Poisson process (seasonality and
   ``volume`` incidents decide acceptance). Each conversation is a lazy generator that
   yields its events in time order, merging its own small heap of pending surveys; the
   stage-1 heap holds one entry per live conversation (its next event), so a resolved
   conversation waiting two days for a reopen costs one suspended frame, not its script.
2. *Arrival time.* Every event enters an arrival heap: its event time, or later when it is
   chosen to be late (a conversation's following events queue behind it, keeping the
   per-key order the contract requires). Duplicates and malformed messages are injected
   here. Entries leave once no stage-1 event can arrive earlier.

Determinism: three ``random.Random`` streams derived from the seed (arrivals, conversation
content, faults); heap ties break on an insertion counter; no set or hash ordering is
involved. Content and arrivals do not depend on the fault rates, so turning faults on
only reorders and adds messages (the valid events keep their bytes).
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import random
import statistics
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from json.encoder import c_make_encoder as _c_make_encoder  # type: ignore[attr-defined]
from json.encoder import encode_basestring_ascii
from typing import Any

from pipeline.simulator.faults import malformed
from pipeline.simulator.incidents import BREACH_CSAT_PENALTY, IncidentBook, to_us
from pipeline.simulator.params import ChannelProfile, LogNormal, SimulationParams
from pipeline.simulator.seasonality import mean_season_factor, week_table

__all__ = [
    "KINDS",
    "MEAN_EVENTS_PER_CONVERSATION",
    "SimEvent",
    "Summary",
    "rate_for_events_per_second",
    "simulate",
    "summarize",
]

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
_ARRIVAL = object()
_FOLLOWUP = object()


class _Simulation:
    def __init__(self, params: SimulationParams) -> None:
        p = params
        self.p = p
        seed = p.seed
        self.arng = random.Random(f"cxpulse-arrivals:{seed}")
        self.rng = random.Random(f"cxpulse-content:{seed}")
        self.frng = random.Random(f"cxpulse-faults:{seed}")
        self.book = IncidentBook(p.incidents)
        self.fmt = _TimeFormatter()
        self.start_us = to_us(p.start)
        self.end_us = to_us(p.end)
        self.stop_us = (1 << 62) if p.drain else self.end_us
        self.seq = itertools.count(1)  # stage-1 tie-breaker
        self.out_seq = itertools.count(1)  # stage-2 tie-breaker
        self.conv_heap: list[tuple[Any, ...]] = []
        self.channels = tuple(_Channel(c) for c in p.channels)
        self.channel_cum = _cumulative(c.weight for c in p.channels)
        self.region_cum = _cumulative(r.weight for r in p.regions)
        self.region_offsets = tuple(int(r.utc_offset_hours * 60) for r in p.regions)
        self.team_cum = _cumulative(p.effective_team_weights)
        self.prio_cum = _cumulative(x.weight for x in p.priorities)
        self.prio_names = tuple(x.name for x in p.priorities)
        self.prio_factor = tuple(x.time_factor for x in p.priorities)
        self.prio_index = {x.name: i for i, x in enumerate(p.priorities)}
        self.segment_cum = _cumulative(s.weight for s in p.segments)
        self.table = week_table(p.weekend_factors)
        self.agents = {
            team: tuple(f"agt-{team}-{i:03d}" for i in range(p.agents_per_team)) for team in p.teams
        }
        self.vmax = max(1.0, self.book.max_factor("volume"))
        self.lam_per_us = p.conversations_per_hour * self.vmax / _HOUR
        self.survey_plan = tuple(
            (kind, rate, math.log(_SURVEY_DELAYS[kind].median_s * _SEC), _SURVEY_DELAYS[kind].sigma)
            for kind, rate in (
                ("survey.csat", p.csat_response_rate),
                ("survey.nps", p.nps_response_rate),
                ("survey.ces", p.ces_response_rate),
            )
            if rate > 0
        )
        late_lo, late_hi = math.log(_SEC), math.log(p.late_max_delay // timedelta(microseconds=1))
        self.late_log = (late_lo, max(late_hi, late_lo))
        self.dup_log = (
            math.log(1_000),
            math.log(p.duplicate_max_delay // timedelta(microseconds=1)),
        )
        extra = p.malformed_rate + p.duplicate_rate
        self.extra_p = extra
        self.malformed_share = p.malformed_rate / extra if extra > 0 else 0.0

    # ------------------------------------------------------------------ helpers

    def _push(self, t: int, gen: Any, data: Any) -> None:
        heapq.heappush(self.conv_heap, (t, next(self.seq), gen, data))

    def _event_id(self, rng: random.Random) -> str:
        x = (rng.getrandbits(128) & _UUID_CLEAR) | _UUID_SET
        h = f"{x:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def _customer_value(self, segment_i: int, region_i: int, idx: int) -> float:
        """A customer's monthly value: a pure function of seed and identity (no cache)."""
        seg = self.p.segments[segment_i]
        h = _splitmix(_splitmix(self.p.seed * 1_000_003 + segment_i * 1009 + region_i) ^ idx)
        u = ((h >> 11) + 0.5) / (1 << 53)
        z = _STD_NORMAL.inv_cdf(u)
        return round(seg.value_median * math.exp(seg.value_sigma * z), 2)

    def _new_conv(self, t: int, region_i: int, team_i: int, channel_i: int) -> _Conv:
        arng = self.arng
        p = self.p
        c = _Conv()
        c.cid = f"cnv-{arng.getrandbits(64):016x}"
        c.ch = self.channels[channel_i]
        prec = c.ch.precision
        c.t0 = -(-t // prec) * prec  # round up: never earlier than "now" after truncation
        c.region_i = region_i
        c.region = p.regions[region_i].name
        c.offset_min = self.region_offsets[region_i]
        c.stamp = self.fmt.stamper(c.ch.style, c.offset_min)
        c.team = c.team_emitted = p.teams[team_i]
        c.prio = _pick(arng, self.prio_cum)
        c.segment_i = seg_i = _pick(arng, self.segment_cum)
        seg = p.segments[seg_i]
        c.segment = seg.name
        # Skewed choice: a few customers account for many conversations.
        idx = int(seg.population * arng.random() ** 2)
        c.customer_id = f"cus-{c.region}-{seg.name[:3]}-{idx:06d}"
        c.customer_value = self._customer_value(seg_i, region_i, idx)
        c.breached = c.reopened = False
        return c

    def _start(self, c: _Conv) -> None:
        gen = self._conversation(c)
        first = next(gen)
        self._push(first[0], gen, first[1])

    def _arrival(self, t: int) -> None:
        """One candidate of the thinned arrival process at ``t``."""
        arng = self.arng
        p = self.p
        region_i = _pick(arng, self.region_cum)
        team_i = _pick(arng, self.team_cum)
        channel_i = _pick(arng, self.channel_cum)
        accept = (
            self.table[((t + self.region_offsets[region_i] * _MIN) // _HOUR + 72) % 168]
            if p.seasonality
            else 1.0
        )
        if self.book.has("volume"):
            v = self.book.value_at("volume", t, p.teams[team_i], self.channels[channel_i].name)
            accept *= (v if v is not None else 1.0) / self.vmax
        if arng.random() < accept:
            self._start(self._new_conv(t, region_i, team_i, channel_i))
        nxt = t + max(1, int(arng.expovariate(1.0) / self.lam_per_us))
        if nxt < self.end_us:
            self._push(nxt, _ARRIVAL, None)

    def _followup(self, t: int, prev: _Conv) -> None:
        """A repeat contact: the same customer comes back with a new conversation."""
        arng = self.arng
        p = self.p
        channel_i = (
            self.channels.index(prev.ch) if arng.random() < 0.6 else _pick(arng, self.channel_cum)
        )
        team_i = p.teams.index(prev.team) if arng.random() < 0.7 else _pick(arng, self.team_cum)
        c = self._new_conv(t, prev.region_i, team_i, channel_i)
        c.segment_i, c.segment = prev.segment_i, prev.segment
        c.customer_id, c.customer_value = prev.customer_id, prev.customer_value
        self._start(c)

    def _survey_fields(self, c: _Conv, t: int, kind: str) -> dict[str, Any]:
        """The answer to a survey due at ``t``, given the conversation as it stands then."""
        rng = self.rng
        p = self.p
        book = self.book
        metric = kind[7:]
        target = book.value_at(metric, t, c.team_emitted, c.ch.name) if book.has(metric) else None
        if kind == "survey.csat":
            if target is not None:
                sat = target / 100.0
            else:
                sat = p.csat_satisfied_share
                if c.breached:
                    sat *= 1 - BREACH_CSAT_PENALTY
                if c.reopened:
                    sat *= 1 - _CSAT_REOPEN_PENALTY
            if rng.random() < sat:
                score = 5 if rng.random() < 0.7 else 4
            else:
                score = _pick_score(rng, _CSAT_LOW)
        elif kind == "survey.nps":
            if target is not None:
                x = target / 100.0
                passive = min(0.30, 1.0 - abs(x))
                promoter, detractor = (1 - passive + x) / 2, (1 - passive - x) / 2
            else:
                promoter, detractor = p.nps_promoter_share, p.nps_detractor_share
            u = rng.random()
            if u < promoter:
                score = 10 if rng.random() < 0.55 else 9
            elif u < promoter + detractor:
                score = _pick_score(rng, _NPS_DETRACTOR)
            else:
                score = 8 if rng.random() < 0.5 else 7
        else:
            easy = target / 100.0 if target is not None else p.ces_easy_share
            score = _pick_score(rng, _CES_EASY if rng.random() < easy else _CES_HARD)
        return {"customer_id": c.customer_id, "score": score}

    # ------------------------------------------------------------ conversations

    def _conversation(self, c: _Conv) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yields (event time, payload) of one conversation in order; lazy so that idle
        conversations (waiting for an email reply, a survey, a reopen) cost little."""
        rng = self.rng
        p = self.p
        book = self.book
        ch = c.ch
        gauss = rng.gauss
        exp = math.exp
        pending: list[tuple[int, int, str]] = []  # surveys not yet due
        seq = 0
        getrandbits = rng.getrandbits
        precision = ch.precision
        stamp = c.stamp
        cid = c.cid

        def draw(dist: tuple[float, float], scale: float = 1.0) -> int:
            return max(1, min(_MAX_WAIT, int(scale * exp(dist[0] + dist[1] * gauss(0.0, 1.0)))))

        def payload(t: int, etype: str, fields: dict[str, Any] | None) -> tuple[int, dict]:
            t -= t % precision
            # A random (version 4 shaped) UUID from the seeded stream: unique, reproducible.
            h = f"{(getrandbits(128) & _UUID_CLEAR) | _UUID_SET:032x}"
            d: dict[str, Any] = {
                "event_id": f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}",
                "type": etype,
                "occurred_at": stamp(t),
                "conversation_id": cid,
            }
            if fields:
                d.update(fields)
            d["schema_version"] = 1
            return (t, d)

        def flush(
            items: list[tuple[int, str, dict[str, Any] | None, int]],
        ) -> list[tuple[int, dict[str, Any]]]:
            """Payloads of a step's events in time order, due surveys merged in; effects
            are applied in that order so a survey sees the state at its own time."""
            ready = []
            for t, etype, fields, effect in items:
                while pending and pending[0][0] <= t:
                    ts, _, kind = heapq.heappop(pending)
                    ready.append(payload(ts, kind, self._survey_fields(c, ts, kind)))
                if effect:
                    if effect == _FX_TEAM:
                        assert fields is not None
                        c.team_emitted = fields["team"]
                    elif effect == _FX_BREACH:
                        c.breached = True
                    else:
                        c.reopened = True
                ready.append(payload(t, etype, fields))
            return ready

        t0 = c.t0
        items: list[tuple[int, str, dict[str, Any] | None, int]] = [
            (
                t0,
                _OPENED,
                {
                    "channel": ch.name,
                    "team": c.team,
                    "priority": self.prio_names[c.prio],
                    "region": c.region,
                    "customer_id": c.customer_id,
                    "segment": c.segment,
                    "customer_value": c.customer_value,
                },
                _FX_NONE,
            )
        ]
        agent = rng.choice(self.agents[c.team])
        human = (
            {"agent_id": agent, "author": "human"}
            if ch.style in ("ms", "s")
            else {"agent_id": agent}
        )
        t_cycle = t0
        for cycle in range(_MAX_CYCLES):
            # The customer's opening message: with the open for chat-like channels.
            t_msg = t_cycle + (rng.randrange(0, 800_000) if ch.precision < _SEC else 0)
            items.append((t_msg, _CUSTOMER, None, _FX_NONE))
            extra_exchanges = int(math.log(1.0 - rng.random()) / math.log(ch.q)) if ch.q > 0 else 0
            n = 1 + (extra_exchanges if cycle == 0 else extra_exchanges // 2)
            reassign_at = -1
            if cycle == 0 and rng.random() < p.reassignment_probability and len(p.teams) > 1:
                reassign_at = 0 if n == 1 or rng.random() < 0.7 else rng.randrange(1, n)
            wait_start = t_cycle
            first_msg = t_last = t_msg
            for i in range(n):
                if i > 0:
                    t_c = t_last + draw(ch.think)
                    items.append((t_c, _CUSTOMER, None, _FX_NONE))
                    wait_start = first_msg = t_last = t_c
                wait_items: list[tuple[int, str, dict[str, Any] | None, int]] = []
                assign_fields: dict[str, Any] | None = None
                if i == reassign_at:
                    others = [x for x in p.teams if x != c.team]
                    c.team = rng.choice(others)
                    agent = rng.choice(self.agents[c.team])
                    human = {**human, "agent_id": agent}
                    assign_fields = {"team": c.team}
                    if rng.random() < p.escalation_probability:
                        higher = self._escalate(self.prio_names[c.prio])
                        if higher is not None:
                            c.prio = self.prio_index[higher]
                            assign_fields["priority"] = higher
                kpi = "frt" if i == 0 else "reply_time"
                base = draw(ch.frt if i == 0 else ch.reply, self.prio_factor[c.prio])
                t_reply = wait_start + base
                if book.has(kpi):
                    t_reply = book.stretch(kpi, wait_start, t_reply, c.team, ch.name)
                t_reply = max(t_reply, t_last + 1_000)
                if i == 0 and ch.bots and rng.random() < p.bot_reply_probability:
                    t_bot = t_msg + draw((math.log(2 * _SEC), 0.5))
                    if t_bot < t_reply:
                        wait_items.append(
                            (t_bot, _AGENT, {"agent_id": "bot-assist", "author": "bot"}, 0)
                        )
                if assign_fields is not None:
                    t_assign = wait_start + int((t_reply - wait_start) * rng.uniform(0.2, 0.7))
                    wait_items.append(
                        (min(max(t_assign, first_msg), t_reply), _ASSIGNED, assign_fields, _FX_TEAM)
                    )
                if rng.random() < ch.extra_p:
                    for _ in range(1 if rng.random() < 0.7 else 2):
                        t_x = first_msg + int((t_reply - first_msg) * rng.random())
                        wait_items.append((t_x, _CUSTOMER, None, _FX_NONE))
                wait_items.sort(key=lambda item: item[0])
                effect = _FX_NONE
                if i == 0 and t_reply - wait_start > _SLA_US[self.prio_names[c.prio]]:
                    effect = _FX_BREACH
                wait_items.append((t_reply, _AGENT, human, effect))
                items.extend(wait_items)
                t_last = t_reply
                yield from flush(items)
                items = []
            if rng.random() < p.thanks_probability:
                # "Thanks!" after the last reply: opens a wait the resolve discards.
                t_last += draw(ch.think, 0.5)
                items.append((t_last, _CUSTOMER, None, _FX_NONE))
            planned = t_cycle + draw(
                ch.resolution, math.sqrt(self.prio_factor[c.prio]) * (1.0 if cycle == 0 else 0.5)
            )
            t_res = max(planned, t_last + draw(ch.close))
            if book.has("resolution_time"):
                t_res = max(
                    book.stretch("resolution_time", t0, t_res, c.team, ch.name), t_last + 1_000
                )
            p_res = p.resolve_probability
            if book.has("resolution_rate"):
                f = book.value_at("resolution_rate", t_res, c.team, ch.name)
                if f is not None:
                    p_res = min(1.0, p_res * f)
            if rng.random() >= p_res:
                break  # left open: the backlog grows
            items.append((t_res, _RESOLVED, None, _FX_NONE))
            for kind, rate, mu, sigma in self.survey_plan:
                if rng.random() < rate:
                    delay = min(_SURVEY_CAP, int(exp(mu + sigma * gauss(0.0, 1.0))))
                    seq += 1
                    heapq.heappush(pending, (t_res + max(1, delay), seq, kind))
            if rng.random() < p.repeat_contact_probability:
                t_back = t_res + draw((math.log(2 * _DAY), 0.8))
                if t_back < min(t_res + _REPEAT_CAP, self.end_us):
                    self._push(t_back, _FOLLOWUP, c)
            if cycle + 1 >= _MAX_CYCLES or rng.random() >= p.reopen_probability:
                break
            t_cycle = t_res + min(_REOPEN_CAP, draw((math.log(20 * _HOUR), 1.0)))
            items.append((t_cycle, _REOPENED, None, _FX_REOPEN))
        yield from flush(items)
        while pending:
            ts, _, kind = heapq.heappop(pending)
            yield payload(ts, kind, self._survey_fields(c, ts, kind))

    def _escalate(self, name: str) -> str | None:
        i = _PRIORITY_ORDER.index(name)
        for higher in _PRIORITY_ORDER[i + 1 :]:
            if higher in self.prio_index:
                return higher
        return None

    # ------------------------------------------------------------------- stream

    def run(self) -> Iterator[SimEvent]:
        p = self.p
        conv = self.conv_heap
        out: list[tuple[Any, ...]] = []  # (arrival, seq, kind, occ, key, etype, data, reason)
        held: dict[str, int] = {}  # conversation -> arrival of its latest delayed event
        frng = self.frng
        heappush, heappop = heapq.heappush, heapq.heappop
        stop = self.stop_us
        late_rate = p.late_rate
        late_lo, late_hi = self.late_log
        extra_p = self.extra_p
        out_seq, conv_seq = self.out_seq, self.seq
        n_valid = n_delayed = 0
        epoch = _EPOCH
        us = timedelta(microseconds=1)
        if self.lam_per_us > 0:
            first = self.start_us + max(1, int(self.arng.expovariate(1.0) / self.lam_per_us))
            if first < self.end_us:
                self._push(first, _ARRIVAL, None)

        while True:
            # Release every message that no future stage-1 event can precede.
            t = conv[0][0] if conv else stop
            limit = t if t < stop else stop - 1
            while out and out[0][0] <= limit:
                arrival, _, kind, occ, key, etype, data, reason = heappop(out)
                occ_dt = epoch + occ * us
                arr_dt = occ_dt if arrival == occ else epoch + arrival * us
                if kind == 0:
                    if held and held.get(key) == arrival:
                        del held[key]
                    value = _dumps(data).encode()
                    yield SimEvent(key, value, occ_dt, "valid", arr_dt, etype)
                    if extra_p and frng.random() < extra_p:
                        self._inject(out, frng, arrival, occ, key, etype, data, value)
                else:
                    yield SimEvent(
                        key, data, occ_dt, "malformed" if kind == 2 else "duplicate",
                        arr_dt, etype, reason,
                    )  # fmt: skip
            if t >= stop:
                return
            _, _, gen, data = heappop(conv)
            if gen is _ARRIVAL:
                self._arrival(t)
                continue
            if gen is _FOLLOWUP:
                self._followup(t, data)
                continue
            key = data["conversation_id"]
            arrival = t
            if late_rate:
                # Events queued behind a late one are late too; holding back new late
                # events while the realised share is above the rate keeps it at the rate.
                n_valid += 1
                if n_delayed <= late_rate * n_valid and frng.random() < late_rate:
                    arrival = t + int(math.exp(frng.uniform(late_lo, late_hi)))
                if held:
                    h = held.get(key)
                    if h is not None and h > arrival:
                        arrival = h
                if arrival > t:
                    held[key] = arrival
                    n_delayed += 1
            heappush(out, (arrival, next(out_seq), 0, t, key, data["type"], data, None))
            nxt = next(gen, None)
            if nxt is not None:
                heappush(conv, (nxt[0], next(conv_seq), gen, nxt[1]))

    def _inject(
        self,
        out: list[tuple[Any, ...]],
        frng: random.Random,
        arrival: int,
        occ: int,
        key: str,
        etype: str,
        data: dict[str, Any],
        value: bytes,
    ) -> None:
        """Extra messages after a valid one: a geometric number, so that the fractions of
        malformed and duplicate messages among *all* emitted messages match the rates."""
        dup_lo, dup_hi = self.dup_log
        while True:
            if frng.random() < self.malformed_share:
                broken = dict(data)
                broken["event_id"] = self._event_id(frng)
                raw = _dumps(broken).encode()
                value_bad, reason = malformed(frng, broken, raw)
                when = arrival + frng.randrange(0, 2 * _SEC)
                heapq.heappush(
                    out, (when, next(self.out_seq), 2, occ, key, etype, value_bad, reason)
                )
            else:
                when = arrival + int(math.exp(frng.uniform(dup_lo, dup_hi)))
                heapq.heappush(out, (when, next(self.out_seq), 1, occ, key, etype, value, None))
            if frng.random() >= self.extra_p:
                break


def simulate(params: SimulationParams | None = None) -> Iterator[SimEvent]:
    """Stream the events of ``params`` in emission (arrival) order.

    Parameters are validated when the dataclass is built; the stream itself is lazy, so
    ``itertools.islice(simulate(p), 1000)`` of a 30-day history returns at once.
    """
    return _Simulation(params if params is not None else SimulationParams()).run()


def rate_for_events_per_second(eps: float, params: SimulationParams | None = None) -> float:
    """The ``conversations_per_hour`` (peak rate) whose weekly mean is ``eps`` messages/s.

    mean messages/s = peak/h x mean season factor (~0.33; 1 without seasonality)
    x repeat-contact boost x MEAN_EVENTS_PER_CONVERSATION / (1 - fault rates) / 3600.
    Approximate: the events-per-conversation figure is measured for the default mix, and
    short windows follow the daily curve rather than the weekly mean. Pass the params the
    rate is for: without them seasonality is assumed on, so a flat (seasonality=False)
    run would get ~3x too few events. With params built first:
    ``replace(params, conversations_per_hour=rate_for_events_per_second(eps, params))``.
    """
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    p = params if params is not None else SimulationParams()
    season = mean_season_factor(week_table(p.weekend_factors)) if p.seasonality else 1.0
    boost = 1.0 / (1.0 - p.repeat_contact_probability * p.resolve_probability)
    valid_share = 1.0 - p.malformed_rate - p.duplicate_rate
    per_conversation = MEAN_EVENTS_PER_CONVERSATION / valid_share
    return eps * 3600.0 / (season * boost * per_conversation)


class Summary:
    """Running counts for the CLI's final report (feed it events as they are produced)."""

    __slots__ = (
        "_first",
        "_last",
        "delayed",
        "delayed_over_10min",
        "kinds",
        "reasons",
        "total",
        "types",
    )

    def __init__(self) -> None:
        self.total = 0
        self.kinds: dict[str, int] = dict.fromkeys(KINDS, 0)
        self.types: dict[str, int] = {}
        self.reasons: dict[str, int] = {}
        self.delayed = 0
        self.delayed_over_10min = 0
        self._first: datetime | None = None
        self._last: datetime | None = None

    def add(self, event: SimEvent) -> None:
        self.total += 1
        self.kinds[event.kind] = self.kinds.get(event.kind, 0) + 1
        if event.kind == "valid":
            self.types[event.event_type] = self.types.get(event.event_type, 0) + 1
            if event.arrival > event.occurred_at:
                self.delayed += 1
                if event.arrival - event.occurred_at > timedelta(minutes=10):
                    self.delayed_over_10min += 1
        elif event.reason is not None:
            self.reasons[event.reason] = self.reasons.get(event.reason, 0) + 1
        if self._first is None:
            self._first = event.arrival
        self._last = event.arrival

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable counts, keys sorted."""
        return {
            "total": self.total,
            "kinds": dict(sorted(self.kinds.items())),
            "types": dict(sorted(self.types.items())),
            "conversations": self.types.get(_OPENED, 0),
            "reasons": dict(sorted(self.reasons.items())),
            "delayed": self.delayed,
            "delayed_over_10min": self.delayed_over_10min,
            "first_arrival": self._first.isoformat() if self._first else None,
            "last_arrival": self._last.isoformat() if self._last else None,
        }


def summarize(events: Iterable[SimEvent]) -> dict[str, Any]:
    """Counts by kind, by valid event type and by dead-letter reason, plus lateness."""
    summary = Summary()
    for event in events:
        summary.add(event)
    return summary.to_dict()
