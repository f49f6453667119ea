"""Witnessing: every consortium node cosigns the checkpoint it computed; quorum → final.

After each committed block the node cosigns ``block_checkpoint(origin, height, block hash,
log size, log root)`` (merkle/cosignature.py, C2SP tlog-cosignature) with its node key and
publishes the line on a :class:`CosignBoard` (the etcd orderer: ``cosig/<height>/<node>``).
:meth:`Witness.poll` reads the peers' cosignatures, verifies each with the peer's node key as
registered in state, and groups them by the exact checkpoint text.

Invariants:

* A height is **final** when the organisations (not nodes) that cosigned this node's text are
  more than ``cosign_quorum_num / cosign_quorum_den`` of the organisations running active
  node keys (``c * den > n * num``); the final height only grows.
* If another text reaches the quorum at a height where this node's text differs, this node
  **diverged**: :attr:`Witness.divergence` keeps both cosigned notes as evidence (also in the
  store's meta ``witness/divergence``) and ``on_divergence`` is called (the node halts: it
  stops applying, acknowledges nothing more and reports it on ``/healthz``).
* A peer whose text differs while this node's text is final is recorded in
  :attr:`Witness.faulty_peers` (evidence against it); this node continues.
* Cosignatures that do not verify, or come from unknown keys, are ignored (never counted).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from carechain.crypto.signatures import PrivateKey, PublicKeyRecord
from carechain.encoding import b64u_decode
from carechain.errors import LedgerError, UnavailableError
from carechain.ledger.params import ChainParams
from carechain.merkle.cosignature import (
    Cosigner,
    block_checkpoint,
    cosign,
    cosigned_note,
    open_cosigned,
)
from carechain.storage import LedgerStore

log = logging.getLogger("carechain.witness")

KEEP_HEIGHTS = 1024
"""Own cosignatures kept in memory (newest heights)."""
SCAN_DEPTH = 8
"""Heights below the newest examined per poll when the newest is not yet final."""


class CosignBoard(Protocol):
    """Where nodes publish and read cosigned checkpoints."""

    def put_cosignature(self, height: int, note: bytes) -> None:
        """Publish this node's cosigned note for ``height``."""
        ...

    def cosignatures(self, height: int) -> dict[str, bytes]:
        """Every node's cosigned note for ``height``, by node key id."""
        ...


class DivergenceError(UnavailableError):
    """This node's block differs from the one a quorum of organisations cosigned."""

    code = "diverged"


@dataclass(slots=True)
class HeightView:
    """What is known about one height's cosignatures."""

    height: int
    """Block height."""
    text: bytes
    """This node's checkpoint text."""
    lines: list[bytes] = field(default_factory=list)
    """Verified cosignature lines over ``text`` (this node's included)."""
    nodes: list[str] = field(default_factory=list)
    """Node key ids that cosigned ``text``."""
    orgs: list[str] = field(default_factory=list)
    """Distinct organisations among them, sorted."""
    others: dict[bytes, list[str]] = field(default_factory=dict)
    """Other texts seen at this height → organisations that cosigned them."""
    other_notes: dict[bytes, bytes] = field(default_factory=dict)
    """Other text → one cosigned note of it (evidence)."""
    orgs_total: int = 0
    """Organisations running active node keys."""
    final: bool = False
    """Whether ``text`` reached the quorum."""

    def note(self) -> bytes:
        """The cosigned note over ``text`` with every verified line."""
        return cosigned_note(self.text, self.lines)


