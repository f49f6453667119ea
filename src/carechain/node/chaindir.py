"""The chain data directory: creating a chain, opening a node on it, the demo consortium.

Layout of ``DIR`` (default ``./carechain-data``, or ``$CARECHAIN_DIR``)::

    genesis.json          canonical genesis document (the chain's trust root; share it)
    ledger.sqlite         the embedded store (SQLite WAL, synchronous=FULL)
    keys/<name>.key.json  encrypted key files (scrypt + AES-256-GCM); ``node`` is the node key
    secrets/node.pass     password of the node key (0600) so the node starts unattended
    keys/record-kek.json  the record KEK (crypto/kek.py), encrypted under the node key's password
    secrets/index.key     32 random bytes (0600): the consortium's secure-index HMAC key (shared
                          out of band; every node of the consortium holds the same bytes)
    records/              off-chain records: FileRecordStore (records.sqlite, blobs/, tmp/) and
                          the record service's local index (index.sqlite)
    node.json             node settings: {"node_key": "node", "origin": ...}
    node.lock             held by the running node (a second node on this directory is refused)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets as _secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from carechain.contracts import default_contracts
from carechain.contracts.identity import patient_account_id
from carechain.crypto.kek import KEK, create_kek, kek_path, load_kek
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import PrivateKey
from carechain.encoding import b64u_encode, canonical_bytes
from carechain.errors import ConfigurationError, ConflictError, NotFoundError
from carechain.ledger.genesis import Genesis, load_genesis
from carechain.ledger.tx import SignedTx, make_tx
from carechain.node.node import Node, now_ms
from carechain.storage.sqlite import SQLiteStore

DEMO_PASSWORD = b"demo"
DEMO_CHAIN = "carechain-demo"
INDEX_KEY_SIZE = 32
"""Bytes of the consortium's secure-index HMAC key."""


@dataclass(frozen=True, slots=True)
class ChainPaths:
    """Where everything of one chain lives."""

    root: Path
    """The data directory."""

    @property
    def genesis(self) -> Path:
        return self.root / "genesis.json"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.sqlite"

    @property
    def node_password(self) -> Path:
        return self.root / "secrets" / "node.pass"

    @property
    def index_key(self) -> Path:
        return self.root / "secrets" / "index.key"

    @property
    def records(self) -> Path:
        return self.root / "records"

    @property
    def lock(self) -> Path:
        return self.root / "node.lock"

    @property
    def config(self) -> Path:
        return self.root / "node.json"

    def exists(self) -> bool:
        """True iff a chain was initialised here."""
        return self.genesis.exists()


@dataclass(slots=True)
class DemoAccount:
    """An account the demo creates, for printing and for the demo walk-through."""

    name: str
    """Key name in the keyring."""
    account: str
    """Account id on chain."""
    role: str
    """Role or account type."""
    org: str = ""
    """Organisation, if any."""


@dataclass(slots=True)
class InitResult:
    """What ``init_chain`` created."""

    paths: ChainPaths
    """The data directory."""
    genesis: Genesis
    """The genesis."""
    accounts: list[DemoAccount] = field(default_factory=list)
    """Accounts created (admins, and with ``demo`` members and patients)."""


