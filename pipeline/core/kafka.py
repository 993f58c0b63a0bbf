"""The one place that turns settings into Kafka client configuration, and connection errors
into one line that says what to fix.

Three client libraries talk to Kafka here: kafka-python (topics, simulate, replay),
aiokafka (the workers' consumers and transactional producers) and Faust (through aiokafka).
Each wants the same security settings in its own shape; building them in one place keeps
TLS and SASL identical for all of them. The TLS context is built from
``CXPULSE_KAFKA__SSL_CAFILE`` (or the system CAs), with hostname checks on.

A failed SASL login or TLS handshake does not raise anything useful from these clients: they
log the cause and retry until a bootstrap timeout. :func:`probe` connects once with aiokafka,
catches the cause from its log, and raises a :class:`CxpulseError` naming the setting to fix.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pipeline.core.config import KafkaSettings, Settings
from pipeline.core.errors import ConfigError, CxpulseError

__all__ = [
    "aiokafka_kwargs",
    "broker_reachable",
    "client_kwargs",
    "diagnose",
    "faust_credentials",
    "kafka_python_kwargs",
    "probe",
    "ssl_context",
]

log = logging.getLogger(__name__)


def ssl_context(settings: Settings | KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context of the SSL/SASL_SSL protocols (None for plaintext ones)."""
    kafka = settings.kafka if isinstance(settings, Settings) else settings
    if not kafka.uses_tls:
        return None
    cafile = str(kafka.ssl_cafile) if kafka.ssl_cafile else None
    try:
        return ssl.create_default_context(cafile=cafile)
    except FileNotFoundError:
        raise ConfigError(f"CA file not found: CXPULSE_KAFKA__SSL_CAFILE={cafile}") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"CXPULSE_KAFKA__SSL_CAFILE={cafile} is not a PEM CA bundle ({exc})"
        ) from None


def _sasl(kafka: KafkaSettings) -> dict[str, Any]:
    if not kafka.sasl_mechanism:
        return {}
    password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
    return {
        "sasl_mechanism": kafka.sasl_mechanism,
        "sasl_plain_username": kafka.sasl_username or "",
        "sasl_plain_password": password,
    }


def client_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """Servers, protocol, SASL and TLS: what every Kafka client here is given."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": [h.strip() for h in kafka.bootstrap_servers.split(",") if h.strip()],
        "security_protocol": kafka.security_protocol,
        **_sasl(kafka),
    }
    context = ssl_context(kafka)
    if context is not None:
        kwargs["ssl_context"] = context
    return kwargs


def aiokafka_kwargs(settings: Settings, *, client_id: str | None = None) -> dict[str, Any]:
    """Keyword arguments for aiokafka consumers, producers and admin clients."""
    return {**client_kwargs(settings.kafka), "client_id": client_id or settings.app_id}


def kafka_python_kwargs(settings: Settings, *, client_id: str | None = None) -> dict[str, Any]:
    """Keyword arguments for kafka-python's admin client, producer and consumer."""
    kwargs = aiokafka_kwargs(settings, client_id=client_id)
    kwargs["bootstrap_timeout_ms"] = int(settings.kafka.connect_timeout_seconds * 1000)
    return kwargs


def faust_credentials(settings: Settings) -> Any:
    """``broker_credentials`` for ``faust.App`` (None for PLAINTEXT)."""
    import faust

    kafka = settings.kafka
    if kafka.sasl_mechanism:
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        return faust.SASLCredentials(
            username=kafka.sasl_username or "",
            password=password,
            mechanism=kafka.sasl_mechanism,
            ssl_context=ssl_context(settings),
        )
    if kafka.security_protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    return None


def broker_reachable(bootstrap_servers: str) -> bool:
    """A TCP connect to any bootstrap server (fast, unlike a client bootstrap timeout)."""
    for hostport in bootstrap_servers.split(","):
        host, _, port = hostport.strip().rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=1):
                return True
        except (OSError, ValueError):
            continue
    return False


# ------------------------------------------------------------------------------ diagnosis

# (cause pattern, the line to show); the last rule may be a broker that is still starting, so
# it is retried until the timeout, while the others fail at once.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"SaslAuthenticationFailed|Authentication failed", re.I),
        "Kafka at {servers} rejected the login of user {user!r} ({mechanism}): check "
        "CXPULSE_KAFKA__SASL_USERNAME and the password (CXPULSE_KAFKA__SASL_PASSWORD or "
        "CXPULSE_KAFKA__SASL_PASSWORD_FILE)",
    ),
    (
        re.compile(r"UnsupportedSaslMechanism|Unsupported SASL mechanism", re.I),
        "Kafka at {servers} does not offer SASL mechanism {mechanism}: check "
        "CXPULSE_KAFKA__SASL_MECHANISM",
    ),
    (
        re.compile(r"CERTIFICATE_VERIFY_FAILED|certificate verify failed", re.I),
        "TLS: the certificate of the Kafka broker at {servers} is not trusted ({detail}): set "
        "CXPULSE_KAFKA__SSL_CAFILE to the CA that signed it (now: {cafile})",
    ),
    (
        re.compile(r"WRONG_VERSION_NUMBER|record layer failure|UNEXPECTED_EOF|EOF occurred", re.I),
        "TLS handshake with {servers} failed ({detail}): is that a TLS listener? check "
        "CXPULSE_KAFKA__BOOTSTRAP_SERVERS and CXPULSE_KAFKA__SECURITY_PROTOCOL={protocol}",
    ),
    (
        re.compile(
            r"Connection at \S+ closed|socket disconnected|Connection ?reset|IncompleteRead", re.I
        ),
        "Kafka at {servers} closed the connection: does CXPULSE_KAFKA__SECURITY_PROTOCOL="
        "{protocol} match that listener (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)?",
    ),
)


