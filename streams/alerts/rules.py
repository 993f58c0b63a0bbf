"""Alert rules: the model, and a YAML loader that names the file line of every mistake.

A rules file has optional ``defaults`` (any rule field) and a list of ``rules``; README
("Alerts") documents every field. ``load_rules`` raises :class:`RulesError` listing every
problem at once (``file:line: message``), so ``cxpulse alerts check`` prints them all.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

import yaml

from pipeline.core.errors import CxpulseError
from streams.alerts.kpis import KPIS, KpiSpec, suggest
from streams.alerts.stats import z_for_alpha
from streams.alerts.yamlread import Reader as _Reader
from streams.alerts.yamlread import minutes as _minutes

__all__ = [
    "DEFAULT_RULES",
    "GROUPINGS",
    "Baseline",
    "BurnPair",
    "Rule",
    "RuleSet",
    "RulesError",
    "load_rules",
    "parse_rules",
]

GROUPINGS: Final = ("overall", "team", "channel", "region", "priority", "segment", "team_channel")
DEFAULT_RULES: Final = "default_rules.yaml"
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_FIELDS: Final = {
    "name", "kpi", "kind", "groupings", "severity", "direction", "windows", "alpha", "z",
    "clear_z", "min_count", "min_baseline", "for", "resolve_after", "cooldown", "baseline",
    "dispersion",
    "margin", "below", "above", "objective", "pairs", "threshold", "labels", "annotations",
    "enabled", "window", "factor", "min_increase", "min_customers", "warmup",
}  # fmt: skip
_LEVEL_GROUPINGS: Final = ("overall", "team", "segment")
_STANDARD_PAIRS = ((60, 5, 14.4, None), (360, 30, 6.0, None))


class RulesError(CxpulseError):
    """A rules file has mistakes; ``problems`` holds one ``file:line: message`` each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the alert rules: " + "; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Baseline:
    kind: str  # trailing | same_hour_of_day | same_hour_of_week
    span: int = 10080  # trailing: minutes before the window
    weeks: int = 4  # same_hour_of_week: how many past weeks
    pad: int = 30  # seasonal kinds: minutes added on each side of the shifted window
    days: int = 7  # same_hour_of_day: how many past days

    @property
    def period(self) -> int:
        """Minutes between the shifted windows of a seasonal baseline."""
        return 1440 if self.kind == "same_hour_of_day" else 10080

    @property
    def count(self) -> int:
        return self.days if self.kind == "same_hour_of_day" else self.weeks


@dataclass(frozen=True, slots=True)
class BurnPair:
    long: int
    short: int
    burn: float
    severity: str | None = None


@dataclass(frozen=True)
class Rule:
    name: str
    kpi: KpiSpec
    kind: str  # baseline | threshold | slo | rise
    groupings: tuple[str, ...]
    severity: str
    down: bool
    windows: tuple[int, ...]
    z_fire: float
    z_clear: float
    min_count: int
    min_baseline: int
    for_minutes: int
    resolve_minutes: int
    cooldown: int
    baseline: Baseline | None = None
    margin: float = 0.0
    dispersion: float = 1.0  # variance inflation: samples that are not independent
    # dispersion: auto. Window-to-window variability measured on a seasonal baseline.
    random_effect: bool = False
    threshold: float | None = None
    objective: float | None = None
    pairs: tuple[BurnPair, ...] = ()
    # rise (level KPIs): the level now against the lowest of the window (``windows[0]``)
    factor: float = 1.0
    min_increase: float = 0.0
    min_customers: int = 0
    warmup: int = 0  # minutes of customer history before a rise is judged
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    line: int = 0
    enabled: bool = True

    @property
    def rungs(self) -> tuple[int, ...]:
        """Window lengths evaluated each minute (SLO: long then short window of each pair)."""
        if self.kind == "slo":
            return tuple(m for p in self.pairs for m in (p.long, p.short))
        return self.windows

    @property
    def span(self) -> int:
        """Longest window, in minutes."""
        return max(self.rungs)


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    source: str
    digest: str  # sha256 of the file: state of other rules is not reused

    def __len__(self) -> int:
        return len(self.rules)


