"""DSCSA custody rules applied to mapped EPCIS events (``supply.capture@1``), deterministic.

A mapped event (built by :mod:`carechain.epcis.mapping`) is::

    {"id": CBV 2.0 event hash (64 hex), "type": EPCIS event type, "action": "ADD"|"OBSERVE"|
     "DELETE"|"", "step": CBV bizStep word or "", "time": ms, "epcs": [item..],
     "parent"?: item, "lot"?: str, "expiry"?: "YYYY-MM-DD", "from"?: GLN, "to"?: GLN}

Profile ``evidence`` records every event (hash, EPC index) without custody meaning. Profile
``dscsa`` applies, per step (numbered as checked):

* ``commissioning`` (ObjectEvent ADD): 1 sender is an authorised manufacturer/repackager;
  2 each EPC is an SGTIN of a product it registered (``unknown_gtin``); 3 lot and expiry are
  given (``missing_lot``); 4 the serial does not exist yet (``already_commissioned``).
* ``packing`` (AggregationEvent ADD): the sender owns every child, each active
  (``not_owner``); the parent (SSCC) is created or extended, owned by the sender.
* ``unpacking`` (AggregationEvent DELETE): the sender owns the parent; the children leave it.
* ``shipping``: 1 sender is an authorised partner; 2 destination GLN belongs to an authorised,
  unexpired partner (``unknown_partner``/``unauthorized_partner``/``expired_partner``); 3 each
  EPC (a case expands to its packs) exists (``never_commissioned``), is not final
  (``decommissioned``), is owned by the sender (``not_owner``), is not in transit
  (``in_transit``). The transaction information (products, lots, quantities, date, parties)
  is written under ``sc/shipment/<tx16>``; signing the capture is the transaction statement.
* ``receiving``: every EPC is in transit to the sender (``not_shipped_to_you``); ownership moves.
* ``dispensing`` (dispenser), ``decommissioning``, ``destroying``: the sender owns the active
  EPC; the item becomes final.
* any other step: history is appended for known items only.

Every event's hash must be new (``duplicate_event``). Items that are suspect (quarantined or
under investigation) or in a recalled lot cannot be shipped or dispensed (``suspect_product``,
``recalled``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from carechain.contracts.identity import reject
from carechain.encoding import MAX_SAFE_INT, JsonValue
from carechain.ledger.execute import TxContext
from carechain.ledger.state import Overlay

SUPPLY_ROLES = ("dispenser", "logistics", "manufacturer", "repackager", "wholesaler")
CAPTURE_PROFILES = ("dscsa", "evidence")
MAX_CAPTURE_EPCS = 20_000
FINAL = ("decommissioned", "dispensed")
BLOCKING_CASES = ("investigating", "quarantined", "illegitimate")
_ITEM_RE = re.compile(r"^(?:\d{2,4}/[!-.0-~]{1,48}(?:/\d{2,4}/[!-.0-~]{1,48})?|x/[0-9a-f]{40})\Z")
_SGTIN_RE = re.compile(r"^01/(\d{14})/21/([!-.0-~]{1,20})\Z")
_SSCC_RE = re.compile(r"^00/\d{18}\Z")
_HASH_RE = re.compile(r"^[0-9a-f]{64}\Z")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}\Z")
_STEP_RE = re.compile(r"^[a-z_]{0,40}\Z")
_EVENT_FIELDS = {
    "id",
    "type",
    "action",
    "step",
    "time",
    "epcs",
    "parent",
    "lot",
    "expiry",
    "from",
    "to",
}
EVENT_TYPES = (
    "AggregationEvent",
    "AssociationEvent",
    "ObjectEvent",
    "TransactionEvent",
    "TransformationEvent",
)


def item_key(raw: object) -> str:
    """Validate an item key (a Digital Link path, or ``x/<40 hex>`` for non-GS1 ids)."""
    if not isinstance(raw, str) or not _ITEM_RE.match(raw) or "|" in raw or "~" in raw:
        raise reject("bad_args", f"{raw!r} is not an item key (01/<gtin>/21/<serial>, 00/<sscc>…)")
    return raw


def _values(token: str) -> list[str]:
    """One packed value: ``v``, or the run ``~<stem>~<first>~<count>`` = ``stem`` + ``first``,
    ``first + 1`` … zero-padded to ``len(first)``."""
    if not token.startswith("~"):
        return [token]
    parts = token.split("~")
    if len(parts) != 4 or not parts[2].isdigit() or not parts[3].isdigit():
        raise reject("bad_args", f"malformed serial run {token[:40]!r}")
    stem, first, count = parts[1], parts[2], int(parts[3])
    if not 1 <= count <= MAX_CAPTURE_EPCS or len(str(int(first) + count - 1)) > len(first):
        raise reject("bad_args", f"serial run {token[:40]!r} is out of range")
    start, width = int(first), len(first)
    return [stem + str(start + k).zfill(width) for k in range(count)]


def unpack_items(groups: list[Any]) -> list[str]:
    """Item keys from ``epcs`` groups: an item key, or ``<prefix>|<v1>|<v2>…`` standing for
    ``<prefix><v1>``, ``<prefix><v2>`` … where a value may be a run of consecutive serials
    (:func:`_values`). ``|`` and ``~`` are outside GS1's serial character set; packing keeps a
    10,000-serial commissioning within one transaction body."""
    out: list[str] = []
    for group in groups:
        if not isinstance(group, str):
            raise reject("bad_args", "an epcs entry must be a string")
        prefix, sep, rest = group.partition("|")
        if not sep:
            out.append(item_key(group))
            continue
        for token in rest.split("|"):
            out.extend(item_key(prefix + v) for v in _values(token))
            if len(out) > MAX_CAPTURE_EPCS:
                raise reject("too_many_epcs", f"a capture names at most {MAX_CAPTURE_EPCS} EPCs")
    return out


def suspect_key(item: str) -> str:
    """State key of an item's suspect-product case."""
    return f"sc/suspect/{item}"


