"""Rules files: the shipped defaults load, and every mistake is named with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.alerts.kpis import KPIS
from streams.alerts.rules import RulesError, load_rules, parse_rules
from streams.alerts.stats import z_for_alpha

GOOD = """\
defaults:
  windows: [15m, 1h, 1d]
  alpha: 1.0e-4
rules:
  - name: csat_drop
    kpi: csat_pct
    groupings: [team, team_channel]
    severity: page
    margin: 3
    labels: {owner: support-ops}
  - name: volume_drop
    kpi: opened
    direction: down
    baseline: {kind: same_hour_of_week, weeks: 3, pad: 15m}
    margin: 2
  - name: frt_floor
    kind: threshold
    kpi: frt_p90
    above: 600
    z: 3.5
  - name: sla_burn
    kind: slo
    kpi: frt_sla_breach_rate
    objective: 0.9
    pairs:
      - {long: 1h, short: 5m, burn: 14.4, severity: page}
  - name: not_now
    kpi: nps
    enabled: false
  - name: reply
    kpi: reply_p50
    dispersion: 1.8
    baseline: {kind: same_hour_of_day, days: 14, pad: 1h}
"""


def test_the_default_rules_load() -> None:
    rules = load_rules()
    assert len(rules) >= 8
    kpis = {r.kpi.name for r in rules.rules}
    assert {"csat_pct", "frt_p50", "opened"} <= kpis
    assert all(r.cooldown >= 30 for r in rules.rules)
    (rise,) = [r for r in rules.rules if r.kind == "rise"]
    assert (rise.kpi.name, rise.groupings, rise.windows) == ("revenue_at_risk", ("team",), (1440,))
    # The at-risk window (30 d) is the build-up after a start from an empty history.
    assert rise.warmup == 30 * 1440 and rise.factor > 1 and rise.min_customers >= 5


def test_a_rise_rule_reads_its_own_fields_and_ignores_the_ladder() -> None:
    rules = parse_rules(
        "defaults: {windows: [15m, 1h], z: 3}\nrules:\n"
        "  - {name: r, kpi: customers_at_risk, groupings: [segment, overall], window: 12h,"
        " factor: 2, min_increase: 25, min_customers: 4, warmup: 2d}\n",
        "r.yaml",
    )
    (r,) = rules.rules
    assert (r.kind, r.windows, r.factor, r.min_increase, r.min_customers, r.warmup) == (
        "rise", (720,), 2.0, 25.0, 4, 2880,
    )  # fmt: skip


def test_a_good_file() -> None:
    rules = parse_rules(GOOD, "r.yaml")
    by = {r.name: r for r in rules.rules}
    assert set(by) == {"csat_drop", "volume_drop", "frt_floor", "sla_burn", "reply"}  # not_now off
    csat = by["csat_drop"]
    assert csat.windows == (15, 60, 1440) and csat.down and csat.severity == "page"
    assert csat.z_fire == pytest.approx(z_for_alpha(1e-4))
    assert csat.labels == {"owner": "support-ops"} and csat.line == 5
    vol = by["volume_drop"]
    assert vol.down and vol.baseline is not None and vol.baseline.weeks == 3
    assert vol.baseline.pad == 15
    assert by["frt_floor"].threshold == 600 and by["frt_floor"].z_fire == 3.5
    slo = by["sla_burn"]
    assert slo.rungs == (60, 5) and slo.pairs[0].severity == "page"
    assert rules.digest == parse_rules(GOOD, "other").digest
    reply = by["reply"]
    assert reply.dispersion == 1.8 and reply.baseline is not None
    assert (reply.baseline.period, reply.baseline.count, reply.baseline.pad) == (1440, 14, 60)


def test_baseline_ranges() -> None:
    from streams.alerts.detector import baseline_range

    by = {r.name: r for r in parse_rules(GOOD, "r.yaml").rules}
    minute = 1_000_000 * 15 + 7  # 7 minutes into a slot
    first, last = baseline_range(by["csat_drop"], minute, 15)  # trailing 7 days
    start_slot = (minute - 14) // 15
    assert last.tolist() == [start_slot - 1] and first.tolist() == [start_slot - 672]
    first, last = baseline_range(by["reply"], minute, 60)  # same hour, 14 days, +-1 h
    assert len(first) == 14
    assert first[0] == (minute - 59 - 1440 - 60) // 15 and last[0] == (minute - 1440 + 60) // 15
    assert last[-1] == (minute - 14 * 1440 + 60) // 15


def test_every_mistake_is_reported_with_its_line() -> None:
    text = """\
