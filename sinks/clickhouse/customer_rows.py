"""Rows for the customer tables (migration 0007), built from the records the sink reads.

Pure functions, no I/O: the sink calls them per message and inserts the rows in its flush,
with the column names below (``store.insert(table, columns, names)``).

* ``cxpulse.customer-log`` (the customer role's changelog) -> :func:`customer_log_rows`:
  one ``customer_health`` row per record (``version`` = the record's log offset), plus the
  ``customer_risk_changes`` rows of the transitions it wrote or withdrew. The watermark
  record gives the partition's ``customer_progress`` row (how far its risk history is
  final). Tombstones (expired customers) give no rows: the last health row of an expired
  customer already shows an empty window.
* ``cxpulse.feedback-followups`` -> :func:`followup_row`: one ``feedback_followups`` row.

Every row is full state keyed as its table's ``ORDER BY``, so re-reading a record after a
sink restart rewrites identical rows (``ReplacingMergeTree``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from streams.customers.followups import decode_followup
from streams.customers.logic import META_KEY
from streams.customers.rules import UNKNOWN_SEGMENT, status_from_json
from streams.customers.state import STATE_VERSION

__all__ = [
    "CHANGE_COLUMNS",
    "FOLLOWUP_COLUMNS",
    "HEALTH_COLUMNS",
    "PROGRESS_COLUMNS",
    "CustomerLogRows",
    "customer_log_rows",
    "followup_row",
]

HEALTH_COLUMNS = (
    "customer_id",
    "log_partition",
    "version",
    "as_of",
    "segment",
    "customer_value",
    "at_risk",
    "reasons",
    "reason_teams",
    "reason_since",
    "reason_evidence",
    "teams",
    "at_risk_since",
    "conversations_opened",
    "reopens",
    "frt_breaches",
    "urgent_frt_breaches",
    "repeat_contacts",
    "open_conversations",
    "latest_csat",
    "latest_csat_at",
    "latest_nps",
    "latest_nps_at",
    "latest_ces",
    "latest_ces_at",
    "last_event_at",
)
CHANGE_COLUMNS = (
    "customer_id",
    "at",
    "at_risk",
    "reasons",
    "teams",
    "customer_value",
    "segment",
    "version",
    "deleted",
)
PROGRESS_COLUMNS = ("log_partition", "watermark", "frozen", "version")
FOLLOWUP_COLUMNS = (
    "conversation_id",
    "event_id",
    "survey",
    "score",
    "customer_id",
    "customer_value",
    "segment",
    "team",
    "channel",
    "priority",
    "region",
    "answered_at",
    "extra",
    "source_partition",
    "source_offset",
    "source_time",
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(epoch_us: int | None) -> datetime | None:
    return None if epoch_us is None else _EPOCH + timedelta(microseconds=epoch_us)


@dataclass(slots=True)
class CustomerLogRows:
    """Rows of one customer-log record, as tuples in the column orders above."""

    health: list[tuple[Any, ...]] = field(default_factory=list)
    changes: list[tuple[Any, ...]] = field(default_factory=list)
    progress: tuple[Any, ...] | None = None


def customer_log_rows(
    key: bytes | None, value: bytes | None, *, partition: int, offset: int
) -> CustomerLogRows:
    """The rows of one customer-log record at (partition, offset)."""
    out = CustomerLogRows()
    if value is None:
        return out
    if key == META_KEY:
        meta = json.loads(value)
        if "f" in meta:  # older builds wrote no "f": wait for a record that has it
            out.progress = (partition, _utc(meta["w"]), _utc(meta["f"]), offset)
        return out
    d = json.loads(value)
    if type(d) is not dict or d.get("v") != STATE_VERSION:
        version = d.get("v") if type(d) is dict else None
        raise ValueError(
            f"customer log {partition}/{offset}: unknown version {version!r} (this build reads 1)"
        )
    customer = d["c"]
    h = d["h"]
    reasons = h["reasons"]  # [reason, team, since_us, evidence]
    teams = sorted({r[1] for r in reasons})

    def answer(kind: str) -> tuple[int | None, datetime | None]:
        got = h[kind]
        return (None, None) if got is None else (got[0], _utc(got[1]))

    csat, csat_at = answer("csat")
    nps, nps_at = answer("nps")
    ces, ces_at = answer("ces")
    out.health.append(
        (
            customer,
            partition,
            offset,
            _utc(d["w"]),
            h["segment"] or UNKNOWN_SEGMENT,
            h["value"],
            1 if reasons else 0,
            [r[0] for r in reasons],
            [r[1] for r in reasons],
            [_utc(r[2]) for r in reasons],
            [r[3] for r in reasons],
            teams,
            _utc(min(r[2] for r in reasons)) if reasons else None,
            h["opened"],
            h["reopens"],
            h["breaches"],
            h["urgent"],
            h["repeats"],
            h["open"],
            csat,
            csat_at,
            nps,
            nps_at,
            ces,
            ces_at,
            _utc(h["last"]),
        )
    )
    for at, raw in d["tw"]:
        status = status_from_json(raw)
        if status is None:
            out.changes.append((customer, _utc(at), 0, [], [], None, "", offset, 0))
        else:
            pairs, value_, segment = status
            out.changes.append(
                (
                    customer,
                    _utc(at),
                    1,
                    [r for r, _ in pairs],
                    sorted({t for _, t in pairs}),
                    value_,
                    segment,
                    offset,
                    0,
                )
            )
    for at in d["g"]:
        out.changes.append((customer, _utc(at), 0, [], [], None, "", offset, 1))
    return out


def followup_row(value: bytes) -> tuple[Any, ...]:
    """The ``feedback_followups`` row of one follow-up record."""
    d = decode_followup(value)
    return (
        d["conversation_id"],
        d["event_id"],
        d["survey"],
        d["score"],
        d["customer_id"] or "",
        d["customer_value"],
        d["segment"],
        d["team"],
        d["channel"],
        d["priority"],
        d["region"],
        _utc(d["occurred_us"]),
        json.dumps(d["extra"], ensure_ascii=False, separators=(",", ":"), sort_keys=True),
        d["partition"],
        d["offset"],
        _EPOCH + timedelta(milliseconds=d["timestamp_ms"]),
    )
