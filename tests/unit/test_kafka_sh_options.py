"""kafka.sh's security options: documented in --help, bad combinations are usage errors
(exit 2) before any JVM starts. The listener itself is tested against a real broker in
tests/integration/test_kafka_security.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kafka_harness import run_kafka_sh


def test_help_documents_the_security_options() -> None:
    out = run_kafka_sh("start", "--help").stdout
    for option in (
        "--sasl-ssl-port",
        "--ssl-keystore",
        "--ssl-keystore-password",
        "--ssl-truststore",
        "--scram-user NAME:PASSWORD",
        "--scram-users-file",
        "SCRAM-SHA-512",
    ):
        assert option in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--sasl-ssl-port", "29999"], "--sasl-ssl-port needs --ssl-keystore"),
        (["--sasl-ssl-port", "0", "--ssl-keystore", "KS"], "--sasl-ssl-port must be a TCP port"),
        (["--ssl-keystore", "KS"], "only apply with --sasl-ssl-port"),
        (["--scram-user", "alice"], "--scram-user wants NAME:PASSWORD"),
        (["--scram-user", "al ice:pw"], "may only hold letters"),
        (["--scram-user", "alice:pw,x"], "must be non-empty, without whitespace"),
        (["--scram-user", "alice:"], "must be non-empty"),
        (["--scram-users-file", "/nonexistent"], "cannot be read"),
        (
            ["--sasl-ssl-port", "29999", "--ssl-keystore", "KS.txt"],
            "cannot tell the store type",
        ),
    ],
)
def test_bad_security_options_are_usage_errors(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    keystore = tmp_path / "broker.p12"
    keystore.write_bytes(b"not really a keystore")
    (tmp_path / "KS.txt").write_text("x")
    args = [str(keystore) if a == "KS" else str(tmp_path / a) if a == "KS.txt" else a for a in args]
    result = run_kafka_sh("start", "--dir", str(tmp_path / "k"), *args, check=False)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr


def test_scram_users_need_a_listener(tmp_path: Path) -> None:
    result = run_kafka_sh(
        "start", "--dir", str(tmp_path / "k"), "--scram-user", "alice:pw", check=False
    )
    assert result.returncode == 2
    assert "--scram-user needs a SASL_SSL listener" in result.stderr
    assert not (tmp_path / "k").exists()  # a usage error leaves nothing behind
