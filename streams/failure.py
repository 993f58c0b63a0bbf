"""Crash-only handling of unexpected errors inside agents.

Faust acknowledges the event an agent was processing when the agent raises, and its
supervisor restarts the agent after that event: the event is skipped (faust-streaming
#315, #189). For a pipeline that must not lose input, an unexpected exception therefore
ends the process at once, before any acknowledgement: the supervisor (Kubernetes,
``cxpulse run``) restarts it and it resumes from the last committed offset, where the
replay rules make reprocessing harmless.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

from pipeline.core.logs import kv

__all__ = ["EXIT_AGENT_CRASH", "die"]

EXIT_AGENT_CRASH = 70  # EX_SOFTWARE


def die(log: logging.Logger, where: str, exc: BaseException) -> NoReturn:
    log.critical(
        "unexpected error: exiting without acknowledging the current input",
        exc_info=exc,
        extra=kv(where=where, error=type(exc).__name__),
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(EXIT_AGENT_CRASH)
