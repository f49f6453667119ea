"""Read side of prevention incentives: programmes, participants, wallets, devices.

Reads committed state only. Accounts are pseudonyms and devices are keys: nothing here is
PHI, but a page showing a patient's wallet should still be shown to that patient.
"""

from __future__ import annotations

from typing import Any

import orjson

from carechain.contracts.incentives import (
    PROGRAMME_ID_RE,
    award_for,
    day_number,
    iso_date,
)
from carechain.errors import NotFoundError, ValidationError
from carechain.ledger.tx import ACCOUNT_RE
from carechain.storage.abc import LedgerStore

MAX_LIST = 500


def _obj(store: LedgerStore, key: str) -> dict[str, Any] | None:
    raw = store.find_state(key)
    if raw is None:
        return None
    value = orjson.loads(raw)
    return value if isinstance(value, dict) else None


def get_programme(store: LedgerStore, prog: str) -> dict[str, Any]:
    """The programme record (NotFoundError when unknown)."""
    if not PROGRAMME_ID_RE.match(prog):
        raise ValidationError(f"programme id: got {prog[:60]!r}", code="bad_id")
    rec = _obj(store, f"incprog/{prog}")
    if rec is None:
        raise NotFoundError(f"no incentive programme {prog}")
    return rec


def list_programmes(store: LedgerStore, limit: int = MAX_LIST) -> list[dict[str, Any]]:
    """Every programme, in id order."""
    out: list[dict[str, Any]] = []
    for _, raw in store.iter_state("incprog/"):
        if len(out) >= limit:
            break
        out.append(orjson.loads(raw))
    return out


def participants(store: LedgerStore, prog: dict[str, Any]) -> list[dict[str, Any]]:
    """Participants in join order: pseudonym, days attested, qualifying days, projected or
    paid award."""
    out = []
    for n in range(1, int(prog["participants"]) + 1):
        raw = store.find_state(f"incpartn/{prog['id']}/{n}")
        if raw is None:
            continue
        patient = str(orjson.loads(raw))
        part = _obj(store, f"incpart/{prog['id']}/{patient}") or {}
        days = [int(d) for d in part.get("days", [])]
        out.append(
            {
                "n": n,
                "patient": patient,
                "attested": int(part.get("attested", 0)),
                "qualifying_days": len(days),
                "days": [iso_date(d) for d in days],
                "projected": award_for(prog["rule"], len(days)),
                "award": part.get("award"),
            }
        )
    return out


def programme_detail(store: LedgerStore, prog_id: str) -> dict[str, Any]:
    """A programme with its participants and the period's length in days."""
    prog = get_programme(store, prog_id)
    period = prog["period"]
    days = day_number(period["end"]) - day_number(period["start"]) + 1
    return {"programme": prog, "days": days, "participants": participants(store, prog)}


def wallet(store: LedgerStore, account: str) -> dict[str, Any]:
    """Balances of ``account`` per sponsor, its programmes and bound devices."""
    if not ACCOUNT_RE.match(account):
        raise ValidationError(f"account: got {account[:80]!r}", code="bad_id")
    acct = _obj(store, f"acct/{account}")
    if acct is None:
        raise NotFoundError(f"account {account} is not registered")
    balances = _obj(store, f"incwallet/{account}") or {}
    programmes = []
    for _, raw in store.iter_state("incprog/"):
        prog = orjson.loads(raw)
        part = _obj(store, f"incpart/{prog['id']}/{account}")
        if part is not None:
            programmes.append(
                {"id": prog["id"], "title": prog["title"], "sponsor": prog["sponsor"],
                 "status": prog["status"], "attested": part.get("attested", 0),
                 "qualifying_days": len(part.get("days", [])), "award": part.get("award"),
                 "projected": award_for(prog["rule"], len(part.get("days", [])))}
            )  # fmt: skip
    devices = []
    for key, raw in store.iter_state("incdev/"):
        binding = orjson.loads(raw)
        if binding.get("patient") == account:
            devices.append({"kid": key.removeprefix("incdev/"), **binding})
    return {
        "account": account,
        "type": acct.get("type"),
        "balances": balances,
        "programmes": programmes,
        "devices": devices,
    }


def sponsor_totals(store: LedgerStore, org: str) -> dict[str, Any]:
    """Points a sponsor awarded and had redeemed, and its programmes."""
    totals = _obj(store, f"incsponsor/{org}") or {"awarded": 0, "redeemed": 0}
    progs = [p for p in list_programmes(store) if p["sponsor"] == org]
    return {"sponsor": org, **totals, "outstanding": totals["awarded"] - totals["redeemed"],
            "programmes": progs}  # fmt: skip


__all__ = [
    "get_programme",
    "list_programmes",
    "participants",
    "programme_detail",
    "sponsor_totals",
    "wallet",
]
