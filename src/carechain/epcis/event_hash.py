"""CBV 2.0 event hash ID (GS1 CBV 2.0 §8.9): a syntax-independent fingerprint of an EPCIS event.

The algorithm, as implemented here (numbered as in CBV 2.0 §8.9.2):

1. ``eventType=<type>``;
2. the standard fields in the fixed order of :data:`PROP_ORDER`, each rendered as
   ``name=value`` (no separators); fields of a list are rendered per element and the elements
   are sorted lexically (UTF-8 code-unit order), so the order in the document does not matter;
   ``bizTransactionList``/``sourceList``/``destinationList`` elements render ``type=`` first;
3. every value is normalised: date-times to UTC with millisecond precision and ``Z``;
   CBV URNs (``urn:epcglobal:cbv:bizstep:…``) and bare CBV words (``shipping``) to the CBV 2.0
   web URIs (``https://ref.gs1.org/cbv/BizStep-shipping``); EPC URIs (SGTIN, SSCC, SGLN, LGTIN,
   GRAI, GIAI, PGLN, GSRN, GDTI, SGTIN patterns) and any GS1 Digital Link URI to the
   constrained canonical Digital Link (``https://id.gs1.org/01/<GTIN-14>/21/<serial>``);
   numbers without superfluous zeros;
4. user extensions (any field not in the standard order), with their namespace prefix expanded
   to ``{namespace-uri}localName``, rendered recursively and sorted, appended at the end;
5. ``recordTime``, ``eventID``, ``certificationInfo``, ``errorDeclaration`` (declared later
   against the same event id), comments and ``@context`` are ignored;
6. the UTF-8 pre-hash string is hashed with SHA-256 → ``ni:///sha-256;<hex>?ver=CBV2.0``.

:func:`legacy_pre_hash` is the *pre-publication* form of the same algorithm (EPC URNs and
``urn:epcglobal:cbv`` vocabulary kept as is, list children sorted by their full text), with which
several GS1 example documents' ``eventID`` values were generated; capture accepts an ``eventID``
that matches either form (ADR 0008) and always records the CBV 2.0 hash.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

HASH_PREFIX = "ni:///sha-256;"
HASH_SUFFIX = "?ver=CBV2.0"
CBV = "https://ref.gs1.org/cbv/"
GS1_VOC = "https://ref.gs1.org/voc/"
DL = "https://id.gs1.org/"
EVENT_ID_RE = re.compile(r"^ni:///sha-256;([0-9a-f]{64})\?ver=CBV2\.0\Z")

_QTY = ("epcClass", "quantity", "uom")
_META = (
    "time",
    "startTime",
    "endTime",
    "deviceID",
    "deviceMetadata",
    "rawData",
    "dataProcessingMethod",
    "bizRules",
)
_REPORT = (
    "type",
    "exception",
    "deviceID",
    "deviceMetadata",
    "rawData",
    "dataProcessingMethod",
    "time",
    "microorganism",
    "chemicalSubstance",
    "value",
    "component",
    "stringValue",
    "booleanValue",
    "hexBinaryValue",
    "uriValue",
    "minValue",
    "maxValue",
    "meanValue",
    "sDev",
    "percRank",
    "percValue",
    "uom",
    "coordinateReferenceSystem",
)
EPC_LISTS = ("epcList", "inputEPCList", "childEPCs", "outputEPCList")
QTY_LISTS = ("quantityList", "childQuantityList", "inputQuantityList", "outputQuantityList")
TYPED_LISTS = {
    "bizTransactionList": "bizTransaction",
    "sourceList": "source",
    "destinationList": "destination",
}
PROP_ORDER = (
    "eventTime",
    "eventTimeZoneOffset",
    "epcList",
    "parentID",
    "inputEPCList",
    "childEPCs",
    "quantityList",
    "childQuantityList",
    "inputQuantityList",
    "outputEPCList",
    "outputQuantityList",
    "action",
    "transformationID",
    "bizStep",
    "disposition",
    "persistentDisposition",
    "readPoint",
    "bizLocation",
    "bizTransactionList",
    "sourceList",
    "destinationList",
    "sensorElementList",
)
"""CBV 2.0 §8.9.2 step 2: the canonical property order (ILMD and extensions follow, sorted)."""
IGNORED = frozenset(
    {
        "type",
        "eventID",
        "recordTime",
        "certificationInfo",
        "errorDeclaration",
        "@context",
        "rdfs:comment",
        "comment",
    }
)
"""Not hashed: an ``errorDeclaration`` is added to an event later and keeps its ``eventID``."""
_VOCAB_FIELD = {"bizStep": "BizStep-", "disposition": "Disp-", "set": "Disp-", "unset": "Disp-"}
_URN_VOCAB = (
    ("urn:epcglobal:cbv:bizstep:", "BizStep-"),
    ("urn:epcglobal:cbv:disp:", "Disp-"),
    ("urn:epcglobal:cbv:btt:", "BTT-"),
    ("urn:epcglobal:cbv:sdt:", "SDT-"),
    ("urn:epcglobal:cbv:er:", "ER-"),
)
_LEGACY_VOCAB = {voc: urn for urn, voc in _URN_VOCAB}
_BARE_RE = re.compile(r"^[a-z][a-z_]*\Z")
_TIME_FIELDS = frozenset({"eventTime", "time", "startTime", "endTime", "declarationTime"})
_NUMBER_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")
_DEFAULT_NS = {
    "gs1": GS1_VOC,
    "cbv": CBV,
    "epcis": "https://ref.gs1.org/epcis/",
    "cbvmda": "urn:epcglobal:cbv:mda:",
}


# -- value normalisation (step 3) ------------------------------------------------------------


def gs1_check_digit(digits: str) -> str:
    """GS1 mod-10 check digit of ``digits`` (weights 3,1,3,… from the right)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return str((10 - total % 10) % 10)


