"""The FastAPI application factory.

``create_app(node)`` wires the routers, the problem+json error handlers, the request metrics
and the SMART token service around a running :class:`~carechain.node.node.Node` (kept in
``app.state.node``). The app never starts or stops the node: its owner does.

If the explorer (``carechain.web.routes``) is installed, its router is included and
``carechain/web/static`` is served at ``/static``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from carechain import __version__
from carechain.api import auth
from carechain.api.errors import install_problem_handlers
from carechain.api.metrics import Metrics, MetricsMiddleware
from carechain.api.queries import BlockCache
from carechain.api.routes import ROUTERS
from carechain.node.node import Node

WEB_ROUTES_MODULE = "carechain.web.routes"
STATIC_DIR = Path(__file__).resolve().parent.parent / "web" / "static"

TAGS = [
    {"name": "transactions", "description": "Submit signed envelopes; read committed ones."},
    {"name": "blocks", "description": "Committed blocks, headers and seals."},
    {"name": "chain", "description": "Genesis, chain information and signed checkpoints."},
    {"name": "proofs", "description": "RFC 9162 inclusion and consistency proofs."},
    {"name": "accounts", "description": "Accounts, their keys and transactions."},
    {"name": "auth", "description": "SMART Backend Services: JWT assertion → bearer token."},
    {"name": "operations", "description": "Health and Prometheus metrics."},
]

DESCRIPTION = """\
The HTTP API of a carechain node: a verifiable health-data ledger.

Transactions are canonical JSON envelopes (RFC 8785) signed by their senders and submitted
verbatim. Every error is an RFC 9457 problem document (`application/problem+json`) with a
stable `code`. Ids and hashes are lowercase hex.
"""


def _web_routes_available() -> bool:
    if WEB_ROUTES_MODULE in sys.modules:
        return True
    try:
        return importlib.util.find_spec(WEB_ROUTES_MODULE) is not None
    except (ModuleNotFoundError, ValueError):  # carechain.web itself is missing
        return False


def create_app(node: Node, *, data_dir: Path | None = None) -> FastAPI:
    """The API app serving ``node`` (``data_dir``: the chain directory, if any)."""
    app = FastAPI(
        title="carechain",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        license_info={"name": "Apache-2.0", "identifier": "Apache-2.0"},
        # Swagger UI and ReDoc load from a CDN that hospital networks often block; /docs is
        # rendered by carechain.web from /openapi.json instead.
        docs_url=None,
        redoc_url=None,
    )
    metrics = Metrics()
    app.state.node = node
    app.state.data_dir = data_dir
    app.state.metrics = metrics
    app.state.blocks = BlockCache()
    app.state.auth = auth.AuthService(node)
    install_problem_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(auth.router)
    if _web_routes_available():
        web = importlib.import_module(WEB_ROUTES_MODULE)
        app.include_router(web.router)
        if STATIC_DIR.is_dir():
            app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


__all__ = ["create_app"]
