"""Binary attachments (imaging, PDFs) streamed through the record service.

``POST /fhir/Binary`` with the attachment's own media type and ``X-Security-Context:
Patient/<id>`` (FHIR R5 §3.2.0.13.1) streams the raw bytes into the encrypted blob store in
64 KiB chunks: the whole attachment is never held in memory, up to the store's limit (node
configuration ``max_attachment_bytes``, default 64 MiB; larger → 413). ``GET /fhir/Binary/<id>``
with any ``Accept`` other than FHIR JSON streams it back after checking it against its anchor.

Decisions (ADR 0005, "Attachments"):

* the anchor is an ordinary ``records.anchor@1`` of type ``Binary``; its digest is
  HMAC-SHA256(blinding key, ``canonical_fhir`` of the Binary resource the bytes stand for
  ({contentType, data = base64, id, resourceType, securityContext})), computed while the bytes
  stream past (:class:`carechain.fhir.canonical.BinaryCanonicalizer`): a reader that gets the
  JSON form checks it exactly like any other record;
* the blob holds the raw bytes (not base64) with the attachment's media type as associated
  data; the index row keeps the ``securityContext`` (``versions.context``);
* a streamed read decrypts twice: a first pass recomputes the digest (a tampered, truncated or
  substituted blob fails before a byte is sent, and the failure is audited), the second pass
  streams (every chunk authenticated again by AES-GCM; blobs are immutable and
  content-addressed, so both passes read the same ciphertext);
* Binary raw uploads create version 1 only (a new attachment is a new Binary).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from carechain.contracts.consent import RecordRef
from carechain.contracts.records import FHIR_ID_RE, find_record
from carechain.crypto.kek import DATA_KEY_SIZE
from carechain.encoding import b64u_decode, b64u_encode
from carechain.errors import (
    AuthorizationError,
    LedgerError,
    LimitExceededError,
    NotFoundError,
    VerificationError,
)
from carechain.fhir.canonical import BinaryCanonicalizer
from carechain.node.chaindir import new_tx
from carechain.node.records.index import RecordRow, VersionRow
from carechain.node.records_api import Access, Actor, BinaryContent, StoredVersion
from carechain.storage.offchain.base import validate_media_type

if TYPE_CHECKING:
    from carechain.node.records.service import FileRecordService

FHIR_MEDIA = ("application/fhir+json", "application/json")
"""Media types that are FHIR JSON, not an attachment's own type."""
MAX_JSON_BINARY = 6 << 20
"""Largest raw Binary served in its JSON form (base64 grows it by a third, to 8 MiB)."""


def _ref(rid: str, version: int) -> str:
    return f"Binary/{rid}/_history/{version}"


def binary_resource(rid: str, content_type: str, context: str) -> dict[str, Any]:
    """The Binary resource of a raw attachment, without its ``data``."""
    return {"contentType": content_type, "id": rid, "resourceType": "Binary",
            "securityContext": {"reference": context}}  # fmt: skip


class BinaryMac:
    """HMAC-SHA256 of a Binary's canonical JSON, fed the raw bytes as they stream past."""

    def __init__(self, key: bytes, *, rid: str, content_type: str, context: str) -> None:
        self._mac = hmac.new(key, digestmod=hashlib.sha256)
        self._canon = BinaryCanonicalizer(
            rid=rid, content_type=content_type, security_context=context
        )
        self._mac.update(self._canon.head)
        self.size = 0
        """Raw bytes seen so far."""

    def update(self, raw: bytes) -> None:
        """Feed the next raw chunk."""
        self.size += len(raw)
        self._mac.update(self._canon.update(raw))

    def digest(self) -> bytes:
        """The digest (call once, after the last chunk)."""
        self._mac.update(self._canon.finish() + self._canon.tail)
        return self._mac.digest()


def binary_digest(key: bytes, chunks: Iterable[bytes], *, rid: str, content_type: str,
                  context: str) -> tuple[bytes, int]:  # fmt: skip
    """(HMAC-SHA256 of the Binary's canonical JSON, raw size) computed from streamed bytes."""
    mac = BinaryMac(key, rid=rid, content_type=content_type, context=context)
    for chunk in chunks:
        mac.update(bytes(chunk))
    return mac.digest(), mac.size


