"""``/v1/supply``: product verification (DSCSA), an item's timeline and pedigree, recalls.

* ``POST /v1/supply/verify`` — GTIN, serial, lot, expiry → verified or not, with the reason;
  every request is logged by the node (``DIR/supply/verify.jsonl``).
* ``GET /v1/supply/items/{item}`` — an item's record, custody history, suspect case, recall.
* ``GET /v1/supply/items/{item}/pedigree`` — its history with inclusion proofs, one file a
  regulator verifies offline (``carechain supply verify-history``).
* ``GET /v1/supply/recalls/{gtin}/{lot}/patients`` — the implant records of a recalled lot at
  this node's organisation; audited as a PHI read (one audit entry per patient).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from carechain.api.auth import current_token
from carechain.api.deps import problems
from carechain.api.routes import epcis
from carechain.api.routes.epcis import get_supply
from carechain.contracts.supply_rules import item_key
from carechain.errors import AuthorizationError, ContractError, ValidationError

router = APIRouter(prefix="/v1/supply", tags=["supply"])


class VerifyRequest(BaseModel):
    """A product identifier to verify (the four DSCSA data elements)."""

    model_config = ConfigDict(extra="forbid")
    gtin: str = Field(pattern=r"^\d{8,14}$", description="GTIN (8-14 digits)")
    serial: str = Field(min_length=1, max_length=20, description="Serial number (AI 21)")
    lot: str = Field(min_length=1, max_length=20, description="Lot or batch (AI 10)")
    expiry: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="Expiry date YYYY-MM-DD")
    purpose: Literal["dispense", "saleable_return", "inspection"] = "dispense"


class VerifyResponse(BaseModel):
    """The answer: verified or not, and why."""

    verified: bool
    reason: str
    item: str
    status: str | None = None
    owner: str | None = None


@router.post(
    "/verify",
    summary="Verify a product identifier (DSCSA verification)",
    responses=problems(400, 401),
)
def verify(request: Request, req: VerifyRequest) -> VerifyResponse:
    """``reason``: ``ok``, ``unknown_gtin``, ``unknown_serial``, ``lot_mismatch``,
    ``expiry_mismatch``, ``suspect``, ``recalled`` or ``decommissioned``."""
    info = current_token(request)
    result = get_supply(request).verify(
        gtin=req.gtin,
        serial=req.serial,
        lot=req.lot,
        expiry=req.expiry,
        requester=info.account,
        purpose=req.purpose,
    )
    return VerifyResponse(
        verified=result.verified,
        reason=result.reason,
        item=result.item,
        status=result.status,
        owner=result.owner,
    )


def _item(item: str) -> str:
    try:
        return item_key(item)
    except ContractError as exc:
        raise ValidationError(exc.message, code="bad_item") from None


@router.get(
    "/items/{item:path}/pedigree",
    summary="An item's pedigree with inclusion proofs",
    responses=problems(400, 404),
)
def pedigree(request: Request, item: str) -> dict[str, Any]:
    """Every custody step's envelope and RFC 9162 inclusion proof, with a signed checkpoint."""
    return get_supply(request).pedigree(_item(item))


@router.get(
    "/items/{item:path}",
    summary="An item's record and custody timeline",
    responses=problems(400, 404),
)
def timeline(request: Request, item: str) -> dict[str, Any]:
    """``item`` is ``01/<gtin14>/21/<serial>`` (a pack or device) or ``00/<sscc>`` (a case)."""
    return get_supply(request).timeline(_item(item))


@router.get(
    "/recalls/{gtin}/{lot}/patients",
    summary="Patients with an implant from a recalled lot (audited PHI read)",
    responses=problems(400, 401, 403, 404),
)
def recall_patients(
    request: Request,
    gtin: Annotated[str, Path(pattern=r"^\d{14}$")],
    lot: Annotated[str, Path(min_length=1, max_length=20)],
) -> dict[str, Any]:
    """Only practitioners, nurses, admins and auditors of this node's organisation."""
    info = current_token(request)
    service = get_supply(request)
    raw = service.node.store.find_state(f"acct/{info.account}")
    acct = orjson.loads(raw) if raw else {}
    role = acct.get("role")
    if acct.get("org") != service.node_org() or role not in (
        "practitioner",
        "nurse",
        "admin",
        "auditor",
    ):
        raise AuthorizationError(
            "implant records are read by clinical staff or auditors of this node's organisation",
            code="forbidden",
        )
    patients = service.recall_patients(gtin=gtin, lot=lot, actor=info.account, role=str(role))
    return {"gtin": gtin, "lot": lot, "patients": patients}


api_router = APIRouter()
"""``/v1/supply`` and ``/epcis`` together (the one router ``create_app`` includes)."""
api_router.include_router(router)
api_router.include_router(epcis.router)

__all__ = ["api_router", "router"]
