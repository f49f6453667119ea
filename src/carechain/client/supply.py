"""SDK for the supply chain: EPCIS capture and query, verification, timelines, pedigrees — and
the offline check of an exported pedigree (:func:`verify_pedigree`), which trusts only the
genesis document.

Offline pedigree check, per step (numbered as in the report):

1. the checkpoint note verifies against a genesis node key under the chain's origin;
2. the envelope parses and its transaction id is the step's ``tx``;
3. its RFC 9162 leaf hash, with the inclusion proof, yields the checkpoint's root at its size;
4. the transaction is a ``supply.capture@1`` whose events include the step's event hash.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from carechain.client._http import decode_json, error_from_problem
from carechain.client.client import Client
from carechain.client.trust import parse_genesis
from carechain.contracts.supply_rules import unpack_items
from carechain.errors import AuthenticationError, LedgerError, ValidationError
from carechain.ledger.tx import parse_envelope
from carechain.merkle import leaf_hash, open_checkpoint, verify_inclusion


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureResult:
    """The node's answer to a capture (accepted or refused by the custody rules)."""

    status: int
    """HTTP status (201 accepted, 409 refused)."""
    body: dict[str, Any]
    """``captureID``, ``status``, ``code``, ``events`` (…, ``flagged`` on 409)."""

    @property
    def ok(self) -> bool:
        return self.status == 201

    @property
    def code(self) -> str:
        return str(self.body.get("code"))


class SupplyClient:
    """One organisation member's supply session (custodial sign-in signs the captures)."""

    def __init__(self, client: Client, token: str | None = None) -> None:
        self.client, self.token = client, token
        self.account: str | None = None

    def login(self, key_name: str, password: str | bytes) -> SupplyClient:
        """Custodial sign-in (``POST /v1/auth/login``); returns ``self``."""
        text = password.decode() if isinstance(password, bytes) else password
        _, body, _ = self.client.api.request(
            "POST",
            "/v1/auth/login",
            content=orjson.dumps({"key": key_name, "password": text}),
            headers={"content-type": "application/json"},
        )
        obj = decode_json(body, "POST /v1/auth/login")
        self.token = obj.get("access_token") if isinstance(obj, dict) else None
        self.account = obj.get("account") if isinstance(obj, dict) else None
        if not self.token:
            raise AuthenticationError("the sign-in endpoint answered without an access_token")
        return self

    def _auth(self) -> dict[str, str]:
        if self.token is None:
            raise AuthenticationError("not signed in: call login(key_name, password) first")
        return {"authorization": f"Bearer {self.token}"}

    def capture(self, document: bytes, *, profile: str = "dscsa") -> CaptureResult:
        """``POST /epcis/capture``: 201 → accepted; 409 → refused (rejected receipt, flagged
        items); 422 and others raise the matching :class:`LedgerError` (``epcis_schema``,
        ``event_hash_mismatch`` …)."""
        api = self.client.api
        resp = api.http.post(
            api.url("/epcis/capture"),
            params={"profile": profile},
            content=document,
            headers={**api.headers, **self._auth(), "content-type": "application/ld+json"},
            timeout=120,
        )
        if resp.status_code in (201, 409):
            return CaptureResult(status=resp.status_code, body=orjson.loads(resp.content))
        raise error_from_problem(resp.status_code, resp.content, resp.headers)

    def _get(self, path: str, **params: str) -> Any:
        _, body, _ = self.client.api.request(
            "GET", path, params=params or None, headers=self._auth() if self.token else None
        )
        return decode_json(body, f"GET {path}")

    def events(self, epc: str) -> Any:
        """``GET /epcis/events?MATCH_epc=…`` (an EPCISQueryDocument)."""
        return self._get("/epcis/events", MATCH_epc=epc)

    def event(self, event_id: str) -> Any:
        """``GET /epcis/events/{eventID}``."""
        return self._get("/epcis/events/" + event_id.replace("?", "%3F"))

    def verify(
        self, *, gtin: str, serial: str, lot: str, expiry: str, purpose: str = "dispense"
    ) -> Any:
        """``POST /v1/supply/verify`` → ``{"verified", "reason", "item", …}``."""
        _, body, _ = self.client.api.request(
            "POST",
            "/v1/supply/verify",
            content=orjson.dumps(
                {"gtin": gtin, "serial": serial, "lot": lot, "expiry": expiry, "purpose": purpose}
            ),
            headers={**self._auth(), "content-type": "application/json"},
        )
        return decode_json(body, "POST /v1/supply/verify")

    def timeline(self, item: str) -> Any:
        """``GET /v1/supply/items/{item}``."""
        return self._get(f"/v1/supply/items/{item}")

    def pedigree(self, item: str) -> Any:
        """``GET /v1/supply/items/{item}/pedigree`` (verify with :func:`verify_pedigree`)."""
        return self._get(f"/v1/supply/items/{item}/pedigree")

    def recall_patients(self, gtin: str, lot: str) -> Any:
        """``GET /v1/supply/recalls/{gtin}/{lot}/patients`` (an audited PHI read)."""
        return self._get(f"/v1/supply/recalls/{gtin}/{lot}/patients")


@dataclass(slots=True)
class PedigreeReport:
    """The outcome of :func:`verify_pedigree`."""

    item: str
    size: int
    steps: list[tuple[str, str, bool, str]] = field(default_factory=list)
    """``(step, tx, ok, problem)`` per history step."""

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(ok for _, _, ok, _ in self.steps)


def verify_pedigree(export: Mapping[str, Any], genesis: bytes) -> PedigreeReport:
    """Check an exported pedigree offline against the chain's genesis (module docstring)."""
    if export.get("type") != "carechain/pedigree@1":
        raise ValidationError("not a carechain pedigree export", code="bad_pedigree")
    root = parse_genesis(genesis)
    cp = open_checkpoint(str(export["checkpoint"]).encode(), root.verifiers(), root.origin)  # 1
    report = PedigreeReport(item=str(export["item"]), size=cp.size)
    for step in export.get("steps", []):
        try:
            env = base64.b64decode(step["envelope"])
            tx = parse_envelope(env)  # step 2
            if tx.tx_id.hex() != step["tx"]:
                raise ValidationError(f"envelope hashes to {tx.tx_id.hex()}, not {step['tx']}")
            proof = [bytes.fromhex(p) for p in step["proof"]]
            verify_inclusion(leaf_hash(env), int(step["index"]), cp.size, proof, cp.root)  # 3
            listed = tx.body.args.get("events") if tx.body.kind == "supply.capture@1" else None
            events = listed if isinstance(listed, list) else []
            hit = [e for e in events if isinstance(e, Mapping) and e.get("id") == step["event"]]
            items = _items_of(hit[0]) if hit else []
            in_case = any(k.startswith("00/") for k in items)  # a case ships its packs
            if report.item not in items and not in_case:  # step 4
                raise ValidationError("the transaction does not carry this event for this item")
            report.steps.append((str(step["step"]), step["tx"], True, ""))
        except (LedgerError, KeyError, ValueError) as exc:
            report.steps.append((str(step.get("step")), str(step.get("tx")), False, str(exc)))
    return report


def _items_of(event: Mapping[str, Any]) -> list[str]:
    items = unpack_items(list(event.get("epcs", [])))
    if "parent" in event:
        items.append(str(event["parent"]))
    return items


__all__ = ["CaptureResult", "PedigreeReport", "SupplyClient", "verify_pedigree"]
