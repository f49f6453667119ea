"""The prescriptions contract: controlled-substance e-prescriptions, dispensed exactly once.

State (ADR 0007)::

    rx/<id>                      {"id", "tx", "patient", "prescriber", "org", "credential":
                                  {"number", "schedules", "expires", "n"}, "medication":
                                  {"rxnorm", "name", "strength", "form"}, "schedule", "quantity",
                                  "days_supply", "refills", "earliest_fill", "expires",
                                  "pharmacy"?, "digest", "height", "time",
                                  "status": "active"|"cancelled"|"completed",
                                  "fill": k, "fill_dispensed", "fill_started"?, "dispensed",
                                  "fills": [{"n", "fill", "quantity", "pharmacy", "pharmacist",
                                             "height", "time", "tx"}, ..],
                                  "transfers": [{"from", "to", "by", "height", "time", "tx"}],
                                  "cancelled"?: {"by", "reason", "height", "time", "tx"}}
    rxidx/patient/<patient>      the patient's prescription ids, in issue order (PDMP), and
    rxidx/prescriber/<account>   the prescriber's: append-only lists in pages of 64 ids
                                 (:mod:`carechain.contracts.paged_index`: ``{"n"}`` at the
                                 key, the ids under ``<key>/<page:06d>``), so an issue costs
                                 the same for a prescriber's first and ten-thousandth
    rules/prescriptions          the jurisdiction's rules (:data:`DEFAULT_RULES` merged with
                                 ``genesis.rules.prescriptions``; replaced later only by a
                                 governance ``set_rules`` vote, validated by
                                 :func:`validate_rules`)

A prescription id is the first 16 hex digits of its issuing transaction's id. ``digest`` is the
keyed digest (32 bytes, base64url) of the full FHIR MedicationRequest kept off chain.

This module owns the state and the issue, cancel and transfer actions; the dispensing rules
(who may dispense how much and when; the fill model: partial fills, refills) are in
:mod:`carechain.contracts.dispensing`, which the ``dispense`` handler here calls. The public
names of both stay importable from here.

Invariants (exactly once): execution is sequential within a block and across blocks, and every
dispense checks ``quantity <= quantity - fill_dispensed`` against the state its predecessors
left, so ``dispensed <= quantity * (1 + refills)`` holds after every transaction, whatever the
concurrency at submission; a refused dispense is a rejected receipt kept in its block (evidence)
and changes nothing; ``fills``, ``transfers`` and the indexes only grow; a cancelled or completed
prescription never becomes active again; patient, prescriber, medication, schedule, quantity and
refills never change after issue.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from carechain.contracts import paged_index
from carechain.contracts.credentials import SCHEDULES, credential_at, require_valid
from carechain.contracts.dispensing import (
    DAY_MS,
    MAX_FILLS,
    fill_status,
    plan_dispense,
    require_pharmacist,
    require_pharmacy,
)
from carechain.contracts.identity import (
    account_arg,
    arg,
    get_account,
    is_patient,
    only_fields,
    reject,
    text,
)
from carechain.contracts.records import StateView, find_record
from carechain.contracts.registry import genesis_rules
from carechain.encoding import MAX_SAFE_INT, JsonObject, JsonValue, b64u_decode
from carechain.errors import NotFoundError, ValidationError
from carechain.ledger.execute import TxContext
from carechain.ledger.state import Overlay
from carechain.ledger.tx import SignedTx

RX_ID_LEN = 16
RULES_SECTION = "prescriptions"
RULES_KEY = f"rules/{RULES_SECTION}"
RXNORM_RE = re.compile(r"^[0-9]{1,12}\Z")
WORD_RE = re.compile(r"^[a-z][a-z-]{1,39}\Z")
DIGEST_SIZE = 32
PRESCRIBER_ROLES = ("nurse", "practitioner")
STATUSES = ("active", "cancelled", "completed")

DEFAULT_RULES: dict[str, JsonValue] = {
    "max_validity_days": {"II": 90, "III": 180, "IV": 180, "V": 365},
    "max_refills": {"II": 0, "III": 5, "IV": 5, "V": 11},
    "refill_window_days": {"II": 0, "III": 180, "IV": 180, "V": 365},
    "partial_fill_days": {"II": 30, "III": 180, "IV": 180, "V": 365},
    "early_refill_percent": 75,
    "transfer_schedules": ["III", "IV", "V"],
    "max_transfers": 1,
    "max_quantity": 10_000,
    "max_days_supply": 365,
    "pdmp": {
        "window_days": 90,
        "max_prescribers": 4,
        "max_pharmacies": 4,
        "mme_threshold": 90,
        "opioid_benzodiazepine": True,
        "legal_basis_roles": [],
    },
    "mme_factors_milli": {
        "codeine": 150,
        "fentanyl": 2400,
        "hydrocodone": 1000,
        "hydromorphone": 5000,
        "methadone": 4700,
        "morphine": 1000,
        "oxycodone": 1500,
        "oxymorphone": 3000,
        "tapentadol": 400,
        "tramadol": 200,
    },
    "mcg_per_hour": ["fentanyl"],
    "benzodiazepines": [
        "alprazolam",
        "chlordiazepoxide",
        "clobazam",
        "clonazepam",
        "clorazepate",
        "diazepam",
        "estazolam",
        "flurazepam",
        "lorazepam",
        "midazolam",
        "oxazepam",
        "quazepam",
        "temazepam",
        "triazolam",
    ],
}
"""US defaults (a chain overrides any of them in ``genesis.rules.prescriptions``).

