"""The package floors: contract and config at the bottom, streams and sinks above, app on top.

Imports may only point down (or sideways within a floor), so the hot path never depends on
the CLI, the sinks never reach into the app, and the contract stays importable on its own.
Modules stay small enough to read in one sitting.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "streams", "sinks")
MAX_LINES = 450

# floor name -> first-party module prefixes it may import
ALLOWED: dict[str, tuple[str, ...]] = {
    "core": ("pipeline.core",),
    "simulator": ("pipeline.core", "pipeline.simulator"),
    "streams": ("pipeline.core", "streams"),
    "sinks": ("pipeline.core", "streams", "sinks"),
    "roof": ("pipeline", "streams", "sinks"),
}


def floor_of(module: str) -> str:
    if module.startswith("pipeline.core"):
        return "core"
    if module.startswith("pipeline.simulator"):
        return "simulator"
    if module.startswith("streams"):
        return "streams"
    if module.startswith("sinks"):
        return "sinks"
    return "roof"  # pipeline.app, pipeline.cli, pipeline/__init__, __main__


def modules() -> list[tuple[str, Path]]:
    out = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(rel.parts).removesuffix(".__init__")
            out.append((name, path))
    return out


def first_party_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return [m for m in found if m.split(".")[0] in PACKAGES]


@pytest.mark.parametrize(("module", "path"), modules(), ids=lambda v: str(v))
def test_imports_point_down(module: str, path: Path) -> None:
    allowed = ALLOWED[floor_of(module)]
    bad = [
        m
        for m in first_party_imports(path)
        if not any(m == a or m.startswith(a + ".") for a in allowed)
    ]
    assert not bad, f"{module} ({floor_of(module)}) imports from a higher floor: {bad}"


@pytest.mark.parametrize(("module", "path"), modules(), ids=lambda v: str(v))
def test_modules_stay_small(module: str, path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines (split it: at most {MAX_LINES})"


def test_core_does_not_load_the_runtime() -> None:
    """The contract is importable without Faust or the ClickHouse driver."""
    import subprocess
    import sys

    code = (
        "import sys, pipeline.core.events, pipeline.core.config;"
        "print(','.join(m for m in ('faust', 'clickhouse_connect', 'streams', 'sinks')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
