"""The ``RecordStore`` interface and the behaviour every implementation shares.

Invariants (checked against both implementations by ``tests/unit/storage/test_offchain.py``):

* Every ``put`` draws a fresh 32-byte data key and 7-byte nonce prefix, encrypts the content
  chunk by chunk (:mod:`.stream`) and stores the data key only wrapped by the store's KEK
  (RFC 3394), next to the KEK's id. Equal plaintexts therefore get different addresses.
* A blob is addressed by the SHA-256 (lowercase hex) of its whole ciphertext; a ``put`` becomes
  visible whole (ciphertext and metadata) or not at all, and an error at any point — the
  caller's iterator raising, the size limit, a disk error — leaves nothing behind.
* Memory use is bounded by a few chunks, whatever the blob size (the memory implementation
  keeps the ciphertext itself in memory, by nature).
* ``open`` yields a chunk's plaintext only after it verified (:func:`.stream.decrypt_chunks`).
* ``erase`` is crypto-shredding: the wrapped data key is deleted durably FIRST, then the
  ciphertext; a tombstone remains so that later reads raise :class:`GoneError` (a
  ``NotFoundError``), while addresses never stored raise plain :class:`NotFoundError`.
  ``erase`` is idempotent. A reader that opened a blob before its erasure may finish reading.
"""

from __future__ import annotations

import hashlib
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from carechain.crypto.kek import DATA_KEY_SIZE, KEK
from carechain.errors import (
    LimitExceededError,
    NotFoundError,
    ValidationError,
    VerificationError,
)
from carechain.storage.offchain.stream import (
    CHUNK_SIZE,
    MAX_CHUNKS,
    PREFIX_SIZE,
    BytesLike,
    decrypt_chunks,
    encrypt_chunks,
)

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
"""Default largest plaintext accepted by ``put`` (64 MiB)."""

_ADDRESS_RE = re.compile(r"[0-9a-f]{64}")
_RESTRICTED_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE_RE = re.compile(rf"{_RESTRICTED_NAME}/{_RESTRICTED_NAME}(?:\s*;[\x20-\x7e]*)?")
MAX_MEDIA_TYPE_LENGTH = 255


