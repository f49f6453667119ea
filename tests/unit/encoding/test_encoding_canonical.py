"""Canonical JSON: the orjson fast path against the ``rfc8785`` reference, and its bad inputs."""

from __future__ import annotations

import orjson
import pytest
import rfc8785
from hypothesis import example, given
from hypothesis import strategies as st

from carechain.encoding import MAX_SAFE_INT, canonical_bytes, decode_canonical, validate_value
from carechain.encoding.canonical import MAX_DEPTH, reference_canonical_bytes
from carechain.errors import LimitExceededError, ValidationError

# -- the value model as hypothesis strategies ------------------------------------------------

_any_char = st.characters(blacklist_categories=("Cs",))  # every code point but surrogates
_astral = st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF, blacklist_categories=("Cs",))
_high_bmp = st.characters(min_codepoint=0xE000, max_codepoint=0xFFFF, blacklist_categories=("Cs",))
_control = st.characters(max_codepoint=0x1F)

# Keys mix plain text, non-BMP characters and the BMP range above the surrogates: UTF-8 order
# and RFC 8785's UTF-16 order disagree exactly between those two groups.
keys = st.one_of(
    st.text(_any_char, max_size=6),
    st.text(st.one_of(_astral, _high_bmp, _control, st.sampled_from('aZ"\\/\x7f')), max_size=4),
)
strings = st.one_of(
    st.text(_any_char, max_size=12), st.text(st.one_of(_astral, _control), max_size=4)
)
ints = st.one_of(
    st.integers(-MAX_SAFE_INT, MAX_SAFE_INT),
    st.sampled_from([0, -1, MAX_SAFE_INT, -MAX_SAFE_INT, 2**31, -(2**31), 2**32, 10**15]),
)
scalars = st.one_of(st.booleans(), ints, strings)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=24,
)
objects = st.dictionaries(keys, values, max_size=6)


