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

A node of an organisation admitted later (node/join.py) has no active node key for the
blocks up to its admission: it rebuilds those the same way (``_apply_adopted``: every
signature checked, the block rebuilt and compared byte for byte with the final header) and
stores the peer's seal, after checking it is by a node key active at that height, so
``carechain verify`` passes unchanged. Once its key is active it tells its orderer
(``note_admitted``) and reads etcd itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

import httpx
import orjson

from carechain.crypto.signatures import PublicKeyRecord, check_signature
from carechain.encoding import b64u_decode
from carechain.errors import LedgerError, UnavailableError, VerificationError
from carechain.ledger.block import (
    CONSORTIUM_PROPOSER,
    Seal,
    consortium_block_time,
    header_hash,
    parse_header,
    seal_signing_bytes,
)
from carechain.ledger.build import block_root, build_block
from carechain.ledger.keys import node_state_key, resolve_sig_checks
from carechain.ledger.tx import parse_envelope
from carechain.merkle import NoteVerifier, open_checkpoint
from carechain.merkle.cosignature import Cosigner, block_of, verify_final
from carechain.node.node import Head, frame_batch
from carechain.node.witness import DivergenceError
from carechain.ordering.abc import OrderedBatch
from carechain.storage import BlockCommit, StoredBlock

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
    if _joining(node) and _note_admitted(node):
        return 0  # a joined node admitted earlier (restart): etcd first
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
    joining = _joining(node)
    for raw in headers:  # steps 3-4
        header = parse_header(raw)
        detail = orjson.loads(http.get(f"/v1/blocks/{header.height}").content)
        if joining and _note_admitted(node):  # joined node, key now active: etcd next
            break
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
        if _key_active(node):
            node.apply_ordered(
                OrderedBatch(position=to, timestamp=ts, payload=frame_batch(envelopes))
            )
        else:
            note = http.get("/v1/checkpoint", params={"height": header.height}).content
            _apply_adopted(node, raw, envelopes, detail.get("seal"), ts, note)
        if node.head.hash != header_hash(raw):
            diverged = DivergenceError(
                f"diverged at block {header.height}: this node computed another block than "
                "the one a quorum finalised; it stops applying"
            )
            node.halt(diverged)
            raise diverged
    applied = node.head.header.height - start + 1
    log.info("caught up %d blocks from a peer (final height %d)", applied, final)
    _note_admitted(node)
    return applied


def _key_active(node: Node) -> bool:
    raw = node.state.find_state(node_state_key(node.node_key.kid))
    rec = orjson.loads(raw) if raw is not None else None
    return isinstance(rec, dict) and rec.get("status", "active") == "active"


def _joining(node: Node) -> bool:
    """A joined node whose orderer still waits for its admission (node/join.py)."""
    return getattr(node.orderer, "admitted", True) is False


def _note_admitted(node: Node) -> bool:
    """Tell a joining node's orderer whether its key is active now; True if it is."""
    hook = getattr(node.orderer, "note_admitted", None)
    if hook is None:
        return False
    active = _key_active(node)
    hook(active)
    return active


def _apply_adopted(
    node: Node, raw: bytes, envelopes: list[bytes], seal_obj: object, ts: int, note: bytes
) -> None:
    """Apply a final block this node cannot sign for (its key was not active yet): rebuild
    it from the envelopes, require the exact final header, store the peer's seal and signed
    checkpoint (each by a node key active at that height)."""
    header = parse_header(raw)
    h = header.height
    if not isinstance(seal_obj, dict):
        raise VerificationError(f"peer block {h}: no seal")
    seal = Seal(
        alg=str(seal_obj.get("alg")),
        kid=str(seal_obj.get("kid")),
        sig=b64u_decode(str(seal_obj.get("sig"))),
    )
    hash_ = header_hash(raw)
    rec_raw = node.state.find_state(node_state_key(seal.kid))
    rec = orjson.loads(rec_raw) if rec_raw is not None else None
    if (
        not isinstance(rec, dict)
        or rec.get("status", "active") != "active"
        or rec.get("alg") != seal.alg
        or not check_signature(
            seal.alg, b64u_decode(str(rec["pub"])), seal_signing_bytes(hash_), seal.sig
        )
    ):
        raise VerificationError(f"peer block {h}: its seal is not by an active node key")
    verifiers = [NoteVerifier(node.genesis.origin, c.record) for _, c in _cosigners(node)]
    cp = open_checkpoint(note, verifiers, node.genesis.origin)
    if (cp.size, cp.root) != (header.log_size, header.log_root):
        raise VerificationError(f"peer checkpoint {h}: size/root differ from the final header")
    txs = [parse_envelope(e) for e in envelopes]
    checks = [resolve_sig_checks(tx, node.state) for tx in txs]
    oks = node.verifier.verify([c or [] for c in checks]) if txs else []
    if not txs or not all(c and ok for c, ok in zip(checks, oks, strict=True)):
        _diverged(node, h)
    built = build_block(
        node.state,
        parent=node.head.header,
        parent_hash=node.head.hash,
        txs=txs,
        time=header.time,
        proposer=CONSORTIUM_PROPOSER,
        seal=header.seal,
        params=node.params,
        contracts=node.contracts,
        log=node.log,
    )
    want_time = consortium_block_time(
        node.head.header.time,
        ts,
        max(t.body.created for t in txs),
        node.params.max_clock_skew_ms,
    )
    if built.header_bytes != raw or header.time != want_time:
        _diverged(node, h)
    first = built.header.log_size - len(txs)
    node.store.commit_block(
        BlockCommit(
            block=StoredBlock(
                height=h,
                header=raw,
                signature=seal.to_bytes(),
                envelopes=tuple(envelopes),
                receipts=built.receipts,
            ),
            header_hash=hash_,
            tx_ids=tuple(t.tx_id for t in txs),
            first_log_index=first,
            merkle_nodes=built.merkle_nodes,
            state_writes=built.result.writes,
            account_index=tuple((a, first + pos) for a, pos in built.result.touched),
            checkpoint=note,
        )
    )
    node.state.apply(built.result.writes)
    if node.witness is not None:
        node.witness.cosign(h, hash_, header.log_size, header.log_root)
    to = header.seal.get("to")
    node.head = Head(header=header, hash=hash_, position=to if isinstance(to, int) else 0)
    node.log = built.log


def _diverged(node: Node, height: int) -> NoReturn:
    diverged = DivergenceError(
        f"diverged at block {height}: this node computed another block than the one a "
        "quorum finalised; it stops applying"
    )
    node.halt(diverged)
    raise diverged


__all__ = ["catch_up", "final_from_peer"]
