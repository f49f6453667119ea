"""Trial lifecycle scenarios through a real node (receipts, state, and the whole chain
re-verified from genesis afterwards): each row is a sequence of steps and the receipt code
every step must get."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from carechain.client.client import now_ms
from carechain.contracts.trials import switching_report
from carechain.encoding import b64u_encode
from carechain.node.chaindir import DEMO_PASSWORD
from carechain.node.trials import SPONSOR_ORG, admit_demo_sponsor_on
from carechain.testing.chain_driver import Chain

PI = f"{SPONSOR_ORG}.dr-yoon"
T = "KCT0033333"
A = [{"measure": "A", "time_frame": "4 weeks"}]
B = [{"measure": "B", "time_frame": "4 weeks"}]
A_LONG = [{"measure": "A", "time_frame": "52 weeks"}]
D = b64u_encode(hashlib.sha256(b"doc").digest())

Step = tuple[str, str, dict[str, Any], str]  # who, kind, args, expected code
REG = (
    "pi",
    "trials.register@1",
    {
        "id": T,
        "title": "t",
        "phase": "phase-2",
        "protocol": D,
        "primary": A,
        "secondary": [],
        "planned_enrolment": 10,
    },
    "ok",
)
ENROL = ("pi", "trials.enrol@1", {"trial": T, "consent": "$consent"}, "ok")

SCENARIOS: dict[str, tuple[list[Step], list[tuple[str, str]], bool]] = {
    # steps, expected (stage, change) in the report, switched?
    "as-registered": (
        [
            REG,
            ENROL,
            (
                "pi",
                "trials.report_results@1",
                {"trial": T, "primary": A, "secondary": [], "data": D},
                "ok",
            ),
        ],
        [],
        False,
    ),
    "switch-before-enrolment": (
        [REG, ("pi", "trials.amend@1", {"trial": T, "reason": "r", "primary": B}, "ok")],
        [("amendment", "dropped"), ("amendment", "added")],
        True,
    ),
    "time-frame-changed-after-enrolment": (
        [
            REG,
            ENROL,
            ("pi", "trials.amend@1", {"trial": T, "reason": "r", "primary": A_LONG}, "ok"),
        ],
        [("amendment", "changed")],
        True,
    ),
    "switched-only-in-results": (
        [
            REG,
            ENROL,
            (
                "pi",
                "trials.report_results@1",
                {"trial": T, "primary": B, "secondary": A, "data": D},
                "ok",
            ),
        ],
        [("results", "dropped"), ("results", "added")],
        True,
    ),
    "switched-and-switched-back": (
        [
            REG,
            ("pi", "trials.amend@1", {"trial": T, "reason": "r", "primary": B}, "ok"),
            ("pi", "trials.amend@1", {"trial": T, "reason": "back", "primary": A}, "ok"),
        ],
        [
            ("amendment", "dropped"),
            ("amendment", "added"),
            ("amendment", "added"),
            ("amendment", "dropped"),
        ],
        False,
    ),
    "others-are-refused": (
        [
            REG,
            ("kim", "trials.amend@1", {"trial": T, "reason": "r", "primary": B}, "unauthorized"),
            (
                "kim",
                "trials.report_results@1",
                {"trial": T, "primary": B, "secondary": [], "data": D},
                "unauthorized",
            ),
            (
                "pi",
                "trials.report_results@1",
                {"trial": "KCT0000404", "primary": B, "secondary": [], "data": D},
                "unknown_trial",
            ),
        ],
        [],
        False,
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_trial_scenario(chain: Chain, name: str) -> None:
    steps, want_changes, switched = SCENARIOS[name]
    admit_demo_sponsor_on(chain.node, chain.keys, DEMO_PASSWORD)
    actors = {
        "pi": (PI, chain.key("dr-yoon")),
        "kim": ("seoul-general.dr-kim", chain.key("dr-kim")),
    }
    t = now_ms()
    grant = chain.grant(
        "patient-1",
        grantee={"org": SPONSOR_ORG},
        purposes=["HRESCH"],
        period={"start": t - 3_600_000, "end": t + 86_400_000},
    )
    assert chain.run1(grant).ok
    for who, kind, args, code in steps:
        sender, key = actors[who]
        args = {k: grant.tx_id.hex()[:16] if v == "$consent" else v for k, v in args.items()}
        out = chain.run1(chain.tx(kind, sender, args, [key]))
        assert out.code == code, (kind, out.receipt)
    trial = chain.state(f"trial/{T}")
    versions = [chain.state(f"trialv/{T}/{n}") for n in range(1, trial["version"] + 1)]
    report = switching_report(trial, versions, chain.state(f"trialres/{T}"))
    assert [(c["stage"], c["change"]) for c in report["changes"]] == want_changes
    assert report["switched"] is switched
    chain.verify()  # every receipt and state write recomputes from genesis
