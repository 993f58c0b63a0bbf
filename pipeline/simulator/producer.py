"""Getting events into Kafka: the simulator's output, or a JSON-lines file replayed.

JSON-lines format (one message per line, bytes preserved exactly):
``{"key": "<conversation_id>", "value": "<message text>"}``, or ``"value_b64"`` instead of
``"value"`` when the message is not valid UTF-8 (malformed on purpose).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from pipeline.core.config import Settings
from pipeline.core.errors import CxpulseError
from pipeline.core.logs import kv

__all__ = ["KafkaSender", "read_jsonl", "replay_file", "run_simulation", "to_jsonl"]

log = logging.getLogger(__name__)


class KafkaSender:
    """A small synchronous producer (kafka-python) with delivery errors surfaced."""

    def __init__(self, settings: Settings, topic: str | None = None) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        from pipeline.core.kafka import kafka_python_kwargs, probe

        self.topic = topic or settings.topics.events
        probe(settings)  # no broker, a bad login or an untrusted CA: one clear line
        try:
            self._producer = KafkaProducer(
                acks="all",
                linger_ms=20,
                batch_size=256 * 1024,
                max_in_flight_requests_per_connection=1,  # keep per-key order on retries
                # A broker that just started (or moves a leader) refuses for a moment with
                # a retriable error: keep retrying for up to the delivery timeout.
                retries=1_000,
                retry_backoff_ms=200,
                delivery_timeout_ms=120_000,
                **kafka_python_kwargs(settings, client_id=f"{settings.app_id}-producer"),
            )
        except KafkaError as exc:
            raise CxpulseError(
                f"cannot connect a producer to {settings.kafka.bootstrap_servers}: {exc}"
            ) from None
        self._errors: list[BaseException] = []
        self.sent = 0

    def _failed(self, exc: BaseException) -> None:
        self._errors.append(exc)

    def send(self, key: bytes | None, value: bytes) -> None:
        if self._errors:
            raise CxpulseError(f"Kafka refused a message: {self._errors[0]}")
        self._producer.send(self.topic, key=key, value=value).add_errback(self._failed)
        self.sent += 1

    def close(self) -> None:
        self._producer.flush(timeout=60)
        self._producer.close(timeout=10)
        if self._errors:
            raise CxpulseError(f"Kafka refused {len(self._errors)} message(s): {self._errors[0]}")


def to_jsonl(key: str | None, value: bytes) -> str:
    try:
        return json.dumps({"key": key, "value": value.decode("utf-8")}, ensure_ascii=False)
    except UnicodeDecodeError:
        return json.dumps({"key": key, "value_b64": base64.b64encode(value).decode()})


def read_jsonl(lines: Iterable[str]) -> Iterator[tuple[bytes | None, bytes]]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            key = obj.get("key")
            value = (
                base64.b64decode(obj["value_b64"])
                if "value_b64" in obj
                else obj["value"].encode("utf-8")
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CxpulseError(
                f"line {number}: not a cxpulse JSON-lines record ({exc}); expected "
                '{"key": ..., "value": ...}'
            ) from None
        yield (key.encode("utf-8") if key is not None else None), value


def replay_file(settings: Settings, path: Path, *, rate: float | None = None) -> int:
    """Produce every record of ``path`` to the events topic, keys preserved."""
    from tqdm import tqdm

    # Check the whole file before the first send: a bad line is one clear error, not a
    # half-replayed file.
    try:
        with path.open(encoding="utf-8") as fh:
            total = sum(1 for _ in read_jsonl(fh))
    except UnicodeDecodeError as exc:
        raise CxpulseError(
            f"{path} is not UTF-8 text ({exc.reason}); expected JSON lines"
        ) from None
    except OSError as exc:
        raise CxpulseError(f"cannot read {path}: {exc.strerror}") from None
    except CxpulseError as exc:
        raise CxpulseError(f"{path}: {exc}") from None
    sender = KafkaSender(settings)
    started = time.monotonic()
    try:
        with (
            path.open(encoding="utf-8") as fh,
            tqdm(total=total, desc="replay", unit="ev", disable=None) as bar,
        ):
            for i, (key, value) in enumerate(read_jsonl(fh)):
                if rate:
                    ahead = started + i / rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
                sender.send(key, value)
                bar.update(1)
    finally:
        sender.close()
    log.info("replay done", extra=kv(file=str(path), sent=sender.sent))
    return sender.sent


def run_simulation(
    settings: Settings,
    *,
    rate: float,
    duration: float,
    history_days: float | None,
    seed: int,
    incidents: tuple[str, ...],
    truth: Path | None,
    malformed_rate: float,
    duplicate_rate: float,
    late_rate: float,
    output: Path | None,
    no_pacing: bool = False,
    stop: threading.Event | None = None,
    seasonality: bool | None = None,
    preroll: float = 0.0,
    tune: Callable[[Any], Any] | None = None,
    customers_truth: Path | None = None,
) -> dict[str, Any]:
    """Generate events and send them to Kafka or ``output``; returns a summary.

    Live mode simulates ``preroll`` seconds before now as well: those events (the recent
    past, with conversations already under way) are sent at once, the rest in real time.
    ``tune`` adjusts the model's :class:`SimulationParams` (the live demo's faster mix).
    ``customers_truth``: write the churn-prone customers at risk at the last event and why
    (:class:`pipeline.simulator.customers.CustomerLedger`).
    """
    from tqdm import tqdm

    from pipeline.simulator import (
        CustomerLedger,
        SimulationParams,
        ground_truth,
        parse_incident,
        rate_for_events_per_second,
        simulate,
    )

    now = datetime.now(tz=UTC).replace(microsecond=0)
    live = history_days is None
    if live:
        start, span = now - timedelta(seconds=preroll), timedelta(seconds=preroll + duration)
    else:
        span = timedelta(days=history_days or 0)
        start = now - span
    try:
        parsed = tuple(parse_incident(spec, start) for spec in incidents)
        params = SimulationParams(
            seed=seed,
            start=start,
            duration=span,
            # Live demos run at any hour: a flat rate unless asked otherwise.
            seasonality=(not live) if seasonality is None else seasonality,
            malformed_rate=malformed_rate,
            duplicate_rate=duplicate_rate,
            late_rate=late_rate,
            incidents=parsed,
        )
        if tune is not None:
            params = tune(params)
        params = dataclasses.replace(
            params, conversations_per_hour=rate_for_events_per_second(rate, params)
        )
    except ValueError as exc:
        raise CxpulseError(f"simulation parameters: {exc}") from None
    ledger = CustomerLedger(params) if customers_truth is not None else None
    sink: KafkaSender | None = None
    fh: IO[str] | None = None
    try:
        if truth is not None:
            truth.parent.mkdir(parents=True, exist_ok=True)
            truth.write_text(json.dumps(ground_truth(params), indent=2, default=str))
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            fh = output.open("w", encoding="utf-8")
    except OSError as exc:
        raise CxpulseError(f"cannot write {exc.filename or output}: {exc.strerror}") from None
    if output is None:
        sink = KafkaSender(settings)
    counts: dict[str, int] = {}
    wall_start = time.monotonic()
    pace = live and not no_pacing and output is None
    total_s = span.total_seconds()
    try:
        with tqdm(total=round(total_s), desc="simulate", unit="s(event time)", disable=None) as bar:
            shown = 0
            for ev in simulate(params, ledger.observe if ledger is not None else None):
                if stop is not None and stop.is_set():
                    break
                offset_s = (ev.arrival - start).total_seconds()
                if pace:
                    ahead = wall_start + offset_s - preroll - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
                if fh is not None:
                    fh.write(to_jsonl(ev.key, ev.value) + "\n")
                else:
                    assert sink is not None
                    sink.send(ev.key.encode("utf-8"), ev.value)
                counts[ev.kind] = counts.get(ev.kind, 0) + 1
                progressed = min(round(offset_s), round(total_s))
                if progressed > shown:
                    bar.update(progressed - shown)
                    shown = progressed
    finally:
        if fh is not None:
            fh.close()
        if sink is not None:
            sink.close()
    if ledger is not None and customers_truth is not None:
        customers_truth.parent.mkdir(parents=True, exist_ok=True)
        customers_truth.write_text(json.dumps(ledger.truth(), indent=2))
    elapsed = time.monotonic() - wall_start
    sent = sum(counts.values())
    report = {
        "events": sent,
        "by_kind": counts,
        "seconds": round(elapsed, 2),
        "events_per_second": round(sent / elapsed, 1) if elapsed else None,
        "event_time_start": start.isoformat(),
        "event_time_end": (start + span).isoformat(),
        "destination": str(output) if output else settings.topics.events,
    }
    log.info("simulation done", extra=kv(**{k: v for k, v in report.items() if k != "by_kind"}))
    return report
