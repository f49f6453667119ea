"""``/fhir`` routes: the FHIR R5 REST facade over the node's :class:`RecordService`.

Each handler reads (bounded) and parses its input on the event loop, then calls the record
service in a worker thread (it blocks until the audit entry is committed). The record service
decides consent and audits; this layer maps HTTP ↔ service and errors → OperationOutcome
(:mod:`carechain.api.fhir.http`). Successful PHI responses carry ``X-Audit-Entry``.

Route order matters: the fixed paths (``metadata``, ``$break-glass``, ``Consent``,
``AuditEvent``, ``Provenance`` search) precede the generic ``{type}`` routes, and a final
catch-all answers unknown paths (404) and methods (405) with an OperationOutcome too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from email.utils import formatdate
from typing import Any, TypeVar

import anyio.to_thread
import orjson
from fastapi import APIRouter, Request, Response
from starlette.routing import Match

from carechain.api.auth import current_actor, current_token, scope_covers
from carechain.api.fhir import bundles
from carechain.api.fhir.capability import capability_statement
from carechain.api.fhir.http import (
    ANCHOR_HEADER,
    AUDIT_HEADER,
    DIGEST_KEY_HEADER,
    FhirRoute,
    check_type,
    etag,
    fhir_response,
    if_match,
    not_supported,
    purpose_of,
    read_body,
)
from carechain.api.fhir.search import IGNORED_PARAMS, RECORD_TYPES, parse_search, patient_id
from carechain.errors import AuthorizationError, UnavailableError, ValidationError
from carechain.fhir import (
    FhirIssue,
    FhirValidationError,
    anchor_provenance,
    audit_event,
    grant_to_consent,
    parse_resource,
)
from carechain.fhir._time import ms_to_instant
from carechain.fhir.audit_map import ledger_entry_view
from carechain.fhir.canonical import normalise_patient_reference
from carechain.fhir.operation_outcome import information
from carechain.ledger.tx import parse_envelope
from carechain.node.records_api import Access, Actor, RecordService, StoredVersion

T = TypeVar("T")

EXT_INCLUSION_PROOF = "https://carechain.dev/fhir/StructureDefinition/inclusion-proof"
"""Extension on each AuditEvent: the audit entry's RFC 9162 inclusion proof."""
ERASURE_HEADER = "X-Erasure-Transaction"
REVOCATION_HEADER = "X-Revocation-Transaction"

router = APIRouter(prefix="/fhir", tags=["fhir"], route_class=FhirRoute)


# --- helpers -----------------------------------------------------------------------------


def _records(request: Request) -> RecordService:
    records: RecordService | None = getattr(request.app.state, "records", None)
    if records is None:
        raise UnavailableError(
            "this node serves no records (started without a data directory)", retry_after=60
        )
    return records


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


def _caller(request: Request, rtype: str, perm: str) -> Actor:
    """The actor, after checking the token's SMART scopes allow ``perm`` on ``rtype``."""
    info = current_token(request)
    wanted = [f"{ctx}/{rtype}.{perm}" for ctx in ("patient", "user", "system")]
    if not any(scope_covers(g, w) for g in info.scopes for w in wanted):
        raise AuthorizationError(
            f"the token grants {list(info.scopes)}, this needs {rtype}.{perm}",
            code="insufficient_scope",
        )
    return current_actor(request)


