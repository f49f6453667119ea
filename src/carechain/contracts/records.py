"""The records contract: on-chain anchors of off-chain FHIR resource versions, and erasure.

State (ADR 0005, "On-chain anchors")::

    rec/<org>/<type>/<id>  {"org", "type", "id", "patient"?, "status": "active"|"erased",
                            "latest": <version>, "category"?,
                            "versions": [{"version", "digest", "index", "url", "profile"?,
                                          "category"?, "author", "tx", "height", "time"}, ..],
                            "erased"?: {"by", "basis", "reason", "height", "tx"}}
    prec/<patient>/<org>/<type>/<id>  {"height"}   (the patient's records, listable by prefix)

``digest`` = HMAC-SHA256(per-version blinding key, canonical FHIR JSON) and ``index`` =
HMAC-SHA256(consortium index key, patient identifier): 32 bytes each, base64url. No PHI on chain.

Invariants:

* versions are dense (1, 2, …) and chained: version ``n > 1`` names the digest of version
  ``n - 1`` as ``prev``; a record's patient, organisation, type and id never change;
* ``versions[i]`` is never rewritten; erasure only sets ``status`` and ``erased``, from its
  block on, and an erased record takes no new version (its off-chain data key is shredded, so
  its digests can no longer be linked to any content);
* who may anchor: a member of the hosting organisation with a clinical or service role, or the
  patient themself; directory resources (Organization, Practitioner) have no patient and no
  secure index, and are anchored by the organisation's admins, clerks and clinical roles;
* who may erase: the patient, or an admin / privacy officer of the hosting organisation with a
  stated basis.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

from carechain.contracts.identity import (
    account_arg,
    arg,
    get_account,
    get_org,
    has_capability,
    is_patient,
    only_fields,
    reject,
    text,
)
from carechain.encoding import JsonValue, b64u_decode
from carechain.errors import ValidationError
from carechain.ledger.execute import TxContext
from carechain.ledger.state import Overlay
from carechain.ledger.tx import SignedTx

FHIR_TYPES = (
    "AllergyIntolerance", "Binary", "Condition", "Consent", "DiagnosticReport",
    "DocumentReference", "Encounter", "Immunization", "MedicationRequest", "Observation",
    "Organization", "Patient", "Practitioner", "Provenance",
)  # fmt: skip
"""The FHIR resource types a record anchor may name (closed set)."""
AUTHOR_ROLES = ("device", "lab_technician", "nurse", "pharmacist", "practitioner", "service")
"""Member roles that may anchor records of their organisation."""
DIRECTORY_TYPES = ("Organization", "Practitioner")
"""Directory resources: about the organisation and its people, never about a patient. Their
anchors carry no ``patient`` and no ``index``; they are written by the organisation's admins,
clerks and the roles of :data:`AUTHOR_ROLES`, and erased by an admin or privacy officer."""
DIRECTORY_ROLES = ("admin", "clerk", *AUTHOR_ROLES)
"""Member roles that may anchor directory resources of their organisation."""
ERASE_BASES = (
    "court_order", "data_error", "legal_obligation", "patient_request", "retention_expired",
)  # fmt: skip
"""Closed set of stated bases for an erasure; a patient may only state ``patient_request``."""
FHIR_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}\Z")
"""FHIR ``id`` syntax (R5 §2.1.28.0.1)."""
CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}\Z")
"""A short code (category codes, reason codes)."""
URL_RE = re.compile(r"^https?://[!-~]{1,1016}\Z")
"""An absolute http(s) URL of printable ASCII without spaces."""
DIGEST_SIZE = 32


class StateView(Protocol):
    """Decoded read access to state (an :class:`Overlay` over committed or pending state)."""

    def get(self, key: str) -> JsonValue | None:
        """The decoded value of ``key``, or None."""
        ...


def record_key(org: str, rtype: str, rid: str) -> str:
    """State key of a record's anchor chain."""
    return f"rec/{org}/{rtype}/{rid}"


def patient_record_key(patient: str, org: str, rtype: str, rid: str) -> str:
    """State key of a record in its patient's index."""
    return f"prec/{patient}/{org}/{rtype}/{rid}"


def find_record(state: StateView, org: str, rtype: str, rid: str) -> Mapping[str, Any] | None:
    """The record's state, or None (also for malformed coordinates)."""
    if rtype not in FHIR_TYPES or not FHIR_ID_RE.match(rid) or "/" in org:
        return None
    rec = state.get(record_key(org, rtype, rid))
    return rec if isinstance(rec, Mapping) else None


