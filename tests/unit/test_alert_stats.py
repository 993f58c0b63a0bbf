"""The detector's statistical tests: calibration (false alarms at most alpha), power,
monotonicity, margins, stratification, and the helpers the notifications use."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.alerts.layout import BINS, STEP, bin_of_key, bin_of_seconds, edge_seconds
from streams.alerts.stats import (
    burn_rate,
    combine,
    critical,
    mean_evidence,
    p_value,
    proportion_evidence,
    proportion_threshold_evidence,
    quantile_from_hist,
    rate_evidence,
    sample_size,
    share_above,
    slow_share_evidence,
    wilson_interval,
    z_for_alpha,
)
from streams.sketch import GAMMA, ZERO_KEY, bucket_key

ONE = np.ones((1, 1))


def z_of(d, v, k=0.0, cc=0.5):
    """z of one stratum (without the skew correction)."""
    z, _ = combine(np.atleast_2d(d), np.atleast_2d(v), np.atleast_2d(k), ONE, cc)
    return float(z[0, 0])


def fires(d, v, k, alpha: float) -> np.ndarray:
    """Vectorized: does the skew-corrected test fire at this alpha (one stratum each)?"""
    d, v, k = (np.asarray(a, dtype=float) for a in (d, v, k))
    z = (d - 0.5) / np.sqrt(v)
    return z >= critical(z_for_alpha(alpha), k / v**1.5)


def hist_of(seconds: np.ndarray) -> np.ndarray:
    h = np.zeros(BINS, dtype=np.int64)
    for s in seconds:
        h[bin_of_seconds(float(s))] += 1
    return h


# --------------------------------------------------------------------------- basics


def test_z_and_p_are_inverse() -> None:
    for alpha in (0.05, 1e-3, 1e-5):
        assert p_value(z_for_alpha(alpha)) == pytest.approx(alpha, rel=1e-6)
    assert z_for_alpha(0.05) == pytest.approx(1.6449, abs=1e-4)
    with pytest.raises(ValueError):
        z_for_alpha(0.7)


def test_wilson_interval_known_values() -> None:
    # Wilson (1927) as tabulated by Newcombe (1998): 81/263 -> 0.2553 .. 0.3662
    lo, hi = wilson_interval(81, 263)
    assert float(lo) == pytest.approx(0.2553, abs=5e-4)
    assert float(hi) == pytest.approx(0.3662, abs=5e-4)
    lo, hi = wilson_interval(0, 10)
    assert float(lo) == 0.0 and 0.27 < float(hi) < 0.29  # never a zero-width interval
    lo, hi = wilson_interval(0, 0)
    assert (float(lo), float(hi)) == (0.0, 1.0)


@given(st.integers(0, 500), st.integers(1, 500))
def test_wilson_interval_contains_the_estimate(k: int, n: int) -> None:
    k = min(k, n)
    lo, hi = wilson_interval(k, n)
    assert float(lo) <= k / n <= float(hi)


def test_sample_size_matches_the_textbook_formula() -> None:
    # one-sided, alpha 0.05, power 0.9, 0.5 -> 0.3: ((1.645*0.5 + 1.2816*0.458)/0.2)^2
    expected = ((1.6449 * 0.5 + 1.2816 * math.sqrt(0.21)) / 0.2) ** 2
    assert sample_size(0.5, 0.3, 0.05, 0.9) == pytest.approx(expected, rel=1e-3)
    assert sample_size(0.85, 0.45, 0.001, 0.9) < sample_size(0.85, 0.65, 0.001, 0.9)
    assert sample_size(0.5, 0.5, 0.01, 0.9) == math.inf


def test_burn_rate() -> None:
    assert float(burn_rate(10, 100, 0.95)) == pytest.approx(2.0)
    assert float(burn_rate(0, 0, 0.95)) == 0.0


# --------------------------------------------------------------------------- calibration


@pytest.mark.parametrize(
    ("p", "n1", "n0"), [(0.88, 20, 2000), (0.95, 40, 5000), (0.5, 60, 500), (0.1, 200, 4000)]
)
def test_proportion_test_false_alarms_at_most_alpha(p: float, n1: int, n0: int) -> None:
    """Exact binomial probability of the rejection region, baseline taken as known."""
    x0 = round(p * n0)
    xs = np.arange(n1 + 1)
    pmf = np.array([math.comb(n1, k) * p**k * (1 - p) ** (n1 - k) for k in xs])
    for down in (True, False):
        d, v, k = proportion_evidence(xs, n1, x0, n0, 0.0, down=down)
        for alpha in (1e-2, 1e-3, 1e-5):
            assert pmf[fires(d, v, k, alpha)].sum() <= alpha * 1.05, (alpha, p, n1, down)


def test_without_the_skew_correction_small_csat_windows_fire_too_often() -> None:
    """Why ``critical`` exists: 20 answers at 88 % satisfied, nominal 1e-5."""
    p, n1, n0 = 0.88, 20, 5000
    xs = np.arange(n1 + 1)
    pmf = np.array([math.comb(n1, k) * p**k * (1 - p) ** (n1 - k) for k in xs])
    d, v, k = proportion_evidence(xs, n1, round(p * n0), n0, 0.0, down=True)
    plain = (d - 0.5) / np.sqrt(v) >= z_for_alpha(1e-5)
    assert pmf[plain].sum() > 3e-5
    assert pmf[fires(d, v, k, 1e-5)].sum() <= 1e-5


def test_rate_test_false_alarms_at_most_alpha() -> None:
    rng = np.random.default_rng(2)
    trials = 200_000
    x1 = rng.poisson(30, trials)
    x0 = rng.poisson(120, trials)  # four windows of baseline
    for down in (True, False):
        d, v, k = rate_evidence(x1, 1.0, x0, 4.0, 1.0, down)
        assert fires(d, v, k, 1e-3).mean() <= 1.2e-3


def test_nps_test_false_alarms_at_most_alpha() -> None:
    rng = np.random.default_rng(3)
    trials, n1, n0 = 200_000, 40, 1000
    probs = [0.45, 0.30, 0.25]  # promoter, passive, detractor
    c1 = rng.multinomial(n1, probs, trials)
    c0 = rng.multinomial(n0, probs, trials)
    s1, s0 = c1[:, 0] - c1[:, 2], c0[:, 0] - c0[:, 2]
    q0 = c0[:, 0] + c0[:, 2]
    d, v, k = mean_evidence(s1, n1, s0, q0, n0, 0.0)
    assert fires(d, v, k, 1e-3).mean() <= 1.2e-3


def test_slow_share_test_false_alarms_at_most_alpha() -> None:
    rng = np.random.default_rng(4)
    base = hist_of(np.exp(rng.normal(math.log(50), 1.0, 5000)))
    hits = 0
    trials = 3000
    for _ in range(trials):
        h1 = hist_of(np.exp(rng.normal(math.log(50), 1.0, 40)))
        d, v, k, _ = slow_share_evidence(h1[None], base[None], 0.5, 1.0)
        hits += bool(fires(d[0], v[0], k[0], 0.01))
    assert hits / trials <= 0.015


# --------------------------------------------------------------------------- power, margin


def test_slow_share_sees_a_slowdown_and_tolerates_the_margin() -> None:
    rng = np.random.default_rng(5)
    base = hist_of(np.exp(rng.normal(math.log(50), 1.0, 20000)))
    slow3 = hist_of(np.exp(rng.normal(math.log(150), 1.0, 60)))
    d, v, _, _ = slow_share_evidence(slow3[None], base[None], 0.5, 1.0)
    assert z_of(d, v) > 4.0
    # 1.2x slower, big sample: significant without a margin, not with a 1.3x margin
    slow12 = hist_of(np.exp(rng.normal(math.log(60), 1.0, 20000)))
    d, v, _, _ = slow_share_evidence(slow12[None], base[None], 0.5, 1.0)
    assert z_of(d, v) > 4.0
    d, v, _, _ = slow_share_evidence(slow12[None], base[None], 0.5, 1.3)
    assert z_of(d, v) < 0.0


def test_proportion_margin_absorbs_a_small_drift() -> None:
    d, v, _ = proportion_evidence(8_500 - 200, 10_000, 8_500, 10_000, 0.03, down=True)
    assert z_of(d, v) < 0  # 2 points lower, 3 tolerated
    d, v, _ = proportion_evidence(8_500 - 700, 10_000, 8_500, 10_000, 0.03, down=True)
    assert z_of(d, v) > 4  # 7 points lower


@settings(max_examples=200)
@given(st.integers(1, 200), st.integers(0, 200), st.integers(50, 5000), st.floats(0.05, 0.95))
def test_proportion_evidence_grows_as_the_window_gets_worse(n1: int, x: int, n0: int, p: float):
    x = min(x, n1)
    x0 = round(p * n0)
    z_hi = z_of(*proportion_evidence(x, n1, x0, n0, 0.0, down=True)[:2])
    if x > 0:
        z_lo_x = z_of(*proportion_evidence(x - 1, n1, x0, n0, 0.0, down=True)[:2])
        assert z_lo_x >= z_hi  # one fewer satisfied answer: more evidence of a drop
    up = z_of(*proportion_evidence(x, n1, x0, n0, 0.0, down=False)[:2])
    assert (z_hi > 0) + (up > 0) <= 1  # never evidence both ways


@settings(max_examples=100)
@given(st.integers(0, 300), st.integers(1, 300), st.floats(1.0, 3.0))
def test_rate_evidence_monotone_in_count_and_margin(x1: int, x0: int, margin: float) -> None:
    """More events: no less evidence of a rise (the evidence, not z: z's denominator moves)."""
    d1, _, _ = rate_evidence(x1, 1.0, x0, 4.0, margin, down=False)
    d2, _, _ = rate_evidence(x1 + 1, 1.0, x0, 4.0, margin, down=False)
    assert float(d2) >= float(d1)
    d3, _, _ = rate_evidence(x1, 1.0, x0, 4.0, margin + 0.5, down=False)
    assert float(d3) <= float(d1) + 1e-9


def test_threshold_test() -> None:
    d, v, _ = proportion_threshold_evidence(30, 100, 0.7, down=True)  # 30% vs a 70% floor
    assert z_of(d, v) > 8
    d, v, _ = proportion_threshold_evidence(72, 100, 0.7, down=True)
    assert z_of(d, v) < 0


# --------------------------------------------------------------------------- stratification


def test_a_channel_mix_shift_is_not_a_slowdown() -> None:
    """Chat is fast, email slow; a window with more email samples is not slower per channel."""
    rng = np.random.default_rng(6)
    chat0 = hist_of(np.exp(rng.normal(math.log(50), 0.9, 6000)))
    mail0 = hist_of(np.exp(rng.normal(math.log(9000), 1.0, 4000)))
    chat1 = hist_of(np.exp(rng.normal(math.log(50), 0.9, 20)))
    mail1 = hist_of(np.exp(rng.normal(math.log(9000), 1.0, 80)))  # mostly email now
    h1 = np.stack([chat1, mail1])[None]
    h0 = np.stack([chat0, mail0])[None]
    d, v, _, _ = slow_share_evidence(h1, h0, 0.5, 1.0)
    stratified = combine(d, v, np.zeros_like(d), np.ones((1, 2)), 0.5)[0][0, 0]
    pooled_d, pooled_v, _, _ = slow_share_evidence(h1.sum(axis=1), h0.sum(axis=1), 0.5, 1.0)
    assert stratified < 2.5
    assert z_of(pooled_d, pooled_v) > 5  # what an unstratified test would have said


# --------------------------------------------------------------------------- histograms


def test_bins_follow_the_sketch_keys() -> None:
    assert bin_of_key(ZERO_KEY) == 0 and bin_of_seconds(0.0) == 0 and bin_of_seconds(0.9) == 0
    for seconds in (1.5, 30.0, 3600.0, 86_400.0):
        b = bin_of_seconds(seconds)
        assert edge_seconds(b - 1) < seconds * (1 + 1e-9) and seconds <= edge_seconds(b) * GAMMA
        assert b == (bucket_key(seconds) - 1) // STEP + 1
    assert bin_of_seconds(1e9) == BINS - 1


def test_quantile_and_share_above_from_a_histogram() -> None:
    rng = np.random.default_rng(7)
    samples = np.exp(rng.normal(math.log(100), 1.0, 50_000))
    h = hist_of(samples)
    for q in (0.5, 0.9):
        exact = float(np.quantile(samples, q))
        assert quantile_from_hist(h, q) == pytest.approx(exact, rel=0.08)
    assert float(share_above(h, 300.0)) == pytest.approx((samples > 300).sum(), rel=0.05)
    assert quantile_from_hist(np.zeros(BINS), 0.5) is None


# --------------------------------------------------------------------------- random effect


def _proportion_parts(p_by_window: list[float], n: int, seed: int) -> np.ndarray:
    from streams.alerts.layout import WIDTH, column

    rng = np.random.default_rng(seed)
    parts = np.zeros((1, len(p_by_window), 1, WIDTH), dtype=np.int64)
    for k, p in enumerate(p_by_window):
        parts[0, k, 0, column("csat_responses")] = n
        parts[0, k, 0, column("csat_satisfied")] = rng.binomial(n, p)
    return parts


def test_the_random_effect_measures_variation_between_baseline_windows() -> None:
    from streams.alerts.evidence import between_windows
    from streams.alerts.rules import parse_rules

    rule = parse_rules(
        "rules:\n  - {name: c, kpi: csat_pct, dispersion: auto,"
        " baseline: {kind: same_hour_of_day, days: 14}}\n",
        "t",
    ).rules[0]
    assert rule.random_effect
    exposure = np.ones((1, 14))
    flat = [between_windows(rule, _proportion_parts([0.88] * 14, 400, s), exposure,
                            _proportion_parts([0.88] * 14, 400, s).sum(axis=1))[0, 0]
            for s in range(40)]  # fmt: skip
    assert np.median(flat) < 1e-4  # no drift: (almost) nothing added
    rng = np.random.default_rng(9)
    days = list(np.clip(rng.normal(0.88, 0.03, 14), 0.5, 0.99))
    parts = _proportion_parts(days, 400, 1)
    tau2 = between_windows(rule, parts, exposure, parts.sum(axis=1))[0, 0]
    assert 0.0003 < tau2 < 0.003  # about 0.03 ** 2
    outlier = _proportion_parts([0.88] * 13 + [0.40], 400, 2)  # a past incident in one day
    assert between_windows(rule, outlier, exposure, outlier.sum(axis=1))[0, 0] < 0.0003