def require_partner(
    state: Overlay, org: str, now: int, roles: Sequence[str] | None = None
) -> Mapping[str, Any]:
    """The active, unexpired trading-partner record of ``org`` (with one of ``roles``)."""
    raw = state.get(f"sc/partner/{org}")
    partner: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    if not isinstance(raw, Mapping) or partner.get("status") != "active":
        raise reject("unauthorized_partner", f"{org} is not an authorised trading partner")
    if int(partner.get("expires", 0)) <= now:
        raise reject("expired_partner", f"the trading-partner licence of {org} has expired")
    if roles is not None and not set(roles) & set(partner.get("roles", [])):
        raise reject("unauthorized_partner", f"{org} is not a {' or '.join(roles)}")
    return partner


class _Capture:
    """One capture transaction's working set (items read once, written at the end)."""

    def __init__(self, state: Overlay, ctx: TxContext, org: str, doc: str, profile: str) -> None:
        self.state, self.ctx, self.org, self.doc, self.profile = state, ctx, org, doc, profile
        self.items: dict[str, dict[str, JsonValue] | None] = {}
        self.txid = ctx.tx.tx_id.hex()

    def item(self, key: str) -> dict[str, JsonValue] | None:
        if key not in self.items:
            raw = self.state.get(f"sc/item/{key}")
            self.items[key] = dict(raw) if isinstance(raw, Mapping) else None
        return self.items[key]

    def put(self, key: str, value: dict[str, JsonValue]) -> None:
        self.items[key] = value

    def history(
        self, key: str, item: dict[str, JsonValue], event: str, step: str, time: int
    ) -> None:
        n = int(item.get("n", 0))  # type: ignore[arg-type]
        self.state.put(
            f"sc/hist/{key}/{n:08d}",
            {
                "event": event,
                "height": self.ctx.height,
                "owner": item.get("owner", ""),
                "step": step,
                "time": time,
                "tx": self.txid,
            },
        )
        item["n"] = n + 1

    def flush(self) -> None:
        for key, value in self.items.items():
            if value is not None:
                self.state.put(f"sc/item/{key}", value)

    def blocked(self, key: str, item: Mapping[str, Any]) -> None:
        case = self.state.get(suspect_key(key))
        if isinstance(case, Mapping) and case.get("status") in BLOCKING_CASES:
            raise reject("suspect_product", f"item {key} is {case.get('status')} as suspect")
        lot = item.get("lot")
        if isinstance(lot, str) and self.state.get(f"sc/recall/{item.get('gtin')}/{lot}"):
            raise reject("recalled", f"item {key} belongs to recalled lot {lot}")


