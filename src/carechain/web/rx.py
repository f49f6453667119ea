"""Prescription pages: a prescriber's (issue, cancel, PDMP) and a pharmacist's (verify, dispense).

Pages (HTML, none in the OpenAPI schema)::

    GET  /portal/rx                           → the page of the signed-in person's role
    GET  /portal/rx/prescriber?pdmp=&purpose=  practitioner/nurse: registration, issue form, own
                                              prescriptions (cancel), PDMP query with its flags
    POST /portal/rx/prescriber/issue          issue (``prescriptions.issue@1``)
    POST /portal/rx/prescriber/{id}/cancel    cancel (``prescriptions.cancel@1``)
    GET  /portal/rx/pharmacy?rx=              pharmacist: verify (status, remaining, refills,
                                              prescriber's registration at issue), dispense form
    POST /portal/rx/pharmacy/{id}/dispense    dispense (``prescriptions.dispense@1``)

Sign-in, session cookie and CSRF tokens are the portal's (``web/portal.py``): every POST is
checked against the session's CSRF token before anything else. Writes are signed with the
person's custodial key by :class:`~carechain.node.rx.RxService` and wait for their block; a
contract refusal is a rejected receipt kept in that block, shown on the page with its reason,
message, transaction and height (HTTP 422). Verify and PDMP go through the same service, which
decides and audits them exactly as the JSON API does (``/v1/prescriptions``, ``/v1/pdmp``).

Invariants: a form error is a precise message on the page (400), never a stack trace; nothing
is submitted before the whole form is valid; templates autoescape everything and carry the
portal's CSP (no scripts, no inline styles). The issue form commits to the order it describes:
``digest`` is the keyed digest (HMAC-SHA256 under a fresh blinding key) of the canonical R5
MedicationRequest built from the form; when the patient has a Patient record at this hospital
the MedicationRequest is stored there through the record service (consent decided, audited,
anchored) and the prescription commits to that anchor (``record``), which the contract checks.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from carechain.contracts.credentials import SCHEDULES, credential_at
from carechain.contracts.prescriptions import (
    RX_ID_LEN,
    find_prescription,
    last_ids_of,
    prescriber_index_key,
    verify_status,
)
from carechain.encoding import b64u_encode
from carechain.errors import AuthorizationError, LedgerError, NotFoundError, ValidationError
from carechain.fhir.canonical import canonical_fhir, keyed_digest
from carechain.ledger.tx import ACCOUNT_RE
from carechain.node.records_api import Actor, RecordService
from carechain.node.rx import PDMP_PURPOSES, RxService
from carechain.web import portal
from carechain.web.portal import Session

router = APIRouter(include_in_schema=False)

PRESCRIBER_ROLES = ("nurse", "practitioner")
PHARMACIST_ROLES = ("pharmacist",)
DAY_MS = 86_400_000
MAX_LISTED = 50
MAX_TEXT = 200
MAX_COUNT_DIGITS = 6
_RX_ID_RE = re.compile(rf"^[0-9a-f]{{{RX_ID_LEN}}}\Z")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}\Z")
_RXNORM_RE = re.compile(r"^[0-9]{1,12}\Z")
_COUNT_RE = re.compile(rf"^[0-9]{{1,{MAX_COUNT_DIGITS}}}\Z")
RXNORM_SYSTEM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NOTICES = {
    "issued": "Prescription issued: it is on the ledger.",
    "cancelled": "Prescription cancelled: nothing more may be dispensed.",
    "dispensed": "Dispensed: the fill is on the ledger.",
}
ISSUE_FIELDS = (
    "patient", "rxnorm", "name", "strength", "form", "schedule", "quantity", "days_supply",
    "refills", "earliest_fill", "expires", "pharmacy",
)  # fmt: skip


# --- plumbing --------------------------------------------------------------------------------


def service(request: Request) -> RxService:
    """The app's :class:`RxService` (shared with the JSON API; created on first use)."""
    svc: RxService | None = getattr(request.app.state, "rx", None)
    if svc is None:
        svc = RxService(request.app.state.node)
        request.app.state.rx = svc
    return svc


