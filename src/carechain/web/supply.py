"""The supply page: look up a serialised pack, case or device and see its custody timeline.

``/supply`` (a lookup form by GTIN + serial, or an item key) and ``/supply/items/{item}`` (the
item, its product, suspect case, recall and every custody step with its transaction). Public
ledger state only: no PHI (implant links are never shown here).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from carechain.contracts.supply_rules import item_key
from carechain.errors import ContractError, NotFoundError, ValidationError
from carechain.node.node import Node
from carechain.node.supply import item_timeline, sgtin_item
from carechain.web.routes import error_page, render

router = APIRouter(include_in_schema=False)


@router.get("/supply")
async def supply_index(
    request: Request, gtin: str = "", serial: str = "", item: str = ""
) -> Response:
    """The lookup form; with ``gtin`` + ``serial`` or ``item`` it redirects to the timeline."""
    try:
        if gtin and serial:
            target = sgtin_item(gtin.strip(), serial.strip())
        elif item:
            target = item_key(item.strip())
        else:
            return render(request, "supply_index.html", error=None)
    except (ValidationError, ContractError) as exc:
        return render(request, "supply_index.html", 400, error=exc.message)
    return RedirectResponse(f"/supply/items/{target}", status_code=303)


@router.get("/supply/items/{item:path}")
async def supply_item(request: Request, item: str) -> Response:
    """An item's custody timeline."""
    node: Node = request.app.state.node
    try:
        key = item_key(item)
        view: dict[str, Any] = await run_in_threadpool(item_timeline, node.store, key)
    except ContractError as exc:
        return error_page(request, 400, "Not an item key", exc.message)
    except NotFoundError as exc:
        return error_page(request, 404, "Unknown item", exc.message)
    return render(request, "supply_item.html", key=key, **view)


__all__ = ["router"]
