"""The consent contract (grant/revoke through real transactions) and ``decide`` as a table.

``decide`` is tested on an in-memory :class:`Overlay` that the real handlers write (``World``):
block heights and block times are chosen by each row, which a live node cannot do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from carechain.contracts import consent
from carechain.contracts.consent import AccessRequest, Decision, RecordRef, decide
from carechain.errors import ContractError, ValidationError
from carechain.ledger.params import ChainParams
from carechain.testing.chain_driver import MEMBERS, Chain, Sandbox, fake_digest

# -- grant validation through the node ------------------------------------------------------------

DR_KIM = {"account": MEMBERS["dr-kim"]}
GRANT_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "defaults": ({}, "ok"),
    "grantee-org": ({"grantee": {"org": "hanbit-pharmacy"}}, "ok"),
    "grantee-org-role": ({"grantee": {"org": "hanbit-pharmacy", "role": "pharmacist"}}, "ok"),
    "grantee-role-only": ({"grantee": {"role": "pharmacist"}}, "bad_args"),
    "grantee-account-and-org": (
        {"grantee": {"account": MEMBERS["dr-kim"], "org": "seoul-general"}},
        "bad_args",
    ),
    "grantee-unknown-account": (
        {"grantee": {"account": "seoul-general.nobody"}},
        "unknown_account",
    ),
    "grantee-unknown-org": ({"grantee": {"org": "busan-clinic"}}, "unknown_org"),
    "grantee-bad-role": ({"grantee": {"org": "seoul-general", "role": "surgeon"}}, "bad_args"),
    "grantee-self": ({"grantee": {"account": "patient-1"}}, "bad_args"),
    "grantee-string": ({"grantee": MEMBERS["dr-kim"]}, "bad_args"),
    "actions-read-write": ({"actions": ["write", "read"]}, "ok"),
    "actions-empty": ({"actions": []}, "bad_args"),
    "actions-search": ({"actions": ["search"]}, "bad_args"),
    "actions-twice": ({"actions": ["read", "read"]}, "bad_args"),
    "actions-missing": ({"actions": None}, "bad_args"),
    "scope-types": ({"scope": {"types": ["Observation", "Condition"]}}, "ok"),
    "scope-type-unknown": ({"scope": {"types": ["Claim"]}}, "bad_args"),
    "scope-types-empty": ({"scope": {"types": []}}, "bad_args"),
    "scope-categories": ({"scope": {"categories": ["laboratory", "vital-signs"]}}, "ok"),
    "scope-category-space": ({"scope": {"categories": ["vital signs"]}}, "bad_args"),
    "scope-category-twice": ({"scope": {"categories": ["a", "a"]}}, "bad_args"),
    "scope-record": ({"scope": {"records": ["OBS"]}}, "ok"),
    "scope-record-unknown": ({"scope": {"records": ["UNKNOWN"]}}, "unknown_record"),
    "scope-record-of-another-patient": ({"scope": {"records": ["OTHER"]}}, "unauthorized"),
    "scope-record-malformed": ({"scope": {"records": [{"org": "seoul-general"}]}}, "bad_args"),
    "scope-record-twice": ({"scope": {"records": ["OBS", "OBS"]}}, "bad_args"),
    "scope-unknown-field": ({"scope": {"codes": ["x"]}}, "bad_args"),
    "scope-not-object": ({"scope": ["Observation"]}, "bad_args"),
    "purposes-all-supported": ({"purposes": list(consent.PURPOSES)}, "ok"),
    "purpose-unknown": ({"purposes": ["GOSSIP"]}, "bad_args"),
    "purpose-lowercase": ({"purposes": ["treat"]}, "bad_args"),
    "purposes-empty": ({"purposes": []}, "bad_args"),
    "purposes-twice": ({"purposes": ["TREAT", "TREAT"]}, "bad_args"),
    "period-end-before-start": ({"period": "END_BEFORE_START"}, "bad_args"),
    "period-empty": ({"period": "EMPTY"}, "bad_args"),
    "period-over": ({"period": "OVER"}, "bad_args"),
    "period-no-end": ({"period": "NO_END"}, "bad_args"),
    "period-float-like": ({"period": "STRING"}, "bad_args"),
    "decision-deny": ({"decision": "deny"}, "ok"),
    "decision-maybe": ({"decision": "maybe"}, "bad_args"),
    "decision-missing": ({"decision": None}, "bad_args"),
    "unknown-field": ({"note": "x"}, "bad_args"),
    "by-a-practitioner": ({"by": "dr-kim"}, "unauthorized"),
    "by-an-admin": ({"by": "seoul-general-admin"}, "unauthorized"),
}


def _period(kind: str, now: int) -> dict[str, Any]:
    return {
        "END_BEFORE_START": {"end": now, "start": now + 1},
        "EMPTY": {"end": now + 5, "start": now + 5},
        "OVER": {"end": now - 1_000, "start": now - 86_400_000},
        "NO_END": {"start": now},
        "STRING": {"end": str(now + 10_000), "start": now},
    }[kind]


@pytest.mark.parametrize("over,want", list(GRANT_CASES.values()), ids=list(GRANT_CASES))
def test_grant(chain: Chain, over: dict[str, Any], want: str) -> None:
    assert chain.run1(chain.anchor("dr-kim")).ok
    assert chain.run1(chain.anchor("dr-kim", id="obs-9", patient="patient-2")).ok
    refs = {
        "OBS": {"id": "obs-1", "org": "seoul-general", "type": "Observation"},
        "UNKNOWN": {"id": "obs-2", "org": "seoul-general", "type": "Observation"},
        "OTHER": {"id": "obs-9", "org": "seoul-general", "type": "Observation"},
    }
    over = dict(over)
    by = over.pop("by", "patient-1")
    if isinstance(over.get("period"), str):
        over["period"] = _period(over["period"], _now())
    scope = over.get("scope")
    if isinstance(scope, dict) and "records" in scope:
        over["scope"] = {
            "records": [refs.get(r, r) if isinstance(r, str) else r for r in scope["records"]]
        }
    grantee = over.get("grantee")
    if isinstance(grantee, dict) and grantee.get("account") == "patient-1":
        over["grantee"] = {"account": chain.account("patient-1")}
    tx = chain.grant(by, **over) if by.startswith("patient-") else _grant_by(chain, by, over)
    out = chain.run1(tx)
    assert out.code == want, out.receipt
    cid = tx.tx_id.hex()[:16]
    stored = chain.state(f"consent/{cid}")
    patient = chain.account("patient-1")
    if want != "ok":
        assert stored is None and not out.events
        assert chain.state(f"consents/{patient}") is None
        return
    args = tx.body.args
    assert out.events == ["consent.granted"]
    assert stored == {
        "actions": sorted(args["actions"]),
        "decision": args["decision"],
        "grantee": args["grantee"],
        "granted": out.height,
        "id": cid,
        "patient": patient,
        "period": args["period"],
        "purposes": sorted(args["purposes"]),
        "scope": {k: sorted(v, key=str) if k != "records" else v for k, v in args["scope"].items()},
        "status": "active",
        "time": stored["time"],
        "tx": tx.tx_id.hex(),
    }
    assert chain.state(f"consents/{patient}") == [cid]
    if "account" in args["grantee"]:  # the grantee finds it in its account log
        assert out.index in chain.node.store.account_log_indexes(args["grantee"]["account"])


def _now() -> int:
    from carechain.node.node import now_ms

    return now_ms()


def _grant_by(chain: Chain, by: str, over: dict[str, Any]) -> Any:
    base = chain.grant("patient-1", **over).body.args
    sender, key = chain._actor(by)
    return chain.tx("consent.grant@1", sender, dict(base), [key])


def test_grant_index_keeps_order(chain: Chain) -> None:
    outs = chain.run(chain.grant(), chain.grant(decision="deny"), chain.grant(purposes=["HRESCH"]))
    assert all(o.ok for o in outs)
    patient = chain.account("patient-1")
    assert chain.state(f"consents/{patient}") == [o.tx.tx_id.hex()[:16] for o in outs]


REVOKE_CASES: dict[str, tuple[str, str, str]] = {
    "by-the-patient": ("patient-1", "GRANT", "ok"),
    "by-another-patient": ("patient-2", "GRANT", "unauthorized"),
    "by-the-grantee": ("dr-kim", "GRANT", "unauthorized"),
    "unknown-id": ("patient-1", "0123456789abcdef", "unknown_consent"),
    "malformed-id": ("patient-1", "../acct/x", "unknown_consent"),
}


@pytest.mark.parametrize("by,cid,want", list(REVOKE_CASES.values()), ids=list(REVOKE_CASES))
def test_revoke(chain: Chain, by: str, cid: str, want: str) -> None:
    granted = chain.run1(chain.grant())
    gid = granted.tx.tx_id.hex()[:16]
    target = gid if cid == "GRANT" else cid
    sender, key = chain._actor(by)
    out = chain.run1(chain.tx("consent.revoke@1", sender, {"id": target}, [key]))
    assert out.code == want, out.receipt
    stored = chain.state(f"consent/{gid}")
    if want == "ok":
        assert out.events == ["consent.revoked"]
        assert (stored["status"], stored["revoked_at"]) == ("revoked", out.height)
        assert stored["revoke_tx"] == out.tx.tx_id.hex()
        assert out.index in chain.node.store.account_log_indexes(MEMBERS["dr-kim"])
    else:
        assert stored["status"] == "active" and "revoked_at" not in stored


def test_revoke_twice(chain: Chain) -> None:
    gid = chain.run1(chain.grant()).tx.tx_id.hex()[:16]
    first = chain.run1(chain.revoke(gid))
    again = chain.run1(chain.revoke(gid))
    assert (first.code, again.code) == ("ok", "already_revoked")
    assert chain.state(f"consent/{gid}")["revoked_at"] == first.height


def test_revoke_extra_field(chain: Chain) -> None:
    gid = chain.run1(chain.grant()).tx.tx_id.hex()[:16]
    sender, key = chain.patient("patient-1")
    out = chain.run1(chain.tx("consent.revoke@1", sender, {"id": gid, "why": "x"}, [key]))
    assert out.code == "bad_args"


# -- decide: a world written by the real handlers, heights and times chosen per row --------------

T0 = 1_800_000_000_000
HOUR = 3_600_000
DAY = 24 * HOUR
P, Q = "pt-p0000000000000000000", "pt-q0000000000000000000"
KIM, PARK, LEE, ER = (
    "seoul-general.dr-kim",
    "seoul-general.nurse-park",
    "hanbit-pharmacy.ph-lee",
    "seoul-general.dr-er",
)
OBS1 = RecordRef(org="seoul-general", type="Observation", id="obs-1")
COND1 = RecordRef(org="seoul-general", type="Condition", id="cond-1")
QOBS = RecordRef(org="seoul-general", type="Observation", id="q-obs")
NEW = RecordRef(org="seoul-general", type="Observation", id="obs-new")


def World(params: ChainParams | None = None) -> Sandbox:
    """Two organisations, four members (``ER`` carries ``emergency``), patients P and Q, and
    three records anchored at height 1: OBS1 (by KIM, laboratory) and COND1 (by PARK,
    problem-list-item) of P; QOBS (by KIM, laboratory) of Q."""
    world = Sandbox(params)
    for org in ("seoul-general", "hanbit-pharmacy"):
        world.put_org(org)
    world.put_member(KIM, "seoul-general", "practitioner")
    world.put_member(PARK, "seoul-general", "nurse")
    world.put_member(LEE, "hanbit-pharmacy", "pharmacist")
    world.put_member(ER, "seoul-general", "practitioner", "emergency")
    for pt in (P, Q):
        world.put_patient(pt)
    world.apply("records.anchor@1", KIM, _anchor(OBS1, P, "laboratory"), height=1, time=T0)
    world.apply("records.anchor@1", PARK, _anchor(COND1, P, "problem-list-item"), height=1, time=T0)
    world.apply("records.anchor@1", KIM, _anchor(QOBS, Q, "laboratory"), height=1, time=T0)
    return world


def _anchor(ref: RecordRef, patient: str, category: str) -> dict[str, Any]:
    return {
        "category": category,
        "digest": fake_digest(ref.org, ref.type, ref.id, 1),
        "id": ref.id,
        "index": fake_digest("i", "d", "x", 1),
        "org": ref.org,
        "patient": patient,
        "type": ref.type,
        "url": f"https://x.example/{ref.type}/{ref.id}",
        "version": 1,
    }


def g(**over: Any) -> dict[str, Any]:
    """A grant's args: by default KIM may read everything of P for TREAT during T0 ± 1 day."""
    args = {
        "actions": ["read"],
        "decision": "permit",
        "grantee": {"account": KIM},
        "period": {"end": T0 + DAY, "start": T0 - DAY},
        "purposes": ["TREAT"],
        "scope": {},
    }
    args.update(over)
    return args


