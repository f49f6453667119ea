"""``/v1/prescriptions``, ``/v1/credentials``, ``/v1/pdmp``: e-prescriptions over HTTP.

Writes are signed custodially (a bearer token from ``POST /v1/auth/login``: the node signs with
the person's key; ADR 0006) or, signed by the caller, posted to ``/v1/transactions``. Every
write waits for its block: an accepted one answers 200 with the receipt; a contract rejection
answers 422 ``application/problem+json`` whose ``code`` is the contract's reason, with ``tx`` and
``height`` naming the rejected receipt kept in the block (evidence of the attempt).

Reads: ``GET /v1/prescriptions/{id}`` is the verify answer (``?format=fhir``: a Bundle of the
R5 MedicationRequest and its MedicationDispenses); ``GET /v1/pdmp/{patient}`` the PDMP report;
``GET /v1/prescriptions-report?day=YYYY-MM-DD`` the EPCS-style auditable-event report (admins,
auditors, regulators). Reads of a person's data are decided and audited by ``node/rx.py``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import anyio.to_thread
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from carechain.api.auth import current_token
from carechain.api.deps import problems
from carechain.api.errors import PROBLEM_BASE, PROBLEM_MEDIA_TYPE
from carechain.errors import AuthorizationError, LimitExceededError, ValidationError
from carechain.fhir.rx_map import rx_bundle
from carechain.node.rx import RxService, epcs_report

MAX_BODY = 64 * 1024
_RX_ID = re.compile(r"^[0-9a-f]{16}\Z")
REPORT_ROLES = ("admin", "auditor", "regulator")

router = APIRouter(tags=["prescriptions"])


def service(request: Request) -> RxService:
    """The app's :class:`RxService` (created on first use)."""
    svc: RxService | None = getattr(request.app.state, "rx", None)
    if svc is None:
        svc = RxService(request.app.state.node)
        request.app.state.rx = svc
    return svc


async def _body(request: Request) -> dict[str, Any]:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise LimitExceededError(f"request body over {MAX_BODY} bytes")
    try:
        value = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        raise ValidationError("malformed JSON body", code="malformed_json") from None
    if not isinstance(value, dict):
        raise ValidationError("want a JSON object")
    return value


def _rx_id(rx_id: str) -> str:
    if not _RX_ID.match(rx_id):
        raise ValidationError(f"prescription id: got {rx_id[:40]!r}, want 16 hex digits")
    return rx_id


def _answer(result: dict[str, Any]) -> JSONResponse:
    if result.get("status") == "ok":
        return JSONResponse(result)
    code = str(result.get("code"))
    problem = {
        "type": PROBLEM_BASE + code,
        "title": "Rejected by contract",
        "status": 422,
        "detail": str(result.get("msg") or code),
        "code": code,
        "tx": result.get("tx"),
        "height": result.get("height"),
        "kind": result.get("kind"),
    }
    return JSONResponse(problem, status_code=422, media_type=PROBLEM_MEDIA_TYPE)


async def _submit(request: Request, kind: str, args: dict[str, Any]) -> JSONResponse:
    info = current_token(request)
    svc = service(request)
    result = await anyio.to_thread.run_sync(svc.submit, info.account, info.signer, kind, args)
    return _answer(result)


WRITE = problems(400, 401, 403, 413, 422)


@router.post("/v1/prescriptions", summary="Issue a prescription (prescriber)", responses=WRITE)
async def issue(request: Request) -> JSONResponse:
    """Body: the ``prescriptions.issue@1`` args (patient, medication, schedule, quantity,
    days_supply, refills, earliest_fill, expires, pharmacy?, digest)."""
    return await _submit(request, "prescriptions.issue@1", await _body(request))


@router.post("/v1/prescriptions/{rx_id}/dispense", summary="Dispense (pharmacist)", responses=WRITE)
async def dispense(request: Request, rx_id: str) -> JSONResponse:
    """Body: ``{"patient", "quantity"}``."""
    args = {**await _body(request), "id": _rx_id(rx_id)}
    return await _submit(request, "prescriptions.dispense@1", args)


