"""Consent on the demo consortium, end to end: anchors, grants, revocations, expiry, break-glass,
erasure — each access decided the way the node does (``decide`` on committed state at the head
height) and recorded by the node's service account as an audit transaction.

Each scenario is a table of steps; an ``access`` step names the decision it expects, and the
audit entry it leaves is checked against the patient's access log at the end.
"""

from __future__ import annotations

from typing import Any

import pytest

from carechain.contracts.consent import AccessRequest, Decision, RecordRef, decide
from carechain.crypto.signatures import generate_key
from carechain.ledger.state import Overlay
from carechain.node.node import now_ms
from carechain.testing.chain_driver import Chain

DAY = 86_400_000
OBS1 = {"org": "seoul-general", "type": "Observation", "id": "obs-1"}
ROLES = {"dr-kim": ("seoul-general", "practitioner"), "nurse-park": ("seoul-general", "nurse"),
         "ph-lee": ("hanbit-pharmacy", "pharmacist"), "er-doc": ("seoul-general", "practitioner"),
         "patient-1": (None, None)}  # fmt: skip


class Story:
    """Runs one scenario's steps on ``chain`` and remembers grants, sessions and audits."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.consents: list[str] = []
        self.sessions: list[str] = []
        self.audited: list[tuple[str, Decision]] = []
        self.heights: dict[str, int] = {}
        self.patient = chain.account("patient-1")

    def step(self, op: str, who: str, args: dict[str, Any], want: Any) -> None:
        chain = self.chain
        if op == "access":
            self.access(who, args, want)
            return
        if op == "anchor":
            tx = chain.anchor(who, **args)
        elif op == "grant":
            tx = chain.grant(who, **args)
        elif op == "revoke":
            tx = chain.revoke(self.consents[args["consent"]], who)
        elif op == "break_glass":
            tx = chain.break_glass(who, **args)
        elif op == "review":
            tx = chain.review(who, self.sessions[args["session"]])
        elif op == "erase":
            tx = chain.erase(who, **args)
        else:
            raise AssertionError(op)
        out = chain.run1(tx)
        assert out.code == want, (op, who, out.receipt)
        if op == "grant" and out.ok:
            self.consents.append(tx.tx_id.hex()[:16])
        if op == "break_glass" and out.ok:
            self.sessions.append(tx.tx_id.hex()[:16])

    def access(self, who: str, args: dict[str, Any], want: tuple[bool, str, str | None]) -> None:
        """Decide like the node, then record the audit entry through the node's account."""
        chain = self.chain
        args = dict(args)
        label = args.pop("label", None)
        at = args.pop("at", None)  # a past height whose decision must still stand
        later = args.pop("later", 0)  # ms after now (expiry without waiting)
        org, role = ROLES[who]
        ref = args.pop("record", OBS1)
        request = AccessRequest(
            actor=chain.account(who), actor_org=org, actor_role=role, patient=self.patient,
            action=args.pop("action", "read"),
            record=RecordRef(**ref) if ref else None,
            resource_type=args.pop("resource_type", "Observation"),
            purpose=args.pop("purpose", "TREAT"), **args,
        )  # fmt: skip
        height = self.heights[at] if at else chain.height()
        decision = decide(Overlay(chain.node.store), request, time=now_ms() + later, height=height)
        permit, reason, ref_id = want
        assert (decision.permit, decision.reason) == (permit, reason), decision
        if ref_id is not None:
            kind, i = ref_id[0], int(ref_id[1:])
            assert (decision.consent if kind == "c" else decision.session) == (
                self.consents[i] if kind == "c" else self.sessions[i]
            )
        if label:
            self.heights[label] = height
        if at:
            return  # a re-check, not a new access
        resources = [f"{ref['type']}/{ref['id']}/_history/1"] if ref else []
        tx = chain.audit(
            actor=request.actor, role=role or "patient", action=request.action,
            resources=resources, purpose=request.purpose, basis=decision.basis(),
            outcome="permit" if decision.permit else "deny", reason=decision.reason,
            request=f"req-{len(self.audited)}",
        )  # fmt: skip
        out = chain.run1(tx)
        assert out.ok, out.receipt
        self.audited.append((tx.tx_id.hex(), decision))

    def check_access_log(self) -> None:
        """The patient's access log, listed from the audit index, is exactly the accesses."""
        chain = self.chain
        n = chain.state(f"auditn/{self.patient}") or 0
        log = [chain.state(f"audit/{self.patient}/{i:010d}") for i in range(n)]
        assert [e["tx"] for e in log] == [tx for tx, _ in self.audited]
        for entry, (_, decision) in zip(log, self.audited, strict=True):
            assert entry["outcome"] == ("permit" if decision.permit else "deny")
            assert (entry["reason"], entry["basis"]) == (decision.reason, decision.basis())
            assert entry.get("break_glass", False) == (decision.reason == "break_glass")


