"""Break-glass sessions and their review, and the member capabilities they rest on."""

from __future__ import annotations

from typing import Any

import pytest

from carechain.contracts import access
from carechain.contracts.consent import AccessRequest, decide
from carechain.crypto.signatures import generate_key
from carechain.errors import ValidationError
from carechain.ledger.params import ChainParams
from carechain.testing.chain_driver import MEMBERS, Chain, Sandbox

HOUR = 3_600_000

# -- capabilities (identity.register_member@1) ---------------------------------------------------

CAPABILITY_CASES: dict[str, tuple[str, Any, str]] = {
    "emergency-practitioner": ("practitioner", ["emergency"], "ok"),
    "emergency-nurse": ("nurse", ["emergency"], "ok"),
    "both-sorted": ("practitioner", ["privacy_officer", "emergency"], "ok"),
    "privacy-officer-clerk": ("clerk", ["privacy_officer"], "ok"),
    "privacy-officer-admin": ("admin", ["privacy_officer"], "ok"),
    "none": ("practitioner", [], "ok"),
    "emergency-device": ("device", ["emergency"], "bad_args"),
    "emergency-pharmacist": ("pharmacist", ["emergency"], "bad_args"),
    "privacy-officer-service": ("service", ["privacy_officer"], "bad_args"),
    "unknown-capability": ("practitioner", ["superuser"], "bad_args"),
    "twice": ("practitioner", ["emergency", "emergency"], "bad_args"),
    "not-a-list": ("practitioner", "emergency", "bad_args"),
    "not-strings": ("practitioner", [1], "bad_args"),
}


@pytest.mark.parametrize(
    "role,caps,want", list(CAPABILITY_CASES.values()), ids=list(CAPABILITY_CASES)
)
def test_member_capabilities(chain: Chain, role: str, caps: Any, want: str) -> None:
    out = chain.run1(
        chain.register_member(
            "seoul-general", "seoul-general.dr-yoon", generate_key(), role=role, capabilities=caps
        )
    )
    assert out.code == want, out.receipt
    acct = chain.state("acct/seoul-general.dr-yoon")
    if want != "ok":
        assert acct is None
    elif caps:
        assert acct["capabilities"] == sorted(caps)
    else:
        assert "capabilities" not in acct


def test_demo_members_carry_no_capability(chain: Chain) -> None:
    for account in MEMBERS.values():
        assert "capabilities" not in chain.state(f"acct/{account}")


# -- access.break_glass@1 ------------------------------------------------------------------------


@pytest.fixture
def staffed(chain: Chain) -> Chain:
    """seoul-general with an emergency physician ``er-doc``, an emergency nurse ``er-nurse``
    and a privacy officer ``po-han``; hanbit-pharmacy with a privacy officer ``po-kang``."""
    outs = [
        chain.enroll("seoul-general", "er-doc", generate_key(), capabilities=["emergency"]),
        chain.enroll(
            "seoul-general", "er-nurse", generate_key(), role="nurse", capabilities=["emergency"]
        ),
        chain.enroll(
            "seoul-general",
            "po-han",
            generate_key(),
            role="clerk",
            capabilities=["privacy_officer"],
        ),
        chain.enroll(
            "hanbit-pharmacy",
            "po-kang",
            generate_key(),
            role="clerk",
            capabilities=["privacy_officer"],
        ),
    ]
    assert all(o.ok for o in outs), [o.receipt for o in outs]
    return chain


BG_CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    "emergency-physician": ("er-doc", {}, "ok"),
    "emergency-nurse": ("er-nurse", {}, "ok"),
    "practitioner-without-capability": ("dr-kim", {}, "unauthorized"),
    "privacy-officer": ("po-han", {}, "unauthorized"),
    "admin": ("seoul-general-admin", {}, "unauthorized"),
    "a-patient": ("patient-2", {}, "unauthorized"),
    "purpose-treat": ("er-doc", {"purpose": "TREAT"}, "wrong_purpose"),
    "purpose-lowercase": ("er-doc", {"purpose": "etreat"}, "wrong_purpose"),
    "purpose-missing": ("er-doc", {"purpose": None}, "bad_args"),
    "reason-missing": ("er-doc", {"reason": None}, "bad_args"),
    "reason-empty": ("er-doc", {"reason": ""}, "bad_args"),
    "reason-too-long": ("er-doc", {"reason": "x" * 201}, "bad_args"),
    "unknown-patient": ("er-doc", {"patient": "pt-00000000000000000000"}, "unknown_patient"),
    "patient-is-a-member": ("er-doc", {"patient": MEMBERS["dr-kim"]}, "unknown_patient"),
    "unknown-field": ("er-doc", {"hours": 8}, "bad_args"),
}


