"""The simulator's customers: a churn-prone minority, comments on low answers, the truth file."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline.cli.main import cli
from pipeline.simulator import CustomerLedger, SimulationParams, simulate
from pipeline.simulator.customers import churn_prone

START = datetime(2026, 3, 2, tzinfo=UTC)
DAY = 86_400_000_000


def week(**kwargs: Any) -> SimulationParams:
    defaults: dict[str, Any] = {
        "seed": 4,
        "start": START,
        "duration": timedelta(days=4),
        "conversations_per_hour": 80,
        "churn_prone_share": 0.05,
    }
    return SimulationParams(**{**defaults, **kwargs})


def test_churn_prone_is_a_stable_minority() -> None:
    flags = [churn_prone(7, s, r, i, 0.05) for s in range(3) for r in range(3) for i in range(2000)]
    assert 0.04 < sum(flags) / len(flags) < 0.06
    assert flags == [
        churn_prone(7, s, r, i, 0.05) for s in range(3) for r in range(3) for i in range(2000)
    ]
    assert not any(churn_prone(7, 0, 0, i, 0.0) for i in range(1000))
    with pytest.raises(ValueError, match="churn_prone_share"):
        SimulationParams(churn_prone_share=1.5)


def test_churn_prone_customers_answer_low_reopen_and_come_back() -> None:
    params = week()
    ledger = CustomerLedger(params)
    customer_of: dict[str, str] = {}
    scores: dict[bool, list[int]] = defaultdict(list)
    reopens: dict[bool, int] = defaultdict(int)
    opened: dict[bool, int] = defaultdict(int)
    comments = 0
    for ev in simulate(params, ledger.observe):
        obj = json.loads(ev.value)
        if "customer_id" in obj:
            customer_of[obj["conversation_id"]] = obj["customer_id"]
        churn = ledger._is_churn(customer_of[obj["conversation_id"]])
        if obj["type"] == "survey.csat":
            scores[churn].append(obj["score"])
        elif obj["type"] == "conversation.reopened":
            reopens[churn] += 1
        elif obj["type"] == "conversation.opened":
            opened[churn] += 1
        if "comment" in obj:
            comments += 1
            low = {"survey.csat": 2, "survey.nps": 6, "survey.ces": 3}[obj["type"]]
            assert obj["score"] <= low
    assert scores[True] and max(scores[True]) <= 3
    assert sum(s >= 4 for s in scores[False]) / len(scores[False]) > 0.7
    assert reopens[True] / opened[True] > 3 * reopens[False] / opened[False]
    assert comments > 50


def test_truth_lists_what_the_simulation_caused_and_is_deterministic() -> None:
    runs = []
    for _ in range(2):
        ledger = CustomerLedger(week())
        for _ev in simulate(week(), ledger.observe):
            pass
        runs.append(ledger.truth())
    assert runs[0] == runs[1]
    truth = runs[0]
    assert truth["customers"] and truth["churn_prone_customers_seen"] >= len(truth["customers"])
    ledger = CustomerLedger(week())
    seen = set()
    for item in truth["customers"]:
        m = re.fullmatch(r"cus-(\w+)-(\w{3})-(\d+)", item["customer_id"])
        assert m and ledger._is_churn(item["customer_id"])
        assert item["reasons"] and set(item["reasons"]) <= {
            "csat_low",
            "nps_detractor",
            "reopens",
            "repeat_contacts",
        }
        seen |= set(item["reasons"])
    assert seen == {"csat_low", "nps_detractor", "reopens", "repeat_contacts"}


def test_truth_rules_on_hand_made_events() -> None:
    params = week(churn_prone_share=1.0)  # everybody churn-prone
    ledger = CustomerLedger(params)
    t0 = 1_770_000_000_000_000

    def ev(t: int, conv: str, etype: str, **fields: Any) -> None:
        ledger.observe(t, {"conversation_id": conv, "type": etype, **fields})

    ev(t0, "c1", "conversation.opened", customer_id="cus-emea-smb-000001", segment="smb")
    ev(t0 + 1, "c1", "conversation.resolved")
    for i in range(3):  # three repeat contacts within 7 days
        ev(t0 + (i + 1) * DAY, f"r{i}", "conversation.opened", customer_id="cus-emea-smb-000001")
    ev(t0 + 4 * DAY, "c1", "survey.csat", customer_id="cus-emea-smb-000001", score=2)
    ev(t0 + 5 * DAY, "c1", "survey.csat", customer_id="cus-emea-smb-000001", score=5)
    (item,) = ledger.truth(t0 + 5 * DAY)["customers"]
    assert set(item["reasons"]) == {"repeat_contacts"}  # the newer CSAT of 5 wins
    assert item["reasons"]["repeat_contacts"]["count"] == 3
    assert ledger.truth(t0 + 4 * DAY)["customers"][0]["reasons"]["csat_low"]["score"] == 2
    assert ledger.truth(t0 + 31 * DAY + 1)["customers"] == []  # all out of the window


def test_cli_writes_the_customers_truth(tmp_path: Path) -> None:
    out, truth = tmp_path / "events.jsonl", tmp_path / "customers.json"
    result = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--history-days",
            "0.25",
            "--rate",
            "3",
            "--output",
            str(out),
            "--customers-truth",
            str(truth),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(truth.read_text())
    assert {"as_of", "window_days", "churn_prone_customers_seen", "customers"} <= set(data)
    assert out.stat().st_size > 0
