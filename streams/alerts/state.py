"""Alert states per rule and group, like Prometheus alerts: pending -> firing -> resolved.

- *pending*: a rung breached; it must keep breaching for ``for`` minutes to fire (a
  pending alert that stops breaching vanishes without a notification).
- *firing*: stays while the fired rung, or a shorter one, still shows the drop at the
  lower ``clear_z`` (hysteresis: a KPI hovering at the firing line does not flap); it
  resolves after ``resolve_after`` minutes of evidence that the KPI is back: when the
  fired window holds too few samples to tell (a quiet night), the first longer window
  with enough samples decides, and with none the alert holds (no news is not recovery).
- after a resolve, the same rule and group cannot fire again for ``cooldown`` minutes
  (at least 30), and only on windows that start after the resolve: the data of the old
  drop cannot raise a new alert.

One alert per rule and group at a time. Decisions depend only on the evaluated minute and
the signals, never on the wall clock, so a replay makes the same transitions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import numpy as np

from streams.alerts.detector import GroupKey, Signals
from streams.alerts.rules import Rule
from streams.alerts.text import describe_transition

__all__ = [
    "FIRING",
    "INACTIVE",
    "PENDING",
    "GroupState",
    "RuleStates",
    "Transition",
    "alert_id",
    "firing_of",
    "restore_into",
    "snapshot_of",
    "transition",
]

INACTIVE, PENDING, FIRING = 0, 1, 2
NEVER: Final = -(10**9)


def alert_id(rule: str, group: GroupKey, fired_at: int) -> str:
    """Stable id of one alert: the same rule, group and firing minute in every replay."""
    text = "|".join((rule, *group, str(fired_at)))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(slots=True)
class GroupState:
    """What must survive a restart for one rule and group (see :meth:`RuleStates.dump`)."""

    state: int = INACTIVE
    since: int = 0  # pending since
    rung: int = 0  # rung index that breached (pending) or fired
    fired_at: int = 0
    onset: int = 0
    clear_run: int = 0  # consecutive minutes without evidence while firing
    resolved_at: int = NEVER
    alert_id: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # described at firing

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GroupState:
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change to notify: ``state`` is ``firing`` or ``resolved``."""

    alert_id: str
    rule: str
    group: GroupKey
    state: str
    minute: int  # event-time minute of the transition
    onset: int
    fired_at: int
    details: dict[str, Any]  # observed, baseline, n_window, n_baseline, window, z, ...

    @property
    def transition_id(self) -> str:
        return f"{self.alert_id}/{self.state}"


