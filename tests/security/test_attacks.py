"""Attacks on transaction authentication: substitution, forgery, confused deputies, replays."""

from __future__ import annotations

import os
from typing import Any

import pytest

from carechain.contracts import default_contracts
from carechain.contracts.identity import patient_account_id
from carechain.crypto.signatures import PrivateKey, generate_key, key_id
from carechain.encoding import b64u_encode, canonical_bytes
from carechain.errors import (
    DuplicateTransactionError,
    LedgerError,
    SignatureError,
    ValidationError,
)
from carechain.ledger.block import parse_header
from carechain.ledger.execute import execute_block
from carechain.ledger.tx import SignedTx, encode_envelope, make_tx, parse_envelope, signing_bytes
from carechain.node.chaindir import InitResult, open_node
from carechain.node.node import now_ms
from carechain.testing.chain_driver import MEMBERS, Chain, pub

L = 2**252 + 27742317777372353535851937790883648493  # the order of the Ed25519 base point


def envelope(c: Chain, signers: list[dict[str, str]], sign_with: list[PrivateKey],
             **body: Any) -> bytes:  # fmt: skip
    obj: dict[str, Any] = {
        "args": {"account": "seoul-general.mallory", "keys": [pub(generate_key())],
                 "org": "seoul-general", "role": "admin"},
        "chain": c.node.genesis.chain, "created": now_ms(),
        "kind": "identity.register_member@1", "nonce": b64u_encode(os.urandom(16)),
        "sender": "seoul-general.admin", "signers": signers,
    }  # fmt: skip
    obj.update(body)
    raw = canonical_bytes(obj)
    return encode_envelope(raw, [k.sign(signing_bytes(raw)) for k in sign_with])


def unchanged(chain: Chain) -> tuple[int, int, Any]:
    return chain.height(), chain.node.store.log_size(), chain.state("acct/seoul-general.mallory")


def submit_rejected(chain: Chain, raw: bytes, exc: type[LedgerError], code: str) -> None:
    before = unchanged(chain)
    with pytest.raises(exc) as info:
        chain.node.submit([raw])
    assert type(info.value) is exc and info.value.code == code, info.value
    assert unchanged(chain) == before and before[2] is None


# -- algorithm substitution --------------------------------------------------------------------


def test_algorithm_substitution_on_a_registered_key(chain: Chain) -> None:
    victim = chain.key("seoul-general-admin")  # ed25519
    attacker = generate_key("ml-dsa-65")
    # the body claims ml-dsa-65 for the victim's ed25519 kid; the signature is a valid ML-DSA one
    raw = envelope(chain, [{"alg": "ml-dsa-65", "kid": victim.kid}], [attacker])
    submit_rejected(chain, raw, ValidationError, "algorithm_mismatch")


def test_algorithm_substitution_on_an_introduced_key(chain: Chain) -> None:
    """A new patient's key carried in args.keys: its kid is bound to (alg, pub)."""
    key = generate_key("ed25519")
    kid = key_id("ed25519", key.public)
    raw = envelope(chain, [{"alg": "ml-dsa-65", "kid": kid}], [key],
                   kind="identity.register_patient@1", sender=patient_account_id(kid),
                   args={"keys": [pub(key)]})  # fmt: skip
    submit_rejected(chain, raw, SignatureError, "bad_signature")
    # the same key bytes under another algorithm name have another kid: no aliasing
    assert key_id("ml-dsa-65", key.public) != kid


def test_algorithm_substitution_is_refused_at_execution_too(chain: Chain) -> None:
    """A proposer that skipped the submission checks still gets a rejected receipt."""
    victim = chain.key("seoul-general-admin")
    raw = envelope(chain, [{"alg": "ml-dsa-65", "kid": victim.kid}], [generate_key("ml-dsa-65")])
    result = _execute(chain, [parse_envelope(raw)])
    assert [r.code for r in result.receipts] == ["wrong_algorithm"]
    assert result.writes == ()


def _execute(chain: Chain, txs: list[SignedTx]) -> Any:
    store = chain.node.store
    head = parse_header(store.find_block(store.head_height() or 0).header)  # type: ignore[union-attr]
    return execute_block(
        store, chain=head.chain, height=head.height + 1, time=now_ms(),
        prev_state_root=head.state_root, txs=txs, params=chain.node.params,
        contracts=default_contracts(),
    )  # fmt: skip


# -- forgery ----------------------------------------------------------------------------------


def test_a_signature_by_another_key_under_the_victims_kid(chain: Chain) -> None:
    victim = chain.key("seoul-general-admin")
    for attacker in (generate_key(), chain.key("dr-kim"), chain.key("hanbit-pharmacy-admin")):
        raw = envelope(chain, [{"alg": "ed25519", "kid": victim.kid}], [attacker])
        submit_rejected(chain, raw, SignatureError, "bad_signature")
    # negative control: the victim's own signature goes through
    raw = envelope(chain, [{"alg": "ed25519", "kid": victim.kid}], [victim])
    ((_, index),) = chain.node.submit_and_wait([raw])
    assert b'"status":"ok"' in (chain.node.store.find_receipt(index) or b"")