def _all_keys_bmp(value: object) -> bool:
    if isinstance(value, dict):
        return all(all(ord(c) <= 0xFFFF for c in k) and _all_keys_bmp(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_all_keys_bmp(v) for v in value)
    return True


# -- cross-checks against the reference -------------------------------------------------------


@given(values)
@example({"\ue000": 1, "\U00010000": 2})
@example({"a": {"\U0001f600": True, "\uffff": False}})
@example(['\x00\x1f\x7f\u2028\u2029"\\/', MAX_SAFE_INT, -MAX_SAFE_INT])
def test_canonical_bytes_equals_rfc8785_reference(value: object) -> None:
    assert canonical_bytes(value) == rfc8785.dumps(value)
    assert reference_canonical_bytes(value) == rfc8785.dumps(value)


@given(values.filter(_all_keys_bmp))
def test_orjson_fast_path_equals_reference_when_every_key_is_in_the_bmp(value: object) -> None:
    # The fast path itself, not canonical_bytes' routing: orjson with sorted keys.
    assert orjson.dumps(value, option=orjson.OPT_SORT_KEYS) == rfc8785.dumps(value)


def test_cross_check_can_fail_orjson_order_differs_for_non_bmp_keys() -> None:
    """Negative control: the oracle does catch an encoder that sorts by UTF-8 bytes."""
    value = {"\ue000": 1, "\U00010000": 2}
    fast = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    assert fast != rfc8785.dumps(value)
    # RFC 8785 §3.2.3: UTF-16 code units: U+10000 is D800 DC00 and sorts before U+E000.
    assert rfc8785.dumps(value) == '{"\U00010000":2,"\ue000":1}'.encode()
    assert canonical_bytes(value) == rfc8785.dumps(value)


@given(values)
def test_decode_canonical_round_trips(value: object) -> None:
    data = canonical_bytes(value)
    assert decode_canonical(data) == value
    assert canonical_bytes(decode_canonical(data)) == data


@given(objects.filter(lambda o: len(o) >= 2))
def test_unsorted_keys_are_rejected(obj: dict[str, object]) -> None:
    members = sorted(obj.items(), key=lambda kv: kv[0].encode("utf-16-be"))
    items = [canonical_bytes(k) + b":" + canonical_bytes(v) for k, v in reversed(members)]
    data = b"{" + b",".join(items) + b"}"
    assert data != canonical_bytes(obj)
    with pytest.raises(ValidationError, match="canonical"):
        decode_canonical(data)


def _structural_positions(raw: bytes) -> list[int]:
    """Offsets right after a structural character that is not inside a string literal."""
    out, in_string, escaped = [], False, False
    for i, byte in enumerate(raw):
        ch = bytes([byte])
        if in_string:
            if escaped:
                escaped = False
            elif ch == b"\\":
                escaped = True
            elif ch == b'"':
                in_string = False
        elif ch == b'"':
            in_string = True
        elif ch in b"[]{}:,":
            out.append(i + 1)
    return out


def test_structural_positions_skip_strings() -> None:
    """The helper itself: a ':' inside a key is not structural (this once let the test insert
    whitespace into a key, making another valid canonical document)."""
    assert _structural_positions(b'{":":[]}') == [1, 5, 6, 7, 8]


@given(values, st.data())
def test_inserted_whitespace_is_rejected(value: object, data: st.DataObject) -> None:
    raw = canonical_bytes(value)
    # Whitespace is only insignificant outside strings; put it at a structural position.
    positions = [0, len(raw), *_structural_positions(raw)]
    pos = data.draw(st.sampled_from(positions))
    ws = data.draw(st.sampled_from([b" ", b"\n", b"\t", b"\r"]))
    with pytest.raises(ValidationError):
        decode_canonical(raw[:pos] + ws + raw[pos:])


@given(st.text(_any_char, min_size=1, max_size=4), ints, ints)
def test_duplicate_keys_are_rejected(key: str, a: int, b: int) -> None:
    k = canonical_bytes(key)
    data = b"{" + k + b":" + canonical_bytes(a) + b"," + k + b":" + canonical_bytes(b) + b"}"
    with pytest.raises(ValidationError):
        decode_canonical(data)


# -- bad documents -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"1.0", id="float"),
        pytest.param(b"1e2", id="exponent"),
        pytest.param(b'{"a":0.5}', id="nested-float"),
        pytest.param(b"NaN", id="nan"),
        pytest.param(b"Infinity", id="infinity"),
        pytest.param(b"-Infinity", id="minus-infinity"),
        pytest.param(b'{"a":NaN}', id="nested-nan"),
        pytest.param(b"null", id="null"),
        pytest.param(b'{"a":null}', id="nested-null"),
        pytest.param(b"[null]", id="null-in-array"),
        pytest.param(b'{"a":1,"a":1}', id="duplicate-same-value"),
        pytest.param(b'{"a":1,"a":2}', id="duplicate-other-value"),
        pytest.param(b'{"a": 1}', id="space-after-colon"),
        pytest.param(b'{"a":1 }', id="space-before-brace"),
        pytest.param(b" 1", id="leading-space"),
        pytest.param(b"[1, 2]", id="space-after-comma"),
        pytest.param(b'{"b":1,"a":2}', id="unsorted"),
        pytest.param(b'"\\ud800"', id="lone-high-surrogate"),
        pytest.param(b'"\\udc00"', id="lone-low-surrogate"),
        pytest.param(b'"\\ud800x"', id="high-surrogate-then-char"),
        pytest.param(b'{"\\ud800":1}', id="lone-surrogate-key"),
        pytest.param(b'"\\ud83d\\ude00"', id="escaped-pair-not-minimal"),
        pytest.param(b'"\\u0041"', id="non-minimal-escape"),
        pytest.param(b'"\\/"', id="escaped-solidus"),
        pytest.param(b'"\\u001F"', id="uppercase-hex-escape"),
        pytest.param(b"9007199254740992", id="int-2^53"),
        pytest.param(b"-9007199254740992", id="int-minus-2^53"),
        pytest.param(b"18446744073709551616", id="int-2^64"),
        pytest.param(b"1" * 400, id="int-400-digits"),
        pytest.param(b"-0", id="minus-zero"),
        pytest.param(b"01", id="leading-zero"),
        pytest.param(b'"\xff"', id="invalid-utf8-byte"),
        pytest.param(b'"\xc0\xaf"', id="overlong-utf8"),
        pytest.param(b'"\xed\xa0\x80"', id="utf8-encoded-surrogate"),
        pytest.param(b'"\xe2\x82"', id="truncated-utf8"),
        pytest.param(b"1 2", id="trailing-value"),
        pytest.param(b"{}x", id="trailing-garbage"),
        pytest.param(b"{}{}", id="two-documents"),
        pytest.param(b"1\n", id="trailing-newline"),
        pytest.param(b"", id="empty"),
        pytest.param(b"[1,]", id="trailing-comma"),
        pytest.param(b"'a'", id="single-quotes"),
        pytest.param(b"\xef\xbb\xbf1", id="utf8-bom"),
    ],
)
def test_decode_canonical_rejects(data: bytes) -> None:
    with pytest.raises(ValidationError):
        decode_canonical(data)


