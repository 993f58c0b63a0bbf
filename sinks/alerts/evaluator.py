"""The live evaluator: every newly closed minute once, in order; persist; then deliver.

One :meth:`AlertEvaluator.step`:

1. **evaluate**: the closed minute is the last one every source partition's progress has
   passed (``source_progress``); each minute after the checkpoint is fed to the detector
   with exactly the rows that became known at it, in batches of up to six hours. Rise
   rules (revenue and customers at risk) run the same way on their own clock: the last
   minute every customer-log partition has frozen (``customer_progress``), with their own
   checkpoint (streams/alerts/levels.py, sinks/alerts/level_store.py);
2. **persist** each batch: transitions to ``alerts``, one ``alert_outbox`` entry per
   transition and receiver, then the checkpoint (last minute + every alert state) in one
   row. A crash before the checkpoint re-runs the batch and writes the same rows again
   (ids are deterministic), so nothing is lost or doubled;
3. **deliver** pending outbox entries of checkpointed minutes, in order per alert and
   receiver, with exponential backoff per entry; each attempt is counted in
   ``cxpulse_alert_deliveries_total{receiver,result}`` and nothing is ever dropped.
   Active alerts are re-sent to Alertmanager every ``resend_interval_seconds``.

Delivery is at-least-once: a crash between a send and its bookkeeping sends that one
notification again, which the webhook's ``Idempotency-Key`` and Alertmanager's own
de-duplication (same labels, already notified) absorb.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp

from pipeline.core.config import Settings
from pipeline.core.logs import kv
from pipeline.core.metrics import Metrics
from sinks.alerts.delivery import DeliveryError, Receiver, notification, send
from sinks.alerts.level_store import LevelStore
from sinks.alerts.store import AlertStore, dt
from sinks.clickhouse.store import Store, StoreUnavailable
from streams.alerts.detector import _LEAF_OF
from streams.alerts.engine import Engine
from streams.alerts.levels import LevelEngine
from streams.alerts.rules import RuleSet, load_rules
from streams.alerts.state import Transition

__all__ = ["AlertEvaluator", "run_evaluator"]

log = logging.getLogger(__name__)
BATCH = 360  # minutes per read and checkpoint while catching up


def receivers_of(settings: Settings) -> list[Receiver]:
    a = settings.alerts
    out = []
    if a.alertmanager_url is not None:
        out.append(
            Receiver(
                "alertmanager", a.alertmanager_url.get_secret_value(), a.delivery_timeout_seconds
            )
        )
    if a.webhook_url is not None:
        out.append(
            Receiver("webhook", a.webhook_url.get_secret_value(), a.delivery_timeout_seconds)
        )
    return out


def _row(rule: Any, t: Transition, note: dict[str, Any], notified: Any = None) -> dict[str, Any]:
    d = t.details
    resolved = t.state == "resolved"
    return {
        "alert_id": t.alert_id,
        "kpi": rule.kpi.name,
        "grouping": t.group[0],
        "team": t.group[1],
        "channel": t.group[2],
        "region": t.group[3],
        "priority": t.group[4],
        "segment": t.group[5],
        "state": t.state,
        "started_at": dt(t.onset),
        "ended_at": dt(t.minute) if resolved else None,
        "baseline": math.nan if note["baseline"] is None else float(note["baseline"]),
        "observed": math.nan if note["observed"] is None else float(note["observed"]),
        "severity": rule.severity,
        "summary": note["summary"],
        "version": t.minute * 4 + (2 if resolved else 0),
        "rule": rule.name,
        "fired_at": dt(t.fired_at),
        "resolved_at": dt(t.minute) if resolved else None,
        "window_minutes": int(d.get("window", 0)),
        "samples": int(d.get("n_window", 0)),
        "baseline_samples": int(d.get("n_baseline", 0)),
        "z": float(d.get("z", 0.0)),
        "description": note["description"],
        "notified_at": notified,
        "resolved_notified_at": None,
    }


class AlertEvaluator:
    """Evaluates, persists and delivers; all ClickHouse calls are synchronous."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        metrics: Metrics | None = None,
        *,
        rules: RuleSet | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        a = settings.alerts
        self.settings = settings
        self.rules = rules or load_rules(a.rules_file)
        self.by_rule = {r.name: r for r in self.rules.rules}
        self.engine = Engine(self.rules)
        leaves = {
            _LEAF_OF.get(g, "team_channel")
            for r in self.rules.rules
            if r.kind != "rise"
            for g in r.groupings
        }
        self.io = AlertStore(store, groupings=sorted(leaves), max_lag=a.max_lag_minutes)
        self.levels = LevelEngine(self.rules)
        self.level_io = LevelStore(store)
        self.levels_on = bool(self.levels.rules) and settings.customers.enabled
        self.levels_loaded = False
        self.metrics = metrics
        self.receivers = receivers_of(settings)
        self.grafana = (a.grafana_url, a.grafana_dashboard_uid)
        self.loaded = False
        self.clock = clock
        self._retry: dict[tuple[str, str], tuple[float, float]] = {}
        self._last_resend = -math.inf

    # -- evaluate + persist (sync) --

    def _load(self, closed: int) -> bool:
        found = self.io.load_checkpoint()
        if found is not None:
            minute, snap = found
        else:
            first = self.io.first_minute(closed)
            if first is None:
                return False
            minute, snap = (
                max(first, closed - int(self.settings.alerts.backfill_days * 1440)) - 1,
                None,
            )
        store = self.engine.store
        minute_rows, slot_rows = self.io.history(minute, store.minute_span, store.slot_span)
        self.engine.load(minute, minute_rows, slot_rows, self.io.first_minute(minute))
        restored = self.engine.restore(snap) if snap else []
        log.info(
            "alert evaluator resumed" if snap else "alert evaluator started",
            extra=kv(minute=dt(minute).isoformat(), rules=len(self.rules), restored=len(restored)),
        )
        self.loaded = True
        return True

    def evaluate(self) -> list[Transition]:
        """Evaluate every minute closed since the checkpoint; persist as it goes."""
        out: list[Transition] = self._evaluate_kpis()
        if self.levels_on:
            out.extend(self._evaluate_levels())
        if self.metrics is not None and self.engine.minute is not None:
            self.metrics.alert_evaluated_minute.set(self.engine.minute * 60)
        if self.metrics is not None and self.levels.minute is not None:
            self.metrics.alert_levels_evaluated_minute.set(self.levels.minute * 60)
        if self.metrics is not None:
            self.metrics.alerts_firing.set(len(self.engine.firing()) + len(self.levels.firing()))
        return out

    def _evaluate_kpis(self) -> list[Transition]:
        closed = self.io.closed_minute(self.settings.topics.partitions)
        if closed is None or (not self.loaded and not self._load(closed)):
            return []
        return self._catch_up(self.engine, closed, self.io.deltas, self.io)

    def _evaluate_levels(self) -> list[Transition]:
        """Rise rules: every minute the customer history has frozen since their checkpoint."""
        io, engine = self.level_io, self.levels
        closed = io.closed_minute(self.settings.topics.partitions)
        if closed is None:
            return []
        if not self.levels_loaded:
            found = io.checkpoints.load_checkpoint()
            if found is not None:
                minute, snap = found
            else:
                first = io.first_minute(closed)
                start = closed if first is None else first
                days = self.settings.alerts.backfill_days
                minute, snap = max(start, closed - int(days * 1440)) - 1, None
            changes = io.changes(minute - engine.series.span, minute, fold_before=True)
            engine.load(minute, changes, io.first_minute(minute))  # warm-up from the start
            restored = engine.restore(snap) if snap else []
            log.info(
                "rise rules resumed" if snap else "rise rules started",
                extra=kv(minute=dt(minute).isoformat(), rules=len(engine.rules),
                         restored=len(restored)),
            )  # fmt: skip
            self.levels_loaded = True
        return self._catch_up(engine, closed, io.changes_by_minute, io.checkpoints)

    def _catch_up(
        self,
        engine: Engine | LevelEngine,
        closed: int,
        rows_by_minute: Callable[[int, int], dict[int, list[Any]]],
        checkpoints: AlertStore,
    ) -> list[Transition]:
        """Feed ``engine`` every minute up to ``closed`` with the rows that became known at
        it, in batches of ``BATCH`` minutes, persisting each batch with its checkpoint."""
        out: list[Transition] = []
        while engine.minute is not None and engine.minute < closed:
            first = engine.minute + 1
            last = min(closed, first + BATCH - 1)
            rows = rows_by_minute(first, last)
            batch: list[Transition] = []
            for minute in range(first, last + 1):
                batch.extend(engine.advance(minute, rows.get(minute, [])))
            self._persist(batch)
            checkpoints.save_checkpoint(last, self.rules.digest, engine.snapshot())
            out.extend(batch)
        return out

    def _persist(self, transitions: list[Transition]) -> None:
        """Transitions to ``alerts`` and the outbox (the caller checkpoints after)."""
        rows, entries = [], []
        for t in transitions:
            rule = self.by_rule[t.rule]
            note = notification(rule, t, self.grafana)
            notified = None
            if t.state == "resolved":
                previous = self.io.alert_row(t.alert_id)
                notified = previous.get("notified_at") if previous else None
            rows.append(_row(rule, t, note, notified))
            for r in self.receivers:
                entries.append({
                    "receiver": r.name, "transition_id": t.transition_id, "alert_id": t.alert_id,
                    "state": t.state, "minute": dt(t.minute), "payload": json.dumps(note),
                    "status": "pending", "attempts": 0, "last_error": "", "delivered_at": None,
                    "version": 0,
                })  # fmt: skip
            if self.metrics is not None:
                self.metrics.alert_transitions.labels(t.state).inc()
            scope = "/".join(x for x in t.group if x)
            log.info(
                f"alert {t.state}",
                extra=kv(rule=t.rule, scope=scope, minute=dt(t.minute).isoformat(),
                         alert_id=t.alert_id, summary=note["summary"]),
            )  # fmt: skip
        self.io.write_alert_rows(rows)
        self.io.write_outbox(entries)

    # -- deliver (async) --

    async def deliver(self, session: aiohttp.ClientSession) -> int:
        """Send pending notifications of checkpointed minutes; returns how many went out."""
        upto = max((m for m in (self.engine.minute, self.levels.minute) if m is not None),
                   default=None)  # fmt: skip
        if not self.receivers or upto is None:
            return 0
        loop = asyncio.get_running_loop()
        pending = await loop.run_in_executor(None, self.io.pending, upto)
        if self.metrics is not None:
            self.metrics.alert_outbox_pending.set(len(pending))
        by_name = {r.name: r for r in self.receivers}
        blocked: set[tuple[str, str]] = set()
        results: list[dict[str, Any]] = []
        now_mono = self.clock()
        for e in pending:
            receiver = by_name.get(e["receiver"])
            chain = (e["receiver"], e["alert_id"])
            key = (e["receiver"], e["transition_id"])
            due = self._retry.get(key)
            if receiver is None or chain in blocked or (due and due[0] > now_mono):
                blocked.add(chain)
                continue
            attempts = int(e["attempts"]) + 1
            try:
                await send(session, receiver, [json.loads(e["payload"])], now=datetime.now(UTC),
                           resend_seconds=self.settings.alerts.resend_interval_seconds)  # fmt: skip
            except DeliveryError as exc:
                blocked.add(chain)
                a = self.settings.alerts
                delay = min(a.retry_max_seconds, (due[1] * 2) if due else a.retry_initial_seconds)
                self._retry[key] = (now_mono + delay, delay)
                self._count(receiver.name, "failure")
                log.warning(
                    "alert delivery failed, will retry",
                    extra=kv(receiver=receiver.name, transition=e["transition_id"],
                             attempts=attempts, retry_in_s=delay, error=str(exc)[:200]),
                )  # fmt: skip
                results.append({**e, "attempts": attempts, "error": str(exc)[:500], "ok": False})
                continue
            self._retry.pop(key, None)
            self._count(receiver.name, "success")
            results.append({**e, "attempts": attempts, "error": "", "ok": True})
        if results:
            await loop.run_in_executor(None, self._record, results, pending)
        return sum(r["ok"] for r in results)

    def _count(self, receiver: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.alert_deliveries.labels(receiver, result).inc()

    def _record(self, results: list[dict[str, Any]], pending: list[dict[str, Any]]) -> None:
        now = datetime.now(UTC)
        self.io.write_outbox([
            {"receiver": r["receiver"], "transition_id": r["transition_id"],
             "alert_id": r["alert_id"], "state": r["state"], "minute": dt(r["minute"]),
             "payload": r["payload"], "status": "delivered" if r["ok"] else "pending",
             "attempts": r["attempts"], "last_error": r["error"],
             "delivered_at": now if r["ok"] else None,
             "version": 2 * r["attempts"] + (1 if r["ok"] else 0)}
            for r in results
        ])  # fmt: skip
        ok = {(r["receiver"], r["transition_id"]) for r in results if r["ok"]}
        tids = {tid for _, tid in ok}
        complete = {
            tid
            for tid in tids
            if all((e["receiver"], tid) in ok for e in pending if e["transition_id"] == tid)
        }
        for tid in sorted(complete):
            alert_id, state = tid.split("/")
            row = self.io.alert_row(alert_id)
            if row is None:
                continue
            column = "notified_at" if state == "firing" else "resolved_notified_at"
            if row.get(column) is None:  # the newest row of the alert, whatever its state
                row[column] = now
                row["version"] = int(row["version"]) + 1
                self.io.write_alert_rows([row])

    async def resend(self, session: aiohttp.ClientSession) -> None:
        """Re-send every firing alert to Alertmanager (keeps it open there, like Prometheus)."""
        am = next((r for r in self.receivers if r.name == "alertmanager"), None)
        a = self.settings.alerts
        if am is None or self.clock() - self._last_resend < a.resend_interval_seconds:
            return
        self._last_resend = self.clock()
        notes = []
        for rule, key, st in self.engine.firing() + self.levels.firing():
            t = Transition(
                st.alert_id,
                rule.name,
                key,
                "firing",
                st.fired_at,
                st.onset,
                st.fired_at,
                st.details,
            )
            notes.append(notification(rule, t, self.grafana))
        if not notes:
            return
        try:
            await send(
                session, am, notes, now=datetime.now(UTC), resend_seconds=a.resend_interval_seconds
            )
            self._count(am.name, "success")
        except DeliveryError as exc:
            self._count(am.name, "failure")
            log.warning("alert re-send failed", extra=kv(receiver=am.name, error=str(exc)[:200]))

    async def step(self, session: aiohttp.ClientSession) -> list[Transition]:
        started = time.perf_counter()
        transitions = await asyncio.get_running_loop().run_in_executor(None, self.evaluate)
        await self.deliver(session)
        await self.resend(session)
        if self.metrics is not None:
            self.metrics.alert_evaluation_seconds.observe(time.perf_counter() - started)
        return transitions


async def run_evaluator(
    settings: Settings,
    store: Store,
    metrics: Metrics | None,
    stop_event: asyncio.Event,
    *,
    evaluator: AlertEvaluator | None = None,
    may_run: Callable[[], bool] | None = None,
    guard: Any = None,
) -> None:
    """Step every ``evaluate_interval_seconds`` until ``stop_event``; errors back off.

    ``may_run`` (the lease) is asked before each step; ``guard`` (an async context
    manager) is held during a step so a lease revoke waits for it to finish.
    """
    if not settings.alerts.enabled:
        log.info("alerts disabled (alerts.enabled = false)")
        return
    ev = evaluator or AlertEvaluator(settings, store, metrics)
    interval = settings.alerts.evaluate_interval_seconds
    delay = interval
    async with aiohttp.ClientSession() as session:
        while not stop_event.is_set():
            try:
                if may_run is None or may_run():
                    if guard is not None:
                        async with guard:
                            if may_run is None or may_run():
                                await ev.step(session)
                    else:
                        await ev.step(session)
                delay = interval
            except asyncio.CancelledError:
                raise
            except StoreUnavailable as exc:
                delay = min(delay * 2, 60.0)
                log.warning(
                    "alert evaluator: clickhouse unavailable",
                    extra=kv(retry_in_s=delay, cause=str(exc)[:200]),
                )
            except Exception:
                delay = min(delay * 2, 300.0)
                log.exception("alert evaluator step failed", extra=kv(retry_in_s=delay))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), timeout=delay)
