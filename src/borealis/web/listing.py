"""What the alerts and incidents pages share: filters from the address, page size and the page links."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Query

from borealis.errors import InvalidInput

PAGE_SIZE = 25
MAX_PAGE_SIZE = 200

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]
Search = Annotated[str | None, Query(max_length=200)]


def choice(
    name: str, value: str | None, valid: tuple[str, ...], normalize: Callable[[str], str]
) -> str | None:
    """The filter value in the case ``valid`` spells it, or None when the link leaves the filter out."""
    if not value:
        return None
    wanted = normalize(value.strip())
    if wanted not in valid:
        raise InvalidInput(f"The {name} filter must be one of {', '.join(valid)}; the link has {value!r}.")
    return wanted


def search_text(q: str | None) -> str | None:
    """The search words, or None when there are none: a blank box filters nothing."""
    return (q or "").strip() or None


def page_link(path: str, filters: dict[str, str | None], limit: int, offset: int) -> str:
    """The link to another page of the same filtered list, without parameters left at their default."""
    query = {key: value for key, value in filters.items() if value}
    if offset:
        query["offset"] = str(offset)
    if limit != PAGE_SIZE:
        query["limit"] = str(limit)
    return path + (f"?{urlencode(query)}" if query else "")


def list_context(
    path: str, filters: dict[str, str | None], *, total: int, limit: int, offset: int
) -> dict[str, Any]:
    """The template values every filtered, paged list needs: counts, the filters chosen and the page links."""
    return {
        "total": total,
        "limit": limit,
        "offset": offset,
        "filters": filters,
        "filtered": any(filters.values()),
        "previous_link": page_link(path, filters, limit, max(offset - limit, 0)) if offset else None,
        "next_link": page_link(path, filters, limit, offset + limit) if offset + limit < total else None,
    }
