"""``carechain demo --rx`` and ``carechain rx …`` against a live node (typer's CliRunner)."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from typer.testing import CliRunner

from carechain.cli.main import app
from carechain.node.chaindir import InitResult
from carechain.testing.chain_driver import Chain


def as_json(out: str) -> dict:  # type: ignore[type-arg]
    """The JSON document in ``out`` (notes on stderr may surround it)."""
    return dict(json.loads(out[out.index("{") : out.rindex("}") + 1]))


def run(*argv: str, password: str = "demo") -> tuple[int, str]:
    result = CliRunner().invoke(app, list(argv), env={"CARECHAIN_PASSWORD": password})
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def test_demo_rx_walk(live_url: str, demo_chain: InitResult, chain: Chain) -> None:
    code, out = run("demo", "--rx", "--url", live_url, "--dir", str(demo_chain.paths.root))
    assert code == 0, out
    assert "partial fill of 20" in out
    assert "refused a second full fill: quantity_exceeds_remaining" in out
    assert "without the patient's consent: refused (no_consent)" in out
    assert "FLAG high_mme" in out
    rx_id = re.search(r"dr-kim issued ([0-9a-f]{16})", out)
    assert rx_id is not None
    code, out = run("rx", "verify", rx_id.group(1), "--key", "ph-lee", "--url", live_url, "--json")
    assert code == 0, out
    assert as_json(out)["remaining"] == 40
    day = dt.datetime.now(dt.UTC).date().isoformat()
    code, out = run("rx", "report", "--day", day, "--key", "auditor-choi", "--url", live_url)
    assert code == 0, out
    assert "refused_dispense" in out and "REFUSED quantity_exceeds_remaining" in out
    assert "credentials.register_prescriber" in out


def test_rx_commands_and_refusals(live_url: str, chain: Chain) -> None:
    patient = chain.account("patient-1")
    common = ("--url", live_url)
    code, out = run(
        "rx",
        "issue",
        "--key",
        "dr-kim",
        "--patient",
        patient,
        "--rxnorm",
        "308048",
        "--name",
        "alprazolam",
        "--strength",
        "0.5 mg",
        "--schedule",
        "IV",
        "--quantity",
        "30",
        "--days-supply",
        "30",
        "--refills",
        "1",
        *common,
    )
    assert code == 0, out
    m = re.search(r"issued: id ([0-9a-f]{16})", out)
    assert m is not None, out
    rx_id = m.group(1)
    code, out = run(
        "rx",
        "dispense",
        rx_id,
        "--key",
        "ph-lee",
        "--patient",
        patient,
        "--quantity",
        "31",
        *common,
    )
    assert code == 1 and "quantity_exceeds_remaining" in out and "rejected receipt" in out
    code, out = run(
        "rx",
        "dispense",
        rx_id,
        "--key",
        "ph-lee",
        "--patient",
        patient,
        "--quantity",
        "30",
        *common,
    )
    assert code == 0, out
    code, out = run("rx", "transfer", rx_id, "--key", "ph-lee", "--to", "nhis-payer", *common)
    assert code == 1 and "pharmacy_not_registered" in out
    code, out = run("rx", "cancel", rx_id, "--key", "ph-lee", *common)
    assert code == 1 and "unauthorized" in out
    code, out = run("rx", "cancel", rx_id, "--key", "dr-kim", *common)
    assert code == 0, out
    code, out = run("rx", "verify", rx_id, "--key", "dr-kim", *common)
    assert code == 0 and "CANCELLED" in out
    code, out = run("rx", "pdmp", patient, "--key", "dr-kim", *common)
    assert code == 3 and "no_consent" in out
    code, out = run("rx", "pdmp", patient, "--key", "patient-1", "--json", *common)
    assert code == 0 and as_json(out)["prescriptions"][0]["class"] == "benzodiazepine"


def test_issue_commits_to_a_stored_medication_request(live_url: str, chain: Chain) -> None:
    """The MedicationRequest is kept off chain as a record; the prescription commits to its
    anchored digest and the contract checks the link."""
    from carechain.client import Client, RecordsClient

    patient = chain.account("patient-1")
    assert chain.run1(chain.grant(actions=["read", "write"],
                                  grantee={"org": "seoul-general"})).ok  # fmt: skip
    with Client(live_url) as c:
        kim = RecordsClient(c).login("dr-kim", "demo")
        pid = kim.create({"resourceType": "Patient",
                          "identifier": [{"system": "urn:carechain:account", "value": patient}]}).id
        mr = kim.create({
            "resourceType": "MedicationRequest", "status": "active", "intent": "order",
            "subject": {"reference": f"Patient/{pid}"},
            "medication": {"concept": {"text": "oxycodone hydrochloride 10 mg tablet"}},
        }).id  # fmt: skip
    issue = ("rx", "issue", "--key", "dr-kim", "--patient", patient, "--rxnorm", "1049621",
             "--name", "oxycodone", "--strength", "10 mg", "--schedule", "II", "--quantity", "20",
             "--days-supply", "5", "--url", live_url)  # fmt: skip
    code, out = run(*issue, "--medication-request", str(mr), "--json")
    assert code == 0, out
    rx_id = as_json(out)["id"]
    stored = chain.state(f"rx/{rx_id}")
    anchor = chain.state(f"rec/seoul-general/MedicationRequest/{mr}")
    assert stored["record"] == {"id": mr, "org": "seoul-general", "version": 1}
    assert stored["digest"] == anchor["versions"][0]["digest"]
    # negative control: another patient's prescription cannot claim this MedicationRequest
    other = chain.account("patient-2")
    code, out = run(*[other if a == patient else a for a in issue], "--medication-request", str(mr))
    assert code == 1 and "record_mismatch" in out
    code, out = run(*issue, "--medication-request", "nope")
    assert code != 0 and "nope" in out


@pytest.fixture
def demo_chain(demo_chain_domains: InitResult) -> InitResult:
    """This module uses the domain demo data, as ``carechain init --demo`` seeds it."""
    return demo_chain_domains
