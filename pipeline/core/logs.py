"""key=value logging, configured once per process.

Every line reads ``ts=... level=... logger=... msg="..." key=value ...``; pass structured
fields with ``log.info("flushed", extra={"kv": {"rows": 12}})`` or use :func:`kv`.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

__all__ = ["configure_logging", "kv"]

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


def configure_logging(level: str = "INFO") -> None:
    """Idempotent: a second call only changes the level."""
    global _CONFIGURED
    root = logging.getLogger()
    root.setLevel(level)
    if _CONFIGURED:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root.handlers[:] = [handler]
    # Faust/aiokafka are chatty at INFO about every rebalance step; kafka-python warns about
    # every retried produce request (leader moves right after topic creation).
    for noisy in ("aiokafka", "faust.transport", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    logging.getLogger("kafka").setLevel(max(logging.ERROR, root.level))
    _CONFIGURED = True
