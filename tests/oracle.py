"""An independent reference implementation of ``shared/kpi-definitions.md`` for tests.

``recompute(messages)`` makes one clean pass over raw Kafka message values and returns the
exact minute aggregates the pipeline must store (counts, integer-microsecond time sums, score
sums and the full sample lists), plus the dead-letter, late and duplicate counts.

It is written from the contract alone and shares no code with ``pipeline.core.events`` or
``streams.*``: it is the yardstick the pipeline is measured against, so it favours being
obviously right over being fast. Choices where the contract leaves room are marked
"CHOICE:" below; the tests that use the oracle only feed inputs where they do not matter,
or where the pipeline made the same choice.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "COUNT_NAMES",
    "DEFAULT_SLA_S",
    "DIMENSIONS",
    "GROUPINGS",
    "SAMPLE_NAMES",
    "SUM_US_NAMES",
    "Oracle",
    "Rejected",
    "ValidEvent",
    "new_row",
    "recompute",
    "snapshot",
    "validate",
]

US_PER_S = 1_000_000
US_PER_MIN = 60 * US_PER_S

EVENT_TYPES = (
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
# Field table of the contract, in its order.
FIELD_TABLE = (
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
    "customer_value",
    "score",
    "schema_version",
)
STRING_FIELDS = FIELD_TABLE[:12]
ALWAYS_REQUIRED = ("event_id", "type", "occurred_at", "conversation_id", "schema_version")
REQUIRED_BY_TYPE: dict[str, tuple[str, ...]] = {
    "conversation.opened": ("channel", "team"),
    "conversation.assigned": ("team",),
    "message.agent": ("agent_id",),
    "survey.csat": ("score",),
    "survey.nps": ("score",),
    "survey.ces": ("score",),
}
SCORE_RANGES: dict[str, tuple[int, int]] = {
    "survey.csat": (1, 5),
    "survey.nps": (0, 10),
    "survey.ces": (1, 7),
}
# CHOICE: the contract gives no scale for a `score` carried by a non-survey event; the
# union of the survey scales (0-10) is accepted, as the pipeline does.
OTHER_SCORE_RANGE = (0, 10)
LOWER_WORD = re.compile(r"[a-z][a-z0-9_-]*", re.ASCII)
PRIORITIES = ("low", "normal", "high", "urgent")
AUTHORS = ("human", "bot")

DIMENSIONS = ("team", "channel", "region", "priority", "segment")
DIMENSION_DEFAULTS = {
    "team": "unknown",
    "channel": "unknown",
    "region": "unknown",
    "priority": "normal",
    "segment": "unknown",
}
GROUPINGS: dict[str, tuple[str, ...]] = {
    "overall": (),
    "team": ("team",),
    "channel": ("channel",),
    "region": ("region",),
    "priority": ("priority",),
    "segment": ("segment",),
    "team_channel": ("team", "channel"),
}
DEFAULT_SLA_S: dict[str, float] = {"urgent": 300, "high": 900, "normal": 3600, "low": 14400}

COUNT_NAMES = (
    "opened",
    "resolutions",
    "reopens",
    "one_touch_resolutions",
    "frt_count",
    "frt_breaches",
    "reply_count",
    "resolution_count",
    "csat_responses",
    "csat_satisfied",
    "nps_responses",
    "nps_promoters",
    "nps_detractors",
    "ces_responses",
    "ces_easy",
    "messages_customer",
    "messages_agent_human",
    "messages_agent_bot",
    "events",
)
SUM_US_NAMES = ("frt_sum_us", "reply_sum_us", "resolution_sum_us")
SCORE_SUM_NAMES = ("csat_sum", "ces_sum")
SAMPLE_NAMES = ("frt_samples_s", "reply_samples_s", "resolution_samples_s")

MinuteKey = tuple[str, tuple[str, ...], int]


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


class Rejected(Exception):
    """An event the contract refuses; ``reason`` is its dead-letter reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class ValidEvent:
    """The parts of a valid event the KPI rules use. Times are UTC epoch microseconds."""

    event_id: str
    type: str
    conversation_id: str
    occurred_us: int
    fields: dict[str, Any]  # every known optional field that was present (not null)


