"""Consortium mode with in-process nodes over a shared in-memory etcd stand-in.

Fast and deterministic: several real nodes (SQLite stores, producer and witness threads)
share :class:`MemoryEtcd`; the real-etcd fault tests are in ``test_consortium_etcd.py``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from carechain.contracts import default_contracts
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import generate_key
from carechain.errors import ChainVerificationError, UnavailableError
from carechain.ledger.block import CONSORTIUM_PROPOSER, header_hash, parse_header, sign_header
from carechain.ledger.verify import verify_chain
from carechain.node.chaindir import DEMO_PASSWORD, load_node_key, open_node
from carechain.node.consortium import ConsortiumMember, init_consortium
from carechain.node.node import Node
from carechain.node.verify import verify_store
from carechain.node.witness import DivergenceError
from carechain.ordering import OrderedBatch
from carechain.storage import StoredBlock
from carechain.testing.chain_driver import FAST_SCRYPT_N, Chain, pub
from carechain.testing.cluster import MemoryEtcd, MemoryEtcdOrderer


@dataclasses.dataclass
class Consortium:
    base: Path
    members: list[ConsortiumMember]
    shared: MemoryEtcd
    nodes: list[Node]
    keys: Keyring

    def chain(self, i: int) -> Chain:
        return Chain(self.nodes[i], self.keys)

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()
            n.store.close()


def wait_for(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def start_consortium(
    base: Path,
    orgs: int,
    tamper: dict[int, Callable[[OrderedBatch], OrderedBatch]] | None = None,
) -> Consortium:
    _, members = init_consortium(base, orgs=orgs, scrypt_n=FAST_SCRYPT_N)
    shared = MemoryEtcd()
    nodes = [
        open_node(
            m.root,
            orderer=MemoryEtcdOrderer(shared, m.node_kid, tamper=(tamper or {}).get(i)),
        )
        for i, m in enumerate(members)
    ]
    return Consortium(base, members, shared, nodes, Keyring(base / "admin", scrypt_n=FAST_SCRYPT_N))


@pytest.fixture
def consortium(tmp_path: Path) -> Iterator[Consortium]:
    c = start_consortium(tmp_path / "c", 3)
    yield c
    c.stop()


def heads_agree(c: Consortium) -> bool:
    heights = {n.store.head_height() for n in c.nodes}
    return len(heights) == 1


def block_hashes(node: Node) -> list[bytes]:
    return [header_hash(b.header) for b in node.store.iter_blocks()]


def workload(c: Consortium) -> None:
    """Identity, consent, records and audit transactions, each through a different node."""
    a, b, cc = c.chain(0), c.chain(1), c.chain(2 % len(c.nodes))
    kim, lee = generate_key(), generate_key()
    assert a.enroll("seoul-general", "dr-kim", kim).ok
    assert b.enroll("hanbit-pharmacy", "ph-lee", lee, role="pharmacist").ok
    patient = generate_key()
    c.keys.import_key("patient-1", patient, DEMO_PASSWORD)
    for ch in (a, b, cc):
        ch._cache["patient-1"] = patient
        ch._actors["dr-kim"] = ("seoul-general.dr-kim", kim)
    reg = cc.tx("identity.register_patient@1", a.patient("patient-1")[0],
                {"keys": [pub(patient)]}, [patient])  # fmt: skip
    assert cc.run1(reg).ok
    wait_for(lambda: heads_agree(c))
    grant = b.run1(b.grant(actions=["read", "write"]))
    assert grant.ok, grant.receipt
    wait_for(lambda: heads_agree(c))
    anchored = a.run1(a.anchor("dr-kim"))
    assert anchored.ok, anchored.receipt
    rejected = cc.run1(cc.anchor("dr-kim", id="obs-1"))  # same version again: a rejected receipt
    assert not rejected.ok
    wait_for(lambda: heads_agree(c))


def test_nodes_build_identical_blocks_and_verify(consortium: Consortium) -> None:
    c = consortium
    workload(c)
    hashes = [block_hashes(n) for n in c.nodes]
    assert len(hashes[0]) >= 5
    assert hashes[0] == hashes[1] == hashes[2]
    for n in c.nodes:
        verify_store(n.store, n.genesis)
        top = n.store.find_block(n.store.head_height() or 0)
        assert top is not None
        header = parse_header(top.header)
        assert header.proposer == CONSORTIUM_PROPOSER and header.seal["kind"] == "etcd"
    # every node cosigned every block; the newest becomes final everywhere
    head = c.nodes[0].store.head_height()
    for n in c.nodes:
        assert n.witness is not None
        wait_for(lambda n=n: n.witness.final_height == head)  # type: ignore[union-attr]
        view = n.witness.view(head or 0)
        assert view is not None and view.final and len(view.orgs) == 3


def test_the_same_transaction_through_two_nodes_is_applied_once(consortium: Consortium) -> None:
    c = consortium
    a = c.chain(0)
    tx = a.register_member("seoul-general", "seoul-general.dr-twice", generate_key())
    pa = c.nodes[0].submit([tx.raw])
    pb = c.nodes[1].submit([tx.raw])
    ra, rb = pa[0].future.result(20), pb[0].future.result(20)
    assert ra == rb
    wait_for(lambda: heads_agree(c))
    for n in c.nodes:
        count = sum(raw == tx.raw for blk in n.store.iter_blocks() for raw in blk.envelopes)
        assert count == 1
        verify_store(n.store, n.genesis)


def test_no_quorum_fails_submission_and_acknowledges_nothing(consortium: Consortium) -> None:
    c = consortium
    a = c.chain(0)
    before = c.nodes[0].store.head_height()
    c.shared.down = True
    tx = a.register_member("seoul-general", "seoul-general.dr-lost", generate_key())
    with pytest.raises(UnavailableError) as info:
        c.nodes[0].submit_and_wait([tx.raw], timeout=20)
    assert info.value.code == "no_quorum"
    assert not c.nodes[0].store.has_tx_ids([tx.tx_id])[0]
    c.shared.down = False
    # the node kept running: the same transaction is accepted and committed once after recovery
    assert c.nodes[0].submit_and_wait([tx.raw], timeout=20)[0][0] == (before or 0) + 1
    wait_for(lambda: heads_agree(c))


def test_a_node_fed_an_altered_stream_detects_divergence(tmp_path: Path) -> None:
    def shift(batch: OrderedBatch) -> OrderedBatch:  # proposer time moved back by 1 ms
        return dataclasses.replace(batch, timestamp=batch.timestamp - 1)

    c = start_consortium(tmp_path / "c", 4, tamper={3: shift})
    try:
        a = c.chain(0)
        assert a.enroll("seoul-general", "dr-kim", generate_key()).ok
        bad = c.nodes[3]
        wait_for(lambda: isinstance(bad.failed, DivergenceError))
        assert bad.witness is not None and bad.witness.divergence is not None
        evidence = orjson.loads(bad.store.find_meta("witness/divergence") or b"{}")
        assert evidence["height"] == 1 and evidence["own"] != evidence["quorum"]
        # the honest nodes' checkpoint is final (3 of 4 organisations > 2/3)
        for n in c.nodes[:3]:
            wait_for(lambda n=n: n.witness.final_height == 1)  # type: ignore[union-attr]
            assert n.failed is None
            assert n.witness is not None and bad.node_key.kid in n.witness.faulty_peers
        # it says so on /healthz and keeps serving both cosigned values as evidence
        from fastapi.testclient import TestClient

        from carechain.api.app import create_app

        with TestClient(create_app(bad)) as http:
            health = http.get("/healthz")
            assert health.status_code == 503 and health.json()["status"] == "failed"
            assert "diverged at block 1" in health.json()["error"]
            witnessed = http.get("/v1/checkpoint/cosigned", params={"height": 1}).json()
            assert witnessed["status"] == "diverged"
            assert witnessed["divergence"]["quorum"] == evidence["quorum"]
        # the halted node acknowledges nothing more
        with pytest.raises(UnavailableError):
            bad.submit([a.register_member("seoul-general", "seoul-general.x", generate_key()).raw])
    finally:
        c.stop()


def test_negative_control_honest_streams_never_diverge(tmp_path: Path) -> None:
    c = start_consortium(tmp_path / "c", 4, tamper={3: lambda b: b})
    try:
        assert c.chain(0).enroll("seoul-general", "dr-kim", generate_key()).ok
        for n in c.nodes:
            wait_for(lambda n=n: n.witness.final_height == 1)  # type: ignore[union-attr]
            assert n.failed is None and not n.witness.faulty_peers  # type: ignore[union-attr]
    finally:
        c.stop()


# -- verify_chain on consortium blocks ---------------------------------------------------------


def _blocks_with_last_header(
    c: Consortium, edit: Callable[[dict[str, object]], None], *, resign: bool = True
) -> list[StoredBlock]:
    node = c.nodes[0]
    blocks = list(node.store.iter_blocks())
    last = blocks[-1]
    obj = orjson.loads(last.header)
    edit(obj)
    from carechain.encoding import canonical_bytes

    header = canonical_bytes(obj)
    signature = last.signature
    if resign:
        signature = sign_header(header, load_node_key(c.members[0].root)).to_bytes()
    return [*blocks[:-1], dataclasses.replace(last, header=header, signature=signature)]


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda h: h.__setitem__("proposer", "somebody"), "proposer"),
        (lambda h: h["seal"].__setitem__("to", 0), "seal"),  # type: ignore[index]
        (lambda h: h["seal"].__setitem__("extra", 1), "seal"),  # type: ignore[index]
        (lambda h: h.__setitem__("time", h["time"] + 1), "time"),  # type: ignore[operator]
        (lambda h: h["seal"].__setitem__("ts", h["seal"]["ts"] + 10**7), "time"),  # type: ignore[index]
    ],
)
def test_verify_rejects_altered_consortium_headers(
    consortium: Consortium, edit: Callable[[dict[str, object]], None], field: str
) -> None:
    c = consortium
    assert c.chain(0).enroll("seoul-general", "dr-kim", generate_key()).ok
    node = c.nodes[0]
    verify_chain(node.genesis, node.store.iter_blocks(), default_contracts())  # control
    with pytest.raises(ChainVerificationError) as info:
        verify_chain(node.genesis, _blocks_with_last_header(c, edit), default_contracts())
    assert info.value.field == field


def test_verify_rejects_a_consortium_block_stored_without_a_node_seal(
    consortium: Consortium,
) -> None:
    c = consortium
    assert c.chain(0).enroll("seoul-general", "dr-kim", generate_key()).ok
    node = c.nodes[0]
    blocks = list(node.store.iter_blocks())
    forged = generate_key()  # not a registered node key
    blocks[-1] = dataclasses.replace(
        blocks[-1], signature=sign_header(blocks[-1].header, forged).to_bytes()
    )
    with pytest.raises(ChainVerificationError) as info:
        verify_chain(node.genesis, blocks, default_contracts())
    assert info.value.field == "signature"


# -- GET /v1/checkpoint/cosigned and the SDK's require_final ------------------------------------


def test_cosigned_route_serves_a_final_note_the_sdk_accepts(consortium: Consortium) -> None:
    from fastapi.testclient import TestClient

    from carechain.api.app import create_app
    from carechain.client.client import Client

    c = consortium
    assert c.chain(0).enroll("seoul-general", "dr-kim", generate_key()).ok
    for n in c.nodes:
        wait_for(lambda n=n: n.witness.final_height == 1)  # type: ignore[union-attr]
    with TestClient(create_app(c.nodes[1])) as http:
        body = http.get("/v1/checkpoint/cosigned").json()
        assert body["final"] is True and body["height"] == 1 and body["status"] == "ok"
        assert len(body["cosigners"]) == 3 and body["orgs_total"] == 3
        assert body["note"].count("\u2014 ") == 3
        assert http.get("/v1/checkpoint/cosigned", params={"height": 99}).status_code == 404
        sdk = Client("http://testserver", http=http, require_final=True)
        assert sdk.checkpoint().size == 1
        assert sdk.prove_inclusion(_first_tx_id(c.nodes[1])).checkpoint.size == 1


def _first_tx_id(node: Node) -> bytes:
    from carechain.ledger.tx import parse_envelope

    block = node.store.find_block(1)
    assert block is not None
    return parse_envelope(block.envelopes[0]).tx_id


def test_sdk_require_final_refuses_a_checkpoint_without_quorum(consortium: Consortium) -> None:
    from fastapi.testclient import TestClient

    from carechain.api.app import create_app
    from carechain.client.client import Client
    from carechain.errors import CheckpointError

    c = consortium
    c.nodes[2].stop()  # one of three organisations stops cosigning: 2/3 is not > 2/3
    assert c.chain(0).enroll("seoul-general", "dr-kim", generate_key()).ok
    wait_for(lambda: c.nodes[1].store.head_height() == 1)
    with TestClient(create_app(c.nodes[0])) as http:
        body = http.get("/v1/checkpoint/cosigned").json()
        assert body["final"] is False and len(body["orgs"]) == 2
        with pytest.raises(CheckpointError, match="not final"):
            Client("http://testserver", http=http, require_final=True).checkpoint()
        assert Client("http://testserver", http=http).checkpoint().size == 1  # control


def test_cosigned_route_on_a_private_chain_is_not_found(demo_node: Node) -> None:
    from fastapi.testclient import TestClient

    from carechain.api.app import create_app

    with TestClient(create_app(demo_node)) as http:
        resp = http.get("/v1/checkpoint/cosigned")
        assert resp.status_code == 404 and resp.json()["code"] == "not_consortium"


# -- catching up from a peer's API (node/catchup.py) -------------------------------------------


def _peer_http(
    node: Node, tamper: Callable[[str, dict[str, object]], None] | None = None
) -> httpx.Client:
    """An httpx client answering from ``node``'s API, optionally altering JSON answers."""
    from fastapi.testclient import TestClient

    from carechain.api.app import create_app

    api = TestClient(create_app(node))

    def handler(request: httpx.Request) -> httpx.Response:
        resp = api.get(request.url.path, params=dict(request.url.params))
        if tamper is None or resp.status_code != 200:
            return httpx.Response(resp.status_code, content=resp.content)
        body = resp.json()
        tamper(request.url.path, body)
        return httpx.Response(200, content=orjson.dumps(body))

    return httpx.Client(base_url="http://peer", transport=httpx.MockTransport(handler))


