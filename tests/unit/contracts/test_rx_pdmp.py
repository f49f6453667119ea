"""PDMP flags against hand-computed MME examples (CDC 2022 factors), with negative controls.

Worked examples (daily MME = mg per day × factor):

* oxycodone 10 mg, 60 tablets for 10 days: 60 mg/day × 1.5 = 90 MME (flag at ≥ 90);
* hydrocodone 5 mg, 28 tablets for 7 days: 20 mg/day × 1.0 = 20 MME;
  oxycodone 5 mg, 28 tablets for 7 days: 20 mg/day × 1.5 = 30 MME; together 50 (no flag);
* fentanyl 25 mcg/hr patch: 25 × 2.4 = 60 MME; tramadol 50 mg, 40 tablets for 10 days:
  200 mg/day × 0.2 = 40 MME; together 100 MME (flag);
* hydromorphone 2 mg, 6 a day: 12 mg/day × 5 = 60; methadone 10 mg, 3 a day: 30 × 4.7 = 141.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_rx_contracts import DAY, DR, PH, PH2, T0, World

from carechain.contracts.pdmp import daily_mme_milli, ingredient_of, parse_strength, pdmp_report
from carechain.contracts.prescriptions import DEFAULT_RULES, validate_rules

PH3 = "third-pharmacy.ph-yu"


def med(name: str, strength: str, form: str = "tablet") -> dict[str, str]:
    return {"rxnorm": "1", "name": name, "strength": strength, "form": form}


@pytest.mark.parametrize(
    ("medication", "quantity", "days", "want"),
    [
        (med("oxycodone hydrochloride", "10 mg"), 60, 10, 90_000),
        (med("hydrocodone bitartrate / acetaminophen", "5 mg"), 28, 7, 20_000),
        (med("oxycodone", "5 mg"), 28, 7, 30_000),
        (med("fentanyl", "25 mcg/hr", "transdermal patch"), 10, 30, 60_000),
        (med("tramadol hydrochloride", "50 mg"), 40, 10, 40_000),
        (med("hydromorphone", "2 mg"), 60, 10, 60_000),
        (med("methadone hydrochloride", "10 mg"), 90, 30, 141_000),
        (med("codeine sulfate", "30 mg"), 40, 10, 18_000),
        (med("morphine sulfate", "7.5 mg"), 40, 10, 30_000),
        (med("alprazolam", "0.5 mg"), 30, 30, None),
        (med("oxycodone", "ten mg"), 30, 30, None),
        (med("fentanyl", "25 mg"), 30, 30, None),
    ],
)
def test_daily_mme_hand_computed(
    medication: dict[str, str], quantity: int, days: int, want: int | None
) -> None:
    assert daily_mme_milli(medication, quantity, days, DEFAULT_RULES) == want


def test_parse_strength_and_ingredient() -> None:
    assert parse_strength("7.5 mg") == (7500, "mg")
    assert parse_strength("25 mcg/hr") == (25000, "mcg/hr")
    assert parse_strength("10MG tablet") == (10000, "mg")
    assert parse_strength("mg 10") is None
    assert ingredient_of("Oxycodone HCl", ["morphine", "oxycodone"]) == "oxycodone"
    assert ingredient_of("oxycodoneX", ["oxycodone"]) is None


def _flags(w: World, at: int, patient: str = "pt-one") -> dict[str, int]:
    return {f.code: f.value for f in pdmp_report(w.sb.state, patient, at).flags}


def issue(
    w: World,
    medication: dict[str, str],
    *,
    quantity: int,
    days: int,
    schedule: str = "II",
    sender: str = DR,
    time: int = T0 + DAY,
) -> str:
    return w.issue(
        sender=sender,
        time=time,
        medication=medication,
        quantity=quantity,
        days_supply=days,
        schedule=schedule,
        earliest_fill=time,
        expires=time + 60 * DAY,
    )


def test_high_mme_at_threshold_with_partial_fill_coverage() -> None:
    w = World()
    rx = issue(w, med("oxycodone", "10 mg"), quantity=60, days=10)
    w.dispense(rx, 20, time=T0 + 2 * DAY)  # covers ceil(10 × 20 / 60) = 4 days at 90 MME/day
    report = pdmp_report(w.sb.state, "pt-one", T0 + 3 * DAY)
    assert report.max_daily_mme_milli == 90_000
    assert _flags(w, T0 + 3 * DAY) == {"high_mme": 90_000}
    (row,) = report.prescriptions
    assert row["dispenses"] == [
        {"end": T0 + 6 * DAY, "pharmacy": "hanbit-pharmacy", "quantity": 20, "start": T0 + 2 * DAY}
    ]
    assert row["daily_mme_milli"] == 90_000 and row["class"] == "opioid"


def test_mme_sums_overlapping_supplies_below_threshold_negative_control() -> None:
    w = World()
    a = issue(w, med("hydrocodone", "5 mg"), quantity=28, days=7)
    b = issue(w, med("oxycodone", "5 mg"), quantity=28, days=7)
    w.dispense(a, 28, time=T0 + 2 * DAY)
    w.dispense(b, 28, time=T0 + 3 * DAY)
    report = pdmp_report(w.sb.state, "pt-one", T0 + 4 * DAY)
    assert report.max_daily_mme_milli == 50_000
    assert "high_mme" not in _flags(w, T0 + 4 * DAY)


def test_mme_patch_plus_tablets_over_threshold() -> None:
    w = World()
    f = issue(w, med("fentanyl", "25 mcg/hr", "transdermal patch"), quantity=10, days=30)
    t = issue(w, med("tramadol", "50 mg"), quantity=40, days=10, schedule="IV")
    w.dispense(f, 10, time=T0 + 2 * DAY)
    w.dispense(t, 40, time=T0 + 5 * DAY)
    assert _flags(w, T0 + 6 * DAY)["high_mme"] == 100_000
    # before the tramadol dispense only the patch counts
    assert pdmp_report(w.sb.state, "pt-one", T0 + 4 * DAY).max_daily_mme_milli == 60_000
    # threshold is data: raise it and the flag disappears
    w.sb.state.put("rules/prescriptions", validate_rules({"pdmp": {"mme_threshold": 120}}))
    assert "high_mme" not in _flags(w, T0 + 6 * DAY)


def test_opioid_benzodiazepine_overlap_and_negative_control() -> None:
    w = World()
    o = issue(w, med("oxycodone", "5 mg"), quantity=10, days=5)
    b = issue(w, med("alprazolam", "0.5 mg"), quantity=30, days=30, schedule="IV")
    w.dispense(o, 10, time=T0 + 2 * DAY)  # covers days 2..7
    w.dispense(b, 30, time=T0 + 8 * DAY)  # starts after the opioid ran out
    assert "opioid_benzodiazepine" not in _flags(w, T0 + 9 * DAY)
    w2 = World()
    o2 = issue(w2, med("oxycodone", "5 mg"), quantity=10, days=5)
    b2 = issue(w2, med("alprazolam", "0.5 mg"), quantity=30, days=30, schedule="IV")
    w2.dispense(o2, 10, time=T0 + 2 * DAY)
    w2.dispense(b2, 30, time=T0 + 4 * DAY)
    assert _flags(w2, T0 + 5 * DAY)["opioid_benzodiazepine"] == 1
    classes = {r["class"] for r in pdmp_report(w2.sb.state, "pt-one", T0 + 5 * DAY).prescriptions}
    assert classes == {"opioid", "benzodiazepine"}


def _more_prescribers(w: World, n: int) -> list[str]:
    out = []
    for i in range(n):
        who = f"seoul-general.dr-x{i}"
        w.sb.put_member(who, "seoul-general", "practitioner")
        w.ok(
            "credentials.register_prescriber@1",
            "seoul-general.admin",
            {
                "account": who,
                "number": "AB1234563",
                "schedules": ["II", "III", "IV", "V"],
                "expires": T0 + 365 * DAY,
            },
            time=T0,
        )
        out.append(who)
    return out


def test_many_prescribers_and_pharmacies() -> None:
    w = World()
    doctors = [DR, *_more_prescribers(w, 3)]
    rxs = [issue(w, med("codeine", "30 mg"), quantity=10, days=5, sender=d) for d in doctors[:3]]
    assert "many_prescribers" not in _flags(w, T0 + 2 * DAY)  # negative control: 3 < 4
    rxs.append(issue(w, med("codeine", "30 mg"), quantity=10, days=5, sender=doctors[3]))
    assert _flags(w, T0 + 2 * DAY)["many_prescribers"] == 4
    # outside the 90-day window the same prescriptions no longer count
    assert "many_prescribers" not in _flags(w, T0 + DAY + 91 * DAY)
    for rx, ph in zip(rxs, (PH, PH2, PH3), strict=False):
        w.dispense(rx, 10, by=ph, time=T0 + 2 * DAY)
    assert "many_pharmacies" not in _flags(w, T0 + 3 * DAY)
    w.sb.state.put("rules/prescriptions", validate_rules({"pdmp": {"max_pharmacies": 3}}))
    assert _flags(w, T0 + 3 * DAY)["many_pharmacies"] == 3


def test_report_is_per_patient_and_ignores_the_future() -> None:
    w = World()
    rx = issue(w, med("oxycodone", "10 mg"), quantity=60, days=10)
    w.dispense(rx, 60, time=T0 + 2 * DAY)
    assert pdmp_report(w.sb.state, "pt-two", T0 + 3 * DAY).prescriptions == ()
    assert pdmp_report(w.sb.state, "pt-one", T0).prescriptions == ()
    before_fill = pdmp_report(w.sb.state, "pt-one", T0 + DAY + 1)
    assert before_fill.max_daily_mme_milli == 0
    as_json: Any = pdmp_report(w.sb.state, "pt-one", T0 + 3 * DAY).to_json()
    assert as_json["flags"][0]["code"] == "high_mme"
