"""aiokafka clients of the runtime, configured from the settings in one place."""

from __future__ import annotations

from typing import Any

from pipeline.core.config import Settings
from pipeline.core.kafka import aiokafka_kwargs

__all__ = ["client_kwargs"]


def client_kwargs(settings: Settings, client_id: str) -> dict[str, Any]:
    """Connection and security keyword arguments shared by consumers and producers."""
    return aiokafka_kwargs(settings, client_id=client_id)
