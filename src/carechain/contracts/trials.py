"""The clinical-trial registry: registration, amendments, enrolment, serious adverse events,
results, and the outcome-switching report (ADR 0010).

State (all values canonical JSON; no PHI)::

    trial/<id>          {"id", "sponsor": org, "registered": {"by", "height", "time", "tx"},
                         "version": n, "enrolled": count, "first_enrolment"?: {"height", "time"},
                         "saes": count, "late_saes": count, "flags": count,
                         "status": "registered"|"recruiting"|"reported"}
    trialv/<id>/<n>     {"version", "title", "phase", "protocol", "primary": [outcome..],
                         "secondary": [outcome..], "planned_enrolment", "by", "tx", "height",
                         "time", "reason"? (n > 1), "changes"?: [{change, measure, ..}],
                         "after_enrolment": bool, "flagged": bool}
    trialsubj/<id>/<patient>  {"n", "consent", "height", "time"}   (one enrolment per patient)
    trialsae/<id>/<n>   {"n", "subject": enrolment number, "onset", "fatal", "category",
                         "by", "tx", "height", "time", "days", "late": bool}
    trialres/<id>       {"primary", "secondary", "data", "by", "tx", "height", "time",
                         "changes": [..] (against the last registered version)}
    rules/trials        {"sae_report_days", "fatal_sae_report_days"}

An outcome is ``{"measure", "time_frame"}``; outcomes are identified by ``measure``. A primary
outcome is *added* (a measure not in the previous list), *dropped* (gone), or *changed* (same
measure, another time frame).

Invariants: a version is never rewritten; versions are dense (1, 2, …) and each names the tx
that registered it, so every version has an inclusion proof in the log; the registration time
is the block time; only members (admin or researcher) of the sponsoring organisation, which
has the role ``research_sponsor``, register, amend, enrol, report events and results; a change
of primary outcomes after the first enrolment is flagged (``flagged``) and so are results whose
primary outcomes differ from the last registered ones; a patient is enrolled at most once per
trial, only with an active research consent (purpose HRESCH) granted to the sponsor; results
are reported once and close the trial to amendments and enrolment.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from carechain.contracts.consent import find_consent
from carechain.contracts.identity import (
    arg,
    get_account,
    get_org,
    only_fields,
    reject,
    text,
)
from carechain.contracts.records import DIGEST_SIZE, StateView, code_arg
from carechain.contracts.registry import genesis_rules
from carechain.encoding import MAX_SAFE_INT, JsonObject, JsonValue, b64u_decode
from carechain.errors import ContractError, ValidationError
from carechain.ledger.execute import TxContext
from carechain.ledger.state import Overlay
from carechain.ledger.tx import SignedTx

SECTION = "trials"
TRIAL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,39}\Z")
"""A registry identifier (``NCT01234567``, ``KCT0009876`` …)."""
PHASES = (
    "early-phase-1", "n-a", "phase-1", "phase-1-phase-2", "phase-2", "phase-2-phase-3",
    "phase-3", "phase-4",
)  # fmt: skip
"""HL7 research-study-phase codes (R5 ResearchStudy.phase)."""
SPONSOR_ORG_ROLE = "research_sponsor"
SPONSOR_MEMBER_ROLES = ("admin", "researcher")
RESEARCH_PURPOSE = "HRESCH"
MAX_OUTCOMES = 20
MAX_PLANNED = 1_000_000
DAY_MS = 86_400_000
DEFAULT_RULES: dict[str, int] = {"fatal_sae_report_days": 7, "sae_report_days": 15}
"""Reporting windows for serious adverse events, in days after onset (ICH E2A: 7 days for
fatal or life-threatening unexpected reactions, 15 for other serious ones)."""
TRIAL_FIELDS = ("title", "phase", "protocol", "primary", "secondary", "planned_enrolment")


def trial_key(trial: str) -> str:
    return f"trial/{trial}"


def version_key(trial: str, n: int) -> str:
    return f"trialv/{trial}/{n}"


def subject_key(trial: str, patient: str) -> str:
    return f"trialsubj/{trial}/{patient}"


def sae_key(trial: str, n: int) -> str:
    return f"trialsae/{trial}/{n}"


def results_key(trial: str) -> str:
    return f"trialres/{trial}"


def find_trial(state: StateView, trial: str) -> Mapping[str, Any] | None:
    """The trial record, or None (also for a malformed id)."""
    if not TRIAL_ID_RE.match(trial):
        return None
    rec = state.get(trial_key(trial))
    return rec if isinstance(rec, Mapping) else None


def trial_rules(state: StateView) -> dict[str, int]:
    """``rules/trials`` (defaults for chains whose genesis predates this contract)."""
    raw = state.get(f"rules/{SECTION}")
    out = dict(DEFAULT_RULES)
    if isinstance(raw, Mapping):
        out.update({k: int(v) for k, v in raw.items() if k in DEFAULT_RULES and isinstance(v, int)})
    return out


# -- outcome comparison (used by the contract, the node's report and the SDK) -------------------


def outcome_changes(
    before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]
) -> list[JsonObject]:
    """Added, dropped and changed outcomes from ``before`` to ``after``, sorted by measure."""
    old = {str(o["measure"]): str(o["time_frame"]) for o in before}
    new = {str(o["measure"]): str(o["time_frame"]) for o in after}
    out: list[JsonObject] = []
    for measure in sorted(set(old) | set(new)):
        if measure not in old:
            out.append({"change": "added", "measure": measure, "time_frame": new[measure]})
        elif measure not in new:
            out.append({"change": "dropped", "measure": measure, "time_frame": old[measure]})
        elif old[measure] != new[measure]:
            out.append(
                {"change": "changed", "from": old[measure], "measure": measure,
                 "time_frame": new[measure]}
            )  # fmt: skip
    return out


def switching_report(
    trial: Mapping[str, Any],
    versions: Sequence[Mapping[str, Any]],
    results: Mapping[str, Any] | None,
) -> JsonObject:
    """The outcome-switching report of a trial: every change of primary outcomes, when it
    happened (version, height, block time) and whether enrolment had begun; and the reported
    primary outcomes against the *pre-specified* ones (version 1).

    ``versions`` in order 1..n; ``results`` as stored, or None.
    """
    events: list[JsonObject] = []
    for prev, cur in itertools.pairwise(versions):
        for change in outcome_changes(prev["primary"], cur["primary"]):
            events.append(
                {**change, "after_enrolment": bool(cur["after_enrolment"]), "height": cur["height"],
                 "stage": "amendment", "time": cur["time"], "tx": cur["tx"],
                 "version": cur["version"]}
            )  # fmt: skip
    net: list[JsonObject] = []
    if results is not None:
        for change in outcome_changes(versions[-1]["primary"], results["primary"]):
            events.append(
                {**change, "after_enrolment": "first_enrolment" in trial,
                 "height": results["height"], "stage": "results", "time": results["time"],
                 "tx": results["tx"], "version": versions[-1]["version"]}
            )  # fmt: skip
        net = outcome_changes(versions[0]["primary"], results["primary"])
    elif versions:
        net = outcome_changes(versions[0]["primary"], versions[-1]["primary"])
    return {
        "changes": events,
        "net": net,
        "pre_specified": list(versions[0]["primary"]) if versions else [],
        "reported": list(results["primary"]) if results is not None else [],
        "switched": bool(net),
        "trial": str(trial["id"]),
        "versions": len(versions),
    }


# -- argument checks ----------------------------------------------------------------------------


def _trial_id(args: Mapping[str, Any], name: str) -> str:
    value: str = arg(args, name, str)
    if not TRIAL_ID_RE.match(value):
        raise reject("bad_args", f"args.{name}: {value!r} is not a trial identifier")
    return value


def _digest(args: Mapping[str, Any], name: str) -> str:
    value: str = arg(args, name, str)
    try:
        raw = b64u_decode(value, what=f"args.{name}", max_bytes=64)
    except ValidationError as exc:
        raise reject("bad_args", str(exc)) from None
    if len(raw) != DIGEST_SIZE:
        raise reject("bad_args", f"args.{name}: got {len(raw)} bytes, want {DIGEST_SIZE}")
    return value


def _outcomes(args: Mapping[str, Any], name: str, *, minimum: int) -> list[JsonValue]:
    raw = args.get(name)
    if not isinstance(raw, list) or not minimum <= len(raw) <= MAX_OUTCOMES:
        raise reject("bad_args", f"args.{name} must list {minimum} to {MAX_OUTCOMES} outcomes")
    out: list[JsonValue] = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping) or set(item) != {"measure", "time_frame"}:
            raise reject("bad_args", f"args.{name}[{i}] must be exactly {{measure, time_frame}}")
        measure, frame = text(item, "measure"), text(item, "time_frame")
        assert measure is not None and frame is not None
        out.append({"measure": measure, "time_frame": frame})
    return out


def _int_arg(args: Mapping[str, Any], name: str, low: int, high: int) -> int:
    value: int = arg(args, name, int)
    if not low <= value <= high:
        raise reject("bad_args", f"args.{name}: got {value}, want {low}..{high}")
    return value


def _fields(args: Mapping[str, Any], base: Mapping[str, Any] | None) -> dict[str, JsonValue]:
    """The registrable fields: from ``args`` where given, else from ``base`` (an amendment)."""
    out: dict[str, JsonValue] = {}
    for name in TRIAL_FIELDS:
        if name not in args:
            if base is None:
                raise reject("bad_args", f"args.{name} is required")
            out[name] = base[name]
            continue
        if name == "title":
            out[name] = str(text(args, name))
        elif name == "phase":
            phase = arg(args, name, str)
            if phase not in PHASES:
                raise reject("bad_args", f"args.phase {phase!r} is not one of {list(PHASES)}")
            out[name] = phase
        elif name == "protocol":
            out[name] = _digest(args, name)
        elif name == "primary":
            out[name] = _outcomes(args, name, minimum=1)
        elif name == "secondary":
            out[name] = _outcomes(args, name, minimum=0)
        else:
            out[name] = _int_arg(args, name, 1, MAX_PLANNED)
    listed: list[Any] = [*out["primary"], *out["secondary"]]  # type: ignore[misc]
    measures = [str(o["measure"]) for o in listed]
    if len(set(measures)) != len(measures):
        raise reject("bad_args", "an outcome measure is listed twice (primary and secondary)")
    return out


def _sponsor_member(state: Overlay, account: str, org: str | None = None) -> str:
    """The sponsoring organisation of ``account`` (admin or researcher of an active org with
    role research_sponsor; of ``org`` when given), else ``unauthorized``."""
    acct = get_account(state, account)
    acct_org = acct.get("org")
    if not isinstance(acct_org, str) or acct.get("role") not in SPONSOR_MEMBER_ROLES:
        raise reject(
            "unauthorized",
            f"{account} is not a researcher or admin of a research sponsor",
        )
    if org is not None and acct_org != org:
        raise reject("unauthorized", f"{account} is not a member of the trial's sponsor {org}")
    rec = get_org(state, acct_org)
    if SPONSOR_ORG_ROLE not in rec.get("roles", []):
        raise reject(
            "unauthorized", f"organisation {acct_org} does not have the role {SPONSOR_ORG_ROLE}"
        )
    return acct_org


def _trial(state: Overlay, args: Mapping[str, Any], name: str = "trial") -> dict[str, Any]:
    trial_id = _trial_id(args, name)
    rec = find_trial(state, trial_id)
    if rec is None:
        raise reject("unknown_trial", f"no trial {trial_id} is registered")
    return dict(rec)


def _stamp(tx: SignedTx, ctx: TxContext) -> dict[str, JsonValue]:
    return {"by": tx.body.sender, "height": ctx.height, "time": ctx.time, "tx": tx.tx_id.hex()}


def _not_reported(trial: Mapping[str, Any]) -> None:
    if trial["status"] == "reported":
        raise reject("trial_reported", f"trial {trial['id']} has reported its results")


# -- handlers -----------------------------------------------------------------------------------


def register_trial(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``trials.register@1``: a sponsor registers a trial (version 1).

    args: ``{"id", "title", "phase", "protocol" (keyed digest), "primary": [outcome..],
    "secondary": [outcome..], "planned_enrolment"}``; ``unauthorized``, ``duplicate_trial``.
    """
    args = tx.body.args
    only_fields(args, {"id", *TRIAL_FIELDS})
    sponsor = _sponsor_member(state, tx.body.sender)
    trial_id = _trial_id(args, "id")
    fields = _fields(args, None)
    if state.get(trial_key(trial_id)) is not None:
        raise reject("duplicate_trial", f"trial {trial_id} is already registered")
    stamp = _stamp(tx, ctx)
    state.put(
        trial_key(trial_id),
        {"enrolled": 0, "flags": 0, "id": trial_id, "late_saes": 0, "registered": stamp,
         "saes": 0, "sponsor": sponsor, "status": "registered", "version": 1},
    )  # fmt: skip
    state.put(
        version_key(trial_id, 1),
        {**fields, **stamp, "after_enrolment": False, "flagged": False, "version": 1},
    )
    ctx.emit("trials.registered", {"sponsor": sponsor, "trial": trial_id})


