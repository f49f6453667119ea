"""The credentials contract: controlled-substance registrations of prescribers, pharmacies and
pharmacists (DEA 21 CFR 1301-style), with their history.

State (ADR 0007)::

    cred/prescriber/<account>   {"kind", "subject", "org", "versions": [version, ..]}
    cred/pharmacy/<org>         {"kind", "subject", "org", "versions": [version, ..]}
    cred/pharmacist/<account>   {"kind", "subject", "org", "versions": [version, ..]}

    version = {"n", "status": "active"|"revoked", "number"?, "schedules"?: [..], "expires",
               "licence"?, "by", "height", "time", "tx", "reason"?}

``number`` is a DEA-style registration number: two letters and seven digits whose last digit is
the check digit (:func:`check_dea_number`). Prescribers and pharmacies carry the schedules they
are authorised for (a subset of II–V); a pharmacist's registration binds the person to a
pharmacy organisation (``org``) and carries a state licence and an expiry.

Invariants: versions are only appended (a change, a renewal or a revocation is a new version);
the version in force at block time ``t`` is the newest one written at or before ``t``
(:func:`credential_at`), so the validity at the time of any past action stays answerable; a
credential is valid at ``t`` iff that version is ``active`` and ``t < expires``.
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
    only_fields,
    reject,
    require_org_admin,
    text,
)
from carechain.contracts.records import StateView
from carechain.encoding import MAX_SAFE_INT, JsonValue
from carechain.ledger.execute import TxContext
from carechain.ledger.state import Overlay
from carechain.ledger.tx import SignedTx

SCHEDULES = ("II", "III", "IV", "V")
"""Controlled-substance schedules a registration may authorise (21 CFR 1308)."""
KINDS = ("pharmacist", "pharmacy", "prescriber")
PRESCRIBER_ROLES = ("nurse", "practitioner")
"""Member roles that may hold a prescriber registration (physicians, nurse practitioners)."""
MAX_VERSIONS = 100
DEA_RE = re.compile(r"^[A-Z][A-Z9][0-9]{7}\Z")


def check_dea_number(number: str) -> bool:
    """True iff ``number`` is 2 letters + 7 digits with a valid check digit.

    With digits d1..d7: ``(d1 + d3 + d5) + 2 * (d2 + d4 + d6)``; its last digit must be d7.
    """
    if not DEA_RE.match(number):
        return False
    d = [int(c) for c in number[2:]]
    total = d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])
    return total % 10 == d[6]


def credential_key(kind: str, subject: str) -> str:
    """State key of a credential (``subject``: an account, or an org for a pharmacy)."""
    return f"cred/{kind}/{subject}"


def find_credential(state: StateView, kind: str, subject: str) -> Mapping[str, Any] | None:
    """The credential record with its whole history, or None."""
    rec = state.get(credential_key(kind, subject))
    return rec if isinstance(rec, Mapping) else None


def credential_at(state: StateView, kind: str, subject: str, time: int) -> Mapping[str, Any] | None:
    """The version of ``subject``'s ``kind`` credential in force at block time ``time``."""
    rec = find_credential(state, kind, subject)
    if rec is None:
        return None
    current = None
    for version in rec["versions"]:
        if int(version["time"]) <= time:
            current = version
    return current


def require_valid(
    state: StateView, kind: str, subject: str, time: int, schedule: str | None = None
) -> Mapping[str, Any]:
    """The version in force at ``time`` if valid (and covering ``schedule``), else a rejection:
    ``no_registration``, ``registration_revoked``, ``registration_expired``,
    ``schedule_not_authorized``."""
    version = credential_at(state, kind, subject, time)
    if version is None:
        raise reject("no_registration", f"{subject} holds no {kind} registration")
    if version["status"] != "active":
        raise reject("registration_revoked", f"the {kind} registration of {subject} is revoked")
    if time >= int(version["expires"]):
        raise reject(
            "registration_expired",
            f"the {kind} registration of {subject} expired at {version['expires']}",
        )
    if schedule is not None and schedule not in version.get("schedules", ()):
        raise reject(
            "schedule_not_authorized",
            f"the {kind} registration of {subject} does not cover schedule {schedule}",
        )
    return version


def _schedules(args: Mapping[str, Any]) -> list[str]:
    raw = arg(args, "schedules", list)
    if not raw or any(s not in SCHEDULES for s in raw) or len(set(raw)) != len(raw):
        raise reject("bad_args", f"args.schedules: distinct values of {list(SCHEDULES)}")
    return [s for s in SCHEDULES if s in raw]


def _expires(args: Mapping[str, Any], now: int) -> int:
    value: int = arg(args, "expires", int)
    if not 0 <= value <= MAX_SAFE_INT:
        raise reject("bad_args", "args.expires must be a Unix millisecond timestamp")
    if value <= now:
        raise reject("bad_args", f"args.expires {value} is not after the block time {now}")
    return value


def _number(args: Mapping[str, Any]) -> str:
    value: str = arg(args, "number", str)
    if not check_dea_number(value):
        raise reject(
            "bad_registration_number",
            f"args.number {value!r} is not a registration number (2 letters, 7 digits, "
            "valid check digit)",
        )
    return value


