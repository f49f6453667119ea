"""Node-side claims queries: who may see what, claim listings and per-provider analytics.

Reads committed state only (``claims/…`` keys written by ``contracts/claims_*``), never the
mempool. Who may read (ADR 0009):

* plans: anyone signed in (benefits are public within the consortium);
* a claim or a coverage: its patient, members of its provider (claims) and of its payer, and
  members of an ``auditor`` or ``regulator`` organisation;
* analytics of provider P: members of a payer, auditor or regulator organisation, and of P.

Analytics (:func:`provider_analytics`), per provider over all its committed claims: the share
of claims that were duplicates (``duplicate_claim``, or any item ``duplicate_service``), the
share denied, the number billed without a matching encounter (``encounter_not_found``), and its
volume (claims, charges) against the mean of its peers (the other providers with claims).
Rates are ratios in [0, 1] (floats: analytics are not hashed or signed).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from carechain.contracts.claims_adjudication import claim_key
from carechain.contracts.claims_plans import agreement_key, coverage_key, plan_key
from carechain.contracts.records import CODE_RE
from carechain.crypto.keystore import Keyring
from carechain.errors import AuthorizationError, NotFoundError, ValidationError
from carechain.ledger.tx import make_tx
from carechain.node.node import Node, now_ms
from carechain.storage.abc import LedgerStore

OVERSIGHT_ROLES = ("auditor", "regulator")
"""Organisation roles whose members may read every claim (oversight, e.g. HIRA review)."""
CLAIM_PREFIX = "claims/claim/"
MAX_LIST = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class Viewer:
    """The account asking, as the chain knows it."""

    account: str
    """Ledger account id."""
    org: str | None
    """Its organisation (None for patients)."""
    org_roles: tuple[str, ...]
    """The organisation's roles (``payer``, ``hospital`` …)."""


def _state(store: LedgerStore, key: str) -> Any:
    raw = store.find_state(key)
    return None if raw is None else orjson.loads(raw)


def viewer(store: LedgerStore, account: str) -> Viewer:
    """The :class:`Viewer` for ``account`` (AuthorizationError if it is not active)."""
    acct = _state(store, f"acct/{account}")
    if not isinstance(acct, Mapping) or acct.get("status") != "active":
        raise AuthorizationError(f"account {account} is not an active account")
    org_id = acct.get("org")
    roles: tuple[str, ...] = ()
    if isinstance(org_id, str):
        org = _state(store, f"org/{org_id}")
        if isinstance(org, Mapping) and org.get("status") == "active":
            roles = tuple(org.get("roles", ()))
    return Viewer(account=account, org=org_id if isinstance(org_id, str) else None, org_roles=roles)


def _oversight(v: Viewer) -> bool:
    return bool(set(v.org_roles) & set(OVERSIGHT_ROLES))


def check_may_view(v: Viewer, rec: Mapping[str, Any]) -> bool:
    """True iff ``v`` may read the claim or coverage ``rec`` (see the module docstring)."""
    return (
        v.account == rec.get("patient")
        or (v.org is not None and v.org in (rec.get("provider"), rec.get("payer")))
        or _oversight(v)
    )


def _require_view(v: Viewer, rec: Mapping[str, Any], what: str) -> None:
    if not check_may_view(v, rec):
        raise AuthorizationError(
            f"{v.account} may not read {what}: only its patient, provider, payer or an "
            "oversight organisation may",
            code="forbidden",
        )


def get_plan(store: LedgerStore, plan: str) -> Mapping[str, Any]:
    """The plan (NotFoundError)."""
    rec = _state(store, plan_key(plan)) if CODE_RE.match(plan) else None
    if not isinstance(rec, Mapping):
        raise NotFoundError(f"no plan {plan}")
    return rec


def find_plan(store: LedgerStore, plan: object) -> Mapping[str, Any] | None:
    """The plan, or None."""
    rec = _state(store, plan_key(plan)) if isinstance(plan, str) else None
    return rec if isinstance(rec, Mapping) else None


