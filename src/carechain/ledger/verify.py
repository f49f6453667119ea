"""``verify_chain``: recompute everything from genesis and name the first difference.

For block 0 the stored header must equal the one computed from the genesis document. For every
later block, in order (the first failing step names the block and field):

1. ``header``: canonical and well-formed; ``height`` dense; ``chain`` equal to genesis;
2. ``prev``: equals the previous header's hash;
3. ``time``: not below the previous block's;
4. ``signature``: a seal by ``proposer``, a node key registered in state, that verifies
   (consortium blocks, ``seal.kind == "etcd"``: ``proposer`` is ``consortium``, the seal
   positions increase, and the stored signature is by any active node key);
5. ``envelopes[i]``: canonical and well-formed, never seen before (replay);
   (public chains, ``seal.kind == "pow"``, ADR 0012, before the signature: the seal's shape,
   ``time`` within the public rule, ``seal.bits16`` equal to the retarget rule's value and
   the header hash below its target, ``seal.nonce``);
6. ``envelopes[i].sigs``: every signature verifies against the key it names;
   (consortium blocks: ``time`` equals ``consortium_block_time`` of the seal's ``ts``);
7. rebuild the block (``build_block``) and compare ``txs``, ``tx_root``, ``receipts[i]``,
   ``receipt_root``, ``log_size``, ``log_root``, ``state_root`` and finally the whole header.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson

from carechain.crypto.hashing import Hash32
from carechain.crypto.signatures import check_signature
from carechain.encoding import b64u_decode
from carechain.errors import ChainVerificationError, LedgerError
from carechain.ledger.block import (
    CONSORTIUM_PROPOSER,
    CONSORTIUM_SEAL_KIND,
    BlockHeader,
    consortium_block_time,
    parse_header,
    parse_seal,
    seal_signing_bytes,
)
from carechain.ledger.build import build_block
from carechain.ledger.execute import ContractSet
from carechain.ledger.genesis import Genesis
from carechain.ledger.keys import SigCheck, node_state_key, resolve_sig_checks, run_sig_checks
from carechain.ledger.pow import (
    PowParams,
    check_pow_time,
    check_work,
    is_pow_seal,
    pow_params,
    required_bits16,
    seal_shape_error,
)
from carechain.ledger.tx import SignedTx, parse_envelope
from carechain.merkle import CompactTree


class BlockSource(Protocol):
    """A stored block (``storage.StoredBlock`` satisfies it)."""

    @property
    def height(self) -> int: ...
    @property
    def header(self) -> bytes: ...
    @property
    def signature(self) -> bytes: ...
    @property
    def envelopes(self) -> tuple[bytes, ...]: ...
    @property
    def receipts(self) -> tuple[bytes, ...]: ...


SigRunner = Callable[[Sequence[list[SigCheck]]], list[bool]]
"""Checks many transactions' signatures (possibly in parallel); one bool per transaction."""


def sequential_sig_runner(batches: Sequence[list[SigCheck]]) -> list[bool]:
    """Check signatures in this process."""
    return [run_sig_checks(b) for b in batches]


SigSubmit = Callable[[Sequence[list[SigCheck]]], Callable[[], list[bool]]]
"""Starts checking many transactions' signatures and returns a function that waits for the
result (one bool per transaction): the node's worker pool checks block ``h``'s signatures while
this process re-executes block ``h``. The verdict is the same as a :data:`SigRunner`'s."""


BlockCheck = Callable[[int, Hash32, int, Sequence[SignedTx]], None]
"""``check(height, header_hash, first_log_index, txs)`` of a verified block: a caller's own
checks of what it derived from the block (``node.verify`` checks the store's indexes);
raises ChainVerificationError."""


