"""EPCIS event → the fields the custody rules need → ``supply.capture@1`` arguments.

``prepare_capture(raw)`` is the whole edge pipeline for one document, before anything is signed:

1. parse (JSON, size-bounded) and validate against the official schema (:mod:`.schema`);
2. compute each event's CBV 2.0 hash ID (:mod:`.event_hash`) and compare it with the
   ``eventID`` the document supplies: the CBV 2.0 hash or the pre-publication hash is accepted;
   any other ``ni:///`` id is refused (:class:`EventHashMismatchError`); non-hash ids
   (``urn:uuid:…``) are kept as the document's own name and the hash is recorded beside them;
3. map each event to ``{"id", "type", "action", "step", "time", "epcs", "parent"?, "lot"?,
   "expiry"?, "from"?, "to"?}``: EPCs become Digital Link item keys (``01/<gtin>/21/<serial>``,
   ``00/<sscc>``; anything else ``x/<sha-256 prefix>``), times integer ms, the owning-party
   GLNs of ``sourceList``/``destinationList`` the parties, ILMD ``cbvmda:lotNumber`` /
   ``cbvmda:itemExpirationDate`` the lot and expiry.

Nothing is partially applied: the node signs ONE transaction per document.
"""

from __future__ import annotations

import hashlib
import json
import re
import time as _time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from carechain.epcis.event_hash import (
    context_namespaces,
    dl_constrain,
    epc_to_dl,
    event_hash_id,
    legacy_event_hash_id,
)
from carechain.epcis.schema import document_events, validate_epcis
from carechain.errors import LimitExceededError, ValidationError

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
MAX_EVENTS = 1000
DL_HOST = "https://id.gs1.org/"
_STEP_PREFIXES = ("https://ref.gs1.org/cbv/BizStep-", "urn:epcglobal:cbv:bizstep:", "cbv:BizStep-")
_SDT_OWNING = (
    "owning_party",
    "https://ref.gs1.org/cbv/SDT-owning_party",
    "urn:epcglobal:cbv:sdt:owning_party",
    "cbv:SDT-owning_party",
)


