"""The compute role's logic and runtime against the independent oracle (tests/oracle.py).

Random multi-conversation streams over 2-3 partitions (duplicates, late events, bad
events, bots, reopens, surveys, dimension changes) go through the real compute path:
``ConversationLogic`` in the real ``PartitionRunner`` over an in-memory Kafka
(tests/runtime_sim.py) in batches of random sizes, then the minute deltas through the
sink's ``MinuteRollup``. Every (grouping, key, minute) must hold exactly the oracle's
counts and integer sums, and percentiles within 1% of the exact samples. The crash
properties kill the compute "process" at every step of its checkpoint and the sink between
its writes, and expect one clean pass.

Seeds are fixed: a failure names its seed, and reruns are identical.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.core.errors import InvalidEvent
from pipeline.core.events import parse_event
from streams.deltas import DeltaMessage, decode_delta
from streams.partials import PARTIAL_COLUMNS, MinutePartial
from streams.rollup import GROUPINGS as PIPELINE_GROUPINGS
from streams.rollup import SKETCH_COLUMNS, STORED_COLUMNS, MinuteRollup, RowKey
from tests import oracle
from tests.oracle import COUNT_NAMES, GROUPINGS, Oracle, recompute
from tests.runtime_sim import (
    CRASH_POINTS,
    DEAD,
    DELTAS,
    LATE,
    LOG,
    CrashPlan,
    FakeKafka,
    run_compute,
)

US = 1_000_000
DAY_US = 86_400 * US
T_BASE_S = 1_710_072_000 - 97  # 2024-03-10T11:58:23Z: minute edges fall mid-stream
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
QUANTILES = (0.5, 0.9, 0.95, 0.99)
DIMS = ("team", "channel", "region", "priority", "segment")
SEEDS = range(60)

Message = tuple[int, int, bytes]


# ---------------------------------------------------------------------------------------------
# The compute role over an in-memory Kafka, and the sink's fold
# ---------------------------------------------------------------------------------------------


@dataclass
class ComputeRun:
    """What the compute role committed to (fake) Kafka."""

    kafka: FakeKafka
    restarts: int

    def deltas(self) -> list[DeltaMessage]:
        out = []
        for _, records in sorted(self.kafka.topics.get(DELTAS, {}).items()):
            out.extend(decode_delta(r.value) for r in records if r.value)
        return out

    def _side(self, topic: str) -> dict[tuple[int, int], str]:
        out = {}
        for records in self.kafka.topics.get(topic, {}).values():
            for r in records:
                h = dict(r.headers or ())
                key = (int(h["cxpulse.source.partition"]), int(h["cxpulse.source.offset"]))
                out[key] = h["cxpulse.reason"].decode()
        return out

    @property
    def dead(self) -> dict[tuple[int, int], str]:
        return self._side(DEAD)

    @property
    def late(self) -> set[tuple[int, int]]:
        return set(self._side(LATE))

    def verdicts(self) -> dict[str, int]:
        names = ("accepted", "duplicate", "late", "invalid", "replayed")
        totals = dict.fromkeys(names, 0)
        for d in self.deltas():
            for _, counts in d.verdicts:
                for name, n in zip(names, counts, strict=True):
                    totals[name] += n
        return totals

    def table(self) -> dict[bytes, Any]:
        """Latest conversation state per key in the log (tombstones delete)."""
        out: dict[bytes, Any] = {}
        for records in self.kafka.topics.get(LOG, {}).values():
            for r in records:
                if r.value is None:
                    out.pop(r.key, None)
                else:
                    value = orjson.loads(r.value)
                    if "s" in value:
                        out[r.key] = value["s"]
        return out


def compute(stream: list[Message], **kwargs: Any) -> ComputeRun:
    kafka, restarts = run_compute(stream, **kwargs)
    return ComputeRun(kafka, restarts)


def fold(rollup: MinuteRollup, deltas: Iterable[DeltaMessage]) -> MinuteRollup:
    """The sink: fold delta messages (skipping those a row already holds)."""
    for d in deltas:
        rollup.apply(d.partition, d.offset, d.cells)
    return rollup


StoredRows = list[tuple[RowKey, list[Any], int]]


def store_rows(rollup: MinuteRollup) -> StoredRows:
    """What ClickHouse holds after a flush: every stored column, through JSON."""
    return [
        (key, json.loads(json.dumps([row.column(c) for c in STORED_COLUMNS])), row.version)
        for key, row in rollup.rows.items()
    ]


def load_rows(stored: StoredRows) -> MinuteRollup:
    """A restarted sink that loaded every stored row."""
    rollup = MinuteRollup()
    rows = []
    for key, columns, version in stored:
        values = [
            v for c, v in zip(STORED_COLUMNS, columns, strict=True) if c not in SKETCH_COLUMNS
        ]
        sketches = {
            c: {int(k): n for k, n in v.items()}
            for c, v in zip(STORED_COLUMNS, columns, strict=True)
            if c in SKETCH_COLUMNS and v
        }
        rows.append((key, values, sketches, version))
    rollup.install({(k[0], k[7]) for k, _, _ in stored}, rows)
    return rollup


# ---------------------------------------------------------------------------------------------
# Comparison with the oracle
# ---------------------------------------------------------------------------------------------


def by_oracle_key(rollup: MinuteRollup) -> dict[tuple[str, tuple[str, ...], int], MinutePartial]:
    """Rows of all source partitions merged under the oracle's (grouping, key, minute)."""
    merged: dict[tuple[str, tuple[str, ...], int], MinutePartial] = {}
    for (_, grouping, *values, minute, _lag), row in rollup.rows.items():
        dims = dict(zip(DIMS, values, strict=True))
        kept = GROUPINGS[grouping]
        assert all(dims[d] == "" for d in DIMS if d not in kept), (grouping, dims)
        key = (grouping, tuple(dims[d] for d in kept), minute)
        merged.setdefault(key, MinutePartial()).merge(row.to_partial())
    return merged


