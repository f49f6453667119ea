"""Prescription lifecycles for schedules II–V on the demo consortium, through a real node.

The demo seeds dr-kim's prescriber registration (II–V), hanbit-pharmacy's registration and its
pharmacist ph-lee. Each scenario is a table of steps ``(op, who, args, want)``; every refused
step must leave a rejected receipt in its block and the prescription's state unchanged. Steps
that need time to pass (refills after 75 % of the days' supply, windows closing) are covered in
``tests/unit/contracts/test_rx_contracts.py`` on a sandbox with chosen block times.
"""

from __future__ import annotations

from typing import Any

import pytest

from carechain.contracts.prescriptions import verify_status
from carechain.encoding import b64u_encode
from carechain.node.chaindir import InitResult
from carechain.node.node import now_ms
from carechain.testing.chain_driver import Chain

DAY = 86_400_000
MEDS = {
    "II": {
        "rxnorm": "1049621",
        "name": "oxycodone hydrochloride",
        "strength": "5 mg",
        "form": "tablet",
    },
    "III": {"rxnorm": "856903", "name": "buprenorphine", "strength": "8 mg", "form": "tablet"},
    "IV": {"rxnorm": "308048", "name": "alprazolam", "strength": "0.5 mg", "form": "tablet"},
    "V": {"rxnorm": "1014678", "name": "pregabalin", "strength": "75 mg", "form": "capsule"},
}


class Story:
    """Runs one table on ``chain``; ``rx`` is the prescription issued last."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.rx: str | None = None
        self.patient = chain.account("patient-1")

    def issue_args(self, schedule: str, **over: Any) -> dict[str, Any]:
        now = now_ms()
        args: dict[str, Any] = {
            "days_supply": 10,
            "digest": b64u_encode(bytes(32)),
            "earliest_fill": now - DAY,
            "expires": now + 30 * DAY,
            "medication": MEDS[schedule],
            "patient": self.patient,
            "quantity": 30,
            "refills": 0,
            "schedule": schedule,
        }
        args.update(over)
        return {k: v for k, v in args.items() if v is not None}

    def step(self, op: str, who: str, args: dict[str, Any], want: Any) -> None:
        chain = self.chain
        if op == "verify":
            got = verify_status(_View(chain), str(self.rx), now_ms())
            for key, value in want.items():
                assert got[key] == value, (key, got)
            return
        sender, key = chain._actor(who)
        if op == "issue":
            schedule = args.pop("schedule")
            tx = chain.tx("prescriptions.issue@1", sender, self.issue_args(schedule, **args), [key])
        else:
            base: dict[str, Any] = {"id": self.rx}
            if op == "dispense":
                base.update({"patient": self.patient, "quantity": 10})
            if op == "cancel":
                base["reason"] = "changed therapy"
            tx = chain.tx(f"prescriptions.{op}@1", sender, {**base, **args}, [key])
        before = chain.state(f"rx/{self.rx}") if self.rx else None
        out = chain.run1(tx)
        assert out.code == want, (op, who, args, out.receipt)
        if not out.ok:
            assert out.receipt["status"] == "rejected"  # kept in the block as evidence
            if before is not None:
                assert chain.state(f"rx/{self.rx}") == before, "a refused step changed state"
        elif op == "issue":
            self.rx = tx.tx_id.hex()[:16]


class _View:
    def __init__(self, chain: Chain) -> None:
        self.chain = chain

    def get(self, key: str) -> Any:
        return self.chain.state(key)


SCENARIOS: dict[str, list[tuple[str, str, dict[str, Any], Any]]] = {
    "II: partial fills, exactly the quantity, no refills": [
        ("issue", "dr-kim", {"schedule": "II", "refills": 1}, "refills_not_allowed"),
        ("issue", "nurse-park", {"schedule": "II"}, "no_registration"),
        ("issue", "dr-kim", {"schedule": "II", "quantity": 60}, "ok"),
        ("dispense", "ph-lee", {"quantity": 20}, "ok"),
        ("verify", "", {}, {"status": "valid", "remaining": 40, "refills_remaining": 0}),
        ("dispense", "ph-lee", {"quantity": 41}, "quantity_exceeds_remaining"),
        ("dispense", "nurse-park", {"quantity": 1}, "not_a_pharmacist"),
        ("dispense", "ph-lee", {"quantity": 40}, "ok"),
        ("dispense", "ph-lee", {"quantity": 1}, "completed"),
        ("verify", "", {}, {"status": "completed", "remaining": 0, "dispensed": 60}),
        ("cancel", "dr-kim", {}, "completed"),
    ],
    "III: refills allowed, early refill refused": [
        ("issue", "dr-kim", {"schedule": "III", "refills": 6}, "too_many_refills"),
        ("issue", "dr-kim", {"schedule": "III", "refills": 2}, "ok"),
        ("dispense", "ph-lee", {"quantity": 30}, "ok"),
        ("verify", "", {}, {"status": "not_yet_fillable", "remaining": 30, "refills_remaining": 2}),
        ("dispense", "ph-lee", {"quantity": 30}, "early_refill"),
        ("cancel", "ph-lee", {}, "unauthorized"),
        ("cancel", "dr-kim", {}, "ok"),
        ("dispense", "ph-lee", {"quantity": 1}, "cancelled"),
        ("verify", "", {}, {"status": "cancelled", "remaining": 0}),
    ],
    "IV: patient and pharmacy must match": [
        (
            "issue",
            "dr-kim",
            {"schedule": "IV", "pharmacy": "seoul-general"},
            "pharmacy_not_registered",
        ),
        ("issue", "dr-kim", {"schedule": "IV", "refills": 1, "pharmacy": "hanbit-pharmacy"}, "ok"),
        ("dispense", "ph-lee", {"patient": "pt-0000000000000000000a"}, "patient_mismatch"),
        ("dispense", "ph-lee", {"quantity": 30}, "ok"),
        ("transfer", "ph-lee", {"to": "hanbit-pharmacy"}, "same_pharmacy"),
        ("transfer", "ph-lee", {"to": "nhis-payer"}, "pharmacy_not_registered"),
        ("verify", "", {}, {"refills_remaining": 1, "pharmacy": "hanbit-pharmacy"}),
    ],
    "V: not before the earliest fill date": [
        ("issue", "dr-kim", {"schedule": "V", "earliest_fill": now_ms() + 5 * DAY}, "ok"),
        ("verify", "", {}, {"status": "not_yet_fillable", "remaining": 30}),
        ("dispense", "ph-lee", {}, "too_early"),
        ("cancel", "dr-kim", {}, "ok"),
        ("dispense", "ph-lee", {}, "cancelled"),
    ],
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_rx_lifecycle(chain: Chain, name: str) -> None:
    story = Story(chain)
    for op, who, args, want in SCENARIOS[name]:
        story.step(op, who, dict(args), want)
    chain.verify()  # every block, receipt (rejected ones too) and state recomputes


def test_demo_credentials_seeded(chain: Chain) -> None:
    for key in (
        "cred/prescriber/seoul-general.dr-kim",
        "cred/pharmacy/hanbit-pharmacy",
        "cred/pharmacist/hanbit-pharmacy.ph-lee",
    ):
        rec = chain.state(key)
        assert rec is not None and rec["versions"][-1]["status"] == "active", key
    assert chain.state("rules/prescriptions")["pdmp"]["mme_threshold"] == 90


@pytest.fixture
def demo_chain(demo_chain_domains: InitResult) -> InitResult:
    """This module uses the domain demo data, as ``carechain init --demo`` seeds it."""
    return demo_chain_domains
