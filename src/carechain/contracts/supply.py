"""The supply contract: trading partners, products, EPCIS capture under DSCSA custody rules,
suspect product, recalls and implants (ADR 0008).

State (values canonical JSON; ``<item>`` is a GS1 Digital Link path without the host:
``01/<gtin14>/21/<serial>`` for a pack or device, ``00/<sscc18>`` for a case)::

    sc/partner/<org>         {"org", "roles": [..], "glns": [..], "licence", "expires", "status",
                              "since", "by"}          authorised-trading-partner status
    sc/gln/<gln>             {"org"}                  GLN → organisation
    sc/product/<gtin14>      {"gtin", "ndc"?, "name", "schedule", "kind": "drug"|"device",
                              "manufacturer", "since"}
    sc/item/<item>           {"item", "gtin"?, "lot"?, "expiry"?, "owner", "status":
                              "active"|"shipped"|"dispensed"|"decommissioned", "parent"?,
                              "children"?: [..], "shipment"?: {"from", "to", "tx"}, "n"}
    sc/hist/<item>/<n:08d>   {"tx", "event", "step", "time", "height", "owner"}  custody history
    sc/event/<hash64>        {"tx", "doc", "type", "step", "time", "height", "epcs", "org",
                              "profile"}
    sc/ev/<item>/<hash64>    1                        EPC → events (query ``MATCH_epc``)
    sc/shipment/<tx16>       {"from", "to", "time", "lines": [{"gtin", "lot", "quantity"}],
                              "items", "event", "ts": true}            transaction information
    sc/suspect/<item>        {"status": "quarantined"|"investigating"|"cleared"|"illegitimate",
                              "reason", "evidence", "since", "by", "notified"?: [..]}
    sc/recall/<gtin14>/<lot> {"reason", "by", "since", "tx"}
    sc/implant/<gtin14>/<lot>/<serial>  {"patient", "org", "tx", "height", "time"}

Invariants: an item is created only by commissioning (packs) or packing (cases); its owner
changes only by a ``receiving`` that answers a ``shipping`` to the receiver; ``dispensed`` and
``decommissioned`` are final; history entries are only appended; one capture transaction
applies every event of its document or none (a rejection rolls all of them back). Rules are
in :mod:`carechain.contracts.supply_rules`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from carechain.contracts.identity import (
    account_arg,
    arg,
    get_account,
    get_org,
    is_patient,
    node_account_id,
    only_fields,
    reject,
    text,
)
from carechain.contracts.supply_rules import (
    CAPTURE_PROFILES,
    MAX_CAPTURE_EPCS,
    SUPPLY_ROLES,
    apply_capture,
    item_key,
    require_partner,
    suspect_key,
)
from carechain.encoding import MAX_SAFE_INT, JsonValue
from carechain.ledger.execute import TxContext
from carechain.ledger.state import Overlay
from carechain.ledger.tx import SignedTx

GTIN_RE = re.compile(r"^\d{14}\Z")
GLN_RE = re.compile(r"^\d{13}\Z")
NDC_RE = re.compile(r"^\d{4,5}-\d{3,4}-\d{1,2}\Z")
LOT_RE = re.compile(r"^[!-~]{1,20}\Z")
HEX64_RE = re.compile(r"^[0-9a-f]{64}\Z")
TX_RE = re.compile(r"^[0-9a-f]{64}\Z")
REASON_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}\Z")
SCHEDULES = ("II", "III", "IV", "V", "none")
PRODUCT_KINDS = ("device", "drug")
INVESTIGATION_ACTIONS = ("clear", "illegitimate", "investigate")
MAX_GLNS = 16


def gs1_check(digits: str) -> bool:
    """True iff the last digit of ``digits`` is its GS1 mod-10 check digit."""
    body, check = digits[:-1], int(digits[-1])
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == check


def _gtin(args: Mapping[str, Any], name: str = "gtin") -> str:
    value: str = arg(args, name, str)
    if not GTIN_RE.match(value) or not gs1_check(value):
        raise reject("bad_args", f"args.{name} {value!r} is not a GTIN-14 with a valid check digit")
    return value


def _regulator(state: Overlay, sender: str) -> Mapping[str, Any]:
    """The sender's account if it belongs to an active regulator organisation."""
    acct = get_account(state, sender)
    org_id = acct.get("org")
    org = get_org(state, org_id) if isinstance(org_id, str) else None
    if org is None or "regulator" not in org.get("roles", []):
        raise reject("unauthorized", f"account {sender} does not act for a regulator")
    if acct.get("role") not in ("admin", "auditor"):
        raise reject("unauthorized", f"account {sender} is not a regulator's admin or auditor")
    return acct


