"""parse_event against the event contract (shared/kpi-definitions.md, "Events" and
"Precise rules / Validation and dead letters").

Every dead-letter reason has cases of its own, the first-failure-wins order between reasons
is checked pairwise, and timestamps are checked for truncation, offsets and the UTC minute.
Expected values come from the contract, never from the implementation.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.errors import InvalidEvent
from pipeline.core.events import Event, parse_event

US = 1_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

TYPES = (
    "conversation.opened",
    "message.customer",
    "message.agent",
    "conversation.assigned",
    "conversation.resolved",
    "conversation.reopened",
    "survey.csat",
    "survey.nps",
    "survey.ces",
)
# Fields each type requires on top of event_id, type, occurred_at, conversation_id,
# schema_version, with a valid value for each.
TYPE_REQUIRED: dict[str, dict[str, Any]] = {
    "conversation.opened": {"channel": "chat", "team": "billing"},
    "message.customer": {},
    "message.agent": {"agent_id": "a-7"},
    "conversation.assigned": {"team": "billing"},
    "conversation.resolved": {},
    "conversation.reopened": {},
    "survey.csat": {"score": 4},
    "survey.nps": {"score": 9},
    "survey.ces": {"score": 6},
}
COMMON_REQUIRED = ("event_id", "type", "occurred_at", "conversation_id", "schema_version")
STRING_FIELDS = (
    "event_id",
    "type",
    "occurred_at",
    "conversation_id",
    "channel",
    "team",
    "agent_id",
    "author",
    "priority",
    "region",
    "customer_id",
    "segment",
)
KNOWN_FIELDS = frozenset((*STRING_FIELDS, "customer_value", "score", "schema_version"))


def valid(etype: str = "message.customer", **fields: Any) -> dict[str, Any]:
    """A minimal valid event of ``etype``; ``fields`` override or add (None = remove)."""
    obj: dict[str, Any] = {
        "event_id": "ev-1",
        "type": etype,
        "occurred_at": "2024-03-10T12:00:00Z",
        "conversation_id": "conv-1",
        "schema_version": 1,
        **TYPE_REQUIRED[etype],
    }
    for name, value in fields.items():
        if value is _DROP:
            obj.pop(name, None)
        else:
            obj[name] = value
    return obj


_DROP: Any = object()


def encode(obj: Any) -> bytes:
    return json.dumps(obj).encode("utf-8")


def reason_of(raw: bytes) -> str:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    return caught.value.reason


def us_of(text: str) -> int:
    """Epoch microseconds of an aware datetime (the test's own arithmetic)."""
    return (datetime.fromisoformat(text) - EPOCH) // timedelta(microseconds=1)


# ---------------------------------------------------------------------------------------------
# A valid event of every type
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("etype", TYPES)
def test_minimal_valid_event_of_every_type(etype: str) -> None:
    event = parse_event(encode(valid(etype)))
    assert event.type == etype
    assert event.event_id == "ev-1"
    assert event.conversation_id == "conv-1"
    assert event.occurred_us == us_of("2024-03-10T12:00:00+00:00")
    assert event.extra == {}


# ---------------------------------------------------------------------------------------------
# invalid_utf8, invalid_json, not_an_object
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff",
        b"\xc0\xaf",  # overlong encoding of "/"
        b"\xed\xa0\x80",  # an encoded UTF-16 surrogate is not UTF-8
        encode(valid()).replace(b"conv-1", b"conv-\xe9"),  # latin-1 inside a string
        encode(valid())[:-1] + b"\x80}",
    ],
)
def test_invalid_utf8(raw: bytes) -> None:
    assert reason_of(raw) == "invalid_utf8"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   ",
        b"{",
        b'{"event_id": "a",}',
        b"{'event_id': 'a'}",
        encode(valid()) + b" trailing",
        encode(valid()) + encode(valid()),
    ],
)
def test_invalid_json(raw: bytes) -> None:
    assert reason_of(raw) == "invalid_json"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("where", ["customer_value", "x_extra"])
