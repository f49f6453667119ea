"""The consent contract (grant, revoke) and the access decision function ``decide``.

State (ADR 0005, "Consent … and the decision function")::

    consent/<id>         {"id", "patient", "grantee", "actions", "scope", "purposes",
                          "period": {"start", "end"}, "decision": "permit"|"deny",
                          "status": "active"|"revoked", "granted": height, "time", "tx",
                          "revoked_at"?: height, "revoke_tx"?}
    consents/<patient>   [id, ..]   every grant of the patient, in grant order (never shrinks)

A grant's id is the first 16 hex digits of its transaction id. ``grantee`` is ``{"account"}``,
``{"org"}`` or ``{"org", "role"}``; ``scope`` holds any of ``types``, ``categories`` and
``records`` (criteria are ANDed across fields and ORed within one, as in a FHIR Consent
provision; an empty scope covers every record of the patient).

Invariants: a grant is never rewritten except to record its revocation; a revocation is
effective from its block (a decision at a height before it still sees the grant); the index
lists revoked grants too, so a decision can name why a matching grant did not apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from carechain.contracts.access import BREAK_GLASS_PURPOSE, sessions_of
from carechain.contracts.identity import (
    MEMBER_ROLES,
    account_arg,
    arg,
    get_account,
    get_org,
    is_patient,
    only_fields,
    reject,
)
from carechain.contracts.records import CODE_RE, FHIR_ID_RE, FHIR_TYPES, StateView, find_record
from carechain.encoding import MAX_SAFE_INT, JsonObject, JsonValue
from carechain.errors import ValidationError
from carechain.ledger.execute import TxContext
from carechain.ledger.state import Overlay
from carechain.ledger.tx import ACCOUNT_RE, SignedTx

PURPOSES = (
    "CAREMGT", "CLINTRL", "ETREAT", "FAMRQT", "HLEGAL", "HMARKT", "HOPERAT", "HPAYMT",
    "HRESCH", "PATRQT", "PUBHLTH", "TREAT",
)  # fmt: skip
"""HL7 v3 PurposeOfUse codes carechain supports (closed set)."""
CONSENT_ACTIONS = ("read", "write")
"""Actions a consent provision covers."""
REQUEST_ACTIONS = ("read", "search", "write")
"""Actions of an access request; a search needs ``read``."""
DECISIONS = ("deny", "permit")
MAX_CATEGORIES = 32
MAX_RECORDS = 100
MAX_CONSENTS_PER_PATIENT = 1000
CONSENT_ID_LEN = 16


def consent_key(consent: str) -> str:
    """State key of a grant."""
    return f"consent/{consent}"


def patient_consents_key(patient: str) -> str:
    """State key of the patient's list of grant ids."""
    return f"consents/{patient}"


def find_consent(state: StateView, consent: str) -> Mapping[str, Any] | None:
    """The grant ``consent``, or None."""
    if len(consent) != CONSENT_ID_LEN or not consent.isalnum():
        return None
    rec = state.get(consent_key(consent))
    return rec if isinstance(rec, Mapping) else None


# -- grant and revoke --------------------------------------------------------------------------


def _distinct(args: Mapping[str, Any], name: str, allowed: tuple[str, ...], most: int) -> list[str]:
    raw = args.get(name)
    if not isinstance(raw, list) or not 1 <= len(raw) <= most:
        raise reject("bad_args", f"{name} must be a list of 1 to {most} values")
    if any(not isinstance(v, str) or v not in allowed for v in raw):
        raise reject("bad_args", f"{name}: each value must be one of {list(allowed)}")
    if len(set(raw)) != len(raw):
        raise reject("bad_args", f"{name} lists a value twice")
    return sorted(raw)


