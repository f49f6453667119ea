"""The supply API end to end on a live demo node: the SDK, the demo walk-through, EPCIS capture
errors (422 schema / hash, 409 custody with suspect flags), EPCIS queries, verification,
pedigree export checked offline (with a tampered negative control), and the audited recall
lookup of implant patients."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import orjson
import pytest
from rich.console import Console
from typer.testing import CliRunner

from carechain.cli.main import app as cli_app
from carechain.cli.supply import SupplyDemo
from carechain.client import Client
from carechain.client.supply import SupplyClient, verify_pedigree
from carechain.crypto.keystore import Keyring
from carechain.epcis.mapping import build_document, commissioning_document
from carechain.errors import ValidationError
from carechain.node.chaindir import DEMO_PASSWORD, InitResult
from carechain.node.node import Node, now_ms
from carechain.node.supply.demo import DEMO_GLNS, DEVICE_GTIN, DRUG_GTIN, ensure_supply_demo_on
from carechain.testing.chain_driver import Chain

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "epcis"


@pytest.fixture(autouse=True)
def _supply_demo(demo_node: Node, demo_keys: Keyring) -> None:
    ensure_supply_demo_on(demo_node, demo_keys, DEMO_PASSWORD)


@pytest.fixture
def sdk(live_url: str) -> Client:
    with Client(live_url) as c:
        yield c


def test_demo_walkthrough(sdk: Client) -> None:
    buf = io.StringIO()
    SupplyDemo(sdk, Console(file=buf, width=200)).run()
    text = buf.getvalue()
    assert "pharmacy verifies" in text and "verified=True (ok)" in text
    assert "counterfeit serial fails verification: verified=False (unknown_serial)" in text
    assert "refused (not_owner)" in text
    assert "now verifies as: suspect" in text


def test_capture_errors_and_queries(sdk: Client, demo_chain: InitResult) -> None:
    mfr = SupplyClient(sdk).login("medipharm-admin", "demo")
    # 422: schema errors with their paths
    bad = json.loads((VECTORS / "JSON/Example_9.6.1-ObjectEvent.jsonld").read_text())
    bad["epcisBody"]["eventList"][0]["action"] = "SHOUT"
    with pytest.raises(ValidationError) as exc:
        mfr.capture(orjson.dumps(bad))
    assert exc.value.code == "epcis_schema"
    # 422: an eventID that is not the event's hash
    with pytest.raises(ValidationError) as exc2:
        mfr.capture((VECTORS / "JSON/Example_9.6.1-with-comment.jsonld").read_bytes())
    assert exc2.value.code == "event_hash_mismatch"
    # evidence profile: a GS1 example whose eventIDs are reproduced is captured as is
    ok = mfr.capture(
        (VECTORS / "JSON/Example_9.6.1-ObjectEvent.jsonld").read_bytes(), profile="evidence"
    )
    assert ok.ok and [e["check"] for e in ok.body["events"]] == ["legacy", "legacy"]
    q = mfr.events("urn:epc:id:sgtin:0614141.107346.2018")
    events = q["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    assert q["type"] == "EPCISQueryDocument" and len(events) == 2
    one = mfr.event(ok.body["events"][0]["hashID"])
    assert one["bizStep"] == "shipping"
    # 409: custody refusal, kept as a rejected receipt; items flagged
    doc = commissioning_document(
        gtin=DRUG_GTIN,
        serials=["Z1"],
        lot="LZ",
        expiry="2029-01-01",
        time_ms=now_ms() - 1000,
        gln=DEMO_GLNS["medipharm"],
    )
    assert mfr.capture(doc).ok
    doc2 = commissioning_document(
        gtin=DRUG_GTIN,
        serials=["Z1"],
        lot="LZ",
        expiry="2029-01-01",
        time_ms=now_ms() - 500,
        gln=DEMO_GLNS["medipharm"],
    )
    refused = mfr.capture(doc2)
    assert refused.status == 409 and refused.code == "already_commissioned"
    assert refused.body["flagged"] == [f"01/{DRUG_GTIN}/21/Z1"]
    v = mfr.verify(gtin=DRUG_GTIN, serial="Z1", lot="LZ", expiry="2029-01-01")
    assert v == {**v, "verified": False, "reason": "suspect"}
    log = (demo_chain.paths.root / "supply" / "verify.jsonl").read_text().splitlines()
    assert json.loads(log[-1])["reason"] == "suspect"  # every verification is logged


def test_pedigree_verifies_offline_and_a_tampered_one_does_not(
    sdk: Client, demo_chain: InitResult, tmp_path: Path
) -> None:
    mfr = SupplyClient(sdk).login("medipharm-admin", "demo")
    doc = commissioning_document(
        gtin=DRUG_GTIN,
        serials=["P1"],
        lot="LP",
        expiry="2029-01-01",
        time_ms=now_ms() - 1000,
        gln=DEMO_GLNS["medipharm"],
    )
    assert mfr.capture(doc).ok
    export = mfr.pedigree(f"01/{DRUG_GTIN}/21/P1")
    genesis = demo_chain.paths.genesis.read_bytes()
    report = verify_pedigree(export, genesis)
    assert report.ok and [s[0] for s in report.steps] == ["commissioning"]
    bad = copy.deepcopy(export)
    bad["steps"][0]["proof"] = ["00" * 32] * len(bad["steps"][0]["proof"]) or ["00" * 32]
    assert not verify_pedigree(bad, genesis).ok
    path = tmp_path / "p.json"
    path.write_text(json.dumps(export))
    res = CliRunner().invoke(
        cli_app, ["supply", "verify-history", str(path), "--genesis", str(demo_chain.paths.genesis)]
    )
    assert res.exit_code == 0, res.output
    path.write_text(json.dumps(bad))
    res = CliRunner().invoke(
        cli_app, ["supply", "verify-history", str(path), "--genesis", str(demo_chain.paths.genesis)]
    )
    assert res.exit_code == 6


def test_device_implant_and_audited_recall_lookup(sdk: Client, chain: Chain) -> None:
    mfr = SupplyClient(sdk).login("medipharm-admin", "demo")
    assert mfr.capture(
        commissioning_document(
            gtin=DEVICE_GTIN,
            serials=["D1"],
            lot="LD",
            expiry="2030-01-01",
            time_ms=now_ms() - 2000,
            gln=DEMO_GLNS["medipharm"],
        )
    ).ok
    ship = build_document(
        [
            {
                "type": "ObjectEvent",
                "action": "OBSERVE",
                "bizStep": "shipping",
                "eventTime": "2026-01-01T00:00:00.000Z",
                "eventTimeZoneOffset": "+00:00",
                "epcList": [f"https://id.gs1.org/01/{DEVICE_GTIN}/21/D1"],
                "destinationList": [
                    {
                        "type": "owning_party",
                        "destination": f"https://id.gs1.org/417/{DEMO_GLNS['seoul-general']}",
                    }
                ],
            }
        ]
    )
    assert mfr.capture(ship).ok
    hosp = SupplyClient(sdk).login("seoul-general-admin", "demo")
    recv = build_document(
        [
            {
                "type": "ObjectEvent",
                "action": "OBSERVE",
                "bizStep": "receiving",
                "eventTime": "2026-01-02T00:00:00.000Z",
                "eventTimeZoneOffset": "+00:00",
                "epcList": [f"https://id.gs1.org/01/{DEVICE_GTIN}/21/D1"],
            }
        ]
    )
    assert hosp.capture(recv).ok
    patient, _ = chain.patient("patient-1")
    out = chain.run1(
        chain.tx(
            "supply.implant@1",
            "seoul-general.dr-kim",
            {"item": f"01/{DEVICE_GTIN}/21/D1", "patient": patient},
            [chain.key("dr-kim")],
        )
    )
    assert out.ok, out.receipt
    assert chain.run1(
        chain.tx(
            "supply.recall@1",
            "medipharm.admin",
            {"gtin": DEVICE_GTIN, "lot": "LD", "reason": "fracture"},
            [chain.key("medipharm-admin")],
        )
    ).ok
    kim = SupplyClient(sdk).login("dr-kim", "demo")
    res = kim.recall_patients(DEVICE_GTIN, "LD")
    (p,) = res["patients"]
    assert p["patient"] == patient and p["serial"] == "D1"
    entry = chain.state(f"audit/{patient}/{chain.state(f'auditn/{patient}') - 1:010d}")
    assert entry["reason"] == "device_recall" and entry["tx"] == p["audit"]
    ph = SupplyClient(sdk).login("ph-lee", "demo")  # another organisation: refused
    with pytest.raises(Exception) as exc:
        ph.recall_patients(DEVICE_GTIN, "LD")
    assert getattr(exc.value, "code", "") == "forbidden"
