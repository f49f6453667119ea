"""Off-chain records: an encrypted, content-addressed blob store (ADR 0005, "Off-chain records").

* :mod:`.stream` — chunked AES-256-GCM (STREAM) with per-blob data keys;
* :mod:`.base` — the :class:`RecordStore` interface, its value types and the shared algorithm;
* :mod:`.file` — :class:`FileRecordStore` (files + SQLite metadata, ``DIR/records/``);
* :mod:`.memory` — :class:`MemoryRecordStore` for tests.
"""

from carechain.storage.offchain.base import (
    DEFAULT_MAX_BYTES,
    BlobRef,
    ErasureResult,
    RecordStore,
    RecordStoreStats,
    validate_address,
    validate_media_type,
)
from carechain.storage.offchain.file import FileRecordStore
from carechain.storage.offchain.memory import MemoryRecordStore
from carechain.storage.offchain.stream import CHUNK_SIZE, SEALED_CHUNK_SIZE

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_MAX_BYTES",
    "SEALED_CHUNK_SIZE",
    "BlobRef",
    "ErasureResult",
    "FileRecordStore",
    "MemoryRecordStore",
    "RecordStore",
    "RecordStoreStats",
    "validate_address",
    "validate_media_type",
]
