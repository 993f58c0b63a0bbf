"""The load generator: determinism, the event contract, realism, incidents and faults.

The contract checks here are written from shared/kpi-definitions.md independently of the
pipeline's validator, so a disagreement between the two shows up somewhere.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.simulator import (
    INCIDENT_KPIS,
    KINDS,
    MALFORMED_FAMILIES,
    MEAN_EVENTS_PER_CONVERSATION,
    Incident,
    SimEvent,
    SimulationParams,
    Summary,
    ground_truth,
    parse_duration,
    parse_incident,
    rate_for_events_per_second,
    simulate,
    summarize,
)

START = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
WORD = re.compile(r"[a-z][a-z0-9_-]*")
COMMON = ("event_id", "type", "occurred_at", "conversation_id", "schema_version")
REQUIRED: dict[str, tuple[str, ...]] = {
    "conversation.opened": (*COMMON, "channel", "team"),
    "message.customer": COMMON,
    "message.agent": (*COMMON, "agent_id"),
    "conversation.assigned": (*COMMON, "team"),
    "conversation.resolved": COMMON,
    "conversation.reopened": COMMON,
    "survey.csat": (*COMMON, "score"),
    "survey.nps": (*COMMON, "score"),
    "survey.ces": (*COMMON, "score"),
}
SCALES = {"survey.csat": (1, 5), "survey.nps": (0, 10), "survey.ces": (1, 7)}
STRING_FIELDS = (
    "event_id", "type", "occurred_at", "conversation_id", "channel", "team", "agent_id",
    "author", "priority", "region", "customer_id", "segment",
)  # fmt: skip


def parse_time(text: str) -> datetime:
    """RFC 3339 -> aware UTC datetime (fractions truncated to microseconds)."""
    m = RFC3339.fullmatch(text)
    assert m is not None, text
    if m.group(1) and len(m.group(1)) > 7:
        text = text[: m.start(1) + 7] + text[m.end(1) :]
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def contract_reason(raw: bytes) -> str | None:
    """The dead-letter reason of a message per the contract (None = valid)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8"
    try:
        obj = json.loads(text)
    except ValueError:
        return "invalid_json"
    if not isinstance(obj, dict):
        return "not_an_object"
    for name in COMMON:
        if obj.get(name) is None:
            return f"missing_field:{name}"
    etype = obj["type"]
    if etype not in REQUIRED:
        return "unknown_type"
    for name in REQUIRED[etype]:
        if obj.get(name) is None:
            return f"missing_field:{name}"
    for name in STRING_FIELDS:
        if obj.get(name) is not None and type(obj[name]) is not str:
            return f"wrong_type:{name}"
    value = obj.get("customer_value")
    if value is not None and type(value) not in (int, float):
        return "wrong_type:customer_value"
    for name in ("score", "schema_version"):
        if obj.get(name) is not None and type(obj[name]) is not int:
            return f"wrong_type:{name}"
    for name in STRING_FIELDS:
        if obj.get(name) == "":
            return f"invalid_value:{name}"
    try:
        parse_time(obj["occurred_at"])
    except (AssertionError, ValueError):
        return "invalid_value:occurred_at"
    for name in ("channel", "segment"):
        if obj.get(name) is not None and WORD.fullmatch(obj[name]) is None:
            return f"invalid_value:{name}"
    if obj.get("author") not in (None, "human", "bot"):
        return "invalid_value:author"
    if obj.get("priority") not in (None, "low", "normal", "high", "urgent"):
        return "invalid_value:priority"
    if value is not None and not (math.isfinite(value) and value >= 0):
        return "invalid_value:customer_value"
    if "score" in obj and etype in SCALES:
        low, high = SCALES[etype]
        if not low <= obj["score"] <= high:
            return "invalid_value:score"
    if obj["schema_version"] != 1:
        return "invalid_value:schema_version"
    return None


def collect(params: SimulationParams) -> list[SimEvent]:
    return list(simulate(params))


def valid_objects(events: list[SimEvent]) -> list[tuple[SimEvent, dict[str, Any]]]:
    return [(e, json.loads(e.value)) for e in events if e.kind == "valid"]


