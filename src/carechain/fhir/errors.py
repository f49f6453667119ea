"""FHIR edge errors: leaves of the carechain error tree (:mod:`carechain.errors`).

``FhirValidationError`` is a :class:`~carechain.errors.ValidationError` (HTTP 422 on ``/fhir``
with an ``OperationOutcome`` listing :attr:`FhirValidationError.issues`);
``FhirUnsupportedTypeError`` is a :class:`~carechain.errors.NotFoundError` (404: the server has
no endpoint for that resource type).
"""

from __future__ import annotations

from dataclasses import dataclass

from carechain.errors import NotFoundError, ValidationError


@dataclass(frozen=True, slots=True, kw_only=True)
class FhirIssue:
    """One problem found in a FHIR resource."""

    location: str
    """FHIRPath-like path of the offending element, e.g. ``Patient.name[0].family``."""
    message: str
    """What is wrong, in words a client developer can act on."""
    code: str = "invalid"
    """FHIR ``issue-type`` code (``structure``, ``required``, ``value``, ``invalid``, …)."""


class FhirValidationError(ValidationError):
    """A FHIR resource is malformed or cannot be represented; ``issues`` lists every problem."""

    code = "fhir_invalid"

    def __init__(self, issues: list[FhirIssue] | tuple[FhirIssue, ...], *, what: str = "") -> None:
        if not issues:
            raise ValueError("FhirValidationError needs at least one issue")
        self.issues: tuple[FhirIssue, ...] = tuple(issues)
        head = f"{what}: " if what else ""
        first = self.issues[0]
        more = f" (and {len(self.issues) - 1} more)" if len(self.issues) > 1 else ""
        super().__init__(f"{head}{first.location}: {first.message}{more}")


class FhirUnsupportedTypeError(NotFoundError):
    """The resource type is not served by this node (404 ``not-supported``)."""

    code = "fhir_unsupported_type"

    def __init__(self, resource_type: str) -> None:
        self.resource_type = resource_type
        super().__init__(
            f"resource type {resource_type!r} is not supported here; supported: "
            + ", ".join(SUPPORTED_TYPES)
        )


SUPPORTED_TYPES: tuple[str, ...] = (
    "AllergyIntolerance",
    "AuditEvent",
    "Binary",
    "Condition",
    "Consent",
    "DiagnosticReport",
    "DocumentReference",
    "Encounter",
    "Immunization",
    "MedicationRequest",
    "Observation",
    "Organization",
    "Patient",
    "Practitioner",
    "Provenance",
)
"""Resource types the FHIR facade accepts (sorted)."""
