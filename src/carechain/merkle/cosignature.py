"""Cosigned checkpoints: C2SP tlog-cosignature lines over a checkpoint that names its block.

Every consortium node signs the checkpoint it computed after each block. The checkpoint text
is a C2SP tlog-checkpoint body with one extension line binding the block::

    <origin>\\n<log size>\\n<base64 log root>\\ncarechain-block <height> <base64 block hash>\\n

A cosignature (c2sp.org/tlog-cosignature, ``cosignature/v1``) signs::

    "cosignature/v1\\ntime " <decimal seconds> "\\n" || checkpoint text

and is one signed-note signature line ``"— " <name> " " base64(key id[4] || timestamp u64 BE
|| signature)``. Key id = SHA-256(name || 0x0A || type || public key)[:4] with type ``0x04``
for Ed25519 (C2SP); ML-DSA-65 uses the signed-note ``0xff`` escape and the identifier
``carechain/ml-dsa-65-cosignature@1`` (no C2SP type exists for it).

Invariants: a cosigned note is the text, a blank line and one or more cosignature lines;
:func:`open_cosigned` verifies every line whose (name, key id) it trusts, ignores unknown ones,
fails closed on a bad trusted signature and returns which trusted keys signed. The block hash
covers the header and so the state root: nodes that cosign the same text computed the same
block.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from carechain.crypto.signatures import PrivateKey, PublicKeyRecord, check_signature
from carechain.errors import CheckpointError, ValidationError
from carechain.merkle.checkpoint import Checkpoint, _parse_body, _split_note

COSIGNATURE_TYPES: Mapping[str, bytes] = MappingProxyType(
    {
        "ed25519": b"\x04",  # C2SP tlog-cosignature "cosignature/v1" Ed25519
        "ml-dsa-65": b"\xff" + b"carechain/ml-dsa-65-cosignature@1",
    }
)
BLOCK_EXTENSION = "carechain-block"
_TS = struct.Struct(">Q")


def block_checkpoint(
    origin: str, height: int, block_hash: bytes, size: int, root: bytes
) -> Checkpoint:
    """The checkpoint a node cosigns after block ``height``."""
    b64 = base64.b64encode(block_hash).decode("ascii")
    return Checkpoint(origin, size, root, (f"{BLOCK_EXTENSION} {height} {b64}",))


def block_of(cp: Checkpoint) -> tuple[int, bytes]:
    """``(height, block hash)`` from a cosigned checkpoint's extension line."""
    for line in cp.extensions:
        parts = line.split(" ")
        if len(parts) == 3 and parts[0] == BLOCK_EXTENSION and parts[1].isdigit():
            try:
                return int(parts[1]), base64.b64decode(parts[2], validate=True)
            except ValueError:
                break
    raise CheckpointError(f"cosigned checkpoint: got no valid {BLOCK_EXTENSION!r} line, want one")


def checkpoint_of(text: bytes, origin: str) -> Checkpoint:
    """Parse an (already authenticated) checkpoint text strictly."""
    return _parse_body(text, origin)


def cosigned_message(text: bytes, timestamp: int) -> bytes:
    """What a cosigner signs (c2sp.org/tlog-cosignature ``cosignature/v1``)."""
    return b"cosignature/v1\ntime %d\n" % timestamp + text


def cosignature_key_id(name: str, record: PublicKeyRecord) -> bytes:
    """SHA-256(name || 0x0A || type || public key)[:4]."""
    try:
        kind = COSIGNATURE_TYPES[record.alg]
    except KeyError:
        raise ValidationError(f"cosignature algorithm: got {record.alg!r}") from None
    return hashlib.sha256(name.encode("utf-8") + b"\n" + kind + record.public).digest()[:4]


def cosign(text: bytes, name: str, key: PrivateKey, timestamp: int) -> bytes:
    """One cosignature line (``"— name base64\\n"``) over checkpoint ``text``."""
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise ValidationError(f"cosigner name: got {name!r}, want no spaces or '+'")
    sig = key.sign(cosigned_message(text, timestamp))
    blob = cosignature_key_id(name, key.record) + _TS.pack(timestamp) + sig
    return f"\u2014 {name} {base64.b64encode(blob).decode('ascii')}\n".encode()


