"""A test driver: real transactions through a demo node, receipts and state read back.

Used by the test suite (``tests/conftest.py`` builds it as the ``chain`` fixture) and usable by
anyone scripting a demo consortium.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from carechain.contracts.identity import patient_account_id
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import PrivateKey
from carechain.encoding import b64u_encode
from carechain.ledger.tx import SignedTx
from carechain.node.chaindir import DEMO_PASSWORD, new_tx
from carechain.node.node import Node
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
        if name.endswith("-admin"):
            return self.admin(name.removesuffix("-admin"))
        if name in MEMBERS:
            return MEMBERS[name], self.key(name)
        return self.patient(name)
