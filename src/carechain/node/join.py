"""Joining a consortium later: the node directory of an organisation admitted by vote.

The path a new organisation takes (ADR 0011, "Joining later")::

    1  carechain consortium join --dir D --genesis <file|URL> --org-id X --etcd … --peers …
         → D holds the shared genesis, X's own node key, KEK, admin key and node.json
           (``"join": {"org": X}``); prints the admission request (org id, node kid, key)
    2  a member: carechain consortium admit --url <its node> --keys <admin dir> --request R
         → ``governance.propose@1 {"action": "admit_org", "org": <R.org>}`` (proposal id)
       other members: carechain consortium vote --proposal P …  → effected by majority
    3  carechain consortium catch-up --dir D   (then: carechain node --dir D)
         → blocks up to X's admission come from peers' *final* blocks (node/catchup.py),
           stored with a peer's seal (X had no active node key then); after that the node
           reads etcd itself (or peers again if history was compacted), seals and cosigns,
           and the quorum counts X (organisations with active node keys). ``catch-up`` runs
           the node headless until its key is active, because the API's record service
           needs the node key registered when it starts.

Invariants:

* ``join_consortium`` never overwrites: a directory that already holds a chain is refused.
* :class:`JoiningEtcdOrderer` answers every read with ``history_compacted`` until this
  node's key is active in its own committed state, so it never applies a block it could not
  seal; catchup.py flips it (:meth:`JoiningEtcdOrderer.note_admitted`).
* The admission request is public data only: org id, name, roles, the admin's and the node's
  public keys; the index key (shared secret) is handed over out of band (``--index-key``).
"""

from __future__ import annotations

import secrets as _secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import orjson

from carechain.contracts import default_contracts
from carechain.crypto.kek import create_kek, kek_path
from carechain.crypto.keystore import Keyring
from carechain.encoding import b64u_encode
from carechain.errors import (
    ConflictError,
    NotFoundError,
    UnavailableError,
    ValidationError,
)
from carechain.ledger.genesis import Genesis, load_genesis
from carechain.ordering.abc import OrderedBatch
from carechain.ordering.etcd import EtcdOrderer

REQUEST_FILE = "admission-request.json"
"""Where ``join_consortium`` writes the admission request inside the node directory."""
ROLES = ("hospital",)


@dataclass(frozen=True, slots=True, kw_only=True)
class AdmissionRequest:
    """What the existing members vote on (public data only)."""

    org: dict[str, Any]
    """The ``org`` argument of ``governance.propose@1`` ``admit_org`` (genesis org shape)."""
    node_kid: str
    """The new node's key id."""
    path: Path
    """The request file written in the node directory."""

    def to_json(self) -> bytes:
        """The request as written to :data:`REQUEST_FILE`."""
        return orjson.dumps(
            {"node_kid": self.node_kid, "org": self.org}, option=orjson.OPT_INDENT_2
        )


def fetch_genesis(source: str, *, timeout: float = 10.0) -> bytes:
    """Genesis bytes from a file, a node's base URL (``/v1/genesis``) or a document URL."""
    if source.startswith(("http://", "https://")):
        url = source.rstrip("/")
        if not url.endswith((".json", "/v1/genesis")):
            url += "/v1/genesis"
        try:
            resp = httpx.get(url, timeout=timeout)
        except httpx.HTTPError as exc:
            raise UnavailableError(f"--genesis {url}: {exc}", code="unreachable") from None
        if resp.status_code != 200:
            raise NotFoundError(f"--genesis {url}: HTTP {resp.status_code}")
        return resp.content
    path = Path(source)
    if not path.is_file():
        raise NotFoundError(f"--genesis {source}: no such file")
    return path.read_bytes()


def join_consortium(
    root: Path,
    *,
    genesis_raw: bytes,
    org_id: str,
    name: str | None = None,
    roles: Sequence[str] = ROLES,
    etcd: Sequence[str],
    peers: Sequence[str],
    password: bytes,
    index_key: bytes | None = None,
    scrypt_n: int | None = None,
) -> tuple[Genesis, AdmissionRequest]:
    """Create the node directory of organisation ``org_id`` joining the chain of
    ``genesis_raw`` (see the module docstring); return the admission request."""
    from carechain.node.chaindir import INDEX_KEY_SIZE, ChainPaths, write_private

    genesis = load_genesis(genesis_raw, default_contracts())
    paths = ChainPaths(root)
    if paths.exists() or paths.config.exists():
        raise ConflictError(f"{root} already holds a chain; use another --dir")
    founding = [o["id"] for o in cast(list[dict[str, Any]], genesis.doc["orgs"])]
    if org_id in founding:
        raise ConflictError(f"organisation {org_id} is a founding member of {genesis.chain}")
    if not peers:
        raise ValidationError(
            "--peers: want at least one member node's API URL (blocks before the admission "
            "come from peers' final blocks)"
        )
    if index_key is not None and len(index_key) != INDEX_KEY_SIZE:
        raise ValidationError(f"--index-key: got {len(index_key)} bytes, want {INDEX_KEY_SIZE}")
    kw: dict[str, Any] = {"scrypt_n": scrypt_n} if scrypt_n else {}
    root.mkdir(parents=True, exist_ok=True)
    ring = Keyring(root, **kw)
    node_password = _secrets.token_urlsafe(24).encode()
    ring.create("node", "ed25519", node_password)
    node_key = ring.load("node", node_password)
    write_private(paths.node_password, node_password)
    create_kek(kek_path(root), node_password, **kw)
    write_private(paths.index_key, index_key or _secrets.token_bytes(INDEX_KEY_SIZE))
    admin = ring.create(f"{org_id}-admin", "ed25519", password, account=f"{org_id}.admin")
    admin_pub = ring.export_public(admin.name)
    org = {
        "admins": [
            {
                "account": f"{org_id}.admin",
                "keys": [{"alg": admin_pub["alg"], "pub": admin_pub["pub"]}],
            }
        ],
        "id": org_id,
        "name": name or org_id,
        "nodes": [
            {"alg": node_key.alg, "name": f"{org_id}-node-1", "pub": b64u_encode(node_key.public)}
        ],
        "roles": list(roles),
    }
    members = len(founding) + 1
    config = {
        "etcd": {"endpoints": list(etcd), "members": members},
        "join": {"org": org_id},
        "node_key": "node",
        "peers": list(peers),
        "type": "consortium",
    }
    paths.config.write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))
    paths.genesis.write_bytes(genesis.raw)  # last: its presence marks a complete directory
    request = AdmissionRequest(org=org, node_kid=node_key.kid, path=root / REQUEST_FILE)
    request.path.write_bytes(request.to_json())
    return genesis, request


