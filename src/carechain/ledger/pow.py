"""Proof of work for public chains (ADR 0012): target, retargeting, the work check, mining.

A public chain is one whose genesis ``params`` carry ``pow_initial_bits16`` (with the other
``pow_*`` fields). Its blocks' headers keep the usual field set; the seal object is::

    {"kind": "pow", "from": p, "to": p, "bits16": D, "nonce": n}

``D`` is the difficulty in sixteenths of a bit: the work is met when the header hash
(:func:`carechain.ledger.block.header_hash` of the canonical header bytes, nonce included),
read as a 256-bit big-endian integer, is below :func:`target` ``(D) = floor(2**(256 - D/16))``,
so a block costs ``2**(D/16)`` hashes on average. Sixteenths give a retarget fine enough not
to oscillate by a factor of two, and every value is an exact integer (no floats).

Retarget rule (pure, deterministic; :func:`required_bits16`): blocks ``1..K`` (``K`` =
``pow_retarget_blocks``) use the initial difficulty; the first block of epoch ``e >= 1``
(height ``e*K + 1``) takes ``D' = clamp(D + floor(16*log2(want/actual)))`` where ``want =
K * pow_block_interval_ms`` and ``actual = time(e*K) - time((e-1)*K)`` (at least 1 ms); the
step is bounded by ``pow_max_step_bits16`` either way and the result by ``pow_min_bits16`` /
``pow_max_bits16``; the other blocks keep their predecessor's ``D``.

Block time (:func:`check_pow_time`): never below the previous block's, and at most
``max_clock_skew_ms`` past the newest ``created`` among the block's transactions (so a miner
cannot push the clock, hence the retarget, further than its clients' signed times allow).

Invariants: :func:`header_bytes_with_nonce` produces exactly ``BlockHeader.to_bytes()`` for any
nonce; :func:`mine` returns only nonces :func:`check_work` accepts.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from math import isqrt
from typing import Any

from carechain.encoding import MAX_SAFE_INT
from carechain.encoding.framing import PAE_PREFIX
from carechain.errors import ValidationError
from carechain.ledger.block import HEADER_TAG, BlockHeader, header_hash
from carechain.ledger.params import ChainParams

POW_SEAL_KIND = "pow"
"""``seal.kind`` of a proof-of-work block."""
POW_SEAL_FIELDS = ("bits16", "from", "kind", "nonce", "to")
"""Exactly the fields of a proof-of-work seal."""
MAX_BITS16 = 192 * 16
"""Highest difficulty accepted (192 bits: far beyond anything mineable)."""
_SENTINEL = MAX_SAFE_INT
"""Placeholder nonce whose digits are spliced out (16 digits, found exactly once)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PowParams:
    """A public chain's proof-of-work parameters (from the genesis ``params``)."""

    initial_bits16: int
    """Difficulty of blocks ``1..retarget_blocks``, in sixteenths of a bit."""
    min_bits16: int
    """Lowest difficulty the retarget may reach."""
    max_bits16: int
    """Highest difficulty the retarget may reach."""
    block_interval_ms: int
    """Target time between blocks."""
    retarget_blocks: int
    """Blocks per retarget epoch (``K``)."""
    max_step_bits16: int
    """Largest change of difficulty at one retarget, either way."""
    max_clock_skew_ms: int
    """How far past the newest transaction's ``created`` a block time may be."""


def pow_params(params: ChainParams) -> PowParams | None:
    """The proof-of-work parameters of a chain, or None (not a public chain).

    Raises ValidationError when the genesis carries an incomplete or inconsistent set.
    """
    if not params.pow_initial_bits16:
        return None
    p = PowParams(
        initial_bits16=params.pow_initial_bits16,
        min_bits16=params.pow_min_bits16 or 1,
        max_bits16=params.pow_max_bits16 or MAX_BITS16,
        block_interval_ms=params.pow_block_interval_ms,
        retarget_blocks=params.pow_retarget_blocks,
        max_step_bits16=params.pow_max_step_bits16 or 32,
        max_clock_skew_ms=params.max_clock_skew_ms,
    )
    if not p.block_interval_ms or not p.retarget_blocks:
        raise ValidationError(
            "params: a proof-of-work chain needs pow_block_interval_ms and pow_retarget_blocks"
        )
    if not p.min_bits16 <= p.initial_bits16 <= p.max_bits16 <= MAX_BITS16:
        raise ValidationError(
            f"params: want pow_min_bits16 <= pow_initial_bits16 <= pow_max_bits16 <= {MAX_BITS16}"
        )
    return p