def req(actor: str = KIM, **over: Any) -> AccessRequest:
    orgs = {
        KIM: ("seoul-general", "practitioner"),
        PARK: ("seoul-general", "nurse"),
        LEE: ("hanbit-pharmacy", "pharmacist"),
        ER: ("seoul-general", "practitioner"),
    }
    org, role = orgs.get(actor, (None, None))
    fields: dict[str, Any] = {
        "action": "read",
        "actor": actor,
        "actor_org": org,
        "actor_role": role,
        "patient": P,
        "purpose": "TREAT",
        "record": COND1,
        "resource_type": "Condition",
    }
    fields.update(over)
    if isinstance(fields["record"], RecordRef) and "resource_type" not in over:
        fields["resource_type"] = fields["record"].type
    return AccessRequest(**fields)


@dataclass(frozen=True)
class Row:
    """One decision: grants at heights 2, 3, … (``ops`` after them), then the request."""

    grants: tuple[dict[str, Any], ...] = ()
    ops: tuple[tuple[Any, ...], ...] = ()
    """("revoke", grant index, height) | ("break_glass", actor, height, time, patient?)
    | ("erase", ref, height)."""
    request: AccessRequest = field(default_factory=req)
    height: int = 20
    time: int = T0
    want: tuple[bool, str, str | None] = (False, "no_consent", None)
    """(permit, reason, "c<i>" grant index | "s<i>" session index | None)."""


