"""Customers of the simulation: a churn-prone minority, comments, and the truth they cause.

Every customer (``cus-<region>-<seg>-<idx>``) is churn-prone or not by a pure function of
the seed and their identity (like their value), ``churn_prone_share`` of them. A churn-prone
customer's conversations are more often urgent, reopen and come back (repeat contacts) far
more often, answer surveys more often, and answer low. Low answers of anyone sometimes carry
a free-text ``comment`` (a field outside the contract, kept by the pipeline).

:class:`CustomerLedger` watches the valid events the simulation emits and reports, for the
churn-prone customers, which at-risk reasons of the contract hold at a given event time and
why (``--customers-truth FILE``): csat_low, nps_detractor, reopens, repeat_contacts. (FRT
breaches are left to the pipeline: they depend on the waits as the contract measures them.)
Only what the simulator emitted counts: a late event the pipeline drops is in the truth.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "CHURN_CES",
    "CHURN_CSAT",
    "CHURN_NPS",
    "CustomerLedger",
    "churn_prone",
    "low_answer_comment",
]

_SEC = 1_000_000
_DAY = 86_400 * _SEC
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Behaviour of churn-prone customers (per conversation / resolve / survey).
CHURN_URGENT_PROBABILITY = 0.3
CHURN_REOPEN_PROBABILITY = 0.4
CHURN_REPEAT_PROBABILITY = 0.4
CHURN_SURVEY_RATE = 0.5
CHURN_CSAT = ((1, 0.55), (2, 0.30), (3, 0.15))
CHURN_NPS = ((0, 0.2), (1, 0.1), (2, 0.15), (3, 0.15), (4, 0.15), (5, 0.1), (6, 0.15))
CHURN_CES = ((1, 0.3), (2, 0.3), (3, 0.25), (4, 0.15))
COMMENT_PROBABILITY = 0.35
COMMENTS = (
    "Still not fixed.",
    "Third time I have to explain this.",
    "Nobody answered for hours.",
    "Considering other providers.",
    "The agent was nice but it did not help.",
    "Please call me back.",
)
_LOW = {"survey.csat": 2, "survey.nps": 6, "survey.ces": 3}


def _mix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def churn_prone(seed: int, segment_i: int, region_i: int, idx: int, share: float) -> bool:
    """Whether one customer is churn-prone: a pure function of seed and identity."""
    if share <= 0:
        return False
    h = _mix(_mix(seed * 7_919 + 0xC4A1 + segment_i * 131 + region_i) ^ (idx * 2_654_435_761))
    return ((h >> 11) / (1 << 53)) < share


def low_answer_comment(rng: Any, kind: str, score: int) -> str | None:
    """A comment on a low answer, sometimes (draws from ``rng`` only for low answers)."""
    if score > _LOW[kind] or rng.random() >= COMMENT_PROBABILITY:
        return None
    return COMMENTS[rng.randrange(len(COMMENTS))]


_CUSTOMER = re.compile(r"cus-(.+)-([a-z0-9_-]{1,3})-(\d+)")


class CustomerLedger:
    """Watches emitted events; reports the at-risk reasons of churn-prone customers.

    ``observe(t_us, payload)`` is the simulation's observer hook (valid events only). Rules
    and defaults as in the contract: window 30 days, repeat contacts within 7 days after a
    resolve, latest CSAT <= 2, latest NPS <= 6, >= 2 reopens, >= 3 repeat contacts.
    """

    def __init__(
        self,
        params: Any,
        *,
        window_days: float = 30,
        repeat_days: float = 7,
        csat_max: int = 2,
        nps_max: int = 6,
        reopens_min: int = 2,
        repeats_min: int = 3,
    ) -> None:
        self.window = round(window_days * _DAY)
        self.repeat = round(repeat_days * _DAY)
        self.limits = (csat_max, nps_max, reopens_min, repeats_min)
        regions = {r.name: i for i, r in enumerate(params.regions)}
        prefixes: dict[str, int] = {}
        for i, s in enumerate(params.segments):
            prefixes[s.name[:3]] = -1 if s.name[:3] in prefixes else i
        self._churn = lambda region, prefix, idx: (
            region in regions
            and prefixes.get(prefix, -1) >= 0
            and churn_prone(params.seed, prefixes[prefix], regions[region], idx,
                            params.churn_prone_share)
        )  # fmt: skip
        self._known: dict[str, bool] = {}
        self._conv: dict[str, str] = {}  # conversation -> churn-prone customer
        self.events: dict[str, list[tuple[int, str, int | None]]] = defaultdict(list)
        self.info: dict[str, dict[str, Any]] = {}
        self.last_us: int | None = None

    def _is_churn(self, customer: str) -> bool:
        found = self._known.get(customer)
        if found is None:
            m = _CUSTOMER.fullmatch(customer)
            found = bool(m) and bool(self._churn(m.group(1), m.group(2), int(m.group(3))))
            self._known[customer] = found
        return found

    def observe(self, t_us: int, payload: dict[str, Any]) -> None:
        if self.last_us is None or t_us > self.last_us:
            self.last_us = t_us
        conv = payload["conversation_id"]
        customer = payload.get("customer_id")
        if customer is not None:
            if not self._is_churn(customer):
                self._conv.pop(conv, None)
                return
            self._conv[conv] = customer
            if "segment" in payload:
                self.info[customer] = {
                    "segment": payload["segment"],
                    "customer_value": payload.get("customer_value"),
                }
        customer = self._conv.get(conv)
        if customer is not None:
            self.events[customer].append((t_us, payload["type"], payload.get("score")))

    def truth(self, as_of_us: int | None = None) -> dict[str, Any]:
        """The churn-prone customers at risk at ``as_of_us`` (default: the last event)."""
        T = self.last_us if as_of_us is None else as_of_us
        customers = []
        if T is not None:
            for customer in sorted(self.events):
                reasons = self._reasons(self.events[customer], T)
                if reasons:
                    customers.append(
                        {"customer_id": customer, **self.info.get(customer, {}), "reasons": reasons}
                    )
        return {
            "as_of": None if T is None else _iso(T),
            "window_days": self.window / _DAY,
            "churn_prone_customers_seen": len(self.events),
            "customers": customers,
        }

    def _reasons(self, events: list[tuple[int, str, int | None]], T: int) -> dict[str, Any]:
        csat_max, nps_max, reopens_min, repeats_min = self.limits
        lo = T - self.window
        ordered = sorted(events, key=lambda e: e[0])
        window = [e for e in ordered if lo < e[0] <= T]
        out: dict[str, Any] = {}
        for name, kind, limit in (
            ("csat_low", "survey.csat", csat_max),
            ("nps_detractor", "survey.nps", nps_max),
        ):
            answers = [e for e in window if e[1] == kind]
            if answers and (answers[-1][2] or 0) <= limit:
                out[name] = {"since": _iso(answers[-1][0]), "score": answers[-1][2]}
        reopens = [e[0] for e in window if e[1] == "conversation.reopened"]
        if len(reopens) >= reopens_min:
            out["reopens"] = {"count": len(reopens), "since": _iso(reopens[reopens_min - 1])}
        resolves = [e[0] for e in ordered if e[1] == "conversation.resolved"]
        repeats = [
            e[0]
            for e in window
            if e[1] == "conversation.opened" and any(r < e[0] <= r + self.repeat for r in resolves)
        ]
        if len(repeats) >= repeats_min:
            out["repeat_contacts"] = {
                "count": len(repeats),
                "since": _iso(repeats[repeats_min - 1]),
            }
        return out


def _iso(t_us: int) -> str:
    return (_EPOCH + timedelta(microseconds=t_us)).isoformat()
