"""Secrets and DSNs: reading secret files, checking and masking ClickHouse DSNs.

Kept apart from :mod:`pipeline.core.config` (which uses them) so the settings module stays a
readable list of settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pipeline.core.errors import ConfigError

__all__ = ["DSN_SCHEMES", "check_dsn", "read_secret_file", "redact_dsn", "secret_from_file"]


def read_secret_file(path: str | Path, env: str) -> str:
    """The secret in ``path`` (one trailing newline dropped); ConfigError naming ``env``."""
    where = f"{env}={path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"secret file not found: {where}") from None
    except PermissionError:
        raise ConfigError(f"secret file not readable by this user: {where}") from None
    except IsADirectoryError:
        raise ConfigError(f"secret file is a directory: {where}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"secret file is not UTF-8 text: {where}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read secret file {where}: {exc.strerror}") from None
    value = text.removesuffix("\n").removesuffix("\r")
    if not value:
        raise ConfigError(f"secret file is empty: {where}")
    return value


def secret_from_file(data: Any, section: str, field: str) -> Any:
    """Fill ``field`` from ``<field>_file`` (before validation); both set is an error."""
    if not isinstance(data, dict) or data.get(f"{field}_file") in (None, ""):
        return data
    env = f"CXPULSE_{section.upper()}__{field.upper()}"
    if data.get(field) not in (None, ""):
        raise ConfigError(f"set {env} or {env}_FILE, not both")
    return {**data, field: read_secret_file(data[f"{field}_file"], f"{env}_FILE")}


DSN_SCHEMES = ("chdb", "http", "https")
_SECRET_PARAMS = ("password", "secret", "token", "key")
_BOOL_WORDS = {"true", "false", "1", "0", "yes", "no", "y", "n"}


def check_dsn(dsn: str) -> None:
    """Reject a DSN the client would misread (an unknown scheme is silently taken as HTTP).

    The messages show the DSN with its credentials masked.
    """
    shown = redact_dsn(dsn)
    scheme, sep, _ = dsn.partition("://")
    if not sep:
        raise ValueError(
            f"{shown!r} is not a DSN: use chdb://PATH (embedded) or "
            "http(s)://USER:PASSWORD@HOST:PORT (a server)"
        )
    if scheme.lower() not in DSN_SCHEMES:
        raise ValueError(
            f"unsupported scheme {scheme + '://'!r} in {shown!r}: use chdb://PATH (embedded), "
            "http://HOST:8123 or https://HOST:8443 (a server)"
        )
    if scheme.lower() == "chdb":
        return
    try:
        parts = urlsplit(dsn)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{shown!r} is not a valid URL ({exc})") from None
    if not parts.hostname:
        raise ValueError(f"{shown!r} names no host: use {scheme}://HOST:PORT")
    if port == 0:
        raise ValueError(f"{shown!r}: port 0 is not a port")
    # The store tells clickhouse-connect the interface from the scheme (left alone it picks
    # TLS from the port), so https:// is TLS on any port; plain HTTP to a TLS port would
    # only fail later with an obscure error.
    if scheme.lower() == "http" and port in (443, 8443):
        raise ValueError(f"{shown!r}: port {port} is a TLS port; use https://")
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "verify" and value.lower() not in _BOOL_WORDS:
            raise ValueError(f"{shown!r}: verify must be true or false, got {value!r}")
        if name in ("secure", "interface"):
            raise ValueError(f"{shown!r}: drop {name}=, the scheme (http/https) decides")


def redact_dsn(dsn: str) -> str:
    """``scheme://user:***@host/...?password=***``: credentials masked, the rest kept."""
    scheme, sep, rest = dsn.partition("://")
    if not sep:
        return dsn
    head, qmark, query = rest.partition("?")
    if "@" in head:
        creds, _, host = head.rpartition("@")
        user = creds.split(":", 1)[0]
        head = f"{user}:***@{host}"
    if qmark:
        masked = []
        for pair in query.split("&"):
            name, eq, value = pair.partition("=")
            secret = any(word in name.lower() for word in _SECRET_PARAMS)
            masked.append(f"{name}{eq}***" if eq and secret and value else pair)
        query = "&".join(masked)
    return f"{scheme}://{head}{qmark}{query}"
