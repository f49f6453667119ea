"""The R5 ``CapabilityStatement`` of ``GET /fhir/metadata``: exactly what the routes do.

It is built from the same tables the routes use (:data:`RECORD_TYPES`,
:func:`search_params`), so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from carechain import __version__
from carechain.api.fhir.search import RECORD_TYPES, search_params
from carechain.contracts.records import DIRECTORY_TYPES

_PARAM_TYPES = {
    "_id": ("token", "Logical id; a comma-separated list matches any."),
    "_lastUpdated": ("date", "Block time of the latest version (eq, ge, gt, le, lt)."),
    "_count": ("number", "Page size (0-100, default 20; 0 = the total only)."),
    "_offset": ("number", "Index of the first match of the page (paging)."),
    "patient": ("reference", "The patient the record is about (Patient/<id> or <id>)."),
    "subject": ("reference", "The subject, when it is a Patient."),
    "code": ("token", "Code of the Observation / Condition (system|code or code)."),
    "target": ("reference", "The resource (Type/id or Type/id/_history/v) whose anchors to list."),
}

_RECORD_INTERACTIONS = ("read", "vread", "update", "delete", "history-instance", "create")


def _params(names: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for name in names:
        kind, doc = _PARAM_TYPES[name]
        out.append({"name": name, "type": kind, "documentation": doc})
    return out


def _record_resource(rtype: str) -> dict[str, Any]:
    interactions = [{"code": c} for c in _RECORD_INTERACTIONS]
    interactions.append({"code": "search-type"})
    doc = (
        "Stored encrypted off chain, every version anchored on chain. delete = erasure "
        "(crypto-shredding; reason and basis as query parameters); later reads answer 410."
    )
    if rtype == "Provenance":
        doc += " search-type (target=) lists the on-chain anchors of a record's versions."
    if rtype == "Binary":
        doc += (
            " Attachments: POST with the content's own media type and X-Security-Context: "
            "Patient/<id> streams it (limit: the node's max_attachment_bytes); GET with an Accept "
            "other than FHIR JSON streams it back after checking it against its anchor."
        )
    if rtype in DIRECTORY_TYPES:
        doc += (
            " A directory resource (not about a patient, not PHI): written by the hosting "
            "organisation's staff, read and searched by any signed-in account, not audited."
        )
    return {
        "type": rtype,
        "documentation": doc,
        "interaction": interactions,
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": False,
        "conditionalCreate": False,
        "conditionalRead": "not-supported",
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
        "searchParam": _params(search_params(rtype)),
    }


def capability_statement(base: str, now_iso: str) -> dict[str, Any]:
    """The CapabilityStatement of this node's FHIR facade at ``base``."""
    resources = [_record_resource(t) for t in RECORD_TYPES]
    resources.append(
        {
            "type": "Consent",
            "documentation": "POST creates a consent.grant@1 signed by the patient (custodial "
            "sign-in); search by patient lists the grants; $revoke revokes one.",
            "interaction": [{"code": "create"}, {"code": "search-type"}],
            "searchParam": _params(("patient",)),
            "operation": [
                {
                    "name": "revoke",
                    "definition": "https://carechain.dev/fhir/OperationDefinition/Consent-revoke",
                    "documentation": "POST /fhir/Consent/{id}/$revoke: consent.revoke@1.",
                }
            ],
        }
    )
    resources.append(
        {
            "type": "AuditEvent",
            "documentation": "Ledger audit entries (IHE BALP shape), each with its Merkle "
            "inclusion proof in an extension.",
            "interaction": [{"code": "search-type"}],
            "searchParam": _params(("patient", "_count", "_offset")),
        }
    )
    resources.sort(key=lambda r: str(r["type"]))
    return {
        "resourceType": "CapabilityStatement",
        "id": "carechain",
        "url": f"{base}/metadata",
        "name": "CarechainFhirFacade",
        "title": "carechain FHIR facade",
        "status": "active",
        "date": now_iso,
        "publisher": "carechain",
        "kind": "instance",
        "software": {"name": "carechain", "version": __version__},
        "implementation": {"description": "carechain node FHIR facade", "url": base},
        "fhirVersion": "5.0.0",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Every interaction touching PHI is decided by on-chain consent "
                "and audited on the ledger; responses carry X-Audit-Entry. Purpose of use: "
                "header X-Purpose-Of-Use (default TREAT).",
                "security": {
                    "cors": False,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://hl7.org/fhir/restful-security-service",
                                    "code": "OAuth",
                                }
                            ]
                        }
                    ],
                    "description": "Bearer tokens from POST /v1/auth/login (custodial sign-in) "
                    "or POST /v1/auth/token (SMART Backend Services JWT assertion).",
                },
                "resource": resources,
                "operation": [
                    {
                        "name": "break-glass",
                        "definition": "https://carechain.dev/fhir/OperationDefinition/break-glass",
                        "documentation": "POST /fhir/$break-glass with Parameters patient, reason: "
                        "a time-boxed ETREAT session, flagged in the audit.",
                    }
                ],
            }
        ],
    }


__all__ = ["capability_statement"]
