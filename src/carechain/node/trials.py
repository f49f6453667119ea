"""Read side of the trial registry (views, the outcome-switching report with inclusion proofs)
and the demo consortium's research sponsor.

Everything here reads committed state and the log of one store; nothing writes except
:func:`admit_demo_sponsor`, which submits real transactions.

The report proves each version: for every registered version (and the results) it carries
the RFC 9162 inclusion proof of the transaction that wrote it, in the log of one size, with
that tree's root, so a reader holding a signed checkpoint of that size (or a later one and a
consistency proof) checks that no version was hidden or rewritten.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from carechain.contracts.trials import switching_report, trial_rules
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import PrivateKey
from carechain.encoding import b64u_encode
from carechain.errors import NotFoundError, ValidationError
from carechain.ledger.tx import SignedTx
from carechain.merkle import inclusion_proof, leaf_hash, root_at
from carechain.node.node import Node
from carechain.storage.abc import LedgerStore

SPONSOR_ORG = "hanul-research"
SPONSOR_NAME = "Hanul Clinical Research (demo sponsor)"
RESEARCHER = "dr-yoon"
"""Key name (and account suffix) of the demo sponsor's researcher."""
MAX_LIST = 500


class _State:
    """Decoded reads of committed state (the ``StateView`` the contracts' helpers take)."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store

    def get(self, key: str) -> Any:
        raw = self.store.find_state(key)
        return None if raw is None else orjson.loads(raw)


def _obj(store: LedgerStore, key: str) -> dict[str, Any] | None:
    raw = store.find_state(key)
    if raw is None:
        return None
    value = orjson.loads(raw)
    return value if isinstance(value, dict) else None


def get_trial(store: LedgerStore, trial_id: str) -> dict[str, Any]:
    """The trial record (NotFoundError when unknown)."""
    if not 0 < len(trial_id) <= 40 or "/" in trial_id:
        raise ValidationError(f"trial id: got {trial_id[:60]!r}", code="bad_id")
    rec = _obj(store, f"trial/{trial_id}")
    if rec is None:
        raise NotFoundError(f"no trial {trial_id} is registered")
    return rec


def versions(store: LedgerStore, trial: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every registered version of ``trial``, 1..n."""
    out = []
    for n in range(1, int(trial["version"]) + 1):
        v = _obj(store, f"trialv/{trial['id']}/{n}")
        if v is not None:
            out.append(v)
    return out


