"""The genesis document and block 0.

The genesis document is the chain's trust root, shared out of band with every member::

    {"chain": "<id>", "origin": "<checkpoint origin>", "time": <ms>, "params": {...},
     "orgs": [{"id", "name", "roles": [...],
               "admins": [{"account", "keys": [{"alg", "pub"}]}],
               "nodes": [{"name", "alg", "pub"}]}],
     "rules": {"<contract>": {...}}}

``rules`` holds the business rules that differ by jurisdiction (prescription fill windows,
PDMP thresholds, …) as data: each contract's genesis writer validates its own section and
writes it to ``rules/<contract>`` (defaults when absent); governance may change it later.

Block 0 has no transactions; its ``prev`` is ``tagged_hash("carechain/genesis@1", doc)`` and its
``state_root`` commits to the state the contracts' ``apply_genesis`` writes. It is not signed:
anyone holding the document recomputes it exactly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from carechain.crypto.hashing import ZERO_HASH, Hash32, tagged_hash
from carechain.encoding import JsonObject, Limits, decode_canonical
from carechain.errors import ValidationError
from carechain.ledger.block import BlockHeader, header_hash
from carechain.ledger.params import ChainParams
from carechain.ledger.state import EmptyState, Overlay, next_state_root
from carechain.merkle import CompactTree

GENESIS_TAG = "carechain/genesis@1"
GENESIS_LIMITS = Limits(max_bytes=4 * 1024 * 1024, max_string=16 * 1024, max_items=10_000)
CHAIN_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")


class GenesisApplier(Protocol):
    """Writes the initial state from a genesis document (the contracts implement it)."""

    def apply_genesis(self, state: Overlay, doc: Mapping[str, Any]) -> None:
        """Validate ``doc``'s organisations and write them; raise ValidationError."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Genesis:
    """A parsed genesis document with its block 0."""

    raw: bytes
    """The canonical document bytes."""
    doc: JsonObject
    """The decoded document."""
    chain: str
    """Chain id."""
    origin: str
    """Checkpoint origin line (C2SP tlog-checkpoint)."""
    params: ChainParams
    """Consensus parameters."""
    header: BlockHeader
    """Block 0's header."""
    header_bytes: bytes
    """Canonical bytes of block 0's header."""
    hash: Hash32
    """Block 0's header hash."""
    writes: tuple[tuple[str, bytes | None], ...]
    """The initial state."""


def genesis_hash(raw: bytes) -> Hash32:
    """The hash that block 0 takes as ``prev``."""
    return tagged_hash(GENESIS_TAG, raw)


def read_genesis_document(raw: bytes) -> tuple[Mapping[str, Any], str, str]:
    """Decode a genesis document strictly: ``(doc, chain id, checkpoint origin)``.

    Checks the envelope of the document only; the organisations are the contracts' to check.
    """
    doc = decode_canonical(raw, limits=GENESIS_LIMITS, what="genesis")
    if not isinstance(doc, Mapping):
        raise ValidationError("genesis: want a JSON object")
    unknown = set(doc) - {"chain", "origin", "time", "params", "orgs", "rules"}
    if unknown:
        raise ValidationError(f"genesis: unknown field(s) {sorted(unknown)}")
    chain = doc.get("chain")
    if not isinstance(chain, str) or not CHAIN_RE.match(chain):
        raise ValidationError("genesis.chain: want a chain id (a-z 0-9 . _ -, up to 64)")
    origin = doc.get("origin", f"carechain.local/{chain}")
    if not isinstance(origin, str) or not origin or "\n" in origin or not origin.isprintable():
        raise ValidationError("genesis.origin: want one printable line")
    return doc, chain, origin


def load_genesis(raw: bytes, contracts: GenesisApplier) -> Genesis:
    """Parse a canonical genesis document and compute block 0."""
    doc, chain, origin = read_genesis_document(raw)
    time = doc.get("time")
    if isinstance(time, bool) or not isinstance(time, int) or time < 0:
        raise ValidationError("genesis.time: want Unix milliseconds")
    params_obj = doc.get("params", {})
    if not isinstance(params_obj, Mapping):
        raise ValidationError("genesis.params: want an object")
    params = ChainParams.from_json(params_obj)
    state = Overlay(EmptyState())
    contracts.apply_genesis(state, doc)
    writes = state.writes()
    header = BlockHeader(
        chain=chain,
        height=0,
        prev=genesis_hash(raw),
        time=time,
        txs=0,
        tx_root=Hash32(CompactTree().root()),
        receipt_root=Hash32(CompactTree().root()),
        log_size=0,
        log_root=Hash32(CompactTree().root()),
        state_root=next_state_root(ZERO_HASH, 0, writes),
        proposer="genesis",
        seal={"kind": "genesis"},
    )
    header_bytes = header.to_bytes()
    return Genesis(
        raw=raw,
        doc=doc,
        chain=chain,
        origin=origin,
        params=params,
        header=header,
        header_bytes=header_bytes,
        hash=header_hash(header_bytes),
        writes=writes,
    )
