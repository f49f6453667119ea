"""``carechain rx issue|verify|dispense|cancel|transfer|pdmp|report``, and ``demo --rx``.

Every command signs in custodially (``--key NAME`` of the node's keyring; password from
``--password-file``, else ``$CARECHAIN_PASSWORD``, else a prompt) and calls the SDK's
:class:`~carechain.client.rx.RxClient`. A refused write prints the contract's reason and the
rejected receipt kept in its block, and exits 1 (2 invalid input, 3 not allowed, 4 not found).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from carechain.cli.common import exit_code_for, exit_with_error
from carechain.cli.options import JsonFlag, UrlOption, echo_json, make_client
from carechain.cli.records import KeyOption, PasswordFileOption, _prompt
from carechain.client import Client
from carechain.client.rx import RxClient
from carechain.contracts.identity import patient_account_id
from carechain.crypto.keystore import Keyring, resolve_password
from carechain.crypto.signatures import key_id
from carechain.encoding import b64u_decode, b64u_encode
from carechain.errors import ContractError, LedgerError
from carechain.node.chaindir import DEMO_PASSWORD

DAY_MS = 86_400_000
rx_app = typer.Typer(
    help="Controlled-substance e-prescriptions and the PDMP (custodial sign-in).",
    no_args_is_help=True,
)
out = Console(highlight=False, soft_wrap=True)


@contextmanager
def rx_errors() -> Iterator[None]:
    """End the command precisely on a refusal (naming the rejected receipt)."""
    try:
        yield
    except ContractError as exc:
        tx = getattr(exc, "tx", None)
        hint = f"rejected receipt {tx} kept in block {getattr(exc, 'height', '?')}" if tx else None
        exit_with_error(f"refused ({exc.code}): {exc}", hint, 1)
    except LedgerError as exc:
        exit_with_error(f"{exc} ({exc.code})", None, exit_code_for(exc))


@contextmanager
def session(url: str, key: str, password_file: Path | None) -> Iterator[RxClient]:
    """An :class:`RxClient` signed in as ``key``."""
    with rx_errors():
        password = resolve_password(password_file, prompt=_prompt(key))
        client = make_client(url)
        try:
            yield RxClient(client).login(key, password)
        finally:
            client.close()


def _ms(day: str | None, default: int) -> int:
    if day is None:
        return default
    try:
        d = dt.date.fromisoformat(day)
    except ValueError:
        exit_with_error(f"{day!r} is not a date (YYYY-MM-DD)")
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp() * 1000)


def _now() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp() * 1000)


def _receipt(result: dict[str, Any], as_json: bool, what: str) -> None:
    if as_json:
        echo_json(result)
        return
    extra = f" id {result['id']}" if "id" in result else ""
    out.print(f"{what}:{extra} committed in block {result['height']} (tx {result['tx'][:16]}…)")


def _status_line(v: dict[str, Any]) -> str:
    med = v["medication"]
    return (
        f"{v['id']}  {med['name']} {med['strength']} {med['form']}  schedule {v['schedule']}  "
        f"status {v['status'].upper()}  remaining {v['remaining']}/{v['quantity']}  "
        f"refills left {v['refills_remaining']}  prescriber {v['prescriber']['account']} "
        f"({v['prescriber']['credential_at_issue']['number']}, in force now: "
        f"{v['prescriber']['credential_in_force_now']})"
    )


@rx_app.command("issue")
def issue_cmd(
    key: KeyOption,
    url: UrlOption,
    patient: Annotated[str, typer.Option("--patient", help="Patient account (pseudonym).")],
    rxnorm: Annotated[str, typer.Option("--rxnorm")],
    name: Annotated[str, typer.Option("--name")],
    strength: Annotated[str, typer.Option("--strength")],
    schedule: Annotated[str, typer.Option("--schedule", help="II, III, IV or V.")],
    quantity: Annotated[int, typer.Option("--quantity")],
    days_supply: Annotated[int, typer.Option("--days-supply")],
    form: Annotated[str, typer.Option("--form")] = "tablet",
    refills: Annotated[int, typer.Option("--refills")] = 0,
    earliest: Annotated[str | None, typer.Option("--earliest", help="YYYY-MM-DD")] = None,
    valid_days: Annotated[int, typer.Option("--valid-days")] = 30,
    pharmacy: Annotated[str | None, typer.Option("--pharmacy")] = None,
    medication_request: Annotated[
        str | None,
        typer.Option(
            "--medication-request",
            metavar="ID",
            help="The MedicationRequest stored at your organisation (carechain records create): "
            "the prescription commits to its anchored digest, checked by the contract.",
        ),
    ] = None,
    password_file: PasswordFileOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Issue a prescription (signed by the prescriber)."""
    now = _now()
    start = _ms(earliest, now)
    medication = {"form": form, "name": name, "rxnorm": rxnorm, "strength": strength}
    body: dict[str, Any] = {
        "days_supply": days_supply,
        "earliest_fill": start,
        "expires": now + valid_days * DAY_MS,
        "medication": medication,
        "patient": patient,
        "quantity": quantity,
        "refills": refills,
        "schedule": schedule,
        # without --medication-request the CLI commits to the order's own fields
        "digest": b64u_encode(hashlib.sha256(repr(sorted(medication.items())).encode()).digest()),
    }
    if pharmacy:
        body["pharmacy"] = pharmacy
    with session(url, key, password_file) as rx, rx_errors():
        if medication_request is not None:
            org = (rx.account or "").split(".", 1)[0]
            body.update(rx.medication_request_link(org, medication_request))
        _receipt(rx.issue(body), as_json, "issued")


