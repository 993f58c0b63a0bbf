"""One conversation's script: the lazy generator of its events in time order.

A mixin of the simulation (:class:`pipeline.simulator.generator._Simulation`), which owns
the random streams, incidents and profiles this script reads.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from typing import Any

from pipeline.simulator.customers import (
    CHURN_REOPEN_PROBABILITY,
    CHURN_REPEAT_PROBABILITY,
    CHURN_SURVEY_RATE,
)
from pipeline.simulator.model import (
    _AGENT,
    _ASSIGNED,
    _CUSTOMER,
    _DAY,
    _FOLLOWUP,
    _FX_BREACH,
    _FX_NONE,
    _FX_REOPEN,
    _FX_TEAM,
    _HOUR,
    _MAX_CYCLES,
    _MAX_WAIT,
    _OPENED,
    _REOPEN_CAP,
    _REOPENED,
    _REPEAT_CAP,
    _RESOLVED,
    _SEC,
    _SLA_US,
    _SURVEY_CAP,
    _UUID_CLEAR,
    _UUID_SET,
    _Conv,
)


class ConversationFlow:
    """``_conversation``: events of one conversation, merged with its pending surveys."""

    p: Any
    rng: Any
    drift: Any

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
                scale = self.prio_factor[c.prio]
                if self.drift is not None:
                    scale *= self.drift.speed(wait_start, c.team)
                base = draw(ch.frt if i == 0 else ch.reply, scale)
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
                if rng.random() < (max(rate, CHURN_SURVEY_RATE) if c.churn else rate):
                    delay = min(_SURVEY_CAP, int(exp(mu + sigma * gauss(0.0, 1.0))))
                    seq += 1
                    heapq.heappush(pending, (t_res + max(1, delay), seq, kind))
            repeat_p = CHURN_REPEAT_PROBABILITY if c.churn else p.repeat_contact_probability
            if rng.random() < repeat_p:
                t_back = t_res + draw((math.log(2 * _DAY), 0.8))
                if t_back < min(t_res + _REPEAT_CAP, self.end_us):
                    self._push(t_back, _FOLLOWUP, c)
            reopen_p = CHURN_REOPEN_PROBABILITY if c.churn else p.reopen_probability
            if cycle + 1 >= _MAX_CYCLES or rng.random() >= reopen_p:
                break
            t_cycle = t_res + min(_REOPEN_CAP, draw((math.log(20 * _HOUR), 1.0)))
            items.append((t_cycle, _REOPENED, None, _FX_REOPEN))
        yield from flush(items)
        while pending:
            ts, _, kind = heapq.heappop(pending)
            yield payload(ts, kind, self._survey_fields(c, ts, kind))
