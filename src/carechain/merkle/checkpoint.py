"""Log checkpoints as C2SP tlog-checkpoint bodies inside C2SP signed notes.

A note is ``text || "\\n" || signature lines``; a checkpoint's text is::

    <origin>\\n<decimal size>\\n<base64 root>\\n[<extension line>\\n ...]

and each signature line is ``"— " <key name> " " base64(key id[4] || signature) "\\n"``.

Invariants:

* Signatures cover the note text exactly as received (final newline included, separating
  blank line excluded); nothing is re-serialised before verifying.
* :func:`open_note` and :func:`open_checkpoint` fail closed, with
  :class:`~carechain.errors.CheckpointError` saying "got X, want Y": the note is at most
  ``MAX_NOTE_SIZE`` bytes of UTF-8 without control characters other than newline; every
  signature line is well formed (even from unknown keys); every signature from a trusted
  (name, key id) verifies; at least one does; and only then does :func:`open_checkpoint`
  parse the text strictly (origin equal to the expected one, size in canonical decimal, a
  32-byte root in canonical standard base64, non-empty extension lines). Signature lines
  from unknown keys are otherwise ignored (C2SP signed-note).
* The key id is ``SHA-256(name || 0x0A || signature type || public key)[:4]``.
  Ed25519 uses type ``0x01`` (C2SP signed-note). C2SP assigns no type to plain ML-DSA-65
  note signatures (``0x06`` is the ML-DSA-44 *cosignature* of c2sp.org/tlog-cosignature,
  a different signed message), so ML-DSA-65 uses the ``0xff`` escape followed by the
  identifier ``carechain/ml-dsa-65@1``, as signed-note recommends; it signs the note text
  with FIPS 204 ML-DSA-65 (pure, empty context).
* ``MAX_NOTE_SIZE`` (16 KiB) fits at most three ML-DSA-65 signatures (each ~4.4 KiB of
  base64), fewer than the 16 signatures signed-note asks verifiers to accept; it fits
  well over 16 Ed25519 signatures.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from carechain.crypto.signatures import PrivateKey, PublicKeyRecord, check_signature
from carechain.errors import CheckpointError, ValidationError
from carechain.merkle.proof import MAX_TREE_SIZE
from carechain.merkle.rfc6962 import HASH_SIZE

__all__ = [
    "MAX_NOTE_SIZE",
    "NOTE_SIGNATURE_TYPES",
    "Checkpoint",
    "NoteVerifier",
    "note_key_id",
    "open_checkpoint",
    "open_note",
    "sign_checkpoint",
    "sign_note",
]

MAX_NOTE_SIZE = 16 * 1024
"""Largest signed note accepted or produced, in bytes."""

NOTE_SIGNATURE_TYPES: Mapping[str, bytes] = MappingProxyType(
    {
        "ed25519": b"\x01",  # C2SP signed-note "Ed25519 signatures"
        "ml-dsa-65": b"\xff" + b"carechain/ml-dsa-65@1",  # C2SP signed-note 0xff escape
    }
)
"""Signature type identifier (key-id input) per registry algorithm id."""

_SIG_PREFIX = "\u2014 "  # em dash, space (C2SP signed-note "Format")
_SIZE_RE = re.compile(r"0|[1-9][0-9]{0,19}")
_B64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_CONTROL_RE = re.compile(r"[\x00-\x09\x0b-\x1f]")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement of a log's size and root hash (C2SP tlog-checkpoint)."""

    origin: str
    """Unique identity of the log (first line), e.g. ``carechain.example/ledger``."""
    size: int
    """Number of leaves in the tree, in ``[0, 2^64)``."""
    root: bytes
    """RFC 9162 root hash of the tree at ``size`` (32 bytes)."""
    extensions: tuple[str, ...] = ()
    """Optional opaque extension lines, each non-empty and without newlines."""

    def __post_init__(self) -> None:
        for what, line in (("origin", self.origin), *(("extension", e) for e in self.extensions)):
            if not isinstance(line, str) or not line or "\n" in line or _CONTROL_RE.search(line):
                raise ValidationError(f"checkpoint {what}: got {line!r}, want one non-empty line")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise ValidationError(f"checkpoint size: got {type(self.size).__name__}, want int")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise ValidationError(f"checkpoint size: got {self.size}, want 0 <= size < 2^64")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            got = len(self.root) if isinstance(self.root, bytes) else type(self.root).__name__
            raise ValidationError(f"checkpoint root length: got {got}, want {HASH_SIZE}")

    def body(self) -> bytes:
        """The note text: origin, size, base64 root and extension lines, each ``\\n``-ended."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode("ascii")]
        lines.extend(self.extensions)
        return "".join(line + "\n" for line in lines).encode("utf-8")


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    """A trusted note key: the key name it signs under and its public-key record."""

    name: str
    """Key name as it appears on signature lines."""
    record: PublicKeyRecord
    """Algorithm and public key."""

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        _signature_type(self.record.alg)

    @property
    def key_id(self) -> bytes:
        """The 4-byte C2SP key id of this (name, algorithm, key)."""
        return note_key_id(self.name, self.record)


def note_key_id(name: str, record: PublicKeyRecord) -> bytes:
    """SHA-256(name || 0x0A || signature type || public key)[:4] (C2SP signed-note)."""
    material = name.encode("utf-8") + b"\n" + _signature_type(record.alg) + record.public
    return hashlib.sha256(material).digest()[:4]


def sign_note(text: bytes, name: str, private_key: PrivateKey) -> bytes:
    """A signed note: ``text``, a blank line, one signature line by ``private_key``.

    ``text`` must be non-empty UTF-8 ending in a newline, without other control characters.
    """
    _check_key_name(name)
    _check_text(text)
    key_id = note_key_id(name, private_key.record)
    signature = base64.b64encode(key_id + private_key.sign(text)).decode("ascii")
    note = text + b"\n" + f"{_SIG_PREFIX}{name} {signature}\n".encode()
    if len(note) > MAX_NOTE_SIZE:
        raise ValidationError(f"signed note size: got {len(note)}, want <= {MAX_NOTE_SIZE}")
    return note


def open_note(
    note: bytes, trusted: Mapping[str, PublicKeyRecord] | Iterable[NoteVerifier]
) -> bytes:
    """Verify a signed note and return its text (C2SP signed-note).

    ``trusted`` maps key names to public keys, or lists :class:`NoteVerifier`\\ s (several
    keys may share a name, e.g. during rotation). Raises :class:`CheckpointError` unless
    the note is well formed, carries at least one signature from a trusted key and no
    failing one. A trusted key whose algorithm has no note signature type raises
    :class:`ValidationError` (a configuration error).
    """
    if isinstance(trusted, Mapping):
        verifiers = [NoteVerifier(name, record) for name, record in trusted.items()]
    else:
        verifiers = list(trusted)
    text, signatures = _split_note(note)
    _verify_signatures(text, signatures, verifiers)
    return text


def sign_checkpoint(cp: Checkpoint, name: str, private_key: PrivateKey) -> bytes:
    """The signed note of ``cp.body()`` with one signature line by ``private_key``."""
    return sign_note(cp.body(), name, private_key)


def open_checkpoint(
    note: bytes,
    trusted: Mapping[str, PublicKeyRecord] | Iterable[NoteVerifier],
    origin: str,
) -> Checkpoint:
    """Verify a signed checkpoint note (see :func:`open_note`) and parse its text strictly.

    Raises :class:`CheckpointError` for any failure, including an origin other than
    ``origin``.
    """
    return _parse_body(open_note(note, trusted), origin)


def _split_note(note: bytes) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Steps 1-3: bound, decode and split a note into text and (name, key id||sig) pairs."""
    if not isinstance(note, bytes):
        raise CheckpointError(f"note type: got {type(note).__name__}, want bytes")
    if len(note) > MAX_NOTE_SIZE:  # 1. bound the input before any work
        raise CheckpointError(f"note size: got {len(note)} bytes, want <= {MAX_NOTE_SIZE}")
    try:  # 2. valid UTF-8 without control characters other than newline
        decoded = note.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"note encoding: got invalid UTF-8 at byte {exc.start}") from None
    control = _CONTROL_RE.search(decoded)
    if control:
        raise CheckpointError(
            f"note character: got control U+{ord(control.group()):04X}, want none but newline"
        )
    split = decoded.rfind("\n\n")  # 3. text ends at the last blank line
    if split < 0:
        raise CheckpointError("note: got no blank line before signatures, want one")
    text, block = decoded[: split + 1], decoded[split + 2 :]
    if not block.endswith("\n"):
        raise CheckpointError("note end: got no final newline after signatures, want one")
    return text.encode("utf-8"), [_parse_signature_line(line) for line in block[:-1].split("\n")]


