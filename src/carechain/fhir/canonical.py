"""Canonical bytes, keyed digests and the secure index of FHIR resources (ADR 0005).

``canonical_fhir(resource)`` is RFC 8785 (JCS, the ``rfc8785`` package) of the resource with
the server-assigned ``meta.versionId`` and ``meta.lastUpdated`` removed (and ``meta`` itself
when nothing else is left in it, since FHIR forbids empty objects): the content a client sent
and the same content as the server later serves it canonicalise identically. Numbers follow
RFC 8785 §3.2.2.3 (ECMAScript ``Number.prototype.toString``): a decimal such as ``1.50`` is
canonicalised as ``1.5``; the received bytes are stored verbatim, so the precision a client
sent is still served back. Contained resources are left untouched.

``keyed_digest`` = HMAC-SHA256(blinding key, canonical bytes): the on-chain ``digest``.
``secure_index`` = HMAC-SHA256(index key, PAE("carechain/fhir/secure-index@1",
PAE("system", system) ‖ PAE("value", value))): the on-chain ``index``. The inner PAE frames
are length-prefixed, so distinct (system, value) pairs never frame to the same bytes.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import rfc8785

from carechain.encoding import pae
from carechain.errors import ValidationError

SECURE_INDEX_TAG = "carechain/fhir/secure-index@1"
"""PAE type tag of the secure-index message."""

MIN_KEY_BYTES = 16
"""Shortest accepted HMAC key (blinding or index key)."""

SERVER_META = ("versionId", "lastUpdated")
"""``meta`` elements assigned by the server and excluded from the canonical form."""


def strip_server_meta(resource: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``resource`` without the server-assigned ``meta`` elements."""
    out = copy.deepcopy(dict(resource))
    meta = out.get("meta")
    if isinstance(meta, dict):
        for key in SERVER_META:
            meta.pop(key, None)
        if not meta:
            del out["meta"]
    return out


def canonical_fhir(resource: Mapping[str, Any]) -> bytes:
    """RFC 8785 bytes of ``resource`` without ``meta.versionId``/``meta.lastUpdated``."""
    try:
        return rfc8785.dumps(strip_server_meta(resource))
    except (rfc8785.CanonicalizationError, ValueError, TypeError) as exc:
        raise ValidationError(
            f"resource cannot be canonicalised (RFC 8785): {exc}", code="fhir_non_canonicalisable"
        ) from exc


def _check_key(key: bytes, what: str) -> None:
    if len(key) < MIN_KEY_BYTES:
        raise ValidationError(f"{what} must be at least {MIN_KEY_BYTES} bytes, got {len(key)}")


def keyed_digest(blinding_key: bytes, canonical: bytes) -> bytes:
    """HMAC-SHA256(blinding_key, canonical): the anchor's ``digest`` (32 bytes)."""
    _check_key(blinding_key, "blinding key")
    return hmac.new(blinding_key, canonical, hashlib.sha256).digest()


def secure_index(index_key: bytes, system: str, value: str) -> bytes:
    """HMAC-SHA256 over the framed identifier ``system|value``: the anchor's ``index``."""
    _check_key(index_key, "index key")
    if not system or not value:
        raise ValidationError("a secure index needs a non-empty identifier system and value")
    body = pae("system", system.encode("utf-8")) + pae("value", value.encode("utf-8"))
    return hmac.new(index_key, pae(SECURE_INDEX_TAG, body), hashlib.sha256).digest()


# --- what an anchor needs to know about a resource ----------------------------------------

_USE_RANK = {"official": 0, "usual": 1, None: 2, "secondary": 3, "temp": 4}


def patient_identifier(resource: Mapping[str, Any]) -> tuple[str, str] | None:
    """The identifier a Patient is indexed by, or ``None``.

    Among identifiers with both ``system`` and ``value`` (``use`` = ``old`` excluded), the first
    ``official`` one, else the first ``usual``, else the first without ``use``, else the first
    ``secondary``, else the first ``temp``.
    """
    if resource.get("resourceType") != "Patient":
        return None
    best: tuple[int, int, str, str] | None = None
    for pos, ident in enumerate(resource.get("identifier") or ()):
        if not isinstance(ident, Mapping):
            continue
        system, value, use = ident.get("system"), ident.get("value"), ident.get("use")
        if not (isinstance(system, str) and system and isinstance(value, str) and value):
            continue
        if use not in _USE_RANK:
            continue
        cand = (_USE_RANK[use], pos, system, value)
        if best is None or cand < best:
            best = cand
    return None if best is None else (best[2], best[3])


