"""Dispensing rules: who may dispense a prescription, how much, and when (ADR 0007).

Pure functions over one prescription record (``rx/<id>``, layout in
:mod:`carechain.contracts.prescriptions`) and the chain's ``rules/prescriptions``, plus the
credential checks of the dispensing side. The ``prescriptions.dispense@1`` handler (in
``prescriptions.py``, which owns the state) loads the record, checks the pharmacist with
:func:`require_pharmacist` / :func:`require_pharmacy`, asks :func:`plan_dispense` for the
updated record and writes it; ``verify_status`` asks :func:`fill_status` what may be dispensed.

Fill model: each fill authorises ``quantity`` units, dispensed in one or more parts (partial
fills); fill ``k`` (0 = the original, 1.. = refills) starts with the first dispense after fill
``k - 1`` is complete; ``fill_dispensed`` counts the units of the current fill and
``fill_started`` is the time of its first dispense.

Invariants (exactly once): :func:`plan_dispense` refuses any ``quantity`` above
``quantity - fill_dispensed`` of the record it is given, and the handler gives it the state its
predecessors (same block included) left, so ``dispensed <= quantity * (1 + refills)`` holds
after every transaction whatever the concurrency at submission; a refused plan changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from carechain.contracts.credentials import require_valid
from carechain.contracts.identity import reject
from carechain.contracts.records import StateView
from carechain.encoding import JsonValue
from carechain.errors import ContractError

DAY_MS = 86_400_000
MAX_FILLS = 500
"""Dispenses recorded per prescription (bounded state)."""


# -- who may dispense -------------------------------------------------------------------------


def require_pharmacy(state: StateView, org: str, time: int, schedule: str) -> None:
    """Reject unless pharmacy ``org`` holds a registration valid at ``time`` for ``schedule``
    (``pharmacy_not_registered``, ``pharmacy_registration_expired`` …)."""
    try:
        require_valid(state, "pharmacy", org, time, schedule)
    except ContractError as exc:
        if exc.code == "no_registration":
            raise reject(
                "pharmacy_not_registered", f"{org} holds no pharmacy registration"
            ) from None
        raise reject(f"pharmacy_{exc.code}", exc.message) from None


def require_pharmacist(state: StateView, sender: str, time: int) -> tuple[str, Mapping[str, Any]]:
    """(pharmacy org, credential) of a pharmacist allowed to act at ``time``
    (``not_a_pharmacist``, ``no_registration``, ``registration_expired`` …)."""
    acct = state.get(f"acct/{sender}")
    if not isinstance(acct, Mapping) or acct.get("role") != "pharmacist":
        raise reject("not_a_pharmacist", f"{sender} is not a pharmacist")
    version = require_valid(state, "pharmacist", sender, time)
    org = str(acct.get("org"))
    return org, version


# -- how much and when ------------------------------------------------------------------------


def refill_due(rx: Mapping[str, Any], rules: Mapping[str, Any]) -> int | None:
    """When the next refill may start (None before the first dispense of the current fill):
    ``early_refill_percent`` of the current fill's days' supply after it started."""
    started = rx.get("fill_started")
    if not isinstance(started, int):
        return None
    elapsed = int(rx["days_supply"]) * DAY_MS * int(rules["early_refill_percent"]) // 100
    return started + elapsed


def plan_dispense(
    rx: Mapping[str, Any],
    rules: Mapping[str, Any],
    *,
    patient: str,
    pharmacy: str,
    pharmacist: str,
    quantity: int,
    now: int,
    height: int,
    tx: str,
) -> dict[str, JsonValue]:
    """The record after dispensing ``quantity`` units of an active ``rx`` at ``now``.

    Steps (the caller checked that ``rx`` is active and the pharmacist's and pharmacy's
    registrations):

    1. ``patient`` is the prescription's (``patient_mismatch``); a designated pharmacy is
       ``pharmacy`` (``pharmacy_mismatch``); ``quantity >= 1`` (``bad_args``);
    2. ``earliest_fill <= now < expires`` (``too_early``, ``expired``);
    3. if the current fill is complete, this starts a refill: within ``refill_window_days`` of
       issue (``refill_window_closed``) and not before :func:`refill_due` (``early_refill``);
       otherwise a continued partial fill lies within ``partial_fill_days`` of issue
       (``partial_fill_window_closed``);
    4. ``quantity <= quantity - fill_dispensed`` (``quantity_exceeds_remaining``); at most
       :data:`MAX_FILLS` dispenses (``too_many_fills``).
    """
    rx_id, schedule = str(rx["id"]), str(rx["schedule"])
    if patient != rx["patient"]:  # step 1
        raise reject("patient_mismatch", f"prescription {rx_id} is not for {patient}")
    if "pharmacy" in rx and rx["pharmacy"] != pharmacy:
        raise reject("pharmacy_mismatch", f"prescription {rx_id} is designated to {rx['pharmacy']}")
    if quantity < 1:
        raise reject("bad_args", "args.quantity must be at least 1")
    if now < int(rx["earliest_fill"]):  # step 2
        raise reject("too_early", f"prescription {rx_id} may be filled from {rx['earliest_fill']}")
    if now >= int(rx["expires"]):
        raise reject("expired", f"prescription {rx_id} expired at {rx['expires']}")
    fill, fill_dispensed = int(rx["fill"]), int(rx["fill_dispensed"])
    fill_started = rx.get("fill_started")
    per_fill = int(rx["quantity"])
    if fill_dispensed == per_fill:  # step 3: a refill (refills remain: the rx is not completed)
        days = rules["refill_window_days"][schedule]
        if now >= int(rx["time"]) + int(days) * DAY_MS:
            raise reject(
                "refill_window_closed", f"schedule {schedule} refills end {days} days after issue"
            )
        due = refill_due(rx, rules)
        assert due is not None
        if now < due:
            raise reject("early_refill", f"the next refill of {rx_id} is due at {due}")
        fill, fill_dispensed, fill_started = fill + 1, 0, None
    elif fill_dispensed > 0:
        days = rules["partial_fill_days"][schedule]
        if now >= int(rx["time"]) + int(days) * DAY_MS:
            raise reject(
                "partial_fill_window_closed",
                f"the rest of a schedule {schedule} fill must be dispensed within {days} days "
                "of issue",
            )
    remaining = per_fill - fill_dispensed  # step 4
    if quantity > remaining:
        raise reject(
            "quantity_exceeds_remaining",
            f"{quantity} requested, {remaining} remain of fill {fill} of {rx_id}",
        )
    fills = list(rx["fills"])
    if len(fills) >= MAX_FILLS:
        raise reject("too_many_fills", f"prescription {rx_id} has {len(fills)} dispenses")
    fills.append(
        {
            "fill": fill,
            "height": height,
            "n": len(fills) + 1,
            "pharmacist": pharmacist,
            "pharmacy": pharmacy,
            "quantity": quantity,
            "time": now,
            "tx": tx,
        }
    )
    fill_dispensed += quantity
    updated: dict[str, JsonValue] = {
        **rx,
        "dispensed": int(rx["dispensed"]) + quantity,
        "fill": fill,
        "fill_dispensed": fill_dispensed,
        "fill_started": fill_started if isinstance(fill_started, int) else now,
        "fills": fills,
    }
    if fill_dispensed == per_fill and fill == int(rx["refills"]):
        updated["status"] = "completed"
    return updated


@dataclass(frozen=True, slots=True, kw_only=True)
class FillStatus:
    """What may be dispensed of a prescription at one moment."""

    status: str
    """``valid``, ``not_yet_fillable``, ``expired``, ``cancelled`` or ``completed``."""
    remaining: int
    """Units of the current fill left (a whole fill when the next dispense starts a refill)."""
    refills_remaining: int
    """Refills not yet started."""
    next_fill_at: int
    """When the next dispense may happen (``earliest_fill``, or when a refill is due)."""


def fill_status(rx: Mapping[str, Any], rules: Mapping[str, Any], at_time: int) -> FillStatus:
    """:class:`FillStatus` of ``rx`` at ``at_time`` (``not_yet_fillable``: before
    ``earliest_fill``, or a refill before it is due; ``expired``: at or after ``expires``)."""
    per_fill, fill = int(rx["quantity"]), int(rx["fill"])
    refill_next = int(rx["fill_dispensed"]) == per_fill and rx["status"] == "active"
    remaining = per_fill if refill_next else per_fill - int(rx["fill_dispensed"])
    refills_remaining = int(rx["refills"]) - fill
    next_fill_at = int(rx["earliest_fill"])
    due = refill_due(rx, rules)
    if refill_next and due is not None:
        next_fill_at = due
    if rx["status"] != "active":
        status = str(rx["status"])
        remaining = 0 if status == "cancelled" else remaining
    elif at_time >= int(rx["expires"]):
        status = "expired"
    elif at_time < next_fill_at:
        status = "not_yet_fillable"
    else:
        status = "valid"
    if rx["status"] == "completed":
        remaining, refills_remaining = 0, 0
    return FillStatus(
        status=status,
        remaining=remaining,
        refills_remaining=max(refills_remaining, 0),
        next_fill_at=next_fill_at,
    )


__all__ = [
    "DAY_MS",
    "MAX_FILLS",
    "FillStatus",
    "fill_status",
    "plan_dispense",
    "refill_due",
    "require_pharmacist",
    "require_pharmacy",
]
