"""The node: accept signed transactions, order them, execute, commit, acknowledge.

Data flow (see docs/ARCHITECTURE.md)::

    submit(raw envelopes)
      1 parse strictly          → ValidationError (400/413/422)
      2 chain, kind, window     → ValidationError
      3 replay (store+mempool)  → DuplicateTransactionError (409)
      4 resolve signer keys     → unknown / revoked / algorithm mismatch (4xx)
      5 verify signatures       → SignatureError
      6 mempool (bounded)       → UnavailableError (503 + Retry-After)
    Steps 1 and 5 run together in the worker pool (node/sigpool.py: raw bytes and the node's
    key hints out, parsed fields and verdicts back); errors are still raised in step order.
    producer thread (group commit: cuts a block as soon as it is free): take →
      orderer.submit → orderer.read → build_block → seal → checkpoint
      → ONE storage transaction → resolve the submitters' futures (acknowledgement)

Invariants: a future resolves only after its block is durably committed; a commit failure is
fatal (``on_fatal`` is called, the producer stops, pending futures fail, nothing more is
acknowledged); a tx id is committed at most once.

Consortium mode (an orderer of kind ``etcd``, ADR 0011): every node reads the same ordered
stream and turns each batch into the same block (:meth:`Node.apply_ordered`: every signature
re-checked against state, at most ``block_max_txs``, proposer ``consortium``, time by
``consortium_block_time``), so headers are byte-identical across nodes. A submission the
orderer cannot order (no quorum) fails its futures with ``no_quorum`` and the node continues;
after each block the node cosigns its checkpoint (node/witness.py) and halts (stops applying,
acknowledges nothing more) if a quorum of organisations cosigned another result. Proposing
(``_propose_loop``) and applying (``_run``) are separate threads; when etcd's history was
compacted below the head the node catches up from its peers' final blocks (node/catchup.py).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import cast

import orjson

from carechain.contracts import ContractRegistry, default_contracts
from carechain.crypto.signatures import PrivateKey
from carechain.encoding import JsonObject, b64u_decode
from carechain.errors import (
    AuthorizationError,
    ConfigurationError,
    DuplicateTransactionError,
    LedgerError,
    SignatureError,
    UnavailableError,
    ValidationError,
)
from carechain.failpoints import failpoint
from carechain.ledger.block import (
    CONSORTIUM_PROPOSER,
    CONSORTIUM_SEAL_KIND,
    BlockHeader,
    consortium_block_time,
    header_hash,
    parse_header,
    sign_header,
)
from carechain.ledger.build import BuiltBlock, build_block
from carechain.ledger.genesis import Genesis
from carechain.ledger.keys import SigCheck, key_state_key, node_state_key, resolve_sig_checks
from carechain.ledger.tx import MAX_SIGNERS, SignedTx, TxId, parse_envelope
from carechain.merkle import Checkpoint, CompactTree, sign_checkpoint
from carechain.node.mempool import Mempool, PendingTx
from carechain.node.miner import PowSealer
from carechain.node.sigpool import BAD_SIGNATURE, UNRESOLVED, SignatureVerifier
from carechain.node.statecache import StateCache
from carechain.node.witness import CosignBoard, DivergenceError, Witness
from carechain.ordering import OrderedBatch, Orderer, SoloOrderer
from carechain.storage import BlockCommit, LedgerStore, StoredBlock

log = logging.getLogger("carechain.node")

MAX_BATCH = 10_000
_MAX_KNOWN_KEYS = 200_000
"""Bound of the node's ``kid -> (alg, pub)`` memo (it starts over past it)."""
_ROTATE = "identity.rotate_key@1"  # failpoint node.commit.key_rotation fires on its blocks


@contextlib.contextmanager
def _naming(i: int, n: int) -> Iterator[None]:
    """Prefix a LedgerError raised inside with the transaction's place in the batch."""
    try:
        yield
    except LedgerError as exc:
        where = f"transactions[{i}]" if n > 1 else "transaction"
        exc.message = f"{where}: {exc.message}"
        exc.args = (exc.message,)
        raise


