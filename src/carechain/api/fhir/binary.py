"""``/fhir/Binary``: attachments streamed in their own media type (FHIR R5 §3.2.0.13.1).

* ``POST /fhir/Binary`` with a ``Content-Type`` other than FHIR JSON and ``X-Security-Context:
  Patient/<id>``: the body is streamed chunk by chunk into the encrypted store (never held
  whole), anchored and audited; 201 with ``Location``/``ETag`` and the Binary (without data).
  Oversize → 413 (the node's ``max_attachment_bytes``). A FHIR JSON body is an ordinary create.
* ``GET /fhir/Binary/<id>`` (and ``/_history/<v>``) with an ``Accept`` that does not ask for FHIR
  JSON streams the raw content in its media type, after it was checked against its anchor and
  the read audited; with ``Accept: application/fhir+json`` the JSON form (base64 ``data``).

These routes are included before the generic ``/fhir/{type}`` ones, so they win for Binary.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio.from_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from carechain.api.fhir import routes
from carechain.api.fhir.http import (
    ACCEPTED_MEDIA,
    ANCHOR_HEADER,
    AUDIT_HEADER,
    DIGEST_KEY_HEADER,
    FhirRoute,
    etag,
    fhir_response,
    purpose_of,
)
from carechain.errors import NotFoundError, ValidationError
from carechain.node.records_api import Access, BinaryContent, StoredVersion

SECURITY_CONTEXT_HEADER = "X-Security-Context"

router = APIRouter(prefix="/fhir", tags=["fhir"], route_class=FhirRoute)


def _media(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _wants_json(request: Request) -> bool:
    fmt = request.query_params.get("_format", "").lower()
    if fmt in ("json", "application/json", "application/fhir+json"):
        return True
    accept = request.headers.get("accept", "").lower()
    return "application/fhir+json" in accept or "application/json" in accept


def _chunks(stream: AsyncIterator[bytes]) -> Iterator[bytes]:
    """The request body's chunks, pulled from the event loop by a worker thread."""

    async def pull() -> bytes | None:
        try:
            return await stream.__anext__()
        except StopAsyncIteration:
            return None

    while (chunk := anyio.from_thread.run(pull)) is not None:
        if chunk:
            yield chunk


@router.post("/Binary", summary="Create a Binary: a raw attachment streamed, or FHIR JSON")
async def create_binary(request: Request) -> Response:
    """Raw body + ``X-Security-Context: Patient/<id>`` → streamed, encrypted, anchored."""
    content_type = request.headers.get("content-type", "").strip()
    if _media(request) in ACCEPTED_MEDIA:
        return await routes.create("Binary", request)
    if not content_type:
        raise ValidationError(
            "Content-Type: send the attachment's media type (e.g. application/pdf), or a FHIR "
            "JSON Binary as application/fhir+json",
            code="unsupported_media_type",
        )
    context = request.headers.get(SECURITY_CONTEXT_HEADER, "").strip()
    if not context.startswith("Patient/") or len(context) > 80:
        raise ValidationError(
            f"{SECURITY_CONTEXT_HEADER}: name the Patient the attachment is about "
            "(Patient/<id> of a Patient stored on this node)",
            code="security_context_required",
        )
    purpose = purpose_of(request)
    records = routes._records(request)
    stream = request.stream().__aiter__()

    def run() -> Access[StoredVersion]:
        actor = routes._caller(request, "Binary", "write")
        return records.create_binary(
            actor, content_type=content_type, security_context=context,
            chunks=_chunks(stream), purpose=purpose,
        )  # fmt: skip

    access = await routes._call(run)
    headers = routes._version_headers(request, access, location=True)
    return fhir_response(access.value.resource, 201, headers=headers)


async def _raw(request: Request, rid: str, version: int | None) -> Response:
    purpose = purpose_of(request)
    records = routes._records(request)

    def run() -> Access[BinaryContent]:
        actor = routes._caller(request, "Binary", "read")
        return records.read_binary(actor, rid, version=version, purpose=purpose)

    access = await routes._call(run)
    content = access.value
    v = content.version
    headers = {
        "ETag": etag(v.version),
        "Content-Length": str(content.size),
        AUDIT_HEADER: access.audit_id,
        ANCHOR_HEADER: v.anchor_tx,
        SECURITY_CONTEXT_HEADER: str(
            (v.resource.get("securityContext") or {}).get("reference", "")
        ),
        "Cache-Control": "no-store",
    }
    if v.digest_key is not None:
        headers[DIGEST_KEY_HEADER] = v.digest_key
    return StreamingResponse(content.chunks, media_type=content.content_type, headers=headers)


@router.get("/Binary/{rid}", summary="Read a Binary: the raw attachment, or its FHIR JSON form")
async def read_binary(rid: str, request: Request) -> Response:
    """Raw content in its media type unless ``Accept`` asks for FHIR JSON."""
    if _wants_json(request):
        return await routes.read("Binary", rid, request)
    return await _raw(request, rid, None)


@router.get("/Binary/{rid}/_history/{vid}", summary="Read one version of a Binary")
async def vread_binary(rid: str, vid: str, request: Request) -> Response:
    """Raw content of version ``vid`` unless ``Accept`` asks for FHIR JSON."""
    if _wants_json(request):
        return await routes.vread("Binary", rid, vid, request)
    if not vid.isdigit() or int(vid) < 1:
        raise NotFoundError(f"Binary/{rid} has no version {vid!r}")
    return await _raw(request, rid, int(vid))


__all__ = ["SECURITY_CONTEXT_HEADER", "router"]
