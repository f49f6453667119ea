"""The FHIR facade (``/fhir``) against an in-memory fake of the RecordService Protocol.

Covers routing, status codes, OperationOutcome errors, headers (Location, ETag,
X-Audit-Entry), bundles and paging, custodial sign-in and the issue's "Bad input" list as far
as the facade is responsible for it (the decisions themselves are the service's; here the fake
raises each reason and the facade must carry it through).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from fhir.resources import get_fhir_model_class

from carechain.api import create_app
from carechain.api.auth import TokenInfo
from carechain.api.fhir.search import RECORD_TYPES
from carechain.crypto.signatures import PrivateKey
from carechain.errors import (
    AuthorizationError,
    ConflictError,
    GoneError,
    NotFoundError,
    VerificationError,
)
from carechain.fhir import consent_to_grant, parse_resource
from carechain.fhir._time import ms_to_instant
from carechain.node.chaindir import InitResult
from carechain.node.node import Node
from carechain.node.records_api import Access, Actor, AuditView, SearchPage, StoredVersion

FHIR = "application/fhir+json"
PATIENT_SYSTEM = "urn:carechain:account"
T0 = 1_780_000_000_000  # block time of the first fake anchor (ms)


def _hex(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


# --- the fake ----------------------------------------------------------------------------


class FakeRecords:
    """In-memory RecordService: one audit entry per PHI call (permit or deny), versions,
    erasure, grants, break-glass and the access log. Access rule: the patient, the author's
    organisation, or a grantee of an active grant; ``force_deny`` makes every PHI access
    fail with that reason (to test how the facade reports it)."""

    def __init__(self, patient_accounts: Sequence[str]) -> None:
        self.patients = set(patient_accounts)
        self.versions: dict[tuple[str, str], list[StoredVersion]] = {}
        self.erased: set[tuple[str, str]] = set()
        self.tampered: set[tuple[str, str]] = set()
        self.grants: list[dict[str, Any]] = []
        self.sessions: list[dict[str, Any]] = []
        self.audit: list[dict[str, Any]] = []
        self.force_deny: str | None = None
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._n = itertools.count(1)
        self.patient_ids: dict[str, str] = {}  # FHIR Patient id → account

    # -- helpers
    def _audit(
        self,
        actor: Actor,
        action: str,
        patient: str | None,
        refs: list[str],
        outcome: str,
        purpose: str,
        reason: str | None = None,
    ) -> str:
        n = next(self._n)
        tx = _hex(n)
        self.audit.append(
            {
                "tx": tx,
                "height": n,
                "time": T0 + n,
                "actor": actor.account,
                "org": actor.org or "seoul-general",
                "role": actor.role,
                "patient": patient,
                "action": action,
                "resources": refs,
                "purpose": purpose,
                "outcome": outcome,
                "reason": reason,
                "basis": "self",
            }
        )
        return tx

    def _deny(
        self,
        actor: Actor,
        action: str,
        patient: str | None,
        refs: list[str],
        purpose: str,
        reason: str,
        exc: type[Exception] = AuthorizationError,
    ) -> Exception:
        tx = self._audit(actor, action, patient, refs, "deny", purpose, reason)
        err = exc(f"{reason}: {actor.account} may not {action} {refs}", code=reason)  # type: ignore[call-arg]
        err.audit_id = tx  # type: ignore[attr-defined]
        return err

    def _patient_of(self, resource: Mapping[str, Any]) -> str:
        if resource["resourceType"] == "Patient":
            for ident in resource.get("identifier", ()):
                if ident.get("system") == PATIENT_SYSTEM:
                    return str(ident["value"])
            return "unknown"
        ref = (resource.get("subject") or resource.get("patient") or {}).get("reference", "")
        pid = ref.split("/")[-1]
        return self.patient_ids.get(pid, pid)

    def _allowed(self, actor: Actor, v: StoredVersion, action: str, purpose: str) -> str | None:
        """None if permitted, else the deny reason."""
        if self.force_deny:
            return self.force_deny
        if actor.account == v.patient or actor.org == v.org:
            return None
        if purpose not in ("TREAT", "ETREAT"):
            return "wrong_purpose"
        for g in self.grants:
            grantee = g["grantee"]
            applies = g["patient"] == v.patient and g["status"] == "active"
            names = grantee.get("account") == actor.account or grantee.get("org") == actor.org
            if applies and action in g["actions"] and names:
                return None
        return "no_consent"

    def _latest(
        self, actor: Actor, rtype: str, rid: str, action: str, purpose: str
    ) -> list[StoredVersion]:
        ref = f"{rtype}/{rid}"
        if (rtype, rid) in self.erased:
            raise self._deny(actor, action, None, [ref], purpose, "gone", GoneError)
        versions = self.versions.get((rtype, rid))
        if not versions:
            raise self._deny(actor, action, None, [ref], purpose, "not_found", NotFoundError)
        reason = self._allowed(
            actor, versions[-1], "read" if action != "update" else "write", purpose
        )
        if reason:
            raise self._deny(actor, action, versions[-1].patient, [ref], purpose, reason)
        if (rtype, rid) in self.tampered:
            tx = self._audit(
                actor, action, versions[-1].patient, [ref], "error", purpose, "tampered"
            )
            err = VerificationError(f"{ref}: stored content does not match its anchor digest")
            err.audit_id = tx  # type: ignore[attr-defined]
            raise err
        return versions

    def _store(
        self, actor: Actor, resource: Mapping[str, Any], rid: str, version: int
    ) -> StoredVersion:
        n = next(self._n)
        body = copy.deepcopy(dict(resource))
        body["id"] = rid
        body["meta"] = {
            **body.get("meta", {}),
            "versionId": str(version),
            "lastUpdated": ms_to_instant(T0 + n),
        }
        patient = self._patient_of(body)
        if body["resourceType"] == "Patient":
            self.patient_ids[rid] = patient
        v = StoredVersion(
            org=actor.org or "seoul-general",
            type=body["resourceType"],
            id=rid,
            version=version,
            resource=body,
            patient=patient,
            author=actor.account,
            anchor_tx=_hex(10_000 + n),
            height=n,
            time=T0 + n,
            digest=_hex(20_000 + n),
        )
        self.versions.setdefault((v.type, rid), []).append(v)
        return v

    # -- the Protocol
    def actor(self, account: str, signer: PrivateKey | None = None) -> Actor:
        if account in self.patients:
            return Actor(account=account, kind="patient", signer=signer)
        org, _, name = account.partition(".")
        if not name:
            raise NotFoundError(f"no account {account}")
        role = {"dr-kim": "practitioner", "ph-lee": "pharmacist", "admin": "admin"}.get(name)
        caps = ("emergency",) if name == "dr-kim" else ()
        kind = "admin" if name == "admin" else "member"
        return Actor(
            account=account, kind=kind, org=org, role=role, capabilities=caps, signer=signer
        )

    def create(
        self, actor: Actor, resource: Mapping[str, Any], *, purpose: str = "TREAT"
    ) -> Access[StoredVersion]:
        self.calls.append(("create", {"purpose": purpose}))
        if self.force_deny:
            raise self._deny(
                actor, "create", None, [resource["resourceType"]], purpose, self.force_deny
            )
        rid = f"r{next(self._n)}"
        v = self._store(actor, resource, rid, 1)
        tx = self._audit(actor, "create", v.patient, [f"{v.type}/{rid}"], "permit", purpose)
        return Access(value=v, audit_id=tx, basis={"kind": "author"})

    def update(
        self,
        actor: Actor,
        rtype: str,
        rid: str,
        resource: Mapping[str, Any],
        *,
        if_match: int | None = None,
        purpose: str = "TREAT",
    ) -> Access[StoredVersion]:
        versions = self._latest(actor, rtype, rid, "update", purpose)
        if if_match is not None and if_match != versions[-1].version:
            raise self._deny(
                actor,
                "update",
                versions[-1].patient,
                [f"{rtype}/{rid}"],
                purpose,
                "version_conflict",
                ConflictError,
            )
        v = self._store(actor, resource, rid, versions[-1].version + 1)
        tx = self._audit(actor, "update", v.patient, [f"{rtype}/{rid}"], "permit", purpose)
        return Access(value=v, audit_id=tx, basis={"kind": "author"})

    def read(
        self, actor: Actor, rtype: str, rid: str, *, purpose: str = "TREAT"
    ) -> Access[StoredVersion]:
        self.calls.append(("read", {"purpose": purpose}))
        v = self._latest(actor, rtype, rid, "read", purpose)[-1]
        tx = self._audit(actor, "read", v.patient, [f"{rtype}/{rid}"], "permit", purpose)
        return Access(value=v, audit_id=tx, basis={"kind": "self"})

    def vread(
        self, actor: Actor, rtype: str, rid: str, version: int, *, purpose: str = "TREAT"
    ) -> Access[StoredVersion]:
        versions = self._latest(actor, rtype, rid, "vread", purpose)
        if not 1 <= version <= len(versions):
            raise NotFoundError(f"{rtype}/{rid} has no version {version}")
        tx = self._audit(
            actor,
            "vread",
            versions[0].patient,
            [f"{rtype}/{rid}/_history/{version}"],
            "permit",
            purpose,
        )
        return Access(value=versions[version - 1], audit_id=tx, basis={"kind": "self"})

    def history(
        self, actor: Actor, rtype: str, rid: str, *, purpose: str = "TREAT"
    ) -> Access[list[StoredVersion]]:
        versions = self._latest(actor, rtype, rid, "read", purpose)
        tx = self._audit(actor, "read", versions[0].patient, [f"{rtype}/{rid}"], "permit", purpose)
        return Access(value=list(reversed(versions)), audit_id=tx, basis={"kind": "self"})

    def search(
        self,
        actor: Actor,
        rtype: str,
        *,
        patient: str | None = None,
        ids: Sequence[str] = (),
        last_updated: tuple[int | None, int | None] = (None, None),
        code: str | None = None,
        count: int = 20,
        offset: int = 0,
        purpose: str = "TREAT",
    ) -> Access[SearchPage]:
        self.calls.append(
            (
                "search",
                {
                    "patient": patient,
                    "ids": tuple(ids),
                    "last_updated": last_updated,
                    "code": code,
                    "count": count,
                    "offset": offset,
                },
            )
        )
        matches = []
        for (t, rid), versions in self.versions.items():
            v = versions[-1]
            if t != rtype or (t, rid) in self.erased or self._allowed(actor, v, "read", purpose):
                continue
            if patient is not None and self.patient_ids.get(patient, patient) != v.patient:
                continue
            if ids and rid not in ids:
                continue
            lo, hi = last_updated
            if (lo is not None and v.time < lo) or (hi is not None and v.time > hi):
                continue
            if code is not None:
                codes = {c.get("code") for c in v.resource.get("code", {}).get("coding", ())}
                codes |= {
                    f"{c.get('system')}|{c.get('code')}"
                    for c in v.resource.get("code", {}).get("coding", ())
                }
                if code not in codes:
                    continue
            matches.append(v)
        matches.sort(key=lambda v: -v.time)
        tx = self._audit(actor, "search", patient, [rtype], "permit", purpose)
        page = SearchPage(items=matches[offset : offset + count], total=len(matches), offset=offset)
        return Access(value=page, audit_id=tx, basis={"kind": "search"})

    def erase(self, actor: Actor, rtype: str, rid: str, *, reason: str, basis: str) -> Access[str]:
        self.calls.append(("erase", {"reason": reason, "basis": basis}))
        versions = self._latest(actor, rtype, rid, "erase", "TREAT") if not self.force_deny else []
        v = versions[-1]
        if actor.account != v.patient and not (actor.kind == "admin" and actor.org == v.org):
            raise self._deny(actor, "erase", v.patient, [f"{rtype}/{rid}"], "TREAT", "not_patient")
        if actor.signer is None:
            raise AuthorizationError("sign in custodially", code="signature_required")
        self.erased.add((rtype, rid))
        tx = self._audit(actor, "erase", v.patient, [f"{rtype}/{rid}"], "permit", "TREAT")
        return Access(value=_hex(99_000 + len(self.erased)), audit_id=tx, basis={"kind": "self"})

    def grant(self, actor: Actor, consent: Mapping[str, Any]) -> Access[Mapping[str, Any]]:
        if actor.kind != "patient":
            raise AuthorizationError("only the patient grants consent", code="not_patient")
        if actor.signer is None:
            raise AuthorizationError("sign in custodially", code="signature_required")

        def resolve(ref: str) -> Mapping[str, str]:
            kind, _, ident = ref.partition("/")
            return {"account": ident} if kind == "Practitioner" else {"org": ident}

        args = consent_to_grant(consent, resolve_actor=resolve)
        record = {
            **args,
            "id": _hex(50_000 + len(self.grants)),
            "patient": actor.account,
            "status": "active",
            "granted": T0,
        }
        self.grants.append(record)
        tx = self._audit(
            actor, "create", actor.account, [f"Consent/{record['id']}"], "permit", "TREAT"
        )
        return Access(value=record, audit_id=tx, basis={"kind": "self"})

    def revoke(self, actor: Actor, consent_id: str) -> Access[str]:
        for g in self.grants:
            if g["id"] == consent_id:
                if g["patient"] != actor.account:
                    raise AuthorizationError("not your consent", code="not_patient")
                g["status"] = "revoked"
                tx = self._audit(
                    actor, "update", actor.account, [f"Consent/{consent_id}"], "permit", "TREAT"
                )
                return Access(value=_hex(70_000), audit_id=tx, basis={"kind": "self"})
        raise NotFoundError(f"no consent {consent_id}")

    def consents(self, actor: Actor, patient: str) -> list[Mapping[str, Any]]:
        account = self.patient_ids.get(patient, patient)
        if actor.account != account:
            raise AuthorizationError("only the patient lists their consents", code="not_patient")
        return [g for g in self.grants if g["patient"] == account]

    def break_glass(self, actor: Actor, patient: str, reason: str) -> Access[Mapping[str, Any]]:
        if "emergency" not in actor.capabilities:
            raise self._deny(actor, "read", patient, [], "ETREAT", "not_emergency")
        session = {
            "session": _hex(80_000 + len(self.sessions)),
            "patient": patient,
            "reason": reason,
            "expires": T0 + 4 * 3600_000,
        }
        self.sessions.append(session)
        tx = self._audit(actor, "read", patient, [], "permit", "ETREAT")
        return Access(value=session, audit_id=tx, basis={"kind": "break_glass"})

    def access_log(self, actor: Actor, patient: str) -> list[AuditView]:
        account = self.patient_ids.get(patient, patient)
        if actor.account != account:
            raise self._deny(actor, "read", account, [], "TREAT", "not_patient")
        mine = [e for e in self.audit if e["patient"] in (account, patient)]
        self._audit(actor, "read", account, [], "permit", "TREAT")
        return [
            AuditView(
                entry=e,
                proof={
                    "leaf_index": e["height"],
                    "tree_size": 10_000,
                    "proof": [_hex(1), _hex(2)],
                    "root": _hex(3),
                },
            )
            for e in mine
        ]


# --- fixtures ----------------------------------------------------------------------------


def _account(demo_chain: InitResult, name: str) -> str:
    return next(a.account for a in demo_chain.accounts if a.name == name)


@pytest.fixture
def fake(demo_chain: InitResult) -> FakeRecords:
    return FakeRecords([a.account for a in demo_chain.accounts if a.name.startswith("patient-")])


@pytest.fixture
def app(demo_node: Node, demo_chain: InitResult, fake: FakeRecords) -> FastAPI:
    app = create_app(demo_node)  # no data_dir: no real record service; the fake stands in
    app.state.data_dir = demo_chain.paths.root  # the keyring for custodial sign-in
    app.state.records = fake
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def login(client: TestClient, key: str, password: str = "demo") -> dict[str, str]:
    resp = client.post("/v1/auth/login", json={"key": key, "password": password})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


@pytest.fixture
def kim(client: TestClient) -> dict[str, str]:
    return login(client, "dr-kim")


@pytest.fixture
def lee(client: TestClient) -> dict[str, str]:
    return login(client, "ph-lee")


@pytest.fixture
def patient1(client: TestClient) -> dict[str, str]:
    return login(client, "patient-1")


def patient_resource(account: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": PATIENT_SYSTEM, "value": account}],
        "name": [{"family": "Doe", "given": ["Jane"]}],
        "gender": "female",
        "birthDate": "1980-04-01",
    }


def observation(patient_id: str, code: str = "8867-4", value: float = 72) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueQuantity": {"value": value, "unit": "/min"},
    }


def post(client: TestClient, headers: dict[str, str], resource: dict[str, Any], **kw: Any) -> Any:
    return client.post(
        f"/fhir/{resource['resourceType']}",
        json=resource,
        headers={**headers, "Content-Type": FHIR, **kw.pop("extra", {})},
    )


def assert_outcome(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(FHIR)
    doc: dict[str, Any] = resp.json()
    assert doc["resourceType"] == "OperationOutcome"
    get_fhir_model_class("OperationOutcome").model_validate(doc)
    if code is not None:
        assert doc["issue"][0]["code"] == code, doc
    return doc


@pytest.fixture
def seeded(client: TestClient, kim: dict[str, str], demo_chain: InitResult) -> dict[str, str]:
    """A Patient (patient-1) and an Observation by dr-kim; returns their ids."""
    resp = post(client, kim, patient_resource(_account(demo_chain, "patient-1")))
    assert resp.status_code == 201, resp.text
    pid = resp.json()["id"]
    resp = post(client, kim, observation(pid))
    assert resp.status_code == 201, resp.text
    return {"patient": pid, "observation": resp.json()["id"]}


# --- capability --------------------------------------------------------------------------


def test_metadata_lists_exactly_what_is_implemented(client: TestClient) -> None:
    resp = client.get("/fhir/metadata")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith(FHIR)
    cap = resp.json()
    get_fhir_model_class("CapabilityStatement").model_validate(cap)
    assert cap["fhirVersion"] == "5.0.0"
    rest = cap["rest"][0]
    types = {r["type"]: r for r in rest["resource"]}
    assert set(types) == set(RECORD_TYPES) | {"Consent", "AuditEvent"}
    obs = types["Observation"]
    assert {i["code"] for i in obs["interaction"]} == {
        "read",
        "vread",
        "update",
        "delete",
        "history-instance",
        "create",
        "search-type",
    }
    assert {p["name"] for p in obs["searchParam"]} == {
        "_id",
        "_lastUpdated",
        "_count",
        "_offset",
        "patient",
        "subject",
        "code",
    }
    assert "code" not in {p["name"] for p in types["Patient"]["searchParam"]}
    assert {p["name"] for p in types["Provenance"]["searchParam"]} == {
        "target",
        "_count",
        "_offset",
    }
    assert {"Binary", "Practitioner", "Organization"} <= set(types)
    assert "X-Security-Context" in types["Binary"]["documentation"]
    assert "patient" in {p["name"] for p in types["Binary"]["searchParam"]}
    assert "patient" not in {p["name"] for p in types["Practitioner"]["searchParam"]}
    assert "not audited" in types["Organization"]["documentation"]
    assert [o["name"] for o in rest["operation"]] == ["break-glass"]


# --- custodial sign-in -------------------------------------------------------------------


def test_login_form_and_json_and_whoami(client: TestClient, demo_chain: InitResult) -> None:
    resp = client.post("/v1/auth/login", data={"key": "dr-kim", "password": "demo"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "user/*.read user/*.write"
    assert body["account"] == "seoul-general.dr-kim"
    assert 1700 <= body["expires_in"] <= 1800
    assert resp.headers["cache-control"] == "no-store"
    who = client.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert who.json()["account"] == "seoul-general.dr-kim"
    patient = login(client, "patient-1")
    who = client.get("/v1/auth/whoami", headers=patient)
    assert who.json()["account"] == _account(demo_chain, "patient-1")


def test_login_session_holds_the_decrypted_key(client: TestClient, app: FastAPI) -> None:
    token = login(client, "dr-kim")["Authorization"].split()[1]
    info = app.state.auth.lookup(token)
    assert isinstance(info.signer, PrivateKey)
    assert info.signer.kid == info.kid
    assert "private" not in repr(info)


@pytest.mark.parametrize(
    "form",
    [
        {"key": "dr-kim", "password": "wrong"},
        {"key": "no-such-key", "password": "demo"},
        {"key": "../etc/passwd", "password": "demo"},
    ],
)
def test_login_refused_is_401_problem(client: TestClient, form: dict[str, str]) -> None:
    resp = client.post("/v1/auth/login", json=form)
    assert resp.status_code == 401
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["code"] == "invalid_credentials"
    assert resp.headers["www-authenticate"].startswith("Bearer")


def test_login_needs_key_and_password(client: TestClient) -> None:
    assert client.post("/v1/auth/login", json={"key": "dr-kim"}).status_code == 400
    resp = client.post("/v1/auth/login", content=b"x", headers={"Content-Type": "text/plain"})
    assert resp.status_code == 400


def test_logout_drops_the_session(client: TestClient, kim: dict[str, str]) -> None:
    assert client.get("/v1/auth/whoami", headers=kim).status_code == 200
    assert client.post("/v1/auth/logout", headers=kim).status_code == 204
    assert client.get("/v1/auth/whoami", headers=kim).status_code == 401
    assert_outcome(client.get("/fhir/Patient", headers=kim), 401, "login")
    assert client.post("/v1/auth/logout", headers=kim).status_code == 401


# --- 401 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", [None, "Bearer", "Bearer nope", "Basic Zm9vOmJhcg=="])
def test_no_or_bad_token_is_401_operation_outcome(client: TestClient, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    resp = client.get("/fhir/Patient/x", headers=headers)
    assert_outcome(resp, 401, "login")
    assert resp.headers["www-authenticate"].startswith("Bearer")


def test_expired_token_is_401(client: TestClient, app: FastAPI, kim: dict[str, str]) -> None:
    auth = app.state.auth
    real = auth.clock
    auth.clock = lambda: real() + 31 * 60
    try:
        assert_outcome(client.get("/fhir/Patient", headers=kim), 401, "login")
    finally:
        auth.clock = real


def test_read_only_token_cannot_write(
    client: TestClient, app: FastAPI, demo_chain: InitResult
) -> None:
    auth = app.state.auth
    auth._tokens["ro"] = TokenInfo(
        account="seoul-general.dr-kim",
        kid="0" * 32,
        scopes=("system/*.read",),
        expires_at=auth.clock() + 60,
    )
    headers = {"Authorization": "Bearer ro"}
    resp = post(client, headers, patient_resource(_account(demo_chain, "patient-1")))
    doc = assert_outcome(resp, 403, "forbidden")
    assert doc["issue"][0]["diagnostics"] == "insufficient_scope"
    assert client.get("/fhir/Patient", headers=headers).status_code == 200


# --- create / read / vread / update / history --------------------------------------------


def test_create_read_vread_update_history(
    client: TestClient, kim: dict[str, str], demo_chain: InitResult, fake: FakeRecords
) -> None:
    resp = post(client, kim, patient_resource(_account(demo_chain, "patient-1")))
    assert resp.status_code == 201, resp.text
    created = resp.json()
    pid = created["id"]
    assert created["meta"]["versionId"] == "1"
    assert resp.headers["location"] == f"http://testserver/fhir/Patient/{pid}/_history/1"
    assert resp.headers["etag"] == 'W/"1"'
    assert resp.headers["x-audit-entry"] == fake.audit[-1]["tx"]
    assert resp.headers["content-type"].startswith(FHIR)
    assert "last-modified" in resp.headers

    resp = client.get(f"/fhir/Patient/{pid}", headers=kim)
    assert resp.status_code == 200
    assert resp.json() == created
    assert resp.headers["etag"] == 'W/"1"'
    assert resp.headers["x-audit-entry"] == fake.audit[-1]["tx"]

    changed = {**created, "gender": "other"}
    resp = client.put(f"/fhir/Patient/{pid}", json=changed, headers={**kim, "If-Match": 'W/"1"'})
    assert resp.status_code == 200, resp.text
    assert resp.headers["etag"] == 'W/"2"'
    assert resp.headers["location"].endswith(f"/Patient/{pid}/_history/2")
    assert resp.json()["gender"] == "other"

    resp = client.get(f"/fhir/Patient/{pid}/_history/1", headers=kim)
    assert resp.status_code == 200
    assert resp.json()["gender"] == "female"
    assert resp.headers["etag"] == 'W/"1"'

    resp = client.get(f"/fhir/Patient/{pid}/_history", headers=kim)
    assert resp.status_code == 200
    bundle = resp.json()
    get_fhir_model_class("Bundle").model_validate(bundle)
    assert bundle["type"] == "history"
    assert bundle["total"] == 2
    assert [e["resource"]["meta"]["versionId"] for e in bundle["entry"]] == ["2", "1"]
    assert bundle["entry"][1]["request"] == {"method": "POST", "url": "Patient"}
    assert bundle["entry"][0]["request"] == {"method": "PUT", "url": f"Patient/{pid}"}
    assert resp.headers["x-audit-entry"]


def test_stale_if_match_is_412(
    client: TestClient, kim: dict[str, str], seeded: dict[str, str]
) -> None:
    url = f"/fhir/Observation/{seeded['observation']}"
    current = client.get(url, headers=kim).json()
    assert client.put(url, json=current, headers={**kim, "If-Match": 'W/"1"'}).status_code == 200
    resp = client.put(url, json=current, headers={**kim, "If-Match": 'W/"1"'})
    assert_outcome(resp, 412, "conflict")
    assert resp.headers["x-audit-entry"]
    assert_outcome(client.put(url, json=current, headers={**kim, "If-Match": "3"}), 400)


def test_update_id_must_match_url(
    client: TestClient, kim: dict[str, str], seeded: dict[str, str]
) -> None:
    url = f"/fhir/Observation/{seeded['observation']}"
    body = {**client.get(url, headers=kim).json(), "id": "other"}
    assert_outcome(client.put(url, json=body, headers=kim), 422)
    del body["id"]
    assert_outcome(client.put(url, json=body, headers=kim), 422)


def test_not_found_and_bad_version(
    client: TestClient, kim: dict[str, str], seeded: dict[str, str]
) -> None:
    assert_outcome(client.get("/fhir/Observation/nope", headers=kim), 404, "not-found")
    url = f"/fhir/Observation/{seeded['observation']}/_history"
    assert_outcome(client.get(f"{url}/9", headers=kim), 404, "not-found")
    assert_outcome(client.get(f"{url}/x", headers=kim), 400)


def test_purpose_header_is_passed_and_checked(
    client: TestClient, kim: dict[str, str], seeded: dict[str, str], fake: FakeRecords
) -> None:
    url = f"/fhir/Observation/{seeded['observation']}"
    assert client.get(url, headers={**kim, "X-Purpose-Of-Use": "HOPERAT"}).status_code == 200
    assert fake.calls[-1] == ("read", {"purpose": "HOPERAT"})
    assert client.get(url, headers=kim).status_code == 200
    assert fake.calls[-1] == ("read", {"purpose": "TREAT"})
    assert_outcome(client.get(url, headers={**kim, "X-Purpose-Of-Use": "FUN"}), 400)


# --- bad input ---------------------------------------------------------------------------


def test_invalid_fhir_is_422_with_the_issues(client: TestClient, kim: dict[str, str]) -> None:
    bad = {"resourceType": "Observation", "status": "final", "valueQuantity": {"value": "x"}}
    doc = assert_outcome(post(client, kim, bad), 422)
    assert len(doc["issue"]) >= 2
    where = {e for i in doc["issue"] for e in i.get("expression", ())}
    assert "Observation.code" in where
    assert all(i["details"]["coding"][0]["code"] == "fhir_invalid" for i in doc["issue"])


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", b'{"resourceType":"Patient","gender":"female","gender":"male"}', b"\xff"],
)
def test_malformed_json_is_422(client: TestClient, kim: dict[str, str], body: bytes) -> None:
    resp = client.post("/fhir/Patient", content=body, headers={**kim, "Content-Type": FHIR})
    assert_outcome(resp, 422)


def test_resource_type_must_match_endpoint(
    client: TestClient, kim: dict[str, str], demo_chain: InitResult
) -> None:
    resp = client.post(
        "/fhir/Observation",
        json=patient_resource(_account(demo_chain, "patient-1")),
        headers={**kim, "Content-Type": FHIR},
    )
    assert_outcome(resp, 422, "invalid")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/fhir/Foo/1"),
        ("POST", "/fhir/Foo"),
        ("GET", "/fhir/Foo"),
        ("PUT", "/fhir/Foo/1"),
        ("GET", "/fhir/Foo/1/_history"),
        ("DELETE", "/fhir/Foo/1"),
    ],
)
def test_unsupported_type_is_404_not_supported(
    client: TestClient, kim: dict[str, str], method: str, path: str
) -> None:
    resp = client.request(method, path, headers={**kim, "Content-Type": FHIR}, content=b"{}")
    doc = assert_outcome(resp, 404, "not-supported")
    assert "Foo" in doc["issue"][0]["diagnostics"]


def test_unsupported_type_in_body_is_404(client: TestClient, kim: dict[str, str]) -> None:
    resp = client.post("/fhir/Patient", json={"resourceType": "Basic"}, headers=kim)
    # the endpoint names Patient, so the body's type is a mismatch (422); at a type this
    # server has no endpoint for, the answer is 404
    assert_outcome(resp, 422)
    resp = client.post("/fhir/Basic", json={"resourceType": "Basic"}, headers=kim)
    assert_outcome(resp, 404, "not-supported")


def test_oversize_is_413(client: TestClient, kim: dict[str, str]) -> None:
    big = (
        b'{"resourceType":"Observation","status":"final","note":[{"text":"'
        + b"A" * (8 << 20)
        + b'"}]}'
    )
    resp = client.post("/fhir/Observation", content=big, headers={**kim, "Content-Type": FHIR})
    assert_outcome(resp, 413, "too-long")


def test_oversize_refused_from_content_length_before_reading(
    app: FastAPI, kim: dict[str, str]
) -> None:
    import anyio

    received: list[int] = []

    async def run() -> int:
        chunks = [b"{" + b" " * 1000] * 3
        sent = iter(chunks)

        async def receive() -> dict[str, Any]:
            chunk = next(sent, None)
            received.append(1)
            return {"type": "http.request", "body": chunk or b"", "more_body": chunk is not None}

        status: list[int] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/fhir/Observation",
            "raw_path": b"/fhir/Observation",
            "query_string": b"",
            "root_path": "",
            "scheme": "http",
            "server": ("testserver", 80),
            "http_version": "1.1",
            "headers": [
                (b"host", b"testserver"),
                (b"content-type", FHIR.encode()),
                (b"content-length", str(9 << 20).encode()),
                (b"authorization", kim["Authorization"].encode()),
            ],
        }
        await app(scope, receive, send)
        return status[0]

    assert anyio.run(run) == 413
    assert received == []  # nothing of the body was read


def test_unsupported_media_type_is_415(client: TestClient, kim: dict[str, str]) -> None:
    resp = client.post(
        "/fhir/Patient",
        content=b"<Patient/>",
        headers={**kim, "Content-Type": "application/fhir+xml"},
    )
    assert_outcome(resp, 415)


def test_application_json_is_accepted(
    client: TestClient, kim: dict[str, str], demo_chain: InitResult
) -> None:
    resp = client.post(
        "/fhir/Patient",
        json=patient_resource(_account(demo_chain, "patient-1")),
        headers={**kim, "Content-Type": "application/json; charset=utf-8"},
    )
    assert resp.status_code == 201


@pytest.mark.parametrize(
    "reason",
    ["no_consent", "revoked", "expired", "wrong_purpose", "denied_by_consent", "not_yet_valid"],
)
def test_consent_denials_are_403_with_reason_and_deny_audit(
    client: TestClient, lee: dict[str, str], seeded: dict[str, str], fake: FakeRecords, reason: str
) -> None:
    fake.force_deny = reason
    for method, url in [
        ("GET", f"/fhir/Observation/{seeded['observation']}"),
        ("GET", f"/fhir/Observation/{seeded['observation']}/_history/1"),
        ("GET", f"/fhir/Observation/{seeded['observation']}/_history"),
    ]:
        before = len(fake.audit)
        resp = client.request(method, url, headers=lee)
        doc = assert_outcome(resp, 403, "forbidden")
        assert doc["issue"][0]["diagnostics"] == reason
        assert doc["issue"][0]["details"]["coding"][0]["code"] == reason
        assert len(fake.audit) == before + 1
        deny = fake.audit[-1]
        assert deny["outcome"] == "deny" and deny["reason"] == reason
        assert resp.headers["x-audit-entry"] == deny["tx"]
        assert resp.headers["cache-control"] == "no-store"


def test_other_org_without_consent_is_denied(
    client: TestClient, lee: dict[str, str], seeded: dict[str, str]
) -> None:
    resp = client.get(f"/fhir/Observation/{seeded['observation']}", headers=lee)
    assert assert_outcome(resp, 403)["issue"][0]["diagnostics"] == "no_consent"


def test_tampered_content_fails_loudly_and_is_audited(
    client: TestClient, kim: dict[str, str], seeded: dict[str, str], fake: FakeRecords
) -> None:
    fake.tampered.add(("Observation", seeded["observation"]))
    resp = client.get(f"/fhir/Observation/{seeded['observation']}", headers=kim)
    doc = assert_outcome(resp, 500, "security")
    assert "does not match" in doc["issue"][0]["diagnostics"]
    assert fake.audit[-1]["outcome"] == "error"
    assert resp.headers["x-audit-entry"] == fake.audit[-1]["tx"]


# --- erasure -----------------------------------------------------------------------------


def test_erasure_by_patient_then_410(
    client: TestClient,
    kim: dict[str, str],
    patient1: dict[str, str],
    seeded: dict[str, str],
    fake: FakeRecords,
) -> None:
    url = f"/fhir/Observation/{seeded['observation']}"
    resp = client.delete(f"{url}?reason=wrong%20patient", headers=patient1)
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["resourceType"] == "OperationOutcome"
    assert doc["issue"][0]["severity"] == "information"
    assert resp.headers["x-erasure-transaction"] in doc["issue"][0]["diagnostics"]
    assert resp.headers["x-audit-entry"]
    assert fake.calls[-1] == ("erase", {"reason": "wrong patient", "basis": "patient_request"})
    assert_outcome(client.get(url, headers=kim), 410, "deleted")
    assert_outcome(client.get(f"{url}/_history/1", headers=kim), 410)


def test_erasure_of_someone_elses_record_is_403(
    client: TestClient, lee: dict[str, str], seeded: dict[str, str], demo_chain: InitResult
) -> None:
    url = f"/fhir/Observation/{seeded['observation']}"
    resp = client.delete(f"{url}?reason=x&basis=data_error", headers=lee)
    assert_outcome(resp, 403, "forbidden")
    patient2 = login(client, "patient-2")
    assert_outcome(client.delete(url, headers=patient2), 403)


def test_erasure_by_member_needs_basis(
    client: TestClient, kim: dict[str, str], seeded: dict[str, str], fake: FakeRecords
) -> None:
    url = f"/fhir/Observation/{seeded['observation']}"
    assert_outcome(client.delete(url, headers=kim), 400)
    resp = client.request("DELETE", url, json={"reason": "dup", "basis": "data_error"}, headers=kim)
    assert_outcome(resp, 403)  # dr-kim is not an admin: the service refuses
    assert fake.calls[-1] == ("erase", {"reason": "dup", "basis": "data_error"})


# --- search ------------------------------------------------------------------------------


def test_search_paging_links_and_total(
    client: TestClient, kim: dict[str, str], seeded: dict[str, str], fake: FakeRecords
) -> None:
    for i in range(4):
        assert post(client, kim, observation(seeded["patient"], value=60 + i)).status_code == 201
    resp = client.get(f"/fhir/Observation?patient={seeded['patient']}&_count=2", headers=kim)
    assert resp.status_code == 200
    bundle = resp.json()
    get_fhir_model_class("Bundle").model_validate(bundle)
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 5
    assert len(bundle["entry"]) == 2
    assert all(e["search"]["mode"] == "match" for e in bundle["entry"])
    assert bundle["entry"][0]["fullUrl"].startswith("http://testserver/fhir/Observation/")
    links = {link["relation"]: link["url"] for link in bundle["link"]}
    assert set(links) == {"self", "first", "next"}
    assert resp.headers["x-audit-entry"] == fake.audit[-1]["tx"]
    seen = [e["resource"]["id"] for e in bundle["entry"]]
    url = links["next"]
    while url:
        page = client.get(url, headers=kim).json()
        seen += [e["resource"]["id"] for e in page.get("entry", ())]
        rel = {link["relation"]: link["url"] for link in page["link"]}
        assert "previous" in rel
        url = rel.get("next")
    assert len(seen) == len(set(seen)) == 5
    assert fake.calls[-1][1]["offset"] == 4


def test_search_parameters_reach_the_service(
    client: TestClient, kim: dict[str, str], seeded: dict[str, str], fake: FakeRecords
) -> None:
    pid, oid = seeded["patient"], seeded["observation"]
    q = (
        f"/fhir/Observation?subject=Patient/{pid}&_id={oid},x&code=http://loinc.org|8867-4"
        "&_lastUpdated=ge2026-01-01&_lastUpdated=lt2027-01-01T00:00:00Z&_offset=0"
    )
    bundle = client.get(q, headers=kim).json()
    assert [e["resource"]["id"] for e in bundle["entry"]] == [oid]
    args = fake.calls[-1][1]
    assert args["patient"] == pid and args["ids"] == (oid, "x")
    assert args["code"] == "http://loinc.org|8867-4"
    assert args["last_updated"] == (1_767_225_600_000, 1_798_761_599_999)
    assert client.get("/fhir/Observation?code=1234-5", headers=kim).json()["total"] == 0
    bundle = client.get(f"/fhir/Patient?_id={pid}", headers=kim).json()
    assert bundle["total"] == 1 and "entry" in bundle


@pytest.mark.parametrize(
    "query",
    [
        "Patient?code=1",
        "Observation?name=x",
        "Observation?_total=maybe",
        "Observation?_count=abc",
        "Observation?_count=101",
        "Observation?_offset=-1",
        "Observation?_lastUpdated=yesterday",
        "Observation?_lastUpdated=ne2026",
        "Observation?subject=Group/1",
        "Observation?patient=",
        "Observation?patient=1&patient=2",
        "Observation?patient=1&subject=Patient/2",
        "Observation?_sort=date",
        "Observation?code:text=x",
        "Observation?_format=xml",
        "Patient?patient=1",
    ],
)
def test_unsupported_or_bad_search_params_are_400(
    client: TestClient, kim: dict[str, str], query: str
) -> None:
    doc = assert_outcome(client.get(f"/fhir/{query}", headers=kim), 400, "invalid")
    assert doc["issue"][0]["details"]["coding"][0]["code"] == "bad_search_param"


# --- consent, break-glass, audit, provenance, access log ---------------------------------


def consent(patient_id: str, grantee: str) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "status": "active",
        "subject": {"reference": f"Patient/{patient_id}"},
        "decision": "permit",
        "provision": [
            {
                "actor": [{"reference": {"reference": grantee}}],
                "action": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/consentaction",
                                "code": "access",
                            }
                        ]
                    }
                ],
            }
        ],
    }


def test_consent_grant_list_revoke(
    client: TestClient,
    kim: dict[str, str],
    lee: dict[str, str],
    patient1: dict[str, str],
    seeded: dict[str, str],
    demo_chain: InitResult,
) -> None:
    p1 = _account(demo_chain, "patient-1")
    url = f"/fhir/Observation/{seeded['observation']}"
    assert client.get(url, headers=lee).status_code == 403
    resp = post(client, patient1, consent(p1, "Organization/hanbit-pharmacy"))
    assert resp.status_code == 201, resp.text
    granted = resp.json()
    get_fhir_model_class("Consent").model_validate(granted)
    assert granted["status"] == "active" and granted["decision"] == "permit"
    assert resp.headers["location"] == f"http://testserver/fhir/Consent/{granted['id']}"
    assert resp.headers["x-audit-entry"]
    assert client.get(url, headers=lee).status_code == 200

    bundle = client.get(f"/fhir/Consent?patient={p1}", headers=patient1).json()
    assert bundle["total"] == 1
    assert bundle["entry"][0]["resource"]["id"] == granted["id"]
    assert bundle["entry"][0]["resource"]["subject"] == {"reference": f"Patient/{p1}"}

    resp = client.post(f"/fhir/Consent/{granted['id']}/$revoke", headers=patient1)
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-revocation-transaction"]
    doc = assert_outcome(client.get(url, headers=lee), 403)
    assert doc["issue"][0]["diagnostics"] == "no_consent"
    bundle = client.get(f"/fhir/Consent?patient={p1}", headers=patient1).json()
    assert bundle["entry"][0]["resource"]["status"] == "inactive"


def test_consent_errors(
    client: TestClient, kim: dict[str, str], patient1: dict[str, str], demo_chain: InitResult
) -> None:
    p1 = _account(demo_chain, "patient-1")
    assert_outcome(post(client, kim, consent(p1, "Practitioner/x")), 403)  # not the patient
    bad = consent(p1, "Practitioner/x") | {"decision": "maybe"}
    assert_outcome(post(client, patient1, bad), 422)
    assert_outcome(client.get("/fhir/Consent", headers=patient1), 400)
    assert_outcome(client.get(f"/fhir/Consent?patient={p1}", headers=kim), 403)
    assert_outcome(client.post("/fhir/Consent/nope/$revoke", headers=patient1), 404)
    assert_outcome(client.get("/fhir/Consent/abc", headers=patient1), 404, "not-supported")


def test_break_glass(
    client: TestClient,
    kim: dict[str, str],
    lee: dict[str, str],
    demo_chain: InitResult,
    fake: FakeRecords,
) -> None:
    p1 = _account(demo_chain, "patient-1")
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": f"Patient/{p1}"}},
            {"name": "reason", "valueString": "unconscious in ER"},
        ],
    }
    resp = client.post("/fhir/$break-glass", json=params, headers=kim)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    get_fhir_model_class("Parameters").model_validate(out)
    values = {p["name"]: p for p in out["parameter"]}
    assert values["patient"]["valueString"] == p1
    assert values["reason"]["valueString"] == "unconscious in ER"
    assert resp.headers["x-audit-entry"] == fake.audit[-1]["tx"]
    doc = assert_outcome(client.post("/fhir/$break-glass", json=params, headers=lee), 403)
    assert doc["issue"][0]["diagnostics"] == "not_emergency"
    params["parameter"] = params["parameter"][:1]
    assert_outcome(client.post("/fhir/$break-glass", json=params, headers=kim), 422)


def test_audit_events_with_proofs(
    client: TestClient,
    kim: dict[str, str],
    lee: dict[str, str],
    patient1: dict[str, str],
    seeded: dict[str, str],
    demo_chain: InitResult,
) -> None:
    p1 = _account(demo_chain, "patient-1")
    client.get(f"/fhir/Observation/{seeded['observation']}", headers=lee)  # a deny
    resp = client.get(f"/fhir/AuditEvent?patient={p1}&_count=50", headers=patient1)
    assert resp.status_code == 200, resp.text
    bundle = resp.json()
    get_fhir_model_class("Bundle").model_validate(bundle)
    events = [e["resource"] for e in bundle["entry"]]
    assert bundle["total"] == len(events) >= 3
    for event in events:
        get_fhir_model_class("AuditEvent").model_validate(event)
        proof = next(x for x in event["extension"] if x["url"].endswith("/inclusion-proof"))
        parts = {p["url"] for p in proof["extension"]}
        assert {"leafIndex", "treeSize", "root", "path"} <= parts
    outcomes = {e["outcome"]["code"]["code"] for e in events}
    assert {"0", "4"} <= outcomes
    assert_outcome(client.get(f"/fhir/AuditEvent?patient={p1}", headers=lee), 403)
    assert_outcome(client.get("/fhir/AuditEvent", headers=patient1), 400)


def test_access_log_json(
    client: TestClient,
    patient1: dict[str, str],
    lee: dict[str, str],
    seeded: dict[str, str],
    demo_chain: InitResult,
) -> None:
    p1 = _account(demo_chain, "patient-1")
    resp = client.get(f"/v1/patients/{p1}/access-log", headers=patient1)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["patient"] == p1 and body["count"] == len(body["entries"]) >= 2
    assert {"entry", "proof"} == set(body["entries"][0])
    assert body["entries"][0]["proof"]["root"]
    resp = client.get(f"/v1/patients/{p1}/access-log", headers=lee)
    assert resp.status_code == 403
    assert resp.headers["content-type"] == "application/problem+json"
    assert client.get(f"/v1/patients/{p1}/access-log").status_code == 401


def test_provenance_of_anchors(
    client: TestClient, kim: dict[str, str], seeded: dict[str, str], fake: FakeRecords
) -> None:
    oid = seeded["observation"]
    url = f"/fhir/Observation/{oid}"
    client.put(url, json=client.get(url, headers=kim).json(), headers=kim)
    bundle = client.get(f"/fhir/Provenance?target=Observation/{oid}", headers=kim).json()
    assert bundle["total"] == 2
    provs = [e["resource"] for e in bundle["entry"]]
    for prov in provs:
        get_fhir_model_class("Provenance").model_validate(prov)
    versions = fake.versions[("Observation", oid)]
    assert {p["id"] for p in provs} == {v.anchor_tx for v in versions}
    assert provs[0]["target"] == [{"reference": f"Observation/{oid}/_history/2"}]
    one = client.get(f"/fhir/Provenance?target=Observation/{oid}/_history/1", headers=kim).json()
    assert one["total"] == 1
    assert_outcome(client.get("/fhir/Provenance", headers=kim), 400)
    assert_outcome(client.get("/fhir/Provenance?target=Foo/1", headers=kim), 400)


def test_unknown_paths_and_methods_are_operation_outcomes(
    client: TestClient, kim: dict[str, str], seeded: dict[str, str]
) -> None:
    resp = client.patch(f"/fhir/Observation/{seeded['observation']}", headers=kim, json={})
    assert_outcome(resp, 405, "not-supported")
    assert_outcome(
        client.get("/fhir/Observation/1/_history/1/x", headers=kim), 404, "not-supported"
    )


def test_no_record_service_is_503(demo_node: Node) -> None:
    app = create_app(demo_node)
    app.state.auth._tokens["t"] = TokenInfo(
        account="seoul-general.dr-kim",
        kid="0" * 32,
        scopes=("user/*.read",),
        expires_at=app.state.auth.clock() + 60,
    )
    with TestClient(app) as c:
        resp = c.get("/fhir/Patient/x", headers={"Authorization": "Bearer t"})
    assert_outcome(resp, 503, "throttled")
    assert resp.headers["retry-after"]


def test_parse_round_trip_of_served_resources(
    client: TestClient, kim: dict[str, str], seeded: dict[str, str]
) -> None:
    body = client.get(f"/fhir/Observation/{seeded['observation']}", headers=kim).content
    assert parse_resource(body, expected_type="Observation").fhir_version == "R5"
