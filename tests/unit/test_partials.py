"""MinutePartial: KPI formulas, exact merging in any grouping, rolling-window bounds."""

from __future__ import annotations

import random
from dataclasses import fields

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.partials import (
    CLICKHOUSE_TYPES,
    KPI_NAMES,
    PARTIAL_COLUMNS,
    SKETCH_FIELDS,
    MinutePartial,
    merge_all,
    rolling,
)
from streams.sketch import RELATIVE_ACCURACY, QuantileSketch

EXPECTED_COLUMNS = [
    "opened",
    "resolutions",
    "reopens",
    "one_touch_resolutions",
    "frt_count",
    "frt_sum",
    "frt_breaches",
    "frt_sketch",
    "reply_count",
    "reply_sum",
    "reply_sketch",
    "resolution_count",
    "resolution_sum",
    "resolution_sketch",
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
]
RATIO_KPIS = [
    "frt_avg",
    "reply_avg",
    "resolution_avg",
    "frt_sla_breach_rate",
    "resolution_rate",
    "one_touch_rate",
    "reopen_rate",
    "csat_pct",
    "csat_avg",
    "nps",
    "ces_avg",
    "ces_easy_pct",
]
PERCENTILE_KPIS = [
    f"{prefix}_{p}"
    for prefix in ("frt", "reply", "resolution")
    for p in ("p50", "p90", "p95", "p99")
]


def test_columns_and_schema() -> None:
    assert list(PARTIAL_COLUMNS) == EXPECTED_COLUMNS
    assert [f.name for f in fields(MinutePartial)] == EXPECTED_COLUMNS
    assert SKETCH_FIELDS == ("frt_sketch", "reply_sketch", "resolution_sketch")
    assert list(CLICKHOUSE_TYPES) == EXPECTED_COLUMNS
    assert CLICKHOUSE_TYPES["frt_sketch"] == "Map(Int16, UInt64)"
    assert CLICKHOUSE_TYPES["frt_sum"] == "Float64"
    assert CLICKHOUSE_TYPES["opened"] == "UInt64"
    assert set(PERCENTILE_KPIS + RATIO_KPIS) <= set(KPI_NAMES)


def test_defaults_and_fresh_sketches() -> None:
    a, b = MinutePartial(), MinutePartial()
    assert a.is_empty()
    assert a.frt_sketch is not b.frt_sketch
    assert a.frt_sum == 0.0
    assert isinstance(a.frt_sum, float)
    assert a.opened == 0
    assert isinstance(a.opened, int)


def test_empty_denominators_give_none_never_zero() -> None:
    kpis = MinutePartial().kpis()
    for name in RATIO_KPIS + PERCENTILE_KPIS:
        assert kpis[name] is None, name
    assert kpis["opened"] == 0
    assert kpis["events"] == 0
    # a numerator without its denominator is still None
    partial = MinutePartial(resolutions=3, one_touch_resolutions=2, reopens=1)
    kpis = partial.kpis()
    assert kpis["resolution_rate"] is None
    assert kpis["one_touch_rate"] == pytest.approx(2 / 3)
    assert kpis["reopen_rate"] == pytest.approx(1 / 3)
    assert kpis["frt_sla_breach_rate"] is None
    # zero numerator over a real denominator is a real 0
    assert MinutePartial(opened=4).kpis()["resolution_rate"] == 0.0


def test_hand_computed_example() -> None:
    p = MinutePartial(opened=4, resolutions=6, reopens=9, one_touch_resolutions=3, events=40)
    p.messages_customer, p.messages_agent_human, p.messages_agent_bot = 7, 5, 2
    for seconds, breach in ((60.0, False), (120.0, False), (3600.0, True), (-5.0, False)):
        p.add_frt(seconds, breach)
    for seconds in (10.0, 20.0, 30.0):
        p.add_reply(seconds)
    p.add_resolution_time(86_400.0)
    for score in (5, 4, 3, 1):
        p.add_csat(score)
    for score in (10, 9, 8, 7, 6, 0):
        p.add_nps(score)
    for score in (7, 5, 4):
        p.add_ces(score)

    k = p.kpis()
    assert k["frt_avg"] == pytest.approx((60 + 120 + 3600 + 0) / 4)
    assert k["frt_sla_breach_rate"] == 0.25
    assert k["reply_avg"] == 20.0
    assert k["resolution_avg"] == 86_400.0
    assert k["resolution_rate"] == 1.5  # > 1: the backlog shrinks
    assert k["reopen_rate"] == 1.5  # > 1 is possible too
    assert k["one_touch_rate"] == 0.5
    assert k["csat_pct"] == 50.0
    assert k["csat_avg"] == 13 / 4
    assert k["nps"] == pytest.approx(100 * (2 - 2) / 6)
    assert k["ces_avg"] == 16 / 3
    assert k["ces_easy_pct"] == pytest.approx(200 / 3)
    # nearest rank over FRT samples [0, 60, 120, 3600]
    assert k["frt_p50"] == pytest.approx(60.0, rel=RELATIVE_ACCURACY)
    assert k["frt_p90"] == pytest.approx(3600.0, rel=RELATIVE_ACCURACY)
    assert k["frt_p99"] == pytest.approx(3600.0, rel=RELATIVE_ACCURACY)
    assert k["reply_p50"] == pytest.approx(20.0, rel=RELATIVE_ACCURACY)
    assert k["reply_p95"] == pytest.approx(30.0, rel=RELATIVE_ACCURACY)
    assert k["resolution_p50"] == pytest.approx(86_400.0, rel=RELATIVE_ACCURACY)
    counts = {
        "opened": 4,
        "resolutions": 6,
        "reopens": 9,
        "one_touch_resolutions": 3,
        "frt_count": 4,
        "frt_breaches": 1,
        "reply_count": 3,
        "resolution_count": 1,
        "csat_responses": 4,
        "csat_satisfied": 2,
        "nps_responses": 6,
        "nps_promoters": 2,
        "nps_detractors": 2,
        "ces_responses": 3,
        "ces_easy": 2,
        "messages_customer": 7,
        "messages_agent_human": 5,
        "messages_agent_bot": 2,
        "events": 40,
    }
    for name, value in counts.items():
        assert k[name] == value, name