def get_coverage(store: LedgerStore, v: Viewer, coverage: str) -> Mapping[str, Any]:
    """A coverage ``v`` may read (NotFoundError, AuthorizationError)."""
    rec = _state(store, coverage_key(coverage))
    if not isinstance(rec, Mapping):
        raise NotFoundError(f"no coverage {coverage}")
    _require_view(v, rec, f"coverage {coverage}")
    return rec


def get_claim(store: LedgerStore, v: Viewer, claim: str) -> Mapping[str, Any]:
    """A claim ``v`` may read (NotFoundError, AuthorizationError)."""
    if len(claim) != 16 or not claim.isalnum():
        raise NotFoundError(f"no claim {claim}")
    rec = _state(store, claim_key(claim))
    if not isinstance(rec, Mapping):
        raise NotFoundError(f"no claim {claim}")
    _require_view(v, rec, f"claim {claim}")
    return rec


def get_agreement(store: LedgerStore, agreement: str) -> Mapping[str, Any]:
    """A value-based agreement (NotFoundError); its terms are not personal data."""
    rec = _state(store, agreement_key(agreement))
    if not isinstance(rec, Mapping):
        raise NotFoundError(f"no agreement {agreement}")
    return rec


def _all_claims(store: LedgerStore) -> Iterable[Mapping[str, Any]]:
    for _, raw in store.iter_state(CLAIM_PREFIX):
        rec = orjson.loads(raw)
        if isinstance(rec, Mapping):
            yield rec


def list_claims(
    store: LedgerStore, v: Viewer, *, provider: str | None = None, patient: str | None = None,
    limit: int = 100,
) -> list[Mapping[str, Any]]:  # fmt: skip
    """Claims ``v`` may read, optionally of one provider / patient, newest first."""
    if not 1 <= limit <= MAX_LIST:
        raise ValidationError(f"limit: got {limit}, want 1..{MAX_LIST}")
    out = [
        c for c in _all_claims(store)
        if (provider is None or c.get("provider") == provider)
        and (patient is None or c.get("patient") == patient) and check_may_view(v, c)
    ]  # fmt: skip
    out.sort(key=lambda c: (-int(c["height"]), str(c["id"])))
    return out[:limit]


def _is_duplicate(claim: Mapping[str, Any]) -> bool:
    return "duplicate_claim" in claim.get("reasons", []) or any(
        "duplicate_service" in i.get("reasons", []) for i in claim.get("items", [])
    )


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def provider_analytics(store: LedgerStore, v: Viewer, provider: str) -> dict[str, Any]:
    """Duplicate rate, denial rate, claims without an encounter and volume against peers."""
    if not (v.org == provider or _oversight(v) or "payer" in v.org_roles):
        raise AuthorizationError(
            f"{v.account} may not read the analytics of {provider}: a payer, an oversight "
            "organisation or the provider itself may",
            code="forbidden",
        )
    fields = ("claims", "items", "denied", "duplicates", "without_encounter", "charge", "benefit")
    per: dict[str, dict[str, int]] = {}
    for c in _all_claims(store):
        s = per.setdefault(str(c["provider"]), dict.fromkeys(fields, 0))
        s["claims"] += 1
        s["items"] += len(c.get("items", []))
        s["denied"] += c.get("decision") == "denied"
        s["duplicates"] += _is_duplicate(c)
        s["without_encounter"] += "encounter_not_found" in c.get("reasons", [])
        s["charge"] += int(c["totals"]["charge"])
        s["benefit"] += int(c["totals"]["benefit"])
    mine = per.get(provider, dict.fromkeys(fields, 0))
    peers = [s for p, s in per.items() if p != provider]
    peer_claims = sum(s["claims"] for s in peers) / len(peers) if peers else 0.0
    peer_charge = sum(s["charge"] for s in peers) / len(peers) if peers else 0.0
    return {
        "provider": provider,
        "claims": mine["claims"],
        "items": mine["items"],
        "denied": mine["denied"],
        "denial_rate": _ratio(mine["denied"], mine["claims"]),
        "duplicates": mine["duplicates"],
        "duplicate_rate": _ratio(mine["duplicates"], mine["claims"]),
        "without_encounter": mine["without_encounter"],
        "without_encounter_rate": _ratio(mine["without_encounter"], mine["claims"]),
        "charge": mine["charge"],
        "benefit": mine["benefit"],
        "peers": len(peers),
        "peer_mean_claims": round(peer_claims, 2),
        "peer_mean_charge": round(peer_charge, 2),
        "volume_vs_peers": round(mine["claims"] / peer_claims, 4) if peer_claims else None,
    }


