"""``Client``: build, sign and submit transactions; fetch and *verify* what a node answers.

The client trusts exactly one thing, the genesis document (given, or fetched once and then
pinned). Everything else a node says is either checked locally (envelopes hash to their id,
headers hash to the block hash) or proven against a checkpoint signed by a genesis node key:

* :meth:`Client.checkpoint` verifies the node's signed note and moves the trusted checkpoint
  forward only along a verified consistency proof (see :mod:`carechain.client.trust`);
* :meth:`Client.prove_inclusion` recomputes the leaf hash from the envelope bytes and checks
  the audit path against the trusted root (RFC 9162 §2.1.3.2);
* :meth:`Client.prove_consistency` checks that the tree of size ``a`` is a prefix of the tree
  of size ``b``, and ``b``'s root a prefix of the trusted tree (RFC 9162 §2.1.4.2).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from carechain.client._http import DEFAULT_TIMEOUT, HttpApi, decode_json
from carechain.client.jws import ASSERTION_TYPE, client_assertion
from carechain.client.models import (
    Block,
    ChainInfo,
    Result,
    TxRecord,
    get_field,
    get_hex,
    parse_block,
    parse_chain_info,
    parse_hex,
    parse_results,
    parse_tx_record,
    tx_id_bytes,
)
from carechain.client.trust import (
    NodeKey,
    TrustedCheckpoint,
    TrustRoot,
    TrustStore,
    parse_genesis,
)
from carechain.crypto.signatures import PrivateKey
from carechain.encoding import JsonObject
from carechain.errors import (
    AuthenticationError,
    CheckpointError,
    ProofError,
    ValidationError,
    VerificationError,
)
from carechain.ledger.genesis import genesis_hash
from carechain.ledger.tx import NONCE_SIZE, SignedTx, make_tx, parse_envelope
from carechain.merkle import EMPTY_ROOT, Checkpoint, leaf_hash, verify_consistency, verify_inclusion

URL_ENV = "CARECHAIN_URL"
DEFAULT_URL = "http://127.0.0.1:8700"
MAX_SUBMIT_TIMEOUT = 60


def default_url() -> str:
    """``$CARECHAIN_URL`` if set and non-empty, else ``http://127.0.0.1:8700``."""
    return os.environ.get(URL_ENV) or DEFAULT_URL


