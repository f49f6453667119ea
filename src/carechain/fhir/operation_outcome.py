"""FHIR R5 ``OperationOutcome`` documents from carechain errors (the ``/fhir`` error body).

One table maps error families to (severity, ``issue-type`` code); the most specific class
wins (the table is searched in order). Every issue carries the carechain error ``code`` in
``details.coding`` (system :data:`PROBLEM_SYSTEM`) so clients can branch on it. A
:class:`FhirValidationError` becomes one issue per problem, with ``expression`` naming the
element. Unexpected exceptions (bugs) become one ``fatal``/``exception`` issue with no detail.
"""

from __future__ import annotations

from typing import Any

from carechain.errors import (
    AuthenticationError,
    AuthorizationError,
    ConflictError,
    ContractError,
    DuplicateTransactionError,
    InfrastructureError,
    LedgerError,
    LimitExceededError,
    NotFoundError,
    UnavailableError,
    ValidationError,
    VerificationError,
)
from carechain.fhir.errors import FhirIssue, FhirUnsupportedTypeError, FhirValidationError

PROBLEM_SYSTEM = "https://carechain.dev/problems"
"""Code system of carechain error codes (same codes as the problem+json ``code``)."""

GONE_CODES = frozenset({"gone", "erased", "deleted"})
"""``NotFoundError`` codes that mean the record existed and was erased (``deleted``)."""

ERROR_ISSUES: tuple[tuple[type[LedgerError], str, str], ...] = (
    (FhirUnsupportedTypeError, "error", "not-supported"),
    (LimitExceededError, "error", "too-long"),
    (ValidationError, "error", "invalid"),
    (AuthenticationError, "error", "login"),
    (AuthorizationError, "error", "forbidden"),
    (NotFoundError, "error", "not-found"),
    (DuplicateTransactionError, "error", "duplicate"),
    (ConflictError, "error", "conflict"),
    (ContractError, "error", "business-rule"),
    (VerificationError, "error", "security"),
    (UnavailableError, "error", "throttled"),
    (InfrastructureError, "fatal", "exception"),
)
"""(error class, issue severity, issue-type code), most specific first."""


def _issue(severity: str, code: str, problem: str, text: str) -> dict[str, Any]:
    return {
        "severity": severity,
        "code": code,
        "details": {"coding": [{"system": PROBLEM_SYSTEM, "code": problem}], "text": text},
    }


def _outcome(issues: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": issues}


def issue_for(error: BaseException) -> tuple[str, str]:
    """(severity, issue-type code) of ``error`` per :data:`ERROR_ISSUES`."""
    if isinstance(error, NotFoundError) and error.code in GONE_CODES:
        return "error", "deleted"
    for cls, severity, code in ERROR_ISSUES:
        if isinstance(error, cls):
            return severity, code
    return "fatal", "exception"


def from_issues(issues: tuple[FhirIssue, ...] | list[FhirIssue], *, problem: str) -> dict[str, Any]:
    """One ``error`` issue per :class:`FhirIssue`, each with ``expression`` = its location."""
    out = []
    for issue in issues:
        entry = _issue("error", issue.code, problem, issue.message)
        entry["diagnostics"] = f"{issue.location}: {issue.message}"
        entry["expression"] = [issue.location]
        out.append(entry)
    return _outcome(out)


def operation_outcome(error: BaseException) -> dict[str, Any]:
    """The ``OperationOutcome`` answering a request that failed with ``error``."""
    if isinstance(error, FhirValidationError):
        return from_issues(error.issues, problem=error.code)
    severity, code = issue_for(error)
    if isinstance(error, LedgerError) and not isinstance(error, InfrastructureError):
        return _outcome([_issue(severity, code, error.code, error.message)])
    problem = error.code if isinstance(error, LedgerError) else "internal"
    return _outcome(
        [_issue(severity, code, problem, "internal error; the node logged the details")]
    )


def information(text: str) -> dict[str, Any]:
    """A success ``OperationOutcome`` (e.g. the body of a successful delete)."""
    return _outcome([{"severity": "information", "code": "informational", "diagnostics": text}])
