"""The portal: server-rendered pages for patients and practitioners signed in custodially.

Pages (HTML, none in the OpenAPI schema)::

    GET  /portal                      → /portal/me (patients), /portal/patients (members), login
    GET  /portal/login, POST          custodial sign-in (key name + password, ADR 0006)
    POST /portal/logout               end the session (the node drops the decrypted key)
    GET  /portal/me                   patient: records, consents (grant/revoke), access log with
                                      per-entry proof status, break-glass sessions
    POST /portal/consents             patient: grant (an R5 Consent → the service's ``grant``)
    POST /portal/consents/{id}/revoke patient: revoke (the service's ``revoke``)
    POST /portal/break-glass/{id}/review patient: mark a break-glass session reviewed
    GET  /portal/records/{type}/{id}  anyone signed in: one record (the service's audited ``read``)
    GET  /portal/patients?patient=    member: search a patient's records (purpose TREAT)
    POST /portal/break-glass          member with ``emergency``: open an ETREAT session

Sessions: ``POST /portal/login`` calls the app's ``AuthService.login`` (``app.state.auth``) and
keeps the bearer token in the cookie ``carechain_session`` (``HttpOnly; SameSite=Strict;
Path=/``). Every POST carries a CSRF token in a hidden field: an HMAC of the session token
under a per-process secret (the sign-in form: of a pre-session nonce cookie), compared in
constant time before anything else happens.

Invariants: every access to PHI goes through the record service, which decides and audits it
(this module never reads record content itself; the record list and break-glass sessions come
from public ledger state, which holds no PHI); templates autoescape everything; a denial is a
403 page naming the decision's reason and its audit entry; pages carry the explorer's CSP (no
scripts at all here).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.concurrency import run_in_threadpool

from carechain.contracts.access import find_session, patient_sessions_key
from carechain.contracts.consent import PURPOSES
from carechain.contracts.records import FHIR_ID_RE, FHIR_TYPES
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import PrivateKey
from carechain.encoding import MAX_SAFE_INT
from carechain.errors import (
    AuthenticationError,
    AuthorizationError,
    ConflictError,
    GoneError,
    LedgerError,
    NotFoundError,
    ValidationError,
    VerificationError,
)
from carechain.fhir.consent_map import consent_resource
from carechain.ledger.tx import ACCOUNT_RE
from carechain.merkle import (
    NoteVerifier,
    consistency_proof,
    leaf_hash,
    open_checkpoint,
    verify_consistency,
    verify_inclusion,
)
from carechain.node.node import Node
from carechain.node.records_api import Actor, AuditView, RecordService

T = TypeVar("T")

TEMPLATES = Path(__file__).resolve().parent / "templates"
COOKIE = "carechain_session"
LOGIN_COOKIE = "carechain_login"
MAX_FORM_BYTES = 16 * 1024
RECORD_TYPES = tuple(t for t in FHIR_TYPES if t not in ("Consent", "Provenance"))
"""Types a consent may scope and the practitioner search looks through."""
PRACTITIONER_PURPOSES = ("TREAT", "ETREAT")
CONSENT_ACTIONS = {"read": "access", "write": "correct"}
"""Form action → consentaction code (``correct`` grants read and write)."""
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}\Z")
_CONSENT_ID_RE = re.compile(r"^[0-9a-f]{16}\Z")
NOTICES = {
    "granted": "Consent granted: the grant is on the ledger.",
    "revoked": "Consent revoked: it stops applying from the revocation's block.",
    "reviewed": "Break-glass session marked reviewed by you (a ledger transaction).",
    "break_glass": "Break-glass session opened for emergency treatment (purpose ETREAT). "
    "It is time-boxed, audited and will be reviewed.",
}

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_SECRET = secrets.token_bytes(32)
"""Keys the CSRF tokens of this process (sessions are in-memory too)."""


class _TokenInfo(Protocol):
    account: str
    signer: PrivateKey | None


class _Auth(Protocol):
    """What the portal uses of ``carechain.api.auth.AuthService`` (``app.state.auth``)."""

    def login(self, keyring: Keyring, name: str, password: bytes) -> tuple[str, Any]: ...

    def lookup(self, token: str) -> Any: ...

    def logout(self, token: str) -> bool: ...


def format_ms(ms: int) -> str:
    """Unix milliseconds as ``YYYY-MM-DD HH:MM:SS UTC``."""
    try:
        moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _short(value: str, n: int = 12) -> str:
    return value if len(value) <= n else value[:n] + "…"


env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters["ms"] = format_ms
env.filters["short"] = _short

router = APIRouter(include_in_schema=False)


# --- plumbing ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in person: the bearer token, the actor and the CSRF token of the session."""

    token: str
    actor: Actor
    csrf: str


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _csrf_for(value: str, purpose: str) -> str:
    return hmac.new(_SECRET, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison (any characters: compared as UTF-8 bytes)."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def render(
    request: Request,
    template: str,
    status_code: int = 200,
    session: Session | None = None,
    **context: Any,
) -> Response:
    """Render ``template`` (autoescaped) with the portal's headers."""
    html = env.get_template(template).render(
        base=_base(request), path=request.url.path, session=session, **context
    )
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def error_page(
    request: Request,
    status_code: int,
    title: str,
    detail: str,
    session: Session | None = None,
    **extra: Any,
) -> Response:
    """A 4xx/5xx page in the portal's layout."""
    context: dict[str, Any] = {"reason": None, "audit_id": None, **extra}
    return render(
        request,
        "portal_error.html",
        status_code,
        session,
        title=title,
        detail=detail,
        status=status_code,
        **context,
    )


