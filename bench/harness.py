"""Measuring helpers shared by the benchmarks (process rates, RSS, Prometheus histograms)."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

_OFFSET_READERS: dict[tuple[str, str], KafkaConsumer] = {}


def rss_peak_mb(pid: int) -> float:
    """Peak resident set size of a live process (VmHWM), in MB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    m = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(m.group(1)) / 1024 if m else 0.0


def rss_mb(pid: int) -> float:
    """Current resident set size (VmRSS), in MB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    m = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(m.group(1)) / 1024 if m else 0.0


def committed(bootstrap: str, group: str, tps: Sequence[TopicPartition]) -> int:
    """Sum of a group's committed offsets (one reader per group: polling stays cheap)."""
    reader = _OFFSET_READERS.get((bootstrap, group))
    if reader is None:
        reader = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        _OFFSET_READERS[bootstrap, group] = reader
    return sum(reader.committed(tp, metadata=False) or 0 for tp in tps)


def timed_until(check: Callable[[], bool], timeout: float, every: float = 0.1) -> float:
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(every)
    return time.perf_counter() - started


def consumer_process_rate(
    cmd: list[str], bootstrap: str, group: str, tps: Sequence[TopicPartition], n: int, log: Path
) -> tuple[float, float]:
    """Steady-state events/s of a consumer process (first commit to all ``n`` committed)
    and its peak RSS in MB."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    try:
        timed_until(lambda: committed(bootstrap, group, tps) > 0, 180)
        first_t, first_n = time.perf_counter(), committed(bootstrap, group, tps)
        timed_until(lambda: committed(bootstrap, group, tps) >= n, 1800)
        rate = (n - first_n) / max(time.perf_counter() - first_t, 1e-9)
        return rate, rss_peak_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return str(resp.read().decode())


def histogram_quantiles(text: str, name: str, qs: Sequence[float]) -> dict[float, float]:
    """Upper bucket bounds holding each quantile of a Prometheus histogram (summed series)."""
    buckets: dict[float, float] = {}
    for m in re.finditer(rf'{name}_bucket\{{[^}}]*le="([^"]+)"[^}}]*\}} (\S+)', text):
        le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
        buckets[le] = buckets.get(le, 0.0) + float(m.group(2))
    ordered = sorted(buckets.items())
    total = ordered[-1][1] if ordered else 0.0
    out = {}
    for q in qs:
        out[q] = next((le for le, count in ordered if count >= q * total), float("nan"))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used so far (all its threads)."""
    import os

    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
