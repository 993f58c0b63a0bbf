"""Delivery: outbox order, retries with backoff (counted, never dropped), idempotency keys,
Alertmanager bodies, the Grafana link; against a real HTTP receiver run by the test."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from pipeline.core.config import Settings
from pipeline.core.metrics import Metrics
from sinks.alerts.delivery import alertmanager_body, grafana_link
from sinks.alerts.evaluator import AlertEvaluator
from sinks.clickhouse.store import ClickHouseStore
from streams.alerts.rules import parse_rules
from tests.alert_data import PARTITIONS, RULES, Drop, insert_progress, synthetic
from tests.unit.test_clickhouse_contract import migrated_store

DATA = synthetic(360, (Drop("csat", "billing", 240, 290, 0.3),), seed=5)
RULESET = parse_rules(RULES, "test-rules.yaml")


class Receiver:
    """A webhook that fails its first ``failures`` requests."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.attempts = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.attempts <= self.failures:
            return web.Response(status=503, text="busy")
        self.received.append((request.headers.get("Idempotency-Key", ""), await request.json()))
        return web.Response(status=204)


@pytest.fixture
def db(chdb_client: Any, chdb_database: str) -> ClickHouseStore:
    store = migrated_store(chdb_client, chdb_database)
    DATA.insert(store)
    return store


async def serve(receiver: Receiver) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


def test_failed_deliveries_are_retried_with_backoff_counted_and_kept(db: ClickHouseStore) -> None:
    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    receiver = Receiver(failures=2)
    now = [0.0]

    async def main() -> AlertEvaluator:
        runner, port = await serve(receiver)
        settings = Settings(
            topics={"partitions": PARTITIONS},
            alerts={"webhook_url": f"http://127.0.0.1:{port}/hook", "backfill_days": 30,
                    "retry_initial_seconds": 10, "retry_max_seconds": 40},
        )  # fmt: skip
        ev = AlertEvaluator(settings, db, metrics, rules=RULESET, clock=lambda: now[0])
        insert_progress(db, DATA.last_minute)
        try:
            async with aiohttp.ClientSession() as session:
                await ev.step(session)  # evaluate; first attempt fails
                assert receiver.attempts == 1 and not receiver.received
                await ev.deliver(session)  # too early: backing off, nothing sent
                assert receiver.attempts == 1
                now[0] = 10.5
                await ev.deliver(session)  # second attempt fails, next delay 20 s
                now[0] = 25.0
                await ev.deliver(session)  # still backing off
                assert receiver.attempts == 2
                now[0] = 31.0
                await ev.deliver(session)  # delivered: firing, then resolved
                now[0] = 100.0
                await ev.deliver(session)  # nothing left
        finally:
            await runner.cleanup()
        return ev

    ev = asyncio.run(main())
    states = [body["status"] for _, body in receiver.received]
    assert states == ["firing", "resolved"]
    keys = [k for k, _ in receiver.received]
    assert keys == [body["transition_id"] for _, body in receiver.received]
    assert keys[0].endswith("/firing") and keys[1].endswith("/resolved")
    body = receiver.received[0][1]
    assert body["rule"] == "csat_drop" and body["scope"]["team"] == "billing"
    assert body["observed"] < body["baseline"] and body["samples"] > 0
    assert "dashboard" in body["annotations"] and "viewPanel=13" in body["dashboard_url"]
    sample = registry.get_sample_value
    assert (
        sample("cxpulse_alert_deliveries_total", {"receiver": "webhook", "result": "failure"}) == 2
    )
    assert (
        sample("cxpulse_alert_deliveries_total", {"receiver": "webhook", "result": "success"}) == 2
    )
    outbox = db.query(f"SELECT status, attempts FROM {db.database}.alert_outbox FINAL")
    assert sorted(outbox) == [("delivered", 1), ("delivered", 3)]
    (row,) = db.query(f"SELECT notified_at, resolved_notified_at FROM {db.database}.alerts FINAL")
    assert row[0] is not None and row[1] is not None
    assert ev.io.pending(DATA.last_minute) == []


def test_alertmanager_body() -> None:
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    note = {
        "status": "firing",
        "labels": {"alertname": "csat_drop", "team": "billing"},
        "annotations": {"summary": "s"},
        "started_at": "2026-03-02T11:30:00Z",
        "resolved_at": None,
        "dashboard_url": "http://grafana/d/x",
    }
    body = alertmanager_body(note, now, 60)
    assert body["startsAt"] == "2026-03-02T11:30:00.000Z"
    assert body["endsAt"] == "2026-03-02T12:04:00.000Z"  # four re-send intervals ahead
    assert body["generatorURL"] == "http://grafana/d/x"
    resolved = {**note, "status": "resolved", "resolved_at": "2026-03-02T11:50:00Z"}
    assert alertmanager_body(resolved, now, 60)["endsAt"] == "2026-03-02T11:50:00.000Z"
    future = {**note, "started_at": (now + timedelta(hours=1)).isoformat()}
    assert alertmanager_body(future, now, 60)["startsAt"] == "2026-03-02T12:00:00.000Z"


def test_grafana_link_points_at_the_kpi_panel() -> None:
    with open("deploy/grafana/dashboards/cxpulse-kpis.json") as fh:
        dashboard = json.load(fh)
    panels = {p["id"]: p["title"] for p in dashboard["panels"]}
    from streams.alerts.kpis import KPIS

    titles = {
        "csat_pct": "CSAT",
        "frt_p50": "First response time",
        "reply_p90": "Reply time",
        "opened": "Volume per interval",
        "frt_sla_breach_rate": "First-response SLA breaches",
        "nps": "NPS and CES",
        "resolution_rate": "Resolution, one-touch and reopen rates",
    }
    for kpi, title in titles.items():
        assert panels[KPIS[kpi].panel] == title
    assert dashboard["uid"] == Settings().alerts.grafana_dashboard_uid
    rule = RULESET.rules[0]

    class T:
        onset, minute, group, details = 1000, 1030, ("team", "billing", "", "", "", ""), {}

    link = grafana_link("http://g:3000/", "cxpulse-kpis", rule, T())  # type: ignore[arg-type]
    assert link.startswith("http://g:3000/d/cxpulse-kpis/cxpulse-kpis?viewPanel=13")
    assert "var-team=billing" in link and "from=52800000" in link
