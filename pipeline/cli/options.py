"""Option types and checks shared by the commands: a bad value is a usage error (exit 2)
that names the option, before any work starts."""

from __future__ import annotations

import click

__all__ = [
    "DAYS",
    "EVENTS_PER_SECOND",
    "FRACTION",
    "NON_NEGATIVE",
    "PORT",
    "POSITIVE",
    "SECONDS",
    "WINDOW",
    "check_incidents",
    "cluster_name",
    "http_url",
]

# Numeric options are checked by click: a bad value is a usage error (exit 2) naming the option.
POSITIVE = click.FloatRange(min=0, min_open=True)
SECONDS = click.FloatRange(min=0, min_open=True, max=366 * 86_400)  # at most a year
EVENTS_PER_SECOND = click.FloatRange(min=0, min_open=True, max=100_000)  # the simulator's reach
DAYS = click.FloatRange(min=0, min_open=True, max=3650)
NON_NEGATIVE = click.FloatRange(min=0)
FRACTION = click.FloatRange(min=0, max=1, max_open=True)
PORT = click.IntRange(min=0, max=65535)
# A board window: one minute up to the default minute retention (400 days).
WINDOW = click.IntRange(min=1, max=400 * 24 * 60)


def check_incidents(
    ctx: click.Context, param: click.Parameter, specs: tuple[str, ...]
) -> tuple[str, ...]:
    """A malformed --incident is a usage error (exit 2) that shows the expected form."""
    from datetime import UTC, datetime

    from pipeline.simulator import parse_incident

    for spec in specs:
        try:
            parse_incident(spec, datetime.now(tz=UTC))
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return specs


def cluster_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A cluster name goes into DDL: the renderer's own rule decides what is accepted."""
    from pipeline.core.errors import CxpulseError
    from sinks.clickhouse.cluster import check_cluster_name

    try:
        return None if value is None else check_cluster_name(value)
    except CxpulseError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def http_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise click.BadParameter(f"{value!r} is not an http(s):// URL", ctx, param)
    return value