def test_nan_and_infinity_are_not_json(constant: str, where: str) -> None:
    text = json.dumps(valid())[:-1] + f', "{where}": {constant}}}'
    assert reason_of(text.encode()) == "invalid_json"


@pytest.mark.parametrize("raw", [b"[]", b"[{}]", b'"event"', b"1", b"1.5", b"null", b"true"])
def test_not_an_object(raw: bytes) -> None:
    assert reason_of(raw) == "not_an_object"


# ---------------------------------------------------------------------------------------------
# missing_field:<f>
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("etype", TYPES)
@pytest.mark.parametrize("name", COMMON_REQUIRED)
@pytest.mark.parametrize("how", ["absent", "null"])
def test_missing_common_field(etype: str, name: str, how: str) -> None:
    obj = valid(etype, **{name: _DROP if how == "absent" else None})
    assert reason_of(encode(obj)) == f"missing_field:{name}"


TYPE_SPECIFIC = [(etype, name) for etype, req in TYPE_REQUIRED.items() for name in req]


@pytest.mark.parametrize(("etype", "name"), TYPE_SPECIFIC)
@pytest.mark.parametrize("how", ["absent", "null"])
def test_missing_type_specific_field(etype: str, name: str, how: str) -> None:
    obj = valid(etype, **{name: _DROP if how == "absent" else None})
    assert reason_of(encode(obj)) == f"missing_field:{name}"


@pytest.mark.parametrize(
    ("etype", "name"),
    [
        ("message.customer", "channel"),
        ("message.customer", "team"),
        ("conversation.resolved", "agent_id"),
        ("message.agent", "team"),
        ("conversation.assigned", "channel"),
        ("message.customer", "score"),
    ],
)
def test_type_specific_fields_are_optional_elsewhere(etype: str, name: str) -> None:
    assert isinstance(parse_event(encode(valid(etype, **{name: None}))), Event)


# ---------------------------------------------------------------------------------------------
# unknown_type
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "etype",
    [
        "conversation.closed",
        "Conversation.Opened",  # case-sensitive
        " message.customer",  # no trimming
        "survey",
        "",
        5,
        ["message.customer"],
    ],
)
def test_unknown_type(etype: Any) -> None:
    obj = valid()
    obj["type"] = etype
    assert reason_of(encode(obj)) == "unknown_type"


# ---------------------------------------------------------------------------------------------
# wrong_type:<f>
# ---------------------------------------------------------------------------------------------

# Every string field except `type` (a non-string type is an unknown type, checked earlier).
STRING_FIELD_CASES = [n for n in STRING_FIELDS if n != "type"]


@pytest.mark.parametrize("name", STRING_FIELD_CASES)
@pytest.mark.parametrize("value", [5, 1.5, True, ["x"], {"x": 1}])
def test_wrong_type_for_string_fields(name: str, value: Any) -> None:
    # message.agent carries agent_id and author; other fields are optional there.
    obj = valid("message.agent", **{name: value})
    assert reason_of(encode(obj)) == f"wrong_type:{name}"


@pytest.mark.parametrize("etype", ["survey.csat", "survey.nps", "survey.ces"])
@pytest.mark.parametrize("score", [4.0, "4", True, False, [4], {"v": 4}])
def test_wrong_type_score(etype: str, score: Any) -> None:
    assert reason_of(encode(valid(etype, score=score))) == "wrong_type:score"


@pytest.mark.parametrize("version", [1.0, "1", True, [1]])
def test_wrong_type_schema_version(version: Any) -> None:
    assert reason_of(encode(valid(schema_version=version))) == "wrong_type:schema_version"


@pytest.mark.parametrize("value", ["10", True, [10], {"v": 10}])
def test_wrong_type_customer_value(value: Any) -> None:
    assert reason_of(encode(valid(customer_value=value))) == "wrong_type:customer_value"


