"""Rules changed by governance: ``governance.propose@1`` action ``set_rules``.

On a sandbox (block times chosen freely) with four organisations (a majority is 3 yes): the
rules of a section change only when the vote passes, from that transaction on; what is proposed
is validated by the owning contract's validator; every refusal leaves the state unchanged.
The same path runs once on a live demo node (``test_set_rules_on_a_live_chain``).
"""

from __future__ import annotations

from typing import Any

import pytest
from test_rx_contracts import DAY, DR, PH, T0, World

from carechain.contracts import governance, identity, prescriptions
from carechain.contracts.prescriptions import DEFAULT_RULES, rules_of, validate_rules
from carechain.contracts.registry import ContractRegistry
from carechain.testing.chain_driver import Chain

ORGS = ("hanbit-pharmacy", "other-pharmacy", "seoul-general", "third-pharmacy")
SEOUL, HANBIT, OTHER, THIRD = (
    "seoul-general.admin",
    "hanbit-pharmacy.admin",
    "other-pharmacy.admin",
    "third-pharmacy.admin",
)
MORE_REFILLS = {"max_refills": {"II": 0, "III": 6, "IV": 5, "V": 11}}


class GovWorld(World):
    """The prescriptions sandbox with its four organisations indexed for votes."""

    def __init__(self) -> None:
        super().__init__()
        self.sb.state.put("gov/orgs", sorted(ORGS))

    def propose(self, args: dict[str, Any], *, by: str = SEOUL, time: int = T0 + DAY) -> str:
        return self.ok("governance.propose@1", by, args, time=time)

    def vote(self, pid: str, by: str, approve: bool = True, *, time: int = T0 + DAY) -> None:
        self.ok("governance.vote@1", by, {"approve": approve, "proposal": pid}, time=time)

    def state(self, key: str) -> Any:
        return self.sb.state.get(key)


def set_rules(rules: Any, section: str = "prescriptions", **extra: Any) -> dict[str, Any]:
    return {"action": "set_rules", "rules": rules, "section": section, **extra}


@pytest.fixture
def g() -> GovWorld:
    return GovWorld()


def test_rules_change_when_the_vote_passes_and_from_that_height(g: GovWorld) -> None:
    six = {"schedule": "III", "refills": 6}
    assert g.refused("prescriptions.issue@1", DR, _rx(**six), time=T0 + DAY) == "too_many_refills"
    pid = g.propose(set_rules(MORE_REFILLS))
    prop = g.state(f"gov/{pid}")
    assert prop["status"] == "open" and prop["section"] == "prescriptions"
    assert prop["rules"] == validate_rules(MORE_REFILLS)  # voters see the complete rules
    assert "org" not in prop and "effective" not in prop
    # still open (2 of 4 yes): the old rules apply
    g.vote(pid, HANBIT)
    assert g.state("rules/prescriptions") is None  # a sandbox: the defaults apply
    assert rules_of(g.sb.state)["max_refills"]["III"] == 5
    assert g.refused("prescriptions.issue@1", DR, _rx(**six), time=T0 + DAY) == "too_many_refills"
    g.vote(pid, OTHER)  # 3 of 4: passes
    passed_at = g.height
    prop = g.state(f"gov/{pid}")
    assert prop["status"] == "effected" and prop["effective"] == passed_at
    assert g.state("gov/rules/prescriptions") == [{"height": passed_at, "proposal": pid}]
    rules = g.state("rules/prescriptions")
    assert rules["max_refills"]["III"] == 6
    assert {k: v for k, v in rules.items() if k != "max_refills"} == {
        k: v for k, v in DEFAULT_RULES.items() if k != "max_refills"
    }
    rx = g.issue(**six)
    assert g.rx(rx)["refills"] == 6


def test_a_rejected_proposal_changes_nothing(g: GovWorld) -> None:
    before = g.state("rules/prescriptions")
    pid = g.propose(set_rules(MORE_REFILLS))
    g.vote(pid, HANBIT, approve=False)
    g.vote(pid, OTHER, approve=False)  # 2 no of 4: 3 yes can no longer happen
    assert g.state(f"gov/{pid}")["status"] == "rejected"
    assert g.state("rules/prescriptions") == before
    assert g.state("gov/rules/prescriptions") is None


