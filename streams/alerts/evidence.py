"""Per-leaf evidence of one rule: the test's (D, V, K) for every rung and stratum.

Everything here depends on the window and baseline sums only (pure numpy): the families
of :mod:`streams.alerts.kpis` mapped onto the tests of :mod:`streams.alerts.stats`, plus
the random effect measured between a seasonal baseline's windows.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from streams.alerts.layout import column, hist_slice
from streams.alerts.rules import Rule
from streams.alerts.stats import (
    mean_evidence,
    proportion_evidence,
    proportion_threshold_evidence,
    rate_evidence,
    rate_threshold_evidence,
    share_above,
    slow_share_evidence,
)

__all__ = [
    "MIN_STRATUM",
    "between_windows",
    "leaf_evidence",
    "nps_counts",
    "proportion_counts",
    "slo_counts",
]

# A leaf whose baseline holds fewer samples is left out of the test (its own baseline
# would be noise); its window samples then do not count towards min_count either.
MIN_STRATUM: Final = 20


def proportion_counts(rule: Rule, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = rule.kpi
    return a[..., column(k.num)], a[..., column(k.den)]


def nps_counts(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p, d = a[..., column("nps_promoters")], a[..., column("nps_detractors")]
    return p - d, p + d, a[..., column("nps_responses")]


def leaf_evidence(
    rule: Rule,
    w: np.ndarray,
    b: np.ndarray,
    e1: np.ndarray,
    e0: np.ndarray,
    prepared: dict[str, object] | None = None,
):
    """(D, V, K, n1, n0) per rung and leaf ``[R, L]`` of a baseline or threshold rule.

    ``w``/``b``: window and baseline sums ``[R, L, W]``; ``e1``/``e0``: window and
    baseline minutes ``[R]`` (volume exposure). ``prepared`` caches terms that depend on
    the baseline only (valid while ``b`` is unchanged).
    """
    k = rule.kpi
    fam = k.family
    base = rule.kind == "baseline"
    thr = rule.threshold
    if fam == "proportion":
        x1, n1 = proportion_counts(rule, w)
        x0, n0 = proportion_counts(rule, b)
        if base:
            d, v, k3 = proportion_evidence(x1, n1, x0, n0, rule.margin / k.scale, rule.down)
        else:
            d, v, k3 = proportion_threshold_evidence(x1, n1, thr / k.scale, rule.down)
    elif fam == "nps":
        s1, _, n1 = nps_counts(w)
        s0, q0, n0 = nps_counts(b)
        if base:
            d, v, k3 = mean_evidence(s1, n1, s0, q0, n0, rule.margin / k.scale)
        else:
            mu = thr / k.scale
            d, v, k3 = n1 * mu - s1, n1 * (1 - mu * mu), np.zeros(np.shape(n1))
    elif fam == "rate":
        x1, n1 = proportion_counts(rule, w)
        x0, n0 = proportion_counts(rule, b)
        m = max(rule.margin, 1.0)
        if base:
            d, v, k3 = rate_evidence(x1, n1, x0, n0, 1 / m if rule.down else m, rule.down)
        else:
            d, v, k3 = rate_threshold_evidence(x1, n1 * thr, rule.down)
    elif fam == "volume":
        x1 = w[..., column(k.num)].astype(float)
        x0 = b[..., column(k.num)].astype(float)
        m = max(rule.margin, 1.0)
        e1b, e0b = e1[:, None], e0[:, None]
        if base:
            d, v, k3 = rate_evidence(x1, e1b, x0, e0b, 1 / m if rule.down else m, rule.down)
        else:  # the threshold is per group, handled in RuleDetector.evaluate
            d, v, k3 = rate_threshold_evidence(x1, np.zeros_like(x1), rule.down)
        n1 = x0 * (e1b / np.where(e0b > 0, e0b, np.inf))  # expected window count
        n0 = x0
    else:  # time
        hs = hist_slice(k.hist)
        h1 = w[..., hs]
        n1 = h1.sum(axis=-1)
        if base:
            h0 = b[..., hs]
            d, v, k3, _ = slow_share_evidence(h1, h0, k.quantile, max(rule.margin, 1.0), prepared)
            n0 = h0.sum(axis=-1)
        else:
            p = 1 - k.quantile
            d, v = share_above(h1, thr) - n1 * p, n1 * p * (1 - p)
            k3 = n1 * p * (1 - p) * (1 - 2 * p)
            n0 = np.zeros_like(n1)
    if rule.dispersion != 1.0:
        v = v * rule.dispersion
    if base and prepared is not None and "parts" in prepared:
        tau2 = prepared.get("tau2")
        if tau2 is None:
            tau2 = prepared["tau2"] = between_windows(rule, *prepared["parts"], b)
        scale = np.broadcast_to(e1[:, None], np.shape(n1)) if fam == "volume" else n1
        v = v + np.asarray(scale, dtype=float) ** 2 * tau2
    if not base:
        return d, v, k3, n1.astype(float), np.full(np.shape(n1), np.inf)
    ok = n0 >= MIN_STRATUM
    return (
        np.where(ok, d, 0.0),
        np.where(ok, v, 0.0),
        np.where(ok, k3, 0.0),
        np.where(ok, n1, 0.0),
        n0.astype(float),
    )


_MEDIAN_CHI2_1 = 0.4549  # median of a chi-square with one degree of freedom


def between_windows(rule: Rule, parts: np.ndarray, exposure: np.ndarray, pooled: np.ndarray):
    """Variance of the KPI between the baseline's shifted windows beyond sampling noise
    (``[R, L]``, per sample and squared, in the evidence's units): a random effect.

    ``parts`` ``[R, K, L, W]`` are the K windows of a seasonal baseline (the same hours
    on past days or weeks). Day-to-day drift, a shifted mix or clustered samples make
    them differ more than binomial noise would; the excess is added to a window's
    variance (``n^2 tau^2``), so big windows of busy teams are not fooled by a wander.
    The median of the standardized squared deviations is used (robust: a past incident
    in one of the K windows barely moves it); fewer than 3 usable windows give 0.
    """
    k = rule.kpi
    fam = k.family
    if fam == "time":
        hs = hist_slice(k.hist)
        h = parts[..., hs].astype(float)
        n = h.sum(axis=-1)
        pooled_h = pooled[..., hs].astype(float)
        pooled_n = np.maximum(pooled_h.sum(axis=-1), 1.0)
        cum = np.cumsum(pooled_h, axis=-1) / pooled_n[..., None]
        edge = np.minimum((cum < k.quantile).sum(axis=-1), cum.shape[-1] - 2)
        fast = np.take_along_axis(np.cumsum(h, axis=-1), edge[:, None, :, None], axis=-1)[..., 0]
        x = n - fast
    elif fam == "nps":
        s, _, n = nps_counts(parts)
        x = s.astype(float)
        n = n.astype(float)
    elif fam == "volume":
        x = parts[..., column(k.num)].astype(float)
        n = np.broadcast_to(exposure[:, :, None], x.shape).astype(float)
    else:  # proportion, rate
        xi, ni = proportion_counts(rule, parts)
        x, n = xi.astype(float), ni.astype(float)
    tot_n = n.sum(axis=1)
    ok = n > 0
    usable = ok.sum(axis=1) >= 3
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(ok, x / np.where(ok, n, 1.0), np.nan)
    # Centre on the median window, not the pooled mean: one window with an incident in
    # it must not make all the others look far off.
    pooled = x.sum(axis=1) / np.maximum(tot_n, 1.0)  # [R, L]
    filled = np.where(usable[:, None] & ok, y, np.where(usable[:, None], np.nan, 0.0))
    mean = np.where(usable, np.nanmedian(filled, axis=1), pooled)
    if fam in ("proportion", "time"):
        var = mean * (1 - mean)
    elif fam == "nps":
        sq = nps_counts(parts)[1].sum(axis=1) / np.maximum(tot_n, 1.0)
        var = np.maximum(sq - mean * mean, 0.05)
    else:  # Poisson counts per unit of exposure
        var = mean
    safe_var = np.where(var > 0, var, 1.0)[:, None]
    z2 = np.where(
        usable[:, None] & ok, n * (np.nan_to_num(y) - mean[:, None]) ** 2 / safe_var, np.nan
    )
    z2 = np.where(usable[:, None], z2, 0.0)
    phi = np.nanmedian(z2, axis=1) / _MEDIAN_CHI2_1
    mean_n = tot_n / np.maximum(ok.sum(axis=1), 1)
    tau2 = np.maximum(phi - 1.0, 0.0) * var / np.maximum(mean_n, 1.0)
    return np.where(usable, tau2, 0.0)


def slo_counts(rule: Rule, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bad and total samples per rung and leaf of an SLO rule."""
    k = rule.kpi
    if k.family == "time":
        h = w[..., hist_slice(k.hist)]
        return share_above(h, rule.threshold or 0.0), h.sum(axis=-1).astype(float)
    x, n = proportion_counts(rule, w)
    return (n - x if rule.down else x).astype(float), n.astype(float)
