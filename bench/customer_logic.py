"""Per-event cost of the customer work the compute role does, next to its own, in one run.

    python bench/customer_logic.py [--events 100000]

On simulator output (a month of history, all event types, churn-prone customers), each
candidate runs over the same accepted events, best of three, and is printed in
microseconds per event and as a multiple of ``json.loads`` of the event's bytes (the
cheapest thing any consumer does with a message), so the figures compare across machines:

* compute without customers: ``parse_event`` + gate (duplicate/late check and
  ``apply_event``), i.e. the per-event work the compute role does anyway;
* what customer state adds there: ``customer_fact`` for every accepted event, the encoding
  of the facts (one record per customer per batch of 500 events, as the compute role would
  produce them; and one record per fact for comparison), and ``followup_record``;
* for reference, the customer role's own cost per fact (``CustomerLogic.process`` on the
  facts in batches), which runs in its own consumer group, not on the compute role.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.core.errors import InvalidEvent
from pipeline.core.events import parse_event
from pipeline.simulator import SimulationParams, simulate
from streams.conversation import ConversationState
from streams.customers.facts import customer_fact, encode_facts, group_by_customer
from streams.customers.followups import followup_record
from streams.customers.logic import CustomerLogic
from streams.customers.rules import Rules
from streams.gate import PartitionGate, Verdict
from streams.runtime.contracts import InputMessage

SLA = {"urgent": 300_000_000, "high": 900_000_000, "normal": 3_600_000_000, "low": 14_400_000_000}
BATCH = 500


def best(fn: Callable[[], Any], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


class MemoryState:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def items(self) -> Any:
        return iter(list(self.data.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    params = SimulationParams(
        seed=3,
        start=datetime(2026, 11, 23, tzinfo=UTC),
        duration=timedelta(days=30),
        conversations_per_hour=300,
    )
    raw: list[tuple[int, bytes, int]] = []  # (offset, value, kafka timestamp ms)
    for ev in simulate(params):
        raw.append((len(raw), ev.value, int(ev.arrival.timestamp() * 1000)))
        if len(raw) >= args.events:
            break
    values = [v for _, v, _ in raw]

    def compute_only() -> None:
        gate = PartitionGate(
            allowed_lateness_us=600_000_000, retention_us=7 * 86_400_000_000, sla_us=SLA
        )
        states: dict[str, ConversationState] = {}
        for offset, value, _ in raw:
            try:
                event = parse_event(value)
            except InvalidEvent:
                continue
            out = gate.decide(states.get(event.conversation_id), event, offset)
            if out.verdict is Verdict.ACCEPTED:
                states[event.conversation_id] = out.state  # type: ignore[assignment]

    # The accepted events with their (live) state and contribution, for the customer calls.
    accepted: list[tuple[Any, ConversationState, Any, tuple[int, int, int]]] = []
    gate = PartitionGate(
        allowed_lateness_us=600_000_000, retention_us=7 * 86_400_000_000, sla_us=SLA
    )
    states: dict[str, ConversationState] = {}
    for offset, value, ts in raw:
        event = parse_event(value)
        out = gate.decide(states.get(event.conversation_id), event, offset)
        if out.verdict is Verdict.ACCEPTED:
            assert out.state is not None
            states[event.conversation_id] = out.state
            accepted.append((event, out.state, out.contribution, (0, offset, ts)))
    n = len(accepted)

    def loads() -> None:
        for v in values:
            json.loads(v)

    def facts_only() -> None:
        for event, state, contrib, source in accepted:
            customer_fact(event, state, contrib, source)

    facts = [customer_fact(e, s, c, src) for e, s, c, src in accepted]
    emitted = [f for f in facts if f is not None]

    def encode_grouped() -> None:
        for i in range(0, len(emitted), BATCH):
            group_by_customer(emitted[i : i + BATCH])

    def encode_each() -> None:
        for f in emitted:
            encode_facts([f])

    def followups() -> None:
        for event, state, _, source in accepted:
            followup_record(event, state, source)

    records = [
        InputMessage("f", 0, i, key, value, 0)
        for i, (key, value) in enumerate(
            kv
            for j in range(0, len(emitted), BATCH)
            for kv in group_by_customer(emitted[j : j + BATCH])
        )
    ]

    def customer_role() -> None:
        logic = CustomerLogic(Rules(source_partitions=1))
        state = MemoryState()
        logic.open(state)
        for i in range(0, len(records), 200):
            result = logic.process(records[i : i + 200], state)
            for key, value in result.changelog.items():
                if value is None:
                    state.data.pop(key, None)
                else:
                    state.data[key] = value

    base = best(loads) / len(values)
    rows = [
        ("json.loads (baseline)", base, len(values)),
        ("compute: parse_event + gate", best(compute_only) / len(values), len(values)),
        ("customer_fact", best(facts_only) / n, n),
        ("  + facts encoded per customer and batch", best(encode_grouped) / n, n),
        ("  (facts encoded one record each)", best(encode_each) / n, n),
        ("followup_record", best(followups) / n, n),
    ]
    added = rows[2][1] + rows[3][1] + rows[5][1]
    print(
        f"{len(values):,} events, {n:,} accepted, {len(emitted):,} facts "
        f"({len(emitted) / n:.0%}), {len(records):,} fact records of <= {BATCH} events"
    )
    print(f"{'':44s} {'us/event':>9s} {'x json.loads':>13s}")
    for name, seconds, _ in rows:
        print(f"{name:44s} {seconds * 1e6:9.2f} {seconds / base:13.2f}")
    print(
        f"{'customer work on the compute role (sum)':44s} {added * 1e6:9.2f} {added / base:13.2f}"
    )
    share = added / rows[1][1]
    print(f"added to the compute role's own per-event work: {share:.0%}")
    role = best(customer_role, repeat=1)
    print(
        f"customer role (own consumer group): {role / len(emitted) * 1e6:.1f} us per fact, "
        f"{role / base / len(emitted):.1f} x json.loads"
    )


if __name__ == "__main__":
    main()