def _grantee(state: Overlay, raw: object, patient: str) -> dict[str, JsonValue]:
    if not isinstance(raw, Mapping) or set(raw) not in ({"account"}, {"org"}, {"org", "role"}):
        raise reject("bad_args", 'args.grantee must be {"account"}, {"org"} or {"org", "role"}')
    if "account" in raw:
        account = account_arg(raw, "account")
        if account == patient:
            raise reject("bad_args", "a patient does not grant consent to themself")
        get_account(state, account)
        return {"account": account}
    org = account_arg(raw, "org")
    get_org(state, org)
    if "role" not in raw:
        return {"org": org}
    role = arg(raw, "role", str)
    if role not in MEMBER_ROLES:
        raise reject("bad_args", f"grantee.role {role!r} is not one of {list(MEMBER_ROLES)}")
    return {"org": org, "role": role}


def _scope(state: Overlay, raw: object, patient: str) -> dict[str, JsonValue]:
    if not isinstance(raw, Mapping) or set(raw) - {"types", "categories", "records"}:
        raise reject("bad_args", "args.scope may hold only types, categories and records")
    out: dict[str, JsonValue] = {}
    if "types" in raw:
        out["types"] = list(_distinct(raw, "types", FHIR_TYPES, len(FHIR_TYPES)))
    if "categories" in raw:
        cats = raw["categories"]
        if not isinstance(cats, list) or not 1 <= len(cats) <= MAX_CATEGORIES:
            raise reject("bad_args", f"scope.categories must list 1 to {MAX_CATEGORIES} codes")
        if any(not isinstance(c, str) or not CODE_RE.match(c) for c in cats):
            raise reject("bad_args", "scope.categories: each must be a code")
        if len(set(cats)) != len(cats):
            raise reject("bad_args", "scope.categories lists a code twice")
        out["categories"] = sorted(cats)
    if "records" in raw:
        recs = raw["records"]
        if not isinstance(recs, list) or not 1 <= len(recs) <= MAX_RECORDS:
            raise reject("bad_args", f"scope.records must list 1 to {MAX_RECORDS} records")
        refs: list[tuple[str, str, str]] = []
        for i, ref in enumerate(recs):
            if not isinstance(ref, Mapping) or set(ref) != {"org", "type", "id"}:
                raise reject("bad_args", f"scope.records[{i}] must be exactly {{org, type, id}}")
            org, rtype, rid = ref["org"], ref["type"], ref["id"]
            if not (
                isinstance(org, str) and ACCOUNT_RE.match(org) and rtype in FHIR_TYPES
                and isinstance(rid, str) and FHIR_ID_RE.match(rid)
            ):  # fmt: skip
                raise reject("bad_args", f"scope.records[{i}] is not a record reference")
            rec = find_record(state, org, rtype, rid)
            if rec is None:
                raise reject("unknown_record", f"no record {rtype}/{rid} at {org}")
            if rec.get("patient") != patient:
                raise reject("unauthorized", f"{rtype}/{rid} at {org} is not {patient}'s record")
            refs.append((org, rtype, rid))
        if len(set(refs)) != len(refs):
            raise reject("bad_args", "scope.records lists a record twice")
        out["records"] = [{"id": r, "org": o, "type": t} for o, t, r in sorted(refs)]
    return out


def _period(raw: object, now: int) -> dict[str, JsonValue]:
    if not isinstance(raw, Mapping) or set(raw) != {"start", "end"}:
        raise reject("bad_args", "args.period must be exactly {start, end} (Unix ms)")
    start, end = raw["start"], raw["end"]
    for name, v in (("start", start), ("end", end)):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_SAFE_INT:
            raise reject("bad_args", f"period.{name} must be a Unix millisecond timestamp")
    if end <= start:
        raise reject("bad_args", f"period.end {end} must be after period.start {start}")
    if end <= now:
        raise reject("bad_args", f"period.end {end} is not after the block time {now}")
    return {"end": end, "start": start}


