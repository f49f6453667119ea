"""The prescription service of a node: custodial submission, verify, PDMP, EPCS report.

* :meth:`RxService.submit` signs a ``prescriptions.*`` / ``credentials.*`` transaction with a
  signed-in person's custodial key, waits for its block and returns the receipt: a refused
  attempt is a committed ``rejected`` receipt (evidence), reported to the caller as such.
* :meth:`RxService.verify` answers ``verify_status`` to the patient, the prescriber, a
  pharmacist or nurse/practitioner with a valid registration, or an auditor/regulator; every
  answer (and every refusal) to someone other than the patient is audited.
* :meth:`RxService.pdmp` decides like a PHI read: the patient (``self``); a member with a PDMP
  role and a consent permitting ``read`` of ``MedicationRequest`` for the stated purpose
  (``consent.decide``, action ``search``); or a role listed in the rules' ``legal_basis_roles``
  holding a valid prescriber/pharmacist registration (basis ``law``). Permit or deny, the query
  is recorded by ``audit.record@1`` signed by ``<org>.node`` and committed before answering.
* :func:`epcs_report` lists a day's auditable events: every prescription and credential
  transaction (refused ones included) and every audit entry of a denial, a break-glass access
  or a PDMP query.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from carechain.contracts.consent import AccessRequest, decide
from carechain.contracts.credentials import credential_at
from carechain.contracts.identity import node_account_id
from carechain.contracts.pdmp import pdmp_report
from carechain.contracts.prescriptions import (
    DAY_MS,
    PDMP_ROLES,
    find_prescription,
    rules_of,
    verify_status,
)
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import PrivateKey
from carechain.encoding import JsonObject, JsonValue
from carechain.errors import (
    AuthorizationError,
    InfrastructureError,
    LedgerError,
    NotFoundError,
    ValidationError,
)
from carechain.ledger.tx import NONCE_SIZE, SignedTx, make_tx, parse_envelope
from carechain.node.commit import commit_one
from carechain.node.node import Node

COMMIT_TIMEOUT = 30.0
RX_KINDS = (
    "prescriptions.issue@1",
    "prescriptions.dispense@1",
    "prescriptions.cancel@1",
    "prescriptions.transfer@1",
    "credentials.register_prescriber@1",
    "credentials.register_pharmacy@1",
    "credentials.register_pharmacist@1",
    "credentials.revoke@1",
)
"""Kinds the custodial routes submit (anything else goes through ``/v1/transactions``)."""
VERIFY_ROLES = ("auditor", "nurse", "pharmacist", "practitioner", "regulator")
PDMP_PURPOSES = ("ETREAT", "TREAT")


class _State:
    """Decoded committed state (the node's cache)."""

    def __init__(self, node: Node) -> None:
        self._node = node

    def get(self, key: str) -> JsonValue | None:
        raw = self._node.state.find_state(key)
        value: JsonValue | None = orjson.loads(raw) if raw is not None else None
        return value


class RxService:
    """Prescriptions, verify and PDMP over a running node (module docstring)."""

    def __init__(self, node: Node, *, commit_timeout: float = COMMIT_TIMEOUT) -> None:
        self.node = node
        self.state = _State(node)
        self.commit_timeout = commit_timeout
        rec = self.state.get(f"node/{node.node_key.kid}")
        org = rec.get("org") if isinstance(rec, Mapping) else None
        if not isinstance(org, str):
            raise InfrastructureError("the node key is not registered as a node of any org")
        self.org = org

    # -- plumbing ------------------------------------------------------------------------------
    def now(self) -> int:
        """The time answers are computed at: the node clock, never before the head block."""
        return max(self.node.head.header.time, self.node.clock())

    def account(self, account: str) -> Mapping[str, Any]:
        """The active account record (NotFoundError otherwise)."""
        acct = self.state.get(f"acct/{account}")
        if not isinstance(acct, Mapping) or acct.get("status") != "active":
            raise NotFoundError(f"no active account {account}", code="unknown_account")
        return acct

    def build(self, kind: str, sender: str, args: JsonObject, key: PrivateKey) -> SignedTx:
        """A fresh transaction signed by ``key`` (node clock, random nonce)."""
        return make_tx(
            chain=self.node.genesis.chain,
            kind=kind,
            sender=sender,
            args=args,
            keys=[key],
            created=self.node.clock(),
            nonce=os.urandom(NONCE_SIZE),
        )

    def commit(self, tx: SignedTx) -> dict[str, Any]:
        """Submit ``tx`` and wait for its block: the decoded receipt plus ``height``/``tx``."""
        return commit_one(self.node, tx, self.commit_timeout)

    def submit(
        self, account: str, signer: PrivateKey | None, kind: str, args: JsonObject
    ) -> dict[str, Any]:
        """Sign ``kind(args)`` as ``account`` with its custodial key and commit it.

        Returns ``{"tx", "height", "status", "code", "msg"?, "id"?}``; ``id`` is the new
        prescription's id after an accepted ``issue``. A contract rejection is not raised: it
        is a committed rejected receipt, returned with ``status: rejected``.
        """
        if kind not in RX_KINDS:
            raise ValidationError(f"kind {kind!r} is not a prescription or credential kind")
        if signer is None:
            raise AuthorizationError(
                "this action is signed by you: sign in with your custodial account, or sign "
                "the transaction yourself and submit it to POST /v1/transactions",
                code="signature_required",
            )
        self.account(account)
        tx = self.build(kind, account, args, signer)
        receipt = self.commit(tx)
        out: dict[str, Any] = {
            "code": receipt.get("code"),
            "height": receipt["height"],
            "kind": kind,
            "status": receipt.get("status"),
            "tx": receipt["tx"],
        }
        if receipt.get("msg"):
            out["msg"] = receipt["msg"]
        if kind == "prescriptions.issue@1" and receipt.get("status") == "ok":
            out["id"] = tx.tx_id.hex()[:16]
        return out

    def _audit(
        self,
        actor: str,
        *,
        role: str,
        patient: str,
        action: str,
        resources: Sequence[str],
        purpose: str,
        basis: JsonObject,
        outcome: str,
        reason: str,
    ) -> str:
        args: JsonObject = {
            "action": action,
            "actor": actor,
            "basis": basis,
            "org": self.org,
            "outcome": outcome,
            "patient": patient,
            "purpose": purpose,
            "reason": reason,
            "request": f"rx-{uuid.uuid4().hex[:20]}",
            "resources": list(resources)[:100],
            "role": role,
        }
        tx = self.build("audit.record@1", node_account_id(self.org), args, self.node.node_key)
        try:
            receipt = self.commit(tx)
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
        return str(receipt["tx"])

    @staticmethod
    def _role(acct: Mapping[str, Any]) -> str:
        if acct.get("type") == "patient":
            return "patient"
        return str(acct.get("role") or "service")

    def _registered(self, account: str, at: int) -> bool:
        for kind in ("prescriber", "pharmacist"):
            v = credential_at(self.state, kind, account, at)
            if v is not None and v["status"] == "active" and at < int(v["expires"]):
                return True
        return False

    def _refuse(self, message: str, code: str, audit_id: str) -> AuthorizationError:
        exc = AuthorizationError(f"{message} (audit entry {audit_id})", code=code)
        exc.audit_id = audit_id  # type: ignore[attr-defined]
        return exc

    # -- verify --------------------------------------------------------------------------------
    def verify(self, account: str, rx_id: str) -> dict[str, Any]:
        """The verify answer for ``rx_id`` (module docstring: who may ask; audited)."""
        acct = self.account(account)
        rx = find_prescription(self.state, rx_id)
        if rx is None:
            raise NotFoundError(f"no prescription {rx_id}", code="unknown_prescription")
        at = self.now()
        answer = verify_status(self.state, rx_id, at)
        patient = str(rx["patient"])
        if account == patient:
            return {**answer, "audit_entry": None}
        role = self._role(acct)
        allowed = account == rx["prescriber"] or (
            role in VERIFY_ROLES
            and (role in ("auditor", "regulator") or self._registered(account, at))
        )
        ref = [f"MedicationRequest/{rx_id}/_history/1"]
        audit_id = self._audit(
            account,
            role=role,
            patient=patient,
            action="read",
            resources=ref,
            purpose="TREAT",
            basis={"kind": "law"} if allowed else {"kind": "none"},
            outcome="permit" if allowed else "deny",
            reason="rx_verify" if allowed else "not_registered",
        )
        if not allowed:
            raise self._refuse(
                f"{account} may not verify prescriptions: a prescriber's or pharmacist's "
                "registration (or an auditor role) is required",
                "not_registered",
                audit_id,
            )
        return {**answer, "audit_entry": audit_id}

    # -- PDMP ----------------------------------------------------------------------------------
    def pdmp(self, account: str, patient: str, *, purpose: str = "TREAT") -> dict[str, Any]:
        """The PDMP report of ``patient`` for ``account`` (decided and audited)."""
        if purpose not in PDMP_PURPOSES:
            raise ValidationError(f"purpose must be one of {list(PDMP_PURPOSES)}")
        acct = self.account(account)
        target = self.state.get(f"acct/{patient}")
        if not isinstance(target, Mapping) or target.get("type") != "patient":
            raise NotFoundError(f"no patient {patient}", code="unknown_patient")
        at = self.now()
        role = self._role(acct)
        org = acct.get("org")
        basis: JsonObject
        if role != "patient" and role not in PDMP_ROLES:
            permit, reason, basis = False, "role_not_allowed", {"kind": "none"}
        else:
            head = self.node.head.header
            decision = decide(
                self.state,
                AccessRequest(
                    actor=account,
                    actor_org=org if isinstance(org, str) else None,
                    actor_role=None if role == "patient" else role,
                    patient=patient,
                    action="search",
                    record=None,
                    resource_type="MedicationRequest",
                    purpose=purpose,
                ),
                time=at,
                height=head.height,
            )
            permit, reason, basis = decision.permit, decision.reason, decision.basis()
            legal = rules_of(self.state)["pdmp"]["legal_basis_roles"]
            if not permit and role in legal and self._registered(account, at):
                permit, reason, basis = True, "pdmp_statute", {"kind": "law"}
        audit_id = self._audit(
            account,
            role=role,
            patient=patient,
            action="search",
            resources=[],
            purpose=purpose,
            basis=basis,
            outcome="permit" if permit else "deny",
            reason=reason if permit or reason != "no_consent" else "no_consent",
        )
        if not permit:
            raise self._refuse(
                f"{account} may not query the PDMP history of {patient}: {reason}",
                reason,
                audit_id,
            )
        report = pdmp_report(self.state, patient, at).to_json()
        return {**report, "audit_entry": audit_id, "basis": basis}


# -- the EPCS-style report -------------------------------------------------------------------


def epcs_report(node: Node, start: int, end: int | None = None) -> list[dict[str, Any]]:
    """Auditable events with block time in ``[start, end)`` (``end``: a day later)."""
    stop = start + DAY_MS if end is None else end
    out: list[dict[str, Any]] = []
    for block in node.store.iter_blocks(1):
        header = orjson.loads(block.header)
        time = int(header["time"])
        if time < start:
            continue
        if time >= stop:
            break
        for raw, raw_receipt in zip(block.envelopes, block.receipts, strict=True):
            tx = parse_envelope(raw)
            body = tx.body
            receipt = orjson.loads(raw_receipt)
            kind = body.kind
            row: dict[str, Any] = {
                "code": receipt.get("code"),
                "height": block.height,
                "kind": kind,
                "sender": body.sender,
                "status": receipt.get("status"),
                "time": time,
                "tx": tx.tx_id.hex(),
            }
            if receipt.get("msg"):
                row["msg"] = receipt["msg"]
            args = body.args
            if kind.startswith(("prescriptions.", "credentials.")):
                row["event"] = (
                    "refused_" + kind.split(".")[1].split("@")[0]
                    if receipt.get("status") != "ok"
                    else kind.split("@")[0]
                )
                row["subject"] = str(
                    args.get("id")
                    or args.get("account")
                    or args.get("org")
                    or args.get("subject")
                    or args.get("patient")
                    or ""
                )
                out.append(row)
            elif kind == "audit.record@1" and receipt.get("status") == "ok":
                basis = args.get("basis")
                bkind = basis.get("kind") if isinstance(basis, Mapping) else None
                if (
                    bkind == "break_glass"
                    or args.get("outcome") != "permit"
                    or (
                        args.get("action") == "search"
                        and str(args.get("reason", "")).startswith("pdmp")
                    )
                    or args.get("reason") == "rx_verify"
                ):
                    row["event"] = (
                        "break_glass_access"
                        if bkind == "break_glass"
                        else f"access_{args.get('outcome')}"
                    )
                    row["subject"] = str(args.get("patient"))
                    row["actor"] = str(args.get("actor"))
                    row["reason"] = str(args.get("reason"))
                    out.append(row)
            elif kind.startswith("access.break_glass"):
                row["event"] = "break_glass_opened"
                row["subject"] = str(args.get("patient", ""))
                out.append(row)
    return out


# -- the demo consortium ---------------------------------------------------------------------

DEMO_DEA = {"seoul-general.dr-kim": "AK2047175", "hanbit-pharmacy": "FH3187730"}
"""DEA-style numbers of the demo registrations (valid check digits)."""


def seed_rx_demo(node: Node, ring: Keyring, password: bytes) -> None:
    """Register dr-kim as a prescriber (II–V), hanbit-pharmacy and its pharmacist ph-lee."""
    year = node.clock() + 365 * DAY_MS
    schedules = ["II", "III", "IV", "V"]

    def tx(kind: str, org: str, args: JsonObject) -> SignedTx:
        key = ring.load(f"{org}-admin", password)
        return make_tx(
            chain=node.genesis.chain,
            kind=kind,
            sender=f"{org}.admin",
            args=args,
            keys=[key],
            created=node.clock(),
            nonce=os.urandom(NONCE_SIZE),
        )

    first = [
        tx(
            "credentials.register_prescriber@1",
            "seoul-general",
            {
                "account": "seoul-general.dr-kim",
                "expires": year,
                "number": DEMO_DEA["seoul-general.dr-kim"],
                "schedules": schedules,
            },
        ),
        tx(
            "credentials.register_pharmacy@1",
            "hanbit-pharmacy",
            {
                "expires": year,
                "number": DEMO_DEA["hanbit-pharmacy"],
                "org": "hanbit-pharmacy",
                "schedules": schedules,
            },
        ),
    ]
    node.submit_and_wait([t.raw for t in first])
    pharmacist = tx(
        "credentials.register_pharmacist@1",
        "hanbit-pharmacy",
        {"account": "hanbit-pharmacy.ph-lee", "expires": year, "licence": "KR-PH-31877"},
    )
    node.submit_and_wait([pharmacist.raw])


__all__ = ["RX_KINDS", "RxService", "epcs_report", "seed_rx_demo"]