def _parse_rule(r: _Reader, node: yaml.Node, defaults: dict[str, yaml.Node]) -> Rule | None:
    fields = r.mapping(node, "a rule")
    if fields is None:
        return None
    where = node.start_mark.line + 1
    name = r.value(fields["name"]) if "name" in fields else None
    label = f"rule {name!r}" if isinstance(name, str) else "rule"
    if "name" in fields and not isinstance(name, str):
        r.problem(fields["name"], f"rule: name {name!r} is not text (YAML reads it so: quote it)")
    elif not isinstance(name, str) or not _NAME.fullmatch(name):
        r.problem(fields.get("name", node), f"{label}: name must match [a-z][a-z0-9_]*")
    for key in fields:
        if key not in _FIELDS:
            r.problem(fields[key], f"{label}: unknown field {key!r}")
    merged = {**defaults, **fields}
    count = len(r.problems)

    def get(key: str, default: Any = None) -> Any:
        return r.value(merged[key]) if key in merged else default

    def bad(key: str, message: str) -> None:
        r.problem(merged.get(key, node), f"{label}: {key} {message}")

    kpi_name = get("kpi")
    kpi = KPIS.get(kpi_name) if isinstance(kpi_name, str) else None
    if kpi is None:
        bad("kpi", f"{kpi_name!r} is not a KPI{suggest(str(kpi_name))}; one of {', '.join(KPIS)}")
        return None
    level = kpi.family == "level"
    kind = get("kind", "rise" if level else "baseline")
    if kind not in ("baseline", "threshold", "slo", "rise"):
        bad("kind", f"must be baseline, threshold, slo or rise, not {kind!r}")
    elif level and kind != "rise":
        bad("kind", f"of {kpi.name} must be rise (a level is watched for sharp rises)")
    elif kind == "rise" and not level:
        bad("kind", "rise is for the levels revenue_at_risk and customers_at_risk")
    groupings = get("groupings", ["team"])
    if isinstance(groupings, str):
        groupings = [groupings]
    if (
        not isinstance(groupings, list)
        or not groupings
        or any(g not in GROUPINGS for g in groupings)
    ):
        bad("groupings", f"must be a list of {', '.join(GROUPINGS)}; got {groupings!r}")
        groupings = ["team"]
    elif level and any(g not in _LEVEL_GROUPINGS for g in groupings):
        bad("groupings", f"of {kpi.name} must be among {', '.join(_LEVEL_GROUPINGS)}")
    direction = get("direction")
    if kpi.down is None and direction not in ("up", "down"):
        bad("direction", f"is required for {kpi.name}: up (a spike) or down (a drop)")
    elif (
        direction is not None
        and kpi.down is not None
        and direction != ("down" if kpi.down else "up")
    ):
        bad("direction", f"of {kpi.name} is always {'down' if kpi.down else 'up'}")
    down = kpi.down if kpi.down is not None else direction == "down"

    def minutes(key: str, default: int) -> int:
        try:
            return _minutes(get(key, default))
        except ValueError as exc:
            bad(key, str(exc))
            return default

    def number(key: str, default: float | None, low: float, high: float) -> float | None:
        value = get(key, default)
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            bad(key, f"must be a number within {low:g}..{high:g}, got {value!r}")
            return default
        return float(value)

    raw_windows = get("windows", ["15m", "30m", "1h", "2h", "4h", "8h", "1d"])
    windows: list[int] = []
    if not isinstance(raw_windows, list) or not raw_windows:
        bad("windows", "must be a list of durations such as [15m, 1h, 1d]")
    else:
        for w in raw_windows:
            try:
                windows.append(_minutes(w))
            except ValueError as exc:
                bad("windows", str(exc))
    if any(not 1 <= w <= 1440 for w in windows):
        bad("windows", "must lie within 1m..1d")
    factor, min_increase, min_customers, warmup = 1.0, 0.0, 0, 0
    if kind == "rise":
        windows = [minutes("window", 1440)]
        if not 15 <= windows[0] <= 10080:
            bad("window", "must lie within 15m..7d")
        factor = number("factor", 1.5, 1.0, 1000.0) or 1.5
        min_increase = number("min_increase", 0.0, 0.0, 1e15) or 0.0
        min_customers = int(number("min_customers", 3, 1, 1e6) or 3)
        warmup = minutes("warmup", 3 * 1440)
        if warmup > 60 * 1440:
            bad("warmup", "must lie within 0m..60d")
    else:
        for key in ("window", "factor", "min_increase", "min_customers", "warmup"):
            if key in fields:
                bad(key, "belongs to rise rules (kpi revenue_at_risk or customers_at_risk)")
    if "z" in fields and "alpha" in fields:
        bad("z", "and alpha are two ways to say the same thing: give one")
    if "z" in merged and ("alpha" not in fields):
        z_fire = number("z", 4.0, 1.0, 10.0) or 4.0
    else:
        z_fire = z_for_alpha(number("alpha", 1e-5, 1e-12, 0.2) or 1e-5)
    z_clear = number("clear_z", 1.5, 0.0, z_fire) or 0.0
    base: Baseline | None = None
    margin = number("margin", 0.0, 0.0, 100.0) or 0.0
    random_effect = get("dispersion") == "auto"
    dispersion = 1.0 if random_effect else number("dispersion", 1.0, 1.0, 10.0) or 1.0
    threshold = None
    objective = None
    pairs: tuple[BurnPair, ...] = ()
    if kind == "baseline":
        spec = r.mapping(merged["baseline"], f"{label}: baseline") if "baseline" in merged else {}
        spec = spec or {}
        bkind = r.value(spec["kind"]) if "kind" in spec else "trailing"
        try:
            base = Baseline(
                bkind,
                span=_minutes(r.value(spec["span"])) if "span" in spec else 10080,
                weeks=int(r.value(spec["weeks"])) if "weeks" in spec else 4,
                pad=_minutes(r.value(spec["pad"])) if "pad" in spec else 30,
                days=int(r.value(spec["days"])) if "days" in spec else 7,
            )
        except (ValueError, TypeError) as exc:
            bad("baseline", str(exc))
        if bkind not in ("trailing", "same_hour_of_day", "same_hour_of_week"):
            bad(
                "baseline",
                f"kind must be trailing, same_hour_of_day or same_hour_of_week, not {bkind!r}",
            )
        elif base is not None and not (
            60 <= base.span <= 40320
            and 1 <= base.weeks <= 8
            and 1 <= base.days <= 28
            and 0 <= base.pad <= 720
        ):
            bad("baseline", "needs span 1h..4w, weeks 1..8, days 1..28, pad 0..12h")
        if kpi.family in ("time", "rate", "volume") and margin and margin < 1:
            bad("margin", f"of {kpi.name} is a factor >= 1 (1.5 tolerates 1.5x), got {margin}")
        if kpi.family in ("proportion", "nps") and margin >= 50:
            bad("margin", f"of {kpi.name} is in KPI points (3 = 3 points), got {margin}")
    elif kind == "threshold":
        below, above = get("below"), get("above")
        if (below is None) == (above is None):
            bad("kind", "threshold needs exactly one of below: or above:")
        elif (below is not None) != down:
            bad("below" if below is not None else "above", f"is the wrong side for {kpi.name}")
        else:
            threshold = number("below" if below is not None else "above", None, -100, 1e9)
    elif kind == "slo":
        objective = number("objective", None, 0.5, 0.99999)
        if objective is None:
            bad("objective", "is required for slo rules: the good share, e.g. 0.95")
        if kpi.family not in ("proportion", "time"):
            bad("kind", f"slo needs a proportion or time KPI, not {kpi.name}")
        if kpi.family == "time":
            threshold = number("threshold", None, 1, 1e7)
            if threshold is None:
                bad("threshold", "(seconds) is required: a sample slower than it is bad")
        raw_pairs = get("pairs")
        if raw_pairs is None:
            pairs = tuple(BurnPair(*p) for p in _STANDARD_PAIRS)
        elif not isinstance(raw_pairs, list) or not raw_pairs:
            bad("pairs", "must be a list of {long: 1h, short: 5m, burn: 14.4}")
        else:
            out = []
            for p in raw_pairs:
                try:
                    out.append(BurnPair(_minutes(p["long"]), _minutes(p["short"]),
                                        float(p["burn"]), p.get("severity")))  # fmt: skip
                except (KeyError, TypeError, ValueError) as exc:
                    bad("pairs", f"entry {p!r}: {exc}")
            if any(not (1 <= x.short < x.long <= 1440 and x.burn > 0) for x in out):
                bad("pairs", "need 1m <= short < long <= 1d and burn > 0")
            pairs = tuple(out)
    if random_effect and (base is None or base.kind == "trailing"):
        bad("dispersion", "auto needs a same_hour_of_day or same_hour_of_week baseline")
    labels = get("labels", {}) or {}
    annotations = get("annotations", {}) or {}
    for key, value in (("labels", labels), ("annotations", annotations)):
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str | int | float) for k, v in value.items()
        ):
            bad(key, "must map names to text")
    severity = get("severity", "warning")
    if not isinstance(severity, str) or not severity:
        bad("severity", "must be a word such as page, ticket or warning")
    min_count = int(number("min_count", 20, 1, 1e9) or 20)
    min_baseline = int(number("min_baseline", 100, 0, 1e9) or 0)
    enabled = get("enabled", True)
    if not isinstance(enabled, bool):
        bad("enabled", "must be true or false")
    if len(r.problems) > count:
        return None
    return Rule(
        name=name,
        kpi=kpi,
        kind=kind,
        groupings=tuple(dict.fromkeys(groupings)),
        severity=severity,
        down=down,
        windows=tuple(sorted(set(windows))),
        z_fire=z_fire,
        z_clear=z_clear,
        min_count=min_count,
        min_baseline=min_baseline,
        for_minutes=minutes("for", 1),
        resolve_minutes=max(1, minutes("resolve_after", 5)),
        cooldown=max(30, minutes("cooldown", 30)),
        baseline=base,
        margin=margin,
        dispersion=dispersion,
        random_effect=random_effect,
        threshold=threshold,
        objective=objective,
        pairs=pairs,
        factor=factor,
        min_increase=min_increase,
        min_customers=min_customers,
        warmup=warmup,
        labels={str(k): str(v) for k, v in labels.items()},
        annotations={str(k): str(v) for k, v in annotations.items()},
        line=where,
        enabled=bool(enabled),
    )


