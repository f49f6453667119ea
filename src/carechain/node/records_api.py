"""The record service's interface: what the FHIR facade (api/fhir) calls.

Every method that touches PHI decides access with ``contracts.consent.decide`` at the node's
current height, records exactly ONE audit entry (``audit.record@1``, signed by the hosting
node's service account ``<org>.node``) whether permitted or denied, waits until that entry is
committed, and only then returns data (or raises). The result carries the audit entry's id.

Who signs what:

* audit entries: the node (service account ``<org>.node``, node key);
* anchors (``records.anchor@1``), erasures, consent grants/revocations and break-glass: the
  person, through ``Actor.signer`` — a custodial key the node decrypted at sign-in (the demo
  accounts' keys live in the node's keyring). Without a signer these raise
  ``AuthorizationError(code="signature_required")`` telling the caller to sign in with their
  custodial account or to submit a signed transaction to ``POST /v1/transactions``.

Failure modes (all raise ``LedgerError`` subclasses; each is audited when it is an access):
``AuthorizationError`` (403: no consent, revoked, expired, wrong purpose, deny provision —
``code`` is the decision's reason), ``NotFoundError`` (404), ``GoneError`` (410: erased),
``FhirValidationError`` (422), ``LimitExceededError`` (413), ``VerificationError`` (the stored
content does not match its on-chain digest or the ciphertext was tampered with: loud, audited
with outcome ``error``), ``ConflictError`` (409: version mismatch on update).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from carechain.crypto.signatures import PrivateKey

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """An authenticated person or system acting through this node."""

    account: str
    """Ledger account id."""
    kind: str
    """``patient``, ``member`` or ``admin`` (from ``acct/<id>``)."""
    org: str | None = None
    """Organisation of a member/admin."""
    role: str | None = None
    """Member role (practitioner, nurse, …)."""
    capabilities: tuple[str, ...] = ()
    """``emergency``, ``privacy_officer`` …"""
    signer: PrivateKey | None = field(default=None, repr=False)
    """Custodial signing key held for this session, if the person signed in custodially."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredVersion:
    """One stored version of a FHIR resource."""

    org: str
    """Hosting organisation."""
    type: str
    """FHIR resource type."""
    id: str
    """FHIR id."""
    version: int
    """Version number (1, 2, …), also ``meta.versionId``."""
    resource: Mapping[str, Any]
    """The resource JSON with ``id``, ``meta.versionId`` and ``meta.lastUpdated`` set."""
    patient: str
    """The patient's account (pseudonym)."""
    author: str
    """Account that anchored this version."""
    anchor_tx: str
    """Hex id of the anchoring transaction."""
    height: int
    """Block height of the anchor."""
    time: int
    """Block time of the anchor (ms): ``meta.lastUpdated``."""
    digest: str
    """Hex keyed digest on chain."""
    digest_key: str | None = None
    """Base64url blinding key of this version (``X-Record-Digest-Key``): given only with the
    content to a reader the hosting node authorised, so that reader can recompute ``digest``
    from what it received and check it against its own copy of the ledger."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BinaryContent:
    """A Binary attachment's verified content, as a stream."""

    version: StoredVersion
    """The version (its ``resource`` without ``data``)."""
    content_type: str
    """The attachment's media type."""
    size: int
    """Size in bytes."""
    chunks: Iterator[bytes]
    """The plaintext in chunks (each authenticated as it is decrypted); close it when done."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Access(Generic[T]):
    """A permitted access: its value and the id of its committed audit entry."""

    value: T
    """What was read or written."""
    audit_id: str
    """Hex tx id of the audit entry (``X-Audit-Entry`` header)."""
    basis: Mapping[str, Any]
    """Decision basis, e.g. ``{"kind": "consent", "id": …}``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchPage:
    """One page of a search, newest first."""

    items: Sequence[StoredVersion]
    """Latest versions matching, in this page."""
    total: int
    """Matches in all pages (that the actor may see)."""
    offset: int
    """Offset of this page."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditView:
    """One audit entry as the access log and ``GET /fhir/AuditEvent`` show it."""

    entry: Mapping[str, Any]
    """The audit.record@1 args plus ``tx``, ``height``, ``time``."""
    proof: Mapping[str, Any]
    """Inclusion proof: ``leaf_index``, ``tree_size``, ``proof`` (hex list), ``root``."""


class RecordService(Protocol):
    """Records, consent, break-glass, audit and erasure for the FHIR facade."""

    def actor(self, account: str, signer: PrivateKey | None = None) -> Actor:
        """Build an Actor from the account's state (NotFoundError if unknown)."""
        ...

    def create(
        self, actor: Actor, resource: Mapping[str, Any], *, purpose: str = "TREAT"
    ) -> Access[StoredVersion]:
        """Validate, store encrypted, anchor version 1 (hosting org = actor's org, or for a
        patient the node's own org)."""
        ...

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
        """Store and anchor the next version (ConflictError if ``if_match`` is stale)."""
        ...

    def create_binary(
        self,
        actor: Actor,
        *,
        content_type: str,
        security_context: str,
        chunks: Iterable[bytes],
        purpose: str = "TREAT",
    ) -> Access[StoredVersion]:
        """Stream a raw attachment (``Binary``) into the store and anchor it (version 1);
        ``security_context`` is ``Patient/<id>`` of a Patient stored here."""
        ...

    def read_binary(
        self, actor: Actor, rid: str, *, version: int | None = None, purpose: str = "TREAT"
    ) -> Access[BinaryContent]:
        """A Binary's content as a verified stream (checked against its digest first)."""
        ...

    def read(
        self, actor: Actor, rtype: str, rid: str, *, purpose: str = "TREAT"
    ) -> Access[StoredVersion]:
        """Latest version, checked against its digest."""
        ...

    def patient_record_id(self, patient: str) -> str | None:
        """The id of the newest active ``Patient`` record of account ``patient`` on this node
        (None without one). Internal lookup for linking new records: no PHI is returned."""
        ...

    def vread(
        self, actor: Actor, rtype: str, rid: str, version: int, *, purpose: str = "TREAT"
    ) -> Access[StoredVersion]:
        """A specific version."""
        ...

    def history(
        self, actor: Actor, rtype: str, rid: str, *, purpose: str = "TREAT"
    ) -> Access[list[StoredVersion]]:
        """Every version, newest first."""
        ...

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
        """Latest versions the actor may read; one audit entry for the search."""
        ...

    def erase(self, actor: Actor, rtype: str, rid: str, *, reason: str, basis: str) -> Access[str]:
        """Crypto-shred every version and anchor the erasure; returns the erasure tx id."""
        ...

    def grant(self, actor: Actor, consent: Mapping[str, Any]) -> Access[Mapping[str, Any]]:
        """Turn an R5 Consent into ``consent.grant@1`` signed by the patient; returns the
        stored grant record (with ``id``)."""
        ...

    def revoke(self, actor: Actor, consent_id: str) -> Access[str]:
        """``consent.revoke@1`` signed by the patient."""
        ...

    def consents(self, actor: Actor, patient: str) -> list[Mapping[str, Any]]:
        """The patient's grants (the patient, or an actor a consent names)."""
        ...

    def break_glass(self, actor: Actor, patient: str, reason: str) -> Access[Mapping[str, Any]]:
        """Open an ETREAT break-glass session."""
        ...

    def review(self, actor: Actor, session: str, note: str | None = None) -> str:
        """Mark a break-glass session reviewed (``access.review@1``, by the patient or a privacy
        officer of the organisation); returns the transaction id."""
        ...

    def access_log(self, actor: Actor, patient: str) -> list[AuditView]:
        """Who looked at the patient's records, with inclusion proofs (patient or privacy
        officer only; itself audited)."""
        ...
