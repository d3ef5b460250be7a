"""SQL text built by the client: pyarrow expressions → SQL predicates, quoting, and the ``self``/``t`` alias."""

from __future__ import annotations

import datetime
import decimal

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import flightbay
from flightbay._sql import expression_to_sql, quote_identifier, quote_string, with_self_alias

f = pc.field


@pytest.mark.parametrize(
    ("expr", "sql"),
    [
        (f("a") > 3, '("a" > 3)'),
        ((f("a") > 3) & (f("b") < 2.5), '(("a" > 3) AND ("b" < 2.5))'),
        ((f("a") == 1) | ~(f("c") == "x's"), "((\"a\" = 1) OR (NOT (\"c\" = 'x''s')))"),
        (f("a") != 1, '("a" <> 1)'),
        (f("a") >= -3, '("a" >= -3)'),
        (f("a") <= 5, '("a" <= 5)'),
        (f("a").isin([1, 2, 3]), '("a" IN (1, 2, 3))'),
        (f("s").isin(["a", None]), '("s" IN (\'a\') OR "s" IS NULL)'),
        (pc.is_in(f("s"), value_set=pa.array(["a", None]), skip_nulls=True), "(\"s\" IN ('a'))"),
        (f("a").isin([]), "FALSE"),
        (f("a").is_null(), '("a" IS NULL)'),
        (f("a").is_null(nan_is_null=True), '("a" IS NULL OR isnan("a"))'),
        (f("a").is_valid(), '("a" IS NOT NULL)'),
        (f("a") + 1 > f("b") * 2, '(("a" + 1) > ("b" * 2))'),
        ((f("a") - 1) / 2 > 0, '((("a" - 1) / 2) > 0)'),
        (f("d") == pa.scalar(datetime.date(2024, 1, 2)), "(\"d\" = DATE '2024-01-02')"),
        (
            f("t") >= pa.scalar(datetime.datetime(2024, 1, 2, 3, 4, 5), pa.timestamp("ms")),
            "(\"t\" >= CAST('2024-01-02T03:04:05' AS TIMESTAMP))",
        ),
        (f('we"ird name') > 1, '("we""ird name" > 1)'),
        (f(("n", "m")) > 1, "(\"n\"['m'] > 1)"),
        (f("a").cast(pa.float64()) > 1.5, '(CAST("a" AS DOUBLE) > 1.5)'),
        (pc.starts_with(f("s"), "ab"), "starts_with(\"s\", 'ab')"),
        (pc.ends_with(f("s"), "ab"), "ends_with(\"s\", 'ab')"),
        (pc.match_substring(f("s"), "a_b", ignore_case=True), "(strpos(lower(\"s\"), lower('a_b')) > 0)"),
        (pc.match_like(f("s"), "a%"), "(\"s\" LIKE 'a%')"),
        (pc.match_substring_regex(f("s"), "^a.b$"), "(\"s\" ~ '^a.b$')"),
        (pc.if_else(f("b"), 1, 2) > 0, '((CASE WHEN "b" THEN 1 WHEN NOT "b" THEN 2 END) > 0)'),
        (f("a") > pa.scalar(decimal.Decimal("1.50")), "(\"a\" > CAST('1.50' AS DECIMAL(3, 2)))"),
        (f("a") > float("nan"), "(\"a\" > CAST('NaN' AS DOUBLE))"),  # noqa: PLW0177 - builds an expression
        (f("a") < float("-inf"), "(\"a\" < CAST('-Infinity' AS DOUBLE))"),
        (f("x") == pa.scalar(b"ab"), "(\"x\" = X'6162')"),
        (f("b") == True, '("b" = TRUE)'),  # a pyarrow expression, not a Python comparison
        (f("a") == pa.scalar(None, pa.int64()), '("a" = NULL)'),
        (pc.xor(f("a") > 1, f("b") > 1), '(("a" > 1) <> ("b" > 1))'),
        (pc.and_not(f("a") > 1, f("b") > 1), '(("a" > 1) AND NOT ("b" > 1))'),
        (pc.abs(f("a")) > 1, '(abs("a") > 1)'),
        (pc.negate(f("a")) > 1, '((- "a") > 1)'),
        (pc.utf8_lower(f("s")) == "a", "(lower(\"s\") = 'a')"),
    ],
)
def test_expression_to_sql(expr: pc.Expression, sql: str) -> None:
    assert expression_to_sql(expr) == sql


@pytest.mark.parametrize(
    "expr",
    [
        f(0) > 1,  # a field by position has no name to write
        pc.utf8_reverse(f("s")) == "x",  # a function without a translation
        f("a") == pa.scalar(datetime.timedelta(seconds=1)),  # a literal type without one
    ],
)
def test_untranslatable_expressions_raise_unsupported(expr: pc.Expression) -> None:
    with pytest.raises(flightbay.Unsupported) as info:
        expression_to_sql(expr)
    assert isinstance(info.value, NotImplementedError)


def test_long_names_survive() -> None:
    long = "x" * 500
    assert expression_to_sql(f(long) > 1) == f'("{long}" > 1)'


def test_quoting() -> None:
    assert quote_identifier('a"b') == '"a""b"'
    assert quote_string("it's") == "'it''s'"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("SELECT count(*) FROM self", 'WITH "self" AS (SELECT * FROM f42) SELECT count(*) FROM self'),
        ("SELECT * FROM t WHERE x > 1", 'WITH "t" AS (SELECT * FROM f42) SELECT * FROM t WHERE x > 1'),
        (
            "SELECT * FROM self JOIN t USING (id)",
            'WITH "self" AS (SELECT * FROM f42), "t" AS (SELECT * FROM f42) SELECT * FROM self JOIN t USING (id)',
        ),
        (
            "with x as (select * from T) SELECT * FROM x",
            'WITH "t" AS (SELECT * FROM f42), x as (select * from T) SELECT * FROM x',
        ),
        ("SELECT 'self', \"t\" FROM trips -- t", "SELECT 'self', \"t\" FROM trips -- t"),
        ("SELECT * FROM trips", "SELECT * FROM trips"),
    ],
)
def test_self_alias(query: str, expected: str) -> None:
    assert with_self_alias(query, "f42") == expected
