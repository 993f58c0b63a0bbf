"""aiokafka clients of the runtime, configured from the settings in one place."""

from __future__ import annotations

import ssl
from typing import Any

from pipeline.core.config import Settings

__all__ = ["client_kwargs"]


def client_kwargs(settings: Settings, client_id: str) -> dict[str, Any]:
    """Connection and security keyword arguments shared by consumers and producers."""
    kafka = settings.kafka
    kwargs: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "client_id": client_id,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        cafile = str(kafka.ssl_cafile) if kafka.ssl_cafile else None
        kwargs["ssl_context"] = ssl.create_default_context(cafile=cafile)
    if kafka.sasl_mechanism:
        kwargs["sasl_mechanism"] = kafka.sasl_mechanism
        kwargs["sasl_plain_username"] = kafka.sasl_username
        if kafka.sasl_password is not None:
            kwargs["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    return kwargs