def _event(raw: object, i: int) -> dict[str, Any]:
    if not isinstance(raw, Mapping) or not set(raw) <= _EVENT_FIELDS:
        raise reject("bad_args", f"events[{i}] must be a mapped event {sorted(_EVENT_FIELDS)}")
    ev = dict(raw)
    if not isinstance(ev.get("id"), str) or not _HASH_RE.match(ev["id"]):
        raise reject("bad_args", f"events[{i}].id must be a CBV 2.0 event hash (64 hex)")
    if ev.get("type") not in EVENT_TYPES:
        raise reject("bad_args", f"events[{i}].type must be one of {list(EVENT_TYPES)}")
    if ev.get("action", "") not in ("", "ADD", "OBSERVE", "DELETE"):
        raise reject("bad_args", f"events[{i}].action must be ADD, OBSERVE or DELETE")
    if not isinstance(ev.get("step", ""), str) or not _STEP_RE.match(ev.get("step", "")):
        raise reject("bad_args", f"events[{i}].step must be a CBV bizStep word")
    t = ev.get("time")
    if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t <= MAX_SAFE_INT:
        raise reject("bad_args", f"events[{i}].time must be ms")
    epcs = ev.get("epcs", [])
    if not isinstance(epcs, list):
        raise reject("bad_args", f"events[{i}].epcs must be a list")
    ev["epcs"] = unpack_items(epcs)
    if len(set(ev["epcs"])) != len(ev["epcs"]):
        raise reject("bad_args", f"events[{i}] names an EPC twice")
    if "parent" in ev:
        item_key(ev["parent"])
    for name in ("lot", "from", "to"):
        if name in ev and not (isinstance(ev[name], str) and 0 < len(ev[name]) <= 20):
            raise reject("bad_args", f"events[{i}].{name} must be a short string")
    if "expiry" in ev and not (isinstance(ev["expiry"], str) and _DATE_RE.match(ev["expiry"])):
        raise reject("bad_args", f"events[{i}].expiry must be YYYY-MM-DD")
    return ev


def _sgtin(key: str, what: str = "EPC") -> tuple[str, str]:
    m = _SGTIN_RE.match(key)
    if m is None:
        raise reject("bad_epc", f"{what} {key} is not an SGTIN (01/<gtin>/21/<serial>)")
    return m.group(1), m.group(2)


def _partner_of_gln(state: Overlay, gln: str | None, now: int, what: str) -> str:
    if gln is None:
        raise reject("missing_party", f"the event names no {what} (owning_party GLN)")
    owner = state.get(f"sc/gln/{gln}")
    if not isinstance(owner, Mapping):
        raise reject("unknown_partner", f"GLN {gln} belongs to no trading partner")
    org = str(owner["org"])
    require_partner(state, org, now)
    return org


