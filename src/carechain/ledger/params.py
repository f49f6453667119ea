"""Chain parameters fixed by the genesis document (changed later only by governance)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from carechain.errors import ValidationError


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainParams:
    """Consensus parameters every node applies identically."""

    block_max_txs: int = 2000
    """Most transactions in one block."""
    block_max_bytes: int = 8 * 1024 * 1024
    """Most envelope bytes in one block."""
    block_interval_ms: int = 100
    """Longest a pending transaction waits before a block is cut."""
    tx_window_ms: int = 10 * 60 * 1000
    """A transaction's ``created`` must lie within ± this of its block's time."""
    max_clock_skew_ms: int = 30 * 1000
    """How far ahead of a node's clock a proposed block time may be."""
    break_glass_ms: int = 4 * 60 * 60 * 1000
    """How long (block time) an emergency break-glass access session lasts."""
    cosign_quorum_num: int = 2
    """Numerator of the cosigning quorum (see ``cosign_quorum_den``)."""
    cosign_quorum_den: int = 3
    """A cosigned checkpoint is final when more than ``num/den`` of the organisations running
    active nodes cosigned the same values (consortium mode, ADR 0011): ``c*den > n*num``."""
    pow_initial_bits16: int = 0
    """Public chains (ADR 0012, ``ledger/pow.py``): difficulty of the first epoch in sixteenths
    of a bit; 0 (absent from genesis) means no proof of work. The ``pow_*`` fields appear only
    in public genesis documents, so other chains' genesis bytes and hashes are unchanged."""
    pow_min_bits16: int = 0
    """Lowest difficulty the retarget may reach (0: 1/16 bit)."""
    pow_max_bits16: int = 0
    """Highest difficulty the retarget may reach (0: 192 bits)."""
    pow_max_step_bits16: int = 0
    """Largest difficulty change at one retarget (0: 32, i.e. 2 bits, a factor of 4)."""
    pow_block_interval_ms: int = 0
    """Target time between proof-of-work blocks."""
    pow_retarget_blocks: int = 0
    """Blocks per retarget epoch."""

    def to_json(self) -> dict[str, int]:
        """As a JSON object."""
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ChainParams:
        """Parse, rejecting unknown fields and non-positive values."""
        known = set(cls.__dataclass_fields__)
        unknown = set(obj) - known
        if unknown:
            raise ValidationError(f"params: unknown field(s) {sorted(unknown)}")
        for k, v in obj.items():
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValidationError(f"params.{k}: want a positive integer")
        return cls(**obj)
