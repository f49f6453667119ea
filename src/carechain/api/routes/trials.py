"""``/v1/trials``: the public clinical-trial registry and its outcome-switching reports.

Read-only: registrations, amendments, enrolments, adverse events and results are signed
transactions (``POST /v1/transactions``, kinds ``trials.*@1``). Nothing here holds PHI: an
enrolment is a count, an adverse event names an enrolment number.

``router`` also carries ``/v1/incentives`` (``api/routes/incentives.py``), so the app includes
one router for both features of ADR 0010.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from carechain.api.deps import NodeDep, problems
from carechain.api.routes import incentives
from carechain.fhir.trials_map import research_study
from carechain.node import trials as views

router = APIRouter()
trials_router = APIRouter(prefix="/v1/trials", tags=["trials"])
TrialId = Annotated[str, Path(max_length=40, description="Registry identifier.")]


@trials_router.get("", summary="Registered trials", responses=problems(400))
def list_trials(node: NodeDep) -> dict[str, Any]:
    """Every registered trial: sponsor, current version, title, phase, enrolment count."""
    return {"trials": views.list_trials(node.store)}


@trials_router.get(
    "/{trial}", summary="A trial with all its versions", responses=problems(400, 404)
)
def get_trial(trial: TrialId, node: NodeDep) -> dict[str, Any]:
    """The trial record, every registered version (with reasons and flags), serious adverse
    events (late ones flagged), results, and the reporting windows in force."""
    return views.trial_detail(node.store, trial)


@trials_router.get(
    "/{trial}/report",
    summary="Outcome-switching report with inclusion proofs",
    responses=problems(400, 404),
)
def get_report(trial: TrialId, node: NodeDep) -> dict[str, Any]:
    """Added, dropped and changed primary outcomes — at which version, when, and whether
    enrolment had begun — and the reported primary outcomes against the pre-specified ones;
    ``proofs`` holds an RFC 9162 inclusion proof of every version's transaction in the log of
    ``tree_size`` leaves (root ``root``)."""
    return views.switching(node.store, trial)


@trials_router.get(
    "/{trial}/ResearchStudy",
    summary="The trial as an R5 ResearchStudy",
    responses=problems(400, 404),
)
def get_research_study(trial: TrialId, node: NodeDep) -> dict[str, Any]:
    """FHIR R5 ``ResearchStudy`` of the current version (``fhir/trials_map.py``)."""
    detail = views.trial_detail(node.store, trial)
    return research_study(detail["trial"], detail["versions"][-1])


router.include_router(trials_router)
router.include_router(incentives.router)

__all__ = ["router"]
