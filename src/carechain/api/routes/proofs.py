"""RFC 9162 inclusion and consistency proofs over the ledger-wide transaction log.

Verify them offline with ``carechain.merkle.verify_inclusion`` / ``verify_consistency``
against a checkpoint opened with ``carechain.merkle.open_checkpoint``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from carechain.api import queries
from carechain.api.deps import NodeDep, parse_hash_hex, problems
from carechain.api.schemas import ConsistencyProofDTO, InclusionProofDTO

router = APIRouter(prefix="/v1/proofs", tags=["proofs"])


@router.get(
    "/inclusion",
    summary="Inclusion proof of a transaction in the log",
    response_model=InclusionProofDTO,
    responses=problems(400, 404),
)
def inclusion(
    node: NodeDep,
    tx: Annotated[str, Query(description="Transaction id, 64 hex digits.")],
    size: Annotated[
        int | None, Query(ge=1, description="Tree size (default: the committed log size).")
    ] = None,
) -> InclusionProofDTO:
    """The audit path of the transaction's envelope (leaf ``SHA-256(0x00 || envelope)``)
    in the log of ``size`` leaves, with that tree's root."""
    return queries.prove_inclusion(node, parse_hash_hex(tx, "tx"), size)


@router.get(
    "/consistency",
    summary="Consistency proof between two log sizes",
    response_model=ConsistencyProofDTO,
    responses=problems(400),
)
def consistency(
    node: NodeDep,
    from_: Annotated[int, Query(alias="from", ge=1, description="Older tree size.")],
    to: Annotated[
        int | None, Query(ge=1, description="Newer tree size (default: the log size).")
    ] = None,
) -> ConsistencyProofDTO:
    """Proof that the log of ``to`` leaves extends the log of ``from`` leaves."""
    return queries.prove_consistency(node, from_, to)


__all__ = ["router"]
