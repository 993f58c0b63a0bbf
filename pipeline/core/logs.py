"""key=value logging, configured once per process.

Every line reads ``ts=... level=... logger=... msg="..." key=value ...``; pass structured
fields with ``log.info("flushed", extra={"kv": {"rows": 12}})`` or use :func:`kv`.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

__all__ = ["BenignStartupFilter", "configure_logging", "kv"]

_CONFIGURED = False


def _quote(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def kv(**fields: Any) -> dict[str, Any]:
    """``extra=`` for a log call: ``log.info("flushed", extra=kv(rows=3))``."""
    return {"kv": fields}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [
            f"ts={ts}.{int(record.msecs):03d}Z",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_quote(record.getMessage())}",
        ]
        fields = getattr(record, "kv", None)
        if fields:
            parts.extend(f"{k}={_quote(v)}" for k, v in fields.items())
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


class BenignStartupFilter(logging.Filter):
    """Downgrades to DEBUG the coordinator messages every worker start logs by design.

    aiokafka logs ``Group Coordinator Request failed: [Error 15]
    GroupCoordinatorNotAvailableError`` (error) and ``Marking the coordinator dead`` (warning)
    while a fresh broker creates ``__consumer_offsets`` or a group's coordinator is elected:
    normal at start-up, and read as failures by whoever watches the logs. Only during the
    first ``grace_seconds`` after logging is configured: later, the same lines mean a broker
    problem and keep their level.
    """

    LOGGER = "aiokafka.consumer.group_coordinator"
    PATTERNS = ("GroupCoordinatorNotAvailableError", "Marking the coordinator dead")

    def __init__(self, grace_seconds: float = 120.0) -> None:
        super().__init__()
        self.until = time.monotonic() + grace_seconds

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.levelno > logging.DEBUG
            and record.name.startswith(self.LOGGER)
            and time.monotonic() < self.until
            and any(p in record.getMessage() for p in self.PATTERNS)
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def configure_logging(level: str = "INFO") -> None:
    """Idempotent: a second call only changes the level."""
    global _CONFIGURED
    root = logging.getLogger()
    root.setLevel(level)
    if _CONFIGURED:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    handler.addFilter(BenignStartupFilter())
    root.handlers[:] = [handler]
    # Faust/aiokafka are chatty at INFO about every rebalance step; kafka-python warns about
    # every retried produce request (leader moves right after topic creation).
    for noisy in ("aiokafka", "faust.transport", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    logging.getLogger("kafka").setLevel(max(logging.ERROR, root.level))
    # The ClickHouse driver warns about every retried HTTP request; cxpulse reports the
    # failure itself, in one line (CLI) or with its backoff (sink).
    for driver in ("urllib3", "clickhouse_connect"):
        logging.getLogger(driver).setLevel(max(logging.ERROR, root.level))
    _CONFIGURED = True
