"""One typed configuration for every cxpulse process.

Sources, strongest first: keyword arguments (the CLI), environment variables
(``CXPULSE_<SECTION>__<FIELD>``, e.g. ``CXPULSE_KAFKA__BOOTSTRAP_SERVERS``), a TOML file
(``CXPULSE_CONFIG=path`` or ``cxpulse --config path``), then the defaults below, which run
everything embedded on one machine (local broker, chDB under ``./var``).

Secrets (SASL password, the ClickHouse DSN which may hold a password) are ``SecretStr`` and
masked by :meth:`Settings.as_dict`, the only form that is ever logged. Each secret may also
come from a file (``<FIELD>_FILE``, e.g. ``CXPULSE_KAFKA__SASL_PASSWORD_FILE=/run/secrets/pw``,
as Kubernetes and compose mount secrets): the file's text, one trailing newline dropped.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from pipeline.core.errors import ConfigError
from pipeline.core.secrets import check_dsn, read_secret_file, redact_dsn, secret_from_file

__all__ = [
    "AlertSettings",
    "ClickHouseSettings",
    "ComputeSettings",
    "CustomerSettings",
    "KafkaSettings",
    "KpiSettings",
    "PortSettings",
    "Settings",
    "SinkSettings",
    "TopicSettings",
    "check_dsn",
    "load_settings",
    "read_secret_file",
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
    # A file holding the password (a mounted secret); fills sasl_password.
    sasl_password_file: Path | None = None
    ssl_cafile: Path | None = None
    replication_factor: int = Field(1, ge=1)
    # How long commands wait for a broker to answer before one clear error line.
    connect_timeout_seconds: float = Field(15.0, gt=0, le=600)

    @field_validator("security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "sasl_mechanism", "sasl_username", "sasl_password", "sasl_password_file", "ssl_cafile",
        mode="before",
    )  # fmt: skip
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="before")
    @classmethod
    def _password_file(cls, data: Any) -> Any:
        return secret_from_file(data, "kafka", "sasl_password")

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        """SASL settings only with a SASL protocol, and complete: a clear error at start-up
        instead of a client that fails to authenticate much later."""
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and not self.sasl_mechanism:
            raise ValueError(
                f"security_protocol {self.security_protocol} needs CXPULSE_KAFKA__SASL_MECHANISM "
                "(PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
            )
        if sasl and not (self.sasl_username and self.sasl_password):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs CXPULSE_KAFKA__SASL_USERNAME "
                "and a password (CXPULSE_KAFKA__SASL_PASSWORD or CXPULSE_KAFKA__SASL_PASSWORD_FILE)"
            )
        if not sasl and self.sasl_mechanism:
            raise ValueError(
                f"sasl_mechanism is set but security_protocol is {self.security_protocol}: set "
                "CXPULSE_KAFKA__SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT)"
            )
        return self

    def faust_broker_url(self) -> str:
        """Faust wants ``kafka://host:port;host:port``."""
        hosts = [h.strip() for h in self.bootstrap_servers.split(",") if h.strip()]
        return ";".join(f"kafka://{h}" for h in hosts)

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def admin_kwargs(self) -> dict[str, Any]:
        """kafka-python client arguments; prefer ``pipeline.core.kafka.kafka_python_kwargs``
        (the one mapping of settings to clients), which this delegates to."""
        from pipeline.core.kafka import client_kwargs

        return client_kwargs(self)


