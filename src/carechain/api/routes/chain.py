"""Blocks, the genesis document, chain information and signed checkpoints.

Every read is of committed data; handlers are plain ``def`` so FastAPI runs their store reads
in its threadpool. Documents that are signed or hashed (genesis, checkpoints) are served as
the stored bytes, verbatim.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from carechain.api import queries
from carechain.api.deps import NodeDep, problems
from carechain.api.schemas import BlockDetail, BlockList, ChainInfo
from carechain.encoding import MAX_SAFE_INT

router = APIRouter(prefix="/v1")


@router.get(
    "/blocks",
    tags=["blocks"],
    summary="Recent blocks, newest first",
    response_model=BlockList,
    responses=problems(400),
)
def list_blocks(
    request: Request,
    node: NodeDep,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_BLOCKS_PAGE)] = 20,
    before: Annotated[
        int | None, Query(ge=1, description="Only blocks below this height (paging).")
    ] = None,
) -> BlockList:
    """Up to ``limit`` block summaries below ``before`` (default: from the head)."""
    return queries.list_blocks(node, request.app.state.blocks, limit, before)


@router.get(
    "/blocks/{height}",
    tags=["blocks"],
    summary="One block with its header, seal and transactions",
    response_model=BlockDetail,
    responses=problems(400, 404),
)
def get_block(height: Annotated[int, Path(ge=0, le=MAX_SAFE_INT)], node: NodeDep) -> BlockDetail:
    """The canonical header (decoded and as base64url), the seal (null for genesis) and
    each transaction's kind, sender and receipt status."""
    return queries.get_block(node, height)


@router.get(
    "/genesis",
    tags=["chain"],
    summary="The genesis document, verbatim",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}, "description": "Canonical JSON."}},
)
def get_genesis(node: NodeDep) -> Response:
    """The chain's trust root, byte for byte (compare its hash out of band)."""
    return Response(node.genesis.raw, media_type="application/json")


@router.get(
    "/chain",
    tags=["chain"],
    summary="Chain id, origin, head and node keys",
    response_model=ChainInfo,
)
def get_chain(node: NodeDep) -> ChainInfo:
    """What a verifier needs: the checkpoint origin and the node keys that sign it."""
    return queries.chain_info(node)


@router.get(
    "/checkpoint",
    tags=["chain"],
    summary="The signed checkpoint (C2SP signed note), verbatim",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "A C2SP tlog-checkpoint note."},
        **problems(400, 404),
    },
)
def get_checkpoint(
    node: NodeDep,
    height: Annotated[
        # bounded: SQLite integers are 64-bit; a larger one was a 500 (found by fuzzing)
        int | None, Query(ge=0, le=MAX_SAFE_INT, description="Block height (default: head).")
    ] = None,
) -> Response:
    """The checkpoint signed with block ``height``: origin, log size, root, signatures."""
    note = queries.get_checkpoint(node, height)
    return Response(note, media_type="text/plain; charset=utf-8")


__all__ = ["router"]
