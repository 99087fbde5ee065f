"""The subset of Lucene's query syntax that REGARDS' legacy search engine takes as ``q``.

``parse`` turns a query into a small tree; ``compile_query`` checks it against the catalogue's
attribute types and returns a predicate over documents. Semantics, as rs-catalog's OpenSearch
parser builds its criteria:

- ``field:value``: unquoted, *contains* for a string attribute, *equals* for a number, a date
  (ISO 8601) or a boolean; quoted ``"..."``, *equals*.
- ``field:a*b``: ``*`` becomes ``.*`` and the value is a regular expression matched against the
  whole string (other regular-expression characters keep their meaning); ``field:/regex/`` too.
- ``field:[a TO b]`` (inclusive) or ``{a TO b}`` (exclusive), ``*`` for an open end: numbers,
  dates or strings.
- ``field:(a OR "b")`` applies the field to every value of the group.
- ``AND``, ``OR``, ``NOT`` and parentheses; ``AND`` binds tighter than ``OR``. Two clauses side
  by side without an operator are refused, like an unknown attribute: ``QueryError``.
- An empty query, or ``*:*``, matches everything.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

AttributeType = Literal["string", "integer", "double", "boolean", "date"]
Document = Mapping[str, Sequence[Any]]
Predicate = Callable[[Document], bool]

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
# Characters that end an unquoted word (and must be escaped to appear in one).
_SPECIAL = frozenset('():"[]{}/\\')


class QueryError(ValueError):
    """A query the server refuses: HTTP 400 with this message."""


@dataclass(frozen=True)
class MatchAll:
    """Every document."""


@dataclass(frozen=True)
class Term:
    """``field:text`` (contains / equals) or ``field:"text"`` (equals)."""

    field: str
    text: str
    quoted: bool = False


@dataclass(frozen=True)
class Wildcard:
    """``field:pat*tern``: the regular expression ``pat.*tern`` on the whole value."""

    field: str
    pattern: str


@dataclass(frozen=True)
class Regex:
    """``field:/regex/`` on the whole value."""

    field: str
    pattern: str


@dataclass(frozen=True)
class Range:
    """``field:[low TO high]``; ``None`` is an open end."""

    field: str
    low: str | None
    high: str | None
    include_low: bool = True
    include_high: bool = True


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = MatchAll | Term | Wildcard | Regex | Range | And | Or | Not


# ---- parsing ----------------------------------------------------------------------------------


class _Parser:
    """Recursive descent over the query text; ``pos`` always sits on a non-blank or the end."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self._skip()

    def fail(self, message: str) -> QueryError:
        return QueryError(f"Cannot parse '{self.text}': {message} at position {self.pos}")

    def _skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if not self.at_end() else ""

    def keyword(self, word: str) -> bool:
        """Consume ``word`` if it stands here as a whole word."""
        end = self.pos + len(word)
        if self.text.startswith(word, self.pos) and (
            end == len(self.text) or self.text[end].isspace() or self.text[end] in "()"
        ):
            self.pos = end
            self._skip()
            return True
        return False

    def expect(self, char: str) -> None:
        if self.peek() != char:
            found = repr(self.peek()) if not self.at_end() else "the end"
            raise self.fail(f"expected {char!r}, found {found}")
        self.pos += 1
        self._skip()

    # query := or_expr, with nothing left over
    def query(self) -> Node:
        if self.at_end():
            return MatchAll()
        node = self.or_expr(None)
        self.closed("")
        return node

    def closed(self, end: str) -> None:
        """Consume ``end`` (a closing parenthesis, or "" for the end of the query)."""
        if self.peek() == end:
            if end:
                self.expect(end)
            return
        if self.at_end() or self.peek() == ")":
            raise self.fail(f"expected {end!r}" if end else "unbalanced ')'")
        raise self.fail(
            "Indeterminate relationship between criteria (add OR or AND between criteria"
            " or surround values containing spaces with quotes)"
        )

    def or_expr(self, field: str | None) -> Node:
        items = [self.and_expr(field)]
        while self.keyword("OR"):
            items.append(self.and_expr(field))
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self, field: str | None) -> Node:
        items = [self.unary(field)]
        while self.keyword("AND"):
            items.append(self.unary(field))
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self, field: str | None) -> Node:
        if self.keyword("NOT"):
            return Not(self.unary(field))
        if self.peek() == "(":
            self.expect("(")
            node = self.or_expr(field)
            self.closed(")")
            return node
        return self.clause() if field is None else self.value(field)

    def clause(self) -> Node:
        if self.text.startswith("*:*", self.pos):
            self.pos += 3
            self._skip()
            return MatchAll()
        match = _FIELD.match(self.text, self.pos)
        if match is None or match.group() in ("AND", "OR", "NOT"):
            raise self.fail("expected an attribute name")
        self.pos = match.end()
        if self.peek() != ":":
            raise self.fail(f"expected ':' after {match.group()!r}")
        self.pos += 1  # no blank allowed between the colon and the value either
        if self.at_end() or self.peek().isspace():
            raise self.fail(f"expected a value for {match.group()!r}")
        field = match.group()
        if self.peek() == "(":
            self.expect("(")
            node = self.or_expr(field)
            self.closed(")")
            return node
        return self.value(field)

    def value(self, field: str) -> Node:
        char = self.peek()
        if char == '"':
            return Term(field, self.quoted(), quoted=True)
        if char == "/":
            return Regex(field, self.regex())
        if char in "[{":
            return self.range(field)
        text, wild = self.word()
        return Wildcard(field, text) if wild else Term(field, text)

    def quoted(self) -> str:
        self.pos += 1
        out: list[str] = []
        while not self.at_end() and self.peek() != '"':
            if self.peek() == "\\" and self.pos + 1 < len(self.text):
                self.pos += 1
            out.append(self.text[self.pos])
            self.pos += 1
        if self.at_end():
            raise self.fail("unterminated quoted value")
        self.pos += 1
        self._skip()
        return "".join(out)

    def regex(self) -> str:
        self.pos += 1
        out: list[str] = []
        while not self.at_end() and self.peek() != "/":
            if self.peek() == "\\" and self.text[self.pos + 1 : self.pos + 2] == "/":
                self.pos += 1
            out.append(self.text[self.pos])
            self.pos += 1
        if self.at_end():
            raise self.fail("unterminated regular expression")
        self.pos += 1
        self._skip()
        return "".join(out)

    def word(self) -> tuple[str, bool]:
        """An unquoted value (backslash escapes any character) and whether it has a ``*``."""
        out: list[str] = []
        wild = False
        while not self.at_end() and not self.peek().isspace():
            char = self.peek()
            if char == "\\":
                if self.pos + 1 >= len(self.text):
                    raise self.fail("a backslash ends the query")
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if char in _SPECIAL:
                break
            wild = wild or char == "*"
            out.append(char)
            self.pos += 1
        if not out:
            raise self.fail("expected a value")
        if self.peek() not in ("", ")") and not self.peek().isspace():
            raise self.fail(f"unexpected {self.peek()!r} in a value (quote or escape it)")
        self._skip()
        return "".join(out), wild

    def range(self, field: str) -> Range:
        include_low = self.peek() == "["
        self.pos += 1
        self._skip()
        low = self.bound()
        if not self.keyword("TO"):
            raise self.fail("expected 'TO' in a range")
        high = self.bound()
        if self.peek() not in ("]", "}"):
            raise self.fail("expected ']' or '}' to close a range")
        include_high = self.peek() == "]"
        self.pos += 1
        self._skip()
        return Range(field, low, high, include_low, include_high)

    def bound(self) -> str | None:
        if self.peek() == '"':
            return self.quoted()
        start = self.pos
        while not self.at_end() and not self.peek().isspace() and self.peek() not in "]}":
            self.pos += 1
        text = self.text[start : self.pos]
        self._skip()
        if not text:
            raise self.fail("expected a range bound")
        return None if text == "*" else text


