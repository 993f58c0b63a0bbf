"""Customer facts: what one accepted event tells the customer role, and their encoding.

The compute role owns conversations (keyed by ``conversation_id``); a customer's
conversations live on many partitions. So for each accepted event whose conversation has a
customer ("the conversation's current ``customer_id`` after the event's own fields"), the
compute role emits a compact fact keyed by ``customer_id`` inside its batch transaction, and
the customer role, partitioned by customer, folds the facts. A fact carries everything the
customer rules need, and its source position (partition, offset, Kafka timestamp), which is
its identity (de-duplication) and its arrival order (``customer_value``: latest by arrival).

Events that change nothing the customer rules read (a message without an FRT breach, an
assignment) produce no fact unless they carry ``customer_id``, ``segment`` or
``customer_value``: about three quarters of the traffic never leaves the compute role.

Encoding (versioned, compact JSON): ``[1, fact, fact, ...]``, each fact an array in
:data:`FACT_FIELDS` order; one record may hold several facts of one customer (a batch's).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.core.events import Event
from streams.conversation import Contribution, ConversationState

__all__ = [
    "FACTS_VERSION",
    "FACT_FIELDS",
    "FLOOR_HEADER",
    "KINDS",
    "CustomerFact",
    "FactError",
    "customer_fact",
    "decode_facts",
    "encode_facts",
    "floor_header",
    "group_by_customer",
    "read_floor",
]

FACTS_VERSION = 1
# Header of every facts record: "<source partition>:<floor>", the floor (microseconds) being
# a time no fact that source partition sends from this record on is older than. Records
# with no facts (value ``[1]``) carry only it: the compute role's heartbeats.
FLOOR_HEADER = "cxpulse-floor"
# Event type -> fact kind (short, stable names: they are stored in customer state).
KINDS: dict[str, str] = {
    "conversation.opened": "opened",
    "conversation.reopened": "reopened",
    "conversation.resolved": "resolved",
    "survey.csat": "csat",
    "survey.nps": "nps",
    "survey.ces": "ces",
    "message.customer": "message",
    "message.agent": "message",
    "conversation.assigned": "assigned",
}
# Kinds that always matter to the customer rules; the others only with a breach or a
# customer field on the event.
_ALWAYS = frozenset({"opened", "reopened", "resolved", "csat", "nps", "ces"})
FACT_FIELDS = (
    "customer_id",
    "conversation_id",
    "kind",
    "occurred_us",
    "team",
    "segment",
    "priority",
    "resolved",
    "breach",
    "score",
    "carried_segment",
    "carried_value",
    "partition",
    "offset",
    "timestamp_ms",
)
_N_FIELDS = len(FACT_FIELDS)
_KIND_VALUES = frozenset(KINDS.values())


class FactError(ValueError):
    """A customer-facts record that is not version-1 facts (a bug upstream, never data)."""


@dataclass(slots=True, frozen=True)
class CustomerFact:
    """One accepted event as the customer rules see it.

    ``team``, ``segment``, ``priority``: the conversation's values at the event (after the
    event's own fields); ``resolved``: the conversation is resolved after the event;
    ``breach``: the event completed a first response above its SLA target (at
    ``priority``); ``score``: the survey answer; ``carried_segment`` / ``carried_value``:
    the ``segment`` / ``customer_value`` fields *of the event itself*, None when absent;
    (``partition``, ``offset``): the event's source position, ``timestamp_ms`` its Kafka
    timestamp.
    """

    customer_id: str
    conversation_id: str
    kind: str
    occurred_us: int
    team: str
    segment: str
    priority: str
    resolved: bool
    breach: bool
    score: int | None
    carried_segment: str | None
    carried_value: float | None
    partition: int
    offset: int
    timestamp_ms: int

    @property
    def position(self) -> tuple[int, int]:
        """Source (partition, offset): the fact's identity."""
        return (self.partition, self.offset)

    def to_list(self) -> list[Any]:
        return [
            self.customer_id,
            self.conversation_id,
            self.kind,
            self.occurred_us,
            self.team,
            self.segment,
            self.priority,
            1 if self.resolved else 0,
            1 if self.breach else 0,
            self.score,
            self.carried_segment,
            self.carried_value,
            self.partition,
            self.offset,
            self.timestamp_ms,
        ]

    @classmethod
    def from_list(cls, data: Sequence[Any]) -> CustomerFact:
        if len(data) != _N_FIELDS:
            raise FactError(f"a fact has {_N_FIELDS} fields, got {len(data)}")
        (cid, conv, kind, t, team, seg, prio, res, brk, score, cseg, cval, p, o, ts) = data
        if type(cid) is not str or type(conv) is not str or kind not in _KIND_VALUES:
            raise FactError(f"bad fact identity: {data[:3]!r}")
        if type(t) is not int or type(p) is not int or type(o) is not int or type(ts) is not int:
            raise FactError(f"bad fact time or position: {data!r}")
        return cls(
            cid,
            conv,
            kind,
            t,
            team,
            seg,
            prio,
            bool(res),
            bool(brk),
            score,
            cseg,
            None if cval is None else float(cval),
            p,
            o,
            ts,
        )