def exact_quantile(samples: list[float], q: float) -> float:
    """Nearest-rank quantile: the ceil(q * n)-th smallest sample (at least the first)."""
    ordered = sorted(samples)
    rank = max(q * len(ordered), 1)
    return ordered[math.ceil(rank) - 1]


def within_one_percent(estimate: float | None, exact: float) -> bool:
    return estimate is not None and abs(estimate - exact) <= 0.01 * exact + 1e-12


def mismatches(expected: Oracle, rollup: MinuteRollup) -> list[str]:
    got = by_oracle_key(rollup)
    problems: list[str] = []
    for key in sorted(set(got) ^ set(expected.minutes), key=repr):
        where = "pipeline only" if key in got else "oracle only"
        problems.append(f"{key}: row in {where}")
    for key in sorted(set(got) & set(expected.minutes), key=repr):
        partial, row = got[key], expected.minutes[key]
        for name in (*COUNT_NAMES, "csat_sum", "ces_sum"):
            if getattr(partial, name) != row[name]:
                problems.append(f"{key} {name}: pipeline {getattr(partial, name)} != {row[name]}")
        for kind in ("frt", "reply", "resolution"):
            total_us = round(getattr(partial, f"{kind}_sum") * US)
            if total_us != row[f"{kind}_sum_us"]:
                problems.append(f"{key} {kind}_sum: {total_us} us != {row[f'{kind}_sum_us']} us")
            sketch = getattr(partial, f"{kind}_sketch")
            samples = row[f"{kind}_samples_s"]
            if sketch.count != len(samples):
                problems.append(f"{key} {kind} sketch count {sketch.count} != {len(samples)}")
                continue
            for q in QUANTILES if samples else ():
                estimate, exact = sketch.quantile(q), exact_quantile(samples, q)
                if not within_one_percent(estimate, exact):
                    problems.append(f"{key} {kind} q{q}: {estimate} vs exact {exact}")
    return problems


def assert_agrees(expected: Oracle, rollup: MinuteRollup, context: str) -> None:
    problems = mismatches(expected, rollup)
    assert not problems, f"{context}: {len(problems)} mismatches, e.g.\n" + "\n".join(problems[:15])