@pytest.mark.parametrize("by,over,want", list(BG_CASES.values()), ids=list(BG_CASES))
def test_break_glass(staffed: Chain, by: str, over: dict[str, Any], want: str) -> None:
    chain = staffed
    tx = chain.break_glass(by, **over)
    out = chain.run1(tx)
    assert out.code == want, out.receipt
    sid = tx.tx_id.hex()[:16]
    session = chain.state(f"bg/{sid}")
    patient = chain.account("patient-1")
    if want != "ok":
        assert session is None and not out.events
        assert chain.state(f"bgidx/patient/{patient}") is None
        return
    actor = chain.account(by)
    assert out.events == ["access.break_glass"]
    assert session == {
        "actor": actor,
        "expires": session["time"] + ChainParams().break_glass_ms,
        "id": sid,
        "opened": out.height,
        "org": "seoul-general",
        "patient": patient,
        "purpose": "ETREAT",
        "reason": tx.body.args["reason"],
        "reviews": [],
        "role": chain.state(f"acct/{actor}")["role"],
        "status": "open",
        "time": session["time"],
        "tx": tx.tx_id.hex(),
    }
    assert ChainParams().break_glass_ms == 4 * HOUR
    assert chain.state(f"bgidx/patient/{patient}") == [sid]
    assert chain.state("bgidx/org/seoul-general") == [sid]
    assert chain.state(f"bgidx/actor/{actor}/{patient}") == [sid]
    assert out.index in chain.node.store.account_log_indexes(patient)
    # and the node, deciding now, lets the actor in for ETREAT only
    height = chain.height()
    request = AccessRequest(
        actor=actor,
        actor_org="seoul-general",
        actor_role="practitioner",
        patient=patient,
        action="search",
        record=None,
        resource_type="Observation",
        purpose="ETREAT",
    )
    from carechain.ledger.state import Overlay

    view = Overlay(chain.node.store)
    assert decide(view, request, time=session["time"], height=height).reason == "break_glass"
    late = decide(view, request, time=session["expires"], height=height)
    assert (late.permit, late.reason) == (False, "expired")


def test_break_glass_expiry_follows_the_chain_parameter() -> None:
    t0, er, p = 1_800_000_000_000, "seoul-general.er-doc", "pt-p0000000000000000000"
    world = Sandbox(ChainParams(break_glass_ms=1_000))
    world.put_org("seoul-general")
    world.put_member(er, "seoul-general", "practitioner", "emergency")
    world.put_patient(p)
    args = {"patient": p, "purpose": "ETREAT", "reason": "x"}
    sid = world.apply("access.break_glass@1", er, args, height=3, time=t0)
    assert world.state.get(f"bg/{sid}") is not None
    session = access.find_session(world.state, sid)
    assert session is not None and session["expires"] == t0 + 1_000
    r = AccessRequest(
        actor=er,
        actor_org="seoul-general",
        actor_role="practitioner",
        patient=p,
        action="read",
        record=None,
        resource_type="Observation",
        purpose="ETREAT",
    )
    T0 = t0
    assert decide(world.state, r, time=T0 + 999, height=3).reason == "break_glass"
    assert decide(world.state, r, time=T0 + 1_000, height=3).reason == "expired"
    assert decide(world.state, r, time=T0 - 1, height=3).reason == "expired"  # clock before it


