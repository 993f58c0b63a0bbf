"""Memory over a long run: is RSS flat? (compute and sink workers at a steady rate)

    python bench/soak.py [--minutes 30] [--rate 2000] [--partitions 4]

Starts a broker (unless ``CXPULSE_BENCH_BOOTSTRAP`` is set), one sink and one compute worker,
produces simulated traffic at a steady rate for the whole run, samples each worker's RSS
every 30 s, and prints the samples, the RSS after warm-up, at the end and at its peak, and
the growth per hour fitted over the second half (where caches and chDB have warmed up).
Flat means: the second half grows by less than 5% of the warm RSS per hour.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kafka import KafkaProducer  # noqa: E402

from bench.harness import rss_mb  # noqa: E402
from pipeline.simulator import SimulationParams, simulate  # noqa: E402
from tests.kafka_harness import LocalKafka  # noqa: E402
from tests.pipeline_harness import PipelineHarness  # noqa: E402


def feed(h: PipelineHarness, rate: float, seconds: float, stop: threading.Event) -> None:
    """Produce simulated history at ``rate`` events/s, generated as it goes.

    A sparse org (1,000 conversations an hour): event time runs about 12 minutes per second
    at 2,000 events/s, so after about 14 minutes the first conversations pass their 7-day
    state retention and the number of live conversations levels off, as it does in a
    deployment that has run for a week. Growth after that is a leak, not more state.
    """
    params = SimulationParams(
        seed=3,
        start=datetime(2026, 1, 1, tzinfo=UTC),
        duration=timedelta(days=60),
        conversations_per_hour=1000,
    )
    events = simulate(params)
    producer = KafkaProducer(bootstrap_servers=h.bootstrap, acks=1, linger_ms=10)
    started = time.perf_counter()
    for i, ev in enumerate(events):
        if stop.is_set() or time.perf_counter() - started >= seconds:
            break
        ahead = started + i / rate - time.perf_counter()
        if ahead > 0.005:
            time.sleep(ahead)
        producer.send(h.topics["events"], key=ev.key.encode(), value=ev.value)
    producer.flush(60)
    producer.close()


def slope_per_hour(samples: list[tuple[float, float]]) -> float:
    n = len(samples)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    cov = sum((t - mt) * (v - mv) for t, v in samples)
    return cov / var * 3600 if var else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory(prefix="cxpulse-soak-") as tmp:
        work = Path(tmp)
        external = os.environ.get("CXPULSE_BENCH_BOOTSTRAP")
        kafka = None if external else LocalKafka.on_free_ports(work / "kafka")
        bootstrap = external or kafka.start()  # type: ignore[union-attr]
        try:
            h = PipelineHarness(bootstrap, work / "soak", partitions=args.partitions)
            h.cli("topics", "create")
            procs = {"sink": h.start_worker("sink"), "compute": h.start_worker("compute")}
            time.sleep(10)
            stop = threading.Event()
            feeder = threading.Thread(target=feed, args=(h, args.rate, seconds, stop), daemon=True)
            feeder.start()
            started = time.monotonic()
            samples: dict[str, list[tuple[float, float]]] = {name: [] for name in procs}
            while feeder.is_alive():
                t = time.monotonic() - started
                line = [f"t={t / 60:5.1f} min"]
                for name, proc in procs.items():
                    mb = rss_mb(proc.pid)
                    samples[name].append((t, mb))
                    line.append(f"{name} {mb:6.0f} MB")
                print("  ".join(line), flush=True)
                feeder.join(timeout=30)
            stop.set()
            print(f"lag at the end: {h.lag()} messages")
            for name, series in samples.items():
                half = [s for s in series if s[0] >= seconds / 2]
                warm = half[0][1] if half else series[-1][1]
                growth = slope_per_hour(half)
                verdict = "flat" if abs(growth) < 0.05 * warm else "NOT flat"
                print(
                    f"{name}: RSS after warm-up {warm:.0f} MB, at the end {series[-1][1]:.0f} MB, "
                    f"peak {max(v for _, v in series):.0f} MB; second half {growth:+.1f} MB/h "
                    f"({verdict})"
                )
            for proc in procs.values():
                h.stop(proc)
        finally:
            if kafka is not None:
                kafka.stop()


if __name__ == "__main__":
    main()
