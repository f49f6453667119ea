"""``carechain bench``: floors and committed tx/s, as a rich table and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from carechain.testing.bench import run_bench


def bench_command(
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes for CI smoke runs.")] = False,
    txs: Annotated[
        int | None,
        typer.Option(help="Transactions to ingest (default 50,000; quick 3,000).", min=100),
    ] = None,
    batch: Annotated[
        int, typer.Option(help="Transactions per submission.", min=1, max=10_000)
    ] = 500,
    clients: Annotated[int, typer.Option(help="Concurrent submitting clients.", min=1, max=64)] = 2,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the JSON result here.")
    ] = None,
) -> None:
    """Measure this machine's floors, then the embedded node's committed tx/s, in one run."""
    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("floors", total=1)

        def progress(step: str, done: int, total: int) -> None:
            bar.update(task, description=step, completed=done, total=total)

        result = run_bench(quick=quick, txs=txs, batch=batch, clients=clients, progress=progress)
    table = Table(title="carechain bench (rates per second; ratios to floors of this run)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in result.floors.items():
        table.add_row(f"floor: {name}", f"{value:,.0f}")
    for name, value in result.workload.items():
        table.add_row(
            f"ingest: {name}", f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"
        )
    for name, value in result.ratios.items():
        table.add_row(f"ratio: {name}", f"{value:.3f}")
    Console().print(table)
    doc = json.dumps(result.to_json(), indent=2, sort_keys=True)
    print(doc)
    if json_out is not None:
        json_out.write_text(doc + "\n")