async def _call(fn: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(fn)


def _version_headers(
    request: Request, access: Access[StoredVersion], *, location: bool
) -> dict[str, str]:
    v = access.value
    headers = {"ETag": etag(v.version), "Last-Modified": _http_date(v.time)}
    if access.audit_id:  # directory resources are not PHI and have no audit entry
        headers[AUDIT_HEADER] = access.audit_id
    if location:
        headers["Location"] = f"{_base(request)}/{v.type}/{v.id}/_history/{v.version}"
    if v.digest_key is not None:  # lets the reader check the content against the ledger
        headers[DIGEST_KEY_HEADER] = v.digest_key
        headers[ANCHOR_HEADER] = v.anchor_tx
    return headers


def _http_date(ms: int) -> str:
    return formatdate(ms / 1000, usegmt=True)


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        raise FhirValidationError(
            [FhirIssue(location="(body)", message="malformed JSON", code="structure")], what=what
        ) from None
    if not isinstance(value, dict):
        raise FhirValidationError(
            [FhirIssue(location="(body)", message="want a JSON object", code="structure")],
            what=what,
        )
    return value


def _parameters(body: dict[str, Any], names: tuple[str, ...]) -> dict[str, str]:
    """String values of a ``Parameters`` resource (valueString / valueReference / valueCode)."""
    if body.get("resourceType") != "Parameters":
        raise FhirValidationError(
            [FhirIssue(location="resourceType", message="want a Parameters resource")]
        )
    out: dict[str, str] = {}
    for i, param in enumerate(body.get("parameter") or ()):
        if not isinstance(param, dict) or param.get("name") not in names:
            continue
        value: Any = param.get("valueString") or param.get("valueCode") or param.get("valueId")
        ref = param.get("valueReference")
        if value is None and isinstance(ref, dict):
            value = ref.get("reference")
        if not isinstance(value, str) or not value:
            raise FhirValidationError(
                [FhirIssue(location=f"Parameters.parameter[{i}]", message="want a string value")]
            )
        out[param["name"]] = value
    return out


# --- capability ---------------------------------------------------------------------------


@router.get("/metadata", summary="CapabilityStatement (R5)")
async def metadata(request: Request) -> Response:
    """What this FHIR facade implements: types, interactions, search parameters."""
    now = request.app.state.node.clock()
    return fhir_response(capability_statement(_base(request), ms_to_instant(now)))


# --- break-glass, consent, audit, provenance ---------------------------------------------


@router.post("/$break-glass", summary="Open an ETREAT break-glass session")
async def break_glass(request: Request) -> Response:
    """Parameters ``patient`` (Patient/<id> or id) and ``reason``: a time-boxed session."""
    body = _json_object(await read_body(request), "break-glass")
    params = _parameters(body, ("patient", "reason"))
    if "patient" not in params or "reason" not in params:
        raise FhirValidationError(
            [
                FhirIssue(
                    location="Parameters",
                    message="patient and reason are required",
                    code="required",
                )
            ]
        )
    patient = patient_id(params["patient"], "patient")
    records = _records(request)

    def run() -> Access[Mapping[str, Any]]:
        actor = current_actor(request)
        return records.break_glass(actor, patient, params["reason"])

    access = await _call(run)
    out: list[dict[str, Any]] = []
    for name, value in sorted(access.value.items()):
        if isinstance(value, bool):
            out.append({"name": name, "valueBoolean": value})
        elif isinstance(value, int) and -(2**31) <= value < 2**31:
            out.append({"name": name, "valueInteger": value})
        else:
            text = value if isinstance(value, str) else orjson.dumps(value).decode()
            out.append({"name": name, "valueString": text})
    return fhir_response(
        {"resourceType": "Parameters", "parameter": out}, headers={AUDIT_HEADER: access.audit_id}
    )


@router.post("/Consent", summary="Grant consent (R5 Consent → consent.grant@1)")
async def create_consent(request: Request) -> Response:
    """The patient (signed in custodially) grants access; answers the stored grant as R5."""
    parsed = parse_resource(await read_body(request), expected_type="Consent")
    subject = normalise_patient_reference(
        str((parsed.data.get("subject") or {}).get("reference", ""))
    )
    records = _records(request)

    def run() -> Access[Mapping[str, Any]]:
        return records.grant(_caller(request, "Consent", "write"), parsed.data)

    access = await _call(run)
    consent = grant_to_consent(access.value, patient_reference=subject or "Patient/unknown")
    headers = {
        "Location": f"{_base(request)}/Consent/{consent['id']}",
        AUDIT_HEADER: access.audit_id,
    }
    return fhir_response(consent, 201, headers=headers)


@router.get("/Consent", summary="A patient's consents (search by patient)")
async def search_consents(request: Request) -> Response:
    """``?patient=``: the patient's grants as R5 Consents."""
    params = list(request.query_params.multi_items())
    names = {n for n, _ in params} - set(IGNORED_PARAMS)
    if names != {"patient"} or len(params) != len({n for n, _ in params}):
        raise ValidationError(
            "Consent search takes exactly one parameter: patient", code="bad_search_param"
        )
    patient = patient_id(request.query_params["patient"], "patient")
    records = _records(request)

    def run() -> list[Mapping[str, Any]]:
        return records.consents(_caller(request, "Consent", "read"), patient)

    grants = await _call(run)
    resources = [grant_to_consent(g, patient_reference=f"Patient/{patient}") for g in grants]
    links = [{"relation": "self", "url": str(request.url)}]
    return fhir_response(
        bundles.searchset(resources, base=_base(request), total=len(resources), links=links)
    )


@router.post("/Consent/{consent_id}/$revoke", summary="Revoke a consent (consent.revoke@1)")
async def revoke_consent(consent_id: str, request: Request) -> Response:
    """The patient revokes a grant; effective from its block."""
    records = _records(request)

    def run() -> Access[str]:
        return records.revoke(_caller(request, "Consent", "write"), consent_id)

    access = await _call(run)
    return fhir_response(
        information(f"Consent/{consent_id} revoked by transaction {access.value}"),
        headers={AUDIT_HEADER: access.audit_id, REVOCATION_HEADER: access.value},
    )


def _proof_extension(proof: Mapping[str, Any]) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"url": "leafIndex", "valueInteger64": str(proof["leaf_index"])},
        {"url": "treeSize", "valueInteger64": str(proof["tree_size"])},
        {"url": "root", "valueString": str(proof["root"])},
    ]
    parts.extend({"url": "path", "valueString": str(h)} for h in proof.get("proof") or ())
    return {"url": EXT_INCLUSION_PROOF, "extension": parts}