def _commission(c: _Capture, ev: Mapping[str, Any]) -> None:
    partner = require_partner(c.state, c.org, c.ctx.time, ("manufacturer", "repackager"))
    del partner
    if "lot" not in ev or "expiry" not in ev:
        raise reject("missing_lot", "a commissioning event carries the lot and expiry (ILMD)")
    products: dict[str, Mapping[str, Any]] = {}
    for key in ev["epcs"]:
        gtin, _ = _sgtin(key)
        if gtin not in products:
            product = c.state.get(f"sc/product/{gtin}")
            if not isinstance(product, Mapping):
                raise reject("unknown_gtin", f"GTIN {gtin} is not a registered product")
            if product.get("manufacturer") != c.org:
                raise reject("unauthorized", f"GTIN {gtin} is registered by another manufacturer")
            products[gtin] = product
        if c.item(key) is not None:
            raise reject("already_commissioned", f"serial {key} was already commissioned")
        item: dict[str, JsonValue] = {
            "expiry": ev["expiry"],
            "gtin": gtin,
            "item": key,
            "lot": ev["lot"],
            "n": 0,
            "owner": c.org,
            "since": c.ctx.height,
            "status": "active",
        }
        c.history(key, item, ev["id"], "commissioning", ev["time"])
        c.put(key, item)


def _owned_active(c: _Capture, key: str) -> dict[str, JsonValue]:
    item = c.item(key)
    if item is None:
        raise reject("never_commissioned", f"item {key} was never commissioned")
    if item.get("status") in FINAL:
        raise reject("decommissioned", f"item {key} is {item.get('status')}")
    if item.get("owner") != c.org:
        raise reject("not_owner", f"item {key} is owned by {item.get('owner')}, not {c.org}")
    if item.get("status") == "shipped":
        raise reject("in_transit", f"item {key} is in transit")
    return item


def _pack(c: _Capture, ev: Mapping[str, Any]) -> None:
    require_partner(c.state, c.org, c.ctx.time)
    parent = ev.get("parent")
    if not isinstance(parent, str) or not _SSCC_RE.match(parent):
        raise reject("bad_epc", "an aggregation names an SSCC parent (00/<sscc>)")
    case = c.item(parent)
    adding = ev.get("action") == "ADD"
    if case is None:
        if not adding:
            raise reject("never_commissioned", f"case {parent} does not exist")
        case = {
            "children": [],
            "item": parent,
            "n": 0,
            "owner": c.org,
            "since": c.ctx.height,
            "status": "active",
        }
    elif case.get("owner") != c.org:
        raise reject("not_owner", f"case {parent} is owned by {case.get('owner')}")
    listed = case.get("children", [])
    children: set[str] = {str(k) for k in listed} if isinstance(listed, list) else set()
    for key in ev["epcs"]:
        child = _owned_active(c, key)
        if adding:
            if child.get("parent") not in (None, parent):
                raise reject("already_packed", f"item {key} is in case {child.get('parent')}")
            child["parent"] = parent
            children.add(key)
        else:
            if key not in children:
                raise reject("not_in_case", f"item {key} is not in case {parent}")
            child.pop("parent", None)
            children.discard(key)
        c.history(key, child, ev["id"], ev["step"] or "packing", ev["time"])
    case["children"] = sorted(children)
    c.history(parent, case, ev["id"], ev["step"] or "packing", ev["time"])
    c.put(parent, case)


def _expand(c: _Capture, keys: Sequence[str]) -> list[str]:
    """Cases name their packs: the case and every child, once."""
    out: list[str] = []
    for key in keys:
        out.append(key)
        item = c.item(key)
        if item is not None and _SSCC_RE.match(key):
            out.extend(str(k) for k in item.get("children", []))  # type: ignore[union-attr]
    return list(dict.fromkeys(out))


def _ship(c: _Capture, ev: Mapping[str, Any]) -> None:
    require_partner(c.state, c.org, c.ctx.time)
    to = _partner_of_gln(c.state, ev.get("to"), c.ctx.time, "destination")
    if to == c.org:
        raise reject("bad_args", "a shipment goes to another organisation")
    lines: dict[tuple[str, str], int] = {}
    keys = _expand(c, ev["epcs"])
    for key in keys:
        item = _owned_active(c, key)
        c.blocked(key, item)
        item["status"] = "shipped"
        item["shipment"] = {"from": c.org, "to": to, "tx": c.txid}
        c.history(key, item, ev["id"], "shipping", ev["time"])
        if "gtin" in item:
            line = (str(item["gtin"]), str(item.get("lot", "")))
            lines[line] = lines.get(line, 0) + 1
    c.state.put(
        f"sc/shipment/{c.txid[:16]}",
        {
            "event": ev["id"],
            "from": c.org,
            "items": len(keys),
            "time": ev["time"],
            "to": to,
            "ts": True,
            "lines": [
                {"gtin": g, "lot": lot, "quantity": q} for (g, lot), q in sorted(lines.items())
            ],
        },
    )
    c.ctx.touch(to)


