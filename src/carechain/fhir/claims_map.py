"""FHIR R5 views of the claims contract's state: ``Coverage``, ``Claim`` and ``ClaimResponse``.

Read-only projections (ADR 0009): the chain keeps the adjudication; these functions render it
as R5 resources, each validated with ``fhir.resources`` before it is returned (a view that does
not validate is a bug, raised as ``AssertionError``). The full FHIR Claim a provider sent stays
off chain: the ``Claim`` view carries only what the chain holds (codes, dates, units, charges,
references) plus the keyed digest of the original as an identifier.

Mapping (ClaimResponse): the claim decision → ``outcome`` (``complete`` when every item is
decided; carechain adjudicates in the submitting transaction, so never ``queued``) and
``decision`` (claim-decision: approved, denied, partial); per item → ``reviewOutcome.decision``
and its reasons (:data:`REASON_SYSTEM`), ``adjudication`` (adjudication categories
``submitted``, ``eligible``, ``deductible``, ``copay``, ``benefit``); totals → ``total``;
payments → ``payment``. Amounts are integer minor units on chain; ``Money.value`` divides by the
currency's minor-unit exponent (:data:`CURRENCY_EXPONENTS`, default 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from fhir.resources import get_fhir_model_class

from carechain.fhir._time import ms_to_date, ms_to_instant

REASON_SYSTEM = "https://carechain.dev/CodeSystem/claims-reason"
"""carechain's adjudication reason codes (``not_covered``, ``duplicate_service`` …)."""
SERVICE_SYSTEM = "https://carechain.dev/CodeSystem/claims-service"
"""The plan's service codes (a deployment maps them to its national fee schedule)."""
ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10"
ADJUDICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/adjudication"
DECISION_SYSTEM = "http://terminology.hl7.org/CodeSystem/claim-decision"
CLAIM_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/claim-type"
COVERAGE_CLASS_SYSTEM = "http://terminology.hl7.org/CodeSystem/coverage-class"
PRIORITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/processpriority"
PAYMENT_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/ex-paymenttype"
REF_SYSTEM = "urn:carechain:claim-ref:"
DIGEST_SYSTEM = "urn:carechain:claim-digest"
CURRENCY_EXPONENTS = {"JPY": 0, "KRW": 0, "VND": 0}
"""ISO 4217 minor-unit exponents that are not 2."""
_CATEGORIES = (("submitted", "charge"), ("eligible", "allowed"), ("deductible", "deductible"),
               ("copay", "copay"), ("benefit", "benefit"))  # fmt: skip


def money(minor: int, currency: str) -> dict[str, Any]:
    """A FHIR Money from an integer amount in minor units."""
    exp = CURRENCY_EXPONENTS.get(currency, 2)
    value: int | Decimal = minor if exp == 0 else Decimal(minor).scaleb(-exp)
    return {"currency": currency, "value": value}


def _concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"code": code, "system": system}]}


def _validated(resource: dict[str, Any]) -> dict[str, Any]:
    model = get_fhir_model_class(resource["resourceType"])
    try:
        model.model_validate(resource)
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        raise AssertionError(
            f"claims_map built an invalid {resource['resourceType']}: {exc}"
        ) from exc
    return resource


def coverage_resource(cov: Mapping[str, Any], plan: Mapping[str, Any] | None) -> dict[str, Any]:
    """``claims/cov/<id>`` (and its plan) → R5 Coverage."""
    period = cov["period"]
    res: dict[str, Any] = {
        "resourceType": "Coverage", "id": cov["id"], "status": "active", "kind": "insurance",
        "beneficiary": {"reference": f"Patient/{cov['patient']}"},
        "insurer": {"reference": f"Organization/{cov['payer']}"},
        "period": {"start": ms_to_instant(int(period["start"])),
                   "end": ms_to_instant(int(period["end"]) - 1)},
        "class": [{"type": _concept(COVERAGE_CLASS_SYSTEM, "plan"),
                   "value": {"value": cov["plan"]},
                   **({"name": plan["name"]} if plan is not None else {})}],
    }  # fmt: skip
    return _validated(res)


def _currency(plan: Mapping[str, Any] | None) -> str:
    return str(plan["currency"]) if plan is not None else "XXX"


