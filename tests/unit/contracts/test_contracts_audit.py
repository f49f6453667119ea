"""The audit contract and the node service accounts that sign it."""

from __future__ import annotations

from typing import Any

import pytest

from carechain.crypto.signatures import generate_key
from carechain.testing.chain_driver import MEMBERS, ORGS, Chain, pub

NODE = "seoul-general.node"

# -- node service accounts (identity: genesis and admission) -------------------------------------


def test_genesis_registers_the_node_service_account(chain: Chain) -> None:
    kid = chain.node.node_key.kid
    assert chain.state(f"acct/{NODE}") == {
        "id": NODE, "keys": [kid], "org": "seoul-general", "role": "service", "since": 0,
        "status": "active", "type": "member",
    }  # fmt: skip
    key = chain.state(f"key/{kid}")
    assert (key["account"], key["status"], key["since"]) == (NODE, "active", 0)
    assert chain.state(f"node/{kid}")["org"] == "seoul-general"
    for org in ORGS[1:]:  # the demo's other organisations run no node
        assert chain.state(f"acct/{org}.node") is None


def test_admission_registers_the_node_service_account(chain: Chain) -> None:
    node_key = generate_key()
    org = {
        "admins": [{"account": "busan-clinic.admin", "keys": [pub(generate_key())]}],
        "id": "busan-clinic", "name": "Busan Clinic", "roles": ["clinic"],
        "nodes": [{"name": "busan-1", **pub(node_key)}],
    }  # fmt: skip
    sender, key = chain.admin("seoul-general")
    out = chain.run1(
        chain.tx("governance.propose@1", sender, {"action": "admit_org", "org": org}, [key])
    )
    pid = out.tx.tx_id.hex()[:16]
    for voter in ("hanbit-pharmacy", "nhis-payer"):
        sender, key = chain.admin(voter)
        vote = {"approve": True, "proposal": pid}
        assert chain.run1(chain.tx("governance.vote@1", sender, vote, [key])).ok
    assert chain.state(f"gov/{pid}")["status"] == "effected"
    acct = chain.state("acct/busan-clinic.node")
    assert (acct["role"], acct["org"], acct["keys"]) == ("service", "busan-clinic", [node_key.kid])
    assert chain.state(f"key/{node_key.kid}")["account"] == "busan-clinic.node"
    # the new node signs its own organisation's audit entries, and nobody else's
    busan = chain.audit(org="busan-clinic")
    busan = chain.tx("audit.record@1", "busan-clinic.node", busan.body.args, [node_key])
    other = chain.tx("audit.record@1", "busan-clinic.node", chain.audit().body.args, [node_key])
    assert [o.code for o in chain.run(busan, other)] == ["ok", "unauthorized"]


def test_node_account_ids_are_reserved(chain: Chain) -> None:
    out = chain.run1(
        chain.register_member("seoul-general", "hanbit-pharmacy.node", generate_key(),
                              role="service")
    )  # fmt: skip
    assert out.code == "bad_args"
    assert chain.state("acct/hanbit-pharmacy.node") is None


# -- audit.record@1 ------------------------------------------------------------------------------

REFS = [f"Observation/obs-{i}/_history/1" for i in range(100)]
AUDIT_CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    # who signs
    "node-service-account": ("seoul-general-node", {}, "ok"),
    "a-practitioner": ("dr-kim", {}, "unauthorized"),
    "the-org-admin": ("seoul-general-admin", {}, "unauthorized"),
    "a-patient": ("patient-1", {}, "unauthorized"),
    "node-for-another-org": ("seoul-general-node", {"org": "hanbit-pharmacy"}, "unauthorized"),
    "service-member-not-node": ("svc", {}, "unauthorized"),
    # shapes that pass
    "deny-without-basis": ("seoul-general-node", {"outcome": "deny", "basis": {"kind": "none"},
                                                  "reason": "no_consent"}, "ok"),
    "deny-by-consent": ("seoul-general-node", {"outcome": "deny", "reason": "denied_by_consent",
                                               "basis": {"kind": "consent", "id": "ab" * 8}},
                        "ok"),
    "error": ("seoul-general-node", {"outcome": "error", "basis": {"kind": "none"},
                                     "reason": "store_unavailable"}, "ok"),
    "search-no-results": ("seoul-general-node", {"action": "search", "resources": []}, "ok"),
    "hundred-resources": ("seoul-general-node", {"resources": REFS}, "ok"),
    "break-glass-basis": ("seoul-general-node", {"basis": {"kind": "break_glass", "id": "cd" * 8},
                                                 "purpose": "ETREAT"}, "ok"),
    "patient-actor": ("seoul-general-node", {"actor": "patient-1-id", "role": "patient",
                                             "basis": {"kind": "self"}}, "ok"),
    "erase-action": ("seoul-general-node", {"action": "erase"}, "ok"),
    # shapes that do not
    "101-resources": ("seoul-general-node", {"resources": [*REFS, "Condition/c/_history/1"]},
                      "bad_args"),
    "resource-without-version": ("seoul-general-node", {"resources": ["Observation/obs-1"]},
                                 "bad_args"),
    "resource-version-0": ("seoul-general-node",
                           {"resources": ["Observation/obs-1/_history/0"]}, "bad_args"),
    "resource-unknown-type": ("seoul-general-node", {"resources": ["Claim/c-1/_history/1"]},
                              "bad_args"),
    "resource-bad-id": ("seoul-general-node", {"resources": ["Observation/o 1/_history/1"]},
                        "bad_args"),
    "resource-twice": ("seoul-general-node", {"resources": REFS[:1] * 2}, "bad_args"),
    "resources-not-list": ("seoul-general-node", {"resources": REFS[0]}, "bad_args"),
    "resources-missing": ("seoul-general-node", {"resources": None}, "bad_args"),
    "action-unknown": ("seoul-general-node", {"action": "delete"}, "bad_args"),
    "role-unknown": ("seoul-general-node", {"role": "surgeon"}, "bad_args"),
    "actor-not-account": ("seoul-general-node", {"actor": "Dr Kim"}, "bad_args"),
    "patient-not-account": ("seoul-general-node", {"patient": "Hong Gildong"}, "bad_args"),
    "purpose-unknown": ("seoul-general-node", {"purpose": "GOSSIP"}, "bad_args"),
    "outcome-unknown": ("seoul-general-node", {"outcome": "maybe"}, "bad_args"),
    "permit-without-basis": ("seoul-general-node", {"basis": {"kind": "none"}}, "bad_args"),
    "basis-unknown-kind": ("seoul-general-node", {"basis": {"kind": "trust_me"}}, "bad_args"),
    "basis-consent-without-id": ("seoul-general-node", {"basis": {"kind": "consent"}},
                                 "bad_args"),
    "basis-consent-bad-id": ("seoul-general-node", {"basis": {"kind": "consent", "id": "x"}},
                             "bad_args"),
    "basis-self-with-id": ("seoul-general-node", {"basis": {"kind": "self", "id": "ab" * 8}},
                           "bad_args"),
    "basis-extra-field": ("seoul-general-node", {"basis": {"kind": "author", "by": "x"}},
                          "bad_args"),
    "basis-string": ("seoul-general-node", {"basis": "author"}, "bad_args"),
    "reason-with-space": ("seoul-general-node", {"reason": "no consent"}, "bad_args"),
    "request-65-chars": ("seoul-general-node", {"request": "r" * 65}, "bad_args"),
    "request-64-chars": ("seoul-general-node", {"request": "r" * 64}, "ok"),
    "request-empty": ("seoul-general-node", {"request": ""}, "bad_args"),
    "request-with-newline": ("seoul-general-node", {"request": "req-1\n"}, "bad_args"),
    "request-missing": ("seoul-general-node", {"request": None}, "bad_args"),
    "unknown-field": ("seoul-general-node", {"ip": "10.0.0.1"}, "bad_args"),
}  # fmt: skip


