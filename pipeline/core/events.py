"""The interaction event contract (``shared/kpi-definitions.md``): parse and validate.

``parse_event(raw)`` turns the bytes of one Kafka message into an :class:`Event` or raises
:class:`~pipeline.core.errors.InvalidEvent` whose ``reason`` is the dead-letter reason code. The
checks run in the contract's order (first failure wins): ``invalid_utf8``,
``invalid_json``, ``not_an_object``, ``missing_field:<f>``, ``unknown_type``,
``wrong_type:<f>``, ``invalid_value:<f>``; within a class, in the contract's field order.
This runs once per event, so it is hand-written rather than a generic model: a regex for
timestamps and plain ``type()`` checks.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from pipeline.core.errors import InvalidEvent

__all__ = [
    "EVENT_TYPES",
    "SURVEY_RANGES",
    "Event",
    "fast_event",
    "parse_event",
    "parse_event_exact",
    "parse_occurred_at",
    "to_datetime",
    "validate_object",
]

EVENT_TYPES: frozenset[str] = frozenset(
    {
        "conversation.opened",
        "message.customer",
        "message.agent",
        "conversation.assigned",
        "conversation.resolved",
        "conversation.reopened",
        "survey.csat",
        "survey.nps",
        "survey.ces",
    }
)
SURVEY_RANGES: dict[str, tuple[int, int]] = {
    "survey.csat": (1, 5),
    "survey.nps": (0, 10),
    "survey.ces": (1, 7),
}
# ``score`` on a non-survey event has no defined scale; accept the union of the scales.
_ANY_SCORE_RANGE = (0, 10)
PRIORITIES = frozenset({"low", "normal", "high", "urgent"})
AUTHORS = frozenset({"human", "bot"})

_COMMON_REQUIRED = ("event_id", "type", "occurred_at", "conversation_id", "schema_version")
_TYPE_REQUIRED: dict[str, tuple[str, ...]] = {
    "conversation.opened": ("channel", "team"),
    "conversation.assigned": ("team",),
    "message.agent": ("agent_id",),
    "survey.csat": ("score",),
    "survey.nps": ("score",),
    "survey.ces": ("score",),
}
# Table order of the contract: wrong_type and invalid_value report the first field in it.
_STRING_FIELDS = (
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
_FIELD_ORDER = (*_STRING_FIELDS, "customer_value", "score", "schema_version")
_KNOWN_FIELDS = frozenset(_FIELD_ORDER)
_ALLOWED_TYPES: dict[str, tuple[type, ...]] = {
    **{name: (str,) for name in _STRING_FIELDS},
    "customer_value": (int, float),
    "score": (int,),  # bool is not int here: type() is exact
    "schema_version": (int,),
}
_COMMON_REQUIRED_ORDERED = tuple(f for f in _FIELD_ORDER if f in _COMMON_REQUIRED)
_REQUIRED_BY_TYPE: dict[str, tuple[str, ...]] = {
    t: tuple(f for f in _FIELD_ORDER if f in _COMMON_REQUIRED or f in _TYPE_REQUIRED.get(t, ()))
    for t in EVENT_TYPES
}
_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_FLOAT_INT = int(1.7976931348623157e308)
_WORD = re.compile(r"[a-z][a-z0-9_-]*")
# ASCII digits only ("\d" would accept other scripts' digits); offset minutes 00-59.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
_MICROSECOND = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _reject_constant(token: str) -> Any:
    # NaN/Infinity are not JSON; Python's json would accept them.
    raise ValueError(f"not JSON: {token}")


_decode = json.JSONDecoder(parse_constant=_reject_constant).decode
_orjson_loads = orjson.loads


@dataclass(slots=True)
class Event:
    """A validated event. Times are UTC; ``occurred_us`` is microseconds since the epoch.

    Optional fields are ``None`` when absent (or ``null``): the conversation state decides
    the effective value, because absence means "keep the current value".
    """

    event_id: str
    type: str
    occurred_us: int
    conversation_id: str
    schema_version: int
    channel: str | None = None
    team: str | None = None
    agent_id: str | None = None
    author: str | None = None
    priority: str | None = None
    region: str | None = None
    customer_id: str | None = None
    segment: str | None = None
    customer_value: float | None = None
    score: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def occurred_at(self) -> datetime:
        return to_datetime(self.occurred_us)

    @property
    def minute(self) -> int:
        """The UTC minute bucket (minutes since the epoch), floor of the event time."""
        return self.occurred_us // 60_000_000


def parse_occurred_at(text: str) -> int:
    """RFC 3339 with a mandatory offset; fractions truncated (never rounded) to microseconds.

    Returns epoch microseconds (UTC). The regex enforces the RFC 3339 shape (offset
    required); ``datetime.fromisoformat`` (C code) then checks the calendar. Raises
    ``ValueError``.
    """
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueError(text)
    frac_end = m.end(1)
    if frac_end - m.start(1) > 7:  # "." + more than 6 digits: truncate, never round
        text = text[: m.start(1) + 7] + text[frac_end:]
    parsed = datetime.fromisoformat(text.upper())
    return (parsed - _EPOCH) // _MICROSECOND


def to_datetime(epoch_us: int) -> datetime:
    """UTC datetime of epoch microseconds (for display and ClickHouse columns)."""
    return _EPOCH + timedelta(microseconds=epoch_us)


def parse_event(raw: bytes) -> Event:
    """Validate one message value against the contract. Raises ``InvalidEvent(reason)``.

    The common case, a well-formed event, takes a fast path (orjson and one pass over the
    fields). Anything it does not accept as plainly valid, it hands to the exact path,
    which decides the reason: the two never disagree on what is valid (tests check both
    paths on the same inputs).
    """
    try:
        obj = _orjson_loads(raw)
    except ValueError:
        return parse_event_exact(raw)
    if type(obj) is dict:
        event = fast_event(obj)
        if event is not None:
            return event
    return parse_event_exact(raw)


def parse_event_exact(raw: bytes) -> Event:
    """The reference path: every check in the contract's order (see ``parse_event``)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEvent("invalid_utf8") from None
    try:
        obj = _decode(text)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise InvalidEvent("invalid_json") from None
    if type(obj) is not dict:
        raise InvalidEvent("not_an_object")
    return validate_object(obj)


