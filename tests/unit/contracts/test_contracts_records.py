"""The records contract through real transactions: anchors (create, version chain) and erasure."""

from __future__ import annotations

from typing import Any

import pytest

from carechain.crypto.signatures import generate_key
from carechain.testing.chain_driver import MEMBERS, Chain, fake_digest

OBS = "rec/seoul-general/Observation/obs-1"
_SHORT = "AAAAAAAAAAAAAAAAAAAAAA"  # 16 bytes
_PADDED = fake_digest("x", "y", "z", 1) + "="

# (anchors committed first, then the anchor under test: (by, overrides)), expected code
Step = tuple[str, dict[str, Any]]
ANCHOR_CASES: dict[str, tuple[list[Step], Step, str]] = {
    # who may anchor
    "practitioner-of-org": ([], ("dr-kim", {}), "ok"),
    "nurse-of-org": ([], ("nurse-park", {}), "ok"),
    "node-service-account": ([], ("seoul-general-node", {}), "ok"),
    "the-patient-themself": ([], ("patient-1", {}), "ok"),
    "pharmacist-of-its-pharmacy": ([], ("ph-lee", {"org": "hanbit-pharmacy"}), "ok"),
    "pharmacist-of-another-org": ([], ("ph-lee", {}), "unauthorized"),
    "admin-not-clinical": ([], ("seoul-general-admin", {}), "unauthorized"),
    "auditor-of-its-org": ([], ("auditor-choi", {"org": "mfds-regulator"}), "unauthorized"),
    "another-patient": ([], ("patient-2", {}), "unauthorized"),
    "unknown-patient": ([], ("dr-kim", {"patient": "pt-00000000000000000000"}), "unknown_patient"),
    "patient-is-a-member": ([], ("dr-kim", {"patient": MEMBERS["nurse-park"]}), "unknown_patient"),
    "unknown-org": ([], ("dr-kim", {"org": "busan-clinic"}), "unknown_org"),
    # shape
    "profile-and-category": (
        [],
        (
            "dr-kim",
            {
                "category": "laboratory",
                "profile": "http://hl7.org/fhir/StructureDefinition/vitalsigns",
            },
        ),
        "ok",
    ),
    "every-listed-type": ([], ("dr-kim", {"type": "AllergyIntolerance", "id": "a.1-B"}), "ok"),
    "type-not-listed": ([], ("dr-kim", {"type": "Claim"}), "bad_args"),
    "type-lowercase": ([], ("dr-kim", {"type": "observation"}), "bad_args"),
    "id-with-space": ([], ("dr-kim", {"id": "obs 1"}), "bad_args"),
    "id-with-slash": ([], ("dr-kim", {"id": "obs/1"}), "bad_args"),
    "id-65-chars": ([], ("dr-kim", {"id": "a" * 65}), "bad_args"),
    "id-64-chars": ([], ("dr-kim", {"id": "a" * 64}), "ok"),
    "id-trailing-newline": ([], ("dr-kim", {"id": "obs-1\n"}), "bad_args"),
    "version-0": ([], ("dr-kim", {"version": 0}), "bad_args"),
    "version-string": ([], ("dr-kim", {"version": "1"}), "bad_args"),
    "version-bool": ([], ("dr-kim", {"version": True}), "bad_args"),
    "digest-16-bytes": ([], ("dr-kim", {"digest": _SHORT}), "bad_args"),
    "digest-padded": ([], ("dr-kim", {"digest": _PADDED}), "bad_args"),
    "digest-missing": ([], ("dr-kim", {"digest": None}), "bad_args"),
    "index-16-bytes": ([], ("dr-kim", {"index": _SHORT}), "bad_args"),
    "url-ftp": ([], ("dr-kim", {"url": "ftp://seoul-general.example/x"}), "bad_args"),
    "url-with-space": ([], ("dr-kim", {"url": "https://a.example/x y"}), "bad_args"),
    "url-missing": ([], ("dr-kim", {"url": None}), "bad_args"),
    "profile-not-url": ([], ("dr-kim", {"profile": "vitalsigns"}), "bad_args"),
    "category-with-space": ([], ("dr-kim", {"category": "vital signs"}), "bad_args"),
    "prev-on-version-1": ([], ("dr-kim", {"prev": fake_digest("a", "b", "c", 1)}), "bad_args"),
    "unknown-field": ([], ("dr-kim", {"name": "Hong Gildong"}), "bad_args"),
    # the version chain
    "update-v2": ([("dr-kim", {})], ("dr-kim", {"version": 2}), "ok"),
    "update-by-another-author": ([("dr-kim", {})], ("nurse-park", {"version": 2}), "ok"),
    "update-by-the-patient": ([("dr-kim", {})], ("patient-1", {"version": 2}), "ok"),
    "update-without-prev": ([("dr-kim", {})], ("dr-kim", {"version": 2, "prev": None}), "bad_args"),
    "update-wrong-prev": (
        [("dr-kim", {})],
        ("dr-kim", {"version": 2, "prev": fake_digest("seoul-general", "Observation", "x", 1)}),
        "wrong_prev",
    ),
    "create-twice": ([("dr-kim", {})], ("dr-kim", {}), "wrong_version"),
    "skip-a-version": ([("dr-kim", {})], ("dr-kim", {"version": 3}), "wrong_version"),
    "v2-of-nothing": ([], ("dr-kim", {"version": 2}), "wrong_version"),
    "update-other-patient": (
        [("dr-kim", {})],
        ("dr-kim", {"version": 2, "patient": "patient-2"}),
        "patient_mismatch",
    ),
    "update-by-stranger": ([("dr-kim", {})], ("ph-lee", {"version": 2}), "unauthorized"),
    "same-id-other-type": ([("dr-kim", {})], ("dr-kim", {"type": "Condition"}), "ok"),
    "same-id-other-org": ([("dr-kim", {})], ("ph-lee", {"org": "hanbit-pharmacy"}), "ok"),
}


