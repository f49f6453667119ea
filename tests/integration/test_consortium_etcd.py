"""Fault tests of consortium mode: a real 3-member etcd cluster and 3 ``carechain node``
processes on 127.0.0.1 (``testing/cluster.py``; every process stopped by its PID).

Each test first heals the cluster (restarts any member or node a previous test killed), so
the tests do not depend on their order.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from carechain.client.client import Client
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import PrivateKey, generate_key
from carechain.errors import DuplicateTransactionError, LedgerError, UnavailableError
from carechain.ledger.block import header_hash
from carechain.ledger.genesis import Genesis
from carechain.ledger.tx import SignedTx
from carechain.node.chaindir import DEMO_PASSWORD, ChainPaths, read_genesis
from carechain.node.verify import verify_store
from carechain.ordering.etcd import EtcdOrderer
from carechain.storage.sqlite import SQLiteStore
from carechain.testing.chain_driver import FAST_SCRYPT_N, fake_digest, pub
from carechain.testing.cluster import ETCD_BIN, LocalCluster, NodeProcess, pid_alive

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(ETCD_BIN).exists(), reason="etcd is not installed (make etcd)"),
]

_seq = itertools.count()


class Env:
    """The running cluster plus what the tests need to sign."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.genesis: Genesis = read_genesis(cluster.nodes[0].root)
        self.ring = Keyring(cluster.base / "admin", scrypt_n=FAST_SCRYPT_N)
        self.admins = {
            n.org: self.ring.load(f"{n.org}-admin", DEMO_PASSWORD) for n in cluster.nodes
        }
        self.clients = [Client(n.url, genesis=self.genesis.raw) for n in cluster.nodes]

    def member_tx(self, i: int, name: str | None = None, key: PrivateKey | None = None) -> SignedTx:
        """A member registration by organisation ``i``'s admin."""
        org = self.cluster.nodes[i].org
        account = f"{org}.{name or f'm{next(_seq)}'}"
        args = {
            "account": account,
            "keys": [pub(key or generate_key())],
            "org": org,
            "role": "practitioner",
        }
        return self.clients[i].build(
            "identity.register_member@1", f"{org}.admin", args, self.admins[org]
        )

    def heal(self) -> None:
        """Restart every dead etcd member and node; wait until all agree on the head."""
        etcd = self.cluster.etcd
        for m in etcd.members:
            if not pid_alive(m.pid):
                etcd.start_member(m)
        etcd.wait_ready()
        for n in self.cluster.nodes:
            if not pid_alive(n.pid):
                n.start(etcd.endpoints)
        for n in self.cluster.nodes:
            n.wait_ready()
        self.cluster.save()
        wait_for(lambda: len(set(self.heights())) == 1, 60)

    def heights(self) -> list[int]:
        return [int(httpx.get(n.url + "/healthz", timeout=5).json()["height"]) for n in self.nodes]

    @property
    def nodes(self) -> list[NodeProcess]:
        return self.cluster.nodes


def wait_for(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if cond():
                return
        except (httpx.HTTPError, LedgerError):
            pass
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def stored_hashes(node: NodeProcess) -> list[bytes]:
    store = SQLiteStore(ChainPaths(node.root).ledger)
    try:
        return [header_hash(b.header) for b in store.iter_blocks()]
    finally:
        store.close()


def has_tx(node: NodeProcess, tx_id: bytes) -> bool:
    return httpx.get(f"{node.url}/v1/transactions/{tx_id.hex()}", timeout=5).status_code == 200


def assert_converged(env: Env) -> list[bytes]:
    """Every node at the same head with the same block hash at every height; all verify."""
    wait_for(lambda: len(set(env.heights())) == 1, 60)
    hashes = [stored_hashes(n) for n in env.nodes]
    assert hashes[0] == hashes[1] == hashes[2], "block hashes differ between nodes"
    for n in env.nodes:
        store = SQLiteStore(ChainPaths(n.root).ledger)
        try:
            verify_store(store, env.genesis)
        finally:
            store.close()
    return hashes[0]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    cluster = LocalCluster.create(
        tmp_path_factory.mktemp("consortium"), orgs=3, scrypt_n=FAST_SCRYPT_N
    )
    try:
        cluster.start()
        e = Env(cluster)
        yield e
        for c in e.clients:
            c.close()
    finally:
        cluster.stop()


@pytest.fixture
def healthy(env: Env) -> Env:
    env.heal()
    return env


class Load:
    """Background submitters through the given nodes; records what was acknowledged."""

    def __init__(self, env: Env, through: list[int]) -> None:
        self.env, self.through = env, through
        self.acked: list[bytes] = []
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in through]

    def _run(self, i: int) -> None:
        client = Client(self.env.nodes[i].url, genesis=self.env.genesis.raw, timeout=30)
        while not self._stop.is_set():
            tx = self.env.member_tx(i)
            try:
                (result,) = client.submit(tx, timeout=20)
                if result.height is not None:
                    self.acked.append(tx.tx_id)
            except (LedgerError, httpx.HTTPError) as exc:
                self.failed.append(type(exc).__name__)
                time.sleep(0.1)
        client.close()

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)