DECIDE: dict[str, Row] = {
    # self and author
    "self": Row(request=req(P), want=(True, "self", None)),
    "self-search": Row(request=req(P, action="search", record=None), want=(True, "self", None)),
    "author-reads": Row(request=req(KIM, record=OBS1), want=(True, "author", None)),
    "author-writes": Row(
        request=req(KIM, record=OBS1, action="write"), want=(True, "author", None)
    ),
    "author-of-another-record": Row(request=req(KIM, record=COND1)),
    "author-may-not-search": Row(
        request=req(KIM, record=None, action="search", resource_type="Observation")
    ),
    "author-before-authoring": Row(
        request=req(KIM, record=OBS1), height=0, want=(False, "unknown_record", None)
    ),
    # plain grants
    "no-consent": Row(),
    "account-grant": Row(grants=(g(),), want=(True, "consent", "c0")),
    "grant-to-another-account": Row(grants=(g(grantee={"account": LEE}),)),
    "org-grant": Row(grants=(g(grantee={"org": "seoul-general"}),), want=(True, "consent", "c0")),
    "org-grant-other-org": Row(grants=(g(grantee={"org": "hanbit-pharmacy"}),)),
    "org-role-grant": Row(
        grants=(g(grantee={"org": "seoul-general", "role": "practitioner"}),),
        want=(True, "consent", "c0"),
    ),
    "org-role-grant-other-role": Row(
        grants=(g(grantee={"org": "seoul-general", "role": "nurse"}),)
    ),
    "org-role-grant-pharmacist": Row(
        grants=(g(grantee={"org": "hanbit-pharmacy", "role": "pharmacist"}),),
        request=req(LEE),
        want=(True, "consent", "c0"),
    ),
    "grant-of-another-patient": Row(
        grants=(g(grantee={"account": PARK}),), request=req(PARK, patient=Q, record=QOBS)
    ),
    "record-of-another-patient": Row(
        grants=(g(),), request=req(patient=P, record=QOBS), want=(False, "unknown_record", None)
    ),
    "earliest-permit-decides": Row(grants=(g(), g()), want=(True, "consent", "c0")),
    # actions
    "read-grant-write-request": Row(grants=(g(),), request=req(action="write")),
    "write-grant-write-request": Row(
        grants=(g(actions=["write"]),), request=req(action="write"), want=(True, "consent", "c0")
    ),
    "write-grant-read-request": Row(grants=(g(actions=["write"]),)),
    "search-needs-read": Row(
        grants=(g(),),
        request=req(action="search", record=None, resource_type="Observation"),
        want=(True, "consent", "c0"),
    ),
    "write-grant-no-search": Row(
        grants=(g(actions=["write"]),),
        request=req(action="search", record=None, resource_type="Observation"),
    ),
    "write-creates-a-record": Row(
        grants=(g(actions=["write"]),),
        request=req(action="write", record=NEW),
        want=(True, "consent", "c0"),
    ),
    "unknown-record-read": Row(
        grants=(g(),), request=req(record=NEW), want=(False, "unknown_record", None)
    ),
    "write-new-record-of-another-type": Row(
        grants=(g(actions=["write"]),),
        request=req(action="write", record=NEW, resource_type="Condition"),
        want=(False, "unknown_record", None),
    ),
    # purposes
    "wrong-purpose": Row(
        grants=(g(),), request=req(purpose="HMARKT"), want=(False, "wrong_purpose", "c0")
    ),
    "one-of-several-purposes": Row(
        grants=(g(purposes=["HRESCH", "TREAT"]),),
        request=req(purpose="HRESCH"),
        want=(True, "consent", "c0"),
    ),
    # time and revocation
    "expired": Row(grants=(g(),), time=T0 + DAY, want=(False, "expired", "c0")),
    "last-ms-of-period": Row(grants=(g(),), time=T0 + DAY - 1, want=(True, "consent", "c0")),
    "not-yet-valid": Row(
        grants=(g(period={"end": T0 + 2 * DAY, "start": T0 + DAY}),),
        want=(False, "not_yet_valid", "c0"),
    ),
    "first-ms-of-period": Row(
        grants=(g(period={"end": T0 + 2 * DAY, "start": T0}),), want=(True, "consent", "c0")
    ),
    "revoked": Row(grants=(g(),), ops=(("revoke", 0, 5),), want=(False, "revoked", "c0")),
    "revoked-at-this-height": Row(
        grants=(g(),), ops=(("revoke", 0, 5),), height=5, want=(False, "revoked", "c0")
    ),
    "before-the-revocation": Row(
        grants=(g(),), ops=(("revoke", 0, 5),), height=4, want=(True, "consent", "c0")
    ),
    "before-the-grant": Row(grants=(g(),), height=1),
    "at-the-grant": Row(grants=(g(),), height=2, want=(True, "consent", "c0")),
    "revoked-then-granted-again": Row(
        grants=(g(),), ops=(("revoke", 0, 5), ("grant", g(), 6)), want=(True, "consent", "c1")
    ),
    # deny provisions
    "deny-overrides-permit": Row(
        grants=(g(grantee={"org": "seoul-general"}), g(decision="deny")),
        want=(False, "denied_by_consent", "c1"),
    ),
    "deny-alone": Row(grants=(g(decision="deny"),), want=(False, "denied_by_consent", "c0")),
    "deny-for-another-purpose": Row(
        grants=(g(), g(decision="deny", purposes=["HMARKT"])), want=(True, "consent", "c0")
    ),
    "deny-revoked": Row(
        grants=(g(), g(decision="deny")), ops=(("revoke", 1, 5),), want=(True, "consent", "c0")
    ),
    "deny-expired": Row(
        grants=(
            g(period={"end": T0 + 2 * DAY, "start": T0 - DAY}),
            g(decision="deny", period={"end": T0 + HOUR, "start": T0 - DAY}),
        ),
        time=T0 + 2 * HOUR,
        want=(True, "consent", "c0"),
    ),
    "deny-other-type": Row(
        grants=(g(), g(decision="deny", scope={"types": ["Observation"]})),
        want=(True, "consent", "c0"),
    ),
    "deny-of-a-role": Row(
        grants=(
            g(grantee={"org": "seoul-general"}),
            g(decision="deny", grantee={"org": "seoul-general", "role": "nurse"}),
        ),
        request=req(PARK, record=OBS1),
        want=(False, "denied_by_consent", "c1"),
    ),
    "deny-of-a-role-not-mine": Row(
        grants=(
            g(grantee={"org": "seoul-general"}),
            g(decision="deny", grantee={"org": "seoul-general", "role": "nurse"}),
        ),
        want=(True, "consent", "c0"),
    ),
    "deny-not-explained-by-permit": Row(grants=(g(decision="deny", purposes=["HMARKT"]),)),
    # scopes: types, categories, records
    "type-in-scope": Row(grants=(g(scope={"types": ["Condition"]}),), want=(True, "consent", "c0")),
    "type-out-of-scope": Row(grants=(g(scope={"types": ["Observation"]}),)),
    "request-type-ignored-for-a-record": Row(
        grants=(g(scope={"types": ["Observation"]}),),
        request=req(record=COND1, resource_type="Observation"),
    ),
    "category-in-scope": Row(
        grants=(g(scope={"categories": ["problem-list-item"]}),), want=(True, "consent", "c0")
    ),
    "category-out-of-scope": Row(grants=(g(scope={"categories": ["laboratory"]}),)),
    "anchored-category-wins": Row(
        grants=(g(scope={"categories": ["laboratory"]}),), request=req(category="laboratory")
    ),
    "type-and-category-both-needed": Row(
        grants=(g(scope={"categories": ["laboratory"], "types": ["Condition"]}),),
    ),
    "type-and-category": Row(
        grants=(g(scope={"categories": ["problem-list-item"], "types": ["Condition"]}),),
        want=(True, "consent", "c0"),
    ),
    "search-in-category": Row(
        grants=(g(scope={"categories": ["laboratory"]}),),
        request=req(
            action="search", record=None, resource_type="Observation", category="laboratory"
        ),
        want=(True, "consent", "c0"),
    ),
    "search-unknown-category-permit-fails-closed": Row(
        grants=(g(scope={"categories": ["laboratory"]}),),
        request=req(action="search", record=None, resource_type="Observation"),
    ),
    "search-unknown-category-deny-fails-closed": Row(
        grants=(g(), g(decision="deny", scope={"categories": ["mental-health"]})),
        request=req(action="search", record=None, resource_type="Observation"),
        want=(False, "denied_by_consent", "c1"),
    ),
    "search-other-category-not-denied": Row(
        grants=(g(), g(decision="deny", scope={"categories": ["mental-health"]})),
        request=req(
            action="search", record=None, resource_type="Observation", category="laboratory"
        ),
        want=(True, "consent", "c0"),
    ),
    "record-in-scope": Row(grants=(g(scope={"records": ["COND1"]}),), want=(True, "consent", "c0")),
    "record-out-of-scope": Row(grants=(g(scope={"records": ["OBS1"]}),)),
    "record-scope-no-search": Row(
        grants=(g(scope={"records": ["COND1"]}),),
        request=req(action="search", record=None, resource_type="Condition"),
    ),
    "record-deny-blocks-search": Row(
        grants=(g(), g(decision="deny", scope={"records": ["OBS1"]})),
        request=req(action="search", record=None, resource_type="Condition"),
        want=(False, "denied_by_consent", "c1"),
    ),
    "record-deny-spares-other-records": Row(
        grants=(g(), g(decision="deny", scope={"records": ["OBS1"]})),
        want=(True, "consent", "c0"),
    ),
    "record-deny-hits-its-record": Row(
        grants=(g(), g(decision="deny", scope={"records": ["COND1"]})),
        want=(False, "denied_by_consent", "c1"),
    ),
    # erasure
    "erased-author": Row(
        ops=(("erase", OBS1, 8),), request=req(KIM, record=OBS1), want=(False, "erased", None)
    ),
    "erased-self": Row(
        ops=(("erase", OBS1, 8),), request=req(P, record=OBS1), want=(False, "erased", None)
    ),
    "erased-consent": Row(grants=(g(),), ops=(("erase", COND1, 8),), want=(False, "erased", None)),
    "before-the-erasure": Row(
        ops=(("erase", OBS1, 8),),
        request=req(KIM, record=OBS1),
        height=7,
        want=(True, "author", None),
    ),
    # break-glass
    "break-glass": Row(
        ops=(("break_glass", ER, 3, T0),),
        request=req(ER, purpose="ETREAT"),
        time=T0 + HOUR,
        want=(True, "break_glass", "s0"),
    ),
    "break-glass-search": Row(
        ops=(("break_glass", ER, 3, T0),),
        request=req(
            ER, purpose="ETREAT", action="search", record=None, resource_type="Observation"
        ),
        want=(True, "break_glass", "s0"),
    ),
    "break-glass-beats-deny": Row(
        grants=(g(decision="deny", grantee={"account": ER}, purposes=["ETREAT", "TREAT"]),),
        ops=(("break_glass", ER, 3, T0),),
        request=req(ER, purpose="ETREAT"),
        want=(True, "break_glass", "s0"),
    ),
    "break-glass-needs-etreat": Row(
        ops=(("break_glass", ER, 3, T0),), request=req(ER), want=(False, "wrong_purpose", "s0")
    ),
    "break-glass-last-ms": Row(
        ops=(("break_glass", ER, 3, T0),),
        time=T0 + 4 * HOUR - 1,
        request=req(ER, purpose="ETREAT"),
        want=(True, "break_glass", "s0"),
    ),
    "break-glass-expired": Row(
        ops=(("break_glass", ER, 3, T0),),
        time=T0 + 4 * HOUR,
        request=req(ER, purpose="ETREAT"),
        want=(False, "expired", "s0"),
    ),
    "break-glass-before-it-opened": Row(
        ops=(("break_glass", ER, 3, T0),), height=2, request=req(ER, purpose="ETREAT")
    ),
    "break-glass-of-another-actor": Row(
        ops=(("break_glass", ER, 3, T0),), request=req(KIM, purpose="ETREAT")
    ),
    "break-glass-for-another-patient": Row(
        ops=(("break_glass", ER, 3, T0, Q),), request=req(ER, purpose="ETREAT")
    ),
    "break-glass-second-session": Row(
        ops=(("break_glass", ER, 3, T0), ("break_glass", ER, 4, T0 + 3 * HOUR)),
        time=T0 + 5 * HOUR,
        request=req(ER, purpose="ETREAT"),
        want=(True, "break_glass", "s1"),
    ),
    "break-glass-reviewed-still-open": Row(
        ops=(("break_glass", ER, 3, T0), ("review", 0, 4)),
        request=req(ER, purpose="ETREAT"),
        want=(True, "break_glass", "s0"),
    ),
    # the most informative denial
    "a-revoked-grant-leaves-another": Row(
        grants=(g(), g(purposes=["HOPERAT"])),
        ops=(("revoke", 0, 5),),
        request=req(purpose="HOPERAT", actor=KIM, record=COND1),
        want=(True, "consent", "c1"),
    ),
    "explain-revoked-over-wrong-purpose": Row(
        grants=(g(), g(purposes=["HOPERAT"])),
        ops=(("revoke", 1, 5),),
        request=req(purpose="HOPERAT"),
        want=(False, "revoked", "c1"),
    ),
    "explain-wrong-purpose-first": Row(
        grants=(g(), g(purposes=["HPAYMT"])),
        ops=(("revoke", 0, 5),),
        request=req(purpose="HOPERAT"),
        want=(False, "wrong_purpose", "c1"),
    ),
    "explain-revoked-over-expired": Row(
        grants=(g(period={"end": T0 + HOUR, "start": T0 - DAY}), g()),
        ops=(("revoke", 1, 5),),
        time=T0 + 2 * HOUR,
        want=(False, "revoked", "c1"),
    ),
    "consent-explains-before-session": Row(
        grants=(g(grantee={"account": ER}, purposes=["HRESCH"]),),
        ops=(("break_glass", ER, 3, T0),),
        request=req(ER),
        want=(False, "wrong_purpose", "c0"),
    ),
}


