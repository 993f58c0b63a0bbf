"""The demo's numbers are worth reading: in its first 15-minute window every team has survey
answers and resolutions by the hundred, where the default model has a handful."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.app.demo import demo_params
from pipeline.simulator import SimulationParams, rate_for_events_per_second, simulate

START = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def window_counts(params: SimulationParams) -> Counter[tuple[str, str]]:
    """(team, type) counts of the last 15 minutes of event time, as the board reads them."""
    end = START + params.duration
    team: dict[str, str] = {}
    counts: Counter[tuple[str, str]] = Counter()
    for ev in simulate(params):
        e = json.loads(ev.value)
        team.setdefault(e["conversation_id"], e.get("team", "?"))
        if "team" in e:
            team[e["conversation_id"]] = e["team"]
        at = datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00"))
        if end - timedelta(minutes=15) <= at < end:
            counts[(team[e["conversation_id"]], e["type"])] += 1
    return counts


def params(tuned: bool) -> SimulationParams:
    p = SimulationParams(seed=3, start=START, duration=timedelta(minutes=12), seasonality=False)
    if tuned:
        p = demo_params(p)
    return dataclasses.replace(p, conversations_per_hour=rate_for_events_per_second(30, p))


def test_demo_world_has_surveys_and_resolutions_early() -> None:
    default, demo = window_counts(params(False)), window_counts(params(True))
    teams = {t for t, _ in demo}
    assert len(teams) == 4
    for team in teams:
        assert demo[(team, "survey.csat")] >= 40, team
        assert demo[(team, "survey.ces")] >= 15, team
        assert demo[(team, "survey.nps")] >= 3, team
        assert demo[(team, "conversation.resolved")] >= 2 * default[(team, "conversation.resolved")]
    assert sum(n for (_, kind), n in default.items() if kind == "survey.csat") < 20


def test_survey_delay_scale_is_checked() -> None:
    with pytest.raises(ValueError, match="survey_delay_scale"):
        SimulationParams(survey_delay_scale=0)
    assert SimulationParams().survey_delay_scale == 1.0  # the default model is unchanged


def test_the_main_job_finds_the_local_kafka_script() -> None:
    """`make run` starts the local broker with deploy/kafka/kafka.sh: the path must hold."""
    from pipeline.app.demo import KAFKA_SCRIPT

    assert KAFKA_SCRIPT.is_file(), KAFKA_SCRIPT
    assert KAFKA_SCRIPT.parent.parent.parent == Path(__file__).resolve().parents[2]
