"""Metadata filters: Mongo-style JSON parsed into a small typed tree.

    {"city": "Austin"}                          equality (fields side by side: and)
    {"rate": {"$gte": 18, "$lt": 25}}           operators on one field (and)
    {"skill": {"$in": ["CDL-A", "OSHA-30"]}}    membership ($nin: not in)
    {"$or": [{"city": "Austin"}, {"remote": true}]}

Values fall in classes (null, bool, number, string, other JSON); a comparison
only holds within one class, so a string never equals or orders against a
number, and `true` is not `1`. `$ne` and `$nin` are the negations of `$eq` and
`$in`: they also match items that lack the field (as in MongoDB). Parsing is
the only place a filter is read as JSON; evaluation (`metadata.py`) walks the
tree, never text.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from lakehouse.errors import InvalidRequest

RangeOp = Literal["$lt", "$lte", "$gt", "$gte"]
RANGE_OPS: tuple[RangeOp, ...] = ("$lt", "$lte", "$gt", "$gte")
FIELD_OPS = ("$eq", "$ne", "$in", "$nin", *RANGE_OPS)
MAX_NODES = 1000
MAX_DEPTH = 32
MAX_IN_VALUES = 10000

Kind = Literal["null", "bool", "number", "string", "other"]


@dataclass(frozen=True)
class Value:
    """A filter or metadata value in its comparison class, normalised for comparing."""

    kind: Kind
    number: float = 0.0
    text: str = ""


@dataclass(frozen=True)
class Equals:
    """`field` holds a value equal to one of `values` (one value for `$eq`)."""

    field: str
    values: tuple[Value, ...]


@dataclass(frozen=True)
class Range:
    """`field` holds a number (or string) ordered `op` against `bound`."""

    field: str
    op: RangeOp
    bound: Value


@dataclass(frozen=True)
class Not:
    """The negation of a node (`$ne`, `$nin`)."""

    node: Node


@dataclass(frozen=True)
class And:
    """Every child holds (an empty And holds for every item)."""

    nodes: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """At least one child holds."""

    nodes: tuple[Node, ...]


Node = Equals | Range | Not | And | Or

MATCH_ALL = And(())


def value_of(raw: Any) -> Value:
    """A JSON value's comparison class and normalised form; never raises."""
    if raw is None:
        return Value("null")
    if isinstance(raw, bool):
        return Value("bool", number=1.0 if raw else 0.0)
    if isinstance(raw, int):
        try:
            return Value("number", number=float(raw))
        except OverflowError:  # an integer past float's range still orders as infinite
            return Value("number", number=math.inf if raw > 0 else -math.inf)
    if isinstance(raw, float):
        return Value("number", number=raw)
    if isinstance(raw, str):
        return Value("string", text=_encodable(raw))
    try:
        canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        canonical = repr(raw)
    return Value("other", text=_encodable(canonical))


def _encodable(text: str) -> str:
    # Lone surrogates (possible in decoded JSON) cannot be stored as UTF-8;
    # escaping them keeps equality between equal inputs and never raises.
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


class _Parser:
    def __init__(self) -> None:
        self.nodes = 0

    def filter(self, raw: Any, depth: int) -> Node:
        if not isinstance(raw, dict):
            raise _bad(f"a filter must be a JSON object, not {_json_type(raw)}")
        if depth > MAX_DEPTH:
            raise _bad(f"a filter may nest at most {MAX_DEPTH} levels")
        parts: list[Node] = []
        for key, value in raw.items():
            if key in ("$and", "$or"):
                parts.append(self.combine(key, value, depth))
            elif key.startswith("$"):
                raise _bad(f"unknown operator {key!r} (use $and, $or, or a field name)")
            elif not key:
                raise _bad("a filter field name must not be empty")
            else:
                parts.append(self.field(key, value))
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def combine(self, op: str, value: Any, depth: int) -> Node:
        if not isinstance(value, list) or not value:
            raise _bad(f"{op} takes a non-empty list of filters")
        nodes = tuple(self.filter(part, depth + 1) for part in value)
        return And(nodes) if op == "$and" else Or(nodes)

    def field(self, name: str, value: Any) -> Node:
        self._count()
        if not isinstance(value, dict) or not value or not any(k.startswith("$") for k in value):
            return Equals(name, (value_of(value),))  # a literal, objects and {} included
        if not all(k.startswith("$") for k in value):
            raise _bad(f"field {name!r} mixes operators and plain keys; write the object as {{'$eq': ...}}")
        conditions: list[Node] = []
        for op, operand in value.items():
            self._count()
            if op == "$eq":
                conditions.append(Equals(name, (value_of(operand),)))
            elif op == "$ne":
                conditions.append(Not(Equals(name, (value_of(operand),))))
            elif op in ("$in", "$nin"):
                if not isinstance(operand, list):
                    raise _bad(f"{op} on field {name!r} takes a list of values")
                if len(operand) > MAX_IN_VALUES:
                    raise _bad(f"{op} takes at most {MAX_IN_VALUES} values")
                node: Node = Equals(name, tuple(value_of(v) for v in operand))
                conditions.append(node if op == "$in" else Not(node))
            elif op in RANGE_OPS:
                bound = value_of(operand)
                if bound.kind not in ("number", "string") or math.isnan(bound.number):
                    raise _bad(f"{op} on field {name!r} compares with a number or a string")
                conditions.append(Range(name, op, bound))  # type: ignore[arg-type]
            else:
                raise _bad(f"unknown operator {op!r} on field {name!r} (known: {', '.join(FIELD_OPS)})")
        return conditions[0] if len(conditions) == 1 else And(tuple(conditions))

    def _count(self) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _bad(f"a filter may hold at most {MAX_NODES} conditions")


def parse_filter(raw: Any) -> Node:
    """The typed tree of a JSON filter (None or {} match every item).

    Raises:
        InvalidRequest: not an object, unknown operator, malformed operand, too large.
    """
    if raw is None:
        return MATCH_ALL
    return _Parser().filter(raw, 1)


def fields(node: Node) -> set[str]:
    """The metadata fields a filter reads."""
    if isinstance(node, Equals | Range):
        return {node.field}
    if isinstance(node, Not):
        return fields(node.node)
    out: set[str] = set()
    for child in node.nodes:
        out |= fields(child)
    return out


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(f"invalid filter: {message}")


def _json_type(raw: Any) -> str:
    if isinstance(raw, list):
        return "an array"
    if isinstance(raw, str):
        return "a string"
    if raw is None:
        return "null"
    return "a number" if isinstance(raw, int | float) and not isinstance(raw, bool) else type(raw).__name__
