"""The registry and incentive pages (server-rendered) over a chain seeded with real
transactions: the switching report on the trial page, proofs linking to the transactions,
the sponsor's programme page and the patient's wallet; 400/404 pages."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from carechain.api.app import create_app
from carechain.client.client import now_ms
from carechain.contracts.incentives import iso_date
from carechain.crypto.signatures import generate_key
from carechain.encoding import b64u_encode
from carechain.node.chaindir import DEMO_PASSWORD, InitResult
from carechain.node.trials import SPONSOR_ORG, admit_demo_sponsor_on
from carechain.testing.chain_driver import Chain, pub

TRIAL = "KCT0077777"
PRIMARY = [{"measure": "HbA1c change", "time_frame": "24 weeks"}]
SWITCHED = [{"measure": "Fasting glucose", "time_frame": "12 weeks"}]
DAY = 86_400_000


def digest(label: str) -> str:
    return b64u_encode(hashlib.sha256(label.encode()).digest())


def seed_trial(chain: Chain) -> None:
    """Registered, patient-1 enrolled, primary outcome switched, results reported."""
    admit_demo_sponsor_on(chain.node, chain.keys, DEMO_PASSWORD)
    pi, key = f"{SPONSOR_ORG}.dr-yoon", chain.key("dr-yoon")

    def run(kind: str, sender: str, args: dict[str, Any], k: Any) -> None:
        out = chain.run1(chain.tx(kind, sender, args, [k]))
        assert out.ok, out.receipt

    run(
        "trials.register@1",
        pi,
        {
            "id": TRIAL,
            "title": "Drug X in T2DM",
            "phase": "phase-3",
            "protocol": digest("p"),
            "primary": PRIMARY,
            "secondary": [],
            "planned_enrolment": 100,
        },
        key,
    )
    t = now_ms()
    grant = chain.grant(
        "patient-1",
        grantee={"org": SPONSOR_ORG},
        purposes=["HRESCH"],
        period={"start": t - 3_600_000, "end": t + DAY},
    )
    assert chain.run1(grant).ok
    run("trials.enrol@1", pi, {"trial": TRIAL, "consent": grant.tx_id.hex()[:16]}, key)
    run(
        "trials.amend@1",
        pi,
        {"trial": TRIAL, "reason": "sponsor decision", "primary": SWITCHED},
        key,
    )
    run(
        "trials.report_results@1",
        pi,
        {"trial": TRIAL, "primary": SWITCHED, "secondary": [], "data": digest("r")},
        key,
    )


def seed_programme(chain: Chain) -> str:
    """nhis-payer's two-day programme; patient-1 walks both days; closed. Returns patient."""
    today = now_ms() // DAY
    payer, pkey = chain.admin("nhis-payer")
    patient, p1 = chain.patient("patient-1")
    watch = generate_key()
    steps = [
        (
            "incentives.define@1",
            payer,
            {
                "id": "walk-web",
                "title": "Walk",
                "grace_days": 5,
                "period": {"start": iso_date(today - 2), "end": iso_date(today - 1)},
                "rule": {
                    "metric": "steps",
                    "threshold": 8000,
                    "min_days": 2,
                    "points": 70,
                    "per_extra_day": 0,
                    "cap": 70,
                },
                "budget": 500,
            },
            [pkey],
        ),
        ("incentives.join@1", patient, {"programme": "walk-web"}, [p1]),
        ("incentives.bind_device@1", patient, {"keys": [pub(watch)]}, [p1, watch]),
    ]
    for kind, sender, args, keys in steps:
        out = chain.run1(chain.tx(kind, sender, args, keys))
        assert out.ok, out.receipt
    device = f"dev-{watch.kid[:20]}"
    for n in (1, 2):
        args = {
            "programme": "walk-web",
            "patient": patient,
            "day": iso_date(today - n),
            "value": 9100,
        }
        assert chain.run1(chain.tx("incentives.attest@1", device, args, [watch])).ok
    assert chain.run1(chain.tx("incentives.close@1", payer, {"programme": "walk-web"}, [pkey])).ok
    return patient


@pytest.fixture
def web(chain: Chain, demo_chain: InitResult) -> Iterator[TestClient]:
    with TestClient(create_app(chain.node, data_dir=demo_chain.paths.root)) as http:
        yield http


def test_registry_pages(web: TestClient, chain: Chain) -> None:
    empty = web.get("/trials")
    assert empty.status_code == 200 and "No trial is registered yet" in empty.text
    seed_trial(chain)
    index = web.get("/trials")
    assert f'data-trial="{TRIAL}"' in index.text and "1 switch" in index.text
    page = web.get(f"/trials/{TRIAL}")
    assert page.status_code == 200
    html = page.text
    assert "primary outcome switched" in html
    assert 'data-change="added"' in html and 'data-change="dropped"' in html
    assert html.count('class="proof"') == 3  # v1, v2, results
    assert "switched after enrolment" in html
    assert "Content-Security-Policy" in page.headers
    assert web.get("/trials/KCT0000404").status_code == 404
    assert web.get("/trials/" + "x" * 41).status_code == 400


def test_incentive_pages(web: TestClient, chain: Chain) -> None:
    patient = seed_programme(chain)
    index = web.get("/incentives")
    assert 'data-programme="walk-web"' in index.text
    prog = web.get("/incentives/programmes/walk-web")
    assert prog.status_code == 200 and f'data-patient="{patient}"' in prog.text
    assert '<span id="status"' not in prog.text or "closed" in prog.text
    wallet = web.get(f"/incentives/wallets/{patient}")
    assert wallet.status_code == 200
    assert 'data-sponsor="nhis-payer">70 points' in wallet.text
    sponsor = web.get("/incentives/sponsors/nhis-payer")
    assert '<dd id="awarded">70</dd>' in sponsor.text
    assert web.get("/incentives/programmes/no-such").status_code == 404
    assert web.get("/incentives/programmes/BAD ID").status_code == 400
    assert web.get("/incentives/wallets/pt-nobody").status_code == 404
