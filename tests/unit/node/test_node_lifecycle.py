"""Restart (replay protection survives it) and commit failure (fatal, nothing acknowledged)."""

from __future__ import annotations

from typing import Any

import pytest

from carechain.contracts.identity import patient_account_id
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import generate_key
from carechain.errors import (
    DuplicateTransactionError,
    InfrastructureError,
    UnavailableError,
)
from carechain.ledger.block import header_hash
from carechain.ledger.tx import make_tx
from carechain.node.chaindir import InitResult, open_node
from carechain.node.node import Node, now_ms
from carechain.node.verify import verify_store
from carechain.testing.chain_driver import Chain, pub


def test_restart_keeps_the_head_and_replay_protection(
    demo_chain: InitResult, demo_node: Node, demo_keys: Keyring
) -> None:
    chain = Chain(demo_node, demo_keys)
    ml = generate_key("ml-dsa-65")
    fields: dict[str, Any] = dict(
        chain=demo_node.genesis.chain, kind="identity.register_patient@1",
        sender=patient_account_id(ml.kid), args={"keys": [pub(ml)]}, keys=[ml],
        created=now_ms(), nonce=b"\x07" * 16,
    )  # fmt: skip
    first = make_tx(**fields)
    member = chain.register_member("seoul-general", "seoul-general.dr-seo", generate_key())
    outs = chain.run(first, member)
    assert all(o.ok for o in outs)
    head = (demo_node.head.header.height, demo_node.head.hash, demo_node.store.log_size())
    demo_node.stop()
    demo_node.store.close()

    node = open_node(demo_chain.paths.root)
    try:
        assert (node.head.header.height, node.head.hash, node.store.log_size()) == head
        block = node.store.find_block(head[0])
        assert block is not None and header_hash(block.header) == head[1]
        # the same bytes, and the same body re-signed (ML-DSA is randomised), are replays
        resigned = make_tx(**fields)
        assert resigned.raw != first.raw and resigned.tx_id == first.tx_id
        for raw in (first.raw, resigned.raw, member.raw):
            with pytest.raises(DuplicateTransactionError):
                node.submit([raw])
        assert node.store.log_size() == head[2] and len(node.mempool) == 0
        # new transactions commit on top of the old head
        again = Chain(node, demo_keys)
        out = again.run1(
            again.register_member("seoul-general", "seoul-general.dr-ahn", generate_key())
        )
        assert out.ok and out.height == head[0] + 1 and out.index == head[2]
        node.stop()  # verify what is on disk, with the producer idle
        report = verify_store(node.store, node.genesis)
        assert report.chain.blocks == head[0] + 2 and report.chain.txs == head[2] + 1
    finally:
        node.stop()
        node.store.close()


def test_a_commit_failure_is_fatal_and_acknowledges_nothing(
    demo_chain: InitResult, demo_node: Node, demo_keys: Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = Chain(demo_node, demo_keys)
    fatal: list[BaseException] = []
    demo_node.on_fatal = fatal.append
    height, size = chain.height(), demo_node.store.log_size()
    calls: list[int] = []

    def broken(commit: Any) -> None:
        calls.append(commit.block.height)
        raise InfrastructureError("disk I/O error (injected)")

    monkeypatch.setattr(demo_node.store, "commit_block", broken)
    txs = [
        chain.register_member("seoul-general", f"seoul-general.m{i}", generate_key())
        for i in range(3)
    ]
    pending = demo_node.submit([t.raw for t in txs])
    for p in pending:
        with pytest.raises(UnavailableError):
            p.future.result(timeout=10)
    assert calls == [height + 1]  # tried once, never retried
    assert isinstance(demo_node.failed, InfrastructureError)
    assert fatal == [demo_node.failed]
    assert (chain.height(), demo_node.store.log_size()) == (height, size)
    assert all(demo_node.store.find_tx(t.tx_id) is None for t in txs)
    assert not demo_node._inflight
    # the node takes nothing more
    with pytest.raises(UnavailableError) as info:
        demo_node.submit(
            [chain.register_member("seoul-general", "seoul-general.z", generate_key()).raw]
        )
    assert info.value.retry_after >= 1
    assert calls == [height + 1]
    # restart, verify: nothing was acknowledged, so the same transactions may be sent again
    monkeypatch.undo()
    demo_node.stop()
    demo_node.store.close()
    node = open_node(demo_chain.paths.root)
    try:
        verify_store(node.store, node.genesis)
        assert node.head.header.height == height
        results = node.submit_and_wait([t.raw for t in txs])
        assert [h for h, _ in results] == [height + 1] * 3
    finally:
        node.stop()
        node.store.close()


def test_a_second_node_on_the_same_directory_is_refused(demo_chain: InitResult) -> None:
    from carechain.errors import ConflictError

    first = open_node(demo_chain.paths.root)
    try:
        with pytest.raises(ConflictError, match=r"another carechain node \(pid \d+\)"):
            open_node(demo_chain.paths.root)
    finally:
        first.stop()
        first.store.close()
    second = open_node(demo_chain.paths.root)  # the lock was released with the first node
    second.stop()
    second.store.close()
