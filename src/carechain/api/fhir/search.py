"""Search parameters of the FHIR facade: which a type takes, and their parsing.

Strict: a parameter this server does not implement for the type is refused (400) rather than
silently ignored, so a client never mistakes an unfiltered result for a filtered one.
``_format`` (JSON only) and ``_pretty`` are accepted and have no effect on the result set;
nor do ``_total`` (``none``/``estimate``/``accurate``) and fhirpy's ``_totalMethod``: the total
is always exact. ``_count=0`` asks for the total alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from carechain.contracts.records import DIRECTORY_TYPES
from carechain.errors import ValidationError
from carechain.fhir._time import fhir_time_to_ms
from carechain.fhir.canonical import SUBJECT_FIELDS
from carechain.fhir.errors import SUPPORTED_TYPES

SPECIAL_TYPES = frozenset({"AuditEvent", "Consent"})
"""Types with their own endpoints (not stored records)."""
RECORD_TYPES: tuple[str, ...] = tuple(
    t
    for t in SUPPORTED_TYPES
    if t not in SPECIAL_TYPES and (t == "Patient" or t in SUBJECT_FIELDS or t in DIRECTORY_TYPES)
)
"""Types stored as records: create, read, vread, update, history, search, delete (erase).

The record service stores patient records: a Patient, or a resource whose subject is one
(``SUBJECT_FIELDS``; a Binary's is its ``securityContext``), and the directory resources
Organization and Practitioner (not about a patient: no consent, no audit). Binary attachments also
stream raw (``api/fhir/binary.py``)."""

DEFAULT_COUNT = 20
MAX_COUNT = 100
MAX_IDS = 100
MAX_OFFSET = 1_000_000
COMMON_PARAMS = ("_id", "_lastUpdated", "_count", "_offset")
IGNORED_PARAMS: dict[str, frozenset[str] | None] = {
    "_format": frozenset({"json", "application/json", "application/fhir+json"}),
    "_pretty": frozenset({"true", "false"}),
    "_total": frozenset({"none", "estimate", "accurate"}),
    "_totalMethod": frozenset({"count", "estimate", "accurate"}),
}
"""Parameters that do not change the result (name → accepted values)."""
CODE_TYPES = frozenset({"Observation", "Condition"})


def search_params(rtype: str) -> tuple[str, ...]:
    """Search parameters implemented for record type ``rtype``."""
    params = list(COMMON_PARAMS)
    if rtype == "Provenance":
        return ("target", "_count", "_offset")
    field = SUBJECT_FIELDS.get(rtype)
    if field is not None:
        params.append("patient")
        if field == "subject":
            params.append("subject")
    if rtype in CODE_TYPES:
        params.append("code")
    return tuple(params)


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchQuery:
    """A parsed search request."""

    patient: str | None = None
    """Patient id (``Patient/<id>`` without the type)."""
    ids: tuple[str, ...] = ()
    last_updated: tuple[int | None, int | None] = (None, None)
    """Inclusive bounds in Unix ms."""
    code: str | None = None
    """``code`` token as sent (``system|code`` or ``code``)."""
    count: int = DEFAULT_COUNT
    offset: int = 0


def _bad(message: str) -> ValidationError:
    return ValidationError(message, code="bad_search_param")


def patient_id(value: str, what: str) -> str:
    """``x`` from ``x``, ``Patient/x`` or ``…/Patient/x`` (400 for other references)."""
    value = value.strip()
    parts = value.split("/")
    if len(parts) == 1 and parts[0]:
        return parts[0]
    if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1]:
        return parts[-1]
    raise _bad(f"{what}: {value[:80]!r} is not a Patient reference")


def _int(name: str, value: str, lo: int, hi: int) -> int:
    if not value.isdigit() or not lo <= int(value) <= hi:
        raise _bad(f"{name}: got {value[:20]!r}, want an integer in [{lo}, {hi}]")
    return int(value)


def _last_updated(values: Sequence[str]) -> tuple[int | None, int | None]:
    lo: int | None = None
    hi: int | None = None
    for raw in values:
        prefix, text = (raw[:2], raw[2:]) if raw[:2].isalpha() else ("eq", raw)
        try:
            start, end = fhir_time_to_ms(text), fhir_time_to_ms(text, end=True)
        except ValueError:
            raise _bad(f"_lastUpdated: {raw[:40]!r} is not a FHIR date/dateTime") from None
        if prefix in ("ge", "gt", "eq"):
            bound = start if prefix != "gt" else end
            lo = bound if lo is None else max(lo, bound)
        if prefix in ("le", "lt", "eq"):
            bound = end - 1 if prefix != "lt" else start - 1
            hi = bound if hi is None else min(hi, bound)
        if prefix not in ("ge", "gt", "eq", "le", "lt"):
            raise _bad(f"_lastUpdated: prefix {prefix!r} is not supported (eq, ge, gt, le, lt)")
    return lo, hi


def parse_search(rtype: str, params: Sequence[tuple[str, str]]) -> SearchQuery:
    """Parse the query of ``GET /fhir/<rtype>`` (400 for anything not implemented)."""
    allowed = set(search_params(rtype))
    grouped: dict[str, list[str]] = {}
    for name, value in params:
        if name in IGNORED_PARAMS:
            accepted = IGNORED_PARAMS[name]
            if accepted is not None and value not in accepted:
                raise _bad(f"{name}: {value[:40]!r} is not one of {', '.join(sorted(accepted))}")
            continue
        base = name.split(":")[0]
        if base not in allowed or ":" in name:
            raise _bad(
                f"search parameter {name[:40]!r} is not supported for {rtype}; supported: "
                + ", ".join(sorted(allowed))
            )
        grouped.setdefault(name, []).append(value)
    for name, values in grouped.items():
        if name != "_lastUpdated" and len(values) > 1:
            raise _bad(f"search parameter {name!r} is repeated")
        if any(v == "" for v in values):
            raise _bad(f"search parameter {name!r} is empty")
    one = {name: values[0] for name, values in grouped.items()}
    patient = patient_id(one["patient"], "patient") if "patient" in one else None
    if "subject" in one:
        subject = patient_id(one["subject"], "subject")
        if patient is not None and subject != patient:
            raise _bad("patient and subject name different patients")
        patient = subject
    ids: tuple[str, ...] = ()
    if "_id" in one:
        ids = tuple(dict.fromkeys(i.strip() for i in one["_id"].split(",") if i.strip()))
        if not ids or len(ids) > MAX_IDS:
            raise _bad(f"_id: want 1-{MAX_IDS} comma-separated ids")
    return SearchQuery(
        patient=patient,
        ids=ids,
        last_updated=_last_updated(grouped.get("_lastUpdated", ())),
        code=one.get("code"),
        count=_int("_count", one["_count"], 0, MAX_COUNT) if "_count" in one else DEFAULT_COUNT,
        offset=_int("_offset", one["_offset"], 0, MAX_OFFSET) if "_offset" in one else 0,
    )


__all__ = [
    "DEFAULT_COUNT",
    "MAX_COUNT",
    "RECORD_TYPES",
    "SPECIAL_TYPES",
    "SearchQuery",
    "parse_search",
    "patient_id",
    "search_params",
]