def ledger_error_page(request: Request, exc: LedgerError, session: Session | None) -> Response:
    """The page for a failure the record service raised (a denial names reason and audit)."""
    audit_id = getattr(exc, "audit_id", None)
    if isinstance(exc, AuthorizationError):
        return error_page(
            request, 403, "Access denied", exc.message, session, reason=exc.code, audit_id=audit_id
        )
    if isinstance(exc, GoneError):
        return error_page(request, 410, "Erased", exc.message, session, audit_id=audit_id)
    if isinstance(exc, NotFoundError):
        return error_page(request, 404, "Not found", exc.message, session, audit_id=audit_id)
    if isinstance(exc, ValidationError):
        issues = getattr(exc, "issues", None)
        detail = exc.message
        if issues:
            detail = "; ".join(
                f"{getattr(i, 'location', '')}: {getattr(i, 'message', i)}" for i in issues
            )
        return error_page(request, 422, "Not accepted", detail, session, reason=exc.code)
    if isinstance(exc, VerificationError):
        return error_page(
            request,
            500,
            "Integrity check failed",
            exc.message,
            session,
            reason=exc.code,
            audit_id=audit_id,
        )
    if isinstance(exc, ConflictError):
        return error_page(request, 409, "Conflict", exc.message, session, reason=exc.code)
    return error_page(request, 503, "Unavailable", exc.message, session, reason=exc.code)


async def _run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await run_in_threadpool(fn, *args, **kwargs)


def _node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


def _auth(request: Request) -> _Auth:
    auth: _Auth = request.app.state.auth
    return auth


def _records(request: Request) -> RecordService | None:
    records: RecordService | None = getattr(request.app.state, "records", None)
    return records


def _no_records(request: Request) -> Response:
    return error_page(
        request,
        503,
        "No records here",
        "This node serves no records (it was started without a data directory).",
    )


async def _session(request: Request) -> Session | None:
    """The live session of the request's cookie, or None."""
    token = request.cookies.get(COOKIE, "")
    records = _records(request)
    if not token or records is None or len(token) > 128:
        return None
    try:
        info: _TokenInfo = _auth(request).lookup(token)
        actor = await _run(records.actor, info.account, info.signer)
    except LedgerError:
        return None
    return Session(token=token, actor=actor, csrf=_csrf_for(token, "session"))


def _to_login(request: Request) -> Response:
    return RedirectResponse(f"{_base(request)}/portal/login", status_code=303)