# ---------------------------------------------------------------------------------------------
# Random streams
# ---------------------------------------------------------------------------------------------


def jitter_us(second: int) -> int:
    """Sub-second part of an event time, a function of its whole second.

    Two events in the same second get the same time and any two other times differ by at
    least half a second: every duration is 0 or well above the sketch's 1 ms floor.
    """
    return (second * 7919) % 500_000


def render(us: int, rng: random.Random) -> str:
    """RFC 3339 text of ``us`` in a random offset, sometimes with 9 fraction digits."""
    offset_min = rng.choice([0, 0, 330, -480, -30, 845, -660])
    local = EPOCH + timedelta(microseconds=us + offset_min * 60 * US)
    frac = f"{local.microsecond:06d}"
    if rng.random() < 0.3:
        frac += f"{rng.randrange(1000):03d}"  # nanoseconds, truncated by the parser
    if offset_min == 0:
        zone = rng.choice(["Z", "+00:00"])
    else:
        sign = "+" if offset_min > 0 else "-"
        zone = f"{sign}{abs(offset_min) // 60:02d}:{abs(offset_min) % 60:02d}"
    return local.strftime("%Y-%m-%dT%H:%M:%S") + f".{frac}{zone}"


@dataclass
class Planned:
    """One message of a conversation's script, before the partitions are interleaved."""

    arrival_s: int  # position in the arrival order (non-decreasing per conversation)
    raw: bytes


def conversation_script(rng: random.Random, cid: str, start_s: int) -> list[Planned]:
    """Events of one conversation in producer order, with copies, bad and late messages."""
    teams = ["billing", "tech", "sales"]
    kind = rng.choice(["normal"] * 6 + ["headless", "double_open"])
    t = start_s
    arrival = start_s
    events: list[dict[str, Any]] = []
    n = 0

    def add(etype: str, **fields: Any) -> None:
        nonlocal n
        events.append(
            {"event_id": f"{cid}-{n}", "type": etype, "conversation_id": cid, "_t": t, **fields}
        )
        n += 1

    def dims_maybe() -> dict[str, Any]:
        out: dict[str, Any] = {}
        if rng.random() < 0.12:
            out["priority"] = rng.choice(["low", "normal", "high", "urgent"])
        if rng.random() < 0.08:
            out["region"] = rng.choice(["eu", "us", "apac"])
        if rng.random() < 0.08:
            out["segment"] = rng.choice(["enterprise", "smb", "consumer"])
        if rng.random() < 0.06:
            out["team"] = rng.choice(teams)
        if rng.random() < 0.04:
            out["channel"] = rng.choice(["chat", "email", "phone"])
        if rng.random() < 0.05:
            out["customer_id"] = f"cust-{rng.randrange(5)}"
            out["customer_value"] = rng.choice([0, 12.5, 300])
        return out

    if kind != "headless":
        opened = {"team": rng.choice(teams), "channel": rng.choice(["chat", "email", "social"])}
        if rng.random() < 0.6:
            opened["priority"] = rng.choice(["low", "normal", "high", "urgent"])
        if rng.random() < 0.5:
            opened["region"] = rng.choice(["eu", "us"])
        if rng.random() < 0.4:
            opened["segment"] = rng.choice(["enterprise", "smb"])
        add("conversation.opened", **opened)
    resolved_once = False
    for step in range(rng.randint(1, 12)):
        gap = rng.choice([0, 1, 5, 30, 90, 200, 400, 1000, 4000, -3])
        t += gap
        roll = rng.random()
        if roll < 0.25:
            add("message.customer", **dims_maybe())
        elif roll < 0.45:
            add("message.agent", agent_id="a1", **dims_maybe())
        elif roll < 0.5:
            add("message.agent", agent_id="a2", author="human", **dims_maybe())
        elif roll < 0.6:
            add("message.agent", agent_id="bot-1", author="bot", **dims_maybe())
        elif roll < 0.65:
            add("conversation.assigned", **{**dims_maybe(), "team": rng.choice(teams)})
        elif roll < 0.77:
            add("conversation.resolved", **dims_maybe())
            resolved_once = True
        elif roll < 0.85 and kind != "headless" and (resolved_once or rng.random() < 0.3):
            add("conversation.reopened", **dims_maybe())
        elif roll < 0.88 and kind == "double_open":
            add("conversation.opened", team=rng.choice(teams), channel="chat")
        elif roll < 0.94:
            survey = rng.choice(["survey.csat", "survey.nps", "survey.ces"])
            low, high = {"survey.csat": (1, 5), "survey.nps": (0, 10), "survey.ces": (1, 7)}[survey]
            add(survey, score=rng.randint(low, high), **dims_maybe())
        else:
            add("message.customer", x_extra={"step": step})

    planned: list[Planned] = []
    for index, event in enumerate(events):
        arrival = max(arrival, event["_t"])
        sent = {k: v for k, v in event.items() if k != "_t"}
        second = event.pop("_t")
        event_us = second * US + jitter_us(second)
        sent["occurred_at"] = render(event_us, rng)
        sent["schema_version"] = 1
        is_first = index == 0
        # A bad message before it, claiming its id (invalid events claim no id).
        if rng.random() < 0.06:
            planned.append(Planned(arrival, corrupt(rng, sent)))
        # Late: its time far behind its arrival (never the first event of a conversation,
        # so a conversation is always started by its first event).
        if not is_first and rng.random() < 0.07:
            back = rng.choice([601, 700, 2000, 9000])
            old = second - back
            sent["occurred_at"] = render(old * US + jitter_us(old), rng)
        planned.append(Planned(arrival, json.dumps(sent).encode()))
        # Redelivered copies: exact, or differing (first wins either way).
        if rng.random() < 0.08:
            copy = dict(sent)
            if rng.random() < 0.5:
                copy["type"] = "message.customer"
                copy.pop("score", None)
                copy["region"] = "copy-region"
            planned.append(Planned(arrival, json.dumps(copy).encode()))
    return planned