rules:
  - name: Bad-Name
    kpi: csat
  - name: ok_rule
    kpi: frt_p50
    groupings: [team, galaxy]
    windows: [15m, 3x]
    colour: blue
  - name: vol
    kpi: opened
  - name: fine
    kpi: csat_pct
  - name: fine
    kpi: csat_pct
  - name: off
    kpi: csat_pct
"""
    with pytest.raises(RulesError) as info:
        parse_rules(text, "r.yaml")
    problems = info.value.problems
    joined = "\n".join(problems)
    assert "r.yaml:2: rule 'Bad-Name': name must match" in joined
    assert "r.yaml:3:" in joined and "did you mean csat_pct" in joined
    assert "r.yaml:6: rule 'ok_rule': groupings must be a list of" in joined
    assert "r.yaml:7: rule 'ok_rule': windows '3x' is not a duration" in joined
    assert "r.yaml:8: rule 'ok_rule': unknown field 'colour'" in joined
    assert "r.yaml:9: rule 'vol': direction is required for opened" in joined
    assert "r.yaml:13: rule 'fine': name already used on line 11" in joined
    assert "r.yaml:15: rule: name False is not text" in joined
    assert all(p.startswith("r.yaml:") for p in problems)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules: [", "r.yaml:1: not valid YAML"),
        ("", "the file is empty"),
        ("rules: []", "'rules:' must be a non-empty list"),
        ("rulez:\n  - name: a\n", "unknown top-level key 'rulez'"),
        (
            "rules:\n  - name: a\n    kpi: csat_pct\n    margin: 80\n",
            "margin of csat_pct is in KPI points",
        ),
        ("rules:\n  - name: a\n    kpi: frt_p50\n    margin: 0.5\n", "is a factor >= 1"),
        (
            "rules:\n  - name: a\n    kpi: csat_pct\n    kind: threshold\n    above: 70\n",
            "wrong side",
        ),
        ("rules:\n  - name: a\n    kpi: frt_p90\n    kind: slo\n    objective: 0.9\n", "threshold"),
        (
            "rules:\n  - name: a\n    kpi: nps\n    kind: slo\n    objective: 0.9\n",
            "proportion or time",
        ),
        ("rules:\n  - name: a\n    kpi: csat_pct\n    z: 4\n    alpha: 0.001\n", "give one"),
        ("rules:\n  - name: a\n    kpi: csat_pct\n    windows: [2d]\n", "within 1m..1d"),
        (
            "rules:\n  - name: a\n    kpi: csat_pct\n    baseline: {kind: yesterday}\n",
            "trailing, same_hour_of_day or",
        ),
        ("rules:\n  - name: a\n    kpi: csat_pct\n    kind: rise\n", "rise is for the levels"),
        (
            "rules:\n  - name: a\n    kpi: revenue_at_risk\n    kind: baseline\n",
            "revenue_at_risk must be rise",
        ),
        (
            "rules:\n  - name: a\n    kpi: revenue_at_risk\n    groupings: [channel]\n",
            "must be among overall, team, segment",
        ),
        ("rules:\n  - name: a\n    kpi: revenue_at_risk\n    window: 10d\n", "within 15m..7d"),
        ("rules:\n  - name: a\n    kpi: revenue_at_risk\n    factor: 0.5\n", "factor must be"),
        ("rules:\n  - name: a\n    kpi: customers_at_risk\n    warmup: 90d\n", "0m..60d"),
        ("rules:\n  - name: a\n    kpi: csat_pct\n    factor: 2\n", "belongs to rise rules"),
    ],
)
def test_single_mistakes(text: str, expected: str) -> None:
    with pytest.raises(RulesError) as info:
        parse_rules(text, "r.yaml")
    assert expected in str(info.value)


def test_a_missing_file_is_one_clear_problem(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read the rules file"):
        load_rules(tmp_path / "nope.yaml")


def test_every_kpi_can_be_watched() -> None:
    for name, spec in KPIS.items():
        extra = "    direction: down\n" if spec.down is None else ""
        rules = parse_rules(f"rules:\n  - name: r\n    kpi: {name}\n{extra}", "r.yaml")
        assert rules.rules[0].kpi is spec
