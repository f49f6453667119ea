"""A raw Binary's streamed canonical bytes equal ``canonical_fhir`` of its JSON form."""

from __future__ import annotations

import base64
import itertools

from hypothesis import given
from hypothesis import strategies as st

from carechain.fhir.canonical import BinaryCanonicalizer, binary_canonical_chunks, canonical_fhir


def _resource(rid: str, ct: str, ctx: str, data: bytes) -> dict[str, object]:
    return {
        "resourceType": "Binary", "id": rid, "contentType": ct,
        "securityContext": {"reference": ctx}, "data": base64.b64encode(data).decode(),
        "meta": {"versionId": "3", "lastUpdated": "2026-11-28T00:00:00Z"},
    }  # fmt: skip


@given(
    data=st.binary(max_size=2000),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
    ct=st.sampled_from(["application/pdf", "image/png", 'text/plain; charset="utf-8"']),
    rid=st.from_regex(r"[A-Za-z0-9\-.]{1,64}", fullmatch=True),
)
def test_streamed_binary_canonical_equals_canonical_fhir(
    data: bytes, cuts: list[int], ct: str, rid: str
) -> None:
    points = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    chunks = [data[a:b] for a, b in itertools.pairwise(points)]
    ctx = "Patient/p1"
    streamed = b"".join(
        binary_canonical_chunks(chunks, rid=rid, content_type=ct, security_context=ctx)
    )
    assert streamed == canonical_fhir(_resource(rid, ct, ctx, data))


def test_negative_control_other_content_differs() -> None:
    canon = BinaryCanonicalizer(rid="b1", content_type="image/png", security_context="Patient/p")
    streamed = canon.head + canon.update(b"abcd") + canon.finish() + canon.tail
    assert streamed == canonical_fhir(_resource("b1", "image/png", "Patient/p", b"abcd"))
    assert streamed != canonical_fhir(_resource("b1", "image/png", "Patient/p", b"abce"))
    assert streamed != canonical_fhir(_resource("b1", "image/png", "Patient/q", b"abcd"))
