"""One typed configuration for every cxpulse process.

Sources, strongest first: keyword arguments (the CLI), environment variables
(``CXPULSE_<SECTION>__<FIELD>``, e.g. ``CXPULSE_KAFKA__BOOTSTRAP_SERVERS``), a TOML file
(``CXPULSE_CONFIG=path`` or ``cxpulse --config path``), then the defaults below, which run
everything embedded on one machine (local broker, chDB under ``./var``).

Secrets (SASL password, the ClickHouse DSN which may hold a password) are ``SecretStr`` and
masked by :meth:`Settings.as_dict`, the only form that is ever logged.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from pipeline.core.errors import ConfigError

__all__ = [
    "AlertSettings",
    "ClickHouseSettings",
    "KafkaSettings",
    "KpiSettings",
    "PortSettings",
    "Settings",
    "SinkSettings",
    "TopicSettings",
    "load_settings",
    "redact_dsn",
]

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(BaseModel):
    """How to reach the brokers. Env: ``CXPULSE_KAFKA__<FIELD>``."""

    model_config = _FROZEN

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    replication_factor: int = Field(1, ge=1)

    @field_validator("security_protocol", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    def faust_broker_url(self) -> str:
        """Faust wants ``kafka://host:port;host:port``."""
        hosts = [h.strip() for h in self.bootstrap_servers.split(",") if h.strip()]
        return ";".join(f"kafka://{h}" for h in hosts)

    def admin_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python clients (admin, producer)."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            if self.sasl_password is not None:
                kwargs["sasl_plain_password"] = self.sasl_password.get_secret_value()
        if self.ssl_cafile:
            kwargs["ssl_cafile"] = str(self.ssl_cafile)
        return kwargs


class TopicSettings(BaseModel):
    """Topic names and partition count. Env: ``CXPULSE_TOPICS__<FIELD>``.

    ``conversation_log`` is both the conversation-state changelog and the stream of KPI
    contributions the sink aggregates; it must have as many partitions as ``events``.
    """

    model_config = _FROZEN

    events: str = "cxpulse.interactions"
    conversation_log: str = "cxpulse.conversation-log"
    dead_letter: str = "cxpulse.dead-letter"
    late_events: str = "cxpulse.late-events"
    partitions: int = Field(4, ge=1, le=1024)
    # The sink must read every contribution before compaction may drop it.
    log_min_compaction_lag_hours: int = Field(24, ge=1)
    # Conversation state lives 7 days after its last event; keep one day of slack.
    log_retention_days: int = Field(8, ge=1)
    side_retention_days: int = Field(14, ge=1)


class ClickHouseSettings(BaseModel):
    """Where aggregates go. Env: ``CXPULSE_CLICKHOUSE__<FIELD>``.

    ``dsn``: ``chdb:///abs/path`` or ``chdb://relative/path`` (embedded engine, one process
    per path) or ``http(s)://user:password@host:port`` (a server or cluster).
    """

    model_config = _FROZEN

    dsn: SecretStr = SecretStr("chdb://var/chdb")
    database: str = "cxpulse"
    minute_ttl_days: int = Field(400, ge=1)
    side_ttl_days: int = Field(30, ge=1)

    @property
    def is_embedded(self) -> bool:
        return self.dsn.get_secret_value().startswith("chdb://")


class SinkSettings(BaseModel):
    """Batching and backoff of the ClickHouse sink. Env: ``CXPULSE_SINK__<FIELD>``."""

    model_config = _FROZEN

    batch_max_messages: int = Field(5000, ge=1)
    flush_interval_seconds: float = Field(1.0, gt=0)
    retry_initial_seconds: float = Field(0.5, gt=0)
    retry_max_seconds: float = Field(30.0, gt=0)


class KpiSettings(BaseModel):
    """Definitions that are configuration. Env: ``CXPULSE_KPI__<FIELD>``."""

    model_config = _FROZEN

    allowed_lateness_seconds: int = Field(600, ge=0)
    state_retention_days: int = Field(7, ge=1)
    # Expired conversation states are deleted (tombstoned) every this many accepted events
    # per partition; expiry itself is exact at any time (the gate ignores expired state).
    state_sweep_every_events: int = Field(10_000, ge=1)
    sla_urgent_seconds: int = Field(5 * 60, gt=0)
    sla_high_seconds: int = Field(15 * 60, gt=0)
    sla_normal_seconds: int = Field(60 * 60, gt=0)
    sla_low_seconds: int = Field(4 * 60 * 60, gt=0)

    def sla_targets_us(self) -> dict[str, int]:
        """FRT targets per priority, in microseconds (the engine's time unit)."""
        return {
            "urgent": self.sla_urgent_seconds * 1_000_000,
            "high": self.sla_high_seconds * 1_000_000,
            "normal": self.sla_normal_seconds * 1_000_000,
            "low": self.sla_low_seconds * 1_000_000,
        }


