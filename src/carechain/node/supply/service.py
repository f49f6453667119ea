"""The node's supply-chain service: EPCIS capture, queries, verification, pedigree, recalls.

Layout (``DIR/supply/``)::

    blobs/, records.sqlite   the captured EPCIS documents, encrypted (FileRecordStore + KEK)
    docs.jsonl               {"doc": sha-256 of the document, "address": blob address}
    verify.jsonl             one line per verification request (who, what, answer, when)

Capture (ADR 0008): parse + schema + event hash (``epcis.mapping.prepare_capture``) → store the
document off chain → ONE ``supply.capture@1`` signed by the caller → commit. When the contract
refuses a custody violation, the node signs ``supply.flag@1`` with its service account
``<org>.node`` naming the refused document's items, so they are quarantined as suspect (a
rejected transaction writes nothing itself). Implant lookups by recall are PHI reads: one
``audit.record@1`` per patient found, committed before the answer is returned.
"""

from __future__ import annotations

import base64
import os
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from carechain.contracts.identity import node_account_id
from carechain.contracts.supply_rules import FINAL, unpack_items
from carechain.crypto.signatures import PrivateKey
from carechain.epcis.event_hash import gs1_check_digit
from carechain.epcis.mapping import PreparedCapture, prepare_capture
from carechain.errors import (
    InfrastructureError,
    NotFoundError,
    ValidationError,
)
from carechain.ledger.tx import SignedTx, parse_envelope
from carechain.merkle import inclusion_proof, leaf_hash, root_at
from carechain.node.chaindir import new_tx
from carechain.node.commit import commit_one
from carechain.node.node import Node
from carechain.storage.abc import LedgerStore
from carechain.storage.offchain.base import RecordStore

CUSTODY_CODES = frozenset(
    {
        "already_commissioned",
        "never_commissioned",
        "decommissioned",
        "not_owner",
        "in_transit",
        "not_shipped_to_you",
        "suspect_product",
        "recalled",
    }
)
"""Rejections that flag the document's items as suspect."""
MEDIA_TYPE = "application/ld+json"
MAX_DOC_READ = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureOutcome:
    """What a capture did."""

    tx: str
    """The ``supply.capture@1`` transaction id (hex): the capture id."""
    status: str
    """``ok`` or ``rejected``."""
    code: str
    """Receipt code."""
    message: str
    """Receipt message (rejections)."""
    height: int
    """Block of the capture."""
    events: list[dict[str, Any]]
    """Per event: ``hashID``, ``eventID`` given, ``check``."""
    doc: str
    """SHA-256 of the document."""
    flagged: list[str] = field(default_factory=list)
    """Items quarantined because of the rejection."""
    flag_tx: str | None = None
    """The ``supply.flag@1`` transaction, if any."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Verification:
    """The answer to a product-identifier verification (DSCSA verification request)."""

    verified: bool
    """True iff the identifier is genuine, matching and saleable."""
    reason: str
    """``ok`` or why not: ``unknown_serial``, ``lot_mismatch``, ``expiry_mismatch``,
    ``decommissioned``, ``recalled``, ``suspect``, ``unknown_gtin``."""
    item: str
    """The item key asked about."""
    status: str | None = None
    """The item's status, when known."""
    owner: str | None = None
    """Its owner, when known."""


def sgtin_item(gtin: str, serial: str) -> str:
    """The item key of a GTIN (8–14 digits, padded to 14) and serial."""
    if not gtin.isdigit() or not 8 <= len(gtin) <= 14:
        raise ValidationError(f"gtin {gtin!r}: want 8 to 14 digits", code="bad_gtin")
    g = gtin.zfill(14)
    if gs1_check_digit(g[:-1]) != g[-1]:
        raise ValidationError(f"gtin {gtin}: wrong check digit", code="bad_gtin")
    if not serial or len(serial) > 20 or "/" in serial or "|" in serial:
        raise ValidationError("serial: want 1-20 characters without / or |", code="bad_serial")
    return f"01/{g}/21/{serial}"