def corrupt(rng: random.Random, obj: dict[str, Any]) -> bytes:
    """A copy of ``obj`` with exactly one contract violation."""
    bad = dict(obj)
    how = rng.randrange(12)
    if how == 0:
        return b"\xff\xfe" + json.dumps(bad).encode()
    if how == 1:
        return json.dumps(bad).encode()[:-3]
    if how == 2:
        return json.dumps([bad]).encode()
    if how == 3:
        del bad["conversation_id"]
    elif how == 4:
        bad["event_id"] = None
    elif how == 5:
        bad["type"] = "conversation.closed"
    elif how == 6:
        bad["schema_version"] = "1"
    elif how == 7:
        bad["schema_version"] = 2
    elif how == 8:
        bad["occurred_at"] = bad["occurred_at"][:19]  # no offset
    elif how == 9:
        bad["channel"] = "Web Chat"
    elif how == 10:
        bad["priority"] = "p1"
    else:
        text = json.dumps(bad)[:-1] + ', "customer_value": NaN}'
        return text.encode()
    return json.dumps(bad).encode()


def interleave(
    rng: random.Random, scripts: dict[str, list[Planned]], partitions: int
) -> list[Message]:
    """Arrival order: per conversation in order, conversations interleaved.

    At each step one conversation among those whose next arrival is within 300 s of the
    earliest is taken, so a conversation's first event is never more than 300 s behind its
    partition's highest time (never late), while late messages (old times) stay late.
    """
    queues = {cid: list(script) for cid, script in scripts.items() if script}
    part_of = {cid: i % partitions for i, cid in enumerate(sorted(queues))}
    offsets = {p: rng.randrange(0, 40) for p in range(partitions)}
    out: list[Message] = []
    while queues:
        earliest = min(q[0].arrival_s for q in queues.values())
        ready = sorted(cid for cid, q in queues.items() if q[0].arrival_s <= earliest + 300)
        cid = rng.choice(ready)
        item = queues[cid].pop(0)
        if not queues[cid]:
            del queues[cid]
        p = part_of[cid]
        out.append((p, offsets[p], item.raw))
        offsets[p] += 1
    return out


