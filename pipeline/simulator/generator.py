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
import math
import random
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from pipeline.simulator.customers import (
    CHURN_CES,
    CHURN_CSAT,
    CHURN_NPS,
    CHURN_URGENT_PROBABILITY,
    churn_prone,
    low_answer_comment,
)
from pipeline.simulator.drift import Drift
from pipeline.simulator.faults import malformed
from pipeline.simulator.incidents import BREACH_CSAT_PENALTY, IncidentBook, to_us
from pipeline.simulator.lifecycle import ConversationFlow
from pipeline.simulator.model import (
    _ARRIVAL,
    _CES_EASY,
    _CES_HARD,
    _CSAT_LOW,
    _CSAT_REOPEN_PENALTY,
    _EPOCH,
    _FOLLOWUP,
    _HOUR,
    _MIN,
    _NPS_DETRACTOR,
    _PRIORITY_ORDER,
    _SEC,
    _STD_NORMAL,
    _SURVEY_DELAYS,
    _UUID_CLEAR,
    _UUID_SET,
    KINDS,
    MEAN_EVENTS_PER_CONVERSATION,
    SimEvent,
    _Channel,
    _Conv,
    _cumulative,
    _dumps,
    _pick,
    _pick_score,
    _splitmix,
    _TimeFormatter,
)
from pipeline.simulator.params import SimulationParams
from pipeline.simulator.seasonality import mean_season_factor, week_table
from pipeline.simulator.summary import Summary, summarize

__all__ = [
    "KINDS",
    "MEAN_EVENTS_PER_CONVERSATION",
    "SimEvent",
    "Summary",
    "rate_for_events_per_second",
    "simulate",
    "summarize",
]


class _Simulation(ConversationFlow):
    def __init__(
        self, params: SimulationParams, observer: Callable[[int, dict[str, Any]], None] | None
    ) -> None:
        p = params
        self.observer = observer
        self.p = p
        seed = p.seed
        self.arng = random.Random(f"cxpulse-arrivals:{seed}")
        self.rng = random.Random(f"cxpulse-content:{seed}")
        self.frng = random.Random(f"cxpulse-faults:{seed}")
        self.book = IncidentBook(p.incidents)
        self.drift = Drift(p.drift, seed, p.teams, to_us(p.start)) if p.drift else None
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
            (
                kind,
                rate,
                math.log(_SURVEY_DELAYS[kind].median_s * p.survey_delay_scale * _SEC),
                _SURVEY_DELAYS[kind].sigma,
            )
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
        c.churn = churn_prone(p.seed, seg_i, region_i, idx, p.churn_prone_share)
        c.breached = c.reopened = False
        return c

    def _start(self, c: _Conv) -> None:
        if c.churn and self.rng.random() < CHURN_URGENT_PROBABILITY and "urgent" in self.prio_index:
            c.prio = self.prio_index["urgent"]
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
        c.churn = prev.churn
        self._start(c)

    def _survey_fields(self, c: _Conv, t: int, kind: str) -> dict[str, Any]:
        """The answer to a survey due at ``t``, given the conversation as it stands then."""
        rng = self.rng
        p = self.p
        book = self.book
        metric = kind[7:]
        target = book.value_at(metric, t, c.team_emitted, c.ch.name) if book.has(metric) else None
        if kind == "survey.csat":
            if target is None and c.churn:
                sat = -1.0  # never satisfied
            elif target is not None:
                sat = target / 100.0
            else:
                sat = p.csat_satisfied_share
                if self.drift is not None:
                    sat = self.drift.share(sat, t, c.team_emitted)
                if c.breached:
                    sat *= 1 - BREACH_CSAT_PENALTY
                if c.reopened:
                    sat *= 1 - _CSAT_REOPEN_PENALTY
            if rng.random() < sat:
                score = 5 if rng.random() < 0.7 else 4
            else:
                score = _pick_score(rng, CHURN_CSAT if c.churn and target is None else _CSAT_LOW)
        elif kind == "survey.nps":
            if target is not None:
                x = target / 100.0
                passive = min(0.30, 1.0 - abs(x))
                promoter, detractor = (1 - passive + x) / 2, (1 - passive - x) / 2
            elif c.churn:
                promoter, detractor = 0.0, 1.0
            else:
                promoter, detractor = p.nps_promoter_share, p.nps_detractor_share
                if self.drift is not None:
                    moved = self.drift.share(promoter, t, c.team_emitted)
                    detractor *= (1 - moved) / (1 - promoter) if promoter < 1 else 1.0
                    promoter = moved
            u = rng.random()
            if u < promoter:
                score = 10 if rng.random() < 0.55 else 9
            elif u < promoter + detractor:
                score = _pick_score(
                    rng, CHURN_NPS if c.churn and target is None else _NPS_DETRACTOR
                )
            else:
                score = 8 if rng.random() < 0.5 else 7
        elif target is None and c.churn:
            score = _pick_score(rng, CHURN_CES)
        else:
            easy = target / 100.0 if target is not None else p.ces_easy_share
            if target is None and self.drift is not None:
                easy = self.drift.share(easy, t, c.team_emitted)
            score = _pick_score(rng, _CES_EASY if rng.random() < easy else _CES_HARD)
        fields: dict[str, Any] = {"customer_id": c.customer_id, "score": score}
        comment = low_answer_comment(rng, kind, score)
        if comment is not None:
            fields["comment"] = comment
        return fields

    # ------------------------------------------------------------ conversations

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
                    if self.observer is not None:
                        self.observer(occ, data)
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


def simulate(
    params: SimulationParams | None = None,
    observer: Callable[[int, dict[str, Any]], None] | None = None,
) -> Iterator[SimEvent]:
    """Stream the events of ``params`` in emission (arrival) order.

    Parameters are validated when the dataclass is built; the stream itself is lazy, so
    ``itertools.islice(simulate(p), 1000)`` of a 30-day history returns at once.
    ``observer(event_time_us, payload)`` sees every valid event as it is emitted (for
    ground truth, e.g. :class:`pipeline.simulator.customers.CustomerLedger`).
    """
    return _Simulation(params if params is not None else SimulationParams(), observer).run()


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
