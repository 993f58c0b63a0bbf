"""Shared pytest fixtures for cxpulse.

One section per external system. Fixtures that need a broker should depend on
`kafka_bootstrap`, so a whole session shares one broker instead of starting its own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from kafka.admin import KafkaAdminClient

from tests.kafka_harness import LocalKafka

# Property tests check values, never speed: no per-example deadline, so a loaded CI machine
# cannot turn a slow example into a failure.
settings.register_profile("cxpulse", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("cxpulse")

# ---------------------------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------------------------

# Set by CI (or a developer) to reuse a broker it started itself, e.g. "127.0.0.1:9092".
BOOTSTRAP_ENV = "CXPULSE_TEST_BOOTSTRAP"


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of the session's broker.

    $CXPULSE_TEST_BOOTSTRAP if set; otherwise one local broker (deploy/kafka/kafka.sh) in a
    temp dir on free ports, started on first use and stopped when the session ends.
    """
    external = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if external:
        yield external
        return
    with LocalKafka.on_free_ports(tmp_path_factory.mktemp("kafka"), brokers=1) as kafka:
        yield kafka.bootstrap_servers


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    """An admin client on the session's broker (create/delete topics, describe the cluster)."""
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="cxpulse-tests")
    try:
        yield admin
    finally:
        admin.close()


@pytest.fixture
def unique_topic_prefix() -> str:
    """A per-test topic prefix like 't-1a2b3c4d', so tests never collide on the shared broker."""
    return f"t-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------------------------
# ClickHouse (embedded chDB)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chdb_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The one chDB engine of this pytest process.

    chDB allows a single engine (one path) per process, so every in-process test shares
    this client and isolates itself with its own database (see ``chdb_database``). Tests
    that need a worker's chDB files read them in a child process
    (``tests.pipeline_harness.query_chdb``).
    """
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path_factory.mktemp('chdb') / 'ch'}")
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def chdb_database(chdb_client: Any) -> Iterator[str]:
    """A fresh database in the session's chDB, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    chdb_client.command(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        chdb_client.command(f"DROP DATABASE IF EXISTS {name}")
