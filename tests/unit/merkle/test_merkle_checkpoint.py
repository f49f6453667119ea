"""C2SP signed notes and tlog-checkpoints: a known answer, round trips and attacks."""

from __future__ import annotations

import base64

import pytest

from carechain.crypto.signatures import PrivateKey, PublicKeyRecord
from carechain.errors import CheckpointError, ValidationError
from carechain.merkle import (
    EMPTY_ROOT,
    MAX_NOTE_SIZE,
    Checkpoint,
    NoteVerifier,
    leaf_hash,
    note_key_id,
    open_checkpoint,
    open_note,
    sign_checkpoint,
    sign_note,
)

ORIGIN = "carechain.example/ledger"
ROOT = leaf_hash(b"root")
LOG_KEY = PrivateKey("ed25519", bytes(range(32)))
OTHER_KEY = PrivateKey("ed25519", bytes(range(1, 33)))
PQ_KEY = PrivateKey("ml-dsa-65", bytes(range(2, 34)))
TRUSTED = {ORIGIN: LOG_KEY.record}
CP = Checkpoint(ORIGIN, 20852163, ROOT)

# Known answer from golang.org/x/mod/sumdb/note (the reference implementation of the note
# format): signer key PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz
GO_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
GO_PUBLIC = base64.b64decode("ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")[1:]
GO_TEXT = (
    b"If you think cryptography is the answer to your problem,\n"
    b"then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT
    + (
        "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqd"
        "ngotpRZb6KE6RyyBwJnAM=\n"
    ).encode()
)


def _sig_line(key: PrivateKey, name: str, text: bytes) -> bytes:
    return sign_note(text, name, key)[len(text) + 1 :]


def test_go_sumdb_note_known_answer() -> None:
    key = PrivateKey("ed25519", GO_SEED)
    assert key.public == GO_PUBLIC
    assert note_key_id("PeterNeumann", key.record).hex() == "c74f20a3"
    assert sign_note(GO_TEXT, "PeterNeumann", key) == GO_NOTE
    assert open_note(GO_NOTE, {"PeterNeumann": key.record}) == GO_TEXT


def test_body_format() -> None:
    assert CP.body() == (f"{ORIGIN}\n20852163\n" + base64.b64encode(ROOT).decode() + "\n").encode()
    with_ext = Checkpoint(ORIGIN, 0, EMPTY_ROOT, ("ext one", "ext two"))
    assert with_ext.body().endswith(b"=\next one\next two\n")


@pytest.mark.parametrize("key", [LOG_KEY, PQ_KEY], ids=["ed25519", "ml-dsa-65"])
def test_round_trip(key: PrivateKey) -> None:
    cp = Checkpoint(ORIGIN, 7, ROOT, ("extension",))
    note = sign_checkpoint(cp, ORIGIN, key)
    assert note.startswith(cp.body() + "\n— ".encode())
    assert open_checkpoint(note, {ORIGIN: key.record}, ORIGIN) == cp
    assert open_checkpoint(note, [NoteVerifier(ORIGIN, key.record)], ORIGIN) == cp


def test_empty_tree_round_trip() -> None:
    cp = Checkpoint(ORIGIN, 0, EMPTY_ROOT)
    assert open_checkpoint(sign_checkpoint(cp, ORIGIN, LOG_KEY), TRUSTED, ORIGIN) == cp


def test_pq_key_ids_are_domain_separated() -> None:
    # Same name, another algorithm: another key id (no algorithm substitution by id).
    ed, pq = note_key_id(ORIGIN, LOG_KEY.record), note_key_id(ORIGIN, PQ_KEY.record)
    assert len(ed) == len(pq) == 4 and ed != pq
    with pytest.raises(ValidationError, match="note signature algorithm: got 'slh-dsa'"):
        note_key_id(ORIGIN, PublicKeyRecord(alg="slh-dsa", public=b"x"))


def test_tampered_body_is_rejected() -> None:
    note = sign_checkpoint(CP, ORIGIN, LOG_KEY)
    tampered = note.replace(b"20852163", b"20852164")
    with pytest.raises(CheckpointError, match="got an invalid signature, want a valid one"):
        open_checkpoint(tampered, TRUSTED, ORIGIN)
    # Negative control: the untampered note opens.
    assert open_checkpoint(note, TRUSTED, ORIGIN) == CP


def test_every_signature_byte_matters() -> None:
    note = sign_checkpoint(CP, ORIGIN, LOG_KEY)
    body, line = note[: len(CP.body()) + 1], note[len(CP.body()) + 1 :]
    raw = base64.b64decode(line.split(b" ")[-1])
    for i in range(len(raw)):
        bad = bytearray(raw)
        bad[i] ^= 0x01
        bad_line = line.rsplit(b" ", 1)[0] + b" " + base64.b64encode(bytes(bad)) + b"\n"
        with pytest.raises(CheckpointError):
            open_checkpoint(body + bad_line, TRUSTED, ORIGIN)


