"""Ledger audit entries → R5 ``AuditEvent`` (IHE BALP shape); anchors → R5 ``Provenance``.

AuditEvent (:func:`audit_event`), following IHE Basic Audit Log Patterns (BALP) RESTful events:

* ``category`` = audit-event-type ``rest``; ``code`` = restful-interaction (read, vread,
  search-type, create, update, delete); ``action`` = C/R/U/D/E;
* ``recorded`` = block time; ``outcome.code`` = audit-event-outcome ``0`` (permit), ``4``
  (deny: minor failure, with the deny reason in ``outcome.detail``) or ``8`` (error);
* ``agent[0]``: the user: ``who.identifier`` = ledger account (``assigner`` = the account's
  organisation), ``role`` = the organisation role, ``authorization`` = PurposeOfUse,
  ``requestor`` = true; ``type`` = IRCP for reads, AUT for writes;
* ``source.observer`` = the hosting node's service account (it signs the audit transaction);
* ``patient`` and ``entity`` (role ``1`` Patient) = the patient's pseudonymous account;
  one ``entity`` (role ``4`` Domain Resource) per resource reference; a ``Consent`` entity for
  a consent basis; one ``entity`` for the ledger transaction (the audit entry id) with
  ``detail`` = block height, block time, basis and request id;
* break-glass entries carry ``meta.security`` = v3-ActCode ``BTG``.

Provenance (:func:`anchor_provenance`): ``target`` = the versioned resource
(``Type/id/_history/v``), ``recorded`` = block time, ``activity`` = v3-DataOperation CREATE
(version 1) or UPDATE, ``agent`` = author (and the hosting organisation as custodian), ``entity``
= the anchor transaction (role ``source``) and the previous version (role ``revision``); the
extensions :data:`EXT_ANCHOR_TX`, :data:`EXT_SIGNER_KID` and :data:`EXT_DIGEST` name the anchor
transaction id, its signer's key id and the on-chain keyed digest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from carechain.fhir._time import ms_to_instant

ACCOUNT_SYSTEM = "https://carechain.dev/fhir/NamingSystem/account"
ORG_SYSTEM = "https://carechain.dev/fhir/NamingSystem/org"
TX_SYSTEM = "https://carechain.dev/fhir/NamingSystem/tx"
ROLE_SYSTEM = "https://carechain.dev/fhir/CodeSystem/role"
ENTITY_ROLE_SYSTEM = "https://carechain.dev/fhir/CodeSystem/entity-role"
REASON_SYSTEM = "https://carechain.dev/problems"
EXT_ANCHOR_TX = "https://carechain.dev/fhir/StructureDefinition/anchor-transaction"
EXT_SIGNER_KID = "https://carechain.dev/fhir/StructureDefinition/signer-key-id"
EXT_DIGEST = "https://carechain.dev/fhir/StructureDefinition/anchor-digest"
EXT_BLOCK_HEIGHT = "https://carechain.dev/fhir/StructureDefinition/block-height"

_AUDIT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
_INTERACTION = "http://hl7.org/fhir/restful-interaction"
_OUTCOME = "http://terminology.hl7.org/CodeSystem/audit-event-outcome"
_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
_PURPOSE = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
_PROV_AGENT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"

ACTIONS: dict[str, tuple[str, str]] = {
    "create": ("C", "create"),
    "read": ("R", "read"),
    "vread": ("R", "vread"),
    "search": ("E", "search-type"),
    "update": ("U", "update"),
    "delete": ("D", "delete"),
    "erase": ("D", "delete"),
}
"""Audit entry ``action`` → (AuditEvent.action, restful-interaction code)."""

OUTCOMES: dict[str, tuple[str, str]] = {
    "permit": ("0", "Success"),
    "deny": ("4", "Minor failure"),
    "error": ("8", "Serious failure"),
}
"""Audit entry ``outcome`` → audit-event-outcome (code, display)."""


def _account(account: str, org: str | None = None) -> dict[str, Any]:
    ident: dict[str, Any] = {"system": ACCOUNT_SYSTEM, "value": account}
    if org:
        ident["assigner"] = {"identifier": {"system": ORG_SYSTEM, "value": org}}
    return {"identifier": ident}


def _detail(label: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": {"text": label}}
    if isinstance(value, bool):
        out["valueBoolean"] = value
    elif isinstance(value, int) and -(2**31) <= value < 2**31:
        out["valueInteger"] = value
    else:
        out["valueString"] = str(value)
    return out


def _basis_entities(basis: Any) -> tuple[list[dict[str, Any]], str | None]:
    """(extra entities, basis label) for the entry's ``basis``."""
    if isinstance(basis, str):
        return [], basis
    if isinstance(basis, Mapping):
        if "consent" in basis:
            entity = {
                "what": {"reference": f"Consent/{basis['consent']}"},
                "role": {"coding": [{"system": ENTITY_ROLE_SYSTEM, "code": "consent-basis"}]},
            }
            return [entity], "consent"
        if "break_glass" in basis:
            return [], f"break-glass {basis['break_glass']}"
    return [], None