class SupplyService:
    """Capture, query and verification on top of a running node."""

    def __init__(
        self, node: Node, docs: RecordStore, root: Path | None, *, commit_timeout: float = 60.0
    ) -> None:
        self.node, self.docs, self.root = node, docs, root
        self.commit_timeout = commit_timeout
        self._lock = threading.Lock()
        self._doc_index: dict[str, str] = {}
        self.verifications: list[dict[str, Any]] = []
        if root is not None:
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = root / "docs.jsonl"
            if path.exists():
                for line in path.read_bytes().splitlines():
                    if line.strip():
                        entry = orjson.loads(line)
                        self._doc_index[entry["doc"]] = entry["address"]

    # -- helpers ----------------------------------------------------------------------------
    def state(self, key: str) -> Any:
        raw = self.node.store.find_state(key)
        return None if raw is None else orjson.loads(raw)

    def commit(self, tx: SignedTx) -> dict[str, Any]:
        """Submit, wait for the block, return the receipt (plus ``height``)."""
        return commit_one(self.node, tx, self.commit_timeout)

    def _append(self, name: str, entry: Mapping[str, Any]) -> None:
        if self.root is None:
            return
        with open(self.root / name, "ab") as f:
            f.write(orjson.dumps(entry) + b"\n")
            f.flush()
            os.fsync(f.fileno())

    def _store_doc(self, prepared: PreparedCapture) -> None:
        with self._lock:
            if prepared.digest in self._doc_index:
                return
            ref = self.docs.put([prepared.raw], media_type=MEDIA_TYPE)
            self._doc_index[prepared.digest] = ref.address
            self._append("docs.jsonl", {"address": ref.address, "doc": prepared.digest})

    def document(self, digest: str) -> bytes:
        """A captured document's bytes (decrypted), by its SHA-256."""
        address = self._doc_index.get(digest)
        if address is None:
            raise NotFoundError(f"no captured document {digest} at this node")
        return self.docs.read_all(address, MAX_DOC_READ)

    # -- capture ----------------------------------------------------------------------------
    def capture(
        self,
        raw: bytes,
        *,
        account: str,
        signer: PrivateKey,
        profile: str = "dscsa",
        strict_ids: bool = True,
    ) -> CaptureOutcome:
        """Capture one EPCIS document (or event) as one transaction; see the module docstring."""
        if profile not in ("dscsa", "evidence"):
            raise ValidationError("profile: want dscsa or evidence", code="bad_profile")
        prepared = prepare_capture(raw, strict_ids=strict_ids)
        self._store_doc(prepared)
        tx = new_tx(self.node, "supply.capture@1", account, prepared.args(profile), [signer])
        receipt = self.commit(tx)
        events = [
            {"check": e.id_check, "eventID": e.event_id, "hashID": e.hash_id}
            for e in prepared.events
        ]
        outcome = CaptureOutcome(
            tx=tx.tx_id.hex(),
            status=receipt["status"],
            code=receipt["code"],
            message=receipt.get("msg", ""),
            height=receipt["height"],
            events=events,
            doc=prepared.digest,
        )
        if receipt["status"] != "ok" and receipt["code"] in CUSTODY_CODES:
            return self._flag_after(prepared, outcome)
        return outcome

    def _flag_after(self, prepared: PreparedCapture, outcome: CaptureOutcome) -> CaptureOutcome:
        items: list[str] = []
        for e in prepared.events:
            items.extend(unpack_items(e.mapped.get("epcs", [])))
            if "parent" in e.mapped:
                items.append(e.mapped["parent"])
        for key in list(items):  # a flagged case quarantines its packs
            if key.startswith("00/"):
                case = self.state(f"sc/item/{key}")
                if isinstance(case, Mapping):
                    items.extend(str(k) for k in case.get("children", []))
        items = list(dict.fromkeys(items))[:1000]
        if not items:
            return outcome
        org = self.node_org()
        tx = new_tx(
            self.node,
            "supply.flag@1",
            node_account_id(org),
            {"evidence": outcome.tx, "items": items, "reason": outcome.code},
            [self.node.node_key],
        )
        receipt = self.commit(tx)
        if receipt["status"] != "ok":
            raise InfrastructureError(
                f"the suspect flag was rejected ({receipt['code']}): {receipt.get('msg')}"
            )
        return CaptureOutcome(**{**_fields(outcome), "flagged": items, "flag_tx": tx.tx_id.hex()})

    def node_org(self) -> str:
        """The organisation this node belongs to."""
        rec = self.state(f"node/{self.node.node_key.kid}")
        if not isinstance(rec, Mapping):
            raise InfrastructureError("this node's key is not a registered node key")
        return str(rec["org"])

    # -- queries ----------------------------------------------------------------------------
    def event(self, hash_hex: str) -> dict[str, Any]:
        """A captured event by its hash (64 hex): the on-chain record and the event JSON."""
        rec = self.state(f"sc/event/{hash_hex}")
        if not isinstance(rec, Mapping):
            raise NotFoundError(f"no captured event {hash_hex}")
        out: dict[str, Any] = {"event": None, "hash": hash_hex, "record": rec}
        try:
            prepared = prepare_capture(self.document(str(rec["doc"])), strict_ids=False)
        except NotFoundError:
            return out  # captured through another node: the record only
        for e in prepared.events:
            if e.hash_id.split(";")[1][:64] == hash_hex:
                out["event"] = dict(e.event)
        return out

    def events_for_item(self, item: str) -> list[dict[str, Any]]:
        """Events naming ``item`` (as EPC or parent), in capture order."""
        out = []
        for key, _ in self.node.store.iter_state(f"sc/ev/{item}/"):
            h = key.rsplit("/", 1)[1]
            out.append(self.event(h))
        out.sort(key=lambda e: (e["record"]["height"], e["record"]["time"]))
        return out

    def timeline(self, item: str) -> dict[str, Any]:
        """An item's record, custody history, suspect case and recall status."""
        return item_timeline(self.node.store, item)

    def verify(
        self, *, gtin: str, serial: str, lot: str, expiry: str, requester: str, purpose: str
    ) -> Verification:
        """Answer a verification request; every request is logged (``verify.jsonl``)."""
        item = sgtin_item(gtin, serial)
        result = self._verify(item, lot, expiry)
        entry = {
            "expiry": expiry,
            "item": item,
            "lot": lot,
            "purpose": purpose,
            "reason": result.reason,
            "request": uuid.uuid4().hex[:16],
            "requester": requester,
            "time": int(time.time() * 1000),
            "verified": result.verified,
        }
        with self._lock:
            self.verifications.append(entry)
            self._append("verify.jsonl", entry)
        return result

    def _verify(self, item: str, lot: str, expiry: str) -> Verification:
        gtin = item.split("/")[1]
        if self.state(f"sc/product/{gtin}") is None:
            return Verification(verified=False, reason="unknown_gtin", item=item)
        rec = self.state(f"sc/item/{item}")
        if not isinstance(rec, Mapping):
            return Verification(verified=False, reason="unknown_serial", item=item)
        status, owner = str(rec.get("status")), str(rec.get("owner"))

        def no(reason: str) -> Verification:
            return Verification(
                verified=False, reason=reason, item=item, status=status, owner=owner
            )

        if rec.get("lot") != lot:
            return no("lot_mismatch")
        if rec.get("expiry") != expiry:
            return no("expiry_mismatch")
        case = self.state(f"sc/suspect/{item}")
        if isinstance(case, Mapping) and case.get("status") != "cleared":
            return no("suspect")
        if self.state(f"sc/recall/{gtin}/{lot}") is not None:
            return no("recalled")
        if status in FINAL:
            return no("decommissioned")
        return Verification(verified=True, reason="ok", item=item, status=status, owner=owner)

    # -- pedigree with proofs ---------------------------------------------------------------
    def pedigree(self, item: str) -> dict[str, Any]:
        """The item's custody history, each step with its transaction envelope and RFC 9162
        inclusion proof against the newest signed checkpoint (verify offline with
        :func:`carechain.epcis.pedigree.verify_pedigree`)."""
        tl = self.timeline(item)
        note = self.node.store.find_checkpoint()
        if note is None:
            raise InfrastructureError("no checkpoint yet")
        size = self.node.store.log_size()
        steps = []
        for h in tl["history"]:
            loc = self.node.store.find_tx(bytes.fromhex(h["tx"]))
            if loc is None or loc.log_index >= size:
                continue
            env = self.node.store.find_envelope(loc.log_index)
            assert env is not None
            proof = inclusion_proof(self.node.store, loc.log_index, size)
            steps.append(
                {
                    "envelope": base64.b64encode(env).decode(),
                    "event": h["event"],
                    "index": loc.log_index,
                    "leaf": leaf_hash(env).hex(),
                    "proof": [p.hex() for p in proof],
                    "step": h["step"],
                    "time": h["time"],
                    "tx": h["tx"],
                    "owner": h["owner"],
                }
            )
        return {
            "checkpoint": note.decode(),
            "item": item,
            "root": root_at(self.node.store, size).hex(),
            "size": size,
            "steps": steps,
            "type": "carechain/pedigree@1",
        }

    # -- implants and recalls (PHI) --------------------------------------------------------
    def recall_patients(
        self, *, gtin: str, lot: str, actor: str, role: str
    ) -> list[dict[str, Any]]:
        """Implant records of a recalled lot — a PHI read: one audit entry per patient, signed
        by this node's service account and committed before the answer."""
        if self.state(f"sc/recall/{gtin}/{lot}") is None:
            raise NotFoundError(f"lot {lot} of {gtin} is not recalled")
        org = self.node_org()
        out = []
        for key, value in self.node.store.iter_state(f"sc/implant/{gtin}/{lot}/"):
            rec = orjson.loads(value)
            if rec.get("org") != org:
                continue  # this node hosts its own organisation's implant records only
            audit = new_tx(
                self.node,
                "audit.record@1",
                node_account_id(org),
                {
                    "action": "search",
                    "actor": actor,
                    "basis": {"kind": "custodian"},
                    "org": org,
                    "outcome": "permit",
                    "patient": rec["patient"],
                    "purpose": "PUBHLTH",
                    "reason": "device_recall",
                    "request": f"rc-{uuid.uuid4().hex[:20]}",
                    "resources": [],
                    "role": role,
                },
                [self.node.node_key],
            )
            receipt = self.commit(audit)
            if receipt["status"] != "ok":
                raise InfrastructureError(
                    f"the audit entry was rejected ({receipt['code']}); no data is returned",
                    code="audit_failed",
                )
            out.append({**rec, "serial": key.rsplit("/", 1)[1], "audit": audit.tx_id.hex()})
        return out


