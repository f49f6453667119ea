"""SMART Backend Services authorization: signed JWT client assertion → opaque bearer token.

``POST /v1/auth/token`` (RFC 6749 §4.4 client credentials with RFC 7523 §2.2 JWT client
authentication, as profiled by SMART App Launch "Backend Services"). The assertion is
checked in this order, each failure a 401 ``invalid_client`` problem (RFC 7523 §3.2) unless
noted:

1. form: ``grant_type=client_credentials`` (else 400 ``unsupported_grant_type``),
   ``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer``,
   ``client_assertion`` and ``scope`` present once each (else 400 ``invalid_request``);
   every scope well formed (else 400 ``invalid_scope``);
2. the compact JWS decodes strictly (``carechain.api.jwt.decode_jws``);
3. header is exactly ``{"alg", "kid", "typ": "JWT"}`` with ``alg`` EdDSA or ML-DSA-65;
4. claims: ``iss == sub`` an account id, ``aud`` the token URL, ``exp`` in the future and
   at most five minutes ahead, ``iat`` not in the future, ``jti`` present;
5. ``key/<kid>`` is registered, ``active``, of the header's algorithm and belongs to
   ``iss``; ``acct/<iss>`` is active and lists the key;
6. the signature verifies over the received ``header.payload`` bytes;
7. ``jti`` was not seen before for this account (replay cache kept until ``exp``).

Only then is an opaque random token issued (300 s), kept in memory with the account and the
granted scopes. Invariants: nothing unauthenticated enters the replay cache (step 7 follows
6); tokens and jtis are dropped once expired; both stores are bounded.
"""

from __future__ import annotations

import re
import secrets
import threading
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from carechain.api.deps import problems
from carechain.api.jwt import JWS_TO_LEDGER_ALG, MAX_ASSERTION_LIFETIME_S, decode_jws
from carechain.api.schemas import TokenResponse, WhoAmI
from carechain.crypto.keystore import Keyring, validate_key_name
from carechain.crypto.signatures import PrivateKey, verify_signature
from carechain.encoding import b64u_decode
from carechain.errors import (
    AuthenticationError,
    AuthorizationError,
    LedgerError,
    LimitExceededError,
    NotFoundError,
    TooManyRequestsError,
    UnavailableError,
    ValidationError,
)
from carechain.ledger.keys import key_state_key
from carechain.ledger.tx import ACCOUNT_RE, KID_RE
from carechain.node.node import Node
from carechain.node.records_api import Actor

TOKEN_TTL_S = 300
SESSION_TTL_S = 30 * 60
"""Lifetime of a custodial sign-in session (its decrypted key is dropped after it)."""
SESSION_SCOPES = ("user/*.read", "user/*.write")
"""Scopes of a custodial session."""
CLOCK_SKEW_S = 30
MAX_FORM_BYTES = 64 * 1024
MAX_TOKENS = 100_000
LOGIN_FREE_FAILURES = 5
"""Failed sign-ins allowed per key name before each further attempt must wait."""
LOGIN_MAX_LOCKOUT_S = 15 * 60
"""The longest wait: the delay doubles per failure past the free ones, up to this."""
MAX_JTIS = 100_000
GRANT_TYPE = "client_credentials"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SCOPE_RE = re.compile(r"(patient|user|system)/(\*|[A-Z][A-Za-z]{0,63})\.(\*|read|write|c?r?u?d?s?)")
_PERMS = {"read": "rs", "write": "cud", "*": "cruds"}


def _perms(text: str) -> set[str]:
    return set(_PERMS.get(text, text))


