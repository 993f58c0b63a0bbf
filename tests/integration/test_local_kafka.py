"""The local Kafka launcher (deploy/kafka/kafka.sh) serves real clients, survives the loss of
one of three nodes, and does not hit Maven again once its jar cache is complete."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from tests.kafka_harness import LocalKafka, run_kafka_sh

pytestmark = pytest.mark.integration


def _produce(bootstrap: str, topic: str, items: Iterable[tuple[str, str]]) -> None:
    """Send (key, value) pairs with acks=all; retries cover a leader that just died."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        key_serializer=str.encode,
        value_serializer=str.encode,
        delivery_timeout_ms=60_000,
        request_timeout_ms=10_000,
        retry_backoff_ms=250,
    )
    try:
        futures = [producer.send(topic, key=k, value=v) for k, v in items]
        producer.flush(timeout=90)
        for future in futures:
            future.get(timeout=1)  # raises if a record was not acknowledged
    finally:
        producer.close(timeout=10)


def _consume(bootstrap: str, topic: str, partitions: int, expected: int) -> list[tuple[str, int]]:
    """Read every partition from the start until `expected` records arrived (or 60 s passed).

    Returns (value, partition) pairs. Manual assignment: no consumer group to wait for.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        key_deserializer=bytes.decode,
        value_deserializer=bytes.decode,
        request_timeout_ms=15_000,
    )
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        got: list[tuple[str, int]] = []
        deadline = time.monotonic() + 60
        while len(got) < expected and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                got.extend((r.value, tp.partition) for r in records)
        return got
    finally:
        consumer.close()


def test_shared_broker_round_trip(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, unique_topic_prefix: str
) -> None:
    topic = f"{unique_topic_prefix}-roundtrip"
    kafka_admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])

    sent = [(f"user-{i % 7}", f"msg-{i}") for i in range(100)]
    _produce(kafka_bootstrap, topic, sent)
    got = _consume(kafka_bootstrap, topic, partitions=3, expected=100)

    assert sorted(v for v, _ in got) == sorted(v for _, v in sent)
    # Keyed records: every key stays on one partition, and the keys spread over several.
    partition_of = {v: p for v, p in got}
    partitions_by_key: dict[str, set[int]] = {}
    for key, value in sent:
        partitions_by_key.setdefault(key, set()).add(partition_of[value])
    assert all(len(ps) == 1 for ps in partitions_by_key.values())
    assert len(set(partition_of.values())) > 1


def test_three_brokers_survive_losing_one(tmp_path: Path) -> None:
    with LocalKafka.on_free_ports(tmp_path / "kafka3", brokers=3) as cluster:
        bootstrap = cluster.bootstrap_servers
        assert len(bootstrap.split(",")) == 3
        topic = "replicated"
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="cxpulse-tests")
        try:
            admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3)])
        finally:
            admin.close()

        _produce(bootstrap, topic, [(f"k{i}", f"before-{i}") for i in range(50)])
        cluster.kill_node(2)
        assert not cluster.running()
        # 2 of 3 replicas are left = min.insync.replicas, so acks=all must still succeed once
        # the controller moves leadership off the dead node.
        _produce(bootstrap, topic, [(f"k{i}", f"after-{i}") for i in range(50)])

        got = sorted(v for v, _ in _consume(bootstrap, topic, partitions=3, expected=100))
        expected = sorted([f"before-{i}" for i in range(50)] + [f"after-{i}" for i in range(50)])
        assert got == expected

        cluster.start_node(2)
        assert cluster.running()
    assert not cluster.running()


def test_cached_fetch_is_instant_and_skips_maven(tmp_path: Path) -> None:
    libs = Path(run_kafka_sh("fetch").stdout.strip().splitlines()[-1])  # fills the cache if cold
    # A fake mvn first on PATH records any call, so "cached" cannot hide a real resolve.
    marker = tmp_path / "mvn-called"
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake_mvn = fake_bin / "mvn"
    fake_mvn.write_text(f'#!/bin/sh\ntouch "{marker}"\nexit 1\n')
    fake_mvn.chmod(fake_mvn.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}"}

    started = time.monotonic()
    result = run_kafka_sh("fetch", env=env)
    elapsed = time.monotonic() - started

    assert result.stdout.strip().splitlines()[-1] == str(libs)
    assert elapsed < 3, f"cached fetch took {elapsed:.1f}s"
    assert not marker.exists(), "cached fetch ran mvn"
    assert (libs.parent / ".complete").is_file()
    assert any(libs.glob("kafka_2.13-*.jar"))
