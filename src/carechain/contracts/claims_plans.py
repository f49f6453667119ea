"""Claims, part 1: payers' plans as data, enrolment, prior authorisation, value-based agreements.

State (ADR 0009; every amount is an integer in minor units of the plan's currency)::

    claims/plan/<plan>    {"id", "payer", "name", "currency", "deductible", "coinsurance_bp",
                           "services": {<code>: {"allowed", "copay", "limit"?, "prior_auth"}},
                           "since", "tx"}
    claims/cov/<cov>      {"id", "plan", "payer", "patient", "period": {"start", "end"},
                           "since", "tx"}                    (enrolment = FHIR Coverage)
    claims/covs/<patient> [cov, ..]                          (the patient's enrolments)
    claims/acc/<cov>      {"deductible_met", "units": {<code>: n}}   (per coverage period)
    claims/pa/<pa>        {"id", "coverage", "service", "units", "used", "period", "tx", ...}
    claims/vba/<id>       {"id", "payer", "plan", "provider", "measure": {"code", "below",
                           "unit"}, "window", "bonus", "budget", "paid", "bonuses", ...}

Invariants: a plan, a coverage and an agreement are written once and never rewritten except
for counters (``used``, ``paid``, ``bonuses``) that only grow; only a member of the payer
organisation with a payer role (``admin``, ``clerk``, ``service``) writes them; no personal
data: a coverage links a patient's pseudonymous account to a plan for a period.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from carechain.contracts.identity import (
    account_arg,
    arg,
    get_account,
    get_org,
    is_patient,
    only_fields,
    reject,
    text,
)
from carechain.contracts.records import CODE_RE, StateView
from carechain.encoding import MAX_SAFE_INT, JsonValue
from carechain.ledger.execute import TxContext
from carechain.ledger.state import Overlay
from carechain.ledger.tx import SignedTx

PAYER_ROLES = ("admin", "clerk", "service")
"""Member roles that act for a payer organisation."""
PROVIDER_ROLES = ("admin", "clerk", "nurse", "pharmacist", "practitioner", "service")
"""Member roles that submit and appeal claims for a provider organisation."""
PROVIDER_ORG_ROLES = ("clinic", "dispenser", "hospital", "laboratory", "pharmacy")
"""Organisation roles that may bill (be a claim's provider)."""
LAB_ROLES = ("admin", "device", "lab_technician", "service")
"""Member roles of a laboratory that may attest an outcome."""
MAX_AMOUNT = 10**12
"""Upper bound of any amount (minor units)."""
MAX_UNITS = 999
MAX_SERVICES = 200
MAX_COVERAGES_PER_PATIENT = 100
BASIS_POINTS = 10_000
CURRENCY_RE = re.compile(r"^[A-Z]{3}\Z")
"""ISO 4217 alphabetic code."""
ID_LEN = 16
"""Ids assigned by the contract: the first 16 hex digits of the transaction id."""


# -- state keys --------------------------------------------------------------------------------


def plan_key(plan: str) -> str:
    """State key of a plan."""
    return f"claims/plan/{plan}"


def coverage_key(coverage: str) -> str:
    """State key of a coverage (enrolment)."""
    return f"claims/cov/{coverage}"


def patient_coverages_key(patient: str) -> str:
    """State key of the patient's list of coverage ids."""
    return f"claims/covs/{patient}"


def accumulator_key(coverage: str) -> str:
    """State key of a coverage's deductible and limit accumulators."""
    return f"claims/acc/{coverage}"


def prior_auth_key(pa: str) -> str:
    """State key of a prior authorisation."""
    return f"claims/pa/{pa}"


def agreement_key(agreement: str) -> str:
    """State key of a value-based agreement."""
    return f"claims/vba/{agreement}"


def _find(state: StateView, key: str) -> Mapping[str, Any] | None:
    value = state.get(key)
    return value if isinstance(value, Mapping) else None


def find_plan(state: StateView, plan: str) -> Mapping[str, Any] | None:
    """The plan, or None."""
    return _find(state, plan_key(plan)) if CODE_RE.match(plan) else None


def find_coverage(state: StateView, coverage: str) -> Mapping[str, Any] | None:
    """The coverage, or None."""
    return _find(state, coverage_key(coverage)) if CODE_RE.match(coverage) else None


# -- argument checks ---------------------------------------------------------------------------


def code(args: Mapping[str, Any], name: str, *, optional: bool = False) -> str | None:
    """A short code (ids, service and diagnosis codes)."""
    value = arg(args, name, str, optional=optional)
    if value is not None and not CODE_RE.match(value):
        raise reject("bad_args", f"args.{name}: {value!r} is not a code ([A-Za-z0-9._:-]{{1,64}})")
    return value  # type: ignore[no-any-return]


def req_code(args: Mapping[str, Any], name: str) -> str:
    """A required short code."""
    return str(code(args, name))


def amount(args: Mapping[str, Any], name: str, *, default: int | None = None) -> int:
    """An integer amount in minor units, 0..MAX_AMOUNT."""
    if name not in args and default is not None:
        return default
    value: int = arg(args, name, int)
    if not 0 <= value <= MAX_AMOUNT:
        raise reject("bad_args", f"args.{name} must be an amount 0..{MAX_AMOUNT} (minor units)")
    return value


def units(args: Mapping[str, Any], name: str) -> int:
    """A count of units, 1..MAX_UNITS."""
    value: int = arg(args, name, int)
    if not 1 <= value <= MAX_UNITS:
        raise reject("bad_args", f"args.{name} must be 1..{MAX_UNITS}")
    return value


def timestamp(args: Mapping[str, Any], name: str) -> int:
    """A Unix millisecond timestamp."""
    value: int = arg(args, name, int)
    if not 0 <= value <= MAX_SAFE_INT:
        raise reject("bad_args", f"args.{name} must be a Unix millisecond timestamp")
    return value


def period(args: Mapping[str, Any], name: str = "period") -> dict[str, JsonValue]:
    """``{"start", "end"}`` in Unix ms with ``end > start`` (half-open ``[start, end)``)."""
    raw = args.get(name)
    if not isinstance(raw, Mapping) or set(raw) != {"start", "end"}:
        raise reject("bad_args", f"args.{name} must be exactly {{start, end}} (Unix ms)")
    start, end = timestamp(raw, "start"), timestamp(raw, "end")
    if end <= start:
        raise reject("bad_args", f"{name}.end {end} must be after {name}.start {start}")
    return {"end": end, "start": start}


def within(span: Mapping[str, Any], t: int) -> bool:
    """True iff ``start <= t < end``."""
    return int(span["start"]) <= t < int(span["end"])


# -- who may act -------------------------------------------------------------------------------


def require_payer(state: Overlay, account: str, payer: str | None = None) -> str:
    """The payer organisation ``account`` acts for (``payer`` if given), else ``unauthorized``."""
    acct = get_account(state, account)
    org_id = acct.get("org")
    if not isinstance(org_id, str) or acct.get("role") not in PAYER_ROLES:
        raise reject("unauthorized", f"{account} does not act for a payer (roles {PAYER_ROLES})")
    org = get_org(state, org_id)
    if "payer" not in org.get("roles", []):
        raise reject("unauthorized", f"organisation {org_id} is not a payer")
    if payer is not None and org_id != payer:
        raise reject("unauthorized", f"{account} acts for {org_id}, not for payer {payer}")
    return org_id


def require_provider(state: Overlay, account: str, provider: str) -> None:
    """Reject unless ``account`` is a billing member of provider organisation ``provider``."""
    org = get_org(state, provider)
    if not set(org.get("roles", [])) & set(PROVIDER_ORG_ROLES):
        raise reject("unauthorized", f"organisation {provider} is not a provider")
    acct = get_account(state, account)
    if acct.get("org") != provider or acct.get("role") not in PROVIDER_ROLES:
        raise reject(
            "unauthorized",
            f"{account} is not a member of {provider} with one of the roles {list(PROVIDER_ROLES)}",
        )


# -- handlers ----------------------------------------------------------------------------------


def _services(raw: object) -> dict[str, JsonValue]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_SERVICES:
        raise reject("bad_args", f"args.services must list 1 to {MAX_SERVICES} services")
    out: dict[str, JsonValue] = {}
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            raise reject("bad_args", f"args.services[{i}] must be an object")
        only_fields(entry, {"code", "allowed", "copay", "limit", "prior_auth"})
        svc = req_code(entry, "code")
        if svc in out:
            raise reject("bad_args", f"args.services lists {svc} twice")
        rule: dict[str, JsonValue] = {
            "allowed": amount(entry, "allowed"),
            "copay": amount(entry, "copay", default=0),
            "prior_auth": bool(arg(entry, "prior_auth", bool, optional=True)),
        }
        if "limit" in entry:
            limit: int = arg(entry, "limit", int)
            if not 1 <= limit <= 1_000_000:
                raise reject("bad_args", f"args.services[{i}].limit must be 1..1000000 units")
            rule["limit"] = limit
        out[svc] = rule
    return out


def register_plan(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``claims.plan@1``: a payer registers a plan (benefits as data).

    args: ``{"plan", "name", "currency", "deductible", "coinsurance_bp"?, "services": [{"code",
    "allowed" (per unit), "copay"? (per item), "limit"? (units per coverage period),
    "prior_auth"?}]}``. Rejections: ``bad_args``, ``unauthorized``, ``duplicate_plan``.
    """
    args = tx.body.args
    only_fields(args, {"plan", "name", "currency", "deductible", "coinsurance_bp", "services"})
    plan = req_code(args, "plan")
    name = text(args, "name")
    currency: str = arg(args, "currency", str)
    if not CURRENCY_RE.match(currency):
        raise reject("bad_args", "args.currency must be an ISO 4217 code such as KRW")
    deductible = amount(args, "deductible")
    coinsurance = amount(args, "coinsurance_bp", default=0)
    if coinsurance > BASIS_POINTS:
        raise reject("bad_args", f"args.coinsurance_bp must be 0..{BASIS_POINTS} (basis points)")
    services = _services(args.get("services"))
    payer = require_payer(state, tx.body.sender)
    if state.get(plan_key(plan)) is not None:
        raise reject("duplicate_plan", f"plan {plan} already exists")
    state.put(
        plan_key(plan),
        {
            "coinsurance_bp": coinsurance, "currency": currency, "deductible": deductible,
            "id": plan, "name": name or plan, "payer": payer, "services": services,
            "since": ctx.height, "tx": tx.tx_id.hex(),
        },
    )  # fmt: skip
    ctx.emit("claims.plan_registered", {"payer": payer, "plan": plan})


def enrol(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``claims.enrol@1``: the plan's payer enrols a patient pseudonym for a period.

    args: ``{"coverage", "plan", "patient", "period": {"start", "end"}}``. Rejections:
    ``bad_args``, ``unknown_plan``, ``unknown_patient``, ``unauthorized`` (not the plan's
    payer), ``duplicate_coverage``, ``overlapping_coverage`` (same patient and plan).
    """
    args = tx.body.args
    only_fields(args, {"coverage", "plan", "patient", "period"})
    cov = req_code(args, "coverage")
    plan_id = req_code(args, "plan")
    patient = account_arg(args, "patient")
    span = period(args)
    plan = find_plan(state, plan_id)
    if plan is None:
        raise reject("unknown_plan", f"no plan {plan_id}")
    require_payer(state, tx.body.sender, str(plan["payer"]))
    if not is_patient(state, patient):
        raise reject("unknown_patient", f"{patient} is not a registered patient")
    if state.get(coverage_key(cov)) is not None:
        raise reject("duplicate_coverage", f"coverage {cov} already exists")
    listed = state.get(patient_coverages_key(patient))
    ids = [str(i) for i in listed] if isinstance(listed, list) else []
    if len(ids) >= MAX_COVERAGES_PER_PATIENT:
        raise reject("too_many_coverages", f"{patient} already holds {len(ids)} coverages")
    for other_id in ids:
        other = find_coverage(state, other_id)
        if other is None or other["plan"] != plan_id:
            continue
        o = other["period"]
        if span["start"] < o["end"] and o["start"] < span["end"]:
            raise reject(
                "overlapping_coverage",
                f"{patient} is already enrolled in {plan_id} for an overlapping period "
                f"({other_id})",
            )
    state.put(
        coverage_key(cov),
        {"id": cov, "patient": patient, "payer": plan["payer"], "period": span, "plan": plan_id,
         "since": ctx.height, "tx": tx.tx_id.hex()},
    )  # fmt: skip
    state.put(patient_coverages_key(patient), [*ids, cov])
    ctx.touch(patient)
    ctx.emit("claims.enrolled", {"coverage": cov, "patient": patient, "plan": plan_id})


def authorize(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``claims.authorize@1``: the payer pre-authorises units of a service for a coverage.

    args: ``{"coverage", "service", "units", "period"}``; the authorisation's id is the first
    16 hex digits of the transaction id. Rejections: ``bad_args``, ``unknown_coverage``,
    ``unauthorized``, ``not_covered`` (the plan does not cover the service).
    """
    args = tx.body.args
    only_fields(args, {"coverage", "service", "units", "period"})
    cov_id = req_code(args, "coverage")
    service = req_code(args, "service")
    count = units(args, "units")
    span = period(args)
    cov = find_coverage(state, cov_id)
    if cov is None:
        raise reject("unknown_coverage", f"no coverage {cov_id}")
    require_payer(state, tx.body.sender, str(cov["payer"]))
    plan = find_plan(state, str(cov["plan"]))
    if plan is None or service not in plan["services"]:
        raise reject("not_covered", f"plan {cov['plan']} does not cover service {service}")
    pa = tx.tx_id.hex()[:ID_LEN]
    state.put(
        prior_auth_key(pa),
        {"coverage": cov_id, "height": ctx.height, "id": pa, "patient": cov["patient"],
         "period": span, "service": service, "tx": tx.tx_id.hex(), "units": count, "used": 0},
    )  # fmt: skip
    ctx.touch(str(cov["patient"]))
    ctx.emit("claims.authorized", {"coverage": cov_id, "id": pa, "service": service})


def agreement(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``claims.agreement@1``: a value-based agreement between the payer and a provider.

    args: ``{"agreement", "plan", "provider", "measure": {"code", "below", "unit"},
    "window": {"start", "end"}, "bonus", "budget"}``: the payer pays ``bonus`` once per
    attributed patient of ``provider`` under ``plan`` when a registered laboratory attests
    (``claims.outcome@1``) a ``measure.code`` result below ``measure.below`` (integer, in
    ``measure.unit``, e.g. 70 with unit ``%x10`` = HbA1c 7.0 %) anchored within ``window``,
    until ``budget`` is spent. Rejections: ``bad_args``, ``unknown_plan``, ``unauthorized``,
    ``unknown_org``, ``duplicate_agreement``.
    """
    args = tx.body.args
    only_fields(args, {"agreement", "plan", "provider", "measure", "window", "bonus", "budget"})
    vid = req_code(args, "agreement")
    plan_id = req_code(args, "plan")
    provider = account_arg(args, "provider")
    measure = args.get("measure")
    if not isinstance(measure, Mapping) or set(measure) != {"code", "below", "unit"}:
        raise reject("bad_args", "args.measure must be exactly {code, below, unit}")
    m_code, m_unit = req_code(measure, "code"), req_code(measure, "unit")
    below: int = arg(measure, "below", int)
    if not 0 <= below <= MAX_AMOUNT:
        raise reject("bad_args", "measure.below must be a non-negative integer")
    window = period(args, "window")
    bonus, budget = amount(args, "bonus"), amount(args, "budget")
    if bonus == 0 or budget < bonus:
        raise reject("bad_args", "args.bonus must be positive and args.budget at least one bonus")
    plan = find_plan(state, plan_id)
    if plan is None:
        raise reject("unknown_plan", f"no plan {plan_id}")
    payer = require_payer(state, tx.body.sender, str(plan["payer"]))
    org = get_org(state, provider)
    if not set(org.get("roles", [])) & set(PROVIDER_ORG_ROLES):
        raise reject("bad_args", f"organisation {provider} is not a provider")
    if state.get(agreement_key(vid)) is not None:
        raise reject("duplicate_agreement", f"agreement {vid} already exists")
    state.put(
        agreement_key(vid),
        {"bonus": bonus, "bonuses": 0, "budget": budget, "id": vid,
         "measure": {"below": below, "code": m_code, "unit": m_unit}, "paid": 0,
         "payer": payer, "plan": plan_id, "provider": provider, "since": ctx.height,
         "tx": tx.tx_id.hex(), "window": window},
    )  # fmt: skip
    ctx.emit(
        "claims.agreement_registered", {"agreement": vid, "payer": payer, "provider": provider}
    )


__all__ = [
    "LAB_ROLES",
    "MAX_AMOUNT",
    "PAYER_ROLES",
    "PROVIDER_ORG_ROLES",
    "PROVIDER_ROLES",
    "accumulator_key",
    "agreement",
    "agreement_key",
    "authorize",
    "coverage_key",
    "enrol",
    "find_coverage",
    "find_plan",
    "patient_coverages_key",
    "plan_key",
    "prior_auth_key",
    "register_plan",
    "require_payer",
    "require_provider",
]