def test_score_type_is_checked_on_non_survey_events() -> None:
    # "A known field is checked on every event type that carries it."
    assert reason_of(encode(valid("message.customer", score="4"))) == "wrong_type:score"


# ---------------------------------------------------------------------------------------------
# invalid_value:<f>
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", STRING_FIELD_CASES)
def test_empty_strings_are_invalid(name: str) -> None:
    assert reason_of(encode(valid("message.agent", **{name: ""}))) == f"invalid_value:{name}"


@pytest.mark.parametrize("name", ["channel", "segment"])
@pytest.mark.parametrize(
    "value", ["Chat", "CHAT", "1chat", "_chat", "-chat", "web chat", "ch\u00e4t", "chat.x", " chat"]
)
def test_channel_and_segment_must_be_lower_case_words(name: str, value: str) -> None:
    assert reason_of(encode(valid(**{name: value}))) == f"invalid_value:{name}"


@pytest.mark.parametrize("name", ["channel", "segment"])
@pytest.mark.parametrize("value", ["chat", "x", "web-chat_2", "enterprise", "a1-_"])
def test_channel_and_segment_accept_any_lower_case_word(name: str, value: str) -> None:
    assert getattr(parse_event(encode(valid(**{name: value}))), name) == value


def test_channel_rule_applies_to_opened_too() -> None:
    assert reason_of(encode(valid("conversation.opened", channel="Email"))) == (
        "invalid_value:channel"
    )


@pytest.mark.parametrize("author", ["Human", "BOT", "agent", "robot", " human"])
def test_invalid_author(author: str) -> None:
    assert reason_of(encode(valid("message.agent", author=author))) == "invalid_value:author"


def test_author_is_checked_on_other_types_too() -> None:
    assert reason_of(encode(valid("message.customer", author="robot"))) == "invalid_value:author"


@pytest.mark.parametrize("author", ["human", "bot"])
def test_valid_authors(author: str) -> None:
    assert parse_event(encode(valid("message.agent", author=author))).author == author


@pytest.mark.parametrize("priority", ["URGENT", "Normal", "critical", "medium", "p1"])
def test_invalid_priority(priority: str) -> None:
    assert reason_of(encode(valid(priority=priority))) == "invalid_value:priority"


@pytest.mark.parametrize("priority", ["low", "normal", "high", "urgent"])
def test_valid_priorities(priority: str) -> None:
    assert parse_event(encode(valid("survey.csat", priority=priority))).priority == priority


SCORE_RANGES = {"survey.csat": (1, 5), "survey.nps": (0, 10), "survey.ces": (1, 7)}


@pytest.mark.parametrize("etype", list(SCORE_RANGES))
def test_score_ranges_per_survey(etype: str) -> None:
    low, high = SCORE_RANGES[etype]
    for score in range(-2, 13):
        raw = encode(valid(etype, score=score))
        if low <= score <= high:
            assert parse_event(raw).score == score
        else:
            assert reason_of(raw) == "invalid_value:score", (etype, score)


@pytest.mark.parametrize("value", [-1, -0.01, -1e9])
def test_negative_customer_value_is_invalid(value: float) -> None:
    assert reason_of(encode(valid(customer_value=value))) == "invalid_value:customer_value"


@pytest.mark.parametrize("value", [0, 0.0, 12, 99.5])
def test_customer_value_zero_or_more(value: float) -> None:
    assert parse_event(encode(valid(customer_value=value))).customer_value == value


@pytest.mark.parametrize("version", [2, 0, -1, 10])
def test_schema_version_must_be_1(version: int) -> None:
    assert reason_of(encode(valid(schema_version=version))) == "invalid_value:schema_version"