def random_stream(seed: int) -> list[Message]:
    rng = random.Random(seed)
    scripts = {
        f"conv-{seed}-{i}": conversation_script(
            rng, f"conv-{seed}-{i}", T_BASE_S + rng.randrange(5400)
        )
        for i in range(rng.randint(8, 22))
    }
    stream = interleave(rng, scripts, partitions=rng.choice([2, 3]))
    # Plain junk too.
    for _ in range(rng.randint(0, 3)):
        at = rng.randrange(len(stream) + 1)
        p = rng.randrange(2)
        stream.insert(at, (p, -1, rng.choice([b"", b"null", b"{}", b"\x00\x01", b'{"type": 1}'])))
    return renumber(stream)


def renumber(stream: list[Message]) -> list[Message]:
    """Consecutive offsets per partition in arrival order (keeps each partition's base)."""
    base: dict[int, int] = {}
    out: list[Message] = []
    for p, o, raw in stream:
        nxt = base.get(p, max(o, 0))
        out.append((p, nxt, raw))
        base[p] = nxt + 1
    return out


# ---------------------------------------------------------------------------------------------
# The oracle itself, on a hand-checked scenario
# ---------------------------------------------------------------------------------------------


def _raw(event_id: str, etype: str, at: str, **fields: Any) -> bytes:
    obj = {
        "event_id": event_id,
        "type": etype,
        "occurred_at": at,
        "conversation_id": fields.pop("conversation_id", "c1"),
        "schema_version": 1,
        **fields,
    }
    return json.dumps(obj).encode()


def test_oracle_on_a_hand_computed_conversation() -> None:
    msgs = [
        _raw("1", "conversation.opened", "2024-03-10T12:00:00Z", team="t", channel="chat"),
        _raw("2", "message.customer", "2024-03-10T12:00:30Z"),
        _raw("3", "message.agent", "2024-03-10T12:01:10.5Z", agent_id="a", priority="urgent"),
        _raw("3", "message.agent", "2024-03-10T12:01:10.5Z", agent_id="a"),  # duplicate
        _raw("4", "message.agent", "2024-03-10T12:01:20Z", agent_id="b", author="bot"),
        _raw("5", "message.customer", "2024-03-10T12:02:00Z"),
        _raw("6", "message.agent", "2024-03-10T12:02:45Z", agent_id="a"),
        _raw("7", "conversation.resolved", "2024-03-10T12:03:00Z"),
        _raw("8", "conversation.reopened", "2024-03-10T12:03:30Z", region="eu"),
        _raw("9", "message.agent", "2024-03-10T12:09:31Z", agent_id="a"),  # 361 s: breach
        _raw("10", "conversation.resolved", "2024-03-10T12:10:00Z"),
        _raw("11", "survey.csat", "2024-03-10T12:10:05Z", score=4),
        _raw("12", "survey.nps", "2024-03-10T12:10:06Z", score=6),
        _raw("13", "survey.ces", "2024-03-10T12:10:07Z", score=5),
        _raw("14", "message.customer", "2024-03-10T11:59:59Z"),  # 608 s behind the highest: late
        _raw("15", "message.customer", "2024-03-10T12:00:00Z", schema_version=2),
    ]
    out = recompute((0, i, m) for i, m in enumerate(msgs))
    assert out.dead_letters == {"invalid_value:schema_version": 1}
    assert (out.late, out.duplicates, out.accepted) == (1, 1, 13)
    total = out.totals()
    assert total["opened"] == 1 and total["reopens"] == 1 and total["resolutions"] == 2
    assert total["one_touch_resolutions"] == 0  # two human messages, then a reopen
    assert total["frt_samples_s"] == [70.5, 361.0]
    assert total["frt_breaches"] == 1  # the priority became urgent at the first reply
    assert total["reply_samples_s"] == [45.0]
    assert total["resolution_samples_s"] == [180.0, 600.0]
    assert total["frt_sum_us"] == 431_500_000
    assert (total["csat_responses"], total["csat_satisfied"], total["csat_sum"]) == (1, 1, 4)
    assert (total["nps_responses"], total["nps_promoters"], total["nps_detractors"]) == (1, 0, 1)
    assert (total["ces_responses"], total["ces_easy"], total["ces_sum"]) == (1, 1, 5)
    assert total["messages_agent_human"] == 3 and total["messages_agent_bot"] == 1
    minute = (datetime(2024, 3, 10, 12, 9, tzinfo=UTC) - EPOCH) // timedelta(minutes=1)
    row = out.minutes["team_channel", ("t", "chat"), minute]
    assert row["frt_samples_s"] == [361.0]
    assert out.minutes["region", ("eu",), minute]["frt_breaches"] == 1
    assert ("region", ("unknown",), minute) not in out.minutes
    assert out.minutes["priority", ("urgent",), minute]["events"] == 1


