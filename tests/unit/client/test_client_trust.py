"""The client's trust store: genesis pinning, first checkpoint, growth, rollback, fork, signers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from client_fakes import CHAIN, ORIGIN, OTHER_KEY, FakeApi, genesis_doc, problem

from carechain.client import parse_genesis
from carechain.client.trust import TrustStore
from carechain.crypto.signatures import PrivateKey
from carechain.encoding import canonical_bytes
from carechain.errors import CheckpointError, ValidationError, VerificationError
from carechain.merkle import EMPTY_ROOT, leaf_hash


def test_parse_genesis_reads_chain_origin_and_node_keys(fake: FakeApi) -> None:
    root = parse_genesis(fake.genesis)
    assert root.chain == CHAIN
    assert root.origin == ORIGIN
    assert [k.record for k in root.node_keys] == [fake.key.record]
    assert [v.name for v in root.verifiers()] == [ORIGIN]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"chain": "Bad Chain", "orgs": []}, "genesis.chain"),
        ({"chain": "c", "orgs": [{"id": "o", "nodes": []}]}, "no organisation lists a node key"),
        ({"chain": "c", "orgs": [{"id": "o", "nodes": [{"alg": "ed25519", "pub": "AA"}]}]}, "pub"),
        ({"chain": "c", "orgs": [{"id": "o", "nodes": [{"alg": "rsa", "pub": "AA"}]}]}, "rsa"),
    ],
)
def test_parse_genesis_rejects_malformed(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_genesis(canonical_bytes(doc))


def test_parse_genesis_rejects_non_canonical(fake: FakeApi) -> None:
    with pytest.raises(ValidationError, match="canonical"):
        parse_genesis(fake.genesis + b" ")


def test_first_checkpoint_is_trusted_and_persisted(fake: FakeApi, tmp_path: Path) -> None:
    trust = tmp_path / "trust.json"
    with fake.client(trust_file=trust) as client:
        cp = client.checkpoint()
        assert (cp.origin, cp.size, cp.root) == (ORIGIN, 5, fake.root())
    saved = json.loads(trust.read_text())
    assert saved["size"] == 5
    assert saved["root"] == fake.root().hex()
    assert saved["genesis"] == parse_genesis(fake.genesis).hash.hex()
    assert saved["note"].encode() == fake.signed_note()
    with fake.client(trust_file=trust) as again:  # reloaded before any request
        assert again.trusted is not None
        assert again.trusted.size == 5


def test_growth_is_accepted_with_a_verifying_consistency_proof(fake: FakeApi) -> None:
    with fake.client() as client:
        client.checkpoint()
        fake.append(6)
        cp = client.checkpoint()
        assert cp.size == 11
        asked = [r.url.params for r in fake.requests if r.url.path == "/v1/proofs/consistency"]
        assert [(p["from"], p["to"]) for p in asked] == [("5", "11")]


def test_same_checkpoint_needs_no_proof(fake: FakeApi) -> None:
    with fake.client() as client:
        client.checkpoint()
        client.checkpoint()
        assert not [r for r in fake.requests if r.url.path == "/v1/proofs/consistency"]


def test_growth_from_the_empty_tree_needs_no_proof() -> None:
    fake = FakeApi()
    with fake.client() as client:
        assert client.checkpoint().root == EMPTY_ROOT
        fake.append(3)
        assert client.checkpoint().size == 3


def test_rollback_is_refused(fake: FakeApi, tmp_path: Path) -> None:
    trust = tmp_path / "trust.json"
    with fake.client(trust_file=trust) as client:
        client.checkpoint()
    fake.note = fake.signed_note(3)  # a genuine, older checkpoint: rewound size
    with fake.client(trust_file=trust) as client, pytest.raises(CheckpointError, match="rollback"):
        client.checkpoint()
    assert json.loads(trust.read_text())["size"] == 5  # the trust file did not move back


def test_fork_at_the_same_size_is_refused(fake: FakeApi) -> None:
    with fake.client() as client:
        client.checkpoint()
        fake.note = fake.signed_note(5, root=leaf_hash(b"another history"))
        with pytest.raises(CheckpointError, match="fork"):
            client.checkpoint()
        assert client.trusted is not None and client.trusted.root == fake.root()


def test_growth_without_a_proof_is_refused(fake: FakeApi) -> None:
    with fake.client() as client:
        client.checkpoint()
        fake.append(2)
        fake.fail["consistency"] = problem(404, "not_found", "no proof for you")
        with pytest.raises(CheckpointError, match="no proof for you"):
            client.checkpoint()
        assert client.trusted is not None and client.trusted.size == 5


def test_growth_of_a_forked_tree_is_refused(fake: FakeApi) -> None:
    """The server signs a bigger tree that does not extend the trusted one."""
    with fake.client() as client:
        client.checkpoint()
    forked = FakeApi()
    forked.append(9)  # other leaves entirely, same signing key
    trusted_note = fake.signed_note()
    with forked.client() as client:
        client.trust.update(trusted_note, lambda a, b: [])  # trusted: size 5 of `fake`
        with pytest.raises(CheckpointError, match="fork: no valid consistency proof"):
            client.checkpoint()


@pytest.mark.parametrize(
    "edit",
    [
        lambda obj: {**obj, "proof": [*obj["proof"], "00" * 32]},  # longer than needed
        lambda obj: {**obj, "proof": obj["proof"][:-1]},  # truncated
        lambda obj: {**obj, "proof": list(reversed(obj["proof"]))},  # reordered
        lambda obj: {**obj, "from": obj["from"] - 1},  # for other sizes
        lambda obj: {**obj, "proof": ["zz" * 32]},  # not hex
    ],
    ids=["extra-hash", "truncated", "reordered", "other-sizes", "not-hex"],
)
def test_growth_with_a_hostile_proof_is_refused(fake: FakeApi, edit: object) -> None:
    with fake.client() as client:
        client.checkpoint()
        fake.append(6)
        fake.mutate["consistency"] = edit  # type: ignore[assignment]
        with pytest.raises(CheckpointError):
            client.checkpoint()
        assert client.trusted is not None and client.trusted.size == 5


def test_checkpoint_signed_by_an_unknown_key_is_refused(fake: FakeApi) -> None:
    fake.note = fake.signed_note(key=OTHER_KEY)
    with fake.client() as client, pytest.raises(CheckpointError, match="trusted signatures"):
        client.checkpoint()


def test_a_pinned_node_key_beyond_genesis_is_trusted(fake: FakeApi) -> None:
    """A later-admitted organisation's node signs with a key genesis cannot name: its own
    clients pin it (``node_keys``); without the pin the same checkpoint is refused."""
    from carechain.client.trust import NodeKey

    fake.note = fake.signed_note(key=OTHER_KEY)
    pinned = NodeKey(org="org-4", name="org-4-node", record=OTHER_KEY.record)
    with fake.client(node_keys=[pinned]) as client:
        assert client.checkpoint().size == 5
        assert client.root.node_keys[-1] == pinned
    with fake.client() as client, pytest.raises(CheckpointError, match="trusted signatures"):
        client.checkpoint()  # negative control


def test_checkpoint_with_a_bad_signature_is_refused(fake: FakeApi) -> None:
    note = bytearray(fake.signed_note())
    note[len(ORIGIN) + 1] ^= 1  # change the size line; the signature no longer covers it
    fake.note = bytes(note)
    with fake.client() as client, pytest.raises(CheckpointError):
        client.checkpoint()


def test_checkpoint_with_a_changed_origin_is_refused(fake: FakeApi) -> None:
    with fake.client() as client:
        fake.note = fake.signed_note(origin="carechain.local/other-chain")  # other key name
        with pytest.raises(CheckpointError, match="trusted signatures"):
            client.checkpoint()
        fake.note = fake.signed_note(origin="carechain.local/other-chain", name=ORIGIN)
        with pytest.raises(CheckpointError, match="origin"):
            client.checkpoint()


def test_node_keys_come_from_genesis_not_from_the_server() -> None:
    """A server that swaps its key (and says so elsewhere) is not trusted."""
    rogue = PrivateKey("ed25519", bytes(range(7, 39)))
    fake = FakeApi(key=rogue)  # the genesis still names NODE_KEY
    with fake.client() as client, pytest.raises(CheckpointError):
        client.checkpoint()


def test_given_genesis_is_not_fetched(fake: FakeApi) -> None:
    with fake.client(genesis=fake.genesis) as client:
        assert client.chain == CHAIN
        client.checkpoint()
    assert not [r for r in fake.requests if r.url.path == "/v1/genesis"]


def test_pinned_genesis_mismatch_from_trust_file(fake: FakeApi, tmp_path: Path) -> None:
    trust = tmp_path / "trust.json"
    with fake.client(trust_file=trust) as client:
        client.checkpoint()
    fake.genesis = genesis_doc("another-chain")  # the server now serves another trust root
    with (
        fake.client(trust_file=trust) as client,
        pytest.raises(VerificationError, match="pinned genesis mismatch"),
    ):
        client.checkpoint()


def test_pinned_genesis_mismatch_on_refetch(fake: FakeApi) -> None:
    with fake.client() as client:
        client.checkpoint()
        assert client.check_genesis().chain == CHAIN
        fake.genesis = genesis_doc("another-chain")
        with pytest.raises(VerificationError, match="pinned genesis mismatch") as info:
            client.check_genesis()
        assert info.value.code == "genesis_mismatch"


def test_given_genesis_differs_from_the_served_one(fake: FakeApi) -> None:
    with fake.client(genesis=genesis_doc("another-chain")) as client:
        with pytest.raises(VerificationError, match="pinned genesis mismatch"):
            client.check_genesis()
        with pytest.raises(CheckpointError):  # other origin: not this chain's checkpoint
            client.checkpoint()


def test_tampered_trust_file_is_refused(fake: FakeApi, tmp_path: Path) -> None:
    trust = tmp_path / "trust.json"
    with fake.client(trust_file=trust) as client:
        client.checkpoint()
    saved = json.loads(trust.read_text())
    saved["size"] = 2
    trust.write_text(json.dumps(saved))
    with fake.client(trust_file=trust) as client, pytest.raises(CheckpointError, match="differ"):
        client.checkpoint()
    trust.write_text("not json")
    with fake.client(trust_file=trust) as client, pytest.raises(ValidationError, match="JSON"):
        client.checkpoint()


def test_size_zero_checkpoint_must_carry_the_empty_root(fake: FakeApi) -> None:
    store = TrustStore(parse_genesis(fake.genesis))
    with pytest.raises(CheckpointError, match="size 0"):
        store.open(fake.signed_note(0, root=leaf_hash(b"x")))
