"""Web explorer: server-rendered pages over a node's ledger (see ``carechain.web.routes``)."""
