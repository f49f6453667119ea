"""Records, consent, break-glass, erasure and a verified audit trail through ``/fhir``.

:class:`RecordsClient` wraps a :class:`~carechain.client.Client` (which owns the trust store)
and one person's session: :meth:`RecordsClient.login` signs in custodially
(``POST /v1/auth/login``: the node unlocks the person's key from its keyring and signs their
transactions while the session lasts, ADR 0006). Every FHIR call returns a
:class:`FhirResult` carrying the resource and the ``X-Audit-Entry`` id of the audit entry the
node committed for the request; a refused request raises the matching
:class:`~carechain.errors.LedgerError` built from the ``OperationOutcome`` (the diagnostics in
the message, ``audit_id`` and ``status`` as attributes).

:meth:`RecordsClient.verify_audit` trusts nothing the node says about the audit trail:

1. fetch ``GET /v1/patients/{id}/access-log`` (entries with inclusion proofs for one tree
   size ``S``);
2. fetch and verify the node's newest checkpoint (signed by a genesis node key, consistent
   with the trust store's previous one: :meth:`Client.refresh`), then prove the root of the
   tree of size ``S`` against it (a consistency proof ``S → checkpoint size``);
3. for every entry: fetch the envelope from ``/v1/transactions/{tx}`` (it must hash to the
   id), recompute the leaf hash locally (RFC 9162 §2.1.1, never the server's ``leaf_hash``),
   check the leaf index and the audit path against the proven root (RFC 9162 §2.1.3.2), and
   check the entry shown is what the envelope says (kind ``audit.record@1``, same fields);
4. any failure raises :class:`~carechain.errors.VerificationError` (``strict``, the default)
   or is reported per entry in the :class:`AuditReport`.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import httpx
import orjson

from carechain.client._http import ERROR_BY_CODE, ERROR_BY_STATUS, decode_json, error_from_problem
from carechain.client.client import Client
from carechain.client.models import TxRecord
from carechain.client.trust import TrustedCheckpoint
from carechain.errors import (
    AuthenticationError,
    ConflictError,
    GoneError,
    InfrastructureError,
    LedgerError,
    ProofError,
    UnavailableError,
    ValidationError,
    VerificationError,
)
from carechain.merkle import leaf_hash, verify_inclusion

if TYPE_CHECKING:
    from carechain.client.attachments import Downloaded
    from carechain.client.crossorg import VerifiedRecord

PROBLEM_SYSTEM = "https://carechain.dev/problems"
"""Code system of carechain error codes in an OperationOutcome's ``details.coding``."""
FHIR_JSON = "application/fhir+json"
AUDIT_HEADER = "x-audit-entry"
PURPOSE_HEADER = "X-Purpose-Of-Use"
AUDIT_KIND = "audit.record@1"
MAX_AUDIT_ENTRIES = 100_000