# ---------------------------------------------------------------------------------------------
# occurred_at
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2024-03-10T12:00:00",  # no offset
        "2024-03-10T12:00:00.123456",  # no offset
        "2024-03-10",
        "2024-03-10T12:00Z",  # no seconds
        "2024-03-10 12:00:00Z",
        "20240310T120000Z",
        "2024-03-10T12:00:00+0100",
        "2024-03-10T12:00:00+01",
        "2024-03-10T12:00:00.Z",
        "2024-3-10T12:00:00Z",
        "2024-13-10T12:00:00Z",
        "2024-00-10T12:00:00Z",
        "2024-03-00T12:00:00Z",
        "2024-03-32T12:00:00Z",
        "2024-04-31T12:00:00Z",
        "2024-03-10T24:00:00Z",
        "2024-03-10T12:60:00Z",
        "2024-03-10T12:00:61Z",
        "2024-03-10T12:00:00+24:00",
        "2023-02-29T12:00:00Z",  # not a leap year
        "1900-02-29T12:00:00Z",  # divisible by 100, not by 400
        "\uff12\uff10\uff12\uff14-03-10T12:00:00Z",  # fullwidth digits
        " 2024-03-10T12:00:00Z",
        "2024-03-10T12:00:00Z ",
        "2024-03-10T12:00:00Z\n",
        "yesterday",
        "1710072000",
    ],
)
def test_invalid_occurred_at(text: str) -> None:
    assert reason_of(encode(valid(occurred_at=text))) == "invalid_value:occurred_at"


@pytest.mark.parametrize("text", ["2024-03-10T12:00:00+05:99", "2024-03-10T12:00:00-00:60"])
def test_offset_minutes_above_59_are_invalid(text: str) -> None:
    assert reason_of(encode(valid(occurred_at=text))) == "invalid_value:occurred_at"


def test_non_ascii_digits_in_the_truncated_fraction_are_invalid() -> None:
    text = "2024-03-10T12:00:00.1234567\u0661Z"  # ARABIC-INDIC DIGIT ONE, 8th fraction digit
    assert reason_of(encode(valid(occurred_at=text))) == "invalid_value:occurred_at"


@pytest.mark.parametrize(
    "text", ["2024-02-29T00:00:00Z", "2000-02-29T23:59:59Z", "1996-02-29T12:00:00+01:00"]
)
def test_leap_days_are_valid(text: str) -> None:
    assert parse_event(encode(valid(occurred_at=text))).occurred_us == us_of(
        text.replace("Z", "+00:00")
    )


@pytest.mark.parametrize(
    ("fraction", "micros"),
    [
        ("", 0),
        (".1", 100_000),
        (".12", 120_000),
        (".123456", 123_456),
        (".1234564", 123_456),
        (".1234565", 123_456),  # never rounded
        (".1234569", 123_456),
        (".123456789", 123_456),  # nanoseconds
        (".000000999", 0),
        (".9999999", 999_999),  # does not roll over into the next second
        (".999999999999999999999999", 999_999),
        (".5" + "0" * 40, 500_000),
    ],
)
def test_fractional_seconds_are_truncated_to_microseconds(fraction: str, micros: int) -> None:
    event = parse_event(encode(valid(occurred_at=f"2024-03-10T12:00:59{fraction}Z")))
    assert event.occurred_us == us_of("2024-03-10T12:00:59+00:00") + micros


def test_truncation_before_1970_keeps_the_written_digits() -> None:
    # 23:59:59.9999999 is truncated to .999999: one microsecond before the epoch.
    event = parse_event(encode(valid(occurred_at="1969-12-31T23:59:59.9999999Z")))
    assert event.occurred_us == -1


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2024-03-10T12:00:00Z", "2024-03-10T12:00:00"),
        ("2024-03-10T12:00:00+00:00", "2024-03-10T12:00:00"),
        ("2024-03-10T12:00:00-00:00", "2024-03-10T12:00:00"),
        ("2024-03-10T17:30:00+05:30", "2024-03-10T12:00:00"),
        ("2024-03-10T04:00:00-08:00", "2024-03-10T12:00:00"),
        ("2024-03-10T23:59:00+23:59", "2024-03-10T00:00:00"),
        ("2024-03-09T23:00:00-13:00", "2024-03-10T12:00:00"),
    ],
)
def test_offsets_convert_to_utc(text: str, utc: str) -> None:
    assert parse_event(encode(valid(occurred_at=text))).occurred_us == us_of(utc + "+00:00")