def _check_value(name: str, value: Any, etype: str) -> None:
    """invalid_value rules of one present, correctly typed field."""
    if type(value) is str:
        if value == "" or _SURROGATE.search(value):
            # Empty, or a lone surrogate escape: not text that UTF-8 can carry.
            raise InvalidEvent(f"invalid_value:{name}")
        if name in ("channel", "segment") and _WORD.fullmatch(value) is None:
            raise InvalidEvent(f"invalid_value:{name}")
        if (name == "author" and value not in AUTHORS) or (
            name == "priority" and value not in PRIORITIES
        ):
            raise InvalidEvent(f"invalid_value:{name}")
    elif name == "customer_value":
        if value < 0 or (type(value) is float and not math.isfinite(value)):
            raise InvalidEvent("invalid_value:customer_value")
        if type(value) is int and value > _MAX_FLOAT_INT:
            raise InvalidEvent("invalid_value:customer_value")  # not representable
    elif name == "score":
        low, high = SURVEY_RANGES.get(etype, _ANY_SCORE_RANGE)
        if not low <= value <= high:
            raise InvalidEvent("invalid_value:score")
    elif name == "schema_version" and value != 1:
        raise InvalidEvent("invalid_value:schema_version")


def validate_object(obj: dict[str, Any]) -> Event:
    """The checks after JSON decoding; each class of check runs in contract field order."""
    get = obj.get
    etype = get("type")
    known = type(etype) is str and etype in EVENT_TYPES
    required = _REQUIRED_BY_TYPE[etype] if known else _COMMON_REQUIRED_ORDERED
    for name in required:
        if get(name) is None:
            raise InvalidEvent(f"missing_field:{name}")
    if not known:
        raise InvalidEvent("unknown_type")

    present = [(name, obj[name]) for name in _FIELD_ORDER if get(name) is not None]
    for name, value in present:
        if type(value) not in _ALLOWED_TYPES[name]:
            raise InvalidEvent(f"wrong_type:{name}")
    for name, value in present:
        if name == "occurred_at":
            if value == "":
                raise InvalidEvent("invalid_value:occurred_at")
            try:
                occurred_us = parse_occurred_at(value)
            except ValueError:
                raise InvalidEvent("invalid_value:occurred_at") from None
        else:
            _check_value(name, value, etype)

    customer_value = get("customer_value")
    return Event(
        event_id=obj["event_id"],
        type=etype,
        occurred_us=occurred_us,
        conversation_id=obj["conversation_id"],
        schema_version=1,
        channel=get("channel"),
        team=get("team"),
        agent_id=get("agent_id"),
        author=get("author"),
        priority=get("priority"),
        region=get("region"),
        customer_id=get("customer_id"),
        segment=get("segment"),
        customer_value=float(customer_value) if customer_value is not None else None,
        score=get("score"),
        extra={k: v for k, v in obj.items() if k not in _KNOWN_FIELDS},
    )


