"""Cosignatures kept in the ledger store (node/witness.py, ADR 0011 "Cosignature persistence").

Three in-process consortium nodes over the in-memory etcd stand-in produce final heights;
then a fresh :class:`Witness` over one node's store and an *empty* board (etcd lost or
compacted) must still find the final quorum, verified again line by line; a tampered stored
line is not counted; a second, different cosignature for a height is refused (equivocation).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import generate_key
from carechain.merkle.cosignature import cosign
from carechain.node.chaindir import open_node
from carechain.node.consortium import init_consortium
from carechain.node.node import Node
from carechain.node.witness import (
    EQUIVOCATION_META,
    FINAL_HEIGHT_META,
    DivergenceError,
    Witness,
    final_meta_key,
    own_meta_key,
    split_note,
)
from carechain.testing.chain_driver import FAST_SCRYPT_N, Chain
from carechain.testing.cluster import MemoryEtcd, MemoryEtcdOrderer


class EmptyBoard:
    """A cosignature board that lost everything (etcd wiped or compacted)."""

    def __init__(self) -> None:
        self.published: dict[int, bytes] = {}

    def put_cosignature(self, height: int, note: bytes) -> None:
        self.published[height] = note

    def cosignatures(self, height: int) -> dict[str, bytes]:
        return {}


def wait_for(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[list[Node], Keyring, list[Path]]]:
    _, members = init_consortium(tmp_path / "c", orgs=3, scrypt_n=FAST_SCRYPT_N)
    shared = MemoryEtcd()
    out = [open_node(m.root, orderer=MemoryEtcdOrderer(shared, m.node_kid)) for m in members]
    keys = Keyring(tmp_path / "c" / "admin", scrypt_n=FAST_SCRYPT_N)
    try:
        yield out, keys, [m.root for m in members]
    finally:
        for n in out:
            n.stop()
            n.store.close()


def final_after_workload(nodes: list[Node], keys: Keyring) -> int:
    chain = Chain(nodes[0], keys)
    for name in ("dr-a", "dr-b", "dr-c"):
        assert chain.enroll("seoul-general", name, generate_key()).ok
    head = nodes[0].store.head_height()
    assert head is not None and head >= 3
    witness = nodes[0].witness
    assert witness is not None
    wait_for(lambda: witness.poll() >= head)
    return witness.final_height


def fresh_witness(node: Node, alarms: list[DivergenceError] | None = None) -> Witness:
    """What a restarted node builds: same store and key, nothing in memory, empty board."""
    return Witness(
        key=node.node_key,
        origin=node.genesis.origin,
        board=EmptyBoard(),
        store=node.store,
        params=node.params,
        clock_s=lambda: 1_900_000_000,
        on_divergence=alarms.append if alarms is not None else None,
    )


def test_own_note_is_stored_for_every_cosigned_height(
    nodes: tuple[list[Node], Keyring, list[Path]],
) -> None:
    ns, keys, _ = nodes
    final_after_workload(ns, keys)
    head = ns[0].store.head_height()
    assert head is not None
    for h in range(1, head + 1):
        raw = ns[0].store.find_meta(own_meta_key(h))
        assert raw is not None, f"no stored own cosignature for block {h}"
        text, lines = split_note(raw)
        assert len(lines) == 1 and f"carechain-block {h} ".encode() in text


def test_final_quorum_survives_restart_with_an_empty_board(
    nodes: tuple[list[Node], Keyring, list[Path]],
) -> None:
    ns, keys, _ = nodes
    final = final_after_workload(ns, keys)
    assert ns[0].store.find_meta(FINAL_HEIGHT_META) == str(final).encode()
    w = fresh_witness(ns[0])
    assert w.final_height == final  # restored, not 0
    v = w.view(final)
    assert v is not None and v.final, "the stored quorum was not recognised after restart"
    assert v.orgs_total == 3 and len(v.orgs) == 3
    assert sorted(v.nodes) == sorted(n.node_key.kid for n in ns)


def test_a_tampered_stored_cosignature_is_not_counted(
    nodes: tuple[list[Node], Keyring, list[Path]],
) -> None:
    ns, keys, _ = nodes
    final = final_after_workload(ns, keys)
    store = ns[0].store
    note = store.find_meta(final_meta_key(final))
    assert note is not None
    text, lines = split_note(note)
    own_name = f"{ns[0].witness.name()} ".encode() if ns[0].witness else b""
    others = [ln for ln in lines if own_name not in ln]
    assert len(others) == 2
    # flip one byte of a peer's signature (keep the key id so the line is still "trusted")
    prefix, b64 = others[0].rstrip(b"\n").rsplit(b" ", 1)
    raw = bytearray(base64.b64decode(b64))
    raw[-1] ^= 0x01
    bad = prefix + b" " + base64.b64encode(bytes(raw)) + b"\n"
    store.put_meta(
        final_meta_key(final), text + b"\n" + b"".join(sorted([*(set(lines) - {others[0]}), bad]))
    )
    v = fresh_witness(ns[0]).view(final)
    assert v is not None
    assert len(v.orgs) == 2 and not v.final, "a tampered stored cosignature was counted"
    # a forged line by a key that is not an active node key is not counted either
    outsider = generate_key()
    forged = cosign(text, "intruder-node-1", outsider, 1_900_000_000)
    store.put_meta(final_meta_key(final), text + b"\n" + b"".join(sorted([*lines[:1], forged])))
    v = fresh_witness(ns[0]).view(final)
    assert v is not None and not v.final
    assert outsider.kid not in v.nodes


def test_no_second_cosignature_for_a_height_already_cosigned(
    nodes: tuple[list[Node], Keyring, list[Path]],
) -> None:
    ns, keys, _ = nodes
    final = final_after_workload(ns, keys)
    block = ns[0].store.find_block(final)
    assert block is not None
    from carechain.ledger.block import header_hash, parse_header

    header = parse_header(block.header)
    alarms: list[DivergenceError] = []
    w = fresh_witness(ns[0], alarms)
    stored = ns[0].store.find_meta(own_meta_key(final))
    assert stored is not None
    # negative control: the same values again reuse the stored line, no alarm
    line = w.cosign(final, header_hash(block.header), header.log_size, header.log_root)
    assert line == split_note(stored)[1][0]
    assert not alarms and w.divergence is None
    # another block hash for the same height: refused, alarm, evidence, nothing published
    board = w.board
    assert isinstance(board, EmptyBoard)
    board.published.clear()
    refused = w.cosign(final, b"\x07" * 32, header.log_size, header.log_root)
    assert refused == b""
    assert len(alarms) == 1 and "equivocation" in alarms[0].message
    assert board.published == {}
    assert ns[0].store.find_meta(own_meta_key(final)) == stored  # unchanged
    assert ns[0].store.find_meta(EQUIVOCATION_META) is not None
    assert w.divergence is not None and w.divergence["height"] == final


def test_a_reopened_node_serves_final_cosignatures_from_its_store(
    nodes: tuple[list[Node], Keyring, list[Path]],
) -> None:
    ns, keys, roots = nodes
    final = final_after_workload(ns, keys)
    ns[0].stop()
    ns[0].store.close()
    # reopened over a brand-new, empty etcd stand-in: nothing on the board
    ns[0] = open_node(roots[0], orderer=MemoryEtcdOrderer(MemoryEtcd(), ns[0].node_key.kid))
    w = ns[0].witness
    assert w is not None and w.final_height == final
    v = w.view(final)
    assert v is not None and v.final and len(v.orgs) == 3
