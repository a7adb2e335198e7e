"""SCIM attribute paths (RFC 7644 §3.10) and flat attribute maps, both ways.

Everything above the connector compares flat maps keyed by path; this module is the one
place that knows how such a path lands in a SCIM User. The supported forms are::

    userName                                   a core attribute
    name.givenName                             a sub-attribute
    emails[type eq "work"].value               one entry of a multi-valued attribute
    urn:...:enterprise:2.0:User:department     an extension attribute
    urn:...:enterprise:2.0:User:manager.value  an extension sub-attribute
    roles.value                                every entry's value of a multi-valued
                                               attribute, as a set (``directory.multivalue``)

The functions are pure: JSON in, JSON out. Attribute names match case-insensitively
(RFC 7643 §2.1), so a resource an app spells ``UserName`` reads like ``userName``.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from scim2_models import EnterpriseUser, Path, User

from connectors.base import Value
from directory.multivalue import decode_set, encode_set

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
#: The wire model every User response is validated against.
USER_MODEL = User[EnterpriseUser]

_NAME = r"[A-Za-z][\w$-]*"
_SHAPE = re.compile(rf"(?P<attr>{_NAME})(?:\[(?P<filter>[^\]]*)\])?(?:\.(?P<sub>{_NAME}))?")
_FILTER = re.compile(
    rf'\s*(?P<attr>{_NAME})\s+eq\s+(?P<value>"(?:[^"\\]|\\.)*"|true|false)\s*', re.IGNORECASE
)

Json = dict[str, Any]

#: multi-valued core User attributes whose ``.value`` paths read and write a set
SET_ATTRIBUTES = frozenset({"roles", "entitlements"})


@dataclass(frozen=True)
class AttributePath:
    """A parsed path. ``schema`` is an extension URN, or None for the core User schema."""

    schema: str | None
    attribute: str
    filter: tuple[str, str | bool] | None
    sub_attribute: str | None

    @property
    def attribute_path(self) -> str:
        """The attribute itself, URN-qualified when it lives in an extension."""
        return f"{self.schema}:{self.attribute}" if self.schema else self.attribute

    @property
    def entry_path(self) -> str:
        """The attribute narrowed by its filter: ``emails[type eq "work"]``."""
        if self.filter is None:
            return self.attribute_path
        name, value = self.filter
        return f"{self.attribute_path}[{name} eq {json.dumps(value, ensure_ascii=False)}]"

    def __str__(self) -> str:
        return f"{self.entry_path}.{self.sub_attribute}" if self.sub_attribute else self.entry_path

    @property
    def is_set(self) -> bool:
        """``roles.value``: the values of every entry of a multi-valued attribute, as one
        set. (A single-valued complex attribute's ``.value``, such as the manager's, is
        not: ``check_paths`` tells them apart by the schema.)"""
        return self.filter is None and self.attribute.casefold() in SET_ATTRIBUTES


@functools.lru_cache(maxsize=1024)
def parse_path(text: str) -> AttributePath:
    """Parse one of the supported path forms; ValueError names anything else."""
    schema: str | None = None
    rest = text
    if text[:4].lower() == "urn:":
        # The URN ends at the last colon before any filter; "2.0" holds a dot, so
        # sub-attributes can only be split off after the URN is gone.
        urn, _, _ = text.split("[", 1)[0].rpartition(":")
        if not urn:
            raise ValueError(f"unsupported attribute path {text!r}: URN without an attribute")
        schema = None if urn.casefold() == CORE_USER.casefold() else urn
        rest = text[len(urn) + 1 :]
    shape = _SHAPE.fullmatch(rest)
    if shape is None:
        raise ValueError(f"unsupported attribute path {text!r}")
    filter_ = None
    if shape["filter"] is not None:
        if shape["sub"] is None:
            raise ValueError(f"unsupported attribute path {text!r}: a filter needs .subAttribute")
        filter_ = _parse_filter(text, shape["filter"])
    return AttributePath(schema, shape["attr"], filter_, shape["sub"])


def _parse_filter(text: str, expression: str) -> tuple[str, str | bool]:
    """Only ``subAttr eq "value"`` (or true/false): enough to pick one entry by type."""
    match = _FILTER.fullmatch(expression)
    if match is None:
        raise ValueError(f"unsupported filter in {text!r}: only 'attr eq \"value\"' is supported")
    literal = match["value"]
    value: str | bool = json.loads(literal.lower() if literal[0] != '"' else literal)
    return match["attr"], value


def check_paths(paths: Iterable[str]) -> None:
    """Refuse paths the User model cannot resolve or that do not name one scalar value,
    so a typo in a mapping fails at start-up rather than reading as None forever."""
    problems: list[str] = []
    for text in paths:
        try:
            path = parse_path(text)
            binding = Path[USER_MODEL](text).resolve()
        except Exception as exc:  # scim2-models raises its own syntax errors
            problems.append(f"{text!r}: {exc}")
            continue
        if binding is None:
            problems.append(f"{text!r}: no such attribute in the User or enterprise schema")
        elif binding.sub_field_name is None and _is_complex(binding.field_type):
            problems.append(f"{text!r}: names a complex attribute, not a value")
        elif binding.is_multivalued and path.filter is None and not _set_value(path):
            problems.append(
                f"{text!r}: multi-valued; select one entry with a [filter]"
                f" (or, for {' and '.join(sorted(SET_ATTRIBUTES))}, map .value as a set)"
            )
    if problems:
        raise ValueError("unsupported attribute paths: " + "; ".join(problems))


def _set_value(path: AttributePath) -> bool:
    return path.is_set and path.schema is None and (path.sub_attribute or "") == "value"


def _is_complex(field_type: Any) -> bool:
    return isinstance(field_type, type) and issubclass(field_type, BaseModel)


def flatten(resource: Mapping[str, Any], paths: Iterable[str]) -> dict[str, Value]:
    """The value at each path; None where the resource has none."""
    return {text: read_value(resource, parse_path(text)) for text in paths}


def read_value(resource: Mapping[str, Any], path: AttributePath) -> Value:
    """One value. Where several entries match a filter, the primary one wins (RFC 7643
    §2.4), else the first."""
    value = _child(_container(resource, path), path.attribute)
    if path.is_set:
        return encode_set(_child(e, path.sub_attribute or "value") for e in _entries(value))
    if path.filter is not None:
        entries = [e for e in _entries(value) if _matches(e, path.filter)]
        primary = [e for e in entries if _child(e, "primary") is True]
        value = (primary or entries)[0] if entries else None
    if path.sub_attribute is not None:
        value = _child(value, path.sub_attribute)
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int | float):
        return str(value)
    raise ValueError(f"{path}: expected a single value, found {type(value).__name__}")


def to_resource(attributes: Mapping[str, Value]) -> Json:
    """A POST body (RFC 7644 §3.3): None values are left out, and each extension that
    receives a value is listed in ``schemas``."""
    resource: Json = {"schemas": [CORE_USER]}
    for text, value in attributes.items():
        if value is not None:
            _write(resource, parse_path(text), value)
    _list_extensions(resource)
    return resource


def merge_for_put(resource: Mapping[str, Any], attributes: Mapping[str, Value]) -> Json:
    """The PUT body replacing ``resource`` (RFC 7644 §3.5.1): the resource as the app
    holds it, ``meta`` dropped (read-only), each path set or, for None, removed.
    Attributes Roster does not map are carried over, because PUT clears what it omits."""
    body: Json = copy.deepcopy(dict(resource))
    if (meta := _key(body, "meta")) is not None:
        del body[meta]
    for text, value in attributes.items():
        path = parse_path(text)
        if value is None:
            _delete(body, path)
        else:
            _write(body, path, value)
    _list_extensions(body)
    return body


def to_patch_ops(
    changes: Mapping[str, Value], resource: Mapping[str, Any] | None = None
) -> list[Json]:
    """PATCH operations (RFC 7644 §3.5.2): ``replace`` for values, ``remove`` for None.

    A filtered replace whose filter matches no entry fails with 400 ``noTarget``
    (§3.5.2.3; scim2-server does this for ``add`` too). When the caller passes the
    current ``resource``, such paths become an ``add`` of a whole new entry instead.
    """
    ops: list[Json] = []
    new_entries: dict[str, Json] = {}  # entry path -> entry, so two subs share one entry
    for text, value in changes.items():
        path = parse_path(text)
        if path.is_set:
            ops.append(_set_op(path, value))
        elif value is None:
            ops.append({"op": "remove", "path": _removal_target(path)})
        elif path.filter is not None and resource is not None and not _has_entry(resource, path):
            entry = new_entries.get(path.entry_path)
            if entry is None:
                existing = _entries(_child(_container(resource, path), path.attribute))
                entry = new_entries[path.entry_path] = _new_entry(existing, path)
                ops.append({"op": "add", "path": path.attribute_path, "value": [entry]})
            entry[path.sub_attribute or "value"] = value
        else:
            ops.append({"op": "replace", "path": str(path), "value": value})
    return ops


def _set_op(path: AttributePath, value: Value) -> Json:
    """A set is replaced whole: the app keeps exactly the directory's values."""
    entries = _set_entries(path, value)
    if not entries:
        return {"op": "remove", "path": path.attribute_path}
    return {"op": "replace", "path": path.attribute_path, "value": entries}


