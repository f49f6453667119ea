"""``/v1/records``: the on-chain anchors of a record (no PHI: keyed digests and pointers).

A reader at another organisation fetches a record's content from its hosting node and checks
it against the anchor *its own* node answers here (its own copy of the ledger), so a hosting
node cannot serve content other than what it anchored (ADR 0005, "Across organisations").
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path

from carechain.api.deps import NodeDep, problems
from carechain.contracts.records import FHIR_ID_RE, FHIR_TYPES, record_key
from carechain.errors import NotFoundError, ValidationError
from carechain.ledger.tx import ACCOUNT_RE

router = APIRouter(prefix="/v1/records", tags=["records"])


@router.get(
    "/{org}/{rtype}/{rid}",
    summary="A record's on-chain anchors (every version's digest, anchor tx and URL)",
    responses=problems(400, 404),
)
def get_record_anchor(
    org: Annotated[str, Path(max_length=64)],
    rtype: Annotated[str, Path(max_length=64)],
    rid: Annotated[str, Path(max_length=64)],
    node: NodeDep,
) -> dict[str, Any]:
    """The ``rec/<org>/<type>/<id>`` state: organisation, type, id, patient pseudonym, status,
    and per version its keyed digest, secure index, URL, author, anchor tx, height and time."""
    if not ACCOUNT_RE.match(org):
        raise ValidationError(f"organisation id {org!r} is malformed", code="bad_request")
    if rtype not in FHIR_TYPES:
        raise ValidationError(
            f"{rtype!r} is not a record type; want one of {list(FHIR_TYPES)}", code="bad_request"
        )
    if not FHIR_ID_RE.match(rid):
        raise ValidationError(f"{rid!r} is not a FHIR id", code="bad_request")
    raw = node.store.find_state(record_key(org, rtype, rid))
    if raw is None:
        raise NotFoundError(f"no record {org}/{rtype}/{rid} is anchored on this chain")
    value: dict[str, Any] = orjson.loads(raw)
    return value


__all__ = ["router"]
