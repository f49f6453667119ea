"""FHIR R5 views of the trial registry: ``ResearchStudy`` (a trial at one version) and
``ResearchSubject`` (one enrolment). Read-only views built from state records; nothing here is
accepted as input.

ResearchStudy mapping:

=========================  ================================================================
``identifier``             the registry id (system :data:`TRIAL_SYSTEM`)
``version``                the registered version number
``title``, ``phase``       title; phase (``research-study-phase`` code)
``status``                 ``active`` (registered, recruiting), ``completed`` (results)
``date``                   the version's block time (registration time for version 1)
``associatedParty``        the sponsor organisation (role ``sponsor``)
``outcomeMeasure``         primary and secondary outcomes (``research-study-objective-type``),
                           the time frame as ``description``
``recruitment``            planned (``targetNumber``) and enrolled (``actualNumber``) counts
``relatedArtifact``        the protocol's keyed digest (``documentation``, carechain digest URI)
``extension``              ``outcome-switched`` when primary outcomes changed after enrolment
=========================  ================================================================

ResearchSubject: ``study`` → the trial, ``subject`` → the participant's pseudonymous account
(no PHI), ``consent`` → the research Consent, ``progress`` → enrolled at the block time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from carechain.fhir._time import ms_to_instant

TRIAL_SYSTEM = "urn:carechain:trial"
ACCOUNT_SYSTEM = "urn:carechain:account"
PHASE_SYSTEM = "http://hl7.org/fhir/research-study-phase"
OBJECTIVE_SYSTEM = "http://hl7.org/fhir/research-study-objective-type"
PARTY_ROLE_SYSTEM = "http://hl7.org/fhir/research-study-party-role"
SWITCH_EXTENSION = "urn:carechain:trials:outcome-switched"


def _outcomes(version: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for kind in ("primary", "secondary"):
        for o in version[kind]:
            out.append(
                {
                    "name": o["measure"],
                    "type": [{"coding": [{"system": OBJECTIVE_SYSTEM, "code": kind}]}],
                    "description": f"time frame: {o['time_frame']}",
                }
            )
    return out


def research_study(trial: Mapping[str, Any], version: Mapping[str, Any]) -> dict[str, Any]:
    """The R5 ResearchStudy of ``trial`` as registered in ``version``."""
    status = "completed" if trial["status"] == "reported" else "active"
    resource: dict[str, Any] = {
        "resourceType": "ResearchStudy",
        "id": trial["id"],
        "identifier": [{"system": TRIAL_SYSTEM, "value": trial["id"]}],
        "version": str(version["version"]),
        "title": version["title"],
        "status": status,
        "date": ms_to_instant(int(version["time"])),
        "phase": {"coding": [{"system": PHASE_SYSTEM, "code": version["phase"]}]},
        "associatedParty": [
            {
                "role": {"coding": [{"system": PARTY_ROLE_SYSTEM, "code": "sponsor"}]},
                "party": {"reference": f"Organization/{trial['sponsor']}"},
            }
        ],
        "outcomeMeasure": _outcomes(version),
        "recruitment": {
            "targetNumber": int(version["planned_enrolment"]),
            "actualNumber": int(trial["enrolled"]),
        },
        "relatedArtifact": [
            {
                "type": "documentation",
                "label": "protocol",
                "citation": f"keyed digest {version['protocol']}",
            }
        ],
    }
    if int(trial.get("flags", 0)):
        resource["extension"] = [{"url": SWITCH_EXTENSION, "valueBoolean": True}]
    return resource


def research_subject(trial_id: str, patient: str, subject: Mapping[str, Any]) -> dict[str, Any]:
    """The R5 ResearchSubject of one enrolment (``subject``: its ``trialsubj`` record)."""
    return {
        "resourceType": "ResearchSubject",
        "id": f"{trial_id}-{subject['n']}",
        "status": "active",
        "study": {"reference": f"ResearchStudy/{trial_id}"},
        "subject": {"identifier": {"system": ACCOUNT_SYSTEM, "value": patient}},
        "consent": [{"reference": f"Consent/{subject['consent']}"}],
        "progress": [
            {
                "type": {"text": "enrolment"},
                "subjectState": {"text": "on-study"},
                "startDate": ms_to_instant(int(subject["time"])),
            }
        ],
    }


__all__ = ["TRIAL_SYSTEM", "research_study", "research_subject"]
