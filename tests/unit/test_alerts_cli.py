"""``cxpulse alerts check`` and ``cxpulse alerts`` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from pipeline.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]


def test_check_a_good_and_a_bad_file(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("rules:\n  - {name: csat_drop, kpi: csat_pct, margin: 2}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: x\n    kpi: csatt\n  - name: y\n    kpi: opened\n")
    runner = CliRunner()
    ok = runner.invoke(cli, ["alerts", "check", str(good)])
    assert ok.exit_code == 0 and "1 rule(s) ok: csat_drop" in ok.output
    res = runner.invoke(cli, ["alerts", "check", str(bad)])
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.startswith(str(bad))]
    assert len(lines) == 2
    assert lines[0].startswith(f"{bad}:3:") and "did you mean csat_pct" in lines[0]
    assert lines[1].startswith(f"{bad}:4:") and "direction is required" in lines[1]
    assert runner.invoke(cli, ["alerts", "check", str(tmp_path / "nope.yaml")]).exit_code == 1
    assert runner.invoke(cli, ["alerts", "check"]).exit_code == 2  # usage error


def test_alerts_lists_firing_and_recent_from_clickhouse(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CXPULSE_")},
        "CXPULSE_CLICKHOUSE__DSN": f"chdb://{tmp_path / 'ch'}",
        "CXPULSE_PORTS__SINK_WEB": "0",
    }
    seed = """
import sys
from datetime import UTC, datetime
from sinks.clickhouse.store import open_store
from sinks.clickhouse.migrate import migrate
s = open_store(sys.argv[1], "cxpulse")
migrate(s, minute_ttl_days=400, side_ttl_days=30)
now = datetime.now(UTC).replace(second=0, microsecond=0)
rows = [("a1", "firing", None), ("a2", "resolved", now)]
names = ("alert_id", "rule", "kpi", "grouping", "team", "state", "started_at", "fired_at",
         "resolved_at", "ended_at", "baseline", "observed", "severity", "summary", "version")
cols = [[r[0] for r in rows], ["csat_drop"] * 2, ["csat_pct"] * 2, ["team"] * 2,
        ["billing", "tech"], [r[1] for r in rows], [now] * 2, [now] * 2, [r[2] for r in rows],
        [r[2] for r in rows], [86.0] * 2, [40.0] * 2, ["page"] * 2,
        ["CSAT dropped for team billing", "CSAT dropped for team tech"], [1, 1]]
s.insert("alerts", cols, names)
"""
    subprocess.run([sys.executable, "-c", seed, env["CXPULSE_CLICKHOUSE__DSN"]], env=env,
                   cwd=ROOT, check=True, capture_output=True, timeout=120)  # fmt: skip

    def cxpulse(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "pipeline", *args],
            env=env, cwd=ROOT, check=True, capture_output=True, text=True, timeout=120,
        ).stdout  # fmt: skip

    payload = json.loads(cxpulse("alerts", "--json"))
    assert [a["alert_id"] for a in payload["firing"]] == ["a1"]
    assert {a["alert_id"] for a in payload["recent"]} == {"a1", "a2"}
    text = cxpulse("alerts")
    assert "firing (1):" in text and "CSAT dropped for team billing" in text
    assert "CSAT dropped for team tech" in text.split("recent (resolved):")[1]


def test_the_alerts_role_refuses_the_embedded_engine(tmp_path: Path) -> None:
    """With chDB the sink owns the engine and evaluates; a second evaluator process would
    fight it for the lock, so ``--role alerts`` says what to do instead of starting."""
    env = {**os.environ, "CXPULSE_CLICKHOUSE__DSN": f"chdb://{tmp_path / 'ch'}"}
    res = subprocess.run(
        [sys.executable, "-m", "pipeline", "worker", "--role", "alerts"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode != 0
    assert "--role alerts needs a ClickHouse server DSN" in res.stderr, res.stderr
    assert not (tmp_path / "ch").exists()  # refused before opening the engine
