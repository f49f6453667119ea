"""The ``carechain`` command: chain setup, the node, transactions, proofs, verification, demo.

Sub-apps live in their own modules (``keys``, ``tx``, ``block``, ``proof``, ``demo``,
``bench``); this module wires them and holds the commands that own a chain directory:
``init``, ``node`` and ``verify``. Every command reports a :class:`LedgerError` as a precise
message with a non-zero exit code (see :mod:`carechain.cli.common`), never a traceback.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from carechain import __version__
from carechain.cli.backup import register as register_backup
from carechain.cli.claims import claims_app
from carechain.cli.common import DirOption, exit_with_error, handle_errors
from carechain.cli.consortium import (
    ChainTypeOption,
    EtcdOption,
    OrgsOption,
    consortium_app,
    init_consortium_command,
)
from carechain.cli.demo import demo
from carechain.cli.incentives import incentives_app
from carechain.cli.keys import keys_app
from carechain.cli.proof import proof_app
from carechain.cli.records import register as register_records
from carechain.cli.render import fmt_time
from carechain.cli.rx import rx_app
from carechain.cli.supply import supply_app
from carechain.cli.trials import trials_app
from carechain.cli.tx import block_app, tx_app
from carechain.contracts.identity import ORG_ROLES, patient_account_id
from carechain.crypto.keystore import PASSWORD_ENV, KeyFileInfo, Keyring, resolve_password
from carechain.errors import ConflictError, LedgerError, NotFoundError, ValidationError
from carechain.ledger.genesis import CHAIN_RE, Genesis
from carechain.ledger.tx import validate_account_id
from carechain.node.chaindir import (
    DEMO_CHAIN,
    DEMO_PASSWORD,
    ChainPaths,
    InitResult,
    init_chain,
    open_node,
    read_genesis,
)
from carechain.node.node import Node
from carechain.node.verify import verify_store
from carechain.storage.sqlite import SQLiteStore

log = logging.getLogger("carechain.cli")

EXIT_FATAL = 70
"""``carechain node`` exit status after a fatal node error (EX_SOFTWARE): restart, verify."""

app = typer.Typer(
    name="carechain",
    help="carechain: a verifiable health-data ledger (node, SDK client, proofs, verification).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(keys_app, name="keys")
app.add_typer(tx_app, name="tx")
app.add_typer(block_app, name="block")
app.add_typer(proof_app, name="proof")
app.add_typer(claims_app, name="claims")
app.add_typer(rx_app, name="rx")
app.add_typer(supply_app, name="supply")
app.add_typer(trials_app, name="trials")
app.add_typer(incentives_app, name="incentives")
app.add_typer(consortium_app, name="consortium")
register_records(app)
register_backup(app)  # backup, restore (issue 9)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"carechain {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """carechain: a verifiable health-data ledger."""


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _accounts_table(
    keys: list[KeyFileInfo], account_of: Callable[[KeyFileInfo], str], title: str
) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("key name", no_wrap=True)
    table.add_column("account", no_wrap=True)
    table.add_column("alg", no_wrap=True)
    for info in keys:
        table.add_row(escape(info.name), escape(account_of(info)), info.alg)
    return table


# -- init -------------------------------------------------------------------------------------


@app.command()
def init(
    data_dir: DirOption,
    demo_chain: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Seed demo data (5 organisations, members, 2 patients; password 'demo').",
        ),
    ] = False,
    chain: Annotated[
        str | None, typer.Option("--chain", help="Chain id (default: <org-id>-chain).")
    ] = None,
    org_id: Annotated[
        str, typer.Option("--org-id", help="Founding organisation id.")
    ] = "my-hospital",
    org_name: Annotated[
        str, typer.Option("--org-name", help="Founding organisation name.")
    ] = "My Hospital",
    role: Annotated[
        list[str] | None,
        typer.Option("--role", help="Organisation role (repeat): hospital, pharmacy, payer, ..."),
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(
            "--password-file",
            dir_okay=False,
            help=f"Password of the admin key(s) (else ${PASSWORD_ENV}, else prompt; demo: 'demo').",
        ),
    ] = None,
    scrypt_n: Annotated[int | None, typer.Option("--scrypt-n", hidden=True)] = None,
    chain_type: ChainTypeOption = "private",
    orgs: OrgsOption = 3,
    etcd: EtcdOption = None,
) -> None:
    """Create a chain in DIR: node key, genesis document, block 0 (and the demo data)."""
    if chain_type not in ("private", "public"):  # consortium: one dir per org (ADR 0011)
        init_consortium_command(data_dir, chain_type, orgs, etcd, chain, scrypt_n)
        return
    with handle_errors():
        roles = tuple(role or ("hospital",))
        _check_init_args(data_dir, chain, org_id, org_name, roles)  # before creating anything
        if demo_chain and password_file is None:
            password = DEMO_PASSWORD
        else:
            password = resolve_password(password_file, prompt=_prompt_new_password)
        from carechain.node.miner import init_public  # public: proof of work (ADR 0012)

        result = (init_public if chain_type == "public" else init_chain)(
            data_dir,
            demo=demo_chain,
            chain=chain,
            org_id=org_id,
            org_name=org_name,
            roles=roles,
            password=password,
            scrypt_n=scrypt_n,
            domains=demo_chain,
        )
    _print_init(result, demo_chain and password_file is None)


def _check_init_args(
    data_dir: Path, chain: str | None, org_id: str, org_name: str, roles: tuple[str, ...]
) -> None:
    """Refuse bad input before ``init_chain`` writes keys (it would leave a partial DIR)."""
    if ChainPaths(data_dir).exists():
        raise ConflictError(
            f"{data_dir} already holds a chain; use another --dir or remove it",
            code="chain_exists",
        )
    if chain is not None and not CHAIN_RE.match(chain):
        raise ValidationError(f"--chain: {chain!r} is not a chain id (a-z 0-9 . _ -, up to 64)")
    validate_account_id(org_id, what="--org-id")
    if not org_name.isprintable() or not 1 <= len(org_name) <= 200:
        raise ValidationError("--org-name: want 1 to 200 printable characters")
    unknown = sorted(set(roles) - set(ORG_ROLES))
    if unknown or len(set(roles)) != len(roles):
        raise ValidationError(
            f"--role: {unknown or 'a repeated role'} not allowed; choose distinct roles among "
            f"{', '.join(ORG_ROLES)}"
        )
    if (data_dir / "keys").exists() and any((data_dir / "keys").iterdir()):
        raise ConflictError(
            f"{data_dir} holds keys but no chain; use an empty --dir", code="chain_exists"
        )


def _prompt_new_password() -> str:
    text: str = typer.prompt(
        "Password for the admin key", hide_input=True, confirmation_prompt=True
    )
    return text


def _print_init(result: InitResult, demo_password: bool) -> None:
    out = _out()
    g = result.genesis
    out.print(f"[bold green]created chain[/bold green] {escape(g.chain)}")
    out.print(f"  data dir        {escape(str(result.paths.root.resolve()))}")
    out.print(f"  chain id        {escape(g.chain)}")
    out.print(f"  origin          {escape(g.origin)}")
    out.print(
        f"  genesis SHA-256 {hashlib.sha256(g.raw).hexdigest()}  "
        "(share genesis.json; anyone checks it with sha256sum)"
    )
    out.print(f"  block 0 hash    {g.hash.hex()}")
    out.print(f"  genesis time    {fmt_time(g.header.time)}")
    ring = Keyring(result.paths.root)
    node = ring.get_info("node")
    out.print(f"  node key        {node.alg} {node.kid} (password in secrets/node.pass)")
    by_name = {info.name: info for info in ring.list()}
    table = Table(title="accounts", title_justify="left")
    for col in ("key name", "account"):
        table.add_column(col, no_wrap=True)
    for col in ("role", "organisation", "alg"):
        table.add_column(col, overflow="fold")
    for acct in result.accounts:
        alg = by_name[acct.name].alg if acct.name in by_name else "?"
        table.add_row(
            escape(acct.name), escape(acct.account), escape(acct.role), escape(acct.org), alg
        )
    out.print(table)
    if demo_password:
        out.print("password of every demo key: [bold]demo[/bold]")
    out.print(
        f"next: [bold]carechain node --dir {escape(str(result.paths.root))}[/bold], "
        "then [bold]carechain demo[/bold] in another terminal (a node started with "
        "[bold]--port P[/bold]: [bold]carechain demo --url http://127.0.0.1:P[/bold])"
    )


# -- node -------------------------------------------------------------------------------------


def _on_fatal(exc: BaseException) -> None:
    """A commit failed: never acknowledge again. Exit now; restart, then `carechain verify`."""
    log.critical("fatal node error: %s", exc)
    sys.stderr.write(
        f"carechain node: fatal error: {exc}\n"
        f"exiting with status {EXIT_FATAL}; restart the node, then run `carechain verify`\n"
    )
    sys.stderr.flush()
    os._exit(EXIT_FATAL)


def _listen(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        exit_with_error(f"cannot resolve --host {host}: {exc.strerror}", code=2)
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        exit_with_error(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            "is another node running? choose another --port",
            1,
        )
    sock.listen(2048)  # connections queue from now on, before uvicorn starts accepting
    sock.set_inheritable(True)
    return sock


@app.command()
def node(
    data_dir: DirOption,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port.")] = 8700,
    log_level: Annotated[
        str, typer.Option("--log-level", help="uvicorn log level (debug, info, warning).")
    ] = "info",
) -> None:
    """Run the node of the chain in DIR and serve its HTTP API and explorer."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per etcd poll or peer call
    with handle_errors():
        read_genesis(data_dir)  # a missing chain: exit 4 with a hint, before binding a port
        _catch_up_if_joined(data_dir)
    sock = _listen(host, port)
    try:
        with handle_errors():
            from carechain.api.app import create_app
            from carechain.node.heap import settle_heap

            running = open_node(data_dir, on_fatal=_on_fatal)
    except BaseException:
        sock.close()
        raise
    try:
        base_url = f"http://{host}:{sock.getsockname()[1]}"  # written into record anchors
        app_ = create_app(running, data_dir=data_dir, base_url=base_url)
        _print_node_banner(data_dir, host, sock.getsockname()[1], running)
        server = uvicorn.Server(uvicorn.Config(app_, log_level=log_level, lifespan="on"))
        settle_heap()  # start-up objects out of the collector's full passes (node/heap.py)
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises SIGINT after shutdown
            server.run(sockets=[sock])
    finally:
        _out().print("stopping the node (pending transactions stay unacknowledged)…")
        running.stop()
        running.store.close()
        sock.close()


