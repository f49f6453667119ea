"""The records SDK (``carechain.client.records``) against the real app over HTTP (``live_url``).

People sign in custodially with the demo keyring; every access is decided on chain and audited;
``verify_audit`` checks every access-log proof offline against a signed checkpoint. The last
tests put a lying transport between the SDK and the node: a tampered proof must fail loudly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from carechain.client import Client, RecordsClient, error_from_outcome
from carechain.errors import (
    AuthenticationError,
    AuthorizationError,
    ConflictError,
    GoneError,
    NotFoundError,
    ProofError,
    ValidationError,
    VerificationError,
)
from carechain.node.chaindir import InitResult

pytest.importorskip("carechain.node.records", reason="the record service is not installed")

ACCOUNT_SYSTEM = "urn:carechain:account"
LOINC = "http://loinc.org"


def account_of(demo_chain: InitResult, name: str) -> str:
    return next(a.account for a in demo_chain.accounts if a.name == name)


def patient_resource(account: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": ACCOUNT_SYSTEM, "value": account}],
        "name": [{"family": "Hong", "given": ["Gildong"]}],
        "gender": "male",
        "birthDate": "1975-03-02",
    }


def observation(pid: str, value: float = 72) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2026-11-01T09:30:00Z",
        "valueQuantity": {"value": value, "unit": "beats/minute"},
    }


def consent(subject: str, grantee: str, code: str = "access") -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "status": "active",
        "subject": {"reference": subject},
        "decision": "permit",
        "provision": [
            {
                "actor": [{"reference": {"reference": grantee}}],
                "action": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/consentaction",
                                "code": code,
                            }
                        ]
                    }
                ],
                "purpose": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                        "code": "TREAT",
                    }
                ],
            }
        ],
    }


@pytest.fixture
def client(live_url: str, demo_chain: InitResult, tmp_path: Path) -> Iterator[Client]:
    genesis = demo_chain.paths.genesis.read_bytes()
    with Client(live_url, genesis=genesis, trust_file=tmp_path / "trust.json") as c:
        yield c


def session(client: Client, key: str) -> RecordsClient:
    return RecordsClient(client).login(key, "demo")


@pytest.fixture
def world(client: Client, demo_chain: InitResult) -> dict[str, Any]:
    """patient-1 lets Seoul General write; dr-kim creates the Patient and an Observation."""
    p1 = account_of(demo_chain, "patient-1")
    me = session(client, "patient-1")
    grant = me.grant_consent(consent(f"Patient/{p1}", "Organization/seoul-general", "correct"))
    assert grant.status == 201 and grant.audit_id and len(grant.audit_id) == 64
    kim = session(client, "dr-kim")
    pat = kim.create(patient_resource(p1))
    obs = kim.create(observation(str(pat.id)))
    return {"p1": p1, "me": me, "kim": kim, "pid": pat.id, "oid": obs.id, "obs": obs,
            "root": demo_chain.paths.root}  # fmt: skip


def test_login_and_errors(client: Client, demo_chain: InitResult) -> None:
    kim = session(client, "dr-kim")
    assert kim.account == "seoul-general.dr-kim"
    assert kim.whoami()["account"] == "seoul-general.dr-kim"
    with pytest.raises(AuthenticationError) as bad:
        RecordsClient(client).login("dr-kim", "wrong")
    assert bad.value.code == "invalid_credentials"
    with pytest.raises(AuthenticationError, match="not signed in"):
        RecordsClient(client).read("Observation", "x")
    with pytest.raises(AuthenticationError) as expired:
        RecordsClient(client, token="nonsense").read("Observation", "x")
    assert expired.value.status == 401  # type: ignore[attr-defined]
    with pytest.raises(NotFoundError) as unsupported:
        kim.read("Basic", "1")
    assert unsupported.value.status == 404  # type: ignore[attr-defined]
    with pytest.raises(ValidationError) as invalid:
        kim.create({"resourceType": "Observation", "status": "final"})
    assert invalid.value.status == 422  # type: ignore[attr-defined]
    assert "Observation" in str(invalid.value)
    kim.logout()
    with pytest.raises(AuthenticationError):
        kim.read("Observation", "x")


def test_crud_history_search(world: dict[str, Any]) -> None:
    kim: RecordsClient = world["kim"]
    obs = world["obs"]
    assert obs.status == 201 and obs.version == 1 and obs.location.endswith("/_history/1")
    assert obs.audit_id and len(obs.audit_id) == 64
    read = kim.read("Observation", world["oid"])
    assert read.resource["valueQuantity"]["value"] == 72
    assert read.audit_id not in (None, obs.audit_id)  # one audit entry per request
    changed = {**read.resource, "valueQuantity": {"value": 80, "unit": "beats/minute"}}
    upd = kim.update("Observation", world["oid"], changed, if_match=1)
    assert upd.version == 2
    with pytest.raises(ConflictError) as stale:
        kim.update("Observation", world["oid"], changed, if_match=1)
    assert stale.value.status == 412  # type: ignore[attr-defined]
    assert kim.vread("Observation", world["oid"], 1).resource["valueQuantity"]["value"] == 72
    hist = kim.history("Observation", world["oid"])
    assert [r["meta"]["versionId"] for r in kim.resources(hist)] == ["2", "1"]
    found = kim.search("Observation", patient=world["pid"], code=f"{LOINC}|8867-4")
    assert [r["id"] for r in kim.resources(found)] == [world["oid"]]
    assert found.audit_id and len(found.audit_id) == 64


def test_consent_denial_grant_revoke(client: Client, world: dict[str, Any]) -> None:
    me: RecordsClient = world["me"]
    lee = session(client, "ph-lee")
    with pytest.raises(AuthorizationError) as denied:
        lee.read("Observation", world["oid"])
    assert denied.value.code == "no_consent"
    deny_id = denied.value.audit_id  # type: ignore[attr-defined]
    assert deny_id and len(deny_id) == 64 and deny_id in str(denied.value)

    grant = me.grant_consent(consent(f"Patient/{world['pid']}", "Organization/hanbit-pharmacy"))
    cid = str(grant.id)
    assert cid in [c["id"] for c in me.consents(world["pid"])]
    assert lee.read("Observation", world["oid"]).status == 200
    with pytest.raises(AuthorizationError) as purpose:
        lee.read("Observation", world["oid"], purpose="HRESCH")
    assert purpose.value.code == "wrong_purpose"

    revoked = me.revoke_consent(cid)
    assert revoked.transaction and len(revoked.transaction) == 64
    with pytest.raises(AuthorizationError) as after:
        lee.read("Observation", world["oid"])
    assert after.value.code == "revoked"

    log = me.access_log(world["p1"])
    assert deny_id in [e["entry"]["tx"] for e in log]
    with pytest.raises(AuthorizationError):
        lee.access_log(world["p1"])


def test_break_glass_erasure_and_verified_audit(
    client: Client, world: dict[str, Any], demo_chain: InitResult
) -> None:
    me: RecordsClient = world["me"]
    nurse = session(client, "nurse-park")  # no emergency capability
    with pytest.raises(AuthorizationError) as refused:
        nurse.break_glass(world["pid"], "unconscious in the ED")
    assert refused.value.code == "unauthorized"
    with pytest.raises(AuthorizationError):
        world["kim"].erase("Observation", world["oid"], "mine", "data_error")
    erased = me.erase("Observation", world["oid"], "no longer needed")
    assert erased.transaction and len(erased.transaction) == 64
    with pytest.raises(GoneError) as gone:
        world["kim"].read("Observation", world["oid"])
    assert gone.value.status == 410  # type: ignore[attr-defined]

    report = me.verify_audit(world["p1"])
    assert report.ok and report.total == report.verified >= 6
    assert report.tree_size <= report.checkpoint.size
    actions = {(c.entry["action"], c.entry["outcome"]) for c in report.entries}
    assert {("read", "permit"), ("erase", "permit"), ("read", "deny")} <= actions
    for check in report.entries:
        assert check.leaf_hash is not None and len(check.leaf_hash) == 32
    events = me.audit_events(world["p1"])
    assert events and all(e["resourceType"] == "AuditEvent" for e in events)


def test_break_glass_by_an_emergency_practitioner(client: Client, world: dict[str, Any]) -> None:
    from carechain.cli.demo import ensure_emergency_member  # the demo's helper

    name = ensure_emergency_member(client, world["root"], b"demo")
    er = session(client, name)
    with pytest.raises(AuthorizationError):
        er.read("Observation", world["oid"], purpose="ETREAT")
    opened = er.break_glass(world["pid"], "unconscious in the emergency department")
    params = er.parameters(opened)
    assert opened.audit_id and params
    seen = er.read("Observation", world["oid"], purpose="ETREAT")
    assert seen.status == 200
    report = world["me"].verify_audit(world["p1"])
    flagged = [c for c in report.entries if c.entry.get("break_glass")]
    assert flagged and report.ok


# -- a lying node: tampered proofs must fail loudly ---------------------------------------------


def lying_client(
    live_url: str,
    genesis: bytes,
    tamper: Any,
    *,
    path: str = "/access-log",
    tamper_headers: Any = None,
) -> Client:
    """A Client whose transport rewrites 200 answers to paths ending in ``path`` with
    ``tamper(doc)`` (and ``tamper_headers(headers)``)."""
    real = httpx.Client(base_url=live_url)

    def handler(request: httpx.Request) -> httpx.Response:
        resp = real.send(
            real.build_request(
                request.method, str(request.url), headers=request.headers, content=request.content
            )
        )
        body = resp.content
        headers = {k: v for k, v in resp.headers.items() if k.lower() != "content-length"}
        headers.pop("content-encoding", None)
        if request.url.path.endswith(path) and resp.status_code == 200:
            doc = orjson.loads(body)
            tamper(doc)
            body = orjson.dumps(doc)
            if tamper_headers is not None:
                tamper_headers(headers)
        return httpx.Response(resp.status_code, headers=headers, content=body)

    return Client(
        live_url, genesis=genesis, http=httpx.Client(transport=httpx.MockTransport(handler))
    )


def flip_path(doc: dict[str, Any]) -> None:
    entry = next(e for e in doc["entries"] if e["proof"]["proof"])
    h = entry["proof"]["proof"][0]
    entry["proof"]["proof"][0] = ("0" if h[0] != "0" else "1") + h[1:]


def rewrite_actor(doc: dict[str, Any]) -> None:
    doc["entries"][0]["entry"]["actor"] = "someone.else"


def fake_leaf(doc: dict[str, Any]) -> None:
    for e in doc["entries"]:  # the server's leaf hash is never used: lying about it is harmless
        e["proof"]["leaf_hash"] = "00" * 32


@pytest.mark.parametrize(
    ("tamper", "ok"), [(flip_path, False), (rewrite_actor, False), (fake_leaf, True)]
)
def test_verify_audit_catches_a_tampered_access_log(
    live_url: str, demo_chain: InitResult, world: dict[str, Any], tamper: Any, ok: bool
) -> None:
    genesis = demo_chain.paths.genesis.read_bytes()
    with lying_client(live_url, genesis, tamper) as liar:
        me = RecordsClient(liar, token=world["me"].token)
        if ok:
            assert me.verify_audit(world["p1"]).ok
            return
        with pytest.raises(VerificationError) as failed:
            me.verify_audit(world["p1"])
        assert "do not verify against checkpoint size" in str(failed.value)
        report = me.verify_audit(world["p1"], strict=False)
        assert not report.ok and report.verified == report.total - 1
        assert report.failures[0].error


def test_error_from_outcome_maps_codes_and_statuses() -> None:
    def oo(code: str, text: str, diag: str) -> bytes:
        issue = {"severity": "error", "code": "x", "diagnostics": diag,
                 "details": {"coding": [{"system": "https://carechain.dev/problems",
                                         "code": code}], "text": text}}  # fmt: skip
        return orjson.dumps({"resourceType": "OperationOutcome", "issue": [issue]})

    err = error_from_outcome(403, oo("no_consent", "may not read: no_consent", "no_consent"),
                             {"x-audit-entry": "ab" * 32})  # fmt: skip
    assert isinstance(err, AuthorizationError) and err.code == "no_consent"
    assert err.audit_id == "ab" * 32  # type: ignore[attr-defined]
    assert isinstance(error_from_outcome(410, oo("erased", "gone", "gone"), {}), GoneError)
    assert isinstance(error_from_outcome(412, oo("conflict", "stale", "stale"), {}), ConflictError)
    err = error_from_outcome(400, oo("bad_purpose", "X: bad", "X: bad"), {})
    assert isinstance(err, ValidationError) and err.code == "bad_purpose"
    err = error_from_outcome(404, b"not json", {})
    assert err.code == "bad_response"
    assert isinstance(error_from_outcome(409, oo("gone", "odd", "odd"), {}), ConflictError)
    assert not isinstance(error_from_outcome(422, oo("x", "a", "b"), {}), ProofError)


def test_verify_audit_proves_an_older_tree_size_by_consistency(
    live_url: str, demo_chain: InitResult, world: dict[str, Any]
) -> None:
    stale = world["me"].access_log(world["p1"])  # proofs for the tree size of that moment
    world["kim"].read("Observation", world["oid"])  # the log grows
    genesis = demo_chain.paths.genesis.read_bytes()

    def replay(doc: dict[str, Any]) -> None:
        doc["entries"] = stale

    with lying_client(live_url, genesis, replay) as liar:
        report = RecordsClient(liar, token=world["me"].token).verify_audit(world["p1"])
    assert report.ok and report.total == len(stale)
    assert report.tree_size == stale[0]["proof"]["tree_size"] < report.checkpoint.size
    assert report.root.hex() == stale[0]["proof"]["root"]


# -- across organisations: content checked against the reader's own ledger ---------------------


def test_cross_org_read_is_checked_against_the_readers_ledger(
    live_url: str, demo_chain: InitResult, demo_keys: Any, world: dict[str, Any], tmp_path: Path
) -> None:
    """A pharmacist of Hanbit (org B) reads an Observation Seoul General (org A) hosts: B signs
    its token request with its own ledger key, A decides on consent and audits, B checks the
    content against the anchor in B's own ledger (here the same node, through a second client)."""
    world["me"].grant_consent(consent(f"Patient/{world['pid']}", "Organization/hanbit-pharmacy"))
    genesis = demo_chain.paths.genesis.read_bytes()
    key = demo_keys.load("ph-lee", b"demo")

    def pharmacist_at(host: Client) -> RecordsClient:
        return RecordsClient(host, token=host.authenticate("hanbit-pharmacy.ph-lee", key))

    with (
        Client(live_url, genesis=genesis, trust_file=tmp_path / "own.json") as own,
        Client(live_url, genesis=genesis, trust_file=tmp_path / "host.json") as host,
    ):
        lee = pharmacist_at(host)
        got = lee.read_verified("Observation", world["oid"], ledger=own)
        assert (got.org, got.version) == ("seoul-general", 1)
        assert got.resource["valueQuantity"]["value"] == 72
        assert got.audit_id and got.anchor.tx.tx.body.kind == "records.anchor@1"
        assert got.anchor.tx.tx.body.sender == "seoul-general.dr-kim"
        audited = [e["entry"] for e in world["me"].access_log(world["p1"])]
        assert any(
            e["tx"] == got.audit_id and e["actor"] == "hanbit-pharmacy.ph-lee" for e in audited
        )
        assert lee.read_verified("Observation", world["oid"], ledger=own, version=1).version == 1


