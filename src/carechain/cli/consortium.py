"""``carechain consortium up|status|down``: a local consortium on 127.0.0.1 (development).

``up --orgs N --dir D`` initialises N organisations' node directories under D (once), starts N
etcd members and N ``carechain node`` processes on free ports and records their PIDs in
``D/cluster.json``; ``status`` shows each process, etcd's leader and every node's height and
final (cosigned) height; ``down`` stops every recorded process by its PID.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from carechain.cli.common import handle_errors
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
def status(base: ClusterDir = Path("carechain-consortium")) -> None:
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
    for n in doc["nodes"]:
        height = final = state = ""
        try:
            health = httpx.get(n["url"] + "/healthz", timeout=1).json()
            height, state = str(health.get("height")), str(health.get("status"))
            cos = httpx.get(n["url"] + "/v1/checkpoint/cosigned", timeout=2)
            if cos.status_code == 200:
                final = str(cos.json().get("final_height"))
        except (httpx.HTTPError, ValueError):
            state = "unreachable"
        alive = pid_alive(int(n["pid"]))
        table.add_row(f"node {n['org']}", str(n["pid"]), str(alive), n["url"], height, final, state)
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
        help="private (one organisation, solo ordering) or consortium (N organisations, etcd).",
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
                f"--type: got {chain_type!r}, want one of {', '.join(CHAIN_TYPES)} "
                "(public proof-of-work chains are not implemented)"
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