def _catch_up_if_joined(data_dir: Path) -> None:
    """An organisation admitted after genesis: apply the peers' final blocks up to its
    admission first (what `carechain consortium catch-up` does), then serve."""
    from carechain.node.join import needs_catch_up, sync_joined

    if not needs_catch_up(data_dir):
        return
    out = _out()
    out.print(
        "this organisation joined after genesis: applying the peers' final blocks up to its "
        "admission first (waits until the members have voted it in)…"
    )
    report = sync_joined(data_dir)
    out.print(f"caught up blocks {report.start + 1}..{report.head} in {report.seconds:.1f} s")


def _verified_type(genesis: Genesis) -> str:
    """What `verify` checked of the blocks' seals, by chain type."""
    from carechain.ledger.pow import pow_params

    if pow_params(genesis.params) is not None:
        return "public: every block's proof of work, its difficulty (retarget rule) and time"
    return (
        "private/consortium: every block sealed by an active node key (a consortium's "
        "finality is its cosigned checkpoints: GET /v1/checkpoint/cosigned)"
    )


def _print_node_banner(data_dir: Path, host: str, port: int, running: Node) -> None:
    chain = running.genesis.chain

    def accounts(info: KeyFileInfo) -> str:
        if info.account:
            return info.account
        patient = patient_account_id(info.kid)  # a patient's id derives from its first key
        return patient if running.store.find_state(f"acct/{patient}") is not None else "-"

    out = _out()
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    out.print(f"[bold green]carechain node[/bold green] chain {escape(chain)} on {escape(base)}")
    out.print(f"  API docs   {escape(base)}/docs")
    out.print(f"  explorer   {escape(base)}/")
    out.print(f"  data dir   {escape(str(data_dir.resolve()))}")
    try:
        keys = [k for k in Keyring(data_dir).list() if k.name != "node"]
    except LedgerError as exc:  # a damaged key file must not stop a starting node
        out.print(f"[yellow]cannot list the keys in {escape(str(data_dir))}: {escape(str(exc))}")
        keys = []
    if keys:
        out.print(_accounts_table(keys, accounts, "accounts with keys in this directory"))
        if chain == DEMO_CHAIN:
            out.print("password of every demo key: [bold]demo[/bold]")
    out.print(f"try: [bold]carechain demo --url {escape(base)}[/bold]  (Ctrl-C stops the node)")


