"""Run seeds in parallel processes and print the figures against the issue's targets."""

from __future__ import annotations

import hashlib
import statistics
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from pipeline.app.alerteval.feed import run
from pipeline.app.alerteval.scenario import TEAMS, build
from pipeline.app.alerteval.score import SeedScore, score_history
from streams.alerts.rules import load_rules

__all__ = ["evaluate", "render"]


def _one(
    seed: int, weeks: int, rules_file: str | None, alpha: float, cache_dir: str | None
) -> SeedScore:
    rules = load_rules(rules_file)
    scenario = build(seed, weeks)
    cache = None
    if cache_dir:
        digest = hashlib.sha256(repr(scenario.params).encode()).hexdigest()[:12]
        cache = Path(cache_dir) / f"seed{seed}-w{weeks}-{digest}.npz"
    history = run(scenario, rules, cache=cache)
    return score_history(history, {r.name: r.kpi.name for r in rules.rules}, alpha)


def evaluate(
    seeds: list[int],
    weeks: int,
    rules_file: str | None,
    *,
    jobs: int,
    alpha: float,
    done: Callable[[SeedScore], Any] | None = None,
    cache_dir: str | None = None,
) -> list[SeedScore]:
    """Score every seed (``jobs`` processes); ``done`` is called as each finishes."""
    load_rules(rules_file)  # fail fast, in this process, on a bad file
    out: list[SeedScore] = []
    if jobs <= 1:
        for seed in seeds:
            out.append(_one(seed, weeks, rules_file, alpha, cache_dir))
            if done:
                done(out[-1])
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_one, s, weeks, rules_file, alpha, cache_dir) for s in seeds]
            for f in as_completed(futures):
                out.append(f.result())
                if done:
                    done(out[-1])
    return sorted(out, key=lambda s: s.seed)


