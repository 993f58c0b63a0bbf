"""Fresh topics are ready only when every partition has a leader (the producer's race)."""

from __future__ import annotations

from typing import Any

from pipeline.core import topics


class ScriptedAdmin:
    """describe_topics answers from a script: no partitions, then leaderless, then led."""

    def __init__(self, script: list[list[dict[str, Any]]]) -> None:
        self.script = script
        self.calls = 0

    def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        answer = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return answer


def topic(name: str, leaders: list[int]) -> dict[str, Any]:
    return {"name": name, "partitions": [{"partition_index": i, "leader_id": x}
                                         for i, x in enumerate(leaders)]}  # fmt: skip


def test_counts_wait_until_every_partition_has_a_leader(monkeypatch: Any) -> None:
    monkeypatch.setattr(topics.time, "sleep", lambda s: None)
    admin = ScriptedAdmin(
        [
            [topic("a", []), topic("b", [])],  # created, metadata not there yet
            [topic("a", [1, -1]), topic("b", [-1, -1])],  # partitions, no leader yet
            [topic("a", [1, 1]), topic("b", [1, -1])],
            [topic("a", [1, 1]), topic("b", [1, 1])],  # ready
        ]
    )
    assert topics._partition_counts(admin, ["a", "b"]) == {"a": 2, "b": 2}  # type: ignore[arg-type]
    assert admin.calls == 4


def test_older_metadata_shapes_name_the_leader_too() -> None:
    assert topics._leader({"leader": 3}) == 3 and topics._leader({"leader_id": 0}) == 0
    assert topics._leader({}) == -1
