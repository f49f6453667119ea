"""Prevention incentives end to end through the real API and the SDK: a payer's programme over
the last 30 days, a patient's wearable bound with proof of possession, a month of signed daily
attestations, the close paying points, transfers and redemption — and every refusal the issue
lists (unbound or foreign device, double attestation, outside the period or window, transfer
over balance) as a precise error or a rejected receipt that changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from carechain.api.app import create_app
from carechain.client import Client
from carechain.client.client import now_ms
from carechain.client.incentives import IncentivesClient, device_account
from carechain.contracts.identity import patient_account_id
from carechain.contracts.incentives import iso_date
from carechain.crypto.keystore import Keyring
from carechain.crypto.signatures import PrivateKey, generate_key
from carechain.encoding import b64u_encode
from carechain.errors import AuthorizationError, NotFoundError, ValidationError
from carechain.node.chaindir import DEMO_PASSWORD, InitResult
from carechain.node.node import Node

PAYER = "nhis-payer"
SPONSOR = f"{PAYER}.admin"
PROG = "walk-30"
DAY = 86_400_000


@pytest.fixture
def client(demo_node: Node, demo_chain: InitResult, tmp_path: Path) -> Iterator[Client]:
    app = create_app(demo_node, data_dir=demo_chain.paths.root)
    with (
        TestClient(app) as http,
        Client("http://testserver", http=http, trust_file=tmp_path / "trust.json") as c,
    ):
        yield c


@pytest.fixture
def keys(demo_keys: Keyring) -> dict[str, PrivateKey]:
    names = ("nhis-payer-admin", "patient-1", "patient-2", "seoul-general-admin")
    return {n: demo_keys.load(n, DEMO_PASSWORD) for n in names}


@pytest.fixture
def inc(client: Client) -> IncentivesClient:
    return IncentivesClient(client)


def days_back(n: int) -> str:
    """The UTC date ``n`` days before today."""
    return iso_date(now_ms() // DAY - n)


def define(inc: IncentivesClient, keys: dict[str, PrivateKey], **extra: Any) -> Any:
    programme: dict[str, Any] = {
        "id": PROG,
        "title": "Walk 8,000 steps on 20 days",
        "grace_days": 40,
        "period": {"start": days_back(30), "end": days_back(1)},
        "rule": {
            "metric": "steps",
            "threshold": 8000,
            "min_days": 20,
            "points": 100,
            "per_extra_day": 10,
            "cap": 150,
        },
        "budget": 1000,
        **extra,
    }
    return inc.define(SPONSOR, keys["nhis-payer-admin"], programme)


@pytest.fixture
def walker(
    inc: IncentivesClient, keys: dict[str, PrivateKey]
) -> tuple[str, PrivateKey, PrivateKey]:
    """patient-1 in the programme with a bound wearable: (account, patient key, device key)."""
    assert define(inc, keys).ok
    p1 = keys["patient-1"]
    pt = patient_account_id(p1.kid)
    assert inc.join(pt, p1, PROG).ok
    device = generate_key()
    bound = inc.bind_device(pt, p1, device)
    assert bound.ok, bound
    return pt, p1, device


def test_a_month_of_attestations_pays_points(
    client: Client,
    inc: IncentivesClient,
    keys: dict[str, PrivateKey],
    walker: tuple[str, PrivateKey, PrivateKey],
) -> None:
    pt, p1, device = walker
    # 30 days, one signed attestation each, submitted as one batch: 24 days over 8,000 steps
    txs = [
        inc.attestation(device, PROG, pt, days_back(n), 9000 if n <= 24 else 4000)
        for n in range(1, 31)
    ]
    results = client.submit(txs)
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    detail = inc.programme(PROG)
    (part,) = detail["participants"]
    assert (part["attested"], part["qualifying_days"], part["projected"]) == (30, 24, 140)
    assert inc.balance(pt, PAYER) == 0  # nothing before the close
    closed = inc.close(SPONSOR, keys["nhis-payer-admin"], PROG)
    assert closed.ok, closed
    assert inc.balance(pt, PAYER) == 140
    prog = inc.programme(PROG)["programme"]
    assert (prog["status"], prog["awarded"]) == ("closed", 140)
    # transfer to another patient; redeem with the sponsor; the sponsor's totals
    p2 = patient_account_id(keys["patient-2"].kid)
    assert inc.transfer(pt, p1, p2, PAYER, 40).ok
    assert inc.redeem(pt, p1, PAYER, 100, "gym-voucher").ok
    assert (inc.balance(pt, PAYER), inc.balance(p2, PAYER)) == (0, 40)
    totals = inc.sponsor(PAYER)
    assert (totals["awarded"], totals["redeemed"], totals["outstanding"]) == (140, 100, 40)
    wallet = inc.wallet(pt)
    assert wallet["devices"][0]["device"] == device_account(device)
    assert wallet["programmes"][0]["award"] == 140


ATTEST_REJECTIONS: dict[str, str] = {
    "double": "duplicate_attestation",
    "after-period": "outside_period",
    "before-period": "outside_period",
    "foreign-device": "foreign_device",
    "org-device": "unbound_device",
    "not-joined": "not_participant",
}


@pytest.mark.parametrize("case", sorted(ATTEST_REJECTIONS))
def test_attestation_rejections(
    case: str,
    client: Client,
    inc: IncentivesClient,
    keys: dict[str, PrivateKey],
    walker: tuple[str, PrivateKey, PrivateKey],
) -> None:
    pt, _, device = walker
    assert inc.attest(device, PROG, pt, days_back(3), 9000).ok
    before = inc.programme(PROG)
    if case == "double":
        res = inc.attest(device, PROG, pt, days_back(3), 12000)
    elif case == "after-period":  # today: also not over yet (unit tests: day_not_over)
        res = inc.attest(device, PROG, pt, days_back(0), 9000)
    elif case == "before-period":
        res = inc.attest(device, PROG, pt, days_back(31), 9000)
    elif case in ("foreign-device", "not-joined"):
        p2 = keys["patient-2"]
        pt2 = patient_account_id(p2.kid)
        other = generate_key()
        assert inc.bind_device(pt2, p2, other).ok
        if case == "foreign-device":  # patient-2's watch speaks for patient-1
            res = inc.attest(other, PROG, pt, days_back(2), 9000)
        else:
            res = inc.attest(other, PROG, pt2, days_back(2), 9000)
    else:  # a hospital's registered device is not a patient's wearable
        watch = generate_key()
        reg = client.build(
            "identity.register_member@1",
            "seoul-general.admin",
            {
                "account": "seoul-general.ward-watch",
                "org": "seoul-general",
                "role": "device",
                "keys": [{"alg": watch.alg, "pub": b64u_encode(watch.public)}],
            },
            keys["seoul-general-admin"],
        )
        assert client.submit(reg)[0].ok
        tx = client.build(
            "incentives.attest@1",
            "seoul-general.ward-watch",
            {"programme": PROG, "patient": pt, "day": days_back(2), "value": 9000},
            watch,
        )
        (res,) = client.submit(tx)
    assert (res.status, res.code) == ("rejected", ATTEST_REJECTIONS[case]), res
    after = inc.programme(PROG)
    assert after["participants"] == before["participants"]


def test_unknown_and_unbound_device_keys_are_refused_at_submission(
    inc: IncentivesClient,
    keys: dict[str, PrivateKey],
    walker: tuple[str, PrivateKey, PrivateKey],
) -> None:
    pt, p1, device = walker
    stranger = generate_key()  # never bound: the node does not know its key
    with pytest.raises(ValidationError) as err:
        inc.attest(stranger, PROG, pt, days_back(2), 9000)
    assert err.value.code == "unknown_key"
    assert inc.unbind_device(pt, p1, device_account(device)).ok
    with pytest.raises(AuthorizationError) as denied:  # its key is revoked with the binding
        inc.attest(device, PROG, pt, days_back(2), 9000)
    assert denied.value.code == "revoked_key"
    # and a device key belongs to one patient: binding it again is refused
    p2 = keys["patient-2"]
    with pytest.raises(AuthorizationError):
        inc.bind_device(patient_account_id(p2.kid), p2, device)


def test_points_rejections(
    inc: IncentivesClient, keys: dict[str, PrivateKey], walker: tuple[str, PrivateKey, PrivateKey]
) -> None:
    pt, p1, _ = walker
    p2 = patient_account_id(keys["patient-2"].kid)
    over = inc.transfer(pt, p1, p2, PAYER, 1)
    assert (over.status, over.code) == ("rejected", "insufficient_points")
    early = inc.redeem(pt, p1, PAYER, 1, "gym-voucher")
    assert early.code == "insufficient_points"
    # the sponsor closes a period that has ended; no one closes it twice
    assert inc.close(SPONSOR, keys["nhis-payer-admin"], PROG).ok
    twice = inc.close(SPONSOR, keys["nhis-payer-admin"], PROG)
    assert twice.code == "programme_closed"
    # a hospital may not sponsor points (sponsor roles are genesis rules: payer by default)
    other = inc.define(
        "seoul-general.admin",
        keys["seoul-general-admin"],
        {
            "id": "hosp-walk",
            "title": "t",
            "grace_days": 1,
            "period": {"start": days_back(3), "end": days_back(1)},
            "rule": {
                "metric": "steps",
                "threshold": 1,
                "min_days": 1,
                "points": 1,
                "per_extra_day": 0,
                "cap": 1,
            },
            "budget": 1,
        },
    )
    assert other.code == "unauthorized"
    with pytest.raises(NotFoundError):
        inc.programme("hosp-walk")
    assert inc.wallet(pt)["balances"] == {}
