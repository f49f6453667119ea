"""Shared pieces of the route modules: the node dependency, id parsing, problem responses."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Depends, Request

from carechain.api.errors import PROBLEM_MEDIA_TYPE
from carechain.api.schemas import Problem
from carechain.errors import ValidationError
from carechain.node.node import Node

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def get_node(request: Request) -> Node:
    """The node this app serves (``app.state.node``)."""
    node: Node = request.app.state.node
    return node


NodeDep = Annotated[Node, Depends(get_node)]


def parse_hash_hex(value: str, what: str = "tx_id") -> bytes:
    """A 32-byte id from 64 hex digits, or ValidationError (400)."""
    if not _HEX64.fullmatch(value):
        raise ValidationError(f"{what}: got {value[:80]!r}, want 64 hex digits", code="bad_id")
    return bytes.fromhex(value)


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting problem documents for ``statuses``."""
    schema = Problem.model_json_schema()
    return {
        status: {
            "description": f"Problem ({status})",
            "content": {PROBLEM_MEDIA_TYPE: {"schema": schema}},
        }
        for status in statuses
    }


__all__ = ["NodeDep", "get_node", "parse_hash_hex", "problems"]