@router.post("/v1/prescriptions/{rx_id}/cancel", summary="Cancel (prescriber)", responses=WRITE)
async def cancel(request: Request, rx_id: str) -> JSONResponse:
    """Body: ``{"reason"}``."""
    args = {**await _body(request), "id": _rx_id(rx_id)}
    return await _submit(request, "prescriptions.cancel@1", args)


@router.post(
    "/v1/prescriptions/{rx_id}/transfer", summary="Transfer to a pharmacy", responses=WRITE
)
async def transfer(request: Request, rx_id: str) -> JSONResponse:
    """Body: ``{"to"}`` (a registered pharmacy organisation)."""
    args = {**await _body(request), "id": _rx_id(rx_id)}
    return await _submit(request, "prescriptions.transfer@1", args)


_CRED_KINDS = {
    "prescriber": "credentials.register_prescriber@1",
    "pharmacy": "credentials.register_pharmacy@1",
    "pharmacist": "credentials.register_pharmacist@1",
    "revoke": "credentials.revoke@1",
}


@router.post(
    "/v1/credentials/{what}", summary="Register or revoke a credential (admin)", responses=WRITE
)
async def credential(request: Request, what: str) -> JSONResponse:
    """``what``: prescriber, pharmacy, pharmacist or revoke; body: that kind's args."""
    kind = _CRED_KINDS.get(what)
    if kind is None:
        raise ValidationError(f"credential kind {what!r}: want one of {sorted(_CRED_KINDS)}")
    return await _submit(request, kind, await _body(request))


@router.get(
    "/v1/prescriptions/{rx_id}",
    summary="Verify a prescription (status, remaining, prescriber's registration)",
    responses=problems(400, 401, 403, 404),
)
async def verify(request: Request, rx_id: str, format: str = "json") -> JSONResponse:
    """The verify answer; ``?format=fhir`` adds nothing to the decision and answers a Bundle."""
    if format not in ("json", "fhir"):
        raise ValidationError("format: want json or fhir")
    info = current_token(request)
    svc = service(request)
    answer = await anyio.to_thread.run_sync(svc.verify, info.account, _rx_id(rx_id))
    headers = {"X-Audit-Entry": answer["audit_entry"]} if answer.get("audit_entry") else {}
    if format == "fhir":
        rx = svc.state.get(f"rx/{rx_id}")
        assert isinstance(rx, dict)
        return JSONResponse(
            rx_bundle(rx, at_time=svc.now()), headers=headers, media_type="application/fhir+json"
        )
    return JSONResponse(answer, headers=headers)


@router.get(
    "/v1/pdmp/{patient}",
    summary="A patient's controlled-substance history with risk flags (audited)",
    responses=problems(400, 401, 403, 404),
)
async def pdmp(request: Request, patient: str, purpose: str = "TREAT") -> JSONResponse:
    """Decided like a PHI read (consent for TREAT, or the chain's legal basis) and audited."""
    info = current_token(request)
    svc = service(request)
    report = await anyio.to_thread.run_sync(
        lambda: svc.pdmp(info.account, patient, purpose=purpose)
    )
    return JSONResponse(report, headers={"X-Audit-Entry": report["audit_entry"]})


@router.get(
    "/v1/prescriptions-report",
    summary="EPCS-style auditable events of one day (UTC)",
    responses=problems(400, 401, 403),
)
async def report(request: Request, day: str) -> JSONResponse:
    """Prescription and credential transactions (refused ones too), denials, break-glass."""
    info = current_token(request)
    svc = service(request)
    acct = svc.account(info.account)
    if acct.get("role") not in REPORT_ROLES:
        raise AuthorizationError(
            f"the EPCS report is for {list(REPORT_ROLES)}", code="unauthorized"
        )
    try:
        start_day = dt.date.fromisoformat(day)
    except ValueError:
        raise ValidationError(f"day: got {day[:20]!r}, want YYYY-MM-DD") from None
    start = int(
        dt.datetime(start_day.year, start_day.month, start_day.day, tzinfo=dt.UTC).timestamp()
        * 1000
    )
    events = await anyio.to_thread.run_sync(epcs_report, svc.node, start)
    return JSONResponse({"day": day, "events": events})


__all__ = ["router", "service"]
