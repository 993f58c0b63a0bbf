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
    overall_events = sum(v["events"] for k, v in expected.items() if k[0] == "overall")
    return {"rows": len(expected), "events": overall_events, "late": oracle.late, "oracle": oracle}
