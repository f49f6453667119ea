"""HTTP plumbing of the FHIR facade: OperationOutcome errors, bodies, headers.

Every error a ``/fhir`` route raises (in a dependency, while parsing, or in the record service)
is answered by :class:`FhirRoute` with an ``application/fhir+json`` ``OperationOutcome``
(``carechain.fhir.operation_outcome``) and the status of :func:`fhir_status`:

=================================  ======
``FhirValidationError``            422
``FhirUnsupportedTypeError``       404
``LimitExceededError``             413
other ``ValidationError``          400 (bad query parameter, header, id)
``AuthenticationError``            401 (with ``WWW-Authenticate: Bearer``)
``AuthorizationError``             403 (diagnostics = the decision's reason code and message)
``GoneError``                      410
``NotFoundError``                  404
``ConflictError``                  409, 412 when the request carried ``If-Match``
``ContractError``                  422
``VerificationError``              500 (stored content fails its anchor: loud, not hidden)
``UnavailableError``               503 (with ``Retry-After``)
anything else                      500 (no internals)
=================================  ======

An error carrying ``audit_id`` (the record service's deny/error audit entry) is answered with
``X-Audit-Entry`` too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from carechain.contracts.consent import PURPOSES
from carechain.errors import (
    AuthenticationError,
    AuthorizationError,
    ConflictError,
    ContractError,
    GoneError,
    LedgerError,
    LimitExceededError,
    NotFoundError,
    UnavailableError,
    ValidationError,
    VerificationError,
)
from carechain.fhir import FhirUnsupportedTypeError, FhirValidationError, operation_outcome
from carechain.fhir.operation_outcome import PROBLEM_SYSTEM

log = logging.getLogger("carechain.api.fhir")

FHIR_JSON = "application/fhir+json"
"""Media type of every ``/fhir`` response."""
ACCEPTED_MEDIA = frozenset({"application/fhir+json", "application/json"})
"""Request body media types the facade accepts."""
MAX_BODY_BYTES = 8 << 20
"""Largest accepted request body (8 MiB), checked before and while reading."""
AUDIT_HEADER = "X-Audit-Entry"
DIGEST_KEY_HEADER = "X-Record-Digest-Key"
"""Base64url blinding key of the served version: HMAC-SHA256(key, canonical) = anchor digest."""
ANCHOR_HEADER = "X-Anchor-Tx"
"""Hex id of the transaction that anchored the served version."""
PURPOSE_HEADER = "X-Purpose-Of-Use"
DEFAULT_PURPOSE = "TREAT"

UNSUPPORTED_MEDIA = "unsupported_media_type"
_AUDIT_ID = re.compile(r"[0-9a-f]{64}")
_AUDIT_IN_MESSAGE = re.compile(r"\(audit entry ([0-9a-f]{64})\)")
_ETAG = re.compile(r'\s*(?:W/)?"([1-9][0-9]{0,8})"\s*')


def fhir_response(
    body: Mapping[str, Any] | None,
    status: int = 200,
    *,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A FHIR JSON response (``body`` None: empty)."""
    content = b"" if body is None else orjson.dumps(body)
    return Response(
        content=content,
        status_code=status,
        headers=dict(headers or {}),
        media_type=FHIR_JSON if body is not None else None,
    )


def fhir_status(exc: BaseException, request: Request | None = None) -> int:
    """HTTP status of an error on ``/fhir`` (table in the module docstring)."""
    if isinstance(exc, FhirValidationError | ContractError):
        return 422
    if isinstance(exc, LimitExceededError):
        return 413
    if isinstance(exc, ValidationError) and exc.code == UNSUPPORTED_MEDIA:
        return 415
    if isinstance(exc, ValidationError | RequestValidationError):
        return 400
    if isinstance(exc, AuthenticationError):
        return 401
    if isinstance(exc, AuthorizationError):
        return 403
    if isinstance(exc, GoneError):
        return 410
    if isinstance(exc, NotFoundError):  # FhirUnsupportedTypeError included
        return 404
    if isinstance(exc, ConflictError):
        if request is not None and request.headers.get("if-match"):
            return 412
        return 409
    if isinstance(exc, UnavailableError):
        return 503
    return 500


def audit_id_of(exc: BaseException) -> str | None:
    """The audit entry recording a refused/failed access: the error's ``audit_id``, else the
    ``(audit entry <hex>)`` the record service names in its message."""
    audit_id = getattr(exc, "audit_id", None)
    if isinstance(audit_id, str) and _AUDIT_ID.fullmatch(audit_id):
        return audit_id
    if isinstance(exc, LedgerError):
        m = _AUDIT_IN_MESSAGE.search(exc.message)
        if m is not None:
            return m[1]
    return None


