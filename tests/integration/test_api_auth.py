"""SMART Backend Services auth: JWT client assertion → bearer token → whoami and scopes.

Every refusal of an assertion is a 401 ``invalid_client`` problem with ``WWW-Authenticate``;
form errors are 400 with their RFC 6749 code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from carechain.api import create_app
from carechain.api.auth import ASSERTION_TYPE, TokenInfo, require_token, scope_covers
from carechain.api.jwt import decode_jws, encode_jws, make_client_assertion
from carechain.contracts.identity import patient_account_id
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import PrivateKey, generate_key
from carechain.encoding import b64u_encode
from carechain.errors import ValidationError
from carechain.node.chaindir import DEMO_PASSWORD, new_tx
from carechain.node.node import Node

TOKEN_URL = "http://testserver/v1/auth/token"
ADMIN = "seoul-general.admin"


@pytest.fixture
def app(demo_node: Node) -> FastAPI:
    app = create_app(demo_node)

    @app.get("/test/patients")
    def patients(info: Annotated[TokenInfo, Depends(require_token("system/Patient.read"))]) -> Any:
        return {"account": info.account}

    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def admin_key(demo_keys: Keyring) -> PrivateKey:
    return demo_keys.load("seoul-general-admin", DEMO_PASSWORD)


def now() -> int:
    return int(time.time())


def request_token(
    client: TestClient, assertion: str, scope: str = "system/*.read", **extra: str
) -> Any:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        "scope": scope,
        **extra,
    }
    return client.post("/v1/auth/token", data=form)


def assert_auth_problem(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    doc: dict[str, Any] = resp.json()
    assert doc["code"] == code, doc
    assert doc["type"] == f"https://carechain.dev/problems/{code}"
    if status == 401:
        assert resp.headers["www-authenticate"].startswith('Bearer realm="carechain"')
    return doc


def test_good_assertion_gives_a_token_for_whoami(client: TestClient, admin_key: PrivateKey) -> None:
    resp = request_token(client, make_client_assertion(admin_key, ADMIN, TOKEN_URL, now()))
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    body = resp.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    assert body["scope"] == "system/*.read"
    who = client.get("/v1/auth/whoami", headers={"authorization": f"Bearer {body['access_token']}"})
    assert who.status_code == 200
    assert who.json()["account"] == ADMIN
    assert who.json()["kid"] == admin_key.kid
    assert who.json()["scopes"] == ["system/*.read"]
    assert 290 <= who.json()["expires_in"] <= 300


def test_ml_dsa_patient_can_authenticate(client: TestClient, demo_keys: Keyring) -> None:
    key = demo_keys.load("patient-2", DEMO_PASSWORD)
    assert key.alg == "ml-dsa-65"
    account = patient_account_id(key.kid)
    assertion = make_client_assertion(key, account, TOKEN_URL, now())
    assert decode_jws(assertion).header["alg"] == "ML-DSA-65"
    resp = request_token(client, assertion, scope="patient/*.read")
    assert resp.status_code == 200, resp.text
    token = resp.json()["access_token"]
    who = client.get("/v1/auth/whoami", headers={"authorization": f"Bearer {token}"}).json()
    assert who["account"] == account


def _custom(key: PrivateKey, **changes: Any) -> str:
    header = {"alg": "EdDSA", "kid": key.kid, "typ": "JWT"}
    claims = {
        "aud": TOKEN_URL, "exp": now() + 120, "iat": now(), "iss": ADMIN,
        "jti": f"j-{time.monotonic_ns()}", "sub": ADMIN,
    }  # fmt: skip
    for name, value in changes.items():
        target = header if name.startswith("h_") else claims
        name = name.removeprefix("h_")
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value
    return encode_jws(header, claims, key)


def _flip_signature(token: str) -> str:
    head, payload, sig = token.split(".")
    first = "B" if sig[0] == "A" else "A"
    return f"{head}.{payload}.{first}{sig[1:]}"


BAD_ASSERTIONS: dict[str, str] = {  # case -> what the problem detail must say
    "bad_signature": "signature does not verify",
    "signed_by_other_key": "signature does not verify",
    "wrong_aud": "JWT aud",
    "expired": "expired",
    "exp_too_far": "300 s ahead",
    "iat_in_future": "JWT iat",
    "iss_sub_differ": "iss and sub",
    "missing_jti": "JWT jti",
    "unknown_kid": "not registered",
    "kid_of_another_account": "not an active key of account",
    "alg_mismatch": "is a ed25519 key",
    "alg_none": "JWS alg",
    "alg_hs256": "JWS alg",
    "extra_header": "JWS header",
    "typ_not_jwt": "JWS header",
    "not_a_jws": "compact JWS",
    "padded_base64": "base64url",
    "duplicate_claim": "duplicate member",
}


@pytest.mark.parametrize("case", sorted(BAD_ASSERTIONS))
def test_bad_assertions_are_401(
    client: TestClient, admin_key: PrivateKey, demo_keys: Keyring, case: str
) -> None:
    stranger = generate_key()
    other = demo_keys.load("dr-kim", DEMO_PASSWORD)
    builders: dict[str, Callable[[], str]] = {
        "bad_signature": lambda: _flip_signature(_custom(admin_key)),
        "signed_by_other_key": lambda: _custom(stranger, h_kid=admin_key.kid),
        "wrong_aud": lambda: _custom(admin_key, aud="http://evil.example/v1/auth/token"),
        "expired": lambda: _custom(admin_key, exp=now() - 1, iat=now() - 60),
        "exp_too_far": lambda: _custom(admin_key, exp=now() + 3600),
        "iat_in_future": lambda: _custom(admin_key, iat=now() + 120, exp=now() + 200),
        "iss_sub_differ": lambda: _custom(admin_key, sub="seoul-general.dr-kim"),
        "missing_jti": lambda: _custom(admin_key, jti=None),
        "unknown_kid": lambda: _custom(stranger),
        "kid_of_another_account": lambda: _custom(other),
        "alg_mismatch": lambda: _custom(admin_key, h_alg="ML-DSA-65"),
        "alg_none": lambda: _custom(admin_key, h_alg="none"),
        "alg_hs256": lambda: _custom(admin_key, h_alg="HS256"),
        "extra_header": lambda: _custom(admin_key, h_jku="https://evil.example/keys"),
        "typ_not_jwt": lambda: _custom(admin_key, h_typ="JOSE"),
        "not_a_jws": lambda: "abc.def",
        "padded_base64": lambda: _custom(admin_key).split(".")[0] + "==.e30.AAAA",
        "duplicate_claim": lambda: _duplicate_claim(admin_key),
    }
    assertion = builders[case]()
    doc = assert_auth_problem(request_token(client, assertion), 401, "invalid_client")
    assert doc["error"] == "invalid_client"
    assert BAD_ASSERTIONS[case] in doc["detail"]


def _duplicate_claim(key: PrivateKey) -> str:
    header = b64u_encode(b'{"alg":"EdDSA","kid":"' + key.kid.encode() + b'","typ":"JWT"}')
    claims = (
        f'{{"aud":"{TOKEN_URL}","exp":{now() + 60},"iat":{now()},"iss":"{ADMIN}",'
        f'"jti":"x1","sub":"{ADMIN}","iss":"seoul-general.dr-kim"}}'
    )
    signing_input = f"{header}.{b64u_encode(claims.encode())}"
    return f"{signing_input}.{b64u_encode(key.sign(signing_input.encode()))}"


def test_replayed_jti_is_401(client: TestClient, admin_key: PrivateKey) -> None:
    assertion = make_client_assertion(admin_key, ADMIN, TOKEN_URL, now(), jti="once-only")
    assert request_token(client, assertion).status_code == 200
    doc = assert_auth_problem(request_token(client, assertion), 401, "invalid_client")
    assert "replay" in doc["detail"]
    fresh = make_client_assertion(admin_key, ADMIN, TOKEN_URL, now(), jti="once-only")
    assert_auth_problem(request_token(client, fresh), 401, "invalid_client")


def test_revoked_key_is_401(client: TestClient, demo_node: Node, demo_keys: Keyring) -> None:
    dr_kim = demo_keys.load("dr-kim", DEMO_PASSWORD)
    account = "seoul-general.dr-kim"
    assert (
        request_token(client, make_client_assertion(dr_kim, account, TOKEN_URL, now())).status_code
        == 200
    )
    revoke = new_tx(
        demo_node,
        "identity.revoke_key@1",
        account,
        {"kid": dr_kim.kid, "reason": "stolen"},
        [dr_kim],
    )
    resp = client.post(
        "/v1/transactions", content=revoke.raw, headers={"content-type": "application/json"}
    )
    assert resp.json()["results"][0]["status"] == "ok"
    doc = assert_auth_problem(
        request_token(client, make_client_assertion(dr_kim, account, TOKEN_URL, now())),
        401,
        "invalid_client",
    )
    assert "revoked" in doc["detail"]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"grant_type": "password"}, "unsupported_grant_type"),
        ({"grant_type": ""}, "invalid_request"),
        ({"client_assertion_type": "urn:other"}, "invalid_request"),
        ({"client_assertion": ""}, "invalid_request"),
        ({"scope": ""}, "invalid_request"),
        ({"scope": "system/*.read admin"}, "invalid_scope"),
        ({"scope": "system/patient.read"}, "invalid_scope"),
    ],
)
def test_bad_token_requests_are_400(
    client: TestClient, admin_key: PrivateKey, change: dict[str, str], code: str
) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": make_client_assertion(admin_key, ADMIN, TOKEN_URL, now()),
        "scope": "system/*.read",
        **change,
    }
    doc = assert_auth_problem(client.post("/v1/auth/token", data=form), 400, code)
    assert doc["error"] == code


def test_token_request_form_rules(client: TestClient, admin_key: PrivateKey) -> None:
    assertion = make_client_assertion(admin_key, ADMIN, TOKEN_URL, now())
    as_json = client.post("/v1/auth/token", json={"grant_type": "client_credentials"})
    assert_auth_problem(as_json, 400, "invalid_request")
    repeated = (
        f"grant_type=client_credentials&grant_type=client_credentials"
        f"&client_assertion_type={ASSERTION_TYPE}&client_assertion={assertion}&scope=system/*.read"
    )
    resp = client.post(
        "/v1/auth/token",
        content=repeated.encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert_auth_problem(resp, 400, "invalid_request")
    big = client.post(
        "/v1/auth/token",
        content=b"a=" + b"b" * 70_000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert_auth_problem(big, 413, "limit_exceeded")


def test_bearer_token_checks(client: TestClient, app: FastAPI, admin_key: PrivateKey) -> None:
    assert_auth_problem(client.get("/v1/auth/whoami"), 401, "unauthenticated")
    bad = client.get("/v1/auth/whoami", headers={"authorization": "Bearer nope"})
    doc = assert_auth_problem(bad, 401, "invalid_token")
    assert 'error="invalid_token"' in bad.headers["www-authenticate"]
    assert doc["error"] == "invalid_token"
    basic = client.get("/v1/auth/whoami", headers={"authorization": "Basic YTpi"})
    assert_auth_problem(basic, 401, "unauthenticated")

    def token(scope: str) -> str:
        assertion = make_client_assertion(admin_key, ADMIN, TOKEN_URL, now())
        resp = request_token(client, assertion, scope=scope)
        assert resp.status_code == 200, resp.text
        return str(resp.json()["access_token"])

    wide = {"authorization": f"Bearer {token('system/*.read user/*.read')}"}
    assert client.get("/test/patients", headers=wide).json() == {"account": ADMIN}
    narrow = {"authorization": f"Bearer {token('user/*.read system/Observation.read')}"}
    assert_auth_problem(client.get("/test/patients", headers=narrow), 403, "insufficient_scope")

    auth = app.state.auth  # the token expires after 300 s
    real_clock = auth.clock
    auth.clock = lambda: real_clock() + 301
    try:
        assert_auth_problem(client.get("/test/patients", headers=wide), 401, "invalid_token")
    finally:
        auth.clock = real_clock


def test_scope_coverage() -> None:
    assert scope_covers("system/*.read", "system/Patient.read")
    assert scope_covers("system/*.*", "system/Patient.write")
    assert scope_covers("system/Patient.rs", "system/Patient.read")
    assert scope_covers("system/*.cruds", "system/Observation.write")
    assert not scope_covers("user/*.read", "system/Patient.read")
    assert not scope_covers("system/Observation.read", "system/Patient.read")
    assert not scope_covers("system/*.read", "system/Patient.write")
    assert not scope_covers("system/*.r", "system/Patient.read")
    with pytest.raises(ValueError):
        require_token("not a scope")


def test_jws_helpers_round_trip_and_strictness(admin_key: PrivateKey) -> None:
    assertion = make_client_assertion(admin_key, ADMIN, TOKEN_URL, 1_700_000_000, jti="j1")
    jws = decode_jws(assertion)
    assert jws.header == {"alg": "EdDSA", "kid": admin_key.kid, "typ": "JWT"}
    assert jws.claims == {
        "aud": TOKEN_URL, "exp": 1_700_000_240, "iat": 1_700_000_000, "iss": ADMIN,
        "jti": "j1", "sub": ADMIN,
    }  # fmt: skip
    assert jws.signing_input == assertion.rsplit(".", 1)[0].encode()
    for bad in ("a.b", "a..c", "x" * 20_000, "é.b.c", "e30.W10.AAAA"):
        with pytest.raises(ValidationError):
            decode_jws(bad)