def _pct(value: str) -> str:
    """GS1 Digital Link percent-encoding of characters EPC URIs allow but DL reserves."""
    for ch, enc in (
        ("!", "%21"),
        ("(", "%28"),
        (")", "%29"),
        ("*", "%2A"),
        ("+", "%2B"),
        (",", "%2C"),
        (":", "%3A"),
    ):
        value = value.replace(ch, enc)
    return value


def _gtin14(prefix: str, item_ref: str) -> str:
    body = item_ref[0] + prefix + item_ref[1:]
    return body + gs1_check_digit(body)


_EPC_RE = re.compile(r"^urn:epc:(id|class|idpat):([a-z]+):(.+)\Z")


def epc_to_dl(uri: str) -> str | None:
    """The constrained canonical GS1 Digital Link of an EPC URI, or None if not convertible."""
    m = _EPC_RE.match(uri)
    if m is None:
        return None
    kind, scheme, rest = m.groups()
    parts = rest.split(".")
    try:
        if kind == "id" and scheme == "sgtin" and len(parts) >= 3:
            prefix, item, serial = parts[0], parts[1], ".".join(parts[2:])
            return f"{DL}01/{_gtin14(prefix, item)}/21/{_pct(serial)}"
        if kind == "class" and scheme == "lgtin" and len(parts) >= 3:
            prefix, item, lot = parts[0], parts[1], ".".join(parts[2:])
            return f"{DL}01/{_gtin14(prefix, item)}/10/{_pct(lot)}"
        if kind == "idpat" and scheme == "sgtin" and len(parts) == 3 and parts[2] == "*":
            return f"{DL}01/{_gtin14(parts[0], parts[1])}"
        if kind == "id" and scheme == "sscc" and len(parts) == 2:
            body = parts[1][0] + parts[0] + parts[1][1:]
            return f"{DL}00/{body}{gs1_check_digit(body)}"
        if kind == "id" and scheme == "sgln" and len(parts) >= 3:
            body = parts[0] + parts[1]
            ext = ".".join(parts[2:])
            gln = body + gs1_check_digit(body)
            return f"{DL}414/{gln}" + ("" if ext == "0" else f"/254/{_pct(ext)}")
        if kind == "id" and scheme == "pgln" and len(parts) == 2:
            body = parts[0] + parts[1]
            return f"{DL}417/{body}{gs1_check_digit(body)}"
        if kind == "id" and scheme == "grai" and len(parts) >= 3:
            body = "0" + parts[0] + parts[1]
            return f"{DL}8003/{body}{gs1_check_digit(body)}{_pct('.'.join(parts[2:]))}"
        if kind == "id" and scheme == "giai" and len(parts) >= 2:
            return f"{DL}8004/{parts[0]}{_pct('.'.join(parts[1:]))}"
        if kind == "id" and scheme == "gsrn" and len(parts) == 2:
            body = parts[0] + parts[1]
            return f"{DL}8018/{body}{gs1_check_digit(body)}"
        if kind == "id" and scheme == "gdti" and len(parts) >= 3:
            body = parts[0] + parts[1]
            return f"{DL}253/{body}{gs1_check_digit(body)}{_pct('.'.join(parts[2:]))}"
    except IndexError:
        return None
    return None


