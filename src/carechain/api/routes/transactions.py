"""``/v1/transactions``: submit signed envelopes and read committed transactions.

Submission (GUIDE §2): the request bytes ARE the envelope(s) and reach ``Node.submit``
verbatim, never re-serialised. Steps:

1. bound the body: ``Content-Length`` over 8 MiB is refused before reading, and reading
   stops as soon as the received bytes exceed it (413);
2. split by media type: ``application/json`` is one envelope, ``application/x-ndjson`` one
   envelope per ``\\n``-terminated line (one trailing empty line ignored); others are 415;
3. ``node.submit`` in the threadpool (parse, canonical check, replay, keys, signatures;
   all or nothing, so a rejection commits nothing);
4. with ``wait`` (default), await the commit futures up to ``timeout`` seconds without
   blocking a thread and without ever cancelling the node's futures; read the committed
   receipts. 200 when every transaction is committed, else 202 with ``pending`` results.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Sequence
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query, Request, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from carechain.api import queries
from carechain.api.deps import NodeDep, parse_hash_hex, problems
from carechain.api.metrics import Metrics
from carechain.api.schemas import (
    SubmitResponse,
    TxDetail,
    TxResult,
    committed_result,
    pending_result,
)
from carechain.errors import LedgerError, LimitExceededError, ValidationError
from carechain.node.node import Node, PendingTx

MAX_BODY_BYTES = 8 * 1024 * 1024
"""Largest submission body (a batch of envelopes)."""
MAX_WAIT_S = 60.0
SUBMIT_MEDIA_TYPES = ("application/json", "application/x-ndjson")
_MEDIA_HINT = "send one envelope as application/json or a batch as application/x-ndjson"


router = APIRouter(prefix="/v1/transactions", tags=["transactions"])

_ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Canonical JSON (RFC 8785) envelope, sent byte for byte as signed.",
    "required": ["body", "sigs"],
    "additionalProperties": False,
    "properties": {
        "body": {"type": "string", "description": "base64url of the canonical body bytes"},
        "sigs": {"type": "array", "items": {"type": "string"}, "description": "base64url"},
    },
}


async def read_limited_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refusing (413) more than ``limit`` bytes before reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ValidationError("Content-Length: want a decimal byte count")
        if int(declared) > limit:
            raise LimitExceededError(
                f"request body: Content-Length {declared} exceeds the limit of {limit} bytes; "
                "split the batch"
            )
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise LimitExceededError(
                f"request body: more than the limit of {limit} bytes; split the batch"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def split_envelopes(media_type: str, body: bytes) -> list[bytes]:
    """The envelopes of a submission body (step 2 of the module docstring)."""
    if media_type == "application/json":
        return [body]
    if media_type == "application/x-ndjson":
        lines = body.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        if not lines:
            raise ValidationError("the x-ndjson batch holds no transactions")
        return lines
    raise StarletteHTTPException(415, _MEDIA_HINT)


def _all_done(futures: Sequence[concurrent.futures.Future[Any]]) -> asyncio.Future[None]:
    """An asyncio future that resolves once every one of ``futures`` is done (with a result or
    an exception): one wake-up of the event loop per request, not one per transaction.
    Cancelling it cancels none of ``futures`` (the node's commit futures belong to the block
    producer, whose later ``set_result`` must not fail)."""
    loop = asyncio.get_running_loop()
    mirror: asyncio.Future[None] = loop.create_future()
    left = len(futures)
    lock = threading.Lock()

    def settle() -> None:
        if not mirror.done():
            mirror.set_result(None)

    def on_done(_: concurrent.futures.Future[Any]) -> None:
        nonlocal left
        with lock:
            left -= 1
            last = left == 0
        if last:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
                loop.call_soon_threadsafe(settle)

    if not futures:
        settle()
    for future in futures:
        future.add_done_callback(on_done)
    return mirror


def _receipts(node: Node, done: Sequence[tuple[bytes, int, int]]) -> list[TxResult]:
    out = []
    receipts = node.store.find_receipts([log_index for _, _, log_index in done])
    for (tx_id, height, log_index), receipt in zip(done, receipts, strict=True):
        if receipt is None:  # pragma: no cover - acknowledged only after commit
            out.append(pending_result(tx_id))
        else:
            out.append(committed_result(tx_id, height, log_index, receipt))
    return out


async def _wait(node: Node, pending: list[PendingTx], timeout: float) -> list[TxResult]:
    futures = [p.future for p in pending]
    with contextlib.suppress(TimeoutError):  # what is not committed by then is "pending"
        await asyncio.wait_for(asyncio.shield(_all_done(futures)), timeout)
    for f in futures:  # a fatal node error fails every future: report it (503)
        if f.done() and (exc := f.exception()) is not None:
            raise exc
    done = [(p.tx.tx_id, *p.future.result()) for p in pending if p.future.done()]
    committed = {r.tx_id: r for r in await anyio.to_thread.run_sync(_receipts, node, done)}
    return [committed.get(p.tx.tx_id.hex()) or pending_result(p.tx.tx_id) for p in pending]


@router.post(
    "",
    summary="Submit one signed transaction (JSON) or a batch (NDJSON)",
    response_model=SubmitResponse,
    response_model_exclude_none=True,
    responses={
        202: {"model": SubmitResponse, "description": "Accepted, not (yet) committed."},
        **problems(400, 409, 413, 415, 422, 403, 503),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _ENVELOPE_SCHEMA},
                "application/x-ndjson": {
                    "schema": {"type": "string", "description": "one envelope per line"}
                },
            },
        }
    },
)
async def submit(
    request: Request,
    response: Response,
    node: NodeDep,
    wait: Annotated[bool, Query(description="Wait for the commit.")] = True,
    timeout: Annotated[
        float, Query(gt=0, le=MAX_WAIT_S, description="Seconds to wait for the commit.")
    ] = 10.0,
) -> SubmitResponse:
    """Check, verify and enqueue signed envelopes, all or nothing; optionally await commit.

    A transaction that a contract rejects is still committed, with a ``rejected`` receipt
    (the attempt is evidence); input the node refuses is a problem document and commits
    nothing.
    """
    metrics: Metrics = request.app.state.metrics
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in SUBMIT_MEDIA_TYPES:  # refuse before reading the body
        raise StarletteHTTPException(415, _MEDIA_HINT)
    raws = split_envelopes(media, await read_limited_body(request))
    try:
        pending = await anyio.to_thread.run_sync(node.submit, raws)
    except LedgerError as exc:
        metrics.rejected(exc.code)
        raise
    metrics.submitted(len(pending))
    if not wait:
        response.status_code = 202
        return SubmitResponse(results=[pending_result(p.tx.tx_id) for p in pending])
    results = await _wait(node, pending, timeout)
    for r in results:
        if r.status == "rejected":
            metrics.rejected(r.code or "rejected")
    if any(r.status == "pending" for r in results):
        response.status_code = 202
    return SubmitResponse(results=results)


@router.get(
    "/{tx_id}",
    summary="A committed transaction with its receipt",
    response_model=TxDetail,
    responses=problems(400, 404),
)
def get_transaction(tx_id: str, request: Request, node: NodeDep) -> TxDetail:
    """The envelope exactly as submitted, its decoded body, signatures and receipt."""
    return queries.get_transaction(node, request.app.state.blocks, parse_hash_hex(tx_id))


__all__ = ["MAX_BODY_BYTES", "read_limited_body", "router", "split_envelopes"]
