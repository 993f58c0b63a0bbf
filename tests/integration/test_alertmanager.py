"""Drop alerts through the real Alertmanager: firing once, resolved once, kill -9 included.

The evaluator runs in its own process (it owns the chDB store, as the sink does) and
plays a synthetic incident minute by minute (tests/alert_driver.py); Alertmanager routes
to a webhook receiver this test runs, and cxpulse's generic webhook posts here as well.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.alert_driver import DROP, MINUTES
from tests.alertmanager_harness import Alertmanager, Inbox
from tests.pipeline_harness import ROOT

pytestmark = pytest.mark.integration
START = int(datetime.now(UTC).timestamp()) // 60 - MINUTES - 120


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Inbox, Alertmanager]]:
    inbox = Inbox()
    am = Alertmanager(tmp_path, inbox)
    try:
        yield inbox, am
    finally:
        am.stop()
        inbox.close()


def spawn(workdir: Path, am: Alertmanager, inbox: Inbox) -> subprocess.Popen[bytes]:
    log = (workdir / "driver.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.alert_driver", str(workdir), str(START), am.url,
         f"http://127.0.0.1:{inbox.port}/hook"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


def progress(workdir: Path) -> int:
    path = workdir / "progress"
    return int(path.read_text()) if path.exists() else 0


def wait(what: str, cond: Callable[[], bool], proc: subprocess.Popen[bytes], workdir: Path,
         timeout: float = 60.0) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    log = (workdir / "driver.log").read_text(errors="replace")[-4000:]
    raise AssertionError(f"timed out waiting for {what} (driver exit {proc.poll()})\n{log}")


def kill9(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def resolved(inbox: Inbox) -> Callable[[], bool]:
    return lambda: bool(inbox.notifications("resolved", "csat_drop"))


def assert_once_each(inbox: Inbox) -> None:
    firing = inbox.notifications("firing", "csat_drop")
    resolved = inbox.notifications("resolved", "csat_drop")
    assert len(firing) == 1, firing
    assert len(resolved) == 1, resolved
    alert = firing[0]["alerts"][0]
    assert alert["labels"]["team"] == "billing" and alert["labels"]["severity"] == "page"
    assert alert["labels"]["kpi"] == "csat_pct" and alert["labels"]["rule"] == "csat_drop"
    assert "CSAT dropped for team billing" in alert["annotations"]["summary"]
    assert "viewPanel=13" in alert["annotations"]["dashboard"]
    assert int(alert["annotations"]["samples"]) > 0
    assert resolved[0]["alerts"][0]["status"] == "resolved"
    # No other rule fired: the tech team and the FRT rule stay quiet.
    assert {a["labels"]["alertname"] for n in inbox.am for a in n["alerts"]} == {"csat_drop"}
    # The generic webhook: every transition, each repeat (at-least-once) with the same key.
    keys = Counter(k for k, _ in inbox.hook)
    assert {k.split("/")[1] for k in keys} == {"firing", "resolved"} and len(keys) == 2
    for key, body in inbox.hook:
        assert body["transition_id"] == key


def test_an_incident_fires_once_and_resolves_once(
    rig: tuple[Inbox, Alertmanager], tmp_path: Path
) -> None:
    inbox, am = rig
    proc = spawn(tmp_path, am, inbox)
    try:
        wait("the resolved notification", resolved(inbox), proc, tmp_path, timeout=75)
        time.sleep(4)  # two group intervals: a duplicate would have arrived by now
    finally:
        kill9(proc)
    assert_once_each(inbox)
    assert Counter(k for k, _ in inbox.hook).most_common(1)[0][1] == 1  # no crash: no repeat


def test_killed_mid_incident_and_restarted_still_once_each(
    rig: tuple[Inbox, Alertmanager], tmp_path: Path
) -> None:
    inbox, am = rig
    # 1: killed after the firing transition was stored, before it was sent
    (tmp_path / "crash-before-send").touch()
    first = spawn(tmp_path, am, inbox)
    wait("the first crash", lambda: first.poll() is not None, first, tmp_path)
    assert first.returncode == 137 and not inbox.am
    # 2: killed after Alertmanager accepted it, before the send was recorded (resent later)
    (tmp_path / "crash-after-send").touch()
    second = spawn(tmp_path, am, inbox)
    wait("the second crash", lambda: second.poll() is not None, second, tmp_path)
    assert second.returncode == 137
    # 3: kill -9 mid-incident, once the firing notification is out
    third = spawn(tmp_path, am, inbox)
    try:
        wait("the firing notification", lambda: bool(inbox.notifications("firing", "csat_drop")),
             third, tmp_path)  # fmt: skip
        at_kill = progress(tmp_path)
    finally:
        kill9(third)
    assert at_kill < DROP.end + 5, "the kill must come before the drop is over"
    # 4: resumes, resolves
    fourth = spawn(tmp_path, am, inbox)
    try:
        wait("the resolved notification", resolved(inbox), fourth, tmp_path, timeout=75)
        time.sleep(4)
    finally:
        kill9(fourth)
    assert_once_each(inbox)