# -- argument checks ---------------------------------------------------------------------------


def fhir_type_arg(args: Mapping[str, Any], name: str = "type") -> str:
    """A FHIR resource type from :data:`FHIR_TYPES`."""
    value: str = arg(args, name, str)
    if value not in FHIR_TYPES:
        raise reject("bad_args", f"args.{name} {value!r} is not one of {list(FHIR_TYPES)}")
    return value


def fhir_id_arg(args: Mapping[str, Any], name: str = "id") -> str:
    """A FHIR logical id."""
    value: str = arg(args, name, str)
    if not FHIR_ID_RE.match(value):
        raise reject("bad_args", f"args.{name}: {value!r} is not a FHIR id ([A-Za-z0-9-.]{{1,64}})")
    return value


def code_arg(args: Mapping[str, Any], name: str, *, optional: bool = False) -> str | None:
    """A short code argument."""
    value = arg(args, name, str, optional=optional)
    if value is not None and not CODE_RE.match(value):
        raise reject("bad_args", f"args.{name}: {value!r} is not a code")
    return value  # type: ignore[no-any-return]


def _url_arg(args: Mapping[str, Any], name: str, *, optional: bool = False) -> str | None:
    value = arg(args, name, str, optional=optional)
    if value is not None and not URL_RE.match(value):
        raise reject("bad_args", f"args.{name} must be an absolute http(s) URL")
    return value  # type: ignore[no-any-return]


def _hash_arg(args: Mapping[str, Any], name: str) -> str:
    value: str = arg(args, name, str)
    try:
        raw = b64u_decode(value, what=f"args.{name}", max_bytes=64)
    except ValidationError as exc:
        raise reject("bad_args", str(exc)) from None
    if len(raw) != DIGEST_SIZE:
        raise reject("bad_args", f"args.{name}: got {len(raw)} bytes, want {DIGEST_SIZE}")
    return value


# -- handlers ----------------------------------------------------------------------------------


def _may_anchor(state: Overlay, sender: str, org: str, patient: str | None) -> None:
    if patient is not None and sender == patient:
        return
    roles = AUTHOR_ROLES if patient is not None else DIRECTORY_ROLES
    acct = get_account(state, sender)
    if acct.get("org") != org or acct.get("role") not in roles:
        whom = " or the patient" if patient is not None else ""
        raise reject(
            "unauthorized",
            f"{sender} may not anchor records of {org}: a member of {org} with one of the roles "
            f"{list(roles)}{whom} is required",
        )


