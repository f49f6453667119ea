"""Off-chain record store: one conformance suite run against the file and memory stores, then
file-store specifics (layout, permissions, restart, crash leftovers, bounded memory)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import stat
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carechain.crypto.kek import KEK
from carechain.errors import (
    GoneError,
    InfrastructureError,
    LedgerError,
    LimitExceededError,
    NotFoundError,
    ValidationError,
    VerificationError,
)
from carechain.storage.offchain import (
    CHUNK_SIZE,
    SEALED_CHUNK_SIZE,
    BlobRef,
    FileRecordStore,
    MemoryRecordStore,
)
from carechain.storage.offchain.base import BlobMeta, StreamingRecordStore
from carechain.storage.offchain.stream import chunk_aad, chunk_nonce

MT = "application/fhir+json"
# Examples are independent of the store, and the same base-class test runs for both stores.
_SUPPRESS = [HealthCheck.function_scoped_fixture, HealthCheck.differing_executors]
BOUNDARY_SIZES = [
    0,
    1,
    CHUNK_SIZE - 1,
    CHUNK_SIZE,
    CHUNK_SIZE + 1,
    2 * CHUNK_SIZE,
    3 * CHUNK_SIZE + 7,
]


def payload(n: int, seed: int = 0) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d/%d" % (seed, counter)).digest()
        counter += 1
    return bytes(out[:n])


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def consume(stream: Iterator[bytes]) -> tuple[list[bytes], LedgerError | None]:
    got: list[bytes] = []
    try:
        for part in stream:
            got.append(part)
    except LedgerError as exc:
        return got, exc
    return got, None


def attempt(store: StreamingRecordStore, ref: BlobRef) -> tuple[list[bytes], LedgerError | None]:
    """Open and read, reporting an error from either step."""
    try:
        stream = store.open(ref)
    except LedgerError as exc:
        return [], exc
    return consume(stream)


def sealed_chunks(ciphertext: bytes) -> list[bytes]:
    return [
        ciphertext[i : i + SEALED_CHUNK_SIZE] for i in range(0, len(ciphertext), SEALED_CHUNK_SIZE)
    ]


# -- harnesses: raw access to what each store holds, for tampering -----------------------------


class FileHarness:
    def __init__(self, root: Path, kek: KEK, max_bytes: int) -> None:
        self.root = root
        self.store: FileRecordStore = FileRecordStore(root, kek, max_bytes=max_bytes)

    def ciphertext(self, address: str) -> bytes:
        return self.store.blob_path(address).read_bytes()

    def set_ciphertext(self, address: str, data: bytes) -> None:
        path = self.store.blob_path(address)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def meta(self, address: str) -> BlobMeta:
        return self.store._lookup(address)

    def set_meta(self, address: str, **changes: object) -> None:
        with self.store._conn:
            for column, value in changes.items():
                self.store._conn.execute(
                    f"UPDATE blobs SET {column} = ? WHERE address = ?", (value, address)
                )

    def held_bytes(self) -> list[bytes]:
        held = [p.read_bytes() for p in sorted(self.root.rglob("*")) if p.is_file()]
        return [*held, self.store.kek.key]

    def leftovers(self) -> list[str]:
        blobs = [p.name for p in (self.root / "blobs").rglob("*") if p.is_file()]
        return sorted([*blobs, *(p.name for p in (self.root / "tmp").iterdir())])

    def reopen(self, kek: KEK) -> StreamingRecordStore:
        self.store.close()
        self.store = FileRecordStore(self.root, kek, max_bytes=self.store.max_bytes)
        return self.store

    def close(self) -> None:
        self.store.close()


class MemoryHarness:
    def __init__(self, kek: KEK, max_bytes: int) -> None:
        self.store: MemoryRecordStore = MemoryRecordStore(kek, max_bytes=max_bytes)

    def ciphertext(self, address: str) -> bytes:
        return self.store._ciphertext[address]

    def set_ciphertext(self, address: str, data: bytes) -> None:
        self.store._ciphertext[address] = data

    def meta(self, address: str) -> BlobMeta:
        return self.store._meta[address]

    def set_meta(self, address: str, **changes: object) -> None:
        self.store._meta[address] = dataclasses.replace(self.store._meta[address], **changes)  # type: ignore[arg-type]

    def held_bytes(self) -> list[bytes]:
        held: list[bytes] = list(self.store._ciphertext.values())
        for meta in self.store._meta.values():
            held += [meta.wrapped_key, meta.nonce_prefix, repr(meta).encode()]
        held += [a.encode() for a in self.store._erased]
        return [*held, self.store.kek.key]

    def leftovers(self) -> list[str]:
        return sorted(self.store._ciphertext)

    def reopen(self, kek: KEK) -> StreamingRecordStore:
        old = self.store
        self.store = MemoryRecordStore(kek, max_bytes=old.max_bytes)
        self.store._meta, self.store._ciphertext, self.store._erased = (
            old._meta,
            old._ciphertext,
            old._erased,
        )
        return self.store

    def close(self) -> None:
        pass


Harness = FileHarness | MemoryHarness


class RecordStoreConformance:
    """Semantics every RecordStore keeps; subclasses supply ``make_harness``."""

    def make_harness(self, tmp_path: Path, kek: KEK, max_bytes: int) -> Harness:
        raise NotImplementedError

    @pytest.fixture
    def kek(self) -> KEK:
        return KEK.generate()

    @pytest.fixture
    def h(self, tmp_path: Path, kek: KEK) -> Iterator[Harness]:
        harness = self.make_harness(tmp_path, kek, 64 * 1024 * 1024)
        yield harness
        harness.close()

    @pytest.fixture
    def small(self, tmp_path: Path, kek: KEK) -> Iterator[Harness]:
        harness = self.make_harness(tmp_path / "small", kek, 3 * CHUNK_SIZE)
        yield harness
        harness.close()

    # -- round trips -----------------------------------------------------------------------

    @pytest.mark.parametrize("size", BOUNDARY_SIZES)
    def test_round_trip_boundary_sizes(self, h: Harness, size: int) -> None:
        data = payload(size)
        ref = h.store.put(split(data, 1000), media_type=MT)
        assert ref.size == size and ref.media_type == MT
        chunks = max(1, -(-size // CHUNK_SIZE))
        assert ref.ciphertext_size == size + 16 * chunks
        parts = list(h.store.open(ref))
        assert b"".join(parts) == data
        assert len(parts) == chunks and all(len(p) <= CHUNK_SIZE for p in parts)
        assert h.store.read_all(ref.address, size) == data
        assert h.meta(ref.address).chunk_count == chunks

    @settings(max_examples=25, deadline=None, suppress_health_check=_SUPPRESS)
    @given(
        size=st.one_of(
            st.sampled_from(BOUNDARY_SIZES),
            st.integers(0, 3 * CHUNK_SIZE + 5),
            st.integers(-3, 3).map(lambda d: max(0, 2 * CHUNK_SIZE + d)),
        ),
        piece=st.integers(1, 3 * CHUNK_SIZE),
        empty_pieces=st.booleans(),
    )
    def test_round_trip_any_split(
        self, h: Harness, size: int, piece: int, empty_pieces: bool
    ) -> None:
        data = payload(size, seed=size)
        pieces = split(data, piece)
        if empty_pieces:
            pieces = [b"", *(x for p in pieces for x in (p, b""))]
        ref = h.store.put(iter(pieces), media_type=MT)
        assert h.store.read_all(ref, size) == data
        assert [len(p) for p in h.store.open(ref)] == [len(p) for p in split(data, CHUNK_SIZE)]

    def test_accepts_bytes_like_pieces(self, h: Harness) -> None:
        ref = h.store.put([bytearray(b"ab"), memoryview(b"cd")], media_type="text/plain")
        assert h.store.read_all(ref, 10) == b"abcd"

    def test_content_addressing(self, h: Harness) -> None:
        data = payload(CHUNK_SIZE + 10)
        a = h.store.put([data], media_type=MT)
        b = h.store.put([data], media_type=MT)
        assert a.address != b.address  # fresh data key and nonce prefix every time
        assert h.ciphertext(a.address) != h.ciphertext(b.address)
        for ref in (a, b):
            assert hashlib.sha256(h.ciphertext(ref.address)).hexdigest() == ref.address
            assert data not in h.ciphertext(ref.address)
        assert h.meta(a.address).wrapped_key != h.meta(b.address).wrapped_key

    def test_get_ref_exists_stats(self, h: Harness) -> None:
        assert h.store.stats().blobs == 0
        ref = h.store.put([b"x" * 100], media_type=MT)
        assert h.store.get_ref(ref.address) == ref == h.store.get_ref(ref)
        assert h.store.exists(ref) and h.store.exists(ref.address)
        stats = h.store.stats()
        assert (stats.blobs, stats.erased, stats.plaintext_bytes, stats.ciphertext_bytes) == (
            1,
            0,
            100,
            116,
        )

    # -- input validation ------------------------------------------------------------------

    def test_unknown_and_malformed_addresses(self, h: Harness) -> None:
        unknown = "ab" * 32
        with pytest.raises(NotFoundError) as info:
            h.store.open(unknown)
        assert not isinstance(info.value, GoneError)
        assert not h.store.exists(unknown)
        with pytest.raises(NotFoundError):
            h.store.erase(unknown)
        for bad in ("AB" * 32, "ab" * 31, "", "../" * 21 + "a", 42):
            with pytest.raises(ValidationError):
                h.store.open(bad)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        "media_type", ["", "json", "application/", "a/b\n", "é/x", "a/" + "b" * 300, None]
    )
    def test_bad_media_type(self, h: Harness, media_type: object) -> None:
        with pytest.raises(ValidationError):
            h.store.put([b"x"], media_type=media_type)  # type: ignore[arg-type]
        assert h.leftovers() == []

    def test_media_type_with_parameters(self, h: Harness) -> None:
        ref = h.store.put([b"{}"], media_type="application/fhir+json; fhirVersion=4.0")
        assert h.store.get_ref(ref).media_type == "application/fhir+json; fhirVersion=4.0"

    def test_non_bytes_piece_leaves_nothing(self, h: Harness) -> None:
        with pytest.raises(ValidationError):
            h.store.put([b"ok", "text"], media_type=MT)  # type: ignore[list-item]
        with pytest.raises(ValidationError, match="iterable of byte chunks"):
            h.store.put(b"one value", media_type=MT)  # type: ignore[arg-type]
        assert h.leftovers() == [] and h.store.stats().blobs == 0

    # -- limits and interrupted puts ---------------------------------------------------------

    def test_size_limit(self, small: Harness) -> None:
        limit = 3 * CHUNK_SIZE
        ok = small.store.put(split(payload(limit), 4096), media_type=MT)
        assert small.store.read_all(ok, limit) == payload(limit)
        before = small.leftovers()
        with pytest.raises(LimitExceededError):
            small.store.put(split(payload(limit + 1), 4096), media_type=MT)
        with pytest.raises(LimitExceededError):
            small.store.put([payload(limit + 1)], media_type=MT)
        assert small.leftovers() == before and small.store.stats().blobs == 1

    def test_size_limit_is_checked_while_streaming(self, small: Harness) -> None:
        consumed = 0

        def endless() -> Iterator[bytes]:
            nonlocal consumed
            while True:
                consumed += 1
                yield b"\x00" * 1024

        with pytest.raises(LimitExceededError):
            small.store.put(endless(), media_type=MT)
        assert consumed == 3 * CHUNK_SIZE // 1024 + 1
        assert small.leftovers() == []

    def test_read_all_limit(self, h: Harness) -> None:
        ref = h.store.put([b"x" * 100], media_type=MT)
        assert h.store.read_all(ref, 100) == b"x" * 100
        with pytest.raises(LimitExceededError):
            h.store.read_all(ref, 99)

    def test_interrupted_put_leaves_nothing(self, h: Harness) -> None:
        def failing() -> Iterator[bytes]:
            yield payload(2 * CHUNK_SIZE + 5)
            raise RuntimeError("client went away")

        with pytest.raises(RuntimeError, match="client went away"):
            h.store.put(failing(), media_type=MT)
        assert h.leftovers() == []
        assert h.store.stats().blobs == 0

    def test_failed_publish_leaves_nothing(
        self, h: Harness, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def boom(*args: object) -> None:
            raise InfrastructureError("disk full")

        monkeypatch.setattr(h.store, "_publish", boom)
        with pytest.raises(InfrastructureError):
            h.store.put([payload(CHUNK_SIZE * 2)], media_type=MT)
        assert h.leftovers() == []

    # -- tampering: every case raises VerificationError before bad plaintext is yielded ----

    @pytest.fixture
    def blob(self, h: Harness) -> tuple[BlobRef, list[bytes]]:
        data = payload(3 * CHUNK_SIZE + 100, seed=7)
        ref = h.store.put(split(data, 10_000), media_type=MT)
        return ref, split(data, CHUNK_SIZE)

    def test_untampered_reads_back(self, h: Harness, blob: tuple[BlobRef, list[bytes]]) -> None:
        ref, chunks = blob
        assert consume(h.store.open(ref)) == (chunks, None)  # negative control

    @settings(max_examples=40, deadline=None, suppress_health_check=_SUPPRESS)
    @given(data=st.data())
    def test_flipped_byte_anywhere(
        self, h: Harness, blob: tuple[BlobRef, list[bytes]], data: st.DataObject
    ) -> None:
        ref, chunks = blob
        original = h.ciphertext(ref.address)
        pos = data.draw(
            st.one_of(
                st.integers(0, len(original) - 1),
                st.sampled_from([0, SEALED_CHUNK_SIZE - 1, SEALED_CHUNK_SIZE, len(original) - 1]),
            )
        )
        mask = data.draw(st.integers(1, 255))
        bad = bytearray(original)
        bad[pos] ^= mask
        h.set_ciphertext(ref.address, bytes(bad))
        try:
            got, err = consume(h.store.open(ref))
        finally:
            h.set_ciphertext(ref.address, original)
        assert isinstance(err, VerificationError) and err.code == "record_tampered"
        assert got == chunks[: pos // SEALED_CHUNK_SIZE]

    def _expect_tampered(
        self, h: Harness, ref: BlobRef, ciphertext: bytes, good: int, chunks: list[bytes]
    ) -> None:
        h.set_ciphertext(ref.address, ciphertext)
        got, err = consume(h.store.open(ref))
        assert isinstance(err, VerificationError), err
        assert got == chunks[:good]

    def test_truncation(self, h: Harness, blob: tuple[BlobRef, list[bytes]]) -> None:
        ref, chunks = blob
        ct = h.ciphertext(ref.address)
        self._expect_tampered(h, ref, ct[:-1], 3, chunks)  # inside the last chunk
        self._expect_tampered(h, ref, ct[: 3 * SEALED_CHUNK_SIZE], 2, chunks)  # at a boundary
        self._expect_tampered(h, ref, ct[: SEALED_CHUNK_SIZE + 5], 1, chunks)
        self._expect_tampered(h, ref, ct[:10], 0, chunks)
        self._expect_tampered(h, ref, b"", 0, chunks)

    def test_truncation_with_matching_metadata_fails_on_the_last_chunk_flag(
        self, h: Harness, blob: tuple[BlobRef, list[bytes]]
    ) -> None:
        """Even an attacker who also rewrites the chunk count and size cannot truncate: the
        new apparent last chunk was sealed with last-chunk flag 0."""
        ref, chunks = blob
        ct = h.ciphertext(ref.address)
        short = ct[: 2 * SEALED_CHUNK_SIZE]
        h.set_ciphertext(ref.address, short)
        h.set_meta(ref.address, chunk_count=2, plaintext_size=2 * CHUNK_SIZE)
        got, err = consume(h.store.open(ref))
        assert isinstance(err, VerificationError) and "chunk 1: authentication failed" in str(err)
        assert got == chunks[:1]

    def test_extension_and_duplication(self, h: Harness, blob: tuple[BlobRef, list[bytes]]) -> None:
        ref, chunks = blob
        ct = h.ciphertext(ref.address)
        parts = sealed_chunks(ct)
        self._expect_tampered(h, ref, ct + b"\x00", 3, chunks)
        self._expect_tampered(h, ref, ct + parts[0], 3, chunks)
        self._expect_tampered(h, ref, parts[0] + ct, 1, chunks)

    def test_reordering(self, h: Harness, blob: tuple[BlobRef, list[bytes]]) -> None:
        ref, chunks = blob
        p = sealed_chunks(h.ciphertext(ref.address))
        self._expect_tampered(h, ref, b"".join([p[1], p[0], p[2], p[3]]), 0, chunks)
        self._expect_tampered(h, ref, b"".join([p[0], p[2], p[1], p[3]]), 1, chunks)
        self._expect_tampered(h, ref, b"".join([p[0], p[1], p[3]]), 2, chunks)  # dropped

    def test_chunk_swap_between_blobs(self, h: Harness, blob: tuple[BlobRef, list[bytes]]) -> None:
        ref, chunks = blob
        other = h.store.put(split(payload(3 * CHUNK_SIZE + 100, seed=8), 10_000), media_type=MT)
        mine, theirs = (
            sealed_chunks(h.ciphertext(ref.address)),
            sealed_chunks(h.ciphertext(other.address)),
        )
        self._expect_tampered(h, ref, b"".join([mine[0], theirs[1], mine[2], mine[3]]), 1, chunks)
        self._expect_tampered(h, ref, b"".join([*mine[:3], theirs[3]]), 3, chunks)
        self._expect_tampered(h, ref, b"".join(theirs), 0, chunks)

    def test_metadata_tampering(self, h: Harness, blob: tuple[BlobRef, list[bytes]]) -> None:
        ref, chunks = blob
        meta = h.meta(ref.address)
        other = h.meta(h.store.put([b"other"], media_type=MT).address)
        flipped = bytearray(meta.wrapped_key)
        flipped[5] ^= 1
        cases: list[dict[str, object]] = [
            {"wrapped_key": bytes(flipped)},
            {"wrapped_key": other.wrapped_key},
            {"wrapped_key": other.wrapped_key, "nonce_prefix": other.nonce_prefix},
            {"nonce_prefix": bytes(7)},
            {"media_type": "text/plain"},
            {"plaintext_size": meta.plaintext_size - 1},
            {"plaintext_size": meta.plaintext_size + 1},
            {"chunk_count": meta.chunk_count + 1},
            {"chunk_count": meta.chunk_count - 1},
        ]
        original = {f.name: getattr(meta, f.name) for f in dataclasses.fields(meta)}
        for changes in cases:
            h.set_meta(ref.address, **changes)
            try:
                got, err = attempt(h.store, ref)
                assert isinstance(err, VerificationError), changes
                assert got == chunks[: len(got)] and len(got) < len(chunks)
            finally:
                h.set_meta(ref.address, **{k: original[k] for k in changes})
        assert consume(h.store.open(ref)) == (chunks, None)

    def test_missing_ciphertext(self, h: Harness, blob: tuple[BlobRef, list[bytes]]) -> None:
        ref, _ = blob
        if isinstance(h, FileHarness):
            h.store.blob_path(ref.address).unlink()
        else:
            del h.store._ciphertext[ref.address]
        with pytest.raises(VerificationError):
            h.store.open(ref)

    # -- KEKs ---------------------------------------------------------------------------------

    def test_wrong_kek(self, h: Harness, blob: tuple[BlobRef, list[bytes]]) -> None:
        ref, chunks = blob
        original = h.store.kek
        other = KEK.generate()
        store = h.reopen(other)
        with pytest.raises(VerificationError) as info:
            store.open(ref)
        assert info.value.code == "wrong_kek"
        h.set_meta(ref.address, kek_id=other.kek_id)  # claim the other KEK: unwrap fails
        with pytest.raises(VerificationError) as info:
            store.open(ref)
        assert info.value.code == "bad_wrapped_key"
        h.set_meta(ref.address, kek_id=original.kek_id)
        assert consume(h.reopen(original).open(ref)) == (chunks, None)

    # -- erasure ------------------------------------------------------------------------------

    def _decrypts_with_anything_held(self, h: Harness, first_chunk: bytes, prefix: bytes) -> bool:
        """Try every 32-byte window as a data key and every 40-byte window as a wrapped key
        (unwrapped with the store's KEK) on the first chunk of a ciphertext copy."""
        nonce = chunk_nonce(prefix, 0, last=False)
        aad = chunk_aad(prefix, 0, MT)
        candidates: set[bytes] = set()
        for held in h.held_bytes():
            candidates.update(held[i : i + 32] for i in range(len(held) - 31))
            for i in range(len(held) - 39):
                with contextlib.suppress(VerificationError):
                    candidates.add(h.store.kek.unwrap(held[i : i + 40]))
        for key in candidates:
            try:
                AESGCM(key).decrypt(nonce, first_chunk, aad)
                return True
            except InvalidTag:
                pass
        return False

    def test_erase_is_crypto_shredding(self, h: Harness) -> None:
        data = payload(2 * CHUNK_SIZE + 3, seed=3)
        ref = h.store.put([data], media_type=MT)
        keep = h.store.put([b"unrelated"], media_type=MT)
        backup = h.ciphertext(ref.address)
        meta = h.meta(ref.address)
        data_key = h.store.kek.unwrap(meta.wrapped_key)
        first = backup[:SEALED_CHUNK_SIZE]
        # negative controls: before erasure the key material is held and does decrypt
        assert any(meta.wrapped_key in held for held in h.held_bytes())
        assert self._decrypts_with_anything_held(h, first, meta.nonce_prefix)

        result = h.store.erase(ref)
        assert (
            result.address,
            result.already_erased,
            result.key_deleted,
            result.ciphertext_deleted,
        ) == (
            ref.address,
            False,
            True,
            True,
        )
        for call in (h.store.open, h.store.get_ref, lambda r: h.store.read_all(r, 10**9)):
            with pytest.raises(GoneError) as info:
                call(ref)
            assert isinstance(info.value, NotFoundError) and info.value.code == "gone"
        assert not h.store.exists(ref)
        stats = h.store.stats()
        assert (stats.blobs, stats.erased) == (1, 1)
        assert h.store.read_all(keep, 100) == b"unrelated"

        again = h.store.erase(ref.address)  # idempotent
        assert (again.already_erased, again.key_deleted, again.ciphertext_deleted) == (
            True,
            False,
            False,
        )

        # the data key and the wrapped key are nowhere in what the store holds
        for held in h.held_bytes():
            assert meta.wrapped_key not in held and data_key not in held
        assert not self._decrypts_with_anything_held(h, first, meta.nonce_prefix)
        # a restored backup of the ciphertext alone is useless to the store
        h.set_ciphertext(ref.address, backup)
        with pytest.raises(GoneError):
            h.store.open(ref)
        # ...while the (destroyed) data key would have decrypted it: the check is meaningful
        nonce = chunk_nonce(meta.nonce_prefix, 0, last=False)
        assert (
            AESGCM(data_key).decrypt(nonce, first, chunk_aad(meta.nonce_prefix, 0, MT))
            == data[:CHUNK_SIZE]
        )

    def test_erase_deletes_the_key_first(self, h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
        """A crash after the key deletion and before the ciphertext deletion: the blob is
        already unreadable, and erasing again finishes the job."""
        ref = h.store.put([b"secret"], media_type=MT)

        def crash(address: str) -> bool:
            raise InfrastructureError("power cut")

        monkeypatch.setattr(h.store, "_delete_ciphertext", crash)
        with pytest.raises(InfrastructureError):
            h.store.erase(ref)
        monkeypatch.undo()
        with pytest.raises(GoneError):
            h.store.open(ref)
        assert h.leftovers() == [ref.address]  # ciphertext still there, key gone
        result = h.store.erase(ref)
        assert (result.already_erased, result.ciphertext_deleted) == (True, True)
        assert h.leftovers() == []

    def test_erase_then_put_same_content(self, h: Harness) -> None:
        ref = h.store.put([b"same"], media_type=MT)
        h.store.erase(ref)
        new = h.store.put([b"same"], media_type=MT)
        assert new.address != ref.address and h.store.read_all(new, 10) == b"same"

    def test_concurrent_puts_and_reads(self, h: Harness) -> None:
        errors: list[BaseException] = []

        def worker(seed: int) -> None:
            try:
                for i in range(4):
                    data = payload(CHUNK_SIZE + seed * 100 + i, seed=seed)
                    ref = h.store.put(split(data, 5000), media_type=MT)
                    assert h.store.read_all(ref, len(data)) == data
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and h.store.stats().blobs == 16


class TestFileRecordStore(RecordStoreConformance):
    def make_harness(self, tmp_path: Path, kek: KEK, max_bytes: int) -> Harness:
        return FileHarness(tmp_path / "records", kek, max_bytes)


class TestMemoryRecordStore(RecordStoreConformance):
    def make_harness(self, tmp_path: Path, kek: KEK, max_bytes: int) -> Harness:
        return MemoryHarness(kek, max_bytes)


# -- file store specifics ------------------------------------------------------------------------


@pytest.fixture
def fstore(tmp_path: Path) -> Iterator[FileRecordStore]:
    store = FileRecordStore(tmp_path / "records", KEK.generate())
    yield store
    store.close()


def test_layout_and_permissions(fstore: FileRecordStore) -> None:
    ref = fstore.put([b"x" * 10], media_type=MT)
    path = fstore.root / "blobs" / ref.address[:2] / ref.address
    assert path == fstore.blob_path(ref.address) and path.is_file()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == ref.address
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(fstore.db_path.stat().st_mode) == 0o600
    for d in (fstore.root, fstore.blobs_dir, fstore.tmp_dir, path.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert list(fstore.tmp_dir.iterdir()) == []


def test_metadata_settings(fstore: FileRecordStore) -> None:
    assert fstore._one("PRAGMA journal_mode") == "wal"
    assert fstore._one("PRAGMA synchronous") == 2
    assert fstore._one("PRAGMA secure_delete") == 1


def test_survives_reopen(tmp_path: Path) -> None:
    kek = KEK.generate()
    with FileRecordStore(tmp_path / "r", kek) as store:
        live = store.put([b"live"], media_type=MT)
        gone = store.put([b"gone"], media_type=MT)
        store.erase(gone)
    with FileRecordStore(tmp_path / "r", kek) as store:
        assert store.read_all(live, 10) == b"live"
        with pytest.raises(GoneError):
            store.open(gone)
        assert (store.stats().blobs, store.stats().erased) == (1, 1)


def test_closed_store_refuses(fstore: FileRecordStore) -> None:
    ref = fstore.put([b"x"], media_type=MT)
    fstore.close()
    fstore.close()
    with pytest.raises(InfrastructureError):
        fstore.open(ref)
    with pytest.raises(InfrastructureError):
        fstore.put([b"x"], media_type=MT)


def test_crash_leftovers_are_cleaned(tmp_path: Path) -> None:
    kek = KEK.generate()
    root = tmp_path / "r"
    with FileRecordStore(root, kek) as store:
        live = store.put([b"live"], media_type=MT)
    (root / "tmp" / "abc.part").write_bytes(b"partial ciphertext")  # crash during a put
    orphan = root / "blobs" / "ff" / ("ff" * 32)  # crash between link and metadata commit
    orphan.parent.mkdir()
    orphan.write_bytes(b"orphan")
    with FileRecordStore(root, kek) as store:
        assert list((root / "tmp").iterdir()) == []
        assert not store.exists("ff" * 32)
        assert store.sweep() == 1
        assert not orphan.exists()
        assert store.read_all(live, 10) == b"live"


def test_erase_scrubs_the_wal(fstore: FileRecordStore) -> None:
    ref = fstore.put([b"x"], media_type=MT)
    wrapped = fstore._lookup(ref.address).wrapped_key
    wal = fstore.db_path.with_name(fstore.db_path.name + "-wal")
    held = fstore.db_path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    assert wrapped in held  # negative control
    fstore.erase(ref)
    assert not wal.exists() or wal.stat().st_size == 0
    assert wrapped not in fstore.db_path.read_bytes()


def test_erase_retries_an_unfinished_wal_scrub(fstore: FileRecordStore) -> None:
    """A reader pinning the WAL blocks the scrub: erase fails loudly after deleting the key,
    and a retry once the reader is gone finishes the scrub and deletes the ciphertext."""
    ref = fstore.put([b"x"], media_type=MT)
    wrapped = fstore._lookup(ref.address).wrapped_key
    fstore._conn.set_busy_timeout(50)
    reader = apsw.Connection(str(fstore.db_path))
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM blobs").fetchall()
    with pytest.raises(InfrastructureError, match="retry"):
        fstore.erase(ref)
    with pytest.raises(GoneError):
        fstore.open(ref)
    reader.execute("COMMIT")
    reader.close()
    result = fstore.erase(ref)
    assert (result.already_erased, result.ciphertext_deleted) == (True, True)
    wal = fstore.db_path.with_name(fstore.db_path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    assert wrapped not in fstore.db_path.read_bytes()


def test_large_blob_streams_in_bounded_memory(fstore: FileRecordStore) -> None:
    size = 40 * 1024 * 1024
    piece = 256 * 1024
    blocks = [os.urandom(piece) for _ in range(4)]

    def source() -> Iterator[bytes]:
        for i in range(size // piece):
            yield blocks[i % 4]

    want = hashlib.sha256()
    for b in source():
        want.update(b)
    tracemalloc.start()
    try:
        ref = fstore.put(source(), media_type="application/octet-stream")
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        got = hashlib.sha256()
        n = 0
        for part in fstore.open(ref):
            got.update(part)
            n += len(part)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == size and got.digest() == want.digest()
    assert ref.size == size and ref.ciphertext_size == size + 16 * (size // CHUNK_SIZE)
    assert put_peak < 2 * 1024 * 1024, put_peak
    assert read_peak < 2 * 1024 * 1024, read_peak


def test_max_bytes_validated(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        FileRecordStore(tmp_path / "r", KEK.generate(), max_bytes=-1)
    with pytest.raises(TypeError):
        MemoryRecordStore(b"k" * 32)  # type: ignore[arg-type]