def _set_entries(path: AttributePath, value: Value) -> list[Json]:
    return [{path.sub_attribute or "value": v} for v in decode_set(value)]


def _removal_target(path: AttributePath) -> str:
    """``value`` is what a complex attribute or entry stands for: without it, a bare
    ``{"type": "work"}`` (which scim2-server keeps) or ``manager: {"$ref": ...}`` is
    noise. Clearing ``.value`` therefore removes the whole entry or attribute."""
    if _clears_parent(path):
        return path.entry_path
    return str(path)


def _clears_parent(path: AttributePath) -> bool:
    return (path.sub_attribute or "").casefold() == "value"


def _write(resource: Json, path: AttributePath, value: str | bool) -> None:
    container = _ensure(resource, path.schema, dict) if path.schema else resource
    if path.is_set:
        _set(container, path.attribute, _set_entries(path, value))
        return
    if path.filter is None:
        if path.sub_attribute is None:
            _set(container, path.attribute, value)
        else:
            _set(_ensure(container, path.attribute, dict), path.sub_attribute, value)
        return
    entries = _ensure(container, path.attribute, list)
    matching = [e for e in entries if _matches(e, path.filter)]
    if not matching:
        matching = [_new_entry(entries, path)]
        entries.append(matching[0])
    for entry in matching:
        _set(entry, path.sub_attribute or "value", value)


