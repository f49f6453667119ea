"""Validation of EPCIS 2.0 JSON/JSON-LD documents and events against GS1's official JSON schema.

The schema files are GS1's own (``schemas/``, copied from github gs1/EPCIS ``JSON-Schema/``,
licence in ``schemas/LICENSE-GS1.txt``) and are resolved offline: every ``$ref`` is served from
a local registry keyed by the files' ``$id``; nothing is fetched. Errors name the JSON path of
the offending value (``$.epcisBody.eventList[0].action``) and the schema rule that failed.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from carechain.errors import ValidationError

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
ROOT_SCHEMA = "EPCIS-JSON-Schema-root.json"
MAX_ERRORS = 20
DOCUMENT_TYPES = ("EPCISDocument", "EPCISQueryDocument")


@dataclass(frozen=True, slots=True, kw_only=True)
class SchemaIssue:
    """One schema violation."""

    path: str
    """JSONPath of the offending value (``$`` is the document)."""
    message: str
    """What the schema requires there."""
    rule: str
    """The schema keyword that failed (``required``, ``enum``, ``format`` …)."""


class EPCISSchemaError(ValidationError):
    """The document does not conform to the EPCIS 2.0 JSON schema (HTTP 422)."""

    def __init__(self, issues: list[SchemaIssue]) -> None:
        first = issues[0]
        super().__init__(
            f"EPCIS schema: {first.path}: {first.message} ({len(issues)} issue(s))",
            code="epcis_schema",
        )
        self.issues = issues


@functools.cache
def _validator() -> Draft7Validator:
    resources = []
    root: dict[str, Any] = {}
    for path in sorted(SCHEMA_DIR.rglob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        resources.append((doc["$id"], Resource.from_contents(doc, default_specification=DRAFT7)))
        if path.name == ROOT_SCHEMA:
            root = doc
    registry: Registry[Any] = Registry().with_resources(resources)
    return Draft7Validator(root, registry=registry, format_checker=Draft7Validator.FORMAT_CHECKER)


def _path(parts: Any) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def schema_issues(doc: Mapping[str, Any]) -> list[SchemaIssue]:
    """Every violation (at most :data:`MAX_ERRORS`, deepest first), empty when valid."""
    issues = []
    errors = sorted(
        _validator().iter_errors(doc), key=lambda e: (-len(e.absolute_path), _path(e.absolute_path))
    )
    for err in errors[:MAX_ERRORS]:
        issues.append(
            SchemaIssue(
                path=_path(err.absolute_path), message=err.message[:300], rule=str(err.validator)
            )
        )
    return issues


def validate_epcis(doc: object) -> Mapping[str, Any]:
    """``doc`` if it is a schema-valid EPCIS document or event; else :class:`EPCISSchemaError`."""
    if not isinstance(doc, Mapping):
        raise EPCISSchemaError([SchemaIssue(path="$", message="want a JSON object", rule="type")])
    issues = schema_issues(doc)
    if issues:
        raise EPCISSchemaError(issues)
    return doc


def document_events(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The events of a document (``eventList``, a query result's ``eventList``) or the single
    event itself."""
    if doc.get("type") not in DOCUMENT_TYPES:
        return [doc]
    body = doc.get("epcisBody", {})
    if "queryResults" in body:
        body = body["queryResults"].get("resultsBody", {})
    events = body.get("eventList", [])
    return [e for e in events if isinstance(e, Mapping)]


__all__ = [
    "EPCISSchemaError",
    "SchemaIssue",
    "document_events",
    "schema_issues",
    "validate_epcis",
]
