"""Credentials and prescriptions contracts on a sandbox state: every rejection, state unchanged.

Block times and heights are chosen freely (``Sandbox``), so windows, expiries and early refills
are tested without waiting.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carechain.contracts.credentials import check_dea_number, credential_at
from carechain.contracts.prescriptions import (
    DAY_MS,
    DEFAULT_RULES,
    find_prescription,
    ids_of,
    validate_rules,
    verify_status,
)
from carechain.encoding import b64u_encode
from carechain.errors import ContractError, NotFoundError, ValidationError
from carechain.testing.chain_driver import Sandbox

T0 = 1_800_000_000_000
DAY = DAY_MS
DIGEST = b64u_encode(bytes(range(32)))
DR = "seoul-general.dr-kim"
PH = "hanbit-pharmacy.ph-lee"
PH2 = "other-pharmacy.ph-oh"
OXY = {
    "rxnorm": "1049621",
    "name": "oxycodone hydrochloride",
    "strength": "10 mg",
    "form": "tablet",
}
ALP = {"rxnorm": "308048", "name": "alprazolam", "strength": "0.5 mg", "form": "tablet"}


class World:
    """A sandbox with a hospital, two pharmacies, registered and unregistered people."""

    def __init__(self) -> None:
        sb = self.sb = Sandbox()
        self.height = 1
        sb.put_org("seoul-general")
        for org in ("hanbit-pharmacy", "other-pharmacy", "third-pharmacy"):
            sb.state.put(
                f"org/{org}",
                {"id": org, "name": org, "roles": ["pharmacy"], "since": 0, "status": "active"},
            )
            sb.put_member(f"{org}.admin", org, "admin")
        sb.put_member("seoul-general.admin", "seoul-general", "admin")
        sb.put_member(DR, "seoul-general", "practitioner")
        sb.put_member("seoul-general.dr-lim", "seoul-general", "practitioner")
        sb.put_member("seoul-general.dr-cho", "seoul-general", "practitioner")
        sb.put_member("seoul-general.clerk", "seoul-general", "clerk")
        sb.put_member(PH, "hanbit-pharmacy", "pharmacist")
        sb.put_member("hanbit-pharmacy.ph-new", "hanbit-pharmacy", "pharmacist")
        sb.put_member("hanbit-pharmacy.tech", "hanbit-pharmacy", "clerk")
        sb.put_member(PH2, "other-pharmacy", "pharmacist")
        sb.put_member("third-pharmacy.ph-yu", "third-pharmacy", "pharmacist")
        sb.put_patient("pt-one")
        sb.put_patient("pt-two")
        year = T0 + 365 * DAY
        self.ok(
            "credentials.register_prescriber@1",
            "seoul-general.admin",
            {
                "account": DR,
                "number": "AB1234563",
                "schedules": ["II", "III", "IV", "V"],
                "expires": year,
            },
            time=T0,
        )
        self.ok(
            "credentials.register_prescriber@1",
            "seoul-general.admin",
            {
                "account": "seoul-general.dr-cho",
                "number": "BC1234563",
                "schedules": ["IV", "V"],
                "expires": year,
            },
            time=T0,
        )
        for org, number in (
            ("hanbit-pharmacy", "FH1234563"),
            ("other-pharmacy", "FO1234563"),
            ("third-pharmacy", "FT1234563"),
        ):
            self.ok(
                "credentials.register_pharmacy@1",
                f"{org}.admin",
                {
                    "org": org,
                    "number": number,
                    "schedules": ["II", "III", "IV", "V"],
                    "expires": year,
                },
                time=T0,
            )
        for who, org in (
            (PH, "hanbit-pharmacy"),
            (PH2, "other-pharmacy"),
            ("third-pharmacy.ph-yu", "third-pharmacy"),
        ):
            self.ok(
                "credentials.register_pharmacist@1",
                f"{org}.admin",
                {"account": who, "licence": "KR-PH-1", "expires": year},
                time=T0,
            )

    def apply(self, kind: str, sender: str, args: dict[str, Any], *, time: int) -> str:
        self.height += 1
        return self.sb.apply(kind, sender, args, height=self.height, time=time)

    def ok(self, kind: str, sender: str, args: dict[str, Any], *, time: int) -> str:
        return self.apply(kind, sender, args, time=time)

    def refused(self, kind: str, sender: str, args: dict[str, Any], *, time: int) -> str:
        before = self.sb.state.writes()
        with pytest.raises(ContractError) as info:
            self.apply(kind, sender, args, time=time)
        assert self.sb.state.writes() == before, "a rejection changed state"
        return info.value.code

    def issue(self, *, sender: str = DR, time: int = T0 + DAY, **over: Any) -> str:
        return self.ok("prescriptions.issue@1", sender, rx_args(**over), time=time)

    def dispense(self, rx: str, quantity: int, *, by: str = PH, time: int, **over: Any) -> str:
        args = {"id": rx, "patient": "pt-one", "quantity": quantity, **over}
        return self.ok("prescriptions.dispense@1", by, args, time=time)

    def refuse_dispense(
        self, rx: str, quantity: int, *, by: str = PH, time: int, **over: Any
    ) -> str:
        args = {"id": rx, "patient": "pt-one", "quantity": quantity, **over}
        return self.refused("prescriptions.dispense@1", by, args, time=time)

    def rx(self, rx_id: str) -> Any:
        return find_prescription(self.sb.state, rx_id)


def rx_args(**over: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "patient": "pt-one",
        "medication": OXY,
        "schedule": "II",
        "quantity": 60,
        "days_supply": 10,
        "refills": 0,
        "earliest_fill": T0 + DAY,
        "expires": T0 + 60 * DAY,
        "digest": DIGEST,
    }
    args.update(over)
    return {k: v for k, v in args.items() if v is not None}


@pytest.fixture
def w() -> World:
    return World()


# -- DEA check digit -------------------------------------------------------------------------


@pytest.mark.parametrize("number", ["AB1234563", "BC1234563", "FH1234563", "MK0000000"])
def test_dea_number_valid(number: str) -> None:
    assert check_dea_number(number)


@pytest.mark.parametrize(
    "number", ["AB1234564", "AB123456", "ab1234563", "A11234563", "AB12345630", "AB123456X", ""]
)
def test_dea_number_invalid_negative_control(number: str) -> None:
    assert not check_dea_number(number)


@given(st.lists(st.integers(0, 9), min_size=6, max_size=6))
def test_dea_check_digit_property(d: list[int]) -> None:
    check = (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10
    base = "AB" + "".join(map(str, d))
    assert check_dea_number(base + str(check))
    assert not check_dea_number(base + str((check + 1) % 10))


# -- credentials -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "sender", "args", "code"),
    [
        (
            "register_prescriber",
            "seoul-general.admin",
            {"account": "seoul-general.dr-lim", "number": "AB1234564", "schedules": ["II"]},
            "bad_registration_number",
        ),
        (
            "register_prescriber",
            "seoul-general.admin",
            {"account": "seoul-general.clerk", "number": "AB1234563", "schedules": ["II"]},
            "not_a_prescriber",
        ),
        (
            "register_prescriber",
            "hanbit-pharmacy.admin",
            {"account": "seoul-general.dr-lim", "number": "AB1234563", "schedules": ["II"]},
            "unauthorized",
        ),
        (
            "register_prescriber",
            "seoul-general.admin",
            {"account": "seoul-general.dr-lim", "number": "AB1234563", "schedules": ["I"]},
            "bad_args",
        ),
        (
            "register_prescriber",
            "seoul-general.admin",
            {
                "account": "seoul-general.dr-lim",
                "number": "AB1234563",
                "schedules": ["II"],
                "expires": T0 - 1,
            },
            "bad_args",
        ),
        (
            "register_pharmacy",
            "seoul-general.admin",
            {"org": "seoul-general", "number": "AB1234563", "schedules": ["II"]},
            "not_a_pharmacy",
        ),
        (
            "register_pharmacist",
            "hanbit-pharmacy.admin",
            {"account": "hanbit-pharmacy.tech", "licence": "x"},
            "not_a_pharmacist",
        ),
        (
            "register_pharmacist",
            "other-pharmacy.admin",
            {"account": "hanbit-pharmacy.ph-new", "licence": "x"},
            "unauthorized",
        ),
    ],
)
def test_credential_rejections(
    w: World, kind: str, sender: str, args: dict[str, Any], code: str
) -> None:
    args = {"expires": T0 + 30 * DAY, **args}
    assert w.refused(f"credentials.{kind}@1", sender, args, time=T0 + 1) == code


def test_pharmacist_needs_registered_pharmacy() -> None:
    w = World()
    w.sb.state.put(
        "org/new-pharmacy",
        {"id": "new-pharmacy", "name": "n", "roles": ["pharmacy"], "since": 0, "status": "active"},
    )
    w.sb.put_member("new-pharmacy.admin", "new-pharmacy", "admin")
    w.sb.put_member("new-pharmacy.ph", "new-pharmacy", "pharmacist")
    args = {"account": "new-pharmacy.ph", "licence": "x", "expires": T0 + DAY}
    code = w.refused("credentials.register_pharmacist@1", "new-pharmacy.admin", args, time=T0)
    assert code == "pharmacy_not_registered"


def test_credential_history_answers_validity_at_a_past_time(w: World) -> None:
    w.ok(
        "credentials.revoke@1",
        "seoul-general.admin",
        {"kind": "prescriber", "subject": DR, "reason": "surrendered"},
        time=T0 + 5 * DAY,
    )
    assert credential_at(w.sb.state, "prescriber", DR, T0 + DAY)["status"] == "active"  # type: ignore[index]
    assert credential_at(w.sb.state, "prescriber", DR, T0 + 6 * DAY)["status"] == "revoked"  # type: ignore[index]
    assert credential_at(w.sb.state, "prescriber", DR, T0 - 1) is None
    again = {"kind": "prescriber", "subject": DR, "reason": "again"}
    assert w.refused("credentials.revoke@1", "seoul-general.admin", again, time=T0 + 6 * DAY) == (
        "already_revoked"
    )
    assert (
        w.refused(
            "credentials.revoke@1",
            "seoul-general.admin",
            {"kind": "prescriber", "subject": "seoul-general.dr-lim", "reason": "x"},
            time=T0 + 6 * DAY,
        )
        == "no_registration"
    )


# -- issue -----------------------------------------------------------------------------------


def test_issue_writes_prescription_and_indexes(w: World) -> None:
    rx_id = w.issue()
    rx = w.rx(rx_id)
    assert rx["status"] == "active" and rx["patient"] == "pt-one" and rx["dispensed"] == 0
    assert rx["credential"]["number"] == "AB1234563"
    assert ids_of(w.sb.state, "rxidx/patient/pt-one") == [rx_id]
    assert ids_of(w.sb.state, f"rxidx/prescriber/{DR}") == [rx_id]
    assert w.sb.state.get(f"rxidx/prescriber/{DR}") == {"n": 1}
    assert w.sb.state.get(f"rxidx/prescriber/{DR}/000000") == [rx_id]


def _revoke_dr(w: World) -> None:
    w.ok(
        "credentials.revoke@1",
        "seoul-general.admin",
        {"kind": "prescriber", "subject": DR, "reason": "x"},
        time=T0 + DAY // 2,
    )


@pytest.mark.parametrize(
    ("sender", "over", "time", "code"),
    [
        ("seoul-general.clerk", {}, T0 + DAY, "not_a_prescriber"),
        ("seoul-general.dr-lim", {}, T0 + DAY, "no_registration"),
        (DR, {"expires": T0 + 400 * DAY}, T0 + 366 * DAY, "registration_expired"),
        ("seoul-general.dr-cho", {}, T0 + DAY, "schedule_not_authorized"),
        (DR, {"patient": "pt-nobody"}, T0 + DAY, "unknown_patient"),
        (DR, {"refills": 1}, T0 + DAY, "refills_not_allowed"),
        (DR, {"schedule": "III", "refills": 6}, T0 + DAY, "too_many_refills"),
        (DR, {"expires": T0 + DAY + 91 * DAY}, T0 + DAY, "validity_too_long"),
        (DR, {"pharmacy": "seoul-general"}, T0 + DAY, "pharmacy_not_registered"),
        (DR, {"digest": "AAAA"}, T0 + DAY, "bad_args"),
        (DR, {"schedule": "I"}, T0 + DAY, "bad_args"),
        (DR, {"quantity": 0}, T0 + DAY, "bad_args"),
        (
            DR,
            {"medication": {"rxnorm": "x1", "name": "a", "strength": "1", "form": "t"}},
            T0 + DAY,
            "bad_args",
        ),
        (DR, {"earliest_fill": T0 + 70 * DAY}, T0 + DAY, "bad_args"),
    ],
)
def test_issue_rejections(
    w: World, sender: str, over: dict[str, Any], time: int, code: str
) -> None:
    assert w.refused("prescriptions.issue@1", sender, rx_args(**over), time=time) == code


def test_issue_refused_after_revocation(w: World) -> None:
    _revoke_dr(w)
    assert w.refused("prescriptions.issue@1", DR, rx_args(), time=T0 + DAY) == (
        "registration_revoked"
    )


# -- dispense --------------------------------------------------------------------------------


def test_partial_fills_of_schedule_ii_and_exactly_once(w: World) -> None:
    rx = w.issue()
    w.dispense(rx, 20, time=T0 + 2 * DAY)
    assert verify_status(w.sb.state, rx, T0 + 2 * DAY)["remaining"] == 40
    assert w.refuse_dispense(rx, 41, time=T0 + 3 * DAY) == "quantity_exceeds_remaining"
    w.dispense(rx, 40, time=T0 + 3 * DAY)
    rec = w.rx(rx)
    assert rec["status"] == "completed" and rec["dispensed"] == 60 and len(rec["fills"]) == 2
    assert w.refuse_dispense(rx, 1, time=T0 + 4 * DAY) == "completed"


def test_partial_fill_window_of_schedule_ii(w: World) -> None:
    rx = w.issue()
    w.dispense(rx, 10, time=T0 + 2 * DAY)
    # issued at T0 + DAY; the rest must be dispensed before T0 + 31 days
    assert w.refuse_dispense(rx, 10, time=T0 + 31 * DAY) == "partial_fill_window_closed"
    w.dispense(rx, 10, time=T0 + 31 * DAY - 1)


@pytest.mark.parametrize(
    ("by", "over", "time", "code"),
    [
        ("hanbit-pharmacy.tech", {}, T0 + 2 * DAY, "not_a_pharmacist"),
        ("seoul-general.dr-kim", {}, T0 + 2 * DAY, "not_a_pharmacist"),
        ("hanbit-pharmacy.ph-new", {}, T0 + 2 * DAY, "no_registration"),
        (PH, {"patient": "pt-two"}, T0 + 2 * DAY, "patient_mismatch"),
        (PH, {}, T0 + DAY - 1, "too_early"),
        (PH, {}, T0 + 60 * DAY, "expired"),
        (PH, {"id": "00000000000000ff"}, T0 + 2 * DAY, "unknown_prescription"),
        (PH, {"quantity": 61}, T0 + 2 * DAY, "quantity_exceeds_remaining"),
        (PH, {"quantity": 0}, T0 + 2 * DAY, "bad_args"),
    ],
)
def test_dispense_rejections(w: World, by: str, over: dict[str, Any], time: int, code: str) -> None:
    rx = w.issue()
    before = w.rx(rx)
    qty = over.pop("quantity", 10)
    assert w.refuse_dispense(rx, qty, by=by, time=time, **over) == code
    assert w.rx(rx) == before


def test_dispense_refused_for_expired_pharmacist_registration(w: World) -> None:
    rx = w.issue()
    assert w.refuse_dispense(rx, 1, time=T0 + 365 * DAY) in ("registration_expired", "expired")
    w2 = World()
    rx2 = w2.issue(expires=T0 + 80 * DAY)
    w2.ok(
        "credentials.register_pharmacist@1",
        "hanbit-pharmacy.admin",
        {"account": PH, "licence": "x", "expires": T0 + 2 * DAY},
        time=T0 + DAY,
    )
    assert w2.refuse_dispense(rx2, 1, time=T0 + 3 * DAY) == "registration_expired"


def test_designated_pharmacy_mismatch(w: World) -> None:
    rx = w.issue(pharmacy="hanbit-pharmacy")
    assert w.refuse_dispense(rx, 10, by=PH2, time=T0 + 2 * DAY) == "pharmacy_mismatch"
    w.dispense(rx, 10, time=T0 + 2 * DAY)


def test_pharmacy_schedule_and_revocation(w: World) -> None:
    rx = w.issue()
    w.ok(
        "credentials.register_pharmacy@1",
        "other-pharmacy.admin",
        {
            "org": "other-pharmacy",
            "number": "FO1234563",
            "schedules": ["III", "IV", "V"],
            "expires": T0 + 100 * DAY,
        },
        time=T0 + DAY,
    )
    code = w.refuse_dispense(rx, 1, by=PH2, time=T0 + 2 * DAY)
    assert code == "pharmacy_schedule_not_authorized"
    w.ok(
        "credentials.revoke@1",
        "hanbit-pharmacy.admin",
        {"kind": "pharmacist", "subject": PH, "reason": "left"},
        time=T0 + 2 * DAY,
    )
    assert w.refuse_dispense(rx, 1, time=T0 + 3 * DAY) == "registration_revoked"


def test_refills_of_schedule_iv(w: World) -> None:
    rx = w.issue(
        medication=ALP,
        schedule="IV",
        quantity=30,
        days_supply=30,
        refills=2,
        expires=T0 + 170 * DAY,
    )
    w.dispense(rx, 30, time=T0 + 2 * DAY)
    # 75 % of 30 days = 22.5 days after the fill started
    due = T0 + 2 * DAY + 30 * DAY * 75 // 100
    assert verify_status(w.sb.state, rx, due - 1)["status"] == "not_yet_fillable"
    assert w.refuse_dispense(rx, 30, time=due - 1) == "early_refill"
    w.dispense(rx, 15, time=due)
    st_ = verify_status(w.sb.state, rx, due)
    assert (st_["remaining"], st_["refills_remaining"]) == (15, 1)
    w.dispense(rx, 15, time=due + 1)
    w.dispense(rx, 30, time=due + 30 * DAY)
    assert w.rx(rx)["status"] == "completed"
    assert w.refuse_dispense(rx, 1, time=due + 60 * DAY) == "completed"


def test_refill_window_closed(w: World) -> None:
    rules = dict(DEFAULT_RULES)
    rules["refill_window_days"] = {"II": 0, "III": 20, "IV": 20, "V": 20}
    w.sb.state.put("rules/prescriptions", validate_rules(rules))
    rx = w.issue(medication=ALP, schedule="IV", quantity=10, days_supply=5, refills=1)
    w.dispense(rx, 10, time=T0 + 2 * DAY)
    assert w.refuse_dispense(rx, 10, time=T0 + 21 * DAY) == "refill_window_closed"


# -- cancel and transfer ---------------------------------------------------------------------


def test_cancel(w: World) -> None:
    rx = w.issue()
    args = {"id": rx, "reason": "patient request"}
    assert w.refused("prescriptions.cancel@1", "seoul-general.dr-cho", args, time=T0 + 2 * DAY) == (
        "unauthorized"
    )
    w.ok("prescriptions.cancel@1", DR, args, time=T0 + 2 * DAY)
    assert verify_status(w.sb.state, rx, T0 + 2 * DAY)["status"] == "cancelled"
    assert w.refused("prescriptions.cancel@1", DR, args, time=T0 + 3 * DAY) == "cancelled"
    assert w.refuse_dispense(rx, 1, time=T0 + 3 * DAY) == "cancelled"


def test_transfer_rules(w: World) -> None:
    ii = w.issue(pharmacy="hanbit-pharmacy")
    args = {"id": ii, "to": "other-pharmacy"}
    assert w.refused("prescriptions.transfer@1", PH, args, time=T0 + 2 * DAY) == (
        "transfer_not_allowed"
    )
    iv = w.issue(medication=ALP, schedule="IV", quantity=30, days_supply=30, refills=2)
    args = {"id": iv, "to": "other-pharmacy"}
    assert w.refused("prescriptions.transfer@1", PH, args, time=T0 + 2 * DAY) == "not_held"
    w.dispense(iv, 30, time=T0 + 2 * DAY)
    assert w.refused("prescriptions.transfer@1", PH2, args, time=T0 + 3 * DAY) == "unauthorized"
    same = {"id": iv, "to": "hanbit-pharmacy"}
    assert w.refused("prescriptions.transfer@1", PH, same, time=T0 + 3 * DAY) == "same_pharmacy"
    w.ok("prescriptions.transfer@1", PH, args, time=T0 + 3 * DAY)
    assert w.rx(iv)["pharmacy"] == "other-pharmacy"
    late = T0 + 30 * DAY
    assert w.refuse_dispense(iv, 30, time=late) == "pharmacy_mismatch"
    w.dispense(iv, 30, by=PH2, time=late)
    again = {"id": iv, "to": "third-pharmacy"}
    assert w.refused("prescriptions.transfer@1", PH2, again, time=late) == "transfer_limit"


# -- verify ----------------------------------------------------------------------------------


def test_verify_status_lifecycle(w: World) -> None:
    rx = w.issue(earliest_fill=T0 + 3 * DAY)
    assert verify_status(w.sb.state, rx, T0 + 2 * DAY)["status"] == "not_yet_fillable"
    v = verify_status(w.sb.state, rx, T0 + 3 * DAY)
    assert v["status"] == "valid" and v["remaining"] == 60 and v["refills_remaining"] == 0
    assert v["prescriber"]["credential_at_issue"]["number"] == "AB1234563"  # type: ignore[index,call-overload]
    assert v["prescriber"]["credential_in_force_now"] is True  # type: ignore[index,call-overload]
    assert verify_status(w.sb.state, rx, T0 + 60 * DAY)["status"] == "expired"
    _revoke_dr(w)
    later = verify_status(w.sb.state, rx, T0 + 4 * DAY)
    assert later["prescriber"]["credential_in_force_now"] is False  # type: ignore[index,call-overload]
    with pytest.raises(NotFoundError):
        verify_status(w.sb.state, "0123456789abcdef", T0)


# -- rules -----------------------------------------------------------------------------------


def test_rules_validation() -> None:
    assert validate_rules({}) == DEFAULT_RULES
    merged = validate_rules({"pdmp": {"mme_threshold": 50}, "early_refill_percent": 80})
    assert merged["pdmp"]["mme_threshold"] == 50  # type: ignore[index,call-overload]
    assert merged["pdmp"]["window_days"] == 90  # type: ignore[index,call-overload]
    assert merged["early_refill_percent"] == 80
    for bad in (
        {"nope": 1},
        {"max_refills": {"II": 0}},
        {"early_refill_percent": 101},
        {"pdmp": {"mme_threshold": 0}},
        {"pdmp": {"legal_basis_roles": ["clerk"]}},
        {"mme_factors_milli": {"Oxy": 1}},
        {"benzodiazepines": ["Diazepam"]},
        {"transfer_schedules": ["I"]},
    ):
        with pytest.raises(ValidationError):
            validate_rules(bad)


# -- the prescription's link to its MedicationRequest stored off chain --------------------------


def _anchor_mr(w: World, rid: str = "mr-1", patient: str = "pt-one", digest: str = DIGEST) -> None:
    w.ok(
        "records.anchor@1",
        DR,
        {"org": "seoul-general", "type": "MedicationRequest", "id": rid, "version": 1,
         "digest": digest, "index": DIGEST, "patient": patient,
         "url": f"https://seoul-general.example/fhir/MedicationRequest/{rid}/_history/1"},
        time=T0 + DAY,
    )  # fmt: skip


LINK = {"org": "seoul-general", "id": "mr-1", "version": 1}


def test_issue_links_the_stored_medication_request(w: World) -> None:
    _anchor_mr(w)
    tx = w.issue(record=LINK)
    stored = w.sb.state.get(f"rx/{tx[:16]}")
    assert isinstance(stored, dict), tx
    assert stored["record"] == LINK and stored["digest"] == DIGEST
    unlinked = w.sb.state.get(f"rx/{w.issue()[:16]}")  # without a link: as before
    assert isinstance(unlinked, dict) and "record" not in unlinked


@pytest.mark.parametrize(
    ("setup", "link", "why"),
    [
        ("none", LINK, "no record"),
        ("other-patient", LINK, "another patient's record"),
        ("other-digest", LINK, "the digest is not the anchored one"),
        ("anchored", {**LINK, "version": 2}, "no such version"),
        ("anchored", {**LINK, "org": "hanbit-pharmacy"}, "another organisation"),
    ],
)
def test_issue_refuses_a_link_that_does_not_match(
    w: World, setup: str, link: dict[str, Any], why: str
) -> None:
    if setup == "other-patient":
        _anchor_mr(w, patient="pt-two")
    elif setup == "other-digest":
        _anchor_mr(w, digest=b64u_encode(bytes(32)))
    elif setup == "anchored":
        _anchor_mr(w)
    args = rx_args(record=link)
    assert w.refused("prescriptions.issue@1", DR, args, time=T0 + DAY) == "record_mismatch", why
