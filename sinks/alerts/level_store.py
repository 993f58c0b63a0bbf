"""What the rise rules read from ClickHouse: level changes per group and minute.

The levels are rebuilt from ``customer_risk_changes FINAL``: each risk transition of a
customer adds its new status to its groups (overall, its segment, every team that raised a
reason) and removes its previous one. A minute ``C`` is read only once every customer-log
partition's history is final past it (``customer_progress.frozen``), so what is read at
``C`` never changes afterwards: a restart or a replay sees the same levels.
"""

from __future__ import annotations

from sinks.alerts.store import AlertStore, closed_minute
from sinks.clickhouse.store import Store
from streams.alerts.levels import LevelChange

__all__ = ["LevelStore"]

_GROUPS = """arrayConcat(
    if(at_risk = 1, arrayConcat(
        [('overall', '', '', v, toInt64(1)), ('segment', '', segment, v, toInt64(1))],
        arrayMap(x -> ('team', x, '', v, toInt64(1)), teams)), []),
    if(p_at_risk = 1, arrayConcat(
        [('overall', '', '', -p_v, toInt64(-1)), ('segment', '', p_segment, -p_v, toInt64(-1))],
        arrayMap(x -> ('team', x, '', -p_v, toInt64(-1)), p_teams)), []))"""


class LevelStore:
    """Level reads, and the level checkpoint (its own row of ``alert_checkpoints``)."""

    def __init__(self, store: Store, *, name: str = "default") -> None:
        self.store = store
        self.db = store.database
        self.checkpoints = AlertStore(store, name=f"{name}:levels")

    def closed_minute(self, partitions: int) -> int | None:
        """Last minute whose risk history every customer-log partition has frozen."""
        return closed_minute(self.store, "customer_progress", "frozen", partitions)

    def first_minute(self, upto: int) -> int | None:
        rows = self.store.query(
            f"SELECT count(), min(toUnixTimestamp64Micro(at)) "
            f"FROM {self.db}.customer_risk_changes FINAL WHERE at < {_t(upto + 1)}"
        )
        count, low = rows[0]
        return int(low) // 60_000_000 if int(count) else None

    def changes(self, first: int, last: int, *, fold_before: bool = False) -> list[LevelChange]:
        """Level changes of the minutes ``first..last`` per group, in millionths.

        ``fold_before``: also every earlier change, reported at ``first - 1`` (the level
        before ``first``, for a start or a restart)."""
        floor = first - 1 if fold_before else first
        only_touched = (
            ""
            if fold_before
            else f"AND customer_id IN (SELECT customer_id FROM {self.db}.customer_risk_changes "
            f"WHERE at >= {_t(first)} AND at < {_t(last + 1)})"
        )
        sql = f"""
            WITH _c AS (
                SELECT at, at_risk, teams, segment,
                    toDecimal128(ifNull(customer_value, 0), 6) AS v,
                    lagInFrame(at_risk, 1, 0) OVER _w AS p_at_risk,
                    lagInFrame(teams, 1, []) OVER _w AS p_teams,
                    lagInFrame(segment, 1, '') OVER _w AS p_segment,
                    lagInFrame(toDecimal128(ifNull(customer_value, 0), 6), 1,
                               toDecimal128(0, 6)) OVER _w AS p_v
                FROM {self.db}.customer_risk_changes FINAL
                WHERE at < {_t(last + 1)} {only_touched}
                WINDOW _w AS (PARTITION BY customer_id ORDER BY at
                              ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
            )
            SELECT tupleElement(d, 1) AS g, tupleElement(d, 2) AS team,
                tupleElement(d, 3) AS seg,
                greatest(intDiv(toUnixTimestamp64Micro(at), 60000000), {int(floor)}) AS m,
                sum(tupleElement(d, 4)) AS dsum, toInt64(dsum * 1000000) AS dv,
                sum(tupleElement(d, 5)) AS dc
            FROM _c ARRAY JOIN {_GROUPS} AS d
            WHERE intDiv(toUnixTimestamp64Micro(at), 60000000) >= {int(floor)} OR {int(fold_before)}
            GROUP BY g, team, seg, m
            HAVING dsum != 0 OR dc != 0
            ORDER BY m, g, team, seg
        """
        out: list[LevelChange] = []
        for g, team, seg, m, _, dv, dc in self.store.query(sql):
            key = (g, team, "", "", "", seg)
            out.append((key, int(m), int(dv), int(dc)))  # dv: exact millionths
        return out

    def changes_by_minute(self, first: int, last: int) -> dict[int, list[LevelChange]]:
        """:meth:`changes` of ``first..last``, by minute (as ``AlertStore.deltas``)."""
        out: dict[int, list[LevelChange]] = {}
        for change in self.changes(first, last):
            out.setdefault(change[1], []).append(change)
        return out


def _t(minute: int) -> str:
    return f"toDateTime64({int(minute) * 60}, 6, 'UTC')"
