"""The hot path side by side: one topic, one run, ratios (issue "The hot path at batch speed").

    python bench/pipeline_throughput.py [--events N] [--partitions P] [--skip-quix]
        [--latency-rate R] [--latency-seconds S] [--replay-day]

Prints events/s of
  (a) a bare aiokafka consumer that only runs ``json.loads`` on each value;
  (c) a Quix Streams application computing per-minute counts per team (event time);
  (b) the cxpulse compute role alone (one worker; first commit to last, steady state), with
      and without customer state (the customer role runs in every compute worker);
  (w) the whole pipeline (one compute + one sink worker into embedded chDB, until the sink
      has committed everything);
all on the same backlog in the same topic, with the ratios the issue sets targets for
(b/c >= 1.0, b/a >= 0.25, w/b >= 0.8); then event -> visible-in-ClickHouse latency (p50 and
p99 from the sink's ``cxpulse_visibility_latency_seconds``) at a steady produce rate, peak
RSS of every process, and the replay time of one simulated day of a 2,000-conversation-a-day
organisation. Starts its own broker unless ``CXPULSE_BENCH_BOOTSTRAP`` is set. The machine
is shared and noisy: compare ratios, which are measured side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kafka import KafkaProducer, TopicPartition  # noqa: E402

from bench.harness import (  # noqa: E402
    committed,
    consumer_process_rate,
    cpu_seconds,
    histogram_quantiles,
    rss_peak_mb,
    scrape,
    timed_until,
)
from pipeline.simulator import SimulationParams, simulate  # noqa: E402
from tests.kafka_harness import LocalKafka, free_port_block  # noqa: E402
from tests.pipeline_harness import PipelineHarness  # noqa: E402


def simulated(n: int, seed: int = 1, **overrides: object) -> list[tuple[bytes, bytes]]:
    params = SimulationParams(
        seed=seed,
        start=datetime(2026, 11, 23, 8, 0, tzinfo=UTC),
        duration=timedelta(days=7),
        conversations_per_hour=3000,
    )
    params = replace(params, **overrides)  # type: ignore[arg-type]
    out: list[tuple[bytes, bytes]] = []
    for ev in simulate(params):
        out.append((ev.key.encode(), ev.value))
        if len(out) >= n:
            break
    return out


def produce(bootstrap: str, topic: str, data: list[tuple[bytes, bytes]]) -> None:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=512 * 1024
    )
    for key, value in data:
        producer.send(topic, key=key, value=value)
    producer.flush(120)
    producer.close()


async def _bare(bootstrap: str, topic: str, n: int) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    seen = 0
    started = time.perf_counter()
    try:
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for msgs in batch.values():
                for m in msgs:
                    json.loads(m.value)
                seen += len(msgs)
    finally:
        await consumer.stop()
    return n / (time.perf_counter() - started)


_QUIX_APP = r"""
import sys
from datetime import datetime, timedelta
from quixstreams import Application

bootstrap, topic, group = sys.argv[1:4]
app = Application(broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
                  state_dir=sys.argv[4], loglevel="WARNING", use_changelog_topics=True,
                  commit_interval=0.5)

def ts(value, headers, timestamp, timestamp_type):
    when = datetime.fromisoformat(value["occurred_at"].replace("Z", "+00:00"))
    return int(when.timestamp() * 1000)

