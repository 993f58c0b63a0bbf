"""QuantileSketch: the 1% relative-error promise, exact merging, the bucket contract."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.sketch import (
    GAMMA,
    MAX_KEY,
    MIN_VALUE,
    RELATIVE_ACCURACY,
    ZERO_KEY,
    QuantileSketch,
    bucket_key,
    bucket_value,
)

QS = (0.0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.29, 1 / 3, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0)
# The bound is exact in real arithmetic; allow float rounding at bucket edges.
TOLERANCE = RELATIVE_ACCURACY * (1 + 1e-9)


def nearest_rank(sorted_values: list[float], q: float) -> float:
    """Exact sample quantile: the ceil(q * n)-th smallest value, the first for q = 0."""
    rank = max(math.ceil(q * len(sorted_values)), 1)
    return sorted_values[rank - 1]


def sketch_of(values: list[float]) -> QuantileSketch:
    sketch = QuantileSketch()
    for value in values:
        sketch.add(value)
    return sketch


def assert_within_accuracy(values: list[float], sketch: QuantileSketch) -> None:
    ordered = sorted(max(v, 0.0) for v in values)
    for q in QS:
        exact = nearest_rank(ordered, q)
        estimate = sketch.quantile(q)
        assert estimate is not None
        if exact <= MIN_VALUE:
            assert estimate == 0.0, (q, exact, estimate)
        else:
            assert abs(estimate - exact) <= TOLERANCE * exact, (q, exact, estimate)


DISTRIBUTIONS = {
    "lognormal": lambda r: r.lognormvariate(3.0, 2.0),
    "lognormal_narrow": lambda r: r.lognormvariate(6.0, 0.3),
    "uniform": lambda r: r.uniform(0.0, 3600.0),
    "uniform_tiny": lambda r: r.uniform(0.0, 0.01),
    "pareto": lambda r: r.paretovariate(1.1),
    "pareto_very_heavy": lambda r: 0.01 * r.paretovariate(0.3),
    "exponential": lambda r: r.expovariate(1 / 120),
    "mixed_zero": lambda r: 0.0 if r.random() < 0.3 else r.lognormvariate(2.0, 1.5),
}


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
@pytest.mark.parametrize("n", [1, 2, 7, 100, 20_000])
def test_relative_error_against_nearest_rank(name: str, n: int) -> None:
    rng = random.Random(f"{name}-{n}")
    values = [DISTRIBUTIONS[name](rng) for _ in range(n)]
    sketch = sketch_of(values)
    assert sketch.count == n
    assert_within_accuracy(values, sketch)


@given(
    st.lists(
        st.floats(min_value=-10.0, max_value=1e9, allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=200,
    )
)
def test_relative_error_any_data(values: list[float]) -> None:
    assert_within_accuracy(values, sketch_of(values))


@given(st.floats(min_value=MIN_VALUE, max_value=1e12, exclude_min=True))
def test_bucket_contract(value: float) -> None:
    key = bucket_key(value)
    assert key == math.ceil(math.log(value) / math.log(GAMMA))
    assert -(2**15) < key < 2**15
    assert abs(bucket_value(key) - value) <= TOLERANCE * value


def test_bucket_representative_maps_back_to_its_bucket() -> None:
    lowest = bucket_key(math.nextafter(MIN_VALUE, 1.0))
    # The lowest bucket straddles MIN_VALUE, so its representative may fall below it.
    assert bucket_value(lowest) == pytest.approx(MIN_VALUE, rel=RELATIVE_ACCURACY)
    for key in range(lowest + 1, bucket_key(1e9) + 1):
        assert bucket_key(bucket_value(key)) == key
    assert bucket_value(ZERO_KEY) == 0.0


def test_bucket_key_edges() -> None:
    assert bucket_key(MIN_VALUE) == ZERO_KEY
    assert bucket_key(0.0) == ZERO_KEY
    assert bucket_key(-3.0) == ZERO_KEY
    assert bucket_key(-math.inf) == ZERO_KEY
    assert bucket_key(math.nextafter(MIN_VALUE, 1.0)) > ZERO_KEY
    assert bucket_key(math.inf) == MAX_KEY
    assert bucket_key(1e300) == MAX_KEY
    assert bucket_key(1e280) < MAX_KEY
    with pytest.raises(ValueError, match="NaN"):
        bucket_key(math.nan)


def test_zero_and_negative_values_go_to_zero_bucket() -> None:
    sketch = QuantileSketch()
    for value in (0.0, -1.0, -1e9, MIN_VALUE, MIN_VALUE / 2):
        sketch.add(value)
    assert sketch.to_map() == {ZERO_KEY: 5}
    assert sketch.quantile(0.0) == 0.0
    assert sketch.quantile(1.0) == 0.0
    sketch.add(10.0)
    assert sketch.quantile(5 / 6) == 0.0
    assert sketch.quantile(0.9) == pytest.approx(10.0, rel=RELATIVE_ACCURACY)


def test_empty_sketch() -> None:
    sketch = QuantileSketch()
    assert sketch.count == 0
    assert len(sketch) == 0
    for q in QS:
        assert sketch.quantile(q) is None
    assert sketch.quantiles(QS) == [None] * len(QS)
    assert sketch.to_map() == {}
    assert sketch == QuantileSketch.from_map({})


def test_rank_convention() -> None:
    sketch = sketch_of([1.0, 2.0, 3.0, 4.0])
    # smallest bucket whose cumulative count >= q * count; q = 0 gives the first bucket
    expected = {0.0: 1.0, 0.1: 1.0, 0.25: 1.0, 0.26: 2.0, 0.5: 2.0, 0.75: 3.0, 0.76: 4.0, 1: 4.0}
    for q, value in expected.items():
        assert sketch.quantile(q) == pytest.approx(value, rel=RELATIVE_ACCURACY)
        assert sketch.quantile(q) == bucket_value(bucket_key(value))


def test_quantiles_matches_quantile() -> None:
    rng = random.Random(7)
    sketch = sketch_of([rng.lognormvariate(1, 2) for _ in range(500)] + [0.0] * 20)
    assert sketch.quantiles(QS) == [sketch.quantile(q) for q in QS]


@pytest.mark.parametrize("q", [-0.01, 1.01, math.nan])
def test_quantile_out_of_range(q: float) -> None:
    with pytest.raises(ValueError, match="quantile"):
        sketch_of([1.0]).quantile(q)


def test_add_with_count() -> None:
    many = QuantileSketch()
    many.add(12.5, 3)
    many.add(12.5, 0)
    assert many == sketch_of([12.5, 12.5, 12.5])
    assert many.count == 3
    with pytest.raises(ValueError, match="count"):
        many.add(1.0, -1)
    with pytest.raises(ValueError, match="NaN"):
        many.add(math.nan)
    assert many.count == 3


values_st = st.lists(
    st.floats(min_value=-1.0, max_value=1e7, allow_nan=False, allow_infinity=False),
    max_size=50,
)


@given(values_st, values_st, values_st)
def test_merge_associative_commutative_and_exact(
    a: list[float], b: list[float], c: list[float]
) -> None:
    sa, sb, sc = sketch_of(a), sketch_of(b), sketch_of(c)

    ab = sa.copy()
    ab.merge(sb)
    ba = sb.copy()
    ba.merge(sa)
    assert ab == ba

    ab_c = ab.copy()
    ab_c.merge(sc)
    bc = sb.copy()
    bc.merge(sc)
    a_bc = sa.copy()
    a_bc.merge(bc)
    assert ab_c == a_bc
    assert ab_c == sketch_of(a + b + c)
    assert ab_c.count == len(a) + len(b) + len(c)
    # inputs are untouched
    assert sa == sketch_of(a)
    assert sb == sketch_of(b)


@given(st.lists(values_st, max_size=8), st.randoms(use_true_random=False))
def test_merge_any_order(chunks: list[list[float]], rnd: random.Random) -> None:
    expected = sketch_of([v for chunk in chunks for v in chunk])
    sketches = [sketch_of(chunk) for chunk in chunks]
    rnd.shuffle(sketches)
    merged = QuantileSketch()
    for sketch in sketches:
        merged.merge(sketch)
    assert merged == expected
    assert merged.quantiles(QS) == expected.quantiles(QS)


def test_merge_with_itself_doubles() -> None:
    sketch = sketch_of([1.0, 5.0, 5.0])
    sketch.merge(sketch)
    assert sketch == sketch_of([1.0, 5.0, 5.0] * 2)


@given(values_st)
def test_serialization_round_trip(values: list[float]) -> None:
    sketch = sketch_of(values)
    as_map = sketch.to_map()
    assert list(as_map) == sorted(as_map)
    assert all(isinstance(k, int) and isinstance(c, int) and c > 0 for k, c in as_map.items())
    restored = QuantileSketch.from_map(as_map)
    assert restored == sketch
    assert restored.count == sketch.count
    assert restored.quantiles(QS) == sketch.quantiles(QS)
    as_map[12345] = 1  # to_map returns a copy
    assert sketch.to_map() != as_map


def test_from_map_drops_zero_counts_and_validates() -> None:
    assert QuantileSketch.from_map({3: 0, 5: 2}) == QuantileSketch.from_map({5: 2})
    assert QuantileSketch.from_map({5: 2}).count == 2
    with pytest.raises(ValueError, match="Int16"):
        QuantileSketch.from_map({40000: 1})
    with pytest.raises(ValueError, match="negative"):
        QuantileSketch.from_map({1: -1})
    with pytest.raises(ValueError, match="integral"):
        QuantileSketch.from_map({1: 1.5})


def test_copy_is_independent() -> None:
    sketch = sketch_of([1.0, 2.0])
    clone = sketch.copy()
    clone.add(3.0)
    assert sketch.count == 2
    assert clone.count == 3
    assert sketch != clone


def test_equality_and_hash() -> None:
    assert sketch_of([1.0]) == sketch_of([1.0])
    assert sketch_of([1.0]) != sketch_of([2.0])
    assert sketch_of([1.0]) != {0: 1}
    with pytest.raises(TypeError):
        hash(QuantileSketch())


@settings(max_examples=25)
@given(st.floats(min_value=0.5, max_value=50_000.0))
def test_large_counts(value: float) -> None:
    sketch = QuantileSketch()
    sketch.add(value, 10**12)
    sketch.add(0.0, 10**12)
    assert sketch.count == 2 * 10**12
    assert sketch.quantile(0.5) == 0.0
    assert sketch.quantile(0.5000001) == pytest.approx(value, rel=TOLERANCE)
