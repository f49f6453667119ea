"""Acceptance: the official FHIR examples round-trip through the real ``/fhir`` REST facade.

``create_app(demo_node, data_dir=…)`` builds the record service on the demo chain; patient-1
signs in custodially and stores its own records. Every official R5 example of Patient,
Observation and Encounter in ``tests/vectors/fhir/r5/`` (and the R4 ``Condition-example``: the
R5 set has no Condition, and that file validates as R5) is created, then read back: the read
resource, without ``id`` and ``meta.versionId``/``meta.lastUpdated``, has the same canonical
content (:func:`carechain.fhir.canonical_fhir`) as the example without ``id``. The only edits
to an example: a Patient gets the identifier naming its ledger account, and the others'
subject/patient reference is rewritten to the Patient the service created (the service assigns
every id, so ``Patient/example`` would dangle). The service accepts all 37 of them: none is
refused (a test pins the set, so a new example, or a new refusal, is noticed).

The Consent examples go through ``POST /fhir/Consent`` (a grant) and
``GET /fhir/Consent?patient=``: the ones that map to a grant come back as an equivalent grant;
the others are refused at the location the Consent adapter documents.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from carechain.api import create_app
from carechain.fhir import canonical_fhir, consent_to_grant
from carechain.fhir.canonical import SUBJECT_FIELDS
from carechain.node.chaindir import InitResult
from carechain.node.node import Node

pytest.importorskip("carechain.node.records", reason="the record service is not installed")

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "fhir"
R5 = VECTORS / "r5"
R4 = VECTORS / "r4"
FHIR = "application/fhir+json"
ACCOUNT_SYSTEM = "urn:carechain:account"

RECORD_FILES = sorted(
    [p for t in ("Patient", "Observation", "Encounter") for p in R5.glob(f"{t}-*.json")]
    + [R4 / "Condition-example.json"]
)


def load(path: Path) -> dict[str, Any]:
    value = json.loads(path.read_bytes())
    assert isinstance(value, dict)
    return value


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
    return {"Authorization": f"Bearer {resp.json()['access_token']}", "Content-Type": FHIR}


def named(patient: Mapping[str, Any], account: str) -> dict[str, Any]:
    """A Patient (copy) with the identifier naming its ledger account added."""
    out = copy.deepcopy(dict(patient))
    out["identifier"] = [*out.get("identifier", []), {"system": ACCOUNT_SYSTEM, "value": account}]
    return out


def about(resource: Mapping[str, Any], pid: str) -> dict[str, Any]:
    """A resource (copy) whose subject/patient reference is rewritten to ``Patient/<pid>``."""
    out = copy.deepcopy(dict(resource))
    field = SUBJECT_FIELDS[out["resourceType"]]
    out[field] = {**(out.get(field) or {}), "reference": f"Patient/{pid}"}
    return out


def without(resource: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    out = copy.deepcopy(dict(resource))
    for key in keys:
        out.pop(key, None)
    return out


def content(resource: Mapping[str, Any]) -> bytes:
    """Canonical bytes without ``id`` (``canonical_fhir`` drops versionId/lastUpdated)."""
    return canonical_fhir(without(resource, "id"))


def create(client: Any, headers: dict[str, str], resource: Mapping[str, Any]) -> Any:
    return client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=headers)


def prepare(client: Any, headers: dict[str, str], account: str, path: Path) -> dict[str, Any]:
    """The example as sent: a Patient names the account; others reference a created Patient."""
    example = load(path)
    if example["resourceType"] == "Patient":
        return named(example, account)
    resp = create(client, headers, named(load(R5 / "Patient-example.json"), account))
    assert resp.status_code == 201, resp.text
    return about(example, resp.json()["id"])


@pytest.mark.parametrize("path", RECORD_FILES, ids=lambda p: p.name)
def test_example_round_trips_through_the_rest_facade(
    path: Path, client: TestClient, demo_chain: InitResult
) -> None:
    p1 = _account(demo_chain, "patient-1")
    me = login(client, "patient-1")
    example = load(path)
    rtype = example["resourceType"]
    sent = prepare(client, me, p1, path)
    # the only edit: the account identifier (Patient) or the subject/patient reference (others)
    edited = "identifier" if rtype == "Patient" else SUBJECT_FIELDS[rtype]
    assert without(sent, edited) == without(example, edited)

    resp = create(client, me, sent)
    assert resp.status_code == 201, resp.text
    created = resp.json()
    rid = created["id"]
    assert len(rid) == 32 and rid != example.get("id")  # the server's opaque id
    assert resp.headers["Location"].endswith(f"/{rtype}/{rid}/_history/1")
    assert content(created) == content(sent)

    resp = client.get(f"/fhir/{rtype}/{rid}", headers=me)
    assert resp.status_code == 200, resp.text
    got = resp.json()
    assert got["id"] == rid and got["meta"]["versionId"] == "1"
    assert content(got) == content(sent)


def test_the_record_examples_are_the_37_expected() -> None:
    """12 Patient, 12 Observation, 12 Encounter (R5) and the R4 Condition: all accepted."""
    kinds = [p.name.split("-", 1)[0] for p in RECORD_FILES]
    assert {k: kinds.count(k) for k in set(kinds)} == {
        "Patient": 12, "Observation": 12, "Encounter": 12, "Condition": 1,
    }  # fmt: skip


def state_scan(pairs: Iterable[tuple[str, bytes]], needle: str) -> list[str]:
    """The keys of the state ``(key, value)`` pairs whose value mentions ``needle``."""
    return [k for k, v in pairs if needle.encode() in v]


def test_a_client_id_is_ignored_on_create_and_never_reaches_the_chain(
    client: TestClient, demo_chain: InitResult, demo_node: Node
) -> None:
    p1 = _account(demo_chain, "patient-1")
    me = login(client, "patient-1")
    phi = "john-smith-1970"
    pat = named(load(R5 / "Patient-example.json"), p1)
    pat["id"] = phi
    resp = create(client, me, pat)
    assert resp.status_code == 201, resp.text
    pid = resp.json()["id"]
    assert pid != phi and len(pid) == 32 and int(pid, 16) >= 0
    assert resp.headers["Location"].endswith(f"/Patient/{pid}/_history/1")
    obs = about(load(R5 / "Observation-blood-pressure.json"), pid)
    obs["id"] = f"{phi}-bp"
    resp = create(client, me, obs)
    assert resp.status_code == 201, resp.text
    oid = resp.json()["id"]
    assert oid != obs["id"] and len(oid) == 32
    assert client.get(f"/fhir/Patient/{phi}", headers=me).status_code == 404
    # update semantics unchanged: no update-as-create on an unknown id
    resp = client.put(f"/fhir/Patient/{phi}", json=pat, headers=me)
    assert resp.status_code == 404, resp.text
    store = demo_node.store
    for rtype, rid in (("Patient", pid), ("Observation", oid)):
        raw = store.find_state(f"rec/seoul-general/{rtype}/{rid}")
        assert raw is not None
        rec = json.loads(raw)
        assert rec["id"] == rid and all(phi not in v["url"] for v in rec["versions"])
    assert store.find_state(f"rec/seoul-general/Patient/{phi}") is None
    records = list(store.iter_state("rec/"))
    assert len(records) == 2 and state_scan(records, phi) == []
    # negative controls: the scan finds an id that is on chain, and a state that kept the
    # client's id in the anchor (the old behaviour) would be caught
    assert state_scan(records, pid) == [f"rec/seoul-general/Patient/{pid}"]
    old = dict(json.loads(dict(records)[f"rec/seoul-general/Patient/{pid}"]))
    old["id"] = phi
    old["versions"] = [{**v, "url": v["url"].replace(pid, phi)} for v in old["versions"]]
    leaky = [*records, (f"rec/seoul-general/Patient/{phi}", json.dumps(old).encode())]
    assert state_scan(leaky, phi) == [f"rec/seoul-general/Patient/{phi}"]


# --- Consent: POST /fhir/Consent (a grant), GET /fhir/Consent?patient= ------------------------

CONSENT_REFUSED: dict[str, str] = {
    "Consent-consent-example-CDA.json": "Consent.provision[0].provision",  # nested exception
    "Consent-consent-example-Emergency.json": "Consent.provision[0].provision",  # nested
    "Consent-consent-example-basic.json": "Consent.provision[0].actor",  # nobody named
    "Consent-consent-example-grantor.json": "Consent.grantor[0]",  # a representative grants
    "Consent-consent-example-notThis.json": "Consent.provision[0].data[0].meaning",  # related
    "Consent-consent-example-notTime.json": "Consent.provision[0].actor",  # nobody named
    "Consent-consent-example-pkb.json": "Consent.provision[0].provision",  # nested
    "Consent-consent-example-smartonfhir.json": "Consent.grantor[0]",  # RelatedPerson grants
}
"""Consent example → the location of its refusal (as the Consent adapter's tests document)."""

CONSENT_MAPPED = sorted(p.name for p in R5.glob("Consent-*.json") if p.name not in CONSENT_REFUSED)


def on_chain(consent: Any, demo_chain: InitResult, pid: str) -> Any:
    """The example with its references moved onto the demo chain (the example's own parties,
    its subject, ``Organization/f001``, ``Practitioner/f204``, are not on it): the subject
    (wherever referenced) becomes the created Patient."""
    refs = {
        consent["subject"]["reference"]: f"Patient/{pid}",
        "Organization/f001": "Organization/seoul-general",
        "Practitioner/f204": f"Practitioner/{_account(demo_chain, 'dr-kim')}",
    }

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: refs.get(v, v) if k == "reference" and isinstance(v, str) else walk(v)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(consent)


def _resolve(reference: str) -> Mapping[str, str]:
    kind, ident = reference.split("/")[-2:]
    return {"org": ident} if kind == "Organization" else {"account": ident}


def test_consent_examples_are_all_classified() -> None:
    assert set(CONSENT_MAPPED) | set(CONSENT_REFUSED) == {p.name for p in R5.glob("Consent-*")}
    assert len(CONSENT_MAPPED) == 4


@pytest.mark.parametrize("name", CONSENT_MAPPED)
def test_mappable_consent_round_trips_to_an_equivalent_grant(
    name: str, client: TestClient, demo_chain: InitResult
) -> None:
    p1 = _account(demo_chain, "patient-1")
    me = login(client, "patient-1")
    resp = create(client, me, named(load(R5 / "Patient-example.json"), p1))
    assert resp.status_code == 201, resp.text
    pid = resp.json()["id"]
    sent = on_chain(load(R5 / name), demo_chain, pid)
    want = consent_to_grant(sent, resolve_actor=_resolve)

    resp = client.post("/fhir/Consent", json=sent, headers=me)
    assert resp.status_code == 201, resp.text
    granted = resp.json()
    assert resp.headers["Location"].endswith(f"/Consent/{granted['id']}")
    assert consent_to_grant(granted, resolve_actor=_resolve) == want

    for patient in (p1, pid):
        resp = client.get("/fhir/Consent", params={"patient": patient}, headers=me)
        assert resp.status_code == 200, resp.text
        found = [e["resource"] for e in resp.json().get("entry", [])]
        assert [c["id"] for c in found] == [granted["id"]]
        assert consent_to_grant(found[0], resolve_actor=_resolve) == want


@pytest.mark.parametrize("name", sorted(CONSENT_REFUSED))
def test_unmappable_consent_is_refused(
    name: str, client: TestClient, demo_chain: InitResult
) -> None:
    p1 = _account(demo_chain, "patient-1")
    me = login(client, "patient-1")
    resp = create(client, me, named(load(R5 / "Patient-example.json"), p1))
    assert resp.status_code == 201, resp.text
    sent = on_chain(load(R5 / name), demo_chain, resp.json()["id"])
    resp = client.post("/fhir/Consent", json=sent, headers=me)
    assert resp.status_code == 422, resp.text
    issues = resp.json()["issue"]
    assert issues[0]["expression"] == [CONSENT_REFUSED[name]], issues
    resp = client.get("/fhir/Consent", params={"patient": p1}, headers=me)
    assert resp.status_code == 200 and not resp.json().get("entry"), resp.text
