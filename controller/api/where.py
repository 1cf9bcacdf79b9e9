"""The ``where`` of a validation slice: a small SQL boolean grammar, parsed, never pasted.

A slice selects rows of the validation table with a SQL-looking condition written in Git
(``amount > 1000 AND country IN ('FR', 'DE')``). That text is never handed to a SQL engine, and
never to Python's ``eval``: it is parsed here into a tree over a closed grammar, refused with a
message naming the character when it strays outside it, and the SQL the engine runs is rendered
from the tree (every column double-quoted, every string single-quoted and escaped). So a second
statement, a comment, a function call, a subquery or an unbalanced parenthesis cannot reach the
engine, and the document loader refuses them where they are written (file, line, field).

The grammar::

    expr      := and ( OR and )*
    and       := not ( AND not )*
    not       := NOT not | '(' expr ')' | predicate
    predicate := operand [ cmp operand
                         | [NOT] IN '(' literal (',' literal)* ')'
                         | [NOT] BETWEEN operand AND operand
                         | [NOT] LIKE string
                         | IS [NOT] NULL ]
    operand   := column | literal
    column    := name | "quoted name"          (matched exactly, case included)
    literal   := number | -number | 'string' | TRUE | FALSE | NULL
    cmp       := = | != | <> | < | <= | > | >=

Keywords are case-insensitive; a column whose name is a keyword is written quoted. A bare
column is a predicate when it is boolean. An expression must name at least one column.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = [
    "Between",
    "BoolOp",
    "Column",
    "Compare",
    "Expr",
    "InList",
    "IsNull",
    "Like",
    "Literal",
    "Not",
    "Truth",
    "WhereError",
    "columns",
    "parse_where",
    "to_sql",
]

MAX_LENGTH = 4000
MAX_DEPTH = 40

_KEYWORDS = {"AND", "OR", "NOT", "IN", "BETWEEN", "IS", "NULL", "TRUE", "FALSE", "LIKE"}
# Words that only make sense in a statement, never in a condition over one row: refused bare,
# so "1=1; DROP TABLE x" or "x IN (SELECT ...)" reads as what it is.
_STATEMENT_WORDS = {
    "SELECT", "FROM", "WHERE", "UNION", "INTERSECT", "EXCEPT", "DROP", "DELETE", "INSERT",
    "UPDATE", "CREATE", "ALTER", "TRUNCATE", "MERGE", "COPY", "ATTACH", "DETACH", "PRAGMA",
    "EXEC", "EXECUTE", "CALL", "WITH", "INTO", "VALUES", "SET", "JOIN", "ON", "EXISTS", "CASE",
    "WHEN", "THEN", "ELSE", "END", "CAST", "LIMIT", "ORDER", "GROUP", "HAVING", "INSTALL", "LOAD",
}  # fmt: skip
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>'(?:[^']|'')*')
  | (?P<quoted>"(?:[^"]|"")*")
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|<>|!=|=|<|>)
  | (?P<punct>[(),\-])
    """,
    re.VERBOSE,
)
_CMP = {"=": "=", "!=": "<>", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


class WhereError(ValueError):
    """The text is not a condition of the grammar; the message says where and why."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message, position)
        self.message = message
        self.position = position  # 0-based index into the text

    def __str__(self) -> str:
        return f"{self.message} (at character {self.position + 1})"


# --- the tree ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str


@dataclass(frozen=True)
class Literal:
    value: str | int | float | bool | None  # None is NULL


Operand = Column | Literal


@dataclass(frozen=True)
class Compare:
    op: str  # one of =, <>, <, <=, >, >=
    left: Operand
    right: Operand


@dataclass(frozen=True)
class InList:
    operand: Operand
    values: tuple[Literal, ...]
    negated: bool = False


@dataclass(frozen=True)
class Between:
    operand: Operand
    low: Operand
    high: Operand
    negated: bool = False


@dataclass(frozen=True)
class Like:
    operand: Operand
    pattern: str
    negated: bool = False


@dataclass(frozen=True)
class IsNull:
    operand: Operand
    negated: bool = False


@dataclass(frozen=True)
class Truth:
    """A bare operand used as a condition (a boolean column)."""

    operand: Operand


@dataclass(frozen=True)
class Not:
    expr: Expr


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND | OR
    parts: tuple[Expr, ...]


Expr = Compare | InList | Between | Like | IsNull | Truth | Not | BoolOp


# --- tokens --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tok:
    kind: str  # number, string, quoted, word, op, punct, end
    text: str
    at: int  # 1-based character position

    @property
    def keyword(self) -> str | None:
        upper = self.text.upper()
        return upper if self.kind == "word" and upper in _KEYWORDS else None


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        if text.startswith(("--", "/*"), pos):
            raise WhereError("comments are not allowed", pos)
        match = _TOKEN.match(text, pos)
        if match is None:
            char = text[pos]
            if char in "'\"":
                what = "string" if char == "'" else "quoted name"
                raise WhereError(f"unterminated {what}", pos)
            what = {
                ";": "only one condition is allowed, not statements (';')",
                "*": "arithmetic is not allowed ('*')",
                "/": "arithmetic is not allowed ('/')",
                "+": "arithmetic is not allowed ('+')",
                "%": "arithmetic is not allowed ('%')",
                "|": "operators other than comparisons are not allowed ('|')",
            }.get(char, f"unexpected character {char!r}")
            raise WhereError(what, pos)
        kind = match.lastgroup or ""
        if kind != "ws":
            out.append(_Tok(kind, match.group(), pos + 1))
        pos = match.end()
    out.append(_Tok("end", "", len(text) + 1))
    return out


# --- the parser ----------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def fail(self, message: str, tok: _Tok | None = None) -> WhereError:
        return WhereError(message, (tok or self.tok).at - 1)

    def take(self) -> _Tok:
        tok = self.tok
        self.i += 1
        return tok

    def at_keyword(self, *words: str) -> bool:
        return self.tok.keyword in words

    def expect_keyword(self, word: str) -> None:
        if not self.at_keyword(word):
            raise self.fail(f"expected {word}, found {self._shown(self.tok)}")
        self.take()

    def expect_punct(self, char: str) -> None:
        if not (self.tok.kind == "punct" and self.tok.text == char):
            raise self.fail(f"expected {char!r}, found {self._shown(self.tok)}")
        self.take()

    @staticmethod
    def _shown(tok: _Tok) -> str:
        return "the end" if tok.kind == "end" else repr(tok.text)

    def parse(self) -> Expr:
        expr = self.expr()
        if self.tok.kind != "end":
            tok = self.tok
            if tok.kind == "punct" and tok.text == ")":
                raise self.fail("unbalanced ')'")
            raise self.fail(f"unexpected {self._shown(tok)} after a complete condition")
        return expr

    def expr(self) -> Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"nested more than {MAX_DEPTH} levels deep")
        parts = [self.conjunction()]
        while self.at_keyword("OR"):
            self.take()
            parts.append(self.conjunction())
        self.depth -= 1
        return parts[0] if len(parts) == 1 else BoolOp("OR", tuple(parts))

    def conjunction(self) -> Expr:
        parts = [self.negation()]
        while self.at_keyword("AND"):
            self.take()
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else BoolOp("AND", tuple(parts))

    def negation(self) -> Expr:
        if self.at_keyword("NOT"):
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.fail(f"nested more than {MAX_DEPTH} levels deep")
            inner = self.negation()
            self.depth -= 1
            return Not(inner)
        if self.tok.kind == "punct" and self.tok.text == "(":
            self.take()
            inner = self.expr()
            if self.tok.kind == "end":
                raise self.fail("unbalanced '(': missing ')'")
            self.expect_punct(")")
            return inner
        return self.predicate()

    def predicate(self) -> Expr:
        left = self.operand()
        tok = self.tok
        if tok.kind == "op":
            self.take()
            right = self.operand()
            if Literal(None) in (left, right):
                raise self.fail("a comparison with NULL is never true: use IS NULL", tok)
            return Compare(_CMP[tok.text], left, right)
        if self.at_keyword("IS"):
            self.take()
            negated = self.at_keyword("NOT")
            if negated:
                self.take()
            self.expect_keyword("NULL")
            return IsNull(left, negated)
        negated = False
        if self.at_keyword("NOT"):
            self.take()
            negated = True
            if not self.at_keyword("IN", "BETWEEN", "LIKE"):
                raise self.fail(f"expected IN, BETWEEN or LIKE, found {self._shown(self.tok)}")
        if self.at_keyword("IN"):
            self.take()
            self.expect_punct("(")
            values = [self.literal()]
            while self.tok.kind == "punct" and self.tok.text == ",":
                self.take()
                values.append(self.literal())
            self.expect_punct(")")
            return InList(left, tuple(values), negated)
        if self.at_keyword("BETWEEN"):
            self.take()
            low = self.operand()
            self.expect_keyword("AND")
            high = self.operand()
            return Between(left, low, high, negated)
        if self.at_keyword("LIKE"):
            self.take()
            pattern = self.operand()
            if not (isinstance(pattern, Literal) and isinstance(pattern.value, str)):
                raise self.fail("LIKE takes a 'string' pattern", tok)
            return Like(left, pattern.value, negated)
        return Truth(left)

    def literal(self) -> Literal:
        tok = self.tok
        found = self.operand()
        if not isinstance(found, Literal):
            raise self.fail("IN takes a list of literal values", tok)
        return found

    def operand(self) -> Operand:
        tok = self.take()
        if tok.kind == "punct" and tok.text == "-":
            number = self.take()
            if number.kind != "number":
                raise self.fail("'-' must be followed by a number", tok)
            return Literal(-_number(number))
        if tok.kind == "number":
            return Literal(_number(tok))
        if tok.kind == "string":
            return Literal(tok.text[1:-1].replace("''", "'"))
        if tok.kind == "quoted":
            name = tok.text[1:-1].replace('""', '"')
            if not name:
                raise self.fail("an empty quoted name is not a column", tok)
            return self._column(name, tok)
        if tok.kind == "word":
            keyword = tok.keyword
            if keyword in ("TRUE", "FALSE"):
                return Literal(keyword == "TRUE")
            if keyword == "NULL":
                return Literal(None)
            if keyword is not None:
                raise self.fail(f"expected a column or a value, found {keyword}", tok)
            if tok.text.upper() in _STATEMENT_WORDS:
                raise self.fail(
                    f"SQL keyword {tok.text.upper()} is not allowed in a condition (a column of "
                    f'that name is written quoted: "{tok.text}")',
                    tok,
                )
            return self._column(tok.text, tok)
        if tok.kind == "end":
            raise self.fail("incomplete condition: expected a column or a value", tok)
        raise self.fail(f"expected a column or a value, found {tok.text!r}", tok)

    def _column(self, name: str, tok: _Tok) -> Column:
        if self.tok.kind == "punct" and self.tok.text == "(":
            raise self.fail(f"function calls are not allowed ({name}(...))", tok)
        return Column(name)


def _number(tok: _Tok) -> int | float:
    text = tok.text
    value: int | float = int(text) if text.isdigit() else float(text)
    if isinstance(value, float) and not math.isfinite(value):
        raise WhereError(f"number {text} is out of range", tok.at - 1)
    return value


def parse_where(text: str) -> Expr:
    """The condition ``text`` as a tree; :class:`WhereError` (a ``ValueError``) saying what is
    wrong and at which character when it is not one of the grammar."""
    if not text.strip():
        raise WhereError("empty condition", 0)
    if len(text) > MAX_LENGTH:
        raise WhereError(f"longer than {MAX_LENGTH} characters", MAX_LENGTH)
    expr = _Parser(text).parse()
    if not columns(expr):
        raise WhereError("the condition names no column, so it selects all rows or none", 0)
    return expr


def _operand_columns(operand: Operand) -> list[str]:
    return [operand.name] if isinstance(operand, Column) else []


def columns(expr: Expr) -> list[str]:
    """The columns ``expr`` names, in order of first appearance."""
    found: list[str] = []
    match expr:
        case Compare(left=left, right=right):
            found = _operand_columns(left) + _operand_columns(right)
        case InList(operand=o) | Like(operand=o) | IsNull(operand=o) | Truth(operand=o):
            found = _operand_columns(o)
        case Between(operand=o, low=low, high=high):
            found = _operand_columns(o) + _operand_columns(low) + _operand_columns(high)
        case Not(expr=inner):
            found = columns(inner)
        case BoolOp(parts=parts):
            found = [c for part in parts for c in columns(part)]
    return list(dict.fromkeys(found))


# --- rendering -----------------------------------------------------------------------------


def quote_name(name: str) -> str:
    """A SQL identifier for ``name``, matched exactly (case included)."""
    return '"' + name.replace('"', '""') + '"'


def _literal_sql(value: str | int | float | bool | None) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return f"({value!r})" if value < 0 else repr(value)
    return "'" + value.replace("'", "''") + "'"


def _operand_sql(operand: Operand) -> str:
    if isinstance(operand, Column):
        return quote_name(operand.name)
    return _literal_sql(operand.value)


def to_sql(expr: Expr) -> str:
    """SQL for ``expr``, fully parenthesised, for a ``WHERE`` clause."""
    match expr:
        case Compare(op=op, left=left, right=right):
            return f"({_operand_sql(left)} {op} {_operand_sql(right)})"
        case InList(operand=o, values=values, negated=negated):
            listed = ", ".join(_literal_sql(v.value) for v in values)
            return f"({_operand_sql(o)} {'NOT ' if negated else ''}IN ({listed}))"
        case Between(operand=o, low=low, high=high, negated=negated):
            return (
                f"({_operand_sql(o)} {'NOT ' if negated else ''}BETWEEN "
                f"{_operand_sql(low)} AND {_operand_sql(high)})"
            )
        case Like(operand=o, pattern=pattern, negated=negated):
            return f"({_operand_sql(o)} {'NOT ' if negated else ''}LIKE {_literal_sql(pattern)})"
        case IsNull(operand=o, negated=negated):
            return f"({_operand_sql(o)} IS {'NOT ' if negated else ''}NULL)"
        case Truth(operand=o):
            return f"({_operand_sql(o)})"
        case Not(expr=inner):
            return f"(NOT {to_sql(inner)})"
        case BoolOp(op=op, parts=parts):
            return "(" + f" {op} ".join(to_sql(p) for p in parts) + ")"
    raise TypeError(f"not a where expression: {expr!r}")
