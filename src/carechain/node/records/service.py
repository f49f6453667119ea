"""``FileRecordService``: the record service (``node/records_api.py``) over a running node.

Where things live (``DIR`` is the chain's data directory)::

    DIR/records/                  FileRecordStore: encrypted blobs (one per resource version)
    DIR/records/index.sqlite      RecordIndex: (org, type, id, version) → blob address,
                                  wrapped blinding key, media type, patient; search columns
    DIR/keys/record-kek.json      the KEK (wraps blob data keys and blinding keys)
    DIR/secrets/index.key         the consortium's secure-index key

Every call that reaches an access decision writes exactly one ``audit.record@1`` entry, signed
by the hosting node's service account ``<org>.node``, and returns (or raises) only after that
entry committed. Calls refused before a decision — malformed input (422), an unknown record
(404), a missing custodial signer (``signature_required``) — touch no PHI and are not audited.

An error raised after its audit entry committed carries that entry's id as ``exc.audit_id``
(for the facade's ``X-Audit-Entry`` header on 403/409/410/422 responses).

Decisions:

* this node hosts the records of its own organisation (``node/<kid>.org``); a member of another
  organisation cannot create records here (``AuthorizationError``, code ``not_hosted``);
* the patient a record is about: a ``Patient`` names its ledger account with an identifier of
  system :data:`ACCOUNT_SYSTEM`; other resources reference a ``Patient`` stored here and
  inherit its account and secure index;
* an erasure by an admin/privacy officer and a privacy officer's access-log read are recorded
  with basis ``custodian`` (the hosting organisation on a legal basis) and the basis or role in
  ``reason`` (the erasure basis, ``privacy_officer``).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from carechain.contracts.consent import AccessRequest, Decision, RecordRef, decide, find_consent
from carechain.contracts.identity import node_account_id
from carechain.contracts.records import (
    CODE_RE,
    ERASE_BASES,
    FHIR_ID_RE,
    FHIR_TYPES,
    URL_RE,
    find_record,
)
from carechain.crypto.kek import DATA_KEY_SIZE, KEK
from carechain.crypto.signatures import PrivateKey
from carechain.encoding import JsonValue, b64u_decode, b64u_encode
from carechain.errors import (
    AuthorizationError,
    ConfigurationError,
    ConflictError,
    ContractError,
    GoneError,
    InfrastructureError,
    LedgerError,
    NotFoundError,
    ValidationError,
    VerificationError,
)
from carechain.fhir import (
    FhirIssue,
    FhirValidationError,
    canonical_fhir,
    category_code,
    consent_to_grant,
    keyed_digest,
    parse_resource,
    patient_identifier,
    secure_index,
    subject_reference,
)
from carechain.fhir._time import ms_to_instant
from carechain.fhir.canonical import SUBJECT_FIELDS, normalise_patient_reference
from carechain.ledger.tx import SignedTx, parse_envelope
from carechain.merkle import NoteVerifier, inclusion_proof, leaf_hash, open_checkpoint
from carechain.node.chaindir import ChainPaths, load_index_key, load_record_kek, new_tx
from carechain.node.commit import commit_one
from carechain.node.node import Node
from carechain.node.records import directory
from carechain.node.records.binary import create_binary, raw_as_json, read_binary
from carechain.node.records.index import INDEX_DB_NAME, RecordIndex, RecordRow, VersionRow
from carechain.node.records_api import (
    Access,
    Actor,
    AuditView,
    BinaryContent,
    SearchPage,
    StoredVersion,
)
from carechain.storage.offchain import FileRecordStore
from carechain.storage.offchain.base import DEFAULT_MAX_BYTES

ACCOUNT_SYSTEM = "urn:carechain:account"
"""Identifier system naming a ledger account (a Patient's patient account, a Practitioner's
member account)."""
MEDIA_TYPE = "application/fhir+json"
MAX_RESOURCE_BYTES = 8 << 20
MAX_AUDIT_REFS = 100
MAX_PAGE = 100
COMMIT_TIMEOUT = 30.0

_CONFLICT_CODES = frozenset({"wrong_version", "wrong_prev", "patient_mismatch", "already_reviewed"})
_GONE_CODES = frozenset({"erased", "already_erased"})
_NOT_FOUND_CODES = frozenset(
    {"unknown_record", "unknown_patient", "unknown_consent", "unknown_account", "unknown_org",
     "unknown_session"}
)  # fmt: skip
_FORBIDDEN_CODES = frozenset({"unauthorized", "wrong_purpose", "already_revoked"})


class _State:
    """Decoded committed state (the node's cache) for ``decide`` and the contract helpers."""

    def __init__(self, node: Node) -> None:
        self._node = node

    def get(self, key: str) -> JsonValue | None:
        raw = self._node.state.find_state(key)
        value: JsonValue | None = orjson.loads(raw) if raw is not None else None
        return value


def _ref(rtype: str, rid: str, version: int) -> str:
    return f"{rtype}/{rid}/_history/{version}"


def _tagged(exc: LedgerError, audit_id: str) -> LedgerError:
    """``exc`` carrying the id of the audit entry that recorded it (``exc.audit_id``)."""
    exc.audit_id = audit_id  # type: ignore[attr-defined]
    return exc


def _integrity(message: str) -> VerificationError:
    return VerificationError(message, code="integrity")


def _unprocessable(location: str, message: str, code: str = "invalid") -> FhirValidationError:
    return FhirValidationError([FhirIssue(location=location, message=message, code=code)])


def _error_for(receipt: Mapping[str, Any], what: str) -> LedgerError:
    """The error family of a contract rejection."""
    code = str(receipt.get("code"))
    message = f"{what} was rejected ({code}): {receipt.get('msg', '')}"
    if code in _CONFLICT_CODES:
        return ConflictError(message, code=code)
    if code in _GONE_CODES:
        return GoneError(message, code=code)
    if code in _NOT_FOUND_CODES:
        return NotFoundError(message, code=code)
    if code in _FORBIDDEN_CODES:
        return AuthorizationError(message, code=code)
    if code == "bad_args":
        return ValidationError(message, code=code)
    return ContractError(message, code=code)


def _search_code(resource: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(code, system|code) of ``resource.code``'s first coding (search column)."""
    concept = resource.get("code")
    if isinstance(concept, Mapping):
        for coding in concept.get("coding") or ():
            if isinstance(coding, Mapping) and isinstance(coding.get("code"), str):
                system = coding.get("system")
                code = str(coding["code"])
                return code, f"{system}|{code}" if isinstance(system, str) else None
    return None, None


class FileRecordService:
    """Implements :class:`carechain.node.records_api.RecordService` (module docstring)."""

    def __init__(
        self,
        node: Node,
        store: FileRecordStore,
        index: RecordIndex,
        *,
        kek: KEK,
        index_key: bytes,
        base_url: str,
        commit_timeout: float = COMMIT_TIMEOUT,
    ) -> None:
        base = base_url.rstrip("/")
        if not URL_RE.match(f"{base}/fhir/Patient/x/_history/1"):
            raise ValidationError(f"base_url {base_url!r} must be an absolute http(s) URL")
        self.node = node
        self.store = store
        self.index = index
        self.kek = kek
        self.index_key = index_key
        self.base_url = base
        self.commit_timeout = commit_timeout
        self.state = _State(node)
        rec = self.state.get(f"node/{node.node_key.kid}")
        if not isinstance(rec, Mapping) or not isinstance(rec.get("org"), str):
            raise InfrastructureError("the node key is not registered as a node of any org")
        self.org: str = str(rec["org"])
        """The organisation this node hosts records for (and signs audit entries as)."""

    def close(self) -> None:
        """Close the blob store and the index."""
        self.store.close()
        self.index.close()

    # -- actors ------------------------------------------------------------------------------
    def actor(self, account: str, signer: PrivateKey | None = None) -> Actor:
        acct = self.state.get(f"acct/{account}")
        if not isinstance(acct, Mapping) or acct.get("status") != "active":
            raise NotFoundError(f"no active account {account}")
        keys = acct.get("keys")
        if signer is not None and (not isinstance(keys, list) or signer.kid not in keys):
            raise AuthorizationError(
                f"the signing key {signer.kid} is not a key of {account}", code="wrong_signer"
            )
        caps, org, role = acct.get("capabilities"), acct.get("org"), acct.get("role")
        return Actor(
            account=account,
            kind=str(acct.get("type")),
            org=org if isinstance(org, str) else None,
            role=role if isinstance(role, str) else None,
            capabilities=tuple(str(c) for c in caps) if isinstance(caps, list) else (),
            signer=signer,
        )

    @staticmethod
    def _signer(actor: Actor) -> PrivateKey:
        if actor.signer is None:
            raise AuthorizationError(
                "this action is signed by you: sign in with your custodial account, or sign "
                "the transaction yourself and submit it to POST /v1/transactions",
                code="signature_required",
            )
        return actor.signer

    @staticmethod
    def _role(actor: Actor) -> str:
        if actor.kind == "patient":
            return "patient"
        return actor.role or ("admin" if actor.kind == "admin" else "service")

    # -- ledger plumbing ---------------------------------------------------------------------
    def _commit(self, tx: SignedTx) -> dict[str, Any]:
        """Submit ``tx``, wait for its block; its decoded receipt (plus ``height``)."""
        return commit_one(self.node, tx, self.commit_timeout)

    def _request_id(self) -> str:
        return f"rq-{uuid.uuid4().hex[:20]}"

    def _audit(
        self,
        actor: Actor,
        *,
        patient: str,
        action: str,
        resources: Sequence[str] = (),
        purpose: str,
        basis: Mapping[str, Any],
        outcome: str,
        reason: str,
    ) -> str:
        """Commit one audit entry; its tx id (hex). Raises unless it committed."""
        refs = list(dict.fromkeys(resources))[:MAX_AUDIT_REFS]
        if not CODE_RE.match(reason):
            reason = "other"
        args: dict[str, Any] = {
            "action": action, "actor": actor.account, "basis": dict(basis), "org": self.org,
            "outcome": outcome, "patient": patient, "purpose": purpose, "reason": reason,
            "request": self._request_id(), "resources": refs, "role": self._role(actor),
        }  # fmt: skip
        tx = new_tx(
            self.node, "audit.record@1", node_account_id(self.org), args, [self.node.node_key]
        )
        try:
            receipt = self._commit(tx)
        except LedgerError as exc:
            raise InfrastructureError(
                f"the audit entry could not be committed ({exc}); no data is returned",
                code="audit_failed",
            ) from exc
        if receipt.get("status") != "ok":
            raise InfrastructureError(
                f"the audit entry was rejected ({receipt.get('code')}: {receipt.get('msg')}); "
                "no data is returned",
                code="audit_failed",
            )
        return tx.tx_id.hex()

    def _decide(
        self,
        actor: Actor,
        *,
        patient: str,
        action: str,
        rtype: str,
        record: RecordRef | None,
        category: str | None = None,
        purpose: str,
    ) -> Decision:
        head = self.node.head.header
        request = AccessRequest(
            actor=actor.account, actor_org=actor.org,
            actor_role=None if actor.kind == "patient" else actor.role, patient=patient,
            action=action, record=record, resource_type=rtype, category=category,
            purpose=purpose,
        )  # fmt: skip
        return decide(
            self.state, request, time=max(head.time, self.node.clock()), height=head.height
        )

    def _denied(
        self,
        actor: Actor,
        decision: Decision,
        *,
        patient: str,
        action: str,
        purpose: str,
        resources: Sequence[str] = (),
    ) -> LedgerError:
        """Audit a denial and build the error to raise."""
        audit_id = self._audit(
            actor, patient=patient, action=action, resources=resources, purpose=purpose,
            basis=decision.basis(), outcome="deny", reason=decision.reason,
        )  # fmt: skip
        if decision.reason == "erased":
            gone = GoneError(f"the record was erased (audit entry {audit_id})", code="erased")
            return _tagged(gone, audit_id)
        return _tagged(
            AuthorizationError(
                f"{actor.account} may not {action} these records of {patient} for this "
                f"purpose: {decision.reason} (audit entry {audit_id})",
                code=decision.reason,
            ),
            audit_id,
        )

    # -- patients ----------------------------------------------------------------------------
    def _is_patient(self, account: str) -> bool:
        acct = self.state.get(f"acct/{account}")
        return isinstance(acct, Mapping) and acct.get("type") == "patient"

    def patient_record_id(self, patient: str) -> str | None:
        rows = self.index.search(
            "Patient", patient=patient, ids=(), since=None, until=None, code=None
        )
        mine = [r for r in rows if r.org == self.org]
        return mine[0].id if mine else None

    def resolve_patient(self, patient: str) -> str:
        """A patient account from an account id, ``Patient/<id>`` or a stored Patient's id."""
        pid = patient.removeprefix("Patient/")
        row = self.index.find_record("Patient", pid, self.org)
        if row is not None:
            return row.patient
        if self._is_patient(pid):
            return pid
        raise NotFoundError(f"no patient {patient} on this node")

    def _patient_of(self, rtype: str, data: Mapping[str, Any]) -> tuple[str, str]:
        """(patient account, secure index b64u) of a resource about to be written."""
        if rtype == "Patient":
            accounts = [
                i.get("value")
                for i in data.get("identifier") or ()
                if isinstance(i, Mapping) and i.get("system") == ACCOUNT_SYSTEM
            ]
            if len(accounts) != 1 or not isinstance(accounts[0], str):
                raise _unprocessable(
                    "Patient.identifier",
                    f"a Patient names its ledger patient account with exactly one identifier "
                    f"of system {ACCOUNT_SYSTEM} (found {len(accounts)})",
                    "required",
                )
            account = accounts[0]
            if not self._is_patient(account):
                raise _unprocessable(
                    "Patient.identifier",
                    f"{ACCOUNT_SYSTEM}|{account} is not a registered patient account",
                    "value",
                )
            ident = patient_identifier(data)
            if ident is None:  # pragma: no cover - the account identifier qualifies
                raise _unprocessable("Patient.identifier", "no usable identifier", "required")
            return account, b64u_encode(secure_index(self.index_key, *ident))
        field = SUBJECT_FIELDS.get(rtype)
        if field is None:
            raise _unprocessable(
                rtype,
                f"{rtype} resources are not about a patient: this service stores patient "
                f"records only ({', '.join(sorted(SUBJECT_FIELDS))}, Patient)",
                "not-supported",
            )
        ref = subject_reference(data)
        if ref is None:
            raise _unprocessable(
                f"{rtype}.{field}",
                f"{rtype}.{field} must reference the Patient (Patient/<id>) it is about",
                "required",
            )
        row = self.index.find_record("Patient", ref.split("/", 1)[1], self.org)
        if row is None:
            raise _unprocessable(
                f"{rtype}.{field}",
                f"{ref} is not a Patient stored on this node: create the Patient first",
                "not-found",
            )
        if row.status != "active":
            raise _unprocessable(f"{rtype}.{field}", f"{ref} was erased", "deleted")
        return row.patient, row.pindex

    # -- writes ------------------------------------------------------------------------------
    def create(
        self, actor: Actor, resource: Mapping[str, Any], *, purpose: str = "TREAT"
    ) -> Access[StoredVersion]:
        return self._write(actor, None, None, resource, if_match=None, purpose=purpose)

    def update(
        self,
        actor: Actor,
        rtype: str,
        rid: str,
        resource: Mapping[str, Any],
        *,
        if_match: int | None = None,
        purpose: str = "TREAT",
    ) -> Access[StoredVersion]:
        return self._write(actor, rtype, rid, resource, if_match=if_match, purpose=purpose)

    def _parse(self, resource: Mapping[str, Any], expected: str | None) -> dict[str, Any]:
        try:
            raw = json.dumps(resource, ensure_ascii=False, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise _unprocessable("(body)", f"not JSON: {exc}", "structure") from None
        parsed = parse_resource(raw, expected_type=expected, max_bytes=MAX_RESOURCE_BYTES)
        if parsed.resource_type not in FHIR_TYPES:
            raise _unprocessable(
                f"{parsed.resource_type}.resourceType",
                f"{parsed.resource_type} resources are not stored as records here",
                "not-supported",
            )
        return parsed.data

    def _write(
        self,
        actor: Actor,
        rtype: str | None,
        rid: str | None,
        resource: Mapping[str, Any],
        *,
        if_match: int | None,
        purpose: str,
    ) -> Access[StoredVersion]:
        signer = self._signer(actor)
        data = self._parse(resource, rtype)
        rtype = str(data["resourceType"])
        body_id = data.get("id")
        if rid is None:  # create
            # The server always assigns an opaque id (FHIR lets it ignore the body's id): a
            # client-chosen id would go on chain (anchor ``id`` and ``url``) and may carry PHI.
            rid = uuid.uuid4().hex
        else:
            if isinstance(body_id, str) and body_id != rid:
                raise _unprocessable(
                    f"{rtype}.id", f"the body's id {body_id!r} is not the URL's id {rid!r}"
                )
            if self.index.find_record(rtype, rid, self.org) is None:
                raise NotFoundError(f"no {rtype}/{rid} on this node: create it first")
        if not FHIR_ID_RE.match(rid):
            raise _unprocessable(f"{rtype}.id", f"{rid!r} is not a FHIR id")
        data["id"] = rid
        if directory.is_directory(rtype):
            return directory.write(self, actor, rtype, rid, data, if_match=if_match)
        org = self.org if actor.kind == "patient" else actor.org
        if org != self.org:
            raise AuthorizationError(
                f"this node hosts the records of {self.org}; {actor.account} writes the records "
                f"of {org} on its own node",
                code="not_hosted",
            )
        patient, pindex = self._patient_of(rtype, data)
        current = find_record(self.state, org, rtype, rid)
        if current is not None and current["patient"] != patient:
            raise _unprocessable(
                f"{rtype}", f"{rtype}/{rid} is about another patient; its patient cannot change"
            )
        category = category_code(data)
        if category is not None and not CODE_RE.match(category):
            category = None
        decision = self._decide(
            actor, patient=patient, action="write", rtype=rtype,
            record=RecordRef(org=org, type=rtype, id=rid), category=category, purpose=purpose,
        )  # fmt: skip
        if not decision.permit:
            raise self._denied(actor, decision, patient=patient, action="write", purpose=purpose)
        latest = int(current["latest"]) if current is not None else 0
        version = latest + 1
        ref = _ref(rtype, rid, version)

        def failed(reason: str) -> str:
            return self._audit(
                actor, patient=patient, action="write", resources=[ref], purpose=purpose,
                basis=decision.basis(), outcome="error", reason=reason,
            )  # fmt: skip

        if if_match is not None and if_match != latest:
            conflict = ConflictError(
                f"{rtype}/{rid} is at version {latest}, not {if_match}", code="version_conflict"
            )
            raise _tagged(conflict, failed("version_conflict"))
        canonical = canonical_fhir(data)
        blinding = os.urandom(DATA_KEY_SIZE)
        digest = keyed_digest(blinding, canonical)
        blob = self.store.put([canonical], media_type=MEDIA_TYPE)
        args: dict[str, Any] = {
            "digest": b64u_encode(digest), "id": rid, "index": pindex, "org": org,
            "patient": patient, "type": rtype, "version": version,
            "url": f"{self.base_url}/fhir/{ref}",
        }  # fmt: skip
        if category is not None:
            args["category"] = category
        profiles = (data.get("meta") or {}).get("profile")
        if isinstance(profiles, list) and profiles and URL_RE.match(str(profiles[0])):
            args["profile"] = str(profiles[0])
        if current is not None:
            args["prev"] = current["versions"][-1]["digest"]
        tx = new_tx(self.node, "records.anchor@1", actor.account, args, [signer])
        try:
            receipt = self._commit(tx)
        except BaseException:
            self.store.erase(blob)
            raise
        if receipt.get("status") != "ok":
            self.store.erase(blob)
            audit_id = failed(str(receipt.get("code")))
            raise _tagged(_error_for(receipt, f"the anchor of {ref}"), audit_id)
        anchored = find_record(self.state, org, rtype, rid)
        if anchored is None:  # pragma: no cover - just committed
            raise InfrastructureError(f"{ref} committed but not found in state")
        entry = anchored["versions"][version - 1]
        code, system_code = _search_code(data)
        self.index.add_version(
            VersionRow(
                org=org, type=rtype, id=rid, version=version, address=blob.address,
                wrapped_key=self.kek.wrap(blinding), kek_id=self.kek.kek_id,
                media_type=MEDIA_TYPE, patient=patient, last_updated=int(entry["time"]),
                anchor_tx=str(entry["tx"]),
            ),
            RecordRow(
                org=org, type=rtype, id=rid, patient=patient, latest=version,
                last_updated=int(entry["time"]), code=code, system_code=system_code,
                pindex=pindex, status="active",
            ),
        )  # fmt: skip
        stored = self._stored(
            org, rtype, rid, patient, entry, orjson.loads(canonical), b64u_encode(blinding)
        )
        audit_id = self._audit(
            actor, patient=patient, action="write", resources=[ref], purpose=purpose,
            basis=decision.basis(), outcome="permit", reason=decision.reason,
        )  # fmt: skip
        return Access(value=stored, audit_id=audit_id, basis=decision.basis())

    @staticmethod
    def _stored(
        org: str,
        rtype: str,
        rid: str,
        patient: str,
        entry: Mapping[str, Any],
        data: dict[str, Any],
        digest_key: str | None = None,
    ) -> StoredVersion:
        version, time = int(entry["version"]), int(entry["time"])
        meta = dict(data.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = ms_to_instant(time)
        data["meta"] = meta
        return StoredVersion(
            org=org, type=rtype, id=rid, version=version, resource=data, patient=patient,
            author=str(entry["author"]), anchor_tx=str(entry["tx"]), height=int(entry["height"]),
            time=time, digest=str(entry["digest"]), digest_key=digest_key,
        )  # fmt: skip

    # -- reads -------------------------------------------------------------------------------
    def _locate(self, rtype: str, rid: str) -> tuple[RecordRow, Mapping[str, Any]]:
        if rtype not in FHIR_TYPES or not FHIR_ID_RE.match(rid):
            raise NotFoundError(f"no {rtype}/{rid} on this node")
        row = self.index.find_record(rtype, rid, self.org)
        rec = find_record(self.state, self.org, rtype, rid) if row is not None else None
        if row is None or rec is None:
            raise NotFoundError(f"no {rtype}/{rid} on this node")
        return row, rec

    def _load(self, rec: Mapping[str, Any], version: int) -> StoredVersion:
        """One version, decrypted and checked against its on-chain digest."""
        org, rtype, rid = str(rec["org"]), str(rec["type"]), str(rec["id"])
        entry = rec["versions"][version - 1]
        where = _ref(rtype, rid, version)
        row = self.index.find_version(org, rtype, rid, version)
        if row is None or row.wrapped_key is None:
            raise _integrity(f"{where}: the local index has no key for this anchored version")
        if row.context is not None:  # a raw Binary attachment: its JSON form
            data, key = raw_as_json(self, row, entry)
            return self._stored(org, rtype, rid, str(rec.get("patient", "")), entry, data,
                                b64u_encode(key))  # fmt: skip
        try:
            blinding = self.kek.unwrap(row.wrapped_key)
            content = self.store.read_all(row.address, MAX_RESOURCE_BYTES)
        except (VerificationError, NotFoundError) as exc:
            raise _integrity(f"{where}: stored content is damaged or missing: {exc}") from exc
        expected = b64u_decode(str(entry["digest"]), what="digest")
        if not hmac.compare_digest(keyed_digest(blinding, content), expected):
            raise _integrity(f"{where}: the stored content does not match its on-chain digest")
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError as exc:  # pragma: no cover - the digest matched
            raise _integrity(f"{where}: stored content is not JSON") from exc
        if data.get("resourceType") != rtype or data.get("id") != rid:
            raise _integrity(f"{where}: stored content is another resource")
        return self._stored(
            org, rtype, rid, str(rec.get("patient", directory.NO_PATIENT)), entry, data,
            b64u_encode(blinding),
        )

    def _read(
        self,
        actor: Actor,
        rtype: str,
        rid: str,
        purpose: str,
        pick: Callable[[Mapping[str, Any]], list[int]],
    ) -> tuple[list[StoredVersion], str, Decision]:
        row, rec = self._locate(rtype, rid)
        versions = pick(rec)
        if directory.is_directory(rtype):  # not PHI: no decision, no audit entry
            if rec["status"] == "erased":
                raise GoneError(f"{rtype}/{rid} was erased", code="erased")
            return [self._load(rec, v) for v in versions], "", directory.READ_DECISION
        patient = str(rec["patient"])
        refs = [_ref(rtype, rid, v) for v in versions]
        decision = self._decide(
            actor, patient=patient, action="read", rtype=rtype,
            record=RecordRef(org=row.org, type=rtype, id=rid), purpose=purpose,
        )  # fmt: skip
        if not decision.permit:
            raise self._denied(
                actor, decision, patient=patient, action="read", purpose=purpose, resources=refs
            )
        try:
            out = [self._load(rec, v) for v in versions]
        except LedgerError as exc:  # after a decision: audited whatever went wrong
            audit_id = self._audit(
                actor, patient=patient, action="read", resources=refs, purpose=purpose,
                basis=decision.basis(), outcome="error",
                reason="integrity" if isinstance(exc, VerificationError) else exc.code,
            )  # fmt: skip
            _tagged(exc, audit_id)
            raise
        audit_id = self._audit(
            actor, patient=patient, action="read", resources=refs, purpose=purpose,
            basis=decision.basis(), outcome="permit", reason=decision.reason,
        )  # fmt: skip
        return out, audit_id, decision

    def create_binary(
        self,
        actor: Actor,
        *,
        content_type: str,
        security_context: str,
        chunks: Iterable[bytes],
        purpose: str = "TREAT",
    ) -> Access[StoredVersion]:
        return create_binary(self, actor, content_type=content_type,
                             security_context=security_context, chunks=chunks,
                             purpose=purpose)  # fmt: skip

    def read_binary(
        self, actor: Actor, rid: str, *, version: int | None = None, purpose: str = "TREAT"
    ) -> Access[BinaryContent]:
        return read_binary(self, actor, rid, version=version, purpose=purpose)

    def read(
        self, actor: Actor, rtype: str, rid: str, *, purpose: str = "TREAT"
    ) -> Access[StoredVersion]:
        (one,), audit_id, decision = self._read(
            actor, rtype, rid, purpose, lambda rec: [int(rec["latest"])]
        )
        return Access(value=one, audit_id=audit_id, basis=decision.basis())

    def vread(
        self, actor: Actor, rtype: str, rid: str, version: int, *, purpose: str = "TREAT"
    ) -> Access[StoredVersion]:
        def pick(rec: Mapping[str, Any]) -> list[int]:
            if not 1 <= version <= int(rec["latest"]):
                raise NotFoundError(f"{rtype}/{rid} has no version {version}")
            return [version]

        (one,), audit_id, decision = self._read(actor, rtype, rid, purpose, pick)
        return Access(value=one, audit_id=audit_id, basis=decision.basis())

    def history(
        self, actor: Actor, rtype: str, rid: str, *, purpose: str = "TREAT"
    ) -> Access[list[StoredVersion]]:
        out, audit_id, decision = self._read(
            actor, rtype, rid, purpose, lambda rec: list(range(int(rec["latest"]), 0, -1))
        )
        return Access(value=out, audit_id=audit_id, basis=decision.basis())

    def search(
        self,
        actor: Actor,
        rtype: str,
        *,
        patient: str | None = None,
        ids: Sequence[str] = (),
        last_updated: tuple[int | None, int | None] = (None, None),
        code: str | None = None,
        count: int = 20,
        offset: int = 0,
        purpose: str = "TREAT",
    ) -> Access[SearchPage]:
        if rtype not in FHIR_TYPES:
            raise NotFoundError(f"{rtype} resources are not stored here")
        if directory.is_directory(rtype):
            return directory.search(
                self, rtype, ids=list(ids), last_updated=last_updated,
                count=max(0, min(count, MAX_PAGE)), offset=max(0, offset),
            )  # fmt: skip
        if patient is None:
            if actor.kind != "patient":
                raise ValidationError(
                    "a search names its patient (patient=Patient/<id>)", code="patient_required"
                )
            account = actor.account
        else:
            account = self.resolve_patient(patient)
        count = max(0, min(count, MAX_PAGE))
        offset = max(0, offset)
        overall = self._decide(
            actor, patient=account, action="search", rtype=rtype, record=None, purpose=purpose
        )
        rows = self.index.search(
            rtype, patient=account, ids=ids, since=last_updated[0], until=last_updated[1],
            code=code,
        )  # fmt: skip
        permitted: list[tuple[RecordRow, Decision]] = []
        for row in rows:
            d = self._decide(
                actor, patient=account, action="read", rtype=rtype,
                record=RecordRef(org=row.org, type=row.type, id=row.id), purpose=purpose,
            )  # fmt: skip
            if d.permit:
                permitted.append((row, d))
        if not permitted and not overall.permit:
            raise self._denied(actor, overall, patient=account, action="search", purpose=purpose)
        decision = overall if overall.permit else permitted[0][1]
        page = permitted[offset : offset + count]
        refs = [_ref(r.type, r.id, r.latest) for r, _ in page]
        try:
            items = []
            for row, _ in page:
                rec = find_record(self.state, row.org, row.type, row.id)
                if rec is None:
                    raise _integrity(f"{row.type}/{row.id} is indexed but not anchored")
                items.append(self._load(rec, int(rec["latest"])))
        except VerificationError as exc:
            audit_id = self._audit(
                actor, patient=account, action="search", resources=refs, purpose=purpose,
                basis=decision.basis(), outcome="error", reason="integrity",
            )  # fmt: skip
            _tagged(exc, audit_id)
            raise
        audit_id = self._audit(
            actor, patient=account, action="search", resources=refs, purpose=purpose,
            basis=decision.basis(), outcome="permit", reason=decision.reason,
        )  # fmt: skip
        return Access(
            value=SearchPage(items=items, total=len(permitted), offset=offset),
            audit_id=audit_id,
            basis=decision.basis(),
        )

    # -- erasure -----------------------------------------------------------------------------
    def erase(self, actor: Actor, rtype: str, rid: str, *, reason: str, basis: str) -> Access[str]:
        signer = self._signer(actor)
        if basis not in ERASE_BASES:
            raise ValidationError(
                f"basis {basis!r} is not one of {list(ERASE_BASES)}", code="bad_basis"
            )
        row, rec = self._locate(rtype, rid)
        patient = str(rec.get("patient", directory.NO_PATIENT))
        refs = [_ref(rtype, rid, v) for v in range(1, int(rec["latest"]) + 1)]
        purpose = "PATRQT" if actor.account == patient else "HOPERAT"

        def audit(outcome: str, why: str, kind: str = "none") -> str:
            if patient == directory.NO_PATIENT:  # a directory resource: not PHI, not audited
                return ""
            return self._audit(
                actor, patient=patient, action="erase", resources=refs, purpose=purpose,
                basis={"kind": kind}, outcome=outcome, reason=why,
            )  # fmt: skip

        if rec["status"] == "erased":
            self._shred(row)  # finish an interrupted erasure
            gone = GoneError(f"{rtype}/{rid} was already erased", code="already_erased")
            raise _tagged(gone, audit("deny", "erased"))
        if actor.account == patient:
            kind = "self"
            if basis != "patient_request":
                raise ValidationError(
                    "a patient's erasure states the basis patient_request", code="bad_basis"
                )
        elif actor.org == row.org and (
            actor.kind == "admin" or "privacy_officer" in actor.capabilities
        ):
            kind = "custodian"  # the hosting organisation on a legal basis
        else:
            refused = AuthorizationError(
                f"only the patient, or an admin or privacy officer of {row.org}, may erase "
                f"{rtype}/{rid}",
                code="unauthorized",
            )
            raise _tagged(refused, audit("deny", "unauthorized"))
        tx = new_tx(
            self.node, "records.erase@1", actor.account,
            {"basis": basis, "id": rid, "org": row.org, "reason": reason, "type": rtype},
            [signer],
        )  # fmt: skip
        receipt = self._commit(tx)
        if receipt.get("status") != "ok":
            audit_id = audit("error", str(receipt.get("code")), kind)
            raise _tagged(_error_for(receipt, f"the erasure of {rtype}/{rid}"), audit_id)
        try:
            self._shred(row)
        except LedgerError as exc:
            _tagged(exc, audit("error", "shred_failed", kind))
            raise
        audit_id = audit("permit", basis, kind)
        return Access(value=tx.tx_id.hex(), audit_id=audit_id, basis={"kind": kind})

    def _shred(self, row: RecordRow) -> None:
        for v in self.index.versions(row.org, row.type, row.id):
            with contextlib.suppress(NotFoundError):
                self.store.erase(v.address)
        self.index.mark_erased(row.org, row.type, row.id)

    # -- consent -----------------------------------------------------------------------------
    def _resolve_actor(self, reference: str) -> Mapping[str, str]:
        parts = reference.split("/")
        if len(parts) < 2:
            raise NotFoundError(f"{reference} is not a Type/id reference")
        kind, ident = parts[-2], parts[-1]
        if kind == "Organization":
            org = self.state.get(f"org/{ident}")
            if not isinstance(org, Mapping):
                raise NotFoundError(f"no organisation {ident} on this chain")
            return {"org": ident}
        if kind in ("Practitioner", "Patient", "RelatedPerson"):
            acct = self.state.get(f"acct/{ident}")
            if isinstance(acct, Mapping):
                return {"account": ident}
            raise NotFoundError(f"{reference} names no ledger account")
        raise NotFoundError(f"{kind} references cannot name a grantee")

    def _scope_records(self, args: dict[str, Any], patient: str) -> None:
        scope = args.get("scope") or {}
        if "records" not in scope:
            return
        out = []
        for i, ref in enumerate(scope["records"]):
            rtype, rid = str(ref).split("/", 1)
            row = self.index.find_record(rtype, rid, self.org)
            if row is None or row.patient != patient:
                raise _unprocessable(
                    f"Consent.provision[0].data[{i}]",
                    f"{ref} is not a record of this patient on this node",
                    "not-found",
                )
            out.append({"id": rid, "org": row.org, "type": rtype})
        args["scope"] = {**scope, "records": out}

    def grant(self, actor: Actor, consent: Mapping[str, Any]) -> Access[Mapping[str, Any]]:
        signer = self._signer(actor)
        if actor.kind != "patient":
            raise AuthorizationError(
                "only the patient grants consent (consent.grant@1 is signed by the patient)",
                code="unauthorized",
            )
        consent = self._parse(consent, "Consent")
        subject = normalise_patient_reference(str((consent.get("subject") or {}).get("reference")))
        if subject is None or self._subject_account(subject) != actor.account:
            raise _unprocessable(
                "Consent.subject",
                f"the subject {subject} is not the signing patient {actor.account}",
                "forbidden",
            )
        args = consent_to_grant(
            consent, resolve_actor=self._resolve_actor, patient_reference=subject
        )
        self._scope_records(args, actor.account)
        tx = new_tx(self.node, "consent.grant@1", actor.account, args, [signer])
        receipt = self._commit(tx)
        if receipt.get("status") != "ok":
            audit_id = self._audit(
                actor, patient=actor.account, action="write", purpose="PATRQT",
                basis={"kind": "self"}, outcome="error", reason=str(receipt.get("code")),
            )  # fmt: skip
            raise _tagged(_error_for(receipt, "the consent grant"), audit_id)
        record = find_consent(self.state, tx.tx_id.hex()[:16])
        if record is None:  # pragma: no cover - just committed
            raise InfrastructureError("the committed grant is not in state")
        audit_id = self._audit(
            actor, patient=actor.account, action="write", purpose="PATRQT",
            basis={"kind": "self"}, outcome="permit", reason="consent_granted",
        )  # fmt: skip
        return Access(value=dict(record), audit_id=audit_id, basis={"kind": "self"})

    def _subject_account(self, subject: str) -> str | None:
        try:
            return self.resolve_patient(subject)
        except NotFoundError:
            return None

    def revoke(self, actor: Actor, consent_id: str) -> Access[str]:
        signer = self._signer(actor)
        record = find_consent(self.state, consent_id)
        if record is None:
            raise NotFoundError(f"no consent {consent_id}")
        patient = str(record["patient"])
        if actor.account != patient:
            audit_id = self._audit(
                actor, patient=patient, action="write", purpose="PATRQT",
                basis={"kind": "none"}, outcome="deny", reason="unauthorized",
            )  # fmt: skip
            refused = AuthorizationError(
                f"consent {consent_id} is {patient}'s to revoke", code="unauthorized"
            )
            raise _tagged(refused, audit_id)
        tx = new_tx(self.node, "consent.revoke@1", actor.account, {"id": consent_id}, [signer])
        receipt = self._commit(tx)
        outcome = "permit" if receipt.get("status") == "ok" else "error"
        audit_id = self._audit(
            actor, patient=patient, action="write", purpose="PATRQT", basis={"kind": "self"},
            outcome=outcome,
            reason="consent_revoked" if outcome == "permit" else str(receipt.get("code")),
        )  # fmt: skip
        if outcome != "permit":
            raise _tagged(_error_for(receipt, f"the revocation of {consent_id}"), audit_id)
        return Access(value=tx.tx_id.hex(), audit_id=audit_id, basis={"kind": "self"})

    def consents(self, actor: Actor, patient: str) -> list[Mapping[str, Any]]:
        account = self.resolve_patient(patient)
        ids = self.state.get(f"consents/{account}")
        grants: list[Mapping[str, Any]] = [
            dict(c)
            for c in (
                find_consent(self.state, str(i)) for i in (ids if isinstance(ids, list) else [])
            )
            if c is not None
        ]
        if actor.account == account:
            return grants

        def names(g: Mapping[str, Any]) -> bool:
            grantee = g["grantee"]
            if "account" in grantee:
                return bool(grantee["account"] == actor.account)
            return grantee.get("org") == actor.org and grantee.get("role") in (None, actor.role)

        mine = [g for g in grants if names(g)]
        if not mine:
            raise AuthorizationError(
                f"only {account} or an actor one of its consents names may list them",
                code="unauthorized",
            )
        return mine

    # -- break-glass and the access log --------------------------------------------------------
    def break_glass(self, actor: Actor, patient: str, reason: str) -> Access[Mapping[str, Any]]:
        signer = self._signer(actor)
        account = self.resolve_patient(patient)
        tx = new_tx(
            self.node, "access.break_glass@1", actor.account,
            {"patient": account, "purpose": "ETREAT", "reason": reason}, [signer],
        )  # fmt: skip
        receipt = self._commit(tx)
        if receipt.get("status") != "ok":
            audit_id = self._audit(
                actor, patient=account, action="break_glass", purpose="ETREAT",
                basis={"kind": "none"}, outcome="deny", reason=str(receipt.get("code")),
            )  # fmt: skip
            raise _tagged(_error_for(receipt, "the break-glass session"), audit_id)
        sid = tx.tx_id.hex()[:16]
        found = self.state.get(f"bg/{sid}")
        session = dict(found) if isinstance(found, Mapping) else {}
        basis = {"id": sid, "kind": "break_glass"}
        audit_id = self._audit(
            actor, patient=account, action="break_glass", purpose="ETREAT", basis=basis,
            outcome="permit", reason="break_glass",
        )  # fmt: skip
        return Access(value=session, audit_id=audit_id, basis=basis)

    def review(self, actor: Actor, session: str, note: str | None = None) -> str:
        """``access.review@1`` signed by the patient or a privacy officer; returns the tx id.

        Not an access to PHI (the session's metadata is public ledger state): not audited.
        """
        signer = self._signer(actor)
        args: dict[str, Any] = {"session": session}
        if note:
            args["note"] = note
        tx = new_tx(self.node, "access.review@1", actor.account, args, [signer])
        receipt = self._commit(tx)
        if receipt.get("status") != "ok":
            raise _error_for(receipt, f"the review of break-glass session {session}")
        return tx.tx_id.hex()

    def access_log(self, actor: Actor, patient: str) -> list[AuditView]:
        account = self.resolve_patient(patient)
        if actor.account == account:
            basis, why = {"kind": "self"}, "self"
        elif actor.org == self.org and "privacy_officer" in actor.capabilities:
            basis, why = {"kind": "custodian"}, "privacy_officer"
        else:
            audit_id = self._audit(
                actor, patient=account, action="read", purpose="PATRQT",
                basis={"kind": "none"}, outcome="deny", reason="unauthorized",
            )  # fmt: skip
            refused = AuthorizationError(
                f"only {account} or a privacy officer of {self.org} may read its access log",
                code="unauthorized",
            )
            raise _tagged(refused, audit_id)
        purpose = "PATRQT" if why == "self" else "HOPERAT"
        self._audit(
            actor, patient=account, action="read", purpose=purpose, basis=basis,
            outcome="permit", reason=why,
        )  # fmt: skip
        return self.audit_views(account)

    def audit_views(self, patient: str) -> list[AuditView]:
        """The patient's audit entries with inclusion proofs against the newest checkpoint.

        Not itself audited: callers (``access_log``) audit the read.
        """
        store = self.node.store
        entries = [orjson.loads(v) for _, v in store.iter_state(f"audit/{patient}/")]
        note = store.find_checkpoint()
        if note is None:  # pragma: no cover - every block stores one
            raise InfrastructureError("no checkpoint")
        origin = self.node.genesis.origin
        cp = open_checkpoint(note, [NoteVerifier(origin, self.node.node_key.record)], origin)
        out = []
        for entry in entries:
            loc = store.find_tx(bytes.fromhex(str(entry["tx"])))
            raw = store.find_envelope(loc.log_index) if loc is not None else None
            if loc is None or raw is None or loc.log_index >= cp.size:
                continue
            args = dict(parse_envelope(raw).body.args)
            view = {**args, "height": entry["height"], "time": entry["time"], "tx": entry["tx"]}
            if entry.get("break_glass"):
                view["break_glass"] = True
            proof = inclusion_proof(store, loc.log_index, cp.size)
            out.append(
                AuditView(
                    entry=view,
                    proof={
                        "leaf_hash": leaf_hash(raw).hex(),
                        "leaf_index": loc.log_index,
                        "proof": [p.hex() for p in proof],
                        "root": cp.root.hex(),
                        "tree_size": cp.size,
                    },
                )
            )
        return out


MAX_ATTACHMENT_KEY = "max_attachment_bytes"
"""``DIR/config.json`` key: the largest record or attachment accepted (bytes)."""


def max_attachment_bytes(paths: ChainPaths) -> int:
    """The node's attachment limit: ``config.json``'s ``max_attachment_bytes`` (default 64 MiB).

    Raises ConfigurationError for anything but a positive integer."""
    config = orjson.loads(paths.config.read_bytes()) if paths.config.exists() else {}
    value = config.get(MAX_ATTACHMENT_KEY, DEFAULT_MAX_BYTES) if isinstance(config, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < MAX_RESOURCE_BYTES:
        raise ConfigurationError(
            f"{paths.config}: {MAX_ATTACHMENT_KEY} must be an integer of at least "
            f"{MAX_RESOURCE_BYTES} bytes (the FHIR JSON limit), got {value!r}"
        )
    return value


def open_record_service(node: Node, root: Path, *, base_url: str) -> FileRecordService:
    """The record service of the chain in ``root`` (KEK and index key created if missing)."""
    kek = load_record_kek(root)
    index_key = load_index_key(root)
    paths = ChainPaths(root)
    records_dir = paths.records
    store = FileRecordStore(records_dir, kek, max_bytes=max_attachment_bytes(paths))
    try:
        index = RecordIndex(records_dir / INDEX_DB_NAME)
    except BaseException:
        store.close()
        raise
    try:
        service = FileRecordService(
            node, store, index, kek=kek, index_key=index_key, base_url=base_url
        )
    except BaseException:
        store.close()
        index.close()
        raise
    node.add_closer(service.close)
    return service


__all__ = ["ACCOUNT_SYSTEM", "FileRecordService", "open_record_service"]
