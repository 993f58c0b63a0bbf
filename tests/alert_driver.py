"""A process that owns a chDB store, plays a synthetic incident minute by minute into
``source_progress``, and runs the real alert evaluator's ``step`` after each advance.

The evaluator is ``sinks.alerts.evaluator.AlertEvaluator`` unchanged; only its clock is
the simulated progress. Started, killed (SIGKILL) and restarted by
tests/integration/test_alertmanager.py; a restart resumes from what is stored. Optional
crash points (flag files, each used once) end the process with ``os._exit(137)``, like a
kill -9, right before a firing notification is sent, or right after it was sent and
before the send is recorded.

    python -m tests.alert_driver DIR START_MINUTE AM_URL HOOK_URL
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp

import sinks.alerts.evaluator as evaluator_module
from pipeline.core.config import Settings
from sinks.alerts.evaluator import AlertEvaluator
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.store import open_store
from streams.alerts.rules import parse_rules
from tests.alert_data import PARTITIONS, RULES, Drop, insert_progress, synthetic

MINUTES = 330
FIRST_CLOSED = 200  # offset of the first minute closed at the first start
DROP = Drop("csat", "billing", 240, 280, 0.25)
PACE = 0.25  # seconds per event-time minute


def _crash_points(workdir: Path) -> None:
    real_send = evaluator_module.send

    async def send(session: Any, receiver: Any, notes: list[dict], **kw: Any) -> None:
        firing = any(n["status"] == "firing" for n in notes) and receiver.name == "alertmanager"
        before, after = workdir / "crash-before-send", workdir / "crash-after-send"
        if firing and before.exists():
            before.unlink()
            os._exit(137)
        await real_send(session, receiver, notes, **kw)
        if firing and after.exists():
            after.unlink()
            os._exit(137)

    evaluator_module.send = send  # type: ignore[assignment]


async def main(workdir: Path, start: int, am_url: str, hook_url: str) -> None:
    store = open_store(f"chdb://{workdir / 'chdb'}", "cxpulse")
    migrate(store, minute_ttl_days=400, side_ttl_days=30)
    data = synthetic(MINUTES, (DROP,), seed=11, start=start)
    (count,) = store.query("SELECT count() FROM cxpulse.kpi_minute_partials")[0]
    if not count:
        data.insert(store)
        insert_progress(store, start + FIRST_CLOSED)
    settings = Settings(
        topics={"partitions": PARTITIONS},
        alerts={"alertmanager_url": am_url, "webhook_url": hook_url, "backfill_days": 30,
                "retry_initial_seconds": 0.2, "retry_max_seconds": 1.0,
                "resend_interval_seconds": 1.0},
    )  # fmt: skip
    _crash_points(workdir)
    ev = AlertEvaluator(settings, store, rules=parse_rules(RULES, "test-rules.yaml"))
    async with aiohttp.ClientSession() as session:
        while True:
            (closed,) = store.query(
                "SELECT min(toUnixTimestamp(progress)) FROM cxpulse.source_progress FINAL"
            )[0]
            closed = int(closed) // 60 - 1
            await ev.step(session)
            if closed < data.last_minute:
                insert_progress(store, closed + 1)
                (workdir / "progress").write_text(str(closed + 1 - start))
            await asyncio.sleep(PACE)


if __name__ == "__main__":
    workdir, start, am, hook = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    asyncio.run(main(workdir, start, am, hook))
