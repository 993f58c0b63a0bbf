"""Kafka security end to end, on a dedicated broker with a SASL_SSL listener (SCRAM-SHA-512).

The test makes its own CA and broker certificate (tests/tls_harness.py), starts a second broker
only for this module (deploy/kafka/kafka.sh --sasl-ssl-port, stopped at the end), and checks
that every way cxpulse talks to Kafka connects with the settings a user sets:
``topics create``, ``simulate``, ``replay`` (kafka-python), an aiokafka consumer and a
transactional producer built from :func:`pipeline.core.kafka.aiokafka_kwargs` (the worker
runtime's clients), and the compute + sink workers themselves. Wrong credentials and an
untrusted CA give one clear line on stderr and exit 1.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pipeline_harness import ROOT, PipelineHarness
from tests.tls_harness import SecureBroker, start_secure_broker

pytestmark = pytest.mark.integration

USER, PASSWORD = "cxpulse-app", "s3cret-Pass_word.1"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    secure = start_secure_broker(tmp_path_factory.mktemp("secure-kafka"), {USER: PASSWORD})
    try:
        yield secure
    finally:
        secure.kafka.stop()


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "kafka-password"
    path.write_text(PASSWORD + "\n")  # as `echo pw > file` and mounted secrets write it
    path.chmod(0o600)
    return path


def secure_env(broker: SecureBroker, password_file: Path, **extra: str) -> dict[str, str]:
    return {
        "CXPULSE_KAFKA__BOOTSTRAP_SERVERS": broker.sasl_ssl,
        "CXPULSE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "CXPULSE_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "CXPULSE_KAFKA__SASL_USERNAME": USER,
        "CXPULSE_KAFKA__SASL_PASSWORD_FILE": str(password_file),
        "CXPULSE_KAFKA__SSL_CAFILE": str(broker.ca_file),
        "CXPULSE_KAFKA__CONNECT_TIMEOUT_SECONDS": "10",
        **extra,
    }


class SecureHarness(PipelineHarness):
    """Workers and CLI over SASL_SSL; the harness's own checks (lag) use PLAINTEXT."""

    def __init__(self, broker: SecureBroker, workdir: Path, security: dict[str, str]) -> None:
        super().__init__(broker.plaintext, workdir, partitions=2)
        self.security = security

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(**{**self.security, **extra})