@router.get("/AuditEvent", summary="A patient's audit trail as BALP AuditEvents with proofs")
async def search_audit(request: Request) -> Response:
    """``?patient=``: every audit entry about the patient, each with its inclusion proof."""
    params = list(request.query_params.multi_items())
    allowed = {"patient", "_count", "_offset", *IGNORED_PARAMS}
    bad = [n for n, _ in params if n not in allowed]
    if bad or "patient" not in request.query_params:
        raise ValidationError(
            "AuditEvent search takes patient (required), _count and _offset",
            code="bad_search_param",
        )
    query = parse_search(
        "Observation", [(n, v) for n, v in params if n in ("patient", "_count", "_offset")]
    )
    assert query.patient is not None
    patient = query.patient
    records = _records(request)

    def run() -> list[Any]:
        return list(records.access_log(_caller(request, "AuditEvent", "read"), patient))

    views = await _call(run)
    page = views[query.offset : query.offset + query.count]
    events = []
    for view in page:
        event = audit_event(ledger_entry_view(view.entry))
        event.setdefault("extension", []).append(_proof_extension(view.proof))
        events.append(event)
    links = bundles.page_links(
        request.url, total=len(views), offset=query.offset, count=query.count
    )
    return fhir_response(
        bundles.searchset(events, base=_base(request), total=len(views), links=links)
    )


def _signer_kid(request: Request, tx_hex: str) -> str:
    """Key id of the first signer of a committed transaction ("" when unknown)."""
    store = request.app.state.node.store
    try:
        loc = store.find_tx(bytes.fromhex(tx_hex))
        raw = store.find_envelope(loc.log_index) if loc is not None else None
        return parse_envelope(raw).body.signers[0].kid if raw is not None else ""
    except (ValueError, IndexError):
        return ""