def parse(text: str) -> Node:
    """The tree of a ``q`` value; ``QueryError`` if it is not well formed."""
    return _Parser(text).query()


# ---- rendering (the inverse of parse, for tests and logs) -------------------------------------


def _escape_word(text: str) -> str:
    return "".join(f"\\{c}" if c in _SPECIAL or c in "*:" or c.isspace() else c for c in text)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(node: Node) -> str:
    """A query text that parses back to ``node``."""
    match node:
        case MatchAll():
            return "*:*"
        case Term(field, text, quoted):
            return f"{field}:{_quote(text) if quoted else _escape_word(text)}"
        case Wildcard(field, pattern):
            return f"{field}:" + "*".join(_escape_word(part) for part in pattern.split("*"))
        case Regex(field, pattern):
            return f"{field}:/{pattern.replace('/', chr(92) + '/')}/"
        case Range(field, low, high, include_low, include_high):
            lo = "*" if low is None else _quote(low)
            hi = "*" if high is None else _quote(high)
            return (
                f"{field}:{'[' if include_low else '{'}{lo} TO {hi}{']' if include_high else '}'}"
            )
        case And(items):
            return " AND ".join(_group(item) for item in items)
        case Or(items):
            return " OR ".join(_group(item) for item in items)
        case Not(item):
            return f"NOT {_group(item)}"
    raise TypeError(node)  # pragma: no cover


