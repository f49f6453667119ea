"""Problem documents → carechain errors, submission wire format, client assertions."""

from __future__ import annotations

import base64
import json

import httpx
import orjson
import pytest
from client_fakes import ADMIN_KEY, BASE, CHAIN, FakeApi, problem

from carechain.client import Client, error_from_problem
from carechain.client.jws import client_assertion, encode_jws
from carechain.crypto.signatures import check_signature
from carechain.errors import (
    AuthorizationError,
    ConflictError,
    DuplicateTransactionError,
    InfrastructureError,
    LedgerError,
    LimitExceededError,
    NotFoundError,
    SignatureError,
    UnavailableError,
    ValidationError,
)


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (409, "duplicate_transaction", DuplicateTransactionError),
        (409, "key_exists", ConflictError),
        (422, "bad_signature", SignatureError),
        (400, "wrong_chain", ValidationError),
        (413, "too_large", LimitExceededError),
        (403, "revoked_key", AuthorizationError),
        (404, "not_found", NotFoundError),
        (503, "unavailable", UnavailableError),
        (500, "internal", InfrastructureError),
        (418, "teapot", LedgerError),
    ],
)
def test_problem_maps_to_error_class(status: int, code: str, cls: type[LedgerError]) -> None:
    response = problem(status, code, f"detail of {code}")
    error = error_from_problem(status, response.content, response.headers)
    assert type(error) is cls
    assert error.code == code
    assert str(error) == f"detail of {code}"


def test_unavailable_carries_retry_after() -> None:
    response = problem(503, "unavailable", "mempool full", **{"retry-after": "3"})
    error = error_from_problem(503, response.content, response.headers)
    assert isinstance(error, UnavailableError)
    assert error.retry_after == 3


def test_non_problem_error_answer() -> None:
    error = error_from_problem(502, b"<html>bad gateway</html>", {})
    assert isinstance(error, InfrastructureError)
    assert "502" in str(error) and "bad gateway" in str(error)


def test_unreachable_node_is_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    http = httpx.Client(transport=httpx.MockTransport(refuse))
    with Client(BASE, http=http) as client, pytest.raises(UnavailableError, match="cannot reach"):
        client.checkpoint()


def test_oversized_answer_is_refused(fake: FakeApi) -> None:
    with fake.client() as client:
        client.api.max_bytes = 100
        with pytest.raises(InfrastructureError, match="exceeds the limit"):
            client.checkpoint()


def test_non_json_answer_is_a_bad_response(fake: FakeApi) -> None:
    fake.mutate["tx"] = lambda o: b"{not json"
    with fake.client() as client, pytest.raises(InfrastructureError) as info:
        client.get_tx(fake.txs[0].tx_id)
    assert info.value.code == "bad_response"


def test_build_uses_the_pinned_chain(fake: FakeApi) -> None:
    with fake.client() as client:
        tx = client.build("identity.revoke_key@1", "org1.admin", {"kid": "0" * 32}, ADMIN_KEY)
    assert tx.body.chain == CHAIN
    assert tx.body.signers[0].kid == ADMIN_KEY.kid
    assert len(tx.body.nonce) == 16


def test_submit_one_sends_the_envelope_verbatim(fake: FakeApi) -> None:
    with fake.client() as client:
        tx = client.build("identity.revoke_key@1", "org1.admin", {"kid": "0" * 32}, [ADMIN_KEY])
        (result,) = client.submit(tx)
    request = fake.requests[-1]
    assert request.headers["content-type"] == "application/json"
    assert request.content == tx.raw
    assert request.url.params["wait"] == "true"
    assert result.ok and result.tx_id == tx.tx_id
    assert (result.height, result.log_index) == (6, 5)


def test_submit_many_sends_ndjson_and_no_wait(fake: FakeApi) -> None:
    with fake.client() as client:
        txs = [
            client.build("identity.revoke_key@1", "org1.admin", {"kid": "0" * 32}, ADMIN_KEY)
            for _ in range(3)
        ]
        results = client.submit([t.raw for t in txs], wait=False)
    request = fake.requests[-1]
    assert request.headers["content-type"] == "application/x-ndjson"
    assert request.content.split(b"\n") == [t.raw for t in txs] + [b""]
    assert request.url.params["wait"] == "false"
    assert [r.status for r in results] == ["pending"] * 3
    assert [r.tx_id for r in results] == [t.tx_id for t in txs]


def test_replay_raises_duplicate(fake: FakeApi) -> None:
    with fake.client() as client, pytest.raises(DuplicateTransactionError, match="already"):
        client.submit(fake.txs[0])


def test_results_for_other_transactions_are_refused(fake: FakeApi) -> None:
    def lie(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/transactions":
            body = {"results": [{"status": "ok", "tx_id": "00" * 32}]}
            return httpx.Response(200, content=orjson.dumps(body))
        return fake.handler(request)

    http = httpx.Client(transport=httpx.MockTransport(lie))
    with Client(BASE, http=http) as client:
        tx = client.build("identity.revoke_key@1", "org1.admin", {"kid": "0" * 32}, ADMIN_KEY)
        with pytest.raises(InfrastructureError, match="tx_id"):
            client.submit(tx)


def test_submit_refuses_malformed_input_locally(fake: FakeApi) -> None:
    with fake.client() as client:
        with pytest.raises(ValidationError):
            client.submit(b'{"not": "an envelope"}')
        with pytest.raises(ValidationError, match="no transactions"):
            client.submit([])
    assert not [r for r in fake.requests if r.url.path == "/v1/transactions"]


def _b64d(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_compact_jws_signs_header_and_payload() -> None:
    token = encode_jws({"a": 1}, ADMIN_KEY)
    header, payload, signature = token.split(".")
    assert json.loads(_b64d(header)) == {"alg": "EdDSA", "kid": ADMIN_KEY.kid, "typ": "JWT"}
    assert json.loads(_b64d(payload)) == {"a": 1}
    assert "=" not in token
    message = f"{header}.{payload}".encode()
    assert check_signature("ed25519", ADMIN_KEY.public, message, _b64d(signature))


def test_client_assertion_claims() -> None:
    token = client_assertion("svc", "http://x/v1/auth/token", ADMIN_KEY, now=1000, jti="j1")
    claims = json.loads(_b64d(token.split(".")[1]))
    assert claims == {
        "aud": "http://x/v1/auth/token",
        "exp": 1300,
        "iat": 1000,
        "iss": "svc",
        "jti": "j1",
        "sub": "svc",
    }
    with pytest.raises(ValidationError, match="lifetime"):
        client_assertion("svc", "aud", ADMIN_KEY, now=0, lifetime=301)


def test_authenticate_sends_the_bearer_token(fake: FakeApi) -> None:
    seen: list[httpx.Request] = []

    def token(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v1/auth/token":
            return httpx.Response(200, json={"access_token": "tok", "token_type": "bearer"})
        return fake.handler(request)

    http = httpx.Client(transport=httpx.MockTransport(token))
    with Client(BASE, http=http) as client:
        assert client.authenticate("svc", ADMIN_KEY) == "tok"
        client.checkpoint()
    form = dict(x.split("=", 1) for x in seen[0].content.decode().split("&"))
    assert form["grant_type"] == "client_credentials"
    assert seen[-1].headers["authorization"] == "Bearer tok"
