"""The HTTP API (FastAPI): routes, problem+json errors, auth, metrics."""
