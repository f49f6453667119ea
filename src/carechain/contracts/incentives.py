"""Prevention incentives: programmes as data, wearable devices, daily attestations, points
(ADR 0010). Points are not money: they are issued by one sponsor, held per sponsor, move only
between patients, and are redeemed (burned) with the sponsor that issued them.

State (canonical JSON; no PHI: accounts are pseudonyms, devices are keys)::

    incprog/<id>   {"id", "sponsor": org, "title", "period": {"start", "end"} (ISO dates, UTC,
                    inclusive), "grace_days", "rule": {"metric", "threshold", "min_days",
                    "points", "per_extra_day", "cap"}, "budget", "awarded", "participants",
                    "status": "open"|"closed", "created": {by, height, time, tx},
                    "closed"?: {by, height, time, tx, "due"}}
    incpart/<prog>/<patient>  {"n", "days": [day numbers meeting the threshold], "attested",
                               "award"?}
    incpartn/<prog>/<n>       patient   (participants in join order, for the close)
    incdev/<kid>   {"device": account, "patient", "status": "bound"|"unbound", "height"}
    incatt/<device>/<day>     {"programme", "value", "height"}   (one per device per day)
    incwallet/<account>       {"<sponsor org>": balance, ..}
    incsponsor/<org>          {"awarded", "redeemed"}
    rules/incentives          {"sponsor_roles": [..], "max_grace_days", "max_period_days"}

A wearable is its own account ``dev-<20 hex of its kid>`` (type ``device``, field
``patient``) created by ``incentives.bind_device@1``, which the patient signs together with
the device key (proof of possession); the device then signs its attestations like any other
sender, so the node's signature pool and the registry's ``authorize`` check it.

Invariants: a device key is bound to one patient, ever (a key record is never deleted); one
attestation per device per UTC day; an attestation names a day inside the programme's period
that has ended, at most ``grace_days`` earlier, and the programme is still open; awards are
paid once, at close, from the budget (scaled down pro rata, rounding down, if the budget does
not cover them), so ``awarded <= budget``; no balance is ever negative.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from carechain.contracts.identity import (
    arg,
    get_account,
    get_org,
    is_patient,
    only_fields,
    parse_keys,
    reject,
    text,
)
from carechain.contracts.records import StateView, code_arg
from carechain.contracts.registry import genesis_rules
from carechain.encoding import JsonValue, b64u_encode
from carechain.errors import ValidationError
from carechain.ledger.execute import TxContext
from carechain.ledger.keys import key_state_key
from carechain.ledger.state import Overlay
from carechain.ledger.tx import SignedTx

SECTION = "incentives"
PROGRAMME_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{2,39}\Z")
DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})\Z")
METRICS = {"active_minutes": 1440, "steps": 200_000}
"""Metrics a device may attest, with the largest plausible daily value."""
SPONSOR_MEMBER_ROLES = ("admin", "clerk")
MAX_POINTS = 10**12
MAX_PARTICIPANTS = 10_000
DAY_MS = 86_400_000
DEVICE_PREFIX = "dev-"
DEFAULT_RULES: dict[str, JsonValue] = {
    "max_grace_days": 45,
    "max_period_days": 92,
    "sponsor_roles": ["payer"],
}
"""Which organisation roles may sponsor a programme, how late a device may upload a day's
attestation at most, and the longest period, per jurisdiction."""


# -- dates: UTC day numbers without a clock (H. Hinnant, "chrono-compatible date algorithms") ----


def day_number(iso: str) -> int:
    """Days since 1970-01-01 of an ISO date ``YYYY-MM-DD`` (ValueError if invalid)."""
    m = DATE_RE.match(iso)
    if m is None:
        raise ValueError(f"{iso!r} is not a YYYY-MM-DD date")
    y, mo, d = (int(g) for g in m.groups())
    if not (1970 <= y <= 9999 and 1 <= mo <= 12 and 1 <= d <= _month_days(y, mo)):
        raise ValueError(f"{iso!r} is not a valid date")
    y -= mo <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (mo + (-3 if mo > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def iso_date(days: int) -> str:
    """The ISO date of day number ``days`` (inverse of :func:`day_number`)."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return f"{yoe + era * 400 + (m <= 2):04d}-{m:02d}-{d:02d}"


