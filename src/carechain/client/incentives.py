"""SDK for prevention incentives: sign ``incentives.*@1`` transactions and read programmes and
wallets.

A wearable is a key pair the SDK can hold (a device simulator, a phone relaying for a watch):
:meth:`IncentivesClient.bind_device` is signed by the patient *and* the device (proof of
possession); :meth:`IncentivesClient.attest` is signed by the device alone, as sender
``dev-<20 hex of its kid>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from carechain.client.client import Client
from carechain.client.models import Result
from carechain.crypto.signatures import PrivateKey
from carechain.encoding import JsonObject, b64u_encode
from carechain.errors import ValidationError
from carechain.ledger.tx import SignedTx

DEFINE = "incentives.define@1"
JOIN = "incentives.join@1"
BIND = "incentives.bind_device@1"
UNBIND = "incentives.unbind_device@1"
ATTEST = "incentives.attest@1"
CLOSE = "incentives.close@1"
TRANSFER = "incentives.transfer@1"
REDEEM = "incentives.redeem@1"


def device_account(key: PrivateKey) -> str:
    """The account id of the wearable holding ``key``."""
    return f"dev-{key.kid[:20]}"


class IncentivesClient:
    """Incentive programme operations over a :class:`Client`."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def _submit(
        self, kind: str, sender: str, args: JsonObject, keys: Sequence[PrivateKey]
    ) -> Result:
        (result,) = self.client.submit(self.client.build(kind, sender, args, list(keys)))
        return result

    # -- transactions ---------------------------------------------------------------------
    def define(self, sender: str, key: PrivateKey, programme: JsonObject) -> Result:
        """``incentives.define@1`` (``{id, title, period, grace_days, rule, budget}``)."""
        return self._submit(DEFINE, sender, programme, [key])

    def join(self, patient: str, key: PrivateKey, programme: str) -> Result:
        """``incentives.join@1``."""
        return self._submit(JOIN, patient, {"programme": programme}, [key])

    def bind_device(self, patient: str, key: PrivateKey, device: PrivateKey) -> Result:
        """``incentives.bind_device@1`` signed by the patient and the device."""
        args: JsonObject = {"keys": [{"alg": device.alg, "pub": b64u_encode(device.public)}]}
        return self._submit(BIND, patient, args, [key, device])

    def unbind_device(self, patient: str, key: PrivateKey, device: str) -> Result:
        """``incentives.unbind_device@1``: the device's key is revoked."""
        return self._submit(UNBIND, patient, {"device": device}, [key])

    def attestation(
        self, device: PrivateKey, programme: str, patient: str, day: str, value: int
    ) -> SignedTx:
        """A signed ``incentives.attest@1`` (submit one or many with ``client.submit``)."""
        args: JsonObject = {"programme": programme, "patient": patient, "day": day,
                            "value": value}  # fmt: skip
        return self.client.build(ATTEST, device_account(device), args, [device])

    def attest(
        self, device: PrivateKey, programme: str, patient: str, day: str, value: int
    ) -> Result:
        """Sign and submit one day's attestation."""
        (result,) = self.client.submit(self.attestation(device, programme, patient, day, value))
        return result

    def close(self, sender: str, key: PrivateKey, programme: str) -> Result:
        """``incentives.close@1``: pay the period's awards."""
        return self._submit(CLOSE, sender, {"programme": programme}, [key])

    def transfer(self, patient: str, key: PrivateKey, to: str, sponsor: str, amount: int) -> Result:
        """``incentives.transfer@1`` (points of ``sponsor``; no overdraft)."""
        args: JsonObject = {"to": to, "sponsor": sponsor, "amount": amount}
        return self._submit(TRANSFER, patient, args, [key])

    def redeem(
        self, patient: str, key: PrivateKey, sponsor: str, amount: int, reward: str
    ) -> Result:
        """``incentives.redeem@1``: burn points with the sponsor that issued them."""
        args: JsonObject = {"sponsor": sponsor, "amount": amount, "reward": reward}
        return self._submit(REDEEM, patient, args, [key])

    # -- reads ----------------------------------------------------------------------------
    def programmes(self) -> list[Mapping[str, Any]]:
        """``GET /v1/incentives/programmes``."""
        return list(self.client.api.get_json("/v1/incentives/programmes")["programmes"])

    def programme(self, programme: str) -> Mapping[str, Any]:
        """``GET /v1/incentives/programmes/{id}``: the programme and its participants."""
        return dict(self.client.api.get_json(f"/v1/incentives/programmes/{_seg(programme)}"))

    def wallet(self, account: str) -> Mapping[str, Any]:
        """``GET /v1/incentives/wallets/{account}``: balances per sponsor, devices."""
        return dict(self.client.api.get_json(f"/v1/incentives/wallets/{_seg(account)}"))

    def balance(self, account: str, sponsor: str) -> int:
        """Points of ``sponsor`` held by ``account``."""
        return int(self.wallet(account)["balances"].get(sponsor, 0))

    def sponsor(self, org: str) -> Mapping[str, Any]:
        """``GET /v1/incentives/sponsors/{org}``."""
        return dict(self.client.api.get_json(f"/v1/incentives/sponsors/{_seg(org)}"))


def _seg(value: str) -> str:
    if not value or "/" in value or len(value) > 64:
        raise ValidationError(f"path segment: got {value[:80]!r}")
    return value


__all__ = ["IncentivesClient", "device_account"]
