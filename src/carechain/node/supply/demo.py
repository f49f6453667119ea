"""The demo supply chain: the wholesaler, trading partners and products, set up on demand
(:func:`ensure_supply_demo`); the walk-through itself is ``carechain demo --supply``
(:mod:`carechain.cli.supply`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import PrivateKey
from carechain.encoding import b64u_encode
from carechain.epcis.event_hash import gs1_check_digit
from carechain.errors import NotFoundError
from carechain.ledger.tx import SignedTx
from carechain.node.chaindir import new_tx
from carechain.node.node import Node, now_ms

YEAR_MS = 365 * 86_400_000
WHOLESALER = "kdist-wholesale"
REGULATOR = "mfds-regulator"


def _gln(body12: str) -> str:
    return body12 + gs1_check_digit(body12)


def _gtin(body13: str) -> str:
    return body13 + gs1_check_digit(body13)


DEMO_GLNS = {
    "medipharm": _gln("880123400001"),
    WHOLESALER: _gln("880123400002"),
    "hanbit-pharmacy": _gln("880123400003"),
    "seoul-general": _gln("880123400004"),
}
"""Each demo trading partner's GLN."""
DEMO_ROLES = {
    "medipharm": ["manufacturer"],
    WHOLESALER: ["wholesaler"],
    "hanbit-pharmacy": ["dispenser"],
    "seoul-general": ["dispenser"],
}
DRUG_GTIN = _gtin("0880123410001")
"""MediPharm's demo drug (schedule none)."""
DEVICE_GTIN = _gtin("0880123420001")
"""MediPharm's demo implantable device (GS1 UDI)."""


Build = Callable[[str, str, dict[str, Any], list[PrivateKey]], SignedTx]
Submit = Callable[[list[SignedTx]], None]
Exists = Callable[[str], Any]


def _key(ring: Keyring, name: str, account: str, password: bytes) -> PrivateKey:
    try:
        ring.get_info(name)
    except NotFoundError:
        ring.create(name, "ed25519", password, account=account)
    return ring.load(name, password)


def ensure_supply_demo(
    build: Build, submit: Submit, ring: Keyring, password: bytes, state: Exists, now: int
) -> None:
    """Idempotently set up the demo supply chain on the demo consortium: admit the wholesaler
    by a governance vote of the other organisations, give the manufacturer, the wholesaler and
    the dispensers authorised-trading-partner status (signed by the regulator), register the
    manufacturer's products. ``state(key)`` reads committed state (None when absent).

    Run when a walk-through or a test needs it, not by ``init --demo``: another organisation
    in the demo genesis would change the majorities the governance tests rely on (as ADR 0010
    does for the trial sponsor)."""
    if state(f"org/{WHOLESALER}") is None:
        admin = f"{WHOLESALER}.admin"
        key = _key(ring, f"{WHOLESALER}-admin", admin, password)
        org = {"admins": [{"account": admin, "keys": [{"alg": key.alg,
                                                       "pub": b64u_encode(key.public)}]}],
               "id": WHOLESALER, "name": "K-Distribution Wholesale (demo)",
               "roles": ["wholesaler"]}  # fmt: skip
        members = [str(o) for o in (state("gov/orgs") or []) if o != WHOLESALER]
        proposer = members[0]
        propose = build("governance.propose@1", f"{proposer}.admin",
                        {"action": "admit_org", "org": org},
                        [ring.load(f"{proposer}-admin", password)])  # fmt: skip
        submit([propose])
        proposal = propose.tx_id.hex()[:16]
        for voter in members[1:]:  # one by one: admission takes effect at a majority
            if state(f"org/{WHOLESALER}") is not None:
                break
            submit([build("governance.vote@1", f"{voter}.admin",
                          {"approve": True, "proposal": proposal},
                          [ring.load(f"{voter}-admin", password)])])  # fmt: skip
        if state(f"org/{WHOLESALER}") is None:
            raise RuntimeError(f"the demo wholesaler {WHOLESALER} was not admitted")
    reg_key = ring.load(f"{REGULATOR}-admin", password)
    missing = [org for org in sorted(DEMO_GLNS) if state(f"sc/partner/{org}") is None]
    if missing:
        submit([build("supply.set_partner@1", f"{REGULATOR}.admin",
                      {"expires": now + YEAR_MS, "glns": [DEMO_GLNS[org]],
                       "licence": f"KR-DSCSA-{i:04d}", "org": org, "roles": DEMO_ROLES[org],
                       "status": "active"}, [reg_key])
                for i, org in enumerate(missing, start=1)])  # fmt: skip
    mfr_key = ring.load("medipharm-admin", password)
    products = [
        {"gtin": DRUG_GTIN, "kind": "drug", "name": "Amoxicillin 500 mg capsules (demo)",
         "ndc": "12345-678-90", "schedule": "none"},
        {"gtin": DEVICE_GTIN, "kind": "device", "name": "Cardiac stent 3.0x18 mm (demo UDI)",
         "schedule": "none"},
    ]  # fmt: skip
    todo = [p for p in products if state(f"sc/product/{p['gtin']}") is None]
    if todo:
        submit([build("supply.register_product@1", "medipharm.admin", p, [mfr_key])
                for p in todo])  # fmt: skip


def ensure_supply_demo_on(node: Node, ring: Keyring, password: bytes) -> None:
    """:func:`ensure_supply_demo` straight through a local node (tests, benchmark)."""

    def state(key: str) -> Any:
        raw = node.store.find_state(key)
        return None if raw is None else orjson.loads(raw)

    def submit(txs: list[SignedTx]) -> None:
        node.submit_and_wait([t.raw for t in txs])

    ensure_supply_demo(
        lambda kind, sender, args, keys: new_tx(node, kind, sender, args, keys),
        submit, ring, password, state, now_ms(),
    )  # fmt: skip


__all__ = [
    "DEMO_GLNS",
    "DEVICE_GTIN",
    "DRUG_GTIN",
    "WHOLESALER",
    "ensure_supply_demo",
    "ensure_supply_demo_on",
]
