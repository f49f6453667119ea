"""Catching up from peers' APIs when the etcd history this node needs was compacted.

Steps (a peer is trusted for nothing a quorum did not cosign):

1. ``GET /v1/checkpoint/cosigned`` from a peer; verify every cosignature with the node keys
   active in this node's state and require the quorum (``verify_final``): that gives a
   final height ``F`` and its block hash;
2. fetch the headers ``head+1 .. F`` (``GET /v1/blocks/{h}``): each must link to the previous
   one (``prev``) starting from this node's head, and header ``F`` must hash to the final hash,
   so the whole range is authenticated by the quorum;
3. per block, fetch the envelopes (``GET /v1/transactions/{id}``), check they give the
   header's ``tx_root``, and replay them through the node's own deterministic rule
   (:meth:`Node.apply_ordered` with the seal's position and proposer time): this node
   executes every transaction itself;
4. the block it built must hash to the peer's header; otherwise its execution differs from the
   quorum's and it halts (divergence), having applied nothing unauthenticated.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import httpx
import orjson

from carechain.crypto.signatures import PublicKeyRecord
from carechain.encoding import b64u_decode
from carechain.errors import LedgerError, UnavailableError, VerificationError
from carechain.ledger.block import header_hash, parse_header
from carechain.ledger.build import block_root
from carechain.ledger.tx import parse_envelope
from carechain.merkle.cosignature import Cosigner, block_of, verify_final
from carechain.node.node import frame_batch
from carechain.node.witness import DivergenceError
from carechain.ordering.abc import OrderedBatch

if TYPE_CHECKING:
    from carechain.node.node import Node

log = logging.getLogger("carechain.catchup")


def _cosigners(node: Node) -> list[tuple[str, Cosigner]]:
    out = []
    for key, raw in node.store.iter_state("node/"):
        rec = orjson.loads(raw)
        if isinstance(rec, dict) and rec.get("status", "active") == "active":
            record = PublicKeyRecord(alg=str(rec["alg"]), public=b64u_decode(str(rec["pub"])))
            out.append((str(rec.get("org")), Cosigner(str(rec.get("name")), record, key[5:])))
    return out


def final_from_peer(node: Node, http: httpx.Client) -> tuple[int, bytes]:
    """Step 1: the peer's newest final height and block hash, verified here."""
    body = orjson.loads(http.get("/v1/checkpoint/cosigned").raise_for_status().content)
    opened = verify_final(
        str(body.get("note", "")).encode(),
        _cosigners(node),
        node.genesis.origin,
        num=node.params.cosign_quorum_num,
        den=node.params.cosign_quorum_den,
    )
    return block_of(opened.checkpoint)


def catch_up(node: Node, peers: Sequence[str]) -> int:
    """Apply final blocks fetched from the first peer that answers; returns blocks applied.

    Raises UnavailableError when no peer can help, VerificationError when a peer's data does
    not check out (the next peer is tried first).
    """
    errors: list[str] = []
    for url in peers:
        try:
            with httpx.Client(base_url=url.rstrip("/"), timeout=30) as http:
                return _catch_up_from(node, http)
        except (httpx.HTTPError, LedgerError, ValueError, KeyError) as exc:
            if node.failed is not None:
                raise
            errors.append(f"{url}: {exc}")
            log.warning("catching up from %s failed: %s", url, exc)
    raise UnavailableError(
        "could not catch up from any peer: " + ("; ".join(errors) or "no peers configured"),
        code="history_compacted",
    )


def _catch_up_from(node: Node, http: httpx.Client) -> int:
    final, final_hash = final_from_peer(node, http)  # step 1
    start = node.head.header.height + 1
    if final < start:
        return 0
    headers: list[bytes] = []
    prev = node.head.hash
    for h in range(start, final + 1):  # step 2
        detail = orjson.loads(http.get(f"/v1/blocks/{h}").raise_for_status().content)
        raw = b64u_decode(detail["header_b64"])
        header = parse_header(raw)
        if header.height != h or header.prev != prev:
            raise VerificationError(f"peer block {h}: does not link to block {h - 1}")
        prev = header_hash(raw)
        headers.append(raw)
    if prev != final_hash:
        raise VerificationError(f"peer block {final}: hash differs from the final cosigned one")
    for raw in headers:  # steps 3-4
        header = parse_header(raw)
        detail = orjson.loads(http.get(f"/v1/blocks/{header.height}").content)
        envelopes = []
        for t in detail["transactions"]:
            tx_body = orjson.loads(http.get(f"/v1/transactions/{t['tx_id']}").content)
            env = b64u_decode(tx_body["envelope_b64"])
            if parse_envelope(env).tx_id.hex() != t["tx_id"]:
                raise VerificationError(f"peer block {header.height}: envelope/tx id mismatch")
            envelopes.append(env)
        if block_root(envelopes) != header.tx_root:
            raise VerificationError(f"peer block {header.height}: envelopes do not give tx_root")
        to, ts = header.seal.get("to"), header.seal.get("ts")
        if not isinstance(to, int) or not isinstance(ts, int):
            raise VerificationError(f"peer block {header.height}: not a consortium block")
        node.apply_ordered(OrderedBatch(position=to, timestamp=ts, payload=frame_batch(envelopes)))
        if node.head.hash != header_hash(raw):
            diverged = DivergenceError(
                f"diverged at block {header.height}: this node computed another block than "
                "the one a quorum finalised; it stops applying"
            )
            node.halt(diverged)
            raise diverged
    log.info("caught up %d blocks from a peer (final height %d)", len(headers), final)
    return len(headers)


__all__ = ["catch_up", "final_from_peer"]
