"""``carechain proof inclusion|consistency``: verify a node's proofs against a signed checkpoint.

Both commands go through the SDK: the checkpoint must be signed by a node key of the genesis
(``--genesis FILE`` pins it; otherwise it is fetched once), and with ``--trust-file`` the
newest verified checkpoint is remembered, so a node that later rolls back or forks is caught.
Any failure exits non-zero (6 for a proof or checkpoint that does not verify) with the reason.
"""

from __future__ import annotations

from typing import Annotated

import typer

from carechain.cli.common import handle_errors
from carechain.cli.options import GenesisOption, TrustFileOption, UrlOption, make_client
from carechain.cli.render import print_consistency, print_inclusion

proof_app = typer.Typer(
    help="Verify inclusion and consistency proofs against a signed checkpoint.",
    no_args_is_help=True,
)


@proof_app.command("inclusion")
def inclusion(
    tx_id: Annotated[str, typer.Argument(metavar="TX_ID", help="Transaction id (64 hex).")],
    url: UrlOption,
    genesis: GenesisOption = None,
    trust_file: TrustFileOption = None,
) -> None:
    """Prove a transaction is in the ledger log of the newest signed checkpoint."""
    with handle_errors(), make_client(url, genesis=genesis, trust_file=trust_file) as client:
        result = client.prove_inclusion(tx_id)
    print_inclusion(result)


@proof_app.command("consistency")
def consistency(
    size1: Annotated[int, typer.Argument(metavar="FROM", min=0, help="Older log size.")],
    size2: Annotated[int, typer.Argument(metavar="TO", min=0, help="Newer log size.")],
    url: UrlOption,
    genesis: GenesisOption = None,
    trust_file: TrustFileOption = None,
) -> None:
    """Prove the log of size FROM is a prefix of the log of size TO (and of the checkpoint)."""
    with handle_errors(), make_client(url, genesis=genesis, trust_file=trust_file) as client:
        result = client.prove_consistency(size1, size2)
    print_consistency(result)


__all__ = ["proof_app"]
