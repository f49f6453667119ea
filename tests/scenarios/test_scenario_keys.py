"""Key lifecycles on the demo consortium: rotation, revocation, and when a key may sign."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from carechain.contracts.identity import patient_account_id
from carechain.crypto.signatures import PrivateKey, generate_key
from carechain.errors import AuthorizationError, ValidationError
from carechain.ledger.tx import SignedTx
from carechain.testing.chain_driver import MEMBERS, ORGS, Chain, pub


def rotate(chain: Chain, sender: str, old: PrivateKey, new: PrivateKey) -> SignedTx:
    return chain.tx(
        "identity.rotate_key@1", sender, {"keys": [pub(new)], "old": old.kid}, [old, new]
    )


def revoke(chain: Chain, sender: str, signer: PrivateKey, kid: str) -> SignedTx:
    return chain.tx(
        "identity.revoke_key@1", sender, {"kid": kid, "reason": "compromised"}, [signer]
    )


def assert_refused_at_submission(chain: Chain, tx: SignedTx, code: str) -> None:
    height, size = chain.height(), chain.node.store.log_size()
    with pytest.raises(AuthorizationError) as info:
        chain.node.submit([tx.raw])
    assert info.value.code == code
    assert (chain.height(), chain.node.store.log_size(), len(chain.node.mempool)) == (
        height,
        size,
        0,
    )
    assert chain.node.store.find_tx(tx.tx_id) is None


def test_an_admin_rotates_its_key_and_keeps_working(chain: Chain) -> None:
    admin, old = chain.admin("seoul-general")
    new = generate_key("ml-dsa-65")  # moving to a post-quantum key
    rotated = chain.run1(rotate(chain, admin, old, new))
    assert rotated.ok
    # the new key signs from the next block on
    out = chain.run1(chain.tx("identity.register_member@1", admin, {
        "account": "seoul-general.dr-yoon", "keys": [pub(generate_key())],
        "org": "seoul-general", "role": "practitioner",
    }, [new]))  # fmt: skip
    assert out.ok and out.height > rotated.height
    # the old key is refused at submission: revoked_key
    stale = chain.register_member("seoul-general", "seoul-general.dr-oh", generate_key())
    assert stale.body.signers[0].kid == old.kid
    assert_refused_at_submission(chain, stale, "revoked_key")
    # a second rotation from the already-rotated key is refused the same way
    assert_refused_at_submission(chain, rotate(chain, admin, old, generate_key()), "revoked_key")
    chain.verify()


SameBlock = Callable[[Chain], tuple[SignedTx, SignedTx]]


def _owner_revokes_then_uses(chain: Chain) -> tuple[SignedTx, SignedTx]:
    k = chain.key("dr-kim")
    return (revoke(chain, MEMBERS["dr-kim"], k, k.kid),
            rotate(chain, MEMBERS["dr-kim"], k, generate_key()))  # fmt: skip


def _admin_revokes_member_uses(chain: Chain) -> tuple[SignedTx, SignedTx]:
    admin, ak = chain.admin("seoul-general")
    nurse = chain.key("nurse-park")
    return (revoke(chain, admin, ak, nurse.kid),
            revoke(chain, MEMBERS["nurse-park"], nurse, nurse.kid))  # fmt: skip


def _rotation_then_old_key(chain: Chain) -> tuple[SignedTx, SignedTx]:
    admin, old = chain.admin("hanbit-pharmacy")
    later = chain.register_member("hanbit-pharmacy", "hanbit-pharmacy.tech", generate_key())
    return rotate(chain, admin, old, generate_key()), later


def _patient_revokes_then_uses(chain: Chain) -> tuple[SignedTx, SignedTx]:
    account, key = chain.patient("patient-2")  # ml-dsa-65
    return revoke(chain, account, key, key.kid), rotate(chain, account, key, generate_key())


SAME_BLOCK = {
    "owner-revokes-then-signs": _owner_revokes_then_uses,
    "admin-revokes-then-member-signs": _admin_revokes_member_uses,
    "rotation-then-old-key-signs": _rotation_then_old_key,
    "patient-revokes-then-signs": _patient_revokes_then_uses,
}


@pytest.mark.parametrize("build", list(SAME_BLOCK.values()), ids=list(SAME_BLOCK))
def test_revocation_takes_effect_within_its_block(chain: Chain, build: SameBlock) -> None:
    first, second = build(chain)
    # both pass submission: the key is still active in the committed state...
    a, b = chain.run(first, second)
    # ...but execution applies the revocation before the next transaction of the same block
    assert a.height == b.height
    assert (a.code, b.code) == ("ok", "revoked_key"), (a.receipt, b.receipt)
    assert b.receipt["status"] == "rejected"
    assert chain.node.store.find_tx(second.tx_id) is not None  # kept as evidence
    # and from the next block on the key is refused at submission already
    revoked = _demo_key_by_kid(chain, second.body.signers[0].kid)
    again = revoke(chain, second.body.sender, revoked, revoked.kid)
    assert_refused_at_submission(chain, again, "revoked_key")
    chain.verify()


def _demo_key_by_kid(chain: Chain, kid: str) -> PrivateKey:
    names = [*MEMBERS, "patient-1", "patient-2", *(f"{o}-admin" for o in ORGS)]
    (key,) = [chain.key(n) for n in names if chain.key(n).kid == kid]
    return key


def test_a_key_registered_in_a_block_may_sign_only_from_the_next(chain: Chain) -> None:
    k1, k2 = generate_key(), generate_key("ml-dsa-65")
    account = patient_account_id(k1.kid)
    args = {"keys": [pub(k1), pub(k2)]}
    register = chain.tx("identity.register_patient@1", account, args, [k1, k2])
    replay = chain.tx("identity.register_patient@1", account, args, [k1, k2])  # fresh nonce
    a, b = chain.run(register, replay)
    assert a.height == b.height and (a.code, b.code) == ("ok", "key_not_yet_valid")
    # in the next block both keys are valid: the patient revokes the second with the first
    out = chain.run1(revoke(chain, account, k1, k2.kid))
    assert out.ok and chain.state(f"key/{k2.kid}")["status"] == "revoked"
    chain.verify()


def test_a_member_key_cannot_sign_before_its_registration_commits(chain: Chain) -> None:
    key = generate_key()
    reg = chain.register_member("seoul-general", "seoul-general.dr-han", key)
    early = chain.tx("identity.revoke_key@1", "seoul-general.dr-han",
                     {"kid": key.kid, "reason": "test"}, [key])  # fmt: skip
    with pytest.raises(ValidationError) as info:
        chain.node.submit([reg.raw, early.raw])
    assert info.value.code == "unknown_key"
    assert chain.node.store.find_tx(reg.tx_id) is None  # the batch is all or nothing
    assert chain.run1(reg).ok
    assert chain.run1(early).ok  # now it may