class Samples:
    """KPI samples recomputed from the valid events by the contract's wait rules."""

    def __init__(self, events: list[SimEvent]) -> None:
        self.frt: list[tuple[datetime, str, str, float]] = []  # (time, team, channel, s)
        self.reply: list[tuple[datetime, str, str, float]] = []
        self.csat: list[tuple[datetime, str, str, int]] = []
        self.resolution: list[tuple[datetime, str, str, float]] = []
        state: dict[str, dict[str, Any]] = defaultdict(dict)
        seen: set[tuple[str, str]] = set()
        for e, obj in sorted(valid_objects(events), key=lambda x: x[0].occurred_at):
            if (e.key, obj["event_id"]) in seen:
                continue
            seen.add((e.key, obj["event_id"]))
            st = state[e.key]
            for dim in ("team", "channel"):
                if obj.get(dim) is not None:
                    st[dim] = obj[dim]
            t = e.occurred_at
            kind = obj["type"]
            team, channel = st.get("team", "?"), st.get("channel", "?")
            if kind in ("conversation.opened", "conversation.reopened"):
                st["first"] = True
                st.setdefault("opened", t)
            if kind in ("conversation.opened", "conversation.reopened", "message.customer"):
                st.setdefault("wait", t)
            elif kind == "message.agent" and obj.get("author", "human") == "human":
                if "wait" in st:
                    sample = (t, team, channel, (t - st.pop("wait")).total_seconds())
                    (self.frt if st.pop("first", False) else self.reply).append(sample)
            elif kind == "conversation.resolved":
                st.pop("wait", None)
                if "opened" in st:
                    secs = (t - st["opened"]).total_seconds()
                    self.resolution.append((t, team, channel, secs))
            elif kind == "survey.csat":
                self.csat.append((t, team, channel, obj["score"]))


# --------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def faulty_day() -> list[SimEvent]:
    """One day with every fault switched on."""
    return collect(
        SimulationParams(
            seed=7,
            start=START,
            duration=timedelta(days=1),
            conversations_per_hour=500,
            malformed_rate=0.04,
            duplicate_rate=0.03,
            late_rate=0.03,
        )
    )


@pytest.fixture(scope="module")
def week() -> list[SimEvent]:
    return collect(
        SimulationParams(
            seed=11, start=START, duration=timedelta(days=7), conversations_per_hour=250
        )
    )


# ------------------------------------------------------------------ determinism


def _small(**kw: Any) -> SimulationParams:
    base: dict[str, Any] = dict(
        start=START + timedelta(hours=8),
        duration=timedelta(hours=4),
        conversations_per_hour=400,
        malformed_rate=0.03,
        duplicate_rate=0.03,
        late_rate=0.03,
    )
    base.update(kw)
    return SimulationParams(**base)


def test_same_seed_gives_identical_bytes() -> None:
    a = collect(_small(seed=5))
    b = collect(_small(seed=5))
    assert len(a) > 1000
    assert a == b
    assert b"".join(e.value for e in a) == b"".join(e.value for e in b)


def test_different_seed_gives_a_different_stream() -> None:
    a = [e.value for e in collect(_small(seed=5)) if e.kind == "valid"]
    b = [e.value for e in collect(_small(seed=6)) if e.kind == "valid"]
    assert a != b
    assert not set(a) & set(b)


def test_faults_do_not_change_the_valid_events() -> None:
    clean_params = _small(seed=5, malformed_rate=0, duplicate_rate=0, late_rate=0, drain=True)
    clean = [e.value for e in collect(clean_params)]
    faulty = [e.value for e in collect(_small(seed=5, drain=True)) if e.kind == "valid"]
    assert clean != faulty  # late delivery reorders...
    assert sorted(clean) == sorted(faulty)  # ...but every valid event keeps its bytes


# --------------------------------------------------------------------- contract


def test_valid_events_follow_the_contract(faulty_day: list[SimEvent]) -> None:
    ids: dict[str, set[str]] = defaultdict(set)
    last_time: dict[str, datetime] = {}
    for e, obj in valid_objects(faulty_day):
        assert contract_reason(e.value) is None, e.value
        assert e.kind in KINDS
        for name in REQUIRED[obj["type"]]:
            assert obj.get(name) is not None, (name, obj)
        assert type(obj["schema_version"]) is int and obj["schema_version"] == 1
        assert e.key == obj["conversation_id"]
        assert e.event_type == obj["type"]
        assert RFC3339.fullmatch(obj["occurred_at"])
        assert parse_time(obj["occurred_at"]) == e.occurred_at
        assert e.occurred_at.tzinfo is not None and e.arrival >= e.occurred_at
        if obj["type"] in SCALES:
            assert type(obj["score"]) is int
        if obj["type"] == "message.agent":
            assert obj.get("author", "human") in ("human", "bot")
        assert obj["event_id"] not in ids[e.key], "event_id repeats within its conversation"
        ids[e.key].add(obj["event_id"])
        assert e.occurred_at >= last_time.get(e.key, e.occurred_at), "conversation out of order"
        last_time[e.key] = e.occurred_at
    assert len(ids) > 1000


