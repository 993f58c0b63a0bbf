"""``cxpulse run``: the whole pipeline on one machine, with a live board in the terminal.

Starts (only what is not already there) a local Kafka broker, a compute worker and a sink
worker as child processes, feeds simulated traffic, refreshes the KPI board, then drains
and stops everything it started, in reverse order, on Ctrl-C or after ``--duration``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from pipeline.app.board import fetch_board, render_board
from pipeline.app.live_board import ConsumerLag, LiveBoard, Status
from pipeline.core.config import Settings, redact_dsn
from pipeline.core.errors import CxpulseError
from pipeline.core.logs import kv
from pipeline.core.topics import broker_reachable, ensure_topics

__all__ = ["KAFKA_SCRIPT", "demo_params", "run_demo"]

log = logging.getLogger(__name__)
KAFKA_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "kafka.sh"


def _start_local_kafka(settings: Settings, *, fresh: bool) -> Path | None:
    """Start the project's broker under ``<data_dir>/kafka`` unless one already answers.

    With ``fresh``, the previous demo's local state (broker data, worker state, embedded
    ClickHouse under the data dir) is removed first: the same seed would otherwise replay
    the same event ids, which the pipeline rightly drops as duplicates.
    """
    bootstrap = settings.kafka.bootstrap_servers
    if broker_reachable(bootstrap):
        click.echo(
            f"using the Kafka broker at {bootstrap} (not started by cxpulse: its topics and "
            "any earlier run's data are kept; pass another --seed to avoid duplicates)"
        )
        return None
    if fresh:
        _wipe_demo_state(settings)
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if host not in ("127.0.0.1", "localhost") or "," in bootstrap:
        raise CxpulseError(
            f"no Kafka broker answers at {bootstrap} (start it, or unset "
            "CXPULSE_KAFKA__BOOTSTRAP_SERVERS to let cxpulse run a local one)"
        )
    if not KAFKA_SCRIPT.exists():
        raise CxpulseError(f"{KAFKA_SCRIPT} is missing: run cxpulse from a source checkout")
    kafka_dir = (settings.data_dir / "kafka").resolve()
    click.echo(f"starting a local Kafka broker on port {port} (data in {kafka_dir}) ...")
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(KAFKA_SCRIPT), "start", "--dir", str(kafka_dir), "--port", port],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "CXPULSE_PYTHON": sys.executable},
    )
    if result.returncode != 0:
        raise CxpulseError(
            f"local Kafka did not start: {result.stderr.strip().splitlines()[-1:]} "
            f"(logs in {kafka_dir}/logs)"
        )
    click.echo(f"Kafka ready in {time.monotonic() - started:.1f}s")
    return kafka_dir


def _wipe_demo_state(settings: Settings) -> None:
    data_dir = settings.data_dir.resolve()
    doomed = [data_dir / "kafka", data_dir / "faust"]
    dsn = settings.clickhouse_dsn()
    if dsn.startswith("chdb://"):
        chdb_path = Path(dsn.removeprefix("chdb://"))
        if chdb_path.is_relative_to(data_dir):
            doomed.append(chdb_path)
    existing = [p for p in doomed if p.exists()]
    if existing:
        click.echo(
            f"fresh start: removing the previous demo state ({', '.join(map(str, existing))})"
        )
        for path in existing:
            shutil.rmtree(path)


def _stop_local_kafka(kafka_dir: Path) -> None:
    subprocess.run(
        ["bash", str(KAFKA_SCRIPT), "stop", "--dir", str(kafka_dir)],
        capture_output=True,
        check=False,
    )


def _spawn_worker(settings: Settings, role: str, log_dir: Path) -> subprocess.Popen[bytes]:
    log_dir.mkdir(parents=True, exist_ok=True)
    out = (log_dir / f"{role}.log").open("ab")
    cmd = [sys.executable, "-m", "pipeline", "worker", "--role", role]
    return subprocess.Popen(
        cmd, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy(), start_new_session=True
    )


def _stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def demo_params(params: Any) -> Any:
    """The demo's faster world, so its first minutes have numbers worth reading.

    A demo starts from nothing: with the default model (email resolves in about a day, CSAT
    answers come ~25 min after the resolve, NPS ~3 h) its first 15 minutes hold a handful of
    resolutions and almost no survey answers. Here chat and phone carry most traffic, chat,
    phone and social resolve 4x sooner, surveys are answered twice as often and 20x sooner.
    Response times (FRT, replies) are untouched. Measured with the default --rate 100 and
    10 warm-up minutes: per team in the first 15-minute window about 600 resolutions,
    220 CSAT, 100 CES and 40 NPS answers (the default model: ~140, 3, 0, 0).
    """
    from pipeline.simulator.params import LogNormal

    weights = {"chat": 0.55, "phone": 0.25, "social": 0.12, "email": 0.08}
    channels = []
    for channel in params.channels:
        faster = 1.0 if channel.name == "email" else 0.25
        channels.append(
            dataclasses.replace(
                channel,
                weight=weights.get(channel.name, channel.weight),
                resolution=LogNormal(
                    channel.resolution.median_s * faster, channel.resolution.sigma
                ),
                close_lag=LogNormal(channel.close_lag.median_s * faster, channel.close_lag.sigma),
            )
        )
    return dataclasses.replace(
        params,
        channels=tuple(channels),
        csat_response_rate=0.5,
        nps_response_rate=0.25,
        ces_response_rate=0.25,
        survey_delay_scale=0.05,
    )


def _board(settings: Settings) -> dict[str, Any] | None:
    try:
        return fetch_board(settings, url=f"http://127.0.0.1:{settings.ports.sink_web}")
    except CxpulseError:
        return None


def run_demo(
    settings: Settings,
    *,
    duration: float,
    rate: float,
    seed: int,
    refresh: float,
    keep_broker: bool,
    warmup_minutes: float = 10.0,
    keep_state: bool = False,
    incidents: tuple[str, ...] = (),
    webhook_url: str | None = None,
) -> int:
    from pipeline.simulator.producer import run_simulation

    def _terminated(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM stops cleanly too: workers and broker included

    signal.signal(signal.SIGTERM, _terminated)
    if not settings.clickhouse.is_embedded:
        click.echo(f"writing to ClickHouse at {redact_dsn(settings.clickhouse_dsn())} (server DSN)")
    if webhook_url:  # the sink worker (a child process) runs the alert evaluator
        os.environ["CXPULSE_ALERTS__WEBHOOK_URL"] = webhook_url
    kafka_dir = _start_local_kafka(settings, fresh=not keep_state)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    lag = ConsumerLag(settings)
    stop = threading.Event()
    report: dict[str, Any] = {}
    exit_code = 0
    log_dir = (settings.data_dir / "logs").resolve()
    try:
        ensure_topics(settings)
        procs["sink"] = _spawn_worker(settings, "sink", log_dir)
        procs["compute"] = _spawn_worker(settings, "compute", log_dir)
        click.echo(f"workers started (logs in {log_dir})")
        click.echo(
            f"traffic: {warmup_minutes:g} minutes of recent history at once, then "
            f"{rate:g} events/s live for {duration:g}s (seed {seed})"
        )
        if incidents and warmup_minutes < 45:
            click.echo(
                "note: the default alert rules judge a drop against at least 100 earlier "
                "samples; with less than ~45 warm-up minutes an incident may not alert "
                "(try --warmup-minutes 60 and start=+61m)"
            )

        def produce() -> None:
            try:
                report.update(
                    run_simulation(
                        settings,
                        rate=rate,
                        duration=duration,
                        history_days=None,
                        seed=seed,
                        incidents=incidents,
                        truth=None,
                        malformed_rate=0.002,
                        duplicate_rate=0.005,
                        late_rate=0.002,
                        output=None,
                        stop=stop,
                        preroll=warmup_minutes * 60,
                        tune=demo_params,
                    )
                )
            except Exception as exc:  # surfaced after the loop
                report["error"] = str(exc)

        producer = threading.Thread(target=produce, name="simulator", daemon=True)
        producer.start()
        started = time.monotonic()
        status = Status()
        with LiveBoard() as live:
            while producer.is_alive():  # ends after the simulated span (or on Ctrl-C)
                producer.join(refresh)
                for role, proc in procs.items():
                    if proc.poll() is not None:
                        raise CxpulseError(
                            f"the {role} worker exited ({proc.returncode}); "
                            f"see {log_dir}/{role}.log"
                        )
                payload = _board(settings)
                if payload is not None:
                    status.elapsed = time.monotonic() - started
                    status.lag = lag.read()
                    status.produced = lag.events_in_topic
                    status.observe(int((payload.get("totals") or {}).get("events") or 0))
                    live.show(payload, status)
        if "error" in report:
            raise CxpulseError(f"simulator failed: {report['error']}")
        click.echo("traffic done; waiting for the pipeline to drain ...")
        _drain(settings, report.get("by_kind", {}).get("valid", 0))
    except KeyboardInterrupt:
        click.echo("\ninterrupted: stopping cleanly ...")
        stop.set()
        exit_code = 130
    finally:
        stop.set()
        lag.close()
        payload = _board(settings)
        for role in ("compute", "sink"):
            if role in procs:
                _stop(procs[role])
        if kafka_dir is not None and not keep_broker:
            _stop_local_kafka(kafka_dir)
            click.echo("local Kafka stopped")
    if payload is not None:
        click.echo("\n== cxpulse final KPIs: last 15 minutes of event time, per team ==")
        click.echo(render_board(payload))
    if report:
        click.echo(
            f"produced {report.get('events', 0):,} messages "
            f"({', '.join(f'{k}={v:,}' for k, v in sorted(report.get('by_kind', {}).items()))})"
        )
    log.info("run finished", extra=kv(exit_code=exit_code))
    return exit_code


def _drain(settings: Settings, expected: int, timeout: float = 120.0) -> None:
    """Wait until every valid event produced is stored or routed late (or stops moving)."""
    last, stable_since = -1, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        totals = ((_board(settings) or {}).get("totals")) or {}
        done = int(totals.get("events") or 0) + int(totals.get("late_events") or 0)
        if done >= expected:
            return
        if done != last:
            last, stable_since = done, time.monotonic()
        elif time.monotonic() - stable_since > 15:
            click.echo(f"pipeline stopped moving at {done:,} of {expected:,} events")
            return
        time.sleep(1)
