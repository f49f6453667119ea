"""OperationOutcome documents from carechain errors validate as R5 and map codes right."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources import get_fhir_model_class

from carechain import errors as e
from carechain.fhir import (
    FhirIssue,
    FhirUnsupportedTypeError,
    FhirValidationError,
    operation_outcome,
    parse_resource,
)
from carechain.fhir.operation_outcome import information


def _valid(doc: dict[str, Any]) -> dict[str, Any]:
    get_fhir_model_class("OperationOutcome").model_validate(doc)
    return doc


@pytest.mark.parametrize(
    "error,severity,code",
    [
        (e.ValidationError("bad"), "error", "invalid"),
        (e.LimitExceededError("big"), "error", "too-long"),
        (e.AuthenticationError("who"), "error", "login"),
        (e.AuthorizationError("no", code="no_consent"), "error", "forbidden"),
        (e.NotFoundError("gone?"), "error", "not-found"),
        (e.NotFoundError("erased", code="gone"), "error", "deleted"),
        (FhirUnsupportedTypeError("Claim"), "error", "not-supported"),
        (e.DuplicateTransactionError("again"), "error", "duplicate"),
        (e.ConflictError("version"), "error", "conflict"),
        (e.ContractError("rule"), "error", "business-rule"),
        (e.SignatureError("sig"), "error", "security"),
        (e.UnavailableError("busy"), "error", "throttled"),
        (e.InfrastructureError("disk on fire"), "fatal", "exception"),
        (RuntimeError("bug"), "fatal", "exception"),
    ],
)
def test_mapping(error: Exception, severity: str, code: str) -> None:
    doc = _valid(operation_outcome(error))
    (issue,) = doc["issue"]
    assert (issue["severity"], issue["code"]) == (severity, code)
    if severity == "fatal":
        assert "fire" not in str(doc) and "bug" not in str(doc)  # internals are not shown
    else:
        assert issue["details"]["coding"][0]["code"] == error.code


def test_validation_issues_have_expressions() -> None:
    with pytest.raises(FhirValidationError) as exc:
        parse_resource(b'{"resourceType":"Patient","birthDate":"x","foo":1}')
    doc = _valid(operation_outcome(exc.value))
    expressions = [i["expression"] for i in doc["issue"]]
    assert ["Patient.birthDate"] in expressions and ["Patient.foo"] in expressions
    assert {i["code"] for i in doc["issue"]} <= {"structure", "value", "invalid", "required"}


def test_issue_list_required() -> None:
    with pytest.raises(ValueError):
        FhirValidationError([])
    err = FhirValidationError([FhirIssue(location="Patient.x", message="m", code="value")])
    assert "Patient.x: m" in str(err) and err.code == "fhir_invalid"
    _valid(information("deleted"))
