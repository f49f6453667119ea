"""Claims, part 2: submission with deterministic adjudication in the same transaction, payment,
appeal, the payer's decision on appeal, and laboratory outcomes paying value-based bonuses.

State (ADR 0009)::

    claims/claim/<id>   {"id", "ref", "provider", "submitter", "patient", "coverage", "plan"?,
                         "payer"?, "encounter": {"org", "id"}, "diagnoses", "digest",
                         "items": [{"seq", "service", "date", "units", "charge", "auth"?,
                                    "decision": "approved"|"denied", "reasons": [..],
                                    "allowed", "deductible", "copay", "benefit", "patient"}],
                         "totals": {"charge", "allowed", "benefit", "patient"},
                         "decision": "approved"|"partial"|"denied", "reasons": [..],
                         "paid", "payments": [..], "appeal"?, "tx", "height", "time"}
    claims/ref/<provider>/<ref>                       first claim with this provider claim number
    claims/svc/<patient>/<provider>/<service>/<day>   the claim whose approved item billed it
    claims/attr/<provider>/<patient>                  {"plan", "claim"}: attribution for bonuses
    claims/outcome/<agreement>/<org>/<id>/<version>   a laboratory's attested outcome
    claims/bonus/<agreement>/<patient>                {"amount", "outcome", "tx", "height"}

Adjudication (``claims.submit@1``), in this order, each step a denial reason, never a rejected
transaction (a claim is recorded with its denial; only malformed or unauthorised submissions are
rejected):

1. ``duplicate_claim``: the provider already submitted a claim with this ``ref``;
2. ``encounter_not_found``: no active Encounter anchor ``rec/<org>/Encounter/<id>`` of the
   provider for this patient (``records.anchor@1``);
3. ``coverage_not_found``: no coverage ``coverage`` for this patient;
4. per item: ``not_eligible`` (service date outside the coverage period), ``not_covered``
   (service not in the plan), ``prior_auth_required`` (the plan lists the service and the item
   names no authorisation of this coverage and service valid at the date with units left),
   ``limit_exceeded`` (units past the plan's limit for the coverage period),
   ``duplicate_service`` (an approved item already billed this patient, provider, service and
   UTC day);
5. an item with no reason is approved and priced: ``allowed = min(charge, allowed × units)``;
   ``deductible`` = what remains of the plan's deductible, at most ``allowed``; of the rest the
   patient pays ``copay = min(rest, service copay + rest × coinsurance_bp / 10000)``; the payer's
   ``benefit`` is the remainder. Accumulators, authorisation use and the duplicate index move.

Invariants: amounts are integers (minor units); the claim's ``items`` never change except to
record an overturn on appeal; payments never exceed the benefit; one bonus per patient per
agreement and the agreement's ``paid`` never exceeds its ``budget``. No PHI: the patient is a
pseudonym, the clinical content stays off chain behind ``digest`` (keyed HMAC of the FHIR Claim);
diagnoses and services are codes only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from carechain.contracts.claims_plans import (
    BASIS_POINTS,
    ID_LEN,
    LAB_ROLES,
    accumulator_key,
    agreement_key,
    amount,
    code,
    find_coverage,
    find_plan,
    prior_auth_key,
    req_code,
    require_payer,
    require_provider,
    timestamp,
    units,
    within,
)
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
from carechain.contracts.records import (
    CODE_RE,
    DIGEST_SIZE,
    FHIR_ID_RE,
    FHIR_TYPES,
    StateView,
    fhir_id_arg,
    find_record,
)
from carechain.encoding import JsonValue, b64u_decode
from carechain.errors import ValidationError
from carechain.ledger.execute import TxContext
from carechain.ledger.state import Overlay
from carechain.ledger.tx import SignedTx

DAY_MS = 86_400_000
MAX_ITEMS = 50
MAX_DIAGNOSES = 12
MAX_PAYMENTS = 20
CLAIM_REASONS = ("coverage_not_found", "duplicate_claim", "encounter_not_found")
"""Reasons that deny every item of a claim."""
ITEM_REASONS = (
    "duplicate_service", "limit_exceeded", "not_covered", "not_eligible", "prior_auth_required",
)  # fmt: skip
"""Reasons that deny one item."""
APPEAL_DECISIONS = ("overturned", "upheld")
OUTCOME_RESULTS = ("below", "not_below")


def claim_key(claim: str) -> str:
    """State key of a claim (with its adjudication)."""
    return f"claims/claim/{claim}"


def find_claim(state: StateView, claim: str) -> Mapping[str, Any] | None:
    """The claim, or None."""
    if len(claim) != ID_LEN or not claim.isalnum():
        return None
    value = state.get(claim_key(claim))
    return value if isinstance(value, Mapping) else None


def _get_claim(state: Overlay, args: Mapping[str, Any]) -> dict[str, Any]:
    cid: str = arg(args, "claim", str)
    claim = find_claim(state, cid)
    if claim is None:
        raise reject("unknown_claim", f"no claim {cid}")
    return dict(claim)


# -- submission --------------------------------------------------------------------------------


def _items(raw: object, now: int) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_ITEMS:
        raise reject("bad_args", f"args.items must list 1 to {MAX_ITEMS} items")
    out = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            raise reject("bad_args", f"args.items[{i}] must be an object")
        only_fields(entry, {"service", "date", "units", "charge", "auth"})
        item: dict[str, Any] = {
            "charge": amount(entry, "charge"), "date": timestamp(entry, "date"), "seq": i + 1,
            "service": req_code(entry, "service"), "units": units(entry, "units"),
        }  # fmt: skip
        if item["date"] > now:
            raise reject("bad_args", f"args.items[{i}].date is after the block time")
        auth = code(entry, "auth", optional=True)
        if auth is not None:
            item["auth"] = auth
        out.append(item)
    return out


def _diagnoses(args: Mapping[str, Any]) -> list[str]:
    raw = args.get("diagnoses")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_DIAGNOSES:
        raise reject("bad_args", f"args.diagnoses must list 1 to {MAX_DIAGNOSES} codes")
    for i, value in enumerate(raw):
        if not isinstance(value, str) or not CODE_RE.match(value):
            raise reject("bad_args", f"args.diagnoses[{i}] must be a code (e.g. ICD-10 E11.9)")
    if len(set(raw)) != len(raw):
        raise reject("bad_args", "args.diagnoses lists a code twice")
    return [str(v) for v in raw]


def _digest(args: Mapping[str, Any]) -> str:
    value: str = arg(args, "digest", str)
    try:
        raw = b64u_decode(value, what="args.digest", max_bytes=64)
    except ValidationError as exc:
        raise reject("bad_args", str(exc)) from None
    if len(raw) != DIGEST_SIZE:
        raise reject("bad_args", f"args.digest: got {len(raw)} bytes, want {DIGEST_SIZE}")
    return value


def _encounter(args: Mapping[str, Any]) -> dict[str, JsonValue]:
    raw = args.get("encounter")
    if not isinstance(raw, Mapping) or set(raw) != {"org", "id"}:
        raise reject("bad_args", "args.encounter must be exactly {org, id}")
    return {"id": fhir_id_arg(raw, "id"), "org": account_arg(raw, "org")}


def _claim_reason(
    state: Overlay, provider: str, ref: str, patient: str, enc: Mapping[str, Any],
    cov: Mapping[str, Any] | None,
) -> str | None:  # fmt: skip
    if state.get(f"claims/ref/{provider}/{ref}") is not None:  # step 1
        return "duplicate_claim"
    record = find_record(state, str(enc["org"]), "Encounter", str(enc["id"]))  # step 2
    if (
        record is None or record.get("status") != "active" or record.get("patient") != patient
        or enc["org"] != provider
    ):  # fmt: skip
        return "encounter_not_found"
    if cov is None or cov.get("patient") != patient:  # step 3
        return "coverage_not_found"
    return None


def price(
    plan: Mapping[str, Any], acc: dict[str, Any], service: str, charge: int, count: int
) -> dict[str, int]:
    """Step 5: the amounts of an approved item; moves ``acc`` (deductible met, units)."""
    rule = plan["services"][service]
    allowed = min(charge, int(rule["allowed"]) * count)
    deductible = min(max(int(plan["deductible"]) - int(acc["deductible_met"]), 0), allowed)
    rest = allowed - deductible
    copay = min(rest, int(rule["copay"]) + rest * int(plan["coinsurance_bp"]) // BASIS_POINTS)
    acc["deductible_met"] = int(acc["deductible_met"]) + deductible
    used = dict(acc["units"])
    used[service] = int(used.get(service, 0)) + count
    acc["units"] = used
    return {
        "allowed": allowed, "benefit": rest - copay, "copay": copay, "deductible": deductible,
        "patient": deductible + copay,
    }  # fmt: skip


def _item_reasons(
    state: Overlay, item: Mapping[str, Any], cov: Mapping[str, Any], plan: Mapping[str, Any],
    acc: Mapping[str, Any], svc_key: str, pa_used: dict[str, int],
) -> list[str]:  # fmt: skip
    reasons = []
    service, date, count = item["service"], int(item["date"]), int(item["units"])
    if not within(cov["period"], date):
        reasons.append("not_eligible")
    rule = plan["services"].get(service)
    if rule is None:
        reasons.append("not_covered")
    else:
        if rule["prior_auth"] and not _auth_ok(state, item, cov, pa_used):
            reasons.append("prior_auth_required")
        limit = rule.get("limit")
        if isinstance(limit, int) and int(acc["units"].get(service, 0)) + count > limit:
            reasons.append("limit_exceeded")
    if state.get(svc_key) is not None:
        reasons.append("duplicate_service")
    return sorted(reasons)


def _auth_ok(
    state: Overlay, item: Mapping[str, Any], cov: Mapping[str, Any], pa_used: dict[str, int]
) -> bool:
    pa_id = item.get("auth")
    if not isinstance(pa_id, str):
        return False
    raw = state.get(prior_auth_key(pa_id))
    if not isinstance(raw, Mapping):
        return False
    pa: Mapping[str, Any] = raw
    used = pa_used.get(pa_id, int(pa["used"]))
    return bool(
        pa["coverage"] == cov["id"] and pa["service"] == item["service"]
        and within(pa["period"], int(item["date"])) and used + int(item["units"]) <= pa["units"]
    )  # fmt: skip


def _decision(items: list[dict[str, Any]]) -> str:
    approved = sum(1 for i in items if i["decision"] == "approved")
    return "approved" if approved == len(items) else "denied" if approved == 0 else "partial"


def _totals(items: list[dict[str, Any]]) -> dict[str, JsonValue]:
    return {
        name: sum(int(i[field]) for i in items)
        for name, field in (("allowed", "allowed"), ("benefit", "benefit"), ("charge", "charge"),
                            ("patient", "patient"))
    }  # fmt: skip


_ZERO = {"allowed": 0, "benefit": 0, "copay": 0, "deductible": 0, "patient": 0}


def submit(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``claims.submit@1``: a provider bills an encounter; adjudicated in this transaction.

    args: ``{"ref", "provider", "patient", "coverage", "encounter": {"org", "id"},
    "items": [{"service", "date", "units", "charge", "auth"?}], "diagnoses": [code..],
    "digest"}``. Rejections (nothing recorded): ``bad_args``, ``unauthorized`` (the sender
    does not bill for ``provider``), ``unknown_patient``. Everything else is a recorded
    adjudication (module docstring).
    """
    args = tx.body.args
    only_fields(args, {"ref", "provider", "patient", "coverage", "encounter", "items",
                       "diagnoses", "digest"})  # fmt: skip
    ref = req_code(args, "ref")
    provider = account_arg(args, "provider")
    patient = account_arg(args, "patient")
    cov_id = req_code(args, "coverage")
    enc = _encounter(args)
    items = _items(args.get("items"), ctx.time)
    diagnoses = _diagnoses(args)
    digest = _digest(args)
    require_provider(state, tx.body.sender, provider)
    if not is_patient(state, patient):
        raise reject("unknown_patient", f"{patient} is not a registered patient")
    cid = tx.tx_id.hex()[:ID_LEN]
    cov = find_coverage(state, cov_id)
    claim_reason = _claim_reason(state, provider, ref, patient, enc, cov)
    plan = find_plan(state, str(cov["plan"])) if cov is not None else None
    acc: dict[str, Any] = {"deductible_met": 0, "units": {}}
    stored_acc = state.get(accumulator_key(cov_id))
    if isinstance(stored_acc, Mapping):
        acc = dict(stored_acc)
    pa_used: dict[str, int] = {}
    for item in items:
        day = int(item["date"]) // DAY_MS
        svc_key = f"claims/svc/{patient}/{provider}/{item['service']}/{day}"
        if claim_reason is not None or cov is None or plan is None:
            reasons = [claim_reason or "coverage_not_found"]
        else:
            reasons = _item_reasons(state, item, cov, plan, acc, svc_key, pa_used)
        if reasons:
            item.update(_ZERO, decision="denied", reasons=reasons)
            continue
        assert plan is not None
        item.update(price(plan, acc, item["service"], item["charge"], item["units"]))
        item.update(decision="approved", reasons=[])
        if plan["services"][item["service"]]["prior_auth"]:
            pa_id = str(item["auth"])
            pa_used[pa_id] = pa_used.get(pa_id, int(_pa(state, pa_id)["used"])) + item["units"]
        state.put(svc_key, {"claim": cid, "seq": item["seq"]})
    decision = _decision(items)
    record: dict[str, JsonValue] = {
        "coverage": cov_id, "decision": decision, "diagnoses": list(diagnoses), "digest": digest,
        "encounter": enc, "height": ctx.height, "id": cid, "items": items, "paid": 0,
        "patient": patient, "payments": [], "provider": provider,
        "reasons": [claim_reason] if claim_reason else [], "ref": ref,
        "submitter": tx.body.sender, "time": ctx.time, "totals": _totals(items),
        "tx": tx.tx_id.hex(),
    }  # fmt: skip
    if cov is not None:  # the payer the claim was sent to sees it, also when denied
        record["payer"] = cov["payer"]
        record["plan"] = cov["plan"]
    if cov is not None and decision != "denied":  # something was approved: move the counters
        state.put(accumulator_key(cov_id), acc)
        for pa_id, used in pa_used.items():
            state.put(prior_auth_key(pa_id), {**_pa(state, pa_id), "used": used})
        state.put(f"claims/attr/{provider}/{patient}", {"claim": cid, "plan": cov["plan"]})
    if state.get(f"claims/ref/{provider}/{ref}") is None:
        state.put(f"claims/ref/{provider}/{ref}", {"claim": cid})
    state.put(claim_key(cid), record)
    ctx.touch(patient)
    ctx.emit("claims.adjudicated", {"claim": cid, "decision": decision, "provider": provider})


