"""``cxpulse <command>``: the one command-line entry point.

Exit codes scripts can rely on: 0 success, 1 a cxpulse error (one line on stderr that says
what to fix), 2 a usage error, 130 interrupted.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from pipeline.cli.options import (
    DAYS,
    EVENTS_PER_SECOND,
    FRACTION,
    NON_NEGATIVE,
    PORT,
    POSITIVE,
    SECONDS,
    WINDOW,
    check_incidents,
    cluster_name,
    http_url,
)
from pipeline.core.config import Settings, load_settings
from pipeline.core.errors import CxpulseError
from pipeline.core.logs import configure_logging

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])


def _settings(ctx: click.Context, **overrides: Any) -> Settings:
    obj = ctx.find_root().obj or {}
    settings = load_settings(obj.get("config"), **overrides)
    configure_logging(obj.get("log_level") or settings.log_level)
    return settings


def friendly_errors(fn: F) -> F:
    """Turn cxpulse errors into one line + exit 1, and Ctrl-C into exit 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CxpulseError as exc:
            click.echo(f"cxpulse: error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("cxpulse: interrupted", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:
            # A bug, not bad input: keep the traceback available without dumping it.
            logging.getLogger("cxpulse").debug("unexpected error", exc_info=True)
            click.echo(
                f"cxpulse: unexpected error: {type(exc).__name__}: {exc} "
                "(rerun with --log-level DEBUG for the traceback)",
                err=True,
            )
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="CXPULSE_CONFIG",
    help="TOML settings file [env: CXPULSE_CONFIG].",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Log level [env: CXPULSE_LOG_LEVEL].",
)
@click.version_option(package_name="cxpulse")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, log_level: str | None) -> None:
    """cxpulse: customer-support interactions in, live KPIs out (Kafka -> Faust -> ClickHouse)."""
    ctx.obj = {"config": config, "log_level": log_level.upper() if log_level else None}


# --------------------------------------------------------------------------- config


@cli.command("config")
@click.pass_context
@friendly_errors
def config_cmd(ctx: click.Context) -> None:
    """Print the effective settings as JSON (secrets masked)."""
    click.echo(json.dumps(_settings(ctx).as_dict(), indent=2, default=str))


# --------------------------------------------------------------------------- topics


@cli.group()
def topics() -> None:
    """Kafka topics."""


@topics.command("create")
@click.pass_context
@friendly_errors
def topics_create(ctx: click.Context) -> None:
    """Create every topic cxpulse uses (idempotent)."""
    from pipeline.core.topics import ensure_topics

    settings = _settings(ctx)
    created = ensure_topics(settings)
    click.echo(f"created: {', '.join(created)}" if created else "all topics exist")


# --------------------------------------------------------------------------- db


@cli.group()
def db() -> None:
    """ClickHouse schema."""


@db.command("migrate")
@click.option(
    "--cluster",
    callback=cluster_name,
    help="Cluster form: ON CLUSTER NAME, <table>_local Replicated tables + Distributed tables.",
)
@click.option(
    "--print",
    "print_only",
    is_flag=True,
    help="Print the SQL instead of running it (no connection; e.g. to review or apply by hand).",
)
@click.option(
    "--after",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="With --print: only the migrations above this version (an upgrade).",
)
@click.pass_context
@friendly_errors
def db_migrate(ctx: click.Context, cluster: str | None, print_only: bool, after: int) -> None:
    """Apply pending schema migrations (idempotent; records versions in ClickHouse)."""
    from tqdm import tqdm

    from sinks.clickhouse.migrate import applied_versions, load_migrations, migrate

    settings = _settings(ctx)
    if after and not print_only:
        raise click.UsageError("--after only applies to --print (migrate reads its ledger)")
    if print_only:
        from sinks.clickhouse.cluster import render_sql

        click.echo(
            render_sql(
                cluster,
                database=settings.clickhouse.database,
                minute_ttl_days=settings.clickhouse.minute_ttl_days,
                side_ttl_days=settings.clickhouse.side_ttl_days,
                after=after,
            )
        )
        return
    from sinks.clickhouse.store import open_store

    if cluster and settings.clickhouse.is_embedded:
        raise CxpulseError(
            "--cluster needs a ClickHouse server (CXPULSE_CLICKHOUSE__DSN=https://...): the "
            "embedded engine has no cluster; add --print to only see the SQL"
        )
    store = open_store(settings.clickhouse_dsn(), settings.clickhouse.database)
    done = applied_versions(store, cluster)
    pending = [m for m in load_migrations() if m.version not in done]
    with tqdm(total=len(pending), desc="migrate", unit="migration", disable=None) as bar:
        applied = migrate(
            store,
            minute_ttl_days=settings.clickhouse.minute_ttl_days,
            side_ttl_days=settings.clickhouse.side_ttl_days,
            cluster=cluster,
            progress=lambda _m: bar.update(1),
        )
    versions = sorted(applied_versions(store, cluster))
    store.close()
    click.echo(
        f"applied {len(applied)} migration(s); schema version {versions[-1] if versions else 0}"
    )


# --------------------------------------------------------------------------- worker


