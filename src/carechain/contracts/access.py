"""Break-glass: time-boxed emergency access to a patient's records, reviewed afterwards.

State (ADR 0005, "Break-glass")::

    bg/<session>                    {"id", "actor", "org", "role", "patient", "purpose": "ETREAT",
                                     "reason", "opened": height, "time", "expires", "tx",
                                     "status": "open"|"reviewed", "reviews": [{"by", "as":
                                     "patient"|"privacy_officer", "height", "note"?}]}
    bgidx/patient/<patient>         [session, ..]   every session opened for the patient
    bgidx/org/<org>                 [session, ..]   sessions awaiting the privacy officer's review
    bgidx/actor/<actor>/<patient>   [session, ..]   the actor's sessions for that patient (decide)

A session id is the first 16 hex digits of the opening transaction's id.

Invariants: a session lasts ``params.break_glass_ms`` of block time from the block that opens it
(``expires`` = block time + duration; active while ``time < expires``); a review never shortens
or extends it; a session leaves the organisation's review queue only through its privacy
officer's review; the patient's list only grows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from carechain.contracts.identity import (
    account_arg,
    arg,
    get_account,
    has_capability,
    is_patient,
    only_fields,
    reject,
    text,
)
from carechain.contracts.records import StateView
from carechain.encoding import JsonValue
from carechain.ledger.execute import TxContext
from carechain.ledger.state import Overlay
from carechain.ledger.tx import SignedTx

BREAK_GLASS_PURPOSE = "ETREAT"
"""HL7 PurposeOfUse ``ETREAT`` (emergency treatment): the only purpose of a break-glass session."""
SESSION_ID_LEN = 16


def session_key(session: str) -> str:
    """State key of a break-glass session."""
    return f"bg/{session}"


def patient_sessions_key(patient: str) -> str:
    """State key of the patient's list of sessions."""
    return f"bgidx/patient/{patient}"


def org_review_key(org: str) -> str:
    """State key of the organisation's queue of sessions awaiting review."""
    return f"bgidx/org/{org}"


def actor_sessions_key(actor: str, patient: str) -> str:
    """State key of ``actor``'s sessions for ``patient``."""
    return f"bgidx/actor/{actor}/{patient}"


def _ids(value: JsonValue | None) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def find_session(state: StateView, session: str) -> Mapping[str, Any] | None:
    """The session record, or None."""
    if len(session) != SESSION_ID_LEN or not session.isalnum():
        return None
    rec = state.get(session_key(session))
    return rec if isinstance(rec, Mapping) else None


def sessions_of(state: StateView, actor: str, patient: str) -> list[Mapping[str, Any]]:
    """``actor``'s break-glass sessions for ``patient``, oldest first."""
    out = []
    for sid in _ids(state.get(actor_sessions_key(actor, patient))):
        rec = state.get(session_key(sid))
        if isinstance(rec, Mapping):
            out.append(rec)
    return out


def break_glass(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``access.break_glass@1``: open an emergency session.

    args: ``{"patient", "purpose": "ETREAT", "reason"}``; the sender must be a member whose
    account carries the ``emergency`` capability (``unauthorized``); the purpose must be ETREAT
    (``wrong_purpose``); the patient must be registered (``unknown_patient``).
    """
    args = tx.body.args
    only_fields(args, {"patient", "purpose", "reason"})
    patient = account_arg(args, "patient")
    purpose: str = arg(args, "purpose", str)
    reason = text(args, "reason")
    if purpose != BREAK_GLASS_PURPOSE:
        raise reject("wrong_purpose", f"break-glass is for purpose ETREAT only, not {purpose!r}")
    sender = tx.body.sender
    acct = get_account(state, sender)
    org = acct.get("org")
    if not isinstance(org, str) or not has_capability(acct, "emergency"):
        raise reject("unauthorized", f"{sender} does not carry the emergency capability")
    if not is_patient(state, patient):
        raise reject("unknown_patient", f"{patient} is not a registered patient")
    sid = tx.tx_id.hex()[:SESSION_ID_LEN]
    expires = ctx.time + ctx.params.break_glass_ms
    state.put(
        session_key(sid),
        {
            "actor": sender, "expires": expires, "id": sid, "opened": ctx.height, "org": org,
            "patient": patient, "purpose": purpose, "reason": reason or "",
            "reviews": [], "role": str(acct.get("role")), "status": "open", "time": ctx.time,
            "tx": tx.tx_id.hex(),
        },
    )  # fmt: skip
    for key in (
        patient_sessions_key(patient),
        org_review_key(org),
        actor_sessions_key(sender, patient),
    ):
        state.put(key, [*_ids(state.get(key)), sid])
    ctx.touch(patient)
    ctx.emit(
        "access.break_glass",
        {"actor": sender, "expires": expires, "org": org, "patient": patient, "session": sid},
    )


def review(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``access.review@1``: the patient or the organisation's privacy officer reviews a session.

    args: ``{"session", "note"?}``. Each party reviews once (``already_reviewed``); the privacy
    officer's review marks the session ``reviewed`` and takes it off the organisation's queue.
    """
    args = tx.body.args
    only_fields(args, {"session", "note"})
    sid: str = arg(args, "session", str)
    note = text(args, "note", optional=True)
    current = find_session(state, sid)
    if current is None:
        raise reject("unknown_session", f"no break-glass session {sid}")
    sender = tx.body.sender
    org = str(current["org"])
    if sender == current["patient"]:
        party = "patient"
    else:
        acct = get_account(state, sender)
        if acct.get("org") != org or not has_capability(acct, "privacy_officer"):
            raise reject(
                "unauthorized",
                f"only the patient or a privacy officer of {org} may review session {sid}",
            )
        party = "privacy_officer"
    reviews = list(current.get("reviews", []))
    if any(r.get("as") == party for r in reviews):
        raise reject("already_reviewed", f"session {sid} was already reviewed by the {party}")
    entry: dict[str, JsonValue] = {"as": party, "by": sender, "height": ctx.height}
    if note is not None:
        entry["note"] = note
    rec = dict(current)
    rec["reviews"] = [*reviews, entry]
    if party == "privacy_officer":
        rec["status"] = "reviewed"
        queue = org_review_key(org)
        state.put(queue, [s for s in _ids(state.get(queue)) if s != sid])
    state.put(session_key(sid), rec)
    ctx.touch(str(current["patient"]))
    ctx.emit("access.reviewed", {"as": party, "patient": current["patient"], "session": sid})


def register(registry: Any) -> None:
    """Register the access (break-glass) kinds."""
    registry.register("access.break_glass@1", break_glass)
    registry.register("access.review@1", review)


__all__ = [
    "BREAK_GLASS_PURPOSE",
    "actor_sessions_key",
    "find_session",
    "org_review_key",
    "patient_sessions_key",
    "register",
    "session_key",
    "sessions_of",
]
