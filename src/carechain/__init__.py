"""carechain: a verifiable health-data ledger for healthcare consortia."""

__version__ = "0.1.0"
