"""Pieces every CLI sub-app shares: the data directory option and error reporting.

Expected failures (:class:`carechain.errors.LedgerError`) end a command with a precise red
message on stderr and a non-zero exit code chosen by :func:`exit_code_for`; never a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from carechain.errors import (
    AuthenticationError,
    AuthorizationError,
    ConflictError,
    InfrastructureError,
    LedgerError,
    NotFoundError,
    ValidationError,
    VerificationError,
)

DIR_ENV = "CARECHAIN_DIR"
DEFAULT_DIR = Path("carechain-data")


def default_dir() -> Path:
    """The data directory: ``$CARECHAIN_DIR`` if set and non-empty, else ``./carechain-data``."""
    value = os.environ.get(DIR_ENV)
    return Path(value) if value else DEFAULT_DIR


dir_option = typer.Option(
    "--dir",
    default_factory=default_dir,
    show_default=f"${DIR_ENV} or ./{DEFAULT_DIR}",
    file_okay=False,
    help="Data directory (holds keys/, the ledger, ...).",
)
"""The shared ``--dir`` option; use as ``dir: DirOption`` (or ``Annotated[Path, dir_option]``)."""

DirOption = Annotated[Path, dir_option]

EXIT_ERROR = 1
"""Infrastructure and other unexpected-but-handled failures."""
EXIT_USAGE = 2
"""Invalid input (also click's own usage errors)."""
_EXIT_CODES: tuple[tuple[type[LedgerError], int], ...] = (
    (ValidationError, EXIT_USAGE),
    (AuthenticationError, 3),
    (AuthorizationError, 3),
    (NotFoundError, 4),
    (ConflictError, 5),
    (VerificationError, 6),
    (InfrastructureError, EXIT_ERROR),
)


def exit_code_for(error: LedgerError) -> int:
    """Exit code: 2 invalid, 3 auth, 4 not found, 5 conflict, 6 not verified, 1 other."""
    for family, code in _EXIT_CODES:
        if isinstance(error, family):
            return code
    return EXIT_ERROR


def exit_with_error(message: str, hint: str | None = None, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``message`` (and ``hint``) in red on stderr, then exit with ``code``."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print(f"[bold red]error:[/bold red] [red]{escape(message)}[/red]")
    if hint:
        console.print(f"[dim]hint: {escape(hint)}[/dim]")
    raise typer.Exit(code)


@contextmanager
def handle_errors(hint: str | None = None) -> Iterator[None]:
    """Turn a :class:`LedgerError` raised in the block into :func:`exit_with_error`."""
    try:
        yield
    except LedgerError as exc:
        exit_with_error(str(exc), hint, exit_code_for(exc))
