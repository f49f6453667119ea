"""carechain.failpoints: arming, hit counts, actions, the environment, and the call sites."""

from __future__ import annotations

import ast
import errno
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from carechain import failpoints
from carechain.contracts.identity import patient_account_id
from carechain.crypto.signatures import generate_key
from carechain.errors import InfrastructureError, UnavailableError
from carechain.failpoints import arm, arm_from_spec, armed, disarm, disarm_all, failpoint, hits
from carechain.node.node import Node
from carechain.storage.abc import BlockCommit, StoredBlock
from carechain.storage.sqlite import SQLiteStore
from carechain.testing.chain_driver import Chain, pub

SRC = Path(__file__).resolve().parents[2] / "src" / "carechain"
CORE = ("ledger", "contracts", "merkle", "encoding")
STORE_POINTS = [p for p in failpoints.POINTS if p.startswith("storage.commit.")]


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    disarm_all()
    yield
    disarm_all()


def test_unarmed_points_do_nothing() -> None:
    for name in failpoints.POINTS:
        failpoint(name)
        assert not armed(name) and hits(name) == 0


def test_a_callable_fires_on_every_hit_and_counts() -> None:
    seen: list[int] = []
    arm("storage.commit.before_commit", lambda: seen.append(1))
    for _ in range(3):
        failpoint("storage.commit.before_commit")
    assert seen == [1, 1, 1] and hits("storage.commit.before_commit") == 3
    disarm("storage.commit.before_commit")
    failpoint("storage.commit.before_commit")
    assert seen == [1, 1, 1] and not armed("storage.commit.before_commit")


@pytest.mark.parametrize(
    ("action", "code"), [("raise-eio", errno.EIO), ("raise-enospc", errno.ENOSPC)]
)
def test_raise_actions_fire_on_the_nth_hit_only(action: str, code: int) -> None:
    arm("node.commit.before_store", f"{action}@3")
    failpoint("node.commit.before_store")
    failpoint("node.commit.before_store")
    with pytest.raises(OSError) as info:
        failpoint("node.commit.before_store")
    assert info.value.errno == code and "failpoint" in str(info.value)
    failpoint("node.commit.before_store")  # later hits pass
    assert hits("node.commit.before_store") == 4


def test_when_narrows_a_point_and_is_not_evaluated_unarmed() -> None:
    def boom() -> bool:
        raise AssertionError("evaluated while unarmed")

    failpoint("node.commit.key_rotation", boom)
    arm("node.commit.key_rotation", "raise-eio")
    failpoint("node.commit.key_rotation", lambda: False)
    assert hits("node.commit.key_rotation") == 0
    with pytest.raises(OSError):
        failpoint("node.commit.key_rotation", lambda: True)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no.such.point=kill", "unknown failpoint"),
        ("storage.commit.before_commit=explode", "unknown failpoint action"),
        ("storage.commit.before_commit=kill@0", "positive integer"),
        ("storage.commit.before_commit=kill@x", "positive integer"),
        ("storage.commit.before_commit", "name=action"),
    ],
)
def test_bad_specs_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        arm_from_spec(spec)


def test_spec_arms_several_points() -> None:
    names = arm_from_spec("storage.commit.during_state=off, node.ack.after_commit=kill@9,")
    assert names == ["storage.commit.during_state", "node.ack.after_commit"]
    failpoint("storage.commit.during_state")  # off: counted, nothing happens
    assert hits("storage.commit.during_state") == 1


def test_kill_sends_sigkill_to_the_process() -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child dies at the failpoint
        try:
            arm("storage.commit.after_commit", "kill@2")
            failpoint("storage.commit.after_commit")
            failpoint("storage.commit.after_commit")
        finally:
            os._exit(3)  # reached only if kill did not fire
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def test_the_environment_arms_points_at_import() -> None:
    code = (
        "from carechain import failpoints as f; "
        "print(f.armed('node.ack.after_commit'), f.armed('storage.commit.before_block'))"
    )
    env = {**os.environ, failpoints.ENV: "node.ack.after_commit=raise-eio@2"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "False"]


def test_the_core_never_imports_failpoints() -> None:
    """The deterministic core stays free of fault injection (import-linter has no rule for a
    top-level module outside the layers, so this scan is the rule)."""
    offenders = []
    for package in CORE:
        for path in (SRC / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or "", *(f"{node.module}.{a.name}" for a in node.names)]
                if any(n == "carechain.failpoints" for n in names):
                    offenders.append(str(path))
    assert offenders == []


def test_the_scan_sees_an_import(tmp_path: Path) -> None:  # negative control of the scan
    tree = ast.parse("from carechain import failpoints\n")
    found = [
        f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
        for a in n.names
    ]  # fmt: skip
    assert found == ["carechain.failpoints"]


def test_every_point_is_reached_by_a_store_commit_and_a_node(chain: Chain) -> None:
    """Each call site exists: arm every point with a counter, commit a block with a rotation."""
    for name in failpoints.POINTS:
        arm(name, "off")
    old, new = generate_key(), generate_key()
    sender = patient_account_id(old.kid)
    assert chain.run1(
        chain.tx("identity.register_patient@1", sender, {"keys": [pub(old)]}, [old])
    ).ok
    rotation = chain.tx("identity.rotate_key@1", sender, {"keys": [pub(new)], "old": old.kid},
                        [old, new])  # fmt: skip
    assert chain.run1(rotation).ok
    counts = {name: hits(name) for name in failpoints.POINTS}
    assert counts["node.commit.key_rotation"] == 1
    assert all(
        counts[name] == 2 for name in failpoints.POINTS if name != "node.commit.key_rotation"
    ), counts


# -- injected errors in the commit path: never acknowledged, the node stops --------------------


@pytest.mark.parametrize("point", STORE_POINTS[:-1])
def test_an_injected_eio_in_the_store_fails_the_commit_and_stops_the_store(
    demo_node: Node, chain: Chain, point: str
) -> None:
    size = demo_node.store.log_size()
    arm(point, "raise-eio")
    with pytest.raises(UnavailableError):
        chain.run1(chain.anchor("dr-kim", id=f"eio-{failpoints.POINTS.index(point)}"))
    assert demo_node.failed is not None
    disarm(point)
    assert isinstance(demo_node.store, SQLiteStore)
    with pytest.raises(InfrastructureError, match="earlier failure"):
        demo_node.store.commit_block(_any_commit(demo_node))
    assert demo_node.store.log_size() == size  # rolled back: nothing of the block is stored


def _any_commit(node: Node) -> BlockCommit:
    return BlockCommit(
        block=StoredBlock(height=99, header=b"h", signature=b"", envelopes=(), receipts=()),
        header_hash=b"\0" * 32, tx_ids=(), first_log_index=0, merkle_nodes=(), state_writes=(),
    )  # fmt: skip


@pytest.mark.parametrize("point", ["node.commit.before_store", "storage.commit.after_commit",
                                   "node.ack.after_commit"])  # fmt: skip
def test_an_injected_enospc_at_the_node_is_never_acknowledged(
    demo_node: Node, chain: Chain, point: str
) -> None:
    arm(point, "raise-enospc")
    tx = chain.anchor("dr-kim", id=f"enospc-{failpoints.POINTS.index(point)}")
    with pytest.raises(UnavailableError):
        chain.run1(tx)
    assert demo_node.failed is not None and "ENOSPC" in str(demo_node.failed)
    committed = demo_node.store.find_tx(tx.tx_id) is not None
    assert committed == (point != "node.commit.before_store")  # after the commit: stored, unacked
