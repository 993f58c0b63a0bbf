"""The single exception root, so callers can catch everything cxpulse raises in one place."""

from __future__ import annotations

__all__ = ["ConfigError", "CxpulseError", "InvalidEvent"]


class CxpulseError(Exception):
    """Root of every error cxpulse raises on purpose."""


class ConfigError(CxpulseError):
    """The configuration cannot work; the message says which setting to fix."""


class InvalidEvent(CxpulseError):
    """An input event breaks the contract; ``reason`` is the dead-letter reason code."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
