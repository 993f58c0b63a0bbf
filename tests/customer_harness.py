"""The customer path in one process: events -> gate -> facts -> customer logic -> rows.

What the compute and customer roles do per message, without Kafka: raw event bytes per
source partition go through ``parse_event`` -> ``PartitionGate`` -> ``apply_event`` ->
``customer_fact`` / ``followup_record``; the facts of each compute batch are grouped per
customer into records of a customer-facts partition (Kafka's default partitioner); each
customer partition's :class:`CustomerLogic` consumes its records in batches that interleave
the source partitions in a seeded, skewable order, and every changelog entry becomes rows
through the sink's row builders. Redelivered fact records and logic restarts (a new
instance opened on the committed state) can be injected.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kafka.partitioner.default import murmur2

from pipeline.core.errors import InvalidEvent
from pipeline.core.events import parse_event
from pipeline.simulator import SimEvent
from sinks.clickhouse.customer_rows import customer_log_rows, followup_row
from streams.conversation import ConversationState
from streams.customers.facts import CustomerFact, customer_fact, floor_header, group_by_customer
from streams.customers.followups import DEFAULT_RULES, FollowupRules, followup_record
from streams.customers.logic import CustomerLogic
from streams.customers.rules import Rules
from streams.gate import PartitionGate, Verdict
from streams.runtime.contracts import InputMessage

DEFAULT_SLA_US = {"urgent": 300_000_000, "high": 900_000_000, "normal": 3_600_000_000}
DEFAULT_SLA_US["low"] = 14_400_000_000


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2 of the key)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True, slots=True)
class SourceMessage:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes
    value: bytes


def source_messages(events: Iterable[SimEvent], partitions: int) -> list[SourceMessage]:
    """Simulator output on the events topic: keyed by conversation, offsets per partition."""
    offsets = [0] * partitions
    out = []
    for ev in events:
        key = ev.key.encode()
        p = partition_for(key, partitions)
        ts = int(ev.arrival.timestamp() * 1000)
        out.append(SourceMessage(p, offsets[p], ts, key, ev.value))
        offsets[p] += 1
    return out


class DictState:
    """The runtime's committed state of one partition (a dict), as a StateReader."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(list(self.data.items()))

    def commit(self, changelog: dict[bytes, bytes | None]) -> None:
        for key, value in changelog.items():
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value


@dataclass
class Compute:
    """The compute role's per-partition work that matters to customers."""

    gates: dict[int, PartitionGate] = field(default_factory=dict)
    states: dict[int, dict[str, ConversationState]] = field(default_factory=dict)
    followup_rules: FollowupRules = DEFAULT_RULES
    floor: int | None = None
    end_floor: int | None = None

    def batch(self, msgs: list[SourceMessage]) -> tuple[list[CustomerFact], list[bytes]]:
        """The facts and follow-ups of one partition's messages; :attr:`floor` is the floor
        the compute role stamps on the facts records (its watermark at the start, or its
        first accepted event, minus the lateness)."""
        facts: list[CustomerFact] = []
        followups: list[bytes] = []
        start: int | None = None
        if msgs and msgs[0].partition in self.gates:
            start = self.gates[msgs[0].partition].watermark_us
        for m in msgs:
            gate = self.gates.get(m.partition)
            if gate is None:
                gate = self.gates[m.partition] = PartitionGate(
                    allowed_lateness_us=600_000_000,
                    retention_us=7 * 86_400_000_000,
                    sla_us=DEFAULT_SLA_US,
                )
                self.states[m.partition] = {}
            states = self.states[m.partition]
            try:
                event = parse_event(m.value)
            except InvalidEvent:
                continue
            outcome = gate.decide(states.get(event.conversation_id), event, m.offset)
            if outcome.verdict is not Verdict.ACCEPTED:
                continue
            assert outcome.state is not None and outcome.contribution is not None
            states[event.conversation_id] = outcome.state
            if start is None:
                start = gate.watermark_us
            source = (m.partition, m.offset, m.timestamp_ms)
            fact = customer_fact(event, outcome.state, outcome.contribution, source)
            if fact is not None:
                facts.append(fact)
            record = followup_record(event, outcome.state, source, self.followup_rules)
            if record is not None:
                followups.append(record)
        self.floor = None if start is None else start - 600_000_000
        end = self.gates[msgs[0].partition].watermark_us if msgs else None
        self.end_floor = None if end is None else end - 600_000_000
        return facts, followups


@dataclass
class Run:
    """Everything the run wrote, as the sink would (all versions), and the final tables."""

    health_rows: list[tuple[Any, ...]] = field(default_factory=list)
    change_rows: list[tuple[Any, ...]] = field(default_factory=list)
    followup_rows: list[tuple[Any, ...]] = field(default_factory=list)
    progress_rows: list[tuple[Any, ...]] = field(default_factory=list)  # customer_progress
    watermarks: dict[int, int] = field(default_factory=dict)  # customer partition -> W
    facts: int = 0
    records: int = 0

    def health(self) -> dict[str, tuple[Any, ...]]:
        """customer_health FINAL: the highest version per customer."""
        best: dict[str, tuple[Any, ...]] = {}
        for row in self.health_rows:
            if row[0] not in best or row[2] >= best[row[0]][2]:
                best[row[0]] = row
        return best

    def changes(self) -> dict[tuple[str, Any], tuple[Any, ...]]:
        """customer_risk_changes FINAL: highest version per (customer, at), deleted hidden."""
        best: dict[tuple[str, Any], tuple[Any, ...]] = {}
        for row in self.change_rows:
            key = (row[0], row[1])
            if key not in best or row[7] >= best[key][7]:
                best[key] = row
        return {k: r for k, r in best.items() if r[8] == 0}

    def followups(self) -> dict[tuple[str, str], tuple[Any, ...]]:
        return {(r[0], r[1]): r for r in self.followup_rows}