# -- the fast path ------------------------------------------------------------------------


def _string(value: Any, etype: str) -> bool:
    return type(value) is str and value != ""


def _word(value: Any, etype: str) -> bool:
    return type(value) is str and _WORD.fullmatch(value) is not None


def _author(value: Any, etype: str) -> bool:
    return value in AUTHORS if type(value) is str else False


def _priority(value: Any, etype: str) -> bool:
    return value in PRIORITIES if type(value) is str else False


def _customer_value(value: Any, etype: str) -> bool:
    kind = type(value)
    if kind is float:
        return value >= 0 and math.isfinite(value)
    return kind is int and 0 <= value <= _MAX_FLOAT_INT


def _score(value: Any, etype: str) -> bool:
    if type(value) is not int:
        return False
    low, high = SURVEY_RANGES.get(etype, _ANY_SCORE_RANGE)
    return low <= value <= high


def _schema_version(value: Any, etype: str) -> bool:
    return type(value) is int and value == 1


# Known field -> its check. orjson rejects lone surrogates, so a string it returns is
# always valid UTF-8 text (the exact path checks that itself).
_FAST_CHECKS: dict[str, Any] = {
    **dict.fromkeys(_STRING_FIELDS, _string),
    "channel": _word,
    "segment": _word,
    "author": _author,
    "priority": _priority,
    "customer_value": _customer_value,
    "score": _score,
    "schema_version": _schema_version,
}
_SCALAR_EXTRA = frozenset({str, int, bool, type(None)})
_MINUTE_CACHE: dict[str, int] = {}
_MINUTE_CACHE_MAX = 200_000


def _fast_occurred_us(text: str) -> int | None:
    """``parse_occurred_at`` with the minute's epoch cached; None = ask the exact path."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        return None
    second = int(text[17:19])
    if second > 59:
        return None
    fraction = m.group(1)
    if fraction:
        micro = int((fraction[1:7] + "00000")[:6])
        zone = text[m.end(1) :]
    else:
        micro = 0
        zone = text[19:]
    key = text[:16] + zone
    base = _MINUTE_CACHE.get(key)
    if base is None:
        try:
            parsed = datetime.fromisoformat((text[:16] + ":00" + zone).upper())
        except ValueError:
            return None
        base = (parsed - _EPOCH) // _MICROSECOND
        if len(_MINUTE_CACHE) >= _MINUTE_CACHE_MAX:
            _MINUTE_CACHE.clear()
        _MINUTE_CACHE[key] = base
    return base + second * 1_000_000 + micro


_PLAIN = 0  # a non-empty string
_REQUIRED_SETS = {t: frozenset(fields) for t, fields in _REQUIRED_BY_TYPE.items()}
_FAST_CODES = {name: _PLAIN if check is _string else check for name, check in _FAST_CHECKS.items()}


def fast_event(obj: dict[str, Any]) -> Event | None:
    """The Event of a plainly valid object, else None (never a reason: see parse_event)."""
    etype = obj.get("type")
    if type(etype) is not str:
        return None
    required = _REQUIRED_SETS.get(etype)
    if required is None or not obj.keys() >= required:
        return None
    codes = _FAST_CODES
    extra: dict[str, Any] = {}
    for name, value in obj.items():
        code = codes.get(name)
        if code is None:
            # Nested values go the exact way: it alone decides what is too deep to parse,
            # and orjson reads integers beyond 64 bits as floats.
            if type(value) not in _SCALAR_EXTRA:
                return None
            extra[name] = value
        elif value is None:
            if name in required:
                return None
        elif code is _PLAIN:
            if type(value) is not str or not value:
                return None
        elif not code(value, etype):
            return None
    occurred_us = _fast_occurred_us(obj["occurred_at"])
    if occurred_us is None:
        return None
    get = obj.get
    customer_value = get("customer_value")
    return Event(
        obj["event_id"],
        etype,
        occurred_us,
        obj["conversation_id"],
        1,
        get("channel"),
        get("team"),
        get("agent_id"),
        get("author"),
        get("priority"),
        get("region"),
        get("customer_id"),
        get("segment"),
        float(customer_value) if customer_value is not None else None,
        get("score"),
        extra,
    )
