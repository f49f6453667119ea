"""The PDMP view: a patient's controlled-substance history with deterministic risk flags.

Pure and deterministic: a function of ledger state (``rxidx/patient/<patient>``, ``rx/<id>``,
``rules/prescriptions``) and a time; no clock, no I/O. Who may see it (a treatment relationship
or a legal basis) and the audit entry of every query are the node's business (``node/rx.py``).

Definitions (thresholds are data: ``rules/prescriptions.pdmp``):

* a medication's ingredient is the first ingredient of the rules' MME table (opioids) or
  benzodiazepine list that appears as a word in its name (lower case);
* its strength is the leading number of ``medication.strength`` with unit ``mg`` (or
  ``mcg/hr`` for ingredients listed in ``mcg_per_hour``), in thousandths (``"7.5 mg"`` → 7500);
* daily MME (thousandths) of an opioid prescription = strength × quantity ÷ days' supply ×
  factor (mg/day × CDC factor); for mcg/hr products, strength × factor (one patch worn at a
  time);
* a dispense of ``q`` units covers ``ceil(days_supply × q ÷ quantity)`` days from its time;
* ``high_mme``: the largest sum of daily MME of the opioid dispenses covering one instant of the
  window (instants checked: the window start and every dispense start in it) is at or above
  ``mme_threshold``;
* ``many_prescribers`` / ``many_pharmacies``: distinct prescribers of prescriptions issued, and
  distinct pharmacies of dispenses, within the window reach ``max_prescribers`` /
  ``max_pharmacies``;
* ``opioid_benzodiazepine``: an opioid dispense and a benzodiazepine dispense cover a common
  instant of the window.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from carechain.contracts.prescriptions import (
    DAY_MS,
    find_prescription,
    ids_of,
    patient_index_key,
    rules_of,
)
from carechain.contracts.records import StateView
from carechain.encoding import JsonObject, JsonValue

_STRENGTH_RE = re.compile(r"^\s*([0-9]{1,6})(?:\.([0-9]{1,3}))?\s*(mg|mcg/hr|mcg/h)\b", re.I)
_WORD_SPLIT = re.compile(r"[^a-z]+")


def parse_strength(strength: str) -> tuple[int, str] | None:
    """(amount in thousandths, unit) of a strength such as ``"7.5 mg"`` or ``"25 mcg/hr"``."""
    m = _STRENGTH_RE.match(strength)
    if m is None:
        return None
    whole, frac, unit = m.group(1), m.group(2) or "", m.group(3).lower()
    amount = int(whole) * 1000 + (int(frac.ljust(3, "0")) if frac else 0)
    return amount, "mcg/hr" if unit.startswith("mcg") else "mg"


def ingredient_of(name: str, candidates: Sequence[str]) -> str | None:
    """The first of ``candidates`` that is a word of ``name`` (case-insensitive)."""
    words = set(_WORD_SPLIT.split(name.lower()))
    for candidate in candidates:
        if candidate in words:
            return candidate
    return None


def daily_mme_milli(
    medication: Mapping[str, Any], quantity: int, days_supply: int, rules: Mapping[str, Any]
) -> int | None:
    """Daily MME × 1000 of an opioid prescription (None: not an opioid of the table, or a
    strength that cannot be read)."""
    factors: Mapping[str, int] = rules["mme_factors_milli"]
    ingredient = ingredient_of(str(medication["name"]), sorted(factors))
    if ingredient is None:
        return None
    parsed = parse_strength(str(medication["strength"]))
    if parsed is None:
        return None
    amount, unit = parsed
    factor = int(factors[ingredient])
    if ingredient in rules["mcg_per_hour"]:
        return amount * factor // 1000 if unit == "mcg/hr" else None
    if unit != "mg":
        return None
    return amount * quantity * factor // (days_supply * 1000)


@dataclass(frozen=True, slots=True, kw_only=True)
class Supply:
    """One dispense and the days it covers."""

    rx: str
    """Prescription id."""
    pharmacy: str
    """Dispensing pharmacy."""
    quantity: int
    """Units dispensed."""
    start: int
    """Dispense time (ms)."""
    end: int
    """End of coverage (ms, exclusive)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Flag:
    """One risk flag."""

    code: str
    """``high_mme``, ``many_prescribers``, ``many_pharmacies``, ``opioid_benzodiazepine``."""
    value: int
    """What was measured (MME × 1000, a count, or overlapping supplies)."""
    threshold: int
    """The rule it reached (same unit)."""
    detail: str
    """Human explanation."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PdmpReport:
    """A patient's controlled-substance history at ``at_time`` with its flags."""

    patient: str
    """Patient account."""
    at_time: int
    """The instant the report describes (ms)."""
    window_start: int
    """Start of the look-back window (ms)."""
    prescriptions: tuple[JsonObject, ...]
    """Each prescription in the window: id, issued, prescriber, org, medication, schedule,
    quantity, days_supply, status, class, daily_mme_milli, dispenses."""
    prescribers: tuple[str, ...]
    """Distinct prescribers in the window, sorted."""
    pharmacies: tuple[str, ...]
    """Distinct dispensing pharmacies in the window, sorted."""
    max_daily_mme_milli: int
    """Highest daily MME × 1000 at one instant of the window."""
    flags: tuple[Flag, ...] = field(default_factory=tuple)
    """Risk flags raised."""

    def to_json(self) -> JsonObject:
        """The report as JSON (integers only)."""
        return {
            "at": self.at_time,
            "flags": [
                {"code": f.code, "detail": f.detail, "threshold": f.threshold, "value": f.value}
                for f in self.flags
            ],
            "max_daily_mme_milli": self.max_daily_mme_milli,
            "patient": self.patient,
            "pharmacies": list(self.pharmacies),
            "prescribers": list(self.prescribers),
            "prescriptions": list(self.prescriptions),
            "window_start": self.window_start,
        }