@cli.command()
@click.option(
    "--role",
    type=click.Choice(["compute", "sink", "alerts"]),
    default="compute",
    show_default=True,
    help="compute: events -> conversation log (scale out freely); "
    "sink: conversation log -> ClickHouse (one process with embedded chDB); "
    "alerts: the drop-alert evaluator alone (ClickHouse server only).",
)
@click.option("--worker-id", default="0", show_default=True, help="Names this worker's state dir.")
@click.option("--duration", type=SECONDS, help="Stop cleanly after this many seconds.")
@click.option("--metrics-port", type=PORT, help="Override the /metrics port (0 disables).")
@click.option("--web-port", type=PORT, help="Override the Faust web port (0 disables).")
@click.pass_context
@friendly_errors
def worker(
    ctx: click.Context,
    role: str,
    worker_id: str,
    duration: float | None,
    metrics_port: int | None,
    web_port: int | None,
) -> None:
    """Run one worker of a role until Ctrl-C / SIGTERM (or --duration)."""
    from pipeline.app.worker import run_worker

    settings = _settings(ctx)
    if role == "alerts":
        from pipeline.app.alerts_role import run_alerts_role

        run_alerts_role(settings, duration=duration, metrics_port=metrics_port)
        return
    run_worker(
        settings,
        role,  # type: ignore[arg-type]
        worker_id=worker_id,
        duration=duration,
        metrics_port=metrics_port,
        web_port=web_port,
    )


# --------------------------------------------------------------------------- simulate / replay


@cli.command()
@click.option(
    "--rate",
    type=EVENTS_PER_SECOND,
    default=200.0,
    show_default=True,
    help="Mean events/s (live mode).",
)
@click.option(
    "--duration", type=SECONDS, default=60.0, show_default=True, help="Seconds of live traffic."
)
@click.option(
    "--history-days",
    type=DAYS,
    help="Instead of live traffic: simulate N days ending now, as fast as possible.",
)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option(
    "--incident",
    "incidents",
    multiple=True,
    metavar="SPEC",
    callback=check_incidents,
    help="Inject a KPI drop, e.g. 'kpi=csat,team=billing,start=+10m,duration=40m,target=70' "
    "or 'kpi=frt,channel=chat,start=+5m,duration=20m,factor=3'. Repeatable.",
)
@click.option(
    "--truth",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write injected incidents (JSON).",
)
@click.option(
    "--customers-truth",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the churn-prone customers at risk at the end, and why (JSON).",
)
@click.option(
    "--malformed-rate", type=FRACTION, default=0.0, show_default=True, help="Share 0..1 (<1)."
)
@click.option(
    "--duplicate-rate", type=FRACTION, default=0.0, show_default=True, help="Share 0..1 (<1)."
)
@click.option(
    "--late-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share 0..1.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write JSON lines (key + value) to this file instead of Kafka.",
)
@click.option("--no-pacing", is_flag=True, help="Live mode without sleeping (as fast as possible).")
@click.pass_context
@friendly_errors
def simulate(ctx: click.Context, **opts: Any) -> None:
    """Produce realistic interaction events to Kafka (or a JSON-lines file)."""
    from pipeline.simulator.producer import run_simulation

    settings = _settings(ctx)
    report = run_simulation(settings, **opts)
    click.echo(json.dumps(report, default=str))


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rate", type=POSITIVE, help="Events/s (default: as fast as possible).")
@click.pass_context
@friendly_errors
def replay(ctx: click.Context, file: Path, rate: float | None) -> None:
    """Produce a JSON-lines file (from `simulate --output`) to the events topic, keys kept."""
    from pipeline.simulator.producer import replay_file

    settings = _settings(ctx)
    sent = replay_file(settings, file, rate=rate)
    click.echo(json.dumps({"sent": sent, "topic": settings.topics.events}))


# --------------------------------------------------------------------------- kpis / run


@cli.command()
@click.option(
    "--window",
    type=WINDOW,
    default=15,
    show_default=True,
    help="Minutes of event time, ending at the newest minute stored (1 .. 576000).",
)
@click.option(
    "--url",
    callback=http_url,
    help="Read through a running sink's /kpis endpoint (needed while it holds embedded chDB).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@friendly_errors
def kpis(ctx: click.Context, window: int, url: str | None, as_json: bool) -> None:
    """Print the KPI board per team."""
    from pipeline.app.board import fetch_board, render_board

    settings = _settings(ctx)
    payload = fetch_board(settings, url=url, window=window)
    click.echo(json.dumps(payload, default=str) if as_json else render_board(payload))


@cli.command()
@click.option("--duration", type=SECONDS, default=120.0, show_default=True, help="Seconds to run.")
@click.option(
    "--rate", type=EVENTS_PER_SECOND, default=100.0, show_default=True, help="Simulated events/s."
)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--refresh", type=POSITIVE, default=3.0, show_default=True, help="Board refresh (s).")
@click.option(
    "--warmup-minutes",
    type=NON_NEGATIVE,
    default=10.0,
    show_default=True,
    help="Minutes of recent history sent at once before live traffic (0 = none).",
)
@click.option(
    "--keep-state",
    is_flag=True,
    help="Keep the previous demo's local broker data and ClickHouse (default: start fresh).",
)
@click.option(
    "--keep-broker", is_flag=True, help="Leave the local Kafka broker running afterwards."
)
@click.option(
    "--incident",
    "incidents",
    multiple=True,
    metavar="SPEC",
    help="Inject a KPI drop (as `cxpulse simulate --incident`; start=+Nm counts from the "
    "start of the warm-up history). Repeatable.",
)
@click.option("--webhook-url", help="Also send alert notifications to this webhook.")
@click.pass_context
@friendly_errors
def run(ctx: click.Context, **opts: Any) -> None:
    """The whole pipeline on this machine: local Kafka, simulator, workers, chDB, live board."""
    from pipeline.app.demo import run_demo

    settings = _settings(ctx)
    sys.exit(run_demo(settings, **opts))


from pipeline.cli.alerts import register as _register_alerts  # noqa: E402

_register_alerts(cli)


def main() -> None:
    # A closed stdout (``cxpulse kpis | head``) must not print a traceback.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    cli(prog_name="cxpulse")


if __name__ == "__main__":
    main()
