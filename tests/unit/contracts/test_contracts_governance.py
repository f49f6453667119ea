"""The governance contract's rules, one per row (the vote sequences are in tests/scenarios)."""

from __future__ import annotations

from typing import Any

import pytest

from carechain.crypto.signatures import generate_key
from carechain.ledger.tx import SignedTx
from carechain.testing.chain_driver import ORGS, Chain, pub


def new_org(org_id: str = "busan-clinic", **over: Any) -> dict[str, Any]:
    admin = generate_key()
    org = {
        "admins": [{"account": f"{org_id}.admin", "keys": [pub(admin)]}],
        "id": org_id,
        "name": "Busan Clinic",
        "roles": ["clinic"],
    }
    org.update(over)
    return org


def propose(chain: Chain, by: str, args: dict[str, Any]) -> SignedTx:
    sender, key = chain._actor(by)
    return chain.tx("governance.propose@1", sender, args, [key])


def vote(chain: Chain, by: str, pid: str, approve: Any = True) -> SignedTx:
    sender, key = chain._actor(by)
    return chain.tx("governance.vote@1", sender, {"approve": approve, "proposal": pid}, [key])


def open_proposal(chain: Chain) -> str:
    out = chain.run1(
        propose(chain, "seoul-general-admin", {"action": "admit_org", "org": new_org()})
    )
    assert out.ok
    return out.tx.tx_id.hex()[:16]


def test_genesis_indexes_the_founding_orgs(chain: Chain) -> None:
    assert chain.state("gov/orgs") == sorted(ORGS)
    for org in ORGS:
        assert chain.state(f"org/{org}")["status"] == "active"


def test_a_proposal_is_recorded_with_the_proposers_yes(chain: Chain) -> None:
    org = new_org()
    out = chain.run1(propose(chain, "hanbit-pharmacy-admin", {"action": "admit_org", "org": org}))
    pid = out.tx.tx_id.hex()[:16]
    assert out.ok and out.events == ["governance.proposed"]
    assert chain.state(f"gov/{pid}") == {
        "action": "admit_org", "id": pid, "opened": out.height, "org": org,
        "proposer": "hanbit-pharmacy.admin", "status": "open", "votes": {"hanbit-pharmacy": True},
    }  # fmt: skip
    assert chain.state("org/busan-clinic") is None


def admit(**over: Any) -> dict[str, Any]:
    return {"action": "admit_org", "org": new_org(**over)}


SEOUL = "seoul-general-admin"
_TAKEN_ADMIN = [{"account": "seoul-general.dr-kim", "keys": [pub(generate_key())]}]
PROPOSE_CASES = {
    "member-not-admin": ("dr-kim", admit(), "unauthorized"),
    "patient": ("patient-1", admit(), "unauthorized"),
    "unknown-action": (SEOUL, {"action": "merge_org", "org": "medipharm"}, "bad_args"),
    "extra-arg": (SEOUL, {"action": "remove_org", "org": "medipharm", "why": "x"}, "bad_args"),
    "remove-unknown-org": (SEOUL, {"action": "remove_org", "org": "nobody"}, "unknown_org"),
    "admit-existing-org": (
        SEOUL,
        {"action": "admit_org", "org": new_org("medipharm")},
        "duplicate_org",
    ),
    "admit-existing-admin": (SEOUL, admit(admins=_TAKEN_ADMIN), "duplicate_account"),
    "admit-bad-role": (SEOUL, admit(roles=["casino"]), "bad_args"),
    "admit-no-admin": (SEOUL, admit(admins=[]), "bad_args"),
    "admit-org-as-string": (SEOUL, {"action": "admit_org", "org": "busan-clinic"}, "bad_args"),
}


@pytest.mark.parametrize("by,args,want", list(PROPOSE_CASES.values()), ids=list(PROPOSE_CASES))
def test_propose_rules(chain: Chain, by: str, args: dict[str, Any], want: str) -> None:
    tx = propose(chain, by, args)
    out = chain.run1(tx)
    assert out.code == want, out.receipt
    assert chain.state(f"gov/{tx.tx_id.hex()[:16]}") is None


def test_vote_rules(chain: Chain) -> None:
    pid = open_proposal(chain)
    outs = chain.run(
        vote(chain, "seoul-general-admin", pid),  # the proposer's organisation already voted
        vote(chain, "dr-kim", pid),  # not an administrator
        vote(chain, "hanbit-pharmacy-admin", "0123456789abcdef"),  # no such proposal
        vote(chain, "hanbit-pharmacy-admin", "../orgs"),  # not a proposal id at all
        vote(chain, "hanbit-pharmacy-admin", pid, approve="yes"),  # not a boolean
        vote(chain, "hanbit-pharmacy-admin", pid, approve=1),  # not a boolean either
        vote(chain, "hanbit-pharmacy-admin", pid),  # fine
    )
    assert [o.code for o in outs] == [
        "already_voted", "unauthorized", "unknown_proposal", "unknown_proposal", "bad_args",
        "bad_args", "ok",
    ]  # fmt: skip
    assert chain.state(f"gov/{pid}")["votes"] == {"hanbit-pharmacy": True, "seoul-general": True}


def test_double_vote_is_rejected(chain: Chain) -> None:
    pid = open_proposal(chain)
    first = chain.run1(vote(chain, "nhis-payer-admin", pid, approve=False))
    assert first.ok
    again = chain.run1(vote(chain, "nhis-payer-admin", pid, approve=True))  # changing its mind
    assert again.code == "already_voted"
    assert chain.state(f"gov/{pid}")["votes"]["nhis-payer"] is False


def test_double_vote_in_one_block_is_rejected(chain: Chain) -> None:
    pid = open_proposal(chain)
    a, b = chain.run(vote(chain, "medipharm-admin", pid), vote(chain, "medipharm-admin", pid))
    assert a.height == b.height and (a.code, b.code) == ("ok", "already_voted")
    assert chain.state(f"gov/{pid}")["status"] == "open"  # 2 of 5: no majority yet
