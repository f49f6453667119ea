"""Signature verification in a process pool sized to the cores: the CPU floor of the node.

Two kinds of work go to the workers, both as plain bytes and tuples (cheap to pickle):

* :meth:`SignatureVerifier.verify`: resolved checks ``(alg, public, message, signature)``;
* :meth:`SignatureVerifier.parse_and_verify`: raw envelopes plus the public keys the node
  already knows for the key ids they name. The worker parses each envelope strictly
  (``parse_envelope``: canonical form, limits, schema, tx id), resolves every signer the way
  :func:`carechain.ledger.keys.resolve_sig_checks` does (the state's record first, else a key
  the transaction introduces) and verifies, then returns the parsed transaction. Parsing is
  the node's largest per-transaction cost after verification, so the node's own process (one
  core, the GIL) is left with execution and the commit.

Small batches are handled in-process (a pool round trip costs more than a few signatures).
Workers come from a ``forkserver``: forking the node itself would copy locks held by its
other threads (SQLite readers, the producer) into the child and can deadlock it.

Invariant: a worker never decides anything the node does not re-check: a result is a pure
function of the bytes sent (the same as running the check in-process).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from carechain.crypto.signatures import check_signature
from carechain.errors import LedgerError
from carechain.ledger.keys import SigCheck, introduced_keys
from carechain.ledger.tx import SignedTx, Signer, TxBody, parse_envelope, signing_bytes

INLINE_BELOW = 16
"""Batches smaller than this are parsed and verified in the calling process."""

KeyHints = Mapping[str, tuple[str, bytes]]
"""``kid -> (alg, public key)`` for the registered keys an envelope names."""
RawCheck = tuple[str, bytes, bytes, bytes]
"""``(alg, public, message, signature)``: one signature check as plain values."""

OK = 0
"""Parsed, every signer resolved, every signature verifies."""
BAD_SIGNATURE = 1
"""Parsed and resolved, a signature does not verify."""
UNRESOLVED = 2
"""Parsed; a signer's key is neither in the hints nor introduced by the transaction."""
UNPARSABLE = 3
"""``parse_envelope`` refused the bytes (the caller re-parses to name the error)."""

Parsed = tuple[int, SignedTx | None]
"""One result of :func:`parse_and_verify_one`."""
Flat = tuple[int, tuple[Any, ...] | None]
"""A :data:`Parsed` as the worker sends it back: the transaction's fields as plain values,
without the envelope bytes the caller holds (pickled dataclasses cost several times more)."""

T = TypeVar("T")
R = TypeVar("R")


def _verify_chunk(batches: list[list[RawCheck]]) -> list[bool]:
    return [all(check_signature(*c) for c in b) for b in batches]


def parse_and_verify_one(raw: bytes, hints: KeyHints) -> Parsed:
    """Parse ``raw`` and verify its signatures with keys from ``hints`` or the tx itself."""
    try:
        tx = parse_envelope(raw)
    except LedgerError:
        return UNPARSABLE, None
    msg = signing_bytes(tx.body_bytes)
    introduced: dict[str, tuple[str, bytes]] | None = None
    checks: list[RawCheck] = []
    for signer, sig in zip(tx.body.signers, tx.sigs, strict=True):
        found = hints.get(signer.kid)
        if found is None:
            if introduced is None:
                introduced = introduced_keys(tx)
            found = introduced.get(signer.kid)
            if found is None:
                return UNRESOLVED, tx
        alg, pub = found
        if alg != signer.alg:  # the kid is bound to (alg, pub): a substitution attempt
            alg, pub = signer.alg, b""
        checks.append((alg, pub, msg, sig))
    return (OK if all(check_signature(*c) for c in checks) else BAD_SIGNATURE), tx


def _flatten(result: Parsed) -> Flat:
    status, tx = result
    if tx is None:
        return status, None
    b = tx.body
    signers = tuple((s.alg, s.kid) for s in b.signers)
    return status, (tx.body_bytes, tx.sigs, tx.tx_id, b.chain, b.kind, b.sender, b.created,
                    b.nonce, b.args, signers)  # fmt: skip


def _unflatten(raw: bytes, flat: Flat) -> Parsed:
    """The SignedTx ``parse_envelope(raw)`` built in the worker, reassembled field by field."""
    status, fields = flat
    if fields is None:
        return status, None
    body_bytes, sigs, tx_id, chain, kind, sender, created, nonce, args, signers = fields
    body = TxBody(
        chain=chain, kind=kind, sender=sender, created=created, nonce=nonce, args=args,
        signers=tuple(Signer(alg=alg, kid=kid) for alg, kid in signers),
    )  # fmt: skip
    return status, SignedTx(raw=raw, body_bytes=body_bytes, body=body, sigs=sigs, tx_id=tx_id)


def parse_and_verify_chunk(items: list[tuple[bytes, KeyHints]]) -> list[Flat]:
    """:func:`parse_and_verify_one` over a chunk (the unit of work of one worker task)."""
    return [_flatten(parse_and_verify_one(raw, hints)) for raw, hints in items]


def _split(items: Sequence[T], parts: int) -> list[list[T]]:
    size = max(1, (len(items) + parts - 1) // parts)
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


class SignatureVerifier:
    """Verifies batches of transactions' signature checks, in parallel when worth it."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        return self._pool

    def warm_up(self) -> None:
        """Start the workers now rather than on the first large batch."""
        if self.workers > 1:
            list(self._get_pool().map(_verify_chunk, [[]] * self.workers))

    def _parallel(
        self, items: Sequence[T], fn: Callable[[list[T]], list[R]], parts: int
    ) -> list[R]:
        out: list[R] = []
        for res in self._get_pool().map(fn, _split(items, parts)):
            out.extend(res)
        return out

    def verify(self, batches: Sequence[list[SigCheck]]) -> list[bool]:
        """One bool per transaction: do all its signatures verify?"""
        plain = [[(c.alg, c.public, c.message, c.signature) for c in b] for b in batches]
        if self.workers <= 1 or len(plain) < INLINE_BELOW:
            return _verify_chunk(plain)
        # few tasks per worker: each task costs a pickling round trip in this process
        return self._parallel(plain, _verify_chunk, 2 * self.workers)

    def verify_async(self, batches: Sequence[list[SigCheck]]) -> Callable[[], list[bool]]:
        """Start :meth:`verify` in the workers; returns a function waiting for its result
        (``verify_chain``'s ``sig_submit``: the caller re-executes the block meanwhile)."""
        plain = [[(c.alg, c.public, c.message, c.signature) for c in b] for b in batches]
        if self.workers <= 1 or len(plain) < INLINE_BELOW:
            return lambda: _verify_chunk(plain)
        pool = self._get_pool()
        futures = [pool.submit(_verify_chunk, part) for part in _split(plain, 2 * self.workers)]
        return lambda: [ok for f in futures for ok in f.result()]

    def parse_and_verify(self, items: Sequence[tuple[bytes, KeyHints]]) -> list[Parsed]:
        """:func:`parse_and_verify_one` for each ``(raw, hints)``, in parallel when worth it."""
        if self.workers <= 1 or len(items) < INLINE_BELOW:
            return [parse_and_verify_one(raw, hints) for raw, hints in items]
        flat = self._parallel(items, parse_and_verify_chunk, 2 * self.workers)
        return [_unflatten(raw, f) for (raw, _), f in zip(items, flat, strict=True)]

    def close(self) -> None:
        """Shut the pool down."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