def run_cli(harness: PipelineHarness, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env=harness.env(**env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def count_events(broker: SecureBroker, topic: str) -> int:
    """Records in ``topic``, read over SASL_SSL with the same client mapping the CLI uses."""
    from kafka import KafkaConsumer, TopicPartition

    from pipeline.core.config import Settings
    from pipeline.core.kafka import kafka_python_kwargs

    settings = Settings(
        kafka={
            "bootstrap_servers": broker.sasl_ssl,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": USER,
            "sasl_password": PASSWORD,
            "ssl_cafile": broker.ca_file,
        }
    )
    consumer = KafkaConsumer(**kafka_python_kwargs(settings, client_id="count"))
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("cxpulse: error: ")
    return lines[0]


def test_topics_simulate_and_replay_connect_over_sasl_ssl(
    broker: SecureBroker, password_file: Path, tmp_path: Path
) -> None:
    h = SecureHarness(broker, tmp_path, secure_env(broker, password_file))

    created = run_cli(h, "topics", "create")
    assert created.returncode == 0, created.stderr
    assert h.topics["events"] in created.stdout

    simulated = run_cli(h, "simulate", "--duration", "20", "--rate", "40", "--no-pacing")
    assert simulated.returncode == 0, simulated.stderr
    sent = json.loads(simulated.stdout.strip().splitlines()[-1])["events"]
    assert sent > 50

    jsonl = tmp_path / "events.jsonl"
    to_file = run_cli(h, "simulate", "--duration", "10", "--rate", "40", "--output", str(jsonl))
    assert to_file.returncode == 0, to_file.stderr
    replayed = run_cli(h, "replay", str(jsonl))
    assert replayed.returncode == 0, replayed.stderr
    resent = json.loads(replayed.stdout.strip().splitlines()[-1])["sent"]
    assert resent > 20

    assert count_events(broker, h.topics["events"]) == sent + resent
    for result in (created, simulated, to_file, replayed):
        assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize("command", ["topics create", "simulate", "replay", "worker"])
def test_wrong_password_is_one_line_naming_the_login_settings(
    broker: SecureBroker, tmp_path: Path, command: str
) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    h = SecureHarness(broker, tmp_path, secure_env(broker, wrong))
    args = command.split()
    if command == "simulate":
        args += ["--duration", "2", "--no-pacing"]
    if command == "replay":
        events = tmp_path / "e.jsonl"
        events.write_text('{"key": "c1", "value": "{}"}\n')
        args.append(str(events))
    line = one_error_line(run_cli(h, *args))
    assert f"rejected the login of user '{USER}' (SCRAM-SHA-512)" in line
    assert "CXPULSE_KAFKA__SASL_USERNAME" in line
    assert "CXPULSE_KAFKA__SASL_PASSWORD_FILE" in line
    assert "not-the-password" not in line


def test_unknown_user_is_the_same_clear_line(
    broker: SecureBroker, password_file: Path, tmp_path: Path
) -> None:
    env = secure_env(broker, password_file, CXPULSE_KAFKA__SASL_USERNAME="nobody")
    line = one_error_line(run_cli(SecureHarness(broker, tmp_path, env), "topics", "create"))
    assert "rejected the login of user 'nobody'" in line


def test_untrusted_ca_is_one_line_naming_the_ca_setting(
    broker: SecureBroker, password_file: Path, tmp_path: Path
) -> None:
    env = secure_env(broker, password_file, CXPULSE_KAFKA__SSL_CAFILE=str(broker.other_ca_file))
    line = one_error_line(run_cli(SecureHarness(broker, tmp_path, env), "topics", "create"))
    assert "TLS: the certificate of the Kafka broker" in line
    assert "not trusted" in line
    assert f"CXPULSE_KAFKA__SSL_CAFILE to the CA that signed it (now: {broker.other_ca_file})" in (
        line
    )


def test_tls_client_on_the_plaintext_port_is_one_line(
    broker: SecureBroker, password_file: Path, tmp_path: Path
) -> None:
    env = secure_env(
        broker,
        password_file,
        CXPULSE_KAFKA__BOOTSTRAP_SERVERS=broker.plaintext,
        CXPULSE_KAFKA__CONNECT_TIMEOUT_SECONDS="2",
    )
    line = one_error_line(run_cli(SecureHarness(broker, tmp_path, env), "topics", "create"))
    assert "CXPULSE_KAFKA__SECURITY_PROTOCOL=SASL_SSL" in line


def test_aiokafka_clients_from_the_mapping_connect(broker: SecureBroker) -> None:
    """The worker runtime's clients: a consumer and a transactional producer over SASL_SSL."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    from pipeline.core.config import Settings
    from pipeline.core.kafka import aiokafka_kwargs

    topic = f"sec-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=broker.plaintext)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    settings = Settings(
        app_id="sec-aio",
        kafka={
            "bootstrap_servers": broker.sasl_ssl,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": USER,
            "sasl_password": PASSWORD,
            "ssl_cafile": broker.ca_file,
        },
    )

    async def roundtrip() -> list[tuple[bytes | None, bytes | None]]:
        producer = AIOKafkaProducer(
            transactional_id=f"sec-tx-{uuid.uuid4().hex[:6]}",
            enable_idempotence=True,
            **aiokafka_kwargs(settings, client_id="sec-producer"),
        )
        await producer.start()
        try:
            async with producer.transaction():
                await producer.send_and_wait(topic, b"committed", key=b"k1")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic,
            group_id="sec-aio-group",
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            enable_auto_commit=False,
            **aiokafka_kwargs(settings, client_id="sec-consumer"),
        )
        await consumer.start()
        try:
            batch = await consumer.getmany(timeout_ms=15_000, max_records=10)
            records = [(r.key, r.value) for rs in batch.values() for r in rs]
            await consumer.commit()
            return records
        finally:
            await consumer.stop()

    assert asyncio.run(asyncio.wait_for(roundtrip(), 60)) == [(b"k1", b"committed")]


def test_workers_run_over_sasl_ssl_and_never_log_the_password(
    broker: SecureBroker, password_file: Path, tmp_path: Path
) -> None:
    """compute + sink workers against the SASL_SSL listener: every valid event is stored."""
    h = SecureHarness(broker, tmp_path, secure_env(broker, password_file))
    jsonl = tmp_path / "events.jsonl"
    made = run_cli(h, "simulate", "--duration", "60", "--rate", "20", "--output", str(jsonl))
    assert made.returncode == 0, made.stderr
    valid = json.loads(made.stdout.strip().splitlines()[-1])["by_kind"]["valid"]
    assert run_cli(h, "topics", "create").returncode == 0  # before replay's producer auto-creates
    try:
        h.start_worker("sink")
        h.start_worker("compute")
        replayed = run_cli(h, "replay", str(jsonl))
        assert replayed.returncode == 0, replayed.stderr
        h.wait_drained(timeout=90)
    finally:
        h.stop_all()
    [[[stored]]] = h.query("SELECT sum(events) FROM {db}.kpi_minute WHERE grouping = 'overall'")
    assert int(stored) == valid
    logs = h.logs()
    assert PASSWORD not in logs
    assert "worker starting" in logs
    assert "'sasl_password': '**********'" in logs  # the start-up line, masked


def test_restart_keeps_the_listener_and_adds_users_online(
    broker: SecureBroker, password_file: Path, tmp_path: Path
) -> None:
    """Last in the module: restarts the broker. A plain `kafka.sh start` on the same dir
    keeps the SASL_SSL listener (DIR/security.conf), and a new --scram-user on a formatted
    dir is created through the admin API after the start."""
    from tests.kafka_harness import run_kafka_sh

    broker.kafka.stop()
    run_kafka_sh(
        "start", "--dir", str(broker.kafka.dir), "--scram-user", "late-user:Late.pw-2", timeout=240
    )
    status = run_kafka_sh("status", "--dir", str(broker.kafka.dir)).stdout
    assert f"SASL_SSL {broker.sasl_ssl}" in status
    late = tmp_path / "late-pw"
    late.write_text("Late.pw-2")
    for user, pw_file in ((USER, password_file), ("late-user", late)):
        env = secure_env(broker, pw_file, CXPULSE_KAFKA__SASL_USERNAME=user)
        result = run_cli(SecureHarness(broker, tmp_path, env), "topics", "create")
        assert result.returncode == 0, (user, result.stderr)
