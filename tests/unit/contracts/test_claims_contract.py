"""The claims contract on a sandbox state: adjudication rule by rule (alone and combined), the
pricing arithmetic, payment, appeal, value-based bonuses, and every rejection (state unchanged).
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carechain.contracts.claims_adjudication import price
from carechain.encoding import b64u_encode
from carechain.errors import ContractError
from carechain.testing.chain_driver import Sandbox

DAY = 86_400_000
T0 = 1_780_000_000_000
"""Coverage start; the block time of the tests is T0 + 30 days."""
NOW = T0 + 30 * DAY
PAYER = "nhis-payer.admin"
DOC = "seoul-general.dr-kim"
PT, PT2 = "pt-aaaaaaaaaaaaaaaaaaaa", "pt-bbbbbbbbbbbbbbbbbbbb"
PLAN: dict[str, Any] = {
    "plan": "basic",
    "name": "Basic 2026",
    "currency": "KRW",
    "deductible": 10_000,
    "coinsurance_bp": 2_000,
    "services": [
        {"code": "consult", "allowed": 30_000},
        {"code": "mri", "allowed": 200_000, "prior_auth": True},
        {"code": "physio", "allowed": 20_000, "copay": 1_000, "limit": 2},
    ],
}


def digest(text: str = "claim") -> str:
    return b64u_encode(hashlib.sha256(text.encode()).digest())


class Claims:
    """A sandbox consortium: a hospital, a pharmacy, a payer, a laboratory, two patients, the
    plan ``basic``, coverage ``cov-a`` of PT and an Encounter ``enc-1`` of PT at Seoul General."""

    def __init__(self) -> None:
        self.sb = sb = Sandbox()
        self.n = 0
        for org, roles in (
            ("seoul-general", ["hospital"]),
            ("hanbit-pharmacy", ["pharmacy"]),
            ("nhis-payer", ["payer"]),
            ("other-payer", ["payer"]),
            ("korea-lab", ["laboratory"]),
        ):
            sb.state.put(
                f"org/{org}",
                {"id": org, "name": org, "roles": roles, "since": 0, "status": "active"},
            )
        sb.put_member(PAYER, "nhis-payer", "admin")
        sb.put_member("other-payer.admin", "other-payer", "admin")
        sb.put_member(DOC, "seoul-general", "practitioner")
        sb.put_member("hanbit-pharmacy.ph-lee", "hanbit-pharmacy", "pharmacist")
        sb.put_member("korea-lab.tech", "korea-lab", "lab_technician")
        sb.put_member("seoul-general.tech", "seoul-general", "lab_technician")
        sb.put_patient(PT)
        sb.put_patient(PT2)
        self.apply("claims.plan@1", PAYER, PLAN, time=T0)
        self.apply(
            "claims.enrol@1",
            PAYER,
            {
                "coverage": "cov-a",
                "plan": "basic",
                "patient": PT,
                "period": {"start": T0, "end": T0 + 365 * DAY},
            },
            time=T0,
        )
        self.anchor(DOC, "seoul-general", "Encounter", "enc-1", PT)

    def apply(self, kind: str, sender: str, args: dict[str, Any], *, time: int = NOW) -> str:
        self.n += 1
        return self.sb.apply(kind, sender, args, height=self.n, time=time)

    def anchor(
        self, by: str, org: str, rtype: str, rid: str, patient: str, *, time: int = NOW
    ) -> None:
        self.apply(
            "records.anchor@1",
            by,
            {
                "org": org,
                "type": rtype,
                "id": rid,
                "version": 1,
                "patient": patient,
                "url": f"https://{org}.example/fhir/{rtype}/{rid}",
                "digest": digest(rid),
                "index": digest(patient),
            },
            time=time,
        )

    def submit(self, *items: dict[str, Any], by: str = DOC, **over: Any) -> dict[str, Any]:
        args: dict[str, Any] = {
            "ref": f"c-{self.n}",
            "provider": "seoul-general",
            "patient": PT,
            "coverage": "cov-a",
            "encounter": {"org": "seoul-general", "id": "enc-1"},
            "items": [item(**i) for i in items] or [item()],
            "diagnoses": ["E11.9"],
            "digest": digest(f"claim-{self.n}"),
        }
        args.update(over)
        cid = self.apply("claims.submit@1", by, {k: v for k, v in args.items() if v is not None})
        return self.claim(cid)

    def claim(self, cid: str) -> dict[str, Any]:
        value = self.sb.state.get(f"claims/claim/{cid}")
        assert isinstance(value, dict)
        return value

    def refuse(self, code: str, kind: str, sender: str, args: dict[str, Any]) -> None:
        """The transaction is rejected with ``code`` and changes no state."""
        before = self.sb.state.writes()
        with pytest.raises(ContractError) as info:
            self.apply(kind, sender, args)
        assert info.value.code == code, info.value.message
        assert self.sb.state.writes() == before


def item(
    service: str = "consult",
    date: int = NOW - DAY,
    units: int = 1,
    charge: int = 35_000,
    **extra: Any,
) -> dict[str, Any]:
    return {"service": service, "date": date, "units": units, "charge": charge, **extra}


@pytest.fixture
def c() -> Claims:
    return Claims()


# -- adjudication, rule by rule ----------------------------------------------------------------

# (name, items, claim decision, per-item (decision, reasons))
ALONE: list[tuple[str, list[dict[str, Any]], str, list[tuple[str, list[str]]]]] = [
    ("approved", [{}], "approved", [("approved", [])]),
    ("uncovered service", [{"service": "dental"}], "denied", [("denied", ["not_covered"])]),
    ("before coverage", [{"date": T0 - DAY}], "denied", [("denied", ["not_eligible"])]),
    ("no prior auth", [{"service": "mri"}], "denied", [("denied", ["prior_auth_required"])]),
    (
        "unknown auth",
        [{"service": "mri", "auth": "0123456789abcdef"}],
        "denied",
        [("denied", ["prior_auth_required"])],
    ),
    ("over limit", [{"service": "physio", "units": 3}], "denied", [("denied", ["limit_exceeded"])]),
    ("at limit", [{"service": "physio", "units": 2}], "approved", [("approved", [])]),
    (
        "same service twice a day",
        [{}, {}],
        "partial",
        [("approved", []), ("denied", ["duplicate_service"])],
    ),
    (
        "same service two days",
        [{}, {"date": NOW - 2 * DAY}],
        "approved",
        [("approved", []), ("approved", [])],
    ),
    (
        "combined",
        [{"service": "dental", "date": T0 - DAY}, {"service": "physio", "units": 3}],
        "denied",
        [("denied", ["not_covered", "not_eligible"]), ("denied", ["limit_exceeded"])],
    ),
    (
        "mixed",
        [{}, {"service": "mri"}],
        "partial",
        [("approved", []), ("denied", ["prior_auth_required"])],
    ),
]


@pytest.mark.parametrize(("name", "items", "decision", "want"), ALONE, ids=[a[0] for a in ALONE])
def test_each_rule_alone_and_combined(
    c: Claims,
    name: str,
    items: list[dict[str, Any]],
    decision: str,
    want: list[tuple[str, list[str]]],
) -> None:
    claim = c.submit(*items)
    assert claim["decision"] == decision
    assert [(i["decision"], i["reasons"]) for i in claim["items"]] == want
    for i in claim["items"]:
        if i["decision"] == "denied":
            assert i["benefit"] == i["allowed"] == i["patient"] == 0


# (name, claim-level override, reason)
WHOLE: list[tuple[str, dict[str, Any], str]] = [
    (
        "encounter missing",
        {"encounter": {"org": "seoul-general", "id": "nope"}},
        "encounter_not_found",
    ),
    (
        "encounter of another provider",
        {"encounter": {"org": "hanbit-pharmacy", "id": "enc-1"}},
        "encounter_not_found",
    ),
    ("coverage missing", {"coverage": "cov-zz"}, "coverage_not_found"),
]


@pytest.mark.parametrize(("name", "over", "reason"), WHOLE, ids=[w[0] for w in WHOLE])
def test_claim_level_denials_deny_every_item(
    c: Claims, name: str, over: dict[str, Any], reason: str
) -> None:
    claim = c.submit({}, {"service": "physio"}, **over)
    assert claim["decision"] == "denied" and claim["reasons"] == [reason]
    assert {tuple(i["reasons"]) for i in claim["items"]} == {(reason,)}
    assert claim["totals"]["benefit"] == 0


def test_encounter_and_coverage_of_another_patient_deny(c: Claims) -> None:
    c.anchor(DOC, "seoul-general", "Encounter", "enc-2", PT2)
    assert c.submit(encounter={"org": "seoul-general", "id": "enc-2"})["reasons"] == [
        "encounter_not_found"
    ]
    c.apply(
        "claims.enrol@1",
        PAYER,
        {
            "coverage": "cov-b",
            "plan": "basic",
            "patient": PT2,
            "period": {"start": T0, "end": T0 + 365 * DAY},
        },
    )
    assert c.submit(coverage="cov-b")["reasons"] == ["coverage_not_found"]


def test_same_claim_again_and_duplicate_service_across_claims(c: Claims) -> None:
    first = c.submit(ref="inv-1")
    assert first["decision"] == "approved"
    again = c.submit(ref="inv-1")
    assert again["decision"] == "denied" and again["reasons"] == ["duplicate_claim"]
    twin = c.submit(ref="inv-2")
    assert twin["items"][0]["reasons"] == ["duplicate_service"]
    assert again["id"] != first["id"]  # recorded, as evidence


def test_a_denied_service_does_not_block_a_corrected_claim(c: Claims) -> None:
    assert c.submit(encounter={"org": "seoul-general", "id": "nope"})["decision"] == "denied"
    assert c.submit()["decision"] == "approved"


def test_prior_authorisation_is_consumed(c: Claims) -> None:
    pa = c.apply(
        "claims.authorize@1",
        PAYER,
        {
            "coverage": "cov-a",
            "service": "mri",
            "units": 1,
            "period": {"start": T0, "end": NOW + DAY},
        },
    )
    ok = c.submit({"service": "mri", "auth": pa, "charge": 250_000})
    assert ok["decision"] == "approved"
    assert c.sb.state.get(f"claims/pa/{pa}")["used"] == 1  # type: ignore[index]
    used_up = c.submit({"service": "mri", "auth": pa, "date": NOW - 2 * DAY})
    assert used_up["items"][0]["reasons"] == ["prior_auth_required"]
    late = c.apply(
        "claims.authorize@1",
        PAYER,
        {
            "coverage": "cov-a",
            "service": "mri",
            "units": 1,
            "period": {"start": NOW, "end": NOW + DAY},
        },
    )
    assert c.submit({"service": "mri", "auth": late, "date": NOW - 3 * DAY})["items"][0][
        "reasons"
    ] == ["prior_auth_required"]  # the service date is outside the authorisation


def test_pricing_deductible_coinsurance_and_accumulators(c: Claims) -> None:
    first = c.submit()["items"][0]
    # allowed min(35000, 30000); deductible 10000; rest 20000; 20 % coinsurance 4000
    assert {k: first[k] for k in ("allowed", "deductible", "copay", "benefit", "patient")} == {
        "allowed": 30_000,
        "deductible": 10_000,
        "copay": 4_000,
        "benefit": 16_000,
        "patient": 14_000,
    }
    second = c.submit({"date": NOW - 2 * DAY, "charge": 20_000})["items"][0]
    assert (second["deductible"], second["copay"], second["benefit"]) == (0, 4_000, 16_000)
    physio = c.submit({"service": "physio", "units": 2, "charge": 50_000})
    assert physio["items"][0]["copay"] == 1_000 + 40_000 * 2_000 // 10_000
    assert c.sb.state.get("claims/acc/cov-a") == {
        "deductible_met": 10_000,
        "units": {"consult": 2, "physio": 2},
    }
    assert c.submit({"service": "physio", "date": NOW - 5 * DAY})["items"][0]["reasons"] == [
        "limit_exceeded"
    ]


@settings(max_examples=200, deadline=None)
@given(
    allowed=st.integers(0, 10**6),
    copay=st.integers(0, 10**6),
    bp=st.integers(0, 10_000),
    deductible=st.integers(0, 10**6),
    met=st.integers(0, 10**6),
    charge=st.integers(0, 10**7),
    count=st.integers(1, 999),
)
def test_price_invariants(
    allowed: int, copay: int, bp: int, deductible: int, met: int, charge: int, count: int
) -> None:
    plan = {
        "deductible": deductible,
        "coinsurance_bp": bp,
        "services": {"s": {"allowed": allowed, "copay": copay, "prior_auth": False}},
    }
    acc: dict[str, Any] = {"deductible_met": met, "units": {}}
    p = price(plan, acc, "s", charge, count)
    assert 0 <= p["allowed"] <= min(charge, allowed * count)
    assert p["benefit"] + p["patient"] == p["allowed"]
    assert min(p.values()) >= 0
    assert acc["deductible_met"] == met + p["deductible"]
    assert acc["deductible_met"] <= max(deductible, met)
    assert all(isinstance(v, int) for v in p.values())


def test_price_negative_control() -> None:
    """The invariant check above can fail: a benefit computed without the copay breaks it."""
    plan = {
        "deductible": 0,
        "coinsurance_bp": 5_000,
        "services": {"s": {"allowed": 100, "copay": 0, "prior_auth": False}},
    }
    p = price(plan, {"deductible_met": 0, "units": {}}, "s", 100, 1)
    broken = {**p, "benefit": p["allowed"]}
    assert broken["benefit"] + broken["patient"] != broken["allowed"]


# -- payment and appeal ------------------------------------------------------------------------


def test_payment_then_appeal_overturned_then_payment(c: Claims) -> None:
    claim = c.submit({}, {"service": "mri", "charge": 250_000})
    assert claim["decision"] == "partial" and claim["totals"]["benefit"] == 16_000
    c.apply("claims.pay@1", PAYER, {"claim": claim["id"], "amount": 16_000, "reference": "w-1"})
    assert c.claim(claim["id"])["paid"] == 16_000
    c.anchor(DOC, "seoul-general", "DocumentReference", "doc-1", PT)
    doc = {"org": "seoul-general", "type": "DocumentReference", "id": "doc-1"}
    c.apply(
        "claims.appeal@1", DOC, {"claim": claim["id"], "reason": "urgent MRI", "documentation": doc}
    )
    assert c.claim(claim["id"])["appeal"]["status"] == "open"
    c.apply(
        "claims.decide_appeal@1",
        PAYER,
        {"claim": claim["id"], "decision": "overturned", "reason": "documented emergency"},
    )
    after = c.claim(claim["id"])
    assert after["decision"] == "approved" and after["appeal"]["status"] == "overturned"
    mri = after["items"][1]
    assert mri["overturned"] is True and mri["benefit"] == 160_000
    c.apply("claims.pay@1", PAYER, {"claim": claim["id"], "amount": 160_000})
    assert c.claim(claim["id"])["paid"] == 176_000


def test_appeal_upheld_keeps_the_denial(c: Claims) -> None:
    claim = c.submit({"service": "dental"})
    c.anchor(DOC, "seoul-general", "DocumentReference", "doc-1", PT)
    doc = {"org": "seoul-general", "type": "DocumentReference", "id": "doc-1"}
    c.apply("claims.appeal@1", DOC, {"claim": claim["id"], "reason": "r", "documentation": doc})
    c.apply(
        "claims.decide_appeal@1",
        PAYER,
        {"claim": claim["id"], "decision": "upheld", "reason": "not a benefit"},
    )
    after = c.claim(claim["id"])
    assert after["decision"] == "denied" and after["appeal"]["status"] == "upheld"


# -- value-based agreement ---------------------------------------------------------------------

VBA = {
    "agreement": "dm-2026",
    "plan": "basic",
    "provider": "seoul-general",
    "measure": {"code": "4548-4", "below": 70, "unit": "pct-x10"},
    "window": {"start": T0, "end": T0 + 365 * DAY},
    "bonus": 50_000,
    "budget": 60_000,
}


def outcome(obs: str = "obs-1", result: str = "below", patient: str = PT, **over: Any) -> Any:
    return {
        "agreement": "dm-2026",
        "patient": patient,
        "code": "4548-4",
        "result": result,
        "observation": {"org": "korea-lab", "id": obs, "version": 1},
        **over,
    }


def test_bonus_paid_once_for_an_attributed_qualifying_outcome(c: Claims) -> None:
    c.apply("claims.agreement@1", PAYER, VBA)
    c.anchor("korea-lab.tech", "korea-lab", "Observation", "obs-0", PT)
    c.apply("claims.outcome@1", "korea-lab.tech", outcome("obs-0"))
    assert c.sb.state.get("claims/outcome/dm-2026/korea-lab/obs-0/1")["reason"] == (  # type: ignore[index]
        "not_attributed"
    )  # no claim of the provider for this patient yet
    c.submit()
    for obs, result, want in (
        ("obs-1", "not_below", "not_below"),
        ("obs-2", "below", "paid"),
        ("obs-3", "below", "already_paid"),
    ):
        c.anchor("korea-lab.tech", "korea-lab", "Observation", obs, PT)
        c.apply("claims.outcome@1", "korea-lab.tech", outcome(obs, result))
        got = c.sb.state.get(f"claims/outcome/dm-2026/korea-lab/{obs}/1")
        assert isinstance(got, dict) and got["reason"] == want
    vba = c.sb.state.get("claims/vba/dm-2026")
    assert isinstance(vba, dict) and (vba["paid"], vba["bonuses"]) == (50_000, 1)
    assert c.sb.state.get(f"claims/bonus/dm-2026/{PT}") is not None


def test_bonus_outside_window_and_budget(c: Claims) -> None:
    c.apply("claims.agreement@1", PAYER, {**VBA, "window": {"start": T0, "end": NOW - DAY}})
    c.submit()
    c.anchor("korea-lab.tech", "korea-lab", "Observation", "obs-1", PT)
    c.apply("claims.outcome@1", "korea-lab.tech", outcome())
    got = c.sb.state.get("claims/outcome/dm-2026/korea-lab/obs-1/1")
    assert isinstance(got, dict) and got["reason"] == "outside_window" and got["bonus"] == 0


# -- rejections: malformed or unauthorised (state unchanged) -----------------------------------

REJECT: list[tuple[str, str, str, str, dict[str, Any]]] = [
    ("plan by a doctor", "unauthorized", "claims.plan@1", DOC, {**PLAN, "plan": "p2"}),
    ("plan twice", "duplicate_plan", "claims.plan@1", PAYER, PLAN),
    ("plan float currency", "bad_args", "claims.plan@1", PAYER, {**PLAN, "currency": "won"}),
    (
        "plan coinsurance",
        "bad_args",
        "claims.plan@1",
        PAYER,
        {**PLAN, "plan": "p2", "coinsurance_bp": 10_001},
    ),
    (
        "plan repeated service",
        "bad_args",
        "claims.plan@1",
        PAYER,
        {**PLAN, "plan": "p2", "services": [{"code": "a", "allowed": 1}] * 2},
    ),
    (
        "enrol unknown plan",
        "unknown_plan",
        "claims.enrol@1",
        PAYER,
        {"coverage": "x", "plan": "nope", "patient": PT, "period": {"start": 1, "end": 2}},
    ),
    (
        "enrol by another payer",
        "unauthorized",
        "claims.enrol@1",
        "other-payer.admin",
        {"coverage": "x", "plan": "basic", "patient": PT2, "period": {"start": 1, "end": 2}},
    ),
    (
        "enrol a non-patient",
        "unknown_patient",
        "claims.enrol@1",
        PAYER,
        {"coverage": "x", "plan": "basic", "patient": DOC, "period": {"start": 1, "end": 2}},
    ),
    (
        "enrol twice",
        "duplicate_coverage",
        "claims.enrol@1",
        PAYER,
        {"coverage": "cov-a", "plan": "basic", "patient": PT2, "period": {"start": 1, "end": 2}},
    ),
    (
        "enrol overlapping",
        "overlapping_coverage",
        "claims.enrol@1",
        PAYER,
        {
            "coverage": "cov-c",
            "plan": "basic",
            "patient": PT,
            "period": {"start": T0 + DAY, "end": T0 + 2 * DAY},
        },
    ),
    (
        "enrol empty period",
        "bad_args",
        "claims.enrol@1",
        PAYER,
        {"coverage": "cov-c", "plan": "basic", "patient": PT2, "period": {"start": 2, "end": 2}},
    ),
    (
        "authorize unknown coverage",
        "unknown_coverage",
        "claims.authorize@1",
        PAYER,
        {"coverage": "nope", "service": "mri", "units": 1, "period": {"start": 1, "end": 2}},
    ),
    (
        "authorize by provider",
        "unauthorized",
        "claims.authorize@1",
        DOC,
        {"coverage": "cov-a", "service": "mri", "units": 1, "period": {"start": 1, "end": 2}},
    ),
    (
        "authorize uncovered",
        "not_covered",
        "claims.authorize@1",
        PAYER,
        {"coverage": "cov-a", "service": "dental", "units": 1, "period": {"start": 1, "end": 2}},
    ),
    (
        "agreement unknown plan",
        "unknown_plan",
        "claims.agreement@1",
        PAYER,
        {**VBA, "plan": "nope"},
    ),
    ("agreement by provider", "unauthorized", "claims.agreement@1", DOC, VBA),
    ("agreement bonus over budget", "bad_args", "claims.agreement@1", PAYER, {**VBA, "budget": 1}),
    (
        "agreement with a payer as provider",
        "bad_args",
        "claims.agreement@1",
        PAYER,
        {**VBA, "provider": "nhis-payer"},
    ),
    (
        "outcome unknown agreement",
        "unknown_agreement",
        "claims.outcome@1",
        "korea-lab.tech",
        outcome(),
    ),
]


@pytest.mark.parametrize(
    ("name", "code", "kind", "sender", "args"), REJECT, ids=[r[0] for r in REJECT]
)
def test_rejections(
    c: Claims, name: str, code: str, kind: str, sender: str, args: dict[str, Any]
) -> None:
    c.refuse(code, kind, sender, args)


def _submit_args(c: Claims, **over: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "ref": "r-1",
        "provider": "seoul-general",
        "patient": PT,
        "coverage": "cov-a",
        "encounter": {"org": "seoul-general", "id": "enc-1"},
        "items": [item()],
        "diagnoses": ["E11.9"],
        "digest": digest(),
    }
    args.update(over)
    return {k: v for k, v in args.items() if v is not None}


SUBMIT_REJECT: list[tuple[str, str, str, dict[str, Any]]] = [
    ("future service date", "bad_args", DOC, {"items": [item(date=NOW + DAY)]}),
    ("no items", "bad_args", DOC, {"items": []}),
    ("zero units", "bad_args", DOC, {"items": [item(units=0)]}),
    ("negative charge", "bad_args", DOC, {"items": [item(charge=-1)]}),
    ("float charge", "bad_args", DOC, {"items": [item(charge="1.5")]}),
    ("short digest", "bad_args", DOC, {"digest": b64u_encode(b"x" * 16)}),
    ("unknown field", "bad_args", DOC, {"note": "hello"}),
    ("no diagnoses", "bad_args", DOC, {"diagnoses": []}),
    ("free-text diagnosis", "bad_args", DOC, {"diagnoses": ["chest pain, severe"]}),
    ("pharmacist bills for the hospital", "unauthorized", "hanbit-pharmacy.ph-lee", {}),
    ("payer submits", "unauthorized", PAYER, {}),
    ("payer as provider", "unauthorized", PAYER, {"provider": "nhis-payer"}),
    ("unknown patient", "unknown_patient", DOC, {"patient": "pt-cccccccccccccccccccc"}),
]


@pytest.mark.parametrize(
    ("name", "code", "sender", "over"), SUBMIT_REJECT, ids=[r[0] for r in SUBMIT_REJECT]
)
def test_submit_rejections(c: Claims, name: str, code: str, sender: str, over: Any) -> None:
    c.refuse(code, "claims.submit@1", sender, _submit_args(c, **over))


def test_payment_rejections(c: Claims) -> None:
    c.refuse("unknown_claim", "claims.pay@1", PAYER, {"claim": "0" * 16, "amount": 1})
    denied = c.submit({"service": "dental"})
    c.refuse("nothing_to_pay", "claims.pay@1", PAYER, {"claim": denied["id"], "amount": 0})
    ok = c.submit()
    c.refuse(
        "unauthorized", "claims.pay@1", "other-payer.admin", {"claim": ok["id"], "amount": 16_000}
    )
    c.refuse("unauthorized", "claims.pay@1", DOC, {"claim": ok["id"], "amount": 16_000})
    c.refuse("amount_mismatch", "claims.pay@1", PAYER, {"claim": ok["id"], "amount": 15_999})
    c.apply("claims.pay@1", PAYER, {"claim": ok["id"], "amount": 16_000})
    c.refuse("nothing_to_pay", "claims.pay@1", PAYER, {"claim": ok["id"], "amount": 16_000})


def test_appeal_rejections(c: Claims) -> None:
    c.anchor(DOC, "seoul-general", "DocumentReference", "doc-1", PT)
    c.anchor(DOC, "seoul-general", "DocumentReference", "doc-2", PT2)
    doc = {"org": "seoul-general", "type": "DocumentReference", "id": "doc-1"}
    ok = c.submit()
    denied = c.submit({"service": "dental"})
    cid = denied["id"]
    a = {"claim": cid, "reason": "please", "documentation": doc}
    c.refuse("unknown_claim", "claims.appeal@1", DOC, {**a, "claim": "f" * 16})
    c.refuse("unauthorized", "claims.appeal@1", "hanbit-pharmacy.ph-lee", a)
    c.refuse("unauthorized", "claims.appeal@1", PAYER, a)
    c.refuse("nothing_to_appeal", "claims.appeal@1", DOC, {**a, "claim": ok["id"]})
    c.refuse("unknown_record", "claims.appeal@1", DOC, {**a, "documentation": {**doc, "id": "x"}})
    c.refuse(
        "patient_mismatch", "claims.appeal@1", DOC, {**a, "documentation": {**doc, "id": "doc-2"}}
    )
    c.refuse("bad_args", "claims.appeal@1", DOC, {**a, "documentation": {"org": "x"}})
    d = {"claim": cid, "decision": "overturned", "reason": "ok"}
    c.refuse("no_open_appeal", "claims.decide_appeal@1", PAYER, d)
    c.apply("claims.appeal@1", DOC, a)
    c.refuse("already_appealed", "claims.appeal@1", DOC, a)
    c.refuse("unauthorized", "claims.decide_appeal@1", DOC, d)
    c.refuse("unauthorized", "claims.decide_appeal@1", "other-payer.admin", d)
    c.refuse("bad_args", "claims.decide_appeal@1", PAYER, {**d, "decision": "maybe"})
    c.refuse("bad_args", "claims.decide_appeal@1", PAYER, {**d, "items": [7]})
    c.refuse("cannot_overturn", "claims.decide_appeal@1", PAYER, d)  # dental is not in the plan


def test_outcome_rejections(c: Claims) -> None:
    c.apply("claims.agreement@1", PAYER, VBA)
    c.refuse("duplicate_agreement", "claims.agreement@1", PAYER, VBA)
    c.anchor("korea-lab.tech", "korea-lab", "Observation", "obs-1", PT)
    c.anchor("seoul-general.tech", "seoul-general", "Observation", "obs-h", PT)
    lab = "korea-lab.tech"
    c.refuse("unauthorized", "claims.outcome@1", DOC, outcome())
    c.refuse(
        "unauthorized",
        "claims.outcome@1",
        "seoul-general.tech",
        outcome(observation={"org": "seoul-general", "id": "obs-h", "version": 1}),
    )
    c.refuse("unknown_record", "claims.outcome@1", lab, outcome("obs-9"))
    c.refuse(
        "unknown_record",
        "claims.outcome@1",
        lab,
        outcome(observation={"org": "korea-lab", "id": "obs-1", "version": 2}),
    )
    c.refuse("patient_mismatch", "claims.outcome@1", lab, outcome(patient=PT2))
    c.refuse("wrong_measure", "claims.outcome@1", lab, outcome(code="2345-7"))
    c.refuse("bad_args", "claims.outcome@1", lab, outcome(result="6.4%"))
    c.apply("claims.outcome@1", lab, outcome())
    c.refuse("duplicate_outcome", "claims.outcome@1", lab, outcome())


def test_claim_on_another_patients_coverage_reaches_that_payer_but_cannot_be_overturned(
    c: Claims,
) -> None:
    c.apply(
        "claims.enrol@1",
        PAYER,
        {
            "coverage": "cov-b",
            "plan": "basic",
            "patient": PT2,
            "period": {"start": T0, "end": T0 + 365 * DAY},
        },
    )
    claim = c.submit(coverage="cov-b")
    assert claim["reasons"] == ["coverage_not_found"] and claim["payer"] == "nhis-payer"
    assert c.sb.state.get("claims/acc/cov-b") is None  # no accumulator moved
    c.anchor(DOC, "seoul-general", "DocumentReference", "doc-1", PT)
    c.apply(
        "claims.appeal@1",
        DOC,
        {
            "claim": claim["id"],
            "reason": "typo",
            "documentation": {"org": "seoul-general", "type": "DocumentReference", "id": "doc-1"},
        },
    )
    c.refuse(
        "cannot_overturn",
        "claims.decide_appeal@1",
        PAYER,
        {"claim": claim["id"], "decision": "overturned", "reason": "ok"},
    )
