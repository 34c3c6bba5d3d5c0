"""Derived-feature expressions: a small declared grammar, checked by parsing and evaluated by
walking its syntax tree. Nothing here calls `eval`, `exec` or `DataFrame.eval`.

An expression comes from `params.yaml` and travels inside `models/schema.json`, so a model
pulled from a remote could carry one: it must never be able to reach Python. The grammar:

- column names (``AGEP``, or ```odd name``` in backticks) and number, boolean or text literals;
- arithmetic ``+ - * / // % **``, unary ``-``/``+``, comparisons ``< <= > >= == !=`` (chains too);
- ``and``/``or``/``not`` and ``& | ~``, element-wise, as in pandas;
- the functions in `FUNCTIONS`, with positional arguments.

Anything else (attribute access, subscripts, keyword arguments, lambdas, ``@`` names, other
calls) is refused before any row is touched, with one line that names the key and the part.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlpipe.errors import ConfigError

MAX_LENGTH = 1000  # characters; a longer expression is a mistake, and a deep one could exhaust the parser
# Nesting levels of the syntax tree. Evaluation walks the tree recursively (two Python frames a
# level), so `1+1+...` with 499 terms or 996 unary minus signs, both under MAX_LENGTH, would
# exhaust Python's stack; no expression a person writes comes near this depth.
MAX_DEPTH = 100
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BACKTICKED = re.compile(r"`([^`]+)`")


def _clip(values, low, high):
    return np.clip(values, low, high)


def _where(condition, if_true, if_false):
    result = np.where(np.asarray(condition, dtype=bool), if_true, if_false)
    return pd.Series(result, index=condition.index) if isinstance(condition, pd.Series) else result


def _isnull(values):
    return pd.isna(values)


def _notnull(values):
    return pd.notna(values)


# name: (number of arguments, function). Element-wise numpy functions keep a Series a Series.
FUNCTIONS = {
    "abs": (1, np.abs),
    "sqrt": (1, np.sqrt),
    "exp": (1, np.exp),
    "expm1": (1, np.expm1),
    "log": (1, np.log),
    "log1p": (1, np.log1p),
    "log2": (1, np.log2),
    "log10": (1, np.log10),
    "floor": (1, np.floor),
    "ceil": (1, np.ceil),
    "round": (1, np.round),
    "sign": (1, np.sign),
    "isnull": (1, _isnull),
    "notnull": (1, _notnull),
    "minimum": (2, np.minimum),
    "maximum": (2, np.maximum),
    "clip": (3, _clip),
    "where": (3, _where),
}

_BINARY = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.true_divide,
    ast.FloorDiv: np.floor_divide,
    ast.Mod: np.mod,
    ast.Pow: np.power,
    ast.BitAnd: np.logical_and,
    ast.BitOr: np.logical_or,
}
_COMPARE = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
}
_UNARY = {ast.USub: np.negative, ast.UAdd: np.positive, ast.Not: np.logical_not, ast.Invert: np.logical_not}
_BOOLEAN = {ast.And: np.logical_and, ast.Or: np.logical_or}

_SUMMARY = "arithmetic, comparisons, and/or/not, column names, literals and the functions " + ", ".join(sorted(FUNCTIONS))


@dataclass(frozen=True)
class Expression:
    """A checked expression: its text, its syntax tree and the columns it reads."""

    text: str
    tree: ast.Expression
    columns: tuple[str, ...]
    aliases: dict[str, str]  # placeholder identifier -> backticked column name

    def evaluate(self, table: pd.DataFrame) -> pd.Series | np.ndarray | float:
        with np.errstate(all="ignore"):  # log(0), 1/0: -inf, inf and NaN are values, as in numpy
            return _Evaluator(table, self.aliases).visit(self.tree.body)


def parse_expression(text: str, key: str) -> Expression:
    """Parse and check `text`; a `ConfigError` naming `key` and the forbidden part otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{key}: an expression must be non-empty text")
    if len(text) > MAX_LENGTH:
        raise ConfigError(f"{key}: the expression is {len(text):,} characters long; the limit is {MAX_LENGTH}")
    aliases: dict[str, str] = {}
    # Backticked names become identifiers with a prefix the text does not contain, so no column
    # name or bare identifier in the expression can be mistaken for one (`__column_0__` included).
    prefix = "__column_"
    while prefix in text:
        prefix = "_" + prefix

    def alias(match: re.Match) -> str:
        placeholder = f"{prefix}{len(aliases)}__"
        aliases[placeholder] = match.group(1)
        return placeholder

    source = _BACKTICKED.sub(alias, text)
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        where = f" near '{source.strip()[max(0, (exc.offset or 1) - 1) :][:20]}'" if exc.offset else ""
        raise ConfigError(f"{key}: '{text}' is not a valid expression{where}: use {_SUMMARY}") from None
    except (RecursionError, MemoryError, ValueError):
        raise ConfigError(f"{key}: '{text[:60]}' is nested too deeply to be an expression") from None
    if _depth(tree) > MAX_DEPTH:
        raise ConfigError(
            f"{key}: the expression nests more than {MAX_DEPTH} levels deep (operators, signs or parentheses); "
            "split it into derived features that build on each other"
        )
    columns: list[str] = []
    for node in ast.walk(tree):
        problem = _forbidden(node)
        if problem:
            part = ast.get_source_segment(source.strip(), node) or type(node).__name__
            for placeholder, name in aliases.items():
                part = part.replace(placeholder, f"`{name}`")
            raise ConfigError(f"{key}: {problem} '{part}' is not allowed in an expression; use {_SUMMARY}")
        if isinstance(node, ast.Name) and not _is_function_position(node, tree):
            name = aliases.get(node.id, node.id)
            if name not in columns:
                columns.append(name)
    return Expression(text, tree, tuple(columns), aliases)