@pytest.mark.parametrize(
    ("scores", "nps"),
    [([9, 10, 9], 100.0), ([0, 6, 3], -100.0), ([7, 8], 0.0), ([10, 0, 7, 8], 0.0), ([9], 100.0)],
)
def test_nps_bounds(scores: list[int], nps: float) -> None:
    p = MinutePartial()
    for score in scores:
        p.add_nps(score)
    assert p.kpis()["nps"] == nps


def test_survey_classification_boundaries() -> None:
    p = MinutePartial()
    for score in range(1, 6):
        p.add_csat(score)
    assert (p.csat_responses, p.csat_satisfied, p.csat_sum) == (5, 2, 15)
    for score in range(11):
        p.add_nps(score)
    assert (p.nps_responses, p.nps_promoters, p.nps_detractors) == (11, 2, 7)
    for score in range(1, 8):
        p.add_ces(score)
    assert (p.ces_responses, p.ces_easy, p.ces_sum) == (7, 3, 28)
    assert p.kpis()["ces_easy_pct"] == pytest.approx(300 / 7)


@pytest.mark.parametrize(
    ("method", "score", "error"),
    [
        ("add_csat", 0, ValueError),
        ("add_csat", 6, ValueError),
        ("add_nps", -1, ValueError),
        ("add_nps", 11, ValueError),
        ("add_ces", 0, ValueError),
        ("add_ces", 8, ValueError),
        ("add_csat", 4.0, TypeError),
        ("add_nps", True, TypeError),
    ],
)
def test_invalid_scores(method: str, score: object, error: type[Exception]) -> None:
    p = MinutePartial()
    with pytest.raises(error):
        getattr(p, method)(score)
    assert p.is_empty()


def test_durations_clamped_and_rounded() -> None:
    p = MinutePartial()
    p.add_reply(-30.0)
    p.add_reply(1.2345674)
    assert p.reply_sum == 1.234567
    assert p.reply_sketch.quantile(0.0) == 0.0
    with pytest.raises(ValueError, match="NaN"):
        p.add_frt(float("nan"), breach=False)


# -- merging -------------------------------------------------------------------------

micros = st.integers(min_value=-(10**6), max_value=30 * 86_400 * 10**6)


@st.composite
def partials(draw: st.DrawFn) -> MinutePartial:
    """A partial built the way the pipeline builds one: counts plus recorded samples."""
    p = MinutePartial()
    for name in (
        "opened",
        "resolutions",
        "reopens",
        "one_touch_resolutions",
        "messages_customer",
        "messages_agent_human",
        "messages_agent_bot",
        "events",
    ):
        setattr(p, name, draw(st.integers(min_value=0, max_value=10**6)))
    for us in draw(st.lists(micros, max_size=6)):
        p.add_frt(us / 1e6, breach=draw(st.booleans()))
    for us in draw(st.lists(micros, max_size=6)):
        p.add_reply(us / 1e6)
    for us in draw(st.lists(micros, max_size=6)):
        p.add_resolution_time(us / 1e6)
    for score in draw(st.lists(st.integers(1, 5), max_size=5)):
        p.add_csat(score)
    for score in draw(st.lists(st.integers(0, 10), max_size=5)):
        p.add_nps(score)
    for score in draw(st.lists(st.integers(1, 7), max_size=5)):
        p.add_ces(score)
    return p


def merge_tree(items: list[MinutePartial], rnd: random.Random) -> MinutePartial:
    """Merge in a random binary grouping, like workers and windows combining partials."""
    if len(items) == 1:
        return items[0].copy()
    cut = rnd.randint(1, len(items) - 1)
    left = merge_tree(items[:cut], rnd)
    left.merge(merge_tree(items[cut:], rnd))
    return left


