"""A simulated month through the customer path, against an independent recomputation.

Events (with duplicates, malformed messages and late ones) -> parse_event -> PartitionGate
-> apply_event -> customer_fact / followup_record -> customer facts grouped per customer on
3 partitions -> CustomerLogic, in batches that interleave the 4 source partitions in a
seeded order, with redelivered fact records and logic restarts -> the sink's row builders.
The final tables equal ``tests/customer_oracle.py`` exactly; so do the ClickHouse views
(chDB) over every row version written, and the simulator's own truth about the churn-prone
customers it made at risk. A second run, in another order with a partition days ahead of
the others, writes the same tables.
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.simulator import CustomerLedger, SimulationParams, simulate
from sinks.clickhouse.customer_rows import CHANGE_COLUMNS, FOLLOWUP_COLUMNS, HEALTH_COLUMNS
from sinks.clickhouse.store import ClickHouseStore
from tests.customer_harness import Run, partition_for, run_customers, source_messages
from tests.customer_oracle import CustomerOracle, recompute_customers
from tests.unit.test_clickhouse_contract import new_migrated_database

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SOURCE_PARTITIONS = 4
CUSTOMER_PARTITIONS = 3
START = datetime(2026, 1, 5, tzinfo=UTC)


def us(dt: datetime | None) -> int | None:
    if dt is None:
        return None
    dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    return (dt - EPOCH) // timedelta(microseconds=1)


def month_params() -> SimulationParams:
    """A month of a small org with a churn-prone minority, duplicates, bad and late events."""
    return SimulationParams(
        seed=11,
        start=START,
        duration=timedelta(days=30),
        conversations_per_hour=25,
        duplicate_rate=0.01,
        malformed_rate=0.005,
        late_rate=0.01,
        late_max_delay=timedelta(minutes=30),
        churn_prone_share=0.02,
    )


class Month:
    def __init__(self) -> None:
        params = month_params()
        self.ledger = CustomerLedger(params)
        self.messages = source_messages(simulate(params, self.ledger.observe), SOURCE_PARTITIONS)
        self.run = run_customers(
            self.messages,
            source_partitions=SOURCE_PARTITIONS,
            customer_partitions=CUSTOMER_PARTITIONS,
            redeliver=0.03,
            restart_every=400,
            seed=3,
        )
        self.oracle = recompute_customers(
            ((m.partition, m.offset, m.timestamp_ms, m.value) for m in self.messages),
            lambda c: partition_for(c.encode(), CUSTOMER_PARTITIONS),
        )
        self.timelines = {c: self.oracle.timeline(c) for c in self.oracle.facts}


def health_of(row: tuple[Any, ...]) -> dict[str, Any]:
    r = dict(zip(HEALTH_COLUMNS, row, strict=True))

    def answer(name: str) -> tuple[int, int | None] | None:
        return None if r[name] is None else (r[name], us(r[f"{name}_at"]))

    return {
        "opened": r["conversations_opened"],
        "reopens": r["reopens"],
        "breaches": r["frt_breaches"],
        "urgent": r["urgent_frt_breaches"],
        "repeats": r["repeat_contacts"],
        "open": r["open_conversations"],
        "csat": answer("latest_csat"),
        "nps": answer("latest_nps"),
        "ces": answer("latest_ces"),
        "reasons": [
            (name, team, us(since), evidence)
            for name, team, since, evidence in zip(
                *(r[c] for c in ("reasons", "reason_teams", "reason_since", "reason_evidence")),
                strict=True,
            )
        ],
        "value": r["customer_value"],
        "segment": r["segment"],
        "last": us(r["last_event_at"]),
    }


def pipeline_timelines(run: Run) -> dict[str, list[tuple[int, Any]]]:
    out: dict[str, list[tuple[int, Any]]] = defaultdict(list)
    ordered = sorted(run.changes().items(), key=lambda kv: (kv[0][0], us(kv[0][1])))
    for (customer, at), row in ordered:
        r = dict(zip(CHANGE_COLUMNS, row, strict=True))
        status = (
            None
            if not r["at_risk"]
            else (tuple(r["reasons"]), tuple(r["teams"]), r["customer_value"], r["segment"])
        )
        out[customer].append((us(at), status))
    return out


def oracle_rows(timeline: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    return [
        (
            at,
            None
            if s is None
            else (tuple(r for r, _ in s[0]), tuple(sorted({t for _, t in s[0]})), s[1], s[2]),
        )
        for at, s in timeline
    ]


# ---------------------------------------------------------------------------------------------
# The customer log, as the sink's row builders turn it into rows
# ---------------------------------------------------------------------------------------------


def test_the_month_has_customers_at_risk_for_every_reason(month: Month) -> None:
    health = month.run.health()
    reasons = defaultdict(int)
    for row in health.values():
        for name in row[HEALTH_COLUMNS.index("reasons")]:
            reasons[name] += 1
    assert set(reasons) == {
        "csat_low",
        "nps_detractor",
        "reopens",
        "repeat_contacts",
        "urgent_frt_breach",
    }
    assert min(reasons.values()) >= 5, reasons
    assert len(health) > 3000 and month.run.facts < len(month.messages) / 2


def test_health_equals_the_oracle(month: Month) -> None:
    health = month.run.health()
    assert set(health) == set(month.oracle.facts)
    watermarks = month.run.watermarks
    assert watermarks == month.oracle.watermarks
    mismatched = []
    for customer, row in health.items():
        want = month.oracle.health(customer)
        assert us(row[HEALTH_COLUMNS.index("as_of")]) <= want.pop("as_of")
        if health_of(row) != want:
            mismatched.append((customer, health_of(row), want))
    assert not mismatched, mismatched[:3]


def test_risk_history_equals_the_oracle(month: Month) -> None:
    got = pipeline_timelines(month.run)
    changes = 0
    for customer, timeline in month.timelines.items():
        want = oracle_rows(timeline)
        assert got.get(customer, []) == want, customer
        changes += len(want)
    assert set(got) <= set(month.timelines)
    assert changes > 500
    # Withdrawn rows exist (the order of facts did change the history on the way) and are
    # hidden: what remains is exactly the oracle's.
    assert any(row[-1] == 1 for row in month.run.change_rows)


def test_followups_equal_the_oracle(month: Month) -> None:
    rows = month.run.followups()
    assert set(rows) == set(month.oracle.followups)
    comments = 0
    for key, row in rows.items():
        r = dict(zip(FOLLOWUP_COLUMNS, row, strict=True))
        want = month.oracle.followups[key]
        assert r["survey"] == want["survey"] and r["score"] == want["score"]
        assert r["customer_id"] == want["customer_id"]
        assert r["customer_value"] == want["customer_value"]
        for name in ("segment", "team", "channel", "priority", "region"):
            assert r[name] == want[name], name
        assert us(r["answered_at"]) == want["answered_us"]
        assert (r["source_partition"], r["source_offset"]) == want["position"]
        assert json.loads(r["extra"]) == want["extra"]
        comments += "comment" in want["extra"]
    assert comments > 20  # low answers carry the simulator's comments through


def test_the_simulators_churn_prone_customers_are_found(month: Month) -> None:
    """Every reason the simulator caused holds in the pipeline (it may find more: FRT
    breaches, and reasons of customers who are not churn-prone)."""
    health = month.run.health()
    found = 0
    for cp, wm in month.run.watermarks.items():
        truth = month.ledger.truth(wm)
        for item in truth["customers"]:
            customer = item["customer_id"]
            if partition_for(customer.encode(), CUSTOMER_PARTITIONS) != cp:
                continue
            row = dict(zip(HEALTH_COLUMNS, health[customer], strict=True))
            assert set(item["reasons"]) <= set(row["reasons"]), (customer, item, row["reasons"])
            assert row["segment"] == item["segment"]
            assert row["customer_value"] == item["customer_value"]
            found += 1
    assert found >= 20


# ---------------------------------------------------------------------------------------------
# Order independence: another interleaving, a partition far ahead, fewer restarts
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lead", "history_exact"),
    [
        (1000, True),  # partition 2 about two days ahead: within max_skew (7 days)
        (5000, False),  # about nine days ahead: the current state stays exact
    ],
)
def test_another_order_writes_the_same_tables(month: Month, lead: int, history_exact: bool) -> None:
    skewed = run_customers(
        month.messages,
        source_partitions=SOURCE_PARTITIONS,
        customer_partitions=CUSTOMER_PARTITIONS,
        compute_batch=80,
        customer_batch=7,
        lead={2: lead},
        redeliver=0.1,
        seed=99,
    )

    def strip(rows: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
        skip = {HEALTH_COLUMNS.index(c) for c in ("version", "as_of")}
        return {k: tuple(v for i, v in enumerate(r) if i not in skip) for k, r in rows.items()}

    assert strip(skewed.health()) == strip(month.run.health())
    assert skewed.followups() == month.run.followups()
    got, want = pipeline_timelines(skewed), pipeline_timelines(month.run)
    if history_exact:
        assert got == want
    else:
        # Facts from the lagging partitions come after their time was published final:
        # they change the history only after that boundary (clamped), so some transitions
        # move or vanish, but each customer ends in the same status (no history: not at
        # risk).
        assert got != want
        end_got = {c: tl[-1][1] for c, tl in got.items() if tl[-1][1] is not None}
        end_want = {c: tl[-1][1] for c, tl in want.items() if tl[-1][1] is not None}
        assert end_got == end_want


@pytest.mark.parametrize("lead", [0, 1000, 5000])
def test_what_a_partition_published_as_final_is_never_rewritten(month: Month, lead: int) -> None:
    """The revenue alerts' clock: no risk change (written or withdrawn) at or before the
    boundary its partition published earlier, even with a partition nine days behind."""
    run = run_customers(
        month.messages,
        source_partitions=SOURCE_PARTITIONS,
        customer_partitions=CUSTOMER_PARTITIONS,
        compute_batch=80,
        customer_batch=7,
        lead={2: lead} if lead else None,
        restart_every=50,
        seed=5,
    )
    published: dict[int, list[tuple[int, int]]] = defaultdict(list)  # (offset, frozen)
    for partition, _, frozen, offset in run.progress_rows:
        published[partition].append((offset, us(frozen)))
    checked = 0
    for row in run.change_rows:
        customer, at, offset = row[0], us(row[1]), row[7]
        p = partition_for(customer.encode(), CUSTOMER_PARTITIONS)
        before = [f for o, f in published[p] if o < offset]
        if before:
            assert at > max(before), (customer, at, max(before))
            checked += 1
    assert checked > 500


# ---------------------------------------------------------------------------------------------
# The ClickHouse views on those rows (chDB)
# ---------------------------------------------------------------------------------------------


def insert_run(st: ClickHouseStore, run: Run, rng: random.Random) -> None:
    """The rows a run wrote, as the sink writes them: several inserts (parts), in the order
    written, so FINAL has versions to merge."""
    for table, rows, names in (
        ("customer_health", run.health_rows, HEALTH_COLUMNS),
        ("customer_risk_changes", run.change_rows, CHANGE_COLUMNS),
        ("feedback_followups", run.followup_rows, FOLLOWUP_COLUMNS),
    ):
        chunk = max(1, len(rows) // rng.randint(3, 6))
        for i in range(0, len(rows), chunk):
            part = rows[i : i + chunk]
            st.insert(table, [list(c) for c in zip(*part, strict=True)], names)


@pytest.fixture(scope="module")
def store(chdb_client: Any, month: Month) -> Iterator[ClickHouseStore]:
    st = new_migrated_database(chdb_client)
    insert_run(st, month.run, random.Random(5))
    try:
        yield st
    finally:
        chdb_client.command(f"DROP DATABASE IF EXISTS {st.database}")


def query(st: ClickHouseStore, sql: str) -> list[dict[str, Any]]:
    result = st._client.query(sql.replace("cxpulse.", f"{st.database}."))
    return [dict(zip(result.column_names, r, strict=True)) for r in result.result_rows]


def test_at_risk_customers_view(store: ClickHouseStore, month: Month) -> None:
    rows = query(store, "SELECT * FROM cxpulse.at_risk_customers")
    got = {
        (r["customer_id"], r["reason"]): (r["team"], us(r["since"]), r["evidence"]) for r in rows
    }
    want = {}
    for customer in month.oracle.facts:
        h = month.oracle.health(customer)
        for name, team, since, evidence in h["reasons"]:
            want[(customer, name)] = (team, since, evidence)
    assert got == want
    for r in rows:
        h = month.oracle.health(r["customer_id"])
        assert r["customer_value"] == h["value"] and r["segment"] == h["segment"]
        assert us(r["at_risk_since"]) == min(s for _, _, s, _ in h["reasons"])


def oracle_revenue_now(oracle: CustomerOracle) -> dict[tuple[str, str], list[Any]]:
    out: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [0, 0.0, 0])
    for customer in oracle.facts:
        h = oracle.health(customer)
        if not h["reasons"]:
            continue
        keys = [("overall", ""), ("segment", h["segment"])]
        keys += [("team", t) for t in sorted({team for _, team, _, _ in h["reasons"]})]
        keys += [("reason", name) for name, _, _, _ in h["reasons"]]
        for key in keys:
            out[key][0] += 1
            out[key][1] += h["value"] or 0.0
            out[key][2] += h["value"] is None
    return out


def key_of(r: dict[str, Any]) -> tuple[str, str]:
    return (r["grouping"], r["team"] or r["segment"] or r["reason"])


def test_revenue_at_risk_now(store: ClickHouseStore, month: Month) -> None:
    rows = query(store, "SELECT * FROM cxpulse.revenue_at_risk")
    want = oracle_revenue_now(month.oracle)
    got = {key_of(r): r for r in rows}
    assert set(got) == set(want)
    for key, (customers, revenue, without) in want.items():
        assert got[key]["customers"] == customers, key
        assert got[key]["customers_without_value"] == without, key
        assert math.isclose(got[key]["revenue"], revenue, rel_tol=1e-9), key
    overall = got[("overall", "")]
    teams = sum(r["revenue"] for r in rows if r["grouping"] == "team")
    segments = sum(r["revenue"] for r in rows if r["grouping"] == "segment")
    assert math.isclose(segments, overall["revenue"], rel_tol=1e-9)
    assert teams >= overall["revenue"]  # a customer counts in every team that raised a reason


@pytest.mark.parametrize("step_minutes", [360, 1440])
def test_revenue_at_risk_trend(store: ClickHouseStore, month: Month, step_minutes: int) -> None:
    end = min(month.run.watermarks.values())
    end_dt = EPOCH + timedelta(microseconds=end)
    rows = query(
        store,
        f"SELECT * FROM cxpulse.revenue_at_risk_trend(step_minutes = {step_minutes}, "
        f"from_time = toDateTime('{START:%Y-%m-%d %H:%M:%S}', 'UTC'), "
        f"to_time = toDateTime('{end_dt:%Y-%m-%d %H:%M:%S}', 'UTC'))",
    )
    by_time: dict[int, dict[tuple[str, str], dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        by_time[us(r["time"])][key_of(r)] = r
    step = step_minutes * 60_000_000
    first = -(-us(START) // step) * step
    points = list(range(first, end + 1, step))
    assert sorted(by_time) == points
    nonzero = 0
    for t in points:
        want = month.oracle.revenue_at(month.timelines, t)
        got = by_time[t]
        for key in set(got) | set(want):
            customers, revenue = want.get(key, (0, 0.0))
            row = got.get(key, {"customers": 0, "revenue": 0.0})
            assert row["customers"] == customers, (t, key)
            assert math.isclose(row["revenue"], revenue, rel_tol=1e-9, abs_tol=1e-6), (t, key)
            nonzero += customers > 0
    assert nonzero > len(points)
