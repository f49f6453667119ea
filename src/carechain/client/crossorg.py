"""Reading a record hosted by another organisation, checked against your own ledger.

A practitioner of organisation B reads a record that organisation A hosts (ADR 0005, "Across
organisations"). B's request is signed: B obtains a bearer token at A's node with a SMART client
assertion signed by B's own ledger key (:meth:`Client.authenticate`), so A's node knows who asks
from its copy of the ledger, decides on consent, audits and serves. B trusts nothing A's node
says about the content:

1. read the version from the hosting node (``records``: a session at A's node); the response
   carries the version's blinding key (``X-Record-Digest-Key``) and its anchor transaction
   (``X-Anchor-Tx``);
2. prove the anchor transaction is in the log of a checkpoint B trusts (``ledger``: a client of
   B's own node with B's trust store; :meth:`Client.prove_inclusion`), and check it is a
   ``records.anchor@1`` for exactly this type, id and version;
3. check B's own copy of the ledger records that transaction as the anchor of that version
   (``GET /v1/records/{org}/{type}/{id}``: a rejected anchor transaction is in the log too, but
   never in state) and that the record is not erased;
4. recompute ``HMAC-SHA256(blinding key, canonical FHIR JSON)`` of the content received
   (``carechain.fhir.canonical``) and compare it with the anchored digest.

Any failure raises :class:`~carechain.errors.VerificationError` naming the step. In single-node
mode both sessions talk to the same node; nothing changes when each organisation runs its own.
"""

from __future__ import annotations

import hmac
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from carechain.client._http import decode_json
from carechain.client.client import Client, InclusionResult
from carechain.encoding import b64u_decode
from carechain.errors import LedgerError, ValidationError, VerificationError
from carechain.fhir.canonical import canonical_fhir, keyed_digest

if TYPE_CHECKING:
    from carechain.client.records import RecordsClient

ANCHOR_KIND = "records.anchor@1"
DIGEST_KEY_HEADER = "x-record-digest-key"
ANCHOR_HEADER = "x-anchor-tx"


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedRecord:
    """A record version whose content was checked against the reader's own ledger."""

    resource: Mapping[str, Any]
    """The resource as served (with ``meta.versionId`` / ``meta.lastUpdated``)."""
    org: str
    """The hosting organisation (from the anchor)."""
    version: int
    """The version read."""
    digest: str
    """The anchored keyed digest (base64url) the content matched."""
    anchor: InclusionResult
    """The anchor transaction's inclusion proof against the trusted checkpoint."""
    audit_id: str | None
    """The hosting node's audit entry for this read (``X-Audit-Entry``)."""


def read_verified(
    records: RecordsClient,
    ledger: Client,
    rtype: str,
    rid: str,
    *,
    version: int | None = None,
    purpose: str | None = None,
) -> VerifiedRecord:
    """Read ``rtype/rid`` (or one ``version``) from the hosting node and check it (module doc)."""
    path = f"/{_quote(rtype)}/{_quote(rid)}"
    if version is not None:
        path += f"/_history/{int(version)}"
    _, resource, headers = records._fhir("GET", path, purpose=purpose)  # step 1
    if not isinstance(resource, Mapping) or resource.get("resourceType") != rtype:
        raise VerificationError(f"{rtype}/{rid}: the hosting node answered with another resource")
    served = _served_version(resource, headers.get("etag"))
    if version is not None and served != version:
        raise VerificationError(f"{rtype}/{rid}: asked for version {version}, got {served}")
    key_text, anchor_tx = headers.get(DIGEST_KEY_HEADER), headers.get(ANCHOR_HEADER)
    if not key_text or not anchor_tx:
        raise VerificationError(
            f"{rtype}/{rid}: the hosting node sent no {DIGEST_KEY_HEADER} / {ANCHOR_HEADER}, so "
            "the content cannot be checked against the ledger"
        )
    try:
        proof = ledger.prove_inclusion(anchor_tx)  # step 2
    except ValidationError as exc:
        raise VerificationError(f"{rtype}/{rid}: bad anchor transaction id: {exc}") from exc
    body = proof.tx.tx.body
    args = body.args
    if body.kind != ANCHOR_KIND:
        raise VerificationError(f"anchor {anchor_tx} is a {body.kind}, not a {ANCHOR_KIND}")
    if (args.get("type"), args.get("id"), args.get("version")) != (rtype, rid, served):
        raise VerificationError(
            f"anchor {anchor_tx} anchors {args.get('type')}/{args.get('id')} version "
            f"{args.get('version')}, not {rtype}/{rid} version {served}"
        )
    org = str(args.get("org"))
    state = _anchor_state(ledger, org, rtype, rid)  # step 3
    versions = state.get("versions")
    entry = (
        versions[served - 1] if isinstance(versions, list) and 0 < served <= len(versions) else None
    )
    if not isinstance(entry, Mapping) or entry.get("tx") != anchor_tx:
        raise VerificationError(
            f"{org}/{rtype}/{rid} version {served}: your ledger anchors it with transaction "
            f"{entry.get('tx') if isinstance(entry, Mapping) else None}, not {anchor_tx}"
        )
    if state.get("status") != "active":
        raise VerificationError(f"{org}/{rtype}/{rid} is {state.get('status')} on your ledger")
    digest = str(entry.get("digest"))
    if digest != args.get("digest"):  # pragma: no cover - state is what the tx wrote
        raise VerificationError(f"{org}/{rtype}/{rid}: state and anchor disagree on the digest")
    try:  # step 4
        key = b64u_decode(key_text, what=DIGEST_KEY_HEADER)
        got = keyed_digest(key, canonical_fhir(resource))
        want = b64u_decode(digest, what="anchored digest")
    except LedgerError as exc:
        raise VerificationError(f"{rtype}/{rid}: cannot recompute the digest: {exc}") from exc
    if not hmac.compare_digest(got, want):
        raise VerificationError(
            f"{org}/{rtype}/{rid} version {served}: the content served does not match the "
            "digest anchored on your ledger (altered or substituted content)"
        )
    return VerifiedRecord(
        resource=resource, org=org, version=served, digest=digest, anchor=proof,
        audit_id=headers.get("x-audit-entry"),
    )  # fmt: skip


def _served_version(resource: Mapping[str, Any], etag: str | None) -> int:
    text = (etag or "").removeprefix("W/").strip('"')
    meta = resource.get("meta")
    meta_v = str(meta.get("versionId", "")) if isinstance(meta, Mapping) else ""
    if not text.isdigit() or meta_v != text:
        raise VerificationError(
            f"the served version is ambiguous (ETag {etag!r}, meta.versionId {meta_v!r})"
        )
    return int(text)


def _anchor_state(ledger: Client, org: str, rtype: str, rid: str) -> Mapping[str, Any]:
    path = f"/v1/records/{_quote(org)}/{_quote(rtype)}/{_quote(rid)}"
    _, raw, _ = ledger.api.request("GET", path)
    obj = decode_json(raw, f"GET {path}")
    if not isinstance(obj, Mapping):
        raise VerificationError(f"GET {path}: want a JSON object")
    return obj


def _quote(part: str) -> str:
    return urllib.parse.quote(part, safe="")


__all__ = ["VerifiedRecord", "read_verified"]