class Witness:
    """Cosigns this node's checkpoints and tracks finality (see the module docstring)."""

    def __init__(
        self,
        *,
        key: PrivateKey,
        origin: str,
        board: CosignBoard,
        store: LedgerStore,
        params: ChainParams,
        clock_s: Callable[[], int],
        on_divergence: Callable[[DivergenceError], None] | None = None,
    ) -> None:
        self.key = key
        self.origin = origin
        self.board = board
        self.store = store
        self.params = params
        self.clock_s = clock_s
        self.on_divergence = on_divergence
        self.final_height = 0
        self.head = 0
        self.divergence: dict[str, object] | None = None
        self.faulty_peers: dict[str, int] = {}
        """Peer node key id → first height where it cosigned another text."""
        self._own: OrderedDict[int, tuple[bytes, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    # -- cosigning -------------------------------------------------------------------------
    def name(self) -> str:
        """This node's name in the genesis document (its cosignature key name)."""
        rec = self._node_record(self.key.kid)
        return str(rec.get("name", self.key.kid)) if rec else self.key.kid

    def cosign(self, height: int, block_hash: bytes, size: int, root: bytes) -> bytes:
        """Cosign and publish this node's checkpoint for block ``height``; return the line."""
        text = block_checkpoint(self.origin, height, block_hash, size, root).body()
        line = cosign(text, self.name(), self.key, self.clock_s())
        with self._lock:
            self._own[height] = (text, line)
            while len(self._own) > KEEP_HEIGHTS:
                self._own.popitem(last=False)
            self.head = max(self.head, height)
        self.publish(height)
        return line

    def publish(self, height: int) -> None:
        """(Re)publish this node's cosignature for ``height`` (best effort)."""
        own = self._own.get(height)
        if own is None:
            return
        try:
            self.board.put_cosignature(height, cosigned_note(own[0], [own[1]]))
        except LedgerError as exc:
            log.warning("could not publish the cosignature of block %d: %s", height, exc)

    # -- reading ---------------------------------------------------------------------------
    def _node_record(self, kid: str) -> dict[str, object] | None:
        raw = self.store.find_state(f"node/{kid}")
        rec = orjson.loads(raw) if raw is not None else None
        return rec if isinstance(rec, dict) else None

    def _active_nodes(self) -> dict[str, dict[str, object]]:
        out = {}
        for key, raw in self.store.iter_state("node/"):
            rec = orjson.loads(raw)
            if isinstance(rec, dict) and rec.get("status", "active") == "active":
                out[key[len("node/") :]] = rec
        return out

    def view(self, height: int) -> HeightView | None:
        """Collect and verify every cosignature at ``height`` (None: not cosigned here)."""
        own = self._own.get(height)
        if own is None:
            return None
        text, line = own
        nodes = self._active_nodes()
        v = HeightView(height=height, text=text, lines=[line])
        v.orgs_total = len({str(r.get("org")) for r in nodes.values()})
        own_orgs = {str(nodes.get(self.key.kid, {}).get("org", "?"))}
        v.nodes.append(self.key.kid)
        try:
            notes = self.board.cosignatures(height)
        except LedgerError as exc:
            log.warning("could not read cosignatures of block %d: %s", height, exc)
            notes = {}
        for kid, note in sorted(notes.items()):
            rec = nodes.get(kid)
            if kid == self.key.kid or rec is None:
                continue
            cosigner = Cosigner(
                str(rec.get("name", kid)),
                PublicKeyRecord(alg=str(rec["alg"]), public=b64u_decode(str(rec["pub"]))),
                kid,
            )
            try:
                opened = open_cosigned(note, [cosigner], self.origin)
            except LedgerError:
                continue
            org = str(rec.get("org"))
            if opened.text == text:
                own_orgs.add(org)
                v.nodes.append(kid)
                v.lines.extend(note[len(text) + 1 :].splitlines(keepends=True))
            else:
                v.others.setdefault(opened.text, []).append(org)
                v.other_notes.setdefault(opened.text, note)
                self.faulty_peers.setdefault(kid, height)
        v.orgs = sorted(own_orgs)
        v.final = self.is_quorum(len(v.orgs), v.orgs_total)
        return v

    def is_quorum(self, cosigning_orgs: int, orgs_total: int) -> bool:
        """``cosigning_orgs`` is more than num/den of ``orgs_total``."""
        p = self.params
        return orgs_total > 0 and cosigning_orgs * p.cosign_quorum_den > (
            orgs_total * p.cosign_quorum_num
        )

    def poll(self) -> int:
        """Examine the newest non-final heights; returns the final height. Detects divergence."""
        if self.divergence is not None:
            return self.final_height
        with self._lock:
            pending = [h for h in reversed(self._own) if h > self.final_height][:SCAN_DEPTH]
            if self._own and self.final_height + 1 in self._own:
                pending.append(self.final_height + 1)
        for height in dict.fromkeys(pending):
            v = self.view(height)
            if v is None:
                continue
            for other, orgs in v.others.items():
                if self.is_quorum(len(set(orgs)), v.orgs_total):
                    self._diverged(v, other)
                    return self.final_height
            if v.final:
                self.final_height = max(self.final_height, height)
                break
            self.publish(height)  # a peer may have missed it (e.g. etcd was down)
        return self.final_height

    def _diverged(self, v: HeightView, other: bytes) -> None:
        evidence: dict[str, object] = {
            "height": v.height,
            "own": v.note().decode(),
            "quorum": v.other_notes[other].decode(),
        }
        self.divergence = evidence
        try:
            self.store.put_meta("witness/divergence", orjson.dumps(evidence))
        except LedgerError as err:  # the alarm matters more than the copy on disk
            log.error("could not store divergence evidence: %s", err)
        exc = DivergenceError(
            f"diverged at block {v.height}: a quorum of organisations cosigned another "
            "checkpoint; this node stopped applying (evidence in /v1/checkpoint/cosigned)",
            retry_after=60,
        )
        log.critical("%s", exc)
        if self.on_divergence is not None:
            self.on_divergence(exc)


__all__ = ["CosignBoard", "DivergenceError", "HeightView", "Witness"]
