"""RFC 8785 (JCS) canonical JSON over carechain's restricted value model.

The model (checked by :func:`validate_value`):

* objects with string keys, arrays, strings, booleans and integers;
* integers with ``|i| <= 2**53 - 1`` (exactly representable in IEEE 754, RFC 8785 §3.2.2.3);
* no floats, no ``null``, no bytes (bytes travel as base64url strings), no lone surrogates.

Fast path: ``orjson`` with sorted keys. RFC 8785 sorts keys by UTF-16 code units while
orjson sorts by UTF-8 bytes; the two orders agree unless a key holds a character outside the
Basic Multilingual Plane, so keys with such characters take the reference path (``rfc8785``).
String escaping is identical (ECMAScript ``JSON.stringify``). Tests cross-check both paths
under hypothesis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Union

import orjson
import rfc8785

from carechain.errors import LimitExceededError, ValidationError

JsonValue = Union[str, int, bool, "JsonObject", "JsonArray"]
JsonObject = Mapping[str, JsonValue]
JsonArray = Sequence[JsonValue]

MAX_SAFE_INT = 2**53 - 1
"""Largest integer the model admits (and its negation the smallest)."""

MAX_DEPTH = 32
"""Deepest nesting of objects and arrays the model admits."""


def _has_surrogate(s: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in s)


class _Invalid(Exception):
    """Raised by the fast walk; the precise error comes from the path-tracking walk."""


_UNLIMITED = 1 << 62


def fast_check(
    value: Any, depth: int = 0, max_str: int = _UNLIMITED, max_items: int = _UNLIMITED
) -> bool:
    """The hot-path walk: like :func:`_check` (plus size limits) but without building paths.

    Returns the BMP flag; raises ``_Invalid`` on anything it does not accept (including values
    the precise walk might accept, such as tuples), so callers fall back to the precise walk.
    """
    if depth > MAX_DEPTH:
        raise _Invalid
    t = type(value)
    if t is str:
        if len(value) > max_str or (not value.isascii() and _has_surrogate(value)):
            raise _Invalid
        return True
    if t is int:
        if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            return True
        raise _Invalid
    if t is bool:
        return True
    if t is dict:
        if len(value) > max_items:
            raise _Invalid
        bmp = True
        for k, v in value.items():
            if type(k) is not str or len(k) > max_str:
                raise _Invalid
            if not k.isascii():
                if _has_surrogate(k):
                    raise _Invalid
                if any(ord(c) > 0xFFFF for c in k):
                    bmp = False
            if not fast_check(v, depth + 1, max_str, max_items):
                bmp = False
        return bmp
    if t is list:
        if len(value) > max_items:
            raise _Invalid
        bmp = True
        for v in value:
            if not fast_check(v, depth + 1, max_str, max_items):
                bmp = False
        return bmp
    raise _Invalid


def _check(value: object, depth: int, path: str) -> bool:
    """Validate ``value``; return True when every key is within the BMP (fast path safe)."""
    if depth > MAX_DEPTH:
        raise LimitExceededError(f"{path}: nesting deeper than {MAX_DEPTH}")
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            return True
        raise ValidationError(f"{path}: integer {value} outside ±(2^53-1)")
    if isinstance(value, str):
        if not value.isascii() and _has_surrogate(value):
            raise ValidationError(f"{path}: string holds a lone surrogate")
        return True
    if isinstance(value, Mapping):
        bmp = True
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValidationError(f"{path}: object key {k!r} is not a string")
            if not k.isascii():
                if _has_surrogate(k):
                    raise ValidationError(f"{path}: object key holds a lone surrogate")
                if any(ord(c) > 0xFFFF for c in k):
                    bmp = False
            bmp = _check(v, depth + 1, f"{path}.{k}") and bmp
        return bmp
    if isinstance(value, (list, tuple)):
        bmp = True
        for i, v in enumerate(value):
            bmp = _check(v, depth + 1, f"{path}[{i}]") and bmp
        return bmp
    if value is None:
        raise ValidationError(f"{path}: null is not allowed (omit the field instead)")
    if isinstance(value, float):
        raise ValidationError(f"{path}: floats are not allowed (use integers or strings)")
    if isinstance(value, (bytes, bytearray)):
        raise ValidationError(f"{path}: raw bytes are not allowed (encode as base64url)")
    raise ValidationError(f"{path}: {type(value).__name__} is not a JSON value of the model")


def validate_value(value: object, *, path: str = "$") -> None:
    """Raise :class:`ValidationError` unless ``value`` belongs to the restricted model."""
    try:
        fast_check(value)
    except _Invalid:
        _check(value, 0, path)


def encode_checked(value: object, bmp: bool) -> bytes:
    """Encode a value already validated, given its BMP flag."""
    if bmp:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return reference_canonical_bytes(value)


def canonical_bytes(value: object) -> bytes:
    """Return the RFC 8785 canonical encoding of ``value`` (validated first)."""
    try:
        bmp = fast_check(value)
    except _Invalid:
        bmp = _check(value, 0, "$")  # raises the precise error, or accepts (e.g. tuples)
    if bmp:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return reference_canonical_bytes(value)


def reference_canonical_bytes(value: object) -> bytes:
    """The reference RFC 8785 encoding (``rfc8785`` package): the slow path and test oracle."""
    return rfc8785.dumps(value)  # type: ignore[arg-type]