def _group(node: Node) -> str:
    return f"({render(node)})" if isinstance(node, And | Or) else render(node)


# ---- evaluation -------------------------------------------------------------------------------


def parse_date(text: str) -> datetime:
    """An ISO 8601 date; without an offset it is taken as UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _typed(kind: AttributeType, text: str) -> Any:
    """``text`` as a value of ``kind``; QueryError when it is not one."""
    try:
        if kind == "integer":
            return int(float(text))
        if kind == "double":
            return float(text)
        if kind == "date":
            return parse_date(text)
    except ValueError:
        raise QueryError(f"{text!r} is not a valid {kind}") from None
    if kind == "boolean":
        return text.lower() == "true"
    return text


def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise QueryError(f"Invalid regular expression {pattern!r}: {exc}") from None


def compile_query(node: Node, schema: Mapping[str, AttributeType]) -> Predicate:
    """A predicate over documents (attribute -> values) for ``node``.

    ``schema`` gives each attribute's type; ``properties.x`` names the attribute ``x``.
    """

    def kind_of(field: str) -> tuple[str, AttributeType]:
        name = field.removeprefix("properties.")
        kind = schema.get(name) or schema.get(field)
        if kind is None:
            raise QueryError(f"Invalid OpenSearch parameter : {field}.")
        return (name if name in schema else field), kind

    def build(node: Node) -> Predicate:
        match node:
            case MatchAll():
                return lambda doc: True
            case And(items):
                parts = [build(i) for i in items]
                return lambda doc: all(p(doc) for p in parts)
            case Or(items):
                parts = [build(i) for i in items]
                return lambda doc: any(p(doc) for p in parts)
            case Not(item):
                inner = build(item)
                return lambda doc: not inner(doc)
        return leaf(node)

    def leaf(node: Node) -> Predicate:
        assert isinstance(node, Term | Wildcard | Regex | Range)
        name, kind = kind_of(node.field)
        test: Callable[[Any], bool]
        if isinstance(node, Term):
            wanted = _typed(kind, node.text)
            if kind == "string" and not node.quoted:
                test = lambda v: isinstance(v, str) and wanted in v  # noqa: E731
            else:
                test = lambda v: v == wanted  # noqa: E731
        elif isinstance(node, Wildcard | Regex):
            if kind != "string":
                raise QueryError(f"Unsupported AttributeType for a pattern: {kind} ({name})")
            text = node.pattern.replace("*", ".*") if isinstance(node, Wildcard) else node.pattern
            compiled = _regex(text)
            test = lambda v: isinstance(v, str) and compiled.fullmatch(v) is not None  # noqa: E731
        else:
            if kind == "boolean":
                raise QueryError(f"Range query not supported for attribute type {kind}")
            low = None if node.low is None else _typed(kind, node.low)
            high = None if node.high is None else _typed(kind, node.high)
            test = _in_range(low, high, node.include_low, node.include_high)
        return lambda doc: any(test(v) for v in doc.get(name, ()))

    return build(node)


def _in_range(low: Any, high: Any, include_low: bool, include_high: bool) -> Callable[[Any], bool]:
    def test(value: Any) -> bool:
        try:
            if low is not None and (value < low or (value == low and not include_low)):
                return False
            return not (high is not None and (value > high or (value == high and not include_high)))
        except TypeError:  # a value of another type than the bounds
            return False

    return test
