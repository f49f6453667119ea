"""R5 ``Bundle`` documents: searchset (with paging links) and history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from starlette.datastructures import URL

from carechain.fhir._time import ms_to_instant
from carechain.node.records_api import StoredVersion


def page_links(url: URL, *, total: int, offset: int, count: int) -> list[dict[str, str]]:
    """``self``, ``first``, ``previous`` and ``next`` links of one page of a search."""
    links = [
        {"relation": "self", "url": str(url.include_query_params(_count=count, _offset=offset))}
    ]
    links.append(
        {"relation": "first", "url": str(url.include_query_params(_count=count, _offset=0))}
    )
    if count == 0:  # the total alone: no pages to walk
        return links
    if offset > 0:
        prev = max(offset - count, 0)
        links.append(
            {
                "relation": "previous",
                "url": str(url.include_query_params(_count=count, _offset=prev)),
            }
        )
    if offset + count < total:
        links.append(
            {
                "relation": "next",
                "url": str(url.include_query_params(_count=count, _offset=offset + count)),
            }
        )
    return links


def full_url(base: str, resource: Mapping[str, Any]) -> str:
    """``<base>/<type>/<id>``."""
    return f"{base}/{resource['resourceType']}/{resource['id']}"


def searchset(
    resources: Sequence[Mapping[str, Any]],
    *,
    base: str,
    total: int,
    links: list[dict[str, str]],
) -> dict[str, Any]:
    """A ``searchset`` Bundle of ``resources`` (every one a match)."""
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
    }
    entries = [
        {"fullUrl": full_url(base, r), "resource": dict(r), "search": {"mode": "match"}}
        for r in resources
    ]
    if entries:
        bundle["entry"] = entries
    return bundle


def history(versions: Sequence[StoredVersion], *, base: str, self_url: str) -> dict[str, Any]:
    """A ``history`` Bundle of a record's versions, newest first."""
    entries = []
    for v in versions:
        created = v.version == 1
        entries.append(
            {
                "fullUrl": f"{base}/{v.type}/{v.id}",
                "resource": dict(v.resource),
                "request": {
                    "method": "POST" if created else "PUT",
                    "url": v.type if created else f"{v.type}/{v.id}",
                },
                "response": {
                    "status": "201 Created" if created else "200 OK",
                    "location": f"{v.type}/{v.id}/_history/{v.version}",
                    "etag": f'W/"{v.version}"',
                    "lastModified": ms_to_instant(v.time),
                },
            }
        )
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "history",
        "total": len(versions),
        "link": [{"relation": "self", "url": self_url}],
    }
    if entries:
        bundle["entry"] = entries
    return bundle


__all__ = ["full_url", "history", "page_links", "searchset"]
