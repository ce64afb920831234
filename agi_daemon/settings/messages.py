"""pydantic's validation errors reworded in a PBX admin's plain words."""
from __future__ import annotations

import difflib
import re
import types
from typing import Annotated, Any, Sequence, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from .schema import SettingsFile

_PLAIN = {
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be text",
    "string_too_short": "must not be empty",
    "dict_type": "must be a mapping of keys",
    "model_type": "must be a mapping of keys",
    "model_attributes_type": "must be a mapping of keys",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
}


def plain_message(error: ErrorDetails) -> str:
    """One pydantic error as a short sentence, e.g. "must be one of: classic, simple"."""
    kind = error["type"]
    ctx = error.get("ctx", {})
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required"
    if error.get("input", "") is None:
        return "needs a value"
    if kind in ("enum", "literal_error"):
        return "must be one of: " + ", ".join(re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "greater_than":
        return f"must be greater than {ctx['gt']}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}"
    if kind == "string_too_long":
        return f"must be at most {ctx['max_length']} characters"
    if kind in _PLAIN:
        return _PLAIN[kind]
    message = error["msg"]
    return message[:1].lower() + message[1:]


def unknown_key(key: str, known: Sequence[str], label: str) -> str:
    """"unknown key (did you mean ring_seconds?)"; with nothing close, the keys that exist
    when they are few."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key (did you mean {close[0]}?)"
    if 0 < len(known) <= 8:
        return f"unknown key ({label}: {', '.join(known)})"
    return "unknown key"


def known_keys(path: Sequence[str | int]) -> list[str]:
    """The keys the schema allows in the mapping at `path` (e.g. ("queue_groups", "sales")),
    in the schema's order; [] when that place is not a fixed set of keys."""
    annotation: Any = SettingsFile
    for part in path:
        annotation = _step(_model_or_container(annotation), part)
        if annotation is None:
            return []
    model = _model_or_container(annotation)
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _model_or_container(annotation: Any) -> Any:
    """Through Annotated[...] and `X | None` to the model, dict or tuple inside."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            inner = [arg for arg in get_args(annotation) if arg is not type(None)]
            annotation = inner[0] if len(inner) == 1 else annotation
            if len(inner) != 1:
                return annotation
        else:
            return annotation


def _step(annotation: Any, part: str | int) -> Any:
    """The annotation of `part` inside `annotation` (a model field, a dict value, a list item)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(str(part))
        return None if field is None else field.annotation
    origin = get_origin(annotation)
    if origin is dict:
        return get_args(annotation)[1]
    if origin is tuple:
        return get_args(annotation)[0]
    return None
