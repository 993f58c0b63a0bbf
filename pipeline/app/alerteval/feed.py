"""A simulated history through the pipeline's own logic and into the detector, in process.

Every message goes the way it goes in the workers: ``parse_event`` (the contract), the
partition's ``PartitionGate`` (duplicates, lateness, watermark), ``apply_event`` (the
conversation state and the event's contribution), ``apply_increments`` into a
``MinutePartial`` per leaf and minute. A contribution becomes known at its partition's
watermark minute (``minute + lag_minutes`` in ClickHouse); a minute is evaluated once
every partition's watermark has passed it, exactly as the live evaluator waits for
``source_progress``. The detector is :class:`streams.alerts.engine.Engine`, the same
object the live evaluator steps.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.app.alerteval.scenario import Scenario
from pipeline.core.config import KpiSettings
from pipeline.core.errors import InvalidEvent
from pipeline.core.events import parse_event
from pipeline.simulator import simulate
from streams.alerts.engine import Engine
from streams.alerts.layout import COUNTERS, WIDTH, vector_from_partial
from streams.alerts.rules import RuleSet
from streams.alerts.state import Transition
from streams.conversation import ConversationState
from streams.gate import PartitionGate, Verdict
from streams.partials import MinutePartial
from streams.rollup import apply_increments

__all__ = ["Feed", "History", "run"]

_MIN_US = 60_000_000
_SWEEP_EVERY = 200_000


@dataclass
class History:
    """What a run leaves for scoring: transitions, and the final data per minute and leaf."""

    scenario: Scenario
    first_minute: int
    transitions: list[Transition] = field(default_factory=list)
    leaves: list[tuple[str, str]] = field(default_factory=list)  # (team, channel)
    counts: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, len(COUNTERS)), np.int32))
    hourly: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, WIDTH), np.int64))
    events: int = 0
    minutes: int = 0


class Feed:
    """Folds events into leaf rows keyed by the minute they become known."""

    def __init__(self, scenario: Scenario, rules: RuleSet, partitions: int) -> None:
        kpi = KpiSettings()
        self.partitions = partitions
        self.gates = [
            PartitionGate(
                allowed_lateness_us=kpi.allowed_lateness_seconds * 1_000_000,
                retention_us=kpi.state_retention_days * 86_400_000_000,
                sla_us=kpi.sla_targets_us(),
            )
            for _ in range(partitions)
        ]
        self.offsets = [0] * partitions
        self.states: dict[str, ConversationState] = {}
        self.pending: dict[int, dict[tuple[tuple[str, ...], int], MinutePartial]] = defaultdict(
            dict
        )
        self.engine = Engine(rules)
        groupings = {g for r in rules.rules for g in r.groupings}
        self.extra = [g for g in ("region", "priority", "segment") if g in groupings]
        start = int(scenario.params.start.timestamp()) // 60
        self.history = History(scenario, start)
        total = int(scenario.params.duration.total_seconds() // 60) + 1
        self._total = total
        self._leaf_index: dict[tuple[str, str], int] = {}
        self.history.counts = np.zeros((total, 16, len(COUNTERS)), np.int32)
        self.history.hourly = np.zeros((total // 60 + 1, 16, WIDTH), np.int64)
        self.next_minute = start
        self.record: list[tuple[int, tuple[str, ...], int, np.ndarray]] | None = None

    def message(self, key: str, value: bytes) -> None:
        p = zlib.crc32(key.encode()) % self.partitions
        offset = self.offsets[p]
        self.offsets[p] = offset + 1
        try:
            event = parse_event(value)
        except InvalidEvent:
            return
        gate = self.gates[p]
        out = gate.decide(self.states.get(event.conversation_id), event, offset)
        if out.verdict is not Verdict.ACCEPTED:
            return
        self.states[event.conversation_id] = out.state  # type: ignore[assignment]
        c = out.contribution
        assert c is not None and gate.watermark_us is not None
        known = gate.watermark_us // _MIN_US
        rows = self.pending[known]
        leaves: list[tuple[str, ...]] = [("team_channel", c.team, c.channel, "", "", "")]
        for g in self.extra:
            dims = {"region": c.region, "priority": c.priority, "segment": c.segment}
            leaves.append(
                (g, "", "", *(dims[d] if d == g else "" for d in ("region", "priority", "segment")))
            )
        for leaf in leaves:
            part = rows.get((leaf, c.minute))
            if part is None:
                part = rows[(leaf, c.minute)] = MinutePartial()
            apply_increments(part, c.increments)

    def closed(self) -> int | None:
        """Last minute every partition's watermark has passed."""
        marks = [g.watermark_us for g in self.gates]
        if any(m is None for m in marks):
            return None
        return min(marks) // _MIN_US - 1  # type: ignore[type-var, operator]

    def evaluate_until(self, minute: int) -> None:
        h = self.history
        while self.next_minute <= minute:
            c = self.next_minute
            rows = []
            for (leaf, m), part in sorted(self.pending.pop(c, {}).items()):
                vec = vector_from_partial(part)
                rows.append((leaf, m, vec))
                if self.record is not None:
                    self.record.append((c, leaf, m, vec))
                if leaf[0] == "team_channel":
                    self._record(leaf[1], leaf[2], m, vec)
            h.transitions.extend(self.engine.advance(c, rows))
            h.minutes += 1
            self.next_minute = c + 1

    def _record(self, team: str, channel: str, minute: int, vec: np.ndarray) -> None:
        h = self.history
        i = self._leaf_index.get((team, channel))
        if i is None:
            i = self._leaf_index[(team, channel)] = len(h.leaves)
            h.leaves.append((team, channel))
        k = minute - h.first_minute
        if 0 <= k < self._total:
            h.counts[k, i] += vec[: len(COUNTERS)].astype(np.int32)
            h.hourly[k // 60, i] += vec

    def save(self, path: Path) -> None:
        """Store the rows by the minute they became known, and the scoring arrays."""
        rec = self.record or []
        names = sorted({leaf for _, leaf, _, _ in rec})
        index = {leaf: i for i, leaf in enumerate(names)}
        h = self.history
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            np.savez_compressed(
                fh,
                known=np.array([r[0] for r in rec], dtype=np.int64),
                minute=np.array([r[2] for r in rec], dtype=np.int64),
                leaf=np.array([index[r[1]] for r in rec], dtype=np.int32),
                vec=np.array([r[3] for r in rec], dtype=np.int32).reshape(len(rec), WIDTH),
                leaves=np.array(["\t".join(x) for x in names]),
                history_leaves=np.array(["\t".join(x) for x in h.leaves]),
                counts=h.counts,
                hourly=h.hourly,
                events=np.array(h.events),
            )

    def sweep(self) -> None:
        """Forget conversations past their retention (the workers tombstone them)."""
        gate = self.gates[0]
        lowest = min(g.watermark_us or 0 for g in self.gates)
        doomed = [k for k, s in self.states.items() if s.last_event_us + gate.retention_us < lowest]
        for k in doomed:
            del self.states[k]


def _replay(cache: Path, scenario: Scenario, rules: RuleSet) -> History:
    """Run the detector on rows a previous run of the same scenario stored."""
    data = np.load(cache, allow_pickle=False)
    known, minutes, leaf_ids, vectors = data["known"], data["minute"], data["leaf"], data["vec"]
    names = [tuple(x.split("\t")) for x in data["leaves"]]
    feed = Feed(scenario, rules, 1)
    h = feed.history
    h.leaves = [tuple(x.split("\t")) for x in data["history_leaves"]]  # type: ignore[misc]
    h.counts, h.hourly, h.events = data["counts"], data["hourly"], int(data["events"])
    bounds = np.flatnonzero(np.diff(known)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(known)]])
    by_known = (
        {int(known[a]): (a, b) for a, b in zip(starts, ends, strict=True)} if len(known) else {}
    )
    last = h.first_minute + feed._total - 1
    for c in range(h.first_minute, last + 1):
        span = by_known.get(c)
        rows = []
        if span is not None:
            a, b = span
            rows = [
                (names[leaf_ids[i]], int(minutes[i]), vectors[i].astype(np.int64))
                for i in range(a, b)
            ]
        h.transitions.extend(feed.engine.advance(c, rows))
        h.minutes += 1
    return h