def cosigned_note(text: bytes, lines: Iterable[bytes]) -> bytes:
    """A note of ``text`` with the given cosignature lines (sorted, de-duplicated)."""
    return text + b"\n" + b"".join(sorted(set(lines)))


@dataclass(frozen=True, slots=True)
class Cosigner:
    """A trusted cosigner: its name on signature lines and its public key."""

    name: str
    """Key name (the node's name in the genesis document)."""
    record: PublicKeyRecord
    """Its public key."""
    ident: str = ""
    """Caller's identifier returned on success (e.g. the node key id)."""


@dataclass(frozen=True, slots=True)
class OpenedCosigned:
    """A verified cosigned checkpoint."""

    checkpoint: Checkpoint
    """The parsed checkpoint."""
    text: bytes
    """The note text, verbatim."""
    signers: tuple[tuple[str, int], ...]
    """``(ident, timestamp)`` of every trusted cosigner whose line verified."""


def open_cosigned(note: bytes, trusted: Iterable[Cosigner], origin: str) -> OpenedCosigned:
    """Verify every trusted cosignature line of ``note`` and parse its checkpoint text.

    Raises CheckpointError for a malformed note, a bad trusted signature, or no trusted one.
    """
    text, signatures = _split_note(note)
    by_id = {(c.name, cosignature_key_id(c.name, c.record)): c for c in trusted}
    signers: list[tuple[str, int]] = []
    for name, raw in signatures:
        cosigner = by_id.get((name, raw[:4]))
        if cosigner is None:
            continue  # unknown key: ignored (C2SP signed-note)
        if len(raw) < 12:
            raise CheckpointError(f"cosignature by {name}: got {len(raw)} bytes, want >= 12")
        (ts,) = _TS.unpack_from(raw, 4)
        if not check_signature(
            cosigner.record.alg, cosigner.record.public, cosigned_message(text, ts), raw[12:]
        ):
            raise CheckpointError(f"cosignature by {name}: got an invalid signature")
        signers.append((cosigner.ident or name, ts))
    if not signers:
        raise CheckpointError("cosigned checkpoint: got no trusted cosignature, want one")
    return OpenedCosigned(checkpoint=_parse_body(text, origin), text=text, signers=tuple(signers))


def verify_final(
    note: bytes,
    trusted: Iterable[tuple[str, Cosigner]],
    origin: str,
    *,
    num: int,
    den: int,
) -> OpenedCosigned:
    """Verify a cosigned note is final: the organisations whose trusted cosigners signed it
    are more than ``num/den`` of the organisations in ``trusted`` (``(org, cosigner)``).

    Raises CheckpointError naming how many organisations cosigned and how many are needed.
    """
    pairs = list(trusted)
    by_ident: dict[str, tuple[str, Cosigner]] = {}
    for org, c in pairs:
        ident = c.ident or f"{org}/{c.name}/{c.record.public.hex()}"
        by_ident[ident] = (org, Cosigner(c.name, c.record, ident))
    opened = open_cosigned(note, [c for _, c in by_ident.values()], origin)
    orgs = {by_ident[ident][0] for ident, _ in opened.signers}
    total = len({org for org, _ in pairs})
    if not len(orgs) * den > total * num:
        raise CheckpointError(
            f"cosigned checkpoint: got {len(orgs)} of {total} organisations, want more than "
            f"{num}/{den} (not final)"
        )
    return opened


__all__ = [
    "BLOCK_EXTENSION",
    "COSIGNATURE_TYPES",
    "Cosigner",
    "OpenedCosigned",
    "block_checkpoint",
    "block_of",
    "checkpoint_of",
    "cosign",
    "cosignature_key_id",
    "cosigned_message",
    "cosigned_note",
    "open_cosigned",
    "verify_final",
]
