"""``/v1/incentives``: prevention programmes, participants, wallets and sponsor totals.

Read-only: programmes, joins, device bindings, attestations, closes, transfers and
redemptions are signed transactions (``POST /v1/transactions``, kinds ``incentives.*@1``).
Wallets are keyed by pseudonymous accounts; points are not money.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from carechain.api.deps import NodeDep, problems
from carechain.node import incentives as views

router = APIRouter(prefix="/v1/incentives", tags=["incentives"])


@router.get("/programmes", summary="Incentive programmes", responses=problems(400))
def list_programmes(node: NodeDep) -> dict[str, Any]:
    """Every programme: sponsor, period, rule, budget, points awarded, status."""
    return {"programmes": views.list_programmes(node.store)}


@router.get(
    "/programmes/{programme}",
    summary="A programme with its participants",
    responses=problems(400, 404),
)
def get_programme(programme: Annotated[str, Path(max_length=40)], node: NodeDep) -> dict[str, Any]:
    """The programme, each participant's attested and qualifying days, and the projected (or,
    once closed, paid) award."""
    return views.programme_detail(node.store, programme)


@router.get(
    "/wallets/{account}",
    summary="Points of an account, per sponsor",
    responses=problems(400, 404),
)
def get_wallet(account: Annotated[str, Path(max_length=64)], node: NodeDep) -> dict[str, Any]:
    """Balances per issuing sponsor, programmes joined and wearables bound."""
    return views.wallet(node.store, account)


@router.get(
    "/sponsors/{org}",
    summary="Points a sponsor awarded and had redeemed",
    responses=problems(400),
)
def get_sponsor(org: Annotated[str, Path(max_length=64)], node: NodeDep) -> dict[str, Any]:
    """Awarded, redeemed and outstanding points of ``org`` and its programmes."""
    return views.sponsor_totals(node.store, org)


__all__ = ["router"]