def anchor(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``records.anchor@1``: anchor one version of an off-chain FHIR resource.

    args: ``{"org", "type", "id", "version", "profile"?, "url", "digest", "index", "patient",
    "category"?, "prev"?}`` — ``prev`` is required exactly when ``version > 1`` and must equal
    the stored digest of version ``version - 1``. The author is the sender. A directory resource
    (:data:`DIRECTORY_TYPES`) carries neither ``patient`` nor ``index``.

    Steps: 1 shape; 2 organisation active, patient registered; 3 sender may anchor;
    4 version chain (``wrong_version``, ``wrong_prev``, ``erased``, ``patient_mismatch``).
    """
    args = tx.body.args
    only_fields(
        args,
        {"org", "type", "id", "version", "profile", "url", "digest", "index", "patient",
         "category", "prev"},
    )  # fmt: skip
    org = account_arg(args, "org")  # step 1
    rtype = fhir_type_arg(args)
    rid = fhir_id_arg(args)
    version: int = arg(args, "version", int)
    if not 1 <= version <= 1_000_000:
        raise reject("bad_args", "args.version must be a positive integer")
    profile = _url_arg(args, "profile", optional=True)
    url = str(_url_arg(args, "url"))
    digest = _hash_arg(args, "digest")
    directory = rtype in DIRECTORY_TYPES
    if directory and ("patient" in args or "index" in args):
        raise reject("bad_args", f"a {rtype} is not about a patient: no args.patient or args.index")
    index = None if directory else _hash_arg(args, "index")
    patient = None if directory else account_arg(args, "patient")
    category = code_arg(args, "category", optional=True)
    prev = _hash_arg(args, "prev") if "prev" in args else None
    if version == 1 and prev is not None:
        raise reject("bad_args", "args.prev must be absent for version 1")
    if version > 1 and prev is None:
        raise reject("bad_args", "args.prev (the digest of the previous version) is required")
    get_org(state, org)  # step 2
    if patient is not None and not is_patient(state, patient):
        raise reject("unknown_patient", f"{patient} is not a registered patient")
    sender = tx.body.sender
    _may_anchor(state, sender, org, patient)  # step 3
    key = record_key(org, rtype, rid)
    current = state.get(key)  # step 4
    if isinstance(current, Mapping):
        rec: dict[str, Any] = dict(current)
        if rec["status"] == "erased":
            raise reject("erased", f"{rtype}/{rid} at {org} was erased; it takes no new version")
        if rec.get("patient") != patient:
            raise reject("patient_mismatch", f"{rtype}/{rid} belongs to another patient")
        latest = int(rec["latest"])
        if version != latest + 1:
            raise reject(
                "wrong_version", f"{rtype}/{rid}: got version {version}, want {latest + 1}"
            )
        want_prev = rec["versions"][-1]["digest"]
        if prev != want_prev:
            raise reject("wrong_prev", f"{rtype}/{rid}: prev is not the digest of version {latest}")
    else:
        if version != 1:
            raise reject("wrong_version", f"{rtype}/{rid} has no version yet: want version 1")
        rec = {"id": rid, "org": org, "type": rtype, "versions": []}
        if patient is not None:
            rec["patient"] = patient
            state.put(patient_record_key(patient, org, rtype, rid), {"height": ctx.height})
    entry: dict[str, JsonValue] = {
        "author": sender, "digest": digest, "height": ctx.height, "time": ctx.time,
        "tx": tx.tx_id.hex(), "url": url, "version": version,
    }  # fmt: skip
    if index is not None:
        entry["index"] = index
    if profile is not None:
        entry["profile"] = profile
    if category is not None:
        entry["category"] = category
        rec["category"] = category
    else:
        rec.pop("category", None)
    rec["versions"] = [*rec["versions"], entry]
    rec["latest"] = version
    rec["status"] = "active"
    state.put(key, rec)
    event: dict[str, JsonValue] = {"id": rid, "org": org, "type": rtype, "version": version}
    if patient is not None:
        ctx.touch(patient)
        event["patient"] = patient
    ctx.emit("records.anchored", event)


def erase(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``records.erase@1``: mark a record erased from this block on (crypto-shredding off chain).

    args: ``{"org", "type", "id", "reason", "basis"}``; by the record's patient (basis
    ``patient_request``) or an admin / privacy officer of the hosting organisation. The receipt
    is the signed erasure receipt.
    """
    args = tx.body.args
    only_fields(args, {"org", "type", "id", "reason", "basis"})
    org = account_arg(args, "org")
    rtype = fhir_type_arg(args)
    rid = fhir_id_arg(args)
    reason = text(args, "reason")
    basis: str = arg(args, "basis", str)
    if basis not in ERASE_BASES:
        raise reject("bad_args", f"args.basis {basis!r} is not one of {list(ERASE_BASES)}")
    current = find_record(state, org, rtype, rid)
    if current is None:
        raise reject("unknown_record", f"no record {rtype}/{rid} at {org}")
    sender = tx.body.sender
    if sender == current.get("patient"):
        if basis != "patient_request":
            raise reject("bad_args", "a patient's erasure states the basis patient_request")
    else:
        acct = get_account(state, sender)
        if acct.get("org") != org or not (
            acct.get("role") == "admin" or has_capability(acct, "privacy_officer")
        ):
            raise reject(
                "unauthorized",
                f"only the patient, or an admin or privacy officer of {org}, may erase a record",
            )
    if current["status"] == "erased":
        raise reject("already_erased", f"{rtype}/{rid} at {org} is already erased")
    rec = dict(current)
    rec["status"] = "erased"
    rec["erased"] = {
        "basis": basis, "by": sender, "height": ctx.height, "reason": reason or "",
        "tx": tx.tx_id.hex(),
    }  # fmt: skip
    state.put(record_key(org, rtype, rid), rec)
    event: dict[str, JsonValue] = {"basis": basis, "id": rid, "org": org, "type": rtype}
    if "patient" in rec:
        ctx.touch(str(rec["patient"]))
        event["patient"] = rec["patient"]
    ctx.emit("records.erased", event)


def register(registry: Any) -> None:
    """Register the records kinds."""
    registry.register("records.anchor@1", anchor)
    registry.register("records.erase@1", erase)


__all__ = [
    "AUTHOR_ROLES",
    "DIRECTORY_ROLES",
    "DIRECTORY_TYPES",
    "ERASE_BASES",
    "FHIR_TYPES",
    "StateView",
    "find_record",
    "patient_record_key",
    "record_key",
    "register",
]