def test_mixed_workload_through_different_nodes_agrees_and_verifies(healthy: Env) -> None:
    env = healthy
    c0, c1, c2 = env.clients
    kim = generate_key()
    assert c0.submit(env.member_tx(0, "dr-kim", kim))[0].status == "ok"
    assert c1.submit(env.member_tx(1, "ph-lee"))[0].status == "ok"
    patient = generate_key()
    from carechain.contracts.identity import patient_account_id

    p_id = patient_account_id(patient.kid)
    reg = c2.build("identity.register_patient@1", p_id, {"keys": [pub(patient)]}, patient)
    assert c2.submit(reg)[0].status == "ok"
    wait_for(lambda: len(set(env.heights())) == 1)
    now = int(time.time() * 1000)
    grant = c1.build(
        "consent.grant@1",
        p_id,
        {
            "actions": ["read", "write"],
            "decision": "permit",
            "grantee": {"account": "seoul-general.dr-kim"},
            "period": {"end": now + 86_400_000, "start": now - 3_600_000},
            "purposes": ["TREAT"],
            "scope": {},
        },
        patient,
    )
    assert c1.submit(grant)[0].status == "ok"
    wait_for(lambda: len(set(env.heights())) == 1)
    anchor_args = {
        "digest": fake_digest("seoul-general", "Observation", "obs-1", 1),
        "id": "obs-1",
        "index": fake_digest("idx", "p", "1", 1),
        "org": "seoul-general",
        "patient": p_id,
        "type": "Observation",
        "url": "https://seoul-general.example/fhir/Observation/obs-1/_history/1",
        "version": 1,
    }
    anchor = c0.build("records.anchor@1", "seoul-general.dr-kim", anchor_args, kim)
    assert c0.submit(anchor)[0].status == "ok"
    again = c2.build("records.anchor@1", "seoul-general.dr-kim", anchor_args, kim)
    assert c2.submit(again)[0].status == "rejected"  # kept in its block as evidence
    hashes = assert_converged(env)
    assert len(hashes) >= 6
    # witnessing: the head becomes final on every node, and the SDK can insist on it
    head = len(hashes) - 1
    for n in env.nodes:
        wait_for(
            lambda n=n: httpx.get(n.url + "/v1/checkpoint/cosigned").json()["final_height"] == head
        )
    with Client(env.nodes[2].url, genesis=env.genesis.raw, require_final=True) as sdk:
        cp = sdk.checkpoint()
        assert cp.size == int(httpx.get(env.nodes[0].url + "/healthz").json()["log_size"])
        assert sdk.prove_inclusion(anchor.tx_id).checkpoint.size == cp.size


def test_kill_9_of_the_etcd_leader_under_load_loses_nothing_acknowledged(healthy: Env) -> None:
    env = healthy
    with Load(env, [0, 1]) as load:
        wait_for(lambda: len(load.acked) >= 5)
        leader = env.cluster.etcd.leader()
        assert leader is not None
        env.cluster.etcd.kill(leader)  # kill -9
        before = len(load.acked)
        wait_for(lambda: len(load.acked) >= before + 10, 60)  # writes continue after election
    env.heal()
    assert_converged(env)
    for tx_id in load.acked:
        assert all(has_tx(n, tx_id) for n in env.nodes), f"acknowledged {tx_id.hex()} was lost"


def test_kill_9_of_a_node_then_restart_catches_up_with_the_same_hashes(healthy: Env) -> None:
    env = healthy
    victim = env.nodes[2]
    with Load(env, [0, 1]) as load:
        wait_for(lambda: len(load.acked) >= 5)
        victim.kill()  # kill -9, possibly mid-commit
        n = len(load.acked)
        wait_for(lambda: len(load.acked) >= n + 10, 60)
    victim.start(env.cluster.etcd.endpoints)
    victim.wait_ready()
    env.cluster.save()
    hashes = assert_converged(env)
    assert len(hashes) > 1
    for tx_id in load.acked:
        assert has_tx(victim, tx_id)


def test_two_of_three_etcd_members_down_fails_submissions_clearly(healthy: Env) -> None:
    env = healthy
    etcd = env.cluster.etcd
    for m in etcd.members[1:]:
        etcd.kill(m)
    tx = env.member_tx(0)
    started = time.monotonic()
    with pytest.raises(UnavailableError) as info:
        env.clients[0].submit(tx, timeout=30)
    assert info.value.code == "no_quorum"
    assert time.monotonic() - started < 30
    assert not any(has_tx(n, tx.tx_id) for n in env.nodes)  # not acknowledged, not committed
    env.heal()
    # the cluster recovers: a fresh transaction commits on every node
    fresh = env.member_tx(1)
    assert env.clients[1].submit(fresh)[0].status == "ok"
    wait_for(lambda: all(has_tx(n, fresh.tx_id) for n in env.nodes))


