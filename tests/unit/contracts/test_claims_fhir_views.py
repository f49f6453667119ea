"""FHIR R5 views of claims state (``fhir/claims_map.py``): each validated by fhir.resources;
amounts in minor units become Money with the currency's exponent; a view that would not
validate is a bug (negative control)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from fhir.resources import get_fhir_model_class
from test_claims_contract import DOC, PAYER, Claims

from carechain.fhir import claims_map
from carechain.fhir.claims_map import (
    REASON_SYSTEM,
    claim_resource,
    claim_response_resource,
    coverage_resource,
    money,
)


@pytest.fixture
def c() -> Claims:
    return Claims()


def _plan(c: Claims) -> Any:
    return c.sb.state.get("claims/plan/basic")


def test_claim_response_carries_decisions_reasons_amounts_and_payment(c: Claims) -> None:
    claim = c.submit({}, {"service": "dental"})
    c.apply("claims.pay@1", PAYER, {"claim": claim["id"], "amount": 16_000, "reference": "w-7"})
    claim = c.claim(claim["id"])
    res = claim_response_resource(claim, _plan(c))
    get_fhir_model_class("ClaimResponse").model_validate(res)
    assert res["outcome"] == "complete" and res["decision"]["coding"][0]["code"] == "partial"
    first, second = res["item"]
    assert first["reviewOutcome"]["decision"]["coding"][0]["code"] == "approved"
    amounts = {
        a["category"]["coding"][0]["code"]: a["amount"]["value"] for a in first["adjudication"]
    }
    assert amounts == {
        "submitted": 35_000,
        "eligible": 30_000,
        "deductible": 10_000,
        "copay": 4_000,
        "benefit": 16_000,
    }
    assert second["reviewOutcome"]["reason"] == [
        {"coding": [{"code": "not_covered", "system": REASON_SYSTEM}]}
    ]
    assert res["payment"]["amount"] == {"currency": "KRW", "value": 16_000}
    assert res["payment"]["identifier"] == {"value": "w-7"}


def test_claim_and_coverage_views(c: Claims) -> None:
    claim = c.submit()
    res = claim_resource(claim, _plan(c))
    assert res["patient"]["reference"] == f"Patient/{claim['patient']}"
    assert res["insurer"]["reference"] == "Organization/nhis-payer"
    assert res["diagnosis"][0]["diagnosisCodeableConcept"]["coding"][0]["code"] == "E11.9"
    assert res["item"][0]["net"] == {"currency": "KRW", "value": 35_000}
    assert {"system": "urn:carechain:claim-digest", "value": claim["digest"]} in res["identifier"]
    cov = coverage_resource(c.sb.state.get("claims/cov/cov-a"), _plan(c))  # type: ignore[arg-type]
    assert cov["kind"] == "insurance" and cov["class"][0]["value"]["value"] == "basic"


def test_denied_claim_and_appeal_note(c: Claims) -> None:
    claim = c.submit(encounter={"org": "seoul-general", "id": "nope"})
    res = claim_response_resource(claim, _plan(c))
    assert res["disposition"] == "denied: encounter_not_found"
    c.anchor(DOC, "seoul-general", "DocumentReference", "d-1", claim["patient"])
    c.apply(
        "claims.appeal@1",
        DOC,
        {
            "claim": claim["id"],
            "reason": "it happened",
            "documentation": {"org": "seoul-general", "type": "DocumentReference", "id": "d-1"},
        },
    )
    res = claim_response_resource(c.claim(claim["id"]), _plan(c))
    assert res["processNote"][0]["text"] == "appeal open: it happened"


def test_money_exponents() -> None:
    assert money(12_345, "KRW") == {"currency": "KRW", "value": 12_345}
    assert money(12_345, "USD") == {"currency": "USD", "value": Decimal("123.45")}


def test_invalid_view_is_a_bug_negative_control() -> None:
    with pytest.raises(AssertionError, match="invalid ClaimResponse"):
        claims_map._validated({"resourceType": "ClaimResponse", "status": "nonsense"})
