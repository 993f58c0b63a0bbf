"""The benign coordinator messages of every worker start are DEBUG, and nothing else is."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from pipeline.core.logs import BenignStartupFilter, KeyValueFormatter

COORDINATOR = "aiokafka.consumer.group_coordinator"
NOT_AVAILABLE = "Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError"
DEAD = "Marking the coordinator dead (node 1)for group cxpulse-compute."


@pytest.fixture
def capture() -> Iterator[tuple[io.StringIO, logging.Handler]]:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    saved = root.level
    root.setLevel(logging.INFO)
    yield buf, handler
    root.setLevel(saved)


def emit(handler: logging.Handler, name: str, level: int, msg: str) -> None:
    handler.handle(logging.LogRecord(name, level, __file__, 1, msg, None, None))


@pytest.mark.parametrize(
    ("level", "msg"), [(logging.ERROR, NOT_AVAILABLE), (logging.WARNING, DEAD)]
)
def test_start_up_coordinator_messages_are_hidden_at_info(
    capture: tuple[io.StringIO, logging.Handler], level: int, msg: str
) -> None:
    buf, handler = capture
    handler.addFilter(BenignStartupFilter())
    emit(handler, COORDINATOR, level, msg)
    assert buf.getvalue() == ""


def test_they_show_as_debug_when_debugging(capture: tuple[io.StringIO, logging.Handler]) -> None:
    buf, handler = capture
    logging.getLogger().setLevel(logging.DEBUG)
    handler.addFilter(BenignStartupFilter())
    emit(handler, COORDINATOR, logging.ERROR, NOT_AVAILABLE)
    assert "level=debug" in buf.getvalue() and "GroupCoordinatorNotAvailableError" in buf.getvalue()


@pytest.mark.parametrize(
    ("name", "level", "msg"),
    [
        (COORDINATOR, logging.ERROR, "Group Coordinator Request failed: [Error 29] Authorization"),
        ("aiokafka", logging.ERROR, "Unable connect to node: GroupCoordinatorNotAvailableError"),
        ("cxpulse", logging.WARNING, DEAD),
    ],
    ids=["other-coordinator-error", "other-logger", "our-logger"],
)
def test_other_messages_keep_their_level(
    capture: tuple[io.StringIO, logging.Handler], name: str, level: int, msg: str
) -> None:
    buf, handler = capture
    handler.addFilter(BenignStartupFilter())
    emit(handler, name, level, msg)
    assert f"level={logging.getLevelName(level).lower()}" in buf.getvalue()


def test_after_start_up_they_keep_their_level(
    capture: tuple[io.StringIO, logging.Handler],
) -> None:
    buf, handler = capture
    handler.addFilter(BenignStartupFilter(grace_seconds=0))
    emit(handler, COORDINATOR, logging.ERROR, NOT_AVAILABLE)
    emit(handler, COORDINATOR, logging.WARNING, DEAD)
    assert buf.getvalue().count("level=error") == 1
    assert buf.getvalue().count("level=warning") == 1
