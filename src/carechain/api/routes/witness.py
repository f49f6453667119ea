"""Cosigned checkpoints of a consortium node (``GET /v1/checkpoint/cosigned``, ADR 0011).

The note is served as the node assembled it from verified cosignatures (C2SP signed note
with ``cosignature/v1`` lines); clients verify every line themselves against the node keys
of the genesis document (the SDK does, with ``Client(require_final=True)``).
"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from carechain.api.deps import NodeDep, problems
from carechain.errors import NotFoundError
from carechain.merkle.cosignature import block_of, checkpoint_of

router = APIRouter(prefix="/v1", tags=["witness"])


class Cosigner(BaseModel):
    """A node whose cosignature over this checkpoint verified."""

    node: str = Field(description="Node key id.")
    org: str = Field(description="Its organisation.")


class CosignedCheckpoint(BaseModel):
    """One height's cosigned checkpoint as this node sees it."""

    height: int
    block_hash: str = Field(description="Header hash, hex.")
    log_size: int
    log_root: str = Field(description="RFC 9162 root, hex.")
    note: str = Field(description="C2SP signed note: checkpoint text + cosignature/v1 lines.")
    final: bool = Field(description="More than the quorum of organisations cosigned it.")
    final_height: int = Field(description="Highest final height this node knows.")
    cosigners: list[Cosigner]
    orgs: list[str] = Field(description="Organisations that cosigned these values.")
    orgs_total: int = Field(description="Organisations running active node keys.")
    quorum: str = Field(description="Fraction to exceed, e.g. '2/3'.")
    status: str = Field(description="'ok', or 'diverged' once this node halted.")
    divergence: dict[str, object] | None = Field(
        default=None, description="Evidence: this node's and the quorum's cosigned notes."
    )
    faulty_peers: dict[str, int] = Field(
        default_factory=dict, description="Peers that cosigned other values → first height."
    )


@router.get(
    "/checkpoint/cosigned",
    summary="The cosigned checkpoint (consortium witnessing)",
    response_model=CosignedCheckpoint,
    responses=problems(400, 404),
)
def get_cosigned(
    node: NodeDep,
    height: Annotated[
        int | None, Query(ge=1, description="Block height (default: newest final, else head).")
    ] = None,
) -> JSONResponse:
    """Every verified cosignature over this node's checkpoint at ``height``, and finality."""
    witness = node.witness
    if witness is None:
        raise NotFoundError(
            "this node runs a private chain (solo ordering): no cosigned checkpoints",
            code="not_consortium",
        )
    witness.poll()
    h = height if height is not None else (witness.final_height or witness.head)
    view = witness.view(h)
    if view is None:
        raise NotFoundError(f"this node holds no cosignature for block {h}", code="not_found")
    cp = checkpoint_of(view.text, node.genesis.origin)
    _, block_hash = block_of(cp)
    state_orgs = _node_orgs(node)
    p = node.params
    body = CosignedCheckpoint(
        height=h,
        block_hash=block_hash.hex(),
        log_size=cp.size,
        log_root=cp.root.hex(),
        note=view.note().decode(),
        final=view.final,
        final_height=witness.final_height,
        cosigners=[Cosigner(node=k, org=state_orgs.get(k, "?")) for k in view.nodes],
        orgs=view.orgs,
        orgs_total=view.orgs_total,
        quorum=f"{p.cosign_quorum_num}/{p.cosign_quorum_den}",
        status="diverged" if witness.divergence is not None else "ok",
        divergence=witness.divergence,
        faulty_peers=dict(witness.faulty_peers),
    )
    return JSONResponse(body.model_dump(), headers={"Cache-Control": "no-store"})


def _node_orgs(node: NodeDep) -> dict[str, str]:
    out = {}
    for key, raw in node.store.iter_state("node/"):
        rec = orjson.loads(raw)
        if isinstance(rec, dict):
            out[key[len("node/") :]] = str(rec.get("org", "?"))
    return out


__all__ = ["router"]