@pytest.mark.parametrize(
    "data", [b"9007199254740991", b"-9007199254740991", b'"\\u001f"', b'"\\""', b"[]", b"{}"]
)
def test_decode_canonical_accepts_the_boundaries(data: bytes) -> None:
    """Negative control for the table above: the limits themselves are accepted."""
    assert canonical_bytes(decode_canonical(data)) == data


def _nest(n: int) -> bytes:
    return b"[" * n + b"]" * n


def test_nesting_depth_limit() -> None:
    # n nested arrays put the innermost one at depth n - 1; MAX_DEPTH is the deepest admitted.
    assert decode_canonical(_nest(MAX_DEPTH + 1)) is not None
    with pytest.raises(LimitExceededError, match="deeper"):
        decode_canonical(_nest(MAX_DEPTH + 2))
    with pytest.raises(ValidationError):
        decode_canonical(_nest(100_000))
    deep: list[object] = []
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(LimitExceededError):
        canonical_bytes(deep)


def test_size_limits() -> None:
    from carechain.encoding import Limits

    assert decode_canonical(b'"abcd"', limits=Limits(max_bytes=6)) == "abcd"
    with pytest.raises(LimitExceededError):
        decode_canonical(b'"abcde"', limits=Limits(max_bytes=6))
    # max_string counts characters, for values and keys alike
    assert decode_canonical('"\U0001f600\U0001f600"'.encode(), limits=Limits(max_string=2))
    with pytest.raises(LimitExceededError):
        decode_canonical(b'"abc"', limits=Limits(max_string=2))
    with pytest.raises(LimitExceededError):
        decode_canonical(b'{"abc":1}', limits=Limits(max_string=2))
    with pytest.raises(LimitExceededError):
        decode_canonical(b'[["abc"]]', limits=Limits(max_string=2))
    assert decode_canonical(b"[1,2]", limits=Limits(max_items=2)) == [1, 2]
    with pytest.raises(LimitExceededError):
        decode_canonical(b"[1,2,3]", limits=Limits(max_items=2))
    with pytest.raises(LimitExceededError):
        decode_canonical(b'{"a":1,"b":2,"c":3}', limits=Limits(max_items=2))
    with pytest.raises(LimitExceededError):
        decode_canonical(b'{"a":[1,2,3]}', limits=Limits(max_items=2))


def test_default_limits_bound_size_strings_and_items() -> None:
    with pytest.raises(LimitExceededError):
        decode_canonical(b'"' + b"a" * (1 << 20) + b'"')
    with pytest.raises(LimitExceededError):
        decode_canonical(b'"' + b"a" * ((1 << 16) + 1) + b'"')
    with pytest.raises(LimitExceededError):
        decode_canonical(canonical_bytes(list(range(10_001))))


# -- the encoder's value model -----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(1.0, id="float"),
        pytest.param(float("nan"), id="nan"),
        pytest.param(float("inf"), id="inf"),
        pytest.param({"a": 0.5}, id="nested-float"),
        pytest.param(None, id="none"),
        pytest.param({"a": None}, id="nested-none"),
        pytest.param(b"raw", id="bytes"),
        pytest.param({1: "a"}, id="int-key"),
        pytest.param({"a": {2, 3}}, id="set"),
        pytest.param("\ud800", id="lone-surrogate"),
        pytest.param("a\udfffb", id="lone-low-surrogate"),
        pytest.param({"\ud800": 1}, id="surrogate-key"),
        pytest.param(2**53, id="int-2^53"),
        pytest.param(-(2**53), id="int-minus-2^53"),
        pytest.param([10**30], id="huge-int"),
    ],
)
def test_canonical_bytes_rejects_values_outside_the_model(value: object) -> None:
    with pytest.raises(ValidationError):
        canonical_bytes(value)
    with pytest.raises(ValidationError):
        validate_value(value)


@given(st.one_of(st.integers(min_value=MAX_SAFE_INT + 1), st.integers(max_value=-MAX_SAFE_INT - 1)))
def test_integers_beyond_2_53_are_rejected(value: int) -> None:
    with pytest.raises(ValidationError):
        canonical_bytes(value)
    with pytest.raises(ValidationError):
        decode_canonical(str(value).encode())


def test_bools_are_not_integers() -> None:
    assert canonical_bytes([True, False, 1, 0]) == b"[true,false,1,0]"
    assert decode_canonical(b"[true,false,1,0]") == [True, False, 1, 0]
