"""Inclusion and consistency proofs through the SDK, against honest and hostile answers."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from client_fakes import FakeApi, problem

from carechain.errors import (
    CheckpointError,
    LedgerError,
    NotFoundError,
    ProofError,
    ValidationError,
    VerificationError,
)
from carechain.merkle import EMPTY_ROOT, leaf_hash

Edit = Callable[[Any], Any]


def test_inclusion_verifies_against_the_signed_checkpoint(fake: FakeApi) -> None:
    tx = fake.txs[2]
    with fake.client() as client:
        result = client.prove_inclusion(tx.tx_id.hex())
    assert result.tx.tx_id == tx.tx_id
    assert result.tx.envelope == tx.raw
    assert result.leaf_index == 2
    assert result.tree_size == 5
    assert result.leaf_hash == leaf_hash(tx.raw)
    assert result.root == fake.root()
    assert result.checkpoint.note == fake.signed_note()
    assert len(result.proof) == 3


def test_inclusion_accepts_bytes_ids_and_every_leaf(fake: FakeApi) -> None:
    fake.append(8)
    with fake.client() as client:
        for i, tx in enumerate(fake.txs):
            assert client.prove_inclusion(tx.tx_id).leaf_index == i


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (lambda o: {**o, "proof": [*o["proof"], "00" * 32]}, ProofError, "length"),
        (lambda o: {**o, "proof": o["proof"][:-1]}, ProofError, "length"),
        (lambda o: {**o, "proof": ["11" * 32, *o["proof"][1:]]}, ProofError, "calculated root"),
        (lambda o: {**o, "tree_size": o["tree_size"] - 1}, ProofError, "tree size"),
        (lambda o: {**o, "leaf_index": 0}, ProofError, "leaf index"),
        (lambda o: {**o, "tx_id": "00" * 32}, ProofError, "for transaction"),
        (lambda o: {**o, "proof": "deadbeef"}, ProofError, "proof"),
        (lambda o: {**o, "proof": ["AB" * 32] * 3}, ProofError, "lowercase hex"),
        (lambda o: {k: v for k, v in o.items() if k != "leaf_index"}, ProofError, "leaf_index"),
        (lambda o: {**o, "leaf_index": True}, ProofError, "leaf_index"),
        (lambda o: [], ProofError, "list"),
    ],
    ids=[
        "longer-than-needed",
        "truncated",
        "corrupted-hash",
        "rewound-size",
        "other-index",
        "other-tx",
        "not-a-list",
        "uppercase-hex",
        "missing-index",
        "bool-index",
        "not-an-object",
    ],
)
def test_hostile_inclusion_answers_are_refused(
    fake: FakeApi, edit: Edit, error: type[LedgerError], message: str
) -> None:
    fake.mutate["inclusion"] = edit
    with fake.client() as client, pytest.raises(error, match=message):
        client.prove_inclusion(fake.txs[2].tx_id)


def test_proof_for_another_leaf_is_refused(fake: FakeApi) -> None:
    """The server answers with the (valid) path of leaf 3, relabelled as leaf 2's."""
    with fake.client() as client:
        other = client.api.get_json(
            "/v1/proofs/inclusion", {"tx": fake.txs[3].tx_id.hex(), "size": 5}
        )
        fake.mutate["inclusion"] = lambda o: {**other, "leaf_index": 2, "tx_id": o["tx_id"]}
        with pytest.raises(ProofError, match="calculated root"):
            client.prove_inclusion(fake.txs[2].tx_id)


def test_server_leaf_hash_is_never_used(fake: FakeApi) -> None:
    """A lying leaf_hash changes nothing: the leaf is hashed from the envelope."""
    fake.mutate["inclusion"] = lambda o: {**o, "leaf_hash": "00" * 32}
    with fake.client() as client:
        assert client.prove_inclusion(fake.txs[1].tx_id).leaf_hash == leaf_hash(fake.txs[1].raw)


def test_envelope_of_another_transaction_is_refused(fake: FakeApi) -> None:
    other = base64.urlsafe_b64encode(fake.txs[0].raw).rstrip(b"=").decode()
    fake.mutate["tx"] = lambda o: {**o, "envelope_b64": other}
    with fake.client() as client, pytest.raises(VerificationError, match="transaction id"):
        client.get_tx(fake.txs[1].tx_id)


