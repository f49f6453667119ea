"""Options and helpers the chain commands share: ``--url``, the SDK client, the local store.

Client commands reach a node through the SDK (``--url``, default ``$CARECHAIN_URL`` or
``http://127.0.0.1:8700``). Where a command also reads a chain directory offline (``--dir``),
it opens the SQLite store without ever writing to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from carechain.client import Client
from carechain.client.client import URL_ENV, default_url
from carechain.client.trust import NodeKey
from carechain.crypto.signatures import PublicKeyRecord
from carechain.errors import NotFoundError
from carechain.ledger.genesis import Genesis
from carechain.node.chaindir import ChainPaths, read_genesis
from carechain.storage.sqlite import SQLiteStore

url_option = typer.Option(
    "--url",
    default_factory=default_url,
    show_default=f"${URL_ENV} or http://127.0.0.1:8700",
    help="Base URL of a running carechain node.",
)
UrlOption = Annotated[str, url_option]

OptionalDirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        file_okay=False,
        help="Read this chain directory offline instead of asking a node (--url).",
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
GenesisOption = Annotated[
    Path | None,
    typer.Option(
        "--genesis",
        dir_okay=False,
        help="Trust this genesis document (obtained out of band) instead of fetching it.",
    ),
]
TrustFileOption = Annotated[
    Path | None,
    typer.Option(
        "--trust-file",
        dir_okay=False,
        envvar="CARECHAIN_TRUST_FILE",
        help="Keep the newest verified checkpoint here between runs (detects rollback).",
    ),
]


def own_node_keys(data_dir: Path) -> list[NodeKey]:
    """The node key of ``data_dir`` when it is the directory of an organisation admitted after
    genesis (ADR 0011): its own clients trust it besides the genesis keys, since its
    checkpoints are signed by a key genesis cannot name. Empty for any other directory."""
    from carechain.node.join import joined_node_key

    if not ChainPaths(data_dir).exists():
        return []
    own = joined_node_key(data_dir)
    if own is None:
        return []
    org, name, alg, public = own
    return [NodeKey(org=org, name=name, record=PublicKeyRecord(alg=alg, public=public))]


def make_client(url: str, *, genesis: Path | None = None, trust_file: Path | None = None) -> Client:
    """An SDK client; ``genesis`` pins the trust root from a file (from a joined
    organisation's directory, that node's own key is pinned too: :func:`own_node_keys`)."""
    raw = None
    if genesis is not None:
        try:
            raw = genesis.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"genesis file {genesis} does not exist") from None
    pinned = own_node_keys(genesis.parent) if genesis is not None else []
    client = Client(url, genesis=raw, trust_file=trust_file, node_keys=pinned)
    if raw is not None:
        try:
            client.check_genesis()  # the node must serve the chain the user pinned
        except BaseException:
            client.close()
            raise
    else:
        Console(stderr=True, soft_wrap=True).print(
            "[yellow]note:[/yellow] the trust root (genesis) is fetched from this node itself; "
            "pin it with --genesis FILE obtained out of band"
        )
    return client


@contextmanager
def local_store(data_dir: Path) -> Iterator[tuple[SQLiteStore, Genesis]]:
    """The chain in ``data_dir`` opened for reading (``NotFoundError`` with a hint if none)."""
    genesis = read_genesis(data_dir)
    path = ChainPaths(data_dir).ledger
    if not path.exists():
        raise NotFoundError(
            f"no ledger in {data_dir} ({path.name} is missing): run `carechain node --dir "
            f"{data_dir}` once to create block 0"
        )
    store = SQLiteStore(path)
    try:
        yield store, genesis
    finally:
        store.close()


def echo_json(value: Any) -> None:
    """Print ``value`` as indented, key-sorted JSON."""
    typer.echo(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


__all__ = [
    "GenesisOption",
    "JsonFlag",
    "OptionalDirOption",
    "TrustFileOption",
    "UrlOption",
    "echo_json",
    "local_store",
    "make_client",
]
