"""parse_resource: official examples validate; bad input fails closed with precise issues."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fhir_vectors import R4_DIR, R5_DIR, example_files, load

from carechain.errors import LimitExceededError, NotFoundError, ValidationError
from carechain.fhir import (
    SUPPORTED_TYPES,
    FhirUnsupportedTypeError,
    FhirValidationError,
    parse_resource,
)

R5_EXAMPLES = example_files(R5_DIR)
R4_EXAMPLES = example_files(R4_DIR)

# R4 (4.0.1) examples the R5 model rejects, and the first reason; R4B accepts each of them.
R4_ONLY = {
    "AllergyIntolerance-nka.json": "AllergyIntolerance.recorder",  # R5: recorder moved
    "Condition-f201.json": "Condition.evidence[0].code",  # R5: evidence is CodeableReference
    "Consent-consent-example-basic.json": "Consent.provision",  # R5: provision is a list
    "DiagnosticReport-f201.json": "DiagnosticReport.imagingStudy",  # R5: renamed study
    "Encounter-f001.json": "Encounter.class",  # R5: class is a list
    "Immunization-historical.json": "Immunization.reportOrigin",  # R5: informationSource
    "Organization-f002.json": "Organization.contact[0].name",  # R5: ExtendedContactDetail
}
R4_ALSO_R5 = {"Binary-example.json", "Binary-f006.json", "Condition-example.json"}


def _bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


def _issues(exc: pytest.ExceptionInfo[FhirValidationError]) -> dict[str, str]:
    return {i.location: i.message for i in exc.value.issues}


def test_vectors_present() -> None:
    assert len(R5_EXAMPLES) == 84
    assert {p.name.split("-")[0] for p in R5_EXAMPLES} == {
        "AuditEvent",
        "Consent",
        "DocumentReference",
        "Encounter",
        "Observation",
        "Patient",
        "Provenance",
    }


@pytest.mark.parametrize("path", R5_EXAMPLES, ids=lambda p: p.name)
def test_every_r5_example_validates_as_r5(path: Path) -> None:
    raw = path.read_bytes()
    res = parse_resource(raw)
    assert res.fhir_version == "R5"
    assert res.resource_type in SUPPORTED_TYPES
    assert res.data == json.loads(raw)  # exactly as received: nothing added, nothing dropped
    assert res.id == res.data.get("id")
    assert parse_resource(raw, expected_type=res.resource_type).data == res.data


@pytest.mark.parametrize("path", R4_EXAMPLES, ids=lambda p: p.name)
def test_r4_examples_fall_back_to_r4b(path: Path) -> None:
    res = parse_resource(path.read_bytes())
    assert res.fhir_version == ("R5" if path.name in R4_ALSO_R5 else "R4B")
    assert res.data == load(path)


@pytest.mark.parametrize("name,location", sorted(R4_ONLY.items()))
def test_r5_model_rejects_r4_shapes(name: str, location: str) -> None:
    """Documents why the R5 model refuses these R4 examples (they pass as R4B)."""
    from carechain.fhir.validate import _validate_with

    data = load(R4_DIR / name)
    issues = _validate_with("R5", data["resourceType"], data)
    assert issues and issues[0].location == location
    assert _validate_with("R4B", data["resourceType"], data) == []


def test_library_does_not_check_required_bindings() -> None:
    """Known gap of fhir.resources: codes of required bindings are not checked."""
    res = parse_resource(_bytes({"resourceType": "Patient", "gender": "not-a-gender"}))
    assert res.fhir_version == "R5"


PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "1970-01-01"}


@pytest.mark.parametrize(
    "patch,location",
    [
        ({"birthDate": "1970-13-01"}, "Patient.birthDate"),  # bad date
        ({"birthDate": "1970-02-30"}, "Patient.birthDate"),  # impossible date
        ({"favouriteColour": "blue"}, "Patient.favouriteColour"),  # unknown element
        ({"name": [{"family": 5}]}, "Patient.name[0].family"),  # wrong type
        ({"name": {"family": "x"}}, "Patient.name"),  # object where a list is due
        ({"active": "yes"}, "Patient.active"),  # string for a boolean (pydantic would coerce)
        ({"active": 1}, "Patient.active"),
        ({"multipleBirthInteger": "2"}, "Patient.multipleBirthInteger"),
        ({"id": "has space"}, "Patient.id"),
        ({"meta": {"lastUpdated": "yesterday"}}, "Patient.meta.lastUpdated"),
        ({"name": []}, "Patient.name"),  # empty array
        ({"name": [{}]}, "Patient.name[0]"),  # empty object
        ({"gender": ""}, "Patient.gender"),  # empty string
        ({"gender": None}, "Patient.gender"),  # null
        ({"_birthDate": {"extension": [{"url": "http://x", "valueFoo": 1}]}}, None),
    ],
)
def test_invalid_resources_list_issues(patch: dict[str, Any], location: str | None) -> None:
    with pytest.raises(FhirValidationError) as exc:
        parse_resource(_bytes({**PATIENT, **patch}))
    assert isinstance(exc.value, ValidationError) and exc.value.code == "fhir_invalid"
    assert exc.value.issues
    if location is not None:
        assert location in _issues(exc), _issues(exc)


def test_missing_required_elements() -> None:
    with pytest.raises(FhirValidationError) as exc:
        parse_resource(_bytes({"resourceType": "Observation", "code": {"text": "x"}}))
    assert "Observation.status" in _issues(exc)
    issue = next(i for i in exc.value.issues if i.location == "Observation.status")
    assert issue.code == "required"


def test_many_issues_are_all_reported() -> None:
    bad = {**PATIENT, "birthDate": "x", "foo": 1, "active": "yes", "name": [{"family": 5}]}
    with pytest.raises(FhirValidationError) as exc:
        parse_resource(_bytes(bad))
    assert {"Patient.birthDate", "Patient.foo", "Patient.name[0].family"} <= set(_issues(exc))


def test_wrong_resource_type_for_endpoint() -> None:
    with pytest.raises(FhirValidationError) as exc:
        parse_resource(_bytes(PATIENT), expected_type="Observation")
    assert "Patient.resourceType" in _issues(exc)
    with pytest.raises(FhirValidationError):  # an unsupported body on a supported endpoint
        parse_resource(_bytes({"resourceType": "Claim"}), expected_type="Patient")


@pytest.mark.parametrize("rtype", ["Claim", "Bundle", "Device", "Medication", "Nonsense"])
def test_unsupported_type(rtype: str) -> None:
    with pytest.raises(FhirUnsupportedTypeError) as exc:
        parse_resource(_bytes({"resourceType": rtype, "id": "x"}))
    assert isinstance(exc.value, NotFoundError) and exc.value.resource_type == rtype
    with pytest.raises(FhirUnsupportedTypeError):
        parse_resource(_bytes(PATIENT), expected_type=rtype)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"resourceType":"Patient","id":"a","id":"b"}',  # duplicate key
        b'{"resourceType":"Patient","x":NaN}',
        b'{"resourceType":"Patient","x":Infinity}',
        b'{"resourceType":"Patient","x":1e999}',
        b'{"resourceType":"Patient","x":123456789012345678}',  # beyond 2^53
        b'{"resourceType":"Patient"',  # truncated
        b'{"resourceType":"Patient"} {}',  # trailing data
        b"\xff\xfe",  # not UTF-8
        b"[]",
        b'"Patient"',
        b"{}",
        b'{"resourceType":7}',
        b'{"resourceType":"Patient","name":[{"family":"\\ud800"}]}',  # lone surrogate
        b"[" * 5000 + b"]" * 5000,
    ],
)
def test_malformed_json_fails_closed(raw: bytes) -> None:
    with pytest.raises(ValidationError):
        parse_resource(raw)


def test_size_limit() -> None:
    raw = _bytes(PATIENT)
    with pytest.raises(LimitExceededError):
        parse_resource(raw, max_bytes=len(raw) - 1)
    assert parse_resource(raw, max_bytes=len(raw)).id == "p1"


def test_integer64_travels_as_string() -> None:
    doc = load(R5_DIR / "DocumentReference-example.json")
    doc["content"][0]["attachment"]["size"] = 3654  # R5 integer64 must be a JSON string
    with pytest.raises(FhirValidationError) as exc:
        parse_resource(_bytes(doc))
    assert "DocumentReference.content[0].attachment.size" in _issues(exc)


def test_binary_and_condition_r5() -> None:
    binary = {"resourceType": "Binary", "contentType": "text/plain", "data": "aGVsbG8="}
    assert parse_resource(_bytes(binary), expected_type="Binary").fhir_version == "R5"
    condition = {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "subject": {"reference": "Patient/p1"},
        "category": [{"coding": [{"code": "problem-list-item"}]}],
    }
    assert parse_resource(_bytes(condition)).fhir_version == "R5"
    del condition["subject"]
    with pytest.raises(FhirValidationError) as exc:
        parse_resource(_bytes(condition))
    assert "Condition.subject" in _issues(exc)
