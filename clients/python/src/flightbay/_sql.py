"""SQL text the client builds: identifier quoting, literals, ``pyarrow.compute.Expression`` → SQL predicate, and
the ``self``/``t`` alias of :meth:`RemoteTable.sql`.

The server's SQL dialect is DataFusion's: ``"double quoted"`` identifiers are case-sensitive, ``'single quoted'``
strings double an embedded quote.

Expressions are read through pyarrow's own serialization (what ``pickle`` uses): an Arrow IPC file whose schema
metadata lists the expression tree in prefix order (``call`` / ``field_ref`` / ``literal`` / ``options`` / ``end``
entries) and whose columns hold the literal values and function options as typed one-row arrays. That keeps literal
types exact, which the expression's ``str()`` does not (``b"ab"`` and ``"6162"`` print the same).
"""

from __future__ import annotations

import datetime
import decimal
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .errors import Unsupported


def quote_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier: ``fare`` → ``"fare"``, ``a"b`` → ``"a""b"``."""
    return '"' + name.replace('"', '""') + '"'


def quote_string(value: str) -> str:
    """``value`` as a SQL string literal: ``it's`` → ``'it''s'``."""
    return "'" + value.replace("'", "''") + "'"


_SQL_TYPES: dict[pa.DataType, str] = {
    pa.bool_(): "BOOLEAN",
    pa.int8(): "TINYINT",
    pa.int16(): "SMALLINT",
    pa.int32(): "INT",
    pa.int64(): "BIGINT",
    pa.uint8(): "TINYINT UNSIGNED",
    pa.uint16(): "SMALLINT UNSIGNED",
    pa.uint32(): "INT UNSIGNED",
    pa.uint64(): "BIGINT UNSIGNED",
    pa.float32(): "REAL",
    pa.float64(): "DOUBLE",
    pa.string(): "VARCHAR",
    pa.large_string(): "VARCHAR",
    pa.date32(): "DATE",
}


def sql_type(t: pa.DataType) -> str:
    """The SQL type name for ``t`` (used in ``CAST``); :class:`Unsupported` for types without one."""
    if t in _SQL_TYPES:
        return _SQL_TYPES[t]
    if pa.types.is_timestamp(t):
        return "TIMESTAMP"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision}, {t.scale})"
    raise Unsupported(f"no SQL type for {t} in a pyarrow expression; pass the predicate as a SQL string")


def sql_literal(scalar: pa.Scalar) -> str:
    """A SQL literal with the value (and, where it matters, the type) of ``scalar``."""
    t = scalar.type
    value = scalar.as_py()
    if value is None:
        return "NULL"
    if pa.types.is_boolean(t):
        return "TRUE" if value else "FALSE"
    if pa.types.is_integer(t):
        return str(int(value))
    if pa.types.is_floating(t):
        if math.isnan(value):
            return "CAST('NaN' AS DOUBLE)"
        if math.isinf(value):
            return "CAST('Infinity' AS DOUBLE)" if value > 0 else "CAST('-Infinity' AS DOUBLE)"
        return repr(float(value))
    if pa.types.is_decimal(t):
        assert isinstance(value, decimal.Decimal)
        return f"CAST('{value}' AS {sql_type(t)})"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return quote_string(value)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return f"X'{bytes(value).hex()}'"
    if pa.types.is_date(t):
        return f"DATE '{value.isoformat()}'"
    if pa.types.is_timestamp(t):
        assert isinstance(value, datetime.datetime)
        return f"CAST('{value.isoformat()}' AS TIMESTAMP)"
    raise Unsupported(f"cannot write a {t} literal in SQL; pass the predicate as a SQL string")


# ---------------------------------------------------------------------------------------------------------------
# Expression → SQL


@dataclass(frozen=True)
class _Field:
    path: tuple[str, ...]


@dataclass(frozen=True)
class _Literal:
    value: pa.Scalar


@dataclass(frozen=True)
class _Call:
    name: str
    args: tuple[_Node, ...]
    options: dict[str, Any] | None


_Node = _Field | _Literal | _Call


def _flatbuffer_metadata(data: bytes) -> list[tuple[str, str]]:
    """The schema's custom metadata of an Arrow IPC file, every entry in order (repeated keys included).

    ``Schema.metadata`` is a dict and merges repeated keys, so the footer's ``Schema.custom_metadata`` (a vector of
    ``KeyValue`` tables, Arrow format ``File.fbs``/``Schema.fbs``) is read directly.
    """

    def u32(pos: int) -> int:
        return int.from_bytes(data[pos : pos + 4], "little")

    def field(table: int, index: int) -> int | None:
        vtable = table - int.from_bytes(data[table : table + 4], "little", signed=True)
        vtable_size = int.from_bytes(data[vtable : vtable + 2], "little")
        slot = 4 + 2 * index
        if slot >= vtable_size:
            return None
        offset = int.from_bytes(data[vtable + slot : vtable + slot + 2], "little")
        return table + offset if offset else None

    def deref(pos: int) -> int:
        return pos + u32(pos)

    def string(pos: int) -> str:
        target = deref(pos)
        return data[target + 4 : target + 4 + u32(target)].decode("utf-8")

    if data[-6:] != b"ARROW1":
        raise ValueError("not an Arrow IPC file")
    footer = len(data) - 10 - u32(len(data) - 10)
    schema_field = field(deref(footer), 1)  # Footer.schema
    if schema_field is None:
        return []
    metadata_field = field(deref(schema_field), 2)  # Schema.custom_metadata
    if metadata_field is None:
        return []
    vector = deref(metadata_field)
    entries = []
    for i in range(u32(vector)):
        kv = deref(vector + 4 + 4 * i)
        key, value = field(kv, 0), field(kv, 1)
        entries.append((string(key) if key else "", string(value) if value else ""))
    return entries