_DL_RE = re.compile(r"^https?://[^/?#]+(/[^?#]*)(\?[^#]*)?(#.*)?\Z")
_DL_PRIMARY = (
    "01",
    "00",
    "414",
    "417",
    "8003",
    "8004",
    "8006",
    "8010",
    "8017",
    "8018",
    "253",
    "255",
    "401",
    "402",
)


def dl_constrain(uri: str) -> str | None:
    """The constrained canonical form of a GS1 Digital Link URI (any domain → id.gs1.org,
    no query string, the finest identification level only), or None if ``uri`` is not one."""
    m = _DL_RE.match(uri)
    if m is None:
        return None
    segs = [s for s in m.group(1).split("/") if s]
    for i in range(len(segs) - 1):
        ai = segs[i]
        if ai not in _DL_PRIMARY:
            continue
        pairs = dict(zip(segs[i::2], segs[i + 1 :: 2], strict=False))
        key = pairs[ai]
        if ai == "01":
            key = key.zfill(14)
            if "21" in pairs:
                return f"{DL}01/{key}/21/{pairs['21']}"
            if "10" in pairs:
                return f"{DL}01/{key}/10/{pairs['10']}"
            return f"{DL}01/{key}"
        if ai == "414" and "254" in pairs:
            return f"{DL}414/{key}/254/{pairs['254']}"
        if ai == "8010" and "8011" in pairs:
            return f"{DL}8010/{key}/8011/{pairs['8011']}"
        return f"{DL}{ai}/{key}"
    return None


def normalise_time(value: str) -> str:
    """An xsd:dateTime as UTC at millisecond precision with ``Z`` (rounded half up)."""
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return value
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    micro = dt.microsecond
    millis = (micro + 500) // 1000
    base = dt.replace(microsecond=0)
    if millis == 1000:
        from datetime import timedelta

        base, millis = base + timedelta(seconds=1), 0
    return base.strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"


def normalise_number(value: str) -> str:
    """A decimal number without a leading ``+``, leading or trailing zeros (``5.0`` → ``5``)."""
    if not _NUMBER_RE.match(value):
        return value
    try:
        d = Decimal(value)
    except InvalidOperation:
        return value
    if d == d.to_integral_value():
        return str(int(d))
    return format(d.normalize(), "f")


def normalise_value(value: str, *, vocab: str | None = None) -> str:
    """Step 3 for one value; ``vocab`` is the CBV vocabulary prefix of the field (bare words)."""
    value = value.strip()
    for urn, voc in _URN_VOCAB:
        if value.startswith(urn):
            return CBV + voc + value[len(urn) :]
    if vocab is not None and _BARE_RE.match(value):
        return CBV + vocab + value
    if value.startswith("cbv:"):
        return CBV + value[4:]
    if value.startswith("gs1:"):
        return GS1_VOC + value[4:]
    if value.startswith("urn:epc:"):
        return epc_to_dl(value) or value
    if value.startswith(("http://", "https://")):
        return dl_constrain(value) or value
    return normalise_number(value)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- pre-hash string ---------------------------------------------------------------------------