def amend_trial(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``trials.amend@1``: a new version with a reason; fields not given are carried over.

    args: ``{"trial", "reason", <any registrable field>}``; ``unknown_trial``,
    ``unauthorized`` (not the sponsor), ``no_change``, ``trial_reported``. A change of primary
    outcomes once enrolment has begun is flagged.
    """
    args = tx.body.args
    only_fields(args, {"trial", "reason", *TRIAL_FIELDS})
    trial = _trial(state, args)
    _sponsor_member(state, tx.body.sender, str(trial["sponsor"]))
    _not_reported(trial)
    reason = text(args, "reason")
    n = int(trial["version"])
    prev = state.get(version_key(trial["id"], n))
    assert isinstance(prev, Mapping)
    fields = _fields({k: v for k, v in args.items() if k in TRIAL_FIELDS}, prev)
    if all(fields[k] == prev[k] for k in TRIAL_FIELDS):
        raise reject("no_change", "the amendment changes none of the registered fields")
    changes = outcome_changes(prev["primary"], fields["primary"])  # type: ignore[arg-type]
    after_enrolment = "first_enrolment" in trial
    flagged = bool(changes) and after_enrolment
    state.put(
        version_key(trial["id"], n + 1),
        {**fields, **_stamp(tx, ctx), "after_enrolment": after_enrolment,
         "changes": changes, "flagged": flagged, "reason": str(reason), "version": n + 1},
    )  # fmt: skip
    trial["version"] = n + 1
    trial["flags"] = int(trial["flags"]) + (1 if flagged else 0)
    state.put(trial_key(trial["id"]), trial)
    ctx.emit("trials.amended", {"flagged": flagged, "trial": trial["id"], "version": n + 1})
    if flagged:
        ctx.emit("trials.primary_outcome_switched", {"trial": trial["id"], "version": n + 1})


def enrol(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``trials.enrol@1``: the sponsor enrols a participant on the strength of their research
    consent; only the count (and the consent) is kept.

    args: ``{"trial", "consent"}``. The consent must be the participant's active ``permit``
    grant with purpose HRESCH to the sponsor organisation (or one of its members), in period:
    ``unknown_consent``, ``consent_not_research``, ``consent_wrong_grantee``,
    ``consent_revoked``, ``consent_inactive``; ``already_enrolled``, ``trial_reported``.
    """
    args = tx.body.args
    only_fields(args, {"trial", "consent"})
    trial = _trial(state, args)
    sponsor = str(trial["sponsor"])
    _sponsor_member(state, tx.body.sender, sponsor)
    _not_reported(trial)
    cid: str = arg(args, "consent", str)
    consent = find_consent(state, cid)
    if consent is None:
        raise reject("unknown_consent", f"no consent {cid}")
    if consent["decision"] != "permit" or RESEARCH_PURPOSE not in consent["purposes"]:
        raise reject(
            "consent_not_research", f"consent {cid} does not permit purpose {RESEARCH_PURPOSE}"
        )
    grantee = consent["grantee"]
    to_sponsor = grantee.get("org") == sponsor or (
        "account" in grantee and get_account(state, str(grantee["account"])).get("org") == sponsor
    )
    if not to_sponsor:
        raise reject("consent_wrong_grantee", f"consent {cid} is not granted to {sponsor}")
    if consent["status"] == "revoked":
        raise reject("consent_revoked", f"consent {cid} was revoked")
    period = consent["period"]
    if not int(period["start"]) <= ctx.time < int(period["end"]):
        raise reject("consent_inactive", f"consent {cid} is not in force at the block time")
    patient = str(consent["patient"])
    if state.get(subject_key(trial["id"], patient)) is not None:
        raise reject("already_enrolled", f"the participant of consent {cid} is already enrolled")
    n = int(trial["enrolled"]) + 1
    state.put(
        subject_key(trial["id"], patient),
        {"consent": cid, "height": ctx.height, "n": n, "time": ctx.time},
    )
    trial["enrolled"] = n
    trial["status"] = "recruiting"
    trial.setdefault("first_enrolment", {"height": ctx.height, "time": ctx.time})
    state.put(trial_key(trial["id"]), trial)
    ctx.emit("trials.enrolled", {"enrolled": n, "trial": trial["id"]})


def report_sae(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``trials.report_sae@1``: a serious adverse event of enrolled participant number
    ``subject``, with its onset time; reported later than the jurisdiction's window
    (``rules/trials``) it is kept and flagged ``late``.

    args: ``{"trial", "subject", "onset" (ms), "fatal" (bool), "category" (code)}``;
    ``unknown_trial``, ``unauthorized``, ``unknown_subject``, ``onset_in_future``,
    ``onset_before_registration``.
    """
    args = tx.body.args
    only_fields(args, {"trial", "subject", "onset", "fatal", "category"})
    trial = _trial(state, args)
    _sponsor_member(state, tx.body.sender, str(trial["sponsor"]))
    subject = _int_arg(args, "subject", 1, MAX_PLANNED)
    if subject > int(trial["enrolled"]):
        raise reject(
            "unknown_subject", f"trial {trial['id']} has {trial['enrolled']} enrolled participants"
        )
    onset = _int_arg(args, "onset", 0, MAX_SAFE_INT)
    if onset > ctx.time:
        raise reject("onset_in_future", f"onset {onset} is after the block time {ctx.time}")
    if onset < int(trial["registered"]["time"]):
        raise reject("onset_before_registration", "onset is before the trial was registered")
    fatal = arg(args, "fatal", bool)
    category = str(code_arg(args, "category"))
    rules = trial_rules(state)
    window = rules["fatal_sae_report_days" if fatal else "sae_report_days"]
    days = (ctx.time - onset) // DAY_MS
    late = ctx.time - onset > window * DAY_MS
    n = int(trial["saes"]) + 1
    state.put(
        sae_key(trial["id"], n),
        {**_stamp(tx, ctx), "category": category, "days": days, "fatal": fatal, "late": late,
         "n": n, "onset": onset, "subject": subject, "window_days": window},
    )  # fmt: skip
    trial["saes"] = n
    trial["late_saes"] = int(trial["late_saes"]) + (1 if late else 0)
    state.put(trial_key(trial["id"]), trial)
    ctx.emit("trials.sae_reported", {"late": late, "n": n, "trial": trial["id"]})


def report_results(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``trials.report_results@1``: the outcomes the sponsor reports, with the keyed digest of
    the results document; compared with the last registered version (switches are flagged).

    args: ``{"trial", "primary", "secondary", "data"}``; ``unknown_trial``,
    ``unauthorized``, ``trial_reported``.
    """
    args = tx.body.args
    only_fields(args, {"trial", "primary", "secondary", "data"})
    trial = _trial(state, args)
    _sponsor_member(state, tx.body.sender, str(trial["sponsor"]))
    _not_reported(trial)
    primary = _outcomes(args, "primary", minimum=1)
    secondary = _outcomes(args, "secondary", minimum=0)
    data = _digest(args, "data")
    last = state.get(version_key(trial["id"], int(trial["version"])))
    assert isinstance(last, Mapping)
    changes = outcome_changes(last["primary"], primary)  # type: ignore[arg-type]
    state.put(
        results_key(trial["id"]),
        {**_stamp(tx, ctx), "changes": changes, "data": data, "primary": primary,
         "secondary": secondary, "version": trial["version"]},
    )  # fmt: skip
    trial["status"] = "reported"
    trial["flags"] = int(trial["flags"]) + (1 if changes else 0)
    state.put(trial_key(trial["id"]), trial)
    ctx.emit("trials.results_reported", {"switched": bool(changes), "trial": trial["id"]})


# -- genesis ------------------------------------------------------------------------------------


def apply_genesis(state: Overlay, doc: Mapping[str, Any]) -> None:
    """Write ``rules/trials`` from ``genesis.rules.trials`` (defaults for absent fields)."""
    section = genesis_rules(doc, SECTION)
    unknown = set(section) - set(DEFAULT_RULES)
    if unknown:
        raise ValidationError(f"genesis.rules.trials: unknown field(s) {sorted(unknown)}")
    rules: dict[str, JsonValue] = dict(DEFAULT_RULES)
    for name, value in section.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 365:
            raise ValidationError(f"genesis.rules.trials.{name}: want 1..365 days")
        rules[name] = value
    state.put(f"rules/{SECTION}", rules)


def register(registry: Any) -> None:
    """Register the trial registry kinds."""
    registry.register("trials.register@1", register_trial)
    registry.register("trials.amend@1", amend_trial)
    registry.register("trials.enrol@1", enrol)
    registry.register("trials.report_sae@1", report_sae)
    registry.register("trials.report_results@1", report_results)
    registry.rule_section(SECTION)
    registry.on_genesis(apply_genesis)


__all__ = [
    "PHASES",
    "ContractError",
    "find_trial",
    "outcome_changes",
    "register",
    "switching_report",
    "trial_rules",
]
