"""quantile_sql in embedded ClickHouse (chDB) must agree with QuantileSketch in Python."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.sketch import MAX_KEY, ZERO_KEY, QuantileSketch, quantile_sql

clickhouse_connect = pytest.importorskip("clickhouse_connect")

QS = (0.0, 0.001, 0.01, 0.1, 0.25, 0.29, 1 / 3, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0)
REL = 1e-9


@pytest.fixture(scope="module")
def client(chdb_client: Any) -> Iterator[Any]:
    ch = chdb_client
    ch.command("DROP TABLE IF EXISTS sketch_rows")
    ch.command(
        "CREATE TABLE sketch_rows (g UInt32, row UInt32, m Map(Int16, UInt64)) "
        "ENGINE = MergeTree ORDER BY (g, row)"
    )
    yield ch
    ch.command("DROP TABLE IF EXISTS sketch_rows")


def select(*parts: str) -> str:
    """Join query text (all of it ours: column expressions from quantile_sql)."""
    return " ".join(parts)


def same(sql_value: float | None, py_value: float | None) -> bool:
    if py_value is None or sql_value is None:
        return sql_value is None and py_value is None
    return math.isclose(sql_value, py_value, rel_tol=REL, abs_tol=0.0)


def random_sketch(rng: random.Random) -> QuantileSketch:
    sketch = QuantileSketch()
    kind = rng.choice(["lognormal", "uniform", "pareto", "zeros", "single", "empty"])
    n = rng.choice([0, 1, 3, 50, 500])
    for _ in range(n):
        if kind == "lognormal":
            sketch.add(rng.lognormvariate(3.0, 2.5))
        elif kind == "uniform":
            sketch.add(rng.uniform(-1.0, 7200.0))
        elif kind == "pareto":
            sketch.add(0.001 * rng.paretovariate(0.4))
        elif kind == "zeros":
            sketch.add(0.0 if rng.random() < 0.7 else rng.expovariate(0.01))
        elif kind == "single":
            sketch.add(42.0, rng.randint(1, 10**9))
    return sketch


def shuffled_map(sketch: QuantileSketch, rng: random.Random) -> dict[int, int]:
    """A stored Map keeps insertion order, so feed keys unsorted."""
    items = list(sketch.to_map().items())
    rng.shuffle(items)
    return dict(items)


def test_grouped_sum_map_matches_python(client: Any) -> None:
    rng = random.Random(20240601)
    expected: dict[int, QuantileSketch] = {}
    rows: list[list[Any]] = []
    for group in range(60):
        merged = QuantileSketch()
        for row in range(rng.randint(1, 6)):
            sketch = random_sketch(rng)
            merged.merge(sketch)
            rows.append([group, row, shuffled_map(sketch, rng)])
        expected[group] = merged
    # edge groups: only empty maps (NULL), only the zero bucket, the extreme keys
    rows += [[1000, 0, {}], [1000, 1, {}]]
    expected[1000] = QuantileSketch()
    rows += [[1001, 0, {ZERO_KEY: 3}], [1001, 1, {ZERO_KEY: 2}]]
    expected[1001] = QuantileSketch.from_map({ZERO_KEY: 5})
    rows += [[1002, 0, {MAX_KEY - 1: 1, -345: 2}], [1002, 1, {MAX_KEY - 1: 4, ZERO_KEY: 1}]]
    expected[1002] = QuantileSketch.from_map({MAX_KEY - 1: 5, -345: 2, ZERO_KEY: 1})
    client.insert("sketch_rows", rows, column_names=["g", "row", "m"])

    columns = ", ".join(quantile_sql("sumMap(m)", q) for q in QS)
    result = client.query(select("SELECT g,", columns, "FROM sketch_rows GROUP BY g ORDER BY g"))
    assert [r[0] for r in result.result_rows] == sorted(expected)
    checked = 0
    for g, *sql_values in result.result_rows:
        py_values = [expected[g].quantile(q) for q in QS]
        for q, sql_value, py_value in zip(QS, sql_values, py_values, strict=True):
            assert same(sql_value, py_value), (g, q, sql_value, py_value)
            checked += py_value is not None
    assert checked > 500
    assert result.result_rows[-3][1:] == (None,) * len(QS)  # group 1000 is empty


def test_unsorted_map_column_matches_python(client: Any) -> None:
    rng = random.Random(7)
    sketches = [random_sketch(rng) for _ in range(40)]
    rows = [[5000, i, shuffled_map(s, rng)] for i, s in enumerate(sketches)]
    client.insert("sketch_rows", rows, column_names=["g", "row", "m"])
    columns = ", ".join(quantile_sql("m", q) for q in QS)
    result = client.query(
        select("SELECT row,", columns, "FROM sketch_rows WHERE g = 5000 ORDER BY row")
    )
    assert len(result.result_rows) == len(sketches)
    for row, *sql_values in result.result_rows:
        for q, sql_value in zip(QS, sql_values, strict=True):
            assert same(sql_value, sketches[row].quantile(q)), (row, q)


def test_result_type_is_nullable_float(client: Any) -> None:
    expr = quantile_sql("map(3, 2)::Map(Int16, UInt64)", 0.5)
    (type_name,) = client.query(select("SELECT toTypeName(", expr, ")")).result_rows[0]
    assert type_name == "Nullable(Float64)"


def test_invalid_q() -> None:
    with pytest.raises(ValueError, match="quantile"):
        quantile_sql("m", 1.5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.one_of(st.just(ZERO_KEY), st.integers(min_value=-345, max_value=2000)),
        st.integers(min_value=0, max_value=10**12),
        max_size=30,
    ),
    st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=5),
)
def test_literal_maps_match_python(client: Any, m: dict[int, int], qs: list[float]) -> None:
    literal = (
        "map(" + ", ".join(f"{k}, {v}" for k, v in m.items()) + ")::Map(Int16, UInt64)"
        if m
        else "map()::Map(Int16, UInt64)"
    )
    sketch = QuantileSketch.from_map(m)  # drops zero counts; SQL must not trip on them
    columns = ", ".join(quantile_sql(literal, q) for q in qs)
    sql_values = client.query(select("SELECT", columns)).result_rows[0]
    for q, sql_value in zip(qs, sql_values, strict=True):
        assert same(sql_value, sketch.quantile(q)), (m, q, sql_value)