def parse_rules(text: str, source: str = "<rules>") -> RuleSet:
    """Parse and validate a rules document; raise :class:`RulesError` listing every problem."""
    r = _Reader(source)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise RulesError(
            [f"{source}:{line}: not valid YAML: {getattr(exc, 'problem', exc)}"]
        ) from None
    if root is None:
        raise RulesError([f"{source}:1: the file is empty; it needs a 'rules:' list"])
    top = r.mapping(root, "the file") or {}
    for key in top:
        if key not in ("defaults", "rules"):
            r.problem(top[key], f"unknown top-level key {key!r} (defaults, rules)")
    defaults = r.mapping(top["defaults"], "defaults") or {} if "defaults" in top else {}
    for key in ("name", "kpi"):
        if key in defaults:
            r.problem(defaults[key], f"defaults: {key} belongs to each rule")
    rules: list[Rule] = []
    node = top.get("rules")
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        r.problem(node or root, "'rules:' must be a non-empty list of rules")
    else:
        for item in node.value:
            rule = _parse_rule(r, item, defaults)
            if rule is not None and rule.enabled:
                rules.append(rule)
        seen: dict[str, int] = {}
        for rule in rules:
            if rule.name in seen:
                r.problem(
                    rule.line, f"rule {rule.name!r}: name already used on line {seen[rule.name]}"
                )
            seen.setdefault(rule.name, rule.line)
    if r.problems:
        raise RulesError(r.problems)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return RuleSet(tuple(rules), source, digest)


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Rules from ``path``, or the default rules shipped with cxpulse."""
    if path is None:
        text = (resources.files("streams.alerts") / DEFAULT_RULES).read_text("utf-8")
        return parse_rules(text, f"<default>/{DEFAULT_RULES}")
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise RulesError([f"{path}: cannot read the rules file: {exc.strerror or exc}"]) from None
    return parse_rules(text, str(path))