def fhir_error(exc: BaseException, request: Request | None = None) -> Response:
    """The OperationOutcome response for an error raised while serving ``request``."""
    status = fhir_status(exc, request)
    headers: dict[str, str] = {}
    if isinstance(exc, RequestValidationError):
        errors = exc.errors()
        text = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', '')}"
            for err in errors[:5]
        )
        outcome = operation_outcome(ValidationError(text or "invalid request"))
    elif isinstance(exc, LedgerError) and (
        status < 500 or isinstance(exc, VerificationError | UnavailableError)
    ):
        if isinstance(exc, VerificationError):
            log.error("FHIR request failed verification: %s", exc.message)
        outcome = operation_outcome(exc)
        if not isinstance(exc, FhirValidationError):
            # 403: the decision's reason (no_consent, revoked, expired, …); else the message
            reason = exc.code if isinstance(exc, AuthorizationError) else exc.message
            for issue in outcome["issue"]:
                issue["diagnostics"] = reason
    else:
        log.error("FHIR request failed", exc_info=exc)
        outcome = operation_outcome(exc if isinstance(exc, LedgerError) else RuntimeError())
    audit_id = audit_id_of(exc)
    if audit_id:
        headers[AUDIT_HEADER] = audit_id
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="carechain"'
    if status in (401, 403):
        headers["Cache-Control"] = "no-store"
    if isinstance(exc, UnavailableError):
        headers["Retry-After"] = str(max(int(exc.retry_after), 0))
    return fhir_response(outcome, status, headers=headers)


def not_supported(message: str, status: int = 404) -> Response:
    """An OperationOutcome ``not-supported`` response (unknown FHIR path or method)."""
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "not-supported",
                "details": {
                    "coding": [{"system": PROBLEM_SYSTEM, "code": "fhir_not_supported"}],
                    "text": message,
                },
                "diagnostics": message,
            }
        ],
    }
    return fhir_response(outcome, status)


class FhirRoute(APIRoute):
    """An APIRoute whose every failure is an OperationOutcome (dependencies included)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except Exception as exc:  # every failure becomes an OperationOutcome
                return fhir_error(exc, request)

        return handler


# --- request pieces ------------------------------------------------------------------------


def check_type(rtype: str, supported: tuple[str, ...] | frozenset[str]) -> str:
    """``rtype`` if this facade serves it at this endpoint, else 404 not-supported."""
    if rtype not in supported:
        raise FhirUnsupportedTypeError(rtype)
    return rtype


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` (from
    ``Content-Length`` before reading, else while streaming) and 415 for other media types."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in ACCEPTED_MEDIA:
        raise ValidationError(
            f"Content-Type {media or '(none)'!r}: send application/fhir+json or application/json",
            code=UNSUPPORTED_MEDIA,
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise LimitExceededError(f"request body: {int(declared)} bytes exceeds {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise LimitExceededError(f"request body exceeds {limit} bytes")
    return bytes(body)


def purpose_of(request: Request) -> str:
    """PurposeOfUse from ``X-Purpose-Of-Use`` (default TREAT); 400 for an unknown code."""
    value = request.headers.get(PURPOSE_HEADER, "").strip() or DEFAULT_PURPOSE
    if value not in PURPOSES:
        raise ValidationError(
            f"{PURPOSE_HEADER}: {value[:40]!r} is not one of {', '.join(PURPOSES)}",
            code="bad_purpose",
        )
    return value


def if_match(request: Request) -> int | None:
    """The version an ``If-Match: W/"n"`` header names (None without the header)."""
    value = request.headers.get("if-match")
    if value is None:
        return None
    m = _ETAG.fullmatch(value)
    if m is None:
        raise ValidationError(f'If-Match: got {value[:40]!r}, want W/"<version>"', code="bad_etag")
    return int(m[1])


def etag(version: int) -> str:
    """The weak ETag of a version."""
    return f'W/"{version}"'


__all__ = [
    "ACCEPTED_MEDIA",
    "ANCHOR_HEADER",
    "AUDIT_HEADER",
    "DIGEST_KEY_HEADER",
    "FHIR_JSON",
    "MAX_BODY_BYTES",
    "PURPOSE_HEADER",
    "FhirRoute",
    "check_type",
    "etag",
    "fhir_error",
    "fhir_response",
    "fhir_status",
    "if_match",
    "not_supported",
    "purpose_of",
    "read_body",
]
