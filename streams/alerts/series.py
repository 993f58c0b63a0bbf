"""Prefix sums of the leaf vectors, per minute (recent day) and per 15-minute slot (weeks).

The detector reads, at each evaluated minute ``C``, window sums over the last minutes
(``M[C] - M[C-T]``) and baseline sums over slots of past days or weeks (``S[b] - S[a-1]``).
Both arrays hold running totals, so a window of any length costs one subtraction.

Data known at ``C`` may still land on an earlier minute (a sample processed after its
minute: ``lag_minutes > 0``); :meth:`SeriesStore.add` then adds it to every running total
from that minute up to ``C``, which costs the lag, a few rows. Integer sums, applied in
the order of the minute they became known: a live evaluator, a restarted one (which
loads the totals known at its last minute) and a replay all hold the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import numpy as np

from streams.alerts.layout import WIDTH

__all__ = ["SLOT", "LeafKey", "SeriesStore", "slot_of"]

SLOT: Final = 15  # minutes per baseline slot
LeafKey = tuple[str, str, str, str, str, str]  # grouping, team, channel, region, priority, segment


def slot_of(minute: int) -> int:
    return minute // SLOT


class SeriesStore:
    """Running totals per leaf: ``minute_span`` minutes and ``slot_span`` slots kept."""

    def __init__(self, minute_span: int, slot_span: int) -> None:
        self.minute_span = minute_span
        self.slot_span = slot_span
        self.leaves: list[LeafKey] = []
        self.index: dict[LeafKey, int] = {}
        self.now: int | None = None  # last minute advanced to
        self.first_minute: int | None = None  # first minute with data (exposure of volume)
        self._m = np.zeros((0, 0, WIDTH), dtype=np.int64)
        self._s = np.zeros((0, 0, WIDTH), dtype=np.int64)
        self._m_base = 0  # absolute minute of row 0
        self._s_base = 0  # absolute slot of row 0
        self._s_now = 0  # slot of ``now``
        # Bumped whenever data lands in a slot before the current one: baseline sums
        # (which never include the current slot) are reusable until it changes.
        self.past_version = 0

    # -- leaves --

    def leaf(self, key: LeafKey) -> int:
        """Index of a leaf, registering it (with zero history) if new."""
        i = self.index.get(key)
        if i is None:
            i = self.index[key] = len(self.leaves)
            self.leaves.append(key)
            if i >= self._m.shape[1]:
                cap = max(8, 2 * self._m.shape[1])
                self._m = _widen(self._m, cap)
                self._s = _widen(self._s, cap)
        return i

    @property
    def n_leaves(self) -> int:
        return len(self.leaves)

    # -- time --

    def start(self, minute: int) -> None:
        """Begin empty just before ``minute`` (the first minute to advance to)."""
        self.now = minute - 1
        self._m_base, self._s_base = minute - 1, slot_of(minute - 1) - 1
        cap = max(8, self._m.shape[1])
        self._m = np.zeros((self.minute_span + 256, cap, WIDTH), dtype=np.int64)
        self._s = np.zeros((self.slot_span + 64, cap, WIDTH), dtype=np.int64)
        self._s_now = slot_of(minute - 1)

    def advance(self, minute: int) -> None:
        """Make ``minute`` (the one after :attr:`now`) the current minute."""
        if self.now is None:
            self.start(minute)
        if minute != self.now + 1:
            raise ValueError(f"minutes advance one at a time: {self.now} -> {minute}")
        i = minute - self._m_base
        if i >= self._m.shape[0]:
            drop = i - self.minute_span
            self._m[: self._m.shape[0] - drop] = self._m[drop:].copy()
            self._m_base += drop
            i -= drop
        self._m[i] = self._m[i - 1]
        s = slot_of(minute)
        if s != self._s_now:
            j = s - self._s_base
            if j >= self._s.shape[0]:
                drop = j - self.slot_span
                self._s[: self._s.shape[0] - drop] = self._s[drop:].copy()
                self._s_base += drop
                j -= drop
            self._s[j] = self._s[j - 1]
            self._s_now = s
        self.now = minute

    def add(self, rows: Iterable[tuple[LeafKey, int, np.ndarray]]) -> None:
        """Add vectors ``(leaf, minute, vector)`` known now; ``minute <= now``."""
        now = self.now
        assert now is not None, "advance() first"
        for key, minute, vec in rows:
            if minute > now:
                raise ValueError(f"data of minute {minute} cannot be known at {now}")
            leaf = self.leaf(key)
            i = max(minute - self._m_base, 0)  # older than the kept minutes: slots only
            self._m[i : now - self._m_base + 1, leaf] += vec
            j = max(slot_of(minute) - self._s_base, 0)
            self._s[j : self._s_now - self._s_base + 1, leaf] += vec
            if j < self._s_now - self._s_base:
                self.past_version += 1
            if self.first_minute is None or minute < self.first_minute:
                self.first_minute = minute

    def load(
        self,
        now: int,
        minute_rows: Iterable[tuple[LeafKey, int, np.ndarray]],
        slot_rows: Iterable[tuple[LeafKey, int, np.ndarray]],
        first_minute: int | None,
    ) -> None:
        """Totals known at ``now`` from stored sums: per minute (the last ``minute_span``
        minutes) and per slot (everything up to ``now``'s slot), as after a restart."""
        minute_rows, slot_rows = list(minute_rows), list(slot_rows)
        for key, _, _ in minute_rows + slot_rows:
            self.leaf(key)
        self.start(now - self.minute_span + 1)
        self._m_base = now - self.minute_span
        self._s_base = slot_of(now) - self.slot_span
        self._s_now = slot_of(now)
        m_delta = np.zeros_like(self._m)
        s_delta = np.zeros_like(self._s)
        for key, minute, vec in minute_rows:
            i = minute - self._m_base
            if 0 < i <= now - self._m_base:
                m_delta[i, self.index[key]] += vec
        for key, slot, vec in slot_rows:
            j = max(slot - self._s_base, 0)
            if j <= self._s_now - self._s_base:
                s_delta[j, self.index[key]] += vec
        self._m = np.cumsum(m_delta, axis=0)
        self._s = np.cumsum(s_delta, axis=0)
        self._m[now - self._m_base + 1 :] = 0
        self._s[self._s_now - self._s_base + 1 :] = 0
        self.now = now
        self.first_minute = first_minute
        self.past_version += 1

    # -- reads --

    def windows(self, lengths: np.ndarray) -> np.ndarray:
        """Sums of the windows of ``lengths`` minutes ending now: ``[len(lengths), L, W]``."""
        now = self.now
        assert now is not None
        i = now - self._m_base
        before = np.maximum(i - np.asarray(lengths), 0)
        m = self._m[:, : self.n_leaves]
        return m[i][None] - m[before]

    def slot_sums(self, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Sums over slot ranges ``first..last`` (inclusive, absolute): ``[K, L, W]``.

        Parts outside the kept slots or after the current slot count as empty.
        """
        s = self._s[:, : self.n_leaves]
        top = self._s_now - self._s_base
        hi = np.minimum(np.maximum(np.asarray(last) - self._s_base, 0), top)
        lo = np.minimum(np.maximum(np.asarray(first) - 1 - self._s_base, 0), top)
        out = s[hi] - s[lo]
        empty = np.asarray(last) < np.asarray(first)
        if empty.any():
            out[empty] = 0
        return out

    def covered_minutes(self, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Minutes of the slot ranges that lie within the data seen (volume exposure)."""
        if self.first_minute is None or self.now is None:
            return np.zeros(len(first))
        lo = np.maximum(np.asarray(first) * SLOT, self.first_minute)
        hi = np.minimum((np.asarray(last) + 1) * SLOT - 1, self.now)
        return np.maximum(hi - lo + 1, 0).astype(float)


def _widen(a: np.ndarray, leaves: int) -> np.ndarray:
    out = np.zeros((a.shape[0], leaves, WIDTH), dtype=a.dtype)
    out[:, : a.shape[1]] = a
    return out
