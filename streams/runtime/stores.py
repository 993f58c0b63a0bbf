"""Local state of one input partition: a cache of the changelog, never ahead of it.

The store holds committed state only. The runtime writes a batch's changelog entries
*after* the Kafka transaction that published them committed, together with the offset of
the last changelog record they correspond to, in one atomic write (a RocksDB write batch).
So after any crash the store equals the changelog up to its recorded offset, and recovery
only has to replay the changelog from there (the conversation log, not local disk, decides
what has been applied).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

__all__ = ["MemoryStore", "PartitionStore", "RocksStore", "open_store"]

_META_CF = "cxpulse-meta"
_WRITE_BUFFER_BYTES = 4 * 1024 * 1024
_BLOCK_CACHE_BYTES = 64 * 1024 * 1024
_CACHE: Any = None


def _block_cache() -> Any:
    """The process's one RocksDB block cache, shared by every store it opens."""
    global _CACHE
    if _CACHE is None:
        from rocksdict import Cache

        _CACHE = Cache(_BLOCK_CACHE_BYTES)
    return _CACHE


_CHANGELOG_OFFSET = b"changelog_offset"


class PartitionStore(Protocol):
    """Committed state of one partition plus the changelog offset it reflects."""

    def get(self, key: bytes) -> bytes | None: ...

    def items(self) -> Iterator[tuple[bytes, bytes]]: ...

    def changelog_offset(self) -> int:
        """Offset of the last changelog record applied (-1: none)."""
        ...

    def apply(self, changes: Mapping[bytes, bytes | None], changelog_offset: int) -> None:
        """Write ``changes`` (None deletes) and the new offset atomically."""
        ...

    def clear(self) -> None:
        """Forget everything (the changelog will be replayed from its start)."""
        ...

    def close(self) -> None: ...


class MemoryStore:
    """A dict: recovery replays the whole changelog at every assignment."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._offset = -1

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(list(self._data.items()))

    def changelog_offset(self) -> int:
        return self._offset

    def apply(self, changes: Mapping[bytes, bytes | None], changelog_offset: int) -> None:
        data = self._data
        for key, value in changes.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        if changelog_offset > self._offset:
            self._offset = changelog_offset

    def clear(self) -> None:
        self._data.clear()
        self._offset = -1

    def close(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class RocksStore:
    """RocksDB (rocksdict) on local disk: a restart replays only the changelog's tail."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._open()

    def _open(self) -> None:
        from rocksdict import BlockBasedOptions, Options, Rdict

        path = self.path
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.create_missing_column_families(True)
        # One store per owned partition and role: RocksDB's defaults (64 MB memtables, a
        # cache per store) would grow a worker by hundreds of MB. Small memtables and one
        # block cache per process keep memory bounded; bloom filters keep gets cheap.
        options.set_write_buffer_size(_WRITE_BUFFER_BYTES)
        options.set_max_write_buffer_number(2)
        table = BlockBasedOptions()
        table.set_block_cache(_block_cache())
        table.set_bloom_filter(10, False)
        options.set_block_based_table_factory(table)
        self._db: Any = Rdict(
            str(path), options, column_families={_META_CF: Options(raw_mode=True)}
        )
        self._meta: Any = self._db.get_column_family(_META_CF)
        self._meta_handle: Any = self._db.get_column_family_handle(_META_CF)

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self._db.items())

    def changelog_offset(self) -> int:
        raw = self._meta.get(_CHANGELOG_OFFSET)
        return int(raw) if raw is not None else -1

    def apply(self, changes: Mapping[bytes, bytes | None], changelog_offset: int) -> None:
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        for key, value in changes.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        if changelog_offset > self.changelog_offset():
            batch.put(_CHANGELOG_OFFSET, str(changelog_offset).encode(), self._meta_handle)
        self._db.write(batch)

    def clear(self) -> None:
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self._open()

    def close(self) -> None:
        if self._db is None:
            return
        self._meta = self._meta_handle = None
        self._db.close()
        self._db = None


def open_store(kind: str, path: Path) -> PartitionStore:
    """``kind`` is the ``table_store`` setting: ``rocksdb`` or ``memory``."""
    if kind == "memory":
        return MemoryStore()
    if kind == "rocksdb":
        return RocksStore(path)
    raise ValueError(f"unknown state store {kind!r} (expected rocksdb or memory)")
