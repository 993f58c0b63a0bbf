"""Errors a user meets: bad option values are usage errors (exit 2) naming the option; bad
files and settings are one line on stderr (exit 1), never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]

BAD_OPTIONS = [
    ("simulate --rate -5", "--rate"),
    ("simulate --rate 0", "--rate"),
    ("simulate --duration -1", "--duration"),
    ("simulate --history-days 0", "--history-days"),
    ("simulate --malformed-rate -0.1", "--malformed-rate"),
    ("simulate --duplicate-rate 1", "--duplicate-rate"),
    ("simulate --late-rate 1.5", "--late-rate"),
    ("simulate --incident garbage", "--incident"),
    ("replay --rate -1 README.md", "--rate"),
    ("kpis --window 0", "--window"),
    ("kpis --window -5", "--window"),
    ("run --duration 0", "--duration"),
    ("run --rate -5", "--rate"),
    ("run --refresh 0", "--refresh"),
    ("run --warmup-minutes -1", "--warmup-minutes"),
    ("worker --duration -3", "--duration"),
    ("worker --metrics-port -1", "--metrics-port"),
    ("worker --web-port 70000", "--web-port"),
    ("replay does-not-exist.jsonl", "FILE"),
    ("simulate --rate 1e12", "--rate"),
    ("simulate --duration 1e12", "--duration"),
    ("simulate --history-days 1e9", "--history-days"),
    ("kpis --url notaurl", "--url"),
    ("db migrate --cluster x;y", "--cluster"),
]


@pytest.mark.parametrize(("args", "option"), BAD_OPTIONS, ids=[a for a, _ in BAD_OPTIONS])
def test_bad_option_values_are_usage_errors_naming_the_option(args: str, option: str) -> None:
    result = CliRunner().invoke(cli, args.split(), catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output
    assert "Traceback" not in result.output


def run(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CXPULSE_")}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cxpulse: error: ")
    return lines[0]


def test_missing_and_broken_config_files(tmp_path: Path) -> None:
    assert "config file not found" in one_line(run("--config", str(tmp_path / "x.toml"), "config"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[kafka\n")
    assert "is not valid TOML" in one_line(run("--config", str(bad), "config"))
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[kafka]\nbootstrap = 'x'\n")
    assert "invalid setting kafka.bootstrap" in one_line(run("--config", str(unknown), "config"))


def test_replay_checks_the_whole_file_before_connecting(tmp_path: Path) -> None:
    """No broker runs at this address: the file error must come first, and fast."""
    f = tmp_path / "events.jsonl"
    f.write_text('{"key": "c1", "value": "{}"}\nnot json\n')
    line = one_line(run("replay", str(f), CXPULSE_KAFKA__BOOTSTRAP_SERVERS="127.0.0.1:1"))
    assert f"{f}: line 2: not a cxpulse JSON-lines record" in line
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\n")
    assert "is not UTF-8 text" in one_line(run("replay", str(binary)))


def test_unwritable_output_is_one_line() -> None:
    line = one_line(run("simulate", "--duration", "1", "--output", "/proc/cxpulse/out.jsonl"))
    assert "cannot write /proc/cxpulse" in line


def test_unreachable_broker_is_one_line_within_the_timeout() -> None:
    result = run(
        "topics",
        "create",
        CXPULSE_KAFKA__BOOTSTRAP_SERVERS="127.0.0.1:1",
        CXPULSE_KAFKA__CONNECT_TIMEOUT_SECONDS="1",
    )
    line = one_line(result)
    assert "no Kafka broker answers at 127.0.0.1:1 within 1s" in line
    assert "CXPULSE_KAFKA__CONNECT_TIMEOUT_SECONDS" in line


def test_kpis_from_a_sink_that_is_not_there_is_one_line() -> None:
    line = one_line(run("kpis", "--url", "http://127.0.0.1:1"))
    assert "cannot read http://127.0.0.1:1/kpis" in line
