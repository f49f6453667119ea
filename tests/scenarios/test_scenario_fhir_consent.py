"""Official R5 Consent examples become grants the consent contract accepts, on a real node.

The FHIR edge (carechain.fhir.consent_map) and the contract (consent.grant@1) were written
apart; this proves they agree on the grant's shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from carechain.fhir import consent_to_grant
from carechain.testing.chain_driver import Chain

R5 = Path(__file__).resolve().parents[1] / "vectors" / "fhir" / "r5"
MAPPABLE = (
    "Consent-consent-example-Out.json",
    "Consent-consent-example-notAuthor.json",
    "Consent-consent-example-notOrg.json",
    "Consent-consent-example-notThem.json",
)


def to_demo(reference: str) -> Mapping[str, str]:
    """Map the examples' references onto demo consortium members."""
    kind = reference.split("/")[0]
    if kind == "Practitioner":
        return {"account": "seoul-general.dr-kim"}
    return {"org": "hanbit-pharmacy"}


@pytest.mark.parametrize("name", MAPPABLE)
def test_official_consent_becomes_an_accepted_grant(chain: Chain, name: str) -> None:
    consent = json.loads((R5 / name).read_text())
    args = consent_to_grant(consent, resolve_actor=to_demo)
    patient, key = chain.patient("patient-1")
    out = chain.run1(chain.tx("consent.grant@1", patient, dict(args), [key]))
    assert out.ok, out.receipt


def test_a_grant_with_an_unknown_grantee_is_rejected(chain: Chain) -> None:
    """Negative control: the contract does check what the mapping produced."""
    consent = json.loads((R5 / MAPPABLE[0]).read_text())
    args = consent_to_grant(consent, resolve_actor=lambda _ref: {"org": "no-such-org"})
    patient, key = chain.patient("patient-1")
    out = chain.run1(chain.tx("consent.grant@1", patient, dict(args), [key]))
    assert not out.ok and out.code == "unknown_org"