def test_emission_order_and_every_event_type(faulty_day: list[SimEvent]) -> None:
    arrivals = [e.arrival for e in faulty_day]
    assert arrivals == sorted(arrivals)
    types = Counter(e.event_type for e in faulty_day if e.kind == "valid")
    assert set(types) == set(REQUIRED)
    opened = types["conversation.opened"]
    assert 2 < (types["message.customer"] + types["message.agent"]) / opened < 10


def test_timestamps_use_several_offsets_and_precisions(faulty_day: list[SimEvent]) -> None:
    stamps = [json.loads(e.value)["occurred_at"] for e in faulty_day[:5000] if e.kind == "valid"]
    suffixes = {s[19:] and re.sub(r"\d", "9", s[19:]) for s in stamps}
    assert {"Z", ".999Z", ".999999Z", "+99:99", "-99:99"} <= suffixes


def test_conversations_have_customers_bots_reassignments_and_repeat_contacts(
    week: list[SimEvent],
) -> None:
    objs = [obj for _, obj in valid_objects(week)]
    opened = [o for o in objs if o["type"] == "conversation.opened"]
    assert {o["segment"] for o in opened} == {"enterprise", "smb", "consumer"}
    assert {o["region"] for o in opened} == {"emea", "amer", "apac"}
    assert all(isinstance(o["customer_value"], float) and o["customer_value"] >= 0 for o in opened)
    values: dict[str, set[float]] = defaultdict(set)
    for o in opened:
        values[o["customer_id"]].add(o["customer_value"])
    assert all(len(v) == 1 for v in values.values()), "a customer's value is stable"
    ent = statistics.median(o["customer_value"] for o in opened if o["segment"] == "enterprise")
    con = statistics.median(o["customer_value"] for o in opened if o["segment"] == "consumer")
    assert ent > 100 * con
    agents = [o for o in objs if o["type"] == "message.agent"]
    bots = sum(o.get("author") == "bot" for o in agents)
    assert 0.03 < bots / len(agents) < 0.3
    assigned = [o for o in objs if o["type"] == "conversation.assigned"]
    assert 0.05 < len(assigned) / len(opened) < 0.25
    # Repeat contacts: a customer opens again within 7 days after one of their resolves.
    conv_customer = {o["conversation_id"]: o["customer_id"] for o in opened}
    resolves: dict[str, list[datetime]] = defaultdict(list)
    repeats = 0
    for e, obj in sorted(valid_objects(week), key=lambda x: x[0].occurred_at):
        customer = conv_customer.get(e.key)
        if obj["type"] == "conversation.resolved" and customer:
            resolves[customer].append(e.occurred_at)
        elif obj["type"] == "conversation.opened" and any(
            r < e.occurred_at <= r + timedelta(days=7) for r in resolves[obj["customer_id"]]
        ):
            repeats += 1
    assert repeats > 0.03 * len(opened)


# ---------------------------------------------------------------------- realism


def test_daily_and_weekly_seasonality(week: list[SimEvent]) -> None:
    offsets = {"emea": 1, "amer": -5, "apac": 8}
    by_local: Counter[tuple[int, int]] = Counter()
    for e, obj in valid_objects(week):
        if obj["type"] == "conversation.opened":
            local = e.occurred_at + timedelta(hours=offsets[obj["region"]])
            by_local[(local.weekday(), local.hour)] += 1
    weekday_peak = sum(by_local[(d, h)] for d in range(1, 5) for h in (9, 10))
    weekday_night = sum(by_local[(d, h)] for d in range(1, 5) for h in (3, 4))
    assert weekday_peak > 10 * weekday_night
    weekday_total = sum(v for (d, _), v in by_local.items() if 1 <= d <= 4) / 4
    weekend_total = sum(v for (d, _), v in by_local.items() if d >= 5) / 2
    assert weekend_total < 0.5 * weekday_total


