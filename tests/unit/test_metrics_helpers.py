"""observe_many is the same as observing one value many times."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

from pipeline.core.metrics import observe_many


def test_observe_many_equals_a_loop_of_observe() -> None:
    values = [(0.05, 3), (1.2, 7), (4.9, 1), (700.0, 2), (0.0, 4)]
    bulk, loop = CollectorRegistry(), CollectorRegistry()
    a = Histogram("lat", "x", registry=bulk, buckets=(0.1, 1, 5, 60))
    b = Histogram("lat", "x", registry=loop, buckets=(0.1, 1, 5, 60))
    for value, n in values:
        observe_many(a, value, n)
        for _ in range(n):
            b.observe(value)

    def samples(r: CollectorRegistry) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
        return sorted(
            (s.name, tuple(sorted(s.labels.items())), s.value)
            for m in r.collect()
            for s in m.samples
            if not s.name.endswith("_created")
        )

    assert samples(bulk) == samples(loop)
    assert bulk.get_sample_value("lat_count") == sum(n for _, n in values)
