"""``carechain records|consent|audit|erase|break-glass`` and ``carechain demo --records`` with
typer's CliRunner against the real app served over HTTP (``live_url``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from carechain.cli.main import app
from carechain.client.records import RecordsClient
from carechain.errors import LedgerError
from carechain.node.chaindir import InitResult

pytest.importorskip("carechain.node.records", reason="the record service is not installed")

ACCOUNT_SYSTEM = "urn:carechain:account"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CARECHAIN_DIR", "CARECHAIN_URL", "CARECHAIN_PASSWORD", "CARECHAIN_TRUST_FILE"):
        monkeypatch.delenv(name, raising=False)


def account_of(demo_chain: InitResult, name: str) -> str:
    return next(a.account for a in demo_chain.accounts if a.name == name)


class Cli:
    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self, *args: str, key: str | None = None, input: str | None = None,
                 password: str | None = "demo") -> Result:  # fmt: skip
        argv = [*args, "--url", self.url]
        if key is not None:
            argv += ["--key", key]
        env = {"CARECHAIN_PASSWORD": password} if password else None
        return CliRunner().invoke(app, argv, input=input, env=env)

    def ok(self, *args: str, key: str | None = None, input: str | None = None) -> Result:
        result = self(*args, key=key, input=input)
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
def cli(live_url: str) -> Cli:
    return Cli(live_url)


@pytest.fixture
def records(cli: Cli, demo_chain: InitResult, tmp_path: Path) -> dict[str, str]:
    """Through the CLI: patient-1 lets Seoul General write; dr-kim creates Patient + Observation."""
    p1 = account_of(demo_chain, "patient-1")
    out = cli.ok("consent", "grant", "--patient", p1, "--grantee", "Organization/seoul-general",
                 "--action", "write", key="patient-1").stdout  # fmt: skip
    assert "granted Consent/" in out and "audit entry" in out
    pat = tmp_path / "patient.json"
    pat.write_text(json.dumps({
        "resourceType": "Patient", "identifier": [{"system": ACCOUNT_SYSTEM, "value": p1}],
        "name": [{"family": "Hong", "given": ["Gildong"]}],
    }))  # fmt: skip
    pid = cli.json("records", "create", str(pat), key="dr-kim")["resource"]["id"]
    obs = {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "valueQuantity": {"value": 72, "unit": "beats/minute"},
    }  # fmt: skip
    result = cli.ok("records", "create", "-", key="dr-kim", input=json.dumps(obs))
    m = re.search(r"created Observation/(\S+) version 1 \(HTTP 201\)", result.stdout)
    assert m, result.stdout
    assert re.search(r"audit entry  [0-9a-f]{64}", result.stdout)
    return {"p1": p1, "pid": pid, "oid": m[1], "dir": str(tmp_path)}


def test_records_read_update_history_search(cli: Cli, records: dict[str, str]) -> None:
    oid = records["oid"]
    doc = cli.json("records", "read", "Observation", oid, key="dr-kim")
    assert doc["resource"]["valueQuantity"]["value"] == 72 and len(doc["audit_entry"]) == 64
    new = Path(records["dir"]) / "v2.json"
    new.write_text(json.dumps({**doc["resource"], "valueQuantity": {"value": 80, "unit": "/min"}}))
    out = cli.ok("records", "update", "Observation", oid, str(new), "--if-match", "1",
                 key="dr-kim").stdout  # fmt: skip
    assert f"updated Observation/{oid} version 2" in out
    stale = cli("records", "update", "Observation", oid, str(new), "--if-match", "1", key="dr-kim")
    assert_fails(stale, 5, "HTTP 412")
    out = cli.ok("records", "history", "Observation", oid, key="dr-kim").stdout
    assert out.index("version 2") < out.index("version 1")
    v1 = cli.json("records", "read", "Observation", oid, "--version", "1", key="dr-kim")
    assert v1["resource"]["valueQuantity"]["value"] == 72
    out = cli.ok("records", "search", "Observation", "-p", f"patient={records['pid']}",
                 key="dr-kim").stdout  # fmt: skip
    assert "1 Observation found" in out and f"Observation/{oid}" in out
    assert_fails(cli("records", "search", "Observation", "-p", "nonsense", key="dr-kim"), 2,
                 "NAME=VALUE")  # fmt: skip


def test_consent_grant_list_revoke_and_denials(cli: Cli, records: dict[str, str]) -> None:
    oid, pid = records["oid"], records["pid"]
    denied = cli("records", "read", "Observation", oid, key="ph-lee")
    assert_fails(denied, 3, "no_consent", "HTTP 403", "recorded as audit entry")
    out = cli.ok("consent", "grant", "--patient", pid, "--grantee",
                 "Practitioner/hanbit-pharmacy.ph-lee", key="patient-1").stdout  # fmt: skip
    cid = re.search(r"consent id   (\S+)", out)
    assert cid, out
    listed = cli.ok("consent", "list", "--patient", pid, key="patient-1").stdout
    assert cid[1] in listed and "hanbit-pharmacy.ph-lee" in listed
    cli.ok("records", "read", "Observation", oid, key="ph-lee")
    trust = str(Path(records["dir"]) / "own-trust.json")
    checked = cli.ok("records", "read", "Observation", oid, "--check-against", cli.url,
                     "--trust-file", trust, key="ph-lee").stdout  # fmt: skip
    assert "read and checked Observation/" in checked and "hosted by seoul-general" in checked
    assert "matches the keyed digest anchored on your ledger" in checked
    doc = json.loads(cli.ok("records", "read", "Observation", oid, "--check-against", cli.url,
                            "--trust-file", trust, "--json", key="ph-lee").stdout)  # fmt: skip
    assert doc["org"] == "seoul-general" and doc["version"] == 1 and len(doc["anchor_tx"]) == 64
    assert_fails(cli("records", "read", "Observation", oid, "--check-against",
                     "http://127.0.0.1:9", key="ph-lee"), 1, "cannot reach")  # fmt: skip
    assert_fails(cli("records", "read", "Observation", oid, "--purpose", "HRESCH", key="ph-lee"),
                 3, "wrong_purpose")  # fmt: skip
    out = cli.ok("consent", "revoke", cid[1], key="patient-1").stdout
    assert f"revoked consent {cid[1]}" in out
    assert_fails(cli("records", "read", "Observation", oid, key="ph-lee"), 3, "revoked")
    assert_fails(cli("consent", "revoke", "nope", key="patient-1"), 4, "no consent nope")
    assert_fails(cli("consent", "grant", key="patient-1"), 2, "--patient and --grantee")


def test_break_glass_erase_and_audit_verify(
    cli: Cli, records: dict[str, str], demo_chain: InitResult
) -> None:
    oid, pid, p1 = records["oid"], records["pid"], records["p1"]
    assert_fails(cli("break-glass", "--patient", pid, "--reason", "ER", key="nurse-park"), 3,
                 "emergency capability")  # fmt: skip
    from carechain.cli.demo import ensure_emergency_member
    from carechain.client import Client

    with Client(cli.url) as client:
        name = ensure_emergency_member(client, demo_chain.paths.root)
    out = cli.ok("break-glass", "--patient", pid, "--reason", "unconscious", key=name).stdout
    assert "break-glass session opened" in out and "flagged for review" in out
    cli.ok("records", "read", "Observation", oid, "--purpose", "ETREAT", key=name)

    assert_fails(cli("erase", "Observation", oid, "--basis", "data_error", key="dr-kim"), 3,
                 "only the patient")  # fmt: skip
    out = cli.ok("erase", "Observation", oid, "--reason", "mine", key="patient-1").stdout
    assert f"erased Observation/{oid}" in out and "erasure receipt" in out
    assert_fails(cli("records", "read", "Observation", oid, key="dr-kim"), 4, "HTTP 410")

    out = cli.ok("audit", "verify", "--patient", p1, "--genesis", str(demo_chain.paths.genesis),
                 key="patient-1").stdout  # fmt: skip
    m = re.search(r"verified (\d+) of (\d+) entries against checkpoint size (\d+)", out)
    assert m and m[1] == m[2] and int(m[1]) >= 8, out
    assert "BREAK-GLASS" in out and "✗" not in out
    for part in ("who seoul-general.dr-kim", "why TREAT", "outcome deny (unauthorized)",
                 "outcome permit", "basis consent "):  # fmt: skip
        assert part in out, out
    log = cli.ok("audit", "log", "--patient", p1, key="patient-1").stdout
    assert "access-log entries" in log
    assert_fails(cli("audit", "verify", "--patient", p1, key="ph-lee"), 3, "privacy officer")


def test_audit_verify_exits_6_on_a_tampered_proof(
    cli: Cli, records: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = RecordsClient.access_log

    def lying(self: RecordsClient, patient: str) -> list[dict[str, Any]]:
        items = real(self, patient)
        victim = next(i for i in items if i["proof"]["proof"])
        h = victim["proof"]["proof"][-1]
        victim["proof"]["proof"][-1] = ("f" if h[0] != "f" else "e") + h[1:]
        return items

    monkeypatch.setattr(RecordsClient, "access_log", lying)
    result = cli("audit", "verify", "--patient", records["p1"], key="patient-1")
    assert_fails(result, 6, "1 of")
    assert "✗" in result.stdout and "not verified" in result.stdout
    m = re.search(r"verified (\d+) of (\d+) entries", result.stdout)
    assert m and int(m[1]) == int(m[2]) - 1


def test_sign_in_errors(cli: Cli, tmp_path: Path) -> None:
    assert_fails(cli("records", "read", "Observation", "x", key="dr-kim", password="wrong"), 3,
                 "unknown key name or wrong password")  # fmt: skip
    assert_fails(cli("records", "read", "Observation", "x", key="nobody"), 3, "unknown key")
    pw = tmp_path / "pw"
    pw.write_text("demo\n")
    result = cli("records", "read", "Observation", "x", "--password-file", str(pw),
                 key="dr-kim", password=None)  # fmt: skip
    assert_fails(result, 4, "HTTP 404")
    prompted = cli("records", "read", "Basic", "1", key="dr-kim", password=None, input="demo\n")
    assert_fails(prompted, 4, "Basic")
    assert_fails(cli("records", "create", str(tmp_path / "none.json"), key="dr-kim"), 2,
                 "does not exist")  # fmt: skip
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"resourceType": "Observation", "status": "final"}))
    assert_fails(cli("records", "create", str(bad), key="dr-kim"), 2, "HTTP 422")
    assert_fails(Cli("http://127.0.0.1:9")("records", "read", "Observation", "x", key="dr-kim"),
                 1, "cannot reach")  # fmt: skip


def test_demo_records_walk_through(live_url: str, demo_chain: InitResult) -> None:
    args = ["demo", "--records", "--url", live_url, "--dir", str(demo_chain.paths.root)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = result.stdout
    steps = [
        "signed in as seoul-general.dr-kim",
        "denied (HTTP 403, no_consent)",
        "permitted: heart rate 72 beats/minute",
        "denied (HTTP 403, revoked)",
        "registered seoul-general.er-yoon (capability emergency)",
        "permitted under break-glass",
        "break-glass access(es) flagged for review",
        "denied (HTTP 410, erased)",
        "records demo complete",
    ]
    at = -1
    for step in steps:
        assert step in out, step
        assert out.index(step) > at, step  # in this order
        at = out.index(step)
    m = re.search(r"verified (\d+) of (\d+) entries against checkpoint size \d+", out)
    assert m and m[1] == m[2], out
    assert out.count("✓ proves:") == 9
    again = CliRunner().invoke(app, args)  # idempotent: the emergency member is reused
    assert again.exit_code == 0, again.output
    assert "already registered with the emergency capability" in again.stdout


def test_attach_and_fetch_an_attachment(cli: Cli, records: dict[str, str], tmp_path: Path) -> None:
    scan = tmp_path / "scan.pdf"
    data = b"%PDF-1.7\n" + bytes(range(256)) * 1200
    scan.write_bytes(data)
    out = cli.ok("records", "attach", str(scan), "--patient", records["pid"], key="dr-kim").stdout
    m = re.search(r"attached Binary/(\S+) version 1 \(HTTP 201\)", out)
    assert m, out
    got = tmp_path / "got.pdf"
    out = cli.ok("records", "fetch-attachment", m[1], "-o", str(got), key="dr-kim").stdout
    assert f"{len(data)} bytes of application/pdf" in out and "audit entry" in out
    assert got.read_bytes() == data
    denied = cli("records", "fetch-attachment", m[1], "-o", str(tmp_path / "x"), key="ph-lee")
    assert_fails(denied, 3, "no_consent", "HTTP 403")
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.part").exists()
    odd = tmp_path / "notes.unknownext"
    odd.write_bytes(b"x")
    assert_fails(cli("records", "attach", str(odd), "--patient", records["pid"], key="dr-kim"),
                 2, "--content-type")  # fmt: skip
