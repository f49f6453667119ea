"""Strict parsing and validation of FHIR JSON resources received at the edge.

Order of checks in :func:`parse_resource` (each raises; nothing is repaired or defaulted):

1. size of the raw bytes against ``max_bytes`` (:class:`LimitExceededError`, 413);
2. strict JSON: UTF-8, no duplicate keys, no ``NaN``/``Infinity``/overflowing numbers, no lone
   surrogates, integers within ±(2^53-1) (so RFC 8785 can represent them), bounded depth;
3. FHIR JSON rules the models do not check: the top level is an object; no empty objects,
   arrays or strings; ``null`` only inside arrays (primitive-extension alignment);
4. ``resourceType``: present, supported (else :class:`FhirUnsupportedTypeError`, 404) and equal
   to ``expected_type`` when the endpoint names one;
5. ``fhir.resources`` R5 model; when it fails, the R4B model (the version that validated is
   recorded); when both fail, the R5 issues are reported;
6. JSON value kinds against the model's element types (pydantic would coerce ``"yes"`` into a
   boolean, and a string into an integer): FHIR JSON requires booleans as ``true``/``false``,
   integers and decimals as numbers, ``integer64`` and every other primitive as strings.

The returned :class:`FhirResource` keeps the JSON exactly as received (no defaults added).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pydantic
from fhir.resources import get_fhir_model_class as _r5_model
from fhir.resources.R4B import get_fhir_model_class as _r4b_model

from carechain.encoding import MAX_SAFE_INT
from carechain.errors import LimitExceededError
from carechain.fhir.errors import (
    SUPPORTED_TYPES,
    FhirIssue,
    FhirUnsupportedTypeError,
    FhirValidationError,
)

FhirVersion = Literal["R5", "R4B"]

DEFAULT_MAX_BYTES = 8 << 20
"""Largest accepted resource (8 MiB; ``Binary`` content beyond this goes to the blob stream)."""

MAX_DEPTH = 64
"""Deepest accepted nesting of objects and arrays."""

_MAX_ISSUES = 50


@dataclass(frozen=True, slots=True, kw_only=True)
class FhirResource:
    """A FHIR resource that passed :func:`parse_resource`."""

    resource_type: str
    """``resourceType``, one of :data:`SUPPORTED_TYPES`."""
    id: str | None
    """Logical id as sent (``None`` on a create without id)."""
    data: dict[str, Any]
    """The JSON exactly as received, as plain Python values (no defaults added)."""
    fhir_version: FhirVersion
    """Which model validated it: ``"R5"`` first, ``"R4B"`` as the fallback."""


# --- step 2: strict JSON -------------------------------------------------------------------


class _JsonError(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _JsonError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise _JsonError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _JsonError(f"number {text} overflows a double")
    return value


def _safe_int(text: str) -> int:
    if len(text) > 17:
        raise _JsonError(f"integer {text[:20]}… outside ±(2^53-1)")
    value = int(text)
    if abs(value) > MAX_SAFE_INT:
        raise _JsonError(f"integer {text} outside ±(2^53-1)")
    return value


def _loads(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FhirValidationError(
            [FhirIssue(location="(body)", message=f"not UTF-8: {exc}", code="structure")]
        ) from exc
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
            parse_float=_finite_float,
            parse_int=_safe_int,
        )
    except (_JsonError, ValueError, RecursionError) as exc:
        raise FhirValidationError(
            [FhirIssue(location="(body)", message=f"malformed JSON: {exc}", code="structure")]
        ) from exc


# --- step 3: FHIR JSON rules ---------------------------------------------------------------


def _json_rules(value: Any, path: str, depth: int, issues: list[FhirIssue]) -> None:
    if depth > MAX_DEPTH:
        raise LimitExceededError(f"{path}: nesting deeper than {MAX_DEPTH}")
    if isinstance(value, dict):
        if not value:
            issues.append(FhirIssue(location=path, message="empty object", code="structure"))
        for k, v in value.items():
            sub = f"{path}.{k}"
            if v is None:
                issues.append(FhirIssue(location=sub, message="null value", code="structure"))
            else:
                _json_rules(v, sub, depth + 1, issues)
    elif isinstance(value, list):
        if not value:
            issues.append(FhirIssue(location=path, message="empty array", code="structure"))
        elif all(v is None for v in value):
            issues.append(FhirIssue(location=path, message="array of nulls", code="structure"))
        for i, v in enumerate(value):
            if v is not None:
                _json_rules(v, f"{path}[{i}]", depth + 1, issues)
    elif isinstance(value, str):
        if value == "":
            issues.append(FhirIssue(location=path, message="empty string", code="value"))
        elif not value.isascii() and any(0xD800 <= ord(c) <= 0xDFFF for c in value):
            issues.append(FhirIssue(location=path, message="lone surrogate", code="value"))


# --- step 5: models ------------------------------------------------------------------------

_GETTERS: dict[FhirVersion, Callable[[str], Any]] = {"R5": _r5_model, "R4B": _r4b_model}


def _loc_path(resource_type: str, loc: tuple[int | str, ...]) -> str:
    path = resource_type
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        if part == "resource_type":
            part = "resourceType"
        elif part.endswith("__ext"):
            part = "_" + part[: -len("__ext")]
        elif not re.fullmatch(r"_?[A-Za-z][A-Za-z0-9_]*", part):
            continue  # a pydantic union tag or validator name, not an element
        path += f".{part}"
    return path


def _issue_code(error_type: str) -> str:
    if error_type.endswith("missing") or "required" in error_type:
        return "required"
    if error_type == "extra_forbidden":
        return "structure"
    if error_type.endswith("_type") or error_type in {"model_type", "list_type", "dict_type"}:
        return "structure"
    return "value"


def _pydantic_issues(resource_type: str, exc: pydantic.ValidationError) -> list[FhirIssue]:
    issues = []
    for err in exc.errors(include_url=False)[:_MAX_ISSUES]:
        message = " ".join(str(err["msg"]).split())
        issues.append(
            FhirIssue(
                location=_loc_path(resource_type, tuple(err["loc"])),
                message=message,
                code=_issue_code(str(err["type"])),
            )
        )
    return issues


# --- step 6: JSON kinds against element types ----------------------------------------------


def _expected_kind(annotation: object) -> str:
    text = repr(annotation)
    if "Integer64" in text:
        return "string"  # FHIR R5 integer64 travels as a JSON string
    if re.search(r"\bbool\b", text):
        return "boolean"
    if "Annotated[int" in text or "decimal.Decimal" in text or "Annotated[float" in text:
        return "number"
    return "string"


def _actual_kind(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "complex"


def _kinds(data: Mapping[str, Any], model: Any, path: str, issues: list[FhirIssue]) -> None:
    fields = type(model).model_fields
    by_alias = {(f.alias or name): (name, f) for name, f in fields.items()}
    for key, value in data.items():
        if key == "resourceType" or key not in by_alias:
            continue
        name, field = by_alias[key]
        child = getattr(model, name, None)
        sub = f"{path}.{key}"
        items = value if isinstance(value, list) else [value]
        children = child if isinstance(child, list) else [child]
        for i, (item, obj) in enumerate(zip(items, children, strict=False)):
            where = f"{sub}[{i}]" if isinstance(value, list) else sub
            if item is None:
                continue
            if isinstance(item, dict):
                if isinstance(obj, pydantic.BaseModel):
                    _kinds(item, obj, where, issues)
                continue
            want = _expected_kind(field.annotation)
            got = _actual_kind(item)
            if got != want:
                issues.append(
                    FhirIssue(
                        location=where,
                        message=f"FHIR JSON wants a {want} here, got a {got} ({item!r})",
                        code="structure",
                    )
                )


def _validate_with(
    version: FhirVersion, resource_type: str, data: dict[str, Any]
) -> list[FhirIssue]:
    model_cls = _GETTERS[version](resource_type)
    try:
        model = model_cls.model_validate(data)
    except pydantic.ValidationError as exc:
        return _pydantic_issues(resource_type, exc)
    except (ValueError, TypeError) as exc:  # fhir-core raises these for some malformed input
        return [FhirIssue(location=resource_type, message=str(exc), code="invalid")]
    issues: list[FhirIssue] = []
    _kinds(data, model, resource_type, issues)
    return issues


def validate_model(data: dict[str, Any]) -> FhirVersion:
    """Validate a resource dict with fhir.resources: R5, else R4B; raise the R5 issues."""
    resource_type = data["resourceType"]
    r5_issues = _validate_with("R5", resource_type, data)
    if not r5_issues:
        return "R5"
    if not _validate_with("R4B", resource_type, data):
        return "R4B"
    raise FhirValidationError(r5_issues, what=f"{resource_type} is not valid FHIR R5 or R4B")


# --- the entry point -----------------------------------------------------------------------


def parse_resource(
    data: bytes,
    *,
    expected_type: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> FhirResource:
    """Parse and validate one FHIR JSON resource (steps in the module docstring)."""
    if expected_type is not None and expected_type not in SUPPORTED_TYPES:
        raise FhirUnsupportedTypeError(expected_type)
    if len(data) > max_bytes:  # step 1
        raise LimitExceededError(f"resource: {len(data)} bytes exceeds the limit of {max_bytes}")
    value = _loads(data)  # step 2
    if not isinstance(value, dict):  # step 3
        raise FhirValidationError(
            [FhirIssue(location="(body)", message="a resource is a JSON object", code="structure")]
        )
    rtype = value.get("resourceType")
    root = rtype if isinstance(rtype, str) and rtype else "Resource"
    issues: list[FhirIssue] = []
    _json_rules(value, root, 0, issues)
    if not isinstance(rtype, str) or not rtype:  # step 4
        issues.insert(
            0,
            FhirIssue(location="resourceType", message="missing or not a string", code="required"),
        )
        raise FhirValidationError(issues)
    if expected_type is not None and rtype != expected_type:
        raise FhirValidationError(
            [
                FhirIssue(
                    location=f"{rtype}.resourceType",
                    message=f"this endpoint takes {expected_type}, got {rtype}",
                    code="invalid",
                )
            ]
        )
    if rtype not in SUPPORTED_TYPES:
        raise FhirUnsupportedTypeError(rtype)
    if issues:
        raise FhirValidationError(issues[:_MAX_ISSUES], what=f"{rtype} breaks FHIR JSON rules")
    version = validate_model(value)  # steps 5 and 6
    rid = value.get("id")
    return FhirResource(
        resource_type=rtype,
        id=rid if isinstance(rid, str) else None,
        data=value,
        fhir_version=version,
    )
