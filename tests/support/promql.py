"""The series a PromQL expression reads, for checking that the dashboard's queries and the alert
rules name only what Paperwire exports.

    selectors('sum by (class) (rate(paperwire_smtp_replies_total{class="5xx"}[5m]))')
    # → [Selector("paperwire_smtp_replies_total", (Matcher("class", "=", "5xx"),))]
    grouping_labels(...)  # → {"class"}

Enough of PromQL's grammar to tell metric names from functions, aggregations, keywords, label
names, durations and numbers; not a parser of PromQL (promtool and Prometheus judge the syntax).
Grafana's variables ($__rate_interval) stand in for durations and are skipped.
"""

import re
from dataclasses import dataclass

_TOKEN = re.compile(
    r"""
      (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<number>0x[0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:(?:ms|[smhdwy])\d*)*)
    | (?P<variable>\$\{[^}]*\}|\$\w+)
    | (?P<name>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<operator>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){}\[\],:@])
    | (?P<space>\s+|\#[^\n]*)
    """,
    re.VERBOSE,
)
AGGREGATIONS = frozenset(
    {
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
        "bottomk", "topk", "quantile", "limitk", "limit_ratio",
    }
)  # fmt: skip
# Followed by a parenthesised list of label names.
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = GROUPING | {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
MATCH_OPERATORS = frozenset({"=", "!=", "=~", "!~"})


class PromQLError(ValueError):
    """Text this reading of PromQL does not follow."""


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str


@dataclass(frozen=True)
class Selector:
    """A series selector: a metric name and its label matchers."""

    name: str
    matchers: tuple[Matcher, ...] = ()


def _tokens(expr: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:
            raise PromQLError(f"cannot read {expr[position : position + 20]!r} in {expr!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append((kind, match.group()))
        position = match.end()
    return tokens


def _unquote(literal: str) -> str:
    body = literal[1:-1]
    return body if literal[0] == "`" else re.sub(r"\\(.)", r"\1", body)


def _matchers(tokens: list[tuple[str, str]], start: int) -> tuple[tuple[Matcher, ...], int]:
    """The matchers of the `{…}` opening at `start`; the index after its `}`."""
    matchers: list[Matcher] = []
    index = start + 1
    while tokens[index][1] != "}":
        if tokens[index][1] == ",":
            index += 1
            continue
        (label_kind, label), (_, op), (value_kind, value) = tokens[index : index + 3]
        if label_kind != "name" or op not in MATCH_OPERATORS or value_kind != "string":
            raise PromQLError(f"not a label matcher: {label} {op} {value}")
        matchers.append(Matcher(label, op, _unquote(value)))
        index += 3
    return tuple(matchers), index + 1


def _skip_past(tokens: list[tuple[str, str]], start: int, closing: str) -> int:
    index = start
    while tokens[index][1] != closing:
        index += 1
    return index + 1


def _walk(expr: str) -> tuple[list[Selector], set[str]]:
    tokens = [*_tokens(expr), ("end", "")]
    selectors: list[Selector] = []
    grouping: set[str] = set()
    index = 0
    while tokens[index][0] != "end":
        kind, text = tokens[index]
        following = tokens[index + 1][1]
        if text == "[":
            index = _skip_past(tokens, index, "]")  # a range or a subquery's step
        elif text == "{":
            bare, index = _matchers(tokens, index)
            names = [m.value for m in bare if m.label == "__name__" and m.op == "="]
            selectors.append(Selector(names[0] if names else "", bare))
        elif kind == "name" and text.lower() in GROUPING and following == "(":
            end = _skip_past(tokens, index + 1, ")")
            grouping.update(t for k, t in tokens[index + 2 : end - 1] if k == "name")
            index = end
        elif kind == "name" and (following == "(" or text in AGGREGATIONS):
            index += 1  # a function or an aggregation
        elif kind == "name" and text.lower() not in KEYWORDS:
            matchers: tuple[Matcher, ...] = ()
            index += 1
            if following == "{":
                matchers, index = _matchers(tokens, index)
            selectors.append(Selector(text, matchers))
        else:
            index += 1
    return selectors, grouping


def selectors(expr: str) -> list[Selector]:
    """Every series selector of `expr`, in order."""
    return _walk(expr)[0]


def grouping_labels(expr: str) -> set[str]:
    """The label names of its `by`, `without`, `on`, `ignoring` and `group_*` clauses."""
    return _walk(expr)[1]
