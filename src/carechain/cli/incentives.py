"""``carechain incentives define|join|bind-device|attest|close|transfer|redeem|show|wallet``.

Writes are ``incentives.*`` transactions signed with keys of the local keyring (``--key``;
a wearable's key with ``--device``) through the SDK's
:class:`~carechain.client.incentives.IncentivesClient`; rejections exit like ``carechain
trials`` (3 unauthorized, 4 unknown_*, 5 duplicate_*/already_*, 2 other).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from carechain.cli.common import DirOption, exit_with_error
from carechain.cli.options import JsonFlag, UrlOption, echo_json
from carechain.cli.trials import KeyOption, PasswordFileOption, done, signer
from carechain.client.incentives import IncentivesClient, device_account
from carechain.crypto.keystore import Keyring, resolve_password

incentives_app = typer.Typer(
    help="Prevention incentives: programmes, wearables, attestations, points.",
    no_args_is_help=True,
)
DeviceOption = Annotated[
    str, typer.Option("--device", metavar="NAME", help="Keyring key of the wearable.")
]


def _device_key(data_dir: Path, name: str, password_file: Path | None) -> Any:
    password = resolve_password(
        password_file, prompt=lambda: typer.prompt(f"Password of key {name}", hide_input=True)
    )
    return Keyring(data_dir).load(name, password)


@incentives_app.command("define")
def define_cmd(
    file: Annotated[Path, typer.Argument(dir_okay=False, exists=True,
                                         help="Programme JSON (incentives.define@1 args).")],
    key: KeyOption,
    url: UrlOption,
    data_dir: DirOption,
    password_file: PasswordFileOption = None,
) -> None:  # fmt: skip
    """Define a programme from a JSON file (``id``, ``title``, ``period`` {start, end} ISO
    dates, ``grace_days``, ``rule`` {metric, threshold, min_days, points, per_extra_day, cap},
    ``budget``)."""
    try:
        args = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        exit_with_error(f"{file}: {exc}")
    with signer(url, data_dir, key, password_file) as s:
        done(IncentivesClient(s.client).define(s.account, s.key, args), f"defined {args.get('id')}")


@incentives_app.command("join")
def join_cmd(
    programme: Annotated[str, typer.Argument()],
    key: KeyOption,
    url: UrlOption,
    data_dir: DirOption,
    password_file: PasswordFileOption = None,
) -> None:
    """Join a programme (a patient)."""
    with signer(url, data_dir, key, password_file) as s:
        done(IncentivesClient(s.client).join(s.account, s.key, programme), "joined")


@incentives_app.command("bind-device")
def bind_cmd(
    device: DeviceOption,
    key: KeyOption,
    url: UrlOption,
    data_dir: DirOption,
    password_file: PasswordFileOption = None,
) -> None:
    """Bind a wearable's key to the patient (signed by both: proof of possession)."""
    with signer(url, data_dir, key, password_file) as s:
        dev = _device_key(data_dir, device, password_file)
        done(IncentivesClient(s.client).bind_device(s.account, s.key, dev),
             f"bound {device_account(dev)}")  # fmt: skip


@incentives_app.command("attest")
def attest_cmd(
    programme: Annotated[str, typer.Argument()],
    patient: Annotated[str, typer.Option("--patient", help="The device's patient.")],
    day: Annotated[str, typer.Option("--day", help="YYYY-MM-DD (UTC), an ended day.")],
    value: Annotated[int, typer.Option("--value", help="Steps (or minutes) that day.")],
    device: DeviceOption,
    url: UrlOption,
    data_dir: DirOption,
    password_file: PasswordFileOption = None,
) -> None:
    """One day's activity, signed by the wearable."""
    with signer(url, data_dir, None, None) as s:
        dev = _device_key(data_dir, device, password_file)
        done(IncentivesClient(s.client).attest(dev, programme, patient, day, value), "attested")


@incentives_app.command("close")
def close_cmd(
    programme: Annotated[str, typer.Argument()],
    key: KeyOption,
    url: UrlOption,
    data_dir: DirOption,
    password_file: PasswordFileOption = None,
) -> None:
    """Close a programme whose period ended and pay the awards from its budget."""
    with signer(url, data_dir, key, password_file) as s:
        done(IncentivesClient(s.client).close(s.account, s.key, programme), "closed")


@incentives_app.command("transfer")
def transfer_cmd(
    to: Annotated[str, typer.Option("--to", help="Recipient patient account.")],
    sponsor: Annotated[str, typer.Option("--sponsor", help="Issuer of the points.")],
    amount: Annotated[int, typer.Option("--amount")],
    key: KeyOption,
    url: UrlOption,
    data_dir: DirOption,
    password_file: PasswordFileOption = None,
) -> None:
    """Give points to another patient (no overdraft)."""
    with signer(url, data_dir, key, password_file) as s:
        inc = IncentivesClient(s.client)
        done(inc.transfer(s.account, s.key, to, sponsor, amount), "transferred")


@incentives_app.command("redeem")
def redeem_cmd(
    sponsor: Annotated[str, typer.Option("--sponsor")],
    amount: Annotated[int, typer.Option("--amount")],
    reward: Annotated[str, typer.Option("--reward", help="Reward code of the sponsor.")],
    key: KeyOption,
    url: UrlOption,
    data_dir: DirOption,
    password_file: PasswordFileOption = None,
) -> None:
    """Redeem points with the sponsor that issued them (they are burned)."""
    with signer(url, data_dir, key, password_file) as s:
        inc = IncentivesClient(s.client)
        done(inc.redeem(s.account, s.key, sponsor, amount, reward), "redeemed")


@incentives_app.command("show")
def show_cmd(
    programme: Annotated[str, typer.Argument()], url: UrlOption, data_dir: DirOption,
    as_json: JsonFlag = False,
) -> None:  # fmt: skip
    """A programme and its participants."""
    with signer(url, data_dir, None, None) as s:
        detail = IncentivesClient(s.client).programme(programme)
    if as_json:
        echo_json(detail)
        return
    p = detail["programme"]
    typer.echo(
        f"{p['id']} by {p['sponsor']}: {p['period']['start']}..{p['period']['end']} "
        f"{p['status']}, budget {p['budget']}, awarded {p['awarded']}"
    )
    for part in detail["participants"]:
        award = part["award"] if part["award"] is not None else f"~{part['projected']}"
        typer.echo(
            f"  {part['patient']}: {part['attested']} attested, "
            f"{part['qualifying_days']} qualifying, award {award}"
        )


@incentives_app.command("wallet")
def wallet_cmd(
    account: Annotated[str, typer.Argument()], url: UrlOption, data_dir: DirOption,
    as_json: JsonFlag = False,
) -> None:  # fmt: skip
    """Points of an account per sponsor."""
    with signer(url, data_dir, None, None) as s:
        w = IncentivesClient(s.client).wallet(account)
    if as_json:
        echo_json(w)
        return
    balances = ", ".join(f"{k}: {v}" for k, v in w["balances"].items()) or "no points"
    typer.echo(f"{account}: {balances}; {len(w['devices'])} device(s)")


__all__ = ["incentives_app"]
