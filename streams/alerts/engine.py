"""The detector as one object: feed each evaluated minute's new data, get transitions.

``Engine.advance(minute, rows)`` is the whole detector: add the rows that became known at
``minute`` (event time), evaluate every rule on the data known then, step the alert
states, and return the transitions. The live evaluator (sinks/alerts) and
``cxpulse evaluate-alerts`` both run exactly this; neither the wall clock nor the order in
which rows were written enters a decision.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

import numpy as np

from streams.alerts.detector import BaselineCache, Cache, RuleDetector
from streams.alerts.rules import Rule, RuleSet
from streams.alerts.series import SLOT, LeafKey, SeriesStore
from streams.alerts.state import (
    RuleStates,
    Transition,
    firing_of,
    restore_into,
    snapshot_of,
    transition,
)

__all__ = ["Engine", "horizon"]


def horizon(rules: Iterable[Rule]) -> tuple[int, int]:
    """(minutes, slots) of history the rules read: windows, and baselines behind them."""
    minutes, back = 60, 0
    for rule in rules:
        minutes = max(minutes, rule.span)
        b = rule.baseline
        if b is not None:
            reach = b.span if b.kind == "trailing" else b.count * b.period + b.pad
            back = max(back, rule.span + reach + SLOT)
    return minutes + 1, back // SLOT + 2


class Engine:
    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        # Rise rules watch customer levels, not minute partials: streams/alerts/levels.py.
        kpi_rules = [rule for rule in rules.rules if rule.kind != "rise"]
        minute_span, slot_span = horizon(kpi_rules)
        self.store = SeriesStore(minute_span, slot_span)
        self.detectors = [RuleDetector(rule, self.store) for rule in kpi_rules]
        self.states = [RuleStates(rule) for rule in kpi_rules]
        self.lengths = tuple(sorted({t for rule in kpi_rules for t in rule.rungs}))
        self.baselines = BaselineCache(self.store)
        self.minute: int | None = None  # last minute evaluated

    def load(
        self,
        minute: int,
        minute_rows: Iterable[tuple[LeafKey, int, np.ndarray]],
        slot_rows: Iterable[tuple[LeafKey, int, np.ndarray]],
        first_minute: int | None,
    ) -> None:
        """Data as known at ``minute`` (the last minute evaluated), after a restart."""
        self.store.load(minute, minute_rows, slot_rows, first_minute)
        self.minute = minute

    def advance(
        self, minute: int, rows: Iterable[tuple[LeafKey, int, np.ndarray]]
    ) -> list[Transition]:
        """Evaluate ``minute``: ``rows`` are (leaf, data minute, vector) known at it."""
        store = self.store
        store.advance(minute)
        store.add(rows)
        self.minute = minute
        if not store.n_leaves or not self.detectors:
            return []
        cache = Cache(store, minute, self.lengths, self.baselines)
        out: list[Transition] = []
        for det, states in zip(self.detectors, self.states, strict=True):
            sig = det.evaluate(cache)

            def fire(g: int, rung: int, det: RuleDetector = det, sig: Any = sig) -> tuple:
                details = det.describe(cache, g, rung)
                details["z"] = round(float(sig.z[rung, g]), 3)
                return det.onset(cache, g, rung), details

            # By group key: leaves (and so groups) are numbered in the order data came,
            # which differs between a live run, a restart and a replay.
            steps = states.step(minute, det.keys, sig, det.lengths, fire)
            for g, st, event in sorted(steps, key=lambda e: det.keys[e[0]]):
                now = partial(det.describe, cache, g, st.rung)
                out.append(transition(det.rule, det.keys[g], st, event, minute, now))
        return out

    def firing(self) -> list[tuple[Rule, Any, Any]]:
        """(rule, group, state) of every firing alert."""
        return firing_of(self.states)

    def snapshot(self) -> dict[str, Any]:
        """Everything besides data needed to resume after the last evaluated minute."""
        return snapshot_of(self.minute, self.rules.digest, self.states)

    def restore(self, snap: dict[str, Any]) -> list[str]:
        """Alert states of a snapshot; a rule whose definition changed starts afresh.

        Returns the names of the rules restored.
        """
        return restore_into(self.states, snap)
