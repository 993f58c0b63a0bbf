"""The KPIs a rule may watch: how each is counted, tested, and shown to people.

Names are the KPI columns of ``kpi_minute_kpis`` (docs/clickhouse.md), so an alert's
``kpi`` means exactly what the boards show. ``family`` picks the test:

- ``proportion``: successes out of samples (CSAT, CES easy share, one-touch, SLA breaches);
- ``nps``: mean of promoter (+1) / passive (0) / detractor (-1) answers;
- ``rate``: events per exposure (resolutions per opened, reopens per resolution);
- ``volume``: events per minute (conversations opened, accepted events);
- ``time``: durations from the histograms; a rise of the q-quantile shows as more
  samples above the baseline's q-quantile (the share of slow waits).
- ``level``: a stock, not a flow: the revenue (``customer_value``) or the number of
  customers at risk at each minute, from ``customer_risk_changes``; watched by ``rise``
  rules (streams/alerts/levels.py), shown on the customers board.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["KPIS", "KpiSpec", "suggest"]


@dataclass(frozen=True, slots=True)
class KpiSpec:
    name: str
    family: str
    title: str
    samples: str  # what one sample is, plural ("CSAT answers")
    down: bool | None  # True: a drop is bad; None: the rule says (volume)
    num: str = ""  # counter: successes / events / promoters
    den: str = ""  # counter: samples / exposure
    hist: str = ""  # time KPIs: "frt" or "reply"
    quantile: float = 0.5
    unit: str = "ratio"  # percent | ratio | score | seconds | count | amount
    panel: int = 1  # panel id in the board below (deploy/grafana/dashboards/<board>.json)
    board: str = "cxpulse-kpis"

    @property
    def scale(self) -> float:
        """Display unit per internal unit (percent and NPS points are 100 x a share)."""
        return 100.0 if self.unit in ("percent", "score") else 1.0

    def fmt(self, value: float | None) -> str:
        """A value in the KPI's display unit, for people."""
        if value is None:
            return "n/a"
        if self.unit == "percent":
            return f"{100 * value:.1f}%"
        if self.unit == "score":
            return f"{100 * value:+.0f}"
        if self.unit == "seconds":
            if value < 120:
                return f"{value:.0f} s"
            return f"{value / 60:.1f} min" if value < 7200 else f"{value / 3600:.1f} h"
        if self.unit == "count":
            return f"{value:,.1f}"
        if self.unit == "amount":  # customer_value (the CRM's currency) or customers
            return f"{value:,.0f}"
        return f"{value:.3f}"


def _time(hist: str, label: str, q: float, panel: int, samples: str) -> KpiSpec:
    title = {"frt": "first response time", "reply": "reply time"}[hist]
    return KpiSpec(
        f"{hist}_{label}",
        "time",
        f"{title} {label}",
        samples,
        False,
        hist=hist,
        quantile=q,
        unit="seconds",
        panel=panel,
    )


_SPECS: Final[tuple[KpiSpec, ...]] = (
    KpiSpec("csat_pct", "proportion", "CSAT", "CSAT answers", True, "csat_satisfied",
            "csat_responses", unit="percent", panel=13),
    KpiSpec("ces_easy_pct", "proportion", "CES easy share", "CES answers", True, "ces_easy",
            "ces_responses", unit="percent", panel=14),
    KpiSpec("nps", "nps", "NPS", "NPS answers", True, "nps_promoters", "nps_responses",
            unit="score", panel=14),
    KpiSpec("frt_sla_breach_rate", "proportion", "FRT SLA breach rate", "first responses",
            False, "frt_breaches", "frt_count", unit="percent", panel=17),
    KpiSpec("one_touch_rate", "proportion", "one-touch resolution rate", "resolutions", True,
            "one_touch_resolutions", "resolutions", unit="percent", panel=12),
    KpiSpec("resolution_rate", "rate", "resolution rate", "conversations opened", True,
            "resolutions", "opened", panel=12),
    KpiSpec("reopen_rate", "rate", "reopen rate", "resolutions", False, "reopens",
            "resolutions", panel=12),
    KpiSpec("opened", "volume", "conversations opened", "conversations", None, "opened",
            unit="count", panel=16),
    KpiSpec("events", "volume", "accepted events", "events", None, "events", unit="count",
            panel=16),
    KpiSpec("revenue_at_risk", "level", "revenue at risk", "customers at risk", False,
            unit="amount", panel=9, board="cxpulse-customers"),
    KpiSpec("customers_at_risk", "level", "customers at risk", "customers at risk", False,
            unit="amount", panel=11, board="cxpulse-customers"),
    *(
        _time(hist, label, q, 9 if hist == "frt" else 10, samples)
        for hist, samples in (("frt", "first responses"), ("reply", "replies"))
        for label, q in (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99))
    ),
)  # fmt: skip
KPIS: Final[dict[str, KpiSpec]] = {s.name: s for s in _SPECS}


def suggest(name: str) -> str:
    """' (did you mean x?)' for a near miss, else ''."""
    import difflib

    close = difflib.get_close_matches(name, KPIS, n=1, cutoff=0.5)
    return f" (did you mean {close[0]}?)" if close else ""
