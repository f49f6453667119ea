"""FHIR R5 ``Consent`` ↔ ``consent.grant@1`` arguments (ADR 0005).

Forward, :func:`consent_to_grant`. One Consent becomes one grant when it says exactly one thing
(checks run in this order; the first failure is refused with a precise issue):

=========================  =================================================================
R4 shape                   refused (``patient``, a single ``provision`` object): submit R5
``status``                 must be ``active``
``subject``                a ``Patient/<id>`` reference (and the expected patient, if given)
``grantor``                absent, or only the subject itself (a grant is signed by the patient;
                           representatives cannot be represented)
``decision``               ``permit`` or ``deny`` (required: no implicit default)
``provision``              at most one; without one the grant covers everything
``provision.provision``    refused: nested exceptions need their own Consent (opposite decision)
unsupported criteria       ``documentType``, ``code``, ``dataPeriod``, ``expression``,
                           ``data.meaning`` other than ``instance`` → refused
scope                      ``resourceType`` → ``types``; ``data[meaning=instance]`` →
                           ``records`` (``Type/id``); ``securityLabel`` codes → ``categories``;
                           criteria present together must all match (FHIR's AND)
``action``                 consentaction codes → actions (:data:`ACTION_MAP`); absent = all
``purpose``                v3-ActReason (PurposeOfUse) codes; absent = any purpose
``period``                 provision.period, else Consent.period → ``{start, end}`` Unix ms,
                           end exclusive; absent = unbounded
actor                      exactly one ``provision.actor`` (else exactly one ``Consent.grantee``)
                           with a ``reference``; ``resolve_actor(reference)`` maps it to the
                           grantee (``{"account"}``, ``{"org"}``); a role from
                           :data:`ORG_ROLE_SYSTEMS` on an organisation actor gives
                           ``{"org", "role"}``; ``v3-ParticipationType`` roles (PRCP, CST, …)
                           describe the participation, not the grantee, and are ignored
=========================  =================================================================

Action mapping (:data:`ACTION_MAP`): ``access``, ``collect``, ``use`` → read (retrieving
information); ``disclose`` → read (a disclosure to the grantee is a read by the grantee; onward
re-disclosure is not modelled); ``correct`` → read and write (correcting needs both).
Reverse: read → ``access``, write → ``correct``.

Optional keys of the grant: ``purposes`` and ``period`` are omitted when unrestricted; ``scope``
is ``{}`` when it covers all of the patient's records. Every list is sorted and duplicate-free.

Reverse, :func:`grant_to_consent`: a grant's state record → R5 Consent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from carechain.contracts.consent import PURPOSES
from carechain.encoding import MAX_SAFE_INT
from carechain.errors import LedgerError
from carechain.fhir._time import fhir_time_to_ms, ms_to_date, ms_to_instant
from carechain.fhir.canonical import normalise_patient_reference
from carechain.fhir.errors import SUPPORTED_TYPES, FhirIssue, FhirValidationError

CONSENT_ACTION_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentaction"
PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PARTICIPATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
RESOURCE_TYPE_SYSTEMS = frozenset(
    {"http://hl7.org/fhir/resource-types", "http://hl7.org/fhir/fhir-types"}
)
CARECHAIN_ROLE_SYSTEM = "https://carechain.dev/fhir/CodeSystem/role"
ORG_ROLE_SYSTEMS = frozenset(
    {CARECHAIN_ROLE_SYSTEM, "http://terminology.hl7.org/CodeSystem/practitioner-role"}
)
"""Role code systems naming a grantee's role at an organisation."""
CONSENT_SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENT_CATEGORY = {"system": "http://loinc.org", "code": "59284-0", "display": "Consent Document"}
CONSENT_ID_SYSTEM = "https://carechain.dev/fhir/NamingSystem/consent"
"""Identifier system of consent ids (the grant transaction id) in reverse-mapped Consents."""

ACTION_MAP: dict[str, tuple[str, ...]] = {
    "access": ("read",),
    "collect": ("read",),
    "use": ("read",),
    "disclose": ("read",),
    "correct": ("read", "write"),
}
REVERSE_ACTION = {"read": "access", "write": "correct"}
ALL_ACTIONS = ("read", "write")

ResolveActor = Callable[[str], Mapping[str, str]]
"""Maps a FHIR reference (``Practitioner/x``, ``Organization/y``, …) to a grantee dict."""

_UNSUPPORTED_CRITERIA = {
    "documentType": "document types",
    "code": "content codes",
    "dataPeriod": "data periods",
    "expression": "computable expressions",
}


