"""FHIR R5 views of on-chain prescriptions: ``MedicationRequest`` and ``MedicationDispense``.

Rendered from the ``rx/<id>`` state record (``contracts/prescriptions.py``), never from the
off-chain MedicationRequest; its keyed digest appears as ``MedicationRequest.identifier`` with
system :data:`DIGEST_SYSTEM`. Each resource is validated with ``fhir.resources`` (R5) before it
is returned.

Mapping (MedicationRequest):

=======================  ==================================================================
``id``                   the prescription id
``status``               active → ``active``; completed → ``completed``; cancelled →
                         ``cancelled``; an active one past ``expires`` → ``ended``
``intent``               ``order``
``medication.concept``   RxNorm coding (``http://www.nlm.nih.gov/research/umls/rxnorm``),
                         text = name, strength, form
``subject``              ``Patient/<patient account>`` (the pseudonym)
``requester``            ``Practitioner/<prescriber account>``
``authoredOn``           block time of the issuing transaction
``dispenseRequest``      validityPeriod (earliest fill → expires), numberOfRepeatsAllowed
                         (refills), quantity, expectedSupplyDuration (days), dispenser
                         (``Organization/<designated pharmacy>``)
``category``             the schedule, system :data:`SCHEDULE_SYSTEM`
=======================  ==================================================================

Each ``fills[i]`` becomes a MedicationDispense ``<id>-<n>`` (status ``completed``,
performer ``Practitioner/<pharmacist>``, location-free, ``authorizingPrescription`` →
``MedicationRequest/<id>``, quantity, ``whenHandedOver``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fhir.resources import get_fhir_model_class

from carechain.fhir._time import ms_to_instant

RXNORM_SYSTEM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SCHEDULE_SYSTEM = "https://carechain.dev/fhir/CodeSystem/controlled-substance-schedule"
DIGEST_SYSTEM = "urn:carechain:rx-digest"
TX_SYSTEM = "urn:carechain:tx"
_STATUS = {"active": "active", "completed": "completed", "cancelled": "cancelled"}


def _validated(data: dict[str, Any]) -> dict[str, Any]:
    model = get_fhir_model_class(str(data["resourceType"]))
    model.model_validate(data)
    return data


def _medication(rx: Mapping[str, Any]) -> dict[str, Any]:
    med = rx["medication"]
    return {
        "concept": {
            "coding": [{"system": RXNORM_SYSTEM, "code": med["rxnorm"], "display": med["name"]}],
            "text": f"{med['name']} {med['strength']} {med['form']}",
        }
    }


def medication_request(rx: Mapping[str, Any], *, at_time: int | None = None) -> dict[str, Any]:
    """The R5 MedicationRequest of prescription record ``rx`` (validated)."""
    status = _STATUS[str(rx["status"])]
    if status == "active" and at_time is not None and at_time >= int(rx["expires"]):
        status = "ended"
    dispense: dict[str, Any] = {
        "validityPeriod": {
            "start": ms_to_instant(int(rx["earliest_fill"])),
            "end": ms_to_instant(int(rx["expires"])),
        },
        "numberOfRepeatsAllowed": int(rx["refills"]),
        "quantity": {"value": int(rx["quantity"]), "unit": str(rx["medication"]["form"])},
        "expectedSupplyDuration": {
            "value": int(rx["days_supply"]),
            "unit": "days",
            "system": "http://unitsofmeasure.org",
            "code": "d",
        },
    }
    if "pharmacy" in rx:
        dispense["dispenser"] = {"reference": f"Organization/{rx['pharmacy']}"}
    data: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": str(rx["id"]),
        "identifier": [
            {"system": TX_SYSTEM, "value": str(rx["tx"])},
            {"system": DIGEST_SYSTEM, "value": str(rx["digest"])},
        ],
        "status": status,
        "intent": "order",
        "category": [
            {
                "coding": [
                    {
                        "system": SCHEDULE_SYSTEM,
                        "code": str(rx["schedule"]),
                        "display": f"Schedule {rx['schedule']}",
                    }
                ]
            }
        ],
        "medication": _medication(rx),
        "subject": {"reference": f"Patient/{rx['patient']}"},
        "authoredOn": ms_to_instant(int(rx["time"])),
        "requester": {"reference": f"Practitioner/{rx['prescriber']}"},
        "dispenseRequest": dispense,
    }
    if "cancelled" in rx:
        data["statusReason"] = {"text": str(rx["cancelled"].get("reason") or "cancelled")}
    return _validated(data)


def medication_dispenses(rx: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One R5 MedicationDispense per dispense of ``rx`` (validated), in order."""
    out = []
    for fill in rx["fills"]:
        data: dict[str, Any] = {
            "resourceType": "MedicationDispense",
            "id": f"{rx['id']}-{fill['n']}",
            "identifier": [{"system": TX_SYSTEM, "value": str(fill["tx"])}],
            "status": "completed",
            "medication": _medication(rx),
            "subject": {"reference": f"Patient/{rx['patient']}"},
            "performer": [{"actor": {"reference": f"Practitioner/{fill['pharmacist']}"}}],
            "authorizingPrescription": [{"reference": f"MedicationRequest/{rx['id']}"}],
            "quantity": {"value": int(fill["quantity"]), "unit": str(rx["medication"]["form"])},
            "whenHandedOver": ms_to_instant(int(fill["time"])),
            "note": [{"text": f"fill {fill['fill']} at Organization/{fill['pharmacy']}"}],
        }
        out.append(_validated(data))
    return out


def rx_bundle(rx: Mapping[str, Any], *, at_time: int | None = None) -> dict[str, Any]:
    """A ``collection`` Bundle: the MedicationRequest and its MedicationDispenses."""
    resources = [medication_request(rx, at_time=at_time), *medication_dispenses(rx)]
    return _validated(
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"fullUrl": f"urn:carechain:{r['resourceType']}/{r['id']}", "resource": r}
                for r in resources
            ],
        }
    )


__all__ = ["medication_dispenses", "medication_request", "rx_bundle"]