def item_timeline(store: LedgerStore, item: str) -> dict[str, Any]:
    """An item's record, custody history (oldest first), suspect case, recall and product."""

    def get(key: str) -> Any:
        raw = store.find_state(key)
        return None if raw is None else orjson.loads(raw)

    rec = get(f"sc/item/{item}")
    if not isinstance(rec, Mapping):
        raise NotFoundError(f"no item {item} on this chain")
    hist = [orjson.loads(v) for _, v in store.iter_state(f"sc/hist/{item}/")]
    recall = get(f"sc/recall/{rec['gtin']}/{rec['lot']}") if "lot" in rec else None
    product = get(f"sc/product/{rec['gtin']}") if "gtin" in rec else None
    return {
        "history": hist,
        "item": rec,
        "product": product,
        "recall": recall,
        "suspect": get(f"sc/suspect/{item}"),
    }


def _fields(outcome: CaptureOutcome) -> dict[str, Any]:
    return {f: getattr(outcome, f) for f in CaptureOutcome.__dataclass_fields__}


def envelope_kind(raw: bytes) -> str:
    """The kind of a transaction envelope (for pedigree checks)."""
    return parse_envelope(raw).body.kind


def open_supply_service(node: Node, root: Path | None) -> SupplyService:
    """The supply service of the chain in ``root`` (documents encrypted under the record KEK
    in ``DIR/supply``); without ``root``, documents are kept in memory."""
    if root is None:
        from carechain.crypto.kek import KEK
        from carechain.storage.offchain.memory import MemoryRecordStore

        return SupplyService(node, MemoryRecordStore(KEK(os.urandom(32))), None)
    from carechain.node.chaindir import load_record_kek
    from carechain.storage.offchain.file import FileRecordStore

    store = FileRecordStore(root / "supply", load_record_kek(root))
    service = SupplyService(node, store, root / "supply")
    node.add_closer(store.close)
    return service


__all__ = [
    "CUSTODY_CODES",
    "CaptureOutcome",
    "SupplyService",
    "Verification",
    "item_timeline",
    "open_supply_service",
    "sgtin_item",
]
