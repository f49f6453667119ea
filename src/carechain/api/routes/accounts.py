"""``/v1/accounts``: an account's record, keys and the transactions that touch it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from carechain.api import queries
from carechain.api.deps import NodeDep, problems
from carechain.api.schemas import AccountView

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])


@router.get(
    "/{account_id}",
    summary="An account with its keys and recent transactions",
    response_model=AccountView,
    responses=problems(400, 404),
)
def get_account(
    account_id: Annotated[str, Path(max_length=64)],
    node: NodeDep,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_ACCOUNT_TXS)] = 50,
    before: Annotated[
        int | None, Query(ge=0, description="Only log indexes below this (paging).")
    ] = None,
) -> AccountView:
    """The ``acct/<id>`` record, its ``key/<kid>`` records and up to ``limit`` transactions
    touching it, newest first. Accounts hold no personal data."""
    return queries.get_account(node, account_id, limit, before)


__all__ = ["router"]
