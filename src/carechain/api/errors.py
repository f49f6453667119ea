"""RFC 9457 problem details: the ONE table from error families to HTTP responses.

Every error response of the API is ``application/problem+json``::

    {"type": "https://carechain.dev/problems/<code>", "title": ..., "status": ...,
     "detail": ..., "code": "<code>"}

``code`` is the stable machine-readable code of the :class:`~carechain.errors.LedgerError`
(or of the HTTP condition), ``detail`` its human message. Invariants:

* The status of a ledger error is looked up along its class's MRO in :data:`PROBLEM_TABLE`,
  so the most specific family listed wins (``LimitExceededError`` 413 before
  ``ValidationError`` 400) and a new subclass inherits its family's status.
* A 401 carries ``WWW-Authenticate: Bearer`` (RFC 6750 §3), a 503 carries ``Retry-After``.
* A 5xx never reveals internals: infrastructure errors and unknown exceptions are logged with
  their traceback and answered with a fixed detail.
* FastAPI's request validation errors and Starlette's HTTP errors (404, 405, 415 ...) are
  problem documents too; validation errors list ``errors: [{"loc", "msg"}]`` without echoing
  the input.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from carechain.errors import (
    AuthenticationError,
    AuthorizationError,
    ConflictError,
    ContractError,
    DuplicateTransactionError,
    GoneError,
    InfrastructureError,
    LedgerError,
    LimitExceededError,
    NotFoundError,
    SignatureError,
    TooManyRequestsError,
    UnavailableError,
    ValidationError,
    VerificationError,
)

log = logging.getLogger("carechain.api")

PROBLEM_BASE = "https://carechain.dev/problems/"
"""Problem ``type`` URIs are this base plus the error code."""

PROBLEM_MEDIA_TYPE = "application/problem+json"

PROBLEM_TABLE: Mapping[type[LedgerError], tuple[int, str]] = {
    ValidationError: (400, "Invalid request"),
    LimitExceededError: (413, "Content too large"),
    VerificationError: (422, "Verification failed"),
    SignatureError: (422, "Signature does not verify"),
    AuthenticationError: (401, "Authentication required"),
    AuthorizationError: (403, "Forbidden"),
    NotFoundError: (404, "Not found"),
    GoneError: (410, "Gone (erased)"),
    ConflictError: (409, "Conflict"),
    DuplicateTransactionError: (409, "Duplicate transaction"),
    ContractError: (422, "Rejected by contract"),
    UnavailableError: (503, "Service unavailable"),
    TooManyRequestsError: (429, "Too many requests"),
    InfrastructureError: (500, "Internal error"),
    LedgerError: (500, "Internal error"),
}
"""Error family → (HTTP status, problem title); looked up along the exception's MRO."""

_HTTP_CODES: Mapping[int, tuple[str, str]] = {
    400: ("bad_request", "Bad request"),
    401: ("unauthenticated", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    413: ("limit_exceeded", "Content too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    429: ("too_many_requests", "Too many requests"),
    500: ("internal", "Internal error"),
    503: ("unavailable", "Service unavailable"),
}

OAUTH_ERRORS = frozenset(
    {
        "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
        "unsupported_grant_type", "invalid_scope", "invalid_token", "insufficient_scope",
    }
)  # fmt: skip
"""RFC 6749 §5.2 / RFC 6750 §3.1 error codes: their problems also carry ``"error": code``."""

INTERNAL_DETAIL = "the node could not complete the request; the operator can find it in the log"


def status_for(exc: LedgerError) -> tuple[int, str]:
    """HTTP status and title of a ledger error (most specific family in the table)."""
    for cls in type(exc).__mro__:
        entry = PROBLEM_TABLE.get(cls)
        if entry is not None:
            return entry
    return 500, "Internal error"  # pragma: no cover - LedgerError is in the table


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """An ``application/problem+json`` response (RFC 9457 §3)."""
    doc: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if extra:
        doc.update(extra)
    all_headers = dict(headers or {})
    if status == 401 and "www-authenticate" not in {k.lower() for k in all_headers}:
        error = f', error="{code}"' if code in OAUTH_ERRORS else ""
        all_headers["WWW-Authenticate"] = f'Bearer realm="carechain"{error}'
    if status in (401, 403) or code in OAUTH_ERRORS:
        all_headers.setdefault("Cache-Control", "no-store")
    return JSONResponse(doc, status_code=status, headers=all_headers, media_type=PROBLEM_MEDIA_TYPE)


def ledger_problem(exc: LedgerError) -> JSONResponse:
    """The problem response for a ledger error."""
    status, title = status_for(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, UnavailableError):
        headers["Retry-After"] = str(max(int(exc.retry_after), 0))
    detail = exc.message
    if status >= 500 and not isinstance(exc, UnavailableError):
        log.error("request failed: %s: %s", type(exc).__name__, exc.message, exc_info=exc)
        detail = INTERNAL_DETAIL
    extra = {"error": exc.code} if exc.code in OAUTH_ERRORS else None
    return problem_response(status, exc.code, title, detail, headers=headers, extra=extra)


async def _on_ledger_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LedgerError)
    return ledger_problem(exc)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code, title = _HTTP_CODES.get(exc.status_code, (f"http_{exc.status_code}", "HTTP error"))
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail else title
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no resource at {request.url.path}"
    elif exc.status_code == 405 and detail == "Method Not Allowed":
        detail = f"{request.method} is not allowed on {request.url.path}"
    return problem_response(exc.status_code, code, title, detail, headers=exc.headers)


async def _on_request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", ""))}
        for err in exc.errors()
    ]
    if errors:
        loc, msg = ".".join(errors[0]["loc"]), str(errors[0]["msg"])
        detail = f"{loc}: {msg}" if loc else msg
    else:
        detail = "invalid request"
    return problem_response(
        400, "invalid_request", "Invalid request", detail, extra={"errors": errors}
    )


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(500, "internal", "Internal error", INTERNAL_DETAIL)


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error response of ``app`` a problem document."""
    app.add_exception_handler(LedgerError, _on_ledger_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(Exception, _on_unexpected)


__all__ = [
    "OAUTH_ERRORS",
    "PROBLEM_BASE",
    "PROBLEM_MEDIA_TYPE",
    "PROBLEM_TABLE",
    "install_problem_handlers",
    "ledger_problem",
    "problem_response",
    "status_for",
]
