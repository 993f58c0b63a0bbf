"""The ground floor: event contract, configuration, errors, logging, metrics, topic layout.

Everything else imports from here; nothing here imports from ``streams``, ``sinks`` or the
application layer above them (``tests/unit/test_layers.py`` checks it).
"""