def scope_covers(granted: str, required: str) -> bool:
    """True iff SMART scope ``granted`` allows what ``required`` asks (v1 and v2 syntax)."""
    g, r = SCOPE_RE.fullmatch(granted), SCOPE_RE.fullmatch(required)
    if g is None or r is None:
        return False
    return (
        g[1] == r[1] and g[2] in ("*", r[2]) and bool(_perms(r[3])) and _perms(r[3]) <= _perms(g[3])
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenInfo:
    """What an access token stands for."""

    account: str
    """The authenticated account."""
    kid: str
    """The key that signed the client assertion."""
    scopes: tuple[str, ...]
    """Granted SMART scopes."""
    expires_at: float
    """Unix time (seconds) after which the token is void."""
    signer: PrivateKey | None = field(default=None, repr=False, compare=False)
    """Custodial sessions only: the decrypted key the node signs with for this person."""


def _invalid_client(message: str) -> AuthenticationError:
    return AuthenticationError(message, code="invalid_client")


class AuthService:
    """Verifies client assertions and keeps issued tokens and seen jtis in memory."""

    def __init__(self, node: Node, *, clock: Callable[[], float] | None = None) -> None:
        self.node = node
        self.clock = clock or (lambda: node.clock() / 1000)
        self._lock = threading.Lock()
        self._tokens: dict[str, TokenInfo] = {}
        self._jtis: dict[tuple[str, str], float] = {}
        self._login_failures: dict[str, tuple[int, float]] = {}
        """Key name → (consecutive failures, locked until): slows password guessing."""
        self._purged_at = 0.0

    # -- issuing ------------------------------------------------------------------------
    def issue(self, form: Mapping[str, str], token_url: str) -> tuple[str, TokenInfo]:
        """Steps 1-7 of the module docstring; returns ``(token, info)``."""
        scopes = self._check_form(form)
        jws = self._decode(form["client_assertion"])
        header, claims = jws.header, jws.claims
        if set(header) != {"alg", "kid", "typ"} or header.get("typ") != "JWT":  # step 3
            raise _invalid_client("JWS header: want exactly {alg, kid, typ: JWT}")
        alg = JWS_TO_LEDGER_ALG.get(header["alg"]) if isinstance(header["alg"], str) else None
        if alg is None:
            raise _invalid_client(
                f"JWS alg: got {header['alg']!r}, want one of {sorted(JWS_TO_LEDGER_ALG)}"
            )
        kid = header["kid"]
        if not isinstance(kid, str) or not KID_RE.fullmatch(kid):
            raise _invalid_client("JWS kid: want a ledger key id (32 lowercase hex)")
        now = self.clock()
        account, jti, exp = self._check_claims(claims, token_url, now)  # step 4
        public = self._resolve_key(kid, alg, account)  # step 5
        try:  # step 6: RFC 7515 §5.2 step 8, over the bytes as received
            verify_signature(alg, public, jws.signing_input, jws.signature)
        except LedgerError:
            raise _invalid_client(
                f"the assertion's signature does not verify for key {kid}"
            ) from None
        info = TokenInfo(account=account, kid=kid, scopes=scopes, expires_at=now + TOKEN_TTL_S)
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._purge(now)
            if (account, jti) in self._jtis:  # step 7
                raise _invalid_client(f"client assertion jti {jti!r} was already used (replay)")
            if len(self._jtis) >= MAX_JTIS or len(self._tokens) >= MAX_TOKENS:
                raise UnavailableError("too many live tokens; retry shortly", retry_after=5)
            self._jtis[(account, jti)] = exp + CLOCK_SKEW_S
            self._tokens[token] = info
        return token, info

    @staticmethod
    def _check_form(form: Mapping[str, str]) -> tuple[str, ...]:
        for name in ("grant_type", "client_assertion_type", "client_assertion", "scope"):
            if not form.get(name):
                raise ValidationError(f"form field {name!r} is required", code="invalid_request")
        if form["grant_type"] != GRANT_TYPE:
            raise ValidationError(
                f"grant_type: got {form['grant_type']!r}, want {GRANT_TYPE!r}",
                code="unsupported_grant_type",
            )
        if form["client_assertion_type"] != ASSERTION_TYPE:
            raise ValidationError(
                f"client_assertion_type: want {ASSERTION_TYPE!r}", code="invalid_request"
            )
        scopes = tuple(dict.fromkeys(form["scope"].split()))
        bad = [s for s in scopes if not SCOPE_RE.fullmatch(s)]
        if not scopes or bad:
            raise ValidationError(
                f"scope: {bad[:3]!r} are not SMART scopes like 'system/*.read'",
                code="invalid_scope",
            )
        return scopes

    @staticmethod
    def _decode(assertion: str) -> Any:
        try:
            return decode_jws(assertion)
        except ValidationError as exc:
            raise _invalid_client(exc.message) from None

    @staticmethod
    def _check_claims(
        claims: Mapping[str, Any], token_url: str, now: float
    ) -> tuple[str, str, int]:
        iss, sub = claims.get("iss"), claims.get("sub")
        if not isinstance(iss, str) or not ACCOUNT_RE.match(iss) or sub != iss:
            raise _invalid_client("JWT iss and sub: want the same account id")
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if token_url not in auds:
            raise _invalid_client(f"JWT aud: got {aud!r}, want {token_url!r}")
        exp, iat = claims.get("exp"), claims.get("iat")
        for name, value in (("exp", exp), ("iat", iat)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise _invalid_client(f"JWT {name}: want integer seconds since the epoch")
        assert isinstance(exp, int) and isinstance(iat, int)
        if exp <= now:
            raise _invalid_client(f"JWT exp: the assertion expired at {exp} (now {int(now)})")
        if exp > now + MAX_ASSERTION_LIFETIME_S + CLOCK_SKEW_S:
            raise _invalid_client(
                f"JWT exp: {exp} is more than {MAX_ASSERTION_LIFETIME_S} s ahead of {int(now)}"
            )
        if iat > now + CLOCK_SKEW_S or iat > exp:
            raise _invalid_client(f"JWT iat: {iat} lies in the future (now {int(now)})")
        nbf = claims.get("nbf")
        if nbf is not None and (not isinstance(nbf, int) or nbf > now + CLOCK_SKEW_S):
            raise _invalid_client("JWT nbf: the assertion is not valid yet")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 1 <= len(jti) <= 256:
            raise _invalid_client("JWT jti: want a unique string of 1-256 characters")
        return iss, jti, exp

    def _resolve_key(self, kid: str, alg: str, account: str) -> bytes:
        raw = self.node.store.find_state(key_state_key(kid))
        if raw is None:
            raise _invalid_client(f"key {kid} is not registered on this chain")
        key = orjson.loads(raw)
        if key.get("alg") != alg:
            raise _invalid_client(f"key {kid} is a {key.get('alg')} key, the JWS claims {alg}")
        if key.get("status") != "active":
            raise _invalid_client(f"key {kid} is {key.get('status')}")
        acct_raw = self.node.store.find_state(f"acct/{account}")
        acct = orjson.loads(acct_raw) if acct_raw is not None else None
        if (
            key.get("account") != account
            or not isinstance(acct, dict)
            or acct.get("status") != "active"
            or kid not in acct.get("keys", [])
        ):
            raise _invalid_client(f"key {kid} is not an active key of account {account}")
        return b64u_decode(key["pub"], what="key.pub")

    # -- custodial sign-in (the node keeps the person's key encrypted in its keyring) ------
    def login(
        self, keyring: Keyring, name: str, password: bytes, *, ttl: float = SESSION_TTL_S
    ) -> tuple[str, TokenInfo]:
        """Decrypt key ``name``, check it is an active key of its account on chain and open
        a session holding the key; every failure is the same 401 ``invalid_credentials``."""
        refused = AuthenticationError(
            "unknown key name or wrong password", code="invalid_credentials"
        )
        now = self.clock()
        with self._lock:
            failures, locked_until = self._login_failures.get(name, (0, 0.0))
        if now < locked_until:  # checked before the (expensive) key derivation
            raise TooManyRequestsError(
                f"too many failed sign-ins for {name!r}; retry in {int(locked_until - now) + 1} s",
                retry_after=int(locked_until - now) + 1,
            )
        try:
            validate_key_name(name)
            key = keyring.load(name, password)
        except (NotFoundError, AuthenticationError, ValidationError):
            failures += 1
            wait = 0.0
            if failures > LOGIN_FREE_FAILURES:
                wait = min(2.0 ** (failures - LOGIN_FREE_FAILURES), LOGIN_MAX_LOCKOUT_S)
            with self._lock:
                if len(self._login_failures) >= MAX_TOKENS:
                    self._login_failures.clear()
                self._login_failures[name] = (failures, now + wait)
            raise refused from None
        with self._lock:
            self._login_failures.pop(name, None)
        kid = key.kid
        raw = self.node.store.find_state(key_state_key(kid))
        record = orjson.loads(raw) if raw is not None else None
        account = record.get("account") if isinstance(record, dict) else None
        if not isinstance(account, str):
            raise AuthenticationError(
                f"key {name!r} is not registered on this chain", code="invalid_credentials"
            )
        self._resolve_key_for_login(kid, key.alg, account)
        now = self.clock()
        info = TokenInfo(
            account=account, kid=kid, scopes=SESSION_SCOPES, expires_at=now + ttl, signer=key
        )
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._purge(now)
            if len(self._tokens) >= MAX_TOKENS:
                raise UnavailableError("too many live tokens; retry shortly", retry_after=5)
            self._tokens[token] = info
        return token, info

    def _resolve_key_for_login(self, kid: str, alg: str, account: str) -> None:
        try:
            self._resolve_key(kid, alg, account)
        except AuthenticationError as exc:
            raise AuthenticationError(exc.message, code="invalid_credentials") from None

    def logout(self, token: str) -> bool:
        """Drop a token (and the key its session holds); False if it was not live."""
        with self._lock:
            return self._tokens.pop(token, None) is not None

    # -- checking -------------------------------------------------------------------------
    def lookup(self, token: str) -> TokenInfo:
        """The live token's info, or AuthenticationError ``invalid_token``."""
        now = self.clock()
        with self._lock:
            info = self._tokens.get(token)
            if info is not None and info.expires_at <= now:
                del self._tokens[token]
                info = None
        if info is None:
            raise AuthenticationError(
                "the access token is unknown or expired", code="invalid_token"
            )
        return info

    def _purge(self, now: float) -> None:
        """Drop expired jtis and tokens (at most every 10 s unless a store is full)."""
        full = len(self._jtis) >= MAX_JTIS or len(self._tokens) >= MAX_TOKENS
        if not full and now - self._purged_at < 10:
            return
        self._purged_at = now
        self._jtis = {k: t for k, t in self._jtis.items() if t > now}
        self._tokens = {k: v for k, v in self._tokens.items() if v.expires_at > now}


def get_auth(request: Request) -> AuthService:
    """The app's :class:`AuthService`."""
    auth: AuthService = request.app.state.auth
    return auth


def require_token(scope: str | None = None) -> Callable[[Request], Awaitable[TokenInfo]]:
    """A FastAPI dependency: a valid bearer token (RFC 6750), granting ``scope`` if given."""
    if scope is not None and not SCOPE_RE.fullmatch(scope):
        raise ValueError(f"require_token: {scope!r} is not a SMART scope")

    async def dependency(request: Request) -> TokenInfo:
        header = request.headers.get("authorization", "")
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise AuthenticationError(
                "send 'Authorization: Bearer <token>' (get one at POST /v1/auth/token)"
            )
        info = get_auth(request).lookup(token.strip())
        if scope is not None and not any(scope_covers(g, scope) for g in info.scopes):
            raise AuthorizationError(
                f"the token grants {list(info.scopes)}, this needs {scope!r}",
                code="insufficient_scope",
            )
        return info

    return dependency


def bearer_token(request: Request) -> str:
    """The bearer token of the request (AuthenticationError without one)."""
    header = request.headers.get("authorization", "")
    kind, _, token = header.partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        raise AuthenticationError(
            "send 'Authorization: Bearer <token>' (sign in at POST /v1/auth/login, or get "
            "one at POST /v1/auth/token)"
        )
    return token.strip()


def current_token(request: Request) -> TokenInfo:
    """The live token of the request (401 without one, or when unknown/expired)."""
    return get_auth(request).lookup(bearer_token(request))


def current_actor(request: Request) -> Actor:
    """The :class:`Actor` behind the bearer token, built by ``app.state.records``."""
    info = current_token(request)
    records = getattr(request.app.state, "records", None)
    if records is None:
        raise UnavailableError(
            "this node serves no records (started without a data directory)", retry_after=60
        )
    actor: Actor = records.actor(info.account, info.signer)
    return actor


router = APIRouter(prefix="/v1/auth", tags=["auth"])


async def _read_form(request: Request) -> dict[str, str]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise ValidationError(
            "send the token request as application/x-www-form-urlencoded",
            code="invalid_request",
        )
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise LimitExceededError(f"token request: more than {MAX_FORM_BYTES} bytes")
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode("ascii"), keep_blank_values=True, strict_parsing=bool(body)
        )
    except (UnicodeDecodeError, ValueError):
        raise ValidationError("malformed form body", code="invalid_request") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:  # RFC 6749 §3.2: parameters MUST NOT be repeated
            raise ValidationError(f"form field {name!r} is repeated", code="invalid_request")
        form[name] = value
    return form


@router.post(
    "/token",
    summary="Exchange a signed JWT client assertion for a bearer token",
    response_model=TokenResponse,
    responses=problems(400, 401, 413, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": [
                            "grant_type",
                            "client_assertion_type",
                            "client_assertion",
                            "scope",
                        ],
                        "properties": {
                            "grant_type": {"type": "string", "const": GRANT_TYPE},
                            "client_assertion_type": {"type": "string", "const": ASSERTION_TYPE},
                            "client_assertion": {"type": "string"},
                            "scope": {"type": "string", "examples": ["system/*.read"]},
                        },
                    }
                }
            },
        }
    },
)
async def token(request: Request) -> JSONResponse:
    """SMART Backend Services token endpoint (client credentials + JWT client assertion)."""
    form = await _read_form(request)
    token_url = str(request.url.replace(query=None, fragment=None))
    auth = get_auth(request)
    access, info = await anyio.to_thread.run_sync(auth.issue, form, token_url)
    body = TokenResponse(access_token=access, expires_in=TOKEN_TTL_S, scope=" ".join(info.scopes))
    return JSONResponse(
        body.model_dump(), headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
    )