_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    mp = (month + 9) % 12
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_timestamp(text: str) -> int:
    """RFC 3339 with a mandatory offset -> UTC epoch microseconds; raises ValueError.

    Fractions of any length are truncated (never rounded) to microseconds. CHOICE: year
    0000 and leap second :60 are refused (RFC 3339 allows both; the contract is silent).
    """
    m = _TIMESTAMP.fullmatch(text)
    if m is None:
        raise ValueError(text)
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    if year < 1 or not 1 <= month <= 12 or not 1 <= day <= _days_in_month(year, month):
        raise ValueError(text)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(text)
    fraction = m.group(7) or ""
    micros = int((fraction + "000000")[:6])
    offset_min = 0
    if m.group(9) is not None:
        off_h, off_m = int(m.group(10)), int(m.group(11))
        if off_h > 23 or off_m > 59:
            raise ValueError(text)
        offset_min = (off_h * 60 + off_m) * (1 if m.group(9) == "+" else -1)
    local_s = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    return (local_s - offset_min * 60) * US_PER_S + micros


def _no_constants(token: str) -> Any:
    raise ValueError(token)


def _is_utf8_text(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate(raw: bytes) -> ValidEvent:
    """The contract's checks in its order; raises :class:`Rejected` with the dead-letter reason.

    Within one reason class the first failing field in the contract's field table wins
    (CHOICE: the contract orders the classes, not the fields inside one class).
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected("invalid_utf8") from None
    try:
        obj = json.loads(text, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        # CHOICE: nesting too deep to decode counts as invalid JSON (RFC 8259 section 9
        # lets a parser limit nesting).
        raise Rejected("invalid_json") from None
    if not isinstance(obj, dict):
        raise Rejected("not_an_object")

    def present(name: str) -> bool:
        return obj.get(name) is not None

    etype = obj.get("type")
    known_type = isinstance(etype, str) and etype in EVENT_TYPES
    required = set(ALWAYS_REQUIRED)
    if known_type:
        required.update(REQUIRED_BY_TYPE.get(etype, ()))
    for name in FIELD_TABLE:
        if name in required and not present(name):
            raise Rejected(f"missing_field:{name}")
    if not known_type:
        raise Rejected("unknown_type")

    for name in FIELD_TABLE:
        if not present(name):
            continue
        value = obj[name]
        if name in STRING_FIELDS:
            ok = isinstance(value, str)
        elif name == "customer_value":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        else:  # score, schema_version: JSON integers only
            ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok:
            raise Rejected(f"wrong_type:{name}")

    occurred_us = 0
    for name in FIELD_TABLE:
        if not present(name):
            continue
        value = obj[name]
        if name in STRING_FIELDS:
            # CHOICE: a lone surrogate escape (\ud800) is not UTF-8 text: invalid value.
            bad = value == "" or not _is_utf8_text(value)
            if not bad and name == "occurred_at":
                try:
                    occurred_us = parse_timestamp(value)
                except ValueError:
                    bad = True
            elif not bad and name in ("channel", "segment"):
                bad = LOWER_WORD.fullmatch(value) is None
            elif not bad and name == "author":
                bad = value not in AUTHORS
            elif not bad and name == "priority":
                bad = value not in PRIORITIES
        elif name == "customer_value":
            # CHOICE: a JSON number too large for a double (1e999) is refused.
            bad = value < 0 or (isinstance(value, float) and not math.isfinite(value))
        elif name == "score":
            low, high = SCORE_RANGES.get(etype, OTHER_SCORE_RANGE)
            bad = not low <= value <= high
        else:  # schema_version
            bad = value != 1
        if bad:
            raise Rejected(f"invalid_value:{name}")

    optional = {
        name: obj[name] for name in FIELD_TABLE if name not in ALWAYS_REQUIRED and present(name)
    }
    return ValidEvent(obj["event_id"], etype, obj["conversation_id"], occurred_us, optional)


# ---------------------------------------------------------------------------------------------
# Aggregation
# ---------------------------------------------------------------------------------------------


def new_row() -> dict[str, Any]:
    """An empty minute row: counts, integer sums and sample lists."""
    row: dict[str, Any] = dict.fromkeys(COUNT_NAMES, 0)
    row.update(dict.fromkeys(SUM_US_NAMES, 0))
    row.update(dict.fromkeys(SCORE_SUM_NAMES, 0))
    for name in SAMPLE_NAMES:
        row[name] = []
    return row


@dataclass
class _Conversation:
    ids: set[str] = field(default_factory=set)
    last_event_us: int | None = None
    first_opened_us: int | None = None
    wait_since_us: int | None = None
    cycle_awaits_first_reply: bool = False
    human_agent_messages: int = 0
    ever_reopened: bool = False
    given: dict[str, str] = field(default_factory=dict)  # dimension values ever given

    def current(self, dim: str) -> str:
        return self.given.get(dim, DIMENSION_DEFAULTS[dim])


@dataclass
class Oracle:
    """Exact results of one clean pass.

    ``dead_letters``: reason -> count; ``late`` / ``duplicates`` / ``accepted``: event
    counts; ``minutes``: ``(grouping, group key, minute since the epoch)`` -> row (see
    :func:`new_row`), where the group key holds only the grouping's own dimensions (``()``
    for overall, ``(team, channel)`` for team_channel). Only minutes that received an
    accepted event have a row.
    """

    dead_letters: dict[str, int] = field(default_factory=dict)
    late: int = 0
    duplicates: int = 0
    accepted: int = 0
    minutes: dict[MinuteKey, dict[str, Any]] = field(default_factory=dict)
    # (partition, offset) of each accepted event -> (conversation id, its state right after
    # the event, see ``snapshot``): what a conversation-log record written after that event
    # must hold.
    states: dict[tuple[int, int], tuple[str, dict[str, Any]]] = field(default_factory=dict)

    def totals(self, grouping: str = "overall") -> dict[str, Any]:
        """Sum of every minute of one grouping (all its keys)."""
        total = new_row()
        for (name, _, _), row in self.minutes.items():
            if name != grouping:
                continue
            for k, v in row.items():
                total[k] = total[k] + v
        return total


class _Recompute:
    def __init__(
        self, allowed_lateness_s: float, retention_days: float, sla_s: Mapping[str, float]
    ) -> None:
        self.allowed_us = round(allowed_lateness_s * US_PER_S)
        self.retention_us = round(retention_days * 86400 * US_PER_S)
        self.sla_us = {p: round(s * US_PER_S) for p, s in sla_s.items()}
        self.out = Oracle()
        self.conversations: dict[str, _Conversation] = {}
        self.highest_accepted: dict[int, int] = {}  # partition -> highest occurred_at
        self.last_offset: dict[int, int] = {}

    def message(self, partition: int, offset: int, raw: bytes) -> None:
        previous = self.last_offset.get(partition)
        if previous is not None and offset <= previous:
            raise ValueError(f"partition {partition}: offset {offset} after {previous}")
        self.last_offset[partition] = offset
        try:
            event = validate(raw)
        except Rejected as rejected:
            dl = self.out.dead_letters
            dl[rejected.reason] = dl.get(rejected.reason, 0) + 1
            return
        conv = self.conversations.get(event.conversation_id)
        highest = self.highest_accepted.get(partition)
        # State lives 7 days (event time, the partition's highest accepted occurred_at)
        # after the conversation's last event; after that the conversation starts afresh.
        if (
            conv is not None
            and highest is not None
            and conv.last_event_us is not None
            and highest - conv.last_event_us > self.retention_us
        ):
            conv = None
            del self.conversations[event.conversation_id]
        if conv is not None and event.event_id in conv.ids:
            self.out.duplicates += 1
            return
        if highest is not None and highest - event.occurred_us > self.allowed_us:
            self.out.late += 1
            return
        if conv is None:
            conv = self.conversations[event.conversation_id] = _Conversation()
        self.accept(conv, event)
        self.out.states[(partition, offset)] = (event.conversation_id, snapshot(conv))
        if highest is None or event.occurred_us > highest:
            self.highest_accepted[partition] = event.occurred_us

    def accept(self, conv: _Conversation, event: ValidEvent) -> None:
        self.out.accepted += 1
        t = event.occurred_us
        for dim in (*DIMENSIONS, "customer_id"):
            if dim in event.fields:
                conv.given[dim] = event.fields[dim]
        counts: dict[str, int] = {"events": 1}
        samples: dict[str, int] = {}  # "frt" / "reply" / "resolution" -> microseconds
        scores: dict[str, int] = {}

        def close_wait() -> None:
            assert conv.wait_since_us is not None
            waited = max(0, t - conv.wait_since_us)
            conv.wait_since_us = None
            first_of_cycle = conv.cycle_awaits_first_reply
            conv.cycle_awaits_first_reply = False
            # Before the first conversation.opened every closed wait is a reply sample,
            # even after a reopen (Precise rules / Conversation state).
            if first_of_cycle and conv.first_opened_us is not None:
                samples["frt"] = waited
                if waited > self.sla_us[conv.current("priority")]:
                    counts["frt_breaches"] = 1
            else:
                samples["reply"] = waited

        kind = event.type
        if kind == "conversation.opened":
            counts["opened"] = 1
            if conv.first_opened_us is None:
                conv.first_opened_us = t
            conv.cycle_awaits_first_reply = True
            if conv.wait_since_us is None:
                conv.wait_since_us = t
        elif kind == "conversation.reopened":
            counts["reopens"] = 1
            conv.ever_reopened = True
            conv.cycle_awaits_first_reply = True
            if conv.wait_since_us is None:
                conv.wait_since_us = t
        elif kind == "message.customer":
            counts["messages_customer"] = 1
            if conv.wait_since_us is None:
                conv.wait_since_us = t
        elif kind == "message.agent":
            if event.fields.get("author", "human") == "bot":
                counts["messages_agent_bot"] = 1
            else:
                counts["messages_agent_human"] = 1
                conv.human_agent_messages += 1
                if conv.wait_since_us is not None:
                    close_wait()
        elif kind == "conversation.resolved":
            counts["resolutions"] = 1
            conv.wait_since_us = None
            if conv.first_opened_us is not None:
                samples["resolution"] = max(0, t - conv.first_opened_us)
            if not conv.ever_reopened and conv.human_agent_messages <= 1:
                counts["one_touch_resolutions"] = 1
        elif kind == "survey.csat":
            score = event.fields["score"]
            counts["csat_responses"] = 1
            counts["csat_satisfied"] = int(score >= 4)
            scores["csat_sum"] = score
        elif kind == "survey.nps":
            score = event.fields["score"]
            counts["nps_responses"] = 1
            counts["nps_promoters"] = int(score >= 9)
            counts["nps_detractors"] = int(score <= 6)
        elif kind == "survey.ces":
            score = event.fields["score"]
            counts["ces_responses"] = 1
            counts["ces_easy"] = int(score >= 5)
            scores["ces_sum"] = score
        # conversation.assigned: dimensions only.

        conv.ids.add(event.event_id)
        if conv.last_event_us is None or t > conv.last_event_us:
            conv.last_event_us = t

        minute = t // US_PER_MIN  # floor, also before 1970
        for grouping, dims in GROUPINGS.items():
            key = (grouping, tuple(conv.current(d) for d in dims), minute)
            row = self.out.minutes.get(key)
            if row is None:
                row = self.out.minutes[key] = new_row()
            for name, n in counts.items():
                row[name] += n
            for name, n in scores.items():
                row[name] += n
            for kind_name, us in samples.items():
                row[f"{kind_name}_count"] += 1
                row[f"{kind_name}_sum_us"] += us
                row[f"{kind_name}_samples_s"].append(us / US_PER_S)


def snapshot(conv: _Conversation) -> dict[str, Any]:
    """A conversation's state in plain values (compared with conversation-log records)."""
    return {
        "ids": sorted(conv.ids),
        "last_event_us": conv.last_event_us,
        "first_opened_us": conv.first_opened_us,
        "wait_since_us": conv.wait_since_us,
        "awaits_first_reply": conv.cycle_awaits_first_reply,
        "human_agent_messages": conv.human_agent_messages,
        "ever_reopened": conv.ever_reopened,
        "given": dict(sorted(conv.given.items())),
    }


def recompute(
    messages: Iterable[tuple[int, int, bytes]],
    *,
    allowed_lateness_s: float = 600,
    retention_days: float = 7,
    sla_s: Mapping[str, float] | None = None,
) -> Oracle:
    """One clean pass over ``(partition, offset, value)`` messages, in per-partition order."""
    sla = dict(DEFAULT_SLA_S)
    if sla_s is not None:
        sla.update(sla_s)
    run = _Recompute(allowed_lateness_s, retention_days, sla)
    for partition, offset, raw in messages:
        run.message(partition, offset, raw)
    return run.out
