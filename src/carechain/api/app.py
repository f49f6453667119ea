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
from carechain.api.fhir import fhir_router, patients_router
from carechain.api.metrics import Metrics, MetricsMiddleware
from carechain.api.queries import BlockCache
from carechain.api.routes import ROUTERS
from carechain.api.routes import claims as claims_routes
from carechain.api.routes import prescriptions as rx_routes
from carechain.api.routes import supply as supply_routes
from carechain.api.routes import trials as trials_routes
from carechain.api.routes import witness as witness_routes
from carechain.node.node import Node
from carechain.node.records_api import RecordService

WEB_ROUTES_MODULE = "carechain.web.routes"
RECORDS_MODULE = "carechain.node.records"
DEFAULT_BASE_URL = "http://127.0.0.1:8700"
"""Where the node is reached unless told otherwise (``make run``'s address); anchors name
``<base_url>/fhir/<Type>/<id>/_history/<v>``."""
STATIC_DIR = Path(__file__).resolve().parent.parent / "web" / "static"

TAGS = [
    {"name": "transactions", "description": "Submit signed envelopes; read committed ones."},
    {"name": "blocks", "description": "Committed blocks, headers and seals."},
    {"name": "chain", "description": "Genesis, chain information and signed checkpoints."},
    {"name": "proofs", "description": "RFC 9162 inclusion and consistency proofs."},
    {"name": "accounts", "description": "Accounts, their keys and transactions."},
    {"name": "records", "description": "On-chain anchors of off-chain records (no PHI)."},
    {"name": "auth", "description": "SMART Backend Services: JWT assertion → bearer token."},
    {"name": "fhir", "description": "FHIR R5 REST facade: records, consent, audit, erasure."},
    {"name": "operations", "description": "Health and Prometheus metrics."},
    {"name": "claims", "description": "Claims adjudication: plans, coverage, claims, analytics."},
    {"name": "prescriptions", "description": "Controlled-substance e-prescriptions, PDMP."},
    {"name": "trials", "description": "Clinical-trial registry, outcome-switching reports."},
    {"name": "incentives", "description": "Prevention programmes, wearables, points."},
    {"name": "supply", "description": "EPCIS 2.0 capture/query, DSCSA custody, verification."},
    {"name": "witness", "description": "Consortium: cosigned checkpoints and finality."},
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


def _open_records(node: Node, data_dir: Path, base_url: str) -> RecordService | None:
    """The node's record service on ``data_dir`` (None while ``carechain.node.records`` is
    not installed)."""
    try:
        records = importlib.import_module(RECORDS_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != RECORDS_MODULE:
            raise
        return None
    open_service = getattr(records, "open_record_service", None)
    if open_service is None:  # the package is still being written
        return None
    service: RecordService = open_service(node, data_dir, base_url=base_url)
    return service


def create_app(
    node: Node, *, data_dir: Path | None = None, base_url: str = DEFAULT_BASE_URL
) -> FastAPI:
    """The API app serving ``node`` (``data_dir``: the chain directory, if any; with it the
    FHIR facade serves records from ``data_dir``; ``base_url`` is the node's public address)."""
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
    app.state.records = None if data_dir is None else _open_records(node, data_dir, base_url)
    install_problem_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(auth.router)
    app.include_router(fhir_router)
    app.include_router(patients_router)
    app.include_router(claims_routes.router)
    app.include_router(rx_routes.router)
    app.include_router(trials_routes.router)
    app.include_router(supply_routes.api_router)
    app.include_router(witness_routes.router)
    if _web_routes_available():
        web = importlib.import_module(WEB_ROUTES_MODULE)
        app.include_router(web.router)
        app.include_router(importlib.import_module("carechain.web.claims").router)
        app.include_router(importlib.import_module("carechain.web.supply").router)
        app.include_router(importlib.import_module("carechain.web.trials").router)
        app.include_router(importlib.import_module("carechain.web.rx").router)
        if STATIC_DIR.is_dir():
            app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


__all__ = ["create_app"]