def _append(
    state: Overlay,
    kind: str,
    subject: str,
    org: str,
    version: dict[str, JsonValue],
    tx: SignedTx,
    ctx: TxContext,
) -> None:
    key = credential_key(kind, subject)
    rec = find_credential(state, kind, subject)
    versions = list(rec["versions"]) if rec is not None else []
    if len(versions) >= MAX_VERSIONS:
        raise reject("too_many_versions", f"{subject}'s {kind} registration has {len(versions)}")
    version.update(
        {
            "by": tx.body.sender,
            "height": ctx.height,
            "n": len(versions) + 1,
            "time": ctx.time,
            "tx": tx.tx_id.hex(),
        }
    )
    state.put(key, {"kind": kind, "org": org, "subject": subject, "versions": [*versions, version]})
    if kind != "pharmacy":
        ctx.touch(subject)
    ctx.emit(
        "credentials.changed",
        {
            "kind": kind,
            "n": len(versions) + 1,
            "status": str(version["status"]),
            "subject": subject,
        },
    )


def register_prescriber(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``credentials.register_prescriber@1``: an admin of the prescriber's organisation records
    (or renews, or changes) their registration.

    args: ``{"account", "number", "schedules": [..], "expires"}``; the account is an active
    practitioner or nurse of the admin's organisation.
    """
    args = tx.body.args
    only_fields(args, {"account", "number", "schedules", "expires"})
    account = account_arg(args, "account")
    acct = get_account(state, account)
    org = acct.get("org")
    if not isinstance(org, str) or acct.get("role") not in PRESCRIBER_ROLES:
        raise reject("not_a_prescriber", f"{account} is not a practitioner or nurse")
    require_org_admin(state, tx.body.sender, org)
    version: dict[str, JsonValue] = {
        "expires": _expires(args, ctx.time),
        "number": _number(args),
        "schedules": list(_schedules(args)),
        "status": "active",
    }
    _append(state, "prescriber", account, org, version, tx, ctx)


def register_pharmacy(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``credentials.register_pharmacy@1``: the pharmacy's admin records its registration.

    args: ``{"org", "number", "schedules": [..], "expires"}``; the organisation has the
    ``pharmacy`` role.
    """
    args = tx.body.args
    only_fields(args, {"org", "number", "schedules", "expires"})
    org = account_arg(args, "org")
    rec = get_org(state, org)
    require_org_admin(state, tx.body.sender, org)
    if "pharmacy" not in rec.get("roles", ()):
        raise reject("not_a_pharmacy", f"organisation {org} does not have the pharmacy role")
    version: dict[str, JsonValue] = {
        "expires": _expires(args, ctx.time),
        "number": _number(args),
        "schedules": list(_schedules(args)),
        "status": "active",
    }
    _append(state, "pharmacy", org, org, version, tx, ctx)


def register_pharmacist(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``credentials.register_pharmacist@1``: the pharmacy's admin authorises a pharmacist of
    the pharmacy to dispense controlled substances.

    args: ``{"account", "licence", "expires"}``; the account is an active ``pharmacist`` of the
    admin's organisation, which must hold a pharmacy registration.
    """
    args = tx.body.args
    only_fields(args, {"account", "licence", "expires"})
    account = account_arg(args, "account")
    acct = get_account(state, account)
    org = acct.get("org")
    if not isinstance(org, str) or acct.get("role") != "pharmacist":
        raise reject("not_a_pharmacist", f"{account} is not a pharmacist")
    require_org_admin(state, tx.body.sender, org)
    if find_credential(state, "pharmacy", org) is None:
        raise reject("pharmacy_not_registered", f"{org} holds no pharmacy registration")
    version: dict[str, JsonValue] = {
        "expires": _expires(args, ctx.time),
        "licence": str(text(args, "licence")),
        "status": "active",
    }
    _append(state, "pharmacist", account, org, version, tx, ctx)


def revoke(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``credentials.revoke@1``: an admin of the holder's organisation revokes a registration
    from this block on. args: ``{"kind", "subject", "reason"}``."""
    args = tx.body.args
    only_fields(args, {"kind", "subject", "reason"})
    kind = arg(args, "kind", str)
    if kind not in KINDS:
        raise reject("bad_args", f"args.kind must be one of {list(KINDS)}")
    subject = account_arg(args, "subject")
    reason = text(args, "reason")
    rec = find_credential(state, kind, subject)
    if rec is None:
        raise reject("no_registration", f"{subject} holds no {kind} registration")
    org = str(rec["org"])
    require_org_admin(state, tx.body.sender, org)
    last = rec["versions"][-1]
    if last["status"] == "revoked":
        raise reject("already_revoked", f"the {kind} registration of {subject} is revoked")
    version = {k: v for k, v in last.items() if k not in ("by", "height", "n", "time", "tx")}
    version.update({"reason": reason or "", "status": "revoked"})
    _append(state, kind, subject, org, version, tx, ctx)


def register(registry: Any) -> None:
    """Register the credential kinds."""
    registry.register("credentials.register_prescriber@1", register_prescriber)
    registry.register("credentials.register_pharmacy@1", register_pharmacy)
    registry.register("credentials.register_pharmacist@1", register_pharmacist)
    registry.register("credentials.revoke@1", revoke)


__all__ = [
    "SCHEDULES",
    "check_dea_number",
    "credential_at",
    "credential_key",
    "find_credential",
    "register",
    "require_valid",
]