class DictState:
    """A plain in-memory state, updated block by block during verification."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def find_state(self, key: str) -> bytes | None:
        return self.data.get(key)

    def apply(self, writes: Iterable[tuple[str, bytes | None]]) -> None:
        for key, value in writes:
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyReport:
    """What a successful verification covered."""

    blocks: int
    """Blocks checked, genesis included."""
    txs: int
    """Transactions checked."""
    head_hash: Hash32
    """Hash of the last header."""
    log_root: Hash32
    """Log root after the last block."""
    state: DictState
    """The recomputed state (to compare with the stored one)."""


def _fail(height: int, field: str, message: str) -> ChainVerificationError:
    return ChainVerificationError(message, height=height, field=field)


def _is_consortium(header: BlockHeader) -> bool:
    return header.seal.get("kind") == CONSORTIUM_SEAL_KIND


def _check_consortium_seal(header: BlockHeader, prev: BlockHeader) -> int:
    """Step 4 for a consortium header: its seal shape and position; returns ``seal.ts``."""
    h, seal = header.height, header.seal
    if header.proposer != CONSORTIUM_PROPOSER:
        raise _fail(h, "proposer", f"got {header.proposer!r}, want {CONSORTIUM_PROPOSER!r}")
    fields = {"from", "kind", "to", "ts"}
    if set(seal) != fields or not all(
        isinstance(seal[k], int) and not isinstance(seal[k], bool) for k in fields - {"kind"}
    ):
        raise _fail(h, "seal", f"want exactly the fields {sorted(fields)} (integers)")
    start, end, ts = seal["from"], seal["to"], seal["ts"]
    assert isinstance(start, int) and isinstance(end, int) and isinstance(ts, int)
    prev_to = prev.seal.get("to", 0) if _is_consortium(prev) else 0
    if start != end or not isinstance(prev_to, int) or end <= prev_to:
        raise _fail(h, "seal", f"position {start}..{end} does not follow {prev_to}")
    return ts


def _newest_created(envelopes: Sequence[bytes]) -> int | None:
    """Newest ``created`` among the parsable envelopes (step 5 names unparsable ones)."""
    created = []
    for raw in envelopes:
        try:
            created.append(parse_envelope(raw).body.created)
        except LedgerError:
            continue
    return max(created) if created else None


def _check_pow(
    p: PowParams,
    header: BlockHeader,
    prev: BlockHeader,
    hash_: bytes,
    envelopes: Sequence[bytes],
    epoch_times: dict[int, int],
) -> None:
    """Step 4 for a public chain (ADR 0012): seal shape, time rule, difficulty, work."""
    h, seal = header.height, header.seal
    if not is_pow_seal(seal):
        raise _fail(h, "seal", f"got kind {seal.get('kind')!r}, want 'pow' (a public chain)")
    why = seal_shape_error(seal)
    if why is not None:
        raise _fail(h, "seal", why)
    if not envelopes:
        raise _fail(h, "txs", "a proof-of-work block holds at least one transaction")
    created = _newest_created(envelopes)
    skew = p.max_clock_skew_ms
    if created is not None and not check_pow_time(header.time, prev.time, created, skew):
        raise _fail(
            h, "time", f"{header.time} is more than {skew} ms past the newest created {created}"
        )
    prev_bits = prev.seal.get("bits16") if is_pow_seal(prev.seal) else p.initial_bits16
    assert isinstance(prev_bits, int)
    want = required_bits16(p, h, prev_bits, epoch_times.__getitem__)
    if seal["bits16"] != want:
        raise _fail(h, "seal.bits16", f"got {seal['bits16']}, want {want} (retarget rule)")
    if not check_work(hash_, want):
        raise _fail(
            h, "seal.nonce", f"header hash {hash_.hex()} is not below the target of {want}/16 bits"
        )


def _check_seal(state: DictState, header: BlockHeader, hash_: bytes, signature: bytes) -> None:
    h = header.height
    try:
        seal = parse_seal(signature)
    except LedgerError as exc:
        raise _fail(h, "signature", str(exc)) from None
    if _is_consortium(header):
        pass  # the storing node's own seal: any active node key (checked below)
    elif seal.kid != header.proposer:
        raise _fail(h, "signature", f"sealed by {seal.kid}, header names {header.proposer}")
    raw = state.find_state(node_state_key(seal.kid))
    if raw is None:
        raise _fail(h, "signature", f"proposer {seal.kid} is not a registered node key")
    rec = orjson.loads(raw)
    if rec.get("status", "active") != "active" or rec["alg"] != seal.alg:
        raise _fail(h, "signature", f"proposer key {seal.kid} is not active for {seal.alg}")
    if not check_signature(seal.alg, b64u_decode(rec["pub"]), seal_signing_bytes(hash_), seal.sig):
        raise _fail(h, "signature", "proposer signature does not verify")


def verify_chain(
    genesis: Genesis,
    blocks: Iterable[BlockSource],
    contracts: ContractSet,
    *,
    sig_runner: SigRunner = sequential_sig_runner,
    sig_submit: SigSubmit | None = None,
    progress: Callable[[int, int], None] | None = None,
    check_block: BlockCheck | None = None,
) -> VerifyReport:
    """Verify ``blocks`` (block 0 first) against ``genesis``; raise ChainVerificationError.

    With ``sig_submit``, a block's signatures are checked while it is re-executed (overlap);
    nothing of the block is accepted, and nothing else of it is compared, before they pass.
    ``check_block`` runs on each block once it verified (block 0 included).
    """
    from carechain.ledger.block import header_hash  # local: keeps the import list short

    state = DictState()
    log = CompactTree()
    seen: set[bytes] = set()
    prev: BlockHeader | None = None
    prev_hash = Hash32(b"")
    count = txs_total = 0
    pow_rule = pow_params(genesis.params)
    epoch_times = {0: genesis.header.time}
    """Block times at multiples of ``pow_retarget_blocks`` (what the retarget reads)."""
    for stored in blocks:
        h = count
        if stored.height != h:
            raise _fail(h, "height", f"got block {stored.height}, want {h}")
        if h == 0:
            if stored.header != genesis.header_bytes:
                raise _fail(0, "header", "differs from the block 0 computed from genesis")
            if stored.envelopes or stored.receipts:
                raise _fail(0, "envelopes", "genesis block must hold no transactions")
            if stored.signature:
                raise _fail(0, "signature", "genesis block carries no signature")
            state.apply(genesis.writes)
            prev, prev_hash = genesis.header, genesis.hash
            if check_block is not None:
                check_block(0, genesis.hash, 0, ())
            count += 1
            continue
        assert prev is not None
        try:  # step 1
            header = parse_header(stored.header)
        except LedgerError as exc:
            raise _fail(h, "header", str(exc)) from None
        if header.height != h or header.chain != genesis.chain:
            raise _fail(h, "header", f"names height {header.height} of chain {header.chain!r}")
        if header.prev != prev_hash:  # step 2
            raise _fail(h, "prev", "does not equal the previous header's hash")
        if header.time < prev.time:  # step 3
            raise _fail(h, "time", f"{header.time} is before the previous block's {prev.time}")
        this_hash = header_hash(stored.header)
        proposed = _check_consortium_seal(header, prev) if _is_consortium(header) else None
        if pow_rule is not None:  # step 4, public chain (ADR 0012)
            _check_pow(pow_rule, header, prev, this_hash, stored.envelopes, epoch_times)
            if h % pow_rule.retarget_blocks == 0:
                epoch_times[h] = header.time
        elif is_pow_seal(header.seal):
            raise _fail(h, "seal", "a proof-of-work seal on a chain without proof of work")
        _check_seal(state, header, this_hash, stored.signature)  # step 4
        if len(stored.receipts) != len(stored.envelopes):
            raise _fail(
                h, "receipts", f"{len(stored.receipts)} receipts for {len(stored.envelopes)} txs"
            )
        txs: list[SignedTx] = []
        for i, raw in enumerate(stored.envelopes):  # step 5
            try:
                tx = parse_envelope(raw)
            except LedgerError as exc:
                raise _fail(h, f"envelopes[{i}]", str(exc)) from None
            if tx.tx_id in seen:
                raise _fail(h, f"envelopes[{i}]", f"replay of transaction {tx.tx_id.hex()}")
            seen.add(tx.tx_id)
            txs.append(tx)
        if proposed is not None and not txs:
            raise _fail(h, "txs", "a consortium block holds at least one transaction")
        if proposed is not None:  # step 5, consortium block time
            want_time = consortium_block_time(
                prev.time,
                proposed,
                max(tx.body.created for tx in txs),
                genesis.params.max_clock_skew_ms,
            )
            if header.time != want_time:
                raise _fail(h, "time", f"got {header.time}, want {want_time} (consortium rule)")
        batches = []
        for i, tx in enumerate(txs):  # step 6
            checks = resolve_sig_checks(tx, state)
            if checks is None:
                raise _fail(h, f"envelopes[{i}].sigs", "signed by a key unknown at this height")
            batches.append(checks)
        wait_sigs = sig_submit(batches) if sig_submit is not None and batches else None
        if wait_sigs is None:
            _check_sigs(h, sig_runner(batches))
        try:
            built = build_block(  # step 7 (state is not touched until every check passed)
                state,
                parent=prev,
                parent_hash=prev_hash,
                txs=txs,
                time=header.time,
                proposer=header.proposer,
                seal=header.seal,
                params=genesis.params,
                contracts=contracts,
                log=log,
            )
        finally:
            if wait_sigs is not None:  # step 6's verdict first, also when execution raised
                _check_sigs(h, wait_sigs())
        _compare(h, header, built.header, built.receipts, stored.receipts)
        if built.header_bytes != stored.header:
            raise _fail(h, "header", "differs from the recomputed header")
        state.apply(built.result.writes)
        log = built.log
        prev, prev_hash = header, this_hash
        count += 1
        txs_total += len(txs)
        if check_block is not None:
            check_block(h, this_hash, header.log_size - len(txs), txs)
        if progress is not None:
            progress(h, len(txs))
    if count == 0:
        raise _fail(0, "header", "the chain has no genesis block")
    return VerifyReport(
        blocks=count, txs=txs_total, head_hash=prev_hash, log_root=Hash32(log.root()), state=state
    )


def _check_sigs(h: int, verdicts: Sequence[bool]) -> None:
    for i, ok in enumerate(verdicts):
        if not ok:
            raise _fail(h, f"envelopes[{i}].sigs", "a signature does not verify")


def _compare(
    h: int,
    got: BlockHeader,
    want: BlockHeader,
    want_receipts: Sequence[bytes],
    got_receipts: Sequence[bytes],
) -> None:
    if got.txs != want.txs:
        raise _fail(h, "txs", f"got {got.txs}, want {want.txs}")
    if got.tx_root != want.tx_root:
        raise _fail(h, "tx_root", f"got {got.tx_root.hex()}, want {want.tx_root.hex()}")
    for i, (g, w) in enumerate(zip(got_receipts, want_receipts, strict=True)):
        if g != w:
            raise _fail(h, f"receipts[{i}]", "stored receipt differs from the recomputed one")
    for name in ("receipt_root", "log_size", "log_root", "state_root"):
        g, w = getattr(got, name), getattr(want, name)
        if g != w:
            gs = g.hex() if isinstance(g, bytes) else g
            ws = w.hex() if isinstance(w, bytes) else w
            raise _fail(h, name, f"got {gs}, want {ws}")
