"""Notifications: what they carry, and sending them to Alertmanager and a webhook.

The notification is built once, when the transition happens, and stored in the outbox;
sending only adds wall-clock fields. Alertmanager gets its v2 API (``POST /api/v2/alerts``,
a list of alerts with labels, annotations, ``startsAt``/``endsAt``): an active alert is
re-sent every ``resend_interval_seconds`` with ``endsAt`` a few intervals ahead, as
Prometheus does, so Alertmanager keeps it open while cxpulse lives and resolves it on its
own if cxpulse dies; a resolved one is sent with ``endsAt`` = its resolve time.
The generic webhook gets one JSON object per transition with an ``Idempotency-Key``
header (the transition id), so a receiver can drop the rare repeat (delivery is
at-least-once: a crash between a send and its bookkeeping sends it again).
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from pipeline.core.logs import kv
from streams.alerts.rules import Rule
from streams.alerts.state import Transition
from streams.alerts.text import scope_text

__all__ = ["DeliveryError", "Receiver", "alertmanager_body", "notification", "send", "webhook_body"]

log = logging.getLogger(__name__)
_DIMS = ("team", "channel", "region", "priority", "segment")
RESEND_HORIZON = 4  # an active alert's endsAt lies this many resend intervals ahead


class DeliveryError(Exception):
    """A receiver did not accept a notification (retried later, counted)."""


@dataclass(frozen=True, slots=True)
class Receiver:
    name: str  # alertmanager | webhook
    url: str
    timeout: float = 10.0


def _iso(minute: int | None) -> str | None:
    if minute is None:
        return None
    return datetime.fromtimestamp(minute * 60, tz=UTC).isoformat().replace("+00:00", "Z")


def grafana_link(base: str, uid: str, rule: Rule, t: Transition) -> str:
    """The board panel of this KPI, scoped to the alert's team/channel and time.

    ``uid`` names the KPI board; KPIs of the customers board (levels) link there."""
    end = t.details.get("resolved_at") or t.minute
    query = {
        "viewPanel": str(rule.kpi.panel),
        "from": str((t.onset - 120) * 60_000),
        "to": str((int(end) + 60) * 60_000),
    }
    board = rule.kpi.board
    if board != "cxpulse-kpis":  # the customers board has no team/channel variables
        return f"{base.rstrip('/')}/d/{board}/{board}?{urllib.parse.urlencode(query)}"
    if t.group[1]:
        query["var-team"] = t.group[1]
    if t.group[2]:
        query["var-channel"] = t.group[2]
    return f"{base.rstrip('/')}/d/{uid}/cxpulse-kpis?{urllib.parse.urlencode(query)}"


def notification(rule: Rule, t: Transition, grafana: tuple[str, str]) -> dict[str, Any]:
    """Everything a receiver is told about a transition (JSON-ready)."""
    d = t.details
    k = rule.kpi
    labels = {
        "alertname": rule.name,
        "rule": rule.name,
        "kpi": k.name,
        "severity": rule.severity,
        "grouping": t.group[0],
        "source": "cxpulse",
        **{n: v for n, v in zip(_DIMS, t.group[1:], strict=True) if v},
        **rule.labels,
    }
    link = grafana_link(grafana[0], grafana[1], rule, t) if grafana[0] else ""
    scale = k.scale if k.family in ("proportion", "nps") else 1.0
    observed = d.get("observed")
    baseline = d.get("baseline")
    annotations = {
        "summary": str(d.get("summary", "")),
        "description": str(d.get("description", "")),
        "alert_id": t.alert_id,
        "scope": scope_text(t.group),
        "observed": k.fmt(observed),
        "baseline": k.fmt(baseline),
        "samples": str(d.get("n_window", 0)),
        "baseline_samples": str(d.get("n_baseline", 0)),
        "window": f"{d.get('window', 0)}m",
        "since": _iso(t.onset) or "",
        **({"dashboard": link} if link else {}),
        **rule.annotations,
    }
    return {
        "transition_id": t.transition_id,
        "alert_id": t.alert_id,
        "status": t.state,
        "rule": rule.name,
        "kpi": k.name,
        "severity": rule.severity,
        "scope": dict(zip(("grouping", *_DIMS), t.group, strict=True)),
        "labels": labels,
        "annotations": annotations,
        "started_at": _iso(t.onset),
        "fired_at": _iso(t.fired_at),
        "resolved_at": _iso(t.minute) if t.state == "resolved" else None,
        "observed": None if observed is None else observed * scale,
        "baseline": None if baseline is None else baseline * scale,
        "samples": int(d.get("n_window", 0)),
        "baseline_samples": int(d.get("n_baseline", 0)),
        "window_minutes": int(d.get("window", 0)),
        "z": float(d.get("z", 0.0)),
        "summary": annotations["summary"],
        "description": annotations["description"],
        "dashboard_url": link,
    }


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alertmanager_body(note: dict[str, Any], now: datetime, resend_seconds: float) -> dict:
    """One alert of the v2 API. Event times are clamped to ``now`` (never in the future)."""
    started = min(datetime.fromisoformat(note["started_at"]), now)
    if note["status"] == "resolved":
        ends = min(datetime.fromisoformat(note["resolved_at"]), now)
        ends = max(ends, started + timedelta(milliseconds=1))
    else:
        ends = now + timedelta(seconds=RESEND_HORIZON * resend_seconds)
    body = {
        "labels": note["labels"],
        "annotations": note["annotations"],
        "startsAt": _stamp(started),
        "endsAt": _stamp(ends),
    }
    if note.get("dashboard_url"):
        body["generatorURL"] = note["dashboard_url"]
    return body


def webhook_body(note: dict[str, Any]) -> dict[str, Any]:
    return {"version": "1", **note}


async def send(
    session: aiohttp.ClientSession,
    receiver: Receiver,
    notes: list[dict[str, Any]],
    *,
    now: datetime,
    resend_seconds: float,
) -> None:
    """POST notifications to one receiver; raises :class:`DeliveryError` unless 2xx."""
    timeout = aiohttp.ClientTimeout(total=receiver.timeout)
    if receiver.name == "alertmanager":
        url = receiver.url.rstrip("/") + "/api/v2/alerts"
        bodies = [[alertmanager_body(n, now, resend_seconds) for n in notes]]
        headers: list[dict[str, str]] = [{}]
    else:
        url = receiver.url
        bodies = [webhook_body(n) for n in notes]  # type: ignore[misc]
        headers = [{"Idempotency-Key": n["transition_id"]} for n in notes]
    for body, extra in zip(bodies, headers, strict=True):
        try:
            async with session.post(
                url,
                data=json.dumps(body),
                headers={"Content-Type": "application/json", **extra},
                timeout=timeout,
            ) as resp:
                if resp.status // 100 != 2:
                    text = (await resp.text())[:200]
                    raise DeliveryError(f"{receiver.name} answered {resp.status}: {text}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise DeliveryError(
                f"{receiver.name} unreachable: {type(exc).__name__}: {exc}"
            ) from exc
    log.debug("delivered", extra=kv(receiver=receiver.name, notifications=len(notes)))