@pytest.mark.parametrize("setup,step,want", list(ANCHOR_CASES.values()), ids=list(ANCHOR_CASES))
def test_anchor(chain: Chain, setup: list[Step], step: Step, want: str) -> None:
    for by, over in setup:
        assert chain.run1(chain.anchor(by, **over)).ok
    by, over = step
    tx = chain.anchor(by, **over)
    key = "rec/{org}/{type}/{id}".format(**tx.body.args)
    before = chain.state(key)
    out = chain.run1(tx)
    assert out.code == want, out.receipt
    rec = chain.state(key)
    if want != "ok":
        assert out.receipt["status"] == "rejected" and not out.events
        assert rec == before
        return
    args = tx.body.args
    version = args["version"]
    assert out.events == ["records.anchored"]
    assert rec["latest"] == version and rec["status"] == "active"
    assert rec["patient"] == args["patient"] and len(rec["versions"]) == version
    entry = rec["versions"][-1]
    assert entry == {
        "author": tx.body.sender,
        "digest": args["digest"],
        "height": out.height,
        "index": args["index"],
        "time": entry["time"],
        "tx": tx.tx_id.hex(),
        "url": args["url"],
        "version": version,
        **{k: args[k] for k in ("category", "profile") if k in args},
    }
    if version > 1:
        assert rec["versions"][-2]["digest"] == args["prev"]
    # indexed under the patient: by state key and in the account log
    pkey = "prec/{patient}/{org}/{type}/{id}".format(**args)
    assert chain.state(pkey) is not None
    assert out.index in chain.node.store.account_log_indexes(args["patient"])


def test_a_version_chain_of_three(chain: Chain) -> None:
    outs = [chain.run1(chain.anchor("dr-kim", version=v)) for v in (1, 2, 3)]
    assert [o.code for o in outs] == ["ok"] * 3
    rec = chain.state(OBS)
    assert [v["version"] for v in rec["versions"]] == [1, 2, 3]
    assert [v["height"] for v in rec["versions"]] == [o.height for o in outs]
    assert [v["tx"] for v in rec["versions"]] == [o.tx.tx_id.hex() for o in outs]
    for i in (1, 2):  # every version names its predecessor's digest
        assert outs[i].tx.body.args["prev"] == rec["versions"][i - 1]["digest"]
    chain.verify()


def test_two_creates_in_one_block(chain: Chain) -> None:
    a, b = chain.run(chain.anchor("dr-kim"), chain.anchor("nurse-park"))
    assert a.height == b.height and (a.code, b.code) == ("ok", "wrong_version")
    assert chain.state(OBS)["versions"][0]["author"] == MEMBERS["dr-kim"]


# -- erasure ------------------------------------------------------------------------------------

ERASE_CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    "patient": ("patient-1", {}, "ok"),
    "patient-legal-basis": ("patient-1", {"basis": "legal_obligation"}, "bad_args"),
    "admin-with-legal-basis": ("seoul-general-admin", {"basis": "legal_obligation"}, "ok"),
    "admin-on-patient-request": ("seoul-general-admin", {}, "ok"),
    "admin-court-order": ("seoul-general-admin", {"basis": "court_order"}, "ok"),
    "privacy-officer": ("po-han", {"basis": "retention_expired"}, "ok"),
    "admin-of-another-org": (
        "hanbit-pharmacy-admin",
        {"basis": "legal_obligation"},
        "unauthorized",
    ),
    "the-author": ("dr-kim", {"basis": "data_error"}, "unauthorized"),
    "another-patient": ("patient-2", {}, "unauthorized"),
    "auditor": ("auditor-choi", {"basis": "legal_obligation"}, "unauthorized"),
    "unknown-basis": ("seoul-general-admin", {"basis": "because"}, "bad_args"),
    "reason-missing": ("patient-1", {"reason": None}, "bad_args"),
    "reason-control-char": ("patient-1", {"reason": "x\x00y"}, "bad_args"),
    "unknown-record": ("patient-1", {"id": "obs-2"}, "unknown_record"),
    "unknown-type": ("patient-1", {"type": "Claim"}, "bad_args"),
    "unknown-field": ("patient-1", {"why": "x"}, "bad_args"),
}