@router.get("/Provenance", summary="On-chain anchors of a record's versions as Provenance")
async def search_provenance(request: Request) -> Response:
    """``?target=Type/id[/_history/v]``: one Provenance per anchored version."""
    params = [(n, v) for n, v in request.query_params.multi_items()]
    query = parse_search("Provenance", [(n, v) for n, v in params if n != "target"])
    targets = request.query_params.getlist("target")
    if len(targets) != 1:
        raise ValidationError("Provenance search needs exactly one target", code="bad_search_param")
    parts = targets[0].split("/")
    if "_history" in parts:
        at = parts.index("_history")
        parts, version = parts[:at], parts[at + 1 : at + 2]
    else:
        version = []
    if len(parts) < 2 or parts[-2] not in RECORD_TYPES or not parts[-1]:
        raise ValidationError(
            f"target: {targets[0][:80]!r} is not a reference Type/id to a record",
            code="bad_search_param",
        )
    rtype, rid = parts[-2], parts[-1]
    purpose = purpose_of(request)
    records = _records(request)

    def run() -> Access[list[StoredVersion]]:
        return records.history(_caller(request, rtype, "read"), rtype, rid, purpose=purpose)

    access = await _call(run)
    versions = [v for v in access.value if not version or str(v.version) == version[0]]
    provs = []
    for v in versions:
        anchor = {
            "type": v.type, "id": v.id, "version": v.version, "author": v.author,
            "org": v.org, "tx": v.anchor_tx, "kid": _signer_kid(request, v.anchor_tx),
            "height": v.height, "time": v.time, "digest": v.digest,
        }  # fmt: skip
        prov = anchor_provenance(anchor)
        if not anchor["kid"]:  # the anchor transaction is not in this node's ledger
            prov["extension"] = [x for x in prov["extension"] if x.get("valueString") != ""]
        provs.append(prov)
    page = provs[query.offset : query.offset + query.count]
    links = bundles.page_links(
        request.url, total=len(provs), offset=query.offset, count=query.count
    )
    return fhir_response(
        bundles.searchset(page, base=_base(request), total=len(provs), links=links),
        headers={AUDIT_HEADER: access.audit_id},
    )


# --- records: create, read, vread, update, history, search, erase -----------------------


@router.post("/{rtype}", summary="Create a record (version 1)")
async def create(rtype: str, request: Request) -> Response:
    """Validate, store encrypted, anchor; 201 with Location, ETag and X-Audit-Entry.

    The server assigns the id (opaque): any ``id`` in the body is ignored, so none reaches the
    chain; the answer and ``Location`` carry the assigned id.
    """
    check_type(rtype, RECORD_TYPES)
    parsed = parse_resource(await read_body(request), expected_type=rtype)
    purpose = purpose_of(request)
    records = _records(request)

    def run() -> Access[StoredVersion]:
        actor = _caller(request, rtype, "write")
        return records.create(actor, parsed.data, purpose=purpose)

    access = await _call(run)
    headers = _version_headers(request, access, location=True)
    return fhir_response(access.value.resource, 201, headers=headers)


@router.get("/{rtype}", summary="Search records of a type")
async def search(rtype: str, request: Request) -> Response:
    """searchset Bundle of the latest versions the caller may read, paged with links."""
    check_type(rtype, RECORD_TYPES)
    query = parse_search(rtype, list(request.query_params.multi_items()))
    purpose = purpose_of(request)
    records = _records(request)

    def run() -> Any:
        return records.search(
            _caller(request, rtype, "read"),
            rtype,
            patient=query.patient,
            ids=query.ids,
            last_updated=query.last_updated,
            code=query.code,
            count=query.count,
            offset=query.offset,
            purpose=purpose,
        )

    access = await _call(run)
    page = access.value
    links = bundles.page_links(request.url, total=page.total, offset=page.offset, count=query.count)
    body = bundles.searchset(
        [v.resource for v in page.items], base=_base(request), total=page.total, links=links
    )
    return fhir_response(body, headers={AUDIT_HEADER: access.audit_id} if access.audit_id else {})


@router.get("/{rtype}/{rid}", summary="Read the latest version")
async def read(rtype: str, rid: str, request: Request) -> Response:
    """The latest version (410 once erased)."""
    check_type(rtype, RECORD_TYPES)
    purpose = purpose_of(request)
    records = _records(request)

    def run() -> Access[StoredVersion]:
        return records.read(_caller(request, rtype, "read"), rtype, rid, purpose=purpose)

    access = await _call(run)
    return fhir_response(
        access.value.resource, headers=_version_headers(request, access, location=False)
    )


