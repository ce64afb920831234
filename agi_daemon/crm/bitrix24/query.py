"""The query-string form Bitrix24 reads inside `batch` commands (PHP's http_build_query):
nested keys in brackets, `fields[PHONE][0][VALUE]=...`, every value percent-encoded."""
from __future__ import annotations

from typing import Any, Iterator, Mapping
from urllib.parse import quote


def build_query(params: Mapping[str, Any]) -> str:
    return "&".join(f"{quote(key, safe='[]')}={quote(value, safe='')}" for key, value in _pairs(params, ""))


def _pairs(value: Any, prefix: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _pairs(item, f"{prefix}[{key}]" if prefix else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _pairs(item, f"{prefix}[{index}]")
    elif isinstance(value, bool):
        yield prefix, "Y" if value else "N"
    elif value is None:
        yield prefix, ""
    else:
        yield prefix, str(value)
