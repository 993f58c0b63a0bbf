"""The README's main job (`cxpulse run`), on the session's broker, as a user runs it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kafka_harness import free_port_block
from tests.pipeline_harness import ROOT, PipelineHarness

pytestmark = pytest.mark.integration


def test_run_shows_the_board_and_exits_cleanly(kafka_bootstrap: str, tmp_path: Path) -> None:
    h = PipelineHarness(kafka_bootstrap, tmp_path, partitions=2)
    web = free_port_block(1)
    env = h.env(CXPULSE_PORTS__SINK_WEB=str(web))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "run",
            "--duration",
            "8",
            "--rate",
            "50",
            "--warmup-minutes",
            "5",
            "--refresh",
            "3",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"using the Kafka broker at {kafka_bootstrap}" in out
    assert "== cxpulse final KPIs" in out
    final = out[out.index("== cxpulse final KPIs") :]
    stored = next(line for line in final.splitlines() if line.startswith("stored: "))
    produced = next(line for line in final.splitlines() if line.startswith("produced "))
    stored_events = int(stored.split()[1].replace(",", ""))
    late = int(stored.split(" late;")[0].rsplit(" ", 1)[1].replace(",", ""))
    valid = int(produced.split("valid=")[1].rstrip(")").replace(",", ""))
    # Every valid event the job produced is in ClickHouse or routed late (duplicates and
    # malformed messages are not valid events).
    assert stored_events + late == valid > 100
    for team in ("billing", "technical", "accounts", "shipping"):
        assert team in final
    # Off a terminal the live board is plain text with its status line (lag read from Kafka).
    assert re.search(r"== cxpulse live KPIs \(t=\d+s .* lag compute [\d,]+ / sink [\d,]+", out)
    # Numbers worth reading after a short warm-up: survey answers and resolutions for all teams.
    overall = [line for line in final.splitlines() if line.startswith("all teams")]
    assert len(overall) == 2, final  # the response block and the outcome block
    counts = [int(n.replace(",", "")) for n in re.findall(r"\(n=([\d,]+)\)", overall[1])]
    resolution_n, one_touch_n, _reopen_n, csat_n, nps_n, ces_n = counts
    assert resolution_n > 100 and one_touch_n > 30, overall[1]
    assert csat_n >= 20 and ces_n >= 5 and nps_n >= 1, overall[1]
    assert "resol. rate 0." not in out  # rates are percentages, not fractions