_FHIR_STATUS: Mapping[int, type[LedgerError]] = {
    **ERROR_BY_STATUS,
    410: GoneError,
    412: ConflictError,
    500: InfrastructureError,
}
_VIEW_ONLY = frozenset({"tx", "height", "time", "break_glass"})
"""Access-log entry fields the node adds to the signed ``audit.record@1`` args."""


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FhirResult:
    """A successful FHIR interaction."""

    status: int
    """HTTP status (200, 201)."""
    resource: Mapping[str, Any]
    """The response body: a resource, a Bundle, Parameters or an OperationOutcome."""
    audit_id: str | None
    """Hex id of the audit entry the node committed for this request (``X-Audit-Entry``)."""
    etag: str | None = None
    """``ETag`` (``W/"n"``) of a record version."""
    location: str | None = None
    """``Location`` of a created/updated version."""
    transaction: str | None = None
    """The ledger transaction an erasure or revocation committed (hex), if any."""

    @property
    def id(self) -> str | None:
        """The resource's ``id``."""
        value = self.resource.get("id")
        return value if isinstance(value, str) else None

    @property
    def version(self) -> int | None:
        """The version from the ETag (or ``meta.versionId``)."""
        text = (self.etag or "").removeprefix("W/").strip('"')
        if not text:
            meta = self.resource.get("meta")
            text = str(meta.get("versionId", "")) if isinstance(meta, Mapping) else ""
        return int(text) if text.isdigit() else None


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryCheck:
    """One access-log entry and what verifying it established."""

    entry: Mapping[str, Any]
    """The entry as the node showed it (``audit.record@1`` args + ``tx``, ``height``, ``time``)."""
    tx_id: str
    """Audit entry id (hex transaction id)."""
    leaf_index: int
    """Leaf index in the ledger log (the node's claim, checked against the transaction)."""
    leaf_hash: bytes | None
    """``SHA-256(0x00 || envelope)`` computed locally (None if the envelope was not fetched)."""
    ok: bool
    """True iff the envelope, the leaf and the inclusion proof all verified."""
    error: str | None = None
    """Why it did not verify."""

    def field(self, name: str) -> str:
        """A display string of an entry field (``""`` when absent)."""
        value = self.entry.get(name)
        if value is None:
            return ""
        if isinstance(value, Mapping):
            return ",".join(f"{k}:{v}" for k, v in sorted(value.items()))
        if isinstance(value, list | tuple):
            return ",".join(str(v) for v in value)
        return str(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditReport:
    """The outcome of :meth:`RecordsClient.verify_audit`."""

    patient: str
    """The patient as asked for."""
    tree_size: int
    """Size ``S`` of the tree the access log's proofs are for."""
    root: bytes
    """Root of that tree, proven against ``checkpoint``."""
    checkpoint: TrustedCheckpoint
    """The trusted, signed checkpoint the root was proven against."""
    entries: tuple[EntryCheck, ...] = field(default_factory=tuple)
    """Every entry, in the node's order."""

    @property
    def total(self) -> int:
        """Number of entries."""
        return len(self.entries)

    @property
    def verified(self) -> int:
        """Number of entries whose proof verified."""
        return sum(1 for e in self.entries if e.ok)

    @property
    def ok(self) -> bool:
        """True iff every entry verified."""
        return self.verified == self.total

    @property
    def failures(self) -> tuple[EntryCheck, ...]:
        """Entries that did not verify."""
        return tuple(e for e in self.entries if not e.ok)


# -- OperationOutcome → LedgerError --------------------------------------------------------


def error_from_outcome(status: int, body: bytes, headers: Mapping[str, str]) -> LedgerError:
    """The :class:`LedgerError` a ``/fhir`` error response (an OperationOutcome) stands for.

    The class is chosen by the carechain code in ``details.coding`` when it names a class of
    the status's family, else by the HTTP status; the message is the issue text with its
    diagnostics. The error carries ``status``, ``audit_id`` (``X-Audit-Entry``, for a denial:
    the *deny* entry), ``diagnostics`` and ``outcome``.
    """
    try:
        doc = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict) or doc.get("resourceType") != "OperationOutcome":
        if isinstance(doc, dict):  # a problem+json answer (e.g. from a proxy or /v1)
            return _tag(error_from_problem(status, body, headers), status, headers, doc, [])
        return _tag(error_from_problem(status, body, headers), status, headers, None, [])
    issues = [i for i in doc.get("issue") or () if isinstance(i, Mapping)]
    code: str | None = None
    texts: list[str] = []
    diagnostics: list[str] = []
    for issue in issues:
        details = issue.get("details")
        if isinstance(details, Mapping):
            for coding in details.get("coding") or ():
                if (
                    code is None
                    and isinstance(coding, Mapping)
                    and coding.get("system") == PROBLEM_SYSTEM
                    and isinstance(coding.get("code"), str)
                ):
                    code = coding["code"]
            if isinstance(details.get("text"), str):
                texts.append(details["text"])
        if isinstance(issue.get("diagnostics"), str):
            diagnostics.append(issue["diagnostics"])
    family = _FHIR_STATUS.get(status) or (InfrastructureError if status >= 500 else LedgerError)
    by_code = ERROR_BY_CODE.get(code or "")
    cls = by_code if by_code is not None and issubclass(by_code, family) else family
    parts = [t for t in dict.fromkeys(texts)]
    extra = [d for d in dict.fromkeys(diagnostics) if not any(d in t for t in parts)]
    if len(issues) > 1 or not parts:  # 422: one issue per problem, located by diagnostics
        message = "; ".join(extra or parts) or f"HTTP {status}"
    else:
        message = parts[0] + (f" [{'; '.join(extra)}]" if extra else "")
    if issubclass(cls, UnavailableError):
        retry = headers.get("retry-after", "")
        err: LedgerError = cls(message, retry_after=int(retry) if retry.isdigit() else 1, code=code)
    else:
        err = cls(message, code=code)
    return _tag(err, status, headers, doc, diagnostics)


