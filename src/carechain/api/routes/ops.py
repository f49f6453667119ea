"""Operations: liveness (``/healthz``) and Prometheus metrics (``/metrics``)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from carechain.api.deps import NodeDep
from carechain.api.metrics import CONTENT_TYPE, Metrics
from carechain.api.schemas import Health

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    summary="Liveness of the node",
    response_model=Health,
    responses={503: {"model": Health, "description": "The node stopped after a fatal error."}},
)
def healthz(node: NodeDep) -> JSONResponse:
    """``ok`` while the node commits blocks; ``failed`` (503) after a fatal error."""
    failed = node.failed
    health = Health(
        status="failed" if failed is not None else "ok",
        height=node.store.head_height() or 0,
        log_size=node.store.log_size(),
        mempool=len(node.mempool),
        uptime_s=round(time.monotonic() - node.started_at, 3),
        error=str(failed) if failed is not None else None,
    )
    return JSONResponse(
        health.model_dump(exclude_none=True),
        status_code=503 if failed is not None else 200,
        headers={"Cache-Control": "no-store"},
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Text format 0.0.4."}},
)
def metrics(request: Request, node: NodeDep) -> Response:
    """Height, log size, mempool, submissions, rejections by code and HTTP requests."""
    m: Metrics = request.app.state.metrics
    return Response(m.render(node), media_type=CONTENT_TYPE)


__all__ = ["router"]
