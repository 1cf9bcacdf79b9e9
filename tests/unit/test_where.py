"""The ``where`` of a slice: what the grammar accepts, what it refuses, and the SQL it renders.

The SQL the engine runs is rendered from the parsed tree, so the accepted cases pin the exact
text; the refused ones include what an attacker would try (a second statement, a parenthesis
that closes the WHERE early, a comment, a subquery, a function call).
"""

from __future__ import annotations

import pytest

from controller.api.where import WhereError, columns, parse_where, to_sql


@pytest.mark.parametrize(
    ("text", "sql", "named"),
    [
        ("amount > 1000", '("amount" > 1000)', ["amount"]),
        ("amount >= 10.5", '("amount" >= 10.5)', ["amount"]),
        ("x != -3", '("x" <> (-3))', ["x"]),
        ("x <> 1e3", '("x" <> 1000.0)', ["x"]),
        ("a < b", '("a" < "b")', ["a", "b"]),
        (
            "amount > 1000 and country in ('FR', 'DE')",
            "((\"amount\" > 1000) AND (\"country\" IN ('FR', 'DE')))",
            ["amount", "country"],
        ),
        (
            "a = 1 OR b = 2 AND c = 3",
            '(("a" = 1) OR (("b" = 2) AND ("c" = 3)))',
            ["a", "b", "c"],
        ),
        ("(a = 1 OR b = 2) AND c = 3", '((("a" = 1) OR ("b" = 2)) AND ("c" = 3))', ["a", "b", "c"]),
        ("NOT a = 1", '(NOT ("a" = 1))', ["a"]),
        ("hour BETWEEN 0 AND 6", '("hour" BETWEEN 0 AND 6)', ["hour"]),
        ("hour NOT BETWEEN 0 AND 6", '("hour" NOT BETWEEN 0 AND 6)', ["hour"]),
        ("code NOT IN (1, 2)", '("code" NOT IN (1, 2))', ["code"]),
        ("email LIKE '%@example.com'", "(\"email\" LIKE '%@example.com')", ["email"]),
        ("note IS NULL", '("note" IS NULL)', ["note"]),
        ("note is not null", '("note" IS NOT NULL)', ["note"]),
        ("is_foreign", '("is_foreign")', ["is_foreign"]),
        ("is_foreign = TRUE", '("is_foreign" = TRUE)', ["is_foreign"]),
        ('"Amount EUR" > 5', '("Amount EUR" > 5)', ["Amount EUR"]),
        ('"select" = 1', '("select" = 1)', ["select"]),
        ('"a""b" = 1', '("a""b" = 1)', ['a"b']),
        ("name = 'it''s'", "(\"name\" = 'it''s')", ["name"]),
        ("name = 'a; DROP TABLE t; --'", "(\"name\" = 'a; DROP TABLE t; --')", ["name"]),
    ],
)
def test_accepted_conditions_render_quoted_sql(text: str, sql: str, named: list[str]) -> None:
    expr = parse_where(text)
    assert to_sql(expr) == sql
    assert columns(expr) == named


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "1=1; DROP TABLE x",
            "only one condition is allowed, not statements (';') (at character 4)",
        ),
        ("x > 1; SELECT 1", "not statements (';')"),
        ("x > 1) OR (1=1", "unbalanced ')' (at character 6)"),
        ("(x > 1", "unbalanced '(': missing ')'"),
        ("x > 1 -- comment", "comments are not allowed (at character 7)"),
        ("x > 1 /* c */", "comments are not allowed"),
        ("lower(name) = 'a'", "function calls are not allowed (lower(...)) (at character 1)"),
        ("x > abs(y)", "function calls are not allowed (abs(...))"),
        ("read_csv('/etc/passwd')", "function calls are not allowed"),
        ("x IN (SELECT id FROM t)", "SQL keyword SELECT is not allowed in a condition"),
        ("x = 1 UNION SELECT 1", "unexpected 'UNION' after a complete condition"),
        ("EXISTS (y)", "SQL keyword EXISTS is not allowed"),
        ("x IN (y, 2)", "IN takes a list of literal values"),
        ("x LIKE y", "LIKE takes a 'string' pattern"),
        ("x + 1 > 2", "arithmetic is not allowed ('+')"),
        ("x * 2 > 2", "arithmetic is not allowed ('*')"),
        ("x || 'a' = 'b'", "operators other than comparisons are not allowed ('|')"),
        ("x = NULL", "a comparison with NULL is never true: use IS NULL"),
        ("x > 'abc", "unterminated string"),
        ('"x > 1', "unterminated quoted name"),
        ('"" = 1', "an empty quoted name is not a column"),
        ("x >", "incomplete condition: expected a column or a value"),
        ("x > 1 AND", "incomplete condition"),
        ("x BETWEEN 1", "expected AND, found the end"),
        ("x IS 1", "expected NULL, found '1'"),
        ("x NOT 1", "expected IN, BETWEEN or LIKE"),
        ("1 = 1", "the condition names no column"),
        ("TRUE", "the condition names no column"),
        ("x > 1e999", "number 1e999 is out of range"),
        ("x = $1", "unexpected character '$'"),
        ("x = `y`", "unexpected character '`'"),
        ("", "empty condition"),
        ("(" * 50 + "x > 1" + ")" * 50, "nested more than 40 levels deep"),
        ("x > 1" + " " * 4000, "longer than 4000 characters"),
    ],
)
def test_refused_conditions_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(WhereError) as caught:
        parse_where(text)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)  # pydantic reports it as the field's error
