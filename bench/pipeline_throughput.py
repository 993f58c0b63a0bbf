"""Pipeline throughput, latency and memory, side by side in one run on one topic.

    python bench/pipeline_throughput.py [--events N] [--latency-rate R] [--latency-seconds S]

Prints events/s for (a) a bare aiokafka consumer that only deserializes, (b) the full
cxpulse pipeline (compute + sink workers, conversation state, minute partials, chDB),
(c) a Quix Streams application computing per-minute counts per team on the same topic, and
the ratios b/a and b/c; then end-to-end visibility latency (event produced -> its minute
row committed in ClickHouse, the sink's ``cxpulse_visibility_latency_seconds`` histogram) at a
steady produce rate, and the workers' peak RSS. Starts its own broker unless
``CXPULSE_BENCH_BOOTSTRAP`` is set. Numbers are noisy on a shared 2-core machine: compare
the ratios, which are measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402

from pipeline.simulator import SimulationParams, simulate  # noqa: E402
from tests.kafka_harness import LocalKafka, free_port_block  # noqa: E402
from tests.pipeline_harness import PipelineHarness  # noqa: E402


def simulated(n: int, seed: int = 1) -> list[tuple[bytes, bytes]]:
    params = SimulationParams(
        seed=seed,
        start=datetime(2026, 11, 23, 8, 0, tzinfo=UTC),
        duration=timedelta(days=3),
        conversations_per_hour=3000,
    )
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


# -- (a) bare consumer ------------------------------------------------------------------------


async def _bare(bootstrap: str, topic: str, n: int) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
    )
    await consumer.start()
    seen = 0
    started = time.perf_counter()
    try:
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for msgs in batch.values():
                for m in msgs:
                    json.loads(m.value)
                seen += len(msgs)
    finally:
        await consumer.stop()
    return n / (time.perf_counter() - started)


# -- (b) the pipeline -------------------------------------------------------------------------


def rss_peak_mb(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    m = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(m.group(1)) / 1024 if m else 0.0


_OFFSET_READERS: dict[tuple[str, str], KafkaConsumer] = {}


def committed(bootstrap: str, group: str, tps: list[TopicPartition]) -> int:
    """Committed offsets of a group (one reader per group: polling must stay cheap)."""
    reader = _OFFSET_READERS.get((bootstrap, group))
    if reader is None:
        reader = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        _OFFSET_READERS[bootstrap, group] = reader
    return sum(reader.committed(tp, metadata=False) or 0 for tp in tps)


def timed_until(check: Callable[[], bool], timeout: float) -> float:
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > timeout:
            raise TimeoutError
        time.sleep(0.25)
    return time.perf_counter() - started


def pipeline_rate(
    h: PipelineHarness, n: int, partitions: int
) -> tuple[float, float, dict[str, float]]:
    """Events/s of the compute role (committed offsets) and of the whole pipeline (drained)."""
    tps = [TopicPartition(h.topics["events"], p) for p in range(partitions)]
    sink = h.start_worker("sink")
    compute = h.start_worker("compute")
    started = time.perf_counter()
    # Steady state: from the first commit to the last, excluding start-up and recovery.
    timed_until(lambda: committed(h.bootstrap, f"{h.app_id}-compute", tps) > 0, 120)
    first_t, first_n = time.perf_counter(), committed(h.bootstrap, f"{h.app_id}-compute", tps)
    timed_until(lambda: committed(h.bootstrap, f"{h.app_id}-compute", tps) >= n, 900)
    compute_rate = (n - first_n) / (time.perf_counter() - first_t)
    h.wait_drained(timeout=900, settle=0.5)
    whole = n / (time.perf_counter() - started)
    mem = {"compute_rss_mb": rss_peak_mb(compute.pid), "sink_rss_mb": rss_peak_mb(sink.pid)}
    h.stop(compute)
    h.stop(sink)
    return compute_rate, whole, mem


# -- (a2) a Faust agent that only iterates: the framework's own ceiling -------------------------

_FAUST_BARE = r"""
import sys
import faust

bootstrap, topic, group, datadir = sys.argv[1:5]
sys.argv = [sys.argv[0], "worker", "-l", "warn"]
app = faust.App(group, broker="kafka://" + bootstrap, store="memory://", datadir=datadir,
                web_enabled=False, consumer_auto_offset_reset="earliest", autodiscover=False)
source = app.topic(topic, key_serializer="raw", value_serializer="raw")

@app.agent(source)
async def bare(stream):
    async for _event in stream.events():
        yield None

app.main()
"""


def consumer_process_rate(
    cmd: list[str], bootstrap: str, group: str, tps: list[TopicPartition], n: int, log: Path
) -> float:
    """Steady-state events/s of a consumer process: first commit to all ``n`` committed."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    try:
        timed_until(lambda: committed(bootstrap, group, tps) > 0, 180)
        first_t, first_n = time.perf_counter(), committed(bootstrap, group, tps)
        timed_until(lambda: committed(bootstrap, group, tps) >= n, 900)
        return (n - first_n) / max(time.perf_counter() - first_t, 1e-9)
    finally:
        proc.terminate()
        proc.wait(30)