class _Renderer:
    """Renders one event's pre-hash string (``legacy``: the pre-publication variant)."""

    def __init__(self, namespaces: Mapping[str, str], *, legacy: bool) -> None:
        self.ns = {**_DEFAULT_NS, **namespaces}
        self.legacy = legacy

    def value(self, name: str, raw: Any, vocab: str | None = None) -> str:
        text = _scalar(raw).strip()
        if name in _TIME_FIELDS:
            return normalise_time(text)
        if self.legacy:
            if vocab is not None and _BARE_RE.match(text):
                return _LEGACY_VOCAB[vocab] + text
            return normalise_number(text)
        return normalise_value(text, vocab=vocab)

    def pair(self, name: str, raw: Any, vocab: str | None = None) -> str:
        text = self.value(name, raw, vocab)
        return f"{name}={text}" if text else ""

    def key(self, key: str) -> str:
        prefix, sep, local = key.partition(":")
        if sep and prefix in self.ns and not local.startswith("//"):
            if self.legacy:
                return self.ns[prefix] + local
            return "{" + self.ns[prefix] + "}" + local
        return key

    def ext_value(self, raw: Any, name: str = "") -> str:
        text = _scalar(raw).strip()
        if "Time" in name[1:] and "Offset" not in name:
            return normalise_time(text)
        if self.legacy:
            return normalise_number(text)
        prefix, sep, local = text.partition(":")
        if sep and prefix in ("gs1", "cbv"):
            return self.ns[prefix] + local
        return normalise_value(text)

    def generic(self, name: str, raw: Any) -> list[str]:
        """Extension content: ``name=value`` or ``name`` + sorted children, one per element."""
        if isinstance(raw, list):
            out: list[str] = []
            for item in raw:
                out.extend(self.generic(name, item))
            return out
        if isinstance(raw, Mapping):
            text = raw.get("#text")
            head = name + (f"={self.ext_value(text, name)}" if text not in (None, "") else "")
            children: list[str] = []
            for k, v in raw.items():
                if k in ("#text", "rdfs:comment", "comment") or k.startswith("@"):
                    continue
                children.extend(self.generic(self.key(k), v))
            return [head + "".join(sorted(children))]
        text = self.ext_value(raw, name)
        return [f"{name}={text}" if text else name]

    def ordered(self, obj: Mapping[str, Any], order: Sequence[str]) -> tuple[str, list[str]]:
        """Fields of ``obj`` in ``order``, plus the rendering of fields outside it."""
        parts = [self.pair(f, obj[f]) for f in order if f in obj and obj[f] not in (None, "")]
        rest: list[str] = []
        for k, v in obj.items():
            if k not in order and k not in IGNORED and not k.startswith("@"):
                rest.extend(self.generic(self.key(k), v))
        return "".join(parts), rest

    def field(self, name: str, raw: Any) -> tuple[str, list[str]]:
        """Render one standard field; return (ordered text, leftover extension strings)."""
        if name in EPC_LISTS:
            items = sorted(self.pair("epc", v) for v in raw)
            return (name + "".join(items) if items else ""), []
        if name in QTY_LISTS:
            elems, rest = [], []
            for q in raw:
                text, extra = self.ordered(q, _QTY)
                elems.append("quantityElement" + text)
                rest.extend(extra)
            return name + "".join(sorted(elems)), [
                name + "quantityElement" + "".join(sorted(rest))
            ] if rest else []
        if name == "persistentDisposition":
            sets = sorted(self.pair("set", v, "Disp-") for v in raw.get("set", []))
            unsets = sorted(self.pair("unset", v, "Disp-") for v in raw.get("unset", []))
            return name + "".join(sets) + "".join(unsets), []
        if name in ("readPoint", "bizLocation"):
            text, rest = self.ordered(raw, ("id",))
            return name + text, [name + "".join(sorted(rest))] if rest else []
        if name in TYPED_LISTS:
            elem = TYPED_LISTS[name]
            vocab = "BTT-" if elem == "bizTransaction" else "SDT-"
            items = []
            for entry in raw:
                value = self.pair(elem, entry.get(elem, ""))
                kind = self.pair("type", entry["type"], vocab) if "type" in entry else ""
                items.append(value + kind if self.legacy else kind + value)
            return name + "".join(sorted(items)), []
        if name == "sensorElementList":
            elems, rest = [], []
            for element in raw:
                meta_text, meta_rest = (
                    self.ordered(element["sensorMetadata"], _META)
                    if "sensorMetadata" in element
                    else ("", [])
                )
                reports = []
                for report in element.get("sensorReport", []):
                    r_text, r_rest = self.ordered(report, _REPORT)
                    reports.append("sensorReport" + r_text)
                    rest.extend(r_rest)
                rest.extend(meta_rest)
                text = "sensorMetadata" + meta_text if "sensorMetadata" in element else ""
                elems.append("sensorElement" + text + "".join(sorted(reports)))
            head = name if self.legacy else ""  # CBV 2.0 renders the elements only
            return head + "".join(sorted(elems)), (
                [head + "sensorElement" + "".join(sorted(rest))] if rest else []
            )
        return self.pair(name, raw, _VOCAB_FIELD.get(name)), []

    def event(self, event: Mapping[str, Any]) -> str:
        parts = ["eventType=" + str(event.get("type", ""))]
        leftovers: list[str] = []
        for name in PROP_ORDER:  # step 2
            if name in event and event[name] not in (None, "", []):
                text, rest = self.field(name, event[name])
                parts.append(text)
                leftovers.extend(rest)
        extensions: list[str] = []
        for k, v in event.items():  # step 4
            if k in PROP_ORDER or k in IGNORED or k.startswith("@"):
                continue
            if k == "errorDeclaration" and isinstance(v, Mapping):
                v = self.error_declaration(v)
            extensions.extend(self.generic(self.key(k), v))
        if self.legacy:
            return "".join(parts) + "".join(sorted(leftovers + extensions))
        ilmd = [e for e in extensions if e.startswith("ilmd")]
        others = sorted(e for e in extensions if not e.startswith("ilmd"))
        return "".join(parts) + "".join(ilmd) + "".join(leftovers) + "".join(others)

    def error_declaration(self, decl: Mapping[str, Any]) -> dict[str, Any]:
        """``reason`` is a CBV error-reason word (``ER-``) in CBV 2.0 form."""
        out = dict(decl)
        reason = out.get("reason")
        if isinstance(reason, str) and not self.legacy:
            out["reason"] = normalise_value(reason, vocab="ER-")
        return out


