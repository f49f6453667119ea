"""SDK for e-prescriptions: issue, verify, dispense, cancel, transfer, PDMP, EPCS report.

:class:`RxClient` is one person's custodial session (``POST /v1/auth/login``) at a node. Writes
return the committed receipt (``{"tx", "height", "status": "ok", ...}``); a contract rejection
raises :class:`~carechain.errors.ContractError` whose ``code`` is the contract's reason and
whose ``tx`` / ``height`` attributes name the rejected receipt kept in the block.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from carechain.client._http import error_from_problem
from carechain.client.client import Client
from carechain.client.records import RecordsClient
from carechain.errors import ContractError, UnavailableError, ValidationError


def _contract_error(body: Mapping[str, Any]) -> ContractError:
    exc = ContractError(str(body.get("detail") or body.get("code")), code=str(body.get("code")))
    exc.tx = body.get("tx")  # type: ignore[attr-defined]
    exc.height = body.get("height")  # type: ignore[attr-defined]
    return exc


class RxClient:
    """Prescriptions through ``/v1/prescriptions`` and ``/v1/pdmp`` for one signed-in person."""

    def __init__(self, client: Client, token: str | None = None) -> None:
        self.client = client
        self._session = RecordsClient(client, token)

    @property
    def account(self) -> str | None:
        """The signed-in account."""
        return self._session.account

    def login(self, key_name: str, password: str | bytes) -> RxClient:
        """Custodial sign-in (see :meth:`RecordsClient.login`); returns ``self``."""
        self._session.login(key_name, password)
        return self

    def logout(self) -> None:
        """End the session."""
        self._session.logout()

    def _auth(self) -> dict[str, str]:
        return self._session._auth()

    def _call(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        """One request; a rejected receipt raises ContractError (with ``tx``, ``height``)."""
        api = self.client.api
        try:
            response = api.http.request(
                method,
                api.url(path),
                params=params or None,
                content=orjson.dumps(body) if body is not None else None,
                headers={**api.headers, **self._auth(), "content-type": "application/json"},
            )
        except httpx.TransportError as exc:
            raise UnavailableError(
                f"cannot reach {api.base_url}: {exc}", code="unreachable"
            ) from None
        if response.status_code == 422:
            try:
                payload = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                payload = None
            if isinstance(payload, dict) and payload.get("tx"):
                raise _contract_error(payload)
        if not 200 <= response.status_code < 300:
            raise error_from_problem(response.status_code, response.content, response.headers)
        return orjson.loads(response.content)

    def _write(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", path, dict(body)))

    # -- writes ---------------------------------------------------------------------------------
    def issue(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """``prescriptions.issue@1`` (the receipt carries the new ``id``)."""
        return self._write("/v1/prescriptions", args)

    def medication_request_link(self, org: str, rid: str) -> dict[str, Any]:
        """``{"digest", "record"}`` for issuing a prescription that commits to the
        MedicationRequest stored off chain as record ``org``/``rid`` (its latest anchored
        version); the contract checks the link (``record_mismatch``)."""
        path = f"/v1/records/{org}/MedicationRequest/{rid}"
        anchor = self.client.api.get_json(path)
        versions = anchor.get("versions") if isinstance(anchor, dict) else None
        if not isinstance(versions, list) or not versions:
            raise ValidationError(f"GET {path}: no anchored version", code="bad_response")
        latest = versions[-1]
        return {
            "digest": str(latest["digest"]),
            "record": {"id": rid, "org": org, "version": int(latest["version"])},
        }

    def dispense(self, rx_id: str, patient: str, quantity: int) -> dict[str, Any]:
        """``prescriptions.dispense@1``."""
        body = {"patient": patient, "quantity": quantity}
        return self._write(f"/v1/prescriptions/{rx_id}/dispense", body)

    def cancel(self, rx_id: str, reason: str) -> dict[str, Any]:
        """``prescriptions.cancel@1``."""
        return self._write(f"/v1/prescriptions/{rx_id}/cancel", {"reason": reason})

    def transfer(self, rx_id: str, to: str) -> dict[str, Any]:
        """``prescriptions.transfer@1``."""
        return self._write(f"/v1/prescriptions/{rx_id}/transfer", {"to": to})

    def register_credential(self, what: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """``credentials.*`` (``what``: prescriber, pharmacy, pharmacist, revoke)."""
        return self._write(f"/v1/credentials/{what}", args)

    # -- reads ----------------------------------------------------------------------------------
    def verify(self, rx_id: str) -> dict[str, Any]:
        """The verify answer (status, remaining, refills, the prescriber's registration)."""
        return dict(self._call("GET", f"/v1/prescriptions/{rx_id}"))

    def fhir(self, rx_id: str) -> dict[str, Any]:
        """The R5 Bundle: MedicationRequest and its MedicationDispenses."""
        return dict(self._call("GET", f"/v1/prescriptions/{rx_id}", format="fhir"))

    def pdmp(self, patient: str, purpose: str = "TREAT") -> dict[str, Any]:
        """The PDMP report with its flags (audited by the node)."""
        return dict(self._call("GET", f"/v1/pdmp/{patient}", purpose=purpose))

    def report(self, day: str) -> dict[str, Any]:
        """The EPCS-style auditable events of ``day`` (YYYY-MM-DD, UTC)."""
        return dict(self._call("GET", "/v1/prescriptions-report", day=day))


__all__ = ["RxClient"]
