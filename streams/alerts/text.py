"""What a notification says: what dropped (or rose), where, from what to what, with counts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.alerts.rules import Rule
    from streams.alerts.state import Transition

__all__ = ["describe_transition", "minute_text", "scope_text", "window_text"]

_DIMS = ("team", "channel", "region", "priority", "segment")


def scope_text(group: tuple[str, ...]) -> str:
    """``team billing, channel chat`` / ``all traffic``."""
    parts = [f"{name} {value}" for name, value in zip(_DIMS, group[1:], strict=True) if value]
    return ", ".join(parts) or "all traffic"


def window_text(minutes: int) -> str:
    if minutes % 1440 == 0:
        return f"{minutes // 1440} d"
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"


def minute_text(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def describe_transition(rule: Rule, t: Transition) -> tuple[str, str]:
    """(summary, description) of a transition, in the KPI's display units."""
    if rule.kind == "rise":
        return _describe_rise(rule, t)
    k = rule.kpi
    d = t.details
    scope = scope_text(t.group)
    verb = "dropped" if rule.down else "rose"
    what = k.title
    window = window_text(int(d.get("window", 0)))
    obs, base = k.fmt(d.get("observed")), k.fmt(d.get("baseline"))
    n1, n0 = int(d.get("n_window", 0)), int(d.get("n_baseline", 0))
    if rule.kind == "baseline":
        ref = f"{base} in the baseline ({n0:,} {k.samples})"
    elif rule.kind == "threshold":
        ref = f"the {'floor' if rule.down else 'ceiling'} of {base}"
    else:
        ref = f"the objective ({base}); burn rate {d.get('z', 0):.1f}x the alert rate"
    summary = f"{what} {verb} for {scope}: {obs} over the last {window} vs {ref}"
    lines = [
        f"{what} ({k.name}) of {scope} {verb} to {obs} over the {window} ending "
        f"{minute_text(t.fired_at)} ({n1:,} {k.samples}), against {ref}.",
        f"Since about {minute_text(t.onset)} (event time). Rule {rule.name} "
        f"({rule.kind}, severity {rule.severity}), test statistic {d.get('z', 0):.2f}.",
    ]
    if t.state == "resolved":
        now = k.fmt(d.get("observed_at_resolve"))
        summary = f"resolved: {summary}; now {now}"
        lines.append(
            f"Resolved at {minute_text(t.minute)}: {now} over the last {window} "
            f"({int(d.get('n_window_at_resolve', 0)):,} {k.samples})."
        )
    return summary, "\n".join(lines)


def _describe_rise(rule: Rule, t: Transition) -> tuple[str, str]:
    k = rule.kpi
    d = t.details
    scope = scope_text(t.group)
    window = window_text(int(d.get("window", 0)))
    obs, low = k.fmt(d.get("observed")), k.fmt(d.get("baseline"))
    n1, n0 = int(d.get("n_window", 0)), int(d.get("n_baseline", 0))
    now = obs if k.name == "customers_at_risk" else f"{obs} ({n1:,} customers)"
    then = low if k.name == "customers_at_risk" else f"{low} ({n0:,} customers)"
    summary = f"{k.title} rose for {scope}: {now} vs {then} at its lowest in the last {window}"
    lines = [
        f"{k.title} ({k.name}) of {scope} rose to {now} at {minute_text(t.fired_at)}, "
        f"from {then} at its lowest in the {window} before; {int(d.get('added', 0)):+,} "
        f"customers at risk since {minute_text(t.onset)} (event time).",
        f"Rule {rule.name} (rise: x{rule.factor:g} and at least {k.fmt(d.get('required'))}, "
        f"severity {rule.severity}). Who and why: the at_risk_customers view, or the "
        f"customers board.",
    ]
    if t.state == "resolved":
        now_r = k.fmt(d.get("observed_at_resolve"))
        summary = f"resolved: {summary}; now {now_r}"
        lines.append(
            f"Resolved at {minute_text(t.minute)}: {now_r}, against "
            f"{k.fmt(d.get('baseline_at_resolve'))} at its lowest in the last {window}."
        )
    return summary, "\n".join(lines)
