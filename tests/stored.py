"""Compare what the pipeline stored in ClickHouse with the oracle's clean pass."""

from __future__ import annotations

from typing import Any

from tests.oracle import recompute
from tests.pipeline_harness import PipelineHarness

# Grouping -> its dimension columns, in the order of the oracle's key tuples.
GROUPING_DIMS = {
    "overall": (),
    "team": ("team",),
    "channel": ("channel",),
    "region": ("region",),
    "priority": ("priority",),
    "segment": ("segment",),
    "team_channel": ("team", "channel"),
}
EXACT_FIELDS = (
    "opened",
    "resolutions",
    "reopens",
    "one_touch_resolutions",
    "frt_count",
    "frt_breaches",
    "frt_sum_us",
    "reply_count",
    "reply_sum_us",
    "resolution_count",
    "resolution_sum_us",
    "csat_responses",
    "csat_sum",
    "csat_satisfied",
    "nps_responses",
    "nps_promoters",
    "nps_detractors",
    "ces_responses",
    "ces_sum",
    "ces_easy",
    "messages_customer",
    "messages_agent_human",
    "messages_agent_bot",
    "events",
)
_DIM_COLUMNS = ("team", "channel", "region", "priority", "segment")


def stored_minutes(h: PipelineHarness) -> dict[tuple[str, tuple[str, ...], int], dict[str, int]]:
    cols = ", ".join(EXACT_FIELDS)
    rows = h.query(
        f"SELECT grouping, team, channel, region, priority, segment, "
        f"intDiv(toUnixTimestamp(minute), 60), {cols} FROM {{db}}.kpi_minute"
    )[0]
    out: dict[tuple[str, tuple[str, ...], int], dict[str, int]] = {}
    for row in rows:
        grouping = row[0]
        dims = dict(zip(_DIM_COLUMNS, row[1:6], strict=True))
        key = tuple(dims[d] for d in GROUPING_DIMS[grouping])
        out[(grouping, key, int(row[6]))] = {
            f: int(v) for f, v in zip(EXACT_FIELDS, row[7:], strict=True)
        }
    return out


def compare_with_oracle(h: PipelineHarness) -> dict[str, Any]:
    """Assert stored == one clean pass over the events topic; return a small summary."""
    oracle = recompute(h.read_events())
    stored = stored_minutes(h)
    expected = {
        key: {f: int(values[f]) for f in EXACT_FIELDS}
        for key, values in oracle.minutes.items()
        if any(values[f] for f in EXACT_FIELDS)
    }
    missing = sorted(set(expected) - set(stored))[:5]
    extra = sorted(set(stored) - set(expected))[:5]
    assert not missing and not extra, f"rows missing: {missing}; unexpected rows: {extra}"
    wrong = [
        (
            key,
            {
                f: (stored[key][f], expected[key][f])
                for f in EXACT_FIELDS
                if stored[key][f] != expected[key][f]
            },
        )
        for key in expected
        if stored[key] != expected[key]
    ]
    assert not wrong, f"{len(wrong)} rows differ (stored, expected), e.g. {wrong[:3]}"
    dead, late = h.query(
        "SELECT reason, count() FROM {db}.dead_letters FINAL GROUP BY reason",
        "SELECT count() FROM {db}.late_events FINAL",
    )
    assert {r: int(n) for r, n in dead} == dict(oracle.dead_letters)
    assert int(late[0][0]) == oracle.late
    # The per-minute verdict counts survive every restart exactly, like the KPIs.
    (verdicts,) = h.query(
        "SELECT sum(accepted), sum(duplicate), sum(late), sum(invalid), sum(replayed) "
        "FROM {db}.event_verdicts FINAL"
    )
    got = tuple(int(v or 0) for v in verdicts[0])
    want = (oracle.accepted, oracle.duplicates, oracle.late, sum(oracle.dead_letters.values()), 0)
    assert got == want, (
        f"event_verdicts (accepted, duplicate, late, invalid, replayed) {got} != {want}"
    )
    overall_events = sum(v["events"] for k, v in expected.items() if k[0] == "overall")
    return {"rows": len(expected), "events": overall_events, "late": oracle.late, "oracle": oracle}


def read_log(h: PipelineHarness) -> list[tuple[int, int, bytes, bytes | None]]:
    """Every committed conversation-log record: (partition, offset, key, value)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=h.bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    tps = [TopicPartition(h.topics["conversation_log"], p) for p in range(h.partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    end = consumer.end_offsets(tps)
    out: list[tuple[int, int, bytes, bytes | None]] = []
    while any(consumer.position(tp) < end[tp] for tp in tps):
        for tp, records in consumer.poll(timeout_ms=500).items():
            out.extend((tp.partition, r.offset, r.key, r.value) for r in records)
    consumer.close()
    return out


def _normalize(state: dict[str, Any]) -> dict[str, Any]:
    """A conversation-log state in the oracle's snapshot terms (tests.oracle.snapshot)."""
    given = {
        d: state[d]
        for d in ("team", "channel", "region", "priority", "segment", "customer_id")
        if state.get(d) is not None
    }
    return {
        "ids": sorted(state["ids"]),
        "last_event_us": state["t"],
        "first_opened_us": state["o"],
        "wait_since_us": state["w"],
        # Without an opened the flag has no effect on any KPI (no FRT before the first
        # opened): the two implementations may keep it differently there.
        "awaits_first_reply": state["f"] if state["o"] is not None else None,
        "human_agent_messages": state["h"],
        "ever_reopened": state["r"],
        "given": dict(sorted(given.items())),
    }


def compare_log_with_oracle(h: PipelineHarness, oracle: Any) -> int:
    """Every log record is the oracle's state after the event it names, and none is missing.

    Returns the number of conversation records checked.
    """
    import json

    last_accepted: dict[str, int] = {}
    for (_, o), (conv, _) in oracle.states.items():
        last_accepted[conv] = max(last_accepted.get(conv, -1), o)
    seen_last: dict[str, int] = {}
    checked = 0
    for _, _, key, value in read_log(h):
        if value is None:
            continue
        record = json.loads(value)
        if "s" not in record:
            continue  # the partition's own record
        conv = key.decode()
        expected = oracle.states.get((record["p"], record["o"]))
        assert expected is not None, (
            f"log record of {conv} at source offset {record['o']}: no such accepted event"
        )
        assert expected[0] == conv, f"source offset {record['o']}: {conv} != {expected[0]}"
        want = dict(expected[1])
        if want["first_opened_us"] is None:
            want["awaits_first_reply"] = None
        got = _normalize(record["s"])
        assert got == want, f"{conv} after offset {record['o']}: log {got} != oracle {want}"
        seen_last[conv] = max(seen_last.get(conv, -1), record["o"])
        checked += 1
    missing = {c: o for c, o in last_accepted.items() if seen_last.get(c) != o}
    assert not missing, (
        f"{len(missing)} conversations lack their last event in the log: "
        f"{list(missing.items())[:5]}"
    )
    return checked
