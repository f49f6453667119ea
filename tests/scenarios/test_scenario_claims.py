"""Claims on the demo consortium, as tables of steps run through a real node.

Each step submits one transaction and names the receipt code it expects and, for a claim, the
decision of its adjudication. At the end the whole chain is recomputed from genesis
(``verify_store``): adjudication is deterministic, so every replayed block yields the same
receipts, state and roots.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from carechain.encoding import b64u_encode
from carechain.node.chaindir import InitResult
from carechain.node.node import now_ms
from carechain.testing.chain_driver import Chain

DAY = 86_400_000
PAYER = "nhis-payer-admin"


def claim_args(chain: Chain, ref: str, *items: dict[str, Any], **over: Any) -> dict[str, Any]:
    now = now_ms()
    lines = [
        {"service": "consult-outpatient", "date": now - DAY, "units": 1, "charge": 20_000, **i}
        for i in (items or ({},))
    ]
    args = {
        "ref": ref,
        "provider": "seoul-general",
        "patient": chain.account("patient-1"),
        "coverage": "nhis-p1",
        "encounter": {"org": "seoul-general", "id": "enc-1"},
        "items": lines,
        "diagnoses": ["E11.9"],
        "digest": b64u_encode(hashlib.sha256(ref.encode()).digest()),
    }
    return {**args, **over}


class Story:
    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.claims: dict[str, str] = {}

    def step(
        self, op: str, who: str, args: dict[str, Any], want: str, decision: str | None
    ) -> None:
        chain = self.chain
        sender, key = chain._actor(who)
        if op == "anchor":
            tx = chain.anchor(who, **args)
        else:
            if "claim" in args:
                args = {**args, "claim": self.claims[args["claim"]]}
            if op == "submit":
                args = claim_args(chain, args.pop("ref"), *args.pop("items", ()), **args)
            tx = chain.tx(f"claims.{op}@1", sender, args, [key])
        out = chain.run1(tx)
        assert out.code == want, (op, who, out.receipt)
        if op == "submit" and out.ok:
            cid = tx.tx_id.hex()[:16]
            self.claims.setdefault(args["ref"], cid)
            assert chain.state(f"claims/claim/{cid}")["decision"] == decision


ENC = {"type": "Encounter", "id": "enc-1"}
DOC = {"type": "DocumentReference", "id": "note-1"}
SCENARIOS: dict[str, list[tuple[str, str, dict[str, Any], str, str | None]]] = {
    "approve, duplicate, pay": [
        ("anchor", "dr-kim", ENC, "ok", None),
        ("submit", "dr-kim", {"ref": "a"}, "ok", "approved"),
        ("submit", "dr-kim", {"ref": "a"}, "ok", "denied"),  # the same claim again
        ("submit", "dr-kim", {"ref": "b"}, "ok", "denied"),  # same service, patient, day
        ("pay", PAYER, {"claim": "a", "amount": 1}, "amount_mismatch", None),
        ("pay", PAYER, {"claim": "a", "amount": 5_600}, "ok", None),
        ("pay", PAYER, {"claim": "a", "amount": 5_600}, "nothing_to_pay", None),
        ("pay", PAYER, {"claim": "b", "amount": 0}, "nothing_to_pay", None),
    ],
    "no encounter, then billed properly": [
        ("submit", "dr-kim", {"ref": "a"}, "ok", "denied"),  # encounter not anchored yet
        ("anchor", "dr-kim", ENC, "ok", None),
        ("submit", "dr-kim", {"ref": "b"}, "ok", "approved"),
    ],
    "prior authorisation, appeal by someone else, overturn": [
        ("anchor", "dr-kim", ENC, "ok", None),
        ("anchor", "dr-kim", DOC, "ok", None),
        (
            "submit",
            "dr-kim",
            {"ref": "mri", "items": [{"service": "mri-brain", "charge": 400_000}]},
            "ok",
            "denied",
        ),
        (
            "appeal",
            "ph-lee",
            {"claim": "mri", "reason": "x", "documentation": {"org": "seoul-general", **DOC}},
            "unauthorized",
            None,
        ),
        (
            "appeal",
            "dr-kim",
            {
                "claim": "mri",
                "reason": "emergency imaging",
                "documentation": {"org": "seoul-general", **DOC},
            },
            "ok",
            None,
        ),
        (
            "decide_appeal",
            "dr-kim",
            {"claim": "mri", "decision": "overturned", "reason": "x"},
            "unauthorized",
            None,
        ),
        (
            "decide_appeal",
            PAYER,
            {"claim": "mri", "decision": "overturned", "reason": "documented"},
            "ok",
            None,
        ),
        (
            "appeal",
            "dr-kim",
            {"claim": "mri", "reason": "again", "documentation": {"org": "seoul-general", **DOC}},
            "nothing_to_appeal",
            None,
        ),
    ],
    "limits and coverage": [
        ("anchor", "dr-kim", ENC, "ok", None),
        (
            "submit",
            "dr-kim",
            {"ref": "l1", "items": [{"service": "hba1c-test", "units": 4, "charge": 32_000}]},
            "ok",
            "approved",
        ),
        (
            "submit",
            "dr-kim",
            {
                "ref": "l2",
                "items": [
                    {
                        "service": "hba1c-test",
                        "units": 1,
                        "charge": 8_000,
                        "date": now_ms() - 3 * DAY,
                    }
                ],
            },
            "ok",
            "denied",
        ),  # over the period's limit
        ("submit", "dr-kim", {"ref": "c1", "coverage": "nhis-p2"}, "ok", "denied"),
        ("submit", "ph-lee", {"ref": "x1"}, "unauthorized", None),
    ],
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_claims_scenarios(chain: Chain, name: str) -> None:
    story = Story(chain)
    for step in SCENARIOS[name]:
        story.step(*step)
    report = chain.verify()
    assert report.state_keys > 0


@pytest.fixture
def demo_chain(demo_chain_domains: InitResult) -> InitResult:
    """This module uses the domain demo data, as ``carechain init --demo`` seeds it."""
    return demo_chain_domains