# -- verify -----------------------------------------------------------------------------------


@app.command()
def verify(data_dir: DirOption) -> None:
    """Recompute the whole chain in DIR from genesis, offline (exit 6 names the first difference).

    Prints "block H: field: message" for the first block and field that differ.
    """
    with handle_errors():
        genesis = read_genesis(data_dir)
        path = ChainPaths(data_dir).ledger
        if not path.exists():
            raise NotFoundError(f"no ledger in {data_dir} ({path.name} is missing)")
        store = SQLiteStore(path)
        try:
            head = store.head_height()
            if head is None:
                raise ValidationError(f"the ledger in {data_dir} holds no block")
            size = store.log_size()
            progress = Progress(
                TextColumn("verifying blocks"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            started = time.perf_counter()
            with progress:
                task = progress.add_task("verify", total=head or 1, completed=0)

                def advance(height: int, _txs: int) -> None:
                    progress.update(task, completed=height)

                report = verify_store(store, genesis, progress=advance)
            elapsed = time.perf_counter() - started
        finally:
            store.close()
    out = _out()
    rate = report.chain.txs / elapsed if elapsed > 0 else 0.0
    out.print(f"[bold green]verified[/bold green] chain {escape(genesis.chain)} from genesis")
    out.print(f"  blocks      {report.chain.blocks} (genesis included)")
    out.print(f"  txs         {report.chain.txs}")
    out.print(f"  state keys  {report.state_keys}")
    out.print(f"  log root    {report.chain.log_root.hex()} (size {size})")
    out.print(f"  head hash   {report.chain.head_hash.hex()}")
    out.print("  checkpoint  signed by a registered node key, matches size and root")
    out.print(f"  chain type  {_verified_type(genesis)}")
    out.print(f"  time        {elapsed:.2f} s ({rate:,.0f} tx/s)")


# -- commands defined in their own modules ------------------------------------------------------

app.command("demo")(demo)

# bench: registered in cli/bench.py
try:
    from carechain.cli.bench import bench_command
except ImportError:  # pragma: no cover - the benchmark is optional
    pass
else:
    app.command("bench")(bench_command)


__all__ = ["app"]
