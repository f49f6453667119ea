"""Chunked AES-256-GCM (the STREAM construction of Hoang, Reyhanitabar, Rogaway and Vizár).

A blob's plaintext is cut into chunks of ``CHUNK_SIZE`` bytes (the last one 0 to
``CHUNK_SIZE`` bytes; an empty blob is one empty final chunk). Chunk ``i`` is sealed as::

    nonce = prefix (7 random bytes, one per blob) ‖ i (4 bytes, big-endian) ‖ last (1 byte: 0|1)
    aad   = PAE("carechain/record-chunk@1", prefix ‖ i (4 bytes) ‖ media type (UTF-8))
    AES-256-GCM(data key, nonce, chunk, aad) → chunk ‖ 16-byte tag

The ciphertext is the concatenation of the sealed chunks, so every chunk but the last is
exactly ``SEALED_CHUNK_SIZE`` bytes. Invariants of :func:`decrypt_chunks`:

* a chunk's plaintext is yielded only after its tag verified under the nonce that says where
  it sits and whether it ends the stream: reordering, dropping, duplicating or moving a chunk
  from another blob (other key, other prefix) fails that chunk's tag;
* the reader decides "last" from the bytes (one chunk of look-ahead), not from metadata:
  truncating at a chunk boundary turns a non-final chunk into the apparent last one and fails
  its tag (STREAM's defence against truncation); trailing bytes make the final chunk non-final;
* before the final chunk's plaintext is yielded the chunk count, plaintext size and SHA-256 of
  the whole ciphertext (the blob's content address) are checked against what was recorded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from carechain.encoding import pae
from carechain.errors import LimitExceededError, ValidationError, VerificationError

CHUNK_SIZE = 64 * 1024
"""Plaintext bytes per chunk (the last chunk may be shorter, or empty)."""
TAG_SIZE = 16
"""AES-GCM tag appended to every chunk."""
SEALED_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE
"""Ciphertext bytes of every chunk but the last."""
PREFIX_SIZE = 7
"""Random nonce prefix per blob."""
MAX_CHUNKS = 2**32
"""The 4-byte counter's range: at most 256 TiB per blob."""
CHUNK_AAD_TAG = "carechain/record-chunk@1"

BytesLike = bytes | bytearray | memoryview
"""What ``put`` accepts as a piece of content."""


def chunk_nonce(prefix: bytes, index: int, *, last: bool) -> bytes:
    """The 12-byte nonce of chunk ``index`` (STREAM: prefix ‖ counter ‖ last-chunk flag)."""
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def chunk_aad(prefix: bytes, index: int, media_type: str) -> bytes:
    """Associated data of chunk ``index``: binds the blob's nonce prefix, the index and type."""
    return pae(CHUNK_AAD_TAG, prefix + index.to_bytes(4, "big") + media_type.encode("utf-8"))


def _as_bytes(piece: object) -> memoryview:
    if not isinstance(piece, (bytes, bytearray, memoryview)):
        raise ValidationError(f"record content: expected bytes chunks, got {type(piece).__name__}")
    return memoryview(piece).cast("B")


def encrypt_chunks(
    pieces: Iterable[BytesLike],
    *,
    key: bytes,
    prefix: bytes,
    media_type: str,
    max_bytes: int,
    write: Callable[[bytes], None],
) -> tuple[int, int]:
    """Encrypt ``pieces`` (any sizes) chunk by chunk into ``write``; return (size, chunks).

    At most one chunk of plaintext is buffered. A full chunk is sealed as non-final only once
    a further byte is known to exist, so the last chunk always carries the last-chunk flag.
    Raises :class:`LimitExceededError` as soon as more than ``max_bytes`` arrive.
    """
    if isinstance(pieces, (bytes, bytearray, memoryview, str)):
        raise ValidationError(
            "record content: pass an iterable of byte chunks (e.g. [data]), not one value"
        )
    aead = AESGCM(key)
    buf = bytearray()
    index = 0
    total = 0
    for piece in pieces:
        view = _as_bytes(piece)
        total += len(view)
        if total > max_bytes:
            raise LimitExceededError(
                f"record content exceeds the limit of {max_bytes} bytes", code="record_too_large"
            )
        pos = 0
        while pos < len(view):
            if len(buf) == CHUNK_SIZE:  # more data follows: this chunk is not the last
                nonce = chunk_nonce(prefix, index, last=False)
                write(aead.encrypt(nonce, bytes(buf), chunk_aad(prefix, index, media_type)))
                buf.clear()
                index += 1
            take = min(CHUNK_SIZE - len(buf), len(view) - pos)
            buf += view[pos : pos + take]
            pos += take
    if index >= MAX_CHUNKS:  # pragma: no cover - max_bytes is far below 256 TiB
        raise LimitExceededError("record content exceeds 2^32 chunks")
    nonce = chunk_nonce(prefix, index, last=True)
    write(aead.encrypt(nonce, bytes(buf), chunk_aad(prefix, index, media_type)))
    return total, index + 1


def _read_exact(read: Callable[[int], bytes], size: int) -> bytes:
    """Up to ``size`` bytes: fewer only at end of stream."""
    data = read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def decrypt_chunks(
    read: Callable[[int], bytes],
    *,
    key: bytes,
    prefix: bytes,
    media_type: str,
    address: str,
    chunk_count: int,
    plaintext_size: int,
) -> Iterator[bytes]:
    """Yield the verified plaintext chunks of the ciphertext read from ``read``.

    Raises :class:`VerificationError` (code ``record_tampered``) before yielding anything of a
    chunk that does not verify; see the module docstring for what is checked.
    """
    aead = AESGCM(key)
    digest = hashlib.sha256()
    index = 0
    size = 0
    current = _read_exact(read, SEALED_CHUNK_SIZE)
    if not current:
        raise tampered_error(address, "the ciphertext is empty")
    while True:
        following = _read_exact(read, SEALED_CHUNK_SIZE)
        last = not following
        digest.update(current)
        if not last and len(current) != SEALED_CHUNK_SIZE:  # pragma: no cover - read_exact
            raise tampered_error(address, f"chunk {index} is short")
        if index >= chunk_count or last != (index == chunk_count - 1):
            raise tampered_error(
                address, f"chunk {index}{' (last)' if last else ''}: want {chunk_count} chunks"
            )
        if len(current) < TAG_SIZE:
            raise tampered_error(
                address, f"chunk {index}: {len(current)} bytes, shorter than a tag"
            )
        try:
            plain = aead.decrypt(
                chunk_nonce(prefix, index, last=last), current, chunk_aad(prefix, index, media_type)
            )
        except InvalidTag:
            raise tampered_error(address, f"chunk {index}: authentication failed") from None
        size += len(plain)
        if last:
            if size != plaintext_size:
                raise tampered_error(address, f"got {size} plaintext bytes, want {plaintext_size}")
            if digest.hexdigest() != address:
                raise tampered_error(address, f"ciphertext hashes to {digest.hexdigest()}")
        yield plain
        if last:
            return
        current = following
        index += 1


def tampered_error(address: str, detail: str) -> VerificationError:
    return VerificationError(
        f"record blob {address}: {detail} (corrupted or tampered with)", code="record_tampered"
    )
