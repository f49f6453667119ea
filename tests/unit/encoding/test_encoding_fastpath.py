"""The path-free fast walk agrees with the precise walk on every value (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from carechain.encoding.canonical import MAX_SAFE_INT, _check, _Invalid, fast_check
from carechain.errors import ValidationError

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.floats(allow_nan=True),
    st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(["\ud800", "😀", "\uffff"])),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=4) | st.sampled_from(["😀", "\ud800"]), inner, max_size=4),
    ),
    max_leaves=30,
)


@settings(max_examples=500)
@given(values)
def test_fast_walk_agrees_with_precise_walk(value: object) -> None:
    try:
        precise: bool | None = _check(value, 0, "$")
    except ValidationError:
        precise = None
    try:
        fast: bool | None = fast_check(value)
    except _Invalid:
        fast = None
    if fast is not None:
        assert precise == fast  # whatever the fast walk accepts, the precise walk accepts alike
    elif precise is not None:
        assert _contains_tuple(value)  # the only thing the fast walk leaves to the precise one


def _contains_tuple(value: object) -> bool:
    if isinstance(value, tuple):
        return True
    if isinstance(value, dict):
        return any(_contains_tuple(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_tuple(v) for v in value)
    return False


def test_limits_and_depth() -> None:
    deep: object = 1
    for _ in range(40):
        deep = [deep]
    for bad in (deep, MAX_SAFE_INT + 1, "x" * 11, {"k" * 11: 1}, list(range(11))):
        try:
            fast_check(bad, 0, 10, 10)
        except _Invalid:
            continue
        raise AssertionError(f"accepted {bad!r:.40}")
    assert fast_check({"a": ["b", 1, True]}, 0, 10, 10) is True  # negative control