@dataclass(frozen=True, slots=True, kw_only=True)
class BlobRef:
    """What a caller keeps (and may anchor on chain) about a stored blob."""

    address: str
    """SHA-256 of the ciphertext, 64 lowercase hex characters: the blob's content address."""
    size: int
    """Plaintext size in bytes."""
    ciphertext_size: int
    """Ciphertext size in bytes (plaintext plus 16 bytes per chunk)."""
    media_type: str
    """MIME type given at ``put`` (bound to every chunk as associated data)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BlobMeta:
    """Everything a store records about a live blob besides its ciphertext."""

    address: str
    """Content address (SHA-256 hex of the ciphertext)."""
    wrapped_key: bytes = field(repr=False)
    """The blob's data key wrapped by the KEK (RFC 3394, 40 bytes)."""
    kek_id: str
    """Id of the KEK that wrapped ``wrapped_key``."""
    nonce_prefix: bytes
    """The blob's 7-byte STREAM nonce prefix."""
    media_type: str
    """MIME type bound into every chunk's associated data."""
    plaintext_size: int
    """Plaintext bytes."""
    chunk_count: int
    """Number of chunks (at least 1)."""
    ciphertext_size: int
    """Ciphertext bytes."""

    def ref(self) -> BlobRef:
        """The caller-facing reference."""
        return BlobRef(
            address=self.address,
            size=self.plaintext_size,
            ciphertext_size=self.ciphertext_size,
            media_type=self.media_type,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ErasureResult:
    """What ``erase`` did."""

    address: str
    """The erased blob."""
    already_erased: bool
    """True when the wrapped key was already gone before this call."""
    key_deleted: bool
    """True when this call deleted the wrapped data key."""
    ciphertext_deleted: bool
    """True when this call deleted the ciphertext (False if it was already gone)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordStoreStats:
    """Counts over the store."""

    blobs: int
    """Live blobs."""
    erased: int
    """Tombstones of erased blobs."""
    plaintext_bytes: int
    """Sum of the live blobs' plaintext sizes."""
    ciphertext_bytes: int
    """Sum of the live blobs' ciphertext sizes."""


def validate_address(address: object) -> str:
    """Return ``address`` if it is 64 lowercase hex characters, else ``ValidationError``."""
    if not isinstance(address, str) or _ADDRESS_RE.fullmatch(address) is None:
        raise ValidationError(
            f"invalid record address {address!r}: want 64 lowercase hex characters (SHA-256)",
            code="bad_record_address",
        )
    return address


def validate_media_type(media_type: object) -> str:
    """Return ``media_type`` if it looks like ``type/subtype[; params]`` (printable ASCII)."""
    if (
        not isinstance(media_type, str)
        or len(media_type) > MAX_MEDIA_TYPE_LENGTH
        or _MEDIA_TYPE_RE.fullmatch(media_type) is None
    ):
        raise ValidationError(
            f"invalid media type {media_type!r}: want type/subtype[; parameters], "
            f"at most {MAX_MEDIA_TYPE_LENGTH} printable ASCII characters",
            code="bad_media_type",
        )
    return media_type


def _address_of(ref_or_address: BlobRef | str) -> str:
    if isinstance(ref_or_address, BlobRef):
        return validate_address(ref_or_address.address)
    return validate_address(ref_or_address)


class RecordStore(ABC):
    """Encrypted, content-addressed storage of record blobs (FHIR resources, attachments)."""

    @abstractmethod
    def put(self, chunks: Iterable[BytesLike], *, media_type: str) -> BlobRef:
        """Encrypt and store the concatenation of ``chunks``; ``LimitExceededError`` if large."""

    @abstractmethod
    def open(self, ref_or_address: BlobRef | str) -> Iterator[bytes]:
        """Verified plaintext chunks; ``NotFoundError``/``GoneError`` are raised by this call."""

    @abstractmethod
    def read_all(self, ref_or_address: BlobRef | str, limit: int) -> bytes:
        """The whole plaintext; ``LimitExceededError`` if it is longer than ``limit``."""

    @abstractmethod
    def get_ref(self, ref_or_address: BlobRef | str) -> BlobRef:
        """The reference of a live blob; ``NotFoundError`` or ``GoneError``."""

    @abstractmethod
    def exists(self, ref_or_address: BlobRef | str) -> bool:
        """True iff the blob is stored and not erased."""

    @abstractmethod
    def erase(self, ref_or_address: BlobRef | str) -> ErasureResult:
        """Crypto-shred the blob (idempotent); ``NotFoundError`` if it was never stored."""

    @abstractmethod
    def stats(self) -> RecordStoreStats:
        """Counts of live and erased blobs and their sizes."""


class CiphertextSink(ABC):
    """Where ``put`` streams a new blob's ciphertext before it is published."""

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Append ciphertext."""

    @abstractmethod
    def discard(self) -> None:
        """Drop whatever was written and was not published (idempotent)."""


class StreamingRecordStore(RecordStore):
    """The shared algorithm over a few storage primitives (file and memory implementations)."""

    def __init__(self, kek: KEK, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if not isinstance(kek, KEK):
            raise TypeError("kek must be a carechain.crypto.kek.KEK")
        if isinstance(max_bytes, bool) or not 0 <= max_bytes < MAX_CHUNKS * CHUNK_SIZE:
            raise ValidationError(f"max_bytes {max_bytes!r} is out of range")
        self.kek = kek
        self.max_bytes = max_bytes

    # -- primitives ----------------------------------------------------------------------
    @abstractmethod
    def _new_sink(self) -> CiphertextSink:
        """A fresh, private place for one blob's ciphertext."""

    @abstractmethod
    def _publish(self, sink: CiphertextSink, meta: BlobMeta) -> None:
        """Make the ciphertext visible at ``meta.address`` and record ``meta``, durably."""

    @abstractmethod
    def _lookup(self, address: str) -> BlobMeta:
        """Metadata of a live blob; ``NotFoundError`` or ``GoneError``."""

    @abstractmethod
    def _open_ciphertext(
        self, address: str
    ) -> tuple[BlobMeta, Callable[[int], bytes], Callable[[], None]]:
        """Atomically look up and open a blob: (metadata, read(n), close)."""

    @abstractmethod
    def _forget_key(self, address: str) -> bool:
        """Durably delete the wrapped key and leave a tombstone: True if done now, False if
        already erased; ``NotFoundError`` if never stored."""

    @abstractmethod
    def _delete_ciphertext(self, address: str) -> bool:
        """Delete the ciphertext durably; False if it was already gone."""

    # -- the algorithm -------------------------------------------------------------------
    def put(self, chunks: Iterable[BytesLike], *, media_type: str) -> BlobRef:
        media_type = validate_media_type(media_type)
        data_key = os.urandom(DATA_KEY_SIZE)
        prefix = os.urandom(PREFIX_SIZE)
        digest = hashlib.sha256()
        written = 0
        sink = self._new_sink()

        def write(data: bytes) -> None:
            nonlocal written
            digest.update(data)
            written += len(data)
            sink.write(data)

        try:
            size, count = encrypt_chunks(
                chunks,
                key=data_key,
                prefix=prefix,
                media_type=media_type,
                max_bytes=self.max_bytes,
                write=write,
            )
            meta = BlobMeta(
                address=digest.hexdigest(),
                wrapped_key=self.kek.wrap(data_key),
                kek_id=self.kek.kek_id,
                nonce_prefix=prefix,
                media_type=media_type,
                plaintext_size=size,
                chunk_count=count,
                ciphertext_size=written,
            )
            self._publish(sink, meta)
        finally:
            sink.discard()
        return meta.ref()

    def open(self, ref_or_address: BlobRef | str) -> Iterator[bytes]:
        address = _address_of(ref_or_address)
        meta, read, close = self._open_ciphertext(address)
        try:
            data_key = self._data_key(meta)
        except BaseException:
            close()
            raise
        return self._stream(meta, data_key, read, close)

    def _data_key(self, meta: BlobMeta) -> bytes:
        if meta.kek_id != self.kek.kek_id:
            raise VerificationError(
                f"record blob {meta.address} was wrapped by KEK {meta.kek_id}, "
                f"this store holds KEK {self.kek.kek_id}",
                code="wrong_kek",
            )
        return self.kek.unwrap(meta.wrapped_key)

    @staticmethod
    def _stream(
        meta: BlobMeta, data_key: bytes, read: Callable[[int], bytes], close: Callable[[], None]
    ) -> Iterator[bytes]:
        try:
            yield from decrypt_chunks(
                read,
                key=data_key,
                prefix=meta.nonce_prefix,
                media_type=meta.media_type,
                address=meta.address,
                chunk_count=meta.chunk_count,
                plaintext_size=meta.plaintext_size,
            )
        finally:
            close()

    def read_all(self, ref_or_address: BlobRef | str, limit: int) -> bytes:
        address = _address_of(ref_or_address)
        size = self._lookup(address).plaintext_size
        if size > limit:
            raise LimitExceededError(
                f"record blob {address} has {size} bytes, more than the limit of {limit}",
                code="record_too_large",
            )
        parts: list[bytes] = []
        total = 0
        stream = self.open(address)
        try:
            for part in stream:
                total += len(part)
                if total > limit:  # the blob was replaced between lookup and open
                    raise LimitExceededError(
                        f"record blob {address} is longer than the limit of {limit}",
                        code="record_too_large",
                    )
                parts.append(part)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        return b"".join(parts)

    def get_ref(self, ref_or_address: BlobRef | str) -> BlobRef:
        return self._lookup(_address_of(ref_or_address)).ref()

    def exists(self, ref_or_address: BlobRef | str) -> bool:
        try:
            self.get_ref(ref_or_address)
        except NotFoundError:
            return False
        return True

    def erase(self, ref_or_address: BlobRef | str) -> ErasureResult:
        address = _address_of(ref_or_address)
        key_deleted = self._forget_key(address)  # FIRST: after this, nothing can decrypt it
        ciphertext_deleted = self._delete_ciphertext(address)
        return ErasureResult(
            address=address,
            already_erased=not key_deleted,
            key_deleted=key_deleted,
            ciphertext_deleted=ciphertext_deleted,
        )