@rx_app.command("verify")
def verify_cmd(
    key: KeyOption,
    url: UrlOption,
    rx_id: Annotated[str, typer.Argument(metavar="ID")],
    password_file: PasswordFileOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Verify a prescription: status, remaining quantity and refills, prescriber."""
    with session(url, key, password_file) as rx, rx_errors():
        v = rx.verify(rx_id)
    if as_json:
        echo_json(v)
    else:
        out.print(escape(_status_line(v)))


@rx_app.command("dispense")
def dispense_cmd(
    key: KeyOption,
    url: UrlOption,
    rx_id: Annotated[str, typer.Argument(metavar="ID")],
    patient: Annotated[str, typer.Option("--patient")],
    quantity: Annotated[int, typer.Option("--quantity")],
    password_file: PasswordFileOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Dispense (a pharmacist of a registered pharmacy)."""
    with session(url, key, password_file) as rx, rx_errors():
        _receipt(rx.dispense(rx_id, patient, quantity), as_json, "dispensed")


@rx_app.command("cancel")
def cancel_cmd(
    key: KeyOption,
    url: UrlOption,
    rx_id: Annotated[str, typer.Argument(metavar="ID")],
    reason: Annotated[str, typer.Option("--reason")] = "cancelled by the prescriber",
    password_file: PasswordFileOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Cancel (the prescriber)."""
    with session(url, key, password_file) as rx, rx_errors():
        _receipt(rx.cancel(rx_id, reason), as_json, "cancelled")


@rx_app.command("transfer")
def transfer_cmd(
    key: KeyOption,
    url: UrlOption,
    rx_id: Annotated[str, typer.Argument(metavar="ID")],
    to: Annotated[str, typer.Option("--to", help="The receiving pharmacy organisation.")],
    password_file: PasswordFileOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Transfer to another pharmacy (schedules III–V, once)."""
    with session(url, key, password_file) as rx, rx_errors():
        _receipt(rx.transfer(rx_id, to), as_json, "transferred")


def print_pdmp(report: dict[str, Any], console: Console = out) -> None:
    """The PDMP report as text."""
    console.print(f"PDMP of {report['patient']} (audit entry {report['audit_entry'][:16]}…)")
    for row in report["prescriptions"]:
        med = row["medication"]
        mme = row.get("daily_mme_milli")
        dispensed = sum(d["quantity"] for d in row["dispenses"])
        console.print(
            escape(
                f"  {row['id']}  {med['name']} {med['strength']}  {row['class']}  "
                f"by {row['prescriber']}  dispensed {dispensed}/{row['quantity']}"
                + (f"  {mme / 1000:g} MME/day" if mme is not None else "")
            )
        )
    console.print(f"  max daily MME: {report['max_daily_mme_milli'] / 1000:g}")
    for flag in report["flags"]:
        console.print(f"  [bold red]FLAG[/] {flag['code']}: {escape(flag['detail'])}")
    if not report["flags"]:
        console.print("  no flags")


@rx_app.command("pdmp")
def pdmp_cmd(
    key: KeyOption,
    url: UrlOption,
    patient: Annotated[str, typer.Argument(metavar="PATIENT")],
    purpose: Annotated[str, typer.Option("--purpose")] = "TREAT",
    password_file: PasswordFileOption = None,
    as_json: JsonFlag = False,
) -> None:
    """A patient's controlled-substance history with risk flags (audited)."""
    with session(url, key, password_file) as rx, rx_errors():
        report = rx.pdmp(patient, purpose)
    if as_json:
        echo_json(report)
    else:
        print_pdmp(report)


@rx_app.command("report")
def report_cmd(
    key: KeyOption,
    url: UrlOption,
    day: Annotated[str, typer.Option("--day", help="YYYY-MM-DD (UTC)")],
    password_file: PasswordFileOption = None,
    as_json: JsonFlag = False,
) -> None:
    """The EPCS-style auditable events of a day (failed dispenses, credential changes, …)."""
    with session(url, key, password_file) as rx, rx_errors():
        report = rx.report(day)
    if as_json:
        echo_json(report)
        return
    out.print(f"auditable events of {day}: {len(report['events'])}")
    for e in report["events"]:
        when = dt.datetime.fromtimestamp(e["time"] / 1000, dt.UTC).strftime("%H:%M:%S")
        line = (
            f"  {when}  block {e['height']}  {e['event']}  {e.get('subject', '')}  by {e['sender']}"
        )
        if e.get("status") != "ok":
            line += f"  REFUSED {e['code']}"
        out.print(escape(line))


# -- carechain demo --rx --------------------------------------------------------------------------


def run_rx_demo(client: Client, console: Console, data_dir: Path) -> None:
    """Issue a schedule II oxycodone, fill part of it, refuse a double fill, query the PDMP.

    Uses the demo keyring in ``data_dir`` (dr-kim, ph-lee, patient-1; password ``demo``)."""
    pub = Keyring(data_dir).export_public("patient-1")
    patient = patient_account_id(key_id(str(pub["alg"]), b64u_decode(str(pub["pub"]))))
    password = DEMO_PASSWORD
    doctor = RxClient(client).login("dr-kim", password)
    pharmacist = RxClient(client).login("ph-lee", password)
    now = _now()
    console.rule("[bold]e-prescription: schedule II oxycodone")
    med = {
        "form": "tablet",
        "name": "oxycodone hydrochloride",
        "rxnorm": "1049621",
        "strength": "10 mg",
    }
    issued = doctor.issue(
        {
            "days_supply": 10,
            "digest": b64u_encode(hashlib.sha256(b"demo-order").digest()),
            "earliest_fill": now - 60_000,
            "expires": now + 30 * DAY_MS,
            "medication": med,
            "patient": patient,
            "quantity": 60,
            "refills": 0,
            "schedule": "II",
        }
    )
    rx_id = str(issued["id"])
    console.print(
        f"dr-kim issued {rx_id}: oxycodone 10 mg × 60 for 10 days (block {issued['height']})"
    )
    fill = pharmacist.dispense(rx_id, patient, 20)
    console.print(f"ph-lee dispensed a partial fill of 20 (block {fill['height']})")
    try:
        pharmacist.dispense(rx_id, patient, 60)
    except ContractError as exc:
        console.print(
            f"[green]refused[/] a second full fill: {exc.code} — rejected receipt "
            f"{str(getattr(exc, 'tx', ''))[:16]}… kept in block {getattr(exc, 'height', '?')}"
        )
    console.print(escape(_status_line(pharmacist.verify(rx_id))))
    console.rule("[bold]PDMP")
    try:
        doctor.pdmp(patient)
    except LedgerError as exc:
        console.print(f"without the patient's consent: refused ({exc.code}), and audited")
    patient_session = RxClient(client).login("patient-1", password)
    print_pdmp(patient_session.pdmp(patient), console)


__all__ = ["print_pdmp", "run_rx_demo", "rx_app"]
