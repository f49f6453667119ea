"""``carechain backup`` and ``carechain restore``: an online copy, and a verified restore.

``backup --dir D --out FILE`` copies the data directory while the node serves (SQLite's online
backup API for every database; see :mod:`carechain.node.backup`). ``restore FILE --dir D2``
unpacks into a new directory only after the files match the manifest, the ledger verifies from
genesis and the log contains every checkpoint given with ``--checkpoint`` (a signed note the
node published, or a client trust file): an older backup is refused as a rollback (exit 6).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from carechain.cli.common import DirOption, handle_errors
from carechain.node.backup import backup, read_published, restore


def backup_command(
    out: Annotated[
        Path, typer.Option("--out", dir_okay=False, help="Archive to write (a tar file, 0600).")
    ],
    data_dir: DirOption,
) -> None:
    """Back up the data directory (ledger, records, keys, secrets) while the node serves."""
    with handle_errors():
        report = backup(data_dir, out)
    console = Console(soft_wrap=True)
    console.print(f"[bold green]backed up[/bold green] chain {escape(report.chain)} to "
                  f"{escape(str(report.out))}")  # fmt: skip
    console.print(f"  height      {report.height} (log size {report.log_size})")
    console.print(f"  files       {report.files} ({report.databases} SQLite databases "
                  f"copied online), {report.bytes:,} bytes")  # fmt: skip
    console.print("  [yellow]the archive holds the node's secrets: store it encrypted[/yellow]")


def restore_command(
    archive: Annotated[
        Path, typer.Argument(metavar="FILE", dir_okay=False, help="A `carechain backup` archive.")
    ],
    data_dir: DirOption,
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(
            "--checkpoint",
            dir_okay=False,
            help="A checkpoint the node already published (signed note or trust file); "
            "repeatable. A backup older than it is refused.",
        ),
    ] = None,
) -> None:
    """Restore a backup into a new data directory, verify it, refuse it if stale."""
    with handle_errors():
        notes = [read_published(p) for p in checkpoint or []]
        report = restore(archive, data_dir, published=notes)
    console = Console(soft_wrap=True)
    chain = report.verify.chain
    console.print(f"[bold green]restored[/bold green] and verified into "
                  f"{escape(str(report.dir))}")  # fmt: skip
    console.print(f"  blocks      {chain.blocks} (genesis included), txs {chain.txs}")
    console.print(f"  log root    {chain.log_root.hex()} (size {report.log_size})")
    for cp in report.checked:
        console.print(f"  contains    published checkpoint of size {cp.size}")
    if not report.checked:
        console.print("  [yellow]no --checkpoint given: freshness not checked[/yellow]")


def register(app: typer.Typer) -> None:
    """Add ``backup`` and ``restore`` to the ``carechain`` app."""
    app.command("backup")(backup_command)
    app.command("restore")(restore_command)


__all__ = ["backup_command", "register", "restore_command"]
