"""Storage faults: ENOSPC / EIO at each successive I/O step of a block commit.

A fault-injecting SQLite VFS (``carechain.testing.faultvfs``) under a real node's store fails
the N-th write, sync or truncate of the ledger or its WAL, for N = 1, 2, 3 … until a commit
passes with no fault. Each time: the submitter gets an error and never an acknowledgement, the
node stops (``node.failed``, nothing acknowledged later, ``/healthz`` 503 through the API), and
the directory reopened without the fault passes ``integrity_check`` and ``verify_store`` and
holds every acknowledged transaction, with the faulted block whole or absent.

The configuration guard (not WAL, not ``synchronous=FULL``, SQLite too old) is tested in
``tests/unit/storage/test_sqlite.py`` (``test_refuses_*``, ``test_check_safe_settings_*``).
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from carechain.api.app import create_app
from carechain.errors import LedgerError
from carechain.ledger.tx import SignedTx
from carechain.node.chaindir import ChainPaths, InitResult, read_genesis
from carechain.node.node import Node
from carechain.storage.sqlite import SQLiteStore
from carechain.testing.crashloop import Ack, Workload, check_ledger, load_keys
from carechain.testing.faultvfs import FaultVFS, open_faulty_node

MAX_STEPS = 200
"""A commit of a few transactions takes a few dozen steps; more means the loop is broken."""


@pytest.fixture
def template(_demo_template: InitResult) -> Path:
    return _demo_template.paths.root


@pytest.fixture
def vfs() -> Iterator[FaultVFS]:
    shim = FaultVFS()
    try:
        yield shim
    finally:
        shim.unregister()


def _ack(node: Node, txs: list[SignedTx]) -> list[Ack]:
    node.submit_and_wait([t.raw for t in txs], timeout=10)
    return [Ack(t.tx_id, t.body.kind) for t in txs]


def _in_ledger(root: Path, txs: list[SignedTx]) -> list[bool]:
    store = SQLiteStore(ChainPaths(root).ledger)
    try:
        return [store.find_tx(t.tx_id) is not None for t in txs]
    finally:
        store.close()


@pytest.mark.parametrize(("kind", "sticky"), [("full", True), ("ioerr", False)])
def test_a_fault_at_each_io_step_is_never_acknowledged(
    template: Path, tmp_path: Path, vfs: FaultVFS, kind: str, sticky: bool
) -> None:
    genesis = read_genesis(template)
    keys = load_keys(template)
    faulted = present_after = 0
    steps: list[tuple[str, str]] = []
    for n in itertools.count(1):
        assert n < MAX_STEPS, "no commit ever passed"
        root = tmp_path / f"{kind}-{n}"
        shutil.copytree(template, root)
        node = open_faulty_node(root, vfs)
        try:
            work = Workload(node.genesis.chain, keys, n)
            acked = _ack(node, [work.anchor()])  # a committed block in this life
            block = [work.anchor(), work.grant(), work.member()]
            vfs.arm(n, kind, sticky=sticky)
            try:
                acked += _ack(node, block)
                passed = True
            except LedgerError:
                passed = False
            vfs.disarm()
            if passed:  # the step budget of this commit is exhausted: nothing was injected
                assert vfs.fired == 0
                steps = vfs.steps
            else:
                assert vfs.fired >= 1 and node.failed is not None
                late = work.anchor()  # nothing is acknowledged after the fault
                with pytest.raises((LedgerError, TimeoutError)):
                    node.submit_and_wait([late.raw], timeout=0.1)
                block.append(late)
        finally:
            node.stop()
            node.store.close()
        assert check_ledger(root, genesis, acked) == []
        if passed:
            break
        faulted += 1
        present = _in_ledger(root, block)
        assert not present[-1], "a transaction submitted after the fault was committed"
        assert len(set(present[:-1])) == 1, f"step {n}: a partial block {present}"
        present_after += present[0]
    ops = {op: sum(1 for o, _ in steps if o == op) for op in ("write", "sync", "truncate")}
    print(
        f"\n{kind} (sticky={sticky}): {faulted} I/O steps faulted, 0 acknowledged, "
        f"{present_after} faulted blocks found whole after restart (unacknowledged), "
        f"the rest absent; a clean commit took {len(steps)} steps {ops}"
    )
    assert faulted == len(steps) and faulted >= 3
    assert ops["sync"] >= 1  # synchronous=FULL: the WAL is fsynced by the commit


@pytest.mark.parametrize("where", ["first", "sync"])
def test_a_fault_through_the_api_gives_503_and_an_unhealthy_node(
    template: Path, tmp_path: Path, vfs: FaultVFS, where: str
) -> None:
    root = tmp_path / "chain"
    shutil.copytree(template, root)
    keys = load_keys(template)
    node = open_faulty_node(root, vfs)
    try:
        work = Workload(node.genesis.chain, keys, 1)
        vfs.arm(None)  # count the steps of one clean commit to find its sync
        acked = _ack(node, [work.anchor()])
        sync = next(i for i, (op, _) in enumerate(vfs.steps, 1) if op == "sync")
        vfs.arm(1 if where == "first" else sync, "ioerr")
        with TestClient(create_app(node, data_dir=root)) as http:
            assert http.get("/healthz").status_code == 200
            tx = work.anchor()
            resp = http.post("/v1/transactions", content=tx.raw,
                             headers={"content-type": "application/json"})  # fmt: skip
            assert resp.status_code == 503, resp.text
            assert resp.headers["content-type"].startswith("application/problem+json")
            health = http.get("/healthz")
            assert health.status_code == 503 and health.json()["status"] == "failed"
            again = http.post("/v1/transactions?timeout=0.2", content=work.anchor().raw,
                              headers={"content-type": "application/json"})  # fmt: skip
            assert again.status_code != 200
        vfs.disarm()
    finally:
        node.stop()
        node.store.close()
    assert check_ledger(root, read_genesis(root), acked) == []


def test_a_sound_commit_through_the_shim_injects_nothing(
    template: Path, tmp_path: Path, vfs: FaultVFS
) -> None:
    """Negative control: the shim itself changes nothing when no step is due."""
    root = tmp_path / "chain"
    shutil.copytree(template, root)
    node = open_faulty_node(root, vfs)
    try:
        work = Workload(node.genesis.chain, load_keys(template), 2)
        vfs.arm(MAX_STEPS * 10, "full")
        acked = _ack(node, [work.anchor(), work.grant()])
        assert vfs.fired == 0 and vfs.steps and node.failed is None
    finally:
        node.stop()
        node.store.close()
    assert check_ledger(root, read_genesis(root), acked) == []


def test_unknown_fault_kind_is_refused(vfs: FaultVFS) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        vfs.arm(1, "melt")
