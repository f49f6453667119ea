"""A strict decoder for canonical JSON received from outside.

Order of checks (each raises :class:`ValidationError` or :class:`LimitExceededError`):

1. size of the raw bytes against ``Limits.max_bytes``;
2. parse (orjson): rejects invalid UTF-8, lone surrogates, NaN/Infinity, trailing data;
3. the value model (:func:`validate_value`): no floats, no nulls, integer range, depth;
4. string length and integer-digit limits;
5. canonical form: re-encoding must give back the received bytes exactly. This also rejects
   duplicate keys (the re-encoding would be shorter), insignificant whitespace, unsorted keys
   and non-minimal escapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from carechain.encoding.canonical import (
    JsonValue,
    _check,
    _Invalid,
    encode_checked,
    fast_check,
    validate_value,
)
from carechain.errors import LimitExceededError, ValidationError


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Bounds on any JSON document accepted from outside."""

    max_bytes: int = 1 << 20
    """Largest accepted document, in bytes."""
    max_string: int = 1 << 16
    """Longest accepted string, in characters."""
    max_items: int = 10_000
    """Most members of one object or elements of one array."""


DEFAULT_LIMITS = Limits()


def _check_sizes(value: object, limits: Limits, path: str) -> None:
    if isinstance(value, str):
        if len(value) > limits.max_string:
            raise LimitExceededError(f"{path}: string longer than {limits.max_string}")
    elif isinstance(value, Mapping):
        if len(value) > limits.max_items:
            raise LimitExceededError(f"{path}: more than {limits.max_items} members")
        for k, v in value.items():
            if len(k) > limits.max_string:
                raise LimitExceededError(f"{path}: key longer than {limits.max_string}")
            _check_sizes(v, limits, f"{path}.{k}")
    elif isinstance(value, list):
        if len(value) > limits.max_items:
            raise LimitExceededError(f"{path}: more than {limits.max_items} elements")
        for i, v in enumerate(value):
            _check_sizes(v, limits, f"{path}[{i}]")


def decode_canonical(
    data: bytes, *, limits: Limits = DEFAULT_LIMITS, what: str = "document"
) -> JsonValue:
    """Decode ``data``, which must be canonical JSON of the restricted model."""
    if len(data) > limits.max_bytes:  # step 1
        raise LimitExceededError(
            f"{what}: {len(data)} bytes exceeds the limit of {limits.max_bytes}"
        )
    try:  # step 2
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"{what}: malformed JSON: {exc}", code="malformed_json") from exc
    try:  # steps 3 and 4 in one walk; the precise walks run only to name an error
        bmp = fast_check(value, 0, limits.max_string, limits.max_items)
    except _Invalid:
        validate_value(value, path=what)  # step 3
        _check_sizes(value, limits, what)  # step 4
        bmp = _check(value, 0, what)
    if encode_checked(value, bmp) != data:  # step 5
        raise ValidationError(
            f"{what}: not in RFC 8785 canonical form (sorted keys, no whitespace, "
            "no duplicate keys, minimal escapes); re-encode it canonically before signing",
            code="non_canonical",
        )
    return value  # type: ignore[no-any-return]
