"""``execute_block``: the block state transition, run directly on the demo chain's state."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from carechain.contracts import default_contracts
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import PrivateKey, generate_key
from carechain.encoding import b64u_encode
from carechain.ledger.block import parse_header
from carechain.ledger.execute import BlockResult, execute_block
from carechain.ledger.params import ChainParams
from carechain.ledger.state import next_state_root
from carechain.ledger.tx import SignedTx, make_tx
from carechain.node.chaindir import DEMO_PASSWORD, InitResult
from carechain.storage.sqlite import SQLiteStore

PARAMS = ChainParams()


class Layered:
    """Committed state plus the writes of blocks executed in the test."""

    def __init__(self, base: SQLiteStore) -> None:
        self.base, self.data = base, {}  # type: ignore[var-annotated]

    def find_state(self, key: str) -> bytes | None:
        if key in self.data:
            return self.data[key]  # type: ignore[no-any-return]
        return self.base.find_state(key)

    def apply(self, result: BlockResult) -> None:
        self.data.update(result.writes)


class Ctx:
    def __init__(self, store: SQLiteStore, keys: Keyring) -> None:
        head = parse_header(store.find_block(store.head_height() or 0).header)  # type: ignore[union-attr]
        self.chain, self.height, self.time, self.root = (
            head.chain,
            head.height,
            head.time,
            head.state_root,
        )
        self.state = Layered(store)
        self.keys = keys

    def key(self, name: str) -> PrivateKey:
        return self.keys.load(name, DEMO_PASSWORD)

    def tx(
        self, kind: str, sender: str, args: dict[str, Any], keys: list[PrivateKey], **over: Any
    ) -> SignedTx:
        fields: dict[str, Any] = {
            "chain": self.chain,
            "created": self.time + 1000,
            "nonce": os.urandom(16),
        }
        fields.update(over)
        return make_tx(kind=kind, sender=sender, args=args, keys=keys, **fields)

    def run(self, *txs: SignedTx, commit: bool = True, time: int | None = None) -> BlockResult:
        result = execute_block(
            self.state, chain=self.chain, height=self.height + 1, time=time or self.time + 1000,
            prev_state_root=self.root, txs=txs, params=PARAMS, contracts=default_contracts(),
        )  # fmt: skip
        if commit:
            self.state.apply(result)
            self.height += 1
            self.root = result.state_root
        return result


@pytest.fixture
def ctx(demo_chain: InitResult, demo_keys: Keyring) -> Iterator[Ctx]:
    store = SQLiteStore(demo_chain.paths.ledger)
    try:
        yield Ctx(store, demo_keys)
    finally:
        store.close()


def pub(key: PrivateKey) -> dict[str, str]:
    return {"alg": key.alg, "pub": b64u_encode(key.public)}


def member_args(account: str, key: PrivateKey, org: str = "seoul-general") -> dict[str, Any]:
    return {"account": account, "keys": [pub(key)], "org": org, "role": "practitioner"}


def codes(result: BlockResult) -> list[str]:
    return [r.code for r in result.receipts]


def register(ctx: Ctx, account: str, key: PrivateKey | None = None, **over: Any) -> SignedTx:
    """An admin of seoul-general registers ``seoul-general.<account>``."""
    args = member_args(f"seoul-general.{account}", key or generate_key())
    return ctx.tx(
        "identity.register_member@1",
        "seoul-general.admin",
        args,
        [ctx.key("seoul-general-admin")],
        **over,
    )


def test_block_level_rules_reject_without_writes(ctx: Ctx) -> None:
    window = PARAMS.tx_window_ms
    t = ctx.time + 1000
    txs = [
        register(ctx, "a1", chain="other-chain"),
        register(ctx, "a2", created=t - window - 1),
        register(ctx, "a3", created=t + window + 1),
        ctx.tx("records.put@1", "seoul-general.admin", {}, [ctx.key("seoul-general-admin")]),
    ]
    result = ctx.run(*txs)
    assert codes(result) == ["wrong_chain", "outside_window", "outside_window", "unknown_kind"]
    assert all(r.status == "rejected" and r.message and not r.events for r in result.receipts)
    assert result.writes == ()
    # the window's edges are inside it (negative control)
    edge = [register(ctx, "e1", created=t - window), register(ctx, "e2", created=t + window)]
    assert codes(ctx.run(*edge)) == ["ok", "ok"]


def test_empty_writes_still_chain_the_state_root(ctx: Ctx) -> None:
    admin = ctx.key("seoul-general-admin")
    prev = ctx.root
    result = ctx.run(ctx.tx("records.put@1", "seoul-general.admin", {}, [admin]))
    assert result.state_root == next_state_root(prev, ctx.height, ())
    assert result.state_root != prev


def test_execution_is_deterministic(ctx: Ctx) -> None:
    txs = [register(ctx, f"m{i}") for i in range(3)]
    a, b = ctx.run(*txs, commit=False), ctx.run(*txs, commit=False)
    assert a == b
    assert list(a.writes) == sorted(a.writes)
    # another order, another outcome
    c = ctx.run(*reversed(txs), commit=False)
    assert [r.tx_id for r in c.receipts] == [t.tx_id for t in reversed(txs)]


def test_a_rejected_transaction_leaves_no_trace_in_state(ctx: Ctx) -> None:
    admin = ctx.key("seoul-general-admin")
    k = generate_key()
    ok = ctx.tx(
        "identity.register_member@1",
        "seoul-general.admin",
        member_args("seoul-general.x", k),
        [admin],
    )
    dup = ctx.tx(
        "identity.register_member@1",
        "seoul-general.admin",
        member_args("seoul-general.y", k),
        [admin],
    )
    result = ctx.run(ok, dup)
    assert codes(result) == ["ok", "duplicate_key"]
    written = dict(result.writes)
    assert "acct/seoul-general.x" in written and "acct/seoul-general.y" not in written
    assert orjson.loads(written[f"key/{k.kid}"])["account"] == "seoul-general.x"
    assert not result.receipts[1].events and result.receipts[0].events


def test_a_key_registered_in_a_block_signs_only_from_the_next(ctx: Ctx) -> None:
    admin = ctx.key("seoul-general-admin")
    k, k2, k3 = generate_key(), generate_key(), generate_key()
    reg = ctx.tx(
        "identity.register_member@1",
        "seoul-general.admin",
        member_args("seoul-general.new", k),
        [admin],
    )
    rot = ctx.tx(
        "identity.rotate_key@1", "seoul-general.new", {"keys": [pub(k2)], "old": k.kid}, [k, k2]
    )
    result = ctx.run(reg, rot)
    assert codes(result) == ["ok", "key_not_yet_valid"]
    # the same rotation, re-signed, in the next block succeeds
    rot2 = ctx.tx(
        "identity.rotate_key@1", "seoul-general.new", {"keys": [pub(k3)], "old": k.kid}, [k, k3]
    )
    assert codes(ctx.run(rot2)) == ["ok"]
    assert orjson.loads(ctx.state.find_state(f"key/{k.kid}") or b"")["status"] == "rotated"


def test_touched_accounts_index_sender_and_subject(ctx: Ctx) -> None:
    admin = ctx.key("seoul-general-admin")
    tx = ctx.tx(
        "identity.register_member@1",
        "seoul-general.admin",
        member_args("seoul-general.t", generate_key()),
        [admin],
    )
    result = ctx.run(tx)
    assert result.touched == (("seoul-general.admin", 0), ("seoul-general.t", 0))