def test_wrong_origin() -> None:
    note = sign_checkpoint(Checkpoint("evil.example/log", 1, ROOT), ORIGIN, LOG_KEY)
    with pytest.raises(CheckpointError, match=r"origin: got 'evil\.example/log', want '"):
        open_checkpoint(note, TRUSTED, ORIGIN)


def test_unknown_key_only() -> None:
    note = sign_checkpoint(CP, "someone.else", OTHER_KEY)
    with pytest.raises(CheckpointError, match=r"got none among \['someone.else/[0-9a-f]{8}'\]"):
        open_checkpoint(note, TRUSTED, ORIGIN)


def test_signature_from_another_key_under_the_trusted_name() -> None:
    # Same name, other key: the key id differs, so the line is ignored, and none is left.
    note = sign_checkpoint(CP, ORIGIN, OTHER_KEY)
    with pytest.raises(CheckpointError, match="trusted signatures: got none"):
        open_checkpoint(note, TRUSTED, ORIGIN)


def test_forged_key_id_is_verified_and_rejected() -> None:
    # Another key's signature relabelled with the trusted key id must be verified and fail.
    note = sign_checkpoint(CP, ORIGIN, OTHER_KEY)
    text, line = note[: len(CP.body())], note[len(CP.body()) + 1 :]
    raw = base64.b64decode(line.split(b" ")[-1])
    forged = note_key_id(ORIGIN, LOG_KEY.record) + raw[4:]
    forged_note = text + b"\n" + f"— {ORIGIN} ".encode() + base64.b64encode(forged) + b"\n"
    with pytest.raises(CheckpointError, match="invalid signature"):
        open_checkpoint(forged_note, TRUSTED, ORIGIN)


def test_unknown_lines_are_ignored_beside_a_trusted_one() -> None:
    body = CP.body()
    pq_line = _sig_line(PQ_KEY, "pq.example/w1", body)  # ML-DSA signing is randomised
    note = body + b"\n" + _sig_line(OTHER_KEY, "witness.example", body)
    note += _sig_line(LOG_KEY, ORIGIN, body) + pq_line
    assert open_checkpoint(note, TRUSTED, ORIGIN) == CP
    both = {ORIGIN: LOG_KEY.record, "pq.example/w1": PQ_KEY.record}
    assert open_checkpoint(note, both, ORIGIN) == CP
    # A failing trusted signature rejects the whole note even if another trusted one passes.
    raw = bytearray(base64.b64decode(pq_line.split(b" ")[-1]))
    raw[100] ^= 0x80
    bad_line = b"\xe2\x80\x94 pq.example/w1 " + base64.b64encode(bytes(raw)) + b"\n"
    broken = note.replace(pq_line, bad_line)
    assert broken != note
    with pytest.raises(CheckpointError, match=r"signature by pq\.example/w1 .* ml-dsa-65, 3309"):
        open_checkpoint(broken, both, ORIGIN)
    assert open_checkpoint(broken, TRUSTED, ORIGIN) == CP  # unknown there: ignored


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        (b"junk", "got no final newline after signatures"),
        (b"junk\n", r"signature line: got 'junk'"),
        (b"\n", "got no final newline after signatures"),
        (b"\n\n", "got no final newline after signatures"),
        (b"\x00", "got control U\\+0000"),
        (b"\r\n", "got control U\\+000D"),
    ],
)
def test_trailing_garbage(suffix: bytes, message: str) -> None:
    note = sign_checkpoint(CP, ORIGIN, LOG_KEY)
    with pytest.raises(CheckpointError, match=message):
        open_checkpoint(note + suffix, TRUSTED, ORIGIN)


def test_trailing_blank_line_and_junk_after_signatures() -> None:
    note = sign_checkpoint(CP, ORIGIN, LOG_KEY)
    with pytest.raises(CheckpointError):
        open_checkpoint(note + b"\nmore text\n", TRUSTED, ORIGIN)


def test_oversized_note() -> None:
    cp = Checkpoint(ORIGIN, 1, ROOT, ("x" * (MAX_NOTE_SIZE - 200),))
    note = sign_checkpoint(cp, ORIGIN, LOG_KEY)
    assert len(note) <= MAX_NOTE_SIZE
    padded = note + _sig_line(OTHER_KEY, "pad", cp.body())  # still well formed, but too big
    assert len(padded) > MAX_NOTE_SIZE
    with pytest.raises(CheckpointError, match=f"note size: got {len(padded)} bytes, want <= "):
        open_checkpoint(padded, TRUSTED, ORIGIN)
    with pytest.raises(ValidationError, match="signed note size"):
        sign_checkpoint(Checkpoint(ORIGIN, 1, ROOT, ("x" * MAX_NOTE_SIZE,)), ORIGIN, LOG_KEY)