class RuleStates:
    """The state of every group of one rule; ``step`` applies one minute's signals."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.groups: dict[GroupKey, GroupState] = {}

    def active(self, keys: list[GroupKey]) -> np.ndarray:
        """Indices of groups that are not inactive (they need a look every minute)."""
        return np.array(
            [i for i, k in enumerate(keys) if (s := self.groups.get(k)) and s.state != INACTIVE],
            dtype=np.intp,
        )

    def step(
        self,
        minute: int,
        keys: list[GroupKey],
        sig: Signals,
        lengths: np.ndarray,
        fire: Any,
    ) -> list[tuple[int, GroupState, str]]:
        """Advance the groups with a breach or a live alert; returns (group, state, event)
        with event ``firing`` or ``resolved``. ``fire(g, rung)`` describes a new alert."""
        rule = self.rule
        events: list[tuple[int, GroupState, str]] = []
        if not self.groups and not sig.breach.any():
            return events
        breached = np.flatnonzero(sig.breach.any(axis=0))
        todo = np.union1d(breached, self.active(keys))
        for g in todo.tolist():
            key = keys[g]
            st = self.groups.get(key)
            if st is None:
                st = self.groups[key] = GroupState()
            if st.state == FIRING:
                if rule.kind == "slo":
                    evident = bool(sig.evident[:, g].any()) or not sig.informative[:, g].any()
                else:
                    evident = self._still_evident(sig, g, st.rung)
                if evident:
                    st.clear_run = 0
                else:
                    st.clear_run += 1
                    if st.clear_run >= rule.resolve_minutes:
                        st.state, st.resolved_at, st.clear_run = INACTIVE, minute, 0
                        events.append((g, st, "resolved"))
                continue
            # Only windows that start after the last resolve may raise a new alert.
            allowed = sig.breach[:, g] & (lengths <= minute - st.resolved_at)
            rung = int(np.argmax(allowed)) if allowed.any() else -1
            if rung < 0 or minute - st.resolved_at < rule.cooldown:
                if st.state == PENDING:
                    st.state = INACTIVE
                continue
            if st.state == INACTIVE:
                st.state, st.since = PENDING, minute
            st.rung = rung
            if minute - st.since >= rule.for_minutes:
                st.state, st.fired_at, st.clear_run = FIRING, minute, 0
                st.alert_id = alert_id(rule.name, key, minute)
                st.onset, st.details = fire(g, rung)
                events.append((g, st, "firing"))
        for g in todo.tolist():  # forget groups with nothing to remember
            st = self.groups[keys[g]]
            if st.state == INACTIVE and minute - st.resolved_at >= max(rule.cooldown, 1440):
                del self.groups[keys[g]]
        return events

    @staticmethod
    def _still_evident(sig: Signals, g: int, rung: int) -> bool:
        """Does the drop still show (on the fired window or a shorter one)? A recovery
        needs evidence: when the fired window holds too few samples to tell (a quiet
        night), the first longer window that does decides; with none, the alert holds."""
        if sig.evident[: rung + 1, g].any():
            return True
        informative = np.flatnonzero(sig.informative[rung:, g])
        if not len(informative):
            return True
        return bool(sig.evident[rung + informative[0], g])

    def dump(self) -> dict[GroupKey, dict[str, Any]]:
        return {k: s.to_json() for k, s in self.groups.items()}

    def restore(self, data: dict[GroupKey, dict[str, Any]]) -> None:
        self.groups = {k: GroupState.from_json(v) for k, v in data.items()}


def transition(
    rule: Rule,
    key: GroupKey,
    st: GroupState,
    event: str,
    minute: int,
    now: Callable[[], dict[str, Any]],
) -> Transition:
    """The transition of a step, described for people; ``now()``: the numbers at this
    minute (read only for a resolve, which reports them next to those it fired on)."""
    details = dict(st.details)
    if event == "resolved":
        details.update({f"{k}_at_resolve": v for k, v in now().items()})
        details["resolved_at"] = minute
    t = Transition(st.alert_id, rule.name, key, event, minute, st.onset, st.fired_at, details)
    summary, description = describe_transition(rule, t)
    details["summary"], details["description"] = summary, description
    if event == "firing":  # kept for re-sends while it fires
        st.details.update(summary=summary, description=description)
    return t


def firing_of(states: Sequence[RuleStates]) -> list[tuple[Rule, GroupKey, GroupState]]:
    """(rule, group, state) of every firing alert."""
    return [
        (rs.rule, key, st) for rs in states for key, st in rs.groups.items() if st.state == FIRING
    ]


def snapshot_of(minute: int | None, digest: str, states: Sequence[RuleStates]) -> dict[str, Any]:
    """Everything besides data needed to resume after ``minute`` (the checkpoint's state)."""
    return {
        "minute": minute,
        "rules": digest,
        "states": {
            rs.rule.name: {
                "rule": _rule_digest(rs.rule),
                "groups": [[list(k), v] for k, v in rs.dump().items()],
            }
            for rs in states
        },
    }


def restore_into(states: Sequence[RuleStates], snap: dict[str, Any]) -> list[str]:
    """Alert states of a snapshot; a rule whose definition changed starts afresh.

    Returns the names of the rules restored.
    """
    saved = snap.get("states", {})
    restored = []
    for rs in states:
        entry = saved.get(rs.rule.name)
        if entry and entry.get("rule") == _rule_digest(rs.rule):
            rs.restore({tuple(k): v for k, v in entry["groups"]})
            restored.append(rs.rule.name)
    return restored


def _rule_digest(rule: Rule) -> str:
    return hashlib.sha256(repr(rule).encode()).hexdigest()[:16]
