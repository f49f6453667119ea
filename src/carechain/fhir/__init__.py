"""FHIR edge adapter: validate, canonicalise, digest; map Consent, AuditEvent, Provenance.

Sits beside ``storage``/``ordering``: it may import the core (contracts, ledger, merkle,
crypto, encoding, errors) and ``fhir.resources``; never node, api, web or cli. Nothing in the
core imports it.
"""

from carechain.fhir.audit_map import anchor_provenance, audit_event
from carechain.fhir.canonical import (
    canonical_fhir,
    category_code,
    keyed_digest,
    patient_identifier,
    secure_index,
    subject_reference,
)
from carechain.fhir.consent_map import consent_to_grant, grant_to_consent
from carechain.fhir.errors import (
    SUPPORTED_TYPES,
    FhirIssue,
    FhirUnsupportedTypeError,
    FhirValidationError,
)
from carechain.fhir.operation_outcome import operation_outcome
from carechain.fhir.validate import FhirResource, parse_resource

__all__ = [
    "SUPPORTED_TYPES",
    "FhirIssue",
    "FhirResource",
    "FhirUnsupportedTypeError",
    "FhirValidationError",
    "anchor_provenance",
    "audit_event",
    "canonical_fhir",
    "category_code",
    "consent_to_grant",
    "grant_to_consent",
    "keyed_digest",
    "operation_outcome",
    "parse_resource",
    "patient_identifier",
    "secure_index",
    "subject_reference",
]