@pytest.mark.parametrize("bad", [0, -1, True, "4h"])
def test_break_glass_ms_must_be_positive(bad: Any) -> None:
    with pytest.raises(ValidationError):
        ChainParams.from_json({"break_glass_ms": bad})
    assert ChainParams.from_json({"break_glass_ms": 60_000}).break_glass_ms == 60_000


def test_sessions_accumulate_per_patient_and_org(staffed: Chain) -> None:
    chain = staffed
    a, b, c = chain.run(
        chain.break_glass("er-doc"),
        chain.break_glass("er-nurse"),
        chain.break_glass("er-doc", patient="patient-2"),
    )
    assert (a.code, b.code, c.code) == ("ok", "ok", "ok")
    ids = [o.tx.tx_id.hex()[:16] for o in (a, b, c)]
    p1, p2 = chain.account("patient-1"), chain.account("patient-2")
    assert chain.state(f"bgidx/patient/{p1}") == ids[:2]
    assert chain.state(f"bgidx/patient/{p2}") == ids[2:]
    assert chain.state("bgidx/org/seoul-general") == ids
    assert chain.state(f"bgidx/actor/{chain.account('er-doc')}/{p1}") == ids[:1]


# -- access.review@1 -----------------------------------------------------------------------------

REVIEW_CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    "the-patient": ("patient-1", {}, "ok"),
    "the-patient-with-a-note": ("patient-1", {"note": "I was unconscious; fine"}, "ok"),
    "privacy-officer": ("po-han", {"note": "justified: ED admission"}, "ok"),
    "privacy-officer-of-another-org": ("po-kang", {}, "unauthorized"),
    "admin-is-not-privacy-officer": ("seoul-general-admin", {}, "unauthorized"),
    "the-actor-themself": ("er-doc", {}, "unauthorized"),
    "another-patient": ("patient-2", {}, "unauthorized"),
    "unknown-session": ("patient-1", {"session": "0123456789abcdef"}, "unknown_session"),
    "malformed-session": ("patient-1", {"session": "../acct"}, "unknown_session"),
    "note-too-long": ("patient-1", {"note": "x" * 201}, "bad_args"),
    "unknown-field": ("patient-1", {"finding": "ok"}, "bad_args"),
}


@pytest.mark.parametrize("by,over,want", list(REVIEW_CASES.values()), ids=list(REVIEW_CASES))
def test_review(staffed: Chain, by: str, over: dict[str, Any], want: str) -> None:
    chain = staffed
    opened = chain.run1(chain.break_glass("er-doc"))
    sid = opened.tx.tx_id.hex()[:16]
    before = chain.state(f"bg/{sid}")
    out = chain.run1(chain.review(by, **{"session": sid, **over}))
    assert out.code == want, out.receipt
    after = chain.state(f"bg/{sid}")
    if want != "ok":
        assert after == before and not out.events
        assert chain.state("bgidx/org/seoul-general") == [sid]
        return
    party = "patient" if by.startswith("patient-") else "privacy_officer"
    entry = {
        "as": party,
        "by": chain.account(by),
        "height": out.height,
        **({"note": over["note"]} if "note" in over else {}),
    }
    assert after["reviews"] == [entry]
    assert out.events == ["access.reviewed"]
    assert after["expires"] == before["expires"]  # a review never shortens the session
    if party == "privacy_officer":
        assert after["status"] == "reviewed"
        assert chain.state("bgidx/org/seoul-general") == []
    else:
        assert after["status"] == "open"
        assert chain.state("bgidx/org/seoul-general") == [sid]
    assert chain.state(f"bgidx/patient/{chain.account('patient-1')}") == [sid]


def test_each_party_reviews_once(staffed: Chain) -> None:
    chain = staffed
    sid = chain.run1(chain.break_glass("er-doc")).tx.tx_id.hex()[:16]
    codes = [
        chain.run1(chain.review(by, sid)).code
        for by in ("patient-1", "patient-1", "po-han", "po-han")
    ]
    assert codes == ["ok", "already_reviewed", "ok", "already_reviewed"]
    assert [r["as"] for r in chain.state(f"bg/{sid}")["reviews"]] == ["patient", "privacy_officer"]
