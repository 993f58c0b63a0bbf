"""Rise rules: a level (revenue or customers at risk) that climbs sharply, per group.

A level is a stock: at each minute, the customers at risk in a group and the sum of their
``customer_value``. It comes from the risk history (``customer_risk_changes``), one change
per customer transition, so the detector is fed *changes* per group and minute and keeps
the level of every minute of the longest window.

At an evaluated minute ``C`` a rule compares the level now with the lowest level of its
window ``[C - window, C]``::

    rise     = level(C) - low                 (low: the window's lowest level)
    added    = customers(C) - customers(at the low)
    required = max(min_increase, (factor - 1) * low)
    breach   : rise >= required > 0  and  added >= min_customers

and it stays firing while ``rise >= required / 2`` (hysteresis). Once the window has moved
past the low, the new level is the new normal: a lasting rise resolves after one window.

Levels start from nothing when the customer history does, then build up over the customers'
window (30 days: each day adds customers, few expire yet); a rule judges only minutes at
least ``warmup`` after the first minute of the history, when that growth is slower than
its ``factor`` (day k grows by about (k + 1) / k).

Values are integers (millionths of the value unit, exactly as ClickHouse sums Decimal
values), so a live run, a restart (which loads the levels of the window from ClickHouse)
and a replay hold the same numbers and make the same transitions at the same minutes.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any, Final

import numpy as np

from streams.alerts.detector import GroupKey, Signals
from streams.alerts.rules import Rule, RuleSet
from streams.alerts.state import (
    RuleStates,
    Transition,
    firing_of,
    restore_into,
    snapshot_of,
    transition,
)

__all__ = ["MICRO", "LevelChange", "LevelEngine", "LevelSeries"]

MICRO: Final = 1_000_000  # value units per level unit (Decimal(6) as an integer)
LevelChange = tuple[GroupKey, int, int, int]  # (group, minute, value change in micro, customers)


class LevelSeries:
    """Value and customers of every group at each of the last ``span`` minutes + now."""

    def __init__(self, span: int) -> None:
        self.span = span
        self.keys: list[GroupKey] = []
        self.index: dict[GroupKey, int] = {}
        self.now: int | None = None
        self._rows = np.zeros((0, 0, 2), dtype=np.int64)  # [minute, group, (value, customers)]
        self._base = 0  # absolute minute of row 0
        self._current = np.zeros((0, 2), dtype=np.int64)  # the level at ``now``

    def _group(self, key: GroupKey) -> int:
        i = self.index.get(key)
        if i is None:
            i = self.index[key] = len(self.keys)
            self.keys.append(key)
            if i >= self._rows.shape[1]:
                cap = max(8, 2 * self._rows.shape[1])
                rows = np.zeros((self._rows.shape[0], cap, 2), dtype=np.int64)
                rows[:, : self._rows.shape[1]] = self._rows
                current = np.zeros((cap, 2), dtype=np.int64)
                current[: self._current.shape[0]] = self._current
                self._rows, self._current = rows, current
        return i

    def start(self, minute: int, base: Iterable[tuple[GroupKey, int, int]] = ()) -> None:
        """Begin at ``minute - 1`` with the levels ``base`` (group, value micro, customers)."""
        for key, _, _ in base:
            self._group(key)
        cap = max(8, len(self.keys))
        self._current = np.zeros((cap, 2), dtype=np.int64)
        for key, value, customers in base:
            self._current[self.index[key]] += (value, customers)
        self._rows = np.zeros((self.span + 256, cap, 2), dtype=np.int64)
        self._rows[:] = self._current  # flat before the start: the base level
        self.now = minute - 1
        self._base = self.now - self.span

    def advance(self, minute: int, changes: Iterable[LevelChange]) -> None:
        """Make ``minute`` now, applying the changes of that minute."""
        if self.now is None:
            self.start(minute)
        if minute != self.now + 1:
            raise ValueError(f"minutes advance one at a time: {self.now} -> {minute}")
        for key, m, value, customers in changes:
            if m != minute:
                raise ValueError(f"a change of minute {m} fed at {minute}")
            g = self._group(key)  # may widen the arrays: index after
            self._current[g] += (value, customers)
        i = minute - self._base
        if i >= self._rows.shape[0]:
            drop = i - self.span
            self._rows[: self._rows.shape[0] - drop] = self._rows[drop:].copy()
            self._base += drop
            i -= drop
        self._rows[i] = self._current
        self.now = minute

    def window(self, minutes: int) -> np.ndarray:
        """Levels of the minutes ``now - minutes .. now``: ``[minutes + 1, G, 2]``."""
        assert self.now is not None and minutes <= self.span
        i = self.now - self._base
        return self._rows[i - minutes : i + 1, : len(self.keys)]


class LevelEngine:
    """Every rise rule of a rule set over one :class:`LevelSeries` (like ``Engine``)."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = tuple(r for r in rules.rules if r.kind == "rise")
        self.digest = rules.digest
        span = max((r.windows[0] for r in self.rules), default=60)
        self.series = LevelSeries(span)
        self.states = [RuleStates(rule) for rule in self.rules]
        self.minute: int | None = None
        self.first: int | None = None  # first minute of the history (warm-up)

    def load(
        self, minute: int, changes: Iterable[LevelChange], first_minute: int | None = None
    ) -> None:
        """The levels known at ``minute``, from every change up to it (after a restart);
        ``first_minute``: the first minute of the history (else the first change seen)."""
        self.first = first_minute
        first = minute - self.series.span
        base: dict[GroupKey, list[int]] = {}
        recent: dict[int, list[LevelChange]] = {}
        for key, m, value, customers in changes:
            if m > minute:
                raise ValueError(f"a change of minute {m} loaded at {minute}")
            if first_minute is None and (self.first is None or m < self.first):
                self.first = m
            if m < first:
                b = base.setdefault(key, [0, 0])
                b[0] += value
                b[1] += customers
            else:
                recent.setdefault(m, []).append((key, m, value, customers))
        self.series.start(first, [(k, v, c) for k, (v, c) in base.items()])
        for m in range(first, minute + 1):
            self.series.advance(m, recent.get(m, ()))
        self.minute = minute

    def advance(self, minute: int, changes: Iterable[LevelChange]) -> list[Transition]:
        changes = list(changes)
        if changes and self.first is None:
            self.first = minute
        self.series.advance(minute, changes)
        self.minute = minute
        out: list[Transition] = []
        keys_all = self.series.keys
        for rule, states in zip(self.rules, self.states, strict=True):
            keys = [k for k in keys_all if k[0] in rule.groupings]
            if not keys or self.first is None or minute < self.first + rule.warmup:
                continue
            cols = np.array([self.series.index[k] for k in keys], dtype=np.intp)
            ev = _evaluate(rule, self.series.window(rule.windows[0])[:, cols])

            def fire(g: int, rung: int, ev: dict[str, Any] = ev, rule: Rule = rule) -> tuple:
                return minute - rule.windows[0] + int(ev["low_at"][g]) + 1, _details(rule, ev, g)

            lengths = np.array(rule.windows)
            steps = states.step(minute, keys, ev["signals"], lengths, fire)
            for g, st, event in sorted(steps, key=lambda e: keys[e[0]]):  # as in Engine
                now = partial(_details, rule, ev, g)
                out.append(transition(rule, keys[g], st, event, minute, now))
        return out

    def firing(self) -> list[tuple[Rule, Any, Any]]:
        return firing_of(self.states)

    def snapshot(self) -> dict[str, Any]:
        return snapshot_of(self.minute, self.digest, self.states)

    def restore(self, snap: dict[str, Any]) -> list[str]:
        return restore_into(self.states, snap)


