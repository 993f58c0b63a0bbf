"""cxpulse: customer-support interactions in, live KPIs out.

The public surface is small on purpose: the app factory, the settings and the event model.
Everything else is reached through the ``cxpulse`` command. ``create_app`` is imported
lazily so that light tools importing the contract do not load Faust.
"""

from __future__ import annotations

from typing import Any

from pipeline.core.config import Settings, load_settings
from pipeline.core.events import Event, parse_event

__all__ = ["Event", "Settings", "create_app", "load_settings", "parse_event"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from pipeline.app.factory import create_app

        return create_app
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