def _parse_signature_line(line: str) -> tuple[str, bytes]:
    if not line.startswith(_SIG_PREFIX):
        raise CheckpointError(f"signature line: got {line[:40]!r}, want '— <name> <base64>'")
    name, _, encoded = line[len(_SIG_PREFIX) :].partition(" ")
    try:
        _check_key_name(name)
    except ValidationError as exc:
        raise CheckpointError(str(exc)) from None
    raw = _b64std_decode(encoded)
    if raw is None or len(raw) < 5:
        raise CheckpointError(
            f"signature by {name}: got {encoded[:40]!r}, want base64 of key id || signature"
        )
    return name, raw


def _verify_signatures(
    text: bytes, signatures: list[tuple[str, bytes]], verifiers: list[NoteVerifier]
) -> None:
    """Step 4: every trusted signature must verify, and at least one must be present."""
    by_id = {(v.name, v.key_id): v for v in verifiers}
    verified = 0
    for name, raw in signatures:
        verifier = by_id.get((name, raw[:4]))
        if verifier is None:
            continue  # unknown key (C2SP signed-note: verifiers MUST ignore it)
        record, signature = verifier.record, raw[4:]
        if not check_signature(record.alg, record.public, text, signature):
            raise CheckpointError(
                f"signature by {name} (key id {raw[:4].hex()}, {record.alg}, "
                f"{len(signature)} bytes): got an invalid signature, want a valid one"
            )
        verified += 1
    if verified == 0:
        got = sorted({f"{name}/{raw[:4].hex()}" for name, raw in signatures})
        want = sorted(f"{v.name}/{v.key_id.hex()}" for v in verifiers)
        raise CheckpointError(f"trusted signatures: got none among {got}, want one of {want}")


