"""A hostile server: the SDK and the CLI refuse every lie a node can tell about its log.

The hostile server is a real demo node behind FastAPI's ``TestClient``, wrapped in an
``httpx.MockTransport`` that rewrites chosen answers before the SDK sees them. The client pins
the genesis out of band, as a careful user does; every lie must end in an explicit
``LedgerError`` (the CLI: exit code 6 and the reason on stderr), and the honest answers must
still verify (the negative control of each case). A property test then flips every single bit
of a proof, root, size or index the server returns, one at a time (hypothesis).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from carechain.api.app import create_app
from carechain.cli import options as cli_options
from carechain.cli.main import app as cli_app
from carechain.client import Client
from carechain.client.trust import NodeKey
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import generate_key
from carechain.errors import CheckpointError, LedgerError, ProofError, VerificationError
from carechain.merkle import Checkpoint, node_hash, open_checkpoint, sign_checkpoint
from carechain.node.chaindir import ChainPaths, InitResult, load_node_key, open_node
from carechain.node.node import Node
from carechain.node.verify import note_verifiers
from carechain.testing.chain_driver import FAST_SCRYPT_N, Chain

BASE = "http://hostile-node"
Rewrite = Callable[[httpx.Request, bytes], bytes]


@dataclass
class Hostile:
    """Forwards to the real API; ``rewrite[path]`` edits that route's answer body."""

    live: TestClient
    rewrite: dict[str, Rewrite] = field(default_factory=dict)
    served: int = 0
    """Answers that went through a rewrite."""

    def handler(self, request: httpx.Request) -> httpx.Response:
        target = request.url.raw_path.decode()
        headers = {"content-type": request.headers.get("content-type", "application/json")}
        resp = self.live.request(request.method, target, content=request.content, headers=headers)
        body = resp.content
        rule = self.rewrite.get(request.url.path)
        if rule is not None and resp.status_code == 200:
            body = rule(request, body)
            self.served += 1
        ctype = resp.headers.get("content-type", "application/json")
        return httpx.Response(resp.status_code, content=body, headers={"content-type": ctype})

    def client(self, **kwargs: Any) -> Client:
        http = httpx.Client(transport=httpx.MockTransport(self.handler))
        genesis = self.live.get("/v1/genesis").content
        return Client(BASE, genesis=genesis, http=http, **kwargs)


@dataclass
class Setup:
    root: Path
    node: Node
    live: TestClient
    txs: list[str]
    """Committed transaction ids (hex), oldest first."""
    old_note: bytes
    """A genuine checkpoint of an older, smaller tree."""