G_PHARMACY = {"grantee": {"org": "hanbit-pharmacy", "role": "pharmacist"},
              "scope": {"types": ["Observation"]}}  # fmt: skip
SCENARIOS: dict[str, list[tuple[str, str, dict[str, Any], Any]]] = {
    "grant-then-revoke": [
        ("anchor", "dr-kim", {"category": "laboratory"}, "ok"),
        ("access", "ph-lee", {}, (False, "no_consent", None)),
        ("grant", "patient-1", G_PHARMACY, "ok"),
        ("access", "ph-lee", {"label": "granted"}, (True, "consent", "c0")),
        ("access", "ph-lee", {"purpose": "HMARKT"}, (False, "wrong_purpose", "c0")),
        ("revoke", "patient-1", {"consent": 0}, "ok"),
        ("access", "ph-lee", {}, (False, "revoked", "c0")),
        # the access authorised before the revocation stays explained by the same decision
        ("access", "ph-lee", {"at": "granted"}, (True, "consent", "c0")),
        ("access", "dr-kim", {}, (True, "author", None)),
        ("access", "patient-1", {}, (True, "self", None)),
    ],
    "expiry": [
        ("anchor", "dr-kim", {}, "ok"),
        ("grant", "patient-1", {"grantee": {"account": "hanbit-pharmacy.ph-lee"}}, "ok"),
        ("access", "ph-lee", {}, (True, "consent", "c0")),
        ("access", "ph-lee", {"later": 2 * DAY}, (False, "expired", "c0")),
    ],
    "deny-overrides-then-break-glass": [
        ("anchor", "nurse-park", {}, "ok"),
        ("grant", "patient-1", {"grantee": {"org": "seoul-general"}}, "ok"),
        ("grant", "patient-1", {"grantee": {"account": "seoul-general.er-doc"},
                                "decision": "deny", "purposes": ["TREAT", "ETREAT"]}, "ok"),
        ("access", "dr-kim", {}, (True, "consent", "c0")),
        ("access", "er-doc", {}, (False, "denied_by_consent", "c1")),
        ("break_glass", "dr-kim", {}, "unauthorized"),  # no emergency capability
        ("break_glass", "er-doc", {"purpose": "TREAT"}, "wrong_purpose"),
        ("break_glass", "er-doc", {}, "ok"),
        ("access", "er-doc", {"purpose": "ETREAT"}, (True, "break_glass", "s0")),
        ("access", "er-doc", {}, (False, "denied_by_consent", "c1")),  # not for TREAT
        # the session over (4 h of block time), the patient's deny applies again
        ("access", "er-doc", {"purpose": "ETREAT", "later": DAY // 4},
         (False, "denied_by_consent", "c1")),
        ("access", "nurse-park", {"purpose": "ETREAT"}, (True, "author", None)),
        ("review", "patient-1", {"session": 0}, "ok"),
        ("review", "po-han", {"session": 0}, "ok"),
        ("review", "po-han", {"session": 0}, "already_reviewed"),
    ],
    "erasure": [
        ("anchor", "dr-kim", {}, "ok"),
        ("grant", "patient-1", {}, "ok"),
        ("access", "nurse-park", {}, (False, "no_consent", None)),
        ("erase", "nurse-park", {"basis": "data_error"}, "unauthorized"),
        ("erase", "patient-1", {}, "ok"),
        ("access", "dr-kim", {}, (False, "erased", None)),
        ("access", "patient-1", {}, (False, "erased", None)),
        ("anchor", "dr-kim", {"version": 2}, "erased"),
        ("erase", "seoul-general-admin", {"basis": "legal_obligation"}, "already_erased"),
    ],
}  # fmt: skip


@pytest.mark.parametrize("steps", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_consent_scenario(chain: Chain, steps: list[tuple[str, str, dict[str, Any], Any]]) -> None:
    chain.enroll("seoul-general", "er-doc", generate_key(), capabilities=["emergency"])
    chain.enroll("seoul-general", "po-han", generate_key(), role="clerk",
                 capabilities=["privacy_officer"])  # fmt: skip
    story = Story(chain)
    for op, who, args, want in steps:
        story.step(op, who, args, want)
    story.check_access_log()
    if story.sessions:
        assert chain.state("bgidx/org/seoul-general") == []  # reviewed by the privacy officer
    chain.verify()  # everything replays from genesis
