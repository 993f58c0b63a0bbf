"""Run one Faust worker of a role in this process until a signal (or a deadline)."""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

from pipeline.app.factory import Role, create_app
from pipeline.core.config import Settings
from pipeline.core.logs import kv
from pipeline.core.metrics import serve_metrics
from pipeline.core.topics import ensure_topics

__all__ = ["run_worker"]

log = logging.getLogger(__name__)


def run_worker(
    settings: Settings,
    role: Role,
    *,
    worker_id: str = "0",
    duration: float | None = None,
    metrics_port: int | None = None,
    web_port: int | None = None,
) -> None:
    """Blocks; returns (via SystemExit from Faust) after SIGINT/SIGTERM or ``duration``."""
    from faust.worker import Worker

    ports: dict[str, Any] = {}
    if web_port is not None:
        ports["worker_web" if role == "compute" else "sink_web"] = web_port
    if ports:
        settings = settings.model_copy(update={"ports": settings.ports.model_copy(update=ports)})
    ensure_topics(settings)
    role_app = create_app(settings, role, worker_id=worker_id)
    port = metrics_port
    if port is None:
        port = settings.ports.worker_metrics if role == "compute" else settings.ports.sink_metrics
    serve_metrics(port)
    log.info(
        "worker starting",
        extra=kv(role=role, worker_id=worker_id, metrics_port=port, settings=settings.as_dict()),
    )
    worker = Worker(
        role_app.app,
        loglevel=settings.log_level.lower(),
        quiet=True,
        override_logging=False,
        redirect_stdouts=False,
    )
    worker.spinner = None  # a terminal spinner would write escape codes into log files
    if duration:
        worker.loop.call_later(duration, os.kill, os.getpid(), signal.SIGTERM)
    try:
        worker.execute_from_commandline()
    finally:
        if role_app.store is not None:
            role_app.store.close()
