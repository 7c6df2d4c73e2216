"""The viewer's query strings: numbers and the runs index's filters (:class:`IndexQuery`)."""

from __future__ import annotations

from agtrace.eventlog import INT_MAX, IndexQuery

from .listing import parse_since


def _int(value: str | None, name: str, default: int | None = None) -> int | None:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} is a whole number, not {value!r}") from None
    if abs(number) > INT_MAX:  # SQLite's integers are 64-bit: past them a query raised OverflowError (a 500)
        raise ValueError(f"{name} is out of range: at most {INT_MAX:,}, not {value[:40]}")
    return number


def _float(value: str | None, name: str) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name} is a number, not {value!r}") from None


def query_from(params) -> tuple[IndexQuery, str]:
    """The :class:`IndexQuery` and search text of an index request's query string."""
    tags = {}
    for item in params.getlist("tag"):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"a tag filter is KEY=VALUE, not {item!r}")
        tags[key.strip()] = value.strip()
    ranges = {}
    for key in ("tokens", "cost", "duration", "parts", "score", "tests"):
        low, high = _float(params.get(f"min_{key}"), f"min_{key}"), _float(params.get(f"max_{key}"), f"max_{key}")
        if low is not None or high is not None:
            ranges[key] = (low, high)
    since = params.get("since")
    query = IndexQuery(
        agent=params.get("agent") or None, model=params.get("model") or None, task=params.get("task") or None,
        status=params.get("status") or None, since_ns=parse_since(since) if since else None, tags=tags,
        ranges=ranges, tests=params.get("tests") or None, scorer=params.get("scorer") or None,
        sort=params.get("sort") or "started", reverse=params.get("reverse") in ("1", "true"),
        group_by_task=params.get("group") == "task", limit=min(_int(params.get("limit"), "limit", 50), 500),
        offset=_int(params.get("offset"), "offset", 0))
    return query, (params.get("q") or "").strip()