@pytest.mark.parametrize("by,over,want", list(ERASE_CASES.values()), ids=list(ERASE_CASES))
def test_erase(chain: Chain, by: str, over: dict[str, Any], want: str) -> None:
    officer = chain.enroll(
        "seoul-general", "po-han", generate_key(), role="clerk", capabilities=["privacy_officer"]
    )
    assert officer.ok, officer.receipt
    assert chain.run1(chain.anchor("dr-kim")).ok
    before = chain.state(OBS)
    tx = chain.erase(by, **over)
    out = chain.run1(tx)
    assert out.code == want, out.receipt
    rec = chain.state(OBS)
    if want != "ok":
        assert rec == before and not out.events
        return
    assert out.events == ["records.erased"]
    assert rec["status"] == "erased"
    assert rec["erased"] == {
        "basis": tx.body.args["basis"],
        "by": tx.body.sender,
        "height": out.height,
        "reason": tx.body.args["reason"],
        "tx": tx.tx_id.hex(),
    }
    assert rec["versions"] == before["versions"]  # history is kept; only the data key is shred
    assert out.index in chain.node.store.account_log_indexes(rec["patient"])


def test_erase_twice_then_no_new_version(chain: Chain) -> None:
    assert chain.run1(chain.anchor("dr-kim")).ok
    first = chain.run1(chain.erase("patient-1"))
    again = chain.run1(chain.erase("seoul-general-admin", basis="legal_obligation"))
    assert (first.code, again.code) == ("ok", "already_erased")
    assert chain.state(OBS)["erased"]["height"] == first.height
    update = chain.run1(chain.anchor("dr-kim", version=2))
    assert update.code == "erased"
    # a stranger learns nothing more: unauthorized before already_erased
    assert chain.run1(chain.erase("patient-2")).code == "unauthorized"


def test_erase_is_replayable(chain: Chain) -> None:
    assert chain.run1(chain.anchor("dr-kim")).ok
    assert chain.run1(chain.erase("patient-1")).ok
    report = chain.verify()
    assert report.chain.blocks == chain.height() + 1


# Directory resources (Organization, Practitioner): no patient, no index; staff of the org.
_PR: dict[str, Any] = {"type": "Practitioner", "id": "pr-1", "patient": None}
DIRECTORY_CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    "practitioner-of-org": ("dr-kim", {}, "ok"),
    "admin-of-org": ("seoul-general-admin", {}, "ok"),
    "organization-by-admin": ("seoul-general-admin", {"type": "Organization"}, "ok"),
    "staff-of-another-org": ("ph-lee", {}, "unauthorized"),
    "a-patient": ("patient-1", {}, "unauthorized"),
    "with-a-patient": ("dr-kim", {"patient": "patient-1"}, "bad_args"),
    "with-an-index": ("dr-kim", {"index": fake_digest("a", "b", "c", 1)}, "bad_args"),
    "observation-without-patient": ("dr-kim", {"type": "Observation"}, "bad_args"),
}


@pytest.mark.parametrize("by,over,want", list(DIRECTORY_CASES.values()), ids=list(DIRECTORY_CASES))
def test_directory_anchor(chain: Chain, by: str, over: dict[str, Any], want: str) -> None:
    tx = chain.anchor(by, **{**_PR, **over})
    key = "rec/{org}/{type}/{id}".format(**tx.body.args)
    out = chain.run1(tx)
    assert out.code == want, out.receipt
    rec = chain.state(key)
    if want != "ok":
        assert rec is None
        return
    assert "patient" not in rec and "index" not in rec["versions"][0]
    assert rec["versions"][0]["author"] == tx.body.sender
    v2 = chain.run1(chain.anchor(by, **{**_PR, **over, "version": 2}))
    assert v2.ok and chain.state(key)["latest"] == 2
    assert chain.run1(chain.erase("patient-1", **{**_PR, **over, "patient": None})).code == (
        "unauthorized"
    )
    erased = chain.run1(
        chain.erase("seoul-general-admin", type=tx.body.args["type"], id="pr-1", basis="data_error")
    )
    assert erased.ok and chain.state(key)["status"] == "erased"
