"""The real Prometheus tools (Debian packages `prometheus` and `prometheus-alertmanager`,
installed by `make tools`) for tests: config, rules, rule unit tests and metrics lint.

``check_metrics(text)`` is the helper for every process's ``/metrics``: hand it the body of a
scrape (or ``generate_latest(registry)``) and assert it returns no problem.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

__all__ = ["amtool", "check_metrics", "promtool"]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is missing: run `make tools` (Debian packages prometheus, "
            "prometheus-alertmanager)"
        )
    return path


def _run(
    name: str, *args: str | Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool(name), *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def promtool(*args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return _run("promtool", *args, stdin=stdin)


def amtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return _run("amtool", *args)


def check_metrics(text: str | bytes) -> list[str]:
    """`promtool check metrics` on an exposition text: the problems it names (empty = clean)."""
    body = text.decode("utf-8") if isinstance(text, bytes) else text
    result = promtool("check", "metrics", stdin=body)
    problems = [ln.strip() for ln in (result.stdout + result.stderr).splitlines() if ln.strip()]
    if result.returncode not in (0, 3):  # 3 = lint problems found, listed in the output
        raise RuntimeError(f"promtool check metrics failed: {result.returncode} {problems}")
    return problems if result.returncode else []
