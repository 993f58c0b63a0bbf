"""Running counts of a simulation, for the CLI's final report."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from pipeline.simulator.model import (
    _OPENED,
    KINDS,
    SimEvent,
)


class Summary:
    """Running counts for the CLI's final report (feed it events as they are produced)."""

    __slots__ = (
        "_first",
        "_last",
        "delayed",
        "delayed_over_10min",
        "kinds",
        "reasons",
        "total",
        "types",
    )

    def __init__(self) -> None:
        self.total = 0
        self.kinds: dict[str, int] = dict.fromkeys(KINDS, 0)
        self.types: dict[str, int] = {}
        self.reasons: dict[str, int] = {}
        self.delayed = 0
        self.delayed_over_10min = 0
        self._first: datetime | None = None
        self._last: datetime | None = None

    def add(self, event: SimEvent) -> None:
        self.total += 1
        self.kinds[event.kind] = self.kinds.get(event.kind, 0) + 1
        if event.kind == "valid":
            self.types[event.event_type] = self.types.get(event.event_type, 0) + 1
            if event.arrival > event.occurred_at:
                self.delayed += 1
                if event.arrival - event.occurred_at > timedelta(minutes=10):
                    self.delayed_over_10min += 1
        elif event.reason is not None:
            self.reasons[event.reason] = self.reasons.get(event.reason, 0) + 1
        if self._first is None:
            self._first = event.arrival
        self._last = event.arrival

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable counts, keys sorted."""
        return {
            "total": self.total,
            "kinds": dict(sorted(self.kinds.items())),
            "types": dict(sorted(self.types.items())),
            "conversations": self.types.get(_OPENED, 0),
            "reasons": dict(sorted(self.reasons.items())),
            "delayed": self.delayed,
            "delayed_over_10min": self.delayed_over_10min,
            "first_arrival": self._first.isoformat() if self._first else None,
            "last_arrival": self._last.isoformat() if self._last else None,
        }


def summarize(events: Iterable[SimEvent]) -> dict[str, Any]:
    """Counts by kind, by valid event type and by dead-letter reason, plus lateness."""
    summary = Summary()
    for event in events:
        summary.add(event)
    return summary.to_dict()
