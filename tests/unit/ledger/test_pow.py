"""Proof of work (ledger/pow.py, ADR 0012): target, retarget rule, splicing, mining, and
``verify_chain`` on a mined public chain with a negative control per check."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carechain.contracts import default_contracts
from carechain.crypto.hashing import Hash32
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import PrivateKey
from carechain.encoding import MAX_SAFE_INT
from carechain.errors import ChainVerificationError, ValidationError
from carechain.ledger.block import BlockHeader, header_hash, parse_header, sign_header
from carechain.ledger.genesis import Genesis
from carechain.ledger.params import ChainParams
from carechain.ledger.pow import (
    MAX_BITS16,
    PowParams,
    check_pow_time,
    check_work,
    floor_log2_ratio16,
    header_bytes_with_nonce,
    mine,
    pow_params,
    pow_seal,
    public_params,
    required_bits16,
    retarget,
    seal_shape_error,
    target,
)
from carechain.ledger.verify import verify_chain
from carechain.node.chaindir import InitResult, load_node_key, open_node, read_genesis
from carechain.node.miner import init_public
from carechain.storage import StoredBlock
from carechain.storage.sqlite import SQLiteStore
from carechain.testing.chain_driver import FAST_SCRYPT_N, Chain

P = PowParams(
    initial_bits16=64,
    min_bits16=16,
    max_bits16=640,
    block_interval_ms=1000,
    retarget_blocks=10,
    max_step_bits16=32,
    max_clock_skew_ms=30_000,
)


def _header(bits16: int = 64, nonce: int = 0, **kw: object) -> BlockHeader:
    fields: dict[str, object] = {
        "chain": "c", "height": 7, "prev": Hash32(b"\1" * 32), "time": 5, "txs": 1,
        "tx_root": Hash32(b"\2" * 32), "receipt_root": Hash32(b"\3" * 32), "log_size": 3,
        "log_root": Hash32(b"\4" * 32), "state_root": Hash32(b"\5" * 32), "proposer": "k",
        "seal": pow_seal(9, bits16, nonce),
    }  # fmt: skip
    fields.update(kw)
    return BlockHeader(**fields)  # type: ignore[arg-type]


# -- target and work ---------------------------------------------------------------------


@pytest.mark.parametrize("bits", [0, 1, 8, 20, 64, 192])
def test_target_of_whole_bits_is_exact(bits: int) -> None:
    assert target(16 * bits) == 2 ** (256 - bits)


@given(st.integers(0, MAX_BITS16 - 16))
def test_target_halves_every_sixteen_sixteenths_and_decreases(b: int) -> None:
    assert target(b + 16) == target(b) // 2
    assert target(b + 1) < target(b)
    # naive reference: floor(2**(256 - b/16)) is the largest t with t**16 <= 2**(4096 - b)
    t = target(b)
    assert t**16 <= 2 ** (4096 - b) < (t + 1) ** 16


def test_target_refuses_out_of_range() -> None:
    with pytest.raises(ValueError):
        target(MAX_BITS16 + 1)


def test_work_check_with_negative_control() -> None:
    assert check_work(b"\x00" * 32, MAX_BITS16)
    assert check_work(bytes([0x0F]) + b"\xff" * 31, 4 * 16)  # below 2**252
    assert not check_work(bytes([0x10]) + b"\x00" * 31, 4 * 16)  # exactly 2**252: not below
    assert not check_work(b"\xff" * 32, 1)


@given(st.integers(1, 2**40), st.integers(1, 2**40))
def test_floor_log2_ratio16_matches_a_naive_reference(num: int, den: int) -> None:
    k = floor_log2_ratio16(num, den)
    ratio16 = Fraction(num, den) ** 16
    assert Fraction(2) ** k <= ratio16 < Fraction(2) ** (k + 1)


# -- retarget ----------------------------------------------------------------------------


@given(st.integers(P.min_bits16, P.max_bits16), st.integers(0, 10**9))
def test_retarget_is_bounded(bits: int, actual: int) -> None:
    new = retarget(P, bits, actual)
    assert abs(new - bits) <= P.max_step_bits16
    assert P.min_bits16 <= new <= P.max_bits16


@given(st.integers(P.min_bits16, P.max_bits16), st.integers(1, 10**8), st.integers(0, 10**8))
def test_retarget_is_monotone_in_elapsed_time(bits: int, a: int, extra: int) -> None:
    assert retarget(P, bits, a + extra) <= retarget(P, bits, a)


def test_retarget_keeps_on_target_and_moves_towards_the_interval() -> None:
    want = P.retarget_blocks * P.block_interval_ms
    assert retarget(P, 100, want) == 100
    assert retarget(P, 100, want // 2) == 116  # twice too fast: one bit harder
    assert retarget(P, 100, want * 2) == 84  # twice too slow: one bit easier
    assert retarget(P, 100, want // 1000) == 132  # clamped at +2 bits
    assert retarget(P, 100, want * 1000) == 68  # clamped at -2 bits
    assert retarget(P, 20, want * 1000) == P.min_bits16
    assert retarget(P, 630, 1) == P.max_bits16


def test_required_bits16_changes_only_at_epoch_boundaries() -> None:
    times = {0: 0, 10: 5_000, 20: 25_000}  # epoch 1 took half the target, epoch 2 twice
    at = times.__getitem__
    assert [required_bits16(P, h, 999, at) for h in (1, 5, 10)] == [64, 64, 64]
    assert required_bits16(P, 11, 64, at) == 80
    assert required_bits16(P, 12, 80, at) == 80
    assert required_bits16(P, 21, 80, at) == 64


def test_pow_params_from_chain_params() -> None:
    assert pow_params(ChainParams()) is None
    p = pow_params(ChainParams.from_json(public_params(bits=8)))
    assert p is not None and p.initial_bits16 == 128 and p.retarget_blocks == 10
    with pytest.raises(ValidationError, match="pow_block_interval_ms"):
        pow_params(ChainParams(pow_initial_bits16=64))
    with pytest.raises(ValidationError, match="pow_min_bits16"):
        pow_params(ChainParams.from_json({**public_params(bits=8), "pow_min_bits16": 200}))


def test_block_time_rule() -> None:
    assert check_pow_time(100, 100, 50, 10)  # never below the previous block
    assert not check_pow_time(99, 100, 200, 10)
    assert check_pow_time(210, 100, 200, 10)
    assert not check_pow_time(211, 100, 200, 10)  # bounded ahead of the newest created


def test_seal_shape() -> None:
    assert seal_shape_error(pow_seal(3, 64, 5)) is None
    assert seal_shape_error({**pow_seal(3, 64), "extra": 1}) is not None
    assert seal_shape_error({**pow_seal(3, 64), "nonce": -1}) is not None
    assert seal_shape_error({**pow_seal(3, 64), "nonce": True}) is not None
    assert seal_shape_error({**pow_seal(3, 64), "to": 4}) is not None
    assert seal_shape_error(pow_seal(3, 0)) is not None


# -- splicing and mining -----------------------------------------------------------------


@given(st.integers(0, MAX_SAFE_INT), st.integers(1, MAX_BITS16), st.integers(0, 2**40))
def test_spliced_header_bytes_equal_to_bytes(nonce: int, bits: int, time: int) -> None:
    h = _header(bits, time=time)
    want = dataclasses.replace(h, seal={**h.seal, "nonce": nonce}).to_bytes()
    assert header_bytes_with_nonce(h, nonce) == want


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10**6))
def test_mined_nonce_meets_the_target_and_others_do_not(height: int) -> None:
    h = _header(6 * 16, height=height)
    found = mine(h)
    assert found is not None and found.hashes >= 1
    mined = dataclasses.replace(h, seal={**h.seal, "nonce": found.nonce})
    assert found.header_bytes == mined.to_bytes()
    assert check_work(header_hash(found.header_bytes), 6 * 16)
    # negative control: the nonces mine() passed over do not meet the target
    for nonce in range(max(0, found.nonce - 5), found.nonce):
        assert not check_work(header_hash(header_bytes_with_nonce(h, nonce)), 6 * 16)


def test_mining_stops_when_asked() -> None:
    assert mine(_header(60 * 16), should_stop=lambda: True, check_every=64) is None


# -- verify_chain on a mined public chain --------------------------------------------------


@dataclasses.dataclass
class Mined:
    genesis: Genesis
    blocks: list[StoredBlock]
    node_key: PrivateKey


@pytest.fixture(scope="module")
def mined(tmp_path_factory: pytest.TempPathFactory) -> Mined:
    """A public demo chain (6 bits, retarget every 3 blocks) with 9 mined blocks."""
    root = tmp_path_factory.mktemp("pow") / "chain"
    init_public(root, demo=True, bits=6, retarget_blocks=3, scrypt_n=FAST_SCRYPT_N)
    node = open_node(root)
    try:
        chain = Chain(node, Keyring(root, scrypt_n=FAST_SCRYPT_N))
        admin, key = chain.admin("seoul-general")
        for i in range(8):  # one block each; a rejected receipt is kept in its block
            args = {"kid": f"unknown-{i}", "reason": "test"}
            assert chain.run1(chain.tx("identity.revoke_key@1", admin, args, [key])).code
        blocks = list(node.store.iter_blocks())
        return Mined(genesis=read_genesis(root), blocks=blocks, node_key=load_node_key(root))
    finally:
        node.stop()
        node.store.close()


def _verify(m: Mined, blocks: list[StoredBlock] | None = None) -> ChainVerificationError:
    with pytest.raises(ChainVerificationError) as info:
        verify_chain(m.genesis, iter(blocks or m.blocks), default_contracts())
    return info.value


def _tampered(m: Mined, height: int, resign: bool = False, **seal: int) -> list[StoredBlock]:
    """The chain with block ``height``'s header seal fields replaced (optionally re-signed)."""
    header = parse_header(m.blocks[height].header)
    new = dataclasses.replace(header, seal={**header.seal, **seal})
    return _replace(m, height, new, resign)