def test_channel_time_scales_are_ordered(week: list[SimEvent]) -> None:
    samples = Samples(week)
    frt: dict[str, list[float]] = defaultdict(list)
    for _, _, channel, secs in samples.frt:
        frt[channel].append(secs)
    med = {ch: statistics.median(v) for ch, v in frt.items()}
    assert med["phone"] < med["chat"] < med["social"] < med["email"]
    assert 10 < med["chat"] < 300
    assert 3600 < med["email"] < 12 * 3600
    assert med["phone"] < 60
    assert 5 * 60 < med["social"] < 3600
    # Heavy tail: p95 well above the median.
    chat = sorted(frt["chat"])
    assert chat[int(0.95 * len(chat))] > 4 * med["chat"]
    assert samples.reply, "multi-message conversations give reply-time samples"


def test_surveys_have_realistic_rates_and_scores(week: list[SimEvent]) -> None:
    types = Counter(e.event_type for e in week if e.kind == "valid")
    resolved = types["conversation.resolved"]
    assert 0.15 < types["survey.csat"] / resolved < 0.35
    assert types["survey.nps"] < types["survey.csat"]
    scores = [json.loads(e.value)["score"] for e in week if e.event_type == "survey.csat"]
    satisfied = sum(s >= 4 for s in scores) / len(scores)
    assert 0.75 < satisfied < 0.92


def test_low_priority_waits_longer() -> None:
    events = collect(SimulationParams(seed=3, start=START, conversations_per_hour=600))
    prio = {
        e.key: json.loads(e.value)["priority"]
        for e in events
        if e.event_type == "conversation.opened"
    }
    frt_by: dict[str, list[float]] = defaultdict(list)
    first_msg: dict[str, datetime] = {}
    for e, obj in valid_objects(events):
        if obj["type"] == "conversation.opened":
            first_msg[e.key] = e.occurred_at
        elif obj["type"] == "message.agent" and obj.get("author") != "bot" and e.key in first_msg:
            frt_by[prio[e.key]].append((e.occurred_at - first_msg.pop(e.key)).total_seconds())
    assert statistics.median(frt_by["low"]) > statistics.median(frt_by["urgent"])


# -------------------------------------------------------------------- incidents


def _window_split(
    samples: list[tuple[datetime, str, str, Any]], inc: Incident
) -> tuple[list[Any], list[Any]]:
    inside, outside = [], []
    for t, team, channel, value in samples:
        if (inc.team is None or team == inc.team) and (
            inc.channel is None or channel == inc.channel
        ):
            (inside if inc.start <= t < inc.end else outside).append(value)
    return inside, outside


def test_csat_incident_moves_csat_to_its_target() -> None:
    inc = parse_incident("kpi=csat,team=billing,start=+10h,duration=6h,target=40", START)
    params = SimulationParams(
        seed=21,
        start=START,
        duration=timedelta(hours=17),
        conversations_per_hour=900,
        csat_response_rate=0.6,
        incidents=(inc,),
    )
    inside, outside = _window_split(Samples(collect(params)).csat, inc)
    assert len(inside) > 150
    share_in = sum(s >= 4 for s in inside) / len(inside)
    share_out = sum(s >= 4 for s in outside) / len(outside)
    assert abs(share_in - 0.40) < 0.08
    assert share_out > 0.75


def test_frt_incident_triples_chat_frt_in_its_window() -> None:
    inc = parse_incident("kpi=frt,channel=chat,start=+9h,duration=3h,factor=3", START)
    params = SimulationParams(seed=22, start=START, conversations_per_hour=800, incidents=(inc,))
    inside, outside = _window_split(Samples(collect(params)).frt, inc)
    ratio = statistics.median(inside) / statistics.median(outside)
    assert 2.2 < ratio < 4.0
    truth = ground_truth(params)[0]
    assert truth["expected"] == pytest.approx(3 * truth["baseline"], rel=1e-3)
    assert 0.5 < statistics.median(outside) / truth["baseline"] < 2