def public_params(
    *, bits: int = 12, interval_ms: int = 1000, retarget_blocks: int = 10
) -> dict[str, int]:
    """Genesis ``params`` of a public chain: initial difficulty ``bits`` whole bits."""
    return {
        "pow_block_interval_ms": interval_ms,
        "pow_initial_bits16": bits * 16,
        "pow_max_bits16": 64 * 16,
        "pow_max_step_bits16": 32,
        "pow_min_bits16": 16,
        "pow_retarget_blocks": retarget_blocks,
    }


# -- target and work ---------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def target(bits16: int) -> int:
    """``floor(2**(256 - bits16/16))``, exactly: the integer 16th root of ``2**(4096-bits16)``.

    (``floor(sqrt(floor(x))) == floor(sqrt(x))``, so four nested ``isqrt`` give the 16th root.)
    """
    if not 0 <= bits16 <= MAX_BITS16:
        raise ValueError(f"bits16 {bits16} out of range")  # callers check the seal first
    return isqrt(isqrt(isqrt(isqrt(1 << (4096 - bits16)))))


def check_work(hash_: bytes, bits16: int) -> bool:
    """True iff the header hash, big-endian, is below :func:`target` of ``bits16``."""
    return int.from_bytes(hash_, "big") < target(bits16)


def expected_hashes(bits16: int) -> float:
    """Mean number of hashes to meet ``bits16`` (reporting only)."""
    return float(2**256 / target(bits16))


# -- retargeting -------------------------------------------------------------------------