def now_ms() -> int:
    """Wall-clock time in Unix milliseconds (the node edge; never used by contracts)."""
    return time.time_ns() // 1_000_000


def frame_batch(raws: Sequence[bytes]) -> bytes:
    """Length-prefixed concatenation of envelopes (the orderer's opaque payload)."""
    return b"".join(struct.pack(">I", len(r)) + r for r in raws)


def unframe_batch(payload: bytes) -> list[bytes]:
    """Inverse of :func:`frame_batch`; a malformed tail is dropped deterministically."""
    out, i = [], 0
    while i + 4 <= len(payload):
        (n,) = struct.unpack_from(">I", payload, i)
        if i + 4 + n > len(payload):
            break
        out.append(payload[i + 4 : i + 4 + n])
        i += 4 + n
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Head:
    """The newest committed block as the producer sees it."""

    header: BlockHeader
    """Its header."""
    hash: bytes
    """Its header hash."""
    position: int
    """Last orderer position it consumed."""


class Node:
    """One carechain node over a store, an orderer and a node key."""

    def __init__(
        self,
        store: LedgerStore,
        genesis: Genesis,
        node_key: PrivateKey,
        *,
        contracts: ContractRegistry | None = None,
        orderer: Orderer | None = None,
        verifier: SignatureVerifier | None = None,
        mempool: Mempool | None = None,
        clock: Callable[[], int] = now_ms,
        on_fatal: Callable[[BaseException], None] | None = None,
        consortium: bool | None = None,
    ) -> None:
        """``consortium``: build consortium blocks (default: iff the orderer is ``etcd``)."""
        self.store = store
        self.state = StateCache(store)
        """Committed state, cached; updated by the producer right after each commit."""
        self.genesis = genesis
        self.params = genesis.params
        self.node_key = node_key
        self._node_kid = node_key.kid  # derived from the private key: costly, so once
        self.contracts = contracts or default_contracts()
        self.verifier = verifier or SignatureVerifier()
        self.mempool = mempool if mempool is not None else Mempool()  # an empty pool is falsy
        self.clock = clock
        self.on_fatal = on_fatal
        self.failed: BaseException | None = None
        self._inflight: dict[bytes, PendingTx] = {}
        self._parsed: dict[bytes, SignedTx] = {}
        """Envelopes this node parsed at submission, by raw bytes (spares a re-parse)."""
        self._known_keys: dict[str, tuple[str, bytes]] = {}
        """``kid -> (alg, pub)`` of registered keys seen (immutable facts; bounded)."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[int], None]] = []
        self._closers: list[Callable[[], None]] = []
        self.head = self._open_chain()
        self.log = CompactTree.from_reader(store, self.head.header.log_size)
        self.orderer = orderer or SoloOrderer(start=self.head.position)
        self.consortium = (
            consortium if consortium is not None else self.orderer.kind == CONSORTIUM_SEAL_KIND
        )
        self.miner = None if self.consortium else PowSealer.for_chain(genesis, store)
        """Public chain (ADR 0012): seals blocks by proof of work (node/miner.py)."""
        self.witness: Witness | None = None
        if self.consortium:
            board = self.orderer
            if not hasattr(board, "put_cosignature"):
                raise ConfigurationError(f"orderer {self.orderer.kind!r} cannot hold cosignatures")
            self.witness = Witness(
                key=node_key,
                origin=genesis.origin,
                board=cast(CosignBoard, board),
                store=store,
                params=self.params,
                clock_s=lambda: self.clock() // 1000,
                on_divergence=self.halt,
            )
        self._witness_thread: threading.Thread | None = None
        self._proposer_thread: threading.Thread | None = None
        self.started_at = time.monotonic()

    # -- chain ------------------------------------------------------------------------
    def _open_chain(self) -> Head:
        stored_genesis = self.store.find_meta("genesis")
        if stored_genesis is None:
            self.store.put_meta("genesis", self.genesis.raw)
        elif stored_genesis != self.genesis.raw:
            raise ConfigurationError(
                "this data directory holds another chain's genesis; use a fresh --dir"
            )
        if self.store.head_height() is None:
            cp = Checkpoint(origin=self.genesis.origin, size=0, root=self.genesis.header.log_root)
            self.store.commit_block(
                BlockCommit(
                    block=StoredBlock(
                        height=0,
                        header=self.genesis.header_bytes,
                        signature=b"",
                        envelopes=(),
                        receipts=(),
                    ),
                    header_hash=self.genesis.hash,
                    tx_ids=(),
                    first_log_index=0,
                    merkle_nodes=(),
                    state_writes=self.genesis.writes,
                    checkpoint=sign_checkpoint(cp, self.genesis.origin, self.node_key),
                )
            )
        height = self.store.head_height()
        assert height is not None
        block = self.store.find_block(height)
        assert block is not None
        header = self.genesis.header if height == 0 else parse_header(block.header)
        position = header.seal.get("to", 0)
        return Head(
            header=header,
            hash=header_hash(block.header),
            position=position if isinstance(position, int) else 0,
        )

    # -- submission -----------------------------------------------------------------------
    def _key_hints(self, raws: Sequence[bytes]) -> list[dict[str, tuple[str, bytes]]]:
        """For each envelope, ``kid -> (alg, pub)`` of the registered keys it names.

        A lenient peek at the signers (the worker parses strictly); only a hint: a key id
        the peek misses is resolved again, in this process, from the state.
        """
        named: list[list[str]] = []
        for raw in raws:
            try:
                text = orjson.loads(raw)["body"]
                body = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
                kids = [s["kid"] for s in body["signers"][:MAX_SIGNERS]]
                named.append([k for k in kids if isinstance(k, str)])
            except Exception:  # malformed: the strict parse in the worker names the error
                named.append([])
        known = self._known_keys
        self.state.prefetch(key_state_key(k) for kids in named for k in kids if k not in known)
        out: list[dict[str, tuple[str, bytes]]] = []
        for kids in named:
            hints: dict[str, tuple[str, bytes]] = {}
            for kid in kids:
                found = known.get(kid)
                if found is None:
                    rec = self.state.find_state(key_state_key(kid))
                    if rec is None:
                        continue
                    obj = orjson.loads(rec)
                    found = (str(obj["alg"]), b64u_decode(obj["pub"]))
                    if len(known) >= _MAX_KNOWN_KEYS:
                        known.clear()
                    known[kid] = found  # a kid is bound to (alg, pub) forever (ledger/keys.py)
                hints[kid] = found
            out.append(hints)
        return out

    def check_envelopes(self, raws: Sequence[bytes]) -> list[tuple[SignedTx, list[SigCheck]]]:
        """Steps 1-5 of submission for a batch; raises naming the first bad transaction.

        Parsing (step 1) and verification (step 5) run together in the worker pool; their
        errors are reported in step order: every parse error before any replay, every
        replay before any key error, every key error before any bad signature. Returns each
        transaction with the checks still to run here (empty once a worker verified it).
        """
        if not raws:
            raise ValidationError("no transactions given")
        if len(raws) > MAX_BATCH:
            raise ValidationError(f"a batch holds at most {MAX_BATCH} transactions")
        now = self.clock()
        items = list(zip(raws, self._key_hints(raws), strict=True))
        results = self.verifier.parse_and_verify(items)  # steps 1 and 5, in the workers
        txs: list[SignedTx] = []
        for i, (_, parsed) in enumerate(results):
            if parsed is None:  # step 1, named precisely by parsing again here
                with _naming(i, len(raws)):
                    parsed = parse_envelope(raws[i])
                results[i] = (UNRESOLVED, parsed)  # (cannot happen) re-check it here
            txs.append(parsed)
        self._check_replay([tx.tx_id for tx in txs])  # step 3
        # one store read for every account and key the batch names
        self.state.prefetch(
            key
            for tx in txs
            for key in (f"acct/{tx.body.sender}", *(key_state_key(s.kid) for s in tx.body.signers))
        )
        out: list[tuple[SignedTx, list[SigCheck]]] = []
        bad_signature: int | None = None
        for i, ((status, _), tx) in enumerate(zip(results, txs, strict=True)):
            with _naming(i, len(raws)):
                checks = self._check_one(tx, now, resolve=status == UNRESOLVED)
            if status == BAD_SIGNATURE and bad_signature is None:
                bad_signature = i
            out.append((tx, checks))
        if bad_signature is not None:  # step 5
            where = f"transactions[{bad_signature}]" if len(raws) > 1 else "transaction"
            raise SignatureError(f"{where}: a signature does not verify for the key it names")
        return out

    def _check_replay(self, ids: list[TxId]) -> None:
        if len(set(ids)) != len(ids):
            raise DuplicateTransactionError("the batch holds the same transaction twice")
        for tx_id, seen in zip(ids, self.store.has_tx_ids(ids), strict=True):
            if seen or self.mempool.contains(tx_id) or tx_id in self._inflight:
                raise DuplicateTransactionError(
                    f"transaction {tx_id.hex()} was already accepted (replay)"
                )

    def _check_one(self, tx: SignedTx, now: int, *, resolve: bool) -> list[SigCheck]:
        """Steps 2 and 4 for one transaction; with ``resolve``, its checks to run here."""
        body = tx.body
        if body.chain != self.genesis.chain:  # step 2
            raise ValidationError(
                f"chain id {body.chain!r} does not match this chain {self.genesis.chain!r}",
                code="wrong_chain",
            )
        if self.contracts.handler(body.kind) is None:
            raise ValidationError(
                f"unknown kind {body.kind!r}; known: {', '.join(self.contracts.kinds())}",
                code="unknown_kind",
            )
        if abs(now - body.created) > self.params.tx_window_ms:
            raise ValidationError(
                f"created {body.created} is more than {self.params.tx_window_ms} ms from the "
                f"node's time {now}; check the client's clock and re-sign",
                code="outside_window",
            )
        for signer in body.signers:  # step 4
            rec = self.state.find_state(key_state_key(signer.kid))
            if rec is None:
                continue
            key = orjson.loads(rec)
            if key["alg"] != signer.alg:
                raise ValidationError(
                    f"key {signer.kid} is a {key['alg']} key, the body claims {signer.alg}",
                    code="algorithm_mismatch",
                )
            if key["status"] != "active":
                raise AuthorizationError(
                    f"key {signer.kid} was {key['status']} at block {key.get('revoked_at')}",
                    code="revoked_key",
                )
        if not resolve:
            return []  # a worker resolved every signer's key and verified
        checks = resolve_sig_checks(tx, self.state)
        if checks is None:
            raise ValidationError(
                "a signer's key is not registered on this chain (a key may sign once the "
                "block registering it is committed)",
                code="unknown_key",
            )
        return checks

    def submit(self, raws: Sequence[bytes]) -> list[PendingTx]:
        """Check, verify and enqueue a batch (all or nothing); return futures to wait on."""
        if self.failed is not None:
            raise UnavailableError(
                "the node stopped after a fatal error; restart it", retry_after=5
            )
        checked = self.check_envelopes(raws)
        rest = [(i, checks) for i, (_, checks) in enumerate(checked) if checks]
        if rest:  # keys this process resolved itself (step 5 for them)
            for (i, _), ok in zip(rest, self.verifier.verify([c for _, c in rest]), strict=True):
                if not ok:
                    where = f"transactions[{i}]" if len(raws) > 1 else "transaction"
                    raise SignatureError(
                        f"{where}: a signature does not verify for the key it names"
                    )
        with self._lock:
            for tx, _ in checked:
                if tx.tx_id in self._inflight:
                    raise DuplicateTransactionError(
                        f"transaction {tx.tx_id.hex()} is already pending"
                    )
            # Committed since check_envelopes looked (the producer resolves under this lock):
            # enqueued now, it would be dropped as done and its future would never resolve.
            if any(self.store.has_tx_ids([tx.tx_id for tx, _ in checked])):
                raise DuplicateTransactionError("the transaction was already accepted (replay)")
            pending = self.mempool.add_many([tx for tx, _ in checked])  # step 6
            for p in pending:
                self._inflight[p.tx.tx_id] = p
                self._parsed[p.tx.raw] = p.tx
        return pending

    def submit_and_wait(
        self, raws: Sequence[bytes], timeout: float = 30.0
    ) -> list[tuple[int, int]]:
        """Submit and block until committed; returns ``(height, log_index)`` per tx."""
        return [p.future.result(timeout) for p in self.submit(raws)]

    # -- production ------------------------------------------------------------------------
    def start(self) -> None:
        """Start the block producer thread."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="carechain-producer", daemon=True
            )
            self._thread.start()
        if self.witness is not None and self._witness_thread is None:
            self._witness_thread = threading.Thread(
                target=self._witness_loop, name="carechain-witness", daemon=True
            )
            self._witness_thread.start()
            self._proposer_thread = threading.Thread(
                target=self._propose_loop, name="carechain-proposer", daemon=True
            )
            self._proposer_thread.start()

    def stop(self) -> None:
        """Stop producing (pending transactions stay unacknowledged) and release resources."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        for thread in (self._witness_thread, self._proposer_thread):
            if thread is not None:
                thread.join(timeout=30)
        self._witness_thread = self._proposer_thread = None
        self.verifier.close()
        self.orderer.close()
        while self._closers:
            self._closers.pop()()

    def add_closer(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` when the node stops (e.g. release the data directory's lock)."""
        self._closers.append(fn)

    def add_listener(self, fn: Callable[[int], None]) -> None:
        """Call ``fn(height)`` after each committed block."""
        self._listeners.append(fn)

    def _witness_loop(self) -> None:
        assert self.witness is not None
        while not self._stop.wait(0.1):
            try:
                self.witness.poll()
            except Exception:  # a bug here must not kill the node; it is logged
                log.exception("witness poll failed")

    def _run(self) -> None:
        interval = self.params.block_interval_ms / 1000
        while not self._stop.is_set() and self.failed is None:
            try:
                if self.consortium:
                    self._consortium_step(interval)
                    continue
                if not self.mempool.nonempty.wait(0.05):
                    continue
                # Group commit: cut a block as soon as the producer is free; what arrives
                # while it executes and commits fills the next one, so blocks grow with the
                # load (up to block_max_txs) and stay small, with low latency, when it is
                # light. No transaction waits longer than block_interval_ms.
                self.produce_once()
            except BaseException as exc:
                self._fatal(exc)
                return

    def _propose_loop(self) -> None:
        """Consortium proposer thread: cut batches from the mempool and order them; the
        producer thread applies whatever is ordered (own batches and everyone else's)."""
        interval = self.params.block_interval_ms / 1000
        while not self._stop.is_set() and self.failed is None:
            try:
                if not self.mempool.nonempty.wait(0.05):
                    continue
                deadline = time.monotonic() + interval
                while len(self.mempool) < self.params.block_max_txs and time.monotonic() < deadline:
                    if self._stop.wait(0.002):
                        return
                pending = self.mempool.take(self.params.block_max_txs, self.params.block_max_bytes)
                if pending:
                    try:
                        self.orderer.submit(frame_batch([p.tx.raw for p in pending]))
                    except UnavailableError as exc:
                        self._fail_pending(pending, exc)  # not ordered: nothing acknowledged
                        log.warning("could not order a batch: %s", exc)
                        self._stop.wait(0.2)
            except BaseException as exc:
                self._fatal(exc)
                return

    def _consortium_step(self, interval: float) -> None:
        """Apply everything ordered after the head (waiting briefly on the orderer)."""
        try:
            for batch in self.orderer.read(self.head.position, timeout=0.25):
                if self.failed is not None or self._stop.is_set():
                    return
                self.apply_ordered(batch)
        except UnavailableError as exc:
            if exc.code == "history_compacted":
                peers = list(getattr(self.orderer, "peers", ()))
                if not peers:  # fatal: nowhere to catch up from
                    raise ConfigurationError(f"{exc}; no peers configured") from None
                from carechain.node.catchup import catch_up  # imports this module

                try:
                    if not catch_up(self, peers):  # peers' final height not past ours yet
                        self._stop.wait(1.0)
                except UnavailableError as err:
                    log.warning("%s", err)
                    self._stop.wait(1.0)
                return
            log.warning("ordering unavailable: %s", exc)
            self._stop.wait(0.2)

    def produce_once(self, wait: float | None = None) -> None:
        """Cut one batch from the mempool, order it and apply everything ordered since."""
        pending = self.mempool.take(self.params.block_max_txs, self.params.block_max_bytes)
        if pending:
            try:
                self.orderer.submit(frame_batch([p.tx.raw for p in pending]))
            except UnavailableError as exc:
                self._fail_pending(pending, exc)  # not ordered: nothing acknowledged
                raise
        timeout = wait if wait is not None else 0.0
        for batch in self.orderer.read(self.head.position, timeout=5.0 if pending else timeout):
            if self.failed is not None:
                return
            self.apply_ordered(batch)

    def _fail_pending(self, pending: Sequence[PendingTx], exc: UnavailableError) -> None:
        with self._lock:
            for p in pending:
                self._inflight.pop(p.tx.tx_id, None)
                self._parsed.pop(p.tx.raw, None)
                if not p.future.done():
                    p.future.set_exception(
                        UnavailableError(
                            f"not ordered, not committed: {exc.message}",
                            code=exc.code,
                            retry_after=exc.retry_after,
                        )
                    )

    def apply_ordered(self, batch: OrderedBatch) -> None:
        """Turn one ordered batch into a committed block (deterministic rule)."""
        txs: list[SignedTx] = []
        seen: set[bytes] = set()
        unverified: list[tuple[SignedTx, list[SigCheck]]] = []
        raws = unframe_batch(batch.payload)
        for raw in raws:
            parsed = self._parsed.pop(raw, None)
            try:
                tx = parsed if parsed is not None else parse_envelope(raw)
            except LedgerError:
                continue
            if tx.tx_id in seen:
                continue
            seen.add(tx.tx_id)
            txs.append(tx)
        done = self.store.has_tx_ids([t.tx_id for t in txs])
        txs = [t for t, d in zip(txs, done, strict=True) if not d]
        with self._lock:
            for tx in txs:
                # consortium: every node checks every signature against its own state, so
                # the block never depends on what one node saw at submission
                if self.consortium or tx.tx_id not in self._inflight:
                    checks = resolve_sig_checks(tx, self.state)
                    unverified.append((tx, checks or []))
        if unverified:
            bad = {
                tx.tx_id
                for (tx, checks), ok in zip(
                    unverified, self.verifier.verify([c for _, c in unverified]), strict=True
                )
                if not ok or not checks
            }
            txs = [t for t in txs if t.tx_id not in bad]
        if self.consortium:
            txs = txs[: self.params.block_max_txs]
        if not txs:
            self.head = Head(header=self.head.header, hash=self.head.hash, position=batch.position)
            self.orderer.forget(batch.position)
            return
        self._check_can_seal()
        seal: JsonObject
        if self.consortium:
            proposer = CONSORTIUM_PROPOSER
            seal = {
                "from": batch.position,
                "kind": CONSORTIUM_SEAL_KIND,
                "to": batch.position,
                "ts": batch.timestamp,
            }
            time_ms = consortium_block_time(
                self.head.header.time,
                batch.timestamp,
                max(t.body.created for t in txs),
                self.params.max_clock_skew_ms,
            )
        elif self.miner is not None:  # public chain: pow seal, mined after building
            proposer = self._node_kid
            seal, time_ms = self.miner.seal_for(
                self.head.header, batch.position, txs, batch.timestamp
            )
        else:
            proposer = self._node_kid
            seal = {"from": batch.position, "kind": self.orderer.kind, "to": batch.position}
            time_ms = max(self.head.header.time, batch.timestamp)
        built = build_block(
            self.state,
            parent=self.head.header,
            parent_hash=self.head.hash,
            txs=txs,
            time=time_ms,
            proposer=proposer,
            seal=seal,
            params=self.params,
            contracts=self.contracts,
            log=self.log,
        )
        if self.miner is not None:
            mined = self.miner.mine(built, self._stop.is_set)
            if mined is None:  # stopping: neither committed nor acknowledged
                return
            built = mined
        self._commit(built, txs)
        # the head follows the store at once: readers size proofs by it (api/queries.py)
        self.head = Head(header=built.header, hash=built.hash, position=batch.position)
        self.log = built.log
        failpoint("node.ack.after_commit")  # committed, not yet acknowledged
        if self.witness is not None:
            self.witness.cosign(
                built.header.height, built.hash, built.header.log_size, built.header.log_root
            )
        self.orderer.forget(batch.position)
        first = built.header.log_size - len(txs)
        with self._lock:
            for i, tx in enumerate(txs):
                p = self._inflight.pop(tx.tx_id, None)
                if p is not None and not p.future.done():
                    p.future.set_result((built.header.height, first + i))
        for fn in self._listeners:
            fn(built.header.height)

    def _check_can_seal(self) -> None:
        """Never seal a block ``verify_chain`` rejects: the node key must be an active node key.

        (It stops being one when governance removes its organisation.) Raises
        ConfigurationError, which is fatal: the node stops and acknowledges nothing more.
        """
        raw = self.state.find_state(node_state_key(self._node_kid))
        rec = orjson.loads(raw) if raw is not None else None
        if (
            not isinstance(rec, dict)
            or rec.get("status", "active") != "active"
            or rec.get("alg") != self.node_key.alg
        ):
            raise ConfigurationError(
                f"node key {self._node_kid} is not an active node key of this chain "
                f"({'unregistered' if rec is None else rec.get('status')}); it cannot seal blocks"
            )

    def _commit(self, built: BuiltBlock, txs: Sequence[SignedTx]) -> None:
        seal = sign_header(built.header_bytes, self.node_key)
        cp = Checkpoint(
            origin=self.genesis.origin, size=built.header.log_size, root=built.header.log_root
        )
        first = built.header.log_size - len(txs)
        commit = BlockCommit(
            block=StoredBlock(
                height=built.header.height,
                header=built.header_bytes,
                signature=seal.to_bytes(),
                envelopes=tuple(t.raw for t in txs),
                receipts=built.receipts,
            ),
            header_hash=built.hash,
            tx_ids=tuple(t.tx_id for t in txs),
            first_log_index=first,
            merkle_nodes=built.merkle_nodes,
            state_writes=built.result.writes,
            account_index=tuple((a, first + pos) for a, pos in built.result.touched),
            checkpoint=sign_checkpoint(cp, self.genesis.origin, self.node_key),
        )
        failpoint("node.commit.before_store")
        failpoint("node.commit.key_rotation", lambda: any(t.body.kind == _ROTATE for t in txs))
        self.store.commit_block(commit)  # raises InfrastructureError: fatal (see _run)
        self.state.apply(built.result.writes)

    def halt(self, exc: DivergenceError) -> None:
        """Stop applying (divergence): pending futures fail, nothing more is acknowledged;
        unlike a fatal error the process keeps serving reads and the evidence."""
        self._fatal(exc, call_on_fatal=False)

    def _fatal(self, exc: BaseException, *, call_on_fatal: bool = True) -> None:
        self.failed = exc
        log.critical("fatal: %s; the node stops and acknowledges nothing more", exc)
        with self._lock:
            for p in self._inflight.values():
                if not p.future.done():
                    p.future.set_exception(
                        UnavailableError("the node stopped before committing this transaction")
                    )
            self._inflight.clear()
            self._parsed.clear()
        if self.on_fatal is not None and call_on_fatal:
            self.on_fatal(exc)


__all__ = ["Future", "Head", "Node", "PendingTx", "frame_batch", "now_ms", "unframe_batch"]
