"""``fhir/trials_map.py``: the R5 ResearchStudy and ResearchSubject views validate with
``fhir.resources`` (R5) and carry the registry's data; an invalid view is caught (negative
control)."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.researchstudy import ResearchStudy
from fhir.resources.researchsubject import ResearchSubject
from pydantic import ValidationError

from carechain.fhir.trials_map import research_study, research_subject

TRIAL: dict[str, Any] = {
    "id": "KCT0000001",
    "sponsor": "kbio",
    "status": "reported",
    "enrolled": 2,
    "flags": 1,
}
VERSION: dict[str, Any] = {
    "version": 3,
    "title": "Drug X",
    "phase": "phase-3",
    "time": 1_790_000_000_000,
    "protocol": "AAAA",
    "planned_enrolment": 300,
    "primary": [{"measure": "HbA1c", "time_frame": "24 weeks"}],
    "secondary": [{"measure": "Weight", "time_frame": "24 weeks"}],
}


def test_research_study_is_valid_r5() -> None:
    study = ResearchStudy.model_validate(research_study(TRIAL, VERSION))
    assert study.status == "completed" and study.version == "3"
    assert study.phase.coding[0].code == "phase-3"
    kinds = [m.type[0].coding[0].code for m in study.outcomeMeasure]
    assert kinds == ["primary", "secondary"]
    assert study.recruitment.actualNumber == 2 and study.recruitment.targetNumber == 300
    assert study.extension[0].valueBoolean is True  # the switch flag


def test_research_subject_is_valid_r5_without_phi() -> None:
    subject = research_subject(
        "KCT0000001",
        "pt-0123456789abcdef0123",
        {"n": 1, "consent": "abcdef0123456789", "time": 1_790_000_000_000},
    )
    parsed = ResearchSubject.model_validate(subject)
    assert parsed.study.reference == "ResearchStudy/KCT0000001"
    assert parsed.subject.identifier.value == "pt-0123456789abcdef0123"
    assert parsed.consent[0].reference == "Consent/abcdef0123456789"


def test_negative_control_an_invalid_view_is_caught() -> None:
    bad = {k: v for k, v in research_study(TRIAL, VERSION).items() if k != "status"}
    with pytest.raises(ValidationError):  # status is required (1..1)
        ResearchStudy.model_validate(bad)
    wrong = {**research_study(TRIAL, VERSION), "recruitment": {"targetNumber": "many"}}
    with pytest.raises(ValidationError):
        ResearchStudy.model_validate(wrong)
