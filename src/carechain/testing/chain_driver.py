"""A test driver: real transactions through a demo node, receipts and state read back.

Used by the test suite (``tests/conftest.py`` builds it as the ``chain`` fixture) and usable by
anyone scripting a demo consortium.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from carechain.contracts import default_contracts
from carechain.contracts.identity import node_account_id, patient_account_id
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import PrivateKey, generate_key
from carechain.encoding import JsonValue, b64u_encode
from carechain.errors import ContractError
from carechain.ledger.execute import TxContext
from carechain.ledger.params import ChainParams
from carechain.ledger.state import EmptyState, Overlay
from carechain.ledger.tx import SignedTx, make_tx
from carechain.node.chaindir import DEMO_PASSWORD, new_tx
from carechain.node.node import Node, now_ms
from carechain.node.verify import StoreReport, verify_store

FAST_SCRYPT_N = 2**10
"""Tests use a cheap scrypt cost; production keys use the keystore default."""
ORGS = ("seoul-general", "hanbit-pharmacy", "nhis-payer", "medipharm", "mfds-regulator")
MEMBERS = {
    "dr-kim": "seoul-general.dr-kim",
    "nurse-park": "seoul-general.nurse-park",
    "ph-lee": "hanbit-pharmacy.ph-lee",
    "auditor-choi": "mfds-regulator.auditor-choi",
}


def pub(key: PrivateKey) -> dict[str, str]:
    """A key as ``{"alg", "pub"}`` (the form ``args.keys`` takes)."""
    return {"alg": key.alg, "pub": b64u_encode(key.public)}


def read_grant_args(now: int) -> dict[str, Any]:
    """``consent.grant@1`` args: dr-kim may read every record for TREAT from an hour before
    ``now`` to a day after."""
    return {
        "actions": ["read"],
        "decision": "permit",
        "grantee": {"account": MEMBERS["dr-kim"]},
        "period": {"end": now + 86_400_000, "start": now - 3_600_000},
        "purposes": ["TREAT"],
        "scope": {},
    }


@dataclass
class Outcome:
    """A committed transaction: where it landed and its decoded receipt."""

    tx: SignedTx
    height: int
    index: int
    receipt: dict[str, Any]

    @property
    def code(self) -> str:
        return str(self.receipt["code"])

    @property
    def ok(self) -> bool:
        return bool(self.receipt["status"] == "ok")

    @property
    def events(self) -> list[str]:
        return [e["kind"] for e in self.receipt["events"]]


class Chain:
    """The demo consortium behind a running node."""

    def __init__(self, node: Node, keys: Keyring) -> None:
        self.node, self.keys = node, keys
        self._cache: dict[str, PrivateKey] = {}
        self._actors: dict[str, tuple[str, PrivateKey]] = {}

    def key(self, name: str) -> PrivateKey:
        """A demo key by keyring name (``seoul-general-admin``, ``dr-kim``, ``patient-1`` …)."""
        if name not in self._cache:
            self._cache[name] = self.keys.load(name, DEMO_PASSWORD)
        return self._cache[name]

    def admin(self, org: str) -> tuple[str, PrivateKey]:
        return f"{org}.admin", self.key(f"{org}-admin")

    def patient(self, name: str) -> tuple[str, PrivateKey]:
        key = self.key(name)
        return patient_account_id(key.kid), key

    def tx(self, kind: str, sender: str, args: dict[str, Any], keys: list[PrivateKey]) -> SignedTx:
        return new_tx(self.node, kind, sender, args, keys)

    def run(self, *txs: SignedTx) -> list[Outcome]:
        """Submit ``txs`` as one batch, wait for the commit, return the receipts."""
        out = []
        for tx, (height, index) in zip(
            txs, self.node.submit_and_wait([t.raw for t in txs]), strict=True
        ):
            raw = self.node.store.find_receipt(index)
            assert raw is not None
            out.append(Outcome(tx, height, index, orjson.loads(raw)))
        return out

    def run1(self, tx: SignedTx) -> Outcome:
        (outcome,) = self.run(tx)
        return outcome

    def state(self, key: str) -> Any:
        raw = self.node.store.find_state(key)
        return None if raw is None else orjson.loads(raw)

    def height(self) -> int:
        return self.node.store.head_height() or 0

    def verify(self) -> StoreReport:
        """Recompute the whole stored chain (raises ChainVerificationError)."""
        return verify_store(self.node.store, self.node.genesis)

    # -- common transactions --------------------------------------------------------------------
    def register_member(
        self, org: str, account: str, key: PrivateKey, *, by: str | None = None,
        role: str = "practitioner", **extra: Any,
    ) -> SignedTx:  # fmt: skip
        """``by`` (default: the org's admin; else a demo key name whose account is derived)."""
        sender, signer = self._actor(by or f"{org}-admin")
        args = {"account": account, "keys": [pub(key)], "org": org, "role": role, **extra}
        return self.tx("identity.register_member@1", sender, args, [signer])

    def _actor(self, name: str) -> tuple[str, PrivateKey]:
        if name in self._actors:
            return self._actors[name]
        if name.endswith("-node"):
            return self.node_account(name.removesuffix("-node"))
        if name.endswith("-admin"):
            return self.admin(name.removesuffix("-admin"))
        if name in MEMBERS:
            return MEMBERS[name], self.key(name)
        return self.patient(name)

    def account(self, name: str) -> str:
        """The account id behind a demo name (see :meth:`_actor`)."""
        return self._actor(name)[0]

    def node_account(self, org: str = "seoul-general") -> tuple[str, PrivateKey]:
        """The node service account ``<org>.node`` and the running node's key (demo name
        ``<org>-node``); only the founding org of the demo runs this node."""
        return node_account_id(org), self.node.node_key

    def enroll(
        self, org: str, name: str, key: PrivateKey, *, role: str = "practitioner", **extra: Any
    ) -> Outcome:
        """Register member ``<org>.<name>`` and remember it as demo name ``name``."""
        account = f"{org}.{name}"
        out = self.run1(self.register_member(org, account, key, role=role, **extra))
        if out.ok:
            self._actors[name] = (account, key)
        return out

    # -- records, consent, break-glass, audit -------------------------------------------------

    def anchor(
        self, by: str, *, org: str = "seoul-general", type: str = "Observation",
        id: str = "obs-1", version: int = 1, patient: str | None = "patient-1", **extra: Any,
    ) -> SignedTx:  # fmt: skip
        """``records.anchor@1`` with plausible defaults (digest/index derived from the
        coordinates; ``prev`` = :func:`fake_digest` of the previous version when version > 1).
        ``patient`` is a demo name or an account id (None: a directory resource, no patient and
        no index); ``extra`` overrides or adds args (``None`` removes one)."""
        args: dict[str, Any] = {
            "digest": fake_digest(org, type, id, version),
            "id": id,
            "org": org,
            "type": type,
            "url": f"https://{org}.example/fhir/{type}/{id}/_history/{version}",
            "version": version,
        }
        if patient is not None:
            args["index"] = b64u_encode(hashlib.sha256(f"index/{patient}".encode()).digest())
            args["patient"] = self._patient_id(patient)
        if isinstance(version, int) and version > 1:
            args["prev"] = fake_digest(org, type, id, version - 1)
        sender, key = self._actor(by)
        return self.tx("records.anchor@1", sender, _merge(args, extra), [key])

    def erase(
        self, by: str, *, org: str = "seoul-general", type: str = "Observation",
        id: str = "obs-1", basis: str = "patient_request", reason: str = "patient asked",
        **extra: Any,
    ) -> SignedTx:  # fmt: skip
        """``records.erase@1``."""
        args = {"basis": basis, "id": id, "org": org, "reason": reason, "type": type}
        sender, key = self._actor(by)
        return self.tx("records.erase@1", sender, _merge(args, extra), [key])

    def grant(self, patient: str = "patient-1", **extra: Any) -> SignedTx:
        """``consent.grant@1`` by demo patient ``patient``: by default dr-kim may read every
        record for TREAT from an hour ago to a day ahead."""
        sender, key = self._actor(patient)
        return self.tx("consent.grant@1", sender, _merge(read_grant_args(now_ms()), extra), [key])

    def revoke(self, consent: str, patient: str = "patient-1") -> SignedTx:
        """``consent.revoke@1``."""
        sender, key = self._actor(patient)
        return self.tx("consent.revoke@1", sender, {"id": consent}, [key])

    def break_glass(self, by: str, patient: str = "patient-1", **extra: Any) -> SignedTx:
        """``access.break_glass@1`` (purpose ETREAT by default)."""
        args = {"patient": self._patient_id(patient), "purpose": "ETREAT",
                "reason": "unconscious in the emergency department"}  # fmt: skip
        sender, key = self._actor(by)
        return self.tx("access.break_glass@1", sender, _merge(args, extra), [key])

    def review(self, by: str, session: str, **extra: Any) -> SignedTx:
        """``access.review@1``."""
        sender, key = self._actor(by)
        return self.tx("access.review@1", sender, _merge({"session": session}, extra), [key])

    def audit(self, by: str = "seoul-general-node", **extra: Any) -> SignedTx:
        """``audit.record@1`` signed by the node service account: by default dr-kim, as the
        author, read patient-1's ``Observation/obs-1/_history/1`` (``extra`` overrides)."""
        args: dict[str, Any] = {
            "action": "read",
            "actor": MEMBERS["dr-kim"],
            "basis": {"kind": "author"},
            "org": "seoul-general",
            "outcome": "permit",
            "patient": self._patient_id("patient-1"),
            "purpose": "TREAT",
            "reason": "author",
            "request": "req-1",
            "resources": ["Observation/obs-1/_history/1"],
            "role": "practitioner",
        }
        sender, key = self._actor(by)
        return self.tx("audit.record@1", sender, _merge(args, extra), [key])

    def _patient_id(self, patient: str) -> str:
        return self.patient(patient)[0] if patient.startswith("patient-") else patient


def fake_digest(org: str, rtype: str, rid: str, version: int) -> str:
    """A stand-in 32-byte digest for a record version (tests; real ones are HMACs)."""
    return b64u_encode(hashlib.sha256(f"{org}/{rtype}/{rid}/{version}".encode()).digest())


def _merge(args: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = {**args, **extra}
    return {k: v for k, v in out.items() if v is not None}


class Sandbox:
    """Contract handlers applied straight to an in-memory state, at heights and block times the
    caller chooses (signer authorisation is skipped: that is the registry's, tested elsewhere).

    For decision tables a live node cannot produce (a revocation at a given height, a session
    some hours old); everything a handler writes is exactly what it writes on a node.
    """

    def __init__(self, params: ChainParams | None = None) -> None:
        self.state = Overlay(EmptyState())
        self.params = params or ChainParams()
        self._contracts = default_contracts()
        self._key = generate_key()
        self._n = 0

    def put_org(self, org: str) -> None:
        self.state.put(f"org/{org}", {"id": org, "name": org, "roles": ["hospital"],
                                      "since": 0, "status": "active"})  # fmt: skip

    def put_member(self, account: str, org: str, role: str, *capabilities: str) -> None:
        rec: dict[str, JsonValue] = {
            "id": account, "keys": [], "org": org, "role": role, "since": 0, "status": "active",
            "type": "admin" if role == "admin" else "member",
        }  # fmt: skip
        if capabilities:
            rec["capabilities"] = sorted(capabilities)
        self.state.put(f"acct/{account}", rec)

    def put_patient(self, account: str) -> None:
        self.state.put(f"acct/{account}", {"id": account, "keys": [], "since": 0,
                                           "status": "active", "type": "patient"})  # fmt: skip

    def apply(self, kind: str, sender: str, args: dict[str, Any], *, height: int, time: int) -> str:
        """Apply one transaction of ``kind``; return the first 16 hex digits of its id (the id
        of a grant or session). A rejection raises ContractError and writes nothing."""
        handler = self._contracts.handler(kind)
        if handler is None:
            raise ContractError(f"no contract handles {kind}", code="unknown_kind")
        self._n += 1
        tx = make_tx(chain="sandbox", kind=kind, sender=sender, args=args, keys=[self._key],
                     created=time, nonce=self._n.to_bytes(16, "big"))  # fmt: skip
        ctx = TxContext(chain="sandbox", height=height, time=time, params=self.params,
                        position=0, tx=tx)  # fmt: skip
        child = self.state.child()
        handler(child, tx, ctx)
        self.state.merge(child)
        return tx.tx_id.hex()[:16]
