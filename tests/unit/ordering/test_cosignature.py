"""Cosigned checkpoints (merkle/cosignature.py): format, verification, finality."""

from __future__ import annotations

import base64
import hashlib

import pytest

from carechain.crypto.signatures import generate_key
from carechain.errors import CheckpointError
from carechain.merkle.cosignature import (
    Cosigner,
    block_checkpoint,
    block_of,
    cosign,
    cosignature_key_id,
    cosigned_note,
    open_cosigned,
    verify_final,
)

ORIGIN = "carechain.local/test"
KEYS = [generate_key("ed25519") for _ in range(4)]
NAMES = [f"org{i}-node-1" for i in range(4)]
TEXT = block_checkpoint(ORIGIN, 7, b"\x01" * 32, 42, b"\x02" * 32).body()


def trusted(n: int = 4) -> list[tuple[str, Cosigner]]:
    return [(f"org{i}", Cosigner(NAMES[i], KEYS[i].record, f"kid{i}")) for i in range(n)]


def note_by(*idx: int, text: bytes = TEXT) -> bytes:
    return cosigned_note(text, [cosign(text, NAMES[i], KEYS[i], 1_800_000_000 + i) for i in idx])


def test_the_checkpoint_names_its_block() -> None:
    assert TEXT.decode().splitlines()[3] == "carechain-block 7 " + base64.b64encode(
        b"\x01" * 32
    ).decode("ascii")
    opened = open_cosigned(note_by(0), [c for _, c in trusted()], ORIGIN)
    assert block_of(opened.checkpoint) == (7, b"\x01" * 32)
    assert (opened.checkpoint.size, opened.checkpoint.root) == (42, b"\x02" * 32)


def test_key_id_follows_c2sp_with_type_0x04() -> None:
    want = hashlib.sha256(NAMES[0].encode() + b"\n\x04" + KEYS[0].public).digest()[:4]
    assert cosignature_key_id(NAMES[0], KEYS[0].record) == want
    line = cosign(TEXT, NAMES[0], KEYS[0], 1234)
    blob = base64.b64decode(line.decode().split(" ")[2])
    assert blob[:4] == want and int.from_bytes(blob[4:12], "big") == 1234 and len(blob) == 76


def test_every_trusted_line_is_verified_and_reported() -> None:
    opened = open_cosigned(note_by(0, 1, 2), [c for _, c in trusted()], ORIGIN)
    assert sorted(ident for ident, _ in opened.signers) == ["kid0", "kid1", "kid2"]


def test_ml_dsa_cosigner() -> None:
    key = generate_key("ml-dsa-65")
    note = cosigned_note(TEXT, [cosign(TEXT, "pq-node", key, 5)])
    assert open_cosigned(note, [Cosigner("pq-node", key.record, "pq")], ORIGIN).signers == (
        ("pq", 5),
    )


def test_altered_text_fails() -> None:
    note = note_by(0).replace(b"\n42\n", b"\n43\n")
    with pytest.raises(CheckpointError, match="invalid signature"):
        open_cosigned(note, [c for _, c in trusted()], ORIGIN)


def test_altered_timestamp_fails() -> None:
    line = cosign(TEXT, NAMES[0], KEYS[0], 1000)
    name, b64 = line.decode()[2:-1].split(" ")
    blob = bytearray(base64.b64decode(b64))
    blob[11] ^= 1  # the timestamp is inside the signed message
    forged = f"\u2014 {name} {base64.b64encode(bytes(blob)).decode()}\n".encode()
    with pytest.raises(CheckpointError, match="invalid signature"):
        open_cosigned(cosigned_note(TEXT, [forged]), [c for _, c in trusted()], ORIGIN)


def test_unknown_cosigners_are_ignored_but_one_trusted_is_required() -> None:
    stranger = generate_key()
    note = cosigned_note(TEXT, [cosign(TEXT, "stranger", stranger, 1)])
    with pytest.raises(CheckpointError, match="no trusted cosignature"):
        open_cosigned(note, [c for _, c in trusted()], ORIGIN)


def test_wrong_origin_fails() -> None:
    with pytest.raises(CheckpointError, match="origin"):
        open_cosigned(note_by(0), [c for _, c in trusted()], "another/origin")


@pytest.mark.parametrize(
    ("signers", "final"),
    [((0, 1, 2), True), ((0, 1), False), ((0, 1, 2, 3), True), ((0,), False)],
)
def test_finality_needs_more_than_two_thirds_of_organisations(
    signers: tuple[int, ...], final: bool
) -> None:
    note = note_by(*signers)
    if final:
        verify_final(note, trusted(), ORIGIN, num=2, den=3)
    else:
        with pytest.raises(CheckpointError, match="not final"):
            verify_final(note, trusted(), ORIGIN, num=2, den=3)


def test_two_nodes_of_one_organisation_count_once() -> None:
    pairs = trusted(3)
    pairs.append(("org0", Cosigner(NAMES[3], KEYS[3].record, "kid3")))  # org0's second node
    with pytest.raises(CheckpointError, match="got 1 of 3"):
        verify_final(note_by(0, 3), pairs, ORIGIN, num=2, den=3)