def _forbidden(request: Request, session: Session, roles: Sequence[str], what: str) -> Response:
    return portal.error_page(
        request,
        403,
        f"For {what}",
        f"This page is for {what} ({', '.join(roles)}); you are signed in as "
        f"{session.actor.account} ({session.actor.role or session.actor.kind}).",
        session,
        reason="unauthorized",
    )


def _role_ok(session: Session, roles: Sequence[str]) -> bool:
    return session.actor.kind == "member" and session.actor.role in roles


def _receipt_view(result: Mapping[str, Any]) -> dict[str, Any]:
    """A rejected receipt as shown on a page."""
    return {
        "code": str(result.get("code") or ""),
        "msg": str(result.get("msg") or result.get("code") or ""),
        "tx": str(result.get("tx") or ""),
        "height": result.get("height"),
    }


def _denial_view(exc: LedgerError) -> dict[str, Any]:
    """A refused read (verify, PDMP) as shown on a page: reason, message, audit entry."""
    return {
        "code": exc.code,
        "msg": exc.message,
        "audit_id": str(getattr(exc, "audit_id", "") or ""),
    }


def _utc_day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).date().isoformat()


def _day_ms(value: str, field: str) -> int:
    """``YYYY-MM-DD`` → Unix ms at 00:00 UTC (ValidationError naming ``field``)."""
    if not _DATE_RE.match(value):
        raise ValidationError(f"{field}: want a date YYYY-MM-DD, got {value[:20]!r}")
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"{field}: {value!r} is not a calendar date") from None
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


def _count(form: Sequence[tuple[str, str]], field: str, low: int, label: str) -> int:
    value = portal._one(form, field)
    if not _COUNT_RE.match(value) or int(value) < low:
        raise ValidationError(f"{label}: want a whole number ≥ {low}, got {value[:20]!r}")
    return int(value)


def _text(form: Sequence[tuple[str, str]], field: str, label: str) -> str:
    value = portal._one(form, field)
    if not value:
        raise ValidationError(f"{label}: required")
    if len(value) > MAX_TEXT or any(ord(c) < 32 for c in value):
        raise ValidationError(f"{label}: at most {MAX_TEXT} printable characters")
    return value


def medication_request(args: Mapping[str, Any]) -> dict[str, Any]:
    """The R5 MedicationRequest the issue form describes (what ``digest`` commits to)."""
    med = args["medication"]
    dispense: dict[str, Any] = {
        "validityPeriod": {
            "start": dt.datetime.fromtimestamp(args["earliest_fill"] / 1000, tz=dt.UTC)
            .isoformat()
            .replace("+00:00", "Z"),
            "end": dt.datetime.fromtimestamp(args["expires"] / 1000, tz=dt.UTC)
            .isoformat()
            .replace("+00:00", "Z"),
        },
        "numberOfRepeatsAllowed": args["refills"],
        "quantity": {"value": args["quantity"], "unit": med["form"]},
        "expectedSupplyDuration": {
            "value": args["days_supply"],
            "unit": "days",
            "system": "http://unitsofmeasure.org",
            "code": "d",
        },
    }
    if "pharmacy" in args:
        dispense["dispenser"] = {"reference": f"Organization/{args['pharmacy']}"}
    return {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{args['patient']}"},
        "medication": {
            "concept": {
                "coding": [
                    {"system": RXNORM_SYSTEM, "code": med["rxnorm"], "display": med["name"]}
                ],
                "text": f"{med['name']} {med['strength']} {med['form']}",
            }
        },
        "dispenseRequest": dispense,
        "note": [{"text": f"Schedule {args['schedule']}"}],
    }


