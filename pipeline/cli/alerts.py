"""``cxpulse alerts`` (firing and recent), ``cxpulse alerts check FILE`` and
``cxpulse evaluate-alerts`` (the detector measured on simulated histories).

Exit codes: 0 success; 1 an error (``alerts check``: the file has mistakes, one line
each on stderr); 2 a usage error; ``evaluate-alerts`` exits 3 when a target is missed.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click

from pipeline.core.config import Settings
from pipeline.core.errors import CxpulseError

__all__ = ["register"]


def fetch_alerts(settings: Settings, *, url: str | None = None, limit: int = 20) -> dict[str, Any]:
    """From ``url`` (a sink's web root), else the local sink, else ClickHouse directly."""
    candidates = [url] if url else []
    if not url and settings.clickhouse.is_embedded and settings.ports.sink_web:
        candidates.append(f"http://127.0.0.1:{settings.ports.sink_web}")
    for base in candidates:
        try:
            with urllib.request.urlopen(f"{base.rstrip('/')}/alerts", timeout=10) as resp:  # noqa: S310
                return json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            if url:
                raise CxpulseError(f"cannot read {base}/alerts: {exc}") from None
    from sinks.alerts.queries import alerts_payload
    from sinks.clickhouse.store import open_store

    store = open_store(
        settings.clickhouse_dsn(), settings.clickhouse.database, create_database=False
    )
    try:
        return alerts_payload(store, limit)
    except Exception as exc:
        raise CxpulseError(f"cannot read alerts (has `cxpulse db migrate` run?): {exc}") from exc
    finally:
        store.close()


def _line(a: dict[str, Any]) -> str:
    scope = ", ".join(
        f"{k} {a[k]}" for k in ("team", "channel", "region", "priority", "segment") if a.get(k)
    )
    when = (a.get("fired_at") or "")[:16].replace("T", " ")
    end = (
        f", resolved {(a.get('resolved_at') or '')[:16].replace('T', ' ')}"
        if a.get("resolved_at")
        else ""
    )
    return (
        f"  {str(a.get('severity', '')).upper():<8} {a.get('rule', ''):<22} "
        f"{scope or 'all traffic':<28} fired {when}{end} UTC\n      {a.get('summary', '')}"
    )


def render_alerts(payload: dict[str, Any]) -> str:
    firing = payload.get("firing") or []
    recent = [a for a in payload.get("recent") or [] if a.get("state") != "firing"]
    lines = [f"firing ({len(firing)}):"] + ([_line(a) for a in firing] or ["  (none)"])
    lines += ["recent (resolved):"] + ([_line(a) for a in recent] or ["  (none)"])

    def minute(value: str | None) -> str:
        return value[:16].replace("T", " ") + " UTC" if value else "-"

    line = f"evaluated up to {minute(payload.get('evaluated_minute'))}"
    if payload.get("levels_evaluated_minute"):
        line += f" (rise rules: {minute(payload.get('levels_evaluated_minute'))})"
    lines.append(line)
    return "\n".join(lines)


def register(cli: click.Group) -> None:
    """Add the alert commands to the ``cxpulse`` group."""
    from pipeline.cli.main import _settings, friendly_errors

    @cli.group(invoke_without_command=True)
    @click.option(
        "--url", help="Read through a running sink's /alerts (needed while it holds chDB)."
    )
    @click.option("--limit", type=int, default=20, show_default=True, help="Recent alerts to show.")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    @click.pass_context
    @friendly_errors
    def alerts(ctx: click.Context, url: str | None, limit: int, as_json: bool) -> None:
        """List firing and recent drop alerts (subcommand `check` validates a rules file)."""
        if ctx.invoked_subcommand is not None:
            return
        payload = fetch_alerts(_settings(ctx), url=url, limit=limit)
        click.echo(json.dumps(payload, default=str) if as_json else render_alerts(payload))

    @alerts.command("check")
    @click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
    def check(file: Path) -> None:
        """Validate a rules file: one line per mistake (file:line: message); exit 1 on any."""
        from streams.alerts.rules import RulesError, load_rules

        try:
            rules = load_rules(file)
        except RulesError as exc:
            for problem in exc.problems:
                click.echo(problem, err=True)
            sys.exit(1)
        click.echo(f"{file}: {len(rules)} rule(s) ok: {', '.join(r.name for r in rules.rules)}")

    @cli.command("evaluate-alerts")
    @click.option("--seeds", default="1,2,3,4", show_default=True, help="Comma-separated seeds.")
    @click.option("--weeks", type=click.IntRange(2, 52), default=8, show_default=True,
                  help="Evaluated weeks per seed (after one warm-up week).")  # fmt: skip
    @click.option("--rules", "rules_file", type=click.Path(dir_okay=False, path_type=Path),
                  help="Rules file (default: alerts.rules_file or the shipped one).")  # fmt: skip
    @click.option("--jobs", type=click.IntRange(1, 64), help="Processes (default: CPU count).")
    @click.option("--alpha", type=float, default=0.001, show_default=True,
                  help="Significance of the deadline test (power 0.9).")  # fmt: skip
    @click.option("--json", "json_file", type=click.Path(dir_okay=False, path_type=Path),
                  help="Also write the figures as JSON.")  # fmt: skip
    @click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path),
                  help="Keep the simulated minute rows here: tuning rules then re-runs "
                  "only the detector.")  # fmt: skip
    @click.pass_context
    @friendly_errors
    def evaluate_alerts(
        ctx: click.Context, seeds: str, weeks: int, rules_file: Path | None, jobs: int | None,
        alpha: float, json_file: Path | None, cache_dir: Path | None,
    ) -> None:  # fmt: skip
        """Measure the detector on simulated multi-week histories against the targets."""
        import os

        from tqdm import tqdm

        from pipeline.app.alerteval.report import evaluate, render

        settings = _settings(ctx)
        try:
            seed_list = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise click.UsageError(
                f"--seeds must be integers separated by commas, got {seeds!r}"
            ) from None
        if not seed_list:
            raise click.UsageError("--seeds names no seed")
        chosen = rules_file or settings.alerts.rules_file
        workers = min(jobs or os.cpu_count() or 1, len(seed_list))
        with tqdm(total=len(seed_list), desc="evaluate-alerts", unit="seed", disable=None) as bar:
            scores = evaluate(seed_list, weeks, str(chosen) if chosen else None, jobs=workers,
                              alpha=alpha, done=lambda _s: bar.update(1),
                              cache_dir=str(cache_dir) if cache_dir else None)  # fmt: skip
        text, ok, figures = render(scores, alpha)
        click.echo(text)
        if json_file is not None:
            json_file.write_text(json.dumps(figures, indent=2, default=str))
        sys.exit(0 if ok else 3)
