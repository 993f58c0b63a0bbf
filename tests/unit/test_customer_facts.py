"""Customer facts and feedback follow-ups: what the compute role emits per accepted event."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.config import load_settings
from pipeline.core.events import parse_event
from sinks.clickhouse.customer_rows import FOLLOWUP_COLUMNS, followup_row
from streams.conversation import ConversationState
from streams.customers.facts import (
    CustomerFact,
    FactError,
    customer_fact,
    decode_facts,
    encode_facts,
    group_by_customer,
)
from streams.customers.followups import FollowupRules, decode_followup, followup_record
from streams.gate import PartitionGate, Verdict

SLA = {"urgent": 300_000_000, "high": 900_000_000, "normal": 3_600_000_000, "low": 14_400_000_000}


def event(etype: str, seconds: int, **fields: Any) -> bytes:
    obj = {
        "event_id": f"e-{etype}-{seconds}-{len(fields)}",
        "type": etype,
        "occurred_at": f"2026-03-02T10:{seconds // 60:02d}:{seconds % 60:02d}Z",
        "conversation_id": "c1",
        "schema_version": 1,
        **fields,
    }
    return json.dumps(obj).encode()


def feed(*raws: bytes) -> list[tuple[Any, ConversationState, Any]]:
    """Events of one conversation through the gate; (event, state, contribution) each."""
    gate = PartitionGate(
        allowed_lateness_us=600_000_000, retention_us=7 * 86_400_000_000, sla_us=SLA
    )
    state = None
    out = []
    for offset, raw in enumerate(raws):
        ev = parse_event(raw)
        outcome = gate.decide(state, ev, offset)
        assert outcome.verdict is Verdict.ACCEPTED
        state = outcome.state
        snapshot = ConversationState.from_json(state.to_json())
        out.append((ev, snapshot, outcome.contribution))
    return out


OPENED = {"channel": "chat", "team": "billing"}


def test_no_fact_without_a_customer() -> None:
    ((ev, state, contrib),) = feed(event("conversation.opened", 0, **OPENED))
    assert customer_fact(ev, state, contrib, (0, 0, 1)) is None


def test_facts_carry_what_the_rules_read() -> None:
    steps = feed(
        event(
            "conversation.opened",
            0,
            **OPENED,
            priority="urgent",
            customer_id="cus-1",
            segment="smb",
            customer_value=120,
        ),
        event("message.customer", 5),
        event("message.agent", 400, agent_id="a1"),  # FRT 400 s > 300 s urgent target
        event("message.customer", 410),
        event("message.agent", 420, agent_id="a1"),  # a reply: nothing for customers
        event("conversation.assigned", 430, team="tech"),  # a move: nothing either
        event("conversation.resolved", 500),
        event("survey.csat", 600, score=2, customer_id="cus-1"),
    )
    facts = [customer_fact(ev, st_, c, (3, i, 1000 + i)) for i, (ev, st_, c) in enumerate(steps)]
    kinds = [None if f is None else f.kind for f in facts]
    assert kinds == ["opened", None, "message", None, None, None, "resolved", "csat"]
    opened, breach, resolved, csat = (f for f in facts if f is not None)
    assert (opened.carried_segment, opened.carried_value, opened.segment) == ("smb", 120.0, "smb")
    assert breach.breach and breach.priority == "urgent" and breach.team == "billing"
    assert breach.carried_segment is None and breach.carried_value is None
    assert resolved.resolved and not opened.resolved
    assert (csat.score, csat.team, csat.customer_id) == (2, "tech", "cus-1")
    assert (csat.partition, csat.offset, csat.timestamp_ms) == (3, 7, 1007)
    assert csat.occurred_us == parse_event(event("survey.csat", 600, score=2)).occurred_us


def test_a_message_carrying_a_customer_field_is_a_fact() -> None:
    steps = feed(
        event("conversation.opened", 0, **OPENED, customer_id="cus-1"),
        event("message.customer", 5, customer_value=99.5),
    )
    ev, state, contrib = steps[1]
    fact = customer_fact(ev, state, contrib, (0, 1, 0))
    assert fact is not None and fact.kind == "message" and fact.carried_value == 99.5


facts_strategy = st.builds(
    CustomerFact,
    customer_id=st.text(min_size=1, max_size=8),
    conversation_id=st.text(min_size=1, max_size=8),
    kind=st.sampled_from(["opened", "reopened", "resolved", "csat", "nps", "ces", "message"]),
    occurred_us=st.integers(-(2**53), 2**53),
    team=st.text(max_size=5),
    segment=st.text(max_size=5),
    priority=st.sampled_from(["low", "normal", "high", "urgent"]),
    resolved=st.booleans(),
    breach=st.booleans(),
    score=st.none() | st.integers(0, 10),
    carried_segment=st.none() | st.text(max_size=5),
    carried_value=st.none() | st.floats(min_value=0, max_value=1e12, allow_nan=False),
    partition=st.integers(0, 1023),
    offset=st.integers(0, 2**62),
    timestamp_ms=st.integers(0, 2**45),
)


@given(st.lists(facts_strategy, min_size=1, max_size=5))
def test_encoding_round_trips(facts: list[CustomerFact]) -> None:
    assert decode_facts(encode_facts(facts)) == facts


def test_group_by_customer_makes_one_record_per_customer() -> None:
    a = CustomerFact("a", "c", "csat", 1, "t", "s", "normal", True, False, 2, None, None, 0, 1, 5)
    b = CustomerFact("b", "c", "csat", 1, "t", "s", "normal", True, False, 2, None, None, 0, 2, 5)
    records = group_by_customer([a, b, a])
    assert [k for k, _ in records] == [b"a", b"b"]
    assert decode_facts(records[0][1]) == [a, a]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"\xff", "not JSON"),
        (b"{}", "unknown customer-facts version"),
        (b"[2, []]", "unknown customer-facts version 2"),
        (b'[1, {"a": 1}]', "must be an array"),
        (b"[1, [1, 2]]", "15 fields"),
        (b'[1, ["a", "c", "nope", 1, "", "", "", 0, 0, null, null, null, 0, 0, 0]]', "identity"),
    ],
)
def test_bad_fact_records_are_refused_with_a_reason(value: bytes, message: str) -> None:
    with pytest.raises(FactError, match=message):
        decode_facts(value)


# ---------------------------------------------------------------------------------------------
# Follow-ups
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("etype", "score", "low"),
    [
        ("survey.csat", 2, True),
        ("survey.csat", 3, False),
        ("survey.nps", 6, True),
        ("survey.nps", 7, False),
        ("survey.ces", 3, True),
        ("survey.ces", 4, False),
    ],
)
def test_low_answers_are_followed_up(etype: str, score: int, low: bool) -> None:
    steps = feed(event("conversation.opened", 0, **OPENED), event(etype, 60, score=score))
    ev, state, _ = steps[1]
    record = followup_record(ev, state, (1, 9, 123))
    assert (record is not None) == low


def test_followup_carries_customer_dimensions_and_every_extra_field() -> None:
    extra = {"comment": "Still broken — third time", "survey": {"id": 7, "tags": ["x"]}}
    steps = feed(
        event(
            "conversation.opened",
            0,
            **OPENED,
            customer_id="cus-9",
            customer_value=1500,
            segment="enterprise",
            region="emea",
        ),
        event("survey.nps", 60, score=0, **extra),
    )
    ev, state, _ = steps[1]
    assert ev.extra == extra
    record = followup_record(ev, state, (2, 41, 1_700_000_000_123))
    assert record is not None
    data = decode_followup(record)
    assert data["extra"] == extra
    assert (data["customer_id"], data["customer_value"], data["segment"]) == (
        "cus-9",
        1500.0,
        "enterprise",
    )
    row = dict(zip(FOLLOWUP_COLUMNS, followup_row(record), strict=True))
    assert (row["conversation_id"], row["event_id"]) == ("c1", ev.event_id)
    assert (row["survey"], row["score"], row["team"], row["region"]) == (
        "nps",
        0,
        "billing",
        "emea",
    )
    assert json.loads(row["extra"]) == extra
    assert (row["source_partition"], row["source_offset"]) == (2, 41)
    assert row["source_time"].timestamp() == pytest.approx(1_700_000_000.123)


def test_followup_without_customer_and_thresholds_from_settings() -> None:
    steps = feed(event("conversation.opened", 0, **OPENED), event("survey.ces", 60, score=4))
    ev, state, _ = steps[1]
    assert followup_record(ev, state, (0, 1, 0)) is None
    rules = FollowupRules.from_settings(load_settings(customers={"followup_ces_max": 4}).customers)
    record = followup_record(ev, state, (0, 1, 0), rules)
    assert record is not None
    assert followup_row(record)[FOLLOWUP_COLUMNS.index("customer_id")] == ""
    assert followup_record(steps[0][0], steps[0][1], (0, 0, 0), rules) is None  # not a survey


def test_unknown_followup_version_is_refused() -> None:
    with pytest.raises(ValueError, match="version 9"):
        decode_followup(b'{"v": 9}')
