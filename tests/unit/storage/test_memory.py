"""MemoryStore against the store conformance suite, plus negative controls for the suite."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest

from carechain.storage.abc import BlockCommit, LedgerStore
from carechain.storage.memory import MemoryStore
from carechain.testing.store_conformance import StoreConformance, make_chain


class TestMemoryStore(StoreConformance):
    def make_store(self, tmp_path: pathlib.Path) -> LedgerStore:
        return MemoryStore()


# -- negative controls: the suite must catch stores that break the invariants ---------------


class _WritesBeforeChecking(MemoryStore):
    """Broken on purpose: applies the state writes before the checks run."""

    def commit_block(self, commit: BlockCommit) -> None:
        with self._lock:
            for key, value in commit.state_writes:
                if value is not None and key not in self._state:
                    self._state[key] = value
                    self._state_keys = sorted(self._state)
            super().commit_block(commit)


class _AcceptsReplays(MemoryStore):
    """Broken on purpose: forgets tx ids, so a replayed transaction is accepted."""

    def commit_block(self, commit: BlockCommit) -> None:
        super().commit_block(commit)
        with self._lock:
            self._txs.clear()


class _LosesOrder(MemoryStore):
    """Broken on purpose: returns account log indexes oldest first."""

    def account_log_indexes(
        self, account: str, *, limit: int = 100, before: int | None = None
    ) -> list[int]:
        return sorted(super().account_log_indexes(account, limit=limit, before=before))


def test_suite_catches_non_atomic_rejection() -> None:
    suite = TestMemoryStore()
    with pytest.raises(AssertionError):
        suite.test_rejects_duplicate_tx_across_blocks(_WritesBeforeChecking())


def test_suite_catches_accepted_replay() -> None:
    suite = TestMemoryStore()
    with pytest.raises(pytest.fail.Exception):
        suite.test_rejects_duplicate_tx_across_blocks(_AcceptsReplays())


def test_suite_catches_wrong_account_order() -> None:
    suite = TestMemoryStore()
    with pytest.raises(AssertionError):
        suite.test_account_index_newest_first(_LosesOrder())


def test_suite_catches_state_model_mismatch() -> None:
    suite = TestMemoryStore()
    steps: list[tuple[int, list[int], dict[str, bytes | None], bool]] = [
        (0, [1], {"a": b"1"}, False),
        (0, [1], {"b": b"2"}, False),  # a replay: must be rejected without writing "b"
    ]
    with pytest.raises(AssertionError):
        suite._check_against_model(_WritesBeforeChecking(), steps)


def test_stored_block_is_a_copy_of_bytes_like_input() -> None:
    store = MemoryStore()
    commit = make_chain([1])[0]
    envelope = bytearray(commit.block.envelopes[0])
    block = dataclasses.replace(commit.block, envelopes=(envelope,))  # type: ignore[arg-type]
    store.commit_block(dataclasses.replace(commit, block=block))
    envelope[0] ^= 0xFF
    assert store.find_envelope(0) == commit.block.envelopes[0]
    assert type(store.find_envelope(0)) is bytes