@pytest.mark.parametrize(
    ("text", "utc_minute"),
    [
        # A negative offset pushes a late-evening local time past UTC midnight.
        ("2024-12-31T23:59:59.999999-00:30", "2025-01-01T00:29:00"),
        ("2024-12-31T23:30:00-01:00", "2025-01-01T00:30:00"),
        ("2024-03-10T12:34:59.999999999Z", "2024-03-10T12:34:00"),  # floor, not round
        ("2024-03-10T12:35:00Z", "2024-03-10T12:35:00"),
        ("2024-03-11T00:05:00+05:30", "2024-03-10T18:35:00"),
        ("1969-12-31T23:59:59.5Z", "1969-12-31T23:59:00"),  # floor below zero
    ],
)
def test_minute_is_the_floor_of_utc_time(text: str, utc_minute: str) -> None:
    expected = (datetime.fromisoformat(utc_minute + "+00:00") - EPOCH) // timedelta(minutes=1)
    assert parse_event(encode(valid(occurred_at=text))).minute == expected


# ---------------------------------------------------------------------------------------------
# Order of checks: first failure wins
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # invalid_utf8 before invalid_json
        (b"\xff not json", "invalid_utf8"),
        (b'{"event_id": "\xff"', "invalid_utf8"),
        # invalid_json before not_an_object / any field check
        (b'[{"type": "x"}', "invalid_json"),
        (b'{"type": "x", "v": NaN}', "invalid_json"),
        # not_an_object before any field check
        (b'[{"event_id": "a"}]', "not_an_object"),
    ],
)
def test_order_of_the_byte_level_checks(raw: bytes, expected: str) -> None:
    assert reason_of(raw) == expected


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        # missing_field before unknown_type
        (valid(type="conversation.closed", conversation_id=None), "missing_field:conversation_id"),
        (valid(type=7, event_id=_DROP), "missing_field:event_id"),
        # missing_field before wrong_type (common and type-specific fields)
        (valid(event_id=5, schema_version=None), "missing_field:schema_version"),
        (valid("conversation.opened", channel=None, team=5), "missing_field:channel"),
        (valid("conversation.opened", team=None, event_id=5), "missing_field:team"),
        (valid("survey.csat", score=None, region=5), "missing_field:score"),
        # missing_field before invalid_value
        (valid("message.agent", agent_id=None, schema_version=2), "missing_field:agent_id"),
        (valid(occurred_at=None, channel="Chat"), "missing_field:occurred_at"),
        # unknown_type before wrong_type and invalid_value
        (valid(type="conversation.closed", event_id=5), "unknown_type"),
        (valid(type="conversation.closed", schema_version="1"), "unknown_type"),
        (valid(type="conversation.closed", schema_version=2), "unknown_type"),
        (valid(type="conversation.closed", occurred_at="bad"), "unknown_type"),
        # wrong_type before invalid_value
        (valid("survey.csat", score="4", event_id=""), "wrong_type:score"),
        (valid(schema_version=2, region=5), "wrong_type:region"),
        (valid(occurred_at="bad", schema_version=1.0), "wrong_type:schema_version"),
        (valid("survey.nps", score=11, customer_value="3"), "wrong_type:customer_value"),
        (valid(channel="Chat", priority=3), "wrong_type:priority"),
    ],
)
def test_first_failure_wins(obj: dict[str, Any], expected: str) -> None:
    assert reason_of(encode(obj)) == expected


# ---------------------------------------------------------------------------------------------
# What a valid event keeps
# ---------------------------------------------------------------------------------------------