def test_a_non_canonical_ed25519_signature_is_refused(chain: Chain) -> None:
    """Strict RFC 8032 verification: S + L verifies under lax implementations, not here."""
    victim = chain.key("seoul-general-admin")
    raw = envelope(chain, [{"alg": "ed25519", "kid": victim.kid}], [victim])
    tx = parse_envelope(raw)
    sig = tx.sigs[0]
    s = int.from_bytes(sig[32:], "little") + L
    assert s < 2**256
    malleated = encode_envelope(tx.body_bytes, [sig[:32] + s.to_bytes(32, "little")])
    submit_rejected(chain, malleated, SignatureError, "bad_signature")


def test_a_stolen_signature_does_not_carry_over_to_another_body(chain: Chain) -> None:
    victim = chain.key("seoul-general-admin")
    honest = parse_envelope(envelope(chain, [{"alg": "ed25519", "kid": victim.kid}], [victim]))
    body = dict(honest.body.to_json())
    body["args"] = {**body["args"], "role": "admin", "account": "seoul-general.mallory2"}
    raw = encode_envelope(canonical_bytes(body), list(honest.sigs))
    before = chain.height()
    with pytest.raises(SignatureError):
        chain.node.submit([raw])
    assert chain.height() == before


# -- confused deputies ------------------------------------------------------------------------


def test_a_valid_signature_by_a_key_of_another_account(chain: Chain) -> None:
    """dr-kim signs correctly, with a registered key, but as seoul-general.admin."""
    kim = chain.key("dr-kim")
    tx = parse_envelope(envelope(chain, [{"alg": "ed25519", "kid": kim.kid}], [kim]))
    out = chain.run1(tx)
    assert out.code == "unauthorized" and "belongs to" in out.receipt["msg"]
    assert chain.state("acct/seoul-general.mallory") is None
    assert chain.node.store.find_tx(tx.tx_id) is not None  # the attempt is on record


def test_a_patient_cannot_act_for_another_patient(chain: Chain) -> None:
    victim, victim_key = chain.patient("patient-2")
    _, attacker = chain.patient("patient-1")
    tx = chain.tx(
        "identity.revoke_key@1", victim, {"kid": victim_key.kid, "reason": "x"}, [attacker]
    )
    out = chain.run1(tx)
    assert out.code == "unauthorized"
    assert chain.state(f"key/{victim_key.kid}")["status"] == "active"


def test_a_co_signature_does_not_launder_an_unauthorised_signer(chain: Chain) -> None:
    admin, kim = chain.key("seoul-general-admin"), chain.key("dr-kim")
    signers = [{"alg": "ed25519", "kid": admin.kid}, {"alg": "ed25519", "kid": kim.kid}]
    out = chain.run1(parse_envelope(envelope(chain, signers, [admin, kim])))
    assert out.code == "unauthorized"
    assert chain.state("acct/seoul-general.mallory") is None
    assert MEMBERS["dr-kim"] in out.receipt["msg"]


# -- chain id swap ------------------------------------------------------------------------------


def test_a_transaction_signed_for_another_chain(chain: Chain) -> None:
    admin = chain.key("seoul-general-admin")
    staging = envelope(
        chain, [{"alg": "ed25519", "kid": admin.kid}], [admin], chain="carechain-staging"
    )
    submit_rejected(chain, staging, ValidationError, "wrong_chain")
    # relabelling the chain id breaks the signature: the chain id is signed
    tx = parse_envelope(staging)
    body = {**tx.body.to_json(), "chain": chain.node.genesis.chain}
    relabelled = encode_envelope(canonical_bytes(body), list(tx.sigs))
    submit_rejected(chain, relabelled, SignatureError, "bad_signature")
    # and a proposer that let it through gets a rejected receipt
    assert [r.code for r in _execute(chain, [tx]).receipts] == ["wrong_chain"]


# -- replay across a restart ----------------------------------------------------------------------


def test_replay_across_a_restart(demo_chain: InitResult, chain: Chain) -> None:
    ml = generate_key("ml-dsa-65")
    fields: dict[str, Any] = dict(
        chain=chain.node.genesis.chain, kind="identity.register_patient@1",
        sender=patient_account_id(ml.kid), args={"keys": [pub(ml)]}, keys=[ml],
        created=now_ms(), nonce=os.urandom(16),
    )  # fmt: skip
    original = make_tx(**fields)
    assert chain.run1(original).ok
    chain.node.stop()
    chain.node.store.close()
    node = open_node(demo_chain.paths.root)
    try:
        size = node.store.log_size()
        for raw in (original.raw, make_tx(**fields).raw):  # verbatim, and re-signed
            with pytest.raises(DuplicateTransactionError):
                node.submit([raw])
        assert node.store.log_size() == size and len(node.mempool) == 0
        # a fresh nonce is a new transaction (here: rejected by the contract, not as a replay)
        fresh = make_tx(**{**fields, "nonce": os.urandom(16)})
        ((_, index),) = node.submit_and_wait([fresh.raw])
        assert b'"code":"duplicate_account"' in (node.store.find_receipt(index) or b"")
    finally:
        node.stop()
        node.store.close()