def _bump_value(doc: dict[str, Any]) -> None:
    doc["valueQuantity"]["value"] = 73


def _other_key(headers: dict[str, str]) -> None:
    headers["x-record-digest-key"] = "A" * 43


def _no_key(headers: dict[str, str]) -> None:
    headers.pop("x-record-digest-key", None)


def _other_anchor(headers: dict[str, str]) -> None:
    headers["x-anchor-tx"] = headers["x-audit-entry"]  # a real tx, but an audit entry


@pytest.mark.parametrize(
    ("tamper", "tamper_headers", "message"),
    [
        (_bump_value, None, "does not match the digest anchored on your ledger"),
        (lambda doc: None, _other_key, "does not match the digest anchored"),
        (lambda doc: None, _no_key, "cannot be checked against the ledger"),
        (lambda doc: None, _other_anchor, "not a records.anchor@1"),
        (lambda doc: None, None, None),  # negative control: an honest relay verifies
    ],
)
def test_cross_org_read_refuses_a_lying_host(
    live_url: str,
    demo_chain: InitResult,
    demo_keys: Any,
    world: dict[str, Any],
    tmp_path: Path,
    tamper: Any,
    tamper_headers: Any,
    message: str | None,
) -> None:
    world["me"].grant_consent(consent(f"Patient/{world['pid']}", "Organization/hanbit-pharmacy"))
    genesis = demo_chain.paths.genesis.read_bytes()
    key = demo_keys.load("ph-lee", b"demo")
    path = f"/Observation/{world['oid']}"
    with (
        Client(live_url, genesis=genesis, trust_file=tmp_path / "own.json") as own,
        lying_client(live_url, genesis, tamper, path=path, tamper_headers=tamper_headers) as host,
    ):
        lee = RecordsClient(host, token=host.authenticate("hanbit-pharmacy.ph-lee", key))
        if message is None:
            assert lee.read_verified("Observation", world["oid"], ledger=own).version == 1
            return
        with pytest.raises(VerificationError, match=message):
            lee.read_verified("Observation", world["oid"], ledger=own)


def test_cross_org_read_of_an_erased_record_is_gone(
    live_url: str, demo_chain: InitResult, world: dict[str, Any], tmp_path: Path
) -> None:
    genesis = demo_chain.paths.genesis.read_bytes()
    world["me"].erase("Observation", world["oid"], "no longer needed")
    with (
        Client(live_url, genesis=genesis, trust_file=tmp_path / "own.json") as own,
        pytest.raises(GoneError),
    ):
        world["kim"].read_verified("Observation", world["oid"], ledger=own)
