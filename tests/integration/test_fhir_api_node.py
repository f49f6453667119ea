"""The FHIR facade against the real record service on the demo chain.

``create_app(demo_node, data_dir=…)`` builds ``FileRecordService``; people sign in custodially
(``POST /v1/auth/login``, the demo password) and every access is decided on chain and audited.
The last test drives the API with ``fhirpy``, a FHIR client nobody here wrote, over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from fhir.resources import get_fhir_model_class

from carechain.api import create_app
from carechain.merkle import verify_inclusion
from carechain.node.chaindir import InitResult
from carechain.node.node import Node

pytest.importorskip("carechain.node.records", reason="the record service is not installed")

FHIR = "application/fhir+json"
ACCOUNT_SYSTEM = "urn:carechain:account"
LOINC = "http://loinc.org"


def _account(demo_chain: InitResult, name: str) -> str:
    return next(a.account for a in demo_chain.accounts if a.name == name)


@pytest.fixture
def app(demo_node: Node, demo_chain: InitResult) -> FastAPI:
    app = create_app(demo_node, data_dir=demo_chain.paths.root)
    assert app.state.records is not None
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def login(client: Any, key: str) -> dict[str, str]:
    resp = client.post("/v1/auth/login", data={"key": key, "password": "demo"})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def patient(account: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": ACCOUNT_SYSTEM, "value": account}],
        "name": [{"family": "Hong", "given": ["Gildong"]}],
        "gender": "male",
        "birthDate": "1975-03-02",
    }


def observation(pid: str, code: str = "8867-4", value: float = 72) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": code, "display": "Heart rate"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2026-11-01T09:30:00Z",
        "valueQuantity": {"value": value, "unit": "beats/minute"},
    }


def consent(subject: str, grantee: str, code: str = "access", purpose: str = "TREAT") -> Any:
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
                        "code": purpose,
                    }
                ],
            }
        ],
    }


def hospital_may_write(client: Any, demo_chain: InitResult) -> None:
    """patient-1 lets Seoul General read and write (correct) its records: the decision
    function permits a practitioner to write a patient's *new* record only with consent."""
    p1 = _account(demo_chain, "patient-1")
    grant = consent(f"Patient/{p1}", "Organization/seoul-general", code="correct")
    resp = client.post("/fhir/Consent", json=grant, headers=login(client, "patient-1"))
    assert resp.status_code == 201, resp.text


