"""Governance on the five-organisation demo consortium: majority votes of org admins."""

from __future__ import annotations

from typing import Any

import pytest

from carechain.crypto.signatures import PrivateKey, generate_key
from carechain.errors import ConfigurationError, UnavailableError
from carechain.ledger.tx import SignedTx
from carechain.testing.chain_driver import ORGS, Chain, pub


def propose(chain: Chain, org: str, args: dict[str, Any]) -> SignedTx:
    sender, key = chain.admin(org)
    return chain.tx("governance.propose@1", sender, args, [key])


def vote(chain: Chain, org: str, pid: str, approve: bool) -> SignedTx:
    sender, key = chain.admin(org)
    return chain.tx("governance.vote@1", sender, {"approve": approve, "proposal": pid}, [key])


def admission(org_id: str = "busan-clinic") -> tuple[dict[str, Any], PrivateKey]:
    key = generate_key()
    org = {
        "admins": [{"account": f"{org_id}.admin", "keys": [pub(key)]}],
        "id": org_id,
        "name": "Busan Clinic",
        "roles": ["clinic", "laboratory"],
    }
    return {"action": "admit_org", "org": org}, key


def run_proposal(
    chain: Chain, args: dict[str, Any], votes: list[tuple[str, bool]]
) -> tuple[str, list[str]]:
    """seoul-general proposes; the others vote one block at a time; returns the statuses."""
    out = chain.run1(propose(chain, "seoul-general", args))
    assert out.ok, out.receipt
    pid = out.tx.tx_id.hex()[:16]
    statuses = [chain.state(f"gov/{pid}")["status"]]
    for org, approve in votes:
        v = chain.run1(vote(chain, org, pid, approve))
        assert v.ok, v.receipt
        statuses.append(chain.state(f"gov/{pid}")["status"])
        if statuses[-1] != "open":
            assert v.events == ["governance.voted", f"governance.{statuses[-1]}"]
    return pid, statuses


H, N, M, R = "hanbit-pharmacy", "nhis-payer", "medipharm", "mfds-regulator"
VOTE_SEQUENCES = {
    # 5 active organisations: a majority is 3 yes (the proposer's included)
    "two-yes": ([(H, True), (N, True)], ["open", "open", "effected"]),
    "no-yes-yes": ([(H, False), (N, True), (M, True)], ["open", "open", "open", "effected"]),
    "three-no": ([(H, False), (N, False), (M, False)], ["open", "open", "open", "rejected"]),
    "split-then-no": (
        [(H, False), (N, True), (M, False), (R, False)],
        ["open", "open", "open", "open", "rejected"],
    ),
    "split-then-yes": (
        [(H, False), (N, True), (M, False), (R, True)],
        ["open", "open", "open", "open", "effected"],
    ),
}


@pytest.mark.parametrize("votes,want", list(VOTE_SEQUENCES.values()), ids=list(VOTE_SEQUENCES))
def test_admission_by_majority(
    chain: Chain, votes: list[tuple[str, bool]], want: list[str]
) -> None:
    args, new_admin = admission()
    pid, statuses = run_proposal(chain, args, votes)
    assert statuses == want
    org = chain.state("org/busan-clinic")
    if want[-1] == "effected":
        assert org["status"] == "active" and org["roles"] == ["clinic", "laboratory"]
        assert chain.state("gov/orgs") == sorted([*ORGS, "busan-clinic"])
        assert chain.state("acct/busan-clinic.admin")["role"] == "admin"
        # the new organisation's admin acts from the next block on
        out = chain.run1(chain.tx("identity.register_member@1", "busan-clinic.admin", {
            "account": "busan-clinic.dr-jang", "keys": [pub(generate_key())],
            "org": "busan-clinic", "role": "practitioner",
        }, [new_admin]))  # fmt: skip
        assert out.ok, out.receipt
    else:
        assert org is None and chain.state("acct/busan-clinic.admin") is None
        assert chain.state("gov/orgs") == sorted(ORGS)
    # a closed proposal takes no more votes
    voted = {o for o, _ in votes} | {"seoul-general"}
    late = next((o for o in ORGS if o not in voted), None)
    if late is not None:
        assert chain.run1(vote(chain, late, pid, True)).code == "proposal_closed"
    chain.verify()


def test_removed_organisations_admins_can_no_longer_act(chain: Chain) -> None:
    pending, _ = admission()
    out = chain.run1(propose(chain, "seoul-general", pending))  # stays open meanwhile
    pending_id = out.tx.tx_id.hex()[:16]
    assert chain.run1(vote(chain, M, pending_id, True)).ok  # medipharm's yes: 2 of 5
    _, statuses = run_proposal(chain, {"action": "remove_org", "org": M}, [(H, True), (R, True)])
    assert statuses[-1] == "effected"
    assert chain.state(f"org/{M}")["status"] == "removed"
    assert chain.state("gov/orgs") == sorted(o for o in ORGS if o != M)
    # medipharm's admin: refused for everything, with inactive_org
    member = chain.register_member(M, f"{M}.qa", generate_key())
    outs = chain.run(member, vote(chain, M, pending_id, False))
    assert [o.code for o in outs] == ["inactive_org", "inactive_org"]
    assert chain.state(f"acct/{M}.qa") is None
    # its earlier yes no longer counts: 4 active organisations, seoul + hanbit is not a majority
    assert chain.run1(vote(chain, H, pending_id, True)).ok
    assert chain.state(f"gov/{pending_id}")["status"] == "open"
    assert chain.run1(vote(chain, N, pending_id, True)).events[-1] == "governance.effected"
    chain.verify()


def test_a_removed_org_cannot_be_removed_again_nor_readmitted_by_id(chain: Chain) -> None:
    run_proposal(chain, {"action": "remove_org", "org": M}, [(H, True), (N, True)])
    again = chain.run1(propose(chain, "seoul-general", {"action": "remove_org", "org": M}))
    assert again.code == "inactive_org"
    readmit, _ = admission(M)
    assert chain.run1(propose(chain, "seoul-general", readmit)).code == "duplicate_org"


def test_removing_the_last_organisation_with_a_node_is_refused(chain: Chain) -> None:
    """seoul-general runs the demo's only node: removing it would leave nobody to seal."""
    height = chain.height()
    out = chain.run1(propose(chain, H, {"action": "remove_org", "org": "seoul-general"}))
    assert (out.ok, out.code) == (False, "last_node")
    assert chain.node.failed is None and chain.height() == height + 1
    chain.verify()


def test_a_node_whose_key_was_removed_stops_cleanly(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: should a contract ever remove the node's key (simulated by disabling
    the last-node rule), the node must not seal a block verify rejects."""
    import carechain.contracts.governance as governance

    monkeypatch.setattr(governance, "_require_another_node", lambda state, org_id: None)
    _, statuses = run_proposal(
        chain, {"action": "remove_org", "org": "seoul-general"}, [(H, True), (N, True)]
    )
    assert statuses[-1] == "effected"
    height, size = chain.height(), chain.node.store.log_size()
    tx = chain.register_member(H, f"{H}.tech", generate_key())
    (pending,) = chain.node.submit([tx.raw])
    with pytest.raises(UnavailableError):
        pending.future.result(timeout=10)
    assert isinstance(chain.node.failed, ConfigurationError)
    assert (chain.height(), chain.node.store.log_size()) == (height, size)
    with pytest.raises(UnavailableError):
        chain.node.submit([chain.register_member(H, f"{H}.tech2", generate_key()).raw])
    chain.verify()  # everything that was committed still verifies
