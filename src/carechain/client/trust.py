"""The client's trust: the pinned genesis document and the newest trusted checkpoint.

The genesis document is the only trust root. It names the chain, the checkpoint origin and
the node keys (``orgs[].nodes``) whose signatures make a checkpoint authentic; nothing the
server says about keys (``/v1/chain``) is trusted.

:meth:`TrustStore.update` is a small state machine (after python-tuf's trusted metadata set).
A candidate checkpoint note is accepted only after, in this order:

1. its signatures verify against a genesis node key under the key name ``origin``, and its
   first line is ``origin`` (:func:`carechain.merkle.open_checkpoint`);
2. with no trusted checkpoint yet, it becomes the first trusted one (trust on first use,
   anchored by the genesis keys);
3. a smaller tree size than the trusted one is a **rollback** (``CheckpointError``);
4. the same size with another root is a **fork** (``CheckpointError``);
5. a larger size is accepted only if a consistency proof from the trusted size to the new
   size verifies between the trusted root and the new root (RFC 9162 §2.1.4.2); the trusted
   root of size 0 is extended by any tree;
6. the accepted checkpoint replaces the trusted one in memory and, when a trust file is
   configured, on disk (atomically: temp file, fsync, rename).

A trust file is JSON ``{"v": 1, "genesis": hex, "origin", "size", "root": hex, "note"}``. On
load its note is verified again (steps 1 and the size/root match), and its genesis hash must
equal the genesis in use ("pinned genesis mismatch" otherwise).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from carechain.crypto.signatures import PublicKeyRecord, get_scheme
from carechain.encoding import b64u_decode
from carechain.errors import (
    CheckpointError,
    InfrastructureError,
    LedgerError,
    UnavailableError,
    ValidationError,
    VerificationError,
)
from carechain.ledger.genesis import genesis_hash, read_genesis_document
from carechain.merkle import EMPTY_ROOT, Checkpoint, NoteVerifier, open_checkpoint
from carechain.merkle.proof import verify_consistency

TRUST_FILE_VERSION = 1
MAX_TRUST_FILE_BYTES = 64 * 1024

ConsistencyFetcher = Callable[[int, int], Sequence[bytes]]
"""Fetches the consistency proof from the first size to the second (hashes, bottom-up)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeKey:
    """A node key from the genesis document: it may sign blocks and checkpoints."""

    org: str
    """Organisation that runs the node."""
    name: str
    """Node name (display only; checkpoints are signed under the chain origin)."""
    record: PublicKeyRecord
    """Algorithm and public key."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustRoot:
    """A parsed genesis document: what the client trusts, and nothing else."""

    raw: bytes
    """The canonical genesis bytes as pinned."""
    hash: bytes
    """``tagged_hash("carechain/genesis@1", raw)``: the hash block 0 takes as ``prev``."""
    chain: str
    """Chain id (transactions built by the client name it)."""
    origin: str
    """Checkpoint origin line, also the key name checkpoints are signed under."""
    node_keys: tuple[NodeKey, ...]
    """Every node key of every founding organisation."""

    def verifiers(self) -> list[NoteVerifier]:
        """The checkpoint-note verifiers: each node key under the name ``origin``."""
        return [NoteVerifier(self.origin, k.record) for k in self.node_keys]


def parse_genesis(raw: bytes) -> TrustRoot:
    """Parse a genesis document as a trust root (``ValidationError`` if malformed).

    Only what the client needs is checked here (chain, origin, node keys); the organisations'
    full validation is the node's (``ledger.genesis.load_genesis``).
    """
    doc, chain, origin = read_genesis_document(raw)
    orgs = doc.get("orgs")
    if not isinstance(orgs, list):
        raise ValidationError("genesis.orgs: want a list of organisations")
    keys: list[NodeKey] = []
    for i, org in enumerate(orgs):
        if not isinstance(org, Mapping):
            raise ValidationError(f"genesis.orgs[{i}]: want an object")
        nodes = org.get("nodes", [])
        if not isinstance(nodes, list):
            raise ValidationError(f"genesis.orgs[{i}].nodes: want a list")
        for j, node in enumerate(nodes):
            keys.append(_node_key(org, node, f"genesis.orgs[{i}].nodes[{j}]"))
    if not keys:
        raise ValidationError("genesis: no organisation lists a node key; nothing can sign")
    try:
        for k in keys:  # the origin must be a valid note key name for every key's algorithm
            NoteVerifier(origin, k.record)
    except ValidationError as exc:
        raise ValidationError(f"genesis: {exc}") from None
    return TrustRoot(
        raw=raw, hash=genesis_hash(raw), chain=chain, origin=origin, node_keys=tuple(keys)
    )


def _node_key(org: Mapping[str, Any], node: object, where: str) -> NodeKey:
    if not isinstance(node, Mapping):
        raise ValidationError(f"{where}: want an object")
    alg, pub = node.get("alg"), node.get("pub")
    if not isinstance(alg, str) or not isinstance(pub, str):
        raise ValidationError(f"{where}: want string fields alg and pub")
    public = b64u_decode(pub, what=f"{where}.pub", max_bytes=8192)
    scheme = get_scheme(alg)
    if len(public) != scheme.public_key_size:
        raise ValidationError(
            f"{where}.pub: got {len(public)} bytes, want {scheme.public_key_size}"
        )
    return NodeKey(
        org=str(org.get("id", "")),
        name=str(node.get("name", "")),
        record=PublicKeyRecord(alg=alg, public=public),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustedCheckpoint:
    """A verified checkpoint with the signed note it came from."""

    checkpoint: Checkpoint
    """Origin, size and root."""
    note: bytes
    """The signed note exactly as received."""

    @property
    def size(self) -> int:
        """Tree size."""
        return self.checkpoint.size

    @property
    def root(self) -> bytes:
        """Root hash."""
        return self.checkpoint.root


class TrustStore:
    """The newest trusted checkpoint of one chain (see the module docstring for the rules)."""

    def __init__(self, root: TrustRoot, path: Path | None = None) -> None:
        self.root = root
        self.path = path
        self._lock = threading.Lock()
        self._trusted: TrustedCheckpoint | None = None
        if path is not None:
            self._trusted = self._load(path)

    @property
    def trusted(self) -> TrustedCheckpoint | None:
        """The newest trusted checkpoint, if any."""
        return self._trusted

    def open(self, note: bytes) -> Checkpoint:
        """Step 1: verify a note's signatures (genesis node keys) and origin; parse it."""
        cp = open_checkpoint(note, self.root.verifiers(), self.root.origin)
        check_empty_root(cp)
        return cp

    def update(self, note: bytes, fetch_consistency: ConsistencyFetcher) -> TrustedCheckpoint:
        """Accept ``note`` as the newest trusted checkpoint or raise ``CheckpointError``."""
        cp = self.open(note)  # step 1
        with self._lock:
            old = self._trusted
            if old is None:  # step 2
                new = TrustedCheckpoint(checkpoint=cp, note=note)
            else:
                self.check_extends(old, cp, fetch_consistency)  # steps 3-5
                if cp.size == old.size:
                    return old
                new = TrustedCheckpoint(checkpoint=cp, note=note)
            if self.path is not None:  # step 6
                self._save(self.path, new)
            self._trusted = new
            return new

    @staticmethod
    def check_extends(
        old: TrustedCheckpoint, cp: Checkpoint, fetch_consistency: ConsistencyFetcher
    ) -> None:
        """Steps 3-5: raise ``CheckpointError`` unless ``cp`` is ``old`` or extends it."""
        if cp.size < old.size:  # step 3
            raise CheckpointError(
                f"rollback: the server's checkpoint has tree size {cp.size}, smaller than the "
                f"trusted size {old.size} (root {old.root.hex()})",
                code="checkpoint_rollback",
            )
        if cp.size == old.size:  # step 4
            if cp.root != old.root:
                raise CheckpointError(
                    f"fork: tree size {cp.size} has root {cp.root.hex()} on the server, the "
                    f"trusted checkpoint has root {old.root.hex()}",
                    code="checkpoint_fork",
                )
            return
        if old.size == 0:  # step 5: any tree extends the empty one
            return
        try:
            proof = fetch_consistency(old.size, cp.size)
            verify_consistency(old.size, cp.size, proof, old.root, cp.root)
        except UnavailableError:
            raise  # the node is unreachable or busy: nothing was learnt, retry later
        except LedgerError as exc:
            raise CheckpointError(
                f"fork: no valid consistency proof from the trusted size {old.size} to "
                f"{cp.size}: {exc}",
                code="checkpoint_fork",
            ) from None

    # -- persistence ------------------------------------------------------------------------
    def _load(self, path: Path) -> TrustedCheckpoint | None:
        try:
            with path.open("rb") as f:
                data = f.read(MAX_TRUST_FILE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InfrastructureError(f"cannot read trust file {path}: {exc.strerror}") from None
        where = f"trust file {path}"
        hint = "remove the file to trust the node's next checkpoint afresh"
        if len(data) > MAX_TRUST_FILE_BYTES:
            raise ValidationError(f"{where}: larger than {MAX_TRUST_FILE_BYTES} bytes; {hint}")
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ValidationError(f"{where}: not JSON; {hint}") from None
        if not isinstance(obj, dict) or obj.get("v") != TRUST_FILE_VERSION:
            raise ValidationError(f"{where}: want a version {TRUST_FILE_VERSION} object; {hint}")
        pinned, note = obj.get("genesis"), obj.get("note")
        size, root = obj.get("size"), obj.get("root")
        if not (
            isinstance(pinned, str)
            and isinstance(note, str)
            and isinstance(size, int)
            and isinstance(root, str)
        ):
            raise ValidationError(f"{where}: want string genesis, note, root and integer size")
        if pinned != self.root.hash.hex():
            raise VerificationError(
                f"pinned genesis mismatch: {where} trusts genesis {pinned}, the genesis in use "
                f"is {self.root.hash.hex()} (another chain, or a replaced genesis)",
                code="genesis_mismatch",
            )
        try:
            cp = self.open(note.encode("utf-8"))
        except LedgerError as exc:
            raise CheckpointError(f"{where}: stored checkpoint does not verify: {exc}") from None
        if cp.size != size or cp.root.hex() != root:
            raise CheckpointError(f"{where}: size/root differ from its signed note")
        return TrustedCheckpoint(checkpoint=cp, note=note.encode("utf-8"))

    def _save(self, path: Path, tc: TrustedCheckpoint) -> None:
        data = orjson.dumps(
            {
                "v": TRUST_FILE_VERSION,
                "genesis": self.root.hash.hex(),
                "origin": tc.checkpoint.origin,
                "size": tc.size,
                "root": tc.root.hex(),
                "note": tc.note.decode("utf-8"),
            },
            option=orjson.OPT_INDENT_2,
        )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except OSError as exc:
            raise InfrastructureError(f"cannot write trust file {path}: {exc.strerror}") from None


def check_empty_root(cp: Checkpoint) -> None:
    """A size-0 checkpoint must carry the empty-tree root."""
    if cp.size == 0 and cp.root != EMPTY_ROOT:
        raise CheckpointError(f"checkpoint of size 0: got root {cp.root.hex()}, want MTH({{}})")


__all__ = [
    "ConsistencyFetcher",
    "NodeKey",
    "TrustRoot",
    "TrustStore",
    "TrustedCheckpoint",
    "check_empty_root",
    "parse_genesis",
]
