"""``carechain tx`` (submit / new / show) and ``carechain block show``.

``tx submit`` sends envelope files verbatim (one envelope per file, or NDJSON: one per line);
``tx new`` builds and signs one with keys from the keyring; ``tx show`` and ``block show``
read from a node (``--url``) or offline from a chain directory (``--dir``). Text read from a
node is checked by the SDK (envelopes hash to their id, headers to their hash).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from carechain.cli.common import DirOption, exit_with_error, handle_errors
from carechain.cli.options import (
    JsonFlag,
    OptionalDirOption,
    UrlOption,
    echo_json,
    local_store,
    make_client,
)
from carechain.cli.render import (
    block_json,
    print_block,
    print_results,
    print_tx,
    results_json,
    tx_json,
)
from carechain.client import Block, BlockTx, Client, Result, TxRecord
from carechain.client.models import tx_id_bytes
from carechain.crypto.keystore import PASSWORD_ENV, Keyring, resolve_password
from carechain.errors import NotFoundError, ValidationError
from carechain.ledger.block import header_hash, parse_header
from carechain.ledger.genesis import Genesis
from carechain.ledger.tx import parse_envelope
from carechain.node.chaindir import ChainPaths
from carechain.storage import LedgerStore

tx_app = typer.Typer(help="Submit, build and show transactions.", no_args_is_help=True)
block_app = typer.Typer(help="Show blocks.", no_args_is_help=True)

EXIT_REJECTED = 1
"""``tx submit`` / ``tx new``: a transaction was committed with a ``rejected`` receipt."""


# -- local reads --------------------------------------------------------------------------


def _stored_json(data: bytes, what: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ValidationError(
            f"the stored {what} is not JSON: the store is damaged; run `carechain verify`"
        ) from None


def read_local_tx(store: LedgerStore, tx_id: bytes) -> TxRecord:
    """A committed transaction from the store (same shape as the SDK's)."""
    loc = store.find_tx(tx_id)
    if loc is None:
        raise NotFoundError(f"transaction {tx_id.hex()} is not in this ledger")
    raw = store.find_envelope(loc.log_index)
    receipt = store.find_receipt(loc.log_index)
    block = store.find_block(loc.height)
    if raw is None or receipt is None or block is None:
        raise NotFoundError(f"transaction {tx_id.hex()}: the store lacks its envelope or block")
    return TxRecord(
        tx_id=tx_id,
        height=loc.height,
        position=loc.position,
        log_index=loc.log_index,
        block_hash=header_hash(block.header),
        envelope=raw,
        tx=parse_envelope(raw),
        receipt=_stored_json(receipt, f"receipt of transaction {tx_id.hex()}"),
    )


def read_local_block(store: LedgerStore, genesis: Genesis, height: int) -> Block:
    """A block from the store (same shape as the SDK's)."""
    stored = store.find_block(height)
    if stored is None:
        head = store.head_height()
        raise NotFoundError(f"no block {height} in this ledger (head is {head})")
    header = genesis.header if height == 0 else parse_header(stored.header)
    txs = []
    for raw, receipt_raw in zip(stored.envelopes, stored.receipts, strict=True):
        tx = parse_envelope(raw)
        receipt = _stored_json(receipt_raw, f"a receipt of block {height}")
        txs.append(
            BlockTx(
                tx_id=tx.tx_id,
                kind=tx.body.kind,
                sender=tx.body.sender,
                status=str(receipt.get("status", "")),
                code=str(receipt.get("code", "")),
            )
        )
    return Block(
        height=height,
        hash=header_hash(stored.header),
        header=header,
        header_bytes=stored.header,
        seal=_stored_json(stored.signature, f"seal of block {height}")
        if stored.signature
        else None,
        transactions=tuple(txs),
    )


# -- submit ----------------------------------------------------------------------------------


def read_envelopes(sources: list[str]) -> list[bytes]:
    """Envelopes from files (``-`` = stdin): one per file, or one per line (NDJSON)."""
    raws: list[bytes] = []
    for src in sources:
        if src == "-":
            data = sys.stdin.buffer.read()
        else:
            try:
                data = Path(src).read_bytes()
            except FileNotFoundError:
                raise NotFoundError(f"envelope file {src} does not exist") from None
            except OSError as exc:
                raise ValidationError(f"cannot read {src}: {exc.strerror}") from None
        lines = [line.rstrip(b"\r") for line in data.split(b"\n")]
        found = [line for line in lines if line.strip()]
        if not found:
            raise ValidationError(f"{src}: holds no envelope")
        raws.extend(found)
    return raws


def finish(results: list[Result], as_json: bool) -> None:
    """Print results; exit 1 if a contract rejected one."""
    if as_json:
        echo_json(results_json(results))
    else:
        print_results(results)
    rejected = [r for r in results if r.status == "rejected"]
    if rejected:
        exit_with_error(
            f"{len(rejected)} of {len(results)} transaction(s) rejected by their contract",
            "the attempt is committed as evidence; fix the cause and sign a new transaction",
            EXIT_REJECTED,
        )


NoWait = Annotated[
    bool, typer.Option("--no-wait", help="Return once accepted, before the block commits.")
]


@tx_app.command("submit")
def submit(
    files: Annotated[
        list[str],
        typer.Argument(metavar="FILE...", help="Envelope files ('-' for stdin); NDJSON for many."),
    ],
    url: UrlOption,
    no_wait: NoWait = False,
    as_json: JsonFlag = False,
) -> None:
    """Submit signed envelopes byte for byte (all or nothing) and print the receipts."""
    with handle_errors():
        raws = read_envelopes(files)
        with Client(url) as client:
            results = client.submit(raws, wait=not no_wait)
    finish(results, as_json)


def _parse_args(text: str) -> dict[str, Any]:
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NotFoundError(f"args file {text[1:]} does not exist") from None
    try:
        value = json.loads(text, parse_float=_no_float, parse_constant=_no_float)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"--args: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValidationError("--args: want a JSON object")
    return value


def _no_float(text: str) -> Any:
    raise ValidationError(f"--args: {text} is not an integer (floats are not allowed)")


def _prompt_password() -> str:
    text: str = typer.prompt("Key password", hide_input=True)
    return text


@tx_app.command("new")
def new(
    kind: Annotated[str, typer.Argument(help="Contract kind, e.g. identity.revoke_key@1.")],
    sender: Annotated[str, typer.Option("--sender", help="Sender account id.")],
    key: Annotated[
        list[str], typer.Option("--key", help="Keyring key that signs (repeat, in order).")
    ],
    data_dir: DirOption,
    url: UrlOption,
    args: Annotated[
        str, typer.Option("--args", help="Arguments as a JSON object, or @FILE.")
    ] = "{}",
    password_file: Annotated[
        Path | None,
        typer.Option(
            "--password-file",
            dir_okay=False,
            help=f"Key password file (else ${PASSWORD_ENV}, else prompt).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", dir_okay=False, help="Write the envelope here, do not submit."),
    ] = None,
    no_wait: NoWait = False,
    as_json: JsonFlag = False,
) -> None:
    """Build and sign a transaction with keyring keys, then submit it (or write --out)."""
    with handle_errors():
        arguments = _parse_args(args)
        ring = Keyring(data_dir)
        for name in key:
            ring.get_info(name)  # fail on a missing key before asking for a password
        password = resolve_password(password_file, prompt=_prompt_password)
        keys = [ring.load(name, password) for name in key]
        paths = ChainPaths(data_dir)
        genesis = paths.genesis if paths.exists() else None
        with make_client(url, genesis=genesis) as client:
            tx = client.build(kind, sender, arguments, keys)
            if out is not None:
                _write_new(out, tx.raw)
                typer.echo(f"wrote transaction {tx.tx_id.hex()} ({len(tx.raw)} bytes) to {out}")
                return
            results = client.submit(tx, wait=not no_wait)
    finish(results, as_json)


def _write_new(path: Path, data: bytes) -> None:
    try:
        with path.open("xb") as f:
            f.write(data + b"\n")
    except FileExistsError:
        exit_with_error(f"{path} already exists", "choose another --out file", 5)
    except OSError as exc:
        exit_with_error(f"cannot write {path}: {exc.strerror}", code=1)


@tx_app.command("show")
def show(
    tx_id: Annotated[str, typer.Argument(metavar="TX_ID", help="Transaction id (64 hex).")],
    url: UrlOption,
    data_dir: OptionalDirOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Show a committed transaction and its receipt (from --url, or --dir offline)."""
    with handle_errors():
        want = tx_id_bytes(tx_id)
        if data_dir is not None:
            with local_store(data_dir) as (store, _):
                rec = read_local_tx(store, want)
        else:
            with Client(url) as client:
                rec = client.get_tx(want)
    if as_json:
        echo_json(tx_json(rec))
    else:
        print_tx(rec)


@block_app.command("show")
def block_show(
    height: Annotated[int, typer.Argument(min=0, help="Block height (0 is genesis).")],
    url: UrlOption,
    data_dir: OptionalDirOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Show a block's header and transactions (from --url, or --dir offline)."""
    with handle_errors():
        if data_dir is not None:
            with local_store(data_dir) as (store, genesis):
                block = read_local_block(store, genesis, height)
        else:
            with Client(url) as client:
                block = client.get_block(height)
    if as_json:
        echo_json(block_json(block))
    else:
        print_block(block)


__all__ = ["block_app", "read_envelopes", "read_local_block", "read_local_tx", "tx_app"]
