"""``carechain consortium up|status|down``: a local consortium on 127.0.0.1 (development).

``up --orgs N --dir D`` initialises N organisations' node directories under D (once), starts N
etcd members and N ``carechain node`` processes on free ports and records their PIDs in
``D/cluster.json``; ``status`` shows each process, etcd's leader and every node's height and
final (cosigned) height; ``down`` stops every recorded process by its PID.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, cast

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from carechain.cli.common import handle_errors
from carechain.cli.options import GenesisOption
from carechain.errors import ConflictError
from carechain.testing.cluster import LocalCluster, down, pid_alive, read_cluster

consortium_app = typer.Typer(
    help="A local consortium: N etcd members + N nodes on 127.0.0.1 (development, tests).",
    no_args_is_help=True,
)

ClusterDir = Annotated[
    Path,
    typer.Option("--dir", file_okay=False, help="Base directory of the local consortium."),
]


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


@consortium_app.command("up")
def up(
    base: ClusterDir = Path("carechain-consortium"),
    orgs: Annotated[int, typer.Option("--orgs", min=1, max=9, help="Organisations.")] = 3,
    scrypt_n: Annotated[int | None, typer.Option("--scrypt-n", hidden=True)] = None,
) -> None:
    """Initialise (first time) and start the etcd members and nodes."""
    with handle_errors():
        doc = read_cluster(base)
        if any(pid_alive(int(p.get("pid", 0))) for p in (*doc["nodes"], *doc["etcd"])):
            raise ConflictError(
                f"the consortium in {base} is running; `carechain consortium down --dir {base}`"
            )
        if (base / "genesis.json").exists():
            cluster = LocalCluster.load(base)
        else:
            cluster = LocalCluster.create(base, orgs=orgs, scrypt_n=scrypt_n)
        cluster.start()
    out = _out()
    out.print(f"[bold green]consortium up[/bold green] in {escape(str(base))}")
    for m in cluster.etcd.members:
        out.print(f"  etcd  {m.name:<8} pid {m.pid:<8} {m.url}")
    for n in cluster.nodes:
        out.print(f"  node  {escape(n.org):<16} pid {n.pid:<8} {n.url}")
    out.print(f"admin keys (password 'demo') in {escape(str(base / 'admin'))}")


@consortium_app.command("status")
def status(
    base: ClusterDir = Path("carechain-consortium"),
    extra: Annotated[
        list[str] | None,
        typer.Option(
            "--node",
            help="Also show the node at this URL (repeat), e.g. one an organisation that "
            "joined later runs with carechain node.",
        ),
    ] = None,
) -> None:
    """Each process (alive?), etcd's leader, each node's height and final height."""
    doc = read_cluster(base)
    table = Table(title=f"consortium {base}", title_justify="left")
    for col in ("process", "pid", "alive", "url", "height", "final", "status"):
        table.add_column(col)
    for m in doc["etcd"]:
        role = ""
        try:
            st = httpx.post(m["url"] + "/v3/maintenance/status", content=b"{}", timeout=1).json()
            role = (
                "leader"
                if st.get("leader") == st.get("header", {}).get("member_id")
                else "follower"
            )
        except (httpx.HTTPError, ValueError):
            role = "unreachable"
        alive = pid_alive(int(m["pid"]))
        table.add_row(f"etcd {m['name']}", str(m["pid"]), str(alive), m["url"], "", "", role)
    others = [{"org": url, "url": url.rstrip("/"), "pid": 0} for url in extra or []]
    for n in [*doc["nodes"], *others]:
        height = final = state = ""
        try:
            health = httpx.get(n["url"] + "/healthz", timeout=1).json()
            height, state = str(health.get("height")), str(health.get("status"))
            cos = httpx.get(n["url"] + "/v1/checkpoint/cosigned", timeout=2)
            if cos.status_code == 200:
                final = str(cos.json().get("final_height"))
        except (httpx.HTTPError, ValueError):
            state = "unreachable"
        pid = int(n["pid"])
        running = str(pid_alive(pid)) if pid else "-"  # --node: not started by `up`
        table.add_row(
            f"node {n['org']}", str(pid or "-"), running, n["url"], height, final, state
        )
    _out().print(table)


@consortium_app.command("down")
def stop(base: ClusterDir = Path("carechain-consortium")) -> None:
    """Stop every process recorded in DIR/cluster.json, by PID (SIGTERM, then SIGKILL)."""
    pids = down(base)
    _out().print(f"stopped {len(pids)} process(es): {' '.join(map(str, pids)) or '-'}")


__all__ = ["consortium_app"]


# -- `carechain init --type consortium` (wired in cli/main.py) --------------------------------

ChainTypeOption = Annotated[
    str,
    typer.Option(
        "--type",
        help="private (one organisation, solo ordering), consortium (N organisations, etcd) "
        "or public (one miner, proof of work, open registration).",
    ),
]
OrgsOption = Annotated[
    int, typer.Option("--orgs", min=1, max=9, help="Consortium: number of organisations.")
]
EtcdOption = Annotated[
    list[str] | None,
    typer.Option("--etcd", help="Consortium: etcd client URL (repeat; default 127.0.0.1:2379)."),
]


def init_consortium_command(
    base: Path,
    chain_type: str,
    orgs: int,
    etcd: list[str] | None,
    chain: str | None,
    scrypt_n: int | None,
) -> None:
    """``carechain init --type consortium``: N node directories under DIR, one genesis."""
    from carechain.errors import ValidationError
    from carechain.node.consortium import CHAIN_TYPES, DEFAULT_ETCD, init_consortium

    with handle_errors():
        if chain_type not in CHAIN_TYPES:
            raise ValidationError(
                f"--type: got {chain_type!r}, want one of {', '.join(CHAIN_TYPES)}"
            )
        genesis, members = init_consortium(
            base,
            orgs=orgs,
            etcd=etcd or DEFAULT_ETCD,
            chain=chain or "carechain-consortium",
            scrypt_n=scrypt_n,
        )
    out = _out()
    out.print(f"[bold green]created consortium chain[/bold green] {escape(genesis.chain)}")
    out.print(f"  genesis    {escape(str(base / 'genesis.json'))} (block 0 {genesis.hash.hex()})")
    out.print(f"  etcd       {escape(', '.join(etcd or DEFAULT_ETCD))}")
    for m in members:
        out.print(f"  {escape(m.org):<18} {escape(str(m.root))}  node key {m.node_kid}")
    out.print("admin keys (password 'demo') in " + escape(str(base / "admin")))
    out.print("next: [bold]carechain node --dir <org dir>[/bold] per organisation")


@consortium_app.command("bench")
def bench(
    base: ClusterDir = Path("carechain-consortium-bench"),
    orgs: Annotated[int, typer.Option("--orgs", min=1, max=9, help="Organisations.")] = 3,
    txs: Annotated[int, typer.Option("--txs", min=10, help="Transactions per run.")] = 1500,
    clients: Annotated[int, typer.Option("--clients", min=1, help="Waiting clients per node.")] = 4,
) -> None:
    """Committed tx/s and p50/p99 commit latency: a private node, then a consortium (same run)."""
    from carechain.testing.cluster import benchmark

    with handle_errors():
        if base.exists() and any(base.iterdir()):
            raise ConflictError(f"{base} is not empty; the benchmark needs a fresh --dir")
        results = benchmark(base, orgs=orgs, txs=txs, clients=clients)
    table = Table(title="committed transactions (member registrations, 1 tx per request)")
    for col in ("run", "txs", "seconds", "tx/s", "p50 ms", "p99 ms"):
        table.add_column(col)
    for r in results:
        table.add_row(
            r.label,
            str(r.txs),
            f"{r.seconds:.1f}",
            f"{r.tps:.0f}",
            f"{r.p50_ms:.0f}",
            f"{r.p99_ms:.0f}",
        )
    out = _out()
    out.print(table)
    if len(results) == 2 and results[0].tps:
        out.print(f"consortium / private throughput ratio: {results[1].tps / results[0].tps:.2f}")


# -- joining later: `consortium join | admit | vote` (node/join.py, ADR 0011) ---------------

AdminKeysOption = Annotated[
    Path,
    typer.Option(
        "--keys",
        file_okay=False,
        help="Directory whose keys/ holds the admin key (the admin directory `consortium up` "
        "prints), or that keys/ directory itself.",
    ),
]
AdminKeyOption = Annotated[
    str, typer.Option("--key", metavar="NAME", help="Admin key name, e.g. seoul-general-admin.")
]
NodeUrlOption = Annotated[str, typer.Option("--url", help="A member node's API URL.")]
PasswordFile = Annotated[
    Path | None,
    typer.Option("--password-file", dir_okay=False, help="Key password (else env, else prompt)."),
]


def _governance(
    url: str,
    keys: Path,
    key: str,
    password_file: Path | None,
    args: dict[str, object],
    genesis: Path | None = None,
) -> tuple[str, str, str]:
    """Sign and submit one governance transaction as the admin of ``key``; returns
    ``(tx id, status, code)``."""
    from carechain.cli.options import make_client
    from carechain.crypto.keystore import Keyring, resolve_password
    from carechain.encoding import JsonObject

    if keys.name == "keys" and not (keys / "keys").is_dir():
        keys = keys.parent  # the keys/ directory itself was given
    ring = Keyring(keys)
    info = ring.get_info(key)
    if not info.account:
        raise ConflictError(f"key {key} in {keys} is not an account key")
    signer = ring.load(key, resolve_password(password_file))
    kind = "governance.vote@1" if "proposal" in args else "governance.propose@1"
    with make_client(url, genesis=genesis) as client:
        tx = client.build(kind, info.account, cast("JsonObject", args), signer)
        (result,) = client.submit(tx)
    return tx.tx_id.hex(), result.status, result.code


@consortium_app.command("join")
def join(
    root: Annotated[Path, typer.Option("--dir", file_okay=False, help="New node directory.")],
    genesis: Annotated[str, typer.Option("--genesis", help="genesis.json file, or a URL.")],
    org_id: Annotated[str, typer.Option("--org-id", help="The new organisation's id.")],
    etcd: Annotated[list[str], typer.Option("--etcd", help="etcd client URL (repeat).")],
    peers: Annotated[list[str], typer.Option("--peers", help="Member node API URL (repeat).")],
    name: Annotated[str | None, typer.Option("--name", help="Display name.")] = None,
    index_key: Annotated[
        Path | None,
        typer.Option("--index-key", dir_okay=False, help="The consortium's index key file."),
    ] = None,
    password_file: PasswordFile = None,
    scrypt_n: Annotated[int | None, typer.Option("--scrypt-n", hidden=True)] = None,
) -> None:
    """Create the node directory of an organisation joining later; print its admission
    request (members vote on it; then start `carechain node --dir DIR`)."""
    from carechain.crypto.keystore import resolve_password
    from carechain.node.join import fetch_genesis, join_consortium

    with handle_errors():
        password = resolve_password(password_file, confirm=True)
        g, request = join_consortium(
            root,
            genesis_raw=fetch_genesis(genesis),
            org_id=org_id,
            name=name,
            etcd=etcd,
            peers=peers,
            password=password,
            index_key=index_key.read_bytes() if index_key is not None else None,
            scrypt_n=scrypt_n,
        )
    out = _out()
    out.print(f"[bold green]node directory ready[/bold green] {escape(str(root))} ({g.chain})")
    node = request.org["nodes"][0]
    out.print(f"  org       {escape(org_id)}")
    out.print(f"  node kid  {request.node_kid}")
    out.print(f"  node key  {node['alg']} {node['pub']}")
    out.print(f"  request   {escape(str(request.path))}")
    if index_key is None:
        out.print(
            "[yellow]no --index-key: a fresh one was made; records' keyed hashes will "
            "not match the other members' until you install theirs[/yellow]"
        )
    out.print(
        "next: a member runs [bold]carechain consortium admit --request "
        f"{escape(str(request.path))} …[/bold]; the others vote; then "
        f"[bold]carechain node --dir {escape(str(root))}[/bold]"
    )


@consortium_app.command("admit")
def admit(
    request: Annotated[
        Path, typer.Option("--request", dir_okay=False, help="The admission request file.")
    ],
    url: NodeUrlOption,
    keys: AdminKeysOption,
    key: AdminKeyOption,
    password_file: PasswordFile = None,
    genesis: GenesisOption = None,
) -> None:
    """Propose admitting the organisation of an admission request (the proposer's
    organisation votes yes); prints the proposal id for the others' votes."""
    from carechain.node.join import proposal_id, read_request

    with handle_errors():
        org = read_request(request)
        tx_id, status, code = _governance(
            url, keys, key, password_file, {"action": "admit_org", "org": org}, genesis
        )
    if status != "ok":
        _out().print(f"[red]proposal rejected[/red]: {code}")
        raise typer.Exit(5)
    pid = proposal_id(bytes.fromhex(tx_id))
    _out().print(f"proposal {pid}: admit {escape(str(org['id']))} (tx {tx_id})")
    _out().print(f"others: carechain consortium vote --proposal {pid} --url … --keys … --key …")


