"""The simulator's Lucene subset: parsing, refusals and what each clause matches."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regards_order.simulator.lucene import (
    And,
    AttributeType,
    MatchAll,
    Node,
    Not,
    Or,
    QueryError,
    Range,
    Regex,
    Term,
    Wildcard,
    compile_query,
    parse,
    render,
)

SCHEMA: dict[str, AttributeType] = {
    "label": "string",
    "tags": "string",
    "cloud": "double",
    "orbit": "integer",
    "start": "date",
    "night": "boolean",
}
DOC: dict[str, list[Any]] = {
    "label": ["scene 42 over Toulouse"],
    "tags": ["optical", "URN:AIP:DATASET:demo:1234:V1"],
    "cloud": [12.5],
    "orbit": [1042],
    "start": [datetime(2024, 3, 1, 10, 30, tzinfo=UTC)],
    "night": [False],
}


def matches(q: str, doc: dict[str, list[Any]] = DOC) -> bool:
    return compile_query(parse(q), SCHEMA)(doc)


# ---- parsing ------------------------------------------------------------------------------


def test_trees_of_the_supported_forms() -> None:
    assert parse("") == parse("   ") == parse("*:*") == MatchAll()
    assert parse("label:scene") == Term("label", "scene")
    assert parse('label:"scene 42"') == Term("label", "scene 42", quoted=True)
    assert parse("label:sc*ne") == Wildcard("label", "sc*ne")
    assert parse("label:/sc.ne [0-9]+.*/") == Regex("label", "sc.ne [0-9]+.*")
    assert parse("orbit:[1 TO *}") == Range("orbit", "1", None, True, False)
    assert parse('start:{"2024-01-01T00:00:00Z" TO 2025-01-01T00:00:00Z]') == Range(
        "start", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z", False, True
    )
    assert parse("label:a OR label:b AND NOT tags:c") == Or(
        (Term("label", "a"), And((Term("label", "b"), Not(Term("tags", "c")))))
    )
    assert parse("(label:a OR label:b) AND tags:c") == And(
        (Or((Term("label", "a"), Term("label", "b"))), Term("tags", "c"))
    )
    assert parse('tags:(optical OR "radar")') == Or(
        (Term("tags", "optical"), Term("tags", "radar", quoted=True))
    )
    assert parse(r"label:scene\ 42\:x") == Term("label", "scene 42:x")
    assert parse("properties.cloud:1") == Term("properties.cloud", "1")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("label:a label:b", "Indeterminate relationship between criteria"),
        ("(label:a tags:b)", "Indeterminate relationship between criteria"),
        ("label:a AND", "expected an attribute name"),
        ("label:", "expected a value"),
        ("label: a", "expected a value"),
        ("label:a:b", "unexpected ':'"),
        ('label:"open', "unterminated quoted value"),
        ("label:/open", "unterminated regular expression"),
        ("(label:a", "expected ')'"),
        ("label:a)", "unbalanced ')'"),
        ("orbit:[1 2]", "expected 'TO'"),
        ("orbit:[1 TO 2", "expected ']' or '}'"),
        ("scene", "expected ':'"),
        ("OR label:a", "expected an attribute name"),
    ],
)
def test_malformed_queries_are_refused_with_a_message(query: str, message: str) -> None:
    with pytest.raises(QueryError, match=re.escape(message)):
        parse(query)


# ---- meaning ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("label:Toulouse", True),  # unquoted text: contains
        ("label:toulouse", False),  # case counts
        ('label:"Toulouse"', False),  # quoted: equals
        ('label:"scene 42 over Toulouse"', True),
        ("properties.label:Toulouse", True),
        ("label:scene*", True),  # a wildcard matches the whole value
        ("label:*Toul*", True),
        ("label:Toul*", False),
        ("label:scene.42*", True),  # other regex characters keep their meaning
        ("label:/scene [0-9]+ .*/", True),
        ("label:/[0-9]+/", False),
        ("tags:optical", True),  # any value of a list
        ('tags:"URN:AIP:DATASET:demo:1234:V1"', True),
        ("orbit:1042", True),  # numbers: equals
        ("orbit:104", False),
        ("cloud:12.5", True),
        ("cloud:[10 TO 12.5]", True),
        ("cloud:[10 TO 12.5}", False),
        ("orbit:{1042 TO *]", False),
        ("orbit:[* TO 2000]", True),
        ('start:"2024-03-01T10:30:00Z"', True),
        ("start:[2024-01-01T00:00:00Z TO 2024-06-01T00:00:00Z]", True),
        ("start:[2024-03-02 TO *]", False),
        ("night:false", True),
        ("label:[a TO t]", True),  # strings compare as strings
        ("label:Toulouse AND NOT orbit:1042", False),
        ("label:Paris OR (orbit:1042 AND cloud:[0 TO 20])", True),
        ("NOT NOT tags:optical", True),
        ("*:*", True),
    ],
)
def test_clauses_match_as_regards_builds_them(query: str, expected: bool) -> None:
    assert matches(query) is expected


def test_a_document_without_the_attribute_matches_nothing_but_its_negation() -> None:
    assert not matches("orbit:1042", {"label": ["x"]})
    assert matches("NOT orbit:1042", {"label": ["x"]})


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("nope:1", "Invalid OpenSearch parameter : nope."),
        ("properties.nope:1", "Invalid OpenSearch parameter : properties.nope."),
        ("orbit:abc", "not a valid integer"),
        ("start:[yesterday TO *]", "not a valid date"),
        ("orbit:10*", "Unsupported AttributeType"),
        ("label:/(/", "Invalid regular expression"),
        ("night:[false TO true]", "Range query not supported"),
    ],
)
def test_queries_the_schema_refuses(query: str, message: str) -> None:
    with pytest.raises(QueryError, match=re.escape(message)):
        compile_query(parse(query), SCHEMA)


# ---- properties ---------------------------------------------------------------------------

_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=8
)
_plain = st.text(alphabet="abcXYZ019 -_.:()\"'/\\[]{}", min_size=1, max_size=8)
_field = st.sampled_from(["label", "tags", "properties.orbit", "start"])
_leaf: st.SearchStrategy[Node] = st.one_of(
    st.builds(Term, _field, _text, st.booleans()),
    st.builds(Wildcard, _field, st.lists(_plain, min_size=2, max_size=3).map("*".join)),
    st.builds(Regex, _field, st.text(alphabet="ab.*+?[]0-9/", min_size=1, max_size=6)),
    st.builds(
        Range,
        _field,
        st.none() | _text,
        st.none() | _text,
        st.booleans(),
        st.booleans(),
    ),
    st.just(MatchAll()),
)
_trees: st.SearchStrategy[Node] = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.lists(inner, min_size=2, max_size=3).map(lambda items: And(tuple(items))),
        st.lists(inner, min_size=2, max_size=3).map(lambda items: Or(tuple(items))),
    ),
    max_leaves=8,
)


@given(_trees)
def test_rendering_parses_back_to_the_same_tree(tree: Node) -> None:
    assert parse(render(tree)) == tree


# Boolean structure against a direct evaluation: leaves are "flag:<name>" equality tests.
_flags = st.sampled_from(["a", "b", "c"])
_bool_leaf: st.SearchStrategy[Node] = _flags.map(lambda n: Term("flag", n, quoted=True))
_bool_trees: st.SearchStrategy[Node] = st.recursive(
    _bool_leaf,
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.lists(inner, min_size=2, max_size=3).map(lambda items: And(tuple(items))),
        st.lists(inner, min_size=2, max_size=3).map(lambda items: Or(tuple(items))),
    ),
    max_leaves=10,
)


def _truth(node: Node, on: set[str]) -> bool:
    match node:
        case Term(_, text, _):
            return text in on
        case Not(item):
            return not _truth(item, on)
        case And(items):
            return all(_truth(i, on) for i in items)
        case Or(items):
            return any(_truth(i, on) for i in items)
    raise AssertionError(node)


@given(_bool_trees, st.sets(_flags))
def test_and_or_not_evaluate_like_boolean_logic(tree: Node, on: set[str]) -> None:
    predicate = compile_query(parse(render(tree)), {"flag": "string"})
    assert predicate({"flag": sorted(on)}) is _truth(tree, on)
