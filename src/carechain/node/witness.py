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
* Persistence (ADR 0011 "Cosignature persistence"): this node's cosigned note for a height is
  written to the store's meta ``witness/own/<height:016d>`` *before* it is published, and the
  collected quorum note of each final height observed to ``witness/final/<height:016d>``
  (plus ``witness/final_height``), so a restarted node (kill -9, etcd compacted or lost)
  still serves them. Stored lines are verified again on every read, like the board's: a
  tampered stored cosignature is never counted.
* Equivocation guard: the node never cosigns a second text for a height it already cosigned
  (stored or in memory); it refuses, keeps both texts as evidence (meta
  ``witness/equivocation``) and raises the alarm (``on_divergence``: the node halts).
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

OWN_META = "witness/own/"
"""Store meta prefix: this node's cosigned note per height (``<prefix><height:016d>``)."""
FINAL_META = "witness/final/"
"""Store meta prefix: the quorum-cosigned note of a final height."""
FINAL_HEIGHT_META = "witness/final_height"
"""Store meta: the highest final height this node observed (decimal)."""
EQUIVOCATION_META = "witness/equivocation"
"""Store meta: evidence of a refused second cosignature for one height."""
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
        stored_final = store.find_meta(FINAL_HEIGHT_META)
        self.final_height = int(stored_final) if stored_final else 0
        """Highest final height; restored from the store after a restart."""
        self.head = self.final_height
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
        """Cosign and publish this node's checkpoint for block ``height``; return the line.

        The note is stored durably before it is published. A height already cosigned with
        the same text reuses that line; with another text the node refuses (equivocation
        guard), records the evidence, raises the alarm and returns ``b""``.
        """
        text = block_checkpoint(self.origin, height, block_hash, size, root).body()
        earlier = self.own(height)
        if earlier is not None and earlier[0] != text:
            self._equivocation(height, earlier, text)
            return b""
        if earlier is not None:
            line = earlier[1]
        else:
            line = cosign(text, self.name(), self.key, self.clock_s())
            self.store.put_meta(own_meta_key(height), cosigned_note(text, [line]))
        with self._lock:
            self._own[height] = (text, line)
            while len(self._own) > KEEP_HEIGHTS:
                self._own.popitem(last=False)
            self.head = max(self.head, height)
        self.publish(height)
        return line

    def own(self, height: int) -> tuple[bytes, bytes] | None:
        """``(text, line)`` this node cosigned at ``height`` (memory, else the store)."""
        own = self._own.get(height)
        if own is not None:
            return own
        raw = self.store.find_meta(own_meta_key(height))
        if raw is None:
            return None
        try:
            text, lines = split_note(raw)
        except ValueError:
            log.error("stored cosignature of block %d is unreadable; ignored", height)
            return None
        return (text, lines[0]) if len(lines) == 1 else None

    def _equivocation(self, height: int, earlier: tuple[bytes, bytes], text: bytes) -> None:
        evidence: dict[str, object] = {
            "height": height,
            "cosigned": cosigned_note(earlier[0], [earlier[1]]).decode(),
            "refused": text.decode(),
        }
        self.divergence = evidence
        try:
            self.store.put_meta(EQUIVOCATION_META, orjson.dumps(evidence))
        except LedgerError as err:
            log.error("could not store equivocation evidence: %s", err)
        exc = DivergenceError(
            f"equivocation refused at block {height}: this node already cosigned another "
            "checkpoint for that height; it stopped applying (evidence in "
            "/v1/checkpoint/cosigned)",
            retry_after=60,
        )
        log.critical("%s", exc)
        if self.on_divergence is not None:
            self.on_divergence(exc)

    def publish(self, height: int) -> None:
        """(Re)publish this node's cosignature for ``height`` (best effort)."""
        own = self.own(height)
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

    def _cosigners(self, nodes: dict[str, dict[str, object]]) -> list[Cosigner]:
        return [
            Cosigner(
                str(rec.get("name", kid)),
                PublicKeyRecord(alg=str(rec["alg"]), public=b64u_decode(str(rec["pub"]))),
                kid,
            )
            for kid, rec in sorted(nodes.items())
        ]

    def _verified_lines(
        self, note: bytes, cosigners: list[Cosigner]
    ) -> list[tuple[str, bytes, bytes]]:
        """``(node kid, text, line)`` for every line of ``note`` that verifies with an active
        node key; bad, unknown or malformed lines are dropped (never counted)."""
        try:
            text, lines = split_note(note)
        except ValueError:
            return []
        out: list[tuple[str, bytes, bytes]] = []
        for line in lines:
            try:
                opened = open_cosigned(text + b"\n" + line, cosigners, self.origin)
            except LedgerError:
                continue
            out.extend((kid, opened.text, line) for kid, _ in opened.signers)
        return out

    def view(self, height: int) -> HeightView | None:
        """Collect and verify every cosignature at ``height`` (None: not cosigned here):
        the board's and the stored quorum note's, each line verified with the node keys
        active in state."""
        own = self.own(height)
        if own is None:
            return None
        text, line = own
        nodes = self._active_nodes()
        cosigners = self._cosigners(nodes)
        v = HeightView(height=height, text=text, lines=[line])
        v.orgs_total = len({str(r.get("org")) for r in nodes.values()})
        own_orgs = set()
        if self.key.kid in nodes:  # a node of an organisation not admitted counts nothing
            own_orgs.add(str(nodes[self.key.kid].get("org")))
        v.nodes.append(self.key.kid)
        try:
            notes = list(self.board.cosignatures(height).values())
        except LedgerError as exc:
            log.warning("could not read cosignatures of block %d: %s", height, exc)
            notes = []
        stored = self.store.find_meta(final_meta_key(height))
        if stored is not None:
            notes.append(stored)
        for note in notes:
            for kid, other, signed in self._verified_lines(note, cosigners):
                if kid == self.key.kid:
                    continue
                org = str(nodes[kid].get("org"))
                if other == text:
                    own_orgs.add(org)
                    if kid not in v.nodes:
                        v.nodes.append(kid)
                    v.lines.append(signed)
                else:
                    if org not in v.others.get(other, []):
                        v.others.setdefault(other, []).append(org)
                    v.other_notes.setdefault(other, note)
                    self.faulty_peers.setdefault(kid, height)
        v.lines = sorted(set(v.lines))
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
                if height > self.final_height:
                    self._persist_final(v)
                self.final_height = max(self.final_height, height)
                break
            self.publish(height)  # a peer may have missed it (e.g. etcd was down)
        return self.final_height

    def _persist_final(self, v: HeightView) -> None:
        """Keep the quorum note of a newly final height (best effort: logged on failure)."""
        try:
            self.store.put_meta(final_meta_key(v.height), v.note())
            self.store.put_meta(FINAL_HEIGHT_META, str(v.height).encode())
        except LedgerError as err:
            log.error("could not store the final cosignatures of block %d: %s", v.height, err)

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


def own_meta_key(height: int) -> str:
    """Store meta key of this node's cosigned note for ``height``."""
    return f"{OWN_META}{height:016d}"


def final_meta_key(height: int) -> str:
    """Store meta key of the quorum-cosigned note of final ``height``."""
    return f"{FINAL_META}{height:016d}"


def split_note(note: bytes) -> tuple[bytes, list[bytes]]:
    """``(checkpoint text, cosignature lines)`` of a cosigned note (text, blank line,
    lines); ValueError when there is no blank line."""
    cut = note.find(b"\n\n")
    if cut < 0:
        raise ValueError("cosigned note: no blank line after the checkpoint text")
    return note[: cut + 1], note[cut + 2 :].splitlines(keepends=True)


__all__ = [
    "CosignBoard",
    "DivergenceError",
    "HeightView",
    "Witness",
    "final_meta_key",
    "own_meta_key",
    "split_note",
]