def test_dispensing_reads_the_rules_in_force(g: GovWorld) -> None:
    """Early refill at 75 % of 10 days (day 7.5); after a vote raising it to 100 %, a refill on
    day 8 is early."""
    iv = {"schedule": "IV", "refills": 2, "medication": _alprazolam()}
    a, b = g.issue(**iv), g.issue(**iv)
    t1 = T0 + 2 * DAY
    g.dispense(a, 60, time=t1)
    g.dispense(b, 60, time=t1)
    g.dispense(a, 60, time=t1 + 8 * DAY)  # 8 days ≥ 7.5: due
    pid = g.propose(set_rules({"early_refill_percent": 100}), time=t1 + 8 * DAY)
    g.vote(pid, HANBIT, time=t1 + 8 * DAY)
    g.vote(pid, THIRD, time=t1 + 8 * DAY)
    assert g.refuse_dispense(b, 60, time=t1 + 8 * DAY) == "early_refill"
    g.dispense(b, 60, time=t1 + 10 * DAY)


def _toy_registry() -> ContractRegistry:
    """A registry with a section declared without a validator (genesis-only rules)."""
    registry = ContractRegistry()
    identity.register(registry)
    governance.register(registry)
    prescriptions.register(registry)
    registry.rule_section("toy")
    return registry


REFUSALS = {
    "unknown-section": (set_rules({}, section="nope"), "unknown_section"),
    "not-governed": (set_rules({}, section="toy"), "rules_not_governed"),
    "unknown-field": (set_rules({"nope": 1}), "invalid_rules"),
    "schedules-missing": (set_rules({"max_refills": {"II": 0}}), "invalid_rules"),
    "percent-over-100": (set_rules({"early_refill_percent": 101}), "invalid_rules"),
    "legal-basis-role": (set_rules({"pdmp": {"legal_basis_roles": ["clerk"]}}), "invalid_rules"),
    "rules-not-object": (set_rules([1, 2]), "bad_args"),
    "section-missing": ({"action": "set_rules", "rules": {}}, "bad_args"),
    "org-with-set-rules": (set_rules({}, org="medipharm"), "bad_args"),
    "section-with-admit": ({"action": "remove_org", "org": "x", "section": "y"}, "bad_args"),
}


@pytest.mark.parametrize("args,code", list(REFUSALS.values()), ids=list(REFUSALS))
def test_set_rules_refusals(g: GovWorld, args: dict[str, Any], code: str) -> None:
    g.sb._contracts = _toy_registry()
    assert g.refused("governance.propose@1", SEOUL, args, time=T0 + DAY) == code


def test_only_admins_propose_rules(g: GovWorld) -> None:
    assert g.refused("governance.propose@1", PH, set_rules({}), time=T0) == "unauthorized"


def test_the_registry_exposes_sections_and_validators() -> None:
    registry = _toy_registry()
    assert "prescriptions" in registry.rule_sections() and "toy" in registry.rule_sections()
    assert registry.rule_validator("prescriptions") is validate_rules
    assert registry.rule_validator("toy") is None
    assert registry.rule_validator("nope") is None


def test_set_rules_on_a_live_chain(chain: Chain) -> None:
    """Real transactions, one block each: proposal, votes of the founding organisations until
    a majority of the active ones; the rules change in the block of the passing vote."""
    orgs = chain.state("gov/orgs")
    proposer = chain.admin("seoul-general")
    args = set_rules({"pdmp": {"legal_basis_roles": ["pharmacist"]}})
    out = chain.run1(chain.tx("governance.propose@1", proposer[0], args, [proposer[1]]))
    assert out.ok, out.receipt
    pid = out.tx.tx_id.hex()[:16]
    yes = 1
    for org in ("hanbit-pharmacy", "nhis-payer", "medipharm", "mfds-regulator"):
        if chain.state(f"gov/{pid}")["status"] != "open":
            break
        sender, key = chain.admin(org)
        v = chain.run1(
            chain.tx("governance.vote@1", sender, {"approve": True, "proposal": pid}, [key])
        )
        assert v.ok, v.receipt
        yes += 1
        assert chain.state(f"gov/{pid}")["status"] == (
            "effected" if 2 * yes > len(orgs) else "open"
        )
    prop = chain.state(f"gov/{pid}")
    assert prop["status"] == "effected" and prop["effective"] == v.height
    assert chain.state("rules/prescriptions")["pdmp"]["legal_basis_roles"] == ["pharmacist"]
    chain.verify()


def _rx(**over: Any) -> dict[str, Any]:
    from test_rx_contracts import rx_args

    return rx_args(**over)


def _alprazolam() -> dict[str, str]:
    return {"rxnorm": "308048", "name": "alprazolam", "strength": "0.5 mg", "form": "tablet"}