def _resolve(value: Any) -> Any:
    refs = {"OBS1": OBS1, "COND1": COND1}
    if isinstance(value, dict):
        return {k: _resolve(v) for k, v in value.items()}
    if isinstance(value, list):
        return [
            {"id": refs[v].id, "org": refs[v].org, "type": refs[v].type} if v in refs else v
            for v in value
        ]
    return value


def build(row: Row) -> tuple[Sandbox, list[str], list[str]]:
    world = World()
    grants, sessions = [], []
    height = 2
    for args in row.grants:
        grants.append(world.apply("consent.grant@1", P, _resolve(args), height=height, time=T0))
        height += 1
    for op in row.ops:
        if op[0] == "revoke":
            world.apply("consent.revoke@1", P, {"id": grants[op[1]]}, height=op[2], time=T0)
        elif op[0] == "grant":
            grants.append(world.apply("consent.grant@1", P, _resolve(op[1]), height=op[2], time=T0))
        elif op[0] == "break_glass":
            patient = op[4] if len(op) > 4 else P
            args = {"patient": patient, "purpose": "ETREAT", "reason": "unconscious"}
            sessions.append(
                world.apply("access.break_glass@1", op[1], args, height=op[2], time=op[3])
            )
        elif op[0] == "review":
            world.apply("access.review@1", P, {"session": sessions[op[1]]}, height=op[2], time=T0)
        elif op[0] == "erase":
            ref = op[1]
            args = {
                "basis": "patient_request",
                "id": ref.id,
                "org": ref.org,
                "reason": "asked",
                "type": ref.type,
            }
            world.apply("records.erase@1", P, args, height=op[2], time=T0)
    return world, grants, sessions


