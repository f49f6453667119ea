"""Binary attachments (imaging, PDFs) up and down ``/fhir/Binary``, streamed both ways.

:func:`upload` sends a file (or any iterable of byte chunks) with its media type and
``X-Security-Context: Patient/<id>``; the node streams it into its encrypted store, anchors it
and audits the write. :func:`download` writes a Binary's raw content to a binary sink chunk by
chunk and returns what it wrote; the node checks the content against its anchor before it sends
the first byte. Neither side holds the attachment whole. ``progress(n)`` is called with the
byte count of each chunk (for a progress bar).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import httpx

from carechain.client._http import decode_json
from carechain.errors import UnavailableError

if TYPE_CHECKING:
    from carechain.client.records import FhirResult, RecordsClient

CHUNK = 64 * 1024
SECURITY_CONTEXT_HEADER = "X-Security-Context"
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Downloaded:
    """What :func:`download` wrote."""

    content_type: str
    """The attachment's media type."""
    size: int
    """Bytes written."""
    version: int | None
    """The version read (from the ETag)."""
    audit_id: str | None
    """The node's audit entry for this read."""


def file_chunks(path: Path, progress: Progress | None = None) -> Iterator[bytes]:
    """A file's content in 64 KiB chunks."""
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            if progress is not None:
                progress(len(chunk))
            yield chunk


def upload(
    records: RecordsClient,
    source: Path | Iterable[bytes],
    *,
    content_type: str,
    patient: str,
    purpose: str | None = None,
    progress: Progress | None = None,
) -> FhirResult:
    """``POST /fhir/Binary`` streamed; ``patient`` is ``Patient/<id>`` (or the bare id)."""
    from carechain.client.records import PURPOSE_HEADER, FhirResult, error_from_outcome

    chunks = file_chunks(source, progress) if isinstance(source, Path) else iter(source)
    context = patient if patient.startswith("Patient/") else f"Patient/{patient}"
    headers = {**records.client.api.headers, **records._auth(), "accept": "application/fhir+json",
               "content-type": content_type, SECURITY_CONTEXT_HEADER: context}  # fmt: skip
    if purpose is not None:
        headers[PURPOSE_HEADER] = purpose
    api = records.client.api
    url = api.url("/fhir/Binary")
    try:
        with api.http.stream("POST", url, content=chunks, headers=headers) as response:
            raw = api._read(response, url)
    except httpx.TransportError as exc:
        raise UnavailableError(
            f"POST {url}: {exc or type(exc).__name__}", code="unreachable"
        ) from None
    if response.status_code != 201:
        raise error_from_outcome(response.status_code, raw, response.headers)
    doc = decode_json(raw, "POST /fhir/Binary")
    return FhirResult(status=201, resource=doc, audit_id=response.headers.get("x-audit-entry"),
                      etag=response.headers.get("etag"),
                      location=response.headers.get("location"))  # fmt: skip


def download(
    records: RecordsClient,
    rid: str,
    sink: BinaryIO,
    *,
    version: int | None = None,
    purpose: str | None = None,
    progress: Progress | None = None,
) -> Downloaded:
    """``GET /fhir/Binary/<id>`` raw, written to ``sink`` chunk by chunk."""
    from carechain.client.records import PURPOSE_HEADER, error_from_outcome

    path = f"/fhir/Binary/{urllib.parse.quote(rid, safe='')}"
    if version is not None:
        path += f"/_history/{int(version)}"
    api = records.client.api
    url = api.url(path)
    headers = {**api.headers, **records._auth(), "accept": "*/*"}
    if purpose is not None:
        headers[PURPOSE_HEADER] = purpose
    written = 0
    try:
        with api.http.stream("GET", url, headers=headers) as response:
            if response.status_code != 200:
                raise error_from_outcome(response.status_code, api._read(response, url),
                                         response.headers)  # fmt: skip
            for chunk in response.iter_bytes(CHUNK):
                sink.write(chunk)
                written += len(chunk)
                if progress is not None:
                    progress(len(chunk))
    except httpx.TransportError as exc:
        raise UnavailableError(
            f"GET {url}: {exc or type(exc).__name__}", code="unreachable"
        ) from None
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) != written:
        raise UnavailableError(
            f"GET {url}: the answer ended after {written} of {declared} bytes", code="truncated"
        )
    tag = (response.headers.get("etag") or "").removeprefix("W/").strip('"')
    return Downloaded(content_type=response.headers.get("content-type", ""), size=written,
                      version=int(tag) if tag.isdigit() else None,
                      audit_id=response.headers.get("x-audit-entry"))  # fmt: skip


__all__ = ["Downloaded", "download", "file_chunks", "upload"]
