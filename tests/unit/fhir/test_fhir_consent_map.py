"""Consent ↔ consent.grant@1: the official R5 examples map or are refused precisely."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from fhir.resources import get_fhir_model_class
from fhir_vectors import R4_DIR, R5_DIR, load

from carechain.contracts.consent import PURPOSES
from carechain.encoding import MAX_SAFE_INT
from carechain.errors import NotFoundError
from carechain.fhir import FhirValidationError, consent_to_grant, grant_to_consent

GRANTEES = {
    "Practitioner/f204": {"account": "dr-carla"},
    "Practitioner/f007": {"account": "dr-simone"},
    "Organization/f001": {"org": "hosp-a"},
    "Organization/f201": {"org": "hosp-b"},
    "Organization/f203": {"org": "hosp-c"},
}


def resolve(reference: str) -> Mapping[str, str]:
    if reference not in GRANTEES:
        raise NotFoundError(f"no ledger account for {reference}")
    return GRANTEES[reference]


ALL = ["read", "write"]
# example → expected grant args, or the location of the refusal
TABLE: dict[str, dict[str, Any] | str] = {
    "Consent-consent-example-CDA.json": "Consent.provision[0].provision",  # nested exception
    "Consent-consent-example-Emergency.json": "Consent.provision[0].provision",  # nested
    "Consent-consent-example-Out.json": {
        "grantee": {"org": "hosp-a"},
        "actions": ALL,  # no provision.action: every action
        "scope": {},
        "decision": "permit",
    },
    "Consent-consent-example-basic.json": "Consent.provision[0].actor",  # nobody named
    "Consent-consent-example-grantor.json": "Consent.grantor[0]",  # a representative grants
    "Consent-consent-example-notAuthor.json": {
        "grantee": {"org": "hosp-a"},
        "actions": ALL,
        "scope": {},
        "decision": "permit",
    },
    "Consent-consent-example-notOrg.json": {
        "grantee": {"org": "hosp-a"},
        "actions": ALL,  # access → read, correct → read + write
        "scope": {},
        "decision": "permit",
    },
    "Consent-consent-example-notThem.json": {
        "grantee": {"account": "dr-carla"},
        "actions": ALL,
        "scope": {},
        "decision": "permit",
    },
    "Consent-consent-example-notThis.json": "Consent.provision[0].data[0].meaning",  # related
    "Consent-consent-example-notTime.json": "Consent.provision[0].actor",  # nobody named
    "Consent-consent-example-pkb.json": "Consent.provision[0].provision",  # nested
    "Consent-consent-example-smartonfhir.json": "Consent.grantor[0]",  # RelatedPerson grants
}


UNRESTRICTED = {"purposes": list(PURPOSES), "period": {"start": 0, "end": MAX_SAFE_INT}}
"""What consent.grant@1 states for a Consent that restricts neither purpose nor period."""


def _validate_r5(resource: dict[str, Any]) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


@pytest.mark.parametrize("name,expected", sorted(TABLE.items()))
def test_official_examples(name: str, expected: dict[str, Any] | str) -> None:
    consent = load(R5_DIR / name)
    if isinstance(expected, str):
        with pytest.raises(FhirValidationError) as exc:
            consent_to_grant(consent, resolve_actor=resolve)
        assert exc.value.issues[0].location == expected, exc.value.issues
        assert exc.value.issues[0].message
        return
    args = consent_to_grant(consent, resolve_actor=resolve)
    assert args == {**UNRESTRICTED, **expected}
    back = grant_to_consent({**args, "id": "c" * 64}, patient_reference="Patient/f001")
    _validate_r5(back)
    assert consent_to_grant(back, resolve_actor=lambda r: _reverse_resolve(r)) == args


def _reverse_resolve(reference: str) -> Mapping[str, str]:
    kind, ident = reference.split("/")
    return {"account": ident} if kind == "Practitioner" else {"org": ident}


def test_every_example_is_in_the_table() -> None:
    assert {p.name for p in R5_DIR.glob("Consent-*.json")} == set(TABLE)


def _consent(**provision: Any) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "status": "active",
        "subject": {"reference": "Patient/p1"},
        "decision": "permit",
        "provision": [{"actor": [{"reference": {"reference": "Practitioner/f204"}}], **provision}],
    }


def test_full_provision() -> None:
    consent = _consent(
        action=[
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/consentaction",
                        "code": "access",
                    }
                ]
            }
        ],
        purpose=[
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"},
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "ETREAT"},
        ],
        period={"start": "2026-01-01", "end": "2026-01-31"},
        resourceType=[{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}],
        securityLabel=[{"code": "vital-signs"}],
        data=[{"meaning": "instance", "reference": {"reference": "Observation/o1"}}],
    )
    _validate_r5(consent)
    args = consent_to_grant(consent, resolve_actor=resolve, patient_reference="Patient/p1")
    assert args == {
        "grantee": {"account": "dr-carla"},
        "actions": ["read"],
        "scope": {
            "types": ["Observation"],
            "records": ["Observation/o1"],
            "categories": ["vital-signs"],
        },
        "purposes": ["ETREAT", "TREAT"],
        "period": {"start": 1767225600000, "end": 1769904000000},  # end exclusive: Feb 1st
        "decision": "permit",
    }
    back = grant_to_consent(
        {**args, "id": "a1", "status": "revoked", "granted": 1767225600000},
        patient_reference="Patient/p1",
        grantee_reference=lambda g: "Practitioner/f204",
    )
    _validate_r5(back)
    assert back["status"] == "inactive" and back["date"] == "2026-01-01"
    back["status"] = "active"
    assert consent_to_grant(back, resolve_actor=resolve) == args


def test_role_at_organisation() -> None:
    consent = _consent()
    consent["provision"][0]["actor"] = [
        {
            "role": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/practitioner-role",
                        "code": "pharmacist",
                    }
                ]
            },
            "reference": {"reference": "Organization/f001"},
        }
    ]
    args = consent_to_grant(consent, resolve_actor=resolve)
    assert args["grantee"] == {"org": "hosp-a", "role": "pharmacist"}
    back = grant_to_consent(
        {**args, "id": "x"},
        patient_reference="Patient/p1",
        grantee_reference=lambda g: "Organization/f001",
    )
    _validate_r5(back)
    assert consent_to_grant(back, resolve_actor=resolve)["grantee"] == args["grantee"]


def test_period_from_consent_and_datetimes() -> None:
    consent = _consent(
        period={"start": "2026-01-01T10:00:00+01:00", "end": "2026-01-01T10:00:00.250Z"}
    )
    args = consent_to_grant(consent, resolve_actor=resolve)
    assert args["period"] == {"start": 1767258000000, "end": 1767261600251}
    assert args["purposes"] == list(PURPOSES)
    consent = _consent()
    consent["period"] = {"start": "2026"}
    assert consent_to_grant(consent, resolve_actor=resolve)["period"] == {
        "start": 1767225600000,
        "end": MAX_SAFE_INT,
    }


def _refusal(consent: dict[str, Any], **kw: Any) -> str:
    with pytest.raises(FhirValidationError) as exc:
        consent_to_grant(consent, resolve_actor=resolve, **kw)
    return exc.value.issues[0].location


def test_refusals() -> None:
    assert _refusal({**_consent(), "status": "draft"}) == "Consent.status"
    assert _refusal({**_consent(), "subject": {"reference": "Group/1"}}) == "Consent.subject"
    assert _refusal(_consent(), patient_reference="Patient/other") == "Consent.subject"
    assert _refusal({k: v for k, v in _consent().items() if k != "decision"}) == "Consent.decision"
    two = _consent()
    two["provision"].append({"period": {"start": "2020"}})
    assert _refusal(two) == "Consent.provision"
    assert _refusal(_consent(code=[{"text": "x"}])) == "Consent.provision[0].code"
    assert _refusal(_consent(documentType=[{"code": "x"}])) == "Consent.provision[0].documentType"
    bad_action = [{"coding": [{"system": "http://example.org", "code": "access"}]}]
    assert _refusal(_consent(action=bad_action)) == "Consent.provision[0].action[0].coding[0]"
    assert (
        _refusal(_consent(purpose=[{"system": "http://x", "code": "TREAT"}]))
        == "Consent.provision[0].purpose[0]"
    )
    assert (
        _refusal(
            _consent(
                resourceType=[{"system": "http://hl7.org/fhir/resource-types", "code": "Claim"}]
            )
        )
        == "Consent.provision[0].resourceType[0]"
    )
    assert (
        _refusal(_consent(period={"start": "2026-02-01", "end": "2026-01-01"}))
        == "Consent.provision[0].period.end"
    )
    unknown = _consent()
    unknown["provision"][0]["actor"][0]["reference"]["reference"] = "Practitioner/nobody"
    assert _refusal(unknown) == "Consent.provision[0].actor[0].reference"
    role_only = _consent()
    role_only["provision"][0]["actor"] = [{"role": {"text": "any nurse"}}]
    assert _refusal(role_only) == "Consent.provision[0].actor[0].reference"
    r4 = load(R4_DIR / "Consent-consent-example-basic.json")
    assert _refusal(r4) == "Consent"
