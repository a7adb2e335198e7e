"""Between Roster's flat attributes and an app's JSON, and the small, safe templates of a
REST app's paths and bodies. Pure functions: JSON in, JSON out.

Dotted paths (``profile.email``, ``emails.0.value``) address JSON values; a numeric
segment indexes a list when reading. Templates are parsed with ``string.Formatter`` and
only ever *looked up*: a placeholder names a value, it is never evaluated.
"""

from __future__ import annotations

import copy
import string
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from connectors.base import Value
from directory.appkinds.rest_parts import FieldConfig

Json = dict[str, Any]


class Missing:
    """The marker for "no such path" (a JSON null is None)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = Missing()


def read_path(document: Any, path: str) -> Any:
    """The value at a dotted path, or MISSING. ``""`` is the document itself."""
    current = document
    for part in path.split(".") if path else []:
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return MISSING
    return current


def write_path(document: Json, path: str, value: Any) -> None:
    """Set the value at a dotted path, making the objects on the way."""
    *parents, last = path.split(".")
    current = document
    for part in parents:
        child = current.get(part)
        if not isinstance(child, dict):
            child = current[part] = {}
        current = child
    current[last] = value


class FieldCodec:
    """One attribute's field: where it is, and how its value is spelled there."""

    def __init__(self, spec: FieldConfig) -> None:
        self.path = spec.path
        self.prefix = spec.prefix
        self.suffix = spec.suffix
        self.join = spec.join

    def owns(self, raw: Any) -> bool:
        """Whether a wire value carries this field's prefix and suffix (a key that does
        not is an account Roster does not manage)."""
        if not (self.prefix or self.suffix):
            return True
        return (
            isinstance(raw, str)
            and len(raw) >= len(self.prefix) + len(self.suffix)
            and raw.startswith(self.prefix)
            and raw.endswith(self.suffix)
        )

    def decode(self, raw: Any) -> Value:
        """The flat value of a wire value; ValueError names the type, never the value."""
        if raw is MISSING or raw is None:
            return None
        if self.join is not None and isinstance(raw, list):
            if not all(isinstance(item, str) for item in raw):
                raise ValueError(f"{self.path}: expected a list of strings")
            return self.join.join(sorted(raw))
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int | float):
            return str(raw)
        if isinstance(raw, str):
            if (self.prefix or self.suffix) and self.owns(raw):
                return raw[len(self.prefix) : len(raw) - len(self.suffix)]
            return raw
        raise ValueError(f"{self.path}: expected a single value, found {type(raw).__name__}")

    def encode(self, value: Value) -> Any:
        """The wire value of a flat value."""
        if value is None:
            return [] if self.join is not None else None
        if isinstance(value, bool):
            return value
        if self.join is not None:
            return sorted(part.strip() for part in value.split(self.join) if part.strip())
        return f"{self.prefix}{value}{self.suffix}"


def mapped_body(codecs: Mapping[str, FieldCodec], attributes: Mapping[str, Value]) -> Json:
    """The attributes as a JSON object, each at its field's path."""
    body: Json = {}
    for name, value in attributes.items():
        codec = codecs[name]
        write_path(body, codec.path, codec.encode(value))
    return body


def merged_body(current: Any, writes: Mapping[str, Any]) -> Json:
    """The account as the app holds it with ``writes`` (path -> wire value) over it."""
    body: Json = copy.deepcopy(dict(current)) if isinstance(current, Mapping) else {}
    for path, value in writes.items():
        write_path(body, path, value)
    return body


# -- templates ----------------------------------------------------------------------------------


def render_path(template: str, values: Mapping[str, Any]) -> str:
    """A path with each ``{name}`` replaced by its URL-quoted value, so that no value (an
    id holding ``/`` or ``?``) can change which resource the path names."""
    parts = []
    for literal, name, _, _ in string.Formatter().parse(template):
        parts.append(literal)
        if name is not None:
            value = values.get(name)
            if value is None or value == "":
                raise ValueError(f"{template}: no value for {{{name}}}")
            parts.append(quote(_text(value), safe=""))
    return "".join(parts)


def render_body(template: Any, values: Mapping[str, Any]) -> Any:
    """A body template filled in: a string that is exactly ``{name}`` becomes the value
    itself (a bool stays a bool, a list a list); other strings get values spliced in as
    text (None as ""); objects and lists are filled in recursively; the rest is constant."""
    if isinstance(template, dict):
        return {key: render_body(value, values) for key, value in template.items()}
    if isinstance(template, list):
        return [render_body(value, values) for value in template]
    if not isinstance(template, str):
        return template
    parsed = list(string.Formatter().parse(template))
    if len(parsed) == 1 and parsed[0][0] == "" and parsed[0][1] is not None:
        return values.get(parsed[0][1])
    text = []
    for literal, name, _, _ in parsed:
        text.append(literal)
        if name is not None and values.get(name) is not None:
            text.append(_text(values[name]))
    return "".join(text)


def render_query(template: str, value: str) -> str:
    """A search parameter's value; ``"`` and ``\\`` in the value are backslash-escaped,
    so a value cannot close a quoted string in the app's filter language."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return template.replace("{value}", escaped)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)