def _replace(m: Mined, height: int, header: BlockHeader, resign: bool) -> list[StoredBlock]:
    blocks = list(m.blocks)
    data = header.to_bytes()
    sig = sign_header(data, m.node_key).to_bytes() if resign else blocks[height].signature
    blocks[height] = dataclasses.replace(blocks[height], header=data, signature=sig)
    return blocks


def test_the_mined_chain_verifies_and_carries_pow_seals(mined: Mined) -> None:
    report = verify_chain(mined.genesis, iter(mined.blocks), default_contracts())
    assert report.blocks == len(mined.blocks) == 10
    headers = [parse_header(b.header) for b in mined.blocks[1:]]
    assert all(h.seal["kind"] == "pow" for h in headers)
    for b in mined.blocks[1:]:
        bits = parse_header(b.header).seal["bits16"]
        assert isinstance(bits, int) and check_work(header_hash(b.header), bits)
    assert [h.seal["bits16"] for h in headers[:3]] == [96, 96, 96]  # epoch 0: initial


def test_a_changed_nonce_fails_the_work_check(mined: Mined) -> None:
    header = parse_header(mined.blocks[4].header)
    bits = header.seal["bits16"]
    assert isinstance(bits, int)
    bad = next(
        n
        for n in range(1000)
        if not check_work(header_hash(header_bytes_with_nonce(header, n)), bits)
    )
    err = _verify(mined, _tampered(mined, 4, resign=True, nonce=bad))
    assert (err.height, err.field) == (4, "seal.nonce")