def _month_days(y: int, m: int) -> int:
    if m == 2:
        return 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28
    return 30 if m in (4, 6, 9, 11) else 31


def _obj(state: StateView, key: str) -> dict[str, Any] | None:
    """The object at ``key`` (untyped JSON), or None."""
    value = state.get(key)
    return dict(value) if isinstance(value, Mapping) else None


def device_account_id(kid: str) -> str:
    """The account of the wearable whose key has id ``kid``."""
    return f"{DEVICE_PREFIX}{kid[:20]}"


def programme_key(prog: str) -> str:
    return f"incprog/{prog}"


def participant_key(prog: str, patient: str) -> str:
    return f"incpart/{prog}/{patient}"


def wallet_key(account: str) -> str:
    return f"incwallet/{account}"


def find_programme(state: StateView, prog: str) -> Mapping[str, Any] | None:
    """The programme record, or None."""
    if not PROGRAMME_ID_RE.match(prog):
        return None
    rec = state.get(programme_key(prog))
    return rec if isinstance(rec, Mapping) else None


def incentive_rules(state: StateView) -> dict[str, Any]:
    """``rules/incentives`` (defaults for chains whose genesis predates this contract)."""
    raw = state.get(f"rules/{SECTION}")
    out: dict[str, Any] = dict(DEFAULT_RULES)
    if isinstance(raw, Mapping):
        out.update({k: v for k, v in raw.items() if k in DEFAULT_RULES})
    return out


def award_for(rule: Mapping[str, Any], qualifying_days: int) -> int:
    """Points earned for ``qualifying_days`` days meeting the threshold (before budget)."""
    if qualifying_days < int(rule["min_days"]):
        return 0
    extra = (qualifying_days - int(rule["min_days"])) * int(rule["per_extra_day"])
    return min(int(rule["cap"]), int(rule["points"]) + extra)


def balance(state: StateView, account: str, sponsor: str) -> int:
    """Points of ``sponsor`` held by ``account``."""
    wallet = _obj(state, wallet_key(account))
    return int(wallet.get(sponsor, 0)) if wallet is not None else 0


def _credit(state: Overlay, account: str, sponsor: str, delta: int) -> int:
    out = _obj(state, wallet_key(account)) or {}
    value = int(out.get(sponsor, 0)) + delta
    if value < 0:
        raise reject(
            "insufficient_points",
            f"{account} holds {value - delta} points of {sponsor}; {-delta} are needed",
        )
    out[sponsor] = value
    state.put(wallet_key(account), {k: out[k] for k in sorted(out)})
    return value


# -- argument checks ----------------------------------------------------------------------------


def _int(args: Mapping[str, Any], name: str, low: int, high: int) -> int:
    value: int = arg(args, name, int)
    if not low <= value <= high:
        raise reject("bad_args", f"{name}: got {value}, want {low}..{high}")
    return value


def _date(args: Mapping[str, Any], name: str, where: str = "args") -> int:
    value: str = arg(args, name, str)
    try:
        return day_number(value)
    except ValueError as exc:
        raise reject("bad_args", f"{where}.{name}: {exc}") from None


def _programme(state: Overlay, args: Mapping[str, Any]) -> dict[str, Any]:
    prog: str = arg(args, "programme", str)
    rec = find_programme(state, prog)
    if rec is None:
        raise reject("unknown_programme", f"no incentive programme {prog}")
    return dict(rec)


def _sponsor_member(state: Overlay, account: str, roles: list[str]) -> str:
    acct = get_account(state, account)
    org = acct.get("org")
    if not isinstance(org, str) or acct.get("role") not in SPONSOR_MEMBER_ROLES:
        raise reject("unauthorized", f"{account} is not an admin or clerk of a sponsor")
    rec = get_org(state, org)
    if not set(rec.get("roles", [])) & set(roles):
        raise reject("unauthorized", f"organisation {org} has none of the sponsor roles {roles}")
    return org