def outcome(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(FHIR)
    doc: dict[str, Any] = resp.json()
    assert doc["resourceType"] == "OperationOutcome"
    return doc


def test_practitioner_records_lifecycle_and_cross_org_denial(
    client: TestClient, demo_chain: InitResult
) -> None:
    hospital_may_write(client, demo_chain)
    kim = login(client, "dr-kim")
    p1 = _account(demo_chain, "patient-1")

    resp = client.post("/fhir/Patient", json=patient(p1), headers={**kim, "Content-Type": FHIR})
    assert resp.status_code == 201, resp.text
    pat = resp.json()
    pid = pat["id"]
    assert resp.headers["location"] == f"http://testserver/fhir/Patient/{pid}/_history/1"
    assert resp.headers["etag"] == 'W/"1"'
    assert len(resp.headers["x-audit-entry"]) == 64

    resp = client.post("/fhir/Observation", json=observation(pid), headers=kim)
    assert resp.status_code == 201, resp.text
    obs = resp.json()
    oid = obs["id"]
    assert obs["meta"]["versionId"] == "1"

    resp = client.get(f"/fhir/Observation/{oid}", headers=kim)
    assert resp.status_code == 200, resp.text
    assert resp.json()["valueQuantity"] == {"value": 72, "unit": "beats/minute"}
    assert resp.headers["etag"] == 'W/"1"'
    read_audit = resp.headers["x-audit-entry"]
    assert read_audit != obs  # one audit entry per request

    bundle = client.get(f"/fhir/Observation?patient={pid}&code={LOINC}|8867-4", headers=kim).json()
    assert bundle["total"] == 1, bundle
    assert bundle["entry"][0]["resource"]["id"] == oid

    changed = {**resp.json(), "valueQuantity": {"value": 80, "unit": "beats/minute"}}
    resp = client.put(
        f"/fhir/Observation/{oid}", json=changed, headers={**kim, "If-Match": 'W/"1"'}
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["etag"] == 'W/"2"'
    resp = client.put(
        f"/fhir/Observation/{oid}", json=changed, headers={**kim, "If-Match": 'W/"1"'}
    )
    outcome(resp, 412)

    history = client.get(f"/fhir/Observation/{oid}/_history", headers=kim).json()
    get_fhir_model_class("Bundle").model_validate(history)
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    v1 = client.get(f"/fhir/Observation/{oid}/_history/1", headers=kim).json()
    assert v1["valueQuantity"]["value"] == 72

    provs = client.get(f"/fhir/Provenance?target=Observation/{oid}", headers=kim).json()
    assert provs["total"] == 2
    for entry in provs["entry"]:
        get_fhir_model_class("Provenance").model_validate(entry["resource"])
        exts = {x["url"].rsplit("/", 1)[-1] for x in entry["resource"]["extension"]}
        assert "signer-key-id" in exts

    lee = login(client, "ph-lee")  # Hanbit Pharmacy: no consent from patient-1
    resp = client.get(f"/fhir/Observation/{oid}", headers=lee)
    doc = outcome(resp, 403)
    assert doc["issue"][0]["code"] == "forbidden"
    assert doc["issue"][0]["diagnostics"] == "no_consent"
    assert len(resp.headers["x-audit-entry"]) == 64  # the deny entry
    resp = client.get(f"/fhir/Observation?patient={pid}", headers=lee)
    assert outcome(resp, 403)["issue"][0]["diagnostics"] == "no_consent"


def test_consent_lets_the_pharmacist_read_and_revocation_stops_it(
    client: TestClient, demo_chain: InitResult
) -> None:
    hospital_may_write(client, demo_chain)
    kim, p1_headers = login(client, "dr-kim"), login(client, "patient-1")
    p1 = _account(demo_chain, "patient-1")
    pid = client.post("/fhir/Patient", json=patient(p1), headers=kim).json()["id"]
    oid = client.post("/fhir/Observation", json=observation(pid), headers=kim).json()["id"]
    lee = login(client, "ph-lee")
    assert client.get(f"/fhir/Observation/{oid}", headers=lee).status_code == 403

    grant = consent(f"Patient/{pid}", "Organization/hanbit-pharmacy")
    resp = client.post("/fhir/Consent", json=grant, headers=p1_headers)
    assert resp.status_code == 201, resp.text
    cid = resp.json()["id"]
    get_fhir_model_class("Consent").model_validate(resp.json())

    assert client.get(f"/fhir/Observation/{oid}", headers=lee).status_code == 200
    resp = client.get(f"/fhir/Observation/{oid}", headers={**lee, "X-Purpose-Of-Use": "HMARKT"})
    assert outcome(resp, 403)["issue"][0]["diagnostics"] == "wrong_purpose"

    listed = client.get(f"/fhir/Consent?patient={pid}", headers=p1_headers).json()
    assert cid in [e["resource"]["id"] for e in listed["entry"]]

    resp = client.post(f"/fhir/Consent/{cid}/$revoke", headers=p1_headers)
    assert resp.status_code == 200, resp.text
    resp = client.get(f"/fhir/Observation/{oid}", headers=lee)
    assert outcome(resp, 403)["issue"][0]["diagnostics"] == "revoked"

    # the patient's audit trail: BALP AuditEvents whose proofs verify
    bundle = client.get(f"/fhir/AuditEvent?patient={pid}&_count=100", headers=p1_headers).json()
    events = [e["resource"] for e in bundle["entry"]]
    assert len(events) >= 6
    for event in events:
        get_fhir_model_class("AuditEvent").model_validate(event)
    outcomes = {e["outcome"]["code"]["code"] for e in events}
    assert {"0", "4"} <= outcomes
    log = client.get(f"/v1/patients/{p1}/access-log", headers=p1_headers).json()
    for item in log["entries"]:
        proof = item["proof"]
        verify_inclusion(
            bytes.fromhex(proof["leaf_hash"]),
            proof["leaf_index"],
            proof["tree_size"],
            [bytes.fromhex(h) for h in proof["proof"]],
            bytes.fromhex(proof["root"]),
        )
    assert client.get(f"/v1/patients/{p1}/access-log", headers=lee).status_code == 403


def test_erasure_then_410_and_others_cannot_erase(
    client: TestClient, demo_chain: InitResult
) -> None:
    hospital_may_write(client, demo_chain)
    kim, p1_headers = login(client, "dr-kim"), login(client, "patient-1")
    p1 = _account(demo_chain, "patient-1")
    pid = client.post("/fhir/Patient", json=patient(p1), headers=kim).json()["id"]
    oid = client.post("/fhir/Observation", json=observation(pid), headers=kim).json()["id"]
    outcome(client.delete(f"/fhir/Observation/{oid}?basis=data_error", headers=kim), 403)
    resp = client.delete(f"/fhir/Observation/{oid}?reason=mine", headers=p1_headers)
    assert resp.status_code == 200, resp.text
    assert len(resp.headers["x-erasure-transaction"]) == 64
    outcome(client.get(f"/fhir/Observation/{oid}", headers=kim), 410)


def test_bad_input_against_the_real_service(client: TestClient, demo_chain: InitResult) -> None:
    kim = login(client, "dr-kim")
    bad = {"resourceType": "Observation", "status": "final"}
    assert outcome(client.post("/fhir/Observation", json=bad, headers=kim), 422)["issue"]
    outcome(client.get("/fhir/Basic/1", headers=kim), 404)
    outcome(client.get("/fhir/Observation/none", headers=kim), 404)
    outcome(client.get("/fhir/Observation/none"), 401)


def test_fhirpy_creates_reads_and_searches(live_url: str, demo_chain: InitResult) -> None:
    fhirpy = pytest.importorskip("fhirpy")
    hospital_may_write(httpx.Client(base_url=live_url), demo_chain)
    token = httpx.post(f"{live_url}/v1/auth/login", json={"key": "dr-kim", "password": "demo"})
    assert token.status_code == 200, token.text
    fhir = fhirpy.SyncFHIRClient(
        f"{live_url}/fhir", authorization=f"Bearer {token.json()['access_token']}"
    )
    p1 = _account(demo_chain, "patient-1")
    pat = fhir.resource("Patient", **patient(p1))
    pat.save()
    assert pat.id
    obs = fhir.resource("Observation", **observation(pat.id))
    obs.save()
    assert obs.id and obs["meta"]["versionId"] == "1"

    fetched = fhir.reference("Observation", obs.id).to_resource()
    assert fetched["valueQuantity"]["value"] == 72
    assert fetched["subject"]["reference"] == f"Patient/{pat.id}"

    found = fhir.resources("Observation").search(patient=pat.id).fetch()
    assert [r.id for r in found] == [obs.id]
    assert fhir.resources("Observation").search(patient=pat.id).count() == 1
    by_code = fhir.resources("Observation").search(subject=f"Patient/{pat.id}", code="8867-4")
    assert [r.id for r in by_code.fetch()] == [obs.id]

    obs["status"] = "amended"
    obs.save()
    assert fhir.reference("Observation", obs.id).to_resource()["meta"]["versionId"] == "2"

    lee = httpx.post(f"{live_url}/v1/auth/login", json={"key": "ph-lee", "password": "demo"})
    other = fhirpy.SyncFHIRClient(
        f"{live_url}/fhir", authorization=f"Bearer {lee.json()['access_token']}"
    )
    with pytest.raises(fhirpy.base.exceptions.ForbiddenError) as denied:
        other.reference("Observation", obs.id).to_resource()
    assert "no_consent" in str(denied.value)


@pytest.mark.parametrize(
    ("grants", "reason"),
    [
        ([("Organization/hanbit-pharmacy", "permit", "2026-01-01"),
          ("Practitioner/hanbit-pharmacy.ph-lee", "deny", "2026-01-01")], "denied_by_consent"),
        ([("Organization/hanbit-pharmacy", "permit", "2099-01-01")], "not_yet_valid"),
    ],
)  # fmt: skip
def test_deny_provision_and_future_consent_are_403_with_reason(
    client: TestClient, demo_chain: InitResult, grants: list[tuple[str, str, str]], reason: str
) -> None:
    hospital_may_write(client, demo_chain)
    kim, p1_headers = login(client, "dr-kim"), login(client, "patient-1")
    p1 = _account(demo_chain, "patient-1")
    pid = client.post("/fhir/Patient", json=patient(p1), headers=kim).json()["id"]
    oid = client.post("/fhir/Observation", json=observation(pid), headers=kim).json()["id"]
    for grantee, decision, start in grants:
        grant = consent(f"Patient/{pid}", grantee) | {"decision": decision}
        grant["provision"][0]["period"] = {"start": start}
        resp = client.post("/fhir/Consent", json=grant, headers=p1_headers)
        assert resp.status_code == 201, resp.text
    resp = client.get(f"/fhir/Observation/{oid}", headers=login(client, "ph-lee"))
    assert outcome(resp, 403)["issue"][0]["diagnostics"] == reason
    assert len(resp.headers["x-audit-entry"]) == 64


def test_tampered_ciphertext_fails_loudly_and_is_audited(
    client: TestClient, demo_chain: InitResult
) -> None:
    hospital_may_write(client, demo_chain)
    kim, p1_headers = login(client, "dr-kim"), login(client, "patient-1")
    p1 = _account(demo_chain, "patient-1")
    pid = client.post("/fhir/Patient", json=patient(p1), headers=kim).json()["id"]
    blobs = demo_chain.paths.root / "records" / "blobs"
    before = {p for p in blobs.rglob("*") if p.is_file()}
    oid = client.post("/fhir/Observation", json=observation(pid), headers=kim).json()["id"]
    (blob,) = {p for p in blobs.rglob("*") if p.is_file()} - before
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.chmod(0o600)
    blob.write_bytes(bytes(data))
    resp = client.get(f"/fhir/Observation/{oid}", headers=kim)
    doc = outcome(resp, 500)
    assert doc["issue"][0]["code"] == "security"
    log = client.get(f"/v1/patients/{p1}/access-log", headers=p1_headers).json()
    errors = [e["entry"] for e in log["entries"] if e["entry"]["outcome"] == "error"]
    assert any(f"Observation/{oid}/_history/1" in e["resources"] for e in errors)


# -- Binary attachments, streamed --------------------------------------------------------------


def _pdfish(size: int) -> bytes:
    """Deterministic bytes that are not valid UTF-8 (a binary attachment)."""
    block = bytes(range(256))
    return (b"%PDF-1.7\n" + block * (size // 256 + 1))[:size]


def _chunked(data: bytes, size: int = 50_000) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _binary_world(client: TestClient, demo_chain: InitResult) -> tuple[dict[str, str], str, str]:
    hospital_may_write(client, demo_chain)
    kim = login(client, "dr-kim")
    p1 = _account(demo_chain, "patient-1")
    pid = client.post("/fhir/Patient", json=patient(p1), headers=kim).json()["id"]
    return kim, p1, pid


def test_binary_streams_in_and_out_and_matches_its_anchor(
    client: TestClient, demo_chain: InitResult
) -> None:
    import base64

    from carechain.encoding import b64u_decode
    from carechain.fhir import canonical_fhir, keyed_digest

    kim, p1, pid = _binary_world(client, demo_chain)
    data = _pdfish(3_000_001)  # not a multiple of 3: base64 padding is exercised
    resp = client.post(
        "/fhir/Binary",
        content=_chunked(data),
        headers={**kim, "Content-Type": "application/pdf", "X-Security-Context": f"Patient/{pid}"},
    )
    assert resp.status_code == 201, resp.text
    created = resp.json()
    bid = created["id"]
    assert created["contentType"] == "application/pdf" and "data" not in created
    assert created["securityContext"] == {"reference": f"Patient/{pid}"}
    assert resp.headers["location"].endswith(f"/fhir/Binary/{bid}/_history/1")

    raw = client.get(f"/fhir/Binary/{bid}", headers={**kim, "Accept": "application/pdf"})
    assert raw.status_code == 200, raw.text
    assert raw.headers["content-type"] == "application/pdf"
    assert raw.content == data and raw.headers["content-length"] == str(len(data))
    assert len(raw.headers["x-audit-entry"]) == 64
    v1 = client.get(f"/fhir/Binary/{bid}/_history/1", headers={**kim, "Accept": "*/*"})
    assert v1.content == data

    as_json = client.get(f"/fhir/Binary/{bid}", headers={**kim, "Accept": FHIR})
    assert as_json.status_code == 200, as_json.text
    doc = as_json.json()
    assert base64.b64decode(doc["data"]) == data and doc["meta"]["versionId"] == "1"
    # the reader's check: HMAC(served key, canonical JSON) is the anchored digest
    anchor = client.get(f"/v1/records/seoul-general/Binary/{bid}").json()
    key = b64u_decode(as_json.headers["x-record-digest-key"])
    assert keyed_digest(key, canonical_fhir(doc)) == b64u_decode(anchor["versions"][0]["digest"])
    assert as_json.headers["x-anchor-tx"] == anchor["versions"][0]["tx"]
    # negative control: other bytes do not match the anchor
    doc["data"] = base64.b64encode(data[:-1] + b"\x00").decode()
    assert keyed_digest(key, canonical_fhir(doc)) != b64u_decode(anchor["versions"][0]["digest"])

    found = client.get(f"/fhir/Binary?patient={pid}", headers=kim).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [bid]

    p1_headers = login(client, "patient-1")
    log = client.get(f"/v1/patients/{p1}/access-log", headers=p1_headers).json()
    ref = f"Binary/{bid}/_history/1"
    mine = [e["entry"] for e in log["entries"] if ref in e["entry"]["resources"]]
    assert [(e["action"], e["outcome"]) for e in mine].count(("read", "permit")) == 3
    assert ("write", "permit") in [(e["action"], e["outcome"]) for e in mine]


def test_binary_bad_input_and_denials(client: TestClient, demo_chain: InitResult) -> None:
    kim, _, pid = _binary_world(client, demo_chain)
    pdf = {**kim, "Content-Type": "application/pdf"}
    outcome(client.post("/fhir/Binary", content=b"x", headers=pdf), 400)  # no context
    resp = client.post(
        "/fhir/Binary", content=b"x", headers={**pdf, "X-Security-Context": "Patient/nobody"}
    )
    outcome(resp, 422)
    resp = client.post(
        "/fhir/Binary", content=b"x", headers={**kim, "X-Security-Context": f"Patient/{pid}"}
    )
    outcome(resp, 415)  # no content type
    lee = login(client, "ph-lee")  # another organisation, no consent
    resp = client.post(
        "/fhir/Binary", content=b"x",
        headers={**lee, "Content-Type": "application/pdf", "X-Security-Context": f"Patient/{pid}"},
    )  # fmt: skip
    assert "not_hosted" in outcome(resp, 403)["issue"][0]["details"]["coding"][0]["code"]
    ok = client.post(
        "/fhir/Binary", content=b"scan", headers={**pdf, "X-Security-Context": f"Patient/{pid}"}
    )
    assert ok.status_code == 201, ok.text
    bid = ok.json()["id"]
    denied = client.get(f"/fhir/Binary/{bid}", headers={**lee, "Accept": "application/pdf"})
    doc = outcome(denied, 403)
    assert "no_consent" in doc["issue"][0]["diagnostics"]
    assert len(denied.headers["x-audit-entry"]) == 64
    outcome(client.get(f"/fhir/Binary/{bid}/_history/2", headers=kim), 404)
    outcome(client.get("/fhir/Binary/nope", headers=kim), 404)
    outcome(client.get(f"/fhir/Binary/{bid}", headers={"Accept": "application/pdf"}), 401)


def test_binary_over_the_limit_is_413_and_nothing_is_kept(
    app: FastAPI, client: TestClient, demo_chain: InitResult
) -> None:
    kim, p1, pid = _binary_world(client, demo_chain)
    app.state.records.store.max_bytes = 1 << 20
    blobs = demo_chain.paths.root / "records" / "blobs"
    before = {p for p in blobs.rglob("*") if p.is_file()}
    resp = client.post(
        "/fhir/Binary",
        content=_chunked(_pdfish((1 << 20) + 1)),
        headers={**kim, "Content-Type": "image/png", "X-Security-Context": f"Patient/{pid}"},
    )
    outcome(resp, 413)
    assert {p for p in blobs.rglob("*") if p.is_file()} == before
    audit_id = resp.headers["x-audit-entry"]
    log = client.get(f"/v1/patients/{p1}/access-log", headers=login(client, "patient-1")).json()
    (entry,) = [e["entry"] for e in log["entries"] if e["entry"]["tx"] == audit_id]
    assert (entry["outcome"], entry["reason"]) == ("error", "too_large")


def test_tampered_binary_fails_before_any_byte_is_sent(
    client: TestClient, demo_chain: InitResult
) -> None:
    kim, p1, pid = _binary_world(client, demo_chain)
    blobs = demo_chain.paths.root / "records" / "blobs"
    before = {p for p in blobs.rglob("*") if p.is_file()}
    resp = client.post(
        "/fhir/Binary", content=_chunked(_pdfish(400_000)),
        headers={**kim, "Content-Type": "application/pdf", "X-Security-Context": f"Patient/{pid}"},
    )  # fmt: skip
    bid = resp.json()["id"]
    (blob,) = {p for p in blobs.rglob("*") if p.is_file()} - before
    data = bytearray(blob.read_bytes())
    data[-40] ^= 0x01  # in the last chunk: a streamed read would already have sent the first
    blob.chmod(0o600)
    blob.write_bytes(bytes(data))
    resp = client.get(f"/fhir/Binary/{bid}", headers={**kim, "Accept": "application/pdf"})
    doc = outcome(resp, 500)
    assert doc["issue"][0]["code"] == "security"
    log = client.get(f"/v1/patients/{p1}/access-log", headers=login(client, "patient-1")).json()
    errors = [e["entry"] for e in log["entries"] if e["entry"]["outcome"] == "error"]
    assert any(f"Binary/{bid}/_history/1" in e["resources"] for e in errors)


# -- directory resources: Practitioner, Organization --------------------------------------------


def practitioner() -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "identifier": [{"system": "urn:carechain:account", "value": "seoul-general.dr-kim"}],
        "name": [{"family": "Kim", "given": ["Minji"], "prefix": ["Dr."]}],
        "qualification": [{"code": {"text": "MD"}}],
    }


def test_directory_resources_are_stored_anchored_and_not_audited(
    client: TestClient, demo_chain: InitResult
) -> None:
    kim, lee = login(client, "dr-kim"), login(client, "ph-lee")
    resp = client.post("/fhir/Practitioner", json=practitioner(), headers=kim)
    assert resp.status_code == 201, resp.text
    assert "x-audit-entry" not in resp.headers  # not PHI: no audit entry
    prid = resp.json()["id"]
    anchor = client.get(f"/v1/records/seoul-general/Practitioner/{prid}").json()
    assert "patient" not in anchor and "index" not in anchor["versions"][0]

    got = client.get(f"/fhir/Practitioner/{prid}", headers=lee)  # another organisation reads
    assert got.status_code == 200, got.text
    assert got.json()["name"][0]["family"] == "Kim" and "x-audit-entry" not in got.headers
    assert got.headers["x-anchor-tx"] == anchor["versions"][0]["tx"]
    found = client.get(f"/fhir/Practitioner?_id={prid}", headers=lee).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [prid]

    changed = {**got.json(), "name": [{"family": "Kim", "given": ["Min-ji"]}]}
    resp = client.put(f"/fhir/Practitioner/{prid}", json=changed,
                      headers={**kim, "If-Match": 'W/"1"'})  # fmt: skip
    assert resp.status_code == 200 and resp.headers["etag"] == 'W/"2"', resp.text
    outcome(client.put(f"/fhir/Practitioner/{prid}", json=changed,
                       headers={**kim, "If-Match": 'W/"1"'}), 412)  # fmt: skip

    org = {"resourceType": "Organization", "name": "Seoul General Hospital", "active": True}
    resp = client.post("/fhir/Organization", json=org, headers=login(client, "seoul-general-admin"))
    assert resp.status_code == 201, resp.text

    outcome(client.post("/fhir/Practitioner", json=practitioner(), headers=lee), 403)
    outcome(client.post("/fhir/Practitioner", json=practitioner(),
                        headers=login(client, "patient-1")), 403)  # fmt: skip
    outcome(client.get(f"/fhir/Practitioner/{prid}"), 401)
    outcome(client.delete(f"/fhir/Practitioner/{prid}?basis=data_error&reason=x", headers=kim), 403)
    erased = client.delete(f"/fhir/Practitioner/{prid}?basis=data_error&reason=duplicate",
                           headers=login(client, "seoul-general-admin"))  # fmt: skip
    assert erased.status_code == 200, erased.text
    outcome(client.get(f"/fhir/Practitioner/{prid}", headers=lee), 410)
