"""The claims contract (``claims.*``): plans, enrolment, prior authorisation, claims adjudicated
deterministically in the transaction that submits them, payment, appeal, and value-based
agreements paying a bonus on a laboratory-attested outcome.

The handlers live in :mod:`carechain.contracts.claims_plans` (plans, coverage, prior
authorisation, agreements) and :mod:`carechain.contracts.claims_adjudication` (claims, payment,
appeal, outcomes); their docstrings give the state layout, the adjudication steps and the
invariants. Design: ADR 0009.
"""

from __future__ import annotations

from typing import Any

from carechain.contracts import claims_adjudication as adjudication
from carechain.contracts import claims_plans as plans

KINDS = (
    "claims.agreement@1", "claims.appeal@1", "claims.authorize@1", "claims.decide_appeal@1",
    "claims.enrol@1", "claims.outcome@1", "claims.pay@1", "claims.plan@1", "claims.submit@1",
)  # fmt: skip


def register(registry: Any) -> None:
    """Register the claims kinds."""
    registry.register("claims.plan@1", plans.register_plan)
    registry.register("claims.enrol@1", plans.enrol)
    registry.register("claims.authorize@1", plans.authorize)
    registry.register("claims.agreement@1", plans.agreement)
    registry.register("claims.submit@1", adjudication.submit)
    registry.register("claims.pay@1", adjudication.pay)
    registry.register("claims.appeal@1", adjudication.appeal)
    registry.register("claims.decide_appeal@1", adjudication.decide_appeal)
    registry.register("claims.outcome@1", adjudication.outcome)


__all__ = ["KINDS", "register"]