@pytest.mark.parametrize("by,over,want", list(AUDIT_CASES.values()), ids=list(AUDIT_CASES))
def test_audit_record(chain: Chain, by: str, over: dict[str, Any], want: str) -> None:
    if by == "svc":
        assert chain.enroll("seoul-general", "svc", generate_key(), role="service").ok
    over = dict(over)
    if over.get("actor") == "patient-1-id":
        over["actor"] = chain.account("patient-1")
    tx = chain.audit(by, **over)
    out = chain.run1(tx)
    assert out.code == want, out.receipt
    patient = chain.account("patient-1")
    if want != "ok":
        assert chain.state(f"auditn/{patient}") is None and not out.events
        return
    args = tx.body.args
    assert out.events == ["audit.recorded"]
    assert chain.state(f"auditn/{patient}") == 1
    entry = chain.state(f"audit/{patient}/0000000000")
    want_entry = {
        "action": args["action"], "actor": args["actor"], "basis": args["basis"],
        "height": out.height, "org": "seoul-general", "outcome": args["outcome"],
        "purpose": args["purpose"], "reason": args["reason"],
        "resources": len(args["resources"]), "role": args["role"], "time": entry["time"],
        "tx": tx.tx_id.hex(),
    }  # fmt: skip
    if args["basis"]["kind"] == "break_glass":
        want_entry["break_glass"] = True
    assert entry == want_entry
    for account in (patient, args["actor"]):  # both find it in their account log
        assert out.index in chain.node.store.account_log_indexes(account)


def test_the_access_log_lists_without_scanning(chain: Chain) -> None:
    p1, p2 = chain.account("patient-1"), chain.account("patient-2")
    outs = chain.run(
        chain.audit(),
        chain.audit(outcome="deny", basis={"kind": "none"}, reason="no_consent",
                    actor=MEMBERS["ph-lee"], role="pharmacist", request="req-2"),
        chain.audit(patient=p2, request="req-3"),
    )  # fmt: skip
    outs += chain.run(chain.audit(action="search", resources=[], request="req-4"))
    assert all(o.ok for o in outs)
    assert chain.state(f"auditn/{p1}") == 3 and chain.state(f"auditn/{p2}") == 1
    log = [v for _, v in sorted(_state_prefix(chain, f"audit/{p1}/"))]
    assert [e["tx"] for e in log] == [outs[i].tx.tx_id.hex() for i in (0, 1, 3)]
    assert [e["outcome"] for e in log] == ["permit", "deny", "permit"]
    assert chain.state(f"audit/{p2}/0000000000")["tx"] == outs[2].tx.tx_id.hex()
    chain.verify()


def test_a_key_rotated_into_the_node_account_is_not_a_node_key(chain: Chain) -> None:
    node_key, new = chain.node.node_key, generate_key()
    args = {"keys": [pub(new)], "old": node_key.kid}
    assert chain.run1(chain.tx("identity.rotate_key@1", NODE, args, [node_key, new])).ok
    out = chain.run1(chain.tx("audit.record@1", NODE, chain.audit().body.args, [new]))
    assert out.code == "unauthorized"


def _state_prefix(chain: Chain, prefix: str) -> list[tuple[str, Any]]:
    import orjson

    return [(k, orjson.loads(v)) for k, v in chain.node.store.iter_state(prefix)]
