"""``/epcis``: GS1 EPCIS 2.0 capture and query (REST binding shapes), backed by the ledger.

* ``POST /epcis/capture`` — an EPCIS 2.0 JSON-LD document or a single event; schema errors and
  event-hash mismatches → 422 with the errors; the document becomes ONE ``supply.capture@1``
  signed with the caller's custodial key; a refused custody rule → 409 with the rejected
  transaction id and the items the node flagged as suspect; accepted → 201 + ``Location``.
* ``GET /epcis/events?MATCH_epc=…`` — an ``EPCISQueryDocument`` of the events naming the EPC.
* ``GET /epcis/events/{eventID}`` — one event (its CBV 2.0 hash ID, URL-encoded, or the hex).
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from carechain.api.auth import current_token
from carechain.api.deps import problems
from carechain.api.errors import problem_response
from carechain.epcis.event_hash import EVENT_ID_RE
from carechain.epcis.mapping import EventHashMismatchError, iso, item_of
from carechain.epcis.schema import EPCISSchemaError
from carechain.errors import AuthorizationError, LimitExceededError, ValidationError
from carechain.node.node import now_ms
from carechain.node.supply import SupplyService, open_supply_service

router = APIRouter(prefix="/epcis", tags=["supply"])
EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
MAX_CAPTURE_BYTES = 16 * 1024 * 1024
_lock = threading.Lock()


def get_supply(request: Request) -> SupplyService:
    """The app's supply service (opened on first use over the node and its data directory)."""
    state = request.app.state
    with _lock:
        service: SupplyService | None = getattr(state, "supply", None)
        if service is None:
            service = open_supply_service(state.node, getattr(state, "data_dir", None))
            state.supply = service
    return service


async def _body(request: Request) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_CAPTURE_BYTES:
            raise LimitExceededError(f"capture: more than {MAX_CAPTURE_BYTES} bytes")
    return body


@router.post(
    "/capture",
    summary="Capture an EPCIS 2.0 document (or one event) as one ledger transaction",
    status_code=201,
    responses=problems(400, 401, 403, 409, 413, 422),
)
async def capture(
    request: Request,
    profile: Annotated[str, Query(pattern="^(dscsa|evidence)$")] = "dscsa",
) -> JSONResponse:
    """Validate (official schema), hash (CBV 2.0), map, store off chain, sign and commit.

    ``profile=dscsa`` applies the custody rules; ``profile=evidence`` records the events'
    hashes and EPC index only (sensor readings, any EPCIS data)."""
    info = current_token(request)
    if info.signer is None:
        raise AuthorizationError(
            "a capture is signed by you: sign in with your custodial account (POST "
            "/v1/auth/login), or submit a signed supply.capture@1 at /v1/transactions",
            code="signature_required",
        )
    raw = await _body(request)
    service = get_supply(request)
    try:
        outcome = service.capture(raw, account=info.account, signer=info.signer, profile=profile)
    except EPCISSchemaError as exc:
        errors = [{"path": i.path, "message": i.message, "rule": i.rule} for i in exc.issues]
        return problem_response(
            422,
            "epcis_schema",
            "EPCIS schema validation failed",
            exc.message,
            extra={"errors": errors},
        )
    except EventHashMismatchError as exc:
        return problem_response(
            422,
            exc.code,
            "Event hash mismatch",
            exc.message,
            extra={"event": exc.index, "eventID": exc.given, "computed": exc.computed},
        )
    body: dict[str, Any] = {
        "captureID": outcome.tx,
        "status": outcome.status,
        "code": outcome.code,
        "height": outcome.height,
        "doc": outcome.doc,
        "events": outcome.events,
    }
    if outcome.status != "ok":
        return problem_response(
            409,
            outcome.code,
            "Capture refused by the custody rules",
            outcome.message,
            extra={**body, "flagged": outcome.flagged, "flagTx": outcome.flag_tx},
        )
    return JSONResponse(
        body, status_code=201, headers={"Location": f"/v1/transactions/{outcome.tx}"}
    )


def _query_document(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "@context": [EPCIS_CONTEXT],
        "type": "EPCISQueryDocument",
        "schemaVersion": "2.0",
        "creationDate": iso(now_ms()),
        "epcisBody": {
            "queryResults": {"queryName": "SimpleEventQuery", "resultsBody": {"eventList": events}}
        },
    }


def _with_id(found: dict[str, Any], hash_hex: str) -> dict[str, Any]:
    event = dict(found["event"] or {"type": found["record"]["type"]})
    event.setdefault("eventID", f"ni:///sha-256;{hash_hex}?ver=CBV2.0")
    return event


@router.get(
    "/events",
    summary="Query events (EPCIS SimpleEventQuery: MATCH_epc)",
    responses=problems(400, 404),
)
def events(
    request: Request, match_epc: Annotated[str, Query(alias="MATCH_epc", max_length=300)]
) -> JSONResponse:
    """Events naming the EPC (EPC URI or GS1 Digital Link) as an ``EPCISQueryDocument``."""
    service = get_supply(request)
    item = item_of(match_epc)
    docs = [_with_id(f, f["hash"]) for f in service.events_for_item(item)]
    return JSONResponse(_query_document(docs), media_type="application/ld+json")


@router.get(
    "/events/{event_id:path}",
    summary="One event by its event ID (CBV 2.0 hash ID)",
    responses=problems(400, 404),
)
def event(request: Request, event_id: str) -> JSONResponse:
    """The event whose CBV 2.0 hash ID is ``event_id`` (``ni:///sha-256;…?ver=CBV2.0``, URL
    encoded, or its 64 hex digits)."""
    m = EVENT_ID_RE.match(event_id)
    hash_hex = m.group(1) if m else event_id
    if len(hash_hex) != 64 or any(c not in "0123456789abcdef" for c in hash_hex):
        raise ValidationError("eventID: want ni:///sha-256;<hex>?ver=CBV2.0", code="bad_id")
    found = get_supply(request).event(hash_hex)
    return JSONResponse(_with_id(found, hash_hex), media_type="application/ld+json")


__all__ = ["get_supply", "router"]