def create_binary(
    svc: FileRecordService,
    actor: Actor,
    *,
    content_type: str,
    security_context: str,
    chunks: Iterable[bytes],
    purpose: str,
) -> Access[StoredVersion]:
    """Stream a raw attachment into the store, anchor it, audit it (module docstring)."""
    signer = svc._signer(actor)
    content_type = validate_media_type(content_type)
    if content_type.split(";")[0].strip().lower() in FHIR_MEDIA:
        raise ValueError("a FHIR JSON Binary goes through the JSON create path")  # caller bug
    context = security_context.strip()
    rid = uuid.uuid4().hex
    patient, pindex = svc._patient_of("Binary", {"securityContext": {"reference": context},
                                                 "resourceType": "Binary"})  # fmt: skip
    org = svc.org
    if actor.kind != "patient" and actor.org != org:
        raise AuthorizationError(
            f"this node hosts the records of {org}; {actor.account} writes the records of "
            f"{actor.org} on its own node",
            code="not_hosted",
        )
    decision = svc._decide(
        actor, patient=patient, action="write", rtype="Binary",
        record=RecordRef(org=org, type="Binary", id=rid), purpose=purpose,
    )  # fmt: skip
    if not decision.permit:
        raise svc._denied(actor, decision, patient=patient, action="write", purpose=purpose)
    ref = _ref(rid, 1)

    def failed(reason: str) -> str:
        return svc._audit(
            actor, patient=patient, action="write", resources=[ref], purpose=purpose,
            basis=decision.basis(), outcome="error", reason=reason,
        )  # fmt: skip

    blinding = os.urandom(DATA_KEY_SIZE)
    mac = BinaryMac(blinding, rid=rid, content_type=content_type, context=context)

    def tap() -> Iterator[bytes]:
        for chunk in chunks:
            raw = bytes(chunk)
            mac.update(raw)
            yield raw

    try:
        blob = svc.store.put(tap(), media_type=content_type)
    except LedgerError as exc:
        reason = "too_large" if isinstance(exc, LimitExceededError) else "upload_failed"
        exc.audit_id = failed(reason)  # type: ignore[attr-defined]
        raise
    args: dict[str, Any] = {
        "digest": b64u_encode(mac.digest()), "id": rid, "index": pindex, "org": org,
        "patient": patient, "type": "Binary", "version": 1,
        "url": f"{svc.base_url}/fhir/{ref}",
    }  # fmt: skip
    tx = new_tx(svc.node, "records.anchor@1", actor.account, args, [signer])
    try:
        receipt = svc._commit(tx)
    except BaseException:
        svc.store.erase(blob)
        raise
    if receipt.get("status") != "ok":
        svc.store.erase(blob)
        from carechain.node.records.service import _error_for

        rejected = _error_for(receipt, f"the anchor of {ref}")
        rejected.audit_id = failed(str(receipt.get("code")))  # type: ignore[attr-defined]
        raise rejected
    rec = find_record(svc.state, org, "Binary", rid)
    assert rec is not None  # just committed
    entry = rec["versions"][0]
    svc.index.add_version(
        VersionRow(
            org=org, type="Binary", id=rid, version=1, address=blob.address,
            wrapped_key=svc.kek.wrap(blinding), kek_id=svc.kek.kek_id, media_type=content_type,
            patient=patient, last_updated=int(entry["time"]), anchor_tx=str(entry["tx"]),
            context=context,
        ),
        RecordRow(
            org=org, type="Binary", id=rid, patient=patient, latest=1,
            last_updated=int(entry["time"]), code=None, system_code=None, pindex=pindex,
            status="active",
        ),
    )  # fmt: skip
    resource = binary_resource(rid, content_type, context)
    stored = svc._stored(org, "Binary", rid, patient, entry, resource, b64u_encode(blinding))
    audit_id = svc._audit(
        actor, patient=patient, action="write", resources=[ref], purpose=purpose,
        basis=decision.basis(), outcome="permit", reason=decision.reason,
    )  # fmt: skip
    return Access(value=stored, audit_id=audit_id, basis=decision.basis())


