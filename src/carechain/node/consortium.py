"""Consortium chains: one data directory per organisation, one genesis, ordering on etcd.

``init_consortium(base, orgs=N, etcd=[...])`` lays out::

    base/genesis.json        the shared genesis (N organisations, each listing its node key)
    base/admin/keys/         every organisation's admin key (password given; dev clusters only)
    base/<org>/              that organisation's node directory (see node/chaindir.py): its own
                             node key, KEK, ledger; the consortium's shared secrets/index.key;
                             node.json {"node_key": "node", "type": "consortium",
                                        "etcd": {"endpoints": [...], "members": N},
                                        "peers": [other nodes' API URLs, optional]}

``orderer_for(root, genesis, key)`` reads ``node.json`` and returns the etcd orderer of a
consortium node (None for a private chain: the node uses ``solo``). Chain types:
``private`` (one organisation, solo ordering: ``init_chain``) and ``consortium`` (this module);
``public`` (proof of work, open registration: ``init_public`` in node/miner.py).
"""

from __future__ import annotations

import os
import secrets as _secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from carechain.contracts import default_contracts
from carechain.crypto.kek import create_kek, kek_path
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import PrivateKey
from carechain.encoding import b64u_encode, canonical_bytes
from carechain.errors import ConfigurationError, ConflictError, ValidationError
from carechain.ledger.genesis import Genesis, load_genesis
from carechain.node.chaindir import (
    DEMO_ORGS,
    DEMO_PASSWORD,
    INDEX_KEY_SIZE,
    ChainPaths,
    write_private,
)
from carechain.node.node import now_ms
from carechain.ordering import Orderer
from carechain.ordering.etcd import EtcdOrderer

CHAIN_TYPES = ("private", "consortium", "public")
"""Chain types ``carechain init --type`` accepts (``public``: proof of work, node/miner.py)."""
DEFAULT_ETCD = ("http://127.0.0.1:2379",)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsortiumMember:
    """One organisation's node directory."""

    org: str
    """Organisation id."""
    root: Path
    """Its data directory."""
    node_kid: str
    """Its node key id."""


def org_ids(n: int) -> list[tuple[str, str, tuple[str, ...]]]:
    """``n`` organisations: the demo ones first, then ``org-<i>`` hospitals."""
    out = list(DEMO_ORGS[:n])
    out += [(f"org-{i}", f"Organisation {i}", ("hospital",)) for i in range(len(out) + 1, n + 1)]
    return out


def init_consortium(
    base: Path,
    *,
    orgs: int = 3,
    etcd: Sequence[str] = DEFAULT_ETCD,
    chain: str = "carechain-consortium",
    password: bytes = DEMO_PASSWORD,
    params: dict[str, int] | None = None,
    scrypt_n: int | None = None,
    clock: Callable[[], int] = now_ms,
) -> tuple[Genesis, list[ConsortiumMember]]:
    """Create ``orgs`` node directories under ``base`` sharing one genesis (see module doc)."""
    if orgs < 1:
        raise ValidationError("--orgs: want at least 1 organisation")
    if (base / "genesis.json").exists():
        raise ConflictError(f"{base} already holds a consortium; use another --dir")
    kw: dict[str, Any] = {"scrypt_n": scrypt_n} if scrypt_n else {}
    admins = Keyring(base / "admin", **kw)
    index_key = _secrets.token_bytes(INDEX_KEY_SIZE)
    spec = org_ids(orgs)
    docs: list[dict[str, Any]] = []
    members: list[ConsortiumMember] = []
    for oid, oname, roles in spec:
        root = base / oid
        if ChainPaths(root).exists():
            raise ConflictError(f"{root} already holds a chain")
        ring = Keyring(root, **kw)
        node_password = _secrets.token_urlsafe(24).encode()
        ring.create("node", "ed25519", node_password)
        node_key = ring.load("node", node_password)
        write_private(ChainPaths(root).node_password, node_password)
        create_kek(kek_path(root), node_password, **kw)
        write_private(ChainPaths(root).index_key, index_key)
        admin = admins.create(f"{oid}-admin", "ed25519", password, account=f"{oid}.admin")
        pub = admins.export_public(admin.name)
        docs.append(
            {
                "admins": [
                    {"account": f"{oid}.admin", "keys": [{"alg": pub["alg"], "pub": pub["pub"]}]}
                ],
                "id": oid,
                "name": oname,
                "nodes": [
                    {
                        "alg": node_key.alg,
                        "name": f"{oid}-node-1",
                        "pub": b64u_encode(node_key.public),
                    }
                ],
                "roles": list(roles),
            }
        )
        members.append(ConsortiumMember(org=oid, root=root, node_kid=node_key.kid))
    doc = {"chain": chain, "orgs": docs, "params": params or {}, "time": clock()}
    raw = canonical_bytes(doc)
    genesis = load_genesis(raw, default_contracts())
    (base / "genesis.json").write_bytes(raw)
    config = {
        "etcd": {"endpoints": list(etcd), "members": orgs},
        "node_key": "node",
        "type": "consortium",
    }
    for m in members:
        ChainPaths(m.root).genesis.write_bytes(raw)
        ChainPaths(m.root).config.write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))
    return genesis, members


def read_config(root: Path) -> dict[str, Any]:
    """``node.json`` of ``root`` (empty when absent)."""
    path = ChainPaths(root).config
    data = orjson.loads(path.read_bytes()) if path.exists() else {}
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path}: want a JSON object")
    return data


def chain_type(root: Path) -> str:
    """``private``, ``consortium`` or ``public``, from ``node.json``."""
    kind = str(read_config(root).get("type", "private"))
    if kind not in CHAIN_TYPES:
        raise ConfigurationError(f"node.json type: got {kind!r}, want one of {CHAIN_TYPES}")
    return kind


def orderer_for(root: Path, genesis: Genesis, node_key: PrivateKey) -> Orderer | None:
    """The etcd orderer of a consortium node directory, or None (private: solo)."""
    if chain_type(root) != "consortium":
        return None
    etcd = read_config(root).get("etcd", {})
    endpoints = os.environ.get("CARECHAIN_ETCD")
    urls = endpoints.split(",") if endpoints else list(etcd.get("endpoints", DEFAULT_ETCD))
    peers = [str(u) for u in read_config(root).get("peers", [])]
    cls = EtcdOrderer
    if "join" in read_config(root):  # admitted after genesis: node/join.py
        from carechain.node.join import JoiningEtcdOrderer

        cls = JoiningEtcdOrderer
    return cls(
        urls,
        chain=genesis.chain,
        node=node_key.kid,
        members=int(etcd.get("members", 1)),
        peers=peers,
    )


__all__ = [
    "CHAIN_TYPES",
    "ConsortiumMember",
    "chain_type",
    "init_consortium",
    "orderer_for",
    "org_ids",
    "read_config",
]
