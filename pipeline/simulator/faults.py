"""Broken messages for the dead-letter path, each with the reason the contract assigns.

Every malformed message is derived from a real event (same key, plausible content) and
breaks exactly one rule, so the expected reason is unambiguous under the contract's
"first failure wins" order. Cases whose reason the contract leaves open (an empty string,
a non-string ``type``) are deliberately not generated.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

__all__ = ["MALFORMED_FAMILIES", "REQUIRED_FIELDS", "SURVEY_SCALES", "malformed"]

_COMMON_REQUIRED = ("event_id", "type", "occurred_at", "conversation_id", "schema_version")
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "conversation.opened": (*_COMMON_REQUIRED, "channel", "team"),
    "message.customer": _COMMON_REQUIRED,
    "message.agent": (*_COMMON_REQUIRED, "agent_id"),
    "conversation.assigned": (*_COMMON_REQUIRED, "team"),
    "conversation.resolved": _COMMON_REQUIRED,
    "conversation.reopened": _COMMON_REQUIRED,
    "survey.csat": (*_COMMON_REQUIRED, "score"),
    "survey.nps": (*_COMMON_REQUIRED, "score"),
    "survey.ces": (*_COMMON_REQUIRED, "score"),
}
SURVEY_SCALES: dict[str, tuple[int, int]] = {
    "survey.csat": (1, 5),
    "survey.nps": (0, 10),
    "survey.ces": (1, 7),
}
MALFORMED_FAMILIES: tuple[str, ...] = (
    "invalid_utf8",
    "invalid_json",
    "not_an_object",
    "missing_field",
    "unknown_type",
    "wrong_type",
    "invalid_value",
)
_UNKNOWN_TYPES = (
    "conversation.closed",
    "message.note",
    "ticket.created",
    "survey.rating",
    "Message.Customer",
)
_encode = json.JSONEncoder(separators=(",", ":")).encode
_Mutator = Callable[[random.Random, dict[str, Any], bytes], tuple[bytes, str]]


def _dump(obj: Any) -> bytes:
    return _encode(obj).encode()


def _invalid_utf8(rng: random.Random, event: dict[str, Any], raw: bytes) -> tuple[bytes, str]:
    choice = rng.randrange(3)
    if choice == 0:  # a stray 0xff inside a string value
        return raw.replace(b'"type":"', b'"type":"\xff', 1), "invalid_utf8"
    if choice == 1:  # Latin-1 text from a legacy client
        return raw[:-1] + b',"note":"caf\xe9 cr\xe8me"}', "invalid_utf8"
    return raw[:-1] + b',"note":"\xe2\x82"}', "invalid_utf8"  # truncated multi-byte char


def _invalid_json(rng: random.Random, event: dict[str, Any], raw: bytes) -> tuple[bytes, str]:
    choice = rng.randrange(3)
    if choice == 0:
        return raw[: max(1, len(raw) // 2)], "invalid_json"  # cut short
    if choice == 1:
        return str(event).encode(), "invalid_json"  # Python repr: single quotes
    return raw + b"\n" + raw, "invalid_json"  # two objects in one message


def _not_an_object(rng: random.Random, event: dict[str, Any], raw: bytes) -> tuple[bytes, str]:
    choice = rng.randrange(3)
    if choice == 0:
        return b"[" + raw + b"]", "not_an_object"  # a batch wrapped in an array
    if choice == 1:
        return _dump(event["type"]), "not_an_object"
    return b"null", "not_an_object"


def _missing_field(rng: random.Random, event: dict[str, Any], raw: bytes) -> tuple[bytes, str]:
    name = rng.choice(REQUIRED_FIELDS[event["type"]])
    broken = dict(event)
    if rng.random() < 0.5:
        del broken[name]
    else:
        broken[name] = None  # null on a required field counts as missing
    return _dump(broken), f"missing_field:{name}"


def _unknown_type(rng: random.Random, event: dict[str, Any], raw: bytes) -> tuple[bytes, str]:
    broken = dict(event)
    broken["type"] = rng.choice(_UNKNOWN_TYPES)
    return _dump(broken), "unknown_type"


def _wrong_type(rng: random.Random, event: dict[str, Any], raw: bytes) -> tuple[bytes, str]:
    broken = dict(event)
    options: list[tuple[str, Any]] = [
        ("schema_version", "1"),
        ("schema_version", 1.0),
        ("occurred_at", 1_764_000_000),
        ("conversation_id", 424242),
        ("priority", 2),
    ]
    etype = event["type"]
    if etype in SURVEY_SCALES:
        options += [("score", "4"), ("score", 4.0), ("score", True)] * 2
    if etype == "conversation.opened":
        options += [("customer_value", "129.90"), ("channel", ["chat"])]
    if etype == "message.agent":
        options.append(("agent_id", 17))
    name, value = rng.choice(options)
    broken[name] = value
    return _dump(broken), f"wrong_type:{name}"


def _invalid_value(rng: random.Random, event: dict[str, Any], raw: bytes) -> tuple[bytes, str]:
    broken = dict(event)
    stamp = event["occurred_at"]
    options: list[tuple[str, Any]] = [
        ("occurred_at", stamp[:19]),  # no offset
        ("occurred_at", stamp[:10]),  # a date, not a time
        ("occurred_at", "2026-13-45T25:61:00Z"),  # offset present, calendar impossible
        ("schema_version", 2),
        ("priority", "critical"),
    ]
    etype = event["type"]
    if etype in SURVEY_SCALES:
        low, high = SURVEY_SCALES[etype]
        bad = {"survey.csat": (0, 6, 9), "survey.nps": (-1, 11), "survey.ces": (0, 8)}[etype]
        options += [("score", s) for s in bad] * 2
        assert all(not low <= s <= high for s in bad)
    if etype == "conversation.opened":
        options += [("channel", "Chat"), ("segment", "Enterprise"), ("customer_value", -12.5)]
    if etype == "message.agent":
        options.append(("author", "robot"))
    name, value = rng.choice(options)
    broken[name] = value
    return _dump(broken), f"invalid_value:{name}"


_MUTATORS: tuple[_Mutator, ...] = (
    _invalid_utf8,
    _invalid_json,
    _not_an_object,
    _missing_field,
    _unknown_type,
    _wrong_type,
    _invalid_value,
)


def malformed(rng: random.Random, event: dict[str, Any], raw: bytes) -> tuple[bytes, str]:
    """A broken variant of ``event`` (whose valid bytes are ``raw``) and its expected
    dead-letter reason; the seven contract reasons are equally likely.

    The caller should pass a copy with a fresh ``event_id`` so a validator that wrongly
    accepts the message shows up as an extra event instead of a silent duplicate.
    """
    return rng.choice(_MUTATORS)(rng, event, raw)