def test_tampered_envelope_is_refused(fake: FakeApi) -> None:
    raw = fake.txs[1].raw.replace(b'"sigs":["', b'"sigs":["A', 1)
    fake.mutate["tx"] = lambda o: {**o, "envelope_b64": base64.b64encode(raw).decode()}
    with fake.client() as client, pytest.raises(VerificationError):
        client.prove_inclusion(fake.txs[1].tx_id)


def test_standard_base64_envelope_is_accepted(fake: FakeApi) -> None:
    raw = fake.txs[1].raw
    fake.mutate["tx"] = lambda o: {**o, "envelope_b64": base64.b64encode(raw).decode()}
    with fake.client() as client:
        assert client.get_tx(fake.txs[1].tx_id).envelope == raw


def test_transaction_beyond_the_checkpoint_is_not_proven(fake: FakeApi) -> None:
    fake.mutate["tx"] = lambda o: {**o, "log_index": 7}
    with fake.client() as client, pytest.raises(ProofError, match="beyond"):
        client.prove_inclusion(fake.txs[1].tx_id)


def test_inclusion_needs_a_trusted_checkpoint(fake: FakeApi) -> None:
    with fake.client() as client:
        client.checkpoint()
        fake.note = fake.signed_note(3)  # rollback while proving
        with pytest.raises(CheckpointError, match="rollback"):
            client.prove_inclusion(fake.txs[1].tx_id)


def test_unknown_transaction(fake: FakeApi) -> None:
    with fake.client() as client, pytest.raises(NotFoundError, match="not found"):
        client.prove_inclusion("ab" * 32)


@pytest.mark.parametrize("bad", ["xyz", "ab" * 31, "ab" * 33])
def test_malformed_transaction_id(fake: FakeApi, bad: str) -> None:
    with fake.client() as client, pytest.raises(ValidationError, match="64 hex"):
        client.get_tx(bad)


@pytest.mark.parametrize(("a", "b"), [(1, 5), (2, 3), (3, 3), (0, 4), (0, 0), (5, 5), (4, 9)])
def test_consistency_is_anchored_in_the_trusted_checkpoint(fake: FakeApi, a: int, b: int) -> None:
    fake.append(4)
    with fake.client() as client:
        result = client.prove_consistency(a, b)
    assert result.root1 == (fake.root(a) if a else EMPTY_ROOT)
    assert result.root2 == fake.root(b)
    assert result.checkpoint.size == 9
    assert bool(result.anchor_proof) == (0 < b < 9)


@pytest.mark.parametrize(
    "edit",
    [
        lambda o: {**o, "proof": [*o["proof"], "00" * 32]},
        lambda o: {**o, "root1": "11" * 32},
        lambda o: {**o, "root2": "11" * 32},
        lambda o: {**o, "to": o["to"] + 1},
        lambda o: {**o, "proof": o["proof"][1:]},
    ],
    ids=["longer-than-needed", "other-root1", "other-root2", "other-size", "truncated"],
)
def test_hostile_consistency_answers_are_refused(fake: FakeApi, edit: Edit) -> None:
    fake.append(4)
    with fake.client() as client:
        client.checkpoint()
        fake.mutate["consistency"] = edit
        with pytest.raises(ProofError):
            client.prove_consistency(2, 6)


@pytest.mark.parametrize(("a", "b"), [(3, 2), (1, 6), (-1, 2)])
def test_consistency_sizes_must_be_ordered_and_covered(fake: FakeApi, a: int, b: int) -> None:
    with fake.client() as client, pytest.raises(ValidationError):
        client.prove_consistency(a, b)


def test_historical_checkpoint_is_verified_and_proven_consistent(fake: FakeApi) -> None:
    with fake.client() as client:
        cp = client.checkpoint_at(2)
        assert (cp.size, cp.root) == (2, fake.root(2))
        assert client.trusted is not None and client.trusted.size == 5  # not moved back


def test_unavailable_consistency_is_not_reported_as_a_fork(fake: FakeApi) -> None:
    with fake.client() as client:
        client.checkpoint()
        fake.append(1)
        fake.fail["consistency"] = problem(503, "unavailable", "busy", **{"retry-after": "7"})
        with pytest.raises(LedgerError) as info:
            client.checkpoint()
        assert not isinstance(info.value, CheckpointError)
        assert getattr(info.value, "retry_after", None) == 7