def build_issue_args(form: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The ``prescriptions.issue@1`` args of the issue form (ValidationError naming the field).

    Dates are UTC days: the prescription may be filled from 00:00 of ``earliest_fill`` until
    00:00 of ``expires``. The contract checks the rest (registration, refills by schedule,
    validity limits) and refuses with its own reason.
    """
    patient = portal._one(form, "patient")
    if not ACCOUNT_RE.match(patient):
        raise ValidationError(f"patient: {patient[:80]!r} is not a patient account id")
    rxnorm = portal._one(form, "rxnorm")
    if not _RXNORM_RE.match(rxnorm):
        raise ValidationError(f"RxNorm code: want 1 to 12 digits, got {rxnorm[:20]!r}")
    medication = {
        "form": _text(form, "form", "form"),
        "name": _text(form, "name", "medication name"),
        "rxnorm": rxnorm,
        "strength": _text(form, "strength", "strength"),
    }
    schedule = portal._one(form, "schedule")
    if schedule not in SCHEDULES:
        raise ValidationError(f"schedule: choose one of {', '.join(SCHEDULES)}")
    args: dict[str, Any] = {
        "days_supply": _count(form, "days_supply", 1, "days' supply"),
        "earliest_fill": _day_ms(portal._one(form, "earliest_fill"), "earliest fill date"),
        "expires": _day_ms(portal._one(form, "expires"), "expiry date"),
        "medication": medication,
        "patient": patient,
        "quantity": _count(form, "quantity", 1, "quantity"),
        "refills": _count(form, "refills", 0, "refills"),
        "schedule": schedule,
    }
    if args["expires"] <= args["earliest_fill"]:
        raise ValidationError("expiry date: must be after the earliest fill date")
    pharmacy = portal._one(form, "pharmacy")
    if pharmacy:
        if not ACCOUNT_RE.match(pharmacy):
            raise ValidationError(f"pharmacy: {pharmacy[:80]!r} is not an organisation id")
        args["pharmacy"] = pharmacy
    canonical = canonical_fhir(medication_request(args))
    args["digest"] = b64u_encode(keyed_digest(secrets.token_bytes(32), canonical))
    return args


def keep_off_chain(
    records: RecordService, actor: Actor, args: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Store the form's MedicationRequest as a record of the patient at this hospital (consent
    decided, audited, anchored) and return the ``digest`` and ``record`` link the prescription
    commits to; None when the patient has no Patient record here (the form's keyed digest
    stays an opaque commitment)."""
    pid = records.patient_record_id(str(args["patient"]))
    if pid is None:
        return None
    resource = medication_request(args)
    resource["subject"] = {"reference": f"Patient/{pid}"}
    stored = records.create(actor, resource).value
    return {"digest": stored.digest,
            "record": {"id": stored.id, "org": stored.org, "version": stored.version}}  # fmt: skip


def _defaults(now: int) -> dict[str, str]:
    return {
        **dict.fromkeys(ISSUE_FIELDS, ""),
        "schedule": "II",
        "quantity": "",
        "days_supply": "",
        "refills": "0",
        "earliest_fill": _utc_day(now),
        "expires": _utc_day(now + 30 * DAY_MS),
    }


# --- pages: where to go ------------------------------------------------------------------------


@router.get("/portal/rx", response_class=HTMLResponse)
async def rx_home(request: Request) -> Response:
    """The prescriber's or the pharmacist's page, by role."""
    session = await portal._session(request)
    if session is None:
        return portal._to_login(request)
    base = portal._base(request)
    if _role_ok(session, PHARMACIST_ROLES):
        return RedirectResponse(f"{base}/portal/rx/pharmacy", status_code=303)
    if _role_ok(session, PRESCRIBER_ROLES):
        return RedirectResponse(f"{base}/portal/rx/prescriber", status_code=303)
    return _forbidden(
        request, session, (*PRESCRIBER_ROLES, *PHARMACIST_ROLES), "prescribers and pharmacists"
    )


# --- prescriber --------------------------------------------------------------------------------


def _registration(svc: RxService, kind: str, account: str, now: int) -> dict[str, Any] | None:
    version = credential_at(svc.state, kind, account, now)
    if version is None:
        return None
    valid = version.get("status") == "active" and now < int(version["expires"])
    return {**version, "valid": valid}


def _my_prescriptions(svc: RxService, account: str, now: int) -> list[dict[str, Any]]:
    """The prescriber's newest prescriptions with their status now (public ledger state)."""
    ids = last_ids_of(svc.state, prescriber_index_key(account), MAX_LISTED)
    return [dict(verify_status(svc.state, rx_id, now)) for rx_id in reversed(ids)]


async def _prescriber_page(
    request: Request,
    session: Session,
    *,
    status_code: int = 200,
    values: Mapping[str, str] | None = None,
    error: str = "",
    refused: Mapping[str, Any] | None = None,
    notice: str = "",
    pdmp_patient: str = "",
    purpose: str = "TREAT",
) -> Response:
    svc = service(request)
    now = svc.now()
    account = session.actor.account
    context: dict[str, Any] = {
        "registration": await portal._run(_registration, svc, "prescriber", account, now),
        "mine": await portal._run(_my_prescriptions, svc, account, now),
        "values": {**_defaults(now), **(values or {})},
        "schedules": SCHEDULES,
        "purposes": PDMP_PURPOSES,
        "error": error,
        "refused": refused,
        "notice": notice,
        "pdmp_patient": pdmp_patient[:80],
        "purpose": purpose,
        "report": None,
        "pdmp_error": "",
        "pdmp_denied": None,
    }
    if pdmp_patient:
        if not ACCOUNT_RE.match(pdmp_patient):
            context["pdmp_error"] = f"patient: {pdmp_patient[:80]!r} is not a patient account id"
            status_code = max(status_code, 400)
        elif purpose not in PDMP_PURPOSES:
            context["pdmp_error"] = f"purpose: choose one of {', '.join(PDMP_PURPOSES)}"
            status_code = max(status_code, 400)
        else:
            try:
                context["report"] = await portal._run(
                    lambda: svc.pdmp(account, pdmp_patient, purpose=purpose)
                )
            except AuthorizationError as exc:
                context["pdmp_denied"] = _denial_view(exc)
                status_code = max(status_code, 403)
            except NotFoundError as exc:
                context["pdmp_error"] = exc.message
                status_code = max(status_code, 404)
            except ValidationError as exc:
                context["pdmp_error"] = exc.message
                status_code = max(status_code, 400)
            except LedgerError as exc:  # e.g. the audit entry could not be committed
                context["pdmp_error"] = exc.message
                status_code = max(status_code, 503)
    return portal.render(request, "rx_prescriber.html", status_code, session, **context)


@router.get("/portal/rx/prescriber", response_class=HTMLResponse)
async def prescriber(
    request: Request, pdmp: str = "", purpose: str = "TREAT", notice: str = "", rx: str = ""
) -> Response:
    """Registration, issue form, own prescriptions, PDMP query."""
    session = await portal._session(request)
    if session is None:
        return portal._to_login(request)
    if not _role_ok(session, PRESCRIBER_ROLES):
        return _forbidden(request, session, PRESCRIBER_ROLES, "prescribers")
    text = NOTICES.get(notice, "")
    if text and _RX_ID_RE.match(rx):
        text = f"{text} Id {rx}."
    try:
        return await _prescriber_page(
            request, session, notice=text, pdmp_patient=pdmp.strip(), purpose=purpose
        )
    except LedgerError as exc:
        return portal.ledger_error_page(request, exc, session)


async def _checked(
    request: Request, roles: Sequence[str], what: str
) -> tuple[Session | None, list[tuple[str, str]], Response | None]:
    session, form, refused = await portal._checked_post(request)
    if refused is not None:
        return session, [], refused
    assert session is not None and form is not None
    if not _role_ok(session, roles):
        return session, [], _forbidden(request, session, roles, what)
    return session, form, None


@router.post("/portal/rx/prescriber/issue", response_class=HTMLResponse)
async def issue(request: Request) -> Response:
    """Issue a prescription from the form (signed with the prescriber's custodial key)."""
    session, form, refused = await _checked(request, PRESCRIBER_ROLES, "prescribers")
    if refused is not None:
        return refused
    assert session is not None
    values = {name: portal._one(form, name)[:MAX_TEXT] for name in ISSUE_FIELDS}
    try:
        args = build_issue_args(form)
    except ValidationError as exc:
        return await _prescriber_page(
            request, session, status_code=400, values=values, error=exc.message
        )
    records = getattr(request.app.state, "records", None)
    if records is not None:  # keep the MedicationRequest off chain and commit to its anchor
        try:
            link = await portal._run(keep_off_chain, records, session.actor, args)
        except LedgerError as exc:
            why = f"the MedicationRequest could not be stored at this hospital: {exc.message}"
            return await _prescriber_page(
                request, session, status_code=403 if isinstance(exc, AuthorizationError) else 400,
                values=values, error=why,
            )  # fmt: skip
        if link is not None:
            args.update(link)
    svc = service(request)
    try:
        result = await portal._run(
            svc.submit, session.actor.account, session.actor.signer, "prescriptions.issue@1", args
        )
    except LedgerError as exc:
        return portal.ledger_error_page(request, exc, session)
    if result.get("status") != "ok":
        return await _prescriber_page(
            request, session, status_code=422, values=values, refused=_receipt_view(result)
        )
    query = urllib.parse.urlencode({"notice": "issued", "rx": result["id"]})
    return RedirectResponse(
        f"{portal._base(request)}/portal/rx/prescriber?{query}", status_code=303
    )


@router.post("/portal/rx/prescriber/{rx_id}/cancel", response_class=HTMLResponse)
async def cancel(request: Request, rx_id: str) -> Response:
    """Cancel one of the prescriber's prescriptions."""
    session, form, refused = await _checked(request, PRESCRIBER_ROLES, "prescribers")
    if refused is not None:
        return refused
    assert session is not None
    if not _RX_ID_RE.match(rx_id):
        return await _prescriber_page(
            request, session, status_code=400,
            error=f"prescription id: got {rx_id[:40]!r}, want {RX_ID_LEN} hex digits",
        )  # fmt: skip
    reason = portal._one(form, "reason")
    if not reason or len(reason) > MAX_TEXT:
        return await _prescriber_page(
            request, session, status_code=400,
            error=f"cancel reason: state why (at most {MAX_TEXT} characters)",
        )  # fmt: skip
    svc = service(request)
    try:
        result = await portal._run(
            svc.submit, session.actor.account, session.actor.signer, "prescriptions.cancel@1",
            {"id": rx_id, "reason": reason},
        )  # fmt: skip
    except LedgerError as exc:
        return portal.ledger_error_page(request, exc, session)
    if result.get("status") != "ok":
        return await _prescriber_page(
            request, session, status_code=422, refused=_receipt_view(result)
        )
    query = urllib.parse.urlencode({"notice": "cancelled", "rx": rx_id})
    return RedirectResponse(
        f"{portal._base(request)}/portal/rx/prescriber?{query}", status_code=303
    )


# --- pharmacist --------------------------------------------------------------------------------


async def _pharmacy_page(
    request: Request,
    session: Session,
    rx_id: str,
    *,
    status_code: int = 200,
    error: str = "",
    refused: Mapping[str, Any] | None = None,
    notice: str = "",
    done: Mapping[str, Any] | None = None,
) -> Response:
    svc = service(request)
    now = svc.now()
    account = session.actor.account
    context: dict[str, Any] = {
        "rx_id": rx_id[:40],
        "answer": None,
        "denied": None,
        "error": error,
        "refused": refused,
        "notice": notice,
        "done": done,
        "registration": await portal._run(_registration, svc, "pharmacist", account, now),
        "pharmacy": session.actor.org or "",
    }
    if rx_id:
        if not _RX_ID_RE.match(rx_id):
            context["error"] = context["error"] or (
                f"prescription id: got {rx_id[:40]!r}, want {RX_ID_LEN} hex digits"
            )
            status_code = max(status_code, 400)
        else:
            try:
                context["answer"] = await portal._run(svc.verify, account, rx_id)
            except AuthorizationError as exc:
                context["denied"] = _denial_view(exc)
                status_code = max(status_code, 403)
            except NotFoundError as exc:
                context["error"] = context["error"] or exc.message
                status_code = max(status_code, 404)
            except LedgerError as exc:  # e.g. the audit entry could not be committed
                context["error"] = context["error"] or exc.message
                status_code = max(status_code, 503)
    return portal.render(request, "rx_pharmacy.html", status_code, session, **context)


@router.get("/portal/rx/pharmacy", response_class=HTMLResponse)
async def pharmacy(
    request: Request, rx: str = "", notice: str = "", tx: str = "", height: str = ""
) -> Response:
    """Verify a prescription by id; the dispense form."""
    session = await portal._session(request)
    if session is None:
        return portal._to_login(request)
    if not _role_ok(session, PHARMACIST_ROLES):
        return _forbidden(request, session, PHARMACIST_ROLES, "pharmacists")
    done = None
    if (
        notice in NOTICES
        and re.fullmatch(r"[0-9a-f]{64}", tx)
        and re.fullmatch(r"[0-9]{1,15}", height)
    ):
        done = {"tx": tx, "height": int(height)}
    try:
        return await _pharmacy_page(
            request, session, rx.strip(), notice=NOTICES.get(notice, ""), done=done
        )
    except LedgerError as exc:
        return portal.ledger_error_page(request, exc, session)


@router.post("/portal/rx/pharmacy/{rx_id}/dispense", response_class=HTMLResponse)
async def dispense(request: Request, rx_id: str) -> Response:
    """Dispense from the form; a refusal shows the rejected receipt's reason."""
    session, form, refused = await _checked(request, PHARMACIST_ROLES, "pharmacists")
    if refused is not None:
        return refused
    assert session is not None
    if not _RX_ID_RE.match(rx_id):
        return await _pharmacy_page(request, session, rx_id, status_code=400)
    patient = portal._one(form, "patient")
    quantity = portal._one(form, "quantity")
    error = ""
    if not ACCOUNT_RE.match(patient):
        error = f"patient: {patient[:80]!r} is not a patient account id"
    elif not _COUNT_RE.match(quantity) or int(quantity) < 1:
        error = f"quantity: want a whole number ≥ 1, got {quantity[:20]!r}"
    if error:
        return await _pharmacy_page(request, session, rx_id, status_code=400, error=error)
    svc = service(request)
    if await portal._run(find_prescription, svc.state, rx_id) is None:
        return await _pharmacy_page(request, session, rx_id, status_code=404)
    try:
        result = await portal._run(
            svc.submit, session.actor.account, session.actor.signer, "prescriptions.dispense@1",
            {"id": rx_id, "patient": patient, "quantity": int(quantity)},
        )  # fmt: skip
    except LedgerError as exc:
        return portal.ledger_error_page(request, exc, session)
    if result.get("status") != "ok":
        return await _pharmacy_page(
            request, session, rx_id, status_code=422, refused=_receipt_view(result)
        )
    query = urllib.parse.urlencode(
        {"rx": rx_id, "notice": "dispensed", "tx": result["tx"], "height": result["height"]}
    )
    return RedirectResponse(f"{portal._base(request)}/portal/rx/pharmacy?{query}", status_code=303)


__all__ = ["build_issue_args", "medication_request", "router", "service"]
