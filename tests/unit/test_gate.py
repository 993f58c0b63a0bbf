"""PartitionGate against "Precise rules / Duplicates and lateness" and state lifetime.

A tiny driver plays the compute role: bytes -> parse_event (else dead letter) -> gate ->
store the state of accepted events, exactly as ``streams.compute`` wires them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pytest

from pipeline.core.errors import InvalidEvent
from pipeline.core.events import parse_event
from streams.conversation import Contribution, ConversationState
from streams.gate import PartitionGate, Verdict

US = 1_000_000
DAY_US = 86_400 * US
T0 = 1_710_072_000 * US  # 2024-03-10T12:00:00Z
SLA = {"urgent": 300 * US, "high": 900 * US, "normal": 3600 * US, "low": 14400 * US}


def stamp(us: int) -> str:
    """RFC 3339 UTC text of epoch microseconds."""
    seconds, micros = divmod(us, US)
    days, rest = divmod(seconds, 86_400)
    d = date(1970, 1, 1) + timedelta(days=days)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"{d.isoformat()}T{h:02d}:{m:02d}:{s:02d}.{micros:06d}Z"


def message(
    event_id: str,
    at_us: int,
    *,
    etype: str = "message.customer",
    conversation: str = "c1",
    **fields: Any,
) -> bytes:
    obj: dict[str, Any] = {
        "event_id": event_id,
        "type": etype,
        "occurred_at": stamp(at_us),
        "conversation_id": conversation,
        "schema_version": 1,
    }
    if etype == "conversation.opened":
        obj.update(channel="chat", team="t1")
    obj.update(fields)
    return json.dumps(obj).encode()


@dataclass
class Compute:
    """One partition of the compute role: a gate and the conversation table."""

    gate: PartitionGate = field(
        default_factory=lambda: PartitionGate(
            allowed_lateness_us=600 * US, retention_us=7 * DAY_US, sla_us=SLA
        )
    )
    table: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_offset: int = 0

    def feed(self, raw: bytes, offset: int | None = None) -> tuple[str, Contribution | None]:
        """Verdict (or ``dead:<reason>``) and contribution of one message."""
        if offset is None:
            offset = self.next_offset
        self.next_offset = max(self.next_offset, offset + 1)
        try:
            event = parse_event(raw)
        except InvalidEvent as bad:
            return f"dead:{bad.reason}", None
        stored = self.table.get(event.conversation_id)
        state = ConversationState.from_json(stored) if stored is not None else None
        outcome = self.gate.decide(state, event, offset)
        if outcome.verdict is Verdict.ACCEPTED:
            assert outcome.state is not None
            self.table[event.conversation_id] = outcome.state.to_json()
        return outcome.verdict.value, outcome.contribution

    def verdict(self, raw: bytes, offset: int | None = None) -> str:
        return self.feed(raw, offset)[0]


# ---------------------------------------------------------------------------------------------
# Duplicates
# ---------------------------------------------------------------------------------------------


def test_duplicate_event_id_is_ignored() -> None:
    c = Compute()
    assert c.verdict(message("e1", T0, etype="conversation.opened")) == "accepted"
    before = dict(c.table)
    verdict, contribution = c.feed(message("e1", T0, etype="conversation.opened"))
    assert (verdict, contribution) == ("duplicate", None)
    assert c.table == before


def test_first_wins_even_if_the_copy_differs() -> None:
    c = Compute()
    c.verdict(message("e1", T0, etype="conversation.opened"))
    before = json.dumps(c.table, sort_keys=True)
    differing = message("e1", T0 + 60 * US, etype="conversation.resolved", team="other")
    assert c.verdict(differing) == "duplicate"
    assert json.dumps(c.table, sort_keys=True) == before


def test_same_event_id_in_another_conversation_is_not_a_duplicate() -> None:
    c = Compute()
    assert c.verdict(message("e1", T0, conversation="c1")) == "accepted"
    assert c.verdict(message("e1", T0, conversation="c2")) == "accepted"


def test_invalid_events_claim_no_id() -> None:
    c = Compute()
    assert c.verdict(message("e1", T0, schema_version=2)) == "dead:invalid_value:schema_version"
    assert c.verdict(message("e1", T0, etype="survey.csat", score=9)) == "dead:invalid_value:score"
    assert c.verdict(message("e1", T0)) == "accepted"


def test_an_invalid_copy_is_a_dead_letter_not_a_duplicate() -> None:
    # Order of checks: validate, then de-duplicate.
    c = Compute()
    c.verdict(message("e1", T0))
    assert c.verdict(message("e1", T0, priority="URGENT")) == "dead:invalid_value:priority"


def test_late_events_claim_no_id() -> None:
    c = Compute()
    c.verdict(message("e0", T0 + 3600 * US, conversation="other"))
    assert c.verdict(message("e1", T0)) == "late"
    assert c.verdict(message("e1", T0 + 3500 * US)) == "accepted"


def test_a_late_duplicate_is_a_duplicate() -> None:
    # Order of checks: de-duplicate, then lateness.
    c = Compute()
    c.verdict(message("e1", T0))
    c.verdict(message("e2", T0 + 3600 * US, conversation="other"))
    assert c.verdict(message("e1", T0)) == "duplicate"


def test_a_duplicate_does_not_move_the_watermark() -> None:
    c = Compute()
    c.verdict(message("e1", T0 + 1000 * US))
    assert c.verdict(message("e1", T0 + 9000 * US)) == "duplicate"
    # 500 s behind the highest *accepted* time: on time.
    assert c.verdict(message("e2", T0 + 500 * US)) == "accepted"
    assert c.gate.watermark_us == T0 + 1000 * US


# ---------------------------------------------------------------------------------------------
# Lateness
# ---------------------------------------------------------------------------------------------


def test_the_first_event_of_a_partition_is_never_late() -> None:
    c = Compute()
    assert c.verdict(message("e1", 0)) == "accepted"


@pytest.mark.parametrize(
    ("behind_us", "verdict"),
    [
        (0, "accepted"),
        (600 * US - 1, "accepted"),
        (600 * US, "accepted"),  # exactly 600 s behind: not late (strictly more is late)
        (600 * US + 1, "late"),
        (3600 * US, "late"),
    ],
)
def test_late_is_strictly_more_than_600_s_behind(behind_us: int, verdict: str) -> None:
    c = Compute()
    c.verdict(message("e0", T0, conversation="other"))
    assert c.verdict(message("e1", T0 - behind_us)) == verdict


def test_late_is_measured_from_the_highest_accepted_time_not_the_last() -> None:
    c = Compute()
    c.verdict(message("e1", T0 + 1000 * US, conversation="a"))
    assert c.verdict(message("e2", T0 + 500 * US, conversation="b")) == "accepted"
    # 110 s behind the last accepted event, 610 s behind the highest: late.
    assert c.verdict(message("e3", T0 + 390 * US, conversation="c")) == "late"


def test_late_events_change_nothing() -> None:
    c = Compute()
    c.verdict(message("e1", T0 + 3600 * US))
    before = json.dumps(c.table, sort_keys=True)
    verdict, contribution = c.feed(message("e2", T0, etype="conversation.resolved"))
    assert (verdict, contribution) == ("late", None)
    assert json.dumps(c.table, sort_keys=True) == before
    assert c.gate.watermark_us == T0 + 3600 * US


def test_lateness_is_reported() -> None:
    c = Compute()
    c.verdict(message("e1", T0 + 3600 * US))
    event = parse_event(message("e2", T0))
    outcome = c.gate.decide(None, event, 99)
    assert outcome.verdict is Verdict.LATE
    assert outcome.lateness_us == 3600 * US


def test_allowed_lateness_is_configurable() -> None:
    gate = PartitionGate(allowed_lateness_us=60 * US, retention_us=7 * DAY_US, sla_us=SLA)
    c = Compute(gate=gate)
    c.verdict(message("e0", T0, conversation="other"))
    assert c.verdict(message("e1", T0 - 60 * US)) == "accepted"
    assert c.verdict(message("e2", T0 - 61 * US)) == "late"


# ---------------------------------------------------------------------------------------------
# Replayed offsets
# ---------------------------------------------------------------------------------------------


def test_replayed_offsets_are_no_ops() -> None:
    c = Compute()
    assert c.verdict(message("e1", T0, etype="conversation.opened"), offset=5) == "accepted"
    assert c.verdict(message("e2", T0 + 10 * US), offset=6) == "accepted"
    table = json.dumps(c.table, sort_keys=True)
    watermark = c.gate.watermark_us
    # The same offsets again (a restart before the offset commit), even with other content.
    for offset, raw in [
        (5, message("e1", T0, etype="conversation.opened")),
        (6, message("e2", T0 + 10 * US)),
        (6, message("e-new", T0 + 20 * US)),
        (3, message("e-older", T0 + 30 * US, etype="conversation.resolved")),
    ]:
        assert c.feed(raw, offset) == ("replayed", None)
    assert json.dumps(c.table, sort_keys=True) == table
    assert c.gate.watermark_us == watermark
    # The next offset is processed normally.
    assert c.verdict(message("e3", T0 + 40 * US), offset=7) == "accepted"


def test_replay_check_comes_before_the_duplicate_check() -> None:
    c = Compute()
    c.verdict(message("e1", T0), offset=10)
    assert c.verdict(message("e1", T0), offset=10) == "replayed"
    assert c.verdict(message("e1", T0), offset=11) == "duplicate"


# ---------------------------------------------------------------------------------------------
# State lifetime
# ---------------------------------------------------------------------------------------------


def test_state_lives_7_days_after_the_conversations_last_event() -> None:
    c = Compute()
    c.verdict(message("e1", T0, etype="conversation.opened"))
    c.verdict(message("x1", T0 + 7 * DAY_US, conversation="other"))
    # Exactly 7 days later the state still lives: the id is still taken.
    copy = message("e1", T0 + 7 * DAY_US)
    assert c.verdict(copy) == "duplicate"
    # A resolve 7 days later still measures from the original open.
    _, contribution = c.feed(message("e2", T0 + 7 * DAY_US, etype="conversation.resolved"))
    assert contribution is not None
    assert contribution.increments["resolution"] == 7 * DAY_US


def test_state_lifetime_is_counted_from_the_last_event_not_the_first() -> None:
    c = Compute()
    c.verdict(message("e1", T0, etype="conversation.opened"))
    c.verdict(message("e2", T0 + 5 * DAY_US))
    c.verdict(message("x1", T0 + 11 * DAY_US, conversation="other"))
    assert c.verdict(message("e1", T0 + 11 * DAY_US)) == "duplicate"


def test_state_expires_after_7_days_of_event_time() -> None:
    # Retention is configured at 7 days: one microsecond more and the conversation starts
    # afresh (its ids and its original open are forgotten).
    c = Compute()
    c.verdict(message("e1", T0, etype="conversation.opened", team="t1", region="eu"))
    c.verdict(message("x1", T0 + 7 * DAY_US + 1, conversation="other"))
    verdict, contribution = c.feed(message("e1", T0 + 7 * DAY_US, etype="conversation.resolved"))
    assert verdict == "accepted"
    assert contribution is not None
    assert "resolution" not in contribution.increments
    assert (contribution.team, contribution.region) == ("unknown", "unknown")


def test_expiry_follows_the_partition_event_time_not_the_arrival() -> None:
    c = Compute()
    c.verdict(message("e1", T0))
    for i in range(50):  # many messages, little event time
        c.verdict(message(f"x{i}", T0 + i * US, conversation=f"o{i}"))
    assert c.verdict(message("e1", T0 + 60 * US)) == "duplicate"
