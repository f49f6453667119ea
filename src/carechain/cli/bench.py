"""``carechain bench``: floors and the workloads of issue 8, as a rich table and JSON.

Sizes and workloads are fixed (``carechain.testing.bench.suite``); ``--quick`` shrinks them for
CI smoke runs, ``--only`` / ``--skip`` pick workloads. The JSON goes to ``--json FILE``, else to
stdout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from carechain.testing.bench import WORKLOADS, BenchResult, run_bench


def _names(text: str | None) -> tuple[str, ...]:
    names = tuple(n.strip() for n in (text or "").split(",") if n.strip())
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise typer.BadParameter(f"unknown workload(s) {unknown}; known: {', '.join(WORKLOADS)}")
    return names


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _flat(prefix: str, value: Any, rows: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, rows)
    elif isinstance(value, list):
        rows.append((prefix, ", ".join(map(str, value)) or "-"))
    else:
        rows.append((prefix, _fmt(value)))


def render(result: BenchResult, console: Console) -> None:
    """The result as three tables: floors, workloads, targets."""
    floors = Table(title="floors of this machine (per second, same run)")
    floors.add_column("floor")
    floors.add_column("rate", justify="right")
    for name, value in result.floors.items():
        floors.add_row(name, f"{value:,.0f}")
    console.print(floors)
    work = Table(title="workloads")
    work.add_column("figure")
    work.add_column("value", justify="right")
    for name, figures in result.workloads.items():
        rows: list[tuple[str, str]] = []
        _flat(name, figures, rows)
        for k, v in rows:
            work.add_row(k, v)
    console.print(work)
    title = "targets (ratios to the floors of this run)"
    if result.machine.get("quick"):
        title += " — --quick sizes: indicative only (e.g. proofs on a 20,000-leaf log)"
    targets = Table(title=title)
    for col in ("figure", "value", "target", "met"):
        targets.add_column(col, justify="right" if col != "figure" else "left")
    for t in result.targets:
        met = {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}[t["met"]]
        targets.add_row(t["figure"], _fmt(t["value"]), t["target"], met)
    console.print(targets)


def bench_command(
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes for CI smoke runs.")] = False,
    only: Annotated[
        str | None, typer.Option(help=f"Comma-separated workloads to run ({', '.join(WORKLOADS)}).")
    ] = None,
    skip: Annotated[str | None, typer.Option(help="Comma-separated workloads to skip.")] = None,
    note: Annotated[
        str, typer.Option(help="A note stored in the JSON (e.g. the machine's other load).")
    ] = "",
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the JSON result here (else stdout).")
    ] = None,
) -> None:
    """Measure this machine's floors, then the node's workloads, in one run."""
    chosen_only, chosen_skip = _names(only), _names(skip)
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

        result = run_bench(
            quick=quick, only=chosen_only, skip=chosen_skip, note=note, progress=progress
        )
    render(result, console)
    doc = json.dumps(result.to_json(), indent=2, sort_keys=True)
    if json_out is None:
        print(doc)  # the tables went to stderr: stdout is the JSON alone
    else:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(doc + "\n")
