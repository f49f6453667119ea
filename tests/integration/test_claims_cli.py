"""``carechain claims …`` and ``carechain demo --claims`` with typer's CliRunner against the real
app served over HTTP (``live_url``), signing with the demo keyring of ``demo_chain``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from carechain.cli.main import app
from carechain.errors import LedgerError
from carechain.node.chaindir import InitResult
from carechain.testing.chain_driver import Chain

pytest.importorskip("carechain.node.records", reason="the record service is not installed")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CARECHAIN_DIR", "CARECHAIN_URL", "CARECHAIN_PASSWORD", "CARECHAIN_TRUST_FILE"):
        monkeypatch.delenv(name, raising=False)


class Cli:
    def __init__(self, url: str, data_dir: Path) -> None:
        self.url, self.data_dir = url, data_dir

    def __call__(self, *args: str, key: str | None = None) -> Result:
        argv = [*args, "--url", self.url, "--dir", str(self.data_dir)]
        if key is not None:
            argv += ["--key", key]
        return CliRunner().invoke(app, argv, env={"CARECHAIN_PASSWORD": "demo"})

    def ok(self, *args: str, key: str | None = None) -> Result:
        result = self(*args, key=key)
        assert result.exit_code == 0, (result.exit_code, result.output)
        return result

    def json(self, *args: str, key: str) -> Any:
        return json.loads(self.ok(*args, "--json", key=key).stdout)


def assert_fails(result: Result, code: int, *messages: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    for message in messages:
        assert message in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, LedgerError)


@pytest.fixture
def cli(live_url: str, demo_chain: InitResult) -> Cli:
    return Cli(live_url, demo_chain.paths.root)


def test_submit_show_pay_appeal_analytics(cli: Cli, chain: Chain, tmp_path: Path) -> None:
    (enc,) = chain.run(chain.anchor("dr-kim", type="Encounter", id="enc-cli"))
    assert enc.ok
    p1 = chain.account("patient-1")
    sub = [
        "claims",
        "submit",
        "--patient",
        p1,
        "--coverage",
        "nhis-p1",
        "--encounter",
        "seoul-general/enc-cli",
        "--diagnosis",
        "E11.9",
    ]
    day = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    out = cli.json(
        *sub,
        "--item",
        f"consult-outpatient:{day}:1:20000",
        "--item",
        f"mri-brain:{day}:1:400000",
        "--ref",
        "cli-1",
        key="dr-kim",
    )
    claim = out["claim"]
    assert claim["decision"] == "partial" and out["blinding_key"]
    assert [i["reasons"] for i in claim["items"]] == [[], ["prior_auth_required"]]
    text = cli.ok("claims", "show", claim["id"], key="nhis-payer-admin").stdout
    assert f"claim {claim['id']}" in text and "prior_auth_required" in text
    fhir = json.loads(cli.ok("claims", "show", claim["id"], "--fhir", key="dr-kim").stdout)
    assert fhir["resourceType"] == "ClaimResponse"
    paid = cli.ok("claims", "pay", claim["id"], "--reference", "w1", key="nhis-payer-admin")
    assert "paid 5,600" in paid.stdout
    assert_fails(cli("claims", "pay", claim["id"], key="nhis-payer-admin"), 2, "nothing_to_pay")
    assert_fails(
        cli(
            "claims",
            "appeal",
            claim["id"],
            "--reason",
            "r",
            "--document",
            "seoul-general/DocumentReference/nope",
            key="dr-kim",
        ),
        4,
        "unknown_record",
    )
    assert_fails(
        cli(
            "claims",
            "appeal",
            claim["id"],
            "--reason",
            "r",
            "--document",
            "seoul-general/DocumentReference/nope",
            key="ph-lee",
        ),
        3,
        "unauthorized",
    )
    chain.run(chain.anchor("dr-kim", type="DocumentReference", id="note-cli"))
    cli.ok(
        "claims",
        "appeal",
        claim["id"],
        "--reason",
        "emergency",
        "--document",
        "seoul-general/DocumentReference/note-cli",
        key="dr-kim",
    )
    decided = cli.ok(
        "claims",
        "decide",
        claim["id"],
        "--decision",
        "overturned",
        "--reason",
        "documented",
        key="nhis-payer-admin",
    ).stdout
    assert "approved" in decided and "appeal: overturned" in decided
    again = cli.json(
        *sub, "--item", f"consult-outpatient:{day}:1:20000", "--ref", "cli-1", key="dr-kim"
    )["claim"]
    assert again["reasons"] == ["duplicate_claim"]
    stats = cli.json("claims", "analytics", "--provider", "seoul-general", key="nhis-payer-admin")
    assert (stats["claims"], stats["duplicates"]) == (2, 1)
    assert (
        "2 claims"
        in cli.ok(
            "claims", "analytics", "--provider", "seoul-general", key="nhis-payer-admin"
        ).stdout
    )
    assert_fails(cli("claims", "show", claim["id"], key="ph-lee"), 3, "may not read")
    assert_fails(
        cli(*sub, "--item", "consult:bad-date:1:1", "--ref", "x", key="dr-kim"), 2, "YYYY-MM-DD"
    )


def test_plan_enrol_authorize(cli: Cli, chain: Chain, tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            {
                "plan": "dental",
                "name": "Dental",
                "currency": "KRW",
                "deductible": 0,
                "services": [{"code": "scaling", "allowed": 15000}],
            }
        )
    )
    assert (
        "registered plan dental"
        in cli.ok("claims", "plan", str(plan), key="nhis-payer-admin").stdout
    )
    assert_fails(cli("claims", "plan", str(plan), key="nhis-payer-admin"), 5, "duplicate_plan")
    assert_fails(cli("claims", "plan", str(plan), key="dr-kim"), 3, "unauthorized")
    floaty = tmp_path / "float.json"
    floaty.write_text('{"plan": "f", "deductible": 1.5}')
    assert_fails(cli("claims", "plan", str(floaty), key="nhis-payer-admin"), 2, "integers")
    p2 = chain.account("patient-2")
    cli.ok(
        "claims",
        "enrol",
        "--coverage",
        "dental-p2",
        "--plan",
        "dental",
        "--patient",
        p2,
        "--start",
        "2026-01-01",
        "--end",
        "2027-01-01",
        key="nhis-payer-admin",
    )
    assert chain.state("claims/cov/dental-p2")["patient"] == p2
    out = cli.ok(
        "claims",
        "authorize",
        "--coverage",
        "dental-p2",
        "--service",
        "scaling",
        "--units",
        "2",
        "--start",
        "2026-11-01",
        "--end",
        "2026-12-01",
        key="nhis-payer-admin",
    ).stdout
    pa = out.split()[-1]
    assert chain.state(f"claims/pa/{pa}")["units"] == 2


def test_demo_claims(cli: Cli) -> None:
    out = cli.ok("demo", "--claims").stdout
    assert "approved" in out and "duplicate_claim" in out and "encounter_not_found" in out
    assert "claims demo complete" in out
    again = cli.ok("demo", "--claims").stdout  # a second run is not a duplicate of the first
    assert "claims demo complete" in again


@pytest.fixture
def demo_chain(demo_chain_domains: InitResult) -> InitResult:
    """This module uses the domain demo data, as ``carechain init --demo`` seeds it."""
    return demo_chain_domains