@router.put("/{rtype}/{rid}", summary="Update: store and anchor the next version")
async def update(rtype: str, rid: str, request: Request) -> Response:
    """``If-Match: W/"n"`` makes it conditional on version n (412 when stale)."""
    check_type(rtype, RECORD_TYPES)
    parsed = parse_resource(await read_body(request), expected_type=rtype)
    if parsed.id != rid:
        raise FhirValidationError(
            [
                FhirIssue(
                    location=f"{rtype}.id",
                    message=f"the body's id {parsed.id!r} differs from the URL's {rid!r}",
                    code="invariant",
                )
            ]
        )
    expected = if_match(request)
    purpose = purpose_of(request)
    records = _records(request)

    def run() -> Access[StoredVersion]:
        actor = _caller(request, rtype, "write")
        return records.update(actor, rtype, rid, parsed.data, if_match=expected, purpose=purpose)

    access = await _call(run)
    return fhir_response(
        access.value.resource, headers=_version_headers(request, access, location=True)
    )


@router.delete("/{rtype}/{rid}", summary="Erase a record (crypto-shredding)")
async def erase(rtype: str, rid: str, request: Request) -> Response:
    """``reason`` and ``basis`` from the query or a JSON body; 200 with an OperationOutcome."""
    check_type(rtype, RECORD_TYPES)
    body = await read_body(request) if request.headers.get("content-type") else b""
    fields: dict[str, Any] = _json_object(body, "erasure") if body else {}
    if fields.get("resourceType") == "Parameters":
        fields = _parameters(fields, ("reason", "basis"))
    reason = request.query_params.get("reason", fields.get("reason", ""))
    basis = request.query_params.get("basis", fields.get("basis"))
    if not isinstance(reason, str) or not (basis is None or isinstance(basis, str)):
        raise ValidationError("reason and basis must be strings", code="bad_erasure")
    records = _records(request)

    def run() -> Access[str]:
        actor = _caller(request, rtype, "write")
        stated = basis or ("patient_request" if actor.kind == "patient" else "")
        if not stated:
            raise ValidationError(
                "basis is required (court_order, data_error, legal_obligation, "
                "retention_expired, or patient_request for the patient)",
                code="bad_erasure",
            )
        return records.erase(actor, rtype, rid, reason=reason, basis=stated)

    access = await _call(run)
    return fhir_response(
        information(f"{rtype}/{rid} erased by transaction {access.value}"),
        headers={
            k: v
            for k, v in ((AUDIT_HEADER, access.audit_id), (ERASURE_HEADER, access.value))
            if v  # a directory resource's erasure has no audit entry
        },
    )


@router.get("/{rtype}/{rid}/_history", summary="Every version, newest first")
async def history(rtype: str, rid: str, request: Request) -> Response:
    """history Bundle of the record."""
    check_type(rtype, RECORD_TYPES)
    purpose = purpose_of(request)
    records = _records(request)

    def run() -> Access[list[StoredVersion]]:
        return records.history(_caller(request, rtype, "read"), rtype, rid, purpose=purpose)

    access = await _call(run)
    body = bundles.history(access.value, base=_base(request), self_url=str(request.url))
    return fhir_response(body, headers={AUDIT_HEADER: access.audit_id} if access.audit_id else {})


@router.get("/{rtype}/{rid}/_history/{vid}", summary="Read one version")
async def vread(rtype: str, rid: str, vid: str, request: Request) -> Response:
    """A specific version."""
    check_type(rtype, RECORD_TYPES)
    if not vid.isdigit() or not 1 <= int(vid) < 2**31:
        raise ValidationError(f"version {vid[:20]!r}: want a positive integer", code="bad_version")
    purpose = purpose_of(request)
    records = _records(request)

    def run() -> Access[StoredVersion]:
        return records.vread(_caller(request, rtype, "read"), rtype, rid, int(vid), purpose=purpose)

    access = await _call(run)
    return fhir_response(
        access.value.resource, headers=_version_headers(request, access, location=False)
    )


_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]


@router.api_route("/{path:path}", methods=_METHODS, include_in_schema=False)
async def unsupported(path: str, request: Request) -> Response:
    """Unknown FHIR paths (404) and unsupported methods on known ones (405)."""
    for route in router.routes:
        if route is _CATCH_ALL[0] or not hasattr(route, "path_regex"):
            continue
        match, _ = route.matches({**request.scope, "method": "__none__"})
        if match is not Match.NONE:
            return not_supported(f"{request.method} is not supported on /fhir/{path}", 405)
    return not_supported(f"no FHIR interaction at /fhir/{path}")


_CATCH_ALL = [router.routes[-1]]


__all__ = ["EXT_INCLUSION_PROOF", "router"]
