"""apply_event against "Response time", "Resolution", "Satisfaction", "Attribution" and
"Precise rules / Conversation state" of shared/kpi-definitions.md: one test per rule.

Times are written as whole seconds after T0 (plus microseconds where it matters); expected
samples are integer microseconds, as the Contribution carries them.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from pipeline.core.events import Event
from streams.conversation import Contribution, ConversationState, apply_event

US = 1_000_000
T0 = 1_710_072_000 * US  # 2024-03-10T12:00:00Z
SLA = {"urgent": 300 * US, "high": 900 * US, "normal": 3600 * US, "low": 14400 * US}
SAMPLE_KEYS = ("frt", "reply", "resolution")

_ids = itertools.count()


def ev(etype: str, at_s: float = 0, *, us: int = 0, **fields: Any) -> Event:
    """An already-validated event at ``T0 + at_s`` seconds (+ ``us`` microseconds)."""
    return Event(
        event_id=f"ev-{next(_ids)}",
        type=etype,
        occurred_us=T0 + round(at_s * US) + us,
        conversation_id="conv-1",
        schema_version=1,
        **fields,
    )


def opened(at_s: float = 0, **fields: Any) -> Event:
    fields.setdefault("team", "billing")
    fields.setdefault("channel", "chat")
    return ev("conversation.opened", at_s, **fields)


def customer(at_s: float, **fields: Any) -> Event:
    return ev("message.customer", at_s, **fields)


def agent(at_s: float, *, author: str | None = "human", **fields: Any) -> Event:
    fields.setdefault("agent_id", "a-1")
    return ev("message.agent", at_s, author=author, **fields)


def bot(at_s: float, **fields: Any) -> Event:
    return agent(at_s, author="bot", **fields)


def resolved(at_s: float, **fields: Any) -> Event:
    return ev("conversation.resolved", at_s, **fields)


def reopened(at_s: float, **fields: Any) -> Event:
    return ev("conversation.reopened", at_s, **fields)


def run(*events: Event, sla: dict[str, int] = SLA) -> list[Contribution]:
    state = ConversationState()
    return [apply_event(state, e, sla) for e in events]


def samples(contributions: list[Contribution]) -> list[tuple[int, str, int]]:
    """(index of the event, sample kind, microseconds) of every time sample."""
    return [
        (i, key, c.increments[key])
        for i, c in enumerate(contributions)
        for key in SAMPLE_KEYS
        if key in c.increments
    ]


def total(contributions: list[Contribution], key: str) -> int:
    return sum(c.increments.get(key, 0) for c in contributions)


# ---------------------------------------------------------------------------------------------
# Response time
# ---------------------------------------------------------------------------------------------


def test_human_reply_closes_the_wait_opened_at_open_as_frt() -> None:
    out = run(opened(0), agent(90))
    assert samples(out) == [(1, "frt", 90 * US)]


def test_an_open_wait_keeps_its_start() -> None:
    # "an open wait keeps its start: the customer has been waiting since then"
    out = run(opened(0), customer(30), customer(60), agent(100), customer(200), customer(250))
    assert samples(out) == [(3, "frt", 100 * US)]
    out = run(opened(0), agent(10), customer(200), customer(250), agent(300))
    assert samples(out) == [(1, "frt", 10 * US), (4, "reply", 100 * US)]


def test_customer_message_opens_a_wait_after_a_reply() -> None:
    out = run(opened(0), agent(10), customer(20), agent(25), customer(40), agent(100))
    assert samples(out) == [(1, "frt", 10 * US), (3, "reply", 5 * US), (5, "reply", 60 * US)]


def test_each_closed_wait_gives_exactly_one_sample() -> None:
    # Human messages without an open wait give no sample.
    out = run(opened(0), agent(10), agent(20), customer(30), agent(40), agent(50))
    assert samples(out) == [(1, "frt", 10 * US), (4, "reply", 10 * US)]
    assert total(out, "messages_agent_human") == 4


def test_bot_messages_never_close_a_wait() -> None:
    out = run(opened(0), bot(5), bot(10), agent(60), customer(70), bot(80), agent(100))
    assert samples(out) == [(3, "frt", 60 * US), (6, "reply", 30 * US)]
    assert total(out, "messages_agent_bot") == 3
    assert total(out, "messages_agent_human") == 2


def test_author_defaults_to_human() -> None:
    out = run(opened(0), agent(42, author=None))
    assert samples(out) == [(1, "frt", 42 * US)]
    assert out[1].increments.get("messages_agent_human") == 1


def test_resolve_discards_an_open_wait_without_a_sample() -> None:
    out = run(opened(0), customer(5), resolved(50), agent(80))
    assert samples(out) == [(2, "resolution", 50 * US)]


def test_first_closed_wait_of_the_cycle_is_frt_even_after_a_resolve() -> None:
    # The cycle started at opened; its first closed wait is the FRT, whenever it comes.
    out = run(opened(0), resolved(10), customer(20), agent(50), customer(60), agent(70))
    assert samples(out) == [
        (1, "resolution", 10 * US),
        (3, "frt", 30 * US),
        (5, "reply", 10 * US),
    ]


def test_reopen_starts_a_cycle_whose_first_closed_wait_is_frt() -> None:
    out = run(opened(0), agent(10), resolved(20), reopened(100), agent(160), customer(170))
    assert [(i, k, v) for i, k, v in samples(out) if k != "resolution"] == [
        (1, "frt", 10 * US),
        (4, "frt", 60 * US),
    ]
    assert total(out, "reopens") == 1


def test_reopen_of_an_unresolved_conversation_counts_and_starts_a_cycle() -> None:
    # The wait opened at `opened` keeps its start; the reopen starts a new cycle.
    out = run(opened(0), agent(10), customer(20), reopened(25), agent(30))
    assert total(out, "reopens") == 1
    assert samples(out) == [(1, "frt", 10 * US), (4, "frt", 10 * US)]


def test_second_opened_counts_and_starts_a_cycle() -> None:
    out = run(opened(0), agent(10), customer(20), opened(30), agent(50), resolved(100))
    assert total(out, "opened") == 2
    # Wait since 20 keeps its start; it is the first closed wait of the new cycle.
    assert samples(out) == [
        (1, "frt", 10 * US),
        (4, "frt", 30 * US),
        (5, "resolution", 100 * US),  # measured from the first opened
    ]


def test_closed_waits_before_any_opened_are_reply_samples() -> None:
    out = run(customer(0), agent(40), customer(50), agent(55), opened(100), agent(130))
    assert samples(out) == [(1, "reply", 40 * US), (3, "reply", 5 * US), (5, "frt", 30 * US)]


def test_reopen_before_any_opened_still_gives_reply_samples() -> None:
    # "Before a conversation's first conversation.opened is seen, closed waits give
    # reply-time samples" (Precise rules / Conversation state).
    out = run(customer(0), agent(10), reopened(20), agent(50))
    assert samples(out) == [(1, "reply", 10 * US), (3, "reply", 30 * US)]


# ---------------------------------------------------------------------------------------------
# FRT SLA
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("priority", "wait_us", "breach"),
    [
        ("normal", 3600 * US, False),  # equal to the target: not a breach
        ("normal", 3600 * US + 1, True),
        ("urgent", 300 * US, False),
        ("urgent", 300 * US + 1, True),
        ("high", 900 * US + 1, True),
        ("low", 14400 * US, False),
        ("low", 14400 * US + 1, True),
        (None, 3600 * US + 1, True),  # default priority normal
        (None, 3600 * US, False),
    ],
)
def test_frt_breach_is_strictly_above_the_target(
    priority: str | None, wait_us: int, breach: bool
) -> None:
    out = run(opened(0, priority=priority), ev("message.agent", us=wait_us, agent_id="a"))
    assert out[1].increments["frt"] == wait_us
    assert out[1].increments.get("frt_breaches", 0) == int(breach)


def test_sla_uses_the_priority_at_the_replying_event() -> None:
    # The reply itself raises the priority: it applies to that reply.
    out = run(opened(0, priority="normal"), agent(301, priority="urgent"))
    assert out[1].increments.get("frt_breaches") == 1
    # Lowered on the reply: the lower priority's (longer) target applies.
    out = run(opened(0, priority="urgent"), agent(301, priority="low"))
    assert out[1].increments.get("frt_breaches", 0) == 0
    # Changed by an event in between.
    out = run(opened(0, priority="low"), customer(10, priority="high"), agent(901))
    assert out[2].increments.get("frt_breaches") == 1


def test_only_frt_samples_count_breaches() -> None:
    out = run(opened(0, priority="urgent"), agent(1), customer(2), agent(100_000))
    assert out[3].increments["reply"] == 99_998 * US
    assert total(out, "frt_breaches") == 0


def test_custom_sla_targets() -> None:
    tight = dict(SLA, normal=60 * US)
    out = run(opened(0), agent(61), sla=tight)
    assert out[1].increments.get("frt_breaches") == 1
    out = run(opened(0), agent(60), sla=tight)
    assert out[1].increments.get("frt_breaches", 0) == 0


# ---------------------------------------------------------------------------------------------
# Durations
# ---------------------------------------------------------------------------------------------


def test_durations_are_exact_integer_microseconds() -> None:
    out = run(opened(0), ev("message.agent", 1, us=500_001, agent_id="a"))
    assert out[1].increments["frt"] == 1_500_001
    assert isinstance(out[1].increments["frt"], int)


def test_durations_below_zero_count_as_zero() -> None:
    out = run(opened(100), agent(50), customer(100), agent(90), resolved(40))
    assert samples(out) == [(1, "frt", 0), (3, "reply", 0), (4, "resolution", 0)]
    assert total(out, "frt_breaches") == 0


# ---------------------------------------------------------------------------------------------
# Resolution
# ---------------------------------------------------------------------------------------------


def test_each_resolve_counts_with_its_own_resolution_time() -> None:
    out = run(opened(0), resolved(100), reopened(200), resolved(500), resolved(700))
    assert total(out, "resolutions") == 3
    assert [s for s in samples(out) if s[1] == "resolution"] == [
        (1, "resolution", 100 * US),
        (3, "resolution", 500 * US),
        (4, "resolution", 700 * US),
    ]
    assert total(out, "reopens") == 1


def test_resolve_before_any_opened_has_no_resolution_time() -> None:
    out = run(customer(0), resolved(10), opened(20), resolved(50))
    assert total(out, "resolutions") == 2
    assert [s for s in samples(out) if s[1] == "resolution"] == [(3, "resolution", 30 * US)]


@pytest.mark.parametrize(("humans", "one_touch"), [(0, 1), (1, 1), (2, 0), (3, 0)])
def test_one_touch_counts_human_agent_messages(humans: int, one_touch: int) -> None:
    events = [opened(0), customer(1)]
    events += [agent(10 + i) for i in range(humans)]
    events += [bot(50), bot(51)]  # bots are not counted
    out = run(*events, resolved(100))
    assert out[-1].increments.get("one_touch_resolutions", 0) == one_touch


def test_one_touch_counts_every_human_message_up_to_the_resolve() -> None:
    out = run(opened(0), agent(1), resolved(2), customer(3), agent(4), resolved(5))
    assert out[2].increments.get("one_touch_resolutions") == 1
    assert out[5].increments.get("one_touch_resolutions", 0) == 0


def test_a_reopened_conversation_is_never_one_touch_again() -> None:
    out = run(opened(0), resolved(1), reopened(2), resolved(3))
    assert out[1].increments.get("one_touch_resolutions") == 1
    assert out[3].increments.get("one_touch_resolutions", 0) == 0


def test_counts_of_opened_reopens_resolutions_messages_and_events() -> None:
    out = run(
        opened(0),
        customer(1),
        agent(2),
        bot(3),
        ev("conversation.assigned", 4, team="t2"),
        resolved(5),
        reopened(6),
        customer(7),
    )
    assert [total(out, k) for k in ("opened", "reopens", "resolutions")] == [1, 1, 1]
    assert total(out, "messages_customer") == 2
    assert total(out, "events") == 8
    assert all(c.increments["events"] == 1 for c in out)


# ---------------------------------------------------------------------------------------------
# Satisfaction
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("etype", "key", "score"),
    [("survey.csat", "csat", 4), ("survey.nps", "nps", 0), ("survey.ces", "ces", 7)],
)
def test_survey_answers_are_samples_of_their_own_minute(etype: str, key: str, score: int) -> None:
    out = run(opened(0), resolved(10), ev(etype, 3600 * 24, score=score))
    assert out[2].increments == {"events": 1, key: score}
    assert out[2].minute == (T0 + 86_400 * US) // (60 * US)


# ---------------------------------------------------------------------------------------------
# Attribution and dimensions
# ---------------------------------------------------------------------------------------------


def dims(c: Contribution) -> tuple[str, str, str, str, str]:
    return (c.team, c.channel, c.region, c.priority, c.segment)


def test_defaults_apply_to_values_never_given() -> None:
    out = run(customer(0))
    assert dims(out[0]) == ("unknown", "unknown", "unknown", "normal", "unknown")


def test_dimensions_set_from_the_event_that_carries_them_included() -> None:
    out = run(
        opened(0, team="t1", channel="chat", region="eu", priority="low", segment="smb"),
        customer(1, region="us"),
        agent(2, team="t2", priority="urgent"),
        ev("conversation.assigned", 3, team="t3"),
        ev("survey.csat", 4, score=5, segment="enterprise", channel="email"),
        resolved(5),
    )
    assert [dims(c) for c in out] == [
        ("t1", "chat", "eu", "low", "smb"),
        ("t1", "chat", "us", "low", "smb"),
        ("t2", "chat", "us", "urgent", "smb"),
        ("t3", "chat", "us", "urgent", "smb"),
        ("t3", "email", "us", "urgent", "enterprise"),
        ("t3", "email", "us", "urgent", "enterprise"),
    ]


def test_absent_values_keep_the_current_value_not_the_default() -> None:
    out = run(customer(0, priority="high", region="apac"), customer(1), resolved(2))
    assert [(c.priority, c.region) for c in out] == [("high", "apac")] * 3
    out = run(customer(0), customer(1, priority="low"), customer(2))
    assert [c.priority for c in out] == ["normal", "low", "low"]


def test_a_sample_is_attributed_to_the_minute_and_dims_of_the_completing_event() -> None:
    out = run(opened(0, team="t1", region="eu"), agent(125, team="t2"))
    assert out[1].minute == (T0 + 125 * US) // (60 * US)
    assert (out[1].team, out[1].region) == ("t2", "eu")
    assert out[0].minute == T0 // (60 * US)


def test_minute_is_the_floor_before_1970_too() -> None:
    event = Event("e", "message.customer", -1, "c", 1)
    out = apply_event(ConversationState(), event, SLA)
    assert out.minute == -1


def test_customer_id_and_value_follow_the_event() -> None:
    state = ConversationState()
    apply_event(state, customer(0, customer_id="cu-1", customer_value=10.0), SLA)
    apply_event(state, customer(1), SLA)
    assert (state.customer_id, state.customer_value) == ("cu-1", 10.0)
    apply_event(state, customer(2, customer_id="cu-2", customer_value=0.0), SLA)
    assert (state.customer_id, state.customer_value) == ("cu-2", 0.0)


def test_state_survives_its_json_round_trip() -> None:
    state = ConversationState()
    events = [opened(0, priority="high"), customer(5), bot(6), agent(10), resolved(20)]
    for e in events[:3]:
        apply_event(state, e, SLA)
    copy = ConversationState.from_json(state.to_json())
    tail = [apply_event(copy, e, SLA) for e in events[3:]]
    assert tail == run(*events)[3:]