def grant(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``consent.grant@1``: the patient (sender) grants or denies access.

    args: ``{"grantee", "actions", "scope", "purposes", "period", "decision"}`` (see module
    docstring); every field is required (``scope`` may be ``{}``: all records).
    """
    args = tx.body.args
    only_fields(args, {"grantee", "actions", "scope", "purposes", "period", "decision"})
    patient = tx.body.sender
    if not is_patient(state, patient):
        raise reject("unauthorized", f"{patient} is not a patient: only a patient grants consent")
    for name in ("grantee", "actions", "scope", "purposes", "period", "decision"):
        if name not in args:
            raise reject("bad_args", f"args.{name} is required")
    grantee = _grantee(state, args["grantee"], patient)
    actions = _distinct(args, "actions", CONSENT_ACTIONS, len(CONSENT_ACTIONS))
    scope = _scope(state, args["scope"], patient)
    purposes = _distinct(args, "purposes", PURPOSES, len(PURPOSES))
    period = _period(args["period"], ctx.time)
    decision = arg(args, "decision", str)
    if decision not in DECISIONS:
        raise reject("bad_args", f"args.decision must be one of {list(DECISIONS)}")
    index = patient_consents_key(patient)
    listed = state.get(index)
    ids = [str(i) for i in listed] if isinstance(listed, list) else []
    if len(ids) >= MAX_CONSENTS_PER_PATIENT:
        raise reject("too_many_consents", f"{patient} already holds {len(ids)} grants")
    cid = tx.tx_id.hex()[:CONSENT_ID_LEN]
    state.put(
        consent_key(cid),
        {
            "actions": list(actions), "decision": decision, "grantee": grantee,
            "granted": ctx.height, "id": cid, "patient": patient, "period": period,
            "purposes": list(purposes), "scope": scope, "status": "active", "time": ctx.time,
            "tx": tx.tx_id.hex(),
        },
    )  # fmt: skip
    state.put(index, [*ids, cid])
    if "account" in grantee:
        ctx.touch(str(grantee["account"]))
    ctx.emit("consent.granted", {"decision": decision, "id": cid, "patient": patient})


def revoke(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``consent.revoke@1``: the patient revokes a grant, effective from this block.

    args: ``{"id"}``; ``unknown_consent``, ``unauthorized`` (not the patient's),
    ``already_revoked``.
    """
    args = tx.body.args
    only_fields(args, {"id"})
    cid: str = arg(args, "id", str)
    raw = find_consent(state, cid)
    if raw is None:
        raise reject("unknown_consent", f"no consent {cid}")
    if raw["patient"] != tx.body.sender:
        raise reject("unauthorized", f"consent {cid} is not {tx.body.sender}'s to revoke")
    if raw["status"] == "revoked":
        raise reject("already_revoked", f"consent {cid} was revoked at block {raw['revoked_at']}")
    state.put(
        consent_key(cid),
        {**raw, "revoke_tx": tx.tx_id.hex(), "revoked_at": ctx.height, "status": "revoked"},
    )
    grantee = raw.get("grantee")
    if isinstance(grantee, Mapping) and isinstance(grantee.get("account"), str):
        ctx.touch(str(grantee["account"]))
    ctx.emit("consent.revoked", {"id": cid, "patient": raw["patient"]})


def register(registry: Any) -> None:
    """Register the consent kinds."""
    registry.register("consent.grant@1", grant)
    registry.register("consent.revoke@1", revoke)


# -- the decision function ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordRef:
    """A record's coordinates on chain."""

    org: str
    """Hosting organisation."""
    type: str
    """FHIR resource type."""
    id: str
    """FHIR logical id."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessRequest:
    """One request to touch a patient's records (built by the node from the caller's account)."""

    actor: str
    """The requesting account."""
    actor_org: str | None
    """The actor's organisation (None for a patient or unaffiliated account)."""
    actor_role: str | None
    """The actor's member role (None for a patient)."""
    patient: str
    """The patient whose records are touched."""
    action: str
    """``read``, ``write`` or ``search`` (a search needs ``read``)."""
    record: RecordRef | None
    """The record, or None for a search (or the creation of a new record)."""
    resource_type: str
    """FHIR type searched or written (for a known record its anchored type is used)."""
    category: str | None = None
    """Category code, if known (for a known record its anchored category is used)."""
    purpose: str
    """HL7 PurposeOfUse code the actor states."""

    def __post_init__(self) -> None:
        if self.action not in REQUEST_ACTIONS:
            raise ValidationError(f"access request: action {self.action!r} is not supported")
        if self.purpose not in PURPOSES:
            raise ValidationError(f"access request: purpose {self.purpose!r} is not supported")
        if self.resource_type not in FHIR_TYPES:
            raise ValidationError(f"access request: type {self.resource_type!r} is not supported")


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The outcome of :func:`decide`, naming its reason and what decided it."""

    permit: bool
    """True iff access is permitted."""
    reason: str
    """``self``, ``author``, ``break_glass``, ``consent`` (permits); ``denied_by_consent``,
    ``erased``, ``unknown_record``, ``wrong_purpose``, ``revoked``, ``expired``,
    ``not_yet_valid``, ``no_consent`` (denials)."""
    consent: str | None = None
    """The consent that decided (or explains the denial), if any."""
    session: str | None = None
    """The break-glass session that decided (or explains the denial), if any."""

    def basis(self) -> JsonObject:
        """The ``basis`` of the audit entry recording this decision."""
        if self.permit and self.reason == "break_glass" and self.session:
            return {"id": self.session, "kind": "break_glass"}
        if self.permit and self.reason == "consent" and self.consent:
            return {"id": self.consent, "kind": "consent"}
        if self.permit and self.reason in ("self", "author"):
            return {"kind": self.reason}
        if self.reason == "denied_by_consent" and self.consent:
            return {"id": self.consent, "kind": "consent"}
        return {"kind": "none"}


_EXPLANATIONS = ("revoked", "expired", "not_yet_valid", "wrong_purpose")
"""Why a grant (or session) that matched actor, action and scope did not apply, most
informative first: one that matched the purpose too (revoked, expired, not yet valid) explains
better than an active one for another purpose."""


def _as_of(record: Mapping[str, Any], height: int) -> list[Mapping[str, Any]]:
    return [v for v in record["versions"] if int(v["height"]) <= height]


def _scope_matches(
    scope: Mapping[str, Any], rtype: str, category: str | None, ref: RecordRef | None, deny: bool
) -> bool:
    """FHIR-provision matching; information the request lacks (no category, a search over many
    records) matches a deny and never a permit: both fail closed."""
    types = scope.get("types")
    if isinstance(types, list) and rtype not in types:
        return False
    cats = scope.get("categories")
    if isinstance(cats, list) and (category not in cats if category is not None else not deny):
        return False
    recs = scope.get("records")
    if isinstance(recs, list):
        if ref is None:
            return deny
        return {"id": ref.id, "org": ref.org, "type": ref.type} in recs
    return True


def _grantee_matches(grantee: Mapping[str, Any], req: AccessRequest) -> bool:
    if "account" in grantee:
        return bool(grantee["account"] == req.actor)
    if grantee.get("org") != req.actor_org:
        return False
    return "role" not in grantee or grantee["role"] == req.actor_role


def decide(state: StateView, request: AccessRequest, *, time: int, height: int) -> Decision:
    """Decide ``request`` against the state as of block ``height`` at block time ``time``.

    ``state`` may be newer than ``height``: grants, versions and sessions recorded after
    ``height`` are ignored, and revocations or erasures recorded after it do not yet apply,
    so an access authorised at a height stays explained by the same decision later.

    1. a known record is looked up as of ``height``: unknown (and not a write) → deny
       ``unknown_record``; erased → deny ``erased``;
    2. the patient → permit ``self``;
    3. an author of a version of the record (read or write) → permit ``author``;
    4. an active break-glass session of the actor for the patient, purpose ETREAT → permit
       ``break_glass``;
    5. a matching, in-period, non-revoked deny provision for the purpose → deny
       ``denied_by_consent``;
    6. a matching, in-period, non-revoked permit provision for the purpose → permit ``consent``
       (the earliest grant);
    7. otherwise deny with the most informative reason among the permits and sessions that
       matched actor, action and scope: ``revoked``, ``expired``, ``not_yet_valid`` (for the
       stated purpose), then ``wrong_purpose`` (active, for another purpose); grants before
       sessions; else ``no_consent``.
    """
    req = request
    rtype, category, ref = req.resource_type, req.category, req.record
    record = None
    if ref is not None:  # step 1
        found = find_record(state, ref.org, ref.type, ref.id)
        versions = _as_of(found, height) if found is not None else []
        if found is not None and versions:
            if found.get("patient") != req.patient:
                return Decision(permit=False, reason="unknown_record")
            record = found
            rtype = str(found["type"])
            category = versions[-1].get("category")
            erased = found.get("erased")
            if isinstance(erased, Mapping) and int(erased["height"]) <= height:
                return Decision(permit=False, reason="erased")
        elif req.action != "write" or ref.type != req.resource_type:
            return Decision(permit=False, reason="unknown_record")  # a write creates it
    if req.actor == req.patient:  # step 2
        return Decision(permit=True, reason="self")
    if (  # step 3
        record is not None
        and req.action != "search"
        and any(v["author"] == req.actor for v in _as_of(record, height))
    ):
        return Decision(permit=True, reason="author")
    explain: dict[str, Decision] = {}
    for session in reversed(sessions_of(state, req.actor, req.patient)):  # step 4
        if int(session["opened"]) > height or session["purpose"] != BREAK_GLASS_PURPOSE:
            continue
        sid = str(session["id"])
        if time >= int(session["expires"]) or time < int(session["time"]):
            if req.purpose == BREAK_GLASS_PURPOSE:
                explain.setdefault("expired", Decision(permit=False, reason="expired", session=sid))
        elif req.purpose != BREAK_GLASS_PURPOSE:
            explain.setdefault(
                "wrong_purpose", Decision(permit=False, reason="wrong_purpose", session=sid)
            )
        else:
            return Decision(permit=True, reason="break_glass", session=sid)
    needed = "read" if req.action == "search" else req.action
    permit: Decision | None = None
    consent_explain: dict[str, Decision] = {}
    ids = state.get(patient_consents_key(req.patient))
    for cid in ids if isinstance(ids, list) else []:  # steps 5-6
        c = find_consent(state, str(cid))
        if c is None or int(c["granted"]) > height:
            continue
        deny = c["decision"] == "deny"
        if not (
            _grantee_matches(c["grantee"], req)
            and needed in c["actions"]
            and _scope_matches(c["scope"], rtype, category, ref, deny)
        ):
            continue
        revoked_at = c.get("revoked_at")
        period = c["period"]
        for_purpose = req.purpose in c["purposes"]
        if isinstance(revoked_at, int) and revoked_at <= height:
            why = "revoked" if for_purpose else ""
        elif time >= int(period["end"]):
            why = "expired" if for_purpose else ""
        elif time < int(period["start"]):
            why = "not_yet_valid" if for_purpose else ""
        elif not for_purpose:
            why = "wrong_purpose"
        elif deny:
            return Decision(permit=False, reason="denied_by_consent", consent=str(cid))
        else:
            permit = permit or Decision(permit=True, reason="consent", consent=str(cid))
            continue
        if why and not deny:
            consent_explain.setdefault(why, Decision(permit=False, reason=why, consent=str(cid)))
    if permit is not None:
        return permit
    for why in _EXPLANATIONS:  # step 7: a grant explains better than a session
        if why in consent_explain:
            return consent_explain[why]
        if why in explain:
            return explain[why]
    return Decision(permit=False, reason="no_consent")


__all__ = [
    "CONSENT_ACTIONS",
    "PURPOSES",
    "AccessRequest",
    "Decision",
    "RecordRef",
    "consent_key",
    "decide",
    "find_consent",
    "patient_consents_key",
    "register",
]
