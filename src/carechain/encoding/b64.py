"""Strict base64url without padding (RFC 4648 §5), the only way bytes appear in JSON."""

from __future__ import annotations

import base64
import binascii

from carechain.errors import ValidationError

_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def b64u_encode(data: bytes) -> str:
    """Encode ``data`` as unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str, *, what: str = "value", max_bytes: int | None = None) -> bytes:
    """Decode unpadded base64url, rejecting padding, other alphabets and non-canonical tails.

    Raises :class:`ValidationError` naming ``what`` on any deviation.
    """
    if not isinstance(text, str):
        raise ValidationError(f"{what}: expected a base64url string, got {type(text).__name__}")
    if max_bytes is not None and len(text) > (max_bytes * 4 + 2) // 3:
        raise ValidationError(f"{what}: longer than {max_bytes} bytes")
    if not _ALPHABET.issuperset(text) or len(text) % 4 == 1:
        raise ValidationError(f"{what}: not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - alphabet checked above
        raise ValidationError(f"{what}: not base64url ({exc})") from exc
    if b64u_encode(data) != text:
        raise ValidationError(f"{what}: non-canonical base64url (stray bits in the last char)")
    return data
