"""The evaluator lease with a ClickHouse server DSN: exactly one holder, and a successor.

Two ``KafkaLease`` members of one group on the real broker: at every sample at most one
holds the lease, one does once the group settles, and when the holder leaves the other
takes over (the evaluator of a stopped sink is replaced).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest

from pipeline.core.config import Settings
from sinks.alerts.lease import KafkaLease

pytestmark = pytest.mark.integration


async def _until(
    check: Callable[[], bool],
    timeout: float,
    seen: list[tuple[bool, bool]],
    a: KafkaLease,
    b: KafkaLease,
) -> bool:
    """Poll ``check`` for up to ``timeout`` s, recording who held the lease each time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        seen.append((a.held(), b.held()))
        if check():
            return True
        await asyncio.sleep(0.1)
    return False


def test_one_member_holds_the_lease_and_a_successor_takes_over(kafka_bootstrap: str) -> None:
    app = f"lease{uuid.uuid4().hex[:8]}"
    settings = Settings(
        app_id=app,
        kafka={"bootstrap_servers": kafka_bootstrap},
        alerts={"lease_topic": f"{app}.alerts-lease"},
    )

    async def scenario() -> None:
        a, b = KafkaLease(settings), KafkaLease(settings)
        seen: list[tuple[bool, bool]] = []
        await a.start()
        await b.start()
        try:
            assert await _until(lambda: a.held() != b.held(), 60, seen, a, b), seen[-5:]
            # Stable: the holder keeps it while both stay.
            await _until(lambda: False, 3, seen, a, b)
            holder, other = (a, b) if a.held() else (b, a)
            assert holder.held() and not other.held()
            await holder.stop()
            assert await _until(other.held, 60, seen, a, b), "the successor never took the lease"
            assert not any(x and y for x, y in seen), "two members held the lease at once"
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(scenario())