def saes(store: LedgerStore, trial: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The serious adverse events reported for ``trial`` (no PHI: enrolment numbers)."""
    out = []
    for n in range(1, int(trial["saes"]) + 1):
        v = _obj(store, f"trialsae/{trial['id']}/{n}")
        if v is not None:
            out.append(v)
    return out


def results(store: LedgerStore, trial_id: str) -> dict[str, Any] | None:
    """The reported results, or None."""
    return _obj(store, f"trialres/{trial_id}")


def list_trials(store: LedgerStore, limit: int = MAX_LIST) -> list[dict[str, Any]]:
    """Registered trials (id order) with their current title, phase and counts."""
    out: list[dict[str, Any]] = []
    for key, raw in store.iter_state("trial/"):
        if len(out) >= limit:
            break
        trial = orjson.loads(raw)
        latest = _obj(store, f"trialv/{trial['id']}/{trial['version']}") or {}
        out.append(
            {**trial, "phase": latest.get("phase", ""), "title": latest.get("title", ""),
             "planned_enrolment": latest.get("planned_enrolment", 0), "key": key}
        )  # fmt: skip
    return out


def trial_detail(store: LedgerStore, trial_id: str) -> dict[str, Any]:
    """The trial, all its versions, its adverse events, results and reporting rules."""
    trial = get_trial(store, trial_id)
    return {
        "trial": trial,
        "versions": versions(store, trial),
        "saes": saes(store, trial),
        "results": results(store, trial_id),
        "rules": trial_rules(_State(store)),
    }


def prove_tx(store: LedgerStore, tx_hex: str, size: int) -> dict[str, Any]:
    """RFC 9162 inclusion proof of committed transaction ``tx_hex`` in the log of ``size``."""
    loc = store.find_tx(bytes.fromhex(tx_hex))
    if loc is None:  # pragma: no cover - the state names committed transactions only
        raise NotFoundError(f"transaction {tx_hex} is not committed")
    raw = store.find_envelope(loc.log_index)
    assert raw is not None
    return {
        "height": loc.height,
        "leaf_hash": leaf_hash(raw).hex(),
        "leaf_index": loc.log_index,
        "proof": [h.hex() for h in inclusion_proof(store, loc.log_index, size)],
        "tx_id": tx_hex,
    }


def switching(store: LedgerStore, trial_id: str) -> dict[str, Any]:
    """The public outcome-switching report of ``trial_id``, with an inclusion proof of the
    transaction behind every version (and the results) in the log of one size."""
    trial = get_trial(store, trial_id)
    vs = versions(store, trial)
    res = results(store, trial_id)
    report: dict[str, Any] = dict(switching_report(trial, vs, res))
    size = store.log_size()
    report["tree_size"] = size
    report["root"] = root_at(store, size).hex()
    report["sponsor"] = trial["sponsor"]
    report["registered"] = trial["registered"]
    report["enrolled"] = trial["enrolled"]
    report["first_enrolment"] = trial.get("first_enrolment")
    report["proofs"] = [
        {"stage": "version", "version": v["version"], **prove_tx(store, v["tx"], size)} for v in vs
    ]
    if res is not None:
        report["proofs"].append(
            {"stage": "results", "version": res["version"], **prove_tx(store, res["tx"], size)}
        )
    report["history"] = [
        {k: v[k] for k in ("version", "time", "height", "tx", "primary", "secondary",
                           "after_enrolment", "flagged") if k in v}
        | {"reason": v.get("reason", "registration")}
        for v in vs
    ]  # fmt: skip
    return report


# -- the demo consortium's research sponsor ----------------------------------------------------

Build = Callable[[str, str, dict[str, Any], list[PrivateKey]], SignedTx]
"""``build(kind, sender, args, keys)``: a fresh signed transaction for the chain."""
Submit = Callable[[list[SignedTx]], None]
"""Submit one batch and wait for its block (raise on a refusal)."""


def _key(ring: Keyring, name: str, account: str, password: bytes) -> PrivateKey:
    try:
        ring.get_info(name)
    except NotFoundError:
        ring.create(name, "ed25519", password, account=account)
    return ring.load(name, password)


def admit_demo_sponsor(
    build: Build, submit: Submit, ring: Keyring, password: bytes,
    exists: Callable[[str], bool],
) -> list[str]:  # fmt: skip
    """Admit the demo research sponsor ``hanul-research`` by a governance vote of three of the
    founding organisations (proposal and votes in one block) and register its researcher
    ``hanul-research.dr-yoon`` (next block); keys go to ``ring``. Idempotent: does nothing for
    what ``exists(account)`` already reports. Returns the accounts created.

    The founding organisations keep their roles and the demo genesis keeps its five
    organisations: the sponsor joins the way any organisation joins, when a walk-through or a
    test needs it (ADR 0010).
    """
    admin, researcher = f"{SPONSOR_ORG}.admin", f"{SPONSOR_ORG}.{RESEARCHER}"
    created: list[str] = []
    admin_key = _key(ring, f"{SPONSOR_ORG}-admin", admin, password)
    if not exists(admin):
        org = {
            "admins": [{"account": admin, "keys": [_pub(admin_key)]}],
            "id": SPONSOR_ORG,
            "name": SPONSOR_NAME,
            "roles": ["research_sponsor"],
        }
        propose = build("governance.propose@1", "seoul-general.admin",
                        {"action": "admit_org", "org": org},
                        [ring.load("seoul-general-admin", password)])  # fmt: skip
        proposal = propose.tx_id.hex()[:16]
        votes = [
            build("governance.vote@1", f"{o}.admin", {"approve": True, "proposal": proposal},
                  [ring.load(f"{o}-admin", password)])
            for o in ("hanbit-pharmacy", "nhis-payer")
        ]  # fmt: skip
        submit([propose, *votes])  # one block, in order
        created.append(admin)
    if not exists(researcher):
        key = _key(ring, RESEARCHER, researcher, password)
        member = build("identity.register_member@1", admin,
                       {"account": researcher, "display": "Dr. Yoon Seohyun (investigator)",
                        "keys": [_pub(key)], "licence": "KR-MD-71733", "org": SPONSOR_ORG,
                        "role": "researcher"}, [admin_key])  # fmt: skip
        submit([member])
        created.append(researcher)
    return created


def _pub(key: PrivateKey) -> dict[str, Any]:
    return {"alg": key.alg, "pub": b64u_encode(key.public)}


def admit_demo_sponsor_on(node: Node, ring: Keyring, password: bytes) -> list[str]:
    """:func:`admit_demo_sponsor` straight through a local node (tests, scripts)."""
    from carechain.node.chaindir import new_tx

    def build(kind: str, sender: str, args: dict[str, Any], keys: list[PrivateKey]) -> SignedTx:
        return new_tx(node, kind, sender, args, keys)

    def submit(txs: list[SignedTx]) -> None:
        node.submit_and_wait([t.raw for t in txs])

    def exists(account: str) -> bool:
        return node.store.find_state(f"acct/{account}") is not None

    created = admit_demo_sponsor(build, submit, ring, password, exists)
    if not exists(f"{SPONSOR_ORG}.{RESEARCHER}"):
        raise RuntimeError("admitting the demo sponsor failed")
    return created


__all__ = [
    "RESEARCHER",
    "SPONSOR_ORG",
    "admit_demo_sponsor",
    "admit_demo_sponsor_on",
    "get_trial",
    "list_trials",
    "prove_tx",
    "switching",
    "trial_detail",
]