def test_lowered_bits_are_refused_even_with_valid_work_and_signature(mined: Mined) -> None:
    header = parse_header(mined.blocks[5].header)
    lowered = dataclasses.replace(header, seal={**header.seal, "bits16": 16})
    found = mine(lowered)
    assert found is not None
    relinked = dataclasses.replace(lowered, seal={**lowered.seal, "nonce": found.nonce})
    err = _verify(mined, _replace(mined, 5, relinked, resign=True))
    assert (err.height, err.field) == (5, "seal.bits16")


def test_time_pushed_ahead_is_refused(mined: Mined) -> None:
    header = parse_header(mined.blocks[3].header)
    later = dataclasses.replace(header, time=header.time + 10 * 60 * 1000)
    err = _verify(mined, _replace(mined, 3, later, resign=True))
    assert (err.height, err.field) == (3, "time")


def test_time_moved_within_bounds_breaks_the_work_or_the_rest(mined: Mined) -> None:
    """A header whose time moved by a few ms (re-signed) either misses the work target, or,
    by chance (about 1 in 2^difficulty), still meets it: then the next block's link breaks.
    Both cases are taken deterministically (the first delta of each kind)."""
    header = parse_header(mined.blocks[3].header)
    bits = header.seal["bits16"]
    assert isinstance(bits, int)
    moved = [dataclasses.replace(header, time=header.time + d) for d in range(1, 5000)]
    broken = next(h for h in moved if not check_work(header_hash(h.to_bytes()), bits))
    err = _verify(mined, _replace(mined, 3, broken, True))
    assert (err.height, err.field) == (3, "seal.nonce")
    lucky = next((h for h in moved if check_work(header_hash(h.to_bytes()), bits)), None)
    assert lucky is not None  # 4,999 tries at 1 in 2^6
    err = _verify(mined, _replace(mined, 3, lucky, True))
    assert (err.height, err.field) == (4, "prev")  # the work holds; the chain does not


def test_a_solo_seal_on_a_public_chain_is_refused(mined: Mined) -> None:
    header = parse_header(mined.blocks[2].header)
    solo = dataclasses.replace(header, seal={"from": 2, "kind": "solo", "to": 2})
    err = _verify(mined, _replace(mined, 2, solo, resign=True))
    assert (err.height, err.field) == (2, "seal")


def test_a_malformed_pow_seal_is_refused(mined: Mined) -> None:
    err = _verify(mined, _tampered(mined, 2, resign=True, nonce=-1))
    assert (err.height, err.field) == (2, "seal")


def test_a_pow_seal_on_a_private_chain_is_refused(demo_chain: InitResult) -> None:
    genesis = read_genesis(demo_chain.paths.root)
    store = SQLiteStore(demo_chain.paths.ledger)
    try:
        blocks = list(store.iter_blocks())
    finally:
        store.close()
    header = parse_header(blocks[1].header)
    forged = dataclasses.replace(header, seal=pow_seal(1, 16))
    key = load_node_key(demo_chain.paths.root)
    blocks[1] = dataclasses.replace(
        blocks[1],
        header=forged.to_bytes(),
        signature=sign_header(forged.to_bytes(), key).to_bytes(),
    )
    with pytest.raises(ChainVerificationError) as info:
        verify_chain(genesis, iter(blocks), default_contracts())
    assert (info.value.height, info.value.field) == (1, "seal")
