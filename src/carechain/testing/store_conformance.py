"""A conformance suite for :class:`~carechain.storage.abc.LedgerStore` implementations.

Subclass :class:`StoreConformance` in a test module, name the subclass ``Test…`` and implement
``make_store``; pytest then runs every ``test_*`` method against that store::

    class TestSQLiteStore(StoreConformance):
        supports_reopen = True

        def make_store(self, tmp_path: pathlib.Path) -> LedgerStore:
            return SQLiteStore(tmp_path / "ledger.db")

``make_store`` called twice with the same ``tmp_path`` must reopen the same store when
``supports_reopen`` is true. The suite checks the invariants listed in
:mod:`carechain.storage.abc`; :func:`make_block_commit` and :func:`make_chain` build
deterministic commits that other tests (and crash-test child processes) can rebuild.

Requires the ``test`` extra (pytest, hypothesis).
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import tempfile
import threading
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carechain.errors import (
    ConflictError,
    DuplicateTransactionError,
    InfrastructureError,
    LedgerError,
    NotFoundError,
)
from carechain.storage.abc import BlockCommit, LedgerStore, StoredBlock, TxLocation

# -- deterministic factories ---------------------------------------------------------------


def _h(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def node_hash(level: int, index: int) -> bytes:
    """The (fake, deterministic) Merkle node hash the factories store at ``(level, index)``."""
    return _h(f"node/{level}/{index}")


def merkle_positions(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """Complete-subtree positions ``(level, index)`` that appear when a log grows.

    A node ``(level, j)`` covers leaves ``[j·2^level, (j+1)·2^level)``; it is new when that
    range ends inside ``(old_size, new_size]``.
    """
    positions: list[tuple[int, int]] = []
    level = 0
    while new_size >> level:
        positions.extend((level, j) for j in range(old_size >> level, new_size >> level))
        level += 1
    return positions


def make_block_commit(
    height: int,
    first_log_index: int,
    n_tx: int = 3,
    *,
    tag: str = "",
    tx_ids: Sequence[bytes] | None = None,
    state_writes: Sequence[tuple[str, bytes | None]] | None = None,
    account_index: Sequence[tuple[str, int]] | None = None,
    merkle_nodes: Sequence[tuple[int, int, bytes]] | None = None,
    checkpoint: bytes | None = None,
) -> BlockCommit:
    """A deterministic, self-consistent ``BlockCommit`` (same arguments, same bytes).

    Envelopes and receipts contain NUL and non-UTF-8 bytes to catch any re-encoding. Each tx
    touches ``acct/<log % 4>`` and ``acct/all``, writes ``k/<log % 7>``; every third block
    deletes ``k/<height % 7>``.
    """
    if tx_ids is not None:
        n_tx = len(tx_ids)
    logs = range(first_log_index, first_log_index + n_tx)
    ids = tuple(tx_ids) if tx_ids is not None else tuple(_h(f"tx/{tag}/{i}") for i in logs)
    envelopes = tuple(b"\x00\xffenv %d %s\x80" % (i, tag.encode()) for i in logs)
    receipts = tuple(b"\xferct %d\x00" % i for i in logs)
    header = b"\x00header %d %d %s" % (height, first_log_index, tag.encode())
    if state_writes is None:
        writes: dict[str, bytes | None] = {f"k/{i % 7}": b"v%d\x00" % i for i in logs}
        if height % 3 == 2:
            writes[f"k/{height % 7}"] = None
        state_writes = sorted(writes.items())
    if account_index is None:
        account_index = [(f"acct/{i % 4}", i) for i in logs] + [("acct/all", i) for i in logs]
    if merkle_nodes is None:
        new_size = first_log_index + n_tx
        merkle_nodes = [
            (lv, j, node_hash(lv, j)) for lv, j in merkle_positions(first_log_index, new_size)
        ]
    return BlockCommit(
        block=StoredBlock(
            height=height,
            header=header,
            signature=b"sig\x00%d" % height,
            envelopes=envelopes,
            receipts=receipts,
        ),
        header_hash=hashlib.sha256(header).digest(),
        tx_ids=ids,
        first_log_index=first_log_index,
        merkle_nodes=tuple(merkle_nodes),
        state_writes=tuple(state_writes),
        account_index=tuple(account_index),
        checkpoint=b"checkpoint %d\n\xff" % height if checkpoint is None else checkpoint,
    )


def make_chain(tx_counts: Sequence[int], *, tag: str = "") -> list[BlockCommit]:
    """Commits for heights ``0..len(tx_counts)-1`` with the given numbers of transactions."""
    commits = []
    log = 0
    for height, n in enumerate(tx_counts):
        commits.append(make_block_commit(height, log, n, tag=tag))
        log += n
    return commits


def replay_state(commits: Sequence[BlockCommit]) -> dict[str, bytes]:
    """The state a store must hold after ``commits`` (a plain dict model)."""
    state: dict[str, bytes] = {}
    for commit in commits:
        for key, value in commit.state_writes:
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
    return state


def snapshot(store: LedgerStore, probe_ids: Sequence[bytes] = ()) -> dict[str, Any]:
    """Everything observable about ``store`` (to prove a rejected commit changed nothing)."""
    accounts = ["acct/all", "acct/0", "acct/1", "acct/2", "acct/3", "x"]
    return {
        "head": store.head_height(),
        "log_size": store.log_size(),
        "blocks": list(store.iter_blocks()),
        "state": list(store.iter_state()),
        "probe_ids": store.has_tx_ids(probe_ids),
        "tx_locations": [store.find_tx(tx_id) for tx_id in probe_ids],
        "accounts": {a: store.account_log_indexes(a, limit=10_000) for a in accounts},
        "checkpoint": store.find_checkpoint(),
        "envelope_after": store.find_envelope(store.log_size()),
    }


def _commit_all(store: LedgerStore, commits: Sequence[BlockCommit]) -> None:
    for commit in commits:
        store.commit_block(commit)


# -- the suite -----------------------------------------------------------------------------


class StoreConformance:
    """Tests every ``LedgerStore`` must pass. Subclass it as ``Test…`` and add ``make_store``."""

    supports_reopen: ClassVar[bool] = False
    """True when ``make_store(same tmp_path)`` reopens the same durable store."""

    def make_store(self, tmp_path: pathlib.Path) -> LedgerStore:
        """A new (or, with the same ``tmp_path`` and ``supports_reopen``, reopened) store."""
        raise NotImplementedError

    @pytest.fixture
    def store(self, tmp_path: pathlib.Path) -> Iterator[LedgerStore]:
        store = self.make_store(tmp_path)
        yield store
        store.close()

    # -- empty store -----------------------------------------------------------------------
    def test_empty_store(self, store: LedgerStore) -> None:
        assert store.head_height() is None
        assert store.log_size() == 0
        assert store.find_block(0) is None
        assert list(store.iter_blocks()) == []
        assert store.find_height_by_hash(b"\x00" * 32) is None
        assert store.find_tx(b"\x01" * 32) is None
        assert store.has_tx_ids([b"\x01" * 32, b"\x02" * 32]) == [False, False]
        assert store.has_tx_ids([]) == []
        assert store.find_envelope(0) is None
        assert store.find_receipt(0) is None
        assert store.account_log_indexes("acct/all") == []
        with pytest.raises(NotFoundError):
            store.get_merkle_node(0, 0)
        assert store.find_state("k") is None
        assert list(store.iter_state()) == []
        assert store.find_checkpoint() is None
        assert store.find_checkpoint(0) is None
        assert store.find_meta("genesis") is None

    # -- round trip ------------------------------------------------------------------------
    def test_commit_and_read_back_verbatim(self, store: LedgerStore) -> None:
        commits = make_chain([1, 3, 0, 5, 2, 4])
        for commit in commits:
            store.commit_block(commit)
            assert store.head_height() == commit.block.height
        assert store.log_size() == 15
        for commit in commits:
            got = store.find_block(commit.block.height)
            assert got == commit.block
            assert got is not None
            assert type(got.header) is bytes and type(got.signature) is bytes
            assert all(type(e) is bytes for e in got.envelopes + got.receipts)
            assert store.find_height_by_hash(commit.header_hash) == commit.block.height
            for position, tx_id in enumerate(commit.tx_ids):
                log_index = commit.first_log_index + position
                loc = TxLocation(height=commit.block.height, position=position, log_index=log_index)
                assert store.find_tx(tx_id) == loc
                envelope = store.find_envelope(log_index)
                receipt = store.find_receipt(log_index)
                assert type(envelope) is bytes and type(receipt) is bytes
                assert envelope == commit.block.envelopes[position]
                assert receipt == commit.block.receipts[position]
        assert store.find_envelope(15) is None and store.find_receipt(15) is None
        assert store.find_envelope(-1) is None
        # batched receipts: any order, repeats, gaps and indexes past the log
        asked = [14, 0, 3, 3, 15, 99, -1, 7, 2, 40, 41]
        assert store.find_receipts(asked) == [store.find_receipt(i) for i in asked]
        assert store.find_receipts([]) == []
        assert store.find_block(len(commits)) is None
        all_ids = [tx_id for c in commits for tx_id in c.tx_ids]
        unknown = _h("unknown")
        assert store.has_tx_ids([*all_ids, unknown]) == [True] * len(all_ids) + [False]

    def test_iter_blocks_ranges(self, store: LedgerStore) -> None:
        commits = make_chain([2, 0, 1, 3, 1])
        _commit_all(store, commits)
        blocks = [c.block for c in commits]
        assert list(store.iter_blocks()) == blocks
        for start, end in [(0, None), (2, None), (1, 3), (0, 5), (0, 99), (4, 5), (3, 3), (5, 9)]:
            want = blocks[start:end]
            assert list(store.iter_blocks(start, end)) == want, (start, end)
        assert list(store.iter_blocks(3, 1)) == []

    def test_account_index_newest_first(self, store: LedgerStore) -> None:
        _commit_all(store, make_chain([3, 4, 0, 5]))  # log indexes 0..11
        assert store.account_log_indexes("acct/all") == list(range(11, -1, -1))
        assert store.account_log_indexes("acct/all", limit=3) == [11, 10, 9]
        assert store.account_log_indexes("acct/all", limit=3, before=9) == [8, 7, 6]
        assert store.account_log_indexes("acct/all", before=2) == [1, 0]
        assert store.account_log_indexes("acct/all", before=0) == []
        assert store.account_log_indexes("acct/all", limit=0) == []
        assert store.account_log_indexes("acct/1") == [9, 5, 1]
        assert store.account_log_indexes("acct/1", before=9) == [5, 1]
        assert store.account_log_indexes("nobody") == []

    def test_state_upsert_delete_and_prefix_order(self, store: LedgerStore) -> None:
        keys = ["a", "a/", "a/b", "a/c", "a0", "ab", "b", "é", "é/x", "\U0001f600", "a\x00"]
        first = make_block_commit(
            0, 0, 1, state_writes=sorted((k, k.encode() + b"\x00") for k in keys)
        )
        store.commit_block(first)
        second = make_block_commit(
            1, 1, 1, state_writes=[("a/b", None), ("a/c", b"new"), ("never", None), ("z", b"")]
        )
        store.commit_block(second)
        model = replay_state([first, second])
        assert list(store.iter_state()) == sorted(model.items())
        for prefix in ["", "a", "a/", "a/b", "é", "\U0001f600", "zz", "a\x00", "b"]:
            want = sorted((k, v) for k, v in model.items() if k.startswith(prefix))
            got = list(store.iter_state(prefix))
            assert got == want, prefix
            assert all(type(v) is bytes for _, v in got)
        assert store.find_state("a/b") is None
        assert store.find_state("a/c") == b"new"
        assert store.find_state("z") == b""
        assert store.find_state("never") is None
        probe = [*keys, "never", "a/c", "missing", "a/c"] + [f"k{i}" for i in range(1200)]
        assert store.find_states(probe) == [model.get(k) for k in probe]
        assert store.find_states([]) == []

    def test_merkle_nodes(self, store: LedgerStore) -> None:
        _commit_all(store, make_chain([3, 2, 0, 4]))  # log size 9
        for level, index in merkle_positions(0, 9):
            node = store.get_merkle_node(level, index)
            assert type(node) is bytes and node == node_hash(level, index)
        for level, index in [(0, 9), (1, 4), (3, 1), (4, 0)]:
            with pytest.raises(NotFoundError):
                store.get_merkle_node(level, index)

    def test_find_tx_leaf_adds_the_sibling_leaf(self, store: LedgerStore) -> None:
        commits = make_chain([3, 2, 0, 4])  # log size 9: leaf 8 has no sibling yet
        _commit_all(store, commits)
        for commit in commits:
            for position, tx_id in enumerate(commit.tx_ids):
                log_index = commit.first_log_index + position
                found = store.find_tx_leaf(tx_id)
                assert found is not None
                loc, envelope, sibling = found
                assert (loc, envelope) == store.find_tx_envelope(tx_id)
                assert loc.log_index == log_index
                want = node_hash(0, log_index ^ 1) if log_index ^ 1 < 9 else None
                assert sibling == want
                assert sibling is None or type(sibling) is bytes
        assert store.find_tx_leaf(_h("unknown")) is None

    def test_checkpoints_newest_and_by_height(self, store: LedgerStore) -> None:
        store.commit_block(make_block_commit(0, 0, 1, checkpoint=b"cp0"))
        store.commit_block(make_block_commit(1, 1, 1, checkpoint=b"cp1\n"))
        assert store.find_checkpoint() == b"cp1\n"
        store.commit_block(make_block_commit(2, 2, 1, checkpoint=b""))  # no checkpoint
        assert store.find_checkpoint(0) == b"cp0"
        assert store.find_checkpoint(1) == b"cp1\n"
        assert store.find_checkpoint(2) is None
        assert store.find_checkpoint() == b"cp1\n"  # newest stored
        assert store.find_checkpoint(9) is None

    def test_meta(self, store: LedgerStore) -> None:
        store.put_meta("genesis", b"\x00g\xff")
        store.put_meta("other", b"")
        assert store.find_meta("genesis") == b"\x00g\xff"
        store.put_meta("genesis", b"replaced")
        assert store.find_meta("genesis") == b"replaced"
        assert store.find_meta("other") == b""
        assert store.find_meta("missing") is None

    def test_close_is_idempotent(self, tmp_path: pathlib.Path) -> None:
        store = self.make_store(tmp_path)
        store.commit_block(make_block_commit(0, 0, 1))
        store.close()
        store.close()
        with pytest.raises(InfrastructureError):
            store.head_height()
        with pytest.raises(InfrastructureError):
            store.commit_block(make_block_commit(1, 1, 1))

    # -- rejections change nothing ---------------------------------------------------------
    @pytest.mark.parametrize(
        ("height", "first_log_index"),
        [(4, 6), (2, 3), (1, 1), (0, 0), (3, 7), (3, 5)],
        ids=["gap", "repeat-head", "repeat-old", "repeat-genesis", "log-gap", "log-overlap"],
    )
    def test_rejects_wrong_height_or_log_index(
        self, store: LedgerStore, height: int, first_log_index: int
    ) -> None:
        _commit_all(store, make_chain([1, 2, 3]))  # head 2, log size 6
        bad = make_block_commit(height, first_log_index, 2, tag="bad")
        before = snapshot(store, bad.tx_ids)
        with pytest.raises(ConflictError):
            store.commit_block(bad)
        assert snapshot(store, bad.tx_ids) == before
        assert before["head"] == 2 and before["log_size"] == 6

    def test_rejects_first_block_not_genesis(self, store: LedgerStore) -> None:
        with pytest.raises(ConflictError):
            store.commit_block(make_block_commit(1, 0, 1))
        assert store.head_height() is None and store.log_size() == 0

    def test_rejects_duplicate_tx_within_block(self, store: LedgerStore) -> None:
        _commit_all(store, make_chain([2]))
        dup = _h("dup")
        bad = make_block_commit(1, 2, tx_ids=[_h("fresh"), dup, dup])
        before = snapshot(store, bad.tx_ids)
        with pytest.raises(DuplicateTransactionError):
            store.commit_block(bad)
        assert snapshot(store, bad.tx_ids) == before

    def test_rejects_duplicate_tx_across_blocks(self, store: LedgerStore) -> None:
        commits = make_chain([2, 3])
        _commit_all(store, commits)
        old = commits[0].tx_ids[1]
        bad = make_block_commit(2, 5, tx_ids=[_h("fresh-1"), _h("fresh-2"), old])
        before = snapshot(store, bad.tx_ids)
        with pytest.raises(DuplicateTransactionError):
            store.commit_block(bad)
        assert snapshot(store, bad.tx_ids) == before
        assert store.find_tx(old) == TxLocation(height=0, position=1, log_index=1)
        store.commit_block(make_block_commit(2, 5, 1))  # the chain goes on

    def test_rejects_malformed_commit(self, store: LedgerStore) -> None:
        _commit_all(store, make_chain([1]))
        good = make_block_commit(1, 1, 2)
        malformed = [
            dataclasses.replace(good, tx_ids=good.tx_ids[:1]),
            dataclasses.replace(good, block=dataclasses.replace(good.block, receipts=())),
            dataclasses.replace(good, state_writes=(("b", b"1"), ("a", b"2"))),
            dataclasses.replace(good, state_writes=(("a", b"1"), ("a", None))),
            dataclasses.replace(good, account_index=(("acct/x", 0),)),
        ]
        before = snapshot(store, good.tx_ids)
        for commit in malformed:
            with pytest.raises(ValueError, match=r"."):
                store.commit_block(commit)
            assert snapshot(store, good.tx_ids) == before
        store.commit_block(good)

    # -- atomicity -------------------------------------------------------------------------
    @pytest.mark.parametrize("fault", ["merkle-node-stored", "merkle-node-twice", "header-hash"])
    def test_failed_commit_leaves_nothing_visible(self, store: LedgerStore, fault: str) -> None:
        commits = make_chain([3, 2])
        _commit_all(store, commits)
        good = make_block_commit(2, 5, 3, checkpoint=b"cp-bad")
        if fault == "merkle-node-stored":  # conflicts after block, txs and indexes are written
            bad = dataclasses.replace(good, merkle_nodes=(*good.merkle_nodes, (0, 1, b"x")))
        elif fault == "merkle-node-twice":
            bad = dataclasses.replace(good, merkle_nodes=(*good.merkle_nodes, good.merkle_nodes[0]))
        else:
            bad = dataclasses.replace(good, header_hash=commits[0].header_hash)
        before = snapshot(store, bad.tx_ids)
        with pytest.raises(InfrastructureError):
            store.commit_block(bad)
        assert snapshot(store, bad.tx_ids) == before
        assert store.find_block(2) is None
        assert store.find_height_by_hash(good.header_hash) is None
        assert store.find_checkpoint(2) is None
        assert all(store.find_state(k) == before_v for k, before_v in before["state"])
        for level, index, _ in good.merkle_nodes:
            with pytest.raises(NotFoundError):
                store.get_merkle_node(level, index)
        store.commit_block(good)  # a constraint failure is not fatal: the right block goes in
        assert store.head_height() == 2
        assert store.get_merkle_node(0, 1) == node_hash(0, 1)

    # -- concurrency -----------------------------------------------------------------------
    def test_readers_see_whole_blocks_while_writing(self, store: LedgerStore) -> None:
        commits = make_chain([4] * 30)
        store.commit_block(commits[0])
        stop = threading.Event()
        failures: list[str] = []

        def read() -> None:
            seen = 0
            while not stop.is_set():
                try:
                    head = store.head_height()
                    assert head is not None and head >= seen
                    seen = head
                    block = store.find_block(head)
                    assert block == commits[head].block
                    assert store.log_size() >= 4 * (head + 1)
                    assert store.has_tx_ids(commits[head].tx_ids) == [True] * 4
                except (AssertionError, LedgerError) as exc:  # pragma: no cover - reported
                    failures.append(repr(exc))
                    return

        readers = [threading.Thread(target=read) for _ in range(2)]
        for reader in readers:
            reader.start()
        try:
            _commit_all(store, commits[1:])
        finally:
            stop.set()
            for reader in readers:
                reader.join(timeout=30)
        assert failures == []
        assert store.head_height() == 29

    # -- persistence -----------------------------------------------------------------------
    def test_persists_across_reopen(self, tmp_path: pathlib.Path) -> None:
        if not self.supports_reopen:
            pytest.skip("this store does not persist")
        commits = make_chain([2, 0, 3])
        store = self.make_store(tmp_path)
        _commit_all(store, commits)
        store.put_meta("genesis", b"\x00g")
        probe = [c for commit in commits for c in commit.tx_ids]
        before = snapshot(store, probe)
        store.close()
        reopened = self.make_store(tmp_path)
        try:
            assert snapshot(reopened, probe) == before
            assert reopened.find_meta("genesis") == b"\x00g"
            assert reopened.get_merkle_node(0, 4) == node_hash(0, 4)
            with pytest.raises(DuplicateTransactionError):  # replay after restart
                reopened.commit_block(make_block_commit(3, 5, tx_ids=[commits[0].tx_ids[0]]))
            reopened.commit_block(make_block_commit(3, 5, 2))
            assert reopened.head_height() == 3
        finally:
            reopened.close()

    # -- property: random commits against a dict model -------------------------------------
    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
    )
    @given(
        steps=st.lists(
            st.tuples(
                st.sampled_from([0, 0, 0, 0, 1, -1]),  # height offset: 0 = the right height
                st.lists(st.integers(0, 12), max_size=3),  # tx ids from a small pool
                st.dictionaries(
                    st.text(alphabet="ab/\x00é\U0001f600", max_size=3),
                    st.none() | st.binary(max_size=3),
                    max_size=4,
                ),
                st.booleans(),  # also write a meta key
            ),
            max_size=8,
        )
    )
    def test_random_commits_match_dict_model(
        self, steps: list[tuple[int, list[int], dict[str, bytes | None], bool]]
    ) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            store = self.make_store(pathlib.Path(tmp))
            try:
                self._check_against_model(store, steps)
            finally:
                store.close()

    @staticmethod
    def _check_against_model(
        store: LedgerStore, steps: list[tuple[int, list[int], dict[str, bytes | None], bool]]
    ) -> None:
        state: dict[str, bytes] = {}
        committed: dict[bytes, TxLocation] = {}
        meta: dict[str, bytes] = {}
        head: int | None = None
        log_size = 0
        for step, (offset, picks, writes, with_meta) in enumerate(steps):
            want = 0 if head is None else head + 1
            height = want + offset if want + offset >= 0 else want + 1
            tx_ids = [_h(f"pool/{p}") for p in picks]
            commit = make_block_commit(
                height, log_size, tx_ids=tx_ids, state_writes=sorted(writes.items())
            )
            ok = (
                height == want
                and len(set(tx_ids)) == len(tx_ids)
                and not any(t in committed for t in tx_ids)
            )
            if ok:
                store.commit_block(commit)
                for position, tx_id in enumerate(tx_ids):
                    committed[tx_id] = TxLocation(
                        height=height, position=position, log_index=log_size + position
                    )
                for key, value in writes.items():
                    if value is None:
                        state.pop(key, None)
                    else:
                        state[key] = value
                head, log_size = height, log_size + len(tx_ids)
            else:
                with pytest.raises(ConflictError):
                    store.commit_block(commit)
            if with_meta:
                meta[f"m{step % 2}"] = b"%d" % step
                store.put_meta(f"m{step % 2}", b"%d" % step)
            assert store.head_height() == head
            assert store.log_size() == log_size
            assert list(store.iter_state()) == sorted(state.items())
            for prefix in ["a", "a/", "é", "\U0001f600", "\x00", "b\x00"]:
                want_items = sorted((k, v) for k, v in state.items() if k.startswith(prefix))
                assert list(store.iter_state(prefix)) == want_items
            for key in writes:
                assert store.find_state(key) == state.get(key)
            pool = [_h(f"pool/{p}") for p in range(13)]
            assert store.has_tx_ids(pool) == [t in committed for t in pool]
            assert [store.find_tx(t) for t in pool] == [committed.get(t) for t in pool]
            assert {k: store.find_meta(k) for k in ("m0", "m1")} == {
                k: meta.get(k) for k in ("m0", "m1")
            }
