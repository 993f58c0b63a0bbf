"""The statistical tests of the drop detector: score tests with a tolerance margin.

Every test is written as *evidence* ``D`` (how far the window is on the bad side of the
null boundary, in sample units), its variance ``V`` and third cumulant ``K`` under that
boundary, per stratum. Strata (one per leaf series, e.g. a team's channels) are combined
Cochran-Mantel-Haenszel style, ``z = (sum D - cc) / sqrt(sum V)``, so a group is judged
within comparable sub-populations: a shift in the channel mix of a team is not mistaken
for a slowdown. Counts are skewed (a CSAT of 88 % has a long tail towards low values), so
the critical value is moved by the Cornish-Fisher term ``gamma (z^2 - 1) / 6`` with
``gamma = sum K / (sum V)^1.5`` (:func:`critical`): without it a nominal 1e-5 test
fires about 3.5 times too often on 20 answers (tests/unit/test_alert_stats.py).

The null hypothesis is "no worse than the baseline by more than ``margin``" (a
non-inferiority test), so slow drift smaller than the margin never alarms however many
samples a window holds. The variance includes the baseline's own sampling error, and is
taken at the null boundary (a score test, the test the Wilson interval inverts), which
keeps it sane for small windows where a Wald variance would collapse to zero.

Arrays broadcast: callers pass ``[rungs, leaves]`` arrays and sum over leaves.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Final

import numpy as np

from streams.alerts.layout import BINS, edge_log

__all__ = [
    "burn_rate",
    "cdf_at",
    "combine",
    "critical",
    "mean_evidence",
    "p_value",
    "proportion_evidence",
    "proportion_threshold_evidence",
    "quantile_from_hist",
    "rate_evidence",
    "rate_threshold_evidence",
    "sample_size",
    "share_above",
    "slow_share_evidence",
    "wilson_interval",
    "z_for_alpha",
]

_NORMAL: Final = NormalDist()
_EPS: Final = 1e-6


def z_for_alpha(alpha: float) -> float:
    """One-sided critical value: P(Z >= z) = alpha."""
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be within (0, 0.5), got {alpha}")
    return _NORMAL.inv_cdf(1.0 - alpha)


def p_value(z: float) -> float:
    """One-sided p-value of a z score."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def wilson_interval(k: np.ndarray | float, n: np.ndarray | float, z: float = 1.96):
    """Wilson score interval of a proportion ``k / n`` (``(0, 1)`` when ``n`` is 0)."""
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    safe = np.maximum(n, 1.0)
    p = k / safe
    z2 = z * z
    denom = 1.0 + z2 / safe
    centre = (p + z2 / (2 * safe)) / denom
    half = z * np.sqrt(p * (1 - p) / safe + z2 / (4 * safe * safe)) / denom
    # The exact interval ends at 0 (or 1) when k is 0 (or n); rounding must not move it.
    lo = np.where((n > 0) & (k > 0), np.clip(centre - half, 0.0, 1.0), 0.0)
    hi = np.where((n > 0) & (k < n), np.clip(centre + half, 0.0, 1.0), 1.0)
    return lo, hi


def _bad(observed: np.ndarray, expected: np.ndarray, down: bool) -> np.ndarray:
    return expected - observed if down else observed - expected


def _k3(n, p, down: bool):
    """Third cumulant of the evidence of a binomial count (``n`` trials, probability p)."""
    k = n * p * (1 - p) * (1 - 2 * p)
    return -k if down else k


def proportion_evidence(x1, n1, x0, n0, margin: float, down: bool):
    """Window proportion ``x1/n1`` against the baseline ``x0/n0`` moved by ``margin``.

    ``down``: a drop is bad (CSAT); else a rise is bad (SLA breaches). Returns (D, V, K).
    """
    n0f = np.asarray(n0, dtype=float)
    n1f = np.asarray(n1, dtype=float)
    p0 = (np.asarray(x0, dtype=float) + 0.5) / (n0f + 1.0)  # never exactly 0 or 1
    ph = np.minimum(np.maximum(p0 - margin if down else p0 + margin, _EPS), 1 - _EPS)
    d = _bad(np.asarray(x1, dtype=float), n1f * ph, down)
    v = n1f * ph * (1 - ph) + n1f * n1f * p0 * (1 - p0) / np.maximum(n0f, 1.0)
    ok = n0f > 0
    return np.where(ok, d, 0.0), np.where(ok, v, 0.0), np.where(ok, _k3(n1f, ph, down), 0.0)