def test_volume_incident_multiplies_arrivals_in_scope() -> None:
    inc = parse_incident("kpi=volume,team=shipping,start=+9h,duration=2h,factor=3", START)
    base = SimulationParams(
        seed=23, start=START, duration=timedelta(hours=12), conversations_per_hour=800
    )
    spiked = replace(base, incidents=(inc,))

    def opened_in_window(events: list[SimEvent]) -> int:
        return sum(
            1
            for e, o in valid_objects(events)
            if o["type"] == "conversation.opened"
            and o["team"] == "shipping"
            and inc.start <= e.occurred_at < inc.end
        )

    normal, spike = opened_in_window(collect(base)), opened_in_window(collect(spiked))
    assert 2.3 < spike / normal < 3.7
    truth = ground_truth(spiked)[0]
    assert 0.7 < normal / truth["baseline"] < 1.3


def test_resolution_incidents_shift_their_kpis() -> None:
    slow = parse_incident("kpi=resolution_time,channel=phone,start=+8h,duration=4h,factor=4", START)
    stall = parse_incident(
        "kpi=resolution_rate,channel=chat,start=+8h,duration=4h,factor=0.3", START
    )
    params = SimulationParams(
        seed=24,
        start=START,
        duration=timedelta(hours=14),
        conversations_per_hour=800,
        incidents=(slow, stall),
    )
    events = collect(params)
    inside, outside = _window_split(Samples(events).resolution, slow)
    assert statistics.median(inside) > 2.5 * statistics.median(outside)
    resolves: Counter[bool] = Counter()
    opens: Counter[bool] = Counter()
    channel: dict[str, str] = {}
    for e, o in valid_objects(events):
        if o["type"] == "conversation.opened":
            channel[e.key] = o["channel"]
        if channel.get(e.key) != "chat":
            continue
        in_window = stall.start <= e.occurred_at < stall.end
        if o["type"] == "conversation.opened":
            opens[in_window] += 1
        elif o["type"] == "conversation.resolved":
            resolves[in_window] += 1
    assert resolves[True] / opens[True] < 0.5 * resolves[False] / opens[False]


def test_nps_and_ces_targets() -> None:
    nps = parse_incident("kpi=nps,start=+6h,duration=12h,target=-40", START)
    ces = parse_incident("kpi=ces,start=+6h,duration=12h,target=30", START)
    params = SimulationParams(
        seed=25,
        start=START,
        duration=timedelta(hours=18),
        conversations_per_hour=500,
        nps_response_rate=0.6,
        ces_response_rate=0.6,
        incidents=(nps, ces),
    )
    scores: dict[str, list[int]] = defaultdict(list)
    for e, o in valid_objects(collect(params)):
        if o["type"] in ("survey.nps", "survey.ces") and nps.start <= e.occurred_at < nps.end:
            scores[o["type"]].append(o["score"])
    n = scores["survey.nps"]
    value = 100 * (sum(s >= 9 for s in n) - sum(s <= 6 for s in n)) / len(n)
    assert abs(value - -40) < 10
    c = scores["survey.ces"]
    assert abs(100 * sum(s >= 5 for s in c) / len(c) - 30) < 8


