"""Directory resources (``Organization``, ``Practitioner``): stored and anchored like records,
but about the organisation and its people, never about a patient.

Decisions (ADR 0005, "Directory resources"):

* they are not PHI: any signed-in account may read and search them, with no consent decision
  and no audit entry (an audit entry names a patient; these have none);
* they are written by the hosting organisation's admins, clerks and clinical roles
  (``contracts.records.DIRECTORY_ROLES``, enforced on chain) through their custodial signer, and
  anchored with no ``patient`` and no secure ``index``; versions chain like any record's;
* they are stored encrypted and checked against their on-chain digest on every read, like
  records, so a changed directory entry is detected the same way;
* responses carry no ``X-Audit-Entry``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from carechain.contracts.consent import Decision
from carechain.contracts.records import DIRECTORY_TYPES, find_record
from carechain.crypto.kek import DATA_KEY_SIZE
from carechain.encoding import b64u_encode
from carechain.errors import AuthorizationError, ConflictError, InfrastructureError
from carechain.fhir import canonical_fhir, keyed_digest
from carechain.node.chaindir import new_tx
from carechain.node.records.index import RecordRow, VersionRow
from carechain.node.records_api import Access, Actor, SearchPage, StoredVersion

if TYPE_CHECKING:
    from carechain.node.records.service import FileRecordService

NO_PATIENT = ""
"""The index's patient column for directory resources."""
DIRECTORY_BASIS: Mapping[str, Any] = {"kind": "directory"}
READ_DECISION = Decision(permit=True, reason="directory")


def is_directory(rtype: str) -> bool:
    """True for a directory resource type."""
    return rtype in DIRECTORY_TYPES


def write(
    svc: FileRecordService,
    actor: Actor,
    rtype: str,
    rid: str,
    data: dict[str, Any],
    *,
    if_match: int | None,
) -> Access[StoredVersion]:
    """Anchor the next version of directory resource ``rtype/rid`` (``data`` validated, its
    ``id`` set: the caller assigned it on create or checked it exists on update)."""
    from carechain.node.records.service import MEDIA_TYPE, _error_for, _search_code

    signer = svc._signer(actor)
    if actor.kind == "patient" or actor.org != svc.org:
        raise AuthorizationError(
            f"{rtype} resources of {svc.org} are written by its own staff; {actor.account} "
            f"is not a member of {svc.org}",
            code="not_hosted" if actor.kind != "patient" else "unauthorized",
        )
    current = find_record(svc.state, svc.org, rtype, rid)
    latest = int(current["latest"]) if current is not None else 0
    if if_match is not None and if_match != latest:
        raise ConflictError(
            f"{rtype}/{rid} is at version {latest}, not {if_match}", code="version_conflict"
        )
    version = latest + 1
    canonical = canonical_fhir(data)
    blinding = os.urandom(DATA_KEY_SIZE)
    blob = svc.store.put([canonical], media_type=MEDIA_TYPE)
    args: dict[str, Any] = {
        "digest": b64u_encode(keyed_digest(blinding, canonical)), "id": rid, "org": svc.org,
        "type": rtype, "version": version,
        "url": f"{svc.base_url}/fhir/{rtype}/{rid}/_history/{version}",
    }  # fmt: skip
    if current is not None:
        args["prev"] = current["versions"][-1]["digest"]
    tx = new_tx(svc.node, "records.anchor@1", actor.account, args, [signer])
    try:
        receipt = svc._commit(tx)
    except BaseException:
        svc.store.erase(blob)
        raise
    if receipt.get("status") != "ok":
        svc.store.erase(blob)
        raise _error_for(receipt, f"the anchor of {rtype}/{rid} version {version}")
    anchored = find_record(svc.state, svc.org, rtype, rid)
    if anchored is None:  # pragma: no cover - just committed
        raise InfrastructureError(f"{rtype}/{rid} committed but not found in state")
    entry = anchored["versions"][version - 1]
    code, system_code = _search_code(data)
    svc.index.add_version(
        VersionRow(
            org=svc.org, type=rtype, id=rid, version=version, address=blob.address,
            wrapped_key=svc.kek.wrap(blinding), kek_id=svc.kek.kek_id, media_type=MEDIA_TYPE,
            patient=NO_PATIENT, last_updated=int(entry["time"]), anchor_tx=str(entry["tx"]),
        ),
        RecordRow(
            org=svc.org, type=rtype, id=rid, patient=NO_PATIENT, latest=version,
            last_updated=int(entry["time"]), code=code, system_code=system_code,
            pindex=NO_PATIENT, status="active",
        ),
    )  # fmt: skip
    stored = svc._stored(svc.org, rtype, rid, NO_PATIENT, entry, orjson.loads(canonical),
                         b64u_encode(blinding))  # fmt: skip
    return Access(value=stored, audit_id="", basis=DIRECTORY_BASIS)


def search(
    svc: FileRecordService,
    rtype: str,
    *,
    ids: tuple[str, ...] | list[str],
    last_updated: tuple[int | None, int | None],
    count: int,
    offset: int,
) -> Access[SearchPage]:
    """Directory resources of ``rtype`` on this node (no patient, no consent, no audit)."""
    rows = svc.index.search(rtype, patient=NO_PATIENT, ids=ids, since=last_updated[0],
                            until=last_updated[1], code=None)  # fmt: skip
    page = rows[offset : offset + count]
    items = []
    for row in page:
        rec = find_record(svc.state, row.org, row.type, row.id)
        if rec is None:
            from carechain.node.records.service import _integrity

            raise _integrity(f"{row.type}/{row.id} is indexed but not anchored")
        items.append(svc._load(rec, int(rec["latest"])))
    return Access(value=SearchPage(items=items, total=len(rows), offset=offset), audit_id="",
                  basis=DIRECTORY_BASIS)  # fmt: skip


__all__ = ["DIRECTORY_BASIS", "NO_PATIENT", "READ_DECISION", "is_directory", "search", "write"]