def customer_fact(
    event: Event,
    state_after: ConversationState,
    contribution: Contribution,
    source: tuple[int, int, int],
) -> CustomerFact | None:
    """The fact of one accepted event, or None (no customer, or nothing the rules read).

    ``state_after`` is the conversation after ``apply_event``; ``contribution`` what that
    call returned; ``source`` = (partition, offset, Kafka timestamp in ms) of the event.
    Pure and cheap: the compute role calls it once per accepted event.
    """
    customer = state_after.customer_id
    if customer is None:
        return None  # "Facts count only while a customer is known."
    kind = KINDS[event.type]
    breach = "frt_breaches" in contribution.increments
    if (
        kind not in _ALWAYS
        and not breach
        and event.customer_id is None
        and event.segment is None
        and event.customer_value is None
    ):
        return None
    partition, offset, timestamp_ms = source
    return CustomerFact(
        customer,
        event.conversation_id,
        kind,
        event.occurred_us,
        contribution.team,
        contribution.segment,
        contribution.priority,
        state_after.resolved,
        breach,
        event.score,
        event.segment,
        event.customer_value,
        partition,
        offset,
        timestamp_ms,
    )


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode
_decode = json.JSONDecoder().decode


def encode_facts(facts: Iterable[CustomerFact]) -> bytes:
    """One record value holding ``facts`` (normally all of one customer)."""
    out: list[Any] = [FACTS_VERSION]
    out.extend(f.to_list() for f in facts)
    return _encode(out).encode("utf-8")


def decode_facts(value: bytes) -> list[CustomerFact]:
    """The facts of one record value; raises :class:`FactError` on anything else."""
    try:
        data = _decode(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FactError(f"not JSON: {exc}") from None
    if type(data) is not list or not data or data[0] != FACTS_VERSION:
        head = data[0] if type(data) is list and data else data
        raise FactError(f"unknown customer-facts version {head!r} (this build reads 1)")
    facts = []
    for item in data[1:]:
        if type(item) is not list:
            raise FactError(f"a fact must be an array, got {type(item).__name__}")
        facts.append(CustomerFact.from_list(item))
    return facts


def group_by_customer(facts: Iterable[CustomerFact]) -> list[tuple[bytes, bytes]]:
    """(key, value) records for a batch's facts: one record per customer, in first-seen order.

    Keyed by ``customer_id`` (UTF-8), so a customer's facts reach one partition of the
    customer-facts topic. Per-event records (``encode_facts([fact])``) are equally valid.
    """
    grouped: dict[str, list[CustomerFact]] = {}
    for fact in facts:
        grouped.setdefault(fact.customer_id, []).append(fact)
    return [(cid.encode("utf-8"), encode_facts(fs)) for cid, fs in grouped.items()]


def floor_header(partition: int, floor_us: int) -> tuple[str, bytes]:
    return (FLOOR_HEADER, f"{partition}:{floor_us}".encode())


def read_floor(headers: Iterable[tuple[str, bytes]] | None) -> tuple[int, int] | None:
    """(source partition, floor) of a facts record, None without the header."""
    for key, value in headers or ():
        if key == FLOOR_HEADER:
            try:
                partition, floor = value.decode().split(":")
                return int(partition), int(floor)
            except ValueError:
                raise FactError(f"bad {FLOOR_HEADER} header {value!r}") from None
    return None