def ledger_entry_view(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An ``audit.record@1`` view in the shape :func:`audit_event` renders.

    The ledger records ``write`` (a create when it names version 1, else an update) and
    ``break_glass`` (the opening of a session: rendered as a flagged read); its basis is
    ``{"kind", "id"?}``; a permit's ``reason`` is its basis, not an outcome detail.
    """
    out = dict(entry)
    action = out.get("action")
    if action == "write":
        refs = [str(r) for r in out.get("resources") or ()]
        out["action"] = "create" if any(r.endswith("/_history/1") for r in refs) else "update"
    elif action == "break_glass":
        out["action"], out["break_glass"] = "read", True
    elif action not in ACTIONS:
        out["action"] = "read"
    basis = out.get("basis")
    if isinstance(basis, Mapping) and "kind" in basis:
        kind = basis["kind"]
        out["basis"] = {kind: basis["id"]} if "id" in basis else str(kind)
    if out.get("outcome") == "permit":
        out.pop("reason", None)
    return out


def audit_event(entry: Mapping[str, Any], *, observer: str | None = None) -> dict[str, Any]:
    """An R5 AuditEvent (BALP shape) for one committed audit entry.

    ``entry`` keys: ``actor``, ``org``, ``role``?, ``patient``?, ``action``, ``resources``?
    (references ``Type/id[/_history/v]``), ``purpose``?, ``basis``? (``"self"``, ``"author"``,
    ``{"consent": id}``, ``{"break_glass": session}``), ``outcome`` (permit|deny|error),
    ``reason``?, ``request``?, ``break_glass``? (bool), and ``tx`` (audit entry id), ``height``,
    ``time`` (block time ms). ``observer``: the node account that recorded it (default
    ``entry["node"]``, else ``<org>.node``).
    """
    action, interaction = ACTIONS[entry["action"]]
    outcome_code, outcome_display = OUTCOMES[entry["outcome"]]
    outcome: dict[str, Any] = {
        "code": {"system": _OUTCOME, "code": outcome_code, "display": outcome_display}
    }
    if entry.get("reason"):
        outcome["detail"] = [
            {
                "coding": [{"system": REASON_SYSTEM, "code": entry["reason"]}],
                "text": entry["reason"],
            }
        ]
    user: dict[str, Any] = {
        "type": {
            "coding": [
                {
                    "system": _PARTICIPATION,
                    "code": "IRCP" if action in ("R", "E") else "AUT",
                }
            ]
        },
        "who": _account(entry["actor"], entry.get("org")),
        "requestor": True,
    }
    if entry.get("role"):
        user["role"] = [{"coding": [{"system": ROLE_SYSTEM, "code": entry["role"]}]}]
    if entry.get("purpose"):
        user["authorization"] = [{"coding": [{"system": _PURPOSE, "code": entry["purpose"]}]}]
    node = observer or entry.get("node") or f"{entry['org']}.node"
    extra, basis_label = _basis_entities(entry.get("basis"))
    tx_details = [_detail("block-height", entry["height"]), _detail("block-time", entry["time"])]
    if basis_label:
        tx_details.append(_detail("basis", basis_label))
    if entry.get("request"):
        tx_details.append(_detail("request", entry["request"]))
    entities: list[dict[str, Any]] = []
    event: dict[str, Any] = {"resourceType": "AuditEvent", "id": entry["tx"]}
    if entry.get("break_glass") or (
        isinstance(entry.get("basis"), Mapping) and "break_glass" in entry["basis"]
    ):
        event["meta"] = {
            "security": [{"system": _ACT_CODE, "code": "BTG", "display": "break the glass"}]
        }
    if entry.get("patient"):
        event["patient"] = _account(entry["patient"])
        entities.append(
            {
                "what": _account(entry["patient"]),
                "role": {"coding": [{"system": _OBJECT_ROLE, "code": "1", "display": "Patient"}]},
            }
        )
    for ref in entry.get("resources") or ():
        entities.append(
            {
                "what": {"reference": ref},
                "role": {
                    "coding": [{"system": _OBJECT_ROLE, "code": "4", "display": "Domain Resource"}]
                },
            }
        )
    entities.extend(extra)
    entities.append(
        {
            "what": {"identifier": {"system": TX_SYSTEM, "value": entry["tx"]}},
            "role": {"coding": [{"system": ENTITY_ROLE_SYSTEM, "code": "audit-transaction"}]},
            "detail": tx_details,
        }
    )
    event.update(
        {
            "category": [
                {
                    "coding": [
                        {"system": _AUDIT_TYPE, "code": "rest", "display": "RESTful Operation"}
                    ]
                }
            ],
            "code": {"coding": [{"system": _INTERACTION, "code": interaction}]},
            "action": action,
            "recorded": ms_to_instant(entry["time"]),
            "outcome": outcome,
            "agent": [user],
            "source": {
                "observer": _account(node, entry.get("org")),
                "type": [
                    {
                        "coding": [
                            {"system": _SOURCE_TYPE, "code": "4", "display": "Application Server"}
                        ]
                    }
                ],
            },
            "entity": entities,
        }
    )
    return event


def anchor_provenance(
    anchor: Mapping[str, Any], *, provenance_id: str | None = None
) -> dict[str, Any]:
    """An R5 Provenance for one anchored resource version.

    ``anchor`` keys: ``type``, ``id``, ``version`` (int ≥ 1), ``author`` (account), ``org``,
    ``tx`` (anchor transaction id), ``kid`` (signer key id), ``height``, ``time`` (block time
    ms), ``digest``? (base64url keyed digest).
    """
    version = int(anchor["version"])
    base = f"{anchor['type']}/{anchor['id']}"
    extensions: list[dict[str, Any]] = [
        {"url": EXT_ANCHOR_TX, "valueIdentifier": {"system": TX_SYSTEM, "value": anchor["tx"]}},
        {"url": EXT_SIGNER_KID, "valueString": anchor["kid"]},
        {"url": EXT_BLOCK_HEIGHT, "valueString": str(anchor["height"])},
    ]
    if anchor.get("digest"):
        extensions.append({"url": EXT_DIGEST, "valueString": anchor["digest"]})
    entities: list[dict[str, Any]] = [
        {"role": "source", "what": {"identifier": {"system": TX_SYSTEM, "value": anchor["tx"]}}}
    ]
    if version > 1:
        entities.append(
            {"role": "revision", "what": {"reference": f"{base}/_history/{version - 1}"}}
        )
    op = "CREATE" if version == 1 else "UPDATE"
    return {
        "resourceType": "Provenance",
        "id": provenance_id or anchor["tx"],
        "extension": extensions,
        "target": [{"reference": f"{base}/_history/{version}"}],
        "recorded": ms_to_instant(anchor["time"]),
        "activity": {"coding": [{"system": _DATA_OPERATION, "code": op}]},
        "agent": [
            {
                "type": {"coding": [{"system": _PROV_AGENT, "code": "author"}]},
                "who": _account(anchor["author"], anchor.get("org")),
            },
            {
                "type": {"coding": [{"system": _PROV_AGENT, "code": "custodian"}]},
                "who": {"identifier": {"system": ORG_SYSTEM, "value": anchor["org"]}},
            },
        ],
        "entity": entities,
    }