def faust_bare_rate(bootstrap: str, topic: str, n: int, partitions: int, workdir: Path) -> float:
    group = f"faust-bare-{os.getpid()}"
    script = workdir / "faust_bare.py"
    script.write_text(_FAUST_BARE)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    cmd = [sys.executable, str(script), bootstrap, topic, group, str(workdir / "faust-bare")]
    return consumer_process_rate(cmd, bootstrap, group, tps, n, workdir / "faust_bare.log")


# -- (c) Quix Streams --------------------------------------------------------------------------

_QUIX_APP = r"""
import json, sys
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


def quix_rate(bootstrap: str, topic: str, n: int, partitions: int, workdir: Path) -> float:
    group = f"quix-bench-{os.getpid()}"
    script = workdir / "quix_app.py"
    script.write_text(_QUIX_APP)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    cmd = [sys.executable, str(script), bootstrap, topic, group, str(workdir / "quix-state")]
    return consumer_process_rate(cmd, bootstrap, group, tps, n, workdir / "quix.log")


# -- latency at a steady rate ------------------------------------------------------------------


def latency_at_rate(
    h: PipelineHarness, rate: float, seconds: float, sink_metrics_port: int
) -> dict[str, float]:
    data = simulated(int(rate * seconds) + 1, seed=9)
    sink = h.start_worker("sink", CXPULSE_PORTS__SINK_METRICS=str(sink_metrics_port))
    compute = h.start_worker("compute")
    time.sleep(8)  # join the group before the clock starts
    producer = KafkaProducer(bootstrap_servers=h.bootstrap, acks="all", linger_ms=5)
    started = time.perf_counter()
    for i, (key, value) in enumerate(data):
        ahead = started + i / rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
        producer.send(h.topics["events"], key=key, value=value)
    producer.flush(60)
    achieved = len(data) / (time.perf_counter() - started)
    h.wait_drained(timeout=900, settle=0.5)
    text = (
        urllib.request.urlopen(f"http://127.0.0.1:{sink_metrics_port}/metrics", timeout=10)
        .read()
        .decode()
    )
    buckets = [
        (float(m.group(1)), float(m.group(2)))
        for m in re.finditer(
            r'cxpulse_visibility_latency_seconds_bucket\{le="([^"]+)"\} (\S+)', text
        )
        if m.group(1) != "+Inf"
    ]
    total = float(re.search(r"cxpulse_visibility_latency_seconds_count (\S+)", text).group(1))  # type: ignore[union-attr]
    h.stop(compute)
    h.stop(sink)

    def quantile(q: float) -> float:
        for le, count in buckets:
            if count >= q * total:
                return le
        return float("inf")

    return {
        "produced_rate": achieved,
        "p50_s_le": quantile(0.5),
        "p99_s_le": quantile(0.99),
        "samples": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--latency-rate", type=float, default=1000.0)
    parser.add_argument("--latency-seconds", type=float, default=60.0)
    parser.add_argument("--skip-quix", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cxpulse-bench-") as tmp:
        work = Path(tmp)
        external = os.environ.get("CXPULSE_BENCH_BOOTSTRAP")
        kafka = None if external else LocalKafka.on_free_ports(work / "kafka")
        bootstrap = external or kafka.start()  # type: ignore[union-attr]
        try:
            h = PipelineHarness(bootstrap, work / "pipe", partitions=args.partitions)
            h.cli("topics", "create")
            print(f"generating {args.events:,} simulated events ...", flush=True)
            data = simulated(args.events)
            produce(bootstrap, h.topics["events"], data)
            n = len(data)
            a = asyncio.run(_bare(bootstrap, h.topics["events"], n))
            print(f"(a) bare aiokafka consumer, json.loads only : {a:10,.0f} events/s", flush=True)
            a2 = faust_bare_rate(bootstrap, h.topics["events"], n, args.partitions, work)
            print(f"    bare Faust agent, iterate only          : {a2:10,.0f} events/s", flush=True)
            compute_rate, b, mem = pipeline_rate(h, n, args.partitions)
            print(
                f"(b) cxpulse pipeline, compute role          : {compute_rate:10,.0f} events/s",
                flush=True,
            )
            print(
                f"    cxpulse pipeline, end to end (incl. start): {b:10,.0f} events/s", flush=True
            )
            c = None
            if not args.skip_quix:
                c = quix_rate(bootstrap, h.topics["events"], n, args.partitions, work)
                print(
                    f"(c) Quix Streams per-minute counts per team : {c:10,.0f} events/s", flush=True
                )
            print(f"ratio b/a (target >= 0.50): {compute_rate / a:.2f}")
            print(f"ratio b/(bare Faust)      : {compute_rate / a2:.2f}")
            if c:
                print(f"ratio b/c (target > 1.00) : {compute_rate / c:.2f}")
            print(
                f"peak RSS: compute {mem['compute_rss_mb']:.0f} MB, "
                f"sink {mem['sink_rss_mb']:.0f} MB"
            )
            h2 = PipelineHarness(bootstrap, work / "lat", partitions=args.partitions)
            h2.cli("topics", "create")
            lat = latency_at_rate(h2, args.latency_rate, args.latency_seconds, free_port_block(1))
            print(
                f"latency at {lat['produced_rate']:,.0f} events/s steady: "
                f"p50 <= {lat['p50_s_le']}s, "
                f"p99 <= {lat['p99_s_le']}s (target p99 <= 5 s at 5,000 events/s; "
                f"{lat['samples']:,.0f} samples, histogram bucket bounds)"
            )
        finally:
            if kafka is not None:
                kafka.stop()


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