def _parse_body(text: bytes, origin: str) -> Checkpoint:
    """Step 5 (C2SP tlog-checkpoint "Note text"): parse the now-authenticated text."""
    lines = text.decode("utf-8")[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError(f"checkpoint lines: got {len(lines)}, want >= 3")
    if lines[0] != origin:
        raise CheckpointError(f"checkpoint origin: got {lines[0]!r}, want {origin!r}")
    if not _SIZE_RE.fullmatch(lines[1]) or int(lines[1]) > MAX_TREE_SIZE:
        raise CheckpointError(
            f"checkpoint size: got {lines[1][:24]!r}, want decimal < 2^64 without leading zeros"
        )
    root = _b64std_decode(lines[2])
    if root is None or len(root) != HASH_SIZE:
        raise CheckpointError(
            f"checkpoint root: got {lines[2][:60]!r}, want base64 of {HASH_SIZE} bytes"
        )
    extensions = tuple(lines[3:])
    if not all(extensions):
        raise CheckpointError("checkpoint extension line: got an empty line, want non-empty")
    return Checkpoint(lines[0], int(lines[1]), root, extensions)


def _b64std_decode(text: str) -> bytes | None:
    """Canonical standard base64 (RFC 4648 §4) with padding, or None."""
    if len(text) % 4 or not _B64_RE.fullmatch(text):
        return None
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if base64.b64encode(data).decode("ascii") == text else None


def _check_text(text: bytes) -> None:
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"note text: got invalid UTF-8 at byte {exc.start}") from None
    if not decoded.endswith("\n") or _CONTROL_RE.search(decoded):
        raise ValidationError(
            "note text: got no final newline or a control character, want UTF-8 lines"
        )


def _check_key_name(name: str) -> None:
    """C2SP signed-note: key names are non-empty, without Unicode spaces or '+'."""
    if not isinstance(name, str) or not name or "+" in name or any(c.isspace() for c in name):
        raise ValidationError(f"key name: got {name!r}, want non-empty, no spaces or '+'")
    if _CONTROL_RE.search(name):
        raise ValidationError(f"key name: got {name!r}, want no control characters")


def _signature_type(alg: str) -> bytes:
    try:
        return NOTE_SIGNATURE_TYPES[alg]
    except KeyError:
        raise ValidationError(
            f"note signature algorithm: got {alg!r}, want one of {sorted(NOTE_SIGNATURE_TYPES)}"
        ) from None
