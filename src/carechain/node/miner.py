"""The miner of a public chain's node (ADR 0012): seal blocks by proof of work.

The node orders and executes a batch exactly as a private (solo) node does; on a public chain
(genesis ``params`` with ``pow_initial_bits16``) it then asks :class:`PowSealer` for the
block's seal and time before building (:meth:`PowSealer.seal_for`: ``bits16`` by the retarget
rule of ``ledger/pow.py``, time by the public time rule) and, after building, for a nonce
(:meth:`PowSealer.mine`). Mining re-uses the built block: only the nonce changes, so the
header bytes are spliced (``ledger.pow.mine``), never re-executed. Mining stops when the
node stops (``should_stop``), and the block is then neither committed nor acknowledged.

Invariant: a block this node commits passes ``verify_chain``'s proof-of-work step (the same
pure functions decide the difficulty, the time and the work on both sides).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carechain.encoding import JsonObject
from carechain.errors import InfrastructureError
from carechain.ledger.block import BlockHeader, header_hash, parse_header
from carechain.ledger.build import BuiltBlock
from carechain.ledger.genesis import Genesis
from carechain.ledger.pow import (
    PowParams,
    is_pow_seal,
    mine,
    pow_block_time,
    pow_params,
    pow_seal,
    public_params,
    required_bits16,
)
from carechain.ledger.tx import SignedTx
from carechain.storage import LedgerStore

if TYPE_CHECKING:
    from carechain.node.chaindir import InitResult


@dataclass(slots=True)
class MiningStats:
    """What the miner has spent since the node started (for the benchmark and /metrics)."""

    blocks: int = 0
    """Blocks mined."""
    hashes: int = 0
    """Header hashes computed."""
    seconds: float = 0.0
    """Wall time spent mining."""
    bits16: int = 0
    """Difficulty of the newest mined block (sixteenths of a bit)."""
    trace: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)
    """``(height, time, bits16)`` of every mined block (bounded to the newest 10,000)."""


class PowSealer:
    """Seals a public node's blocks: difficulty, time and nonce."""

    def __init__(self, params: PowParams, genesis: Genesis, store: LedgerStore) -> None:
        self.params = params
        self.genesis = genesis
        self.store = store
        self.stats = MiningStats()
        self._times: dict[int, int] = {0: genesis.header.time}
        self._lock = threading.Lock()

    @classmethod
    def for_chain(cls, genesis: Genesis, store: LedgerStore) -> PowSealer | None:
        """The sealer of a public chain, None for any other chain."""
        p = pow_params(genesis.params)
        return None if p is None else cls(p, genesis, store)

    def _time_at(self, height: int) -> int:
        found = self._times.get(height)
        if found is None:
            block = self.store.find_block(height)
            if block is None:
                raise InfrastructureError(f"block {height} is missing from the store")
            found = parse_header(block.header).time
            self._times[height] = found
        return found

    def seal_for(
        self, parent: BlockHeader, position: int, txs: Sequence[SignedTx], proposed_ms: int
    ) -> tuple[JsonObject, int]:
        """The seal (nonce 0, to be mined) and time of the block after ``parent``."""
        p = self.params
        prev_bits = parent.seal.get("bits16") if is_pow_seal(parent.seal) else p.initial_bits16
        assert isinstance(prev_bits, int)
        bits16 = required_bits16(p, parent.height + 1, prev_bits, self._time_at)
        newest = max(t.body.created for t in txs)
        when = pow_block_time(parent.time, proposed_ms, newest, p.max_clock_skew_ms)
        return pow_seal(position, bits16), when

    def mine(self, built: BuiltBlock, should_stop: Callable[[], bool]) -> BuiltBlock | None:
        """``built`` with a nonce that meets its difficulty; None if ``should_stop()``."""
        started = time.perf_counter()
        found = mine(built.header, should_stop=should_stop)
        elapsed = time.perf_counter() - started
        if found is None:
            return None
        header = dataclasses.replace(built.header, seal={**built.header.seal, "nonce": found.nonce})
        h = header.height
        if h % self.params.retarget_blocks == 0:
            self._times[h] = header.time
        with self._lock:
            s = self.stats
            s.blocks += 1
            s.hashes += found.hashes
            s.seconds += elapsed
            bits16 = header.seal["bits16"]
            s.bits16 = bits16 if isinstance(bits16, int) else 0
            s.trace.append((h, header.time, s.bits16))
            del s.trace[:-10_000]
        return dataclasses.replace(
            built,
            header=header,
            header_bytes=found.header_bytes,
            hash=header_hash(found.header_bytes),
        )


def init_public(
    root: Path,
    *,
    bits: int = 16,
    interval_ms: int = 1000,
    retarget_blocks: int = 10,
    **kwargs: Any,
) -> InitResult:
    """``carechain init --type public``: a one-node public chain in ``root``.

    Like ``init_chain`` (``kwargs`` go to it), plus the genesis ``pow_*`` params (initial
    difficulty ``bits`` whole bits, target ``interval_ms``, retarget every ``retarget_blocks``),
    ``rules.identity.open_registration = true`` and ``node.json`` ``{"type": "public"}``.
    """
    from carechain.node.chaindir import init_chain  # chaindir imports the node, which imports us

    rules = {**kwargs.pop("rules", {}), "identity": {"open_registration": True}}
    params = {
        **public_params(bits=bits, interval_ms=interval_ms, retarget_blocks=retarget_blocks),
        **kwargs.pop("params", {}),
    }
    return init_chain(root, rules=rules, params=params, config={"type": "public"}, **kwargs)


__all__ = ["MiningStats", "PowSealer", "init_public"]