async def _form(request: Request) -> list[tuple[str, str]] | None:
    """The urlencoded body as (name, value) pairs (None if not a bounded, well-formed form)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        return urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return None


def _one(form: Sequence[tuple[str, str]], name: str) -> str:
    values = [v for n, v in form if n == name]
    return values[0].strip() if len(values) == 1 else ""


def _all(form: Sequence[tuple[str, str]], name: str) -> list[str]:
    return [v for n, v in form if n == name]


async def _checked_post(
    request: Request,
) -> tuple[Session | None, list[tuple[str, str]] | None, Response | None]:
    """Session and form of a POST, or the response refusing it (login, or 403 CSRF)."""
    session = await _session(request)
    if session is None:
        return None, None, _to_login(request)
    form = await _form(request) or []  # not a bounded form: no CSRF token either
    if not _same(_one(form, "csrf"), session.csrf):
        return (
            session,
            None,
            error_page(
                request,
                403,
                "Form expired",
                "The form's CSRF token does not match this session. Reload the page and try again.",
                session,
                reason="csrf",
            ),
        )
    return session, form, None


def _set_cookie(request: Request, response: Response, name: str, value: str, **kw: Any) -> None:
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="strict",
        path="/",
        secure=request.url.scheme == "https",
        **kw,
    )


# --- sign-in ---------------------------------------------------------------------------------


@router.get("/portal", response_class=HTMLResponse)
async def portal_home(request: Request) -> Response:
    """Where a signed-in person starts."""
    session = await _session(request)
    if session is None:
        return _to_login(request)
    page = "me" if session.actor.kind == "patient" else "patients"
    return RedirectResponse(f"{_base(request)}/portal/{page}", status_code=303)


def _login_page(
    request: Request, status_code: int = 200, error: str = "", key: str = ""
) -> Response:
    nonce = secrets.token_urlsafe(24)
    response = render(
        request,
        "portal_login.html",
        status_code,
        csrf=_csrf_for(nonce, "login"),
        error=error,
        key=key,
    )
    _set_cookie(request, response, LOGIN_COOKIE, nonce, max_age=3600)
    return response


@router.get("/portal/login", response_class=HTMLResponse)
async def login_form(request: Request) -> Response:
    """The sign-in form (a fresh pre-session nonce for its CSRF token)."""
    return _login_page(request)


@router.post("/portal/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Custodial sign-in; on success the session cookie and a redirect to the portal."""
    form = await _form(request)
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if form is None:
        return error_page(request, 400, "Bad request", "Send the sign-in form as it is.")
    if not nonce or not _same(_one(form, "csrf"), _csrf_for(nonce, "login")):
        return error_page(
            request,
            403,
            "Form expired",
            "The sign-in form's CSRF token does not match. Reload the page and try again.",
            reason="csrf",
        )
    key, password = _one(form, "key"), [v for n, v in form if n == "password"]
    data_dir = getattr(request.app.state, "data_dir", None)
    if data_dir is None or _records(request) is None:
        return _no_records(request)
    if not key or len(password) != 1 or "\x00" in password[0]:
        return _login_page(request, 400, "Enter your key name and password.", key[:64])
    try:
        token, _info = await _run(
            _auth(request).login, Keyring(Path(data_dir)), key, password[0].encode("utf-8")
        )
    except AuthenticationError:
        return _login_page(request, 401, "Unknown key name or wrong password.", key[:64])
    except LedgerError as exc:
        return ledger_error_page(request, exc, None)
    response = RedirectResponse(f"{_base(request)}/portal", status_code=303)
    _set_cookie(request, response, COOKIE, token)
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