def _depth(tree: ast.AST) -> int:
    """The syntax tree's depth, counted without recursion (the point is to refuse deep trees)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _is_function_position(name: ast.Name, tree: ast.Expression) -> bool:
    return any(isinstance(node, ast.Call) and node.func is name for node in ast.walk(tree))


def _forbidden(node: ast.AST) -> str | None:
    """Why `node` is outside the grammar, or None when it belongs to it."""
    allowed = (
        ast.Expression,
        ast.Name,
        ast.Load,
        ast.Constant,
        ast.BinOp,
        ast.UnaryOp,
        ast.Compare,
        ast.BoolOp,
        ast.Call,
        *_BINARY,
        *_COMPARE,
        *_UNARY,
        *_BOOLEAN,
    )
    if not isinstance(node, allowed):
        kinds = {
            ast.Attribute: "attribute access",
            ast.Subscript: "indexing",
            ast.Lambda: "a lambda",
            ast.IfExp: "an if-expression (use where(...))",
            ast.MatMult: "the operator",
        }
        return kinds.get(type(node), f"the construct ({type(node).__name__})")
    if isinstance(node, ast.Constant) and not isinstance(node.value, (bool, int, float, str)):
        return "the literal"
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            return "the call"
        if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
            return "keyword or starred arguments in"
        if len(node.args) != FUNCTIONS[node.func.id][0]:
            return f"{node.func.id} takes {FUNCTIONS[node.func.id][0]} argument(s):"
    return None


class _Evaluator(ast.NodeVisitor):
    """Evaluates a checked tree over a table's columns (Series) and literals."""

    def __init__(self, table: pd.DataFrame, aliases: dict[str, str]):
        self.table, self.aliases = table, aliases

    def visit_Name(self, node: ast.Name):
        name = self.aliases.get(node.id, node.id)
        if name not in self.table.columns:
            raise ConfigError(f"column '{name}' is not in the table")
        return self.table[name]

    def visit_Constant(self, node: ast.Constant):
        # Numbers as float64: Python's unbounded integers would let `9 ** 9 ** 9` run for ever.
        if isinstance(node.value, bool) or isinstance(node.value, str):
            return node.value
        return np.float64(node.value)

    def visit_BinOp(self, node: ast.BinOp):
        return _BINARY[type(node.op)](self.visit(node.left), self.visit(node.right))

    def visit_UnaryOp(self, node: ast.UnaryOp):
        return _UNARY[type(node.op)](self.visit(node.operand))

    def visit_BoolOp(self, node: ast.BoolOp):
        values = [self.visit(value) for value in node.values]
        result = values[0]
        for value in values[1:]:
            result = _BOOLEAN[type(node.op)](result, value)
        return result

    def visit_Compare(self, node: ast.Compare):
        left, result = self.visit(node.left), None
        for operator, comparator in zip(node.ops, node.comparators, strict=True):
            right = self.visit(comparator)
            outcome = _COMPARE[type(operator)](left, right)
            result = outcome if result is None else np.logical_and(result, outcome)
            left = right
        return result

    def visit_Call(self, node: ast.Call):
        return FUNCTIONS[node.func.id][1](*(self.visit(argument) for argument in node.args))

    def generic_visit(self, node: ast.AST):
        raise ConfigError(f"'{type(node).__name__}' is not allowed in an expression")  # unreachable after parse_expression


def check_derived(derived: dict[str, str], key: str) -> dict[str, Expression]:
    """Check every `name: expression` pair (names must be plain identifiers); parsed expressions by name."""
    parsed = {}
    for name, text in derived.items():
        if not NAME.match(str(name)):
            raise ConfigError(f"{key}: the derived feature name {name!r} must be a plain identifier (letters, digits, '_')")
        parsed[name] = parse_expression(text, f"{key}.{name}")
    return parsed