class PortSettings(BaseModel):
    """HTTP ports. Env: ``CXPULSE_PORTS__<FIELD>``; 0 disables that endpoint."""

    model_config = _FROZEN

    worker_metrics: int = Field(9464, ge=0, le=65535)
    sink_metrics: int = Field(9465, ge=0, le=65535)
    worker_web: int = Field(6066, ge=0, le=65535)
    sink_web: int = Field(6067, ge=0, le=65535)


class AlertSettings(BaseModel):
    """Drop alerts: rules, receivers, pacing. Env: ``CXPULSE_ALERTS__<FIELD>``.

    ``rules_file`` unset means the rules shipped with cxpulse. Receiver URLs may carry
    credentials, so they are secrets (masked in logs and ``cxpulse config``).
    """

    model_config = _FROZEN

    enabled: bool = True
    rules_file: Path | None = None
    alertmanager_url: SecretStr | None = None
    webhook_url: SecretStr | None = None
    delivery_timeout_seconds: float = Field(10.0, gt=0)
    evaluate_interval_seconds: float = Field(5.0, gt=0)
    resend_interval_seconds: float = Field(60.0, gt=0)
    retry_initial_seconds: float = Field(1.0, gt=0)
    retry_max_seconds: float = Field(300.0, gt=0)
    # A fresh evaluator starts this far back in event time (or at the first data).
    backfill_days: float = Field(8.0, ge=0)
    # Samples processed more than this many minutes after their minute are not read.
    max_lag_minutes: int = Field(60, ge=0, le=1440)
    grafana_url: str = "http://localhost:3000"
    grafana_dashboard_uid: str = "cxpulse-kpis"
    # Server DSN only: the one-partition topic whose owner is the single evaluator.
    lease_topic: str = "cxpulse.alerts-lease"


class Settings(BaseSettings):
    """Everything a cxpulse process needs to know, frozen after load."""

    model_config = SettingsConfigDict(
        env_prefix="CXPULSE_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    app_id: str = "cxpulse"
    data_dir: Path = Path("var")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Conversation state store of compute workers: RocksDB keeps state on local disk so a
    # restart reads only the changelog tail; memory re-reads the whole log on start.
    table_store: Literal["rocksdb", "memory"] = "rocksdb"
    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    sink: SinkSettings = SinkSettings()
    kpi: KpiSettings = KpiSettings()
    ports: PortSettings = PortSettings()
    alerts: AlertSettings = AlertSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))

    def as_dict(self) -> dict[str, Any]:
        """Settings with secrets masked: the only form fit for logs and ``cxpulse config``.

        The DSN is shown with only its credentials masked, so users can see where data goes.
        """
        data = self.model_dump(mode="json")
        data["clickhouse"]["dsn"] = redact_dsn(self.clickhouse.dsn.get_secret_value())
        return data

    def clickhouse_dsn(self) -> str:
        """The real DSN, with a relative chDB path anchored at the working directory."""
        dsn = self.clickhouse.dsn.get_secret_value()
        if dsn.startswith("chdb://") and not dsn.startswith("chdb:///"):
            rel = dsn.removeprefix("chdb://")
            if rel and rel != "memory" and not rel.startswith(":"):
                return "chdb://" + str(Path(rel).resolve())
        return dsn


def redact_dsn(dsn: str) -> str:
    """``scheme://user:***@host/...``: credentials masked, the rest kept."""
    scheme, sep, rest = dsn.partition("://")
    if not sep or "@" not in rest:
        return dsn
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


class _TomlSource(PydanticBaseSettingsSource):
    """Reads ``CXPULSE_CONFIG`` (a TOML file); absent variable means no file."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("CXPULSE_CONFIG")
        if not path:
            return {}
        try:
            with open(path, "rb") as fh:
                return tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(
                f"config file not found: {path} (fix --config or CXPULSE_CONFIG)"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Load settings, turning validation errors into one line that names the setting."""
    if config_file is not None:
        os.environ["CXPULSE_CONFIG"] = str(config_file)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        env = "CXPULSE_" + "__".join(str(p) for p in first["loc"]).upper()
        raise ConfigError(f"invalid setting {where} ({env}): {first['msg']}") from None