def test_oracle_refuses_out_of_order_offsets() -> None:
    with pytest.raises(ValueError, match="offset"):
        recompute([(0, 5, b"{}"), (0, 5, b"{}")])


def test_oracle_groupings_match_the_pipeline_groupings() -> None:
    assert set(GROUPINGS) == set(PIPELINE_GROUPINGS)
    for name, keep in PIPELINE_GROUPINGS.items():
        assert tuple(d for d, k in zip(DIMS, keep, strict=True) if k) == GROUPINGS[name]


@pytest.mark.parametrize("seed", range(0, 60, 6))
def test_oracle_validation_agrees_with_parse_event_on_single_defects(seed: int) -> None:
    rng = random.Random(seed)
    base = json.loads(_raw("e", "conversation.opened", "2024-03-10T12:00:00Z", team="t"))
    base["channel"] = "chat"
    for _ in range(40):
        raw = corrupt(rng, base)
        with pytest.raises(InvalidEvent) as caught:
            parse_event(raw)
        with pytest.raises(oracle.Rejected) as expected:
            oracle.validate(raw)
        assert caught.value.reason == expected.value.reason, raw


# ---------------------------------------------------------------------------------------------
# Agreement and crash properties
# ---------------------------------------------------------------------------------------------


def assert_side_outputs(expected: Oracle, run: ComputeRun) -> None:
    reasons: dict[str, int] = {}
    for reason in run.dead.values():
        reasons[reason] = reasons.get(reason, 0) + 1
    assert reasons == expected.dead_letters
    assert len(run.late) == expected.late
    verdicts = run.verdicts()
    assert verdicts["duplicate"] == expected.duplicates
    assert verdicts["accepted"] == expected.accepted
    assert verdicts["invalid"] == sum(expected.dead_letters.values())


@pytest.mark.parametrize("seed", SEEDS)
def test_one_clean_pass_matches_the_oracle(seed: int) -> None:
    stream = random_stream(seed)
    expected = recompute(stream)
    run = compute(stream, seed=seed)
    assert_agrees(expected, fold(MinuteRollup(), run.deltas()), f"seed {seed}")
    assert_side_outputs(expected, run)


def test_the_generated_streams_exercise_every_path() -> None:
    """Guard against a generator that silently stops producing the hard cases."""
    seen = Oracle()
    totals: dict[str, int] = dict.fromkeys(COUNT_NAMES, 0)
    for seed in SEEDS:
        out = recompute(random_stream(seed))
        seen.late += out.late
        seen.duplicates += out.duplicates
        for reason, n in out.dead_letters.items():
            seen.dead_letters[reason] = seen.dead_letters.get(reason, 0) + n
        overall = out.totals()
        for name in COUNT_NAMES:
            totals[name] += overall[name]
    assert seen.late >= 20 and seen.duplicates >= 20
    assert len(seen.dead_letters) >= 8
    for name in COUNT_NAMES:
        assert totals[name] >= 10, name


