"""Receipts and events: the outcome of every transaction in a block.

A receipt is canonical JSON::

    {"code": "ok" | "<reason>", "events": [{"attrs": {...}, "kind": "..."}], "msg": "...",
     "status": "ok" | "rejected", "tx": "<base64url tx id>"}

(``msg`` only on rejections.) Receipts are stored verbatim and covered by the header's
``receipt_root``; ``verify`` recomputes them byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from carechain.encoding import JsonObject, b64u_encode, canonical_bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Something a contract announces (indexed and streamed to subscribers)."""

    kind: str
    """Event kind, e.g. ``identity.patient_registered``."""
    attrs: JsonObject
    """Event attributes (no PHI)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """The outcome of one transaction."""

    tx_id: bytes
    """The transaction id."""
    status: str
    """``ok`` or ``rejected``."""
    code: str
    """``ok`` or the rejection reason code."""
    message: str = ""
    """Human explanation of a rejection (deterministic)."""
    events: tuple[Event, ...] = ()
    """Events emitted (only when ``ok``)."""

    def to_bytes(self) -> bytes:
        """Canonical receipt bytes."""
        doc: dict[str, object] = {
            "code": self.code,
            "events": [{"attrs": e.attrs, "kind": e.kind} for e in self.events],
            "status": self.status,
            "tx": b64u_encode(self.tx_id),
        }
        if self.message:
            doc["msg"] = self.message
        return canonical_bytes(doc)


def receipt_summary(raw: Mapping[str, object]) -> str:
    """A one-line human summary of a decoded receipt."""
    if raw.get("status") == "ok":
        return "ok"
    return f"rejected ({raw.get('code')}): {raw.get('msg', '')}"
