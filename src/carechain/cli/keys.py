"""``carechain keys``: create, list, show and export encrypted signing keys.

Keys live in ``<dir>/keys/<name>.key.json`` (see :mod:`carechain.crypto.keystore`). Only
``new`` needs a password: ``--password-file``, else ``$CARECHAIN_PASSWORD``, else a hidden
prompt asked twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from carechain.cli.common import DirOption, exit_with_error, handle_errors
from carechain.crypto.keystore import (
    PASSWORD_ENV,
    KeyFileInfo,
    Keyring,
    resolve_password,
)
from carechain.encoding import b64u_encode, canonical_bytes

keys_app = typer.Typer(
    help="Manage encrypted signing keys (Ed25519, ML-DSA-65) in DIR/keys/.",
    no_args_is_help=True,
)

Algorithm = Literal["ed25519", "ml-dsa-65"]
"""The algorithms offered on the command line (the signature registry's ALGORITHMS)."""

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="Local name of the key.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _prompt_new_password() -> str:
    text: str = typer.prompt("Password for the new key", hide_input=True, confirmation_prompt=True)
    return text


def _echo_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


@keys_app.command("new")
def new(
    name: NameArgument,
    data_dir: DirOption,
    alg: Annotated[Algorithm, typer.Option("--alg", help="Signature algorithm.")] = "ed25519",
    account: Annotated[
        str | None, typer.Option("--account", help="Ledger account id this key belongs to.")
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(
            "--password-file",
            dir_okay=False,
            help=f"Read the password from this file (else ${PASSWORD_ENV}, else prompt).",
        ),
    ] = None,
) -> None:
    """Generate a new key and store it encrypted (scrypt + AES-256-GCM), mode 0600."""
    keyring = Keyring(data_dir)
    with handle_errors():
        path = keyring.path(name)
        if path.exists():
            exit_with_error(
                f"a key named {name!r} already exists ({path})",
                "choose another name; existing keys are never overwritten",
                5,
            )
        password = resolve_password(password_file, prompt=_prompt_new_password)
        info = keyring.create(name, alg, password, account=account)
    typer.echo(f"created key {info.name} ({info.alg}, kid {info.kid}) in {path}")


@keys_app.command("list")
def list_keys(data_dir: DirOption, as_json: JsonOption = False) -> None:
    """List the keys in DIR/keys/ (public information only)."""
    keyring = Keyring(data_dir)
    with handle_errors():
        infos = keyring.list()
    if as_json:
        _echo_json([info.to_public_dict() for info in infos])
        return
    console = Console(highlight=False)
    if not infos:
        console.print(f"no keys in {escape(str(keyring.keys_dir))}")
        return
    table = Table(title=f"keys in {escape(str(keyring.keys_dir))}")
    table.add_column("name", no_wrap=True)
    table.add_column("alg", no_wrap=True)
    table.add_column("kid", no_wrap=True)
    table.add_column("account", overflow="fold")
    for info in infos:
        table.add_row(escape(info.name), info.alg, info.kid, escape(info.account or ""))
    console.print(table)


def _show_text(info: KeyFileInfo, path: Path) -> None:
    pub = b64u_encode(info.public)
    shown = pub if len(pub) <= 64 else f"{pub[:32]}…{pub[-16:]} ({len(info.public)} bytes)"
    console = Console(highlight=False)
    rows = [
        ("name", info.name),
        ("alg", info.alg),
        ("kid", info.kid),
        ("account", info.account or "-"),
        ("pub", shown),
        ("file", str(path)),
    ]
    for label, value in rows:
        console.print(f"[bold]{label:8}[/bold] {escape(value)}", soft_wrap=True)


@keys_app.command("show")
def show(name: NameArgument, data_dir: DirOption, as_json: JsonOption = False) -> None:
    """Show one key's public information (no password needed)."""
    keyring = Keyring(data_dir)
    with handle_errors():
        info = keyring.get_info(name)
        path = keyring.path(name)
    if as_json:
        _echo_json({**info.to_public_dict(), "file": str(path)})
    else:
        _show_text(info, path)


@keys_app.command("export-public")
def export_public(
    name: NameArgument,
    data_dir: DirOption,
    out: Annotated[
        Path | None,
        typer.Option("--out", dir_okay=False, help="Write the JSON to this file, not stdout."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
) -> None:
    """Print the public record {alg, kid, pub, name, account} as canonical JSON."""
    keyring = Keyring(data_dir)
    with handle_errors():
        record = keyring.export_public(name)
    data = canonical_bytes(record).decode("utf-8")
    if out is None:
        typer.echo(data)
        return
    if out.exists() and not force:
        exit_with_error(f"{out} already exists", "use --force to overwrite it", 5)
    try:
        out.write_text(data + "\n", encoding="utf-8")
    except OSError as exc:
        exit_with_error(f"cannot write {out}: {exc.strerror}", code=1)
    typer.echo(f"wrote public key {record['kid']} to {out}", err=True)
