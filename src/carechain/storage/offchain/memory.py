"""``MemoryRecordStore``: the same semantics as :class:`FileRecordStore`, held in memory.

For tests and simulations. Ciphertext and metadata live in dicts guarded by one lock; the
algorithm (streamed encryption, key wrapping, verification, erasure order) is the shared one
in :class:`.base.StreamingRecordStore`, so only storage differs. Ciphertext is held whole in
memory here, but ``put`` and ``open`` still work chunk by chunk.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable

from carechain.crypto.kek import KEK
from carechain.errors import ConflictError, GoneError, NotFoundError
from carechain.storage.offchain.base import (
    DEFAULT_MAX_BYTES,
    BlobMeta,
    CiphertextSink,
    RecordStoreStats,
    StreamingRecordStore,
)
from carechain.storage.offchain.stream import tampered_error


class _MemorySink(CiphertextSink):
    def __init__(self) -> None:
        self.buffer: bytearray | None = bytearray()

    def write(self, data: bytes) -> None:
        assert self.buffer is not None
        self.buffer += data

    def discard(self) -> None:
        self.buffer = None


class MemoryRecordStore(StreamingRecordStore):
    """A :class:`RecordStore` in process memory."""

    def __init__(self, kek: KEK, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        super().__init__(kek, max_bytes=max_bytes)
        self._lock = threading.Lock()
        self._meta: dict[str, BlobMeta] = {}
        self._ciphertext: dict[str, bytes] = {}
        self._erased: set[str] = set()

    def _new_sink(self) -> CiphertextSink:
        return _MemorySink()

    def _publish(self, sink: CiphertextSink, meta: BlobMeta) -> None:
        assert isinstance(sink, _MemorySink) and sink.buffer is not None
        with self._lock:
            if meta.address in self._meta or meta.address in self._erased:
                raise ConflictError(f"record blob {meta.address} already exists")
            self._ciphertext[meta.address] = bytes(sink.buffer)
            self._meta[meta.address] = meta

    def _lookup_locked(self, address: str) -> BlobMeta:
        meta = self._meta.get(address)
        if meta is None:
            if address in self._erased:
                raise GoneError(f"record blob {address} was erased")
            raise NotFoundError(f"no record blob {address}")
        return meta

    def _lookup(self, address: str) -> BlobMeta:
        with self._lock:
            return self._lookup_locked(address)

    def _open_ciphertext(
        self, address: str
    ) -> tuple[BlobMeta, Callable[[int], bytes], Callable[[], None]]:
        with self._lock:
            meta = self._lookup_locked(address)
            data = self._ciphertext.get(address)
        if data is None:
            raise tampered_error(address, "the ciphertext is missing")
        f = io.BytesIO(data)
        return meta, f.read, f.close

    def _forget_key(self, address: str) -> bool:
        with self._lock:
            if address in self._meta:
                del self._meta[address]
                self._erased.add(address)
                return True
            if address in self._erased:
                return False
            raise NotFoundError(f"no record blob {address}")

    def _delete_ciphertext(self, address: str) -> bool:
        with self._lock:
            return self._ciphertext.pop(address, None) is not None

    def stats(self) -> RecordStoreStats:
        with self._lock:
            metas = list(self._meta.values())
            erased = len(self._erased)
        return RecordStoreStats(
            blobs=len(metas),
            erased=erased,
            plaintext_bytes=sum(m.plaintext_size for m in metas),
            ciphertext_bytes=sum(m.ciphertext_size for m in metas),
        )
