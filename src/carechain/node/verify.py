"""Verify a stored chain end to end: ``ledger.verify_chain`` plus the store's derived data.

The store's derived copies must agree with the recomputation: step 4 block by block during
the chain pass (a failure there names its block, before any later block is checked), steps
1-3 once the whole chain verified:

1. ``state``: every stored key/value equals the recomputed state (no extra, missing or
   changed key);
2. ``merkle_nodes``: the stored log nodes give the recomputed log root;
3. ``checkpoint``: the newest stored checkpoint names the recomputed size and root and is
   signed by a registered node key;
4. ``block_index`` / ``tx_index``: every header hash and every transaction id (the replay
   index) leads back to its block, position and log index (checked block by block during the
   chain pass, with the ids ``verify_chain`` computed; a failure names its block).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from carechain.contracts import default_contracts
from carechain.crypto.signatures import PublicKeyRecord
from carechain.encoding import b64u_decode
from carechain.errors import ChainVerificationError, LedgerError
from carechain.ledger.genesis import Genesis
from carechain.ledger.tx import SignedTx
from carechain.ledger.verify import VerifyReport, verify_chain
from carechain.merkle import NoteVerifier, open_checkpoint, root_at
from carechain.node.sigpool import SignatureVerifier
from carechain.storage import LedgerStore, TxLocation


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreReport:
    """Result of a full verification."""

    chain: VerifyReport
    """The chain recomputation."""
    state_keys: int
    """Number of state keys compared."""


def note_verifiers(state: dict[str, bytes], origin: str) -> list[NoteVerifier]:
    """Every registered node key as a checkpoint-note verifier named ``origin``."""
    out = []
    for key, raw in state.items():
        if key.startswith("node/"):
            rec = orjson.loads(raw)
            out.append(
                NoteVerifier(
                    origin, PublicKeyRecord(alg=rec["alg"], public=b64u_decode(rec["pub"]))
                )
            )
    return out


def verify_store(
    store: LedgerStore,
    genesis: Genesis,
    *,
    verifier: SignatureVerifier | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> StoreReport:
    """Verify everything in ``store``; raise ``ChainVerificationError`` naming block and field."""
    own = verifier is None
    verifier = verifier or SignatureVerifier()
    try:
        report = verify_chain(
            genesis,
            store.iter_blocks(),
            default_contracts(),
            sig_runner=verifier.verify,
            sig_submit=verifier.verify_async,
            progress=progress,
            check_block=functools.partial(_check_indexes, store),
        )
    finally:
        if own:
            verifier.close()
    head = report.blocks - 1
    stored = dict(store.iter_state())  # step 1
    want = report.state.data
    for key in sorted(set(stored) | set(want)):
        if stored.get(key) != want.get(key):
            raise ChainVerificationError(
                f"stored state key {key!r} differs from the recomputed state",
                height=head,
                field="state",
            )
    size = store.log_size()
    try:  # step 2
        root = root_at(store, size)
    except LedgerError as exc:
        raise ChainVerificationError(str(exc), height=head, field="merkle_nodes") from None
    if root != report.log_root:
        raise ChainVerificationError(
            f"stored log nodes give root {root.hex()}, want {report.log_root.hex()}",
            height=head,
            field="merkle_nodes",
        )
    note = store.find_checkpoint()  # step 3
    if note is None:
        raise ChainVerificationError("no checkpoint stored", height=head, field="checkpoint")
    try:
        cp = open_checkpoint(note, note_verifiers(want, genesis.origin), genesis.origin)
    except LedgerError as exc:
        raise ChainVerificationError(str(exc), height=head, field="checkpoint") from None
    if cp.size != size or cp.root != report.log_root:
        raise ChainVerificationError(
            f"checkpoint names size {cp.size}, want {size}", height=head, field="checkpoint"
        )
    return StoreReport(chain=report, state_keys=len(want))


def _check_indexes(
    store: LedgerStore, h: int, hash_: bytes, first: int, txs: Sequence[SignedTx]
) -> None:
    """Step 4, block by block as ``verify_chain`` accepts them (the transaction ids are the
    ones it computed from the envelopes)."""
    if store.find_height_by_hash(hash_) != h:
        raise ChainVerificationError(
            "the stored header hash does not lead to this block", height=h, field="block_index"
        )
    for position, tx in enumerate(txs):
        want = TxLocation(height=h, position=position, log_index=first + position)
        if store.find_tx(tx.tx_id) != want:
            raise ChainVerificationError(
                f"transaction {tx.tx_id.hex()} is not indexed at {want}",
                height=h,
                field="tx_index",
            )
