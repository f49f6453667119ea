"""Claims through the HTTP API with the SDK (``ClaimsClient``) on the demo consortium.

The demo chain carries the plan ``nhis-basic`` of ``nhis-payer`` and coverages ``nhis-p1`` /
``nhis-p2`` of the demo patients (``node.claims.seed_claims_demo``). Every transaction goes
through ``POST /v1/transactions``; every adjudication is read back from ``/v1/claims`` and its
FHIR R5 ClaimResponse view. Table-driven: each adjudication rule alone and combined, each
rejection (a rejected receipt in a block, state unchanged), who may read, analytics.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from carechain.api import create_app
from carechain.client import Client
from carechain.client.claims import ClaimsClient, claim_digest, item
from carechain.errors import AuthenticationError, AuthorizationError, ContractError, NotFoundError
from carechain.fhir.claims_map import REASON_SYSTEM
from carechain.node.chaindir import InitResult
from carechain.node.claims import DEMO_PLAN
from carechain.node.node import Node, now_ms
from carechain.testing.chain_driver import Chain

DAY = 86_400_000
PROVIDER = "seoul-general"


class Parties:
    """The payer, a doctor, a pharmacist and the patients, each with their own SDK session."""

    def __init__(self, client: Client, chain: Chain) -> None:
        self.client, self.chain = client, chain
        self.payer = ClaimsClient(client, "nhis-payer.admin", chain.key("nhis-payer-admin"))
        self.doc = ClaimsClient(client, "seoul-general.dr-kim", chain.key("dr-kim"))
        self.ph = ClaimsClient(client, "hanbit-pharmacy.ph-lee", chain.key("ph-lee"))
        p1, k1 = chain.patient("patient-1")
        self.p1, self.pt1 = p1, ClaimsClient(client, p1, k1)
        self.p2 = chain.patient("patient-2")[0]
        self.n = 0

    def anchor(
        self, by: str, rtype: str, rid: str, patient: str = "patient-1", org: str = PROVIDER
    ) -> None:
        (res,) = self.client.submit(
            self.chain.anchor(by, org=org, type=rtype, id=rid, patient=patient)
        )
        assert res.ok, res

    def submit(
        self, *items: dict[str, Any], by: ClaimsClient | None = None, **over: Any
    ) -> dict[str, Any]:
        self.n += 1
        args: dict[str, Any] = {
            "ref": f"inv-{self.n}",
            "provider": PROVIDER,
            "patient": self.p1,
            "coverage": "nhis-p1",
            "encounter": (PROVIDER, "enc-1"),
            "items": list(items) or [line()],
            "diagnoses": ["E11.9"],
            "digest": claim_digest({"resourceType": "Claim", "n": self.n})[0],
        }
        args.update(over)
        return (by or self.doc).submit_claim(**args)


def line(
    service: str = "consult-outpatient",
    days_ago: int = 1,
    units: int = 1,
    charge: int = 20_000,
    auth: str | None = None,
) -> dict[str, Any]:
    return dict(item(service, now_ms() - days_ago * DAY, units, charge, auth))


@pytest.fixture
def http(demo_node: Node) -> Iterator[TestClient]:
    with TestClient(create_app(demo_node)) as tc:
        yield tc


@pytest.fixture
def parties(http: TestClient, demo_chain: InitResult, chain: Chain) -> Iterator[Parties]:
    client = Client("http://testserver", http=http, genesis=demo_chain.paths.genesis.read_bytes())
    p = Parties(client, chain)
    p.anchor("dr-kim", "Encounter", "enc-1")
    yield p


def reasons_of(response: dict[str, Any]) -> list[list[str]]:
    """Per item, the reason codes of the FHIR ClaimResponse view."""
    return [
        [
            c["coding"][0]["code"]
            for c in i["reviewOutcome"].get("reason", [])
            if c["coding"][0]["system"] == REASON_SYSTEM
        ]
        for i in response["item"]
    ]


# (name, items, decision, per-item reasons) — every rule alone, then combined
CASES: list[tuple[str, list[dict[str, Any]], str, list[list[str]]]] = [
    ("approved", [line()], "approved", [[]]),
    ("uncovered service", [line("acupuncture")], "denied", [["not_covered"]]),
    ("outside the coverage period", [line(days_ago=200)], "denied", [["not_eligible"]]),
    (
        "missing prior authorisation",
        [line("mri-brain", charge=400_000)],
        "denied",
        [["prior_auth_required"]],
    ),
    (
        "over the period limit",
        [line("hba1c-test", units=5, charge=40_000)],
        "denied",
        [["limit_exceeded"]],
    ),
    ("duplicate service, same day", [line(), line()], "partial", [[], ["duplicate_service"]]),
    (
        "combined on one item",
        [line("acupuncture", days_ago=200)],
        "denied",
        [["not_covered", "not_eligible"]],
    ),
    (
        "combined across items",
        [line(), line("mri-brain"), line("hba1c-test", units=5)],
        "partial",
        [[], ["prior_auth_required"], ["limit_exceeded"]],
    ),
]


@pytest.mark.parametrize(("name", "items", "decision", "want"), CASES, ids=[c[0] for c in CASES])
def test_adjudication_table(
    parties: Parties,
    name: str,
    items: list[dict[str, Any]],
    decision: str,
    want: list[list[str]],
) -> None:
    claim = parties.submit(*items)
    assert claim["decision"] == decision
    assert [i["reasons"] for i in claim["items"]] == want
    response = parties.payer.claim_response(claim["id"])
    assert response["resourceType"] == "ClaimResponse" and response["outcome"] == "complete"
    assert response["decision"]["coding"][0]["code"] == decision
    assert reasons_of(response) == want


def test_approved_claim_amounts_payment_and_fhir_views(parties: Parties) -> None:
    claim = parties.submit(line(charge=20_000))
    # allowed min(20000, 18000); deductible 10000; rest 8000 at 30 % coinsurance: 2400
    i = claim["items"][0]
    assert (i["allowed"], i["deductible"], i["copay"], i["benefit"]) == (
        18_000,
        10_000,
        2_400,
        5_600,
    )
    parties.payer.pay(claim["id"], 5_600, "wire-1")
    response = parties.doc.claim_response(claim["id"])
    assert response["payment"]["amount"] == {"currency": "KRW", "value": 5600}
    fhir_claim = parties.doc.claim_resource(claim["id"])
    assert fhir_claim["encounter"] == [{"reference": "Encounter/enc-1"}]
    assert fhir_claim["insurance"][0]["coverage"]["reference"] == "Coverage/nhis-p1"
    coverage = parties.pt1.coverage("nhis-p1")
    assert coverage["resourceType"] == "Coverage"
    assert coverage["beneficiary"]["reference"] == f"Patient/{parties.p1}"
    assert parties.doc.plan(DEMO_PLAN)["currency"] == "KRW"


def test_duplicate_and_missing_encounter_are_recorded_denials(parties: Parties) -> None:
    first = parties.submit(ref="inv-dup")
    again = parties.submit(ref="inv-dup")
    assert (first["decision"], again["decision"]) == ("approved", "denied")
    assert again["reasons"] == ["duplicate_claim"]
    lost = parties.submit(encounter=(PROVIDER, "no-such-encounter"), ref="inv-lost")
    assert lost["reasons"] == ["encounter_not_found"]
    other = parties.submit(coverage="nhis-p2", ref="inv-cov")
    assert other["reasons"] == ["coverage_not_found"]
    assert {c["id"] for c in parties.payer.claims(provider=PROVIDER)} >= {
        first["id"],
        again["id"],
        lost["id"],
        other["id"],
    }


def test_prior_authorisation_then_appeal_and_overturn(parties: Parties) -> None:
    now = now_ms()
    pa = parties.payer.authorize("nhis-p1", "mri-brain", 1, now - 3 * DAY, now + DAY)
    ok = parties.submit(line("mri-brain", charge=400_000, auth=pa))
    assert ok["decision"] == "approved" and ok["items"][0]["allowed"] == 350_000
    denied = parties.submit(line("mri-brain", days_ago=2, charge=400_000))
    assert denied["items"][0]["reasons"] == ["prior_auth_required"]
    parties.anchor("dr-kim", "DocumentReference", "mri-note-1")
    with pytest.raises(ContractError) as refused:
        parties.ph.appeal(denied["id"], "not mine", (PROVIDER, "DocumentReference", "mri-note-1"))
    assert refused.value.code == "unauthorized"  # appeal by someone else
    parties.doc.appeal(
        denied["id"], "emergency imaging", (PROVIDER, "DocumentReference", "mri-note-1")
    )
    parties.payer.decide_appeal(denied["id"], "overturned", "documented emergency")
    after = parties.payer.claim(denied["id"])
    assert after["decision"] == "approved" and after["appeal"]["status"] == "overturned"
    assert after["items"][0]["overturned"] is True


# (name, who, kind, args) — malformed or unauthorised: a rejected receipt, state unchanged
REJECTIONS: list[tuple[str, str, str, dict[str, Any], str]] = [
    (
        "plan by a provider",
        "doc",
        "claims.plan@1",
        {
            "plan": "x",
            "name": "x",
            "currency": "KRW",
            "deductible": 0,
            "services": [{"code": "a", "allowed": 1}],
        },
        "unauthorized",
    ),
    (
        "plan with a float amount",
        "payer",
        "claims.plan@1",
        {
            "plan": "x",
            "name": "x",
            "currency": "KRW",
            "deductible": 0,
            "services": [{"code": "a", "allowed": "1.5"}],
        },
        "bad_args",
    ),
    (
        "enrol in an unknown plan",
        "payer",
        "claims.enrol@1",
        {"coverage": "c-x", "plan": "nope", "patient": "P1", "period": {"start": 1, "end": 2}},
        "unknown_plan",
    ),
    (
        "enrol twice",
        "payer",
        "claims.enrol@1",
        {
            "coverage": "nhis-p1",
            "plan": DEMO_PLAN,
            "patient": "P1",
            "period": {"start": 1, "end": 2},
        },
        "duplicate_coverage",
    ),
    (
        "claim billed for another provider",
        "ph",
        "claims.submit@1",
        {"provider": PROVIDER},
        "unauthorized",
    ),
    ("claim with a future service", "doc", "claims.submit@1", {"future": True}, "bad_args"),
    (
        "pay an unknown claim",
        "payer",
        "claims.pay@1",
        {"claim": "0" * 16, "amount": 1},
        "unknown_claim",
    ),
    (
        "outcome for an unknown agreement",
        "doc",
        "claims.outcome@1",
        {
            "agreement": "nope",
            "patient": "P1",
            "code": "4548-4",
            "result": "below",
            "observation": {"org": PROVIDER, "id": "o", "version": 1},
        },
        "unknown_agreement",
    ),
]


@pytest.mark.parametrize(
    ("name", "who", "kind", "args", "code"), REJECTIONS, ids=[r[0] for r in REJECTIONS]
)
def test_rejections_are_receipts_and_change_nothing(
    parties: Parties,
    demo_node: Node,
    name: str,
    who: str,
    kind: str,
    args: dict[str, Any],
    code: str,
) -> None:
    actor: ClaimsClient = getattr(parties, who)
    if kind == "claims.submit@1":
        base = {
            "ref": "r-x",
            "provider": actor.sender.split(".")[0],
            "patient": parties.p1,
            "coverage": "nhis-p1",
            "encounter": {"org": PROVIDER, "id": "enc-1"},
            "items": [line(days_ago=-2 if args.pop("future", False) else 1)],
            "diagnoses": ["E11.9"],
            "digest": claim_digest({"n": 1})[0],
        }
        args = {**base, **args}
    args = {k: (parties.p1 if v == "P1" else v) for k, v in args.items()}
    before = dict(demo_node.store.iter_state("claims/"))
    result = actor.send(kind, args, check=False)
    assert (result.status, result.code) == ("rejected", code), result.message
    record = parties.client.get_tx(result.tx_id)
    assert record.receipt["status"] == "rejected" and record.receipt["code"] == code
    assert dict(demo_node.store.iter_state("claims/")) == before


def test_who_may_read(parties: Parties, http: TestClient) -> None:
    claim = parties.submit()
    assert parties.pt1.claim(claim["id"])["id"] == claim["id"]  # the patient
    assert parties.payer.claim(claim["id"])["id"] == claim["id"]  # the payer
    auditor = ClaimsClient(
        parties.client, "mfds-regulator.auditor-choi", parties.chain.key("auditor-choi")
    )
    assert auditor.claim(claim["id"])["id"] == claim["id"]  # oversight
    assert auditor.analytics(PROVIDER)["claims"] == 1
    with pytest.raises(AuthorizationError):
        parties.ph.claim(claim["id"])  # another provider
    with pytest.raises(AuthorizationError):
        parties.ph.coverage("nhis-p1")
    with pytest.raises(AuthorizationError):
        parties.pt1.analytics(PROVIDER)  # a patient does not see provider analytics
    with pytest.raises(NotFoundError):
        parties.payer.claim("f" * 16)
    assert parties.ph.claims() == []  # only what the caller may read
    assert http.get(f"/v1/claims/{claim['id']}").status_code == 401
    with pytest.raises(AuthenticationError):
        ClaimsClient(parties.client, "nhis-payer.admin", parties.chain.key("dr-kim")).claim("x")


def test_analytics_per_provider_against_peers(parties: Parties) -> None:
    parties.submit(ref="a-1")  # approved
    parties.submit(ref="a-1")  # the same claim again
    parties.submit(encounter=(PROVIDER, "none"), ref="a-2")  # no encounter
    parties.anchor("ph-lee", "Encounter", "enc-ph", org="hanbit-pharmacy")
    parties.submit(
        provider="hanbit-pharmacy",
        encounter=("hanbit-pharmacy", "enc-ph"),
        by=parties.ph,
        ref="ph-1",
    )
    a = parties.payer.analytics(PROVIDER)
    assert (a["claims"], a["denied"], a["duplicates"], a["without_encounter"]) == (3, 2, 1, 1)
    assert a["denial_rate"] == round(2 / 3, 4) and a["duplicate_rate"] == round(1 / 3, 4)
    assert a["peers"] == 1 and a["peer_mean_claims"] == 1 and a["volume_vs_peers"] == 3
    assert parties.doc.analytics(PROVIDER)["claims"] == 3  # the provider itself
    with pytest.raises(AuthorizationError):
        parties.doc.analytics("hanbit-pharmacy")  # not a peer's analytics


@pytest.fixture
def demo_chain(demo_chain_domains: InitResult) -> InitResult:
    """This module uses the domain demo data, as ``carechain init --demo`` seeds it."""
    return demo_chain_domains


def test_value_based_bonus_through_the_api(parties: Parties, chain: Chain) -> None:
    """A laboratory admitted by vote attests that a patient's HbA1c was below the agreement's
    threshold; the agreement pays its bonus once, through POST /v1/transactions (negative
    controls: an outcome above the threshold pays nothing, a second one is already_paid)."""
    from carechain.crypto.signatures import generate_key
    from carechain.testing.chain_driver import pub

    client = parties.client
    lab_admin, tech = generate_key(), generate_key()
    org = {"admins": [{"account": "korea-lab.admin", "keys": [pub(lab_admin)]}],
           "id": "korea-lab", "name": "Korea Lab (demo)", "roles": ["laboratory"]}  # fmt: skip
    propose = chain.tx(
        "governance.propose@1",
        "seoul-general.admin",
        {"action": "admit_org", "org": org},
        [chain.key("seoul-general-admin")],
    )
    (res,) = client.submit(propose)
    assert res.ok, res
    for voter in ("hanbit-pharmacy", "nhis-payer", "medipharm", "mfds-regulator"):
        if chain.state("org/korea-lab") is not None:
            break
        vote = chain.tx("governance.vote@1", f"{voter}.admin",
                        {"approve": True, "proposal": propose.tx_id.hex()[:16]},
                        [chain.key(f"{voter}-admin")])  # fmt: skip
        assert client.submit(vote)[0].ok
    assert chain.state("org/korea-lab") is not None
    member = chain.tx("identity.register_member@1", "korea-lab.admin",
                      {"account": "korea-lab.tech", "keys": [pub(tech)], "org": "korea-lab",
                       "role": "lab_technician"}, [lab_admin])  # fmt: skip
    assert client.submit(member)[0].ok
    now = now_ms()
    vba = {"agreement": "dm-demo", "plan": DEMO_PLAN, "provider": PROVIDER, "bonus": 50_000,
           "budget": 100_000, "measure": {"code": "4548-4", "below": 70, "unit": "pct-x10"},
           "window": {"start": now - DAY, "end": now + 365 * DAY}}  # fmt: skip
    assert client.submit(chain.tx("claims.agreement@1", "nhis-payer.admin", vba,
                                  [chain.key("nhis-payer-admin")]))[0].ok  # fmt: skip
    parties.submit()  # attribution: the provider billed this patient
    chain._actors["korea-lab.tech"] = ("korea-lab.tech", tech)
    reasons = []
    for obs, result in (("hba1c-1", "not_below"), ("hba1c-2", "below"), ("hba1c-3", "below")):
        parties.anchor("korea-lab.tech", "Observation", obs, org="korea-lab")
        attest = {
            "agreement": "dm-demo",
            "patient": parties.p1,
            "code": "4548-4",
            "result": result,
            "observation": {"org": "korea-lab", "id": obs, "version": 1},
        }
        assert client.submit(chain.tx("claims.outcome@1", "korea-lab.tech", attest, [tech]))[0].ok
        reasons.append(chain.state(f"claims/outcome/dm-demo/korea-lab/{obs}/1")["reason"])
    assert reasons == ["not_below", "paid", "already_paid"]
    agreement = parties.payer.agreement_state("dm-demo")
    assert (agreement["paid"], agreement["bonuses"]) == (50_000, 1)