events = app.topic(topic, value_deserializer="json", timestamp_extractor=ts)
sdf = app.dataframe(events)
sdf = sdf.group_by(lambda v: v.get("team") or "unknown", name="team")
sdf = sdf.tumbling_window(timedelta(minutes=1)).count().final()
app.run()
"""


def quix_rate(bootstrap: str, topic: str, n: int, partitions: int, work: Path) -> float:
    group = f"quix-bench-{os.getpid()}"
    script = work / "quix_app.py"
    script.write_text(_QUIX_APP)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    cmd = [sys.executable, str(script), bootstrap, topic, group, str(work / "quix-state")]
    return consumer_process_rate(cmd, bootstrap, group, tps, n, work / "quix.log")[0]


def harness(bootstrap: str, work: Path, name: str, partitions: int, events: str) -> PipelineHarness:
    """Fresh groups and output topics, reading the shared ``events`` topic."""
    h = PipelineHarness(bootstrap, work / name, partitions=partitions)
    h.topics["events"] = events
    h.cli("topics", "create")
    return h


def compute_alone(h: PipelineHarness, n: int, **env: str) -> tuple[float, float]:
    """Events/s of one compute worker (steady state) and its peak RSS (MB)."""
    tps = [TopicPartition(h.topics["events"], p) for p in range(h.partitions)]
    group = f"{h.app_id}-compute"
    proc = h.start_worker("compute", **env)
    timed_until(lambda: committed(h.bootstrap, group, tps) > 0, 180)
    first_t, first_n = time.perf_counter(), committed(h.bootstrap, group, tps)
    timed_until(lambda: committed(h.bootstrap, group, tps) >= n, 1800)
    rate = (n - first_n) / (time.perf_counter() - first_t)
    rss = rss_peak_mb(proc.pid)
    cpu = cpu_seconds(proc.pid)
    print(f"    CPU used: {cpu:.1f}s ({cpu / n * 1e6:.1f} us per event, start-up included)")
    h.stop(proc)
    return rate, rss


def whole_pipeline(h: PipelineHarness, n: int) -> tuple[float, float, float]:
    """Events/s from the compute's first commit until the sink committed everything."""
    tps = [TopicPartition(h.topics["events"], p) for p in range(h.partitions)]
    sink = h.start_worker("sink")
    time.sleep(3)  # the sink opens chDB and migrates first
    compute = h.start_worker("compute")
    group = f"{h.app_id}-compute"
    timed_until(lambda: committed(h.bootstrap, group, tps) > 0, 180)
    first_t, first_n = time.perf_counter(), committed(h.bootstrap, group, tps)
    h.wait_drained(timeout=1800, settle=0.1)
    rate = (n - first_n) / (time.perf_counter() - first_t)
    rss = (rss_peak_mb(compute.pid), rss_peak_mb(sink.pid))
    cpu = (cpu_seconds(compute.pid), cpu_seconds(sink.pid))
    print(
        f"    CPU used: compute {cpu[0]:.1f}s, sink {cpu[1]:.1f}s "
        f"({cpu[0] / n * 1e6:.1f} and {cpu[1] / n * 1e6:.1f} us per event, start-up included)",
        flush=True,
    )
    h.stop(compute)
    h.stop(sink)
    return rate, rss[0], rss[1]


def latency_at_rate(h: PipelineHarness, rate: float, seconds: float) -> dict[str, float]:
    """Event (Kafka timestamp) -> its minute row committed in ClickHouse, at a steady rate."""
    data = simulated(int(rate * seconds) + 1, seed=9)
    port = free_port_block(1)
    sink = h.start_worker("sink", CXPULSE_PORTS__SINK_METRICS=str(port))
    compute = h.start_worker("compute", CXPULSE_COMPUTE__BATCH_MAX_MESSAGES="5000")
    time.sleep(10)  # both joined and idle before the clock starts
    producer = KafkaProducer(bootstrap_servers=h.bootstrap, acks=1, linger_ms=5)
    started = time.perf_counter()
    for i, (key, value) in enumerate(data):
        ahead = started + i / rate - time.perf_counter()
        if ahead > 0.002:
            time.sleep(ahead)
        producer.send(h.topics["events"], key=key, value=value)
    producer.flush(60)
    achieved = len(data) / (time.perf_counter() - started)
    h.wait_drained(timeout=900, settle=0.5)
    text = scrape(port)
    quantiles = histogram_quantiles(text, "cxpulse_visibility_latency_seconds", (0.5, 0.99))
    out = {
        "produced_rate": achieved,
        "p50": quantiles[0.5],
        "p99": quantiles[0.99],
        "compute_rss": rss_peak_mb(compute.pid),
        "sink_rss": rss_peak_mb(sink.pid),
    }
    h.stop(compute)
    h.stop(sink)
    return out