@router.get(
    "/whoami",
    summary="The account behind the bearer token",
    response_model=WhoAmI,
    responses=problems(401),
)
async def whoami(info: Annotated[TokenInfo, Depends(require_token())], request: Request) -> WhoAmI:
    """Who the presented bearer token authenticates, with its scopes."""
    remaining = int(info.expires_at - get_auth(request).clock())
    return WhoAmI(
        account=info.account, kid=info.kid, scopes=list(info.scopes), expires_in=max(remaining, 0)
    )


async def _read_login(request: Request) -> tuple[str, bytes]:
    """``key`` and ``password`` from a form or JSON body (bounded)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        fields: Mapping[str, Any] = await _read_form(request)
    elif media in ("application/json", ""):
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise LimitExceededError(f"sign-in request: more than {MAX_FORM_BYTES} bytes")
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ValidationError("sign-in: malformed JSON body", code="invalid_request") from None
        if not isinstance(parsed, dict):
            raise ValidationError("sign-in: want a JSON object {key, password}")
        fields = parsed
    else:
        raise ValidationError(
            "send the sign-in as application/x-www-form-urlencoded or application/json",
            code="invalid_request",
        )
    key, password = fields.get("key"), fields.get("password")
    if not isinstance(key, str) or not key or not isinstance(password, str):
        raise ValidationError("sign-in: 'key' and 'password' are required strings")
    if "\x00" in password:
        raise AuthenticationError("unknown key name or wrong password", code="invalid_credentials")
    return key, password.encode("utf-8")


@router.post(
    "/login",
    summary="Custodial sign-in: unlock your key in the node's keyring for a session",
    responses=problems(400, 401, 413, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                media: {
                    "schema": {
                        "type": "object",
                        "required": ["key", "password"],
                        "properties": {"key": {"type": "string"}, "password": {"type": "string"}},
                    }
                }
                for media in ("application/x-www-form-urlencoded", "application/json")
            },
        }
    },
)
async def login(request: Request) -> JSONResponse:
    """Decrypt the named key of the node's keyring (``DIR/keys``) with the password, check it
    is an active key of its account on chain and issue a bearer token whose session holds the
    key in memory (30 min); the node signs the person's transactions with it."""
    key, password = await _read_login(request)
    data_dir = getattr(request.app.state, "data_dir", None)
    if data_dir is None:
        raise UnavailableError(
            "custodial sign-in needs the node's data directory (keyring)", retry_after=60
        )
    keyring = Keyring(Path(data_dir))
    auth = get_auth(request)
    access, info = await anyio.to_thread.run_sync(auth.login, keyring, key, password)
    body = TokenResponse(
        access_token=access,
        expires_in=int(info.expires_at - auth.clock()),
        scope=" ".join(info.scopes),
    ).model_dump()
    body["account"] = info.account
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


@router.post(
    "/logout",
    summary="End a session: drop the bearer token (and the key it holds)",
    status_code=204,
    responses=problems(401),
)
async def logout(request: Request) -> Response:
    """Forget the presented bearer token; a custodial session's key leaves memory."""
    if not get_auth(request).logout(bearer_token(request)):
        raise AuthenticationError("the access token is unknown or expired", code="invalid_token")
    return Response(status_code=204)


__all__ = [
    "ASSERTION_TYPE",
    "GRANT_TYPE",
    "SESSION_SCOPES",
    "SESSION_TTL_S",
    "TOKEN_TTL_S",
    "AuthService",
    "TokenInfo",
    "bearer_token",
    "current_actor",
    "current_token",
    "require_token",
    "router",
    "scope_covers",
]
