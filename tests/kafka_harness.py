"""Start and stop the project's local Kafka (deploy/kafka/kafka.sh) from Python tests.

The shell script is the single source of truth for how a broker is fetched, configured,
started and waited for; this module only shells out to it, so tests, CI and developers all
run the very same cluster. See deploy/kafka/README.md.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_SH = REPO_ROOT / "deploy" / "kafka" / "kafka.sh"

# C1-only JIT: the brokers start ~40% faster on small (2-CPU) machines, and tests do not need
# peak broker throughput. An explicit KAFKA_JVM_OPTS in the environment wins.
TEST_JVM_OPTS = "-XX:TieredStopAtLevel=1"

# Ports other local brokers are known to use; never hand them out.
RESERVED_PORTS = frozenset({9092, 9093, 19092, 19093})


class KafkaScriptError(RuntimeError):
    """kafka.sh exited non-zero; the message carries the tail of its stderr."""

    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        tail = "\n".join(stderr.strip().splitlines()[-30:])
        super().__init__(f"kafka.sh {' '.join(args)} failed with exit code {returncode}:\n{tail}")
        self.returncode = returncode
        self.stderr = stderr


def run_kafka_sh(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run kafka.sh with args; raise KafkaScriptError on failure when check is set.

    CXPULSE_PYTHON is set to this interpreter so the script's readiness check uses the same
    kafka-python the tests do, even when `python3` on PATH is another environment.
    """
    full_env = dict(os.environ if env is None else env)
    full_env.setdefault("CXPULSE_PYTHON", sys.executable)
    result = subprocess.run(
        ["bash", str(KAFKA_SH), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise KafkaScriptError(list(args), result.returncode, result.stderr)
    return result


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(n: int, *, low: int = 20000, high: int = 32000, attempts: int = 200) -> int:
    """Return the first of n consecutive TCP ports on 127.0.0.1 that are free right now.

    kafka.sh numbers the nodes of a cluster from one base port, so a 3-node cluster needs a
    consecutive block. Candidates lie below Linux's ephemeral range (32768+), so outgoing
    client sockets cannot take them between this check and the brokers' bind. Random starts
    keep parallel test sessions from racing for the same block.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    rng = random.Random()
    for _ in range(attempts):
        base = rng.randrange(low, high - n)
        ports = range(base, base + n)
        if RESERVED_PORTS.isdisjoint(ports) and all(_port_free(p) for p in ports):
            return base
    raise RuntimeError(f"no block of {n} free TCP ports found in {low}-{high} on 127.0.0.1")


class LocalKafka:
    """A 1- or 3-node local Kafka cluster whose files all live under `dir`.

    Use as a context manager (start on enter, stop on exit) or call start()/stop(). The
    ports and node count are fixed the first time `dir` is used (kafka.sh enforces that).
    """

    def __init__(
        self,
        dir: Path,
        port: int,
        brokers: int = 1,
        *,
        controller_port: int | None = None,
        heap: str = "512m",
        start_timeout: int = 90,
        jvm_opts: str | None = TEST_JVM_OPTS,
        extra_start_args: tuple[str, ...] = (),
    ) -> None:
        if brokers not in (1, 3):
            raise ValueError("brokers must be 1 or 3")
        self.dir = Path(dir)
        self.port = port
        self.brokers = brokers
        self.controller_port = controller_port
        self.heap = heap
        self.start_timeout = start_timeout
        self.jvm_opts = jvm_opts
        # More `kafka.sh start` options, e.g. a SASL_SSL listener (tests/tls_harness.py).
        self.extra_start_args = extra_start_args

    @classmethod
    def on_free_ports(
        cls,
        dir: Path,
        brokers: int = 1,
        *,
        heap: str = "512m",
        start_timeout: int = 90,
        jvm_opts: str | None = TEST_JVM_OPTS,
    ) -> Self:
        """A cluster on one free port block: broker ports first, then the controller ports.

        kafka.sh's default controller ports (PORT+100..) are not checked by free_port_block,
        so tests take both from the same block instead.
        """
        base = free_port_block(2 * brokers)
        return cls(
            dir,
            base,
            brokers,
            controller_port=base + brokers,
            heap=heap,
            start_timeout=start_timeout,
            jvm_opts=jvm_opts,
        )

    @property
    def bootstrap_servers(self) -> str:
        """The bootstrap string clients use, e.g. '127.0.0.1:9092,127.0.0.1:9093'."""
        return ",".join(f"127.0.0.1:{self.port + i}" for i in range(self.brokers))

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.jvm_opts is not None:
            env.setdefault("KAFKA_JVM_OPTS", self.jvm_opts)
        return env

    def _run(self, *args: str, timeout: float) -> str:
        result = run_kafka_sh(*args, "--dir", str(self.dir), env=self._env(), timeout=timeout)
        lines = result.stdout.strip().splitlines()
        return lines[-1] if lines else ""

    def start(self) -> str:
        """Start every node (format the storage on first use); return the bootstrap servers.

        If kafka.sh itself hangs past its own timeout, the nodes are stopped before raising,
        so a failed start leaves no broker behind.
        """
        args = ["start", "--port", str(self.port), "--brokers", str(self.brokers)]
        args += ["--heap", self.heap, "--timeout", str(self.start_timeout)]
        if self.controller_port is not None:
            args += ["--controller-port", str(self.controller_port)]
        args += list(self.extra_start_args)
        try:
            return self._run(*args, timeout=self.start_timeout + 240)
        except subprocess.TimeoutExpired:
            self.stop()
            raise

    def stop(self, timeout: int = 30) -> None:
        """SIGTERM every node, SIGKILL after `timeout` seconds; a no-op if nothing runs."""
        self._run("stop", "--timeout", str(timeout), timeout=timeout + 30)

    def kill_node(self, n: int) -> None:
        """SIGKILL node n (1-based) to simulate a crash."""
        self._run("kill-node", "--node", str(n), timeout=30)

    def start_node(self, n: int) -> None:
        """Restart node n and wait until it is back in the cluster."""
        args = ["start-node", "--node", str(n), "--heap", self.heap]
        self._run(*args, "--timeout", str(self.start_timeout), timeout=self.start_timeout + 60)

    def running(self) -> bool:
        """True if every node of the cluster runs (kafka.sh status exits 0)."""
        result = run_kafka_sh("status", "--dir", str(self.dir), check=False, timeout=30)
        return result.returncode == 0

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            # e.g. Ctrl-C while waiting: do not leave half-started nodes running.
            with contextlib.suppress(Exception):
                self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
