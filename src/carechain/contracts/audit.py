"""The audit contract: one transaction per request that touched PHI, permitted or denied.

The hosting node decides (``consent.decide``) and signs the entry with its service account
``<org>.node``; the ledger records it. The contract checks the entry's shape and its signer,
not the decision. The audit entry id is the transaction id; its inclusion proof is the ordinary
log proof.

State (ADR 0005, "Audit")::

    auditn/<patient>            the number of entries about the patient
    audit/<patient>/<n:010d>    {"tx", "height", "time", "actor", "org", "role", "action",
                                 "outcome", "reason", "purpose", "basis", "resources": count,
                                 "break_glass"?: true}

so a patient's access log lists by key prefix without scanning the chain (entries ``0`` …
``n-1``, in log order).

Invariants: entries are only appended; the sender is ``<org>.node``, an active ``service``
member of ``org``, and every signer is an active node key of ``org``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from carechain.contracts.consent import PURPOSES
from carechain.contracts.identity import (
    MEMBER_ROLES,
    account_arg,
    arg,
    get_account,
    node_account_id,
    only_fields,
    reject,
)
from carechain.contracts.records import CODE_RE, FHIR_ID_RE, FHIR_TYPES
from carechain.encoding import JsonValue
from carechain.ledger.execute import TxContext
from carechain.ledger.keys import node_state_key
from carechain.ledger.state import Overlay
from carechain.ledger.tx import SignedTx

AUDIT_ACTIONS = ("break_glass", "erase", "read", "search", "write")
OUTCOMES = ("deny", "error", "permit")
BASIS_KINDS = ("author", "break_glass", "consent", "custodian", "law", "none", "self")
"""``custodian``: the hosting organisation acting on a legal basis (an admin's erasure, a
privacy officer reading the access log); ``reason`` names the basis."""
ACTOR_ROLES = (*MEMBER_ROLES, "patient")
MAX_RESOURCES = 100
_REF_RE = re.compile(r"^([A-Za-z]+)/([A-Za-z0-9\-.]{1,64})/_history/([1-9][0-9]{0,6})\Z")
_REQUEST_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}\Z")
_BASIS_ID_RE = re.compile(r"^[0-9a-f]{16}\Z")


def audit_count_key(patient: str) -> str:
    """State key of the number of audit entries about ``patient``."""
    return f"auditn/{patient}"


def audit_entry_key(patient: str, n: int) -> str:
    """State key of the ``n``-th audit entry about ``patient`` (0-based)."""
    return f"audit/{patient}/{n:010d}"


def _purpose(args: Mapping[str, Any]) -> str:
    value: str = arg(args, "purpose", str)
    if value not in PURPOSES:
        raise reject("bad_args", f"args.purpose {value!r} is not one of {list(PURPOSES)}")
    return value


def _closed(args: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    value: str = arg(args, name, str)
    if value not in allowed:
        raise reject("bad_args", f"args.{name} {value!r} is not one of {list(allowed)}")
    return value


def _resources(raw: object) -> list[str]:
    if not isinstance(raw, list) or len(raw) > MAX_RESOURCES:
        raise reject("bad_args", f"args.resources must list at most {MAX_RESOURCES} references")
    for i, ref in enumerate(raw):
        m = _REF_RE.match(ref) if isinstance(ref, str) else None
        if m is None or m.group(1) not in FHIR_TYPES or not FHIR_ID_RE.match(m.group(2)):
            raise reject("bad_args", f"args.resources[{i}] is not a Type/id/_history/version ref")
    if len(set(raw)) != len(raw):
        raise reject("bad_args", "args.resources lists a reference twice")
    return [str(r) for r in raw]


def _basis(raw: object, outcome: str) -> dict[str, JsonValue]:
    if not isinstance(raw, Mapping) or not {"kind"} <= set(raw) <= {"kind", "id"}:
        raise reject("bad_args", 'args.basis must be {"kind", "id"?}')
    kind = _closed(raw, "kind", BASIS_KINDS)
    with_id = kind in ("consent", "break_glass")
    if with_id != ("id" in raw):
        raise reject("bad_args", "basis.id is required for consent and break_glass, else absent")
    if with_id and not (isinstance(raw["id"], str) and _BASIS_ID_RE.match(raw["id"])):
        raise reject("bad_args", "basis.id must be a consent or session id (16 hex)")
    if outcome == "permit" and kind == "none":
        raise reject("bad_args", "a permitted access states its basis")
    return {"id": raw["id"], "kind": kind} if with_id else {"kind": kind}


def _require_node(state: Overlay, tx: SignedTx, org: str) -> None:
    sender = tx.body.sender
    acct = get_account(state, sender)
    if sender != node_account_id(org) or acct.get("org") != org or acct.get("role") != "service":
        raise reject("unauthorized", f"audit entries of {org} are signed by {node_account_id(org)}")
    for signer in tx.body.signers:
        node = state.get(node_state_key(signer.kid))
        active = isinstance(node, Mapping) and node.get("status") == "active"
        if not active or not isinstance(node, Mapping) or node.get("org") != org:
            raise reject("unauthorized", f"key {signer.kid} is not an active node key of {org}")


def record(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``audit.record@1``: append one audit entry.

    args: ``{"actor", "org", "role", "patient", "action", "resources": ["Type/id/_history/v",
    ..] (≤ 100), "purpose", "basis": {"kind", "id"?}, "outcome", "reason", "request"}``.
    """
    args = tx.body.args
    only_fields(
        args,
        {"actor", "org", "role", "patient", "action", "resources", "purpose", "basis",
         "outcome", "reason", "request"},
    )  # fmt: skip
    actor = account_arg(args, "actor")
    org = account_arg(args, "org")
    role = _closed(args, "role", ACTOR_ROLES)
    patient = account_arg(args, "patient")
    action = _closed(args, "action", AUDIT_ACTIONS)
    resources = _resources(args.get("resources"))
    purpose = _purpose(args)
    outcome = _closed(args, "outcome", OUTCOMES)
    basis = _basis(args.get("basis"), outcome)
    reason: str = arg(args, "reason", str)
    if not CODE_RE.match(reason):
        raise reject("bad_args", f"args.reason {reason!r} is not a reason code")
    request: str = arg(args, "request", str)
    if not _REQUEST_RE.match(request):
        raise reject("bad_args", "args.request must be 1-64 characters of A-Z a-z 0-9 . _ : -")
    _require_node(state, tx, org)
    counter = audit_count_key(patient)
    n = state.get(counter)
    seq = n if isinstance(n, int) else 0
    entry: dict[str, JsonValue] = {
        "action": action, "actor": actor, "basis": basis, "height": ctx.height, "org": org,
        "outcome": outcome, "purpose": purpose, "reason": reason, "resources": len(resources),
        "role": role, "time": ctx.time, "tx": tx.tx_id.hex(),
    }  # fmt: skip
    if basis["kind"] == "break_glass":
        entry["break_glass"] = True
    state.put(audit_entry_key(patient, seq), entry)
    state.put(counter, seq + 1)
    ctx.touch(patient)
    ctx.touch(actor)
    ctx.emit(
        "audit.recorded",
        {"action": action, "n": seq, "outcome": outcome, "patient": patient},
    )


def register(registry: Any) -> None:
    """Register the audit kind."""
    registry.register("audit.record@1", record)


__all__ = [
    "AUDIT_ACTIONS",
    "BASIS_KINDS",
    "OUTCOMES",
    "audit_count_key",
    "audit_entry_key",
    "record",
    "register",
]