def _pa(state: Overlay, pa_id: str) -> Mapping[str, Any]:
    pa = state.get(prior_auth_key(pa_id))
    assert isinstance(pa, Mapping)
    return pa


# -- payment and appeal ------------------------------------------------------------------------


def pay(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``claims.pay@1``: the payer pays what its adjudication owes.

    args: ``{"claim", "amount", "reference"?}``; ``amount`` must equal the benefit not yet
    paid. Rejections: ``unknown_claim``, ``unauthorized`` (not the claim's payer),
    ``nothing_to_pay``, ``amount_mismatch``.
    """
    args = tx.body.args
    only_fields(args, {"claim", "amount", "reference"})
    claim = _get_claim(state, args)
    paying = amount(args, "amount")
    reference = code(args, "reference", optional=True)
    payer = claim.get("payer")
    require_payer(state, tx.body.sender, str(payer) if payer is not None else "(none)")
    owed = int(claim["totals"]["benefit"]) - int(claim["paid"])
    if owed <= 0 or len(claim["payments"]) >= MAX_PAYMENTS:
        raise reject("nothing_to_pay", f"claim {claim['id']} owes nothing (paid {claim['paid']})")
    if paying != owed:
        raise reject("amount_mismatch", f"claim {claim['id']}: got {paying}, want {owed}")
    entry: dict[str, JsonValue] = {"amount": paying, "height": ctx.height, "time": ctx.time,
                                   "tx": tx.tx_id.hex()}  # fmt: skip
    if reference is not None:
        entry["reference"] = reference
    claim["payments"] = [*claim["payments"], entry]
    claim["paid"] = int(claim["paid"]) + paying
    state.put(claim_key(claim["id"]), claim)
    ctx.touch(str(claim["patient"]))
    ctx.emit("claims.paid", {"amount": paying, "claim": claim["id"], "provider": claim["provider"]})


def appeal(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``claims.appeal@1``: the submitting provider appeals denied items, with documentation.

    args: ``{"claim", "reason", "documentation": {"org", "type", "id"}}`` — an anchored record
    (``records.anchor@1``) of the claim's patient, e.g. a DocumentReference. Rejections:
    ``unknown_claim``, ``unauthorized`` (not a billing member of the claim's provider),
    ``nothing_to_appeal``, ``already_appealed``, ``unknown_record``, ``patient_mismatch``.
    """
    args = tx.body.args
    only_fields(args, {"claim", "reason", "documentation"})
    claim = _get_claim(state, args)
    reason = text(args, "reason")
    doc = args.get("documentation")
    if not isinstance(doc, Mapping) or set(doc) != {"org", "type", "id"}:
        raise reject("bad_args", "args.documentation must be exactly {org, type, id}")
    d_org, d_type, d_id = account_arg(doc, "org"), arg(doc, "type", str), fhir_id_arg(doc, "id")
    if d_type not in FHIR_TYPES:
        raise reject("bad_args", f"documentation.type {d_type!r} is not a record type")
    require_provider(state, tx.body.sender, str(claim["provider"]))
    if claim["decision"] == "approved":
        raise reject("nothing_to_appeal", f"claim {claim['id']} has no denied item")
    if "appeal" in claim:
        raise reject("already_appealed", f"claim {claim['id']} was already appealed")
    record = find_record(state, d_org, d_type, d_id)
    if record is None or record.get("status") != "active":
        raise reject("unknown_record", f"no record {d_type}/{d_id} at {d_org}")
    if record.get("patient") != claim["patient"]:
        raise reject("patient_mismatch", "the documentation is not about the claim's patient")
    claim["appeal"] = {
        "by": tx.body.sender, "documentation": {"id": d_id, "org": d_org, "type": d_type},
        "height": ctx.height, "reason": reason, "status": "open", "time": ctx.time,
        "tx": tx.tx_id.hex(),
    }  # fmt: skip
    state.put(claim_key(claim["id"]), claim)
    ctx.emit("claims.appealed", {"claim": claim["id"], "provider": claim["provider"]})


def decide_appeal(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``claims.decide_appeal@1``: the payer upholds or overturns an open appeal.

    args: ``{"claim", "decision": "upheld"|"overturned", "reason", "items"?: [seq..]}`` —
    overturning approves the listed denied items (default: every denied item) and prices them
    as step 5 does. Rejections: ``unknown_claim``, ``unauthorized``, ``no_open_appeal``,
    ``bad_args`` (an item that is not denied), ``cannot_overturn`` (no coverage of the patient to
    price with, or a service the plan does not cover).
    """
    args = tx.body.args
    only_fields(args, {"claim", "decision", "reason", "items"})
    claim = _get_claim(state, args)
    decision = arg(args, "decision", str)
    if decision not in APPEAL_DECISIONS:
        raise reject("bad_args", f"args.decision must be one of {list(APPEAL_DECISIONS)}")
    reason = text(args, "reason")
    payer = claim.get("payer")
    require_payer(state, tx.body.sender, str(payer) if payer is not None else "(none)")
    appeal_rec = claim.get("appeal")
    if not isinstance(appeal_rec, Mapping) or appeal_rec.get("status") != "open":
        raise reject("no_open_appeal", f"claim {claim['id']} has no open appeal")
    items = [dict(i) for i in claim["items"]]
    denied = [i["seq"] for i in items if i["decision"] == "denied"]
    chosen = arg(args, "items", list, optional=True)
    if chosen is None:
        chosen = denied
    if decision == "overturned":
        if not chosen or any(s not in denied for s in chosen) or len(set(chosen)) != len(chosen):
            raise reject("bad_args", f"args.items must list distinct denied items of {denied}")
        plan = find_plan(state, str(claim.get("plan", "")))
        if plan is None or "coverage_not_found" in claim["reasons"]:
            raise reject("cannot_overturn", "the claim has no plan to price the items with")
        acc = dict(state.get(accumulator_key(str(claim["coverage"]))) or {})  # type: ignore[arg-type]
        acc.setdefault("deductible_met", 0)
        acc.setdefault("units", {})
        for item in items:
            if item["seq"] in chosen:
                if item["service"] not in plan["services"]:
                    raise reject("cannot_overturn", f"the plan does not cover {item['service']}")
                item.update(price(plan, acc, item["service"], item["charge"], item["units"]))
                item.update(decision="approved", overturned=True)
        state.put(accumulator_key(str(claim["coverage"])), acc)
        claim["items"] = items
        claim["decision"] = _decision(items)
        claim["totals"] = _totals(items)
    claim["appeal"] = {
        **appeal_rec, "decided": {"by": tx.body.sender, "height": ctx.height, "reason": reason,
                                  "time": ctx.time, "tx": tx.tx_id.hex()},
        "status": decision,
    }  # fmt: skip
    state.put(claim_key(claim["id"]), claim)
    ctx.emit("claims.appeal_decided", {"claim": claim["id"], "decision": decision})


# -- value-based agreements: outcomes attested by a laboratory ----------------------------------


def outcome(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``claims.outcome@1``: a registered laboratory attests a coded outcome of an anchored
    Observation; a qualifying one pays the agreement's bonus in this transaction.

    args: ``{"agreement", "patient", "observation": {"org", "id", "version"}, "code",
    "result": "below"|"not_below"}`` — ``result`` compares the (off-chain) value with the
    agreement's threshold; the value itself never goes on chain. Rejections: ``bad_args``,
    ``unknown_agreement``, ``unauthorized`` (not a member of the laboratory that anchored the
    Observation, or the org is not a laboratory), ``unknown_record``, ``patient_mismatch``,
    ``wrong_measure``, ``duplicate_outcome``. A recorded outcome names why no bonus was paid
    (``not_below``, ``outside_window``, ``not_attributed``, ``already_paid``,
    ``budget_exhausted``).
    """
    args = tx.body.args
    only_fields(args, {"agreement", "patient", "observation", "code", "result"})
    vid = req_code(args, "agreement")
    patient = account_arg(args, "patient")
    obs = args.get("observation")
    if not isinstance(obs, Mapping) or set(obs) != {"org", "id", "version"}:
        raise reject("bad_args", "args.observation must be exactly {org, id, version}")
    o_org, o_id = account_arg(obs, "org"), fhir_id_arg(obs, "id")
    version: int = arg(obs, "version", int)
    m_code = req_code(args, "code")
    result = arg(args, "result", str)
    if result not in OUTCOME_RESULTS:
        raise reject("bad_args", f"args.result must be one of {list(OUTCOME_RESULTS)}")
    vba_raw = state.get(agreement_key(vid))
    if not isinstance(vba_raw, Mapping):
        raise reject("unknown_agreement", f"no agreement {vid}")
    vba: dict[str, Any] = dict(vba_raw)
    acct = get_account(state, tx.body.sender)
    lab = get_org(state, o_org)
    if (
        acct.get("org") != o_org or acct.get("role") not in LAB_ROLES
        or "laboratory" not in lab.get("roles", [])
    ):  # fmt: skip
        raise reject("unauthorized", f"only a member of laboratory {o_org} attests its outcomes")
    record = find_record(state, o_org, "Observation", o_id)
    entry = None
    if record is not None and FHIR_ID_RE.match(o_id):
        entry = next((v for v in record["versions"] if v["version"] == version), None)
    if record is None or entry is None or record.get("status") != "active":
        raise reject("unknown_record", f"no Observation/{o_id} version {version} at {o_org}")
    if record["patient"] != patient:
        raise reject("patient_mismatch", f"Observation/{o_id} is not about {patient}")
    if m_code != vba["measure"]["code"]:
        raise reject("wrong_measure", f"agreement {vid} measures {vba['measure']['code']}")
    okey = f"claims/outcome/{vid}/{o_org}/{o_id}/{version}"
    if state.get(okey) is not None:
        raise reject(
            "duplicate_outcome", f"this Observation version was already attested for {vid}"
        )
    why = _no_bonus(state, vba, patient, result, int(entry["time"]))
    bonus = 0 if why else int(vba["bonus"])
    state.put(okey, {"bonus": bonus, "by": tx.body.sender, "code": m_code, "height": ctx.height,
                     "patient": patient, "reason": why or "paid", "result": result,
                     "tx": tx.tx_id.hex()})  # fmt: skip
    if bonus:
        paid: dict[str, JsonValue] = {
            "amount": bonus,
            "height": ctx.height,
            "outcome": okey,
            "tx": tx.tx_id.hex(),
        }
        state.put(f"claims/bonus/{vid}/{patient}", paid)
        vba["paid"] = int(vba["paid"]) + bonus
        vba["bonuses"] = int(vba["bonuses"]) + 1
        state.put(agreement_key(vid), vba)
        ctx.emit("claims.bonus_paid", {"agreement": vid, "amount": bonus,
                                       "provider": vba["provider"]})  # fmt: skip
    ctx.touch(patient)
    ctx.emit("claims.outcome_recorded", {"agreement": vid, "reason": why or "paid"})


def _no_bonus(
    state: Overlay, vba: Mapping[str, Any], patient: str, result: str, anchored: int
) -> str | None:
    if result != "below":
        return "not_below"
    if not within(vba["window"], anchored):
        return "outside_window"
    attr = state.get(f"claims/attr/{vba['provider']}/{patient}")
    if not isinstance(attr, Mapping) or attr.get("plan") != vba["plan"]:
        return "not_attributed"
    if state.get(f"claims/bonus/{vba['id']}/{patient}") is not None:
        return "already_paid"
    if int(vba["paid"]) + int(vba["bonus"]) > int(vba["budget"]):
        return "budget_exhausted"
    return None


__all__ = [
    "CLAIM_REASONS",
    "ITEM_REASONS",
    "appeal",
    "claim_key",
    "decide_appeal",
    "find_claim",
    "outcome",
    "pay",
    "price",
    "submit",
]
