"""The incentives contract on an in-memory state: programmes, devices, attestations by day and
block time, awards at close (budget, cap, pro rata), transfers and redemption; date arithmetic
cross-checked against the standard library (the contract may not import ``datetime``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carechain.contracts.incentives import (
    apply_genesis,
    award_for,
    balance,
    day_number,
    device_account_id,
    incentive_rules,
    iso_date,
)
from carechain.encoding import b64u_encode
from carechain.errors import ContractError, ValidationError
from carechain.testing.chain_driver import Sandbox

DAY = 86_400_000
START, END = "2026-10-01", "2026-10-31"
AFTER_END = day_number("2026-11-01") * DAY + 3_600_000  # 01:00 UTC the day after the period
PAYER = "nhis-payer"
CLERK = "nhis-payer.clerk"
PT1 = "pt-00000000000000000001"
PT2 = "pt-00000000000000000002"
PT3 = "pt-00000000000000000003"
RULE = {
    "metric": "steps",
    "threshold": 8000,
    "min_days": 20,
    "points": 100,
    "per_extra_day": 10,
    "cap": 150,
}


def at(day: str, hours: int = 9) -> int:
    """Block time: ``hours`` UTC on ``day``."""
    return day_number(day) * DAY + hours * 3_600_000


def programme(**extra: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "id": "walk-oct",
        "title": "Walk 8,000 steps a day",
        "period": {"start": START, "end": END},
        "grace_days": 7,
        "rule": RULE,
        "budget": 10_000,
    }
    args.update(extra)
    return {k: v for k, v in args.items() if v is not None}


@pytest.fixture
def sb() -> Sandbox:
    sb = Sandbox()
    sb.state.put(
        f"org/{PAYER}",
        {"id": PAYER, "name": "payer", "roles": ["payer"], "since": 0, "status": "active"},
    )
    sb.put_org("seoul-general")
    sb.put_member(CLERK, PAYER, "clerk")
    sb.put_member("seoul-general.admin", "seoul-general", "admin")
    for pt in (PT1, PT2, PT3):
        sb.put_patient(pt)
    sb.apply("incentives.define@1", CLERK, programme(), height=1, time=at("2026-09-20"))
    return sb


def device_of(sb: Sandbox, patient: str = PT1) -> str:
    """Bind the sandbox's signing key as ``patient``'s wearable (proof of possession)."""
    key = sb._key
    sb.apply(
        "incentives.bind_device@1",
        patient,
        {"keys": [{"alg": key.alg, "pub": b64u_encode(key.public)}]},
        height=2,
        time=at("2026-09-25"),
    )
    return device_account_id(key.kid)


def code_of(sb: Sandbox, kind: str, sender: str, args: dict[str, Any], time: int) -> str:
    before = dict(sb.state.writes())
    try:
        sb.apply(kind, sender, args, height=9, time=time)
    except ContractError as exc:
        assert dict(sb.state.writes()) == before, "a rejection must leave state unchanged"
        return exc.code
    return "ok"


def attest(
    sb: Sandbox, device: str, day: str, steps: int, *, patient: str = PT1, time: int | None = None
) -> str:
    args = {"programme": "walk-oct", "patient": patient, "day": day, "value": steps}
    return code_of(sb, "incentives.attest@1", device, args, time or at("2026-11-01"))


# -- dates without datetime --------------------------------------------------------------------


@given(st.dates(min_value=dt.date(1970, 1, 1), max_value=dt.date(9999, 12, 31)))
def test_day_number_matches_the_standard_library(d: dt.date) -> None:
    assert day_number(d.isoformat()) == (d - dt.date(1970, 1, 1)).days
    assert iso_date(day_number(d.isoformat())) == d.isoformat()


@pytest.mark.parametrize("bad", ["2026-02-29", "2026-13-01", "2026-1-01", "1969-12-31", "x"])
def test_invalid_dates_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        day_number(bad)


# -- programme definition ----------------------------------------------------------------------

DEFINE_CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    "ok": (CLERK, {"id": "walk-nov"}, "ok"),
    "duplicate": (CLERK, {}, "duplicate_programme"),
    "hospital-admin": ("seoul-general.admin", {"id": "walk-nov"}, "unauthorized"),
    "patient": (PT1, {"id": "walk-nov"}, "unauthorized"),
    "bad-id": (CLERK, {"id": "Walk Nov"}, "bad_args"),
    "end-before-start": (CLERK, {"id": "w2", "period": {"start": END, "end": START}}, "bad_args"),
    "period-too-long": (
        CLERK,
        {"id": "w3", "period": {"start": "2026-01-01", "end": "2026-12-31"}},
        "bad_args",
    ),
    "grace-over-max": (CLERK, {"id": "w4", "grace_days": 46}, "bad_args"),
    "unknown-metric": (CLERK, {"id": "w5", "rule": {**RULE, "metric": "sleep"}}, "bad_args"),
    "min-days-over-period": (CLERK, {"id": "w6", "rule": {**RULE, "min_days": 32}}, "bad_args"),
    "zero-budget": (CLERK, {"id": "w7", "budget": 0}, "bad_args"),
    "rule-extra-field": (CLERK, {"id": "w8", "rule": {**RULE, "bonus": 1}}, "bad_args"),
    "bad-date": (CLERK, {"id": "w9", "period": {"start": "2026-02-30", "end": END}}, "bad_args"),
}


@pytest.mark.parametrize("case", sorted(DEFINE_CASES))
def test_define(sb: Sandbox, case: str) -> None:
    sender, extra, want = DEFINE_CASES[case]
    assert code_of(sb, "incentives.define@1", sender, programme(**extra), at("2026-09-21")) == want


def test_sponsor_roles_are_data() -> None:
    sb = Sandbox()
    apply_genesis(sb.state, {"rules": {"incentives": {"sponsor_roles": ["payer", "hospital"]}}})
    assert incentive_rules(sb.state)["sponsor_roles"] == ["hospital", "payer"]
    sb.put_org("seoul-general")
    sb.put_member("seoul-general.admin", "seoul-general", "admin")
    sb.apply("incentives.define@1", "seoul-general.admin", programme(), height=1, time=0)
    with pytest.raises(ValidationError):
        apply_genesis(Sandbox().state, {"rules": {"incentives": {"sponsor_roles": ["gym"]}}})
    with pytest.raises(ValidationError):
        apply_genesis(Sandbox().state, {"rules": {"incentives": {"max_grace_days": 0}}})


# -- joining and devices -----------------------------------------------------------------------


def test_join(sb: Sandbox) -> None:
    t = at("2026-10-02")
    assert code_of(sb, "incentives.join@1", PT1, {"programme": "walk-oct"}, t) == "ok"
    assert code_of(sb, "incentives.join@1", PT1, {"programme": "walk-oct"}, t) == "already_joined"
    assert code_of(sb, "incentives.join@1", PT1, {"programme": "nope"}, t) == "unknown_programme"
    assert code_of(sb, "incentives.join@1", CLERK, {"programme": "walk-oct"}, t) == "unauthorized"
    assert sb.state.get("incprog/walk-oct")["participants"] == 1  # type: ignore[index]


def test_bind_device(sb: Sandbox) -> None:
    device = device_of(sb)
    acct = sb.state.get(f"acct/{device}")
    assert acct == {
        "id": device,
        "keys": [sb._key.kid],
        "patient": PT1,
        "since": 2,
        "status": "active",
        "type": "device",
    }
    key = {"alg": sb._key.alg, "pub": b64u_encode(sb._key.public)}
    # a device belongs to one patient
    assert code_of(sb, "incentives.bind_device@1", PT2, {"keys": [key]}, 0) == "device_bound"
    assert code_of(sb, "incentives.bind_device@1", CLERK, {"keys": [key]}, 0) == "unauthorized"
    # the patient retires it: its key is revoked and it can never be bound again
    assert code_of(sb, "incentives.unbind_device@1", PT2, {"device": device}, 0) == "unauthorized"
    assert code_of(sb, "incentives.unbind_device@1", PT1, {"device": device}, 0) == "ok"
    assert sb.state.get(f"key/{sb._key.kid}")["status"] == "revoked"  # type: ignore[index]
    assert (
        code_of(sb, "incentives.unbind_device@1", PT1, {"device": device}, 0) == "already_unbound"
    )
    assert (
        code_of(sb, "incentives.unbind_device@1", PT1, {"device": "dev-x"}, 0) == "unknown_device"
    )


def test_bind_requires_the_device_signature(sb: Sandbox) -> None:
    from carechain.crypto.signatures import generate_key

    other = generate_key()
    key = {"alg": other.alg, "pub": b64u_encode(other.public)}
    assert code_of(sb, "incentives.bind_device@1", PT1, {"keys": [key]}, 0) == "unauthorized"


# -- attestations: one per device per day, inside the period and the window ----------------------


@pytest.fixture
def walking(sb: Sandbox) -> tuple[Sandbox, str]:
    sb.apply("incentives.join@1", PT1, {"programme": "walk-oct"}, height=3, time=at("2026-10-01"))
    return sb, device_of(sb)


ATTEST_CASES: dict[str, tuple[str, int, str]] = {
    # day attested, block time, expected code
    "first-day-next-morning": ("2026-10-01", at("2026-10-02", 0), "ok"),
    "last-day-within-grace": ("2026-10-31", at("2026-11-07", 23), "ok"),
    "grace-exceeded": ("2026-10-01", at("2026-10-09"), "attestation_late"),
    "day-not-over": ("2026-10-05", at("2026-10-05", 23), "day_not_over"),
    "future-day": ("2026-10-20", at("2026-10-05"), "day_not_over"),
    "before-period": ("2026-09-30", at("2026-10-02"), "outside_period"),
    "after-period": ("2026-11-01", at("2026-11-02"), "outside_period"),
    "malformed-day": ("2026-10-32", at("2026-11-02"), "bad_args"),
}


@pytest.mark.parametrize("case", sorted(ATTEST_CASES))
def test_attestation_window(walking: tuple[Sandbox, str], case: str) -> None:
    sb, device = walking
    day, time, want = ATTEST_CASES[case]
    assert attest(sb, device, day, 9000, time=time) == want


def test_attestation_rejections(walking: tuple[Sandbox, str]) -> None:
    sb, device = walking
    assert attest(sb, device, "2026-10-03", 9000, time=at("2026-10-04")) == "ok"
    assert attest(sb, device, "2026-10-03", 12000, time=at("2026-10-04")) == "duplicate_attestation"
    # a foreign device: bound to PT2, attesting for PT1
    sb.state.put(
        "acct/dev-foreign",
        {
            "id": "dev-foreign",
            "keys": [],
            "patient": PT2,
            "since": 0,
            "status": "active",
            "type": "device",
        },
    )
    assert attest(sb, "dev-foreign", "2026-10-04", 9000, time=at("2026-10-05")) == "foreign_device"
    # an org's device member is not a patient's wearable
    sb.put_member("seoul-general.watch", "seoul-general", "device")
    got = attest(sb, "seoul-general.watch", "2026-10-04", 9000, time=at("2026-10-05"))
    assert got == "unbound_device"
    # a device of a patient who has not joined
    sb.state.put(
        "acct/dev-pt3",
        {
            "id": "dev-pt3",
            "keys": [],
            "patient": PT3,
            "since": 0,
            "status": "active",
            "type": "device",
        },
    )
    got = attest(sb, "dev-pt3", "2026-10-04", 9000, patient=PT3, time=at("2026-10-05"))
    assert got == "not_participant"
    assert attest(sb, device, "2026-10-04", 10**6, time=at("2026-10-05")) == "bad_args"
    assert attest(sb, device, "2026-10-04", -1, time=at("2026-10-05")) == "bad_args"


# -- the period's close -------------------------------------------------------------------------


def month(sb: Sandbox, device: str, qualifying: int, *, patient: str = PT1) -> None:
    """``qualifying`` days of October at 9,000 steps, the rest at 3,000."""
    for d in range(1, 32):
        steps = 9000 if d <= qualifying else 3000
        day = f"2026-10-{d:02d}"
        nxt = iso_date(day_number(day) + 1)
        assert attest(sb, device, day, steps, patient=patient, time=at(nxt)) == "ok"


@pytest.mark.parametrize(
    ("qualifying", "award"),
    [(0, 0), (19, 0), (20, 100), (21, 110), (25, 150), (31, 150)],
)
def test_awards_follow_the_rule(walking: tuple[Sandbox, str], qualifying: int, award: int) -> None:
    sb, device = walking
    month(sb, device, qualifying)
    assert code_of(sb, "incentives.close@1", CLERK, {"programme": "walk-oct"}, AFTER_END) == "ok"
    assert balance(sb.state, PT1, PAYER) == award
    prog = sb.state.get("incprog/walk-oct")
    assert prog["awarded"] == award and prog["status"] == "closed"  # type: ignore[index]
    assert award_for(RULE, qualifying) == award


def test_budget_is_shared_pro_rata(sb: Sandbox) -> None:
    sb.apply(
        "incentives.define@1",
        CLERK,
        programme(id="tight", budget=200),
        height=1,
        time=at("2026-09-20"),
    )
    devices = {}
    for i, pt in enumerate((PT1, PT2, PT3)):
        sb.apply("incentives.join@1", pt, {"programme": "tight"}, height=3, time=at("2026-10-01"))
        devices[pt] = f"dev-{i}"
        sb.state.put(
            f"acct/dev-{i}",
            {
                "id": f"dev-{i}",
                "keys": [],
                "patient": pt,
                "since": 0,
                "status": "active",
                "type": "device",
            },
        )
        for d in range(1, 32):
            args = {"programme": "tight", "patient": pt, "day": f"2026-10-{d:02d}", "value": 9000}
            nxt = at(iso_date(day_number(args["day"]) + 1))
            assert code_of(sb, "incentives.attest@1", f"dev-{i}", args, nxt) == "ok"
    sb.apply("incentives.close@1", CLERK, {"programme": "tight"}, height=9, time=AFTER_END)
    # each is due 150, 450 in all, budget 200: 150 * 200 // 450 = 66 each
    assert [balance(sb.state, pt, PAYER) for pt in (PT1, PT2, PT3)] == [66, 66, 66]
    prog = sb.state.get("incprog/tight")
    assert prog["awarded"] == 198 <= prog["budget"]  # type: ignore[index]


def test_close_rules(walking: tuple[Sandbox, str]) -> None:
    sb, device = walking
    args = {"programme": "walk-oct"}
    last_day = at("2026-10-31", 23)
    assert code_of(sb, "incentives.close@1", CLERK, args, last_day) == "period_not_over"
    # others may close only once the grace days have passed too
    assert code_of(sb, "incentives.close@1", PT1, args, AFTER_END) == "period_not_over"
    assert code_of(sb, "incentives.close@1", PT1, args, at("2026-11-08")) == "ok"
    assert code_of(sb, "incentives.close@1", CLERK, args, at("2026-11-09")) == "programme_closed"
    assert attest(sb, device, "2026-10-31", 9000, time=at("2026-11-02")) == "programme_closed"
    assert code_of(sb, "incentives.join@1", PT2, args, at("2026-11-09")) == "programme_closed"
    assert code_of(sb, "incentives.close@1", CLERK, {"programme": "x-y-z"}, 0) == (
        "unknown_programme"
    )


# -- points: transfers and redemption, no overdraft ----------------------------------------------


def test_transfer_and_redeem(walking: tuple[Sandbox, str]) -> None:
    sb, device = walking
    month(sb, device, 31)
    sb.apply("incentives.close@1", CLERK, {"programme": "walk-oct"}, height=9, time=AFTER_END)
    t = AFTER_END
    send = {"to": PT2, "sponsor": PAYER, "amount": 50}
    assert code_of(sb, "incentives.transfer@1", PT1, send, t) == "ok"
    assert (balance(sb.state, PT1, PAYER), balance(sb.state, PT2, PAYER)) == (100, 50)
    over = {**send, "amount": 101}
    assert code_of(sb, "incentives.transfer@1", PT1, over, t) == "insufficient_points"
    other = {**send, "sponsor": "another-payer"}
    assert code_of(sb, "incentives.transfer@1", PT1, other, t) == "insufficient_points"
    assert code_of(sb, "incentives.transfer@1", PT1, {**send, "to": PT1}, t) == "unauthorized"
    assert code_of(sb, "incentives.transfer@1", PT1, {**send, "to": CLERK}, t) == "unauthorized"
    assert code_of(sb, "incentives.transfer@1", PT1, {**send, "amount": 0}, t) == "bad_args"
    assert code_of(sb, "incentives.transfer@1", CLERK, send, t) == "unauthorized"
    redeem = {"sponsor": PAYER, "amount": 80, "reward": "gym-voucher"}
    assert code_of(sb, "incentives.redeem@1", PT1, redeem, t) == "ok"
    assert balance(sb.state, PT1, PAYER) == 20
    assert code_of(sb, "incentives.redeem@1", PT1, redeem, t) == "insufficient_points"
    unknown = {**redeem, "sponsor": "nobody", "amount": 1}
    assert code_of(sb, "incentives.redeem@1", PT1, unknown, t) == "unknown_org"
    assert sb.state.get(f"incsponsor/{PAYER}") == {"awarded": 150, "redeemed": 80}


@given(st.lists(st.tuples(st.sampled_from([PT1, PT2]), st.integers(1, 200)), max_size=25))
def test_points_are_conserved_and_never_negative(moves: list[tuple[str, int]]) -> None:
    sb = Sandbox()
    sb.state.put(
        f"org/{PAYER}",
        {"id": PAYER, "name": "p", "roles": ["payer"], "since": 0, "status": "active"},
    )
    sb.put_patient(PT1)
    sb.put_patient(PT2)
    sb.state.put(f"incwallet/{PT1}", {PAYER: 300})
    for sender, amount in moves:
        to = PT2 if sender == PT1 else PT1
        try:
            sb.apply(
                "incentives.transfer@1",
                sender,
                {"to": to, "sponsor": PAYER, "amount": amount},
                height=1,
                time=0,
            )
        except ContractError as exc:
            assert exc.code == "insufficient_points"
        a, b = balance(sb.state, PT1, PAYER), balance(sb.state, PT2, PAYER)
        assert a >= 0 and b >= 0 and a + b == 300