def floor_log2_ratio16(num: int, den: int) -> int:
    """``floor(16 * log2(num / den))`` for positive integers, exactly."""
    a, b = num**16, den**16
    if a >= b:
        return (a // b).bit_length() - 1
    return -((-(-b // a)) - 1).bit_length()  # -ceil(log2(b/a)) = -ceil(log2(ceil(b/a)))


def retarget(p: PowParams, bits16: int, actual_ms: int) -> int:
    """The next epoch's difficulty after an epoch that took ``actual_ms`` (block time)."""
    want = p.retarget_blocks * p.block_interval_ms
    step = floor_log2_ratio16(want, max(1, actual_ms))
    step = max(-p.max_step_bits16, min(p.max_step_bits16, step))
    return max(p.min_bits16, min(p.max_bits16, bits16 + step))


def required_bits16(
    p: PowParams, height: int, prev_bits16: int, time_at: Callable[[int], int]
) -> int:
    """The difficulty block ``height`` must carry.

    ``prev_bits16``: the previous block's (``p.initial_bits16`` for block 1);
    ``time_at(h)``: the time of committed block ``h`` (only read at epoch boundaries).
    """
    k = p.retarget_blocks
    if height <= k:
        return p.initial_bits16
    if (height - 1) % k:
        return prev_bits16
    end = height - 1
    return retarget(p, prev_bits16, time_at(end) - time_at(end - k))


def pow_block_time(prev_time: int, proposed: int, newest_created: int, skew: int) -> int:
    """A public block's time: the miner's clock, never below the previous block's, at most
    ``skew`` past the newest transaction's ``created``."""
    return max(prev_time, min(proposed, newest_created + skew))


def check_pow_time(time: int, prev_time: int, newest_created: int, skew: int) -> bool:
    """True iff ``time`` obeys the public block time rule."""
    return prev_time <= time <= max(prev_time, newest_created + skew)


# -- seal --------------------------------------------------------------------------------


def pow_seal(position: int, bits16: int, nonce: int = 0) -> dict[str, Any]:
    """A proof-of-work seal object."""
    return {
        "bits16": bits16,
        "from": position,
        "kind": POW_SEAL_KIND,
        "nonce": nonce,
        "to": position,
    }


def is_pow_seal(seal: Mapping[str, Any]) -> bool:
    """True iff the seal claims proof of work."""
    return seal.get("kind") == POW_SEAL_KIND


def seal_shape_error(seal: Mapping[str, Any]) -> str | None:
    """Why ``seal`` is not a well-formed proof-of-work seal (None: it is)."""
    if set(seal) != set(POW_SEAL_FIELDS):
        return f"want exactly the fields {list(POW_SEAL_FIELDS)}"
    for name in ("bits16", "from", "nonce", "to"):
        v = seal[name]
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_SAFE_INT:
            return f"{name}: want a non-negative integer"
    if seal["from"] != seal["to"]:
        return "from and to must be equal (one ordered batch per block)"
    if not 1 <= seal["bits16"] <= MAX_BITS16:
        return f"bits16: want 1..{MAX_BITS16}"
    return None


# -- mining ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeaderTemplate:
    """Canonical header bytes split around the nonce's digits."""

    prefix: bytes
    """Everything before the nonce's digits."""
    suffix: bytes
    """Everything after them."""

    def bytes_for(self, nonce: int) -> bytes:
        """The canonical header bytes with ``nonce``."""
        return b"%s%d%s" % (self.prefix, nonce, self.suffix)


def header_template(header: BlockHeader) -> HeaderTemplate:
    """Split ``header`` (a pow seal) so that any nonce can be spliced in without re-encoding."""
    data = dataclasses.replace(header, seal={**header.seal, "nonce": _SENTINEL}).to_bytes()
    marker = b'"nonce":%d' % _SENTINEL
    at = data.index(marker) + len(marker) - len(b"%d" % _SENTINEL)
    assert data.count(marker) == 1
    return HeaderTemplate(prefix=data[:at], suffix=data[at + len(b"%d" % _SENTINEL) :])


def header_bytes_with_nonce(header: BlockHeader, nonce: int) -> bytes:
    """``replace(header, seal={..., "nonce": nonce}).to_bytes()`` by splicing."""
    return header_template(header).bytes_for(nonce)


@dataclass(frozen=True, slots=True, kw_only=True)
class MiningResult:
    """A nonce that meets the target, and the work spent."""

    nonce: int
    """The winning nonce."""
    header_bytes: bytes
    """Canonical header bytes with that nonce."""
    hashes: int
    """Hashes computed."""


def mine(
    header: BlockHeader,
    *,
    start: int = 0,
    should_stop: Callable[[], bool] | None = None,
    check_every: int = 1 << 14,
) -> MiningResult | None:
    """Search nonces from ``start`` until the header meets its ``seal.bits16`` target.

    Returns None when ``should_stop()`` turns true (checked every ``check_every`` hashes).
    The tagged hash is ``sha256(PAE(tag, bytes))``; the hash state of the PAE prefix plus the
    template prefix is computed once per nonce length and copied for each nonce.
    """
    bits16 = header.seal["bits16"]
    assert isinstance(bits16, int)
    goal = target(bits16)
    tpl = header_template(header)
    tag = HEADER_TAG.encode()
    n, hashes = start, 0
    while n <= MAX_SAFE_INT:
        digits = len(b"%d" % n)
        body_len = len(tpl.prefix) + digits + len(tpl.suffix)
        base = hashlib.sha256(b"%s %d %s %d %s" % (PAE_PREFIX, len(tag), tag, body_len, tpl.prefix))
        stop_at = min(10**digits, MAX_SAFE_INT + 1)
        suffix = tpl.suffix
        while n < stop_at:
            end = min(stop_at, n + check_every)
            for nonce in range(n, end):
                h = base.copy()
                h.update(b"%d%s" % (nonce, suffix))
                if int.from_bytes(h.digest(), "big") < goal:
                    data = tpl.bytes_for(nonce)
                    assert header_hash(data) == h.digest()  # PAE framing as block.header_hash
                    spent = hashes + nonce - n + 1
                    return MiningResult(nonce=nonce, header_bytes=data, hashes=spent)
            hashes += end - n
            n = end
            if should_stop is not None and should_stop():
                return None
    return None  # nonce space exhausted (unreachable at sane difficulties)
