"""Events/s of the simulator alone and of event validation alone, on the same machine.

    python bench/contract_throughput.py [--events 200000]

Validation runs on the simulator's own output (all event types, the channels' different
timestamp shapes, 1% malformed), so the mix is realistic. Compare with the pipeline's
per-event budget printed by bench/pipeline_throughput.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.core.errors import InvalidEvent
from pipeline.core.events import parse_event
from pipeline.simulator import SimulationParams, simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    params = SimulationParams(
        seed=3,
        start=datetime(2026, 11, 23, tzinfo=UTC),
        duration=timedelta(days=30),
        conversations_per_hour=2000,
        malformed_rate=0.01,
        duplicate_rate=0.01,
    )
    started = time.perf_counter()
    values: list[bytes] = []
    for ev in simulate(params):
        values.append(ev.value)
        if len(values) >= args.events:
            break
    sim_rate = len(values) / (time.perf_counter() - started)

    rejected = 0
    started = time.perf_counter()
    for value in values:
        try:
            parse_event(value)
        except InvalidEvent:
            rejected += 1
    val_rate = len(values) / (time.perf_counter() - started)
    print(f"simulator (generate only)      : {sim_rate:10,.0f} events/s")
    print(f"validation (parse_event only)  : {val_rate:10,.0f} events/s  ({rejected:,} rejected)")
    print(f"per event: simulate {1e6 / sim_rate:.1f} us, validate {1e6 / val_rate:.1f} us")


if __name__ == "__main__":
    main()