def test_unknown_extra_fields_are_kept() -> None:
    extra = {"x_trace": "abc", "nested": {"a": [1, 2, None]}, "flag": False, "n": None}
    event = parse_event(encode(valid("message.agent", region="eu", **extra)))
    assert event.extra == extra
    assert event.region == "eu"
    assert not set(event.extra) & KNOWN_FIELDS


@pytest.mark.parametrize(
    "name",
    ["team", "channel", "region", "priority", "segment", "customer_id", "author", "agent_id"],
)
def test_null_optional_field_means_absent(name: str) -> None:
    event = parse_event(encode(valid("message.customer", **{name: None})))
    assert getattr(event, name) is None
    assert name not in event.extra


def test_null_customer_value_and_score_mean_absent() -> None:
    event = parse_event(encode(valid("conversation.resolved", customer_value=None, score=None)))
    assert event.customer_value is None
    assert event.score is None


def test_dimension_values_are_taken_as_sent() -> None:
    event = parse_event(encode(valid(team=" Tier 2 ", region="EU-West", customer_id=" C ")))
    assert (event.team, event.region, event.customer_id) == (" Tier 2 ", "EU-West", " C ")


def test_event_fields_are_carried_over() -> None:
    obj = valid(
        "message.agent",
        author="bot",
        team="t",
        channel="email",
        region="apac",
        priority="high",
        customer_id="cust",
        segment="smb",
        customer_value=250,
    )
    event = parse_event(encode(obj))
    assert (event.author, event.agent_id, event.team, event.channel) == ("bot", "a-7", "t", "email")
    assert (event.region, event.priority, event.segment) == ("apac", "high", "smb")
    assert (event.customer_id, event.customer_value, event.schema_version) == ("cust", 250, 1)


# ---------------------------------------------------------------------------------------------
# Robustness: nothing but InvalidEvent ever escapes
# ---------------------------------------------------------------------------------------------


def parse_or_reason(raw: bytes) -> Event | str:
    try:
        return parse_event(raw)
    except InvalidEvent as bad:
        return bad.reason


@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"a":' * 100_000])
def test_deeply_nested_input_is_invalid_json(raw: bytes) -> None:
    # Not even well-formed JSON (never closed): the contract's answer is invalid_json. A
    # RecursionError instead crashes the compute agent on every restart (poison message).
    assert parse_or_reason(raw) == "invalid_json"


def test_huge_integer_customer_value_does_not_crash() -> None:
    # A valid JSON number >= 0; accept it or dead-letter it, but never raise anything else.
    raw = json.dumps(valid())[:-1] + ', "customer_value": 1' + "0" * 400 + "}"
    assert isinstance(parse_or_reason(raw.encode()), Event | str)


@pytest.mark.parametrize("name", ["conversation_id", "event_id", "team"])
def test_accepted_strings_are_utf8_text(name: str) -> None:
    raw = json.dumps(valid("conversation.assigned", **{name: "x\ud800"})).encode()
    result = parse_or_reason(raw)
    if isinstance(result, Event):
        for field_name in STRING_FIELDS:
            if field_name == "occurred_at":  # kept as epoch microseconds
                continue
            value = getattr(result, field_name)
            if value is not None:
                value.encode("utf-8")  # the message is UTF-8: so is every field


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_raise_nothing_but_invalid_event(raw: bytes) -> None:
    parse_or_reason(raw)


_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
_json_value = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
_keys = st.sampled_from(sorted(KNOWN_FIELDS)) | st.text(max_size=8)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    base_type=st.sampled_from(TYPES),
    overrides=st.dictionaries(_keys, _json_value | st.sampled_from(TYPES), max_size=4),
)
def test_random_objects_raise_nothing_but_invalid_event(
    base_type: str, overrides: dict[str, Any]
) -> None:
    result = parse_or_reason(encode(valid(base_type, **overrides)))
    if isinstance(result, str):
        assert result.split(":")[0] in {
            "missing_field",
            "unknown_type",
            "wrong_type",
            "invalid_value",
        }