def test_a_late_node_catches_up_from_a_peer_and_rejects_altered_blocks(tmp_path: Path) -> None:
    from carechain.encoding import b64u_decode, b64u_encode, canonical_bytes
    from carechain.errors import LedgerError
    from carechain.node.catchup import _catch_up_from
    from carechain.node.chaindir import ChainPaths, read_genesis
    from carechain.storage.sqlite import SQLiteStore

    base = tmp_path / "c"
    _, members = init_consortium(base, orgs=4, scrypt_n=FAST_SCRYPT_N)
    shared = MemoryEtcd()
    nodes = [open_node(m.root, orderer=MemoryEtcdOrderer(shared, m.node_kid)) for m in members[:3]]
    late_root = members[3].root
    late = Node(  # not started: it learns the chain only from the peer
        SQLiteStore(ChainPaths(late_root).ledger),
        read_genesis(late_root),
        load_node_key(late_root),
        orderer=MemoryEtcdOrderer(shared, members[3].node_kid),
    )
    c = Consortium(base, members, shared, nodes, Keyring(base / "admin", scrypt_n=FAST_SCRYPT_N))
    try:
        for name in ("dr-a", "dr-b", "dr-c"):
            assert c.chain(0).enroll("seoul-general", name, generate_key()).ok
        for n in nodes:  # 3 of 4 organisations cosign: final (> 2/3)
            wait_for(lambda n=n: n.witness.final_height == 3)  # type: ignore[union-attr]

        def alter_envelope(path: str, body: dict[str, object]) -> None:
            if path.startswith("/v1/transactions/"):
                body["envelope_b64"] = body["envelope_b64"][:-4] + "AAAA"  # type: ignore[index]

        def alter_header(path: str, body: dict[str, object]) -> None:
            if path == "/v1/blocks/2":
                obj = orjson.loads(b64u_decode(str(body["header_b64"])))
                obj["time"] += 1
                body["header_b64"] = b64u_encode(canonical_bytes(obj))

        for tamper in (alter_header, alter_envelope):
            with _peer_http(nodes[1], tamper) as http, pytest.raises(LedgerError):
                _catch_up_from(late, http)
            assert late.store.head_height() == 0  # nothing unauthenticated was applied
        with _peer_http(nodes[1]) as http:
            assert _catch_up_from(late, http) == 3
        assert block_hashes(late) == block_hashes(nodes[0])
        verify_store(late.store, late.genesis)
    finally:
        c.stop()
        late.stop()
        late.store.close()
