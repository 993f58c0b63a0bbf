"""The fast path of parse_event never disagrees with the exact, reason-giving path.

``parse_event`` tries orjson and a one-pass check first and falls back to
``parse_event_exact`` for anything it does not accept as plainly valid. These properties
feed both paths the same bytes: valid events (every type, optional fields, extra fields,
odd timestamps) and near-valid ones (one field broken in one of many ways), and require
the same Event or the same dead-letter reason.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.errors import InvalidEvent
from pipeline.core.events import EVENT_TYPES, fast_event, parse_event, parse_event_exact

TYPES = sorted(EVENT_TYPES)
DIGITS = st.integers(0, 9).map(str)


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    year = draw(st.integers(1969, 2100))
    month = draw(st.integers(0, 13))
    day = draw(st.integers(0, 32))
    hour = draw(st.integers(0, 24))
    minute = draw(st.integers(0, 60))
    second = draw(st.integers(0, 61))
    frac = draw(
        st.one_of(
            st.just(""), st.text("0123456789", min_size=1, max_size=12).map(lambda d: "." + d)
        )
    )
    sep = draw(st.sampled_from("Tt "))
    zone = draw(
        st.one_of(
            st.sampled_from(
                ["Z", "z", "", "+00:00", "-00:00", "+05:30", "-23:59", "+24:00", "+01:60"]
            ),
            st.builds(
                lambda h, m, sign: f"{sign}{h:02d}:{m:02d}",
                st.integers(0, 25),
                st.integers(0, 61),
                st.sampled_from("+-"),
            ),
        )
    )
    return f"{year:04d}-{month:02d}-{day:02d}{sep}{hour:02d}:{minute:02d}:{second:02d}{frac}{zone}"


ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.sampled_from(["", "chat", "Chat", "a b", "human", "bot", "urgent", "high", "x-1", "é"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
FIELDS = [
    "event_id", "type", "occurred_at", "conversation_id", "channel", "team", "agent_id",
    "author", "priority", "region", "customer_id", "segment", "customer_value", "score",
    "schema_version",
]  # fmt: skip


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    etype = draw(st.sampled_from(TYPES))
    obj: dict[str, Any] = {
        "event_id": draw(st.text(min_size=1, max_size=8)),
        "type": etype,
        "occurred_at": draw(st.one_of(st.just("2026-11-23T08:00:00Z"), timestamps())),
        "conversation_id": draw(st.text(min_size=1, max_size=8)),
        "schema_version": 1,
        "channel": "chat",
        "team": "billing",
        "agent_id": "a-1",
    }
    if etype.startswith("survey."):
        obj["score"] = draw(st.integers(0, 10))
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        obj[name] = draw(ODD_VALUES)  # break (or keep) a field
    for name in draw(st.lists(st.sampled_from(["comment", "x_trace", "n"]), max_size=2)):
        obj[name] = draw(ODD_VALUES)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=2)):
        obj.pop(name, None)
    return obj


def outcome(fn: Any, raw: bytes) -> Any:
    try:
        return ("ok", fn(raw))
    except InvalidEvent as bad:
        return ("dead", bad.reason)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events())
def test_fast_and_exact_paths_agree(obj: dict[str, Any]) -> None:
    raw = json.dumps(obj, ensure_ascii=False).encode()
    assert outcome(parse_event, raw) == outcome(parse_event_exact, raw)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=64))
def test_fast_and_exact_paths_agree_on_any_bytes(raw: bytes) -> None:
    assert outcome(parse_event, raw) == outcome(parse_event_exact, raw)


def test_the_fast_path_takes_plain_events() -> None:
    """It must actually be used (else the speed-up is gone and nobody notices)."""
    obj = {
        "event_id": "e1", "type": "survey.csat", "occurred_at": "2026-11-23T08:00:01.1234567+02:00",
        "conversation_id": "c1", "schema_version": 1, "score": 5, "comment": "great",
    }  # fmt: skip
    event = fast_event(obj)
    assert event is not None and event == parse_event_exact(json.dumps(obj).encode())
    assert event.extra == {"comment": "great"}