def run(
    scenario: Scenario,
    rules: RuleSet,
    *,
    partitions: int = 4,
    progress: Callable[[int], Any] | None = None,
    cache: Path | None = None,
) -> History:
    """Simulate ``scenario`` and evaluate every minute of it; ``progress(minutes)`` ticks.

    ``cache``: a file for the simulated rows; when it exists only the detector runs (the
    rows depend on the scenario alone, so tuning rules does not re-simulate).
    """
    if cache is not None and cache.exists():
        return _replay(cache, scenario, rules)
    feed = Feed(scenario, rules, partitions)
    if cache is not None:
        feed.record = []
    n = 0
    last_closed = None
    for ev in simulate(scenario.params):
        feed.message(ev.key, ev.value)
        n += 1
        if n % 256 == 0:
            closed = feed.closed()
            if closed is not None and closed != last_closed:
                before = feed.next_minute
                feed.evaluate_until(closed)
                last_closed = closed
                if progress is not None and feed.next_minute > before:
                    progress(feed.next_minute - before)
        if n % _SWEEP_EVERY == 0:
            feed.sweep()
    end = max(feed.pending, default=feed.next_minute - 1)
    end = max(end, feed.history.first_minute + feed._total - 1)
    before = feed.next_minute
    feed.evaluate_until(end)
    if progress is not None:
        progress(feed.next_minute - before)
    feed.history.events = n
    if cache is not None and feed.record is not None:
        feed.save(cache)
    return feed.history
