"""Workers as an operator runs them: health endpoints, /metrics, graceful stops.

* ``/health/live`` answers as soon as the web server runs; ``/health/ready`` is 503 until the
  worker owns its partitions and has restored their state, then 200.
* Every process's ``/metrics`` passes ``promtool check metrics`` and carries the series the
  shipped Prometheus rules use.
* SIGTERM while events flow: the compute worker lets its transactions in flight commit, the
  sink flushes what it holds and commits only what ClickHouse accepted; both exit 0, and
  after restarts ClickHouse equals one clean pass (nothing lost, nothing twice).
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.integration.test_exactly_once import PacedProducer, messages, wait_until_moving
from tests.kafka_harness import free_port_block
from tests.pipeline_harness import PipelineHarness
from tests.promtool import check_metrics
from tests.stored import compare_with_oracle

pytestmark = pytest.mark.integration


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def wait_for(check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout}s")


def test_health_metrics_and_graceful_stops(kafka_bootstrap: str, tmp_path: Path) -> None:
    h = PipelineHarness(kafka_bootstrap, tmp_path, partitions=2)
    h.cli("topics", "create")
    base = free_port_block(4)
    web_c, web_s, met_c, met_s = base, base + 1, base + 2, base + 3
    ports = {
        "CXPULSE_PORTS__WORKER_WEB": str(web_c),
        "CXPULSE_PORTS__SINK_WEB": str(web_s),
        "CXPULSE_PORTS__WORKER_METRICS": str(met_c),
        "CXPULSE_PORTS__SINK_METRICS": str(met_s),
    }
    sink = h.start_worker("sink", **ports)
    compute = h.start_worker("compute", **ports)
    # Live first; ready only once assigned and restored.
    wait_for(lambda: get(web_c, "/health/live")[0] == 200, 60)
    wait_for(lambda: get(web_c, "/health/ready")[0] == 200, 60)
    wait_for(lambda: get(web_s, "/health/ready")[0] == 200, 60)
    assert json.loads(get(web_c, "/health/ready")[1]) == {"ready": True}

    feeder = PacedProducer(h, messages(seed=31, minutes=60, per_hour=900), rate=700)
    feeder.start()
    group, events = f"{h.app_id}-compute", [h.topics["events"]]
    wait_until_moving(h, group, events, timeout=60)
    # Graceful stop of compute while offsets move; it must exit 0 (transactions drained).
    assert h.stop(compute, timeout=60) == 0, h.logs()
    compute = h.start_worker("compute", **ports)
    wait_until_moving(h, group, events, timeout=60)
    # The sink stopped while it holds a batch: it flushes and commits, exits 0.
    assert h.stop(sink, timeout=90) == 0, h.logs()
    sink = h.start_worker("sink", **ports)
    feeder.join(timeout=120)
    assert feeder.error is None
    h.wait_drained(timeout=180)

    for port, role in ((met_c, "compute"), (met_s, "sink")):
        status, text = get(port, "/metrics")
        assert status == 200
        assert check_metrics(text) == [], role
        assert f'cxpulse_worker_ready{{role="{role}"}} 1.0' in text, role
    _, compute_metrics = get(met_c, "/metrics")
    assert "cxpulse_consumer_lag_messages{" in compute_metrics
    assert re.search(r'cxpulse_consumer_lag_messages\{[^}]*role="sink"', get(met_s, "/metrics")[1])
    assert 'cxpulse_events_total{verdict="accepted"}' in compute_metrics
    _, sink_metrics = get(met_s, "/metrics")
    assert "cxpulse_visibility_latency_seconds_bucket" in sink_metrics

    assert h.stop(compute) == 0, h.logs()
    assert h.stop(sink) == 0, h.logs()
    assert get(web_c, "/health/live")[0] == 0  # gone
    compare_with_oracle(h)