DEMO_ORGS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("seoul-general", "Seoul General Hospital", ("hospital",)),
    ("hanbit-pharmacy", "Hanbit Pharmacy", ("pharmacy", "dispenser")),
    ("nhis-payer", "National Health Insurance (demo payer)", ("payer",)),
    ("medipharm", "MediPharm Manufacturing", ("manufacturer",)),
    ("mfds-regulator", "Drug Safety Regulator (demo)", ("regulator", "auditor")),
)


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` (never overwrite) with mode 0600 in a 0700 directory, fsynced."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _key_json(key: PrivateKey) -> dict[str, str]:
    return {"alg": key.alg, "pub": b64u_encode(key.public)}


def init_chain(
    root: Path,
    *,
    demo: bool = False,
    chain: str | None = None,
    org_id: str = "my-hospital",
    org_name: str = "My Hospital",
    roles: tuple[str, ...] = ("hospital",),
    password: bytes = DEMO_PASSWORD,
    scrypt_n: int | None = None,
    clock: Callable[[], int] = now_ms,
    domains: bool = False,
    rules: Mapping[str, Any] | None = None,
    params: Mapping[str, int] | None = None,
    config: Mapping[str, Any] | None = None,
) -> InitResult:
    """Create a chain in ``root``: keys, genesis, block 0 and (``demo``) a seeded consortium
    (members and patients; with ``domains`` also the domain demo data, :func:`seed_domain_demos`).
    ``rules``: the genesis document's per-contract business rules (``genesis.rules``);
    ``params``: its chain parameters; ``config``: extra ``node.json`` settings (e.g. the public
    chain's ``{"type": "public"}``, node/miner.py).

    Refuses (ConflictError) when ``root`` already holds a chain.
    """
    paths = ChainPaths(root)
    if paths.exists():
        raise ConflictError(f"{root} already holds a chain; use another --dir or remove it")
    root.mkdir(parents=True, exist_ok=True)
    ring = Keyring(root, **({"scrypt_n": scrypt_n} if scrypt_n else {}))
    node_password = _secrets.token_urlsafe(24).encode()
    node_info = ring.create("node", "ed25519", node_password)
    node_key = ring.load("node", node_password)
    write_private(paths.node_password, node_password)
    create_kek(kek_path(root), node_password, **({"scrypt_n": scrypt_n} if scrypt_n else {}))
    write_private(paths.index_key, _secrets.token_bytes(INDEX_KEY_SIZE))
    orgs_spec = DEMO_ORGS if demo else ((org_id, org_name, roles),)
    chain_id = chain or (DEMO_CHAIN if demo else f"{org_id}-chain")
    accounts: list[DemoAccount] = []
    orgs: list[dict[str, Any]] = []
    for i, (oid, oname, oroles) in enumerate(orgs_spec):
        admin = f"{oid}.admin"
        ring.create(f"{oid}-admin", "ed25519", password, account=admin)
        accounts.append(DemoAccount(name=f"{oid}-admin", account=admin, role="admin", org=oid))
        pub = ring.export_public(f"{oid}-admin")
        org: dict[str, Any] = {
            "admins": [{"account": admin, "keys": [{"alg": pub["alg"], "pub": pub["pub"]}]}],
            "id": oid,
            "name": oname,
            "roles": list(oroles),
        }
        if i == 0:
            org["nodes"] = [{"name": f"{oid}-node-1", **_key_json(node_key)}]
        orgs.append(org)
    doc: dict[str, Any] = {
        "chain": chain_id, "orgs": orgs, "params": dict(params or {}), "time": clock()
    }  # fmt: skip
    if rules:
        doc["rules"] = dict(rules)
    raw = canonical_bytes(doc)
    genesis = load_genesis(raw, default_contracts())
    write_private(paths.genesis, raw)
    os.chmod(paths.genesis, 0o644)
    settings = {"node_key": node_info.name, **(config or {})}
    paths.config.write_bytes(orjson.dumps(settings, option=orjson.OPT_INDENT_2))
    node = open_node(root)
    try:
        if demo:
            accounts.extend(seed_demo(node, ring, password))
            if domains:
                seed_domain_demos(node, ring, password, accounts)
    finally:
        node.stop()
        node.store.close()
    return InitResult(paths=paths, genesis=genesis, accounts=accounts)


def read_genesis(root: Path) -> Genesis:
    """Load and check ``root``'s genesis document."""
    paths = ChainPaths(root)
    if not paths.exists():
        raise NotFoundError(
            f"no chain in {root}: run `carechain init --dir {root}` (or `--demo`) first"
        )
    return load_genesis(paths.genesis.read_bytes(), default_contracts())


def node_password(root: Path) -> bytes:
    """The node key's password: ``$CARECHAIN_NODE_PASSWORD`` or ``secrets/node.pass``."""
    paths = ChainPaths(root)
    env = os.environ.get("CARECHAIN_NODE_PASSWORD")
    if env:
        return env.encode()
    if paths.node_password.exists():
        return paths.node_password.read_bytes().strip()
    raise ConfigurationError(
        f"no node key password: set CARECHAIN_NODE_PASSWORD or create {paths.node_password}"
    )


def load_node_key(root: Path) -> PrivateKey:
    """Decrypt the node key with ``$CARECHAIN_NODE_PASSWORD`` or ``secrets/node.pass``."""
    paths = ChainPaths(root)
    password = node_password(root)
    config = orjson.loads(paths.config.read_bytes()) if paths.config.exists() else {}
    return Keyring(root).load(str(config.get("node_key", "node")), password)


def load_record_kek(root: Path, *, scrypt_n: int | None = None) -> KEK:
    """The record KEK (``keys/record-kek.json``), protected by the node key's password.

    Chains initialised before the record service get theirs created here, on first use.
    """
    path = kek_path(root)
    password = node_password(root)
    if not path.exists():
        try:
            return create_kek(path, password, **({"scrypt_n": scrypt_n} if scrypt_n else {}))
        except ConflictError:  # created concurrently: load it
            pass
    return load_kek(path, password)


def load_index_key(root: Path) -> bytes:
    """The consortium's secure-index key (``secrets/index.key``, 32 bytes, 0600).

    Created on first use for chains initialised before; a consortium shares one key out of
    band (copy the file to every node before anchoring records).
    """
    path = ChainPaths(root).index_key
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            write_private(path, _secrets.token_bytes(INDEX_KEY_SIZE))
    data = path.read_bytes()
    if len(data) != INDEX_KEY_SIZE:
        raise ConfigurationError(
            f"{path} holds {len(data)} bytes, want {INDEX_KEY_SIZE} (the consortium index key)"
        )
    return data


def lock_data_dir(root: Path) -> Callable[[], None]:
    """Take the data directory's exclusive node lock; return the function that releases it.

    Two nodes writing one ledger would fight over block heights: the second is refused.
    """
    path = ChainPaths(root).lock
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ConflictError(
            f"another carechain node (pid {holder}) is serving {root}; stop it first, or use "
            "another --dir"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())

    def release() -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    return release


def open_node(root: Path, *, vfs: str | None = None, **kwargs: Any) -> Node:
    """Open the node of the chain in ``root`` (store, genesis, node key) and start it.

    Holds the data directory's lock until the node stops (``ConflictError`` if taken).
    ``vfs``: a registered SQLite VFS for the ledger (the storage-fault tests inject I/O
    errors through one).
    """
    genesis = read_genesis(root)
    release = lock_data_dir(root)
    store: SQLiteStore | None = None
    try:
        store = SQLiteStore(ChainPaths(root).ledger, vfs=vfs)
        node_key = load_node_key(root)
        if "orderer" not in kwargs:  # consortium (node.json type): the etcd orderer, ADR 0011
            from carechain.node.consortium import orderer_for

            kwargs["orderer"] = orderer_for(root, genesis, node_key)
        node = Node(store, genesis, node_key, **kwargs)
    except BaseException:
        if store is not None:
            store.close()
        release()
        raise
    node.add_closer(release)
    node.start()
    return node


def new_tx(
    node_or_chain: Node | str, kind: str, sender: str, args: dict[str, Any], keys: list[PrivateKey]
) -> SignedTx:
    """Build a fresh transaction (current time, random nonce)."""
    chain = node_or_chain if isinstance(node_or_chain, str) else node_or_chain.genesis.chain
    return make_tx(
        chain=chain, kind=kind, sender=sender, args=args, keys=keys,
        created=now_ms(), nonce=os.urandom(16),
    )  # fmt: skip


def seed_demo(node: Node, ring: Keyring, password: bytes) -> list[DemoAccount]:
    """Register demo members and patients through real transactions."""
    out: list[DemoAccount] = []
    members = (
        ("seoul-general", "dr-kim", "practitioner", "KR-MD-20417", "Dr. Kim Minji"),
        ("seoul-general", "nurse-park", "nurse", "KR-RN-55102", "Park Jiwoo, RN"),
        ("hanbit-pharmacy", "ph-lee", "pharmacist", "KR-PH-31877", "Lee Seojun, PharmD"),
        ("mfds-regulator", "auditor-choi", "auditor", "KR-AU-00912", "Choi Yuna"),
    )
    txs = []
    for org, name, role, licence, display in members:
        admin_key = ring.load(f"{org}-admin", password)
        account = f"{org}.{name}"
        ring.create(name, "ed25519", password, account=account)
        pub = ring.export_public(name)
        txs.append(
            new_tx(
                node,
                "identity.register_member@1",
                f"{org}.admin",
                {
                    "account": account,
                    "display": display,
                    "keys": [{"alg": pub["alg"], "pub": pub["pub"]}],
                    "licence": licence,
                    "org": org,
                    "role": role,
                },
                [admin_key],
            )
        )
        out.append(DemoAccount(name=name, account=account, role=role, org=org))
    for name, alg in (("patient-1", "ed25519"), ("patient-2", "ml-dsa-65")):
        tmp = ring.create(name, alg, password)
        account = patient_account_id(tmp.kid)
        key = ring.load(name, password)
        txs.append(
            new_tx(node, "identity.register_patient@1", account, {"keys": [_key_json(key)]}, [key])
        )
        out.append(DemoAccount(name=name, account=account, role=f"patient ({alg})"))
    node.submit_and_wait([t.raw for t in txs])
    return out


def seed_domain_demos(
    node: Node, ring: Keyring, password: bytes, accounts: list[DemoAccount]
) -> None:
    """The domain demo data on top of :func:`seed_demo`, through real transactions:
    prescriber and pharmacy credentials (rx), a payer plan with the demo patients enrolled
    (claims), supply-chain trading partners and products (supply), and a research sponsor
    admitted by vote (trials). ``carechain init --demo`` runs it; the test suite's base demo
    chain does not, so its shape stays small and fixed."""
    from carechain.node.claims import seed_claims_demo  # domain services import chaindir
    from carechain.node.rx import seed_rx_demo
    from carechain.node.supply.demo import ensure_supply_demo_on
    from carechain.node.trials import admit_demo_sponsor_on

    seed_rx_demo(node, ring, password)
    seed_claims_demo(node, ring, password, accounts)
    admit_demo_sponsor_on(node, ring, password)  # first: its vote counts the founding five
    ensure_supply_demo_on(node, ring, password)  # votes until its wholesaler is admitted