def crash_plan(rng: random.Random, n_points: int) -> CrashPlan:
    """Crashes at random reaches of random checkpoint steps (several per run)."""
    plan: dict[str, set[int]] = {}
    for _ in range(n_points):
        point = rng.choice(CRASH_POINTS)
        plan.setdefault(point, set()).add(rng.randrange(0, 12))
    return CrashPlan(plan)


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
@pytest.mark.parametrize("seed", range(0, 60, 2))
def test_a_crash_at_any_checkpoint_step_changes_nothing(
    seed: int, store: str, tmp_path: Path
) -> None:
    """Issue 9 at unit level: local state must never get ahead of the log.

    The compute "process" dies inside the fold, in the middle of a transaction, just before
    its commit, or just after it (before local state is written), several times per run.
    The committed log and deltas must equal one clean pass, and so must the durable state.
    """
    stream = random_stream(seed)
    expected = recompute(stream)
    plan = crash_plan(random.Random(1000 + seed), 6)
    run = compute(stream, store_kind=store, state_dir=tmp_path, crash=plan, seed=seed, max_batch=8)
    assert plan.crashes >= 1 and run.restarts == plan.crashes
    assert_agrees(expected, fold(MinuteRollup(), run.deltas()), f"seed {seed}, {store}")
    assert_side_outputs(expected, run)
    clean = compute(stream, seed=seed)
    assert run.table() == clean.table()


def test_every_crash_point_is_reached_and_survived(tmp_path: Path) -> None:
    """Each step of the checkpoint, crashed at every one of its first reaches, one by one."""
    stream = random_stream(4)
    expected = recompute(stream)
    for point in CRASH_POINTS:
        for nth in range(6):
            plan = CrashPlan({point: {nth}})
            run = compute(
                stream,
                store_kind="rocksdb",
                state_dir=tmp_path / f"{point}{nth}",
                crash=plan,
                max_batch=8,
            )
            assert plan.crashes == 1, (point, nth)
            assert not mismatches(expected, fold(MinuteRollup(), run.deltas())), (point, nth)


