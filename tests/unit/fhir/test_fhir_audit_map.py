"""AuditEvent (IHE BALP shape) and Provenance outputs validate with fhir.resources R5."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources import get_fhir_model_class

from carechain.fhir import anchor_provenance, audit_event, parse_resource
from carechain.fhir.audit_map import EXT_ANCHOR_TX, EXT_SIGNER_KID, TX_SYSTEM

ENTRY = {
    "actor": "dr-carla",
    "org": "hosp-a",
    "role": "physician",
    "patient": "pat-7f3a",
    "action": "read",
    "resources": ["Observation/o1/_history/2", "Observation/o2/_history/1"],
    "purpose": "TREAT",
    "basis": {"consent": "ab" * 32},
    "outcome": "permit",
    "request": "req-42",
    "tx": "cd" * 32,
    "height": 12,
    "time": 1767225600123,
}


def _r5(resource: dict[str, Any]) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    import json

    assert parse_resource(json.dumps(resource).encode()).fhir_version == "R5"


@pytest.mark.parametrize("action", ["create", "read", "vread", "search", "update", "delete"])
@pytest.mark.parametrize("outcome", ["permit", "deny", "error"])
def test_audit_event_validates(action: str, outcome: str) -> None:
    entry = {**ENTRY, "action": action, "outcome": outcome}
    if outcome == "deny":
        entry["reason"] = "no_consent"
    event = audit_event(entry)
    _r5(event)
    assert event["id"] == ENTRY["tx"]
    assert event["action"] == {"create": "C", "update": "U", "delete": "D", "search": "E"}.get(
        action, "R"
    )
    assert event["category"][0]["coding"][0]["code"] == "rest"
    assert event["recorded"] == "2026-01-01T00:00:00.123Z"
    assert event["outcome"]["code"]["code"] == {"permit": "0", "deny": "4", "error": "8"}[outcome]


def test_audit_event_shape() -> None:
    event = audit_event({**ENTRY, "outcome": "deny", "reason": "no_consent"})
    user = event["agent"][0]
    assert user["who"]["identifier"]["value"] == "dr-carla"
    assert user["who"]["identifier"]["assigner"]["identifier"]["value"] == "hosp-a"
    assert user["authorization"][0]["coding"][0]["code"] == "TREAT"
    assert event["source"]["observer"]["identifier"]["value"] == "hosp-a.node"
    whats = [e["what"] for e in event["entity"]]
    assert {"reference": "Observation/o1/_history/2"} in whats
    assert {"reference": f"Consent/{'ab' * 32}"} in whats
    assert {"identifier": {"system": TX_SYSTEM, "value": ENTRY["tx"]}} in whats
    assert event["patient"]["identifier"]["value"] == "pat-7f3a"
    assert event["outcome"]["detail"][0]["text"] == "no_consent"
    assert "meta" not in event


def test_break_glass_and_minimal_entries() -> None:
    event = audit_event(
        {**ENTRY, "basis": {"break_glass": "bg-1"}, "purpose": "ETREAT"}, observer="hosp-b.node"
    )
    _r5(event)
    assert event["meta"]["security"][0]["code"] == "BTG"
    assert event["source"]["observer"]["identifier"]["value"] == "hosp-b.node"
    minimal = {k: ENTRY[k] for k in ("actor", "org", "action", "tx", "height", "time")}
    _r5(audit_event({**minimal, "outcome": "permit", "basis": "self", "height": 2**40}))


@pytest.mark.parametrize("version", [1, 2, 7])
def test_provenance_validates(version: int) -> None:
    anchor = {
        "type": "Observation",
        "id": "o1",
        "version": version,
        "author": "dr-carla",
        "org": "hosp-a",
        "tx": "ef" * 32,
        "kid": "ed25519:3f2a",
        "height": 5,
        "time": 1767225600000,
        "digest": "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80",
    }
    prov = anchor_provenance(anchor)
    _r5(prov)
    assert prov["target"] == [{"reference": f"Observation/o1/_history/{version}"}]
    assert prov["recorded"] == "2026-01-01T00:00:00.000Z"
    ext = {e["url"]: e for e in prov["extension"]}
    assert ext[EXT_ANCHOR_TX]["valueIdentifier"]["value"] == "ef" * 32
    assert ext[EXT_SIGNER_KID]["valueString"] == "ed25519:3f2a"
    assert prov["activity"]["coding"][0]["code"] == ("CREATE" if version == 1 else "UPDATE")
    roles = [e["role"] for e in prov["entity"]]
    assert roles == (["source"] if version == 1 else ["source", "revision"])


LEDGER_ENTRY = {
    "actor": "seoul-general.dr-kim", "org": "seoul-general", "role": "practitioner",
    "patient": "pt-0123456789abcdef0123", "purpose": "TREAT", "request": "rq-1",
    "tx": "ab" * 32, "height": 7, "time": 1767225600000,
}  # fmt: skip


@pytest.mark.parametrize(
    "action,resources,basis,outcome,want_code",
    [
        ("write", ["Observation/o1/_history/1"], {"kind": "consent", "id": "c" * 16}, "permit",
         "C"),
        ("write", ["Observation/o1/_history/2"], {"kind": "author"}, "permit", "U"),
        ("read", ["Observation/o1/_history/2"], {"kind": "none"}, "deny", "R"),
        ("break_glass", [], {"kind": "break_glass", "id": "d" * 16}, "permit", "R"),
        ("erase", ["Observation/o1/_history/2"], {"kind": "custodian"}, "permit", "D"),
    ],
)
def test_ledger_entries_render_as_valid_balp(
    action: str, resources: list[str], basis: dict[str, str], outcome: str, want_code: str
) -> None:
    """audit.record@1 entries (the contract's shape) render as valid R5 AuditEvents."""
    from carechain.fhir.audit_map import ledger_entry_view

    reason = "no_consent" if outcome == "deny" else "consent"
    entry = {**LEDGER_ENTRY, "action": action, "resources": resources, "basis": basis,
             "outcome": outcome, "reason": reason}  # fmt: skip
    event = audit_event(ledger_entry_view(entry))
    _r5(event)
    assert event["action"] == want_code
    flagged = any(c.get("code") == "BTG" for c in event.get("meta", {}).get("security", []))
    assert flagged == (action == "break_glass")