# ---------------------------------------------------------------------------------------------
# Any valid event round-trips
# ---------------------------------------------------------------------------------------------

_word = st.builds(
    str.__add__,
    st.sampled_from("abcdefghijklmnopqrstuvwxyz"),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", max_size=8),
)
_nonempty = st.text(min_size=1, max_size=10)
_MIN_US = (datetime(1900, 1, 1, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
_MAX_US = (datetime(2200, 1, 1, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
_MAX_OFFSET_MIN = 23 * 60 + 59


def render(utc_us: int, offset_min: int, digits: int, noise: random.Random) -> str:
    """RFC 3339 text of ``utc_us`` at ``offset_min``, ``digits`` fraction digits.

    Digits beyond the sixth are random: they must be truncated away.
    """
    local = EPOCH + timedelta(microseconds=utc_us + offset_min * 60 * US)
    frac = f"{local.microsecond:06d}"
    if digits > 6:
        frac += "".join(noise.choice("0123456789") for _ in range(digits - 6))
    else:
        frac = frac[:digits]
    sign = "+" if offset_min >= 0 else "-"
    off = abs(offset_min)
    zone = (
        "Z" if offset_min == 0 and noise.random() < 0.5 else f"{sign}{off // 60:02d}:{off % 60:02d}"
    )
    return (
        f"{local.year:04d}-{local.month:02d}-{local.day:02d}T"
        f"{local.hour:02d}:{local.minute:02d}:{local.second:02d}"
        + (f".{frac}" if frac else "")
        + zone
    )


@st.composite
def valid_events(draw: st.DrawFn) -> tuple[dict[str, Any], int]:
    etype = draw(st.sampled_from(TYPES))
    digits = draw(st.integers(0, 12))
    utc_us = draw(st.integers(_MIN_US, _MAX_US))
    if digits < 6:
        utc_us -= utc_us % 10 ** (6 - digits)  # representable in that many digits
    offset_min = draw(st.integers(-_MAX_OFFSET_MIN, _MAX_OFFSET_MIN))
    noise = random.Random(draw(st.integers(0, 2**32)))
    obj: dict[str, Any] = {
        "event_id": draw(_nonempty),
        "type": etype,
        "occurred_at": render(utc_us, offset_min, digits, noise),
        "conversation_id": draw(_nonempty),
        "schema_version": 1,
    }
    optional: dict[str, st.SearchStrategy[Any]] = {
        "channel": _word,
        "team": _nonempty,
        "agent_id": _nonempty,
        "author": st.sampled_from(["human", "bot"]),
        "priority": st.sampled_from(["low", "normal", "high", "urgent"]),
        "region": _nonempty,
        "customer_id": _nonempty,
        "segment": _word,
        "customer_value": st.integers(0, 10**12) | st.floats(0, 1e12),
    }
    required = set(TYPE_REQUIRED[etype])
    for name, strategy in optional.items():
        if name in required or draw(st.booleans()):
            obj[name] = draw(strategy)
        elif draw(st.booleans()):
            obj[name] = None
    if etype in SCORE_RANGES:
        obj["score"] = draw(st.integers(*SCORE_RANGES[etype]))
    extra = draw(
        st.dictionaries(
            st.text(max_size=6).filter(lambda k: k not in KNOWN_FIELDS), _json_value, max_size=2
        )
    )
    obj.update(extra)
    return obj, utc_us


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(valid_events())
def test_any_valid_event_round_trips(case: tuple[dict[str, Any], int]) -> None:
    obj, utc_us = case
    event = parse_event(encode(obj))
    assert event.occurred_us == utc_us
    assert event.minute == utc_us // (60 * US)
    for name in KNOWN_FIELDS - {"occurred_at"}:
        assert getattr(event, name) == obj.get(name), name
    assert event.extra == {k: v for k, v in obj.items() if k not in KNOWN_FIELDS}
