"""An organisation admitted later runs a node; cosignatures survive kill -9 (ADR 0011).

Real 3-member etcd cluster and ``carechain node`` processes on 127.0.0.1 (``testing/cluster.py``;
every process stopped by its PID). One module-scoped scenario, in steps:

1. three founding nodes and a workload; the quorum is 3 of 3 organisations;
2. ``consortium join`` makes org-4's (and org-5's) directory; ``consortium admit`` + ``vote``
   admit org-4 only; the quorum counts 4 organisations;
3. node 4 starts, catches up (blocks up to its admission from peers' final blocks with their
   seals, then etcd), agrees on every block hash, verifies, and its cosignatures are counted;
4. node 5 (not admitted) follows peers' final blocks but never seals one and its
   cosignatures are never counted (negative control);
5. node 4 wiped after etcd history was compacted catches up from peers again;
6. a founding node killed with -9, with its etcd cosignatures deleted, still serves the final
   cosigned checkpoint from its store, and the SDK's ``require_final`` accepts it.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from carechain.client.client import Client
from carechain.client.trust import NodeKey
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import PrivateKey, PublicKeyRecord, generate_key
from carechain.errors import CheckpointError, LedgerError, UnavailableError
from carechain.ledger.block import header_hash, parse_seal
from carechain.ledger.genesis import Genesis
from carechain.ledger.tx import SignedTx
from carechain.node.chaindir import DEMO_PASSWORD, ChainPaths, read_genesis
from carechain.node.join import joined_node_key, needs_catch_up
from carechain.node.verify import verify_store
from carechain.ordering.etcd import EtcdOrderer, _b64, _prefix_end
from carechain.storage.sqlite import SQLiteStore
from carechain.testing.chain_driver import FAST_SCRYPT_N, pub
from carechain.testing.cluster import ETCD_BIN, LocalCluster, NodeProcess, free_port

needs_etcd = pytest.mark.skipif(
    not Path(ETCD_BIN).exists(), reason="etcd is not installed (make etcd)"
)

_seq = itertools.count()


def wait_for(cond: Callable[[], bool], timeout: float = 90.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            if cond():
                return
        except (httpx.HTTPError, LedgerError, KeyError, ValueError) as exc:
            last = repr(exc)
        assert time.monotonic() < deadline, f"not reached in {timeout} s: {what} {last}"
        time.sleep(0.1)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from carechain.cli.main import app; app()", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def describe(node: NodeProcess) -> str:
    """Diagnostics for a node that did not get somewhere: its process, health and log."""
    code = node.proc.poll() if node.proc is not None else None
    try:
        health = httpx.get(node.url + "/healthz", timeout=5).text
    except httpx.HTTPError as exc:
        health = repr(exc)
    log = (node.root / "node.log").read_text(errors="replace")[-4000:]
    return f"process {node.pid} exit code {code}; /healthz {health}; node.log:\n{log}"


def height(node: NodeProcess) -> int:
    return int(httpx.get(node.url + "/healthz", timeout=5).json()["height"])


def cosigned(node: NodeProcess, h: int | None = None) -> dict[str, object]:
    params = {"height": h} if h is not None else {}
    resp = httpx.get(node.url + "/v1/checkpoint/cosigned", params=params, timeout=10)
    resp.raise_for_status()
    data: dict[str, object] = resp.json()
    return data


def stored_blocks(root: Path) -> list[tuple[bytes, str]]:
    """(header hash, seal key id) per stored block above genesis."""
    store = SQLiteStore(ChainPaths(root).ledger)
    try:
        return [
            (header_hash(b.header), parse_seal(b.signature).kid if b.height else "")
            for b in store.iter_blocks()
        ]
    finally:
        store.close()


def verify_dir(root: Path, genesis: Genesis) -> int:
    store = SQLiteStore(ChainPaths(root).ledger)
    try:
        return verify_store(store, genesis).chain.blocks
    finally:
        store.close()


class Scenario:
    """The running cluster, its admins and the late nodes."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.base = cluster.base
        self.founders = list(cluster.nodes)
        self.genesis = read_genesis(self.founders[0].root)
        ring = Keyring(self.base / "admin", scrypt_n=FAST_SCRYPT_N)
        self.admins: dict[str, tuple[str, PrivateKey]] = {
            n.org: (f"{n.org}.admin", ring.load(f"{n.org}-admin", DEMO_PASSWORD))
            for n in self.founders
        }
        self.late: dict[str, NodeProcess] = {}
        self.password_file = self.base / "pw"
        self.password_file.write_bytes(DEMO_PASSWORD)

    def member_tx(self, client: Client, org: str) -> SignedTx:
        account, key = self.admins[org]
        args = {
            "account": f"{org}.m{next(_seq)}",
            "keys": [pub(generate_key())],
            "org": org,
            "role": "practitioner",
        }
        return client.build("identity.register_member@1", account, args, key)

    def workload(self, n: int, nodes: list[NodeProcess] | None = None) -> None:
        """``n`` member registrations, round-robin through ``nodes`` (default: founders),
        in small batches (several blocks)."""
        targets = nodes or self.founders
        for i in range(0, n, 3):
            node = targets[(i // 3) % len(targets)]
            with Client(node.url, genesis=self.genesis.raw, timeout=30) as client:
                org = node.org
                txs = [self.member_tx(client, org) for _ in range(min(3, n - i))]
                results = client.submit(txs)
                assert all(r.status == "ok" for r in results), results

    def converged(self, nodes: list[NodeProcess]) -> list[bytes]:
        wait_for(lambda: len({height(n) for n in nodes}) == 1, 120, "same heights")
        hashes = [[h for h, _ in stored_blocks(n.root)] for n in nodes]
        assert all(h == hashes[0] for h in hashes), "block hashes differ between nodes"
        return hashes[0]

    def start_late(self, org: str) -> NodeProcess:
        node = NodeProcess(org=org, root=self.base / org, port=free_port())
        node.start(self.cluster.etcd.endpoints)
        node.wait_ready()
        self.late[org] = node
        return node


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    cluster = LocalCluster.create(tmp_path_factory.mktemp("join"), orgs=3, scrypt_n=FAST_SCRYPT_N)
    s: Scenario | None = None
    try:
        cluster.start()
        s = Scenario(cluster)
        yield s
    finally:
        for node in s.late.values() if s is not None else []:
            if node.pid:
                node.kill(signal.SIGTERM)
        cluster.stop()


def join_dir(s: Scenario, org: str) -> str:
    """``consortium join`` for ``org``; returns its node key id (from the request file)."""
    f = s.founders
    out = cli(
        "consortium", "join", "--dir", str(s.base / org), "--genesis", f[0].url,
        "--org-id", org, "--name", f"Hospital {org}",
        *itertools.chain.from_iterable(("--etcd", u) for u in s.cluster.etcd.endpoints),
        *itertools.chain.from_iterable(("--peers", n.url) for n in f),
        "--index-key", str(ChainPaths(f[0].root).index_key),
        "--password-file", str(s.password_file), "--scrypt-n", str(FAST_SCRYPT_N),
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    request = orjson.loads((s.base / org / "admission-request.json").read_bytes())
    assert request["org"]["id"] == org and request["node_kid"] in out.stdout
    assert request["org"]["nodes"][0]["pub"] in out.stdout  # the key members vote on
    return str(request["node_kid"])


def node_kids(node: NodeProcess) -> dict[str, str]:
    info = httpx.get(node.url + "/v1/chain", timeout=5).json()
    return {k["kid"]: k["org"] for k in info["node_keys"] if k["status"] == "active"}


@pytest.fixture(scope="module")
def joined(scenario: Scenario) -> dict[str, object]:
    """Steps 1-3: workload, join, admission by vote, node 4 started and caught up."""
    s = scenario
    f = s.founders
    s.workload(18)
    s.converged(f)
    before = cosigned(f[0])
    assert before["final"] and before["orgs_total"] == 3 and len(before["orgs"]) == 3  # type: ignore[arg-type]

    kid4 = join_dir(s, "org-4")
    kid5 = join_dir(s, "org-5")
    again = cli(  # the directory is never overwritten
        "consortium", "join", "--dir", str(s.base / "org-4"), "--genesis", f[0].url,
        "--org-id", "org-4", "--etcd", s.cluster.etcd.endpoints[0], "--peers", f[0].url,
        "--password-file", str(s.password_file),
    )  # fmt: skip
    assert again.returncode != 0 and "already holds a chain" in again.stdout + again.stderr

    keys = ["--keys", str(s.base / "admin"), "--password-file", str(s.password_file)]
    proposed = cli(
        "consortium", "admit", "--request", str(s.base / "org-4" / "admission-request.json"),
        "--url", f[0].url, "--key", f"{f[0].org}-admin", *keys,
    )  # fmt: skip
    assert proposed.returncode == 0, proposed.stdout + proposed.stderr
    pid = proposed.stdout.split("proposal ", 1)[1].split(":", 1)[0]
    assert kid4 not in node_kids(f[0])  # one yes of three: not yet admitted
    voted = cli(
        "consortium", "vote", "--proposal", pid, "--url", f[1].url, "--key", f"{f[1].org}-admin",
        *keys,
    )  # fmt: skip
    assert voted.returncode == 0, voted.stdout + voted.stderr
    wait_for(lambda: all(node_kids(n).get(kid4) == "org-4" for n in f), what="admitted")
    assert all(kid5 not in node_kids(n) for n in f)
    ring4 = Keyring(s.base / "org-4", scrypt_n=FAST_SCRYPT_N)  # its admin is a member now
    s.admins["org-4"] = ("org-4.admin", ring4.load("org-4-admin", DEMO_PASSWORD))
    admitted_at = max(height(n) for n in f)
    s.workload(9)  # blocks after the admission, before node 4 runs
    s.converged(f)
    wait_for(lambda: cosigned(f[0])["final_height"] == height(f[0]), what="final at head")
    after = cosigned(f[0])
    assert after["orgs_total"] == 4 and after["final"]  # 3 of 4 > 2/3: still final

    target = height(f[0])
    t0 = time.monotonic()
    synced = cli("consortium", "catch-up", "--dir", str(s.base / "org-4"), "--timeout", "120")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert "node key active" in synced.stdout
    n4 = s.start_late("org-4")
    try:
        wait_for(lambda: height(n4) >= target, 120, "node 4 at the head")  # the rest: etcd
    except AssertionError as exc:  # say where node 4 stopped, whether it runs, what it logged
        raise AssertionError(f"{exc}\n{describe(n4)}") from None
    seconds = time.monotonic() - t0
    return {
        "kid4": kid4, "kid5": kid5, "admitted_at": admitted_at, "before": before,
        "after": after, "catch_up_blocks": target, "catch_up_s": seconds,
    }  # fmt: skip


@pytest.mark.slow
@needs_etcd
def test_admitted_node_catches_up_agrees_verifies_and_is_counted(
    scenario: Scenario, joined: dict[str, object]
) -> None:
    s = scenario
    n4 = s.late["org-4"]
    kid4 = str(joined["kid4"])
    admitted_at = int(joined["admitted_at"])  # type: ignore[call-overload]
    nodes = [*s.founders, n4]
    s.workload(12, nodes)  # through node 4 too: it proposes through etcd
    hashes = s.converged(nodes)
    assert verify_dir(n4.root, s.genesis) == len(hashes)  # `carechain verify` on node 4
    seals = stored_blocks(n4.root)
    # blocks up to its admission carry a founder's seal; later ones its own
    assert all(kid != kid4 for _, kid in seals[1 : admitted_at + 1])
    assert seals[-1][1] == kid4
    head = height(s.founders[0])
    wait_for(lambda: cosigned(s.founders[0])["final_height"] == head)
    view = cosigned(s.founders[0], head)
    assert view["final"] and view["orgs_total"] == 4
    assert "org-4" in view["orgs"]  # type: ignore[operator]
    assert kid4 in [c["node"] for c in view["cosigners"]]  # type: ignore[attr-defined]
    own = joined_node_key(n4.root)  # its own clients pin its key (signed after genesis)
    assert own is not None and own[0] == "org-4"
    pin = NodeKey(org=own[0], name=own[1], record=PublicKeyRecord(alg=own[2], public=own[3]))
    raw = ChainPaths(n4.root).genesis.read_bytes()
    with Client(n4.url, genesis=raw, node_keys=[pin]) as c4:
        assert c4.checkpoint().size > 0
    with Client(n4.url, genesis=raw) as c4, pytest.raises(CheckpointError):
        c4.checkpoint()  # negative control: genesis alone cannot name node 4's key
    print(
        f"\nnode 4 caught up {joined['catch_up_blocks']} blocks in "
        f"{float(joined['catch_up_s']):.1f} s; quorum before admission "  # type: ignore[arg-type]
        f"{len(joined['before']['orgs'])}/{joined['before']['orgs_total']}, after "  # type: ignore[index]
        f"{len(view['orgs'])}/{view['orgs_total']} (node 4 cosigning)"  # type: ignore[arg-type]
    )


@pytest.mark.slow
@needs_etcd
def test_a_node_of_an_org_not_admitted_never_seals_nor_counts(
    scenario: Scenario, joined: dict[str, object]
) -> None:
    s = scenario
    kid5 = str(joined["kid5"])
    root5 = s.base / "org-5"
    synced = cli("consortium", "catch-up", "--dir", str(root5), "--timeout", "15")
    assert synced.returncode != 0 and "not admitted" in synced.stdout + synced.stderr
    applied = stored_blocks(root5)
    assert len(applied) > 1  # it did take the peers' final blocks...
    assert verify_dir(root5, s.genesis) == len(applied)  # (checked, with the peers' seals)
    s.workload(6)
    head = height(s.founders[0])
    wait_for(lambda: cosigned(s.founders[0])["final_height"] == head)
    for h in range(max(1, head - 5), head + 1):
        view = cosigned(s.founders[0], h)
        assert kid5 not in [c["node"] for c in view["cosigners"]]  # type: ignore[attr-defined]
        assert view["orgs_total"] == 4 and "org-5" not in view["orgs"]  # type: ignore[operator]
    # its cosignatures are on the board (published), just never counted
    probe = EtcdOrderer(s.cluster.etcd.endpoints, chain=s.genesis.chain, node="probe")
    try:
        assert kid5 in probe.cosignatures(len(applied) - 1)
    finally:
        probe.close()
    view = cosigned(s.founders[0], len(applied) - 1)
    assert kid5 not in [c["node"] for c in view["cosigners"]]  # type: ignore[attr-defined]
    # ...and never sealed one: every stored seal is an admitted node's
    assert all(kid != kid5 for _, kid in applied[1:])


@pytest.mark.slow
@needs_etcd
def test_admitted_node_wiped_after_compaction_catches_up_from_peers(
    scenario: Scenario, joined: dict[str, object]
) -> None:
    s = scenario
    n4 = s.late["org-4"]
    nodes = [*s.founders, n4]
    s.workload(12, nodes)
    s.converged(nodes)
    probe = EtcdOrderer(s.cluster.etcd.endpoints, chain=s.genesis.chain, node="probe", members=4)
    try:
        wait_for(lambda: probe.compact() > 0 or probe.compacted_upto() > 0, 30)
        with pytest.raises(UnavailableError) as info:  # control: etcd alone cannot replay
            probe.read(0)
        assert info.value.code == "history_compacted"
    finally:
        probe.close()
    n4.kill(signal.SIGTERM)
    for path in n4.root.glob("ledger.sqlite*"):
        path.unlink()
    t0 = time.monotonic()
    assert needs_catch_up(n4.root)  # wiped: its key is unknown to its own (empty) ledger
    n4.start(s.cluster.etcd.endpoints)  # `carechain node` catches up by itself first
    n4.wait_ready(timeout=180)
    assert not needs_catch_up(n4.root)
    hashes = s.converged(nodes)  # after its admission: etcd is compacted, so peers again
    print(f"\nnode 4 rebuilt {len(hashes) - 1} blocks from peers in {time.monotonic() - t0:.1f} s")
    assert verify_dir(n4.root, s.genesis) == len(hashes)
    s.workload(3, [n4])  # and follows etcd again
    s.converged(nodes)


@pytest.mark.slow
@needs_etcd
def test_cosigned_checkpoints_survive_kill_9_and_lost_etcd_cosignatures(
    scenario: Scenario, joined: dict[str, object]
) -> None:
    s = scenario
    victim = s.founders[0]
    head = height(victim)
    wait_for(lambda: cosigned(victim)["final_height"] == head)
    old = cosigned(victim, head)
    assert old["final"]
    victim.kill(signal.SIGKILL)
    probe = EtcdOrderer(s.cluster.etcd.endpoints, chain=s.genesis.chain, node="probe")
    try:  # the board forgets every cosignature of that height (etcd lost / cleaned)
        prefix = probe._key("cosig", f"{head:016d}", "")
        probe.call(
            "/v3/kv/deleterange", {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))}
        )
        assert probe.cosignatures(head) == {}
    finally:
        probe.close()
    victim.start(s.cluster.etcd.endpoints)
    victim.wait_ready()
    again = cosigned(victim)  # default: the newest final height, restored from the store
    assert again["height"] == head and again["final"], again
    # the quorum note stored when the height became final (later lines may have been added)
    assert set(str(again["note"]).splitlines()) <= set(str(old["note"]).splitlines())
    assert set(again["orgs"]) <= set(old["orgs"]) and len(again["orgs"]) >= 3  # type: ignore[arg-type]
    with Client(victim.url, genesis=s.genesis.raw, require_final=True) as client:
        cp = client.checkpoint()
        assert cp.size == old["log_size"]
    s.workload(3)
    s.converged([*s.founders, s.late["org-4"]])


# -- join_consortium without etcd: every refusal, and the orderer's gate --------------------


@pytest.fixture
def founding(tmp_path: Path) -> Path:
    from carechain.node.consortium import init_consortium

    init_consortium(tmp_path / "c", orgs=3, scrypt_n=FAST_SCRYPT_N)
    return tmp_path / "c"


def _join(base: Path, root: Path, **kw: object) -> object:
    from carechain.node.join import join_consortium

    args: dict[str, object] = {
        "genesis_raw": (base / "genesis.json").read_bytes(),
        "org_id": "org-4",
        "etcd": ["http://127.0.0.1:1"],
        "peers": ["http://127.0.0.1:2"],
        "password": DEMO_PASSWORD,
        "scrypt_n": FAST_SCRYPT_N,
        **kw,
    }
    return join_consortium(root, **args)  # type: ignore[arg-type]


def test_join_writes_directory_request_and_a_gated_orderer(founding: Path) -> None:
    from carechain.node.chaindir import load_node_key
    from carechain.node.consortium import orderer_for, read_config
    from carechain.node.join import JoiningEtcdOrderer

    root = founding / "org-4"
    _, request = _join(
        founding, root, index_key=ChainPaths(founding / "seoul-general").index_key.read_bytes()
    )  # type: ignore[misc]
    config = read_config(root)
    assert config["join"] == {"org": "org-4"} and config["etcd"]["members"] == 4
    assert config["peers"] == ["http://127.0.0.1:2"] and config["type"] == "consortium"
    key = load_node_key(root)
    doc = orjson.loads((root / "admission-request.json").read_bytes())
    assert doc["node_kid"] == key.kid == request.node_kid
    assert doc["org"]["id"] == "org-4" and doc["org"]["admins"][0]["account"] == "org-4.admin"
    assert (
        ChainPaths(root).index_key.read_bytes()
        == ChainPaths(founding / "seoul-general").index_key.read_bytes()
    )
    from carechain.cli.options import own_node_keys

    (pinned,) = own_node_keys(root)  # the CLI's clients of this organisation trust its node
    assert pinned.org == "org-4" and pinned.record == key.record
    assert own_node_keys(founding / "seoul-general") == []  # a founder's: genesis names it
    orderer = orderer_for(root, read_genesis(root), key)
    assert isinstance(orderer, JoiningEtcdOrderer)
    try:
        with pytest.raises(UnavailableError) as info:  # gate closed: peers' final blocks first
            orderer.read(0)
        assert info.value.code == "history_compacted"
        orderer.note_admitted(False)
        with pytest.raises(UnavailableError):
            orderer.read(0)
        orderer.note_admitted(True)  # open: now it talks to etcd (unreachable here)
        with pytest.raises(UnavailableError) as info:
            orderer.read(0)
        assert info.value.code == "no_quorum"
    finally:
        orderer.close()
    # a founding node's directory keeps the plain orderer (negative control)
    founder = founding / "seoul-general"
    plain = orderer_for(founder, read_genesis(founder), load_node_key(founder))
    assert plain is not None and not isinstance(plain, JoiningEtcdOrderer)
    plain.close()


@pytest.mark.parametrize(
    ("kw", "error", "text"),
    [
        ({"org_id": "seoul-general"}, "ConflictError", "founding member"),
        ({"peers": []}, "ValidationError", "--peers"),
        ({"index_key": b"short"}, "ValidationError", "--index-key"),
        ({"genesis_raw": b"{}"}, "ValidationError", ""),
    ],
)
def test_join_refusals(founding: Path, kw: dict[str, object], error: str, text: str) -> None:
    root = founding / "late"
    with pytest.raises(LedgerError) as info:
        _join(founding, root, **kw)
    assert type(info.value).__name__ == error and text in info.value.message
    assert not ChainPaths(root).exists()


def test_join_refuses_an_existing_directory_and_bad_inputs(founding: Path) -> None:
    from carechain.errors import ConflictError, NotFoundError, ValidationError
    from carechain.node.join import fetch_genesis, read_request

    with pytest.raises(ConflictError):
        _join(founding, founding / "seoul-general")
    with pytest.raises(NotFoundError):
        fetch_genesis(str(founding / "missing.json"))
    assert fetch_genesis(str(founding / "genesis.json")) == (founding / "genesis.json").read_bytes()
    bad = founding / "request.json"
    bad.write_bytes(b'{"node_kid": "x"}')
    with pytest.raises(ValidationError):
        read_request(bad)