@pytest.mark.parametrize("row", list(DECIDE.values()), ids=list(DECIDE))
def test_decide(row: Row) -> None:
    world, grants, sessions = build(row)
    got = decide(world.state, row.request, time=row.time, height=row.height)
    permit, reason, ref = row.want
    want_consent = grants[int(ref[1:])] if ref and ref[0] == "c" else None
    want_session = sessions[int(ref[1:])] if ref and ref[0] == "s" else None
    assert got == Decision(
        permit=permit, reason=reason, consent=want_consent, session=want_session
    ), got


def test_decide_is_deterministic_and_read_only() -> None:
    world, _, _ = build(DECIDE["deny-overrides-permit"])
    before = world.state.writes()
    first = decide(world.state, req(), time=T0, height=20)
    assert all(decide(world.state, req(), time=T0, height=20) == first for _ in range(3))
    assert world.state.writes() == before


def test_the_decision_at_a_past_height_stands_after_a_revocation() -> None:
    """An access authorised at height h stays explained by the same decision later."""
    world = World()
    cid = world.apply("consent.grant@1", P, g(), height=2, time=T0)
    at_3 = decide(world.state, req(), time=T0, height=3)
    world.apply("consent.revoke@1", P, {"id": cid}, height=4, time=T0)
    assert decide(world.state, req(), time=T0, height=3) == at_3
    assert at_3 == Decision(permit=True, reason="consent", consent=cid)
    assert decide(world.state, req(), time=T0, height=4).reason == "revoked"