def proportion_threshold_evidence(x1, n1, threshold: float, down: bool):
    """Window proportion against a fixed value (no baseline error). Returns (D, V, K)."""
    n1f = np.asarray(n1, dtype=float)
    ph = min(max(threshold, _EPS), 1 - _EPS)
    d = _bad(np.asarray(x1, dtype=float), n1f * ph, down)
    return d, n1f * ph * (1 - ph), _k3(n1f, ph, down)


def mean_evidence(s1, n1, s0, q0, n0, margin: float):
    """NPS-style mean of scores in {-1, 0, 1} (``s`` = sum, ``q`` = sum of squares).

    A drop is bad; the baseline mean moves down by ``margin``. Returns (D, V, K).
    """
    n0f = np.asarray(n0, dtype=float)
    n1f = np.asarray(n1, dtype=float)
    safe = np.maximum(n0f, 1.0)
    mu0 = np.asarray(s0, dtype=float) / safe
    sq = np.asarray(q0, dtype=float) / safe
    var0 = np.maximum(sq - mu0 * mu0, 0.05)
    plus, minus = (sq + mu0) / 2, (sq - mu0) / 2  # promoter and detractor shares
    m3 = plus * (1 - mu0) ** 3 + (1 - plus - minus) * (-mu0) ** 3 + minus * (-1 - mu0) ** 3
    d = n1f * (mu0 - margin) - np.asarray(s1, dtype=float)
    v = n1f * var0 + n1f * n1f * var0 / safe
    ok = n0f > 0
    return np.where(ok, d, 0.0), np.where(ok, v, 0.0), np.where(ok, -n1f * m3, 0.0)


def rate_evidence(x1, e1, x0, e0, ratio: float, down: bool):
    """Rate ``x1/e1`` against ``ratio * x0/e0`` (Poisson counts over exposures).

    Conditional test: given ``x1 + x0`` events, ``x1`` is binomial with
    ``q = ratio*e1 / (ratio*e1 + e0)`` on the null boundary; ``ratio`` is below 1 for
    drops (1 / the tolerated factor), above 1 for rises. Returns (D, V, K).
    """
    e1f = np.asarray(e1, dtype=float)
    e0f = np.asarray(e0, dtype=float)
    x1f = np.asarray(x1, dtype=float)
    total = x1f + np.asarray(x0, dtype=float)
    denom = ratio * e1f + e0f
    q = np.where(denom > 0, ratio * e1f / np.where(denom > 0, denom, 1.0), 0.0)
    d = _bad(x1f, total * q, down)
    ok = (e0f > 0) & (e1f > 0)
    k = _k3(total, q, down)
    return np.where(ok, d, 0.0), np.where(ok, total * q * (1 - q), 0.0), np.where(ok, k, 0.0)


def rate_threshold_evidence(x1, expected, down: bool):
    """Poisson count against a fixed expected count. Returns (D, V, K)."""
    ex = np.asarray(expected, dtype=float)
    return _bad(np.asarray(x1, dtype=float), ex, down), ex, -ex if down else ex