class BinaryCanonicalizer:
    """The canonical bytes of a ``Binary``, produced while its raw content streams past.

    A Binary uploaded as raw bytes (``POST /fhir/Binary`` with its own media type) is stored as
    those bytes; its anchor digest is nevertheless over ``canonical_fhir`` of the Binary
    resource it stands for::

        {"contentType": <ct>, "data": <base64 of the bytes>, "id": <id>,
         "resourceType": "Binary", "securityContext": {"reference": <ref>}}

    RFC 8785 orders those keys exactly so and never escapes the base64 alphabet, so the bytes
    are ``head ‖ base64(content) ‖ tail``, computed here chunk by chunk in bounded memory. A
    reader that receives the JSON form recomputes the same digest with ``canonical_fhir``.
    """

    def __init__(self, *, rid: str, content_type: str, security_context: str) -> None:
        self._carry = b""
        self.head = b'{"contentType":' + rfc8785.dumps(content_type) + b',"data":"'
        """The bytes before the base64 data."""
        self.tail = (
            b'","id":' + rfc8785.dumps(rid) + b',"resourceType":"Binary","securityContext":'
            + rfc8785.dumps({"reference": security_context}) + b"}"
        )  # fmt: skip
        """The bytes after the base64 data."""

    def update(self, raw: bytes) -> bytes:
        """The base64 text of ``raw`` that is complete so far (multiples of 3 bytes)."""
        data = self._carry + raw
        cut = len(data) - len(data) % 3
        self._carry = data[cut:]
        return base64.b64encode(data[:cut])

    def finish(self) -> bytes:
        """The last base64 text (with padding)."""
        out, self._carry = base64.b64encode(self._carry), b""
        return out


def binary_canonical_chunks(
    chunks: Iterable[bytes], *, rid: str, content_type: str, security_context: str
) -> Iterator[bytes]:
    """The canonical bytes of a raw Binary in pieces (:class:`BinaryCanonicalizer`)."""
    canon = BinaryCanonicalizer(rid=rid, content_type=content_type,
                                security_context=security_context)  # fmt: skip
    yield canon.head
    for chunk in chunks:
        yield canon.update(bytes(chunk))
    yield canon.finish() + canon.tail


SUBJECT_FIELDS: dict[str, str] = {
    "AllergyIntolerance": "patient",
    "AuditEvent": "patient",
    "Binary": "securityContext",
    "Condition": "subject",
    "Consent": "subject",
    "DiagnosticReport": "subject",
    "DocumentReference": "subject",
    "Encounter": "subject",
    "Immunization": "patient",
    "MedicationRequest": "subject",
    "Observation": "subject",
    "Provenance": "patient",
}
"""The element holding the patient reference, per resource type (R5 names)."""


def normalise_patient_reference(reference: str) -> str | None:
    """``Patient/<id>`` from a relative or absolute reference (``_history`` dropped)."""
    parts = reference.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1]:
        return f"Patient/{parts[-1]}"
    return None


def subject_reference(resource: Mapping[str, Any]) -> str | None:
    """``Patient/<id>`` the resource is about, or ``None`` (Patient: its own id)."""
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        rid = resource.get("id")
        return f"Patient/{rid}" if isinstance(rid, str) and rid else None
    field = SUBJECT_FIELDS.get(str(rtype))
    if field is None:
        return None
    ref = resource.get(field)
    if not isinstance(ref, Mapping) or not isinstance(ref.get("reference"), str):
        return None
    return normalise_patient_reference(ref["reference"])


CATEGORY_TYPES = frozenset(
    {
        "AllergyIntolerance",
        "AuditEvent",
        "Condition",
        "Consent",
        "DiagnosticReport",
        "DocumentReference",
        "MedicationRequest",
        "Observation",
    }
)
"""Resource types with a ``category`` element (R5)."""


def category_code(resource: Mapping[str, Any]) -> str | None:
    """The first category code: first coding of the first ``category`` that has one.

    ``AllergyIntolerance.category`` is a list of codes (``food``, ``medication``, …).
    """
    if resource.get("resourceType") not in CATEGORY_TYPES:
        return None
    for cat in resource.get("category") or ():
        if isinstance(cat, str):
            return cat
        if isinstance(cat, Mapping):
            for coding in cat.get("coding") or ():
                if isinstance(coding, Mapping) and isinstance(coding.get("code"), str):
                    return str(coding["code"])
    return None
