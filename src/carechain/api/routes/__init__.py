"""The API's route modules, one router each."""

from carechain.api.routes import accounts, chain, ops, proofs, records, transactions

ROUTERS = (
    transactions.router,
    chain.router,
    proofs.router,
    accounts.router,
    records.router,
    ops.router,
)
"""Every router of the JSON API except auth (included by ``create_app``)."""

__all__ = ["ROUTERS"]
