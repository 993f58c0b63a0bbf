"""One rule, one evaluated minute: test statistics of every rung and group, vectorized.

Evidence is computed per leaf (the strata), then summed into the rule's groups with a 0/1
membership matrix: a team is judged over its channels, a channel over its teams. Rungs
are the ladder's windows (15 min .. 1 day): each is tested on its own, so a big drop
shows on the short windows first and a small one once a long window holds enough
samples. SLO rules use burn rates over their (long, short) window pairs instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from streams.alerts.evidence import (
    MIN_STRATUM,
    leaf_evidence,
    nps_counts,
    proportion_counts,
    slo_counts,
)
from streams.alerts.layout import column, hist_slice
from streams.alerts.rules import Rule
from streams.alerts.series import SLOT, LeafKey, SeriesStore, slot_of
from streams.alerts.stats import burn_rate, combine, critical, quantile_from_hist

__all__ = ["MIN_STRATUM", "WEEK", "GroupKey", "RuleDetector", "Signals", "group_of"]

WEEK: Final = 10080
GroupKey = LeafKey
_LEAF_OF: Final = {"region": "region", "priority": "priority", "segment": "segment"}


def group_of(grouping: str, leaf: LeafKey) -> GroupKey | None:
    """The group of ``grouping`` a leaf belongs to (None: the leaf is of another kind)."""
    if leaf[0] != _LEAF_OF.get(grouping, "team_channel"):
        return None
    team, channel = leaf[1], leaf[2]
    if grouping == "team":
        return ("team", team, "", "", "", "")
    if grouping == "channel":
        return ("channel", "", channel, "", "", "")
    if grouping == "overall":
        return ("overall", "", "", "", "", "")
    return leaf


@dataclass(slots=True)
class Signals:
    """Per rung and group: statistic, samples, breach (may fire), evident (stays firing)
    and informative (enough samples to tell a recovery)."""

    z: np.ndarray
    n1: np.ndarray
    n0: np.ndarray
    breach: np.ndarray
    evident: np.ndarray
    informative: np.ndarray


class BaselineCache:
    """Baseline sums per (baseline, window length), kept across minutes.

    A baseline only changes when its slot range moves (every few minutes) or when late
    data lands in a past slot (``SeriesStore.past_version``), so most minutes reuse it.
    """

    def __init__(self, store: SeriesStore) -> None:
        self.store = store
        self._entries: dict[tuple[object, int], tuple[tuple, np.ndarray, float, Any]] = {}

    def _entry(self, rule: Rule, minute: int, t: int) -> tuple[tuple, np.ndarray, float, Any]:
        first, last = baseline_range(rule, minute, t)
        key = (first.tobytes(), last.tobytes(), self.store.past_version, self.store.n_leaves)
        found = self._entries.get((rule.baseline, t))
        if found is None or found[0] != key:
            parts = self.store.slot_sums(first, last)
            exposure = self.store.covered_minutes(first, last)
            found = (key, parts.sum(axis=0), float(exposure.sum()), (parts, exposure))
            self._entries[(rule.baseline, t)] = found
        return found

    def get(self, rule: Rule, minute: int, t: int) -> tuple[np.ndarray, float, tuple]:
        """(sums ``[L, W]``, exposure minutes, validity key) of a rule's baseline."""
        key, sums, exposure, _ = self._entry(rule, minute, t)
        return sums, exposure, key

    def parts(self, rule: Rule, minute: int, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Per shifted window (seasonal kinds): sums ``[K, L, W]`` and exposures ``[K]``."""
        return self._entry(rule, minute, t)[3]


class Cache:
    """Window sums of one minute, shared by every rule, and the baseline cache."""

    def __init__(
        self, store: SeriesStore, minute: int, lengths: tuple[int, ...], baselines: BaselineCache
    ) -> None:
        self.store = store
        self.minute = minute
        self.lengths = lengths
        self.pos = {t: i for i, t in enumerate(lengths)}
        self._windows = store.windows(np.asarray(lengths))
        self.baselines = baselines
        self._by_rungs: dict[tuple[int, ...], np.ndarray] = {}

    def windows(self, rungs: tuple[int, ...]) -> np.ndarray:
        found = self._by_rungs.get(rungs)
        if found is None:
            found = self._by_rungs[rungs] = self._windows[[self.pos[t] for t in rungs]]
        return found

    def baseline(self, rule: Rule, t: int) -> tuple[np.ndarray, float]:
        sums, exposure, _ = self.baselines.get(rule, self.minute, t)
        return sums, exposure


def baseline_range(rule: Rule, minute: int, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Slot ranges (first, last; inclusive) of a rule's baseline for a window.

    ``trailing``: the ``span`` minutes before the window, in whole slots ending at the
    slot boundary at or before the window start. ``same_hour_of_day`` / ``_of_week``: the
    same window ``k`` days / weeks earlier (k = 1..days / weeks), widened by ``pad`` on
    each side, in whole slots.
    """
    b = rule.baseline
    assert b is not None
    start = minute - t + 1
    if b.kind == "trailing":
        last = np.array([slot_of(start) - 1])
        return last - b.span // SLOT + 1, last
    k = np.arange(1, b.count + 1) * b.period
    return (start - k - b.pad) // SLOT, (minute - k + b.pad) // SLOT


class RuleDetector:
    """Evaluates one rule on a :class:`SeriesStore`; groups follow the leaves seen."""

    def __init__(self, rule: Rule, store: SeriesStore) -> None:
        self.rule = rule
        self.store = store
        self.keys: list[GroupKey] = []
        self._index: dict[GroupKey, int] = {}
        self._pairs: list[tuple[int, int]] = []  # (group, leaf) memberships
        self._leaves_seen = 0
        self.members = np.zeros((0, 0))
        self.lengths = np.asarray(rule.rungs)
        self._stack_key: tuple = ()
        self._stack = (np.zeros((0, 0, 0)), np.zeros(0))
        self.prepared: dict[str, object] = {}  # baseline-only terms, valid with _stack

    def refresh(self) -> int:
        """Add groups of new leaves; returns the number of groups."""
        n = self.store.n_leaves
        if n != self._leaves_seen:
            for leaf_i in range(self._leaves_seen, n):
                leaf = self.store.leaves[leaf_i]
                for grouping in self.rule.groupings:
                    key = group_of(grouping, leaf)
                    if key is None:
                        continue
                    g = self._index.get(key)
                    if g is None:
                        g = self._index[key] = len(self.keys)
                        self.keys.append(key)
                    self._pairs.append((g, leaf_i))
            self.members = np.zeros((len(self.keys), n))
            for g, leaf_i in self._pairs:
                self.members[g, leaf_i] = 1.0
            self._leaves_seen = n
        return len(self.keys)

    def _inputs(self, cache: Cache) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rule = self.rule
        w = cache.windows(rule.rungs)
        e1 = np.minimum(self.lengths, cache.minute - (self.store.first_minute or 0) + 1)
        if rule.kind != "baseline":
            return w, np.zeros_like(w), e1.astype(float), np.zeros(len(self.lengths))
        b = rule.baseline
        assert b is not None
        minute = cache.minute
        if b.kind == "trailing":  # the ranges move with the slot of each window's start
            ranges = tuple((minute - t + 1) // SLOT for t in rule.rungs)
        else:  # k days or weeks back is a whole number of slots
            ranges = tuple(
                ((minute - t + 1 - b.pad) // SLOT, (minute + b.pad) // SLOT) for t in rule.rungs
            )
        key = (ranges, self.store.past_version, self.store.n_leaves)
        if key != self._stack_key:
            parts = [cache.baselines.get(rule, minute, t) for t in rule.rungs]
            self._stack = (np.stack([p[0] for p in parts]), np.array([p[1] for p in parts]))
            self._stack_key = key
            self.prepared.clear()
            if rule.random_effect:
                shifted = [cache.baselines.parts(rule, minute, t) for t in rule.rungs]
                self.prepared["parts"] = (
                    np.stack([p[0] for p in shifted]),
                    np.stack([p[1] for p in shifted]),
                )
        return w, self._stack[0], e1.astype(float), self._stack[1]

    def evaluate(self, cache: Cache) -> Signals:
        rule = self.rule
        self.refresh()
        m = self.members
        w, b, e1, e0 = self._inputs(cache)
        if rule.kind == "slo":
            bad, total = slo_counts(rule, w)
            bad_g, total_g = bad @ m.T, total @ m.T
            burn = burn_rate(bad_g, total_g, rule.objective or 0.0)
            z = np.zeros_like(burn)
            breach = np.zeros(burn.shape, dtype=bool)
            for p, pair in enumerate(rule.pairs):
                lo, sh = 2 * p, 2 * p + 1
                fire = (burn[lo] >= pair.burn) & (burn[sh] >= pair.burn)
                fire &= total_g[lo] >= rule.min_count
                breach[lo] = breach[sh] = fire
                z[lo], z[sh] = burn[lo] / pair.burn, burn[sh] / pair.burn
            informative = np.repeat(total_g[0::2] >= rule.min_count, 2, axis=0)
            return Signals(z, total_g, np.zeros_like(total_g), breach, breach.copy(), informative)
        d, v, k3, n1, n0 = leaf_evidence(rule, w, b, e1, e0, self.prepared)
        n1g, n0g = n1 @ m.T, n0 @ m.T if rule.kind == "baseline" else np.full((1, 1), np.inf)
        if rule.kind == "threshold" and rule.kpi.family == "volume":
            x1 = w[..., column(rule.kpi.num)] @ m.T
            expected = (rule.threshold or 0.0) * e1[:, None] / 60.0
            d_g = expected - x1 if rule.down else x1 - expected
            v_g = np.broadcast_to(expected, d_g.shape)
            ok = v_g > 0
            sd = np.sqrt(np.where(ok, v_g, 1.0))
            z = np.where(ok, (d_g - 0.5) / sd, 0.0)
            gamma = np.where(ok, (v_g if rule.down is False else -v_g) / sd**3, 0.0)
            n1g = np.broadcast_to(expected, d_g.shape)
        else:
            z, gamma = combine(d, v, k3, m, 0.5)
        enough = (n1g >= rule.min_count) & (n0g >= rule.min_baseline)
        breach = (z >= critical(rule.z_fire, gamma)) & enough
        n0b = np.broadcast_to(n0g, z.shape)
        return Signals(z, n1g, n0b, breach, z >= rule.z_clear, enough)

    def onset(self, cache: Cache, g: int, rung: int) -> int:
        """First minute of the drop: where the suffix of the fired window holds the most
        evidence (a CUSUM over the window, with the fired rung's baseline)."""
        rule = self.rule
        t = int(self.lengths[rung])
        lengths = np.arange(1, t + 1)
        w = self.store.windows(lengths)
        row = self.members[g]
        if rule.kind == "slo":
            bad, total = slo_counts(rule, w)
            pair = rule.pairs[rung // 2]
            score = (bad - total * (1 - (rule.objective or 0.0)) * pair.burn) @ row
        else:
            if rule.kind == "baseline":
                base, exposure = cache.baseline(rule, t)
                b = np.broadcast_to(base, w.shape)
                e0 = np.full(t, exposure)
            else:
                b, e0 = np.zeros_like(w), np.zeros(t)
            d = leaf_evidence(rule, w, b, lengths.astype(float), e0)[0]
            score = d @ row
        return cache.minute - int(np.argmax(score))

    def describe(self, cache: Cache, g: int, rung: int) -> dict[str, float | int | None]:
        """Observed and baseline value (KPI units), sample counts of group ``g`` on a rung."""
        rule, k = self.rule, self.rule.kpi
        row = self.members[g]
        w, b, e1, e0 = self._inputs(cache)
        w1 = np.tensordot(row, w[rung], axes=(0, 0))
        b1 = np.tensordot(row, b[rung], axes=(0, 0))
        obs: float | None = None
        base: float | None = None
        if k.family == "time":
            hs = hist_slice(k.hist)
            n1, n0 = int(w1[hs].sum()), int(b1[hs].sum())
            obs = quantile_from_hist(w1[hs], k.quantile)
            base = quantile_from_hist(b1[hs], k.quantile) if rule.kind == "baseline" else None
        elif k.family == "nps":
            s1, _, n1 = nps_counts(w1)
            s0, _, n0 = nps_counts(b1)
            obs, base = (s1 / n1 if n1 else None), (s0 / n0 if n0 else None)
        elif k.family == "volume":
            n1 = n0 = int(b1[column(k.num)])
            obs = float(w1[column(k.num)])
            base = n0 * e1[rung] / e0[rung] if e0[rung] else None
            n1 = int(obs)
        else:
            x1, n1 = proportion_counts(rule, w1)
            x0, n0 = proportion_counts(rule, b1)
            obs, base = (x1 / n1 if n1 else None), (x0 / n0 if n0 else None)
        if rule.kind != "baseline":
            n0 = 0
            base = self._reference()
        return {
            "observed": None if obs is None else float(obs),
            "baseline": None if base is None else float(base),
            "n_window": int(n1),
            "n_baseline": int(n0),
            "window": int(self.lengths[rung]),
        }

    def _reference(self) -> float | None:
        """What a threshold or SLO rule holds the KPI to, in internal units."""
        rule, k = self.rule, self.rule.kpi
        if rule.kind == "slo" and k.family == "time":
            return rule.threshold
        if rule.kind == "slo":
            obj = rule.objective or 0.0
            return obj if k.down else 1 - obj
        if rule.threshold is None:
            return None
        return rule.threshold / (k.scale if k.family in ("proportion", "nps") else 1.0)
