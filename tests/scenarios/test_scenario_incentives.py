"""Incentive period scenarios through a real node: a programme over the last days, patients
whose wearables attest different months, the close, and the wallets; the chain re-verified from
genesis afterwards."""

from __future__ import annotations

import pytest

from carechain.client.client import now_ms
from carechain.contracts.incentives import iso_date
from carechain.crypto.signatures import generate_key
from carechain.testing.chain_driver import Chain, pub

DAY = 86_400_000
RULE = {
    "metric": "steps",
    "threshold": 8000,
    "min_days": 5,
    "points": 100,
    "per_extra_day": 20,
    "cap": 180,
}

SCENARIOS: dict[str, tuple[int, list[int], list[int], int]] = {
    # budget, qualifying days of patient-1 and patient-2 (of 10), balances after the close
    "both-qualify": (1000, [6], [10], 0),
    "one-short": (1000, [4], [7], 0),
    "budget-short": (150, [10], [10], 0),
}
WANT = {"both-qualify": (120, 180), "one-short": (0, 140), "budget-short": (75, 75)}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_period(chain: Chain, name: str) -> None:
    budget, (q1,), (q2,), _ = SCENARIOS[name]
    today = now_ms() // DAY
    payer, pkey = chain.admin("nhis-payer")
    defined = chain.run1(
        chain.tx(
            "incentives.define@1",
            payer,
            {
                "id": "ten-days",
                "title": "Ten days",
                "grace_days": 12,
                "budget": budget,
                "rule": RULE,
                "period": {"start": iso_date(today - 10), "end": iso_date(today - 1)},
            },
            [pkey],
        )
    )
    assert defined.ok, defined.receipt
    txs = []
    patients = []
    for name_, qualifying in (("patient-1", q1), ("patient-2", q2)):
        patient, key = chain.patient(name_)
        patients.append(patient)
        watch = generate_key()
        assert chain.run1(
            chain.tx("incentives.join@1", patient, {"programme": "ten-days"}, [key])
        ).ok
        bound = chain.run1(
            chain.tx("incentives.bind_device@1", patient, {"keys": [pub(watch)]}, [key, watch])
        )
        assert bound.ok, bound.receipt
        for n in range(1, 11):
            steps = 9000 if n <= qualifying else 100
            txs.append(
                chain.tx(
                    "incentives.attest@1",
                    f"dev-{watch.kid[:20]}",
                    {
                        "programme": "ten-days",
                        "patient": patient,
                        "day": iso_date(today - n),
                        "value": steps,
                    },
                    [watch],
                )
            )
    assert all(o.ok for o in chain.run(*txs))
    closed = chain.run1(chain.tx("incentives.close@1", payer, {"programme": "ten-days"}, [pkey]))
    assert closed.ok, closed.receipt
    got = tuple(int((chain.state(f"incwallet/{p}") or {}).get("nhis-payer", 0)) for p in patients)
    assert got == WANT[name]
    assert chain.state("incprog/ten-days")["awarded"] == sum(got) <= budget
    chain.verify()