* ``max_validity_days``: how long after issue a prescription may be filled. Federal law sets no
  limit for schedule II (many states: 90 days, used here); III–IV: six months (21 CFR
  1306.22(a)); V: one year (common state practice).
* ``max_refills`` / ``refill_window_days``: II may not be refilled (21 CFR 1306.12(a)); III–IV
  at most five refills within six months of issue (21 CFR 1306.22(a)); V: state practice.
* ``partial_fill_days``: a schedule II prescription may be partially filled, the remaining
  portions within 30 days of issue (21 U.S.C. 829(f), CARA 2016; 21 CFR 1306.13(b) allows 60
  days for LTCF/terminal patients — a jurisdiction may raise it); III–V within the validity.
* ``early_refill_percent``: a refill is refused before this share of the previous fill's days'
  supply has elapsed (common payer/PDMP practice: 75 %).
* ``transfer_schedules`` / ``max_transfers``: III–V may be transferred once between pharmacies
  (21 CFR 1306.25(a)); II may not.
* ``pdmp``: risk-flag thresholds — ``window_days`` (look-back), ``max_prescribers`` and
  ``max_pharmacies`` (a "multiple provider episode": this many or more within the window),
  ``mme_threshold`` (daily morphine milligram equivalents at or above which a patient is
  flagged; CDC 2016 advised avoiding ≥ 90 MME/day), ``opioid_benzodiazepine`` (flag overlapping
  opioid and benzodiazepine supplies, CDC 2022 recommendation 11), ``legal_basis_roles``
  (member roles a PDMP statute lets query without the patient's consent; empty: consent needed).
* ``mme_factors_milli``: CDC conversion factors × 1000 (integers: the state holds no floats),
  from "CDC Clinical Practice Guideline for Prescribing Opioids for Pain — United States, 2022",
  MMWR Recomm Rep 2022;71(RR-3):1–95, Table (codeine 0.15, fentanyl transdermal 2.4 per mcg/hr,
  hydrocodone 1, hydromorphone 5, methadone 4.7, morphine 1, oxycodone 1.5, oxymorphone 3,
  tapentadol 0.4, tramadol 0.2). ``mcg_per_hour``: ingredients dosed in mcg/hr (transdermal).
* ``benzodiazepines``: ingredient names that count as benzodiazepines for the overlap flag.
"""

_SCHEDULE_MAPS = ("max_validity_days", "max_refills", "refill_window_days", "partial_fill_days")
_WORD_LISTS = ("mcg_per_hour", "benzodiazepines")


# -- rules ------------------------------------------------------------------------------------


def _int_ok(value: object, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= MAX_SAFE_INT


def validate_rules(section: Mapping[str, Any]) -> dict[str, JsonValue]:
    """:data:`DEFAULT_RULES` with ``section``'s overrides (ValidationError on a bad field)."""
    where = f"genesis.rules.{RULES_SECTION}"
    out: dict[str, JsonValue] = dict(DEFAULT_RULES)
    unknown = set(section) - set(DEFAULT_RULES)
    if unknown:
        raise ValidationError(f"{where}: unknown field(s) {sorted(unknown)}")
    for name, value in section.items():
        if name in _SCHEDULE_MAPS:
            if not isinstance(value, Mapping) or set(value) != set(SCHEDULES):
                raise ValidationError(f"{where}.{name}: want {{II, III, IV, V}} → integer")
            if not all(_int_ok(v) for v in value.values()):
                raise ValidationError(f"{where}.{name}: values are integers >= 0")
            out[name] = {s: value[s] for s in SCHEDULES}
        elif name in ("early_refill_percent", "max_transfers", "max_quantity", "max_days_supply"):
            if not _int_ok(value, 1 if name.startswith("max_q") or name.endswith("supply") else 0):
                raise ValidationError(f"{where}.{name}: want a non-negative integer")
            if name == "early_refill_percent" and value > 100:
                raise ValidationError(f"{where}.{name}: want 0..100")
            out[name] = value
        elif name == "transfer_schedules":
            if not isinstance(value, list) or any(s not in SCHEDULES for s in value):
                raise ValidationError(f"{where}.{name}: want a list of schedules")
            out[name] = [s for s in SCHEDULES if s in value]
        elif name == "pdmp":
            out[name] = _validate_pdmp(value, f"{where}.pdmp")
        elif name == "mme_factors_milli":
            if not isinstance(value, Mapping) or not value:
                raise ValidationError(f"{where}.{name}: want ingredient → factor × 1000")
            if not all(WORD_RE.match(k) and _int_ok(v, 1) for k, v in value.items()):
                raise ValidationError(f"{where}.{name}: lowercase ingredient → integer >= 1")
            out[name] = dict(sorted(value.items()))
        else:  # _WORD_LISTS
            if not isinstance(value, list) or not all(
                isinstance(v, str) and WORD_RE.match(v) for v in value
            ):
                raise ValidationError(f"{where}.{name}: want a list of lowercase ingredient names")
            out[name] = sorted(set(value))
    return out


def _validate_pdmp(value: object, where: str) -> dict[str, JsonValue]:
    defaults = DEFAULT_RULES["pdmp"]
    assert isinstance(defaults, dict)
    if not isinstance(value, Mapping) or set(value) - set(defaults):
        raise ValidationError(f"{where}: fields are {sorted(defaults)}")
    out = dict(defaults)
    for name, v in value.items():
        if name == "opioid_benzodiazepine":
            if not isinstance(v, bool):
                raise ValidationError(f"{where}.{name}: want true or false")
        elif name == "legal_basis_roles":
            if not isinstance(v, list) or any(r not in PDMP_ROLES for r in v):
                raise ValidationError(f"{where}.{name}: want roles of {list(PDMP_ROLES)}")
            v = sorted(set(v))
        elif not _int_ok(v, 1):
            raise ValidationError(f"{where}.{name}: want an integer >= 1")
        out[name] = v
    return out


PDMP_ROLES = ("nurse", "pharmacist", "practitioner")
"""Member roles that may query the PDMP (with a treatment relationship or a legal basis)."""


def apply_genesis(state: Overlay, doc: Mapping[str, Any]) -> None:
    """Write ``rules/prescriptions`` (defaults merged with ``genesis.rules.prescriptions``)."""
    state.put(RULES_KEY, validate_rules(genesis_rules(doc, RULES_SECTION)))


def rules_of(state: StateView) -> Mapping[str, Any]:
    """The chain's prescription rules (the defaults on a chain created before this contract)."""
    value = state.get(RULES_KEY)
    return value if isinstance(value, Mapping) else DEFAULT_RULES


# -- state access -----------------------------------------------------------------------------


def rx_key(rx_id: str) -> str:
    """State key of a prescription."""
    return f"rx/{rx_id}"


def patient_index_key(patient: str) -> str:
    """State key of a patient's prescription ids."""
    return f"rxidx/patient/{patient}"


def prescriber_index_key(account: str) -> str:
    """State key of a prescriber's prescription ids."""
    return f"rxidx/prescriber/{account}"


def find_prescription(state: StateView, rx_id: str) -> Mapping[str, Any] | None:
    """The prescription ``rx_id``, or None."""
    if len(rx_id) != RX_ID_LEN or not all(c in "0123456789abcdef" for c in rx_id):
        return None
    rec = state.get(rx_key(rx_id))
    return rec if isinstance(rec, Mapping) else None


def ids_of(state: StateView, key: str) -> list[str]:
    """The ids listed under index ``key``, oldest first."""
    return paged_index.items(state, key)


def last_ids_of(state: StateView, key: str, k: int) -> list[str]:
    """The newest ``k`` ids listed under index ``key``, oldest first (reads only those)."""
    return paged_index.last(state, key, k)


def _get_rx(state: StateView, args: Mapping[str, Any]) -> Mapping[str, Any]:
    rx_id: str = arg(args, "id", str)
    rx = find_prescription(state, rx_id)
    if rx is None:
        raise reject("unknown_prescription", f"no prescription {rx_id}")
    return rx


def _require_open(rx: Mapping[str, Any]) -> None:
    if rx["status"] == "cancelled":
        raise reject("cancelled", f"prescription {rx['id']} was cancelled")
    if rx["status"] == "completed":
        raise reject("completed", f"prescription {rx['id']} is completely dispensed")


def _append_index(state: Overlay, key: str, rx_id: str) -> None:
    paged_index.append(state, key, rx_id)


# -- issue ------------------------------------------------------------------------------------


def _medication(raw: object) -> dict[str, JsonValue]:
    if not isinstance(raw, Mapping) or set(raw) != {"rxnorm", "name", "strength", "form"}:
        raise reject("bad_args", "args.medication must be exactly {rxnorm, name, strength, form}")
    rxnorm = arg(raw, "rxnorm", str)
    if not RXNORM_RE.match(rxnorm):
        raise reject("bad_args", "medication.rxnorm must be an RxNorm code (digits)")
    return {
        "form": text(raw, "form"),
        "name": text(raw, "name"),
        "rxnorm": rxnorm,
        "strength": text(raw, "strength"),
    }


def _time_arg(args: Mapping[str, Any], name: str) -> int:
    value: int = arg(args, name, int)
    if not 0 <= value <= MAX_SAFE_INT:
        raise reject("bad_args", f"args.{name} must be a Unix millisecond timestamp")
    return value


def _count(args: Mapping[str, Any], name: str, low: int, high: int) -> int:
    value: int = arg(args, name, int)
    if not low <= value <= high:
        raise reject("bad_args", f"args.{name} must be {low}..{high}")
    return value


def _linked_record(state: Overlay, raw: object, patient: str, digest: str) -> dict[str, JsonValue]:
    """Step 6 of :func:`issue`: the stored MedicationRequest the prescription commits to."""
    if not isinstance(raw, Mapping):
        raise reject("bad_args", "args.record must be {org, id, version}")
    only_fields(raw, {"org", "id", "version"})
    org = account_arg(raw, "org")
    rid: str = arg(raw, "id", str)
    version: int = arg(raw, "version", int)
    rec = find_record(state, org, "MedicationRequest", rid)
    versions = rec["versions"] if rec is not None else []
    if rec is None or not 1 <= version <= len(versions):
        raise reject("record_mismatch", f"no MedicationRequest/{rid} version {version} at {org}")
    if rec.get("patient") != patient or rec.get("status") != "active":
        raise reject(
            "record_mismatch", f"MedicationRequest/{rid} is not an active record of {patient}"
        )
    if versions[version - 1]["digest"] != digest:
        raise reject(
            "record_mismatch",
            f"args.digest is not the anchored digest of MedicationRequest/{rid} version {version}",
        )
    return {"id": rid, "org": org, "version": version}


def issue(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``prescriptions.issue@1``: the prescriber (sender) signs a prescription.

    args: ``{"patient", "medication": {"rxnorm", "name", "strength", "form"}, "schedule",
    "quantity", "days_supply", "refills", "earliest_fill", "expires", "pharmacy"?, "digest",
    "record"?}`` — ``record`` ``{"org", "id", "version"}`` names the MedicationRequest stored off
    chain as a record of the patient; its anchored digest must be ``digest``.

    1. the sender is a practitioner or nurse whose prescriber registration is valid at the
       block time and covers ``schedule`` (``not_a_prescriber``, ``no_registration``,
       ``registration_revoked``, ``registration_expired``, ``schedule_not_authorized``);
    2. the patient is a registered patient account (``unknown_patient``);
    3. refills: none for schedule II (``refills_not_allowed``), at most ``max_refills``;
    4. ``earliest_fill < expires``, ``expires`` after the block time and at most
       ``max_validity_days`` after it (``validity_too_long``);
    5. a designated pharmacy holds a valid registration covering the schedule
       (``pharmacy_not_registered`` …);
    6. a named ``record`` is an anchored, not erased MedicationRequest of the same patient whose
       version's digest is ``digest`` (``record_mismatch``).
    """
    args = tx.body.args
    only_fields(
        args,
        {
            "patient",
            "medication",
            "schedule",
            "quantity",
            "days_supply",
            "refills",
            "earliest_fill",
            "expires",
            "pharmacy",
            "digest",
            "record",
        },
    )
    rules = rules_of(state)
    sender = tx.body.sender
    acct = get_account(state, sender)  # step 1
    if acct.get("role") not in PRESCRIBER_ROLES or not isinstance(acct.get("org"), str):
        raise reject("not_a_prescriber", f"{sender} is not a practitioner or nurse")
    schedule = arg(args, "schedule", str)
    if schedule not in SCHEDULES:
        raise reject("bad_args", f"args.schedule must be one of {list(SCHEDULES)}")
    credential = require_valid(state, "prescriber", sender, ctx.time, schedule)
    patient = account_arg(args, "patient")  # step 2
    if not is_patient(state, patient):
        raise reject("unknown_patient", f"{patient} is not a registered patient account")
    medication = _medication(args.get("medication"))
    quantity = _count(args, "quantity", 1, int(rules["max_quantity"]))
    days_supply = _count(args, "days_supply", 1, int(rules["max_days_supply"]))
    refills = _count(args, "refills", 0, 99)  # step 3
    if schedule == "II" and refills:
        raise reject("refills_not_allowed", "a schedule II prescription may not be refilled")
    if refills > int(rules["max_refills"][schedule]):
        raise reject(
            "too_many_refills",
            f"schedule {schedule} allows at most {rules['max_refills'][schedule]} refills",
        )
    earliest = _time_arg(args, "earliest_fill")  # step 4
    expires = _time_arg(args, "expires")
    if expires <= earliest or expires <= ctx.time:
        raise reject("bad_args", "args.expires must be after earliest_fill and the block time")
    limit = ctx.time + int(rules["max_validity_days"][schedule]) * DAY_MS
    if expires > limit:
        raise reject(
            "validity_too_long",
            f"schedule {schedule} may be filled for {rules['max_validity_days'][schedule]} "
            f"days: expires must be at most {limit}",
        )
    pharmacy = account_arg(args, "pharmacy") if "pharmacy" in args else None  # step 5
    if pharmacy is not None:
        require_pharmacy(state, pharmacy, ctx.time, schedule)
    digest: str = arg(args, "digest", str)
    try:
        raw = b64u_decode(digest, what="args.digest", max_bytes=DIGEST_SIZE)
    except ValidationError as exc:
        raise reject("bad_args", str(exc)) from None
    if len(raw) != DIGEST_SIZE:
        raise reject("bad_args", f"args.digest must be {DIGEST_SIZE} bytes")
    linked = (
        _linked_record(state, args.get("record"), patient, digest) if "record" in args else None
    )
    rx_id = tx.tx_id.hex()[:RX_ID_LEN]
    if state.get(rx_key(rx_id)) is not None:  # pragma: no cover - tx ids are unique
        raise reject("duplicate_prescription", f"prescription {rx_id} exists")
    record: dict[str, JsonValue] = {
        "credential": {
            "expires": credential["expires"],
            "n": credential["n"],
            "number": credential["number"],
            "schedules": list(credential["schedules"]),
        },
        "days_supply": days_supply,
        "digest": digest,
        "dispensed": 0,
        "earliest_fill": earliest,
        "expires": expires,
        "fill": 0,
        "fill_dispensed": 0,
        "fills": [],
        "height": ctx.height,
        "id": rx_id,
        "medication": medication,
        "org": str(acct["org"]),
        "patient": patient,
        "prescriber": sender,
        "quantity": quantity,
        "refills": refills,
        "schedule": schedule,
        "status": "active",
        "time": ctx.time,
        "transfers": [],
        "tx": tx.tx_id.hex(),
    }
    if pharmacy is not None:
        record["pharmacy"] = pharmacy
    if linked is not None:
        record["record"] = linked
    state.put(rx_key(rx_id), record)
    _append_index(state, patient_index_key(patient), rx_id)
    _append_index(state, prescriber_index_key(sender), rx_id)
    ctx.touch(patient)
    ctx.emit(
        "prescriptions.issued",
        {"id": rx_id, "patient": patient, "prescriber": sender, "schedule": schedule},
    )


# -- dispense ---------------------------------------------------------------------------------


def dispense(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``prescriptions.dispense@1``: a pharmacist of a registered pharmacy dispenses.

    args: ``{"id", "patient", "quantity"}`` (``patient``: the pseudonym presented at the
    counter; the pharmacy is the pharmacist's organisation).

    1. the prescription exists and is active (``unknown_prescription``, ``cancelled``,
       ``completed``);
    2. the sender is a pharmacist with a valid registration, and the pharmacy's registration
       is valid and covers the schedule (``not_a_pharmacist``, ``no_registration``,
       ``registration_expired``, ``pharmacy_not_registered``, ``schedule_not_authorized``);
    3. the dispensing rules (:func:`carechain.contracts.dispensing.plan_dispense`): patient and
       designated pharmacy (``patient_mismatch``, ``pharmacy_mismatch``), dates (``too_early``,
       ``expired``), refills and partial fills (``refill_window_closed``, ``early_refill``,
       ``partial_fill_window_closed``), quantity (``quantity_exceeds_remaining``).
    """
    args = tx.body.args
    only_fields(args, {"id", "patient", "quantity"})
    rules = rules_of(state)
    rx = _get_rx(state, args)  # step 1
    _require_open(rx)
    sender = tx.body.sender
    pharmacy, _ = require_pharmacist(state, sender, ctx.time)  # step 2
    require_pharmacy(state, pharmacy, ctx.time, str(rx["schedule"]))
    quantity: int = arg(args, "quantity", int)
    updated = plan_dispense(  # step 3
        rx,
        rules,
        patient=account_arg(args, "patient"),
        pharmacy=pharmacy,
        pharmacist=sender,
        quantity=quantity,
        now=ctx.time,
        height=ctx.height,
        tx=tx.tx_id.hex(),
    )
    state.put(rx_key(str(rx["id"])), updated)
    ctx.touch(str(rx["patient"]))
    fill_dispensed = updated["fill_dispensed"]
    assert isinstance(fill_dispensed, int)
    ctx.emit(
        "prescriptions.dispensed",
        {
            "fill": updated["fill"],
            "id": str(rx["id"]),
            "pharmacy": pharmacy,
            "quantity": quantity,
            "remaining": int(rx["quantity"]) - fill_dispensed,
        },
    )


# -- cancel and transfer ----------------------------------------------------------------------


def cancel(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``prescriptions.cancel@1``: the prescriber cancels what remains.

    args: ``{"id", "reason"}``; ``unauthorized`` unless the sender issued it; ``cancelled``,
    ``completed``.
    """
    args = tx.body.args
    only_fields(args, {"id", "reason"})
    rx = _get_rx(state, args)
    reason = text(args, "reason")
    if rx["prescriber"] != tx.body.sender:
        raise reject("unauthorized", f"only {rx['prescriber']} may cancel {rx['id']}")
    _require_open(rx)
    cancelled: dict[str, JsonValue] = {
        "by": tx.body.sender,
        "height": ctx.height,
        "reason": reason or "",
        "time": ctx.time,
        "tx": tx.tx_id.hex(),
    }
    state.put(rx_key(str(rx["id"])), {**rx, "cancelled": cancelled, "status": "cancelled"})
    ctx.touch(str(rx["patient"]))
    ctx.emit("prescriptions.cancelled", {"id": str(rx["id"])})


def transfer(state: Overlay, tx: SignedTx, ctx: TxContext) -> None:
    """``prescriptions.transfer@1``: a pharmacist of the holding pharmacy transfers what remains
    to another registered pharmacy.

    args: ``{"id", "to"}``. The holding pharmacy is the designated one, else the one that
    dispensed last (``not_held``: neither). ``transfer_not_allowed`` for schedules outside
    ``transfer_schedules``; ``transfer_limit`` past ``max_transfers``; ``unauthorized`` if the
    sender is not a pharmacist of the holding pharmacy; ``same_pharmacy``.
    """
    args = tx.body.args
    only_fields(args, {"id", "to"})
    rules = rules_of(state)
    rx = _get_rx(state, args)
    _require_open(rx)
    schedule = str(rx["schedule"])
    if schedule not in rules["transfer_schedules"]:
        raise reject(
            "transfer_not_allowed", f"schedule {schedule} prescriptions are not transferred"
        )
    transfers = list(rx["transfers"])
    if len(transfers) >= int(rules["max_transfers"]):
        raise reject("transfer_limit", f"prescription {rx['id']} was already transferred")
    holder = rx.get("pharmacy") or (rx["fills"][-1]["pharmacy"] if rx["fills"] else None)
    if holder is None:
        raise reject(
            "not_held", f"no pharmacy holds {rx['id']}: any registered pharmacy may fill it"
        )
    sender = tx.body.sender
    pharmacy, _ = require_pharmacist(state, sender, ctx.time)
    if pharmacy != holder:
        raise reject("unauthorized", f"{sender} is not a pharmacist of {holder}")
    to = account_arg(args, "to")
    if to == holder:
        raise reject("same_pharmacy", f"{rx['id']} is already at {to}")
    require_pharmacy(state, to, ctx.time, schedule)
    transfers.append(
        {
            "by": sender,
            "from": str(holder),
            "height": ctx.height,
            "time": ctx.time,
            "to": to,
            "tx": tx.tx_id.hex(),
        }
    )
    state.put(rx_key(str(rx["id"])), {**rx, "pharmacy": to, "transfers": transfers})
    ctx.touch(str(rx["patient"]))
    ctx.emit("prescriptions.transferred", {"from": str(holder), "id": str(rx["id"]), "to": to})


def register(registry: Any) -> None:
    """Register the prescription kinds, the genesis writer and the rules section."""
    registry.register("prescriptions.issue@1", issue)
    registry.register("prescriptions.dispense@1", dispense)
    registry.register("prescriptions.cancel@1", cancel)
    registry.register("prescriptions.transfer@1", transfer)
    registry.rule_section(RULES_SECTION, validate_rules)  # governance may replace them
    registry.on_genesis(apply_genesis)


# -- the verify answer ------------------------------------------------------------------------


def verify_status(state: StateView, rx_id: str, at_time: int) -> JsonObject:
    """What a pharmacist (or the patient) sees when verifying ``rx_id`` at ``at_time``.

    ``status``: ``cancelled``, ``completed``, ``expired`` (at or after ``expires``),
    ``not_yet_fillable`` (before ``earliest_fill``, or a refill before it is due), else
    ``valid``; ``remaining`` units of the current fill (a full fill when the next dispense
    starts a refill); ``refills_remaining``; the prescriber's registration at issue time and
    whether it is still in force now. NotFoundError if unknown.
    """
    rx = find_prescription(state, rx_id)
    if rx is None:
        raise NotFoundError(f"no prescription {rx_id}", code="unknown_prescription")
    fill = fill_status(rx, rules_of(state), at_time)
    now_cred = credential_at(state, "prescriber", str(rx["prescriber"]), at_time)
    in_force = (
        now_cred is not None
        and now_cred["status"] == "active"
        and at_time < int(now_cred["expires"])
    )
    out: dict[str, JsonValue] = {
        "days_supply": rx["days_supply"],
        "dispensed": rx["dispensed"],
        "earliest_fill": rx["earliest_fill"],
        "expires": rx["expires"],
        "id": rx["id"],
        "issued": rx["time"],
        "medication": rx["medication"],
        "next_fill_at": fill.next_fill_at,
        "patient": rx["patient"],
        "prescriber": {
            "account": rx["prescriber"],
            "credential_at_issue": rx["credential"],
            "credential_in_force_now": in_force,
            "org": rx["org"],
        },
        "quantity": rx["quantity"],
        "refills": rx["refills"],
        "refills_remaining": fill.refills_remaining,
        "remaining": fill.remaining,
        "schedule": rx["schedule"],
        "status": fill.status,
        "fills": rx["fills"],
        "transfers": rx["transfers"],
        "tx": rx["tx"],
        "digest": rx["digest"],
    }
    if "pharmacy" in rx:
        out["pharmacy"] = rx["pharmacy"]
    if "cancelled" in rx:
        out["cancelled"] = rx["cancelled"]
    return out


__all__ = [
    "DAY_MS",
    "DEFAULT_RULES",
    "MAX_FILLS",
    "PDMP_ROLES",
    "RULES_SECTION",
    "cancel",
    "dispense",
    "fill_status",
    "find_prescription",
    "ids_of",
    "issue",
    "last_ids_of",
    "patient_index_key",
    "plan_dispense",
    "register",
    "require_pharmacist",
    "require_pharmacy",
    "rules_of",
    "transfer",
    "validate_rules",
    "verify_status",
]