def _serialized(expr: pc.Expression) -> tuple[list[tuple[str, str]], pa.RecordBatch]:
    """pyarrow's serialization of ``expr``: ordered metadata entries and the batch of literal/option columns."""
    try:
        _, (buffer,) = expr.__reduce__()
        data = buffer.to_pybytes()
        batch = pa.ipc.open_file(data).get_batch(0)
        return _flatbuffer_metadata(data), batch
    except (pa.ArrowException, ValueError, TypeError, IndexError, UnicodeDecodeError) as e:
        raise Unsupported(f"cannot translate pyarrow expression {expr} to SQL: {e}") from e


def _tree(expr: pc.Expression) -> _Node:
    entries, batch = _serialized(expr)
    it: Iterator[tuple[str, str]] = iter(entries)

    def node(entry: tuple[str, str]) -> _Node:
        key, value = entry
        if key == "literal":
            return _Literal(batch.column(int(value))[0])
        if key == "field_ref":
            return _Field((value,))
        if key == "nested_field_ref":
            path = []
            for _ in range(int(value)):
                k, v = next(it)
                if k != "field_ref":
                    raise Unsupported(f"cannot translate field reference in {expr}")
                path.append(v)
            return _Field(tuple(path))
        if key == "call":
            args: list[_Node] = []
            options = None
            for k, v in it:
                if k == "end":
                    return _Call(value, tuple(args), options)
                if k == "options":
                    column = batch.column(int(v))
                    options = column[0].as_py()
                    # A DataType option (cast's to_type) is stored as the type of a null child, not as a value.
                    for child in column.type:
                        if child.name == "to_type":
                            options["to_type"] = child.type
                else:
                    args.append(node((k, v)))
        raise Unsupported(f"cannot read pyarrow expression {expr}")

    try:
        root = node(next(it))
    except StopIteration:
        raise Unsupported(f"cannot read pyarrow expression {expr}") from None
    return root


_INFIX = {
    "equal": "=",
    "not_equal": "<>",
    "less": "<",
    "less_equal": "<=",
    "greater": ">",
    "greater_equal": ">=",
    "and": "AND",
    "and_kleene": "AND",
    "or": "OR",
    "or_kleene": "OR",
    "xor": "<>",
    "add": "+",
    "add_checked": "+",
    "subtract": "-",
    "subtract_checked": "-",
    "multiply": "*",
    "multiply_checked": "*",
    "divide": "/",
    "divide_checked": "/",
}

# pyarrow function → SQL function of the same arguments.
_FUNCTIONS = {
    "abs": "abs",
    "abs_checked": "abs",
    "sqrt": "sqrt",
    "sqrt_checked": "sqrt",
    "power": "power",
    "power_checked": "power",
    "exp": "exp",
    "ln": "ln",
    "ln_checked": "ln",
    "log10": "log10",
    "log10_checked": "log10",
    "log2": "log2",
    "log2_checked": "log2",
    "ceil": "ceil",
    "floor": "floor",
    "sign": "signum",
    "utf8_lower": "lower",
    "utf8_upper": "upper",
    "utf8_length": "character_length",
    "is_nan": "isnan",
    "coalesce": "coalesce",
}