def _refuse(location: str, message: str, code: str = "not-supported") -> FhirValidationError:
    return FhirValidationError(
        [FhirIssue(location=location, message=message, code=code)],
        what="Consent cannot be represented as consent.grant@1",
    )


def _codings_of(concepts: Any, path: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for i, concept in enumerate(concepts or ()):
        for j, coding in enumerate(concept.get("coding") or ()):
            out.append((f"{path}[{i}].coding[{j}]", coding))
        if not concept.get("coding"):
            raise _refuse(
                f"{path}[{i}]", "a coded concept needs a coding (text alone is not enough)"
            )
    return out


def _actions(provision: Mapping[str, Any], path: str) -> list[str]:
    if "action" not in provision:
        return list(ALL_ACTIONS)
    actions: set[str] = set()
    for where, coding in _codings_of(provision["action"], f"{path}.action"):
        code = coding.get("code")
        if coding.get("system") != CONSENT_ACTION_SYSTEM or code not in ACTION_MAP:
            raise _refuse(
                where,
                f"action {coding.get('system')}#{code} is not a {CONSENT_ACTION_SYSTEM} code "
                f"({', '.join(sorted(ACTION_MAP))})",
            )
        actions.update(ACTION_MAP[code])
    return sorted(actions)


def _purposes(provision: Mapping[str, Any], path: str) -> list[str] | None:
    if "purpose" not in provision:
        return None
    purposes: set[str] = set()
    for i, coding in enumerate(provision["purpose"]):
        code = coding.get("code")
        if coding.get("system") != PURPOSE_SYSTEM or not isinstance(code, str):
            raise _refuse(
                f"{path}.purpose[{i}]", f"purpose must be a {PURPOSE_SYSTEM} (PurposeOfUse) code"
            )
        purposes.add(code)
    return sorted(purposes)


def _period(period: Mapping[str, Any] | None, path: str) -> dict[str, int] | None:
    if not period:
        return None
    out: dict[str, int] = {}
    try:
        if "start" in period:
            out["start"] = fhir_time_to_ms(period["start"])
        if "end" in period:
            out["end"] = fhir_time_to_ms(period["end"], end=True)
    except ValueError as exc:
        raise _refuse(f"{path}", str(exc), code="value") from exc
    if "start" in out and "end" in out and out["end"] <= out["start"]:
        raise _refuse(f"{path}.end", "period ends before it starts", code="value")
    return out or None


def _scope(provision: Mapping[str, Any], path: str) -> dict[str, list[str]]:
    scope: dict[str, list[str]] = {}
    types: set[str] = set()
    for i, coding in enumerate(provision.get("resourceType") or ()):
        code = coding.get("code")
        if coding.get("system") not in RESOURCE_TYPE_SYSTEMS or code not in SUPPORTED_TYPES:
            raise _refuse(
                f"{path}.resourceType[{i}]",
                f"resource type {code!r} is not one this ledger holds",
            )
        types.add(code)
    records: set[str] = set()
    for i, item in enumerate(provision.get("data") or ()):
        if item.get("meaning") != "instance":
            raise _refuse(
                f"{path}.data[{i}].meaning",
                f"data meaning {item.get('meaning')!r} cannot be represented: a grant names "
                "specific records only (meaning 'instance')",
            )
        ref = (item.get("reference") or {}).get("reference")
        parts = ref.split("/") if isinstance(ref, str) else []
        if not isinstance(ref, str) or len(parts) != 2 or parts[0] not in SUPPORTED_TYPES:
            raise _refuse(
                f"{path}.data[{i}].reference",
                "a record must be a relative reference Type/id to a supported type",
            )
        records.add(ref)
    categories: set[str] = set()
    for i, coding in enumerate(provision.get("securityLabel") or ()):
        if not isinstance(coding.get("code"), str):
            raise _refuse(f"{path}.securityLabel[{i}]", "a security label needs a code")
        categories.add(coding["code"])
    if types:
        scope["types"] = sorted(types)
    if records:
        scope["records"] = sorted(records)
    if categories:
        scope["categories"] = sorted(categories)
    return scope


def _grantee(
    consent: Mapping[str, Any], provision: Mapping[str, Any], resolve_actor: ResolveActor
) -> dict[str, str]:
    actors = provision.get("actor") or []
    if len(actors) > 1:
        raise _refuse(
            "Consent.provision[0].actor",
            f"{len(actors)} actors: a grant has exactly one grantee; submit one Consent each",
        )
    if actors:
        where, actor = "Consent.provision[0].actor[0]", actors[0]
        ref = (actor.get("reference") or {}).get("reference")
        role = actor.get("role")
    else:
        grantees = consent.get("grantee") or []
        if len(grantees) != 1:
            raise _refuse(
                "Consent.provision[0].actor",
                "no grantee: name exactly one provision.actor (or one Consent.grantee)",
                code="required",
            )
        where, ref, role = "Consent.grantee[0]", grantees[0].get("reference"), None
    if not isinstance(ref, str):
        raise _refuse(
            f"{where}.reference",
            "the grantee must be a reference (Practitioner, Organization, PractitionerRole); "
            "a role alone does not name the organisation it belongs to",
            code="required",
        )
    try:
        grantee = dict(resolve_actor(ref))
    except LedgerError as exc:
        raise _refuse(f"{where}.reference", f"{ref}: {exc}", code="not-found") from exc
    org_roles = [
        c["code"]
        for c in (role or {}).get("coding") or ()
        if c.get("system") in ORG_ROLE_SYSTEMS and isinstance(c.get("code"), str)
    ]
    if org_roles:
        if "org" not in grantee or "account" in grantee or len(org_roles) > 1:
            raise _refuse(
                f"{where}.role",
                "an organisation role qualifies exactly one Organization actor",
            )
        grantee["role"] = org_roles[0]
    return grantee


def consent_to_grant(
    consent: Mapping[str, Any],
    *,
    resolve_actor: ResolveActor,
    patient_reference: str | None = None,
) -> dict[str, Any]:
    """The ``consent.grant@1`` args for an R5 Consent (rules in the module docstring)."""
    if consent.get("resourceType") != "Consent":
        raise _refuse("Consent.resourceType", "not a Consent", code="invalid")
    if "patient" in consent or isinstance(consent.get("provision"), dict):
        raise _refuse("Consent", "an R4 Consent (patient, single provision): submit it as R5")
    if consent.get("status") != "active":
        raise _refuse(
            "Consent.status",
            f"status {consent.get('status')!r}: only an active Consent becomes a grant",
            code="value",
        )
    subject = normalise_patient_reference(str((consent.get("subject") or {}).get("reference")))
    if subject is None:
        raise _refuse("Consent.subject", "subject must reference a Patient", code="required")
    if patient_reference is not None and subject != patient_reference:
        raise _refuse(
            "Consent.subject",
            f"subject {subject} is not the signing patient {patient_reference}",
            code="forbidden",
        )
    for i, grantor in enumerate(consent.get("grantor") or ()):
        ref = grantor.get("reference")
        if not isinstance(ref, str) or normalise_patient_reference(ref) != subject:
            raise _refuse(
                f"Consent.grantor[{i}]",
                f"grantor {ref or grantor} is not the subject: consent.grant@1 is signed by "
                "the patient; consents given by a representative cannot be represented",
            )
    decision = consent.get("decision")
    if decision not in ("permit", "deny"):
        raise _refuse("Consent.decision", "decision (permit | deny) is required", code="required")
    provisions = consent.get("provision") or [{}]
    if len(provisions) > 1:
        raise _refuse(
            "Consent.provision", f"{len(provisions)} provisions: a grant holds exactly one"
        )
    provision, path = provisions[0], "Consent.provision[0]"
    if provision.get("provision"):
        raise _refuse(
            f"{path}.provision",
            "nested provisions (exceptions) cannot be represented in one grant; submit each "
            "exception as its own Consent with the opposite decision",
        )
    for key, what in _UNSUPPORTED_CRITERIA.items():
        if key in provision:
            raise _refuse(f"{path}.{key}", f"{what} cannot be represented in a grant's scope")
    scope = _scope(provision, path)
    actions = _actions(provision, path)
    purposes = _purposes(provision, path)
    period = _period(provision.get("period"), f"{path}.period") or _period(
        consent.get("period"), "Consent.period"
    )
    args: dict[str, Any] = {
        "grantee": _grantee(consent, provision, resolve_actor),
        "actions": actions,
        "scope": scope,
        "decision": decision,
    }
    # consent.grant@1 states every field: an unrestricted purpose means every PurposeOfUse the
    # ledger knows, an open period runs from the epoch to the largest timestamp.
    if purposes is None:
        purposes = list(PURPOSES)
    unknown = sorted(set(purposes) - set(PURPOSES))
    if unknown:
        raise _refuse(f"{path}.purpose", f"purpose(s) {unknown} are not supported by the ledger")
    args["purposes"] = purposes
    args["period"] = {
        "start": (period or {}).get("start", 0),
        "end": (period or {}).get("end", MAX_SAFE_INT),
    }
    return args


# --- reverse ------------------------------------------------------------------------------


def default_grantee_reference(grantee: Mapping[str, str]) -> str:
    """``Practitioner/<account>`` or ``Organization/<org>`` (override to match the node's ids)."""
    if "account" in grantee:
        return f"Practitioner/{grantee['account']}"
    return f"Organization/{grantee['org']}"


def consent_resource(
    subject: str,
    grantee: str,
    action_codes: Sequence[str],
    purposes: Sequence[str] = (),
    *,
    decision: str = "permit",
    types: Sequence[str] = (),
    end: str | None = None,
) -> dict[str, Any]:
    """A one-provision R5 Consent: ``subject`` lets ``grantee`` (a reference) do the
    consentaction ``action_codes`` for ``purposes`` (none: any) on ``types`` (none: all) until
    ``end`` (a FHIR date; none: open). Empty lists are left out, as FHIR requires."""
    provision: dict[str, Any] = {
        "actor": [{"reference": {"reference": grantee}}],
        "action": [
            {"coding": [{"system": CONSENT_ACTION_SYSTEM, "code": c}]} for c in action_codes
        ],
    }
    if purposes:
        provision["purpose"] = [{"system": PURPOSE_SYSTEM, "code": p} for p in purposes]
    if types:
        provision["resourceType"] = [
            {"system": "http://hl7.org/fhir/resource-types", "code": t} for t in types
        ]
    if end:
        provision["period"] = {"end": end}
    return {
        "resourceType": "Consent",
        "status": "active",
        "subject": {"reference": subject},
        "decision": decision,
        "provision": [provision],
    }


def grant_to_consent(
    record: Mapping[str, Any],
    *,
    patient_reference: str,
    grantee_reference: Callable[[Mapping[str, str]], str] = default_grantee_reference,
) -> dict[str, Any]:
    """An R5 Consent for a grant's state record.

    ``record``: the grant args plus ``id`` (consent id = grant tx id), optionally ``status``
    (``active`` | ``revoked``; revoked renders as ``inactive``) and ``granted`` (block time ms).
    """
    grantee = record["grantee"]
    actor: dict[str, Any] = {"reference": {"reference": grantee_reference(grantee)}}
    if "role" in grantee:
        actor["role"] = {"coding": [{"system": CARECHAIN_ROLE_SYSTEM, "code": grantee["role"]}]}
    provision: dict[str, Any] = {"actor": [actor]}
    actions = sorted({REVERSE_ACTION[a] for a in record["actions"]})
    provision["action"] = [
        {"coding": [{"system": CONSENT_ACTION_SYSTEM, "code": a}]} for a in actions
    ]
    if record.get("purposes") and set(record["purposes"]) != set(PURPOSES):
        provision["purpose"] = [{"system": PURPOSE_SYSTEM, "code": p} for p in record["purposes"]]
    period = record.get("period")
    if period:
        fhir_period = {}
        if period.get("start", 0) > 0:
            fhir_period["start"] = ms_to_instant(period["start"])
        if period.get("end", MAX_SAFE_INT) < MAX_SAFE_INT:
            fhir_period["end"] = ms_to_instant(period["end"] - 1)  # exclusive → inclusive
        if fhir_period:
            provision["period"] = fhir_period
    scope = record.get("scope") or {}
    if scope.get("types"):
        provision["resourceType"] = [
            {"system": "http://hl7.org/fhir/resource-types", "code": t} for t in scope["types"]
        ]
    if scope.get("records"):
        provision["data"] = [
            {"meaning": "instance", "reference": {"reference": r}} for r in scope["records"]
        ]
    if scope.get("categories"):
        provision["securityLabel"] = [{"code": c} for c in scope["categories"]]
    consent: dict[str, Any] = {
        "resourceType": "Consent",
        "id": record["id"],
        "identifier": [{"system": CONSENT_ID_SYSTEM, "value": record["id"]}],
        "status": "inactive" if record.get("status") == "revoked" else "active",
        "category": [{"coding": [dict(CONSENT_CATEGORY)]}],
        "subject": {"reference": patient_reference},
        "decision": record["decision"],
        "provision": [provision],
    }
    if "granted" in record:
        consent["date"] = ms_to_date(record["granted"])
    return consent