def pdmp_report(state: StateView, patient: str, at_time: int) -> PdmpReport:
    """The PDMP view of ``patient`` at ``at_time`` (see the module docstring)."""
    rules = rules_of(state)
    pdmp: Mapping[str, Any] = rules["pdmp"]
    window_start = at_time - int(pdmp["window_days"]) * DAY_MS
    benzos: list[str] = list(rules["benzodiazepines"])
    opioids: list[tuple[Supply, int]] = []
    benzo_supplies: list[Supply] = []
    rows: list[JsonObject] = []
    prescribers: set[str] = set()
    pharmacies: set[str] = set()
    for rx_id in ids_of(state, patient_index_key(patient)):
        rx = find_prescription(state, rx_id)
        if rx is None or int(rx["time"]) > at_time:
            continue
        quantity, days = int(rx["quantity"]), int(rx["days_supply"])
        supplies = []
        for fill in rx["fills"]:
            start = int(fill["time"])
            if start > at_time:
                continue
            covered = -(-days * int(fill["quantity"]) // quantity)
            supplies.append(
                Supply(
                    rx=rx_id,
                    pharmacy=str(fill["pharmacy"]),
                    quantity=int(fill["quantity"]),
                    start=start,
                    end=start + covered * DAY_MS,
                )
            )
        in_window = [s for s in supplies if s.end > window_start]
        issued_in_window = int(rx["time"]) >= window_start
        if not issued_in_window and not in_window:
            continue
        if issued_in_window:
            prescribers.add(str(rx["prescriber"]))
        pharmacies.update(s.pharmacy for s in in_window if s.start >= window_start)
        mme = daily_mme_milli(rx["medication"], quantity, days, rules)
        name = str(rx["medication"]["name"])
        klass = "opioid" if mme is not None else "other"
        if mme is None and ingredient_of(name, benzos) is not None:
            klass = "benzodiazepine"
            benzo_supplies.extend(in_window)
        if mme is not None:
            opioids.extend((s, mme) for s in in_window)
        row: dict[str, JsonValue] = {
            "class": klass,
            "days_supply": days,
            "id": rx_id,
            "issued": rx["time"],
            "medication": rx["medication"],
            "org": rx["org"],
            "prescriber": rx["prescriber"],
            "quantity": quantity,
            "schedule": rx["schedule"],
            "status": rx["status"],
            "dispenses": [
                {"end": s.end, "pharmacy": s.pharmacy, "quantity": s.quantity, "start": s.start}
                for s in supplies
            ],
        }
        if mme is not None:
            row["daily_mme_milli"] = mme
        rows.append(row)
    instants = sorted({window_start, *(s.start for s, _ in opioids if s.start >= window_start)})
    instants = [i for i in instants if i <= at_time]
    max_mme = 0
    for instant in instants:
        total = sum(m for s, m in opioids if s.start <= instant < s.end)
        max_mme = max(max_mme, total)
    flags: list[Flag] = []
    threshold = int(pdmp["mme_threshold"]) * 1000
    if max_mme >= threshold:
        flags.append(
            Flag(
                code="high_mme",
                value=max_mme,
                threshold=threshold,
                detail=(f"daily MME reached {max_mme / 1000:g} (threshold {threshold // 1000})"),
            )
        )
    if len(prescribers) >= int(pdmp["max_prescribers"]):
        detail = f"{len(prescribers)} prescribers in {pdmp['window_days']} days"
        flags.append(
            Flag(
                code="many_prescribers",
                value=len(prescribers),
                threshold=int(pdmp["max_prescribers"]),
                detail=detail,
            )
        )
    if len(pharmacies) >= int(pdmp["max_pharmacies"]):
        detail = f"{len(pharmacies)} pharmacies in {pdmp['window_days']} days"
        flags.append(
            Flag(
                code="many_pharmacies",
                value=len(pharmacies),
                threshold=int(pdmp["max_pharmacies"]),
                detail=detail,
            )
        )
    if pdmp["opioid_benzodiazepine"]:
        overlaps = sum(
            1
            for o, _ in opioids
            for b in benzo_supplies
            if max(o.start, b.start, window_start) < min(o.end, b.end, at_time + 1)
        )
        if overlaps:
            flags.append(
                Flag(
                    code="opioid_benzodiazepine",
                    value=overlaps,
                    threshold=1,
                    detail="opioid and benzodiazepine supplies overlap",
                )
            )
    return PdmpReport(
        patient=patient,
        at_time=at_time,
        window_start=window_start,
        prescriptions=tuple(rows),
        prescribers=tuple(sorted(prescribers)),
        pharmacies=tuple(sorted(pharmacies)),
        max_daily_mme_milli=max_mme,
        flags=tuple(flags),
    )


__all__ = [
    "Flag",
    "PdmpReport",
    "daily_mme_milli",
    "ingredient_of",
    "parse_strength",
    "pdmp_report",
]