def providers(store: LedgerStore) -> list[str]:
    """Every organisation that submitted a claim, sorted."""
    return sorted({str(c["provider"]) for c in _all_claims(store)})


__all__ = [
    "Viewer",
    "check_may_view",
    "get_agreement",
    "get_claim",
    "get_coverage",
    "get_plan",
    "list_claims",
    "provider_analytics",
    "providers",
    "viewer",
]


# -- demo seeding ------------------------------------------------------------------------------

DEMO_PLAN = "nhis-basic"
"""The demo payer's plan (KRW; amounts in won)."""
DEMO_SERVICES: tuple[dict[str, Any], ...] = (
    {"code": "consult-outpatient", "allowed": 18_000, "copay": 0},
    {"code": "hba1c-test", "allowed": 8_000, "copay": 0, "limit": 4},
    {"code": "mri-brain", "allowed": 350_000, "copay": 0, "prior_auth": True},
    {"code": "physiotherapy", "allowed": 12_000, "copay": 1_000, "limit": 10},
)
DEMO_COVERAGES = {"patient-1": "nhis-p1", "patient-2": "nhis-p2"}
"""Coverage id of each demo patient (key name → coverage)."""
_DAY = 86_400_000


def seed_claims_demo(node: Node, ring: Keyring, password: bytes, accounts: Sequence[Any]) -> None:
    """Register the demo plan of ``nhis-payer`` and enrol the demo patients (half a year back,
    half a year ahead), through real transactions signed by ``nhis-payer.admin``.

    ``accounts``: the demo accounts seeded so far (``chaindir.DemoAccount``: ``name``,
    ``account``); the patients among them are enrolled."""
    payer_key = ring.load("nhis-payer-admin", password)
    now = now_ms()

    def tx(kind: str, args: dict[str, Any]) -> bytes:
        return make_tx(
            chain=node.genesis.chain, kind=kind, sender="nhis-payer.admin", args=args,
            keys=[payer_key], created=now, nonce=os.urandom(16),
        ).raw  # fmt: skip

    raws = [tx("claims.plan@1", {
        "coinsurance_bp": 3_000, "currency": "KRW", "deductible": 10_000,
        "name": "NHIS basic outpatient (demo)", "plan": DEMO_PLAN,
        "services": [dict(s) for s in DEMO_SERVICES],
    })]  # fmt: skip
    patients = {a.name: a.account for a in accounts if a.name in DEMO_COVERAGES}
    for name, cov in DEMO_COVERAGES.items():
        if name in patients:
            raws.append(tx("claims.enrol@1", {
                "coverage": cov, "patient": patients[name], "plan": DEMO_PLAN,
                "period": {"end": now + 185 * _DAY, "start": now - 180 * _DAY},
            }))  # fmt: skip
    for _, index in node.submit_and_wait(raws):
        receipt = orjson.loads(node.store.find_receipt(index) or b"{}")
        if receipt.get("status") != "ok":
            raise RuntimeError(f"claims demo seeding was rejected: {receipt}")
