"""``carechain demo --trials`` and the ``trials`` / ``incentives`` commands with typer's
CliRunner against the real app served over HTTP (``live_url``)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner, Result

from carechain.cli.main import app
from carechain.node.chaindir import InitResult


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CARECHAIN_DIR", "CARECHAIN_URL", "CARECHAIN_PASSWORD", "CARECHAIN_TRUST_FILE"):
        monkeypatch.delenv(name, raising=False)


def run(url: str, demo_chain: InitResult, *args: str) -> Result:
    argv = [*args, "--url", url, "--dir", str(demo_chain.paths.root)]
    return CliRunner().invoke(app, argv, env={"CARECHAIN_PASSWORD": "demo"})


def test_demo_trials_exposes_the_switch_and_pays_points(
    live_url: str, demo_chain: InitResult
) -> None:
    result = run(live_url, demo_chain, "demo", "--trials")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "primary outcome SWITCHED" in out
    assert "AFTER ENROLMENT BEGAN" in out
    assert "rejected (unauthorized)" in out
    assert "rejected (duplicate_attestation)" in out
    assert "holds 140 points of nhis-payer" in out
    assert "rejected (insufficient_points)" in out

    listed = run(live_url, demo_chain, "trials", "list", "--json")
    assert listed.exit_code == 0, listed.output
    (trial,) = json.loads(listed.stdout)
    verified = run(live_url, demo_chain, "trials", "report", trial["id"], "--verify")
    assert verified.exit_code == 0, verified.output
    assert "verified: 4 transactions proven" in verified.stdout

    bad = run(
        live_url,
        demo_chain,
        "trials",
        "amend",
        trial["id"],
        "--reason",
        "x",
        "--title",
        "renamed",
        "--key",
        "dr-kim",
    )
    assert bad.exit_code == 3, bad.output
    assert "unauthorized" in bad.stderr

    missing = run(live_url, demo_chain, "trials", "report", "KCT0000404")
    assert missing.exit_code == 4, missing.output


def test_incentive_commands(live_url: str, demo_chain: InitResult, tmp_path: object) -> None:
    from pathlib import Path

    from carechain.client.client import now_ms
    from carechain.contracts.incentives import iso_date

    today = now_ms() // 86_400_000
    spec = {
        "id": "walk-cli",
        "title": "Walk",
        "grace_days": 10,
        "period": {"start": iso_date(today - 3), "end": iso_date(today - 1)},
        "rule": {
            "metric": "steps",
            "threshold": 8000,
            "min_days": 2,
            "points": 50,
            "per_extra_day": 0,
            "cap": 50,
        },
        "budget": 100,
    }
    path = Path(str(tmp_path)) / "programme.json"
    path.write_text(json.dumps(spec))
    assert (
        run(
            live_url, demo_chain, "incentives", "define", str(path), "--key", "nhis-payer-admin"
        ).exit_code
        == 0
    )
    patient = next(a.account for a in demo_chain.accounts if a.name == "patient-1")
    assert (
        run(live_url, demo_chain, "incentives", "join", "walk-cli", "--key", "patient-1").exit_code
        == 0
    )
    from carechain.crypto.keystore import Keyring

    Keyring(demo_chain.paths.root).create("watch-1", "ed25519", b"demo")
    bound = run(
        live_url,
        demo_chain,
        "incentives",
        "bind-device",
        "--device",
        "watch-1",
        "--key",
        "patient-1",
    )
    assert bound.exit_code == 0, bound.output
    for n in (1, 2):
        res = run(
            live_url,
            demo_chain,
            "incentives",
            "attest",
            "walk-cli",
            "--patient",
            patient,
            "--day",
            iso_date(today - n),
            "--value",
            "9000",
            "--device",
            "watch-1",
        )
        assert res.exit_code == 0, res.output
    again = run(
        live_url,
        demo_chain,
        "incentives",
        "attest",
        "walk-cli",
        "--patient",
        patient,
        "--day",
        iso_date(today - 1),
        "--value",
        "9000",
        "--device",
        "watch-1",
    )
    assert again.exit_code == 5, again.output
    assert (
        run(
            live_url, demo_chain, "incentives", "close", "walk-cli", "--key", "nhis-payer-admin"
        ).exit_code
        == 0
    )
    wallet = run(live_url, demo_chain, "incentives", "wallet", patient, "--json")
    assert json.loads(wallet.stdout)["balances"] == {"nhis-payer": 50}
    over = run(
        live_url,
        demo_chain,
        "incentives",
        "redeem",
        "--sponsor",
        "nhis-payer",
        "--amount",
        "51",
        "--reward",
        "voucher",
        "--key",
        "patient-1",
    )
    assert over.exit_code == 2 and "insufficient_points" in over.stderr
    shown = run(live_url, demo_chain, "incentives", "show", "walk-cli")
    assert "2 qualifying, award 50" in shown.stdout