@pytest.fixture(scope="module")
def setup(_demo_template: InitResult, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("hostile") / "chain"
    shutil.copytree(_demo_template.paths.root, root)
    node = open_node(root)
    try:
        chain = Chain(node, Keyring(root, scrypt_n=FAST_SCRYPT_N))
        old_height = chain.height()
        for i in range(3):  # three more blocks: history to roll back to and prove across
            chain.run(chain.register_member("medipharm", f"medipharm.qa{i}", generate_key()))
        old_note = node.store.find_checkpoint(old_height)
        assert old_note is not None
        txs = [(node.store.find_envelope(i) or b"") for i in range(node.store.log_size())]
        from carechain.ledger.tx import parse_envelope

        ids = [parse_envelope(e).tx_id.hex() for e in txs]
        with TestClient(create_app(node, data_dir=root)) as live:
            yield Setup(root, node, live, ids, old_note)
    finally:
        node.stop()
        node.store.close()


@pytest.fixture
def hostile(setup: Setup) -> Hostile:
    return Hostile(setup.live)


def _json_rewrite(edit: Callable[[dict[str, Any]], None]) -> Rewrite:
    def rule(_request: httpx.Request, body: bytes) -> bytes:
        obj = orjson.loads(body)
        edit(obj)
        return orjson.dumps(obj)

    return rule


def _constant(data: bytes) -> Rewrite:
    return lambda _request, _body: data


def _note(setup: Setup) -> Checkpoint:
    state = dict(setup.node.store.iter_state("node/"))
    origin = setup.node.genesis.origin
    return open_checkpoint(
        setup.node.store.find_checkpoint() or b"", note_verifiers(state, origin), origin
    )


# -- the named lies ----------------------------------------------------------------------------


def _rewound(setup: Setup) -> dict[str, Rewrite]:
    """A rewound tree size: the genuine, signed checkpoint of an older tree."""
    return {"/v1/checkpoint": _constant(setup.old_note)}


def _another_leaf(setup: Setup) -> dict[str, Rewrite]:
    """The inclusion proof of another transaction, relabelled with the asked id."""
    other = setup.txs[1]

    def rule(request: httpx.Request, body: bytes) -> bytes:
        params = dict(request.url.params)
        asked = params["tx"]
        resp = setup.live.get("/v1/proofs/inclusion", params={**params, "tx": other})
        obj = orjson.loads(resp.content)
        obj["tx_id"] = asked
        return orjson.dumps(obj)

    return {"/v1/proofs/inclusion": rule}


def _another_leaf_same_index(setup: Setup) -> dict[str, Rewrite]:
    """Another leaf's audit path, under the asked transaction's index."""
    other = setup.txs[1]

    def rule(request: httpx.Request, body: bytes) -> bytes:
        params = dict(request.url.params)
        resp = setup.live.get("/v1/proofs/inclusion", params={**params, "tx": other})
        obj = orjson.loads(body)
        obj["proof"] = orjson.loads(resp.content)["proof"]
        return orjson.dumps(obj)

    return {"/v1/proofs/inclusion": rule}


def _larger_size(setup: Setup) -> dict[str, Rewrite]:
    """A proof claiming a tree larger than the checkpoint."""
    return {"/v1/proofs/inclusion": _json_rewrite(lambda o: o.update(tree_size=o["tree_size"] + 1))}


def _longer_path(setup: Setup) -> dict[str, Rewrite]:
    """A proof with more hashes than the checkpoint's tree has levels."""
    return {"/v1/proofs/inclusion": _json_rewrite(lambda o: o["proof"].append("00" * 32))}


def _oversized_path(setup: Setup) -> dict[str, Rewrite]:
    """A proof of 10,000 hashes (a resource attack)."""
    return {"/v1/proofs/inclusion": _json_rewrite(lambda o: o.update(proof=["11" * 32] * 10_000))}


def _unknown_key(setup: Setup) -> dict[str, Rewrite]:
    """The current checkpoint re-signed by a key the genesis does not list."""
    cp = _note(setup)
    return {"/v1/checkpoint": _constant(sign_checkpoint(cp, cp.origin, generate_key()))}


def _changed_origin(setup: Setup) -> dict[str, Rewrite]:
    """Another log identity, signed by the *genuine* node key (a node serving two logs)."""
    cp = _note(setup)
    other = dataclasses.replace(cp, origin=cp.origin + "-staging")
    key = load_node_key(setup.root)
    return {"/v1/checkpoint": _constant(sign_checkpoint(other, cp.origin, key))}


def _forked_root(setup: Setup) -> dict[str, Rewrite]:
    """The current size with another root, signed by the genuine node key (a malicious node)."""
    cp = _note(setup)
    forged = dataclasses.replace(cp, root=bytes(32))
    return {
        "/v1/checkpoint": _constant(sign_checkpoint(forged, cp.origin, load_node_key(setup.root)))
    }


def _interior_node(setup: Setup) -> dict[str, Rewrite]:
    """An interior node offered as a leaf: the level-1 node over leaves 0 and 1 with the
    path above it, as index 0 (a second-preimage attempt, RFC 9162 §2.1.1 domain separation)."""

    def rule(request: httpx.Request, body: bytes) -> bytes:
        params = dict(request.url.params)
        first = orjson.loads(
            setup.live.get("/v1/proofs/inclusion", params={**params, "tx": setup.txs[0]}).content
        )
        second = orjson.loads(
            setup.live.get("/v1/proofs/inclusion", params={**params, "tx": setup.txs[1]}).content
        )
        interior = node_hash(bytes.fromhex(first["leaf_hash"]), bytes.fromhex(second["leaf_hash"]))
        obj = orjson.loads(body)
        obj.update(leaf_hash=interior.hex(), leaf_index=0, proof=first["proof"][1:])
        return orjson.dumps(obj)

    return {"/v1/proofs/inclusion": rule}


def _interior_node_envelope(setup: Setup) -> dict[str, Rewrite]:
    """The 64 bytes of two child hashes served as the transaction's envelope."""

    def rule(request: httpx.Request, body: bytes) -> bytes:
        import base64

        obj = orjson.loads(body)
        obj["envelope_b64"] = base64.urlsafe_b64encode(bytes(64)).rstrip(b"=").decode()
        return orjson.dumps(obj)

    return {f"/v1/transactions/{setup.txs[0]}": rule}


def _consistency_lie(setup: Setup) -> dict[str, Rewrite]:
    """Growth offered with a consistency proof whose hashes are another range's."""

    def rule(request: httpx.Request, body: bytes) -> bytes:
        obj = orjson.loads(body)
        obj["proof"] = [h[::-1] for h in obj["proof"]]
        return orjson.dumps(obj)

    return {"/v1/proofs/consistency": rule}


LIES: dict[str, tuple[Callable[[Setup], dict[str, Rewrite]], type[LedgerError], str]] = {
    "rewound-tree-size": (_rewound, CheckpointError, "rollback"),
    "proof-for-another-leaf": (_another_leaf, ProofError, "leaf index"),
    "another-leafs-path": (_another_leaf_same_index, ProofError, ""),
    "proof-larger-than-checkpoint": (_larger_size, ProofError, "tree size"),
    "proof-path-too-long": (_longer_path, ProofError, ""),
    "proof-path-oversized": (_oversized_path, ProofError, "at most 128"),
    "checkpoint-unknown-key": (_unknown_key, CheckpointError, ""),
    "changed-log-identity": (_changed_origin, CheckpointError, "origin"),
    "forked-root-same-size": (_forked_root, CheckpointError, "fork"),
    "interior-node-as-leaf": (_interior_node, ProofError, ""),
    "interior-node-as-envelope": (_interior_node_envelope, VerificationError, "invalid"),
    "consistency-proof-lie": (_consistency_lie, CheckpointError, "fork"),
}
"""name → (lie, error family the SDK must raise, words its message must contain)."""

# Lies that need the client to already trust an older checkpoint to be visible.
NEEDS_HISTORY = {"rewound-tree-size", "forked-root-same-size", "consistency-proof-lie"}


def _prime(setup: Setup, client: Client, name: str) -> None:
    """Give the client the trusted history a lie is told against."""
    if name == "rewound-tree-size" or name == "forked-root-same-size":
        note = setup.node.store.find_checkpoint() or b""  # saw the current (largest) tree
        client.trust.update(note, lambda a, b: [])
    elif name == "consistency-proof-lie":
        client.trust.update(setup.old_note, lambda a, b: [])  # trusts the older tree


def _act(setup: Setup, client: Client, name: str) -> Any:
    if name in {"rewound-tree-size", "forked-root-same-size", "consistency-proof-lie"}:
        return client.checkpoint()
    if name.startswith("checkpoint") or name == "changed-log-identity":
        return client.checkpoint()
    target = setup.txs[0] if name.startswith("interior") else setup.txs[-1]
    return client.prove_inclusion(target)


@pytest.mark.parametrize("name", sorted(LIES))
def test_the_sdk_refuses_each_lie(setup: Setup, hostile: Hostile, name: str) -> None:
    lie, family, words = LIES[name]
    # negative control: the same calls, answered honestly, verify
    with hostile.client() as honest:
        _prime(setup, honest, name)
        assert _act(setup, honest, name) is not None
    hostile.rewrite = lie(setup)
    with hostile.client() as client:
        _prime(setup, client, name)
        trusted = client.trusted
        with pytest.raises(family) as info:
            _act(setup, client, name)
        assert words in str(info.value), info.value
        assert hostile.served >= 1
        # nothing the liar said was adopted: the client trusts what it trusted, or the
        # genuine checkpoint the honest part of the answers gave it
        now = client.trusted
        genuine = _note(setup)
        assert now == trusted or (now is not None and now.checkpoint == genuine), now


def _cli_run(hostile: Hostile, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    def factory(
        url: str,
        *,
        genesis: bytes | None = None,
        trust_file: Path | None = None,
        node_keys: Sequence[NodeKey] = (),
    ) -> Client:
        http = httpx.Client(transport=httpx.MockTransport(hostile.handler))
        return Client(url, genesis=genesis, trust_file=trust_file, http=http, node_keys=node_keys)

    monkeypatch.setattr(cli_options, "Client", factory)
    return CliRunner().invoke(cli_app, list(args))


CLI_LIES = [
    n for n in sorted(LIES) if n not in {"consistency-proof-lie"}
]  # the CLI primes its trust file by a first honest run instead (below)


@pytest.mark.parametrize("name", CLI_LIES)
def test_the_cli_refuses_each_lie(
    setup: Setup, hostile: Hostile, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    genesis = ChainPaths(setup.root).genesis
    trust = tmp_path / "trust.json"
    target = setup.txs[0] if name.startswith("interior") else setup.txs[-1]
    args = ["proof", "inclusion", target, "--url", BASE, "--genesis", str(genesis),
            "--trust-file", str(trust)]  # fmt: skip
    ok = _cli_run(hostile, monkeypatch, *args)  # negative control, and primes the trust file
    assert ok.exit_code == 0, ok.output
    before = trust.read_bytes()
    hostile.rewrite = LIES[name][0](setup)
    result = _cli_run(hostile, monkeypatch, *args)
    assert result.exit_code == 6, (result.exit_code, result.output)
    assert "error:" in result.output and "Traceback" not in result.output
    assert trust.read_bytes() == before


def test_the_cli_refuses_a_consistency_lie(
    setup: Setup, hostile: Hostile, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    trust = tmp_path / "trust.json"
    with hostile.client(trust_file=trust) as c:
        c.trust.update(setup.old_note, lambda a, b: [])
    hostile.rewrite = _consistency_lie(setup)
    genesis = str(ChainPaths(setup.root).genesis)
    result = _cli_run(hostile, monkeypatch, "proof", "consistency", "1", "2", "--url", BASE,
                      "--genesis", genesis, "--trust-file", str(trust))  # fmt: skip
    assert result.exit_code == 6 and "fork" in result.output, result.output


# -- every single-bit mutation (hypothesis) ----------------------------------------------------

REFUSED: dict[str, int] = {}


def _flip_hex(text: str, bit: int) -> str:
    data = bytearray(bytes.fromhex(text))
    data[(bit // 8) % len(data)] ^= 1 << (bit % 8)
    return data.hex()


def _mutate_inclusion(obj: dict[str, Any], target: str, slot: int, bit: int) -> None:
    if target == "proof":
        i = slot % len(obj["proof"])
        obj["proof"][i] = _flip_hex(obj["proof"][i], bit)
    elif target == "leaf_hash":  # never used by the client: replaced below by tx_id
        obj["tx_id"] = _flip_hex(obj["tx_id"], bit)
    else:  # tree_size, leaf_index
        obj[target] ^= 1 << (bit % 40)


def _count(kind: str) -> None:
    REFUSED[kind] = REFUSED.get(kind, 0) + 1


SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(
    target=st.sampled_from(["proof", "tree_size", "leaf_index", "leaf_hash"]),
    slot=st.integers(0, 63),
    bit=st.integers(0, 255),
    which=st.integers(0, 10_000),
)
def test_every_bit_flip_of_an_inclusion_answer_is_refused(
    setup: Setup, target: str, slot: int, bit: int, which: int
) -> None:
    hostile = Hostile(setup.live)
    tx = setup.txs[which % len(setup.txs)]
    hostile.rewrite = {
        "/v1/proofs/inclusion": _json_rewrite(lambda o: _mutate_inclusion(o, target, slot, bit))
    }
    with hostile.client() as client:
        try:
            client.prove_inclusion(tx)
        except ProofError:
            _count("inclusion")
            return
        if target == "proof":  # the only proof a single leaf has is the empty one
            raise AssertionError(f"flipped {target} accepted")
        raise AssertionError(f"flipped {target} bit {bit} accepted")


@SETTINGS
@given(
    target=st.sampled_from(["proof", "root1", "root2", "from", "to"]),
    slot=st.integers(0, 63),
    bit=st.integers(0, 255),
)
def test_every_bit_flip_of_a_consistency_answer_is_refused(
    setup: Setup, target: str, slot: int, bit: int
) -> None:
    hostile = Hostile(setup.live)

    def edit(obj: dict[str, Any]) -> None:
        if target == "proof":
            i = slot % len(obj["proof"])
            obj["proof"][i] = _flip_hex(obj["proof"][i], bit)
        elif target in ("root1", "root2"):
            obj[target] = _flip_hex(obj[target], bit)
        else:
            obj[target] ^= 1 << (bit % 40)

    hostile.rewrite = {"/v1/proofs/consistency": _json_rewrite(edit)}
    size = _note(setup).size
    with hostile.client() as client:
        client.checkpoint()
        with pytest.raises((ProofError, CheckpointError)):
            client.prove_consistency(2, size - 1)
    _count("consistency")


@SETTINGS
@given(bit=st.integers(0, 8 * 400))
def test_every_bit_flip_of_the_checkpoint_note_is_refused(setup: Setup, bit: int) -> None:
    note = bytearray(setup.node.store.find_checkpoint() or b"")
    note[(bit // 8) % len(note)] ^= 1 << (bit % 8)
    hostile = Hostile(setup.live)
    hostile.rewrite = {"/v1/checkpoint": _constant(bytes(note))}
    with hostile.client() as client, pytest.raises(LedgerError):
        client.checkpoint()
    _count("checkpoint")


def test_zz_report_refusals() -> None:
    """Prints the tally (run with ``-s``); the properties above assert each refusal."""
    print(f"HOSTILE refused: {REFUSED}")


def test_every_bit_of_the_checkpoint_note_exhaustively(setup: Setup) -> None:
    """All bits, one at a time, of the signed note (text, signer name, base64 signature and
    its padding bits): the trust store opens none of them; the untouched note opens."""
    from carechain.client.trust import TrustStore, parse_genesis

    note = setup.node.store.find_checkpoint() or b""
    store = TrustStore(parse_genesis(setup.live.get("/v1/genesis").content))
    assert store.open(note).size == _note(setup).size  # negative control
    accepted = []
    for i in range(len(note) * 8):
        flipped = bytearray(note)
        flipped[i // 8] ^= 1 << (i % 8)
        try:
            store.open(bytes(flipped))
        except LedgerError:
            continue
        accepted.append((i // 8, i % 8))
    print(f"HOSTILE checkpoint note: {len(note) * 8} bit flips, {len(accepted)} accepted")
    assert not accepted
