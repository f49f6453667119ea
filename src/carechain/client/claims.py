"""SDK for claims: build and sign ``claims.*`` transactions, read adjudications and analytics.

``ClaimsClient(client, sender, key)`` acts as one account (a payer's clerk, a provider's
practitioner, a laboratory technician): every write is a transaction signed with ``key`` and
submitted to ``POST /v1/transactions``; reads go to ``/v1/claims`` with a bearer token of the
same account (SMART Backend Services assertion signed with ``key``, fetched on first read), or
the ``token`` of a custodial sign-in.

A rejected transaction (malformed, unauthorised) raises :class:`ContractError` with the
contract's code; a claim the payer *denies* is not an error: :meth:`submit_claim` returns its
adjudication (``decision``, per-item ``reasons``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import orjson

from carechain.client._http import decode_json
from carechain.client.client import Client
from carechain.client.jws import ASSERTION_TYPE, client_assertion
from carechain.client.models import Result
from carechain.crypto.signatures import PrivateKey
from carechain.encoding import JsonObject, JsonValue, b64u_encode, canonical_bytes
from carechain.errors import AuthenticationError, ContractError

DAY_MS = 86_400_000


def claim_digest(claim: Mapping[str, Any], key: bytes | None = None) -> tuple[str, bytes]:
    """The keyed digest of an off-chain FHIR Claim: HMAC-SHA256(blinding key, canonical JSON).

    Returns ``(digest b64url, blinding key)``; a fresh 32-byte key is drawn when none is given.
    Keep the key with the off-chain Claim: whoever holds both can prove the match, nobody can
    confirm a guessed Claim from the chain alone.
    """
    blinding = key if key is not None else os.urandom(32)
    mac = hmac.new(blinding, canonical_bytes(dict(claim)), hashlib.sha256).digest()
    return b64u_encode(mac), blinding


def item(service: str, date: int, units: int, charge: int, auth: str | None = None) -> JsonObject:
    """One claim line (``date``: Unix ms of the service; ``charge``: minor units)."""
    out: dict[str, JsonValue] = {"charge": charge, "date": date, "service": service, "units": units}
    if auth is not None:
        out["auth"] = auth
    return out


class ClaimsClient:
    """One account's claims session at a node."""

    def __init__(
        self, client: Client, sender: str, key: PrivateKey, *, token: str | None = None
    ) -> None:
        self.client = client
        self.sender = sender
        self.key = key
        self.token = token

    # -- writes ----------------------------------------------------------------------------
    def send(self, kind: str, args: JsonObject, *, check: bool = True) -> Result:
        """Sign and submit one ``claims.*`` transaction; wait for its block.

        With ``check`` a rejected receipt raises :class:`ContractError` (its code and message).
        """
        (result,) = self.client.submit(self.client.build(kind, self.sender, args, self.key))
        if check and not result.ok:
            raise ContractError(f"{kind}: {result.message}", code=result.code)
        return result

    def register_plan(
        self, plan: str, name: str, *, currency: str, deductible: int,
        services: Sequence[Mapping[str, Any]], coinsurance_bp: int = 0,
    ) -> Result:  # fmt: skip
        """``claims.plan@1`` (services: ``{"code", "allowed", "copay"?, "limit"?,
        "prior_auth"?}``)."""
        return self.send("claims.plan@1", {
            "coinsurance_bp": coinsurance_bp, "currency": currency, "deductible": deductible,
            "name": name, "plan": plan, "services": [dict(s) for s in services],
        })  # fmt: skip

    def enrol(self, coverage: str, plan: str, patient: str, start: int, end: int) -> Result:
        """``claims.enrol@1``: ``patient`` is covered by ``plan`` from ``start`` to ``end``."""
        return self.send("claims.enrol@1", {"coverage": coverage, "patient": patient,
                         "period": {"end": end, "start": start}, "plan": plan})  # fmt: skip

    def authorize(self, coverage: str, service: str, units: int, start: int, end: int) -> str:
        """``claims.authorize@1``; returns the authorisation id (for the claim item's auth)."""
        result = self.send("claims.authorize@1", {"coverage": coverage, "period": {
            "end": end, "start": start}, "service": service, "units": units})  # fmt: skip
        return result.tx_id.hex()[:16]

    def agreement(self, agreement: str, **terms: Any) -> Result:
        """``claims.agreement@1`` (terms: plan, provider, measure, window, bonus, budget)."""
        return self.send("claims.agreement@1", {"agreement": agreement, **terms})

    def submit_claim(
        self, *, ref: str, provider: str, patient: str, coverage: str,
        encounter: tuple[str, str], items: Sequence[JsonObject], diagnoses: Sequence[str],
        digest: str,
    ) -> dict[str, Any]:  # fmt: skip
        """``claims.submit@1``; returns the committed claim with its adjudication."""
        result = self.send("claims.submit@1", {
            "coverage": coverage, "diagnoses": list(diagnoses), "digest": digest,
            "encounter": {"id": encounter[1], "org": encounter[0]}, "items": list(items),
            "patient": patient, "provider": provider, "ref": ref,
        })  # fmt: skip
        return self.claim(result.tx_id.hex()[:16])

    def pay(self, claim: str, amount: int, reference: str | None = None) -> Result:
        """``claims.pay@1``: pay the benefit not yet paid."""
        args: dict[str, JsonValue] = {"amount": amount, "claim": claim}
        if reference is not None:
            args["reference"] = reference
        return self.send("claims.pay@1", args)

    def appeal(self, claim: str, reason: str, documentation: tuple[str, str, str]) -> Result:
        """``claims.appeal@1`` (documentation: ``(org, type, id)`` of an anchored record)."""
        org, rtype, rid = documentation
        return self.send("claims.appeal@1", {"claim": claim, "documentation": {
            "id": rid, "org": org, "type": rtype}, "reason": reason})  # fmt: skip

    def decide_appeal(
        self, claim: str, decision: str, reason: str, items: Sequence[int] | None = None
    ) -> Result:
        """``claims.decide_appeal@1`` (``upheld`` or ``overturned``)."""
        args: dict[str, JsonValue] = {"claim": claim, "decision": decision, "reason": reason}
        if items is not None:
            args["items"] = list(items)
        return self.send("claims.decide_appeal@1", args)

    def outcome(
        self, agreement: str, patient: str, observation: tuple[str, str, int], code: str,
        result: str,
    ) -> Result:  # fmt: skip
        """``claims.outcome@1``: a laboratory attests ``below``/``not_below`` the threshold."""
        org, oid, version = observation
        return self.send("claims.outcome@1", {
            "agreement": agreement, "code": code, "observation": {
                "id": oid, "org": org, "version": version},
            "patient": patient, "result": result,
        })  # fmt: skip

    # -- reads -----------------------------------------------------------------------------
    def _auth(self) -> dict[str, str]:
        if self.token is None:
            api = self.client.api
            token_url = api.url("/v1/auth/token")
            assertion = client_assertion(self.sender, token_url, self.key, now=int(time.time()))
            _, body, _ = api.request("POST", "/v1/auth/token", data={
                "client_assertion": assertion, "client_assertion_type": ASSERTION_TYPE,
                "grant_type": "client_credentials", "scope": "system/*.read",
            })  # fmt: skip
            obj = decode_json(body, "POST /v1/auth/token")
            token = obj.get("access_token") if isinstance(obj, dict) else None
            if not isinstance(token, str) or not token:
                raise AuthenticationError("the token endpoint answered without an access_token")
            self.token = token
        return {"authorization": f"Bearer {self.token}"}

    def _get(self, path: str, params: Mapping[str, str | int] | None = None) -> Any:
        _, body, _ = self.client.api.request("GET", path, params=params, headers=self._auth())
        return orjson.loads(body)

    def claim(self, claim: str) -> dict[str, Any]:
        """The committed claim with its adjudication."""
        out: dict[str, Any] = self._get(f"/v1/claims/{quote(claim, safe='')}")
        return out

    def claims(self, *, provider: str | None = None, patient: str | None = None) -> list[Any]:
        """Claims this account may read, newest first."""
        params = {k: v for k, v in (("provider", provider), ("patient", patient)) if v}
        out: list[Any] = self._get("/v1/claims", params)["claims"]
        return out

    def claim_response(self, claim: str) -> dict[str, Any]:
        """The FHIR R5 ClaimResponse view."""
        out: dict[str, Any] = self._get(f"/v1/claims/{quote(claim, safe='')}/ClaimResponse")
        return out

    def claim_resource(self, claim: str) -> dict[str, Any]:
        """The FHIR R5 Claim view."""
        out: dict[str, Any] = self._get(f"/v1/claims/{quote(claim, safe='')}/Claim")
        return out

    def coverage(self, coverage: str) -> dict[str, Any]:
        """The FHIR R5 Coverage view."""
        out: dict[str, Any] = self._get(f"/v1/claims/coverage/{quote(coverage, safe='')}")
        return out

    def plan(self, plan: str) -> dict[str, Any]:
        """A plan."""
        out: dict[str, Any] = self._get(f"/v1/claims/plans/{quote(plan, safe='')}")
        return out

    def agreement_state(self, agreement: str) -> dict[str, Any]:
        """A value-based agreement with the bonuses paid."""
        out: dict[str, Any] = self._get(f"/v1/claims/agreements/{quote(agreement, safe='')}")
        return out

    def analytics(self, provider: str) -> dict[str, Any]:
        """Duplicate and denial rates, claims without an encounter, volume against peers."""
        out: dict[str, Any] = self._get("/v1/claims/analytics", {"provider": provider})
        return out


__all__ = ["DAY_MS", "ClaimsClient", "claim_digest", "item"]
