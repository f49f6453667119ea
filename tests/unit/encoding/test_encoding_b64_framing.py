"""base64url without padding (RFC 4648 §5, strict) and PAE framing."""

from __future__ import annotations

import base64

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from carechain.encoding import b64u_decode, b64u_encode, pae
from carechain.errors import ValidationError

_B64U = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@given(st.binary(max_size=100))
def test_b64u_round_trip(data: bytes) -> None:
    text = b64u_encode(data)
    assert "=" not in text and "+" not in text and "/" not in text
    assert b64u_decode(text) == data


@given(st.binary(min_size=1, max_size=60).filter(lambda d: len(d) % 3 != 0))
def test_b64u_rejects_padding(data: bytes) -> None:
    padded = base64.urlsafe_b64encode(data).decode()
    assert padded.endswith("=")
    with pytest.raises(ValidationError, match="unpadded"):
        b64u_decode(padded)


@given(st.binary(max_size=30), st.binary(max_size=30))
def test_b64u_rejects_the_standard_alphabet(head: bytes, tail: bytes) -> None:
    data = head[: len(head) // 3 * 3] + b"\xfb\xff\xbf" + tail  # encodes as "+/+/" in base64
    std = base64.b64encode(data).decode().rstrip("=")
    assert "+" in std and "/" in std
    with pytest.raises(ValidationError):
        b64u_decode(std)


@given(st.binary(min_size=1, max_size=60).filter(lambda d: len(d) % 3 != 0), st.data())
def test_b64u_rejects_stray_bits_in_the_last_character(data: bytes, draw: st.DataObject) -> None:
    text = b64u_encode(data)
    last = _B64U.index(text[-1])
    unused_bits = 4 if len(data) % 3 == 1 else 2  # RFC 4648 §3.5: must be zero
    assert last % (1 << unused_bits) == 0
    stray = draw.draw(st.integers(1, (1 << unused_bits) - 1))
    tampered = text[:-1] + _B64U[last | stray]
    # The permissive stdlib decoder maps both texts to the same bytes: a malleability we refuse.
    assert base64.urlsafe_b64decode(tampered + "=" * (-len(tampered) % 4)) == data
    with pytest.raises(ValidationError, match="non-canonical"):
        b64u_decode(tampered)


@pytest.mark.parametrize(
    "text",
    [
        "AA==", "AAA=", "A", "AAAAA", "AB", "AAB", "a+b/", "ab+c", "ab/c", " AA", "AA ", "A\nA",
        "AA.", "ÄA", "AA\x00", "%41%41",
    ],
)  # fmt: skip
def test_b64u_rejects(text: str) -> None:
    with pytest.raises(ValidationError):
        b64u_decode(text)


def test_b64u_rejects_non_strings_and_enforces_max_bytes() -> None:
    with pytest.raises(ValidationError):
        b64u_decode(b"AAAA")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        b64u_decode(None)  # type: ignore[arg-type]
    assert b64u_decode(b64u_encode(b"x" * 16), max_bytes=16) == b"x" * 16
    with pytest.raises(ValidationError, match="longer"):
        b64u_decode(b64u_encode(b"x" * 17), max_bytes=16)


def test_b64u_empty_and_known_values() -> None:
    # RFC 4648 §10 test vectors, unpadded, plus the two url-safe characters.
    for raw, text in [(b"", ""), (b"f", "Zg"), (b"fo", "Zm8"), (b"foo", "Zm9v"),
                      (b"foob", "Zm9vYg"), (b"fooba", "Zm9vYmE"), (b"foobar", "Zm9vYmFy"),
                      (b"\xfb\xff", "-_8")]:  # fmt: skip
        assert b64u_encode(raw) == text
        assert b64u_decode(text) == raw


# -- PAE framing -------------------------------------------------------------------------------

tags = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12)
bodies = st.binary(max_size=40)


def test_pae_layout() -> None:
    assert pae("carechain/tx@1", b"{}") == b"CCv1 14 carechain/tx@1 2 {}"
    assert pae("t", b"") == b"CCv1 1 t 0 "


@given(tags, bodies, tags, bodies)
def test_pae_is_injective(t1: str, b1: bytes, t2: str, b2: bytes) -> None:
    assume((t1, b1) != (t2, b2))
    assert pae(t1, b1) != pae(t2, b2)


@given(tags, bodies)
def test_pae_can_be_parsed_back(tag: str, body: bytes) -> None:
    """A constructive proof of injectivity: the framing decodes uniquely."""
    framed = pae(tag, body)
    prefix, tlen, rest = framed.split(b" ", 2)
    assert prefix == b"CCv1"
    t, rest = rest[: int(tlen)], rest[int(tlen) :]
    assert rest[:1] == b" "
    blen, b = rest[1:].split(b" ", 1)
    assert (t.decode(), b) == (tag, body) and int(blen) == len(body)


def test_pae_injectivity_check_can_fail() -> None:
    """Negative control: a framing without lengths collides, and the property would catch it."""

    def naive(tag: str, body: bytes) -> bytes:
        return tag.encode() + body

    assert naive("ab", b"c") == naive("a", b"bc")
    assert pae("ab", b"c") != pae("a", b"bc")
    # A body that embeds a frame is still framed as a body of the outer tag.
    assert pae("a", b"") != pae("a", pae("a", b""))


@pytest.mark.parametrize("tag", ["", "a b", "tx\u00e9", " ", "a\u2003b"])
def test_pae_rejects_bad_tags(tag: str) -> None:
    with pytest.raises(ValidationError):
        pae(tag, b"body")