class TopicSettings(BaseModel):
    """Topic names and partition count. Env: ``CXPULSE_TOPICS__<FIELD>``.

    ``conversation_log`` is the conversation-state changelog and ``deltas`` the per-batch
    minute partials the sink aggregates; both must have as many partitions as ``events``
    (the compute role writes each input partition's output to the same partition number).
    """

    model_config = _FROZEN

    events: str = "cxpulse.interactions"
    conversation_log: str = "cxpulse.conversation-log"
    # Per batch: the KPI partials it adds, its verdict counts and event-time progress.
    deltas: str = "cxpulse.minute-deltas"
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
    per path) or ``http(s)://user:password@host:port/?verify=false&ca_cert=/ca.pem`` (a
    server or cluster; user, password and TLS options all in the DSN). ``dsn_file``: a file
    holding the DSN (a mounted secret).
    """

    model_config = _FROZEN

    dsn: SecretStr = SecretStr("chdb://var/chdb")
    dsn_file: Path | None = None
    database: str = "cxpulse"
    minute_ttl_days: int = Field(400, ge=1)
    side_ttl_days: int = Field(30, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _dsn_file(cls, data: Any) -> Any:
        return secret_from_file(data, "clickhouse", "dsn")

    @field_validator("dsn")
    @classmethod
    def _known_scheme(cls, value: SecretStr) -> SecretStr:
        check_dsn(value.get_secret_value())
        return value

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


class ComputeSettings(BaseModel):
    """Batching of the compute role. Env: ``CXPULSE_COMPUTE__<FIELD>``."""

    model_config = _FROZEN

    # Messages fetched per poll (all owned partitions); each partition's share is one
    # batch and one transaction. Larger batches amortise the transaction, smaller ones
    # lower the latency.
    batch_max_messages: int = Field(10_000, ge=1, le=1_000_000)


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
    # A partition caught up and without events for this long lets its event-time progress
    # follow the wall clock (minus this grace), so minutes keep closing for drop alerts.
    idle_grace_seconds: float = Field(60.0, gt=0)

    def sla_targets_us(self) -> dict[str, int]:
        """FRT targets per priority, in microseconds (the engine's time unit)."""
        return {
            "urgent": self.sla_urgent_seconds * 1_000_000,
            "high": self.sla_high_seconds * 1_000_000,
            "normal": self.sla_normal_seconds * 1_000_000,
            "low": self.sla_low_seconds * 1_000_000,
        }


class CustomerSettings(BaseModel):
    """Customer health, at-risk reasons, follow-ups. Env: ``CXPULSE_CUSTOMERS__<FIELD>``.

    Windows are event time, relative to the customer partition's watermark (the greatest
    ``occurred_at`` among the customer facts it has read). A customer is at risk while any
    reason holds over the trailing ``window_days``.
    """

    model_config = _FROZEN

    # The customer role (facts -> customer state) runs in every compute worker.
    enabled: bool = True
    facts_topic: str = "cxpulse.customer-facts"
    log_topic: str = "cxpulse.customer-log"
    followups_topic: str = "cxpulse.feedback-followups"
    window_days: int = Field(30, ge=1)
    # A repeat contact: an open at t_o after a resolve of the same customer at t_r,
    # t_r < t_o <= t_r + repeat_contact_days.
    repeat_contact_days: int = Field(7, ge=1)
    # At-risk reasons (inclusive thresholds).
    at_risk_csat_max: int = Field(2, ge=1, le=5)
    at_risk_nps_max: int = Field(6, ge=0, le=10)
    at_risk_reopens_min: int = Field(2, ge=1)
    at_risk_repeat_contacts_min: int = Field(3, ge=1)
    at_risk_urgent_breaches_min: int = Field(1, ge=1)
    # Feedback follow-ups: answers at or below these scores are published once.
    followup_csat_max: int = Field(2, ge=1, le=5)
    followup_nps_max: int = Field(6, ge=0, le=10)
    followup_ces_max: int = Field(3, ge=1, le=7)
    # The risk history is exact (every change at its own event time) while the source
    # partitions' event times are less than this apart; beyond it, a fact from a lagging
    # partition changes the history from the oldest time still open instead.
    history_max_skew_hours: int = Field(7 * 24, ge=1)


class PortSettings(BaseModel):
    """HTTP ports. Env: ``CXPULSE_PORTS__<FIELD>``; 0 disables that endpoint."""

    model_config = _FROZEN

    worker_metrics: int = Field(9464, ge=0, le=65535)
    sink_metrics: int = Field(9465, ge=0, le=65535)
    worker_web: int = Field(6066, ge=0, le=65535)
    sink_web: int = Field(6067, ge=0, le=65535)
    # Address the Faust web server (health, /kpis) binds: loopback on a laptop; 0.0.0.0 in a
    # container, where the kubelet probes and Prometheus come from outside the process.
    web_host: str = "127.0.0.1"


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
    compute: ComputeSettings = ComputeSettings()
    kpi: KpiSettings = KpiSettings()
    customers: CustomerSettings = CustomerSettings()
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
        msg = first["msg"].removeprefix("Value error, ")
        field = Settings.model_fields.get(where) if len(first["loc"]) == 1 else None
        if field is not None and isinstance(field.default, BaseModel):  # a section-wide rule
            raise ConfigError(f"invalid {where} settings: {msg}") from None
        raise ConfigError(f"invalid setting {where} ({env}): {msg}") from None
