"""A worker service whose work is one long-running task: start it, and on stop let it end.

Faust starts and stops the services registered with ``app.service``; a role's loop (the
compute runtime, the sink, the alert evaluator) checks ``_stopping`` between steps so
that a stop lets the step in hand finish (commit, flush, persist) instead of cancelling it.
"""

from __future__ import annotations

import asyncio
import contextlib

import mode

__all__ = ["MainTaskService"]


class MainTaskService(mode.Service):  # type: ignore[misc]
    """Runs :meth:`_main` from start; a stop sets ``_stopping`` (and ``_stop_event``) and
    waits for it."""

    #: Seconds a stop waits for the running step before giving up on it.
    stop_timeout_seconds: float = 60.0
    task_name: str = "cxpulse-service"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stop_event = asyncio.Event()

    async def _main(self) -> None:
        raise NotImplementedError

    async def on_start(self) -> None:
        self._task = asyncio.create_task(self._main(), name=self.task_name)

    async def on_stop(self) -> None:
        self._stopping = True
        self._stop_event.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(
                    asyncio.shield(self._task), timeout=self.stop_timeout_seconds
                )