@consortium_app.command("vote")
def vote(
    proposal: Annotated[str, typer.Option("--proposal", help="Proposal id.")],
    url: NodeUrlOption,
    keys: AdminKeysOption,
    key: AdminKeyOption,
    reject: Annotated[bool, typer.Option("--reject", help="Vote no.")] = False,
    password_file: PasswordFile = None,
    genesis: GenesisOption = None,
) -> None:
    """Vote on a governance proposal as an organisation's admin."""
    with handle_errors():
        tx_id, status, code = _governance(
            url, keys, key, password_file, {"approve": not reject, "proposal": proposal}, genesis
        )
    if status != "ok":
        _out().print(f"[red]vote rejected[/red]: {code}")
        raise typer.Exit(5)
    _out().print(f"voted {'no' if reject else 'yes'} on {proposal} (tx {tx_id})")


@consortium_app.command("catch-up")
def catch_up_command(
    root: Annotated[Path, typer.Option("--dir", file_okay=False, help="Joined node directory.")],
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait.")] = 600.0,
) -> None:
    """Run a joined node headless until its organisation's admission block is applied (peers'
    final blocks); then start it with `carechain node --dir DIR`."""
    from carechain.node.join import sync_joined

    with handle_errors():
        report = sync_joined(root, timeout=timeout)
    _out().print(
        f"caught up blocks {report.start + 1}..{report.head} in {report.seconds:.1f} s; "
        f"node key active. next: [bold]carechain node --dir {escape(str(root))}[/bold]"
    )