def run_customers(
    messages: list[SourceMessage],
    *,
    source_partitions: int,
    customer_partitions: int = 3,
    rules: Rules | None = None,
    followup_rules: FollowupRules = DEFAULT_RULES,
    compute_batch: int = 300,
    customer_batch: int = 40,
    lead: dict[int, int] | None = None,
    redeliver: float = 0.0,
    restart_every: int = 0,
    seed: int = 0,
) -> Run:
    """Run the customer path over ``messages`` (see the module docstring).

    ``lead``: source partition -> messages it is processed ahead of the others at the start
    (cross-partition skew); ``redeliver``: probability that a fact record is delivered a
    second time later; ``restart_every``: every that many customer batches, the logic of
    that partition is replaced by a new instance opened on the committed state.
    """
    rules = rules or Rules()
    rng = random.Random(seed)
    per_source: list[list[SourceMessage]] = [[] for _ in range(source_partitions)]
    for m in messages:
        per_source[m.partition].append(m)
    cursor = [0] * source_partitions
    compute = Compute(followup_rules=followup_rules)
    queues: list[list[InputMessage]] = [[] for _ in range(customer_partitions)]
    read = [0] * customer_partitions
    fact_offsets = [0] * customer_partitions
    log_offsets = [0] * customer_partitions
    states = [DictState() for _ in range(customer_partitions)]
    logics = [CustomerLogic(rules) for _ in range(customer_partitions)]
    for logic, st in zip(logics, states, strict=True):
        logic.open(st)
    run = Run()
    batches = 0

    def produce(facts: list[CustomerFact], p: int, floor: int | None, end: int | None) -> None:
        """As the compute role's customer extension: the records, then the heartbeats."""
        headers = () if floor is None else (floor_header(p, floor),)
        for key, value in group_by_customer(facts):
            cp = partition_for(key, customer_partitions)
            msg = InputMessage(
                "cxpulse.customer-facts", cp, fact_offsets[cp], key, value, 0, headers
            )
            fact_offsets[cp] += 1
            queues[cp].append(msg)
            run.records += 1
            if redeliver and rng.random() < redeliver:
                again = InputMessage(msg.topic, cp, 0, key, value, 0, headers)
                queues[cp].insert(rng.randint(len(queues[cp]) - 1, len(queues[cp])), again)
        if end is not None and (floor is None or end // 60_000_000 > floor // 60_000_000):
            for cp in range(customer_partitions):
                beat = InputMessage(
                    "cxpulse.customer-facts", cp, fact_offsets[cp], None, b"[1]", 0,
                    (floor_header(p, end),),
                )  # fmt: skip
                fact_offsets[cp] += 1
                queues[cp].append(beat)

    def consume(cp: int, limit: int) -> None:
        nonlocal batches
        batch = queues[cp][read[cp] : read[cp] + limit]
        if not batch:
            return
        read[cp] += len(batch)
        result = logics[cp].process(batch, states[cp])
        states[cp].commit(result.changelog)
        for key, value in result.changelog.items():
            rows = customer_log_rows(key, value, partition=cp, offset=log_offsets[cp])
            log_offsets[cp] += 1
            run.health_rows.extend(rows.health)
            run.change_rows.extend(rows.changes)
            if rows.progress is not None:
                run.progress_rows.append(rows.progress)
        batches += 1
        if restart_every and batches % restart_every == 0:
            logics[cp] = CustomerLogic(rules)
            logics[cp].open(states[cp])

    def compute_step(p: int, n: int) -> None:
        chunk = per_source[p][cursor[p] : cursor[p] + n]
        cursor[p] += len(chunk)
        facts, followups = compute.batch(chunk)
        run.facts += len(facts)
        produce(facts, p, compute.floor, compute.end_floor)
        run.followup_rows.extend(followup_row(v) for v in followups)

    for p, n in (lead or {}).items():
        compute_step(p, n)
    while any(cursor[p] < len(per_source[p]) for p in range(source_partitions)):
        order = list(range(source_partitions))
        rng.shuffle(order)
        for p in order:
            compute_step(p, rng.randint(compute_batch // 2, compute_batch))
        for cp in range(customer_partitions):
            while read[cp] < len(queues[cp]):
                consume(cp, rng.randint(1, customer_batch))
    for cp in range(customer_partitions):
        while read[cp] < len(queues[cp]):
            consume(cp, customer_batch)
        wm = logics[cp].watermark_us
        if wm is not None:
            run.watermarks[cp] = wm
    return run