def test_parse_incident_accepts_cli_specs() -> None:
    inc = parse_incident("kpi=csat,team=billing,start=2026-11-24T10:00:00Z,duration=40m,target=70")
    assert inc == Incident(
        kpi="csat",
        start=datetime(2026, 11, 24, 10, tzinfo=UTC),
        duration=timedelta(minutes=40),
        team="billing",
        target=70.0,
    )
    rel = parse_incident("kpi=frt, channel=chat, start=+30m, duration=1h30m, factor=3", START)
    assert rel.start == START + timedelta(minutes=30)
    assert rel.duration == timedelta(minutes=90)
    assert rel.factor == 3.0 and rel.channel == "chat" and rel.end == rel.start + rel.duration
    assert parse_duration("250ms") == timedelta(milliseconds=250)
    assert set(INCIDENT_KPIS) >= {"frt", "reply_time", "resolution_time", "csat", "nps", "ces"}
    assert {"resolution_rate", "volume"} <= set(INCIDENT_KPIS)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("kpi=csat", "lacks start=, duration="),
        ("kpi=csat,start=+1h,duration=10m,target=70,color=red", "unknown incident key 'color'"),
        ("kpi=csat,start=+1h,duration=10m,target=70,target=60", "given twice"),
        ("kpi=happiness,start=+1h,duration=10m,factor=2", "unknown incident kpi"),
        ("kpi=frt,start=+1h,duration=10m", "needs factor="),
        ("kpi=frt,start=+1h,duration=10m,target=3", "takes factor="),
        ("kpi=frt,start=+1h,duration=10m,factor=-1", "factor=<number > 0>"),
        ("kpi=frt,start=+1h,duration=10m,factor=abc", "is not a number"),
        ("kpi=csat,start=+1h,duration=10m,factor=2", "takes target="),
        ("kpi=csat,start=+1h,duration=10m,target=170", "within 0..100"),
        ("kpi=nps,start=+1h,duration=10m,target=-170", "within -100..100"),
        ("kpi=csat,start=+1h,duration=10 minutes,target=70", "duration"),
        ("kpi=csat,start=+1h,duration=0m,target=70", "must be positive"),
        ("kpi=csat,start=tomorrow,duration=10m,target=70", "neither an RFC 3339"),
        ("kpi=csat,start=2026-11-24T10:00:00,duration=10m,target=70", "no UTC offset"),
        ("kpi=csat,start=+1h,duration=10m,target=70,channel=Chat", "lower-case"),
        ("kpi csat", "not key=value"),
    ],
)
def test_parse_incident_errors_say_what_to_fix(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_incident(spec, START)


def test_relative_start_needs_the_simulation_start() -> None:
    with pytest.raises(ValueError, match="relative"):
        parse_incident("kpi=csat,start=+30m,duration=10m,target=70")


def test_incident_scope_must_be_simulated() -> None:
    inc = parse_incident("kpi=csat,team=legal,start=+1h,duration=10m,target=70", START)
    with pytest.raises(ValueError, match="team 'legal' is not simulated"):
        SimulationParams(incidents=(inc,))


def test_ground_truth_is_json_serialisable() -> None:
    specs = [
        "kpi=frt,channel=chat,start=+1h,duration=20m,factor=3",
        "kpi=reply_time,start=+1h,duration=20m,factor=2",
        "kpi=resolution_time,team=billing,start=+1h,duration=20m,factor=2",
        "kpi=resolution_rate,start=+1h,duration=20m,factor=0.5",
        "kpi=volume,start=+1h,duration=20m,factor=2",
        "kpi=csat,team=billing,start=+1h,duration=40m,target=70",
        "kpi=nps,start=+1h,duration=40m,target=-10",
        "kpi=ces,start=+1h,duration=40m,target=50",
    ]
    params = SimulationParams(start=START, incidents=tuple(parse_incident(s, START) for s in specs))
    truth = json.loads(json.dumps(ground_truth(params)))
    assert [r["kpi"] for r in truth] == [s.split(",")[0][4:] for s in specs]
    for rec in truth:
        assert {"kpi", "scope", "start", "end", "baseline", "expected", "metric"} <= set(rec)
        assert rec["start"].endswith("Z") and parse_time(rec["end"]) > parse_time(rec["start"])
    csat = truth[5]
    assert csat["scope"] == {"team": "billing", "channel": None}
    assert 75 < csat["baseline"] < 90 and csat["expected"] == 70


# ----------------------------------------------------------------------- faults


def test_fault_rates_are_roughly_honoured(faulty_day: list[SimEvent]) -> None:
    kinds = Counter(e.kind for e in faulty_day)
    total = len(faulty_day)
    assert abs(kinds["malformed"] / total - 0.04) < 0.006
    assert abs(kinds["duplicate"] / total - 0.03) < 0.006
    valid = [e for e in faulty_day if e.kind == "valid"]
    delayed = [e for e in valid if e.arrival > e.occurred_at]
    assert abs(len(delayed) / len(valid) - 0.03) < 0.01
    assert sum(e.delay > timedelta(minutes=10) for e in delayed) > 0.1 * len(delayed)


def test_malformed_messages_carry_the_contract_reason(faulty_day: list[SimEvent]) -> None:
    bad = [e for e in faulty_day if e.kind == "malformed"]
    for e in bad:
        assert e.reason == contract_reason(e.value), (e.reason, e.value)
    families = {e.reason.split(":")[0] for e in bad if e.reason}
    assert families == set(MALFORMED_FAMILIES)
    reasons = {e.reason for e in bad}
    assert {"wrong_type:score", "invalid_value:score", "invalid_value:occurred_at"} <= reasons


def test_the_pipeline_validator_agrees(faulty_day: list[SimEvent]) -> None:
    """Cross-check with pipeline.core.events, the validator the worker runs."""
    events_module = pytest.importorskip("pipeline.core.events")
    errors_module = pytest.importorskip("pipeline.core.errors")
    for e in faulty_day:
        try:
            events_module.parse_event(e.value)
            reason = None
        except errors_module.InvalidEvent as exc:
            reason = exc.reason
        assert reason == (e.reason if e.kind == "malformed" else None), (e.kind, e.value)


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**63),
    malformed=st.floats(min_value=0.0, max_value=0.3),
    late=st.floats(min_value=0.0, max_value=0.3),
)
def test_any_seed_gives_contract_events(seed: int, malformed: float, late: float) -> None:
    params = SimulationParams(
        seed=seed,
        start=START + timedelta(hours=9),
        duration=timedelta(minutes=30),
        conversations_per_hour=300,
        malformed_rate=malformed,
        duplicate_rate=0.05,
        late_rate=late,
    )
    events = collect(params)
    assert [e.arrival for e in events] == sorted(e.arrival for e in events)
    for e in events:
        expected = e.reason if e.kind == "malformed" else None
        assert contract_reason(e.value) == expected
        assert params.start <= e.occurred_at <= e.arrival < params.end


