"""The trial registry end to end through the real API and the SDK: registration, amendments by
the sponsor and by others, research-consent enrolment, adverse events, results with a switched
primary outcome, the public report verified by the SDK (and a tampered report refused), and
the R5 ResearchStudy view."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from carechain.api.app import create_app
from carechain.client import Client
from carechain.client.client import now_ms
from carechain.client.trials import TrialsClient
from carechain.contracts.identity import patient_account_id
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import PrivateKey
from carechain.encoding import b64u_encode
from carechain.errors import NotFoundError, VerificationError
from carechain.merkle import leaf_hash, verify_inclusion
from carechain.node.chaindir import DEMO_PASSWORD, InitResult
from carechain.node.node import Node
from carechain.node.trials import SPONSOR_ORG, admit_demo_sponsor_on

PI = f"{SPONSOR_ORG}.dr-yoon"
TRIAL = "KCT0012345"
PRIMARY = [{"measure": "HbA1c change from baseline", "time_frame": "24 weeks"}]
SECONDARY = [{"measure": "Body weight change", "time_frame": "24 weeks"}]
SWITCHED = [{"measure": "Fasting plasma glucose", "time_frame": "12 weeks"}]
DAY = 86_400_000


def digest(label: str) -> str:
    return b64u_encode(hashlib.sha256(label.encode()).digest())


@pytest.fixture
def client(demo_node: Node, demo_chain: InitResult, tmp_path: Path) -> Iterator[Client]:
    app = create_app(demo_node, data_dir=demo_chain.paths.root)
    with (
        TestClient(app) as http,
        Client("http://testserver", http=http, trust_file=tmp_path / "trust.json") as c,
    ):
        yield c


@pytest.fixture
def keys(demo_node: Node, demo_keys: Keyring) -> dict[str, PrivateKey]:
    admit_demo_sponsor_on(demo_node, demo_keys, DEMO_PASSWORD)
    names = ("dr-yoon", "dr-kim", "patient-1", "patient-2", "hanul-research-admin")
    return {n: demo_keys.load(n, DEMO_PASSWORD) for n in names}


@pytest.fixture
def trials(client: Client) -> TrialsClient:
    return TrialsClient(client)


def register(trials: TrialsClient, key: PrivateKey, **extra: Any) -> Any:
    trial: dict[str, Any] = {
        "id": TRIAL,
        "title": "Drug X versus placebo in type 2 diabetes",
        "phase": "phase-3",
        "protocol": digest("protocol v1"),
        "primary": PRIMARY,
        "secondary": SECONDARY,
        "planned_enrolment": 240,
        **extra,
    }
    return trials.register(PI, key, trial)


def research_consent(client: Client, key: PrivateKey, purpose: str = "HRESCH") -> str:
    t = now_ms()
    args = {
        "actions": ["read"],
        "decision": "permit",
        "grantee": {"org": SPONSOR_ORG},
        "period": {"start": t - 3_600_000, "end": t + 365 * DAY},
        "purposes": [purpose],
        "scope": {},
    }
    tx = client.build("consent.grant@1", patient_account_id(key.kid), args, key)
    (result,) = client.submit(tx)
    assert result.ok, result
    return tx.tx_id.hex()[:16]


def test_trial_lifecycle_and_switching_report(
    client: Client, trials: TrialsClient, keys: dict[str, PrivateKey]
) -> None:
    pi = keys["dr-yoon"]
    res = register(trials, pi)
    assert res.ok, res
    registered = trials.get(TRIAL)
    assert registered["trial"]["registered"]["height"] == res.height
    assert registered["trial"]["sponsor"] == SPONSOR_ORG

    # a change before enrolment is an amendment, not a flagged switch
    assert trials.amend(PI, pi, TRIAL, "sample size re-estimated", planned_enrolment=300).ok
    # enrolment: research consent to the sponsor, then a count
    cid = research_consent(client, keys["patient-1"])
    enrolled = trials.enrol(PI, pi, TRIAL, cid)
    assert enrolled.ok, enrolled
    assert trials.get(TRIAL)["trial"]["enrolled"] == 1
    # the primary outcome changes after enrolment began: flagged
    amended = trials.amend(PI, pi, TRIAL, "sponsor decision", primary=SWITCHED)
    assert amended.ok
    detail = trials.get(TRIAL)
    assert [v["flagged"] for v in detail["versions"]] == [False, False, True]
    # a serious adverse event reported in time
    onset = int(registered["trial"]["registered"]["time"]) + 1
    sae = trials.report_sae(PI, pi, TRIAL, subject=1, onset=onset, fatal=False, category="10019211")
    assert sae.ok, sae
    assert trials.get(TRIAL)["saes"][0]["late"] is False
    # results against the switched outcome
    out = trials.report_results(
        PI, pi, TRIAL, primary=SWITCHED, secondary=SECONDARY, data=digest("results")
    )
    assert out.ok, out

    report = trials.report(TRIAL)
    assert report["switched"] is True
    assert report["pre_specified"] == PRIMARY and report["reported"] == SWITCHED
    assert [
        (c["stage"], c["change"], c["version"], c["after_enrolment"]) for c in report["changes"]
    ] == [
        ("amendment", "added", 3, True),
        ("amendment", "dropped", 3, True),
    ]
    assert {c["change"] for c in report["net"]} == {"added", "dropped"}
    assert [p["stage"] for p in report["proofs"]] == ["version"] * 3 + ["results"]

    root = bytes.fromhex(report["root"])
    for p in report["proofs"]:  # the report's own proofs verify against its root too
        envelope = client.get_tx(p["tx_id"]).envelope
        path = [bytes.fromhex(h) for h in p["proof"]]
        verify_inclusion(leaf_hash(envelope), p["leaf_index"], report["tree_size"], path, root)
    verified = trials.verify_report(TRIAL)
    assert verified.switched and len(verified.proofs) == 4
    assert verified.primaries[0] == tuple(PRIMARY) and verified.reported == tuple(SWITCHED)
    assert all(p.tree_size == verified.proofs[0].tree_size for p in verified.proofs)

    listed = {t["id"]: t for t in trials.list()}
    assert listed[TRIAL]["status"] == "reported" and listed[TRIAL]["flags"] == 1


def test_a_report_hiding_a_switch_is_refused(
    trials: TrialsClient, keys: dict[str, PrivateKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    pi = keys["dr-yoon"]
    assert register(trials, pi).ok
    assert trials.amend(PI, pi, TRIAL, "switch", primary=SWITCHED).ok
    assert trials.verify_report(TRIAL).switched  # the honest report verifies
    honest = trials.report

    def hide(trial: str) -> Any:
        r = dict(honest(trial))
        return {**r, "changes": [], "net": [], "switched": False}

    monkeypatch.setattr(trials, "report", hide)
    with pytest.raises(VerificationError, match="changes"):
        trials.verify_report(TRIAL)

    def drop_version(trial: str) -> Any:
        r = dict(honest(trial))
        return {**r, "proofs": r["proofs"][:1]}

    monkeypatch.setattr(trials, "report", drop_version)
    with pytest.raises(VerificationError, match="versions"):
        trials.verify_report(TRIAL)


REJECTIONS = (
    "non-sponsor-amends",
    "hospital-registers",
    "results-unregistered",
    "treatment-consent",
    "duplicate",
    "patient-enrols-self",
)


@pytest.mark.parametrize("case", REJECTIONS)
def test_rejections_are_receipts_and_change_nothing(
    case: str, client: Client, trials: TrialsClient, keys: dict[str, PrivateKey]
) -> None:
    pi = keys["dr-yoon"]
    assert register(trials, pi).ok
    before = trials.get(TRIAL)
    if case == "non-sponsor-amends":
        res = trials.amend("seoul-general.dr-kim", keys["dr-kim"], TRIAL, "x", title="hijacked")
        want = "unauthorized"
    elif case == "hospital-registers":
        res = trials.register(
            "seoul-general.dr-kim",
            keys["dr-kim"],
            {
                "id": "KCT0099999",
                "title": "t",
                "phase": "phase-1",
                "protocol": digest("p"),
                "primary": PRIMARY,
                "secondary": [],
                "planned_enrolment": 10,
            },
        )
        want = "unauthorized"
    elif case == "results-unregistered":
        res = trials.report_results(
            PI, pi, "KCT0000404", primary=PRIMARY, secondary=[], data=digest("r")
        )
        want = "unknown_trial"
    elif case == "treatment-consent":
        cid = research_consent(client, keys["patient-2"], purpose="TREAT")
        res = trials.enrol(PI, pi, TRIAL, cid)
        want = "consent_not_research"
    elif case == "duplicate":
        res = register(trials, pi)
        want = "duplicate_trial"
    else:
        cid = research_consent(client, keys["patient-1"])
        p1 = keys["patient-1"]
        res = trials.enrol(patient_account_id(p1.kid), p1, TRIAL, cid)
        want = "unauthorized"
    assert (res.status, res.code) == ("rejected", want), res
    assert res.height is not None  # kept in a block as evidence
    after = trials.get(TRIAL)
    assert after == before
    with pytest.raises(NotFoundError):
        trials.get("KCT0099999")


def test_research_study_view_is_valid_r5(trials: TrialsClient, keys: dict[str, PrivateKey]) -> None:
    from fhir.resources.researchstudy import ResearchStudy

    assert register(trials, keys["dr-yoon"]).ok
    study = trials.research_study(TRIAL)
    parsed = ResearchStudy.model_validate(study)
    assert parsed.identifier[0].value == TRIAL
    assert [m.name for m in parsed.outcomeMeasure] == [
        PRIMARY[0]["measure"],
        SECONDARY[0]["measure"],
    ]
    assert parsed.recruitment.targetNumber == 240


def test_unknown_trial_is_404_problem(client: Client) -> None:
    with pytest.raises(NotFoundError):
        TrialsClient(client).report("KCT0000404")
