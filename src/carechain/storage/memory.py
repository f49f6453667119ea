"""``MemoryStore``: a :class:`LedgerStore` in process memory, for tests and simulations.

Same semantics as ``SQLiteStore`` without durability (see :mod:`carechain.storage.abc`).

Invariants:

* One lock guards every field; reads copy what they return under it, so a reader sees a
  commit entirely or not at all.
* ``commit_block`` validates everything first (shape, height, log index, tx ids, Merkle node
  and header-hash uniqueness), then applies plain dict and list updates that cannot fail:
  a rejected commit changes nothing.
* A Merkle node ``(level, index)`` or a header hash is written once; a commit that would
  overwrite one fails like the SQLite store's constraint failure (``InfrastructureError``).
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Iterator, Sequence

from carechain.errors import (
    ConflictError,
    DuplicateTransactionError,
    InfrastructureError,
    NotFoundError,
)
from carechain.storage.abc import BlockCommit, LedgerStore, StoredBlock, TxLocation


def validate_commit_shape(commit: BlockCommit) -> None:
    """Check what a ``BlockCommit`` says about itself alone; raise ``ValueError`` on a bug.

    A malformed commit is a bug in its producer, not an expected failure, so this raises
    ``ValueError`` rather than a ``LedgerError``. Duplicate tx ids within the block are an
    expected failure (a replay inside one block) and raise ``DuplicateTransactionError``.
    """
    block = commit.block
    n = len(block.envelopes)
    if block.height < 0:
        raise ValueError(f"block height must be >= 0, got {block.height}")
    if commit.first_log_index < 0:
        raise ValueError(f"first_log_index must be >= 0, got {commit.first_log_index}")
    if len(block.receipts) != n or len(commit.tx_ids) != n:
        raise ValueError(
            f"block {block.height}: {n} envelopes, {len(block.receipts)} receipts and "
            f"{len(commit.tx_ids)} tx ids; they must be parallel"
        )
    keys = [key for key, _ in commit.state_writes]
    if any(a >= b for a, b in itertools.pairwise(keys)):
        raise ValueError(
            f"block {block.height}: state_writes must be in strictly increasing key order"
        )
    end = commit.first_log_index + n
    for account, log_index in commit.account_index:
        if not commit.first_log_index <= log_index < end:
            raise ValueError(
                f"block {block.height}: account index ({account!r}, {log_index}) points outside "
                f"the block's log range [{commit.first_log_index}, {end})"
            )
    for level, index, _ in commit.merkle_nodes:
        if level < 0 or index < 0:
            raise ValueError(f"block {block.height}: bad Merkle node position ({level}, {index})")
    if len(set(commit.tx_ids)) != n:
        seen: set[bytes] = set()
        for tx_id in commit.tx_ids:
            if tx_id in seen:
                raise DuplicateTransactionError(
                    f"block {block.height}: transaction {bytes(tx_id).hex()} appears twice "
                    f"in the block"
                )
            seen.add(tx_id)


class MemoryStore(LedgerStore):
    """A :class:`LedgerStore` held in dicts and lists (nothing survives the process)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._closed = False
        self._blocks: list[StoredBlock] = []
        self._by_hash: dict[bytes, int] = {}
        self._txs: dict[bytes, TxLocation] = {}
        self._envelopes: list[bytes] = []
        self._receipts: list[bytes] = []
        self._accounts: dict[str, list[int]] = {}
        self._merkle: dict[tuple[int, int], bytes] = {}
        self._state: dict[str, bytes] = {}
        self._state_keys: list[str] = []  # sorted
        self._checkpoints: dict[int, bytes] = {}
        self._meta: dict[str, bytes] = {}

    def _check_open(self) -> None:
        if self._closed:
            raise InfrastructureError("the memory ledger store is closed")

    # -- chain ---------------------------------------------------------------------------
    def head_height(self) -> int | None:
        with self._lock:
            self._check_open()
            return len(self._blocks) - 1 if self._blocks else None

    def find_block(self, height: int) -> StoredBlock | None:
        with self._lock:
            self._check_open()
            return self._blocks[height] if 0 <= height < len(self._blocks) else None

    def iter_blocks(self, start: int = 0, end: int | None = None) -> Iterator[StoredBlock]:
        with self._lock:
            self._check_open()
            stop = len(self._blocks) if end is None else min(end, len(self._blocks))
            blocks = self._blocks[max(start, 0) : max(stop, 0)]
        yield from blocks

    def find_height_by_hash(self, header_hash: bytes) -> int | None:
        with self._lock:
            self._check_open()
            return self._by_hash.get(bytes(header_hash))

    # -- transactions --------------------------------------------------------------------
    def find_tx(self, tx_id: bytes) -> TxLocation | None:
        with self._lock:
            self._check_open()
            return self._txs.get(bytes(tx_id))

    def has_tx_ids(self, tx_ids: Sequence[bytes]) -> list[bool]:
        with self._lock:
            self._check_open()
            return [bytes(tx_id) in self._txs for tx_id in tx_ids]

    def find_envelope(self, log_index: int) -> bytes | None:
        with self._lock:
            self._check_open()
            return self._envelopes[log_index] if 0 <= log_index < len(self._envelopes) else None

    def find_receipt(self, log_index: int) -> bytes | None:
        with self._lock:
            self._check_open()
            return self._receipts[log_index] if 0 <= log_index < len(self._receipts) else None

    def account_log_indexes(
        self, account: str, *, limit: int = 100, before: int | None = None
    ) -> list[int]:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        with self._lock:
            self._check_open()
            indexes = self._accounts.get(account, [])
            stop = len(indexes) if before is None else bisect.bisect_left(indexes, before)
            return indexes[max(stop - limit, 0) : stop][::-1]

    def log_size(self) -> int:
        with self._lock:
            self._check_open()
            return len(self._envelopes)

    # -- merkle --------------------------------------------------------------------------
    def get_merkle_node(self, level: int, index: int) -> bytes:
        with self._lock:
            self._check_open()
            node = self._merkle.get((level, index))
        if node is None:
            raise NotFoundError(f"no Merkle node at level {level}, index {index}")
        return node

    # -- state ---------------------------------------------------------------------------
    def find_state(self, key: str) -> bytes | None:
        with self._lock:
            self._check_open()
            return self._state.get(key)

    def iter_state(self, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        with self._lock:
            self._check_open()
            keys = self._state_keys
            items = []
            for i in range(bisect.bisect_left(keys, prefix), len(keys)):
                if not keys[i].startswith(prefix):
                    break
                items.append((keys[i], self._state[keys[i]]))
        yield from items

    # -- checkpoints and metadata --------------------------------------------------------
    def find_checkpoint(self, height: int | None = None) -> bytes | None:
        """The checkpoint stored with block ``height``; None = the newest stored checkpoint."""
        with self._lock:
            self._check_open()
            if height is None:
                return self._checkpoints[max(self._checkpoints)] if self._checkpoints else None
            return self._checkpoints.get(height)

    def find_meta(self, key: str) -> bytes | None:
        with self._lock:
            self._check_open()
            return self._meta.get(key)

    def put_meta(self, key: str, value: bytes) -> None:
        with self._lock:
            self._check_open()
            self._meta[key] = bytes(value)

    # -- writing -------------------------------------------------------------------------
    def commit_block(self, commit: BlockCommit) -> None:
        validate_commit_shape(commit)
        block = commit.block
        tx_ids = tuple(bytes(tx_id) for tx_id in commit.tx_ids)
        header_hash = bytes(commit.header_hash)
        with self._lock:
            self._check_open()
            # 1. validate against the stored chain; nothing is written before step 2.
            want = len(self._blocks)
            if block.height != want:
                raise ConflictError(
                    f"block height {block.height} does not extend the chain: got "
                    f"{block.height}, want {want}",
                    code="wrong_height",
                )
            if commit.first_log_index != len(self._envelopes):
                raise ConflictError(
                    f"block {block.height}: first_log_index is {commit.first_log_index}, want "
                    f"the log size {len(self._envelopes)}",
                    code="wrong_log_index",
                )
            existing = [tx_id for tx_id in tx_ids if tx_id in self._txs]
            if existing:
                raise DuplicateTransactionError(
                    f"block {block.height}: transaction {min(existing).hex()} is already committed"
                )
            if header_hash in self._by_hash:
                raise InfrastructureError(
                    f"block {block.height} was not committed: header hash already stored"
                )
            positions = [(level, index) for level, index, _ in commit.merkle_nodes]
            if len(set(positions)) != len(positions) or any(p in self._merkle for p in positions):
                raise InfrastructureError(
                    f"block {block.height} was not committed: a Merkle node is already stored"
                )
            # 2. apply (plain container updates; none can fail).
            self._apply(commit, tx_ids, header_hash)

    def _apply(self, commit: BlockCommit, tx_ids: tuple[bytes, ...], header_hash: bytes) -> None:
        block = commit.block
        stored = StoredBlock(
            height=block.height,
            header=bytes(block.header),
            signature=bytes(block.signature),
            envelopes=tuple(bytes(e) for e in block.envelopes),
            receipts=tuple(bytes(r) for r in block.receipts),
        )
        first = commit.first_log_index
        self._blocks.append(stored)
        self._by_hash[header_hash] = block.height
        for position, tx_id in enumerate(tx_ids):
            self._txs[tx_id] = TxLocation(
                height=block.height, position=position, log_index=first + position
            )
        self._envelopes.extend(stored.envelopes)
        self._receipts.extend(stored.receipts)
        for account, log_index in commit.account_index:
            indexes = self._accounts.setdefault(account, [])
            at = bisect.bisect_left(indexes, log_index)
            if at == len(indexes) or indexes[at] != log_index:
                indexes.insert(at, log_index)
        for level, index, node in commit.merkle_nodes:
            self._merkle[(level, index)] = bytes(node)
        for key, value in commit.state_writes:
            if value is None:
                if self._state.pop(key, None) is not None:
                    del self._state_keys[bisect.bisect_left(self._state_keys, key)]
            else:
                if key not in self._state:
                    bisect.insort(self._state_keys, key)
                self._state[key] = bytes(value)
        if commit.checkpoint:
            self._checkpoints[block.height] = bytes(commit.checkpoint)

    def close(self) -> None:
        with self._lock:
            self._closed = True