@router.post("/portal/logout", response_class=HTMLResponse)
async def logout(request: Request) -> Response:
    """Drop the session (and the key the node holds for it)."""
    session, _, refused = await _checked_post(request)
    if refused is not None:
        return refused
    assert session is not None
    _auth(request).logout(session.token)
    response = RedirectResponse(f"{_base(request)}/portal/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


# --- patient ---------------------------------------------------------------------------------


def _my_records(node: Node, patient: str) -> list[dict[str, Any]]:
    """The patient's records from public ledger state (``prec/<patient>/``; no PHI)."""
    out = []
    for key, _raw in node.store.iter_state(f"prec/{patient}/"):
        parts = key.split("/")
        if len(parts) != 5:
            continue
        _, _, org, rtype, rid = parts
        raw = node.store.find_state(f"rec/{org}/{rtype}/{rid}")
        if raw is None:
            continue
        rec = orjson.loads(raw)
        versions = rec.get("versions") or [{}]
        out.append(
            {
                "type": rtype,
                "id": rid,
                "org": org,
                "version": rec.get("latest"),
                "status": rec.get("status", "active"),
                "time": versions[-1].get("time"),
            }
        )
    out.sort(key=lambda r: r["time"] or 0, reverse=True)
    return out


def _sessions(node: Node, patient: str) -> list[Mapping[str, Any]]:
    """Break-glass sessions opened for the patient, newest first (public ledger state)."""

    class _View:
        def get(self, key: str) -> Any:
            raw = node.store.find_state(key)
            return orjson.loads(raw) if raw is not None else None

    view = _View()
    ids = view.get(patient_sessions_key(patient))
    found = [find_session(view, str(s)) for s in (ids if isinstance(ids, list) else [])]
    return [s for s in reversed(found) if s is not None]


def _proof_status(node: Node, views: Sequence[AuditView]) -> list[tuple[bool, str]]:
    """Per entry: (verified, why) — its envelope's leaf hash, its RFC 9162 inclusion proof and
    the proof's tree head against this node's newest signed checkpoint (a consistency proof
    when the checkpoint has grown since)."""
    store = node.store
    origin = node.genesis.origin
    note = store.find_checkpoint()
    try:
        if note is None:
            raise VerificationError("no signed checkpoint")
        cp = open_checkpoint(note, [NoteVerifier(origin, node.node_key.record)], origin)
    except VerificationError as exc:
        return [(False, f"checkpoint: {exc}")] * len(views)
    out: list[tuple[bool, str]] = []
    for view in views:
        proof = view.proof
        try:
            tx = str(view.entry["tx"])
            loc = store.find_tx(bytes.fromhex(tx))
            raw = store.find_envelope(loc.log_index) if loc is not None else None
            if loc is None or raw is None:
                raise VerificationError("the entry's transaction is not in this node's log")
            leaf = leaf_hash(raw)
            if leaf.hex() != proof["leaf_hash"] or loc.log_index != proof["leaf_index"]:
                raise VerificationError("the proof is for another leaf")
            size, root = int(proof["tree_size"]), bytes.fromhex(str(proof["root"]))
            path = [bytes.fromhex(str(h)) for h in proof["proof"]]
            verify_inclusion(leaf, loc.log_index, size, path, root)
            if size > cp.size:
                raise VerificationError("the proof's tree is larger than the checkpoint")
            if size == cp.size:
                if root != cp.root:
                    raise VerificationError("the proof's root is not the checkpoint's")
            else:
                link = consistency_proof(store, size, cp.size)
                verify_consistency(size, cp.size, link, root, cp.root)
            out.append((True, f"included in the signed checkpoint of size {cp.size}"))
        except (LedgerError, KeyError, ValueError, TypeError) as exc:
            out.append((False, str(exc)))
    return out


def _log_rows(node: Node, views: Sequence[AuditView]) -> list[dict[str, Any]]:
    rows = []
    for view, (ok, why) in zip(views, _proof_status(node, views), strict=True):
        e = view.entry
        raw_basis = e.get("basis")
        basis: Mapping[str, Any] = raw_basis if isinstance(raw_basis, Mapping) else {}
        bg = bool(e.get("break_glass")) or e.get("action") == "break_glass"
        bg = bg or basis.get("kind") == "break_glass" or e.get("purpose") == "ETREAT"
        rows.append(
            {
                "tx": str(e.get("tx", "")),
                "actor": str(e.get("actor", "")),
                "role": str(e.get("role", "")),
                "org": str(e.get("org", "")),
                "action": str(e.get("action", "")),
                "resources": [str(r) for r in e.get("resources") or ()],
                "time": int(e.get("time", 0)),
                "purpose": str(e.get("purpose", "")),
                "outcome": str(e.get("outcome", "")),
                "reason": str(e.get("reason", "")),
                "basis": " ".join(f"{k}: {v}" for k, v in sorted(basis.items())),
                "break_glass": bg,
                "verified": ok,
                "why": why,
            }
        )
    rows.sort(key=lambda r: r["time"], reverse=True)
    return rows


def _grant_rows(grants: Sequence[Mapping[str, Any]], now: int) -> list[dict[str, Any]]:
    rows = []
    for g in grants:
        grantee = g.get("grantee") or {}
        period = g.get("period") or {}
        end = period.get("end")
        if not isinstance(end, int) or end >= MAX_SAFE_INT:
            end = None  # unbounded
        status = str(g.get("status", ""))
        purposes = [str(p) for p in g.get("purposes") or ()]
        if status == "active" and isinstance(end, int) and end <= now:
            status = "expired"
        rows.append(
            {
                "id": str(g.get("id", "")),
                "grantee": " · ".join(f"{k} {v}" for k, v in sorted(grantee.items())),
                "decision": str(g.get("decision", "permit")),
                "actions": [str(a) for a in g.get("actions") or ()],
                "purposes": purposes if purposes and set(purposes) != set(PURPOSES) else ["any"],
                "types": [str(t) for t in (g.get("scope") or {}).get("types") or ()] or ["all"],
                "end": end,
                "status": status,
                "revocable": g.get("status") == "active",
            }
        )
    return list(reversed(rows))


def _grantee_choices(node: Node) -> tuple[list[str], list[str]]:
    orgs = [k.removeprefix("org/") for k, _ in node.store.iter_state("org/")]
    members = []
    for key, raw in node.store.iter_state("acct/"):
        acct = orjson.loads(raw)
        if isinstance(acct, Mapping) and acct.get("type") == "member":
            members.append(key.removeprefix("acct/"))
    return sorted(members), sorted(orgs)


@router.get("/portal/me", response_class=HTMLResponse)
async def me(request: Request, notice: str = "") -> Response:
    """A patient's records, consents, access log (with proof status) and break-glass sessions."""
    session = await _session(request)
    if session is None:
        return _to_login(request)
    actor = session.actor
    if actor.kind != "patient":
        return error_page(
            request, 403, "For patients", "This page shows a patient's own records.", session
        )
    records, node = _records(request), _node(request)
    assert records is not None
    try:
        grants = await _run(records.consents, actor, actor.account)
        views = await _run(records.access_log, actor, actor.account)
    except LedgerError as exc:
        return ledger_error_page(request, exc, session)
    now = int(node.clock())
    members, orgs = await _run(_grantee_choices, node)
    return render(
        request,
        "portal_me.html",
        session=session,
        notice=NOTICES.get(notice, ""),
        my_records=await _run(_my_records, node, actor.account),
        grants=_grant_rows(grants, now),
        log=await _run(_log_rows, node, views),
        sessions=await _run(_sessions, node, actor.account),
        members=members,
        orgs=orgs,
        purposes=PURPOSES,
        types=RECORD_TYPES,
        now=now,
    )


def build_consent(patient: str, form: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The R5 Consent the grant form describes (ValidationError naming the bad field)."""
    kind, grantee = _one(form, "grantee_kind"), _one(form, "grantee")
    if kind not in ("account", "org"):
        raise ValidationError("grantee: choose an account or an organisation")
    if not ACCOUNT_RE.match(grantee) or not FHIR_ID_RE.match(grantee):
        raise ValidationError(f"grantee: {grantee[:80]!r} is not an account or organisation id")
    actions = _all(form, "action")
    if not actions or any(a not in CONSENT_ACTIONS for a in actions):
        raise ValidationError("actions: choose read and/or write")
    codes = sorted({CONSENT_ACTIONS[a] for a in actions})
    if "correct" in codes:  # correct already covers read
        codes = ["correct"]
    purposes = _all(form, "purpose")
    if any(p not in PURPOSES for p in purposes):
        raise ValidationError(f"purposes: want codes among {', '.join(PURPOSES)}")
    types = _all(form, "type")
    if any(t not in RECORD_TYPES for t in types):
        raise ValidationError(f"types: want types among {', '.join(RECORD_TYPES)}")
    end = _one(form, "end")
    if end and not _DATE_RE.match(end):
        raise ValidationError("period end: want a date YYYY-MM-DD")
    reference = f"Organization/{grantee}" if kind == "org" else f"Practitioner/{grantee}"
    return consent_resource(
        f"Patient/{patient}",
        reference,
        codes,
        sorted(purposes),
        types=sorted(set(types)),
        end=end or None,
    )


@router.post("/portal/consents", response_class=HTMLResponse)
async def grant(request: Request) -> Response:
    """Grant consent: build an R5 Consent from the form and call the service's ``grant``."""
    session, form, refused = await _checked_post(request)
    if refused is not None:
        return refused
    assert session is not None and form is not None
    if session.actor.kind != "patient":
        return error_page(request, 403, "For patients", "Only a patient grants consent.", session)
    records = _records(request)
    assert records is not None
    try:
        consent = build_consent(session.actor.account, form)
        await _run(records.grant, session.actor, consent)
    except LedgerError as exc:
        return ledger_error_page(request, exc, session)
    return RedirectResponse(f"{_base(request)}/portal/me?notice=granted", status_code=303)


@router.post("/portal/consents/{consent_id}/revoke", response_class=HTMLResponse)
async def revoke(request: Request, consent_id: str) -> Response:
    """Revoke one of the patient's grants (the service's ``revoke``)."""
    session, _, refused = await _checked_post(request)
    if refused is not None:
        return refused
    assert session is not None
    if not _CONSENT_ID_RE.match(consent_id):
        return error_page(
            request, 400, "Bad request", f"{consent_id[:80]!r} is not a consent id", session
        )
    records = _records(request)
    assert records is not None
    try:
        await _run(records.revoke, session.actor, consent_id)
    except LedgerError as exc:
        return ledger_error_page(request, exc, session)
    return RedirectResponse(f"{_base(request)}/portal/me?notice=revoked", status_code=303)


@router.post("/portal/break-glass/{session_id}/review", response_class=HTMLResponse)
async def review_session(request: Request, session_id: str) -> Response:
    """The patient marks a break-glass session reviewed (the service's ``review``)."""
    session, _, refused = await _checked_post(request)
    if refused is not None:
        return refused
    assert session is not None
    if not _CONSENT_ID_RE.match(session_id):  # session ids have the consent ids' shape
        return error_page(
            request, 400, "Bad request", f"{session_id[:80]!r} is not a session id", session
        )
    records = _records(request)
    assert records is not None
    try:
        await _run(records.review, session.actor, session_id)
    except LedgerError as exc:
        return ledger_error_page(request, exc, session)
    return RedirectResponse(f"{_base(request)}/portal/me?notice=reviewed", status_code=303)


# --- records -------------------------------------------------------------------------------


@router.get("/portal/records/{rtype}/{rid}", response_class=HTMLResponse)
async def record(request: Request, rtype: str, rid: str, purpose: str = "") -> Response:
    """One record, read through the service (decided and audited there)."""
    session = await _session(request)
    if session is None:
        return _to_login(request)
    if rtype not in FHIR_TYPES or not FHIR_ID_RE.match(rid):
        return error_page(
            request, 400, "Bad request", f"{rtype[:40]}/{rid[:80]} is not a record reference",
            session,
        )  # fmt: skip
    actor = session.actor
    if actor.kind == "patient":
        purpose = "PATRQT"
    elif purpose not in PRACTITIONER_PURPOSES:
        purpose = "TREAT"
    records = _records(request)
    assert records is not None
    try:
        access = await _run(records.read, actor, rtype, rid, purpose=purpose)
    except LedgerError as exc:
        return ledger_error_page(request, exc, session)
    v = access.value
    basis = " ".join(f"{k}: {val}" for k, val in sorted(access.basis.items()))
    return render(
        request,
        "portal_record.html",
        session=session,
        rec=v,
        purpose=purpose,
        audit_id=access.audit_id,
        basis=basis,
        body=orjson.dumps(v.resource, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode(),
    )


# --- practitioner --------------------------------------------------------------------------


def _types_to_search(node: Node, org: str, patient: str) -> list[str]:
    """Record types the patient has at this node's org (public ledger state), else Patient."""
    types = {
        key.split("/")[3]
        for key, _ in node.store.iter_state(f"prec/{patient}/{org}/")
        if len(key.split("/")) == 5
    }
    return sorted(t for t in types if t in RECORD_TYPES) or ["Patient"]


@router.get("/portal/patients", response_class=HTMLResponse)
async def patients(request: Request, patient: str = "", purpose: str = "TREAT") -> Response:
    """Search a patient's records the practitioner may see (the service's ``search``)."""
    session = await _session(request)
    if session is None:
        return _to_login(request)
    actor = session.actor
    if actor.kind == "patient":
        return error_page(
            request, 403, "For practitioners", "Patients see their records on their own page.",
            session,
        )  # fmt: skip
    context: dict[str, Any] = {
        "patient": patient[:80],
        "purpose": purpose if purpose in PRACTITIONER_PURPOSES else "TREAT",
        "results": None,
        "denied": [],
        "emergency": "emergency" in actor.capabilities,
        "notice": "",
    }
    if not patient:
        return render(request, "portal_patients.html", session=session, **context)
    if not ACCOUNT_RE.match(patient):
        return error_page(
            request, 400, "Bad request", f"{patient[:80]!r} is not a patient account id", session
        )
    records, node = _records(request), _node(request)
    assert records is not None
    org = getattr(records, "org", actor.org or "")
    if request.query_params.get("notice") == "break_glass":
        context["notice"] = NOTICES["break_glass"]
    items: list[Any] = []
    denied: list[dict[str, str]] = []
    audits: list[str] = []
    for rtype in await _run(_types_to_search, node, str(org), patient):
        try:
            access = await _run(
                records.search, actor, rtype, patient=patient, count=100,
                purpose=context["purpose"],
            )  # fmt: skip
        except AuthorizationError as exc:
            denied.append(
                {"type": rtype, "reason": exc.code, "message": exc.message,
                 "audit_id": str(getattr(exc, "audit_id", ""))}
            )  # fmt: skip
            continue
        except LedgerError as exc:
            return ledger_error_page(request, exc, session)
        items.extend(access.value.items)
        audits.append(access.audit_id)
    if denied and not audits:
        first = denied[0]
        return error_page(
            request, 403, "Access denied", first["message"], session,
            reason=first["reason"], audit_id=first["audit_id"], denied=denied,
            emergency=context["emergency"], patient=patient,
        )  # fmt: skip
    context.update(results=items, denied=denied, audits=audits)
    return render(request, "portal_patients.html", session=session, **context)


@router.post("/portal/break-glass", response_class=HTMLResponse)
async def break_glass(request: Request) -> Response:
    """Open an ETREAT break-glass session (members with the ``emergency`` capability)."""
    session, form, refused = await _checked_post(request)
    if refused is not None:
        return refused
    assert session is not None and form is not None
    if "emergency" not in session.actor.capabilities:
        return error_page(
            request, 403, "No emergency capability",
            "Only members with the emergency capability may break the glass.", session,
            reason="unauthorized",
        )  # fmt: skip
    patient, reason = _one(form, "patient"), _one(form, "reason")
    if not ACCOUNT_RE.match(patient) or not reason or len(reason) > 500:
        return error_page(
            request, 400, "Bad request", "Name the patient and state a reason (≤ 500 characters).",
            session,
        )  # fmt: skip
    records = _records(request)
    assert records is not None
    try:
        await _run(records.break_glass, session.actor, patient, reason)
    except LedgerError as exc:
        return ledger_error_page(request, exc, session)
    query = urllib.parse.urlencode(
        {"patient": patient, "purpose": "ETREAT", "notice": "break_glass"}
    )
    return RedirectResponse(f"{_base(request)}/portal/patients?{query}", status_code=303)


__all__ = ["COOKIE", "build_consent", "router"]