def context_namespaces(context: Any) -> dict[str, str]:
    """Prefix → namespace URI from a JSON-LD ``@context`` (objects inside a list)."""
    out: dict[str, str] = {}
    items = context if isinstance(context, list) else [context]
    for item in items:
        if isinstance(item, Mapping):
            for k, v in item.items():
                if isinstance(v, str):
                    out[k] = v
    return out


def pre_hash(event: Mapping[str, Any], namespaces: Mapping[str, str] | None = None) -> str:
    """The CBV 2.0 canonical pre-hash string of ``event`` (steps 1–5)."""
    ns = {**context_namespaces(event.get("@context")), **(namespaces or {})}
    return _Renderer(ns, legacy=False).event(event)


def legacy_pre_hash(event: Mapping[str, Any], namespaces: Mapping[str, str] | None = None) -> str:
    """The pre-publication pre-hash string (see the module docstring)."""
    ns = {**context_namespaces(event.get("@context")), **(namespaces or {})}
    return _Renderer(ns, legacy=True).event(event)


def hash_id(pre: str) -> str:
    """Step 6: ``ni:///sha-256;<hex>?ver=CBV2.0`` of a pre-hash string."""
    return HASH_PREFIX + hashlib.sha256(pre.encode("utf-8")).hexdigest() + HASH_SUFFIX


def event_hash_id(event: Mapping[str, Any], namespaces: Mapping[str, str] | None = None) -> str:
    """The CBV 2.0 event hash ID of ``event``."""
    return hash_id(pre_hash(event, namespaces))


def legacy_event_hash_id(
    event: Mapping[str, Any], namespaces: Mapping[str, str] | None = None
) -> str:
    """The hash ID of :func:`legacy_pre_hash`."""
    return hash_id(legacy_pre_hash(event, namespaces))


def check_event_id(event: Mapping[str, Any], namespaces: Mapping[str, str] | None = None) -> str:
    """How ``event``'s ``eventID`` relates to its hash: ``"cbv2.0"`` (it is the CBV 2.0 hash
    ID), ``"legacy"`` (the pre-publication hash), ``"absent"``, ``"other"`` (not a hash ID,
    e.g. a UUID URN: nothing to check) or ``"mismatch"``."""
    event_id = event.get("eventID")
    if not isinstance(event_id, str):
        return "absent"
    if not EVENT_ID_RE.match(event_id):
        return "mismatch" if event_id.startswith("ni:///") else "other"
    if event_id == event_hash_id(event, namespaces):
        return "cbv2.0"
    if event_id == legacy_event_hash_id(event, namespaces):
        return "legacy"
    return "mismatch"


__all__ = [
    "EVENT_ID_RE",
    "check_event_id",
    "context_namespaces",
    "dl_constrain",
    "epc_to_dl",
    "event_hash_id",
    "gs1_check_digit",
    "hash_id",
    "legacy_event_hash_id",
    "legacy_pre_hash",
    "normalise_time",
    "normalise_value",
    "pre_hash",
]