def _sql(node: _Node) -> str:
    if isinstance(node, _Field):
        head, *rest = node.path
        return quote_identifier(head) + "".join(f"[{quote_string(p)}]" for p in rest)
    if isinstance(node, _Literal):
        return sql_literal(node.value)
    name, args, options = node.name, node.args, node.options or {}
    sql_args = [_sql(a) for a in args]
    if name in _INFIX and len(args) == 2:
        return f"({sql_args[0]} {_INFIX[name]} {sql_args[1]})"
    if name in ("and_not", "and_not_kleene"):
        return f"({sql_args[0]} AND NOT {sql_args[1]})"
    if name == "invert":
        return f"(NOT {sql_args[0]})"
    if name in ("negate", "negate_checked"):
        return f"(- {sql_args[0]})"
    if name == "is_null":
        if options.get("nan_is_null"):
            return f"({sql_args[0]} IS NULL OR isnan({sql_args[0]}))"
        return f"({sql_args[0]} IS NULL)"
    if name == "is_valid":
        return f"({sql_args[0]} IS NOT NULL)"
    if name == "is_in":
        return _is_in(sql_args[0], options)
    if name == "if_else":
        cond, a, b = sql_args
        return f"(CASE WHEN {cond} THEN {a} WHEN NOT {cond} THEN {b} END)"
    if name == "cast":
        to_type = options.get("to_type")
        if not isinstance(to_type, pa.DataType):
            raise Unsupported("cannot translate a cast without a target type")
        return f"CAST({sql_args[0]} AS {sql_type(to_type)})"
    if name in ("starts_with", "ends_with", "match_substring", "match_like", "match_substring_regex"):
        return _string_match(name, sql_args[0], options)
    if name in _FUNCTIONS:
        return f"{_FUNCTIONS[name]}({', '.join(sql_args)})"
    raise Unsupported(
        f"pyarrow compute function {name!r} has no SQL translation here; pass the predicate as a SQL string"
    )


def _is_in(arg: str, options: dict[str, Any]) -> str:
    values = options.get("value_set")
    items = list(values) if values is not None else []
    non_null = [sql_literal(pa.scalar(v)) for v in items if v is not None]
    has_null = len(non_null) < len(items)
    # MATCH: a null in the set matches null values; SKIP/EMIT_NULL/INCONCLUSIVE never select a null row.
    behavior = options.get("null_matching_behavior")
    match_null = has_null and behavior in (0, "MATCH", None) and not options.get("skip_nulls", False)
    parts = [f"{arg} IN ({', '.join(non_null)})"] if non_null else []
    if match_null:
        parts.append(f"{arg} IS NULL")
    return "(" + " OR ".join(parts) + ")" if parts else "FALSE"


def _string_match(name: str, arg: str, options: dict[str, Any]) -> str:
    pattern = options.get("pattern")
    if not isinstance(pattern, str):
        raise Unsupported(f"cannot translate {name} without a string pattern")
    ignore_case = bool(options.get("ignore_case"))
    if name == "match_like":
        return f"({arg} {'ILIKE' if ignore_case else 'LIKE'} {quote_string(pattern)})"
    if name == "match_substring_regex":
        return f"({arg} {'~*' if ignore_case else '~'} {quote_string(pattern)})"
    if ignore_case:
        arg, pattern_sql = f"lower({arg})", f"lower({quote_string(pattern)})"
    else:
        pattern_sql = quote_string(pattern)
    if name == "match_substring":
        return f"(strpos({arg}, {pattern_sql}) > 0)"
    return f"{name}({arg}, {pattern_sql})"


def expression_to_sql(expr: pc.Expression) -> str:
    """Translate a ``pyarrow.compute.Expression`` into an equivalent SQL boolean expression.

    Parameters
    ----------
    expr : pyarrow.compute.Expression
        Built from ``pc.field(...)``, literals, comparisons, ``&``, ``|``, ``~``, arithmetic, ``is_null``,
        ``is_valid``, ``isin``, ``cast``, ``if_else`` and common string and math functions.

    Returns
    -------
    str
        The SQL text, e.g. ``(("fare" > 10) AND ("city" = 'Oslo'))``.

    Raises
    ------
    Unsupported
        For functions or literal types without a translation; pass a SQL string instead.
    """
    return _sql(_tree(expr))


# ---------------------------------------------------------------------------------------------------------------
# RemoteTable.sql: `self` and `t` stand for the table


_WORD = re.compile(r"\b(self|t)\b", re.IGNORECASE)
_LEADING_WITH = re.compile(r"^\s*WITH\s+(RECURSIVE\s+)?", re.IGNORECASE)


def _strip_quoted(query: str) -> str:
    """``query`` with string literals, quoted identifiers and comments blanked, for word searches only."""
    return re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/", " ", query, flags=re.DOTALL)


def with_self_alias(query: str, table_name: str) -> str:
    """Make ``self`` and ``t`` in ``query`` refer to the flight ``table_name`` (e.g. ``f42``).

    The aliases are common table expressions put in front of the query (merged into its own ``WITH`` clause if it
    has one), so the query text itself is left untouched.
    """
    used = {m.group(1).lower() for m in _WORD.finditer(_strip_quoted(query))}
    ctes = [f"{quote_identifier(alias)} AS (SELECT * FROM {table_name})" for alias in ("self", "t") if alias in used]
    if not ctes:
        return query
    head = _LEADING_WITH.match(query)
    if head is None:
        return f"WITH {', '.join(ctes)} {query}"
    recursive = "RECURSIVE " if head.group(1) else ""
    return f"WITH {recursive}{', '.join(ctes)}, {query[head.end() :]}"


def check_names(names: Sequence[str], what: str) -> list[str]:
    """``names`` as a list of str, or TypeError."""
    out = list(names)
    for n in out:
        if not isinstance(n, str):
            raise TypeError(f"{what} must be column names (str), got {n!r}")
    return out