def _delete(resource: Json, path: AttributePath) -> None:
    container = _container(resource, path)
    if not isinstance(container, dict):
        return
    if path.filter is not None:
        _delete_entries(container, path)
    elif path.sub_attribute is None or _clears_parent(path) or path.is_set:
        _pop(container, path.attribute)
    elif isinstance(parent := _child(container, path.attribute), dict):
        _pop(parent, path.sub_attribute)
        if not parent:
            _pop(container, path.attribute)
    if path.schema and not container:
        _pop(resource, path.schema)
        resource["schemas"] = [
            s for s in _schemas(resource) if s.casefold() != path.schema.casefold()
        ]


def _delete_entries(container: Json, path: AttributePath) -> None:
    assert path.filter is not None
    entries = _child(container, path.attribute)
    if not isinstance(entries, list):
        return
    if _clears_parent(path):
        kept = [e for e in entries if not _matches(e, path.filter)]
        if kept:
            _set(container, path.attribute, kept)
        else:
            _pop(container, path.attribute)
        return
    for entry in entries:
        if _matches(entry, path.filter):
            _pop(entry, path.sub_attribute or "value")


def _new_entry(existing: list[Any], path: AttributePath) -> Json:
    """An entry the filter would match, primary unless another entry already is."""
    assert path.filter is not None
    name, value = path.filter
    entry: Json = {name: value}
    if _key(entry, "primary") is None and not any(_child(e, "primary") is True for e in existing):
        entry["primary"] = True
    return entry


def _has_entry(resource: Mapping[str, Any], path: AttributePath) -> bool:
    assert path.filter is not None
    entries = _entries(_child(_container(resource, path), path.attribute))
    return any(_matches(e, path.filter) for e in entries)


def _list_extensions(resource: Json) -> None:
    """RFC 7643 §3: ``schemas`` names every extension whose attributes are present."""
    schemas = _schemas(resource)
    known = {s.casefold() for s in schemas}
    for key, value in resource.items():
        if key[:4].lower() == "urn:" and isinstance(value, dict) and key.casefold() not in known:
            schemas.append(key)
    resource["schemas"] = schemas


def _schemas(resource: Mapping[str, Any]) -> list[str]:
    found = resource.get("schemas")
    return list(found) if isinstance(found, list) and found else [CORE_USER]


def _container(resource: Mapping[str, Any], path: AttributePath) -> Any:
    return _child(resource, path.schema) if path.schema else resource


def _entries(value: Any) -> list[Json]:
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


def _matches(entry: Mapping[str, Any], filter_: tuple[str, str | bool]) -> bool:
    """``eq`` on a SCIM canonical value such as ``type`` ignores case (RFC 7644 §3.4.2.2)."""
    name, expected = filter_
    actual = _child(entry, name)
    if isinstance(actual, str) and isinstance(expected, str):
        return actual.casefold() == expected.casefold()
    return actual is expected if isinstance(expected, bool) else actual == expected


def _key(obj: Mapping[str, Any], name: str) -> str | None:
    if name in obj:
        return name
    folded = name.casefold()
    return next((key for key in obj if key.casefold() == folded), None)


def _child(obj: Any, name: str) -> Any:
    if not isinstance(obj, Mapping):
        return None
    key = _key(obj, name)
    return None if key is None else obj[key]


def _set(obj: Json, name: str, value: Any) -> None:
    obj[_key(obj, name) or name] = value


def _pop(obj: Json, name: str) -> None:
    if (key := _key(obj, name)) is not None:
        del obj[key]


def _ensure(obj: Json, name: str, kind: type[dict] | type[list]) -> Any:
    """The child ``name``, replaced by an empty ``kind`` if absent or of another type."""
    current = _child(obj, name)
    if not isinstance(current, kind):
        current = kind()
        _set(obj, name, current)
    return current
