"""``/v1/claims``: plans, coverages, adjudicated claims (with FHIR R5 views) and analytics.

Every claims transaction (``claims.plan@1`` … ``claims.outcome@1``) is a signed envelope
submitted to ``POST /v1/transactions`` like any other (the SDK's ``ClaimsClient`` builds them);
these routes read the committed adjudication. All of them need a bearer token (SMART Backend
Services or custodial sign-in); who may read what is decided in ``node/claims.py``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from carechain.api.auth import TokenInfo, require_token
from carechain.api.deps import NodeDep, problems
from carechain.fhir.claims_map import claim_resource, claim_response_resource, coverage_resource
from carechain.node import claims as q

router = APIRouter(prefix="/v1/claims", tags=["claims"])
Token = Annotated[TokenInfo, Depends(require_token())]
IdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
FHIR_JSON = "application/fhir+json"


def _fhir(resource: dict[str, Any]) -> JSONResponse:
    return JSONResponse(jsonable_encoder(resource), media_type=FHIR_JSON)


@router.get("/analytics", summary="Per-provider claim analytics",
            responses=problems(400, 401, 403))  # fmt: skip
def analytics(
    node: NodeDep,
    token: Token,
    provider: Annotated[str, Query(min_length=2, max_length=64)],
) -> dict[str, Any]:
    """Duplicate rate, denial rate, claims without a matching encounter and volume against
    peers, for ``provider``; readable by payers, oversight organisations and the provider."""
    return q.provider_analytics(node.store, q.viewer(node.store, token.account), provider)


@router.get("/plans/{plan}", summary="A payer's plan", responses=problems(401, 404))
def plan(plan: IdPath, node: NodeDep, token: Token) -> dict[str, Any]:
    """The plan as registered by ``claims.plan@1`` (amounts in minor units)."""
    q.viewer(node.store, token.account)
    return dict(q.get_plan(node.store, plan))


@router.get("/agreements/{agreement}", summary="A value-based agreement",
            responses=problems(401, 404))  # fmt: skip
def agreement(agreement: IdPath, node: NodeDep, token: Token) -> dict[str, Any]:
    """The agreement's terms, bonuses paid and budget used."""
    q.viewer(node.store, token.account)
    return dict(q.get_agreement(node.store, agreement))


@router.get("/coverage/{coverage}", summary="A coverage (enrolment) as FHIR R5 Coverage",
            responses=problems(401, 403, 404))  # fmt: skip
def coverage(coverage: IdPath, node: NodeDep, token: Token) -> JSONResponse:
    """``claims/cov/<id>`` rendered as an R5 Coverage (``application/fhir+json``)."""
    rec = q.get_coverage(node.store, q.viewer(node.store, token.account), coverage)
    return _fhir(coverage_resource(rec, q.find_plan(node.store, rec.get("plan"))))


@router.get("", summary="Claims the caller may read", responses=problems(400, 401))
def list_claims(
    node: NodeDep,
    token: Token,
    provider: Annotated[str | None, Query(max_length=64)] = None,
    patient: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=q.MAX_LIST)] = 100,
) -> dict[str, Any]:
    """Newest first; each entry is the on-chain claim with its adjudication."""
    v = q.viewer(node.store, token.account)
    items = q.list_claims(node.store, v, provider=provider, patient=patient, limit=limit)
    return {"claims": [dict(c) for c in items]}


@router.get("/{claim}", summary="A claim with its adjudication", responses=problems(401, 403, 404))
def claim(claim: IdPath, node: NodeDep, token: Token) -> dict[str, Any]:
    """``claims/claim/<id>``: items with decisions, reason codes and amounts; payments; appeal."""
    return dict(q.get_claim(node.store, q.viewer(node.store, token.account), claim))


@router.get("/{claim}/Claim", summary="The claim as FHIR R5 Claim",
            responses=problems(401, 403, 404))  # fmt: skip
def claim_fhir(claim: IdPath, node: NodeDep, token: Token) -> JSONResponse:
    """What the chain holds of the provider's claim (the full FHIR Claim stays off chain)."""
    rec = q.get_claim(node.store, q.viewer(node.store, token.account), claim)
    return _fhir(claim_resource(rec, q.find_plan(node.store, rec.get("plan"))))


@router.get("/{claim}/ClaimResponse", summary="The adjudication as FHIR R5 ClaimResponse",
            responses=problems(401, 403, 404))  # fmt: skip
def claim_response_fhir(claim: IdPath, node: NodeDep, token: Token) -> JSONResponse:
    """Per-item decisions with reason codes and adjudication amounts, totals and payment."""
    rec = q.get_claim(node.store, q.viewer(node.store, token.account), claim)
    return _fhir(claim_response_resource(rec, q.find_plan(node.store, rec.get("plan"))))


__all__ = ["router"]