def test_the_crash_test_fails_when_local_state_runs_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The property above can fail: write local state before the commit (the old bug)."""
    from streams.runtime import partition

    original = partition.PartitionRunner._commit

    async def store_first(self: Any, prev: Any, result: Any, layer: Any, next_offset: Any) -> None:
        self.store.apply(result.changelog, self.store.changelog_offset())
        await original(self, prev, result, layer, next_offset)

    monkeypatch.setattr(partition.PartitionRunner, "_commit", store_first)
    stream = random_stream(4)
    expected = recompute(stream)
    failures = 0
    for nth in range(4):
        plan = CrashPlan({"before_commit": {nth}})
        run = compute(
            stream, store_kind="rocksdb", state_dir=tmp_path / str(nth), crash=plan, max_batch=8
        )
        failures += bool(mismatches(expected, fold(MinuteRollup(), run.deltas())))
    assert failures >= 1


@pytest.mark.parametrize("seed", range(0, 60, 3))
def test_a_sink_restart_between_its_writes_changes_nothing(seed: int) -> None:
    """The sink flushed part of the deltas, committed less, restarted and re-read."""
    stream = random_stream(seed)
    expected = recompute(stream)
    deltas = compute(stream, seed=seed).deltas()
    rng = random.Random(10_000 + seed)
    flushed = rng.randrange(0, len(deltas) + 1)
    stored = store_rows(fold(MinuteRollup(), deltas[:flushed]))
    replay_from = rng.randrange(0, flushed + 1)
    restarted = fold(load_rows(stored), deltas[replay_from:])
    assert_agrees(expected, restarted, f"seed {seed}, sink restart")


@pytest.mark.parametrize("seed", range(0, 60, 3))
def test_processing_in_two_sessions_matches(seed: int) -> None:
    stream = random_stream(seed)
    cut = random.Random(seed).randrange(len(stream) + 1)
    first = compute(stream[:cut], seed=seed)
    second = compute(stream, kafka=first.kafka, seed=seed + 1)
    assert_agrees(recompute(stream), fold(MinuteRollup(), second.deltas()), f"seed {seed}")


def test_the_sink_skips_deltas_it_already_holds() -> None:
    stream = random_stream(7)
    deltas = compute(stream).deltas()
    once = fold(MinuteRollup(), deltas)
    twice = fold(fold(MinuteRollup(), deltas), deltas)
    assert {k: (r.values, r.sketches) for k, r in once.rows.items()} == {
        k: (r.values, r.sketches) for k, r in twice.rows.items()
    }
    assert not mismatches(recompute(stream), twice)


def test_a_mismatch_is_detected() -> None:
    """The comparison can fail: one delta folded twice under a new offset."""
    stream = random_stream(3)
    deltas = compute(stream).deltas()
    rollup = fold(MinuteRollup(), deltas)
    first = next(d for d in deltas if d.cells)
    first.offset = 10**9
    fold(rollup, [first])
    assert mismatches(recompute(stream), rollup)


# ---------------------------------------------------------------------------------------------
# Regressions: discrepancies found by review, fixed (kept as tests)
# ---------------------------------------------------------------------------------------------


def _at(us: int) -> str:
    return (EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _expiry_stream(copy: bytes) -> list[Message]:
    t0 = T_BASE_S * US
    return [
        (0, 0, _raw("a1", "conversation.opened", _at(t0), team="t", channel="chat")),
        # A redelivered copy of a1: a duplicate in the clean pass (the state lives).
        (0, 1, copy),
        # A backfill: 8 days of event time arrive before the consumer commits offset 1.
        (0, 2, _raw("b1", "message.customer", _at(t0 + 8 * DAY_US), conversation_id="c2")),
    ]


def test_restart_after_seven_days_of_event_time_keeps_duplicates_duplicates() -> None:
    t0 = T_BASE_S * US
    stream = _expiry_stream(_raw("a1", "message.customer", _at(t0 + 8 * DAY_US), team="x"))
    expected = recompute(stream)
    assert expected.duplicates == 1
    first = compute(stream)
    first.kafka.committed[0] = 1  # an operator rewinds the group to offset 1
    resumed = compute(stream, kafka=first.kafka)
    assert resumed.verdicts()["replayed"] == 1  # offset 2; offset 1 is a duplicate again
    assert_agrees(expected, fold(MinuteRollup(), resumed.deltas()), "rewind after expiry")


def test_restart_after_seven_days_of_event_time_routes_nothing_new_to_late() -> None:
    t0 = T_BASE_S * US
    stream = _expiry_stream(_raw("a1", "conversation.opened", _at(t0), team="t", channel="chat"))
    clean = compute(stream)
    assert (clean.verdicts()["duplicate"], len(clean.late)) == (1, 0)
    rewound = compute(stream)
    rewound.kafka.committed[0] = 1
    resumed = compute(stream, kafka=rewound.kafka)
    assert resumed.late == clean.late


def test_sub_millisecond_response_times_keep_the_one_percent_promise() -> None:
    t0 = T_BASE_S * US
    stream: list[Message] = [
        (0, 0, _raw("1", "conversation.opened", _at(t0), team="t", channel="chat")),
        (0, 1, _raw("2", "message.agent", _at(t0 + 500), agent_id="a")),
    ]
    expected = recompute(stream)
    assert expected.totals()["frt_samples_s"] == [0.0005]
    assert_agrees(expected, fold(MinuteRollup(), compute(stream).deltas()), "0.5 ms FRT")


def test_reopen_before_opened_matches_the_oracle() -> None:
    t0 = T_BASE_S * US
    stream: list[Message] = [
        (0, 0, _raw("1", "conversation.reopened", _at(t0))),
        (0, 1, _raw("2", "message.agent", _at(t0 + 30 * US), agent_id="a")),
    ]
    expected = recompute(stream)
    assert_agrees(expected, fold(MinuteRollup(), compute(stream).deltas()), "reopen first")


def test_partial_columns_cover_the_oracle_fields() -> None:
    """Every count the oracle keeps is a MinutePartial column (the comparison is complete)."""
    assert set(COUNT_NAMES) | {"csat_sum", "ces_sum"} <= set(PARTIAL_COLUMNS)
