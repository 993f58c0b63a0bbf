"""cxpulse: customer-support interactions in, live KPIs out.

The public surface is small on purpose: the app factory, the settings and the event model.
Everything else is reached through the ``cxpulse`` command.
"""

from pipeline.app import create_app
from pipeline.config import Settings, load_settings
from pipeline.events import Event, parse_event

__all__ = ["Event", "Settings", "create_app", "load_settings", "parse_event"]