def _resigned(text: bytes) -> bytes:
    return sign_note(text, ORIGIN, LOG_KEY)


B64ROOT = base64.b64encode(ROOT).decode()
URLSAFE_ROOT = base64.urlsafe_b64encode(bytes([0xFF] * 32)).decode()  # '_' is not std base64


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{ORIGIN}\n007\n{B64ROOT}\n", "size: got '007', want decimal"),
        (f"{ORIGIN}\n00\n{B64ROOT}\n", "size: got '00', want decimal"),
        (f"{ORIGIN}\n+7\n{B64ROOT}\n", "size: got '\\+7'"),
        (f"{ORIGIN}\n-1\n{B64ROOT}\n", "size: got '-1'"),
        (f"{ORIGIN}\n7 \n{B64ROOT}\n", "size: got '7 '"),
        (f"{ORIGIN}\n\u0667\n{B64ROOT}\n", "size: got '\u0667'"),  # Arabic-Indic seven
        (f"{ORIGIN}\n{2**64}\n{B64ROOT}\n", "size: got '18446744073709551616'"),
        (f"{ORIGIN}\n7\n{B64ROOT[:-1]}\n", "root: got '.*', want base64 of 32 bytes"),
        (f"{ORIGIN}\n7\n{base64.b64encode(ROOT[:31]).decode()}\n", "want base64 of 32"),
        (f"{ORIGIN}\n7\n{URLSAFE_ROOT}\n", "root: got"),
        (f"{ORIGIN}\n7\n{B64ROOT[:-2]}B=\n", "root: got"),  # non-canonical final char
        (f"{ORIGIN}\n7\n", "checkpoint lines: got 2, want >= 3"),
        (f"{ORIGIN}\n7\n{B64ROOT}\n\next\n", "extension line: got an empty line"),
    ],
)
def test_strict_body_parsing(text: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        open_checkpoint(_resigned(text.encode()), TRUSTED, ORIGIN)


def test_leading_zero_size_negative_control() -> None:
    good = _resigned(f"{ORIGIN}\n7\n{B64ROOT}\n".encode())
    assert open_checkpoint(good, TRUSTED, ORIGIN) == Checkpoint(ORIGIN, 7, ROOT)


@pytest.mark.parametrize(
    ("note", "message"),
    [
        (b"\xff\xfe", "invalid UTF-8 at byte 0"),
        (b"no blank line\n", "got no blank line before signatures"),
        (f"{ORIGIN}\n\n-- {ORIGIN} AAAA\n".encode(), "signature line: got '-- "),
        (f"{ORIGIN}\n\n— {ORIGIN}\n".encode(), "signature by .*: got ''"),
        (f"{ORIGIN}\n\n— {ORIGIN} AAAA\n".encode(), "signature by .*: got 'AAAA'"),
        (f"{ORIGIN}\n\n— {ORIGIN} AAAAAAAA AAAA\n".encode(), "signature by"),
        (f"{ORIGIN}\n\n— a+b AAAAAAAA\n".encode(), "key name: got 'a\\+b'"),
        (f"{ORIGIN}\n\n—  AAAAAAAA\n".encode(), "key name: got ''"),
        (f"{ORIGIN}\n\n— a\u00a0b AAAAAAAA\n".encode(), "key name"),
    ],
)
def test_malformed_notes(note: bytes, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        open_checkpoint(note, TRUSTED, ORIGIN)


def test_no_trusted_keys_configured() -> None:
    note = sign_checkpoint(CP, ORIGIN, LOG_KEY)
    with pytest.raises(CheckpointError, match=r"want one of \[\]"):
        open_checkpoint(note, {}, ORIGIN)


def test_bad_inputs_to_signing_and_construction() -> None:
    with pytest.raises(ValidationError, match="key name"):
        sign_checkpoint(CP, "has space", LOG_KEY)
    with pytest.raises(ValidationError, match="note text"):
        sign_note(b"no final newline", ORIGIN, LOG_KEY)
    with pytest.raises(ValidationError, match="checkpoint root length: got 31, want 32"):
        Checkpoint(ORIGIN, 1, ROOT[:31])
    with pytest.raises(ValidationError, match="checkpoint size: got -1"):
        Checkpoint(ORIGIN, -1, ROOT)
    with pytest.raises(ValidationError, match="checkpoint origin: got ''"):
        Checkpoint("", 1, ROOT)
    with pytest.raises(ValidationError, match="checkpoint extension"):
        Checkpoint(ORIGIN, 1, ROOT, ("two\nlines",))
    with pytest.raises(ValidationError, match="note signature algorithm"):
        NoteVerifier(ORIGIN, PublicKeyRecord(alg="rsa", public=b"x"))
