"""pydantic's validation errors reworded in a PBX admin's plain words."""
from __future__ import annotations

import re

from pydantic_core import ErrorDetails

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
    if kind in _PLAIN:
        return _PLAIN[kind]
    message = error["msg"]
    return message[:1].lower() + message[1:]
