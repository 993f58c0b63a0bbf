"""Run real cxpulse worker processes against the session broker, isolated per test.

Each harness gets its own topics, consumer groups (app id), state dir and chDB path, so
tests share one broker without seeing each other. ClickHouse results are read by a child
process (:func:`query_chdb`): chDB allows one engine (one path) per process, and the sink
process holds it while it runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]


class PipelineHarness:
    def __init__(self, bootstrap: str, workdir: Path, *, partitions: int = 4) -> None:
        self.bootstrap = bootstrap
        self.workdir = workdir
        self.partitions = partitions
        tag = uuid.uuid4().hex[:8]
        self.app_id = f"cxt{tag}"
        self.topics = {
            "events": f"{self.app_id}.interactions",
            "conversation_log": f"{self.app_id}.conversation-log",
            "deltas": f"{self.app_id}.minute-deltas",
            "dead_letter": f"{self.app_id}.dead-letter",
            "late_events": f"{self.app_id}.late-events",
        }
        self.customer_topics = {
            "facts_topic": f"{self.app_id}.customer-facts",
            "log_topic": f"{self.app_id}.customer-log",
            "followups_topic": f"{self.app_id}.feedback-followups",
        }
        self.dsn = f"chdb://{workdir / 'chdb'}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.log_dir = workdir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)

    # -- processes --

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CXPULSE_")}
        env.update(
            {
                "CXPULSE_APP_ID": self.app_id,
                "CXPULSE_DATA_DIR": str(self.workdir / "var"),
                "CXPULSE_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
                "CXPULSE_TOPICS__PARTITIONS": str(self.partitions),
                "CXPULSE_CLICKHOUSE__DSN": self.dsn,
                "CXPULSE_PORTS__WORKER_METRICS": "0",
                "CXPULSE_PORTS__SINK_METRICS": "0",
                "CXPULSE_PORTS__WORKER_WEB": "0",
                "CXPULSE_PORTS__SINK_WEB": "0",
                "CXPULSE_SINK__FLUSH_INTERVAL_SECONDS": "0.5",
                "PYTHONUNBUFFERED": "1",
            }
        )
        for name, topic in self.topics.items():
            env[f"CXPULSE_TOPICS__{name.upper()}"] = topic
        for name, topic in self.customer_topics.items():
            env[f"CXPULSE_CUSTOMERS__{name.upper()}"] = topic
        env.update(extra)
        return env

    def cli(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pipeline", *args],
            env=self.env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def start_worker(self, role: str, worker_id: str = "0", **env: str) -> subprocess.Popen[bytes]:
        out = (self.log_dir / f"{role}-{worker_id}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "worker", "--role", role, "--worker-id", worker_id],
            env=self.env(**env),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    @staticmethod
    def kill9(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs:
            self.stop(proc)

    def logs(self) -> str:
        return "\n".join(
            f"== {p.name}\n" + p.read_text(errors="replace")[-12000:]
            for p in sorted(self.log_dir.glob("*.log"))
        )

    # -- Kafka --

    def produce(self, messages: Iterable[tuple[bytes | None, bytes]]) -> int:
        producer = KafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            linger_ms=10,
            max_in_flight_requests_per_connection=1,
        )
        n = 0
        for key, value in messages:
            producer.send(self.topics["events"], key=key, value=value)
            n += 1
        producer.flush(60)
        producer.close()
        return n

    def read_events(self) -> list[tuple[int, int, bytes]]:
        """Everything in the events topic as (partition, offset, value), per-partition order."""
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        tps = [TopicPartition(self.topics["events"], p) for p in range(self.partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[tuple[int, int, bytes]] = []
        remaining = {tp for tp in tps if end[tp] > 0}
        deadline = time.monotonic() + 60
        while remaining and time.monotonic() < deadline:
            for tp, msgs in consumer.poll(timeout_ms=500).items():
                for m in msgs:
                    out.append((m.partition, m.offset, m.value))
                if consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        consumer.close()
        return out

    def lag(self) -> int:
        """Uncommitted messages of both roles' consumer groups (0 = fully processed)."""
        groups = {
            f"{self.app_id}-compute": [self.topics["events"]],
            f"{self.app_id}-customers": [self.customer_topics["facts_topic"]],
            f"{self.app_id}-sink": [
                self.customer_topics["log_topic"],
                self.customer_topics["followups_topic"],
                self.topics["deltas"],
                self.topics["dead_letter"],
                self.topics["late_events"],
            ],
        }
        total = 0
        for group, topics in groups.items():
            consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False
            )
            try:
                tps = [TopicPartition(t, p) for t in topics for p in range(self.partitions)]
                end = consumer.end_offsets(tps)
                for tp in tps:
                    total += max(end[tp] - (consumer.committed(tp) or 0), 0)
            finally:
                consumer.close()
        return total

    def wait_drained(self, timeout: float = 120, settle: float = 2.0) -> None:
        deadline = time.monotonic() + timeout
        zero_since: float | None = None
        while time.monotonic() < deadline:
            crashed = [p for p in self.procs if p.poll() not in (None, 0, -9, -15)]
            if crashed:
                raise AssertionError(f"a worker exited with {crashed[0].returncode}\n{self.logs()}")
            if self.lag() == 0:
                zero_since = zero_since or time.monotonic()
                if time.monotonic() - zero_since >= settle:
                    return
            else:
                zero_since = None
            time.sleep(0.5)
        raise AssertionError(
            f"pipeline not drained after {timeout}s (lag {self.lag()})\n{self.logs()}"
        )

    # -- ClickHouse --

    def query(self, *sql: str) -> list[list[list[Any]]]:
        return query_chdb(self.dsn, "cxpulse", list(sql))


_QUERY_SCRIPT = """
import json, sys
import clickhouse_connect
dsn, db, queries = sys.argv[1], sys.argv[2], json.loads(sys.stdin.read())
client = clickhouse_connect.get_client(dsn=dsn)
out = []
for q in queries:
    out.append([list(r) for r in client.query(q.replace('{db}', db)).result_rows])
client.close()
print(json.dumps(out, default=str))
"""


def query_chdb(dsn: str, database: str, queries: list[str]) -> list[list[list[Any]]]:
    """Run queries against a chDB path in a child process (the engine is per process)."""
    result = subprocess.run(
        [sys.executable, "-c", _QUERY_SCRIPT, dsn, database],
        input=json.dumps(queries),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise AssertionError(f"chDB query failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])