def read_request(path: Path) -> dict[str, Any]:
    """The ``org`` object of an admission request file."""
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ValidationError(f"--request {path}: {exc}") from None
    org = doc.get("org") if isinstance(doc, dict) else None
    if not isinstance(org, dict) or not isinstance(org.get("id"), str):
        raise ValidationError(f"--request {path}: want an object with an 'org' object")
    return org


def proposal_id(tx_id: bytes) -> str:
    """The governance proposal id of a proposing transaction (contracts/governance.py)."""
    return tx_id.hex()[:16]


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncReport:
    """What :func:`sync_joined` did."""

    start: int
    """Head height before."""
    head: int
    """Head height after (the block that made this node's key active, or later)."""
    seconds: float
    """Wall time."""


def joined_node_key(root: Path) -> tuple[str, str, str, bytes] | None:
    """``(org, name, alg, public key)`` of a joined directory's own node key, else None:
    what a client of this organisation pins besides the genesis keys (its checkpoints are
    signed by a key genesis cannot name)."""
    from carechain.node.chaindir import load_node_key
    from carechain.node.consortium import read_config

    join = read_config(root).get("join")
    if not isinstance(join, dict) or not isinstance(join.get("org"), str):
        return None
    key = load_node_key(root)
    return str(join["org"]), f"{join['org']}-node", key.alg, key.public


def needs_catch_up(root: Path) -> bool:
    """Whether ``root`` is a joined directory whose node key is not yet active in its own
    ledger (``carechain node`` then runs :func:`sync_joined` first)."""
    from carechain.ledger.keys import node_state_key
    from carechain.node.chaindir import ChainPaths, load_node_key
    from carechain.node.consortium import read_config
    from carechain.storage.sqlite import SQLiteStore

    if "join" not in read_config(root):
        return False
    paths = ChainPaths(root)
    if not paths.ledger.exists():
        return True
    kid = load_node_key(root).kid
    store = SQLiteStore(paths.ledger)
    try:
        raw = store.find_state(node_state_key(kid))
    finally:
        store.close()
    rec = orjson.loads(raw) if raw is not None else None
    return not (isinstance(rec, dict) and rec.get("status", "active") == "active")


def sync_joined(root: Path, *, timeout: float = 600.0) -> SyncReport:
    """Run the node of ``root`` headless until its organisation's admission block is
    applied (its key is active in its own state), then stop it.

    A joined directory's ledger starts at genesis, where its node key is unknown, and the
    API's record service needs the key registered; so ``carechain consortium catch-up``
    runs this before ``carechain node``. Raises UnavailableError(``not_admitted``) after
    ``timeout`` seconds (the members have not admitted the organisation yet).
    """
    from carechain.node.chaindir import open_node

    t0 = time.monotonic()
    node = open_node(root)
    start = node.head.header.height
    try:
        while not getattr(node.orderer, "admitted", True):
            if node.failed is not None:
                raise UnavailableError(f"the node stopped while catching up: {node.failed}")
            if time.monotonic() - t0 > timeout:
                raise UnavailableError(
                    f"not admitted yet: applied the peers' final blocks up to "
                    f"{node.head.header.height} and this node key is not active there; the "
                    "members must vote to admit the organisation (consortium admit / vote)",
                    code="not_admitted",
                )
            time.sleep(0.1)
    finally:
        node.stop()
        node.store.close()
    return SyncReport(start=start, head=node.head.header.height, seconds=time.monotonic() - t0)


class JoiningEtcdOrderer(EtcdOrderer):
    """The etcd orderer of a node whose organisation joined after genesis.

    Until :meth:`note_admitted` saw this node's key active in the node's own state, every
    :meth:`read` raises ``history_compacted``: the node then takes final blocks from its
    peers (node/catchup.py), which it can store with a peer's seal, instead of applying a
    batch it could not seal (``Node._check_can_seal`` would stop it).
    """

    admitted = False
    """Whether this node's key is active in its committed state."""

    def read(self, after: int, *, limit: int = 64, timeout: float = 0.0) -> list[OrderedBatch]:
        if not self.admitted:
            raise UnavailableError(
                "this organisation's node key is not active in this node's state yet: the "
                "blocks up to its admission come from peers' final blocks",
                code="history_compacted",
            )
        return super().read(after, limit=limit, timeout=timeout)

    def note_admitted(self, active: bool) -> None:
        """Called by catch-up with whether the node key is active in the node's state."""
        self.admitted = self.admitted or active


__all__ = [
    "REQUEST_FILE",
    "AdmissionRequest",
    "JoiningEtcdOrderer",
    "SyncReport",
    "fetch_genesis",
    "join_consortium",
    "proposal_id",
    "read_request",
    "sync_joined",
]