def diagnose(settings: Settings, cause: str) -> str | None:
    """One line for a connection failure whose client-logged cause is ``cause``."""
    kafka = settings.kafka
    for pattern, template in _RULES:
        if pattern.search(cause):
            detail = cause.rsplit("certificate verify failed:", 1)[-1] if "verify" in cause else ""
            detail = re.sub(r"\s*\(_ssl\.c:\d+\)", "", detail).strip(" :") or cause.strip()
            return template.format(
                servers=kafka.bootstrap_servers,
                user=kafka.sasl_username,
                mechanism=kafka.sasl_mechanism,
                protocol=kafka.security_protocol,
                cafile=kafka.ssl_cafile or "the system CAs",
                detail=detail[:200],
            )
    return None


class _Capture(logging.Handler):
    """Collects what a Kafka client logs while it connects (and keeps it off stderr)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string in a library must not break the capture
            message = str(record.msg)
        # Some causes print as '' (an EOF during the TLS handshake): keep their type names.
        args = record.args if isinstance(record.args, tuple) else ()
        types = [type(a).__name__ for a in args if isinstance(a, BaseException)]
        self.messages.append(f"{message} [{', '.join(types)}]" if types else message)


@contextmanager
def captured_client_logs(*names: str) -> Iterator[_Capture]:
    """Route the named loggers' records into a capture for the duration (not to stderr)."""
    capture = _Capture()
    saved = []
    for name in names:
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate, logger.level))
        logger.addHandler(capture)
        logger.propagate = False
        logger.setLevel(logging.WARNING)
    try:
        yield capture
    finally:
        for logger, propagate, level in saved:
            logger.removeHandler(capture)
            logger.propagate = propagate
            logger.setLevel(level)


def _explain(settings: Settings, messages: list[str]) -> tuple[str | None, bool]:
    """The line for the latest explainable cause, and whether waiting cannot fix it."""
    for message in reversed(messages):
        line = diagnose(settings, message)
        if line is not None:
            return line, not _RULES[-1][0].search(message)
    return None, False


async def _bootstrap_once(settings: Settings) -> None:
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(
        **aiokafka_kwargs(settings, client_id=f"{settings.app_id}-probe"),
        request_timeout_ms=max(int(settings.kafka.connect_timeout_seconds * 1000), 1000),
    )
    try:
        await client.bootstrap()
    finally:
        await client.close()


def _run(coro: Any) -> None:
    """asyncio.run, also from a thread that already runs a loop (then in a helper thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)
        return
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="kafka-probe")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def probe(settings: Settings, timeout_s: float | None = None) -> None:
    """Wait until the brokers accept a login with these settings, or raise one clear line.

    A broker that is not up yet is waited for (up to ``timeout_s``, default
    ``kafka.connect_timeout_seconds``); a rejected login or an untrusted certificate fails at
    once, since waiting cannot fix them.
    """
    from aiokafka.errors import KafkaError

    timeout_s = settings.kafka.connect_timeout_seconds if timeout_s is None else timeout_s
    ssl_context(settings)  # a missing or broken CA file is a config error, not a broker one
    deadline = time.monotonic() + timeout_s
    servers = settings.kafka.bootstrap_servers
    seen: list[str] = []
    while True:
        if broker_reachable(servers):
            with captured_client_logs("aiokafka", "kafka") as capture:
                try:
                    _run(_bootstrap_once(settings))
                    return
                except (TimeoutError, KafkaError, OSError) as exc:
                    capture.messages.append(str(exc))
            seen = capture.messages
            line, permanent = _explain(settings, seen)
            if line is not None and permanent:
                raise CxpulseError(line)
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    line, _ = _explain(settings, seen)
    if line is not None:
        raise CxpulseError(line)
    raise CxpulseError(
        f"no Kafka broker answers at {servers} within {timeout_s:g}s (start one with "
        "deploy/kafka/kafka.sh start, or set CXPULSE_KAFKA__BOOTSTRAP_SERVERS; "
        "CXPULSE_KAFKA__CONNECT_TIMEOUT_SECONDS sets the wait)"
    )