def _member_org(state: Overlay, sender: str) -> str:
    org = get_account(state, sender).get("org")
    if not isinstance(org, str):
        raise reject("unauthorized", f"account {sender} does not belong to an organisation")
    get_org(state, org)
    return org


# -- handlers ------------------------------------------------------------------------------------


def set_partner(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``supply.set_partner@1``: a regulator records an authorised trading partner.

    args: ``{"org", "roles": [SUPPLY_ROLES..], "glns": [13 digits..], "licence", "expires": ms,
    "status": "active"|"revoked"}``. A GLN belongs to one organisation.
    """
    args = tx.body.args
    only_fields(args, {"org", "roles", "glns", "licence", "expires", "status"})
    _regulator(state, tx.body.sender)
    org = account_arg(args, "org")
    get_org(state, org)
    roles = arg(args, "roles", list)
    if not roles or any(r not in SUPPLY_ROLES for r in roles) or len(set(roles)) != len(roles):
        raise reject("bad_args", f"args.roles must be distinct values of {list(SUPPLY_ROLES)}")
    glns = arg(args, "glns", list)
    if not 1 <= len(glns) <= MAX_GLNS or len(set(glns)) != len(glns):
        raise reject("bad_args", f"args.glns must list 1 to {MAX_GLNS} distinct GLNs")
    for g in glns:
        if not isinstance(g, str) or not GLN_RE.match(g) or not gs1_check(g):
            raise reject("bad_args", f"GLN {g!r} is not 13 digits with a valid check digit")
        owner = state.get(f"sc/gln/{g}")
        if isinstance(owner, Mapping) and owner.get("org") != org:
            raise reject("duplicate_gln", f"GLN {g} belongs to {owner.get('org')}")
    licence = text(args, "licence")
    expires: int = arg(args, "expires", int)
    if not 0 < expires <= MAX_SAFE_INT:
        raise reject("bad_args", "args.expires must be a time in ms")
    status = arg(args, "status", str)
    if status not in ("active", "revoked"):
        raise reject("bad_args", "args.status must be active or revoked")
    old = state.get(f"sc/partner/{org}")
    old_glns = old.get("glns") if isinstance(old, Mapping) else None
    if isinstance(old_glns, list):
        for g in old_glns:
            if g not in glns:
                state.delete(f"sc/gln/{g}")
    for g in glns:
        state.put(f"sc/gln/{g}", {"org": org})
    state.put(
        f"sc/partner/{org}",
        {
            "by": tx.body.sender,
            "expires": expires,
            "glns": sorted(glns),
            "licence": licence or "",
            "org": org,
            "roles": sorted(roles),
            "since": ctx.height,
            "status": status,
        },
    )
    ctx.touch(org)
    ctx.emit("supply.partner_set", {"org": org, "status": status})


def register_product(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``supply.register_product@1``: a manufacturer (or repackager) registers a product.

    args: ``{"gtin", "name", "kind": "drug"|"device", "schedule": "II".."V"|"none", "ndc"?}``.
    """
    args = tx.body.args
    only_fields(args, {"gtin", "name", "kind", "schedule", "ndc"})
    org = _member_org(state, tx.body.sender)
    require_partner(state, org, ctx.time, ("manufacturer", "repackager"))
    gtin = _gtin(args)
    name = text(args, "name")
    kind = arg(args, "kind", str)
    if kind not in PRODUCT_KINDS:
        raise reject("bad_args", f"args.kind must be one of {list(PRODUCT_KINDS)}")
    schedule = arg(args, "schedule", str)
    if schedule not in SCHEDULES:
        raise reject("bad_args", f"args.schedule must be one of {list(SCHEDULES)}")
    if state.get(f"sc/product/{gtin}") is not None:
        raise reject("duplicate_product", f"GTIN {gtin} is already registered")
    record: dict[str, JsonValue] = {
        "gtin": gtin,
        "kind": kind,
        "manufacturer": org,
        "name": name or gtin,
        "schedule": schedule,
        "since": ctx.height,
    }
    ndc = arg(args, "ndc", str, optional=True)
    if ndc is not None:
        if not NDC_RE.match(ndc):
            raise reject("bad_args", f"args.ndc {ndc!r} is not an NDC (4-4-2, 5-3-2 or 5-4-1)")
        record["ndc"] = ndc
    state.put(f"sc/product/{gtin}", record)
    ctx.emit("supply.product_registered", {"gtin": gtin, "manufacturer": org})


def capture(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``supply.capture@1``: the events of one EPCIS document, all or nothing.

    args: ``{"doc": sha-256 hex of the document bytes, "profile": "dscsa"|"evidence",
    "events": [mapped event..]}`` (see :mod:`carechain.epcis.mapping`).
    """
    args = tx.body.args
    only_fields(args, {"doc", "profile", "events"})
    doc: str = arg(args, "doc", str)
    if not HEX64_RE.match(doc):
        raise reject("bad_args", "args.doc must be a SHA-256 hex digest")
    profile = arg(args, "profile", str)
    if profile not in CAPTURE_PROFILES:
        raise reject("bad_args", f"args.profile must be one of {list(CAPTURE_PROFILES)}")
    events = arg(args, "events", list)
    if not 1 <= len(events) <= 1000:
        raise reject("bad_args", "args.events must list 1 to 1000 events")
    org = _member_org(state, tx.body.sender)
    total = apply_capture(state, ctx, org=org, doc=doc, profile=profile, events=events)
    if total > MAX_CAPTURE_EPCS:
        raise reject("too_many_epcs", f"a capture names at most {MAX_CAPTURE_EPCS} EPCs")
    ctx.emit("supply.captured", {"doc": doc, "epcs": total, "events": len(events), "org": org})


def flag(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``supply.flag@1``: quarantine items as suspect after a refused custody event.

    Signed by a node service account ``<org>.node`` (the node that saw the rejected receipt)
    or a regulator. args: ``{"items": [item..] (≤ 1000), "reason": code, "evidence": tx id}``.
    An item already flagged keeps its case: the first flag opens it, later ones are events.
    """
    args = tx.body.args
    only_fields(args, {"items", "reason", "evidence"})
    sender = tx.body.sender
    acct = get_account(state, sender)
    org = acct.get("org")
    is_node = isinstance(org, str) and sender == node_account_id(org)
    if not is_node:
        _regulator(state, sender)
    items = arg(args, "items", list)
    if not 1 <= len(items) <= 1000 or any(not isinstance(i, str) for i in items):
        raise reject("bad_args", "args.items must list 1 to 1000 item keys")
    reason: str = arg(args, "reason", str)
    if not REASON_RE.match(reason):
        raise reject("bad_args", "args.reason must be a reason code")
    evidence: str = arg(args, "evidence", str)
    if not TX_RE.match(evidence):
        raise reject("bad_args", "args.evidence must be a transaction id (64 hex)")
    for raw in items:
        key = item_key(raw)
        if state.get(suspect_key(key)) is None:
            state.put(
                suspect_key(key),
                {
                    "by": sender,
                    "evidence": evidence,
                    "reason": reason,
                    "since": ctx.height,
                    "status": "quarantined",
                    "time": ctx.time,
                },
            )
    ctx.emit("supply.flagged", {"items": len(items), "reason": reason})


def investigate(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``supply.investigate@1``: a regulator moves a suspect item's case along.

    args: ``{"item", "action": "investigate"|"clear"|"illegitimate", "note"}``;
    quarantined → investigating → cleared | illegitimate. Illegitimate product is notified to
    every trading partner in the item's history and to the regulator (``supply.notice`` event).
    """
    args = tx.body.args
    only_fields(args, {"item", "action", "note"})
    _regulator(state, tx.body.sender)
    key = item_key(arg(args, "item", str))
    action = arg(args, "action", str)
    if action not in INVESTIGATION_ACTIONS:
        raise reject("bad_args", f"args.action must be one of {list(INVESTIGATION_ACTIONS)}")
    note = text(args, "note")
    case = state.get(suspect_key(key))
    if not isinstance(case, Mapping):
        raise reject("not_suspect", f"item {key} is not a suspect product")
    status = case.get("status")
    allowed = {
        "investigate": ("quarantined",),
        "clear": ("investigating",),
        "illegitimate": ("investigating",),
    }[action]
    if status not in allowed:
        raise reject("bad_transition", f"cannot {action} a case that is {status}")
    new = {"investigate": "investigating", "clear": "cleared", "illegitimate": "illegitimate"}
    updated: dict[str, JsonValue] = {
        **case,
        "note": note or "",
        "status": new[action],
        "updated": ctx.height,
    }
    if action == "illegitimate":
        item = state.get(f"sc/item/{key}")
        parties: set[str] = set()
        if isinstance(item, Mapping):
            count = item.get("n", 0)
            for n in range(count if isinstance(count, int) else 0):
                h = state.get(f"sc/hist/{key}/{n:08d}")
                if isinstance(h, Mapping) and isinstance(h.get("owner"), str):
                    parties.add(str(h["owner"]))
        regulator = get_account(state, tx.body.sender).get("org")
        notified = sorted(parties | ({regulator} if isinstance(regulator, str) else set()))
        updated["notified"] = list(notified)
        for party in notified:
            ctx.touch(party)
        ctx.emit("supply.notice", {"item": key, "notified": list(notified)})
    state.put(suspect_key(key), updated)
    ctx.emit("supply.case", {"item": key, "status": new[action]})


def recall(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``supply.recall@1``: the product's manufacturer or a regulator recalls a lot.

    args: ``{"gtin", "lot", "reason"}``.
    """
    args = tx.body.args
    only_fields(args, {"gtin", "lot", "reason"})
    gtin = _gtin(args)
    lot: str = arg(args, "lot", str)
    if not LOT_RE.match(lot):
        raise reject("bad_args", "args.lot must be 1-20 printable characters")
    reason = text(args, "reason")
    product = state.get(f"sc/product/{gtin}")
    if not isinstance(product, Mapping):
        raise reject("unknown_gtin", f"GTIN {gtin} is not a registered product")
    sender = tx.body.sender
    if get_account(state, sender).get("org") != product.get("manufacturer"):
        _regulator(state, sender)
    key = f"sc/recall/{gtin}/{lot}"
    if state.get(key) is not None:
        raise reject("already_recalled", f"lot {lot} of {gtin} is already recalled")
    state.put(
        key, {"by": sender, "reason": reason or "", "since": ctx.height, "tx": tx.tx_id.hex()}
    )
    ctx.emit("supply.recalled", {"gtin": gtin, "lot": lot})


def implant(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``supply.implant@1``: a practitioner links an implanted device serial to a patient.

    args: ``{"item": "01/<gtin>/21/<serial>", "patient": account}``. The device product must be
    registered as ``kind: device``, the item owned by the practitioner's organisation and
    active; it becomes ``dispensed`` (end of its supply life) and the link is kept under its
    lot so that a recall finds the patients.
    """
    args = tx.body.args
    only_fields(args, {"item", "patient"})
    acct = get_account(state, tx.body.sender)
    if acct.get("role") not in ("practitioner", "nurse"):
        raise reject("unauthorized", "implants are recorded by practitioners or nurses")
    org = str(acct.get("org"))
    key = item_key(arg(args, "item", str))
    patient = account_arg(args, "patient")
    if not is_patient(state, patient):
        raise reject("unknown_patient", f"{patient} is not an active patient account")
    item = state.get(f"sc/item/{key}")
    if not isinstance(item, Mapping):
        raise reject("unknown_item", f"item {key} was never commissioned")
    product = state.get(f"sc/product/{item.get('gtin')}")
    if not isinstance(product, Mapping) or product.get("kind") != "device":
        raise reject("not_a_device", f"item {key} is not a registered device")
    if item.get("owner") != org or item.get("status") != "active":
        raise reject("not_owner", f"item {key} is not active at {org}")
    parts = key.split("/")
    state.put(
        f"sc/implant/{item['gtin']}/{item.get('lot', '-')}/{parts[3]}",
        {
            "height": ctx.height,
            "org": org,
            "patient": patient,
            "time": ctx.time,
            "tx": tx.tx_id.hex(),
        },
    )
    state.put(f"sc/item/{key}", {**item, "status": "dispensed"})
    ctx.touch(patient)
    ctx.emit("supply.implanted", {"item": key, "org": org})


def register(registry: Any) -> None:
    """Register the supply kinds."""
    registry.register("supply.set_partner@1", set_partner)
    registry.register("supply.register_product@1", register_product)
    registry.register("supply.capture@1", capture)
    registry.register("supply.flag@1", flag)
    registry.register("supply.investigate@1", investigate)
    registry.register("supply.recall@1", recall)
    registry.register("supply.implant@1", implant)


__all__ = ["gs1_check", "register"]