def now_ms() -> int:
    """Wall-clock Unix milliseconds (a transaction's ``created``)."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class InclusionResult:
    """A transaction proven to be in the log of a trusted, signed checkpoint."""

    tx: TxRecord
    """The transaction (envelope checked against its id)."""
    leaf_index: int
    """Its leaf index in the ledger-wide log."""
    tree_size: int
    """Size of the tree the proof is for (= the checkpoint's size)."""
    leaf_hash: bytes
    """``SHA-256(0x00 || envelope)``, computed locally."""
    proof: tuple[bytes, ...]
    """The audit path that verified."""
    checkpoint: TrustedCheckpoint
    """The signed checkpoint whose root the path leads to."""

    @property
    def root(self) -> bytes:
        """The checkpoint root the proof verified against."""
        return self.checkpoint.root


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsistencyResult:
    """The tree of ``size1`` proven a prefix of the tree of ``size2``, itself a prefix of the
    trusted checkpoint's tree."""

    size1: int
    """Older tree size."""
    size2: int
    """Newer tree size."""
    root1: bytes
    """Root of the older tree (proven)."""
    root2: bytes
    """Root of the newer tree (proven)."""
    proof: tuple[bytes, ...]
    """Consistency proof ``size1 → size2`` that verified (empty when trivial)."""
    anchor_proof: tuple[bytes, ...]
    """Consistency proof ``size2 → checkpoint size`` that verified (empty when equal)."""
    checkpoint: TrustedCheckpoint
    """The signed checkpoint that anchors both roots."""


TxInput = SignedTx | bytes


class Client:
    """A verifying client of one carechain node's HTTP API.

    ``genesis``: the genesis document (the trust root) obtained out of band; when absent it is
    fetched from ``/v1/genesis`` on first use and pinned. ``trust_file``: where the newest
    trusted checkpoint (and the genesis hash) persist between runs. ``http``: an
    ``httpx.Client`` to use (e.g. a FastAPI ``TestClient`` or one with a mock transport).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        genesis: bytes | None = None,
        trust_file: Path | None = None,
        http: httpx.Client | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        require_final: bool = False,
        node_keys: Sequence[NodeKey] = (),
    ) -> None:
        """``node_keys``: node keys you trust besides the genesis ones, e.g. your own
        organisation's node when it was admitted after genesis (its checkpoints are signed by
        a key genesis cannot name). A trust decision like pinning the genesis: pass only keys
        obtained out of band (``carechain demo --dir`` adds a joined directory's own key)."""
        self.base_url = (base_url or default_url()).rstrip("/")
        self._extra_node_keys = tuple(node_keys)
        self.api = HttpApi(self.base_url, http, timeout=timeout)
        self.trust_file = Path(trust_file) if trust_file is not None else None
        self._given_genesis = genesis
        self._store: TrustStore | None = None
        self._lock = threading.Lock()
        self.require_final = require_final
        """Trust only checkpoints a quorum of the genesis organisations cosigned (ADR 0011)."""

    # -- lifecycle ----------------------------------------------------------------------
    def close(self) -> None:
        """Release the HTTP connection pool (if this client created it)."""
        self.api.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- trust root ---------------------------------------------------------------------
    @property
    def trust(self) -> TrustStore:
        """The trust store (genesis pinned on first access)."""
        with self._lock:
            if self._store is None:
                raw = self._given_genesis
                if raw is None:
                    raw = self.api.get_bytes("/v1/genesis")
                root = parse_genesis(raw)
                if self._extra_node_keys:
                    root = dataclasses.replace(
                        root, node_keys=(*root.node_keys, *self._extra_node_keys)
                    )
                self._store = TrustStore(root, self.trust_file)
            return self._store

    @property
    def root(self) -> TrustRoot:
        """The pinned genesis as a trust root."""
        return self.trust.root

    @property
    def chain(self) -> str:
        """Chain id from the pinned genesis."""
        return self.root.chain

    def check_genesis(self) -> TrustRoot:
        """Fetch ``/v1/genesis`` again and compare it with the pinned one."""
        pinned = self.root
        raw = self.api.get_bytes("/v1/genesis")
        got = genesis_hash(raw)
        if got != pinned.hash:
            raise VerificationError(
                f"pinned genesis mismatch: the node serves genesis {got.hex()}, this client "
                f"trusts {pinned.hash.hex()} (another chain, or a replaced trust root)",
                code="genesis_mismatch",
            )
        return pinned

    @property
    def trusted(self) -> TrustedCheckpoint | None:
        """The newest trusted checkpoint, if one was accepted (or loaded from the trust file)."""
        return self.trust.trusted

    # -- transactions -------------------------------------------------------------------
    def build(
        self,
        kind: str,
        sender: str,
        args: JsonObject,
        keys: PrivateKey | Sequence[PrivateKey],
    ) -> SignedTx:
        """Build and sign a transaction for this chain (current time, random nonce)."""
        key_list = [keys] if isinstance(keys, PrivateKey) else list(keys)
        if not key_list:
            raise ValidationError("build: at least one signing key is required")
        return make_tx(
            chain=self.chain,
            kind=kind,
            sender=sender,
            args=args,
            keys=key_list,
            created=now_ms(),
            nonce=os.urandom(NONCE_SIZE),
        )

    def submit(
        self,
        txs: TxInput | Sequence[TxInput],
        wait: bool = True,
        *,
        timeout: float | None = None,
    ) -> list[Result]:
        """Submit one or many transactions (all or nothing); one :class:`Result` each.

        With ``wait`` the node answers once the block is durably committed. A transaction
        the node refuses before ordering (replay, bad signature, revoked key, ...) raises the
        matching :class:`LedgerError`; one its contract rejects comes back ``rejected``.
        """
        items: Sequence[TxInput] = [txs] if isinstance(txs, SignedTx | bytes) else txs
        if not items:
            raise ValidationError("submit: no transactions given")
        raws = [t.raw if isinstance(t, SignedTx) else bytes(t) for t in items]
        ids = [t.tx_id if isinstance(t, SignedTx) else parse_envelope(t).tx_id for t in items]
        if len(raws) == 1:
            content, ctype = raws[0], "application/json"
        else:
            content, ctype = b"".join(r + b"\n" for r in raws), "application/x-ndjson"
        params: dict[str, str | int] = {"wait": "true" if wait else "false"}
        http_timeout = None
        if timeout is not None:
            if not 0 < timeout <= MAX_SUBMIT_TIMEOUT:
                raise ValidationError(f"timeout: got {timeout}, want 0 < timeout <= 60 s")
            params["timeout"] = f"{timeout:g}"
            http_timeout = timeout + 30
        _, body, _ = self.api.request(
            "POST",
            "/v1/transactions",
            params=params,
            content=content,
            headers={"content-type": ctype},
            timeout=http_timeout,
        )
        return parse_results(decode_json(body, "POST /v1/transactions"), ids)

    def get_tx(self, tx_id: bytes | str) -> TxRecord:
        """A committed transaction; its envelope must hash to ``tx_id``."""
        want = tx_id_bytes(tx_id)
        return parse_tx_record(self.api.get_json(f"/v1/transactions/{want.hex()}"), want)

    def get_block(self, height: int) -> Block:
        """Block ``height``; its header must parse and hash to the reported hash."""
        if isinstance(height, bool) or not isinstance(height, int) or height < 0:
            raise ValidationError(f"block height: got {height!r}, want an integer >= 0")
        return parse_block(self.api.get_json(f"/v1/blocks/{height}"), height)

    def blocks(self, limit: int = 20, before: int | None = None) -> Any:
        """``GET /v1/blocks``: the newest blocks, summarised (as reported)."""
        params: dict[str, str | int] = {"limit": limit}
        if before is not None:
            params["before"] = before
        return self.api.get_json("/v1/blocks", params)

    def chain_info(self) -> ChainInfo:
        """``GET /v1/chain`` (informative only: keys come from the genesis, not from here)."""
        return parse_chain_info(self.api.get_json("/v1/chain"))

    def account(self, account_id: str) -> Any:
        """``GET /v1/accounts/{id}`` as reported."""
        return self.api.get_json(f"/v1/accounts/{account_id}")

    def health(self) -> Any:
        """``GET /healthz``."""
        return self.api.get_json("/healthz")

    # -- checkpoints and proofs -------------------------------------------------------------
    def checkpoint(self) -> Checkpoint:
        """Fetch the node's newest checkpoint, verify it and make it the trusted one.

        Raises :class:`CheckpointError` for a bad signature, unknown signer, wrong origin,
        rollback, fork, or growth without a verifying consistency proof.
        """
        return self.refresh().checkpoint

    def refresh(self) -> TrustedCheckpoint:
        """Like :meth:`checkpoint`, returning the signed note too."""
        store = self.trust
        if self.require_final:
            return self._refresh_final(store)
        note = self.api.get_bytes("/v1/checkpoint")
        return store.update(note, self._consistency_path)

    def _refresh_final(self, store: TrustStore) -> TrustedCheckpoint:
        """The newest final checkpoint: every cosignature verified with genesis node keys,
        more than the genesis quorum of organisations, then the node's own signed checkpoint
        at that height (same size and root) through the usual rollback/fork rules."""
        from carechain.ledger.genesis import read_genesis_document
        from carechain.ledger.params import ChainParams
        from carechain.merkle.cosignature import Cosigner, block_of, verify_final

        doc, _, _ = read_genesis_document(self.root.raw)
        params = ChainParams.from_json(doc.get("params", {}))
        body = self.api.get_json("/v1/checkpoint/cosigned")
        opened = verify_final(
            str(body.get("note", "")).encode(),
            [(k.org, Cosigner(k.name, k.record)) for k in self.root.node_keys],
            self.root.origin,
            num=params.cosign_quorum_num,
            den=params.cosign_quorum_den,
        )
        height, _ = block_of(opened.checkpoint)
        note = self.api.get_bytes("/v1/checkpoint", {"height": height})
        plain = store.open(note)
        if (plain.size, plain.root) != (opened.checkpoint.size, opened.checkpoint.root):
            raise CheckpointError(
                f"checkpoint at block {height}: got size {plain.size}, want the final "
                f"cosigned size {opened.checkpoint.size} and root"
            )
        return store.update(note, self._consistency_path)

    def checkpoint_at(self, height: int) -> Checkpoint:
        """The checkpoint stored with block ``height``: signed by a genesis node key and
        proven consistent with the newest trusted checkpoint (older ones are not trusted
        *instead* of it; a newer one is accepted through :meth:`refresh`'s rules)."""
        store = self.trust
        note = self.api.get_bytes("/v1/checkpoint", {"height": height})
        cp = store.open(note)
        trusted = self.refresh()
        if cp.size > trusted.size:
            return store.update(note, self._consistency_path).checkpoint
        if cp.size == 0:
            return cp
        store.check_extends(
            TrustedCheckpoint(checkpoint=cp, note=note), trusted.checkpoint, self._consistency_path
        )
        return cp

    def prove_inclusion(self, tx_id: bytes | str) -> InclusionResult:
        """Prove ``tx_id`` is in the log of the newest trusted checkpoint.

        1. fetch the transaction; its envelope must hash to ``tx_id``;
        2. fetch and verify the newest checkpoint (:meth:`refresh`);
        3. fetch the audit path for the transaction at the checkpoint's size;
        4. compute the leaf hash locally from the envelope bytes (RFC 9162 §2.1.1);
        5. verify the path against the checkpoint root (RFC 9162 §2.1.3.2).
        """
        rec = self.get_tx(tx_id)  # step 1
        tc = self.refresh()  # step 2
        if rec.log_index >= tc.size:
            raise ProofError(
                f"transaction {rec.tx_id.hex()} has log index {rec.log_index}, beyond the "
                f"trusted checkpoint's size {tc.size}"
            )
        obj = self.api.get_json(  # step 3
            "/v1/proofs/inclusion", {"tx": rec.tx_id.hex(), "size": tc.size}
        )
        what = "inclusion proof"
        got_id = get_hex(obj, "tx_id", what, ProofError)
        if got_id != rec.tx_id:
            raise ProofError(f"{what}: for transaction {got_id.hex()}, want {rec.tx_id.hex()}")
        size = get_field(obj, "tree_size", int, what, ProofError)
        if size != tc.size:
            raise ProofError(f"{what}: tree size {size}, want the checkpoint's {tc.size}")
        index = get_field(obj, "leaf_index", int, what, ProofError)
        if index != rec.log_index:
            raise ProofError(f"{what}: leaf index {index}, the transaction's is {rec.log_index}")
        proof = self._hashes(obj, what)
        leaf = leaf_hash(rec.envelope)  # step 4: never the server's leaf_hash
        verify_inclusion(leaf, index, tc.size, proof, tc.root)  # step 5
        return InclusionResult(
            tx=rec,
            leaf_index=index,
            tree_size=tc.size,
            leaf_hash=leaf,
            proof=tuple(proof),
            checkpoint=tc,
        )

    def prove_consistency(self, a: int, b: int) -> ConsistencyResult:
        """Prove the tree of size ``a`` is a prefix of the tree of size ``b``, and that one
        a prefix of the newest trusted (signed) checkpoint's tree.

        1. fetch and verify the newest checkpoint (size ``n``); require ``a <= b <= n``;
        2. anchor ``b``: its root is the checkpoint root (``b == n``), or a consistency proof
           ``b → n`` verifies from the server's root of ``b`` to the checkpoint root;
        3. a consistency proof ``a → b`` verifies from the server's root of ``a`` to the
           anchored root of ``b`` (a tree of size 0 is a prefix of every tree).
        """
        for what, value in (("from", a), ("to", b)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValidationError(f"consistency {what}: got {value!r}, want a tree size >= 0")
        tc = self.refresh()  # step 1
        if not a <= b <= tc.size:
            raise ValidationError(
                f"consistency: want from <= to <= {tc.size} (the trusted checkpoint's size), "
                f"got from {a}, to {b}"
            )
        anchor: list[bytes] = []
        if b == tc.size:  # step 2
            root_b = tc.root
        elif b == 0:
            root_b = EMPTY_ROOT
        else:
            root_b, _, anchor = self._consistency(b, tc.size)
            verify_consistency(b, tc.size, anchor, root_b, tc.root)
        proof: list[bytes] = []
        if a == 0:  # step 3
            root_a = EMPTY_ROOT
        else:
            root_a, root2, proof = self._consistency(a, b)
            if root2 != root_b:
                raise ProofError(
                    f"consistency {a} → {b}: the server's root2 {root2.hex()} is not the "
                    f"anchored root {root_b.hex()} of size {b}"
                )
            verify_consistency(a, b, proof, root_a, root_b)
        return ConsistencyResult(
            size1=a,
            size2=b,
            root1=root_a,
            root2=root_b,
            proof=tuple(proof),
            anchor_proof=tuple(anchor),
            checkpoint=tc,
        )

    def _consistency(self, a: int, b: int) -> tuple[bytes, bytes, list[bytes]]:
        """Fetch ``/v1/proofs/consistency?from=a&to=b``: (root1, root2, proof), unverified."""
        what = f"consistency proof {a} → {b}"
        obj = self.api.get_json("/v1/proofs/consistency", {"from": a, "to": b})
        got = (
            get_field(obj, "from", int, what, ProofError),
            get_field(obj, "to", int, what, ProofError),
        )
        if got != (a, b):
            raise ProofError(f"{what}: the server answered for sizes {got[0]} → {got[1]}")
        root1 = get_hex(obj, "root1", what, ProofError)
        root2 = get_hex(obj, "root2", what, ProofError)
        return root1, root2, self._hashes(obj, what)

    def _consistency_path(self, a: int, b: int) -> list[bytes]:
        return self._consistency(a, b)[2]

    @staticmethod
    def _hashes(obj: Any, what: str) -> list[bytes]:
        items = get_field(obj, "proof", list, what, ProofError)
        if len(items) > 128:
            raise ProofError(f"{what}: {len(items)} hashes, want at most 128")
        return [parse_hex(h, f"{what}.proof[{i}]", ProofError) for i, h in enumerate(items)]

    # -- authentication -----------------------------------------------------------------
    def authenticate(self, client_id: str, key: PrivateKey, scope: str = "system/*.read") -> str:
        """Obtain a bearer token (SMART Backend Services) and send it on later requests."""
        token_url = self.api.url("/v1/auth/token")
        assertion = client_assertion(client_id, token_url, key, now=int(time.time()))
        _, body, _ = self.api.request(
            "POST",
            "/v1/auth/token",
            data={
                "client_assertion": assertion,
                "client_assertion_type": ASSERTION_TYPE,
                "grant_type": "client_credentials",
                "scope": scope,
            },
        )
        obj = decode_json(body, "POST /v1/auth/token")
        token = obj.get("access_token") if isinstance(obj, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthenticationError("the token endpoint answered without an access_token")
        self.api.headers["authorization"] = f"Bearer {token}"
        return token


__all__ = [
    "DEFAULT_URL",
    "URL_ENV",
    "Client",
    "ConsistencyResult",
    "InclusionResult",
    "default_url",
    "now_ms",
]