class EventHashMismatchError(ValidationError):
    """An ``eventID`` of hash form is not the hash of its event (HTTP 422)."""

    def __init__(self, index: int, given: str, computed: str) -> None:
        super().__init__(
            f"events[{index}]: eventID {given} is not this event's hash; computed {computed}",
            code="event_hash_mismatch",
        )
        self.index, self.given, self.computed = index, given, computed


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedEvent:
    """One event as captured."""

    hash_id: str
    """Its CBV 2.0 event hash ID (``ni:///sha-256;…?ver=CBV2.0``)."""
    event_id: str | None
    """The ``eventID`` the document gave, if any."""
    id_check: str
    """``cbv2.0`` | ``legacy`` | ``absent`` | ``other`` | ``mismatch`` (only when not strict)."""
    mapped: dict[str, Any]
    """The contract's view of it (``supply.capture@1`` ``events[i]``)."""
    event: Mapping[str, Any]
    """The event as received."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedCapture:
    """A document ready to be signed as one ``supply.capture@1``."""

    raw: bytes
    """The document bytes as received (stored off chain verbatim)."""
    digest: str
    """SHA-256 hex of ``raw`` (``args.doc``)."""
    events: tuple[PreparedEvent, ...]
    """Its events, in document order."""

    def args(self, profile: str) -> dict[str, Any]:
        """``supply.capture@1`` arguments."""
        return {"doc": self.digest, "events": [e.mapped for e in self.events], "profile": profile}


def to_ms(value: str) -> int:
    """An xsd:dateTime with offset → Unix milliseconds."""
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(f"{value!r} is not an ISO 8601 date-time", code="bad_time") from None
    if dt.tzinfo is None:
        raise ValidationError(f"{value!r} has no time-zone offset", code="bad_time")
    return int(dt.timestamp() * 1000)


def item_of(epc: str) -> str:
    """The item key of an EPC or Digital Link URI (``01/<gtin>/21/<serial>``, ``00/<sscc>`` …);
    ``x/<40 hex>`` (a SHA-256 prefix) for identifiers that are not GS1 keys."""
    dl = epc_to_dl(epc) if epc.startswith("urn:epc:") else dl_constrain(epc)
    if dl is not None and dl.startswith(DL_HOST) and len(dl) - len(DL_HOST) <= 100:
        return dl[len(DL_HOST) :]
    return "x/" + hashlib.sha256(epc.encode()).hexdigest()[:40]


_RUN_RE = re.compile(r"^(.*?)(\d+)\Z")


def _runs(values: list[str]) -> list[str]:
    """Collapse consecutive serials ``stem + zero-padded number`` into ``~stem~first~count``."""
    out: list[str] = []
    i = 0
    while i < len(values):
        m = _RUN_RE.match(values[i])
        j = i + 1
        if m is not None:
            stem, first = m.group(1), m.group(2)
            w = len(first)
            while j < len(values):
                n = str(int(first) + j - i)
                if len(n) > w or values[j] != stem + n.zfill(w):
                    break
                j += 1
        if j - i >= 3 and m is not None:
            out.append(f"~{m.group(1)}~{m.group(2)}~{j - i}")
        else:
            out.extend(values[i:j])
        i = j
    return out


def pack_items(keys: list[str], *, max_chars: int = 15_000) -> list[str]:
    """Group item keys sharing a prefix (up to the last ``/``) as ``<prefix>|<v1>|<v2>…``
    strings of at most ``max_chars``, runs of consecutive serials collapsed (the contract's
    ``unpack_items`` inverts it)."""
    out: list[str] = []
    grouped: list[str] = []
    for key in keys:  # keys sharing a prefix, in order, with runs collapsed
        p, _, v = key.rpartition("/")
        grouped.append(f"{p}/\x00{v}")
    keys = []
    i = 0
    while i < len(grouped):
        p = grouped[i].split("\x00")[0]
        j = i
        vals = []
        while j < len(grouped) and grouped[j].split("\x00")[0] == p:
            vals.append(grouped[j].split("\x00")[1])
            j += 1
        keys.extend(p + v for v in _runs(vals))
        i = j
    prefix, size = "", 0
    values: list[str] = []

    def close() -> None:
        if len(values) == 1 and not values[0].startswith("~"):
            out.append(prefix + values[0])
        elif values:
            out.append(prefix + "|" + "|".join(values))

    for key in keys:
        p, _, v = key.rpartition("/")
        p += "/"
        if p != prefix or size + len(v) + 1 > max_chars:
            close()
            prefix, values, size = p, [], len(p)
        values.append(v)
        size += len(v) + 1
    close()
    return out


def _step(value: object) -> str:
    if not isinstance(value, str):
        return ""
    for prefix in _STEP_PREFIXES:
        if value.startswith(prefix):
            return value[len(prefix) :]
    return value if value.isidentifier() and value.islower() else ""


def _gln(value: str) -> str:
    item = item_of(value)
    parts = item.split("/")
    if parts[0] in ("414", "417") and len(parts) >= 2:
        return parts[1]
    return value[:20]


def _party(entries: object, field: str) -> str | None:
    if not isinstance(entries, list):
        return None
    for e in entries:
        if (
            isinstance(e, Mapping)
            and e.get("type") in _SDT_OWNING
            and isinstance(e.get(field), str)
        ):
            return _gln(e[field])
    return None


def _ilmd(event: Mapping[str, Any], local: str) -> str | None:
    ilmd = event.get("ilmd")
    if not isinstance(ilmd, Mapping):
        return None
    for key, value in ilmd.items():
        if key.split(":")[-1] == local and isinstance(value, str | int):
            return str(value)[:20]
    return None


def map_event(event: Mapping[str, Any], hash_id: str) -> dict[str, Any]:
    """Step 3 for one event."""
    epcs: list[str] = []
    for name in ("epcList", "childEPCs", "inputEPCList", "outputEPCList"):
        for epc in event.get(name, []) or []:
            if isinstance(epc, str):
                epcs.append(item_of(epc))
    mapped: dict[str, Any] = {
        "action": event.get("action", ""),
        "epcs": pack_items(list(dict.fromkeys(epcs))),
        "id": hash_id.split(";")[1][:64],
        "step": _step(event.get("bizStep")),
        "time": to_ms(str(event.get("eventTime"))),
        "type": event.get("type"),
    }
    if isinstance(event.get("parentID"), str):
        mapped["parent"] = item_of(event["parentID"])
    lot = _ilmd(event, "lotNumber")
    expiry = _ilmd(event, "itemExpirationDate")
    if lot is not None:
        mapped["lot"] = lot
    if expiry is not None:
        mapped["expiry"] = expiry
    src = _party(event.get("sourceList"), "source")
    dst = _party(event.get("destinationList"), "destination")
    if src is not None:
        mapped["from"] = src
    if dst is not None:
        mapped["to"] = dst
    return mapped


def parse_document(raw: bytes) -> Mapping[str, Any]:
    """Step 1 (size bound, JSON, schema)."""
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise LimitExceededError(f"EPCIS document exceeds {MAX_DOCUMENT_BYTES} bytes")
    try:  # orjson: depth cap, lone surrogates, NaN/Infinity refused
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"not JSON: {exc}", code="malformed_json") from None
    try:  # I-JSON (RFC 7493 §2.3): duplicate names are ambiguous, refused like every other edge
        json.loads(raw, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as exc:
        raise ValidationError(f"not JSON: {exc}", code="malformed_json") from None
    return validate_epcis(doc)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key[:60]!r}")
        out[key] = value
    return out



def prepare_capture(raw: bytes, *, strict_ids: bool = True) -> PreparedCapture:
    """Steps 1–3 for a document (or a single event); see the module docstring."""
    doc = parse_document(raw)
    events = document_events(doc)
    if not 1 <= len(events) <= MAX_EVENTS:
        raise ValidationError(
            f"a capture holds 1 to {MAX_EVENTS} events, got {len(events)}", code="event_count"
        )
    ns = context_namespaces(doc.get("@context"))
    out = []
    seen: set[str] = set()
    for i, event in enumerate(events):
        computed = event_hash_id(event, ns)  # step 2
        given = event.get("eventID")
        check = "absent"
        if isinstance(given, str):
            if given == computed:
                check = "cbv2.0"
            elif not given.startswith("ni:///"):
                check = "other"
            elif given == legacy_event_hash_id(event, ns):
                check = "legacy"
            elif strict_ids:
                raise EventHashMismatchError(i, given, computed)
            else:
                check = "mismatch"
        if computed in seen:
            raise ValidationError(f"events[{i}] repeats an earlier event", code="duplicate_event")
        seen.add(computed)
        out.append(
            PreparedEvent(
                hash_id=computed,
                event_id=given if isinstance(given, str) else None,
                id_check=check,
                mapped=map_event(event, computed),
                event=event,
            )
        )
    return PreparedCapture(raw=raw, digest=hashlib.sha256(raw).hexdigest(), events=tuple(out))


def commissioning_document(
    *, gtin: str, serials: list[str], lot: str, expiry: str, time_ms: int, gln: str
) -> bytes:
    """An EPCIS 2.0 document commissioning ``serials`` of ``gtin`` (demo, benchmark, tests)."""
    return build_document(
        [
            {
                "type": "ObjectEvent",
                "action": "ADD",
                "bizStep": "commissioning",
                "disposition": "active",
                "epcList": [f"{DL_HOST}01/{gtin}/21/{s}" for s in serials],
                "eventTime": iso(time_ms),
                "eventTimeZoneOffset": "+00:00",
                "readPoint": {"id": f"{DL_HOST}414/{gln}"},
                "ilmd": {"cbvmda:lotNumber": lot, "cbvmda:itemExpirationDate": expiry},
            }
        ]
    )


def iso(time_ms: int) -> str:
    """Unix ms → ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    secs, ms = divmod(time_ms, 1000)
    return _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(secs)) + f".{ms:03d}Z"


def build_document(events: list[dict[str, Any]]) -> bytes:
    """A minimal EPCIS 2.0 document around ``events`` (each gets its CBV 2.0 ``eventID``)."""
    ctx = ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"]
    for e in events:
        e["eventID"] = event_hash_id(e)
    doc = {
        "@context": ctx,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": events[0]["eventTime"],
        "epcisBody": {"eventList": events},
    }
    return orjson.dumps(doc)


__all__ = [
    "EventHashMismatchError",
    "PreparedCapture",
    "PreparedEvent",
    "build_document",
    "commissioning_document",
    "item_of",
    "map_event",
    "pack_items",
    "parse_document",
    "prepare_capture",
    "to_ms",
]