@settings(max_examples=200)
@given(st.lists(partials(), min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_merge_exact_in_any_grouping_and_order(
    items: list[MinutePartial], rnd: random.Random
) -> None:
    snapshot = [p.copy() for p in items]
    reference = merge_all(items)
    shuffled = items[:]
    rnd.shuffle(shuffled)
    assert merge_all(shuffled) == reference  # bit-exact, floats included
    assert merge_tree(shuffled, rnd) == reference
    assert merge_all(reversed(items)).kpis() == reference.kpis()
    assert items == snapshot  # inputs untouched
    assert reference.frt_count == sum(p.frt_count for p in items)
    assert reference.frt_sketch.count == reference.frt_count


@settings(max_examples=200)
@given(st.lists(micros, max_size=40), st.randoms(use_true_random=False))
def test_time_sums_do_not_depend_on_order(samples: list[int], rnd: random.Random) -> None:
    one_pass = MinutePartial()
    for us in samples:
        one_pass.add_resolution_time(us / 1e6)
    pieces = []
    shuffled = samples[:]
    rnd.shuffle(shuffled)
    while shuffled:
        take = rnd.randint(1, len(shuffled))
        piece = MinutePartial()
        for us in shuffled[:take]:
            piece.add_resolution_time(us / 1e6)
        pieces.append(piece)
        shuffled = shuffled[take:]
    merged = merge_all(pieces)
    assert merged == one_pass
    assert merged.resolution_sum == round(sum(max(us, 0) for us in samples) / 1e6, 6)


def test_merge_is_in_place_and_leaves_other_unchanged() -> None:
    a = MinutePartial(opened=1)
    a.add_frt(10.0, breach=False)
    b = MinutePartial(opened=2, csat_responses=1, csat_sum=5, csat_satisfied=1)
    b.add_frt(20.0, breach=True)
    b_before = b.copy()
    assert a.merge(b) is None
    assert b == b_before
    assert (a.opened, a.frt_count, a.frt_breaches, a.frt_sum) == (3, 2, 1, 30.0)
    assert a.frt_sketch.count == 2
    assert a.csat_sum == 5


def test_copy_is_deep() -> None:
    a = MinutePartial()
    a.add_reply(5.0)
    clone = a.copy()
    clone.add_reply(7.0)
    assert a.reply_sketch.count == 1
    assert clone.reply_sketch.count == 2


def test_is_empty() -> None:
    assert MinutePartial().is_empty()
    assert not MinutePartial(events=1).is_empty()
    assert not MinutePartial(frt_sum=0.5).is_empty()
    sketch_only = MinutePartial()
    sketch_only.frt_sketch.add(1.0)
    assert not sketch_only.is_empty()
    assert merge_all([]).is_empty()


@given(partials())
def test_row_round_trip(p: MinutePartial) -> None:
    row = p.to_row()
    assert list(row) == list(PARTIAL_COLUMNS)
    for name in SKETCH_FIELDS:
        assert isinstance(row[name], dict)
    restored = MinutePartial.from_row({**row, "minute": 29_000_000, "team": "billing"})
    assert restored == p
    assert restored.kpis() == p.kpis()


def test_from_row_requires_every_column() -> None:
    row = MinutePartial().to_row()
    del row["ces_easy"]
    with pytest.raises(KeyError, match="ces_easy"):
        MinutePartial.from_row(row)


def test_from_row_coerces_clickhouse_values() -> None:
    row = MinutePartial().to_row()
    row.update(opened=3, frt_sum=2, frt_count=1, frt_sketch={35: 1})
    p = MinutePartial.from_row(row)
    assert p.frt_sum == 2.0
    assert isinstance(p.frt_sum, float)
    assert p.frt_sketch == QuantileSketch.from_map({35: 1})


# -- rolling windows ------------------------------------------------------------------


def marked(minute: int) -> MinutePartial:
    """A partial that says which minute it came from."""
    return MinutePartial(opened=1, events=minute)


def test_rolling_window_bounds() -> None:
    minutes = {m: marked(m) for m in range(100, 200)}
    window = rolling(minutes, end_minute=150, size=5)
    assert window.opened == 5
    assert window.events == sum(range(146, 151))  # 146..150 inclusive
    assert rolling(minutes, 150, 1).events == 150
    assert rolling(minutes, 99, 60).is_empty()  # ends before any data
    assert rolling(minutes, 258, 60).events == 199  # 199..258: only minute 199 exists
    assert rolling(minutes, 259, 60).is_empty()  # 200..259
    assert rolling(minutes, 199, 1440).opened == 100
    with pytest.raises(ValueError, match="size"):
        rolling(minutes, 150, 0)


def test_rolling_does_not_mutate_minutes() -> None:
    minutes = {m: marked(m) for m in range(10)}
    rolling(minutes, 9, 10).merge(marked(1))
    assert all(p == marked(m) for m, p in minutes.items())


@given(
    st.sets(st.integers(min_value=28_000_000, max_value=28_000_300), max_size=120),
    st.integers(min_value=27_999_990, max_value=28_000_320),
    st.sampled_from([1, 5, 15, 60, 1440]),
)
def test_rolling_matches_brute_force(present: set[int], end: int, size: int) -> None:
    minutes = {m: marked(m) for m in present}
    inside = [m for m in present if end - size + 1 <= m <= end]
    window = rolling(minutes, end, size)
    assert window.opened == len(inside)
    assert window.events == sum(inside)