BASIS = {
    "self": (Decision(permit=True, reason="self"), {"kind": "self"}),
    "author": (Decision(permit=True, reason="author"), {"kind": "author"}),
    "consent": (
        Decision(permit=True, reason="consent", consent="ab" * 8),
        {"id": "ab" * 8, "kind": "consent"},
    ),
    "break-glass": (
        Decision(permit=True, reason="break_glass", session="cd" * 8),
        {"id": "cd" * 8, "kind": "break_glass"},
    ),
    "denied-by-consent": (
        Decision(permit=False, reason="denied_by_consent", consent="ab" * 8),
        {"id": "ab" * 8, "kind": "consent"},
    ),
    "revoked": (Decision(permit=False, reason="revoked", consent="ab" * 8), {"kind": "none"}),
    "no-consent": (Decision(permit=False, reason="no_consent"), {"kind": "none"}),
}


@pytest.mark.parametrize("decision,want", list(BASIS.values()), ids=list(BASIS))
def test_decision_basis(decision: Decision, want: dict[str, str]) -> None:
    assert decision.basis() == want


@pytest.mark.parametrize(
    "over",
    [{"action": "delete"}, {"purpose": "GOSSIP"}, {"resource_type": "Claim", "record": None}],
    ids=["action", "purpose", "type"],
)
def test_access_request_rejects_unknown_codes(over: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        req(**over)


def test_world_handlers_reject_like_the_node() -> None:
    """Negative control: the sandbox runs the real handlers, rejections included."""
    world = World()
    with pytest.raises(ContractError) as info:
        world.apply("consent.grant@1", KIM, g(), height=2, time=T0)
    assert info.value.code == "unauthorized"