def test_duplicates_repeat_an_earlier_valid_message(faulty_day: list[SimEvent]) -> None:
    seen: dict[bytes, SimEvent] = {}
    dups = 0
    for e in faulty_day:
        if e.kind == "valid":
            seen[e.value] = e
        elif e.kind == "duplicate":
            dups += 1
            original = seen[e.value]
            assert original.key == e.key
            assert timedelta(0) <= e.arrival - original.arrival <= timedelta(minutes=2)
    assert dups > 100


# -------------------------------------------------------------- API and helpers


def test_streaming_a_month_is_lazy() -> None:
    params = SimulationParams(start=START, duration=timedelta(days=30), conversations_per_hour=5000)
    head = list(itertools.islice(simulate(params), 1000))
    assert len(head) == 1000
    assert head[-1].arrival < START + timedelta(hours=2)


def test_rate_for_events_per_second_matches_the_model() -> None:
    cph = rate_for_events_per_second(0.2)
    assert rate_for_events_per_second(0.4) == pytest.approx(2 * cph)
    flat = SimulationParams(seasonality=False)
    assert rate_for_events_per_second(0.2, flat) < cph
    params = SimulationParams(
        seed=9, start=START, duration=timedelta(days=7), conversations_per_hour=cph, drain=True
    )
    summary = summarize(simulate(params))
    per_conversation = summary["kinds"]["valid"] / summary["conversations"]
    assert per_conversation == pytest.approx(MEAN_EVENTS_PER_CONVERSATION, rel=0.1)
    assert summary["total"] / (7 * 86400) == pytest.approx(0.2, rel=0.2)


def test_summarize_counts_kinds_types_and_reasons(faulty_day: list[SimEvent]) -> None:
    report = summarize(faulty_day)
    assert report["total"] == len(faulty_day) == sum(report["kinds"].values())
    assert sum(report["types"].values()) == report["kinds"]["valid"]
    assert sum(report["reasons"].values()) == report["kinds"]["malformed"]
    assert report["conversations"] == report["types"]["conversation.opened"]
    assert report["delayed_over_10min"] > 0
    json.dumps(report)
    running = Summary()
    for e in faulty_day[:10]:
        running.add(e)
    assert running.to_dict()["total"] == 10


def test_drain_completes_conversations_and_window_is_respected() -> None:
    cut = collect(_small(seed=4, late_rate=0))
    drained = collect(_small(seed=4, late_rate=0, drain=True))
    end = START + timedelta(hours=12)
    assert all(e.arrival < end for e in cut)
    assert len(drained) > len(cut)
    assert [e for e in drained if e.arrival < end] == cut


@pytest.mark.parametrize(
    "kwargs",
    [
        {"start": START.replace(tzinfo=None)},  # naive: the point of the test
        {"duration": timedelta(0)},
        {"malformed_rate": 0.6, "duplicate_rate": 0.5},
        {"late_rate": 1.5},
        {"teams": ()},
        {"team_weights": (1.0,)},
    ],
)
def test_invalid_params_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SimulationParams(**kwargs)