def replay_day(bootstrap: str, work: Path, partitions: int) -> tuple[int, float]:
    """One simulated day of a 2,000-conversation-a-day org, from nothing to all stored."""
    data = simulated(
        10**9, seed=5, duration=timedelta(days=1), conversations_per_hour=2000 / 24,
        seasonality=False,
    )  # fmt: skip
    h = PipelineHarness(bootstrap, work / "day", partitions=partitions)
    h.cli("topics", "create")
    produce(bootstrap, h.topics["events"], data)
    started = time.perf_counter()
    sink = h.start_worker("sink")
    compute = h.start_worker("compute")
    h.wait_drained(timeout=1800, settle=0.1)
    elapsed = time.perf_counter() - started
    h.stop(compute)
    h.stop(sink)
    return len(data), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--latency-rate", type=float, default=5000.0)
    parser.add_argument("--latency-seconds", type=float, default=60.0)
    parser.add_argument("--skip-quix", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-replay", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cxpulse-bench-") as tmp:
        work = Path(tmp)
        external = os.environ.get("CXPULSE_BENCH_BOOTSTRAP")
        kafka = None if external else LocalKafka.on_free_ports(work / "kafka")
        bootstrap = external or kafka.start()  # type: ignore[union-attr]
        try:
            run(args, bootstrap, work)
        finally:
            if kafka is not None:
                kafka.stop()


def run(args: argparse.Namespace, bootstrap: str, work: Path) -> None:
    base = PipelineHarness(bootstrap, work / "base", partitions=args.partitions)
    base.cli("topics", "create")
    topic = base.topics["events"]
    print(f"generating and producing {args.events:,} simulated events ...", flush=True)
    data = simulated(args.events)
    produce(bootstrap, topic, data)
    n = len(data)
    a = asyncio.run(_bare(bootstrap, topic, n))
    print(f"(a) bare aiokafka consumer + json.loads    : {a:10,.0f} events/s", flush=True)
    c = None
    if not args.skip_quix:
        c = quix_rate(bootstrap, topic, n, args.partitions, work)
        print(f"(c) Quix Streams, per-team minute counts   : {c:10,.0f} events/s", flush=True)
    b, compute_rss = compute_alone(harness(bootstrap, work, "b", args.partitions, topic), n)
    print(f"(b) cxpulse compute role (1 worker)        : {b:10,.0f} events/s", flush=True)
    b0, _ = compute_alone(
        harness(bootstrap, work, "b0", args.partitions, topic),
        n,
        CXPULSE_CUSTOMERS__ENABLED="false",
    )
    print(f"    the same without customer state       : {b0:10,.0f} events/s", flush=True)
    w, w_compute_rss, w_sink_rss = whole_pipeline(
        harness(bootstrap, work, "w", args.partitions, topic), n
    )
    print(f"(w) whole pipeline into chDB (1+1 workers) : {w:10,.0f} events/s", flush=True)
    print(f"ratio b/a = {b / a:.3f}   (target >= 0.25)")
    if c:
        print(f"ratio b/c = {b / c:.2f}    (target >= 1.0)")
    print(f"ratio w/b = {w / b:.2f}    (target >= 0.8)")
    print(f"customer state costs the compute role {1 - b / b0:.0%} (target: less than half)")
    print(
        f"peak RSS: compute alone {compute_rss:.0f} MB; whole pipeline: compute "
        f"{w_compute_rss:.0f} MB, sink {w_sink_rss:.0f} MB (chDB alone is ~290 MB)"
    )
    if not args.skip_latency:
        lat = latency_at_rate(
            harness(bootstrap, work, "lat", args.partitions, f"{topic}-lat"),
            args.latency_rate,
            args.latency_seconds,
        )
        print(
            f"visibility at a steady {lat['produced_rate']:,.0f} events/s for "
            f"{args.latency_seconds:.0f}s: p50 <= {lat['p50']}s, p99 <= {lat['p99']}s "
            "(histogram bucket bounds; target p99 <= 5 s at 5,000 events/s); peak RSS compute "
            f"{lat['compute_rss']:.0f} MB, sink {lat['sink_rss']:.0f} MB"
        )
    if not args.skip_replay:
        events, seconds = replay_day(bootstrap, work, args.partitions)
        print(
            f"replay of one simulated day (2,000 conversations, {events:,} events): "
            f"{seconds:.1f}s from start-up to all stored"
        )


if __name__ == "__main__":
    main()
