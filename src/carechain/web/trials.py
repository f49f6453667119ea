"""The public trial registry pages, with the outcome-switching report.

``/trials`` (every registered trial) and ``/trials/{id}`` (versions with reasons and flags,
the switching report, adverse events, results, and an inclusion proof of every version's
transaction: each links to its ``/tx`` page, where ``static/proof.js`` re-checks the proof in
the browser against a signed checkpoint). Public ledger state only: no PHI.

This router also carries the incentive pages (``web/incentives.py``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from carechain.errors import NotFoundError, ValidationError
from carechain.node import trials as views
from carechain.node.node import Node
from carechain.web import incentives
from carechain.web.routes import error_page, render

router = APIRouter(include_in_schema=False)


@router.get("/trials")
async def trials_index(request: Request) -> Response:
    """Every registered trial."""
    node: Node = request.app.state.node
    items = await run_in_threadpool(views.list_trials, node.store)
    return render(request, "trials_index.html", trials=items)


def _page(node: Node, trial: str) -> dict[str, Any]:
    detail = views.trial_detail(node.store, trial)
    return {**detail, "report": views.switching(node.store, trial)}


@router.get("/trials/{trial}")
async def trial_page(request: Request, trial: str) -> Response:
    """One trial and its outcome-switching report."""
    node: Node = request.app.state.node
    try:
        page = await run_in_threadpool(_page, node, trial)
    except ValidationError as exc:
        return error_page(request, 400, "Not a trial identifier", exc.message)
    except NotFoundError as exc:
        return error_page(request, 404, "Unknown trial", exc.message)
    return render(request, "trials_trial.html", **page)


router.include_router(incentives.router)

__all__ = ["router"]