def _tag(
    err: LedgerError,
    status: int,
    headers: Mapping[str, str],
    doc: Any,
    diagnostics: Sequence[str],
) -> LedgerError:
    err.status = status  # type: ignore[attr-defined]
    err.audit_id = headers.get(AUDIT_HEADER)  # type: ignore[attr-defined]
    err.diagnostics = list(diagnostics)  # type: ignore[attr-defined]
    err.outcome = doc  # type: ignore[attr-defined]
    return err


# -- the client -----------------------------------------------------------------------------


def _quote(part: str) -> str:
    return urllib.parse.quote(part, safe="")


class RecordsClient:
    """One person's FHIR session at a node, with an offline-verified audit trail.

    ``client``: the SDK client (HTTP connection and trust store; it is not modified, so one
    ``Client`` can serve several people's sessions). ``token``: an existing bearer token.
    """

    def __init__(self, client: Client, token: str | None = None) -> None:
        self.client = client
        self.token = token
        self.account: str | None = None
        """The signed-in account (after :meth:`login`)."""

    # -- session -------------------------------------------------------------------------
    def login(self, key_name: str, password: str | bytes) -> RecordsClient:
        """Custodial sign-in with a key of the node's keyring; returns ``self``.

        Raises :class:`AuthenticationError` (``invalid_credentials``) for an unknown key
        name or a wrong password.
        """
        text = password.decode("utf-8") if isinstance(password, bytes) else password
        _, body, _ = self.client.api.request(
            "POST",
            "/v1/auth/login",
            content=orjson.dumps({"key": key_name, "password": text}),
            headers={"content-type": "application/json"},
        )
        obj = decode_json(body, "POST /v1/auth/login")
        token = obj.get("access_token") if isinstance(obj, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthenticationError("the sign-in endpoint answered without an access_token")
        self.token = token
        account = obj.get("account")
        self.account = account if isinstance(account, str) else None
        return self

    def logout(self) -> None:
        """End the session (the node drops the key it held)."""
        if self.token is not None:
            self.client.api.request("POST", "/v1/auth/logout", headers=self._auth())
            self.token = None

    def whoami(self) -> Any:
        """``GET /v1/auth/whoami``."""
        _, body, _ = self.client.api.request("GET", "/v1/auth/whoami", headers=self._auth())
        return decode_json(body, "GET /v1/auth/whoami")

    def _auth(self) -> dict[str, str]:
        if self.token is None:
            raise AuthenticationError("not signed in: call login(key_name, password) first")
        return {"authorization": f"Bearer {self.token}"}

    # -- HTTP ------------------------------------------------------------------------------
    def _fhir(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Sequence[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        purpose: str | None = None,
    ) -> tuple[int, Any, httpx.Headers]:
        """A ``/fhir`` request; (status, decoded JSON or None, headers) or the error raised."""
        api = self.client.api
        url = api.url(f"/fhir{path}")
        all_headers = {**api.headers, **self._auth(), "accept": FHIR_JSON, **(headers or {})}
        content = None
        if body is not None:
            content = orjson.dumps(body)
            all_headers["content-type"] = FHIR_JSON
        if purpose is not None:
            all_headers[PURPOSE_HEADER] = purpose
        try:
            with api.http.stream(
                method, url, params=list(params or ()), content=content, headers=all_headers
            ) as response:
                raw = api._read(response, url)
        except httpx.TimeoutException as exc:
            raise UnavailableError(
                f"{method} {url}: no answer in time ({type(exc).__name__})", code="timeout"
            ) from None
        except httpx.TransportError as exc:
            raise UnavailableError(
                f"cannot reach the carechain node at {api.base_url}: {exc or type(exc).__name__}"
                " (is `carechain node` running? set --url or $CARECHAIN_URL)",
                code="unreachable",
            ) from None
        if not 200 <= response.status_code < 300:
            raise error_from_outcome(response.status_code, raw, response.headers)
        doc = decode_json(raw, f"{method} /fhir{path}") if raw else None
        return response.status_code, doc, response.headers

    def _result(
        self, method: str, path: str, *, transaction_header: str | None = None, **kw: Any
    ) -> FhirResult:
        status, doc, headers = self._fhir(method, path, **kw)
        if not isinstance(doc, dict):
            raise InfrastructureError(
                f"{method} /fhir{path}: want a JSON resource in the answer", code="bad_response"
            )
        return FhirResult(
            status=status,
            resource=doc,
            audit_id=headers.get(AUDIT_HEADER),
            etag=headers.get("etag"),
            location=headers.get("location"),
            transaction=headers.get(transaction_header) if transaction_header else None,
        )

    # -- records ---------------------------------------------------------------------------
    def create(self, resource: Mapping[str, Any], *, purpose: str | None = None) -> FhirResult:
        """Create version 1 of ``resource`` (its ``resourceType`` picks the endpoint)."""
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str) or not rtype:
            raise ValidationError("create: the resource has no resourceType")
        return self._result("POST", f"/{_quote(rtype)}", body=resource, purpose=purpose)

    def read(self, rtype: str, rid: str, *, purpose: str | None = None) -> FhirResult:
        """The latest version (``GoneError`` once erased)."""
        return self._result("GET", f"/{_quote(rtype)}/{_quote(rid)}", purpose=purpose)

    def vread(
        self, rtype: str, rid: str, version: int, *, purpose: str | None = None
    ) -> FhirResult:
        """Version ``version``."""
        path = f"/{_quote(rtype)}/{_quote(rid)}/_history/{int(version)}"
        return self._result("GET", path, purpose=purpose)

    def update(
        self,
        rtype: str,
        rid: str,
        resource: Mapping[str, Any],
        if_match: int | None = None,
        *,
        purpose: str | None = None,
    ) -> FhirResult:
        """Store the next version; with ``if_match`` only if ``if_match`` is the latest
        (``ConflictError``, HTTP 412, otherwise)."""
        headers = {"if-match": f'W/"{int(if_match)}"'} if if_match is not None else None
        return self._result(
            "PUT",
            f"/{_quote(rtype)}/{_quote(rid)}",
            body={**resource, "id": rid},
            headers=headers,
            purpose=purpose,
        )

    def read_verified(
        self,
        rtype: str,
        rid: str,
        *,
        ledger: Client,
        version: int | None = None,
        purpose: str | None = None,
    ) -> VerifiedRecord:
        """Read a record (possibly hosted by another organisation's node) and check its content
        against the anchor on ``ledger`` — a client of *your own* node with your trust store
        (:mod:`carechain.client.crossorg`). Raises VerificationError on any mismatch."""
        from carechain.client.crossorg import read_verified

        return read_verified(self, ledger, rtype, rid, version=version, purpose=purpose)

    def attach(
        self,
        source: Path | Iterable[bytes],
        *,
        content_type: str,
        patient: str,
        purpose: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> FhirResult:
        """Upload an attachment as a ``Binary``, streamed (:mod:`carechain.client.attachments`)."""
        from carechain.client.attachments import upload

        return upload(self, source, content_type=content_type, patient=patient,
                      purpose=purpose, progress=progress)  # fmt: skip

    def fetch_attachment(
        self,
        rid: str,
        sink: BinaryIO,
        *,
        version: int | None = None,
        purpose: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Downloaded:
        """Write a ``Binary``'s raw content to ``sink``, streamed; what was written."""
        from carechain.client.attachments import download

        return download(self, rid, sink, version=version, purpose=purpose, progress=progress)

    def history(self, rtype: str, rid: str, *, purpose: str | None = None) -> FhirResult:
        """A history Bundle of every version, newest first."""
        return self._result("GET", f"/{_quote(rtype)}/{_quote(rid)}/_history", purpose=purpose)

    def search(self, rtype: str, *, purpose: str | None = None, **params: str | int) -> FhirResult:
        """A searchset Bundle (``patient``, ``subject``, ``_id``, ``code``, ``_count`` …)."""
        query = [(k, str(v)) for k, v in params.items()]
        return self._result("GET", f"/{_quote(rtype)}", params=query, purpose=purpose)

    @staticmethod
    def resources(bundle: FhirResult | Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """The resources of a Bundle's entries."""
        doc = bundle.resource if isinstance(bundle, FhirResult) else bundle
        out = []
        for entry in doc.get("entry") or ():
            if isinstance(entry, Mapping) and isinstance(entry.get("resource"), Mapping):
                out.append(entry["resource"])
        return out

    def erase(self, rtype: str, rid: str, reason: str = "", basis: str | None = None) -> FhirResult:
        """Erase a record (crypto-shredding); ``transaction`` is the erasure receipt's tx.

        ``basis``: ``patient_request`` for the patient (the default then), else
        ``court_order``, ``data_error``, ``legal_obligation`` or ``retention_expired``.
        """
        params = [("reason", reason)] + ([("basis", basis)] if basis else [])
        return self._result(
            "DELETE",
            f"/{_quote(rtype)}/{_quote(rid)}",
            params=params,
            transaction_header="x-erasure-transaction",
        )

    # -- consent and break-glass -------------------------------------------------------------
    def grant_consent(self, consent: Mapping[str, Any]) -> FhirResult:
        """The signed-in patient grants an R5 ``Consent``; the result is the stored grant."""
        return self._result("POST", "/Consent", body=consent)

    def revoke_consent(self, consent_id: str) -> FhirResult:
        """Revoke a grant (effective from its block); ``transaction`` is the revocation."""
        return self._result(
            "POST",
            f"/Consent/{_quote(consent_id)}/$revoke",
            transaction_header="x-revocation-transaction",
        )

    def consents(self, patient: str) -> list[Mapping[str, Any]]:
        """The patient's consents as R5 ``Consent`` resources."""
        res = self._result("GET", "/Consent", params=[("patient", patient)])
        return self.resources(res)

    def break_glass(self, patient: str, reason: str) -> FhirResult:
        """Open an ETREAT break-glass session (needs the ``emergency`` capability)."""
        body = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "patient", "valueString": patient},
                {"name": "reason", "valueString": reason},
            ],
        }
        return self._result("POST", "/$break-glass", body=body)

    @staticmethod
    def parameters(result: FhirResult | Mapping[str, Any]) -> dict[str, Any]:
        """A ``Parameters`` resource as ``{name: value}``."""
        doc = result.resource if isinstance(result, FhirResult) else result
        out: dict[str, Any] = {}
        for p in doc.get("parameter") or ():
            if isinstance(p, Mapping) and isinstance(p.get("name"), str):
                values = [v for k, v in p.items() if k.startswith("value")]
                out[p["name"]] = values[0] if values else None
        return out

    # -- audit -------------------------------------------------------------------------------
    def access_log(self, patient: str) -> list[dict[str, Any]]:
        """``GET /v1/patients/{id}/access-log``: ``[{"entry", "proof"}]`` as reported."""
        path = f"/v1/patients/{_quote(patient)}/access-log"
        _, body, _ = self.client.api.request("GET", path, headers=self._auth())
        obj = decode_json(body, f"GET {path}")
        entries = obj.get("entries") if isinstance(obj, dict) else None
        if not isinstance(entries, list) or len(entries) > MAX_AUDIT_ENTRIES:
            raise InfrastructureError(f"GET {path}: want a list of entries", code="bad_response")
        return [e for e in entries if isinstance(e, dict)]

    def audit_events(self, patient: str, count: int = 100) -> list[Mapping[str, Any]]:
        """The patient's audit trail as FHIR ``AuditEvent`` resources (first page)."""
        res = self._result(
            "GET", "/AuditEvent", params=[("patient", patient), ("_count", str(count))]
        )
        return self.resources(res)

    def verify_audit(self, patient: str, *, strict: bool = True) -> AuditReport:
        """Fetch the patient's access log and verify every entry offline (module docstring).

        ``strict``: raise :class:`VerificationError` naming every entry that fails (else the
        report lists them). A bad checkpoint or root always raises.
        """
        items = self.access_log(patient)
        sizes = {_int(i.get("proof"), "tree_size") for i in items}
        if len(sizes) > 1:
            raise ProofError(f"the access log mixes proofs for tree sizes {sorted(sizes)}")
        tc = self.client.refresh()  # step 2: signed by a genesis node key, consistent
        size = sizes.pop() if sizes else tc.size
        if size > tc.size:
            tc = self.client.refresh()
            if size > tc.size:
                raise ProofError(
                    f"the access log's proofs are for tree size {size}, beyond the newest "
                    f"signed checkpoint's size {tc.size}"
                )
        if size == tc.size:
            root = tc.root
        else:  # the root of size S, proven a prefix of the trusted tree
            cons = self.client.prove_consistency(0, size)
            root, tc = cons.root2, cons.checkpoint
        checks = tuple(self._check_entry(item, size, root) for item in items)
        report = AuditReport(patient=patient, tree_size=size, root=root, checkpoint=tc,
                             entries=checks)  # fmt: skip
        if strict and not report.ok:
            bad = "; ".join(f"{c.tx_id or '?'}: {c.error}" for c in report.failures[:5])
            raise ProofError(
                f"{report.total - report.verified} of {report.total} audit entries of "
                f"{patient} do not verify against checkpoint size {tc.size}: {bad}"
            )
        return report

    def _check_entry(self, item: Mapping[str, Any], size: int, root: bytes) -> EntryCheck:
        entry = item.get("entry") if isinstance(item.get("entry"), Mapping) else {}
        assert isinstance(entry, Mapping)
        proof = item.get("proof") if isinstance(item.get("proof"), Mapping) else {}
        assert isinstance(proof, Mapping)
        tx_id = str(entry.get("tx", ""))
        index = proof.get("leaf_index")
        leaf: bytes | None = None
        try:
            if isinstance(index, bool) or not isinstance(index, int):
                raise ProofError("the proof has no integer leaf_index")
            rec = self.client.get_tx(tx_id)  # the envelope must hash to the id
            leaf = leaf_hash(rec.envelope)  # computed here, never the server's leaf_hash
            if rec.log_index != index:
                raise ProofError(
                    f"the proof is for leaf {index}, the transaction is leaf {rec.log_index}"
                )
            _check_matches(entry, rec)
            path = proof.get("proof")
            if not isinstance(path, list) or len(path) > 128:
                raise ProofError("the proof has no audit path (want a list of hashes)")
            hashes = [bytes.fromhex(h) if isinstance(h, str) else b"" for h in path]
            verify_inclusion(leaf, index, size, hashes, root)
        except (VerificationError, ValueError) as exc:
            return EntryCheck(entry=entry, tx_id=tx_id, leaf_index=_as_int(index),
                              leaf_hash=leaf, ok=False, error=str(exc))  # fmt: skip
        except LedgerError as exc:
            if isinstance(exc, UnavailableError):
                raise
            return EntryCheck(entry=entry, tx_id=tx_id, leaf_index=_as_int(index),
                              leaf_hash=leaf, ok=False,
                              error=f"{type(exc).__name__}: {exc}")  # fmt: skip
        return EntryCheck(entry=entry, tx_id=tx_id, leaf_index=index, leaf_hash=leaf, ok=True)


def _check_matches(entry: Mapping[str, Any], rec: TxRecord) -> None:
    """The entry shown must be exactly the signed ``audit.record@1`` args (plus view fields)."""
    body = rec.tx.body
    if body.kind != AUDIT_KIND:
        raise VerificationError(f"transaction {rec.tx_id.hex()} is a {body.kind}, not an audit")
    if rec.receipt.get("status") != "ok":
        raise VerificationError(f"audit transaction {rec.tx_id.hex()} was not committed ok")
    shown = {k: v for k, v in entry.items() if k not in _VIEW_ONLY}
    signed = dict(body.args)
    if orjson.dumps(shown, option=orjson.OPT_SORT_KEYS) != orjson.dumps(
        signed, option=orjson.OPT_SORT_KEYS
    ):
        diff = sorted(k for k in set(shown) | set(signed) if shown.get(k) != signed.get(k))
        raise VerificationError(f"the entry shown differs from the signed one in {diff}")
    if entry.get("height") != rec.height:
        raise VerificationError(
            f"the entry claims block {entry.get('height')}, the transaction is in {rec.height}"
        )


def _int(obj: Any, name: str) -> int:
    value = obj.get(name) if isinstance(obj, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProofError(f"access log: a proof has no valid {name}")
    return value


def _as_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


__all__ = [
    "AuditReport",
    "EntryCheck",
    "FhirResult",
    "RecordsClient",
    "error_from_outcome",
]
