"""``cxpulse <command>``: the one command-line entry point (see :mod:`pipeline.cli.main`)."""

from pipeline.cli.main import cli, main

__all__ = ["cli", "main"]