def _stamp(tx: SignedTx, ctx: TxContext) -> dict[str, JsonValue]:
    return {"by": tx.body.sender, "height": ctx.height, "time": ctx.time, "tx": tx.tx_id.hex()}


def _require_patient(state: Overlay, account: str) -> None:
    if not is_patient(state, account):
        raise reject("unauthorized", f"{account} is not a patient")


# -- handlers -----------------------------------------------------------------------------------


def define(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``incentives.define@1``: a sponsor defines a programme with a budget.

    args: ``{"id", "title", "period": {"start", "end"} (ISO dates, inclusive), "grace_days",
    "rule": {"metric", "threshold", "min_days", "points", "per_extra_day", "cap"},
    "budget"}``; ``unauthorized``, ``duplicate_programme``, ``bad_args``.
    """
    args = tx.body.args
    only_fields(args, {"id", "title", "period", "grace_days", "rule", "budget"})
    rules = incentive_rules(state)
    sponsor = _sponsor_member(state, tx.body.sender, list(rules["sponsor_roles"]))
    prog: str = arg(args, "id", str)
    if not PROGRAMME_ID_RE.match(prog):
        raise reject("bad_args", f"args.id: {prog!r} is not a programme id")
    title = str(text(args, "title"))
    period = arg(args, "period", Mapping)
    if set(period) != {"start", "end"}:
        raise reject("bad_args", "args.period must be exactly {start, end} (ISO dates)")
    start, end = _date(period, "start", "period"), _date(period, "end", "period")
    if not start <= end < start + int(rules["max_period_days"]):
        raise reject(
            "bad_args",
            f"period: end must be on or after start, within {rules['max_period_days']} days",
        )
    grace = _int(args, "grace_days", 0, int(rules["max_grace_days"]))
    raw_rule = arg(args, "rule", Mapping)
    only_fields(raw_rule, {"metric", "threshold", "min_days", "points", "per_extra_day", "cap"})
    metric = arg(raw_rule, "metric", str)
    if metric not in METRICS:
        raise reject("bad_args", f"rule.metric {metric!r} is not one of {sorted(METRICS)}")
    days = end - start + 1
    rule: dict[str, JsonValue] = {
        "cap": _int(raw_rule, "cap", 1, MAX_POINTS),
        "metric": metric,
        "min_days": _int(raw_rule, "min_days", 1, days),
        "per_extra_day": _int(raw_rule, "per_extra_day", 0, MAX_POINTS),
        "points": _int(raw_rule, "points", 1, MAX_POINTS),
        "threshold": _int(raw_rule, "threshold", 1, METRICS[metric]),
    }
    budget = _int(args, "budget", 1, MAX_POINTS)
    if state.get(programme_key(prog)) is not None:
        raise reject("duplicate_programme", f"programme {prog} already exists")
    state.put(
        programme_key(prog),
        {"awarded": 0, "budget": budget, "created": _stamp(tx, ctx), "grace_days": grace,
         "id": prog, "participants": 0, "period": {"end": iso_date(end), "start": iso_date(start)},
         "rule": rule, "sponsor": sponsor, "status": "open", "title": title},
    )  # fmt: skip
    ctx.emit("incentives.defined", {"budget": budget, "programme": prog, "sponsor": sponsor})


def join(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``incentives.join@1``: a patient joins an open programme.

    args: ``{"programme"}``; ``unknown_programme``, ``programme_closed``, ``already_joined``,
    ``programme_full``.
    """
    args = tx.body.args
    only_fields(args, {"programme"})
    patient = tx.body.sender
    _require_patient(state, patient)
    prog = _programme(state, args)
    if prog["status"] != "open":
        raise reject("programme_closed", f"programme {prog['id']} is closed")
    if state.get(participant_key(prog["id"], patient)) is not None:
        raise reject("already_joined", f"{patient} already takes part in {prog['id']}")
    if int(prog["participants"]) >= MAX_PARTICIPANTS:
        raise reject("programme_full", f"programme {prog['id']} is full")
    n = int(prog["participants"]) + 1
    state.put(participant_key(prog["id"], patient), {"attested": 0, "days": [], "n": n})
    state.put(f"incpartn/{prog['id']}/{n}", patient)
    prog["participants"] = n
    state.put(programme_key(prog["id"]), prog)
    ctx.emit("incentives.joined", {"programme": prog["id"]})


def bind_device(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``incentives.bind_device@1``: the patient binds a wearable's key to their pseudonym.

    args: ``{"keys": [{"alg", "pub"}]}`` (one key); signed by the patient's key and the device
    key (proof of possession). ``device_bound`` when the key is already registered (a device
    belongs to one patient).
    """
    args = tx.body.args
    only_fields(args, {"keys"})
    patient = tx.body.sender
    _require_patient(state, patient)
    keys = parse_keys(args.get("keys"))
    if len(keys) != 1:
        raise reject("bad_args", "args.keys must hold exactly the device's key")
    alg, pub, kid = keys[0]
    if kid not in {s.kid for s in tx.body.signers}:
        raise reject("unauthorized", "the device key must sign its binding (proof of possession)")
    if state.get(key_state_key(kid)) is not None or state.get(f"incdev/{kid}") is not None:
        raise reject("device_bound", f"key {kid} is already registered; a device has one patient")
    device = device_account_id(kid)
    if state.get(f"acct/{device}") is not None:
        raise reject("device_bound", f"account {device} already exists")
    state.put(
        key_state_key(kid),
        {"account": device, "alg": alg, "pub": b64u_encode(pub), "since": ctx.height,
         "status": "active"},
    )  # fmt: skip
    state.put(
        f"acct/{device}",
        {"id": device, "keys": [kid], "patient": patient, "since": ctx.height,
         "status": "active", "type": "device"},
    )  # fmt: skip
    state.put(f"incdev/{kid}", {"device": device, "height": ctx.height, "patient": patient,
                                "status": "bound"})  # fmt: skip
    ctx.touch(device)
    ctx.emit("incentives.device_bound", {"device": device, "patient": patient})


def unbind_device(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``incentives.unbind_device@1``: the patient retires a device; its key is revoked
    from this block (it can never be bound again). args: ``{"device"}``."""
    args = tx.body.args
    only_fields(args, {"device"})
    device: str = arg(args, "device", str)
    acct = _obj(state, f"acct/{device}")
    if acct is None or acct.get("type") != "device":
        raise reject("unknown_device", f"{device} is not a bound device")
    if acct.get("patient") != tx.body.sender:
        raise reject("unauthorized", f"{device} is not {tx.body.sender}'s device")
    if acct.get("status") != "active":
        raise reject("already_unbound", f"{device} is already unbound")
    state.put(f"acct/{device}", {**acct, "status": "unbound"})
    for kid in acct["keys"]:
        rec = state.get(key_state_key(str(kid)))
        if isinstance(rec, Mapping) and rec.get("status") == "active":
            state.put(key_state_key(str(kid)),
                      {**rec, "reason": "device unbound", "revoked_at": ctx.height,
                       "status": "revoked"})  # fmt: skip
        binding = state.get(f"incdev/{kid}")
        if isinstance(binding, Mapping):
            state.put(f"incdev/{kid}", {**binding, "status": "unbound"})
    ctx.emit("incentives.device_unbound", {"device": device})


def attest(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``incentives.attest@1``: a bound device attests one UTC day of its patient's activity.

    args: ``{"programme", "patient", "day" (ISO date), "value"}``; sender = the device.
    ``unbound_device`` (the sender is not a bound wearable), ``foreign_device`` (bound to
    another patient), ``not_participant``, ``programme_closed``, ``outside_period``,
    ``day_not_over``, ``attestation_late`` (beyond ``grace_days``), ``duplicate_attestation``
    (one per device per day).
    """
    args = tx.body.args
    only_fields(args, {"programme", "patient", "day", "value"})
    device = tx.body.sender
    acct = get_account(state, device)
    if acct.get("type") != "device":
        raise reject("unbound_device", f"{device} is not a wearable bound to a patient")
    patient: str = arg(args, "patient", str)
    if acct.get("patient") != patient:
        raise reject("foreign_device", f"device {device} is not bound to {patient}")
    prog = _programme(state, args)
    part_key = participant_key(prog["id"], patient)
    part = _obj(state, part_key)
    if part is None:
        raise reject("not_participant", f"{patient} does not take part in {prog['id']}")
    if prog["status"] != "open":
        raise reject("programme_closed", f"programme {prog['id']} is closed")
    day = _date(args, "day")
    start, end = day_number(prog["period"]["start"]), day_number(prog["period"]["end"])
    if not start <= day <= end:
        raise reject("outside_period", f"{iso_date(day)} is outside the programme's period")
    today = ctx.time // DAY_MS
    if day >= today:
        raise reject("day_not_over", f"{iso_date(day)} has not ended at the block time")
    if today - day > int(prog["grace_days"]):
        raise reject(
            "attestation_late", f"{iso_date(day)} ended more than {prog['grace_days']} days ago"
        )
    metric = str(prog["rule"]["metric"])
    value = _int(args, "value", 0, METRICS[metric])
    att_key = f"incatt/{device}/{iso_date(day)}"
    if state.get(att_key) is not None:
        raise reject("duplicate_attestation", f"{device} already attested {iso_date(day)}")
    state.put(att_key, {"height": ctx.height, "programme": prog["id"], "value": value})
    days = [int(d) for d in part["days"]]
    if value >= int(prog["rule"]["threshold"]) and day not in days:
        days = sorted([*days, day])
    state.put(part_key, {**part, "attested": int(part["attested"]) + 1, "days": days})
    ctx.touch(patient)
    ctx.emit("incentives.attested", {"day": iso_date(day), "device": device,
                                     "programme": prog["id"]})  # fmt: skip


def close(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``incentives.close@1``: close a programme after its period and pay the awards.

    The sponsor may close once the period has ended; anyone else once the grace days have
    passed too. Awards follow the rule; if they exceed the budget each is scaled by
    ``budget / due`` (rounded down). args: ``{"programme"}``; ``unknown_programme``,
    ``programme_closed``, ``period_not_over``.
    """
    args = tx.body.args
    only_fields(args, {"programme"})
    prog = _programme(state, args)
    if prog["status"] != "open":
        raise reject("programme_closed", f"programme {prog['id']} is already closed")
    end_day = day_number(prog["period"]["end"])
    today = ctx.time // DAY_MS
    acct = get_account(state, tx.body.sender)
    by_sponsor = acct.get("org") == prog["sponsor"] and acct.get("role") in SPONSOR_MEMBER_ROLES
    opens = end_day + 1 if by_sponsor else end_day + 1 + int(prog["grace_days"])
    if today < opens:
        raise reject(
            "period_not_over", f"programme {prog['id']} may be closed from {iso_date(opens)}"
        )
    dues: list[tuple[str, dict[str, Any], int]] = []
    for n in range(1, int(prog["participants"]) + 1):
        patient = str(state.get(f"incpartn/{prog['id']}/{n}"))
        part = _obj(state, participant_key(prog["id"], patient))
        assert part is not None
        dues.append((patient, part, award_for(prog["rule"], len(part["days"]))))
    due = sum(d for _, _, d in dues)
    budget = int(prog["budget"])
    paid = 0
    sponsor = str(prog["sponsor"])
    for patient, part, d in dues:
        award = d if due <= budget else d * budget // due
        part["award"] = award
        state.put(participant_key(prog["id"], patient), part)
        if award:
            _credit(state, patient, sponsor, award)
            ctx.touch(patient)
        paid += award
    prog["awarded"] = paid
    prog["status"] = "closed"
    prog["closed"] = {**_stamp(tx, ctx), "due": due}
    state.put(programme_key(prog["id"]), prog)
    totals = _obj(state, f"incsponsor/{sponsor}") or {"awarded": 0, "redeemed": 0}
    totals["awarded"] = int(totals["awarded"]) + paid
    state.put(f"incsponsor/{sponsor}", totals)
    ctx.emit("incentives.closed", {"awarded": paid, "due": due, "programme": prog["id"]})


def transfer(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``incentives.transfer@1``: a patient gives points of one sponsor to another patient.

    args: ``{"to", "sponsor", "amount"}``; ``unauthorized`` (sender or recipient not a
    patient), ``insufficient_points`` (no overdraft).
    """
    args = tx.body.args
    only_fields(args, {"to", "sponsor", "amount"})
    sender = tx.body.sender
    _require_patient(state, sender)
    to: str = arg(args, "to", str)
    if to == sender or not is_patient(state, to):
        raise reject("unauthorized", f"{to} is not another patient: points move between patients")
    sponsor: str = arg(args, "sponsor", str)
    amount = _int(args, "amount", 1, MAX_POINTS)
    _credit(state, sender, sponsor, -amount)
    _credit(state, to, sponsor, amount)
    ctx.touch(to)
    ctx.emit("incentives.transferred", {"amount": amount, "sponsor": sponsor})


def redeem(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``incentives.redeem@1``: a patient redeems points with the sponsor that issued them
    (they are burned). args: ``{"sponsor", "amount", "reward"}`` (reward: a code of the
    sponsor's catalogue); ``insufficient_points``, ``unknown_org``."""
    args = tx.body.args
    only_fields(args, {"sponsor", "amount", "reward"})
    sender = tx.body.sender
    _require_patient(state, sender)
    sponsor: str = arg(args, "sponsor", str)
    get_org(state, sponsor)
    amount = _int(args, "amount", 1, MAX_POINTS)
    reward = code_arg(args, "reward")
    _credit(state, sender, sponsor, -amount)
    totals = _obj(state, f"incsponsor/{sponsor}") or {"awarded": 0, "redeemed": 0}
    totals["redeemed"] = int(totals["redeemed"]) + amount
    state.put(f"incsponsor/{sponsor}", totals)
    ctx.emit("incentives.redeemed", {"amount": amount, "reward": str(reward), "sponsor": sponsor})


# -- genesis ------------------------------------------------------------------------------------


def apply_genesis(state: Overlay, doc: Mapping[str, Any]) -> None:
    """Write ``rules/incentives`` from ``genesis.rules.incentives`` (defaults when absent)."""
    from carechain.contracts.identity import ORG_ROLES

    section = genesis_rules(doc, SECTION)
    unknown = set(section) - set(DEFAULT_RULES)
    if unknown:
        raise ValidationError(f"genesis.rules.incentives: unknown field(s) {sorted(unknown)}")
    rules = {**DEFAULT_RULES, **section}
    roles = rules["sponsor_roles"]
    if not isinstance(roles, list) or not roles or any(r not in ORG_ROLES for r in roles):
        raise ValidationError("genesis.rules.incentives.sponsor_roles: want organisation roles")
    for name in ("max_grace_days", "max_period_days"):
        v = rules[name]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 366:
            raise ValidationError(f"genesis.rules.incentives.{name}: want 1..366 days")
    state.put(f"rules/{SECTION}", {**rules, "sponsor_roles": sorted(roles)})


def register(registry: Any) -> None:
    """Register the incentive kinds."""
    registry.register("incentives.define@1", define)
    registry.register("incentives.join@1", join)
    registry.register("incentives.bind_device@1", bind_device, introduces_keys=True)
    registry.register("incentives.unbind_device@1", unbind_device)
    registry.register("incentives.attest@1", attest)
    registry.register("incentives.close@1", close)
    registry.register("incentives.transfer@1", transfer)
    registry.register("incentives.redeem@1", redeem)
    registry.rule_section(SECTION)
    registry.on_genesis(apply_genesis)


__all__ = [
    "award_for",
    "balance",
    "day_number",
    "device_account_id",
    "find_programme",
    "incentive_rules",
    "iso_date",
    "register",
]
