"""``GET /v1/patients/{id}/access-log``: the patient's "who looked at my record" view (JSON).

Problem+json errors like the rest of ``/v1``. Only the patient (or a privacy officer) may
see it; the record service decides and audits the look itself.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Path, Request

from carechain.api.auth import current_actor
from carechain.api.deps import problems
from carechain.errors import UnavailableError
from carechain.node.records_api import AuditView, RecordService

router = APIRouter(prefix="/v1/patients", tags=["fhir"])


@router.get(
    "/{patient}/access-log",
    summary="Who accessed the patient's records, with inclusion proofs",
    responses=problems(401, 403, 404, 503),
)
async def access_log(
    patient: Annotated[str, Path(min_length=1, max_length=128)], request: Request
) -> dict[str, Any]:
    """Every audit entry about the patient (``entry``: the audit.record@1 args with ``tx``,
    ``height``, ``time``) with its RFC 9162 inclusion ``proof`` (``leaf_index``,
    ``tree_size``, ``proof``, ``root``), to verify offline against a checkpoint."""
    records: RecordService | None = getattr(request.app.state, "records", None)
    if records is None:
        raise UnavailableError("this node serves no records", retry_after=60)

    def run() -> list[AuditView]:
        return list(records.access_log(current_actor(request), patient))

    views = await anyio.to_thread.run_sync(run)
    return {
        "patient": patient,
        "count": len(views),
        "entries": [{"entry": dict(v.entry), "proof": dict(v.proof)} for v in views],
    }


__all__ = ["router"]
