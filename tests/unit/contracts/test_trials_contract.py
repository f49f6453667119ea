"""The trial registry contract on an in-memory state (block heights and times chosen per test),
and the outcome comparison behind the switching report (property-checked, with a negative
control)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carechain.contracts.trials import outcome_changes, switching_report
from carechain.encoding import b64u_encode
from carechain.errors import ContractError
from carechain.testing.chain_driver import Sandbox

DAY = 86_400_000
T0 = 1_790_000_000_000
SPONSOR = "kbio"
PI = "kbio.pi"
OTHER = "other-sponsor.pi"
PATIENT = "pt-00000000000000000001"
PATIENT2 = "pt-00000000000000000002"
PRIMARY = [{"measure": "HbA1c change", "time_frame": "24 weeks"}]
SECONDARY = [{"measure": "Body weight", "time_frame": "24 weeks"}]


def digest(label: str) -> str:
    return b64u_encode(hashlib.sha256(label.encode()).digest())


def trial_args(**extra: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "id": "KCT0000001",
        "title": "Drug X in type 2 diabetes",
        "phase": "phase-3",
        "protocol": digest("protocol v1"),
        "primary": PRIMARY,
        "secondary": SECONDARY,
        "planned_enrolment": 300,
    }
    args.update(extra)
    return {k: v for k, v in args.items() if v is not None}


@pytest.fixture
def sb() -> Sandbox:
    sb = Sandbox()
    for org, roles in (
        (SPONSOR, ["research_sponsor"]),
        ("other-sponsor", ["research_sponsor"]),
        ("seoul-general", ["hospital"]),
    ):
        sb.state.put(
            f"org/{org}", {"id": org, "name": org, "roles": roles, "since": 0, "status": "active"}
        )
    sb.put_member(PI, SPONSOR, "researcher")
    sb.put_member("kbio.clerk", SPONSOR, "clerk")
    sb.put_member(OTHER, "other-sponsor", "researcher")
    sb.put_member("seoul-general.dr-kim", "seoul-general", "researcher")
    sb.put_patient(PATIENT)
    sb.put_patient(PATIENT2)
    sb.apply("trials.register@1", PI, trial_args(), height=1, time=T0)
    return sb


def research_consent(sb: Sandbox, patient: str = PATIENT, **extra: Any) -> str:
    args: dict[str, Any] = {
        "actions": ["read"],
        "decision": "permit",
        "grantee": {"org": SPONSOR},
        "period": {"start": T0, "end": T0 + 365 * DAY},
        "purposes": ["HRESCH"],
        "scope": {},
    }
    args.update(extra)
    return sb.apply("consent.grant@1", patient, args, height=2, time=T0 + DAY)


def code_of(sb: Sandbox, kind: str, sender: str, args: dict[str, Any], time: int = T0) -> str:
    before = dict(sb.state.writes())
    try:
        sb.apply(kind, sender, args, height=9, time=time)
    except ContractError as exc:
        assert dict(sb.state.writes()) == before, "a rejection must leave state unchanged"
        return exc.code
    return "ok"


def state(sb: Sandbox, key: str) -> Any:
    return sb.state.get(key)


# -- registration ------------------------------------------------------------------------------

REGISTER_CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    "ok": (PI, {"id": "KCT0000002"}, "ok"),
    "admin-of-org-ok": ("kbio.admin", {"id": "KCT0000003"}, "ok"),
    "clerk-may-not": ("kbio.clerk", {"id": "KCT0000004"}, "unauthorized"),
    "hospital-researcher": ("seoul-general.dr-kim", {"id": "KCT0000005"}, "unauthorized"),
    "patient": (PATIENT, {"id": "KCT0000006"}, "unauthorized"),
    "duplicate": (PI, {}, "duplicate_trial"),
    "bad-id": (PI, {"id": "x"}, "bad_args"),
    "bad-phase": (PI, {"id": "KCT0000007", "phase": "phase-5"}, "bad_args"),
    "no-primary": (PI, {"id": "KCT0000008", "primary": []}, "bad_args"),
    "outcome-extra-field": (
        PI,
        {"id": "KCT0000009", "primary": [{**PRIMARY[0], "unit": "%"}]},
        "bad_args",
    ),
    "measure-twice": (PI, {"id": "KCT0000010", "secondary": PRIMARY}, "bad_args"),
    "short-digest": (PI, {"id": "KCT0000011", "protocol": b64u_encode(b"x" * 16)}, "bad_args"),
    "zero-enrolment": (PI, {"id": "KCT0000012", "planned_enrolment": 0}, "bad_args"),
    "missing-title": (PI, {"id": "KCT0000013", "title": None}, "bad_args"),
    "unknown-field": (PI, {"id": "KCT0000014", "country": "KR"}, "bad_args"),
}


@pytest.mark.parametrize("case", sorted(REGISTER_CASES))
def test_register(sb: Sandbox, case: str) -> None:
    sender, extra, want = REGISTER_CASES[case]
    if sender == "kbio.admin":
        sb.put_member("kbio.admin", SPONSOR, "admin")
    assert code_of(sb, "trials.register@1", sender, trial_args(**extra)) == want


def test_registration_time_is_block_time(sb: Sandbox) -> None:
    trial = state(sb, "trial/KCT0000001")
    assert trial["registered"]["time"] == T0 and trial["registered"]["height"] == 1
    assert trial["sponsor"] == SPONSOR and trial["version"] == 1 and trial["enrolled"] == 0
    v1 = state(sb, "trialv/KCT0000001/1")
    assert v1["primary"] == PRIMARY and v1["flagged"] is False


# -- amendments --------------------------------------------------------------------------------

NEW_PRIMARY = [{"measure": "Fasting glucose", "time_frame": "12 weeks"}]


def test_amendment_before_enrolment_is_not_flagged(sb: Sandbox) -> None:
    sb.apply(
        "trials.amend@1",
        PI,
        {"trial": "KCT0000001", "reason": "protocol v2", "primary": NEW_PRIMARY},
        height=3,
        time=T0 + DAY,
    )
    v2 = state(sb, "trialv/KCT0000001/2")
    assert v2["reason"] == "protocol v2" and v2["flagged"] is False
    assert v2["secondary"] == SECONDARY and v2["title"] == "Drug X in type 2 diabetes"
    assert {c["change"] for c in v2["changes"]} == {"added", "dropped"}
    assert state(sb, "trial/KCT0000001")["version"] == 2


def test_primary_change_after_enrolment_is_flagged(sb: Sandbox) -> None:
    cid = research_consent(sb)
    sb.apply(
        "trials.enrol@1", PI, {"trial": "KCT0000001", "consent": cid}, height=3, time=T0 + 2 * DAY
    )
    sb.apply(
        "trials.amend@1",
        PI,
        {"trial": "KCT0000001", "reason": "title only", "title": "Drug X (T2DM)"},
        height=4,
        time=T0 + 3 * DAY,
    )
    assert state(sb, "trialv/KCT0000001/2")["flagged"] is False  # no primary change
    changed = [{"measure": "HbA1c change", "time_frame": "52 weeks"}]
    sb.apply(
        "trials.amend@1",
        PI,
        {"trial": "KCT0000001", "reason": "longer follow-up", "primary": changed},
        height=5,
        time=T0 + 4 * DAY,
    )
    v3 = state(sb, "trialv/KCT0000001/3")
    assert v3["flagged"] is True and v3["after_enrolment"] is True
    assert v3["changes"] == [
        {
            "change": "changed",
            "from": "24 weeks",
            "measure": "HbA1c change",
            "time_frame": "52 weeks",
        }
    ]
    assert state(sb, "trial/KCT0000001")["flags"] == 1


AMEND_CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    "non-sponsor": (OTHER, {"reason": "r", "title": "hijack"}, "unauthorized"),
    "hospital": ("seoul-general.dr-kim", {"reason": "r", "title": "x"}, "unauthorized"),
    "unknown-trial": (PI, {"trial": "KCT9999999", "reason": "r", "title": "x"}, "unknown_trial"),
    "no-change": (PI, {"reason": "r", "title": "Drug X in type 2 diabetes"}, "no_change"),
    "no-reason": (PI, {"title": "x"}, "bad_args"),
    "unknown-field": (PI, {"reason": "r", "id": "KCT0000002"}, "bad_args"),
    "ok": (PI, {"reason": "r", "planned_enrolment": 400}, "ok"),
}


@pytest.mark.parametrize("case", sorted(AMEND_CASES))
def test_amend(sb: Sandbox, case: str) -> None:
    sender, extra, want = AMEND_CASES[case]
    assert code_of(sb, "trials.amend@1", sender, {"trial": "KCT0000001", **extra}) == want


# -- enrolment ---------------------------------------------------------------------------------

ENROL_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "ok": ({}, "ok"),
    "treatment-consent": ({"purposes": ["TREAT"]}, "consent_not_research"),
    "deny-consent": ({"decision": "deny"}, "consent_not_research"),
    "other-grantee": ({"grantee": {"org": "other-sponsor"}}, "consent_wrong_grantee"),
    "grantee-member-ok": ({"grantee": {"account": PI}}, "ok"),
    "not-yet-valid": (
        {"period": {"start": T0 + 30 * DAY, "end": T0 + 60 * DAY}},
        "consent_inactive",
    ),
}


@pytest.mark.parametrize("case", sorted(ENROL_CASES))
def test_enrol(sb: Sandbox, case: str) -> None:
    extra, want = ENROL_CASES[case]
    cid = research_consent(sb, **extra)
    got = code_of(sb, "trials.enrol@1", PI, {"trial": "KCT0000001", "consent": cid}, T0 + DAY)
    assert got == want
    trial = state(sb, "trial/KCT0000001")
    assert trial["enrolled"] == (1 if want == "ok" else 0)


def test_enrol_rejections(sb: Sandbox) -> None:
    cid = research_consent(sb)
    args = {"trial": "KCT0000001", "consent": cid}
    assert code_of(sb, "trials.enrol@1", OTHER, args, T0 + DAY) == "unauthorized"
    assert code_of(sb, "trials.enrol@1", PI, {**args, "consent": "0" * 16}) == "unknown_consent"
    assert code_of(sb, "trials.enrol@1", PI, {**args, "trial": "K"}) == "bad_args"
    assert code_of(sb, "trials.enrol@1", PI, args, T0 + DAY) == "ok"
    assert code_of(sb, "trials.enrol@1", PI, args, T0 + DAY) == "already_enrolled"
    cid2 = research_consent(sb, PATIENT2)
    sb.apply("consent.revoke@1", PATIENT2, {"id": cid2}, height=5, time=T0 + DAY)
    assert code_of(sb, "trials.enrol@1", PI, {**args, "consent": cid2}) == "consent_revoked"
    trial = state(sb, "trial/KCT0000001")
    assert trial["enrolled"] == 1 and trial["status"] == "recruiting"
    # the enrolment record holds the consent and a number, never a name
    subject = state(sb, f"trialsubj/KCT0000001/{PATIENT}")
    assert subject == {"consent": cid, "height": 9, "n": 1, "time": T0 + DAY}


# -- serious adverse events --------------------------------------------------------------------


def enrolled(sb: Sandbox) -> Sandbox:
    cid = research_consent(sb)
    sb.apply("trials.enrol@1", PI, {"trial": "KCT0000001", "consent": cid}, height=3, time=T0 + DAY)
    return sb


SAE_CASES: dict[str, tuple[int, bool, int, bool | str]] = {
    # onset (days after T0), fatal, reported (days after onset), late?
    "serious-day-15": (2, False, 15, False),
    "serious-day-16": (2, False, 16, True),
    "fatal-day-7": (2, True, 7, False),
    "fatal-day-8": (2, True, 8, True),
    "same-day": (2, False, 0, False),
    "onset-before-registration": (-1, False, 3, "onset_before_registration"),
}


@pytest.mark.parametrize("case", sorted(SAE_CASES))
def test_sae_lateness(sb: Sandbox, case: str) -> None:
    enrolled(sb)
    onset_day, fatal, delay, want = SAE_CASES[case]
    onset = T0 + onset_day * DAY
    args = {
        "trial": "KCT0000001",
        "subject": 1,
        "onset": onset,
        "fatal": fatal,
        "category": "10019211",
    }
    got = code_of(sb, "trials.report_sae@1", PI, args, onset + delay * DAY)
    if isinstance(want, str):
        assert got == want
        return
    assert got == "ok"
    sae = state(sb, "trialsae/KCT0000001/1")
    assert sae["late"] is want and sae["days"] == delay
    assert state(sb, "trial/KCT0000001")["late_saes"] == (1 if want else 0)


def test_sae_rejections(sb: Sandbox) -> None:
    enrolled(sb)
    args = {
        "trial": "KCT0000001",
        "subject": 1,
        "onset": T0 + DAY,
        "fatal": False,
        "category": "10019211",
    }
    assert code_of(sb, "trials.report_sae@1", OTHER, args, T0 + 2 * DAY) == "unauthorized"
    assert code_of(sb, "trials.report_sae@1", PI, {**args, "subject": 2}) == "unknown_subject"
    assert code_of(sb, "trials.report_sae@1", PI, args, T0) == "onset_in_future"
    bad = {**args, "category": "a b"}
    assert code_of(sb, "trials.report_sae@1", PI, bad, T0 + 2 * DAY) == "bad_args"


def test_sae_window_is_data() -> None:
    sb = Sandbox()
    from carechain.contracts.trials import apply_genesis, trial_rules

    apply_genesis(sb.state, {"rules": {"trials": {"sae_report_days": 30}}})
    assert trial_rules(sb.state) == {"fatal_sae_report_days": 7, "sae_report_days": 30}
    from carechain.errors import ValidationError

    with pytest.raises(ValidationError):
        apply_genesis(Sandbox().state, {"rules": {"trials": {"sae_report_days": 0}}})
    with pytest.raises(ValidationError):
        apply_genesis(Sandbox().state, {"rules": {"trials": {"window": 3}}})


# -- results and the switching report ----------------------------------------------------------


def test_results_with_switched_primary_outcome(sb: Sandbox) -> None:
    enrolled(sb)
    reported = [{"measure": "Fasting glucose", "time_frame": "12 weeks"}]
    sb.apply(
        "trials.report_results@1",
        PI,
        {"trial": "KCT0000001", "primary": reported, "secondary": [], "data": digest("results")},
        height=6,
        time=T0 + 90 * DAY,
    )
    res = state(sb, "trialres/KCT0000001")
    assert {c["change"] for c in res["changes"]} == {"added", "dropped"}
    trial = state(sb, "trial/KCT0000001")
    assert trial["status"] == "reported" and trial["flags"] == 1
    report = switching_report(trial, [state(sb, "trialv/KCT0000001/1")], res)
    assert report["switched"] is True
    assert [(c["stage"], c["change"], c["measure"]) for c in report["changes"]] == [
        ("results", "added", "Fasting glucose"),
        ("results", "dropped", "HbA1c change"),
    ]
    # after results: no amendment, no enrolment, no second report
    assert (
        code_of(sb, "trials.amend@1", PI, {"trial": "KCT0000001", "reason": "r", "title": "t"})
        == "trial_reported"
    )
    again = {"trial": "KCT0000001", "primary": PRIMARY, "secondary": [], "data": digest("r")}
    assert code_of(sb, "trials.report_results@1", PI, again) == "trial_reported"


RESULT_CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    "unregistered-trial": (PI, {"trial": "KCT7777777"}, "unknown_trial"),
    "non-sponsor": (OTHER, {}, "unauthorized"),
    "no-primary": (PI, {"primary": []}, "bad_args"),
    "bad-digest": (PI, {"data": "not base64!"}, "bad_args"),
    "as-registered": (PI, {}, "ok"),
}


@pytest.mark.parametrize("case", sorted(RESULT_CASES))
def test_report_results(sb: Sandbox, case: str) -> None:
    sender, extra, want = RESULT_CASES[case]
    args = {
        "trial": "KCT0000001",
        "primary": PRIMARY,
        "secondary": SECONDARY,
        "data": digest("results"),
        **extra,
    }
    assert code_of(sb, "trials.report_results@1", sender, args) == want
    if want == "ok":
        assert state(sb, "trialres/KCT0000001")["changes"] == []


def test_report_names_when_each_switch_happened(sb: Sandbox) -> None:
    enrolled(sb)
    v2 = [*PRIMARY, {"measure": "Hypoglycaemia events", "time_frame": "24 weeks"}]
    sb.apply(
        "trials.amend@1",
        PI,
        {"trial": "KCT0000001", "reason": "add safety outcome", "primary": v2},
        height=7,
        time=T0 + 10 * DAY,
    )
    sb.apply(
        "trials.report_results@1",
        PI,
        {"trial": "KCT0000001", "primary": v2[1:], "secondary": [], "data": digest("r")},
        height=8,
        time=T0 + 99 * DAY,
    )
    trial = state(sb, "trial/KCT0000001")
    vs = [state(sb, f"trialv/KCT0000001/{n}") for n in (1, 2)]
    report = switching_report(trial, vs, state(sb, "trialres/KCT0000001"))
    assert [
        (c["stage"], c["change"], c["time"], c["after_enrolment"]) for c in report["changes"]
    ] == [
        ("amendment", "added", T0 + 10 * DAY, True),
        ("results", "dropped", T0 + 99 * DAY, True),
    ]
    assert report["net"] == [
        {"change": "dropped", "measure": "HbA1c change", "time_frame": "24 weeks"},
        {"change": "added", "measure": "Hypoglycaemia events", "time_frame": "24 weeks"},
    ]


# -- the comparison itself: complete (reconstructs ``after``) and it can fail -------------------

outcomes = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d", "e"]), st.sampled_from(["4w", "12w", "1y"]), max_size=5
)


def _apply(before: dict[str, str], changes: list[dict[str, Any]]) -> dict[str, str]:
    out = dict(before)
    for c in changes:
        if c["change"] == "dropped":
            del out[c["measure"]]
        else:
            out[c["measure"]] = c["time_frame"]
    return out


def _as_list(d: dict[str, str]) -> list[dict[str, str]]:
    return [{"measure": m, "time_frame": t} for m, t in d.items()]


@given(outcomes, outcomes)
def test_changes_reconstruct_the_new_outcomes(
    before: dict[str, str], after: dict[str, str]
) -> None:
    changes = outcome_changes(_as_list(before), _as_list(after))
    assert _apply(before, changes) == after
    assert (changes == []) == (before == after)


def test_negative_control_a_lossy_comparison_is_caught() -> None:
    def lossy(b: list[dict[str, str]], a: list[dict[str, str]]) -> list[dict[str, Any]]:
        return [c for c in outcome_changes(b, a) if c["change"] != "changed"]

    before, after = {"a": "4w"}, {"a": "1y"}
    assert _apply(before, lossy(_as_list(before), _as_list(after))) != after
