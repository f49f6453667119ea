"""The HTTP API: FastAPI app, routes, pydantic DTOs, SMART auth and problem+json errors.

Start with :func:`carechain.api.app.create_app`.
"""

from carechain.api.app import create_app

__all__ = ["create_app"]
