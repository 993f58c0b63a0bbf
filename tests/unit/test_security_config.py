"""Secrets from env or files, never shown; DSN schemes checked; one mapping to Kafka clients."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.config import Settings, check_dsn, load_settings, redact_dsn
from pipeline.core.errors import ConfigError
from pipeline.core.kafka import (
    aiokafka_kwargs,
    diagnose,
    faust_credentials,
    kafka_python_kwargs,
    ssl_context,
)
from tests.tls_harness import make_ca

ROOT = Path(__file__).resolve().parents[2]
SECRET = "pa55-Word.secret"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CXPULSE_"):
            monkeypatch.delenv(name)


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CXPULSE_")}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def sasl(**extra: object) -> dict[str, object]:
    return {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "app",
        **extra,
    }


# ------------------------------------------------------------------- secrets from files


def test_password_file_fills_the_password(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text(SECRET + "\n")
    s = Settings(kafka=sasl(sasl_password_file=f))
    assert s.kafka.sasl_password is not None
    assert s.kafka.sasl_password.get_secret_value() == SECRET  # one trailing newline dropped


def test_only_one_trailing_newline_is_dropped(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text(" x \n\n")
    s = Settings(kafka=sasl(sasl_password_file=f))
    assert s.kafka.sasl_password is not None
    assert s.kafka.sasl_password.get_secret_value() == " x \n"


def test_dsn_file_fills_the_dsn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "dsn"
    f.write_text(f"https://cx:{SECRET}@ch.internal:8443/?verify=true\n")
    monkeypatch.setenv("CXPULSE_CLICKHOUSE__DSN_FILE", str(f))
    s = load_settings()
    assert s.clickhouse_dsn() == f"https://cx:{SECRET}@ch.internal:8443/?verify=true"
    assert not s.clickhouse.is_embedded


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: d / "missing", "secret file not found: CXPULSE_KAFKA__SASL_PASSWORD_FILE="),
        (lambda d: d, "secret file is a directory: CXPULSE_KAFKA__SASL_PASSWORD_FILE="),
        (lambda d: _write(d / "empty", ""), "secret file is empty"),
        (lambda d: _write(d / "bin", b"\xff\xfe"), "secret file is not UTF-8 text"),
    ],
    ids=["missing", "directory", "empty", "binary"],
)
def test_bad_secret_file_is_one_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: object, expected: str
) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    monkeypatch.setenv("CXPULSE_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CXPULSE_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("CXPULSE_KAFKA__SASL_USERNAME", "app")
    monkeypatch.setenv("CXPULSE_KAFKA__SASL_PASSWORD_FILE", str(path))
    with pytest.raises(ConfigError, match=expected):
        load_settings()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = _write(tmp_path / "pw", SECRET)
    f.chmod(0)
    monkeypatch.setenv("CXPULSE_CLICKHOUSE__DSN_FILE", str(f))
    with pytest.raises(ConfigError, match="not readable by this user"):
        load_settings()


def test_password_and_password_file_together_is_an_error(tmp_path: Path) -> None:
    f = _write(tmp_path / "pw", SECRET)
    with pytest.raises(ConfigError, match=r"CXPULSE_KAFKA__SASL_PASSWORD or .*_FILE, not both"):
        Settings(kafka=sasl(sasl_password="x", sasl_password_file=f))


def test_missing_secret_file_is_one_line_on_the_cli(tmp_path: Path) -> None:
    result = cli("config", CXPULSE_CLICKHOUSE__DSN_FILE=str(tmp_path / "nope"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"cxpulse: error: secret file not found: CXPULSE_CLICKHOUSE__DSN_FILE={tmp_path}/nope"
    ]


def test_cxpulse_config_masks_every_secret(tmp_path: Path) -> None:
    pw = _write(tmp_path / "pw", SECRET + "\n")
    dsn = _write(tmp_path / "dsn", f"https://cx:{SECRET}@ch:8443/?verify=false")
    result = cli(
        "config",
        CXPULSE_KAFKA__SECURITY_PROTOCOL="SASL_SSL",
        CXPULSE_KAFKA__SASL_MECHANISM="SCRAM-SHA-512",
        CXPULSE_KAFKA__SASL_USERNAME="app",
        CXPULSE_KAFKA__SASL_PASSWORD_FILE=str(pw),
        CXPULSE_CLICKHOUSE__DSN_FILE=str(dsn),
    )
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    shown = json.loads(result.stdout)
    assert shown["kafka"]["sasl_password"] == "**********"
    assert shown["kafka"]["sasl_password_file"] == str(pw)
    assert shown["clickhouse"]["dsn"] == "https://cx:***@ch:8443/?verify=false"


def test_password_from_env_is_masked_too() -> None:
    result = cli(
        "config",
        CXPULSE_KAFKA__SECURITY_PROTOCOL="SASL_PLAINTEXT",
        CXPULSE_KAFKA__SASL_MECHANISM="PLAIN",
        CXPULSE_KAFKA__SASL_USERNAME="app",
        CXPULSE_KAFKA__SASL_PASSWORD=SECRET,
    )
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr


# ------------------------------------------------------------------- consistency of SASL


@pytest.mark.parametrize(
    ("kafka", "expected"),
    [
        ({"security_protocol": "SASL_SSL"}, "needs CXPULSE_KAFKA__SASL_MECHANISM"),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"},
            "needs CXPULSE_KAFKA__SASL_USERNAME and a password",
        ),
        ({"sasl_mechanism": "PLAIN"}, "set CXPULSE_KAFKA__SECURITY_PROTOCOL=SASL_SSL"),
    ],
)
def test_incomplete_sasl_settings_are_one_line(kafka: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as info:
        load_settings(kafka=kafka)
    assert str(info.value).startswith("invalid kafka settings: ")


def test_empty_env_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXPULSE_KAFKA__SASL_MECHANISM", "")
    monkeypatch.setenv("CXPULSE_KAFKA__SSL_CAFILE", "")
    s = load_settings()
    assert s.kafka.sasl_mechanism is None and s.kafka.ssl_cafile is None


# ------------------------------------------------------------------- ClickHouse DSN


@pytest.mark.parametrize(
    "dsn",
    [
        "chdb://var/chdb",
        "chdb:///abs/path",
        "http://localhost:8123",
        "https://cx:pw@ch.internal:8443/?verify=false",
        "https://cx:pw@ch.internal:8443/?verify=true&ca_cert=/etc/ssl/ca.pem",
        "HTTPS://ch.internal",
        "https://ch.internal:443",
    ],
)
def test_supported_dsns(dsn: str) -> None:
    check_dsn(dsn)
    assert Settings(clickhouse={"dsn": dsn}).clickhouse.dsn.get_secret_value() == dsn


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("foo://x", "unsupported scheme 'foo://' in 'foo://x'"),
        ("clickhouse://u:pw@h:9000", "unsupported scheme 'clickhouse://'"),
        ("localhost:8123", "is not a DSN"),
        ("http://:8123", "names no host"),
        ("http://h:notaport", "is not a valid URL"),
        ("https://u:pw@h:8443/?verify=maybe", "verify must be true or false"),
        ("http://u:pw@h:8443", "port 8443 is a TLS port; use https://"),
        ("https://u:pw@h:8443/?secure=false", "drop secure=, the scheme"),
    ],
)
def test_bad_dsn_is_one_config_error(dsn: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as info:
        load_settings(clickhouse={"dsn": dsn})
    assert str(info.value).startswith("invalid setting clickhouse.dsn (CXPULSE_CLICKHOUSE__DSN): ")
    assert ":pw@" not in str(info.value)


def test_bad_dsn_on_the_cli_is_one_line_without_library_warnings() -> None:
    result = cli("kpis", CXPULSE_CLICKHOUSE__DSN="foo://u:hunter2@x")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "unsupported scheme 'foo://'" in lines[0]
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("https://cx:pw@h:8443/?verify=false", "https://cx:***@h:8443/?verify=false"),
        ("https://cx@h:8443", "https://cx:***@h:8443"),
        ("http://h:8123/?password=pw&x=1", "http://h:8123/?password=***&x=1"),
        ("http://h/?access_token=t", "http://h/?access_token=***"),
        ("http://u:p@ss@h", "http://u:***@h"),
        ("chdb://var/chdb", "chdb://var/chdb"),
        ("not a dsn", "not a dsn"),
    ],
)
def test_redact_dsn(dsn: str, shown: str) -> None:
    assert redact_dsn(dsn) == shown


# ------------------------------------------------------------------- client mapping


def _secure(tmp_path: Path) -> Settings:
    ca, _ = make_ca(tmp_path / "ca", "unit-test-ca")  # a real CA file for the TLS context
    return Settings(
        app_id="cx",
        kafka={
            "bootstrap_servers": "k1:9093, k2:9093",
            **sasl(sasl_password=SECRET, ssl_cafile=ca),
        },
    )


def test_aiokafka_kwargs_carry_every_security_setting(tmp_path: Path) -> None:
    kw = aiokafka_kwargs(_secure(tmp_path), client_id="cx-compute")
    assert kw["bootstrap_servers"] == ["k1:9093", "k2:9093"]
    assert kw["security_protocol"] == "SASL_SSL"
    assert kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kw["sasl_plain_username"] == "app"
    assert kw["sasl_plain_password"] == SECRET
    assert kw["client_id"] == "cx-compute"
    ctx = kw["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    assert any(c["subject"] for c in ctx.get_ca_certs())  # the CA file was loaded


def test_kafka_python_kwargs_add_the_bootstrap_timeout(tmp_path: Path) -> None:
    settings = _secure(tmp_path)
    kw = kafka_python_kwargs(settings)
    assert kw["bootstrap_timeout_ms"] == 15_000
    assert kw["client_id"] == "cx"
    assert {k: v for k, v in kw.items() if k not in ("bootstrap_timeout_ms", "ssl_context")} == {
        k: v for k, v in aiokafka_kwargs(settings).items() if k != "ssl_context"
    }


def test_plaintext_has_no_tls_or_sasl() -> None:
    kw = aiokafka_kwargs(Settings())
    assert kw["security_protocol"] == "PLAINTEXT"
    assert not {"ssl_context", "sasl_mechanism", "sasl_plain_password"} & set(kw)
    assert faust_credentials(Settings()) is None


def test_faust_credentials(tmp_path: Path) -> None:
    creds = faust_credentials(_secure(tmp_path))
    assert creds.username == "app" and creds.password == SECRET
    assert creds.mechanism.value == "SCRAM-SHA-512"
    assert creds.protocol.value == "SASL_SSL"
    assert SECRET not in repr(creds)
    tls_only = faust_credentials(Settings(kafka={"security_protocol": "SSL"}))
    assert tls_only.protocol.value == "SSL"


def test_missing_or_broken_ca_file_is_a_config_error(tmp_path: Path) -> None:
    missing = Settings(kafka={"security_protocol": "SSL", "ssl_cafile": tmp_path / "nope.pem"})
    with pytest.raises(ConfigError, match="CA file not found: CXPULSE_KAFKA__SSL_CAFILE="):
        ssl_context(missing)
    junk = _write(tmp_path / "junk.pem", "not a certificate")
    with pytest.raises(ConfigError, match="is not a PEM CA bundle"):
        ssl_context(Settings(kafka={"security_protocol": "SSL", "ssl_cafile": junk}))


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        (
            'Unable connect to "h:9093": [Error 58] SaslAuthenticationFailed: Authentication '
            "failed during authentication due to invalid credentials with SASL mechanism",
            "rejected the login of user 'app' (SCRAM-SHA-512)",
        ),
        (
            'Unable connect to "h:9093": [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify '
            "failed: self-signed certificate in certificate chain (_ssl.c:1006)",
            "not trusted (self-signed certificate in certificate chain): set "
            "CXPULSE_KAFKA__SSL_CAFILE",
        ),
        ("[SSL: WRONG_VERSION_NUMBER] wrong version number", "is that a TLS listener?"),
        ('Unable connect to "h:9093":  [ConnectionResetError]', "closed the connection"),
        ("UnsupportedSaslMechanismError", "does not offer SASL mechanism SCRAM-SHA-512"),
    ],
)
def test_diagnose_names_the_setting_to_fix(tmp_path: Path, cause: str, expected: str) -> None:
    line = diagnose(_secure(tmp_path), cause)
    assert line is not None and expected in line
    assert "\n" not in line and SECRET not in line


def test_diagnose_leaves_unknown_causes_alone(tmp_path: Path) -> None:
    assert diagnose(_secure(tmp_path), "something else entirely") is None


def _write(path: Path, data: str | bytes) -> Path:
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


def test_admin_kwargs_delegates_to_the_one_mapping(tmp_path: Path) -> None:
    settings = _secure(tmp_path)
    old = settings.kafka.admin_kwargs()
    new = kafka_python_kwargs(settings)
    assert {k: v for k, v in old.items() if k != "ssl_context"} == {
        k: v
        for k, v in new.items()
        if k not in ("ssl_context", "client_id", "bootstrap_timeout_ms")
    }


@pytest.mark.parametrize(
    ("dsn", "interface"),
    [("https://u:pw@h:9440", "https"), ("https://u:pw@h", "https"), ("http://u:pw@h:8123", "http")],
)
def test_the_scheme_decides_tls_not_the_port(
    dsn: str, interface: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """clickhouse-connect alone would speak plain HTTP to https://h:9440 (TLS by port only)."""
    import clickhouse_connect

    from sinks.clickhouse import store as store_module

    seen: dict[str, Any] = {}

    class Client:
        def command(self, sql: str) -> None: ...

    def fake_get_client(**kwargs: Any) -> Client:
        seen.update(kwargs)
        return Client()

    monkeypatch.setattr(clickhouse_connect, "get_client", fake_get_client)
    check_dsn(dsn)
    store_module.open_store(dsn, "cxpulse")
    assert seen["interface"] == interface and seen["dsn"] == dsn