def _receive(c: _Capture, ev: Mapping[str, Any]) -> None:
    require_partner(c.state, c.org, c.ctx.time)
    for key in _expand(c, ev["epcs"]):
        item = c.item(key)
        if item is None:
            raise reject("never_commissioned", f"item {key} was never commissioned")
        shipment = item.get("shipment")
        if (
            item.get("status") != "shipped"
            or not isinstance(shipment, Mapping)
            or shipment.get("to") != c.org
        ):
            raise reject("not_shipped_to_you", f"item {key} was not shipped to {c.org}")
        item["owner"] = c.org
        item["status"] = "active"
        item.pop("shipment", None)
        c.history(key, item, ev["id"], "receiving", ev["time"])


def _end(c: _Capture, ev: Mapping[str, Any], step: str) -> None:
    roles = ("dispenser",) if step == "dispensing" else None
    require_partner(c.state, c.org, c.ctx.time, roles)
    for key in ev["epcs"]:
        item = _owned_active(c, key)
        if step == "dispensing":
            c.blocked(key, item)
        item["status"] = "dispensed" if step == "dispensing" else "decommissioned"
        c.history(key, item, ev["id"], step, ev["time"])


def _observe(c: _Capture, ev: Mapping[str, Any]) -> None:
    for key in ev["epcs"]:
        item = c.item(key)
        if item is not None:
            c.history(key, item, ev["id"], ev["step"] or "observing", ev["time"])


def apply_capture(
    state: Overlay, ctx: TxContext, *, org: str, doc: str, profile: str, events: list[Any]
) -> int:
    """Apply every event of one document (raise ContractError to refuse them all)."""
    c = _Capture(state, ctx, org, doc, profile)
    total = 0
    for i, raw in enumerate(events):
        ev = _event(raw, i)
        total += len(ev["epcs"])
        if total > MAX_CAPTURE_EPCS:
            raise reject("too_many_epcs", f"a capture names at most {MAX_CAPTURE_EPCS} EPCs")
        ekey = f"sc/event/{ev['id']}"
        if state.get(ekey) is not None:
            raise reject("duplicate_event", f"event {ev['id']} was already captured")
        step = ev.get("step", "")
        if profile == "dscsa":
            if step == "commissioning" and ev.get("action") == "ADD":
                _commission(c, ev)
            elif step in ("packing", "unpacking") or ev["type"] == "AggregationEvent":
                _pack(c, ev)
            elif step == "shipping":
                _ship(c, ev)
            elif step == "receiving":
                _receive(c, ev)
            elif step in ("dispensing", "decommissioning", "destroying"):
                _end(c, ev, step)
            else:
                _observe(c, ev)
        state.put(
            ekey,
            {
                "doc": doc,
                "epcs": len(ev["epcs"]),
                "height": ctx.height,
                "org": org,
                "profile": profile,
                "step": step,
                "time": ev["time"],
                "tx": c.txid,
                "type": ev["type"],
            },
        )
        for key in ev["epcs"] + ([ev["parent"]] if "parent" in ev else []):
            state.put(f"sc/ev/{key}/{ev['id']}", 1)
    c.flush()
    return total


__all__ = [
    "CAPTURE_PROFILES",
    "MAX_CAPTURE_EPCS",
    "SUPPLY_ROLES",
    "apply_capture",
    "item_key",
    "require_partner",
    "suspect_key",
]