def _pct(values: list[int], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def render(scores: list[SeedScore], alpha: float) -> tuple[str, bool, dict[str, Any]]:
    """The report, whether every target is met, and the figures as JSON-ready data."""
    incidents = [i for s in scores for i in s.incidents]
    target = [i for i in incidents if i.target]
    hit = [i for i in target if i.in_time]
    delays = [i.delay for i in target if i.delay is not None and i.in_time]
    alerts = [a for s in scores for a in s.alerts if a["week"] >= 1]
    teams = scores[0].teams if scores else ()
    team_weeks = sum(s.weeks for s in scores) * len(teams)
    quiet_team_weeks = sum(len(s.quiet_weeks) for s in scores) * len(teams)
    false = [a for a in alerts if not a["explained"]]
    quiet_set = {(s.seed, w) for s in scores for w in s.quiet_weeks}
    seed_of = {id(a): s.seed for s in scores for a in s.alerts}
    false_quiet = [a for a in false if (seed_of[id(a)], a["week"]) in quiet_set]
    per_team_week: Counter[tuple[int, int, str]] = Counter()
    for a in false:
        per_team_week[(seed_of[id(a)], a["week"], a["group"][1] or "(all teams)")] += 1
    refires = sum(s.refires_30 for s in scores)
    flaps = sum(s.flaps for s in scores)
    precision = (len(alerts) - len(false)) / len(alerts) if alerts else 1.0
    recall = len(hit) / len(target) if target else 0.0
    fa_rate = len(false) / team_weeks if team_weeks else 0.0
    fa_quiet = len(false_quiet) / quiet_team_weeks if quiet_team_weeks else 0.0
    worst = max(per_team_week.values(), default=0)
    met = {
        "recall": recall >= 0.95 and len(target) >= 50,
        "false_alerts": fa_rate <= 1.0 and fa_quiet <= 1.0,
        "no_refire_30m": refires == 0,
    }
    lines = [
        f"seeds {', '.join(str(s.seed) for s in scores)}: {scores[0].weeks if scores else 0} "
        f"evaluated weeks each after a warm-up week; teams "
        + ", ".join(f"{t} ~{v:,}/day" for t, v in TEAMS.items())
        + f"; {sum(s.events for s in scores):,} events, {sum(s.minutes for s in scores):,} "
        f"minutes evaluated; deadline test alpha {alpha:g}, power 0.9",
        "",
        f"{'figure':<58} {'measured':>22}  {'target':<24} met",
        f"{'recall within deadline (CSAT >= 10 pts, FRT >= 1.5x)':<58} "
        f"{f'{len(hit)}/{len(target)} = {100 * recall:.1f}%':>22}  {'>= 95%, >= 50 incidents':<24} "
        f"{'yes' if met['recall'] else 'NO'}",
        f"{'false alerts per team per week (all evaluated weeks)':<58} {fa_rate:>22.2f}  "
        f"{'<= 1':<24} {'yes' if fa_rate <= 1 else 'NO'}",
        f"{'false alerts per team per week (quiet weeks only)':<58} {fa_quiet:>22.2f}  "
        f"{'<= 1':<24} {'yes' if fa_quiet <= 1 else 'NO'}",
        f"{'  worst team-week (false alerts)':<58} {worst:>22}",
        f"{'re-fires within 30 min of a resolve':<58} {refires:>22}  {'0':<24} "
        f"{'yes' if refires == 0 else 'NO'}",
        f"{'flaps (re-fire within 2 h of a resolve)':<58} {flaps:>22}",
        f"{'precision (alerts explained by an incident)':<58} "
        f"{f'{len(alerts) - len(false)}/{len(alerts)} = {100 * precision:.1f}%':>22}",
        f"{'detection delay, target incidents in time: median / p90':<58} "
        f"{f'{_pct(delays, 0.5)} / {_pct(delays, 0.9)} min':>22}",
        "",
        "per incident family (all sizes; 'provable' = a deadline exists and the incident lasts it)",
        f"  {'kpi':<16}{'incidents':>10}{'provable':>10}{'in time':>9}{'detected':>10}"
        f"{'median delay':>14}",
    ]
    for kpi in sorted({i.incident.kpi for i in incidents}):
        group = [i for i in incidents if i.incident.kpi == kpi]
        prov = [i for i in group if i.deadline is not None and i.end - i.start >= i.deadline]
        det = [i for i in group if i.detected_at is not None]
        med = statistics.median([i.delay for i in det]) if det else None
        lines.append(
            f"  {kpi:<16}{len(group):>10}{len(prov):>10}{sum(i.in_time for i in prov):>9}"
            f"{len(det):>10}{'' if med is None else f'{med:.0f} min':>14}"
        )
    ref: dict[str, list[int | None]] = {}
    for sc in scores:
        for name, values in sc.reference.items():
            ref.setdefault(name, []).extend(values)
    if ref:
        lines += ["", "deadlines for the ~2,000/day team (drops starting 10:00 UTC on weekdays; "
                  "median, and the issue's figure):"]  # fmt: skip
        issue = {"csat -40": "1 h", "csat -20": "4 h", "csat -10": "1 d", "frt x3": "15 min",
                 "frt x2": "1 h"}  # fmt: skip
        for name, values in ref.items():
            known = sorted(v if v is not None else 10**6 for v in values)
            med = known[len(known) // 2] if known else None
            shown = "> 1 d" if med is None or med >= 10**6 else f"{med} min"
            lines.append(f"  {name:<10} {shown:>10}   (issue: {issue.get(name, '-')})")
    missed = [i for i in target if not i.in_time]
    if missed:
        lines += ["", "target incidents missed (team, kpi, size, duration, deadline, delay):"]
        for i in missed:
            inc = i.incident
            size = (
                inc.factor if inc.factor is not None else f"{100 * (i.p0 or 0):.0f}->{inc.target}"
            )
            lines.append(
                f"  {inc.team}{'/' + inc.channel if inc.channel else ''} {inc.kpi} {size} "
                f"{inc.duration} deadline {i.deadline} min, n {i.n_required:.0f}, "
                f"delay {i.delay if i.delay is not None else 'never'}"
            )
    lines += ["", "alerts per rule (explained / false):"]
    by_rule: Counter[tuple[str, bool]] = Counter((a["rule"], a["explained"]) for a in alerts)
    for rule in sorted({r for r, _ in by_rule}):
        lines.append(f"  {rule:<24}{by_rule[(rule, True)]:>6} / {by_rule[(rule, False)]}")
    figures = {
        "recall": recall, "target_incidents": len(target), "in_time": len(hit),
        "false_alerts_per_team_week": fa_rate, "false_alerts_per_team_quiet_week": fa_quiet,
        "worst_team_week": worst, "refires_30m": refires, "flaps_2h": flaps,
        "precision": precision, "delay_median": _pct(delays, 0.5), "delay_p90": _pct(delays, 0.9),
        "alerts": len(alerts), "false_alerts": len(false), "met": met,
    }  # fmt: skip
    return "\n".join(lines), all(met.values()), figures