def claim_resource(claim: Mapping[str, Any], plan: Mapping[str, Any] | None) -> dict[str, Any]:
    """``claims/claim/<id>`` → R5 Claim (what the chain holds of the provider's claim)."""
    cur = _currency(plan)
    res: dict[str, Any] = {
        "resourceType": "Claim", "id": claim["id"], "status": "active",
        "type": _concept(CLAIM_TYPE_SYSTEM, "professional"), "use": "claim",
        "identifier": [{"system": f"{REF_SYSTEM}{claim['provider']}", "value": claim["ref"]},
                       {"system": DIGEST_SYSTEM, "value": claim["digest"]}],
        "patient": {"reference": f"Patient/{claim['patient']}"},
        "created": ms_to_instant(int(claim["time"])),
        "provider": {"reference": f"Organization/{claim['provider']}"},
        "enterer": {"reference": f"Practitioner/{claim['submitter']}"},
        "priority": _concept(PRIORITY_SYSTEM, "normal"),
        "encounter": [{"reference": f"Encounter/{claim['encounter']['id']}"}],
        "insurance": [{"sequence": 1, "focal": True,
                       "coverage": {"reference": f"Coverage/{claim['coverage']}"}}],
        "diagnosis": [{"sequence": n, "diagnosisCodeableConcept": _concept(ICD10_SYSTEM, code)}
                      for n, code in enumerate(claim["diagnoses"], 1)],
        "item": [{"sequence": i["seq"],
                  "productOrService": _concept(SERVICE_SYSTEM, i["service"]),
                  "servicedDate": ms_to_date(int(i["date"])),
                  "quantity": {"value": i["units"]}, "net": money(int(i["charge"]), cur)}
                 for i in claim["items"]],
        "total": money(int(claim["totals"]["charge"]), cur),
    }  # fmt: skip
    if "payer" in claim:
        res["insurer"] = {"reference": f"Organization/{claim['payer']}"}
    return _validated(res)


def _item(item: Mapping[str, Any], cur: str) -> dict[str, Any]:
    decision = str(item["decision"])
    reasons = [_concept(REASON_SYSTEM, r) for r in item["reasons"]]
    if item.get("overturned"):
        reasons.append(_concept(REASON_SYSTEM, "overturned_on_appeal"))
    review: dict[str, Any] = {"decision": _concept(DECISION_SYSTEM, decision)}
    if reasons:
        review["reason"] = reasons
    adjudication = [
        {"category": _concept(ADJUDICATION_SYSTEM, category), "amount": money(int(item[f]), cur)}
        for category, f in _CATEGORIES
    ]
    return {"itemSequence": item["seq"], "reviewOutcome": review, "adjudication": adjudication}


def claim_response_resource(
    claim: Mapping[str, Any], plan: Mapping[str, Any] | None
) -> dict[str, Any]:
    """``claims/claim/<id>`` → R5 ClaimResponse (the on-chain adjudication)."""
    cur = _currency(plan)
    totals = claim["totals"]
    res: dict[str, Any] = {
        "resourceType": "ClaimResponse", "id": claim["id"], "status": "active",
        "type": _concept(CLAIM_TYPE_SYSTEM, "professional"), "use": "claim",
        "patient": {"reference": f"Patient/{claim['patient']}"},
        "created": ms_to_instant(int(claim["time"])),
        "requestor": {"reference": f"Organization/{claim['provider']}"},
        "request": {"reference": f"Claim/{claim['id']}"},
        "outcome": "complete", "decision": _concept(DECISION_SYSTEM, str(claim["decision"])),
        "item": [_item(i, cur) for i in claim["items"]],
        "total": [{"category": _concept(ADJUDICATION_SYSTEM, cat),
                   "amount": money(int(totals[key]), cur)}
                  for cat, key in (("submitted", "charge"), ("eligible", "allowed"),
                                   ("benefit", "benefit"))],
    }  # fmt: skip
    if "payer" in claim:
        res["insurer"] = {"reference": f"Organization/{claim['payer']}"}
    if claim["reasons"]:
        res["disposition"] = "denied: " + ", ".join(claim["reasons"])
    appeal = claim.get("appeal")
    if isinstance(appeal, Mapping):
        res["processNote"] = [{"number": 1, "type": _concept(
            "http://hl7.org/fhir/note-type", "display"),
            "text": f"appeal {appeal['status']}: {appeal['reason']}"}]  # fmt: skip
    payments = claim.get("payments") or []
    if payments:
        last = payments[-1]
        res["payment"] = {
            "type": _concept(PAYMENT_TYPE_SYSTEM, "complete" if int(claim["paid"]) >= int(
                totals["benefit"]) else "partial"),
            "date": ms_to_date(int(last["time"])),
            "amount": money(int(claim["paid"]), cur),
        }  # fmt: skip
        if "reference" in last:
            res["payment"]["identifier"] = {"value": last["reference"]}
    return _validated(res)


__all__ = [
    "REASON_SYSTEM",
    "claim_resource",
    "claim_response_resource",
    "coverage_resource",
    "money",
]