def _evaluate(rule: Rule, window: np.ndarray) -> dict[str, Any]:
    """Signals of one rule over ``window`` ``[T + 1, G, 2]`` (the last row is now)."""
    by_value = rule.kpi.name == "revenue_at_risk"
    levels = window[:, :, 0] if by_value else window[:, :, 1] * MICRO
    customers = window[:, :, 1]
    now = levels[-1]
    low = levels.min(axis=0)
    # The last minute at the low: the rise began after it.
    low_at = levels.shape[0] - 1 - np.argmax((levels == low)[::-1], axis=0)
    cols = np.arange(levels.shape[1])
    added = customers[-1] - customers[low_at, cols]
    rise = now - low
    floor = round(rule.min_increase * MICRO)
    required = np.maximum(floor, np.ceil((rule.factor - 1.0) * low).astype(np.int64))
    required = np.maximum(required, 1)
    breach = (rise >= required) & (added >= rule.min_customers)
    evident = 2 * rise >= required
    z = rise / required
    signals = Signals(
        z=z[None],
        n1=customers[-1][None].astype(float),
        n0=customers[low_at, cols][None].astype(float),
        breach=breach[None],
        evident=evident[None],
        informative=np.ones((1, len(cols)), dtype=bool),
    )
    return {
        "signals": signals,
        "now": now,
        "low": low,
        "low_at": low_at,
        "customers": customers[-1],
        "customers_low": customers[low_at, cols],
        "added": added,
        "required": required,
    }


def _details(rule: Rule, ev: dict[str, Any], g: int) -> dict[str, Any]:
    """In the KPI's unit: value, or customers (both held in millionths)."""
    return {
        "observed": int(ev["now"][g]) / MICRO,
        "baseline": int(ev["low"][g]) / MICRO,
        "n_window": int(ev["customers"][g]),
        "n_baseline": int(ev["customers_low"][g]),
        "added": int(ev["added"][g]),
        "required": int(ev["required"][g]) / MICRO,
        "window": int(rule.windows[0]),
        "z": round(float(ev["signals"].z[0, g]), 3),
    }
