"""The JSON Schema building blocks the OpenAPI modules share (spec, internal, ollama)."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

STR, INT, NUM, BOOL = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}
NULL = {"type": "null"}

_DECIMAL = r"([0-9]+(\.[0-9]*)?|\.[0-9]+)"
#: A duration string as ``units.parse_duration`` reads it: seconds ("300", "1e3"), or number+unit
#: parts ("5m", "1h30m", "250ms"); a leading "-" means forever.
DURATION = rf"^\s*([+-]?{_DECIMAL}([eE][+-]?[0-9]{{1,2}})?|-?({_DECIMAL}([mM][sS]|[sSmMhHdD]))+)\s*$"


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(props: dict[str, Schema], required: tuple[str, ...] | str = ()) -> Schema:
    """An object with these properties; ``required="*"``: every one (the code always writes them all)."""
    return {"type": "object", "properties": props, "required": list(props if required == "*" else required)}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}
