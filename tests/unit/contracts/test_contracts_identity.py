"""The identity contract, through real transactions on the demo node: one rule per row."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from carechain.contracts.identity import patient_account_id
from carechain.crypto.signatures import PrivateKey, generate_key
from carechain.errors import AuthorizationError, ValidationError
from carechain.ledger.tx import SignedTx
from carechain.testing.chain_driver import MEMBERS, Chain, pub

# -- patient self-registration ------------------------------------------------------------------

PatientCase = Callable[[Chain], SignedTx]


def _patient(keys: list[PrivateKey], signers: list[PrivateKey] | None = None,
             sender: str | None = None, **extra: Any) -> PatientCase:  # fmt: skip
    def build(chain: Chain) -> SignedTx:
        account = sender or patient_account_id(keys[0].kid)
        args = {"keys": [pub(k) for k in keys], **extra}
        return chain.tx("identity.register_patient@1", account, args, signers or keys)

    return build


def _signed_by_a_member(chain: Chain) -> SignedTx:
    k = generate_key()
    args = {"keys": [pub(k)]}
    return chain.tx("identity.register_patient@1", patient_account_id(k.kid), args,
                    [k, chain.key("dr-kim")])  # fmt: skip


_K1, _K2, _ML = generate_key(), generate_key(), generate_key("ml-dsa-65")
PATIENT_CASES = {
    "ed25519": (_patient([generate_key()]), "ok"),
    "ml-dsa-65": (_patient([generate_key("ml-dsa-65")]), "ok"),
    "two-keys-both-sign": (_patient([_K1, _ML]), "ok"),
    "wrong-derived-id": (
        _patient([generate_key()], sender=patient_account_id(_K2.kid)),
        "bad_args",
    ),
    "id-of-second-key": (_patient([_K1, _K2], sender=patient_account_id(_K2.kid)), "bad_args"),
    "id-not-derived": (_patient([generate_key()], sender="pt-somebody"), "bad_args"),
    "listed-key-does-not-sign": (_patient([_K1, _K2], signers=[_K1]), "unauthorized"),
    "personal-data": (_patient([generate_key()], name="Hong Gildong"), "bad_args"),
    "key-of-a-member-signs-too": (_signed_by_a_member, "unauthorized"),
}


@pytest.mark.parametrize("build,want", list(PATIENT_CASES.values()), ids=list(PATIENT_CASES))
def test_patient_self_registration(chain: Chain, build: PatientCase, want: str) -> None:
    tx = build(chain)
    out = chain.run1(tx)
    assert out.code == want, out.receipt
    acct = chain.state(f"acct/{tx.body.sender}")
    if want == "ok":
        assert out.events == ["identity.patient_registered"]
        assert acct == {
            "id": tx.body.sender, "keys": [s.kid for s in tx.body.signers], "since": out.height,
            "status": "active", "type": "patient",
        }  # fmt: skip
        for s in tx.body.signers:
            rec = chain.state(f"key/{s.kid}")
            assert (rec["account"], rec["alg"], rec["since"]) == (tx.body.sender, s.alg, out.height)
    else:
        assert out.receipt["status"] == "rejected" and out.receipt["msg"]
        assert acct is None
        assert not out.events
        # the attempt is kept in its block as evidence
        loc = chain.node.store.find_tx(tx.tx_id)
        assert loc is not None and loc.height == out.height


def test_a_key_that_does_not_sign_cannot_register(chain: Chain) -> None:
    """The listed key never signs; another, unknown key does: refused at submission."""
    listed, signer = generate_key(), generate_key()
    tx = chain.tx("identity.register_patient@1", patient_account_id(listed.kid),
                  {"keys": [pub(listed)]}, [signer])  # fmt: skip
    before = chain.height()
    with pytest.raises(ValidationError) as info:
        chain.node.submit([tx.raw])
    assert info.value.code == "unknown_key"
    assert chain.height() == before and chain.state(f"key/{listed.kid}") is None


def test_duplicate_patient_registration(chain: Chain) -> None:
    k = generate_key()
    first = chain.run1(_patient([k])(chain))
    assert first.ok
    again = chain.run1(_patient([k])(chain))  # a fresh nonce: another transaction
    assert again.code == "duplicate_account"
    assert chain.state(f"acct/{patient_account_id(k.kid)}")["since"] == first.height


def test_duplicate_patient_registration_in_one_block(chain: Chain) -> None:
    k = generate_key()
    a, b = chain.run(_patient([k])(chain), _patient([k])(chain))
    assert a.height == b.height
    assert (a.code, b.code) == ("ok", "key_not_yet_valid")


def test_a_demo_patient_exists(chain: Chain) -> None:
    account, key = chain.patient("patient-2")
    assert chain.state(f"acct/{account}")["keys"] == [key.kid]
    assert chain.state(f"key/{key.kid}")["alg"] == "ml-dsa-65"


# -- member registration ------------------------------------------------------------------------

MEMBER_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "admin-of-the-org": ({}, "ok"),
    "admin-registers-an-admin": ({"role": "admin"}, "ok"),
    "with-licence-and-display": ({"licence": "KR-MD-1", "display": "Dr. Yoon"}, "ok"),
    "member-not-admin": ({"by": "dr-kim"}, "unauthorized"),
    "nurse-not-admin": ({"by": "nurse-park"}, "unauthorized"),
    "admin-of-another-org": ({"by": "hanbit-pharmacy-admin"}, "unauthorized"),
    "patient": ({"by": "patient-1"}, "unauthorized"),
    "unknown-org": ({"org": "busan-clinic", "by": "seoul-general-admin"}, "unknown_org"),
    "bad-role": ({"role": "surgeon-general"}, "bad_args"),
    "existing-account": ({"account": "seoul-general.dr-kim"}, "duplicate_account"),
    "account-trailing-newline": ({"account": "seoul-general.dr-yoon\n"}, "bad_args"),
    "account-uppercase": ({"account": "seoul-general.Dr-Yoon"}, "bad_args"),
    "display-control-char": ({"display": "Dr.\x07Yoon"}, "bad_args"),
    "display-trailing-newline": ({"display": "Dr. Yoon\n"}, "bad_args"),
    "display-too-long": ({"display": "x" * 201}, "bad_args"),
    "unknown-field": ({"email": "yoon@example.org"}, "bad_args"),
}


@pytest.mark.parametrize("over,want", list(MEMBER_CASES.values()), ids=list(MEMBER_CASES))
def test_member_registration(chain: Chain, over: dict[str, Any], want: str) -> None:
    over = dict(over)
    org = over.pop("org", "seoul-general")
    account = over.pop("account", f"{org}.dr-yoon")
    key = generate_key()
    tx = chain.register_member(org, account, key, **over)
    out = chain.run1(tx)
    assert out.code == want, out.receipt
    if want == "ok":
        acct = chain.state(f"acct/{account}")
        assert acct["org"] == org and acct["keys"] == [key.kid] and acct["since"] == out.height
        assert acct["type"] == ("admin" if over.get("role") == "admin" else "member")
        assert acct.get("display") == over.get("display")
        assert chain.state(f"key/{key.kid}")["account"] == account
        assert out.events == ["identity.member_registered"]
        # the new member is indexed under its own account, too
        assert out.index in chain.node.store.account_log_indexes(account)
    else:
        assert out.receipt["status"] == "rejected"
        assert chain.state(f"key/{key.kid}") is None
        if account != "seoul-general.dr-kim":
            assert chain.state(f"acct/{account}") is None
        loc = chain.node.store.find_tx(tx.tx_id)
        assert loc is not None and (loc.height, loc.log_index) == (out.height, out.index)


def test_a_key_cannot_be_registered_twice(chain: Chain) -> None:
    taken = chain.key("dr-kim")
    out = chain.run1(chain.register_member("seoul-general", "seoul-general.dr-yoon", taken))
    assert out.code == "duplicate_key"
    assert chain.state(f"key/{taken.kid}")["account"] == MEMBERS["dr-kim"]


def test_a_rejected_and_an_accepted_transaction_share_a_block(chain: Chain) -> None:
    good = chain.register_member("seoul-general", "seoul-general.ok", generate_key())
    bad = chain.register_member("seoul-general", "seoul-general.bad", generate_key(), by="dr-kim")
    a, b = chain.run(good, bad)
    assert a.height == b.height and (a.code, b.code) == ("ok", "unauthorized")
    assert chain.state("acct/seoul-general.ok") and chain.state("acct/seoul-general.bad") is None


# -- key rotation ------------------------------------------------------------------------------


def _rotate(chain: Chain, name: str, new: PrivateKey, *, signers: list[PrivateKey] | None = None,
            old: str | None = None, keys: list[PrivateKey] | None = None) -> SignedTx:  # fmt: skip
    sender, key = chain._actor(name)
    args = {"keys": [pub(k) for k in (keys or [new])], "old": old or key.kid}
    return chain.tx("identity.rotate_key@1", sender, args, signers or [key, new])


def test_key_rotation(chain: Chain) -> None:
    old, new = chain.key("dr-kim"), generate_key("ml-dsa-65")
    out = chain.run1(_rotate(chain, "dr-kim", new))
    assert out.ok and out.events == ["identity.key_rotated"]
    assert chain.state(f"key/{old.kid}")["status"] == "rotated"
    assert chain.state(f"key/{old.kid}")["revoked_at"] == out.height
    assert chain.state(f"key/{new.kid}") == {
        "account": MEMBERS["dr-kim"], "alg": "ml-dsa-65", "pub": pub(new)["pub"],
        "since": out.height, "status": "active",
    }  # fmt: skip
    assert chain.state(f"acct/{MEMBERS['dr-kim']}")["keys"] == [old.kid, new.kid]


ROTATION_CASES: dict[str, tuple[Callable[[Chain, PrivateKey], SignedTx], str]] = {
    "new-key-does-not-sign": (
        lambda c, n: _rotate(c, "dr-kim", n, signers=[c.key("dr-kim")]), "unauthorized"),
    "wrong-order": (
        lambda c, n: _rotate(c, "dr-kim", n, signers=[n, c.key("dr-kim")]), "unauthorized"),
    "two-new-keys": (
        lambda c, n: _rotate(c, "dr-kim", n, keys=[n, generate_key()]), "bad_args"),
    "old-key-of-another-account": (
        lambda c, n: c.tx("identity.rotate_key@1", MEMBERS["dr-kim"],
                          {"keys": [pub(n)], "old": c.key("nurse-park").kid},
                          [c.key("nurse-park"), n]),
        "unauthorized"),
    "new-key-already-registered": (
        lambda c, n: _rotate(c, "dr-kim", c.key("nurse-park")), "unauthorized"),
}  # fmt: skip


@pytest.mark.parametrize("build,want", list(ROTATION_CASES.values()), ids=list(ROTATION_CASES))
def test_rotation_rules(chain: Chain, build: Any, want: str) -> None:
    new = generate_key()
    out = chain.run1(build(chain, new))
    assert out.code == want, out.receipt
    assert chain.state(f"key/{chain.key('dr-kim').kid}")["status"] == "active"
    assert chain.state(f"key/{new.kid}") is None


# -- revocation --------------------------------------------------------------------------------


def _revoke(chain: Chain, by: str, kid: str, reason: str | None = "lost device") -> SignedTx:
    sender, key = chain._actor(by)
    args = {"kid": kid} if reason is None else {"kid": kid, "reason": reason}
    return chain.tx("identity.revoke_key@1", sender, args, [key])


REVOCATION_CASES = {
    "owner": ("dr-kim", "dr-kim", "ok"),
    "admin-of-the-owners-org": ("seoul-general-admin", "dr-kim", "ok"),
    "patient-owner": ("patient-1", "patient-1", "ok"),
    "member-of-the-same-org": ("nurse-park", "dr-kim", "unauthorized"),
    "admin-of-another-org": ("hanbit-pharmacy-admin", "dr-kim", "unauthorized"),
    "patient-revokes-a-member-key": ("patient-1", "dr-kim", "unauthorized"),
    "admin-revokes-a-patient-key": ("seoul-general-admin", "patient-1", "unauthorized"),
    "another-patient": ("patient-2", "patient-1", "unauthorized"),
    "admin-revokes-other-admin": ("seoul-general-admin", "hanbit-pharmacy-admin", "unauthorized"),
}  # fmt: skip


@pytest.mark.parametrize(
    "by,owner,want", list(REVOCATION_CASES.values()), ids=list(REVOCATION_CASES)
)
def test_revocation(chain: Chain, by: str, owner: str, want: str) -> None:
    kid = chain.key(owner).kid
    out = chain.run1(_revoke(chain, by, kid))
    assert out.code == want, out.receipt
    rec = chain.state(f"key/{kid}")
    if want == "ok":
        assert (rec["status"], rec["revoked_at"], rec["reason"]) == (
            "revoked",
            out.height,
            "lost device",
        )
        assert out.events == ["identity.key_revoked"]
        # the revoked key is refused at submission from now on, whatever it signs
        with pytest.raises(AuthorizationError) as info:
            chain.node.submit([_revoke(chain, owner, chain.key("nurse-park").kid).raw])
        assert info.value.code == "revoked_key"
    else:
        assert rec["status"] == "active" and "revoked_at" not in rec


def test_revocation_of_unknown_or_revoked_keys_and_bad_args(chain: Chain) -> None:
    nurse = chain.key("nurse-park").kid
    outs = chain.run(
        _revoke(chain, "seoul-general-admin", generate_key().kid),
        _revoke(chain, "seoul-general-admin", nurse, reason=None),
        _revoke(chain, "seoul-general-admin", nurse, reason="x" * 201),
        _revoke(chain, "seoul-general-admin", nurse),
    )
    assert [o.code for o in outs] == ["unknown_key", "bad_args", "bad_args", "ok"]
    again = chain.run1(_revoke(chain, "seoul-general-admin", nurse))
    assert again.code == "already_revoked"