def test_the_same_transaction_through_two_nodes_is_applied_once(healthy: Env) -> None:
    env = healthy
    tx = env.member_tx(0)
    results: list[object] = []

    def send(i: int) -> None:
        try:
            results.append(env.clients[i].submit(tx)[0])
        except DuplicateTransactionError as exc:
            results.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 2
    assert any(not isinstance(r, Exception) for r in results)
    assert_converged(env)
    for n in env.nodes:
        store = SQLiteStore(ChainPaths(n.root).ledger)
        try:
            count = sum(raw == tx.raw for b in store.iter_blocks() for raw in b.envelopes)
        finally:
            store.close()
        assert count == 1


def test_a_paused_node_falls_behind_and_catches_up_when_continued(healthy: Env) -> None:
    env = healthy
    victim = env.nodes[1]
    os.kill(victim.pid, signal.SIGSTOP)
    try:
        with Load(env, [0, 2]) as load:
            wait_for(lambda: len(load.acked) >= 10, 60)
    finally:
        os.kill(victim.pid, signal.SIGCONT)
    assert_converged(env)
    for tx_id in load.acked:
        assert has_tx(victim, tx_id)


def test_cli_init_type_consortium_and_consortium_up_status_down(tmp_path: Path) -> None:
    exe = [sys.executable, "-c", "from carechain.cli.main import app; app()"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*exe, *args], capture_output=True, text=True, timeout=120)

    init = run(
        "init",
        "--type",
        "consortium",
        "--orgs",
        "2",
        "--dir",
        str(tmp_path / "i"),
        "--etcd",
        "http://127.0.0.1:2379",
        "--scrypt-n",
        "1024",
    )
    assert init.returncode == 0, init.stderr
    assert "created consortium chain" in init.stdout
    cfg = orjson.loads((tmp_path / "i" / "seoul-general" / "node.json").read_bytes())
    assert cfg["type"] == "consortium" and cfg["etcd"]["members"] == 2
    bad = run("init", "--type", "federated", "--dir", str(tmp_path / "p"))
    assert bad.returncode == 2 and "want one of private, consortium, public" in bad.stderr

    base = str(tmp_path / "up")
    up = run("consortium", "up", "--orgs", "2", "--dir", base, "--scrypt-n", "1024")
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        again = run("consortium", "up", "--dir", base)
        assert again.returncode == 5 and "is running" in again.stderr
        status = run("consortium", "status", "--dir", base)
        assert status.returncode == 0 and status.stdout.count("True") == 4
        assert "leader" in status.stdout
        # a node not started by `up` (an organisation that joined later): --node URL
        url = orjson.loads((tmp_path / "up" / "cluster.json").read_bytes())["nodes"][0]["url"]
        listed = subprocess.run(  # wide: the table would wrap the URLs at 80 columns
            [*exe, "consortium", "status", "--dir", base, "--node", url + "/"],
            capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "250"},
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        # its row (named and located by the URL) beside the recorded one, answering "ok"
        assert listed.stdout.count(url) == 3 and listed.stdout.count("True") == 4
        assert listed.stdout.count(" ok ") == 3 and status.stdout.count(" ok ") == 2
    finally:
        down = run("consortium", "down", "--dir", base)
    assert down.returncode == 0 and "stopped 4 process(es)" in down.stdout
    recorded = orjson.loads((tmp_path / "up" / "cluster.json").read_bytes())
    pids = [p["pid"] for p in (*recorded["nodes"], *recorded["etcd"])]
    assert not any(pid_alive(int(p)) for p in pids)


def test_a_wiped_node_catches_up_from_peers_after_compaction(healthy: Env) -> None:
    env = healthy
    with Load(env, [0, 1]) as load:
        wait_for(lambda: len(load.acked) >= 40, 60)
    assert_converged(env)
    probe = EtcdOrderer(
        env.cluster.etcd.endpoints, chain=env.genesis.chain, node="probe", members=3
    )
    try:
        probe.compact()  # every node applied everything: compact all of it now
        assert probe.compacted_upto() > 0
        with pytest.raises(UnavailableError) as info:  # control: etcd alone cannot replay
            probe.read(0)
        assert info.value.code == "history_compacted"
    finally:
        probe.close()
    victim = env.nodes[2]
    victim.kill(signal.SIGTERM)
    for path in victim.root.glob("ledger.sqlite*"):
        path.unlink()
    victim.start(env.cluster.etcd.endpoints)
    victim.wait_ready()
    env.cluster.save()
    hashes = assert_converged(env)  # rebuilt from peers' final blocks, re-executed here
    assert len(hashes) > 40 // 4
    for tx_id in load.acked:
        assert has_tx(victim, tx_id)
    fresh = env.member_tx(2)
    assert env.clients[2].submit(fresh)[0].status == "ok"  # and it follows etcd again