def check_raw(svc: FileRecordService, row: VersionRow, entry: Mapping[str, Any]) -> bytes:
    """Verify a raw Binary blob against its anchor (one decrypting pass); its blinding key."""
    where = _ref(row.id, row.version)
    if row.wrapped_key is None or row.context is None:
        raise VerificationError(f"{where}: the local index has no key for this version",
                                code="integrity")  # fmt: skip
    try:
        key = svc.kek.unwrap(row.wrapped_key)
        got, _ = binary_digest(key, svc.store.open(row.address), rid=row.id,
                               content_type=row.media_type, context=row.context)  # fmt: skip
    except (VerificationError, LedgerError) as exc:
        if isinstance(exc, VerificationError) or exc.code == "not_found":
            raise VerificationError(f"{where}: stored content is damaged or missing: {exc}",
                                    code="integrity") from exc  # fmt: skip
        raise
    if not hmac.compare_digest(got, b64u_decode(str(entry["digest"]), what="digest")):
        raise VerificationError(f"{where}: the stored content does not match its on-chain "
                                "digest", code="integrity")  # fmt: skip
    return key


def raw_as_json(svc: FileRecordService, row: VersionRow, entry: Mapping[str, Any]) -> tuple[
        dict[str, Any], bytes]:  # fmt: skip
    """A raw Binary version in its JSON form (verified), and its blinding key."""
    if svc.store.get_ref(row.address).size > MAX_JSON_BINARY:
        raise LimitExceededError(
            f"Binary/{row.id} is larger than {MAX_JSON_BINARY} bytes: read it with "
            f"Accept: {row.media_type} to stream it instead of its JSON form",
            code="record_too_large",
        )
    key = check_raw(svc, row, entry)
    raw = svc.store.read_all(row.address, MAX_JSON_BINARY)
    assert row.context is not None
    data = binary_resource(row.id, row.media_type, row.context)
    data["data"] = base64.b64encode(raw).decode("ascii")
    return data, key


def read_binary(
    svc: FileRecordService, actor: Actor, rid: str, *, version: int | None, purpose: str
) -> Access[BinaryContent]:
    """Decide, verify, audit; then the verified content as a stream (module docstring)."""
    if not FHIR_ID_RE.match(rid):
        raise NotFoundError(f"no Binary/{rid} on this node")
    row, rec = svc._locate("Binary", rid)
    v = int(rec["latest"]) if version is None else version
    if not 1 <= v <= int(rec["latest"]):
        raise NotFoundError(f"Binary/{rid} has no version {v}")
    patient = str(rec["patient"])
    ref = _ref(rid, v)
    decision = svc._decide(
        actor, patient=patient, action="read", rtype="Binary",
        record=RecordRef(org=row.org, type="Binary", id=rid), purpose=purpose,
    )  # fmt: skip
    if not decision.permit:
        raise svc._denied(actor, decision, patient=patient, action="read", purpose=purpose,
                          resources=[ref])  # fmt: skip
    entry = rec["versions"][v - 1]
    vrow = svc.index.find_version(row.org, "Binary", rid, v)
    try:
        if vrow is None:
            raise VerificationError(f"{ref}: the local index has no row for this anchored "
                                    "version", code="integrity")  # fmt: skip
        if vrow.context is None:  # a Binary created as FHIR JSON
            stored = svc._load(rec, v)
            raw = base64.b64decode(str(stored.resource.get("data", "")))
            content_type = str(stored.resource.get("contentType", "application/octet-stream"))
            chunks: Iterator[bytes] = iter([raw])
            size = len(raw)
        else:
            key = check_raw(svc, vrow, entry)
            stored = svc._stored(row.org, "Binary", rid, patient, entry,
                                 binary_resource(rid, vrow.media_type, vrow.context),
                                 b64u_encode(key))  # fmt: skip
            content_type = vrow.media_type
            size = svc.store.get_ref(vrow.address).size
            chunks = svc.store.open(vrow.address)
    except LedgerError as exc:
        reason = "integrity" if isinstance(exc, VerificationError) else exc.code
        exc.audit_id = svc._audit(  # type: ignore[attr-defined]
            actor, patient=patient, action="read", resources=[ref], purpose=purpose,
            basis=decision.basis(), outcome="error", reason=reason,
        )  # fmt: skip
        raise
    try:
        audit_id = svc._audit(
            actor, patient=patient, action="read", resources=[ref], purpose=purpose,
            basis=decision.basis(), outcome="permit", reason=decision.reason,
        )  # fmt: skip
    except BaseException:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        raise
    content = BinaryContent(version=stored, content_type=content_type, size=size, chunks=chunks)
    return Access(value=content, audit_id=audit_id, basis=decision.basis())


__all__ = ["MAX_JSON_BINARY", "binary_digest", "create_binary", "raw_as_json", "read_binary"]
