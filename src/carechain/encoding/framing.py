"""DSSE-style pre-authentication encoding (PAE) with versioned type tags.

Every hashed or signed structure is framed as::

    b"CCv1 %d %s %d %s" % (len(tag), tag, len(body), body)

so that bytes of one type can never be mistaken for bytes of another (domain separation),
and the length prefixes make the framing injective.
"""

from __future__ import annotations

from carechain.errors import ValidationError

PAE_PREFIX = b"CCv1"


def pae(tag: str, body: bytes) -> bytes:
    """Frame ``body`` under the ASCII type ``tag`` (e.g. ``"carechain/tx@1"``)."""
    if not tag or not tag.isascii() or " " in tag:
        raise ValidationError(f"type tag {tag!r} must be non-empty ASCII without spaces")
    t = tag.encode("ascii")
    return b"%s %d %s %d %s" % (PAE_PREFIX, len(t), t, len(body), body)