def cdf_at(cum: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Cumulative share at a fractional bin-edge position (log-linear inside a bin).

    ``cum[..., b]`` is the share up to the upper edge of bin ``b``; position ``p`` is in
    edge units (edge of bin b = b), bins >= 1 being log-uniform.
    """
    pos = np.minimum(np.maximum(pos, 0.0), BINS - 1.0)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, BINS - 1)
    frac = pos - lo
    c_lo = np.take_along_axis(cum, lo[..., None], axis=-1)[..., 0]
    c_hi = np.take_along_axis(cum, hi[..., None], axis=-1)[..., 0]
    return c_lo + frac * (c_hi - c_lo)


def slow_share_evidence(
    h1: np.ndarray, h0: np.ndarray, q: float, factor: float, prepared: dict | None = None
):
    """Share of slow waits: are more window samples above the baseline q-quantile?

    ``h1``/``h0``: window and baseline histograms ``[..., BINS]``. The threshold is the
    upper edge of the bin holding the baseline's q-quantile; under the null (times at most
    ``factor`` times slower) the share of window samples above it is at most the baseline
    share above ``threshold / factor``. Returns (D, V, K, edge bin) per stratum.
    ``prepared`` (a dict) caches the baseline-only terms between calls with the same ``h0``.
    """
    base = prepared.get("slow") if prepared is not None else None
    if base is None:
        h0f = h0.astype(float)
        n0 = h0f.sum(axis=-1)
        safe = np.maximum(n0, 1.0)
        cum0 = np.cumsum(h0f, axis=-1) / safe[..., None]
        edge = np.minimum((cum0 < q).sum(axis=-1), BINS - 2)  # first bin reaching q
        shift = math.log(factor) / float(edge_log(1.0))
        ph = 1.0 - cdf_at(cum0, edge - shift)
        ph = np.minimum(np.maximum((ph * n0 + 0.5) / (n0 + 1.0), _EPS), 1 - _EPS)
        pq = ph * (1 - ph)
        base = (n0, safe, edge[..., None], ph, pq, pq * (1 - 2 * ph))
        if prepared is not None:
            prepared["slow"] = base
    n0, safe, edge, ph, pq, k3 = base
    n1 = h1.sum(axis=-1).astype(float)
    fast1 = np.take_along_axis(np.cumsum(h1, axis=-1), edge, axis=-1)[..., 0]
    d = (n1 - fast1) - n1 * ph
    v = n1 * pq + n1 * n1 * pq / safe
    ok = n0 > 0
    return np.where(ok, d, 0.0), np.where(ok, v, 0.0), np.where(ok, n1 * k3, 0.0), edge[..., 0]


def share_above(h: np.ndarray, seconds: float) -> np.ndarray:
    """Samples (fractional at the bin edge) above ``seconds`` in histograms ``[..., BINS]``."""
    n = h.sum(axis=-1).astype(float)
    cum = np.cumsum(h, axis=-1).astype(float)
    pos = np.full(n.shape, math.log(max(seconds, 1.0)) / float(edge_log(1.0)))
    return n - cdf_at(cum, pos)


def quantile_from_hist(h: np.ndarray, q: float) -> float | None:
    """The q-quantile (seconds) of one histogram, log-interpolated inside its bin."""
    h = np.asarray(h, dtype=float)
    n = h.sum()
    if n <= 0:
        return None
    cum = np.cumsum(h)
    rank = q * n
    b = int(np.searchsorted(cum, rank))
    b = min(b, BINS - 1)
    if b == 0:
        return 1.0
    before = cum[b - 1]
    frac = (rank - before) / h[b] if h[b] else 1.0
    return float(math.exp(float(edge_log(b - 1 + min(max(frac, 0.0), 1.0)))))


def combine(d: np.ndarray, v: np.ndarray, k: np.ndarray, members: np.ndarray, cc: float):
    """Sum strata into groups (``members`` [groups, leaves] of 0/1): (z, gamma) [.., groups].

    ``cc`` is the continuity correction (half the evidence step); ``gamma`` the skewness
    of the summed evidence, for :func:`critical`.
    """
    dg = d @ members.T
    vg = v @ members.T
    kg = k @ members.T
    ok = vg > 0
    sd = np.sqrt(np.where(ok, vg, 1.0))
    z = np.where(ok, (dg - cc) / sd, 0.0)
    gamma = np.where(ok, kg / (sd * sd * sd), 0.0)
    return z, gamma


def critical(z_alpha: float, gamma: np.ndarray) -> np.ndarray:
    """Cornish-Fisher critical value of a statistic with skewness ``gamma``."""
    shift = gamma * (z_alpha * z_alpha - 1.0) / 6.0
    return z_alpha + np.minimum(np.maximum(shift, -0.5), 3.0)


def burn_rate(bad, total, objective: float):
    """SLO burn rate: bad share over the error budget ``1 - objective`` (0 when no data)."""
    bad = np.asarray(bad, dtype=float)
    total = np.asarray(total, dtype=float)
    budget = 1.0 - objective
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, bad / np.where(total > 0, total, 1.0) / budget, 0.0)


def sample_size(p0: float, p1: float, alpha: float, power: float) -> float:
    """Samples a one-sided one-sample test of ``p0`` needs to see ``p1`` at this power."""
    if p0 == p1:
        return math.inf
    za = z_for_alpha(alpha)
    zb = _NORMAL.inv_cdf(power)
    num = za * math.sqrt(p0 * (1 - p0)) + zb * math.sqrt(p1 * (1 - p1))
    return (num / abs(p1 - p0)) ** 2
