"""Amazon Personalize's filter expression language: parsed once by CreateFilter, evaluated per request.

The grammar, as the developer guide describes it (creating-filter-expressions, filter-expression-
guidelines-requirements, multiple-expression-example); keywords and dataset names ignore case. The
guide shows no parentheses or precedence, so grouping follows SQL:

    filter    = statement { "|" statement } ;
    statement = ( "INCLUDE" | "EXCLUDE" ) "ItemID" "WHERE" or_expr [ "IF" user_cond { "AND" user_cond } ] ;
    or_expr   = and_expr { "OR" and_expr } ;                 (* AND binds tighter than OR *)
    and_expr  = primary { "AND" primary } ;
    primary   = "(" or_expr ")" | condition ;
    condition = ( "Items" | "Interactions" ) "." FIELD test ;
    user_cond = "CurrentUser" "." FIELD test ;                (* "Users" is accepted as an alias *)
    test      = [ "NOT" ] "IN" operand | ( "=" | "!=" | "<" | "<=" | ">" | ">=" ) operand ;
    operand   = "(" value { "," value } ")" | value ;
    value     = STRING | NUMBER | "$" NAME | "CurrentItem" "." FIELD ;

Evaluation turns a filter into a bool mask over the model's item codes with a few numpy operations:
the Catalog indexes each field's values and numbers once, so no request loops over items (only over
the user's own interactions).
"""
from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from kernel.contract import EVENTS_PER_TYPE

MAX_FIELDS = 5              # distinct dataset fields per filter, chained expressions included
MAX_EVENTS_PER_TYPE = EVENTS_PER_TYPE  # the most recent interactions considered per user and event type
MAX_DEPTH = 20              # nested parentheses: deeper would exhaust Python's stack (3 frames a level)

_ORDER: dict[str, Callable[[object, object], object]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_POSITIVE = ("IN", "=")     # the other equality tests, NOT IN and !=, are their complements


class FilterError(ValueError):
    """A malformed expression: the message says what was expected and points at the column."""

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.column = column


class FilterValueError(ValueError):
    """Bad or missing filterValues at request time (or a request the filter can't serve)."""

    def __init__(self, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


# --- syntax tree ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Value:
    kind: str       # "str", "num", "param" or "current" (CurrentItem.<FIELD>)
    text: str       # the unquoted string, the number as written, the parameter name or the field
    column: int


@dataclass(frozen=True)
class Condition:
    dataset: str    # "Items", "Interactions" or "CurrentUser"
    field: str
    op: str         # "IN", "NOT IN", "=", "!=", "<", "<=", ">", ">="
    values: tuple[Value, ...]
    column: int
    width: int      # of "Dataset.FIELD" in the source, for carets


@dataclass(frozen=True)
class Junction:
    op: str         # "AND" or "OR"
    parts: tuple[Condition | Junction, ...]


@dataclass(frozen=True)
class Statement:
    include: bool
    where: Condition | Junction
    when: tuple[Condition, ...]     # the IF clause: every condition must hold for the statement to apply
    parameters: frozenset[str]


@dataclass(frozen=True)
class Filter:
    expression: str
    parameters: frozenset[str]      # $NAMEs used, without the "$"
    uses_interactions: bool
    uses_items: bool
    uses_users: bool
    uses_current_item: bool
    statements: tuple[Statement, ...] = field(default=(), repr=False, compare=False)


def _conditions(node: Condition | Junction) -> Iterable[Condition]:
    if isinstance(node, Condition):
        yield node
    else:
        for part in node.parts:
            yield from _conditions(part)


# --- tokens and messages -------------------------------------------------------------------------

_TOKEN = re.compile(r"""(?P<ws>\s+) | (?P<str>"(?:[^"\\]|\\.)*") | (?P<open>") | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<param>\$[A-Za-z0-9_]+) | (?P<name>[A-Za-z_][A-Za-z0-9_]*) | (?P<op><=|>=|!=|[<>=])
    | (?P<punct>[().,|]) """, re.X)
_ESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class _Tok:
    kind: str       # a _TOKEN group name, "end", or the punctuation character itself
    text: str
    col: int        # 1-based


def _error(src: str, what: str, col: int, width: int = 1) -> FilterError:
    """'<what> at column N: "<source up to the mistake> ..."' plus a caret line under the mistake."""
    start = max(0, col - 61)
    end = min(len(src), col - 1 + max(width, 1))
    shown = src[start:end].replace("\n", " ").replace("\t", " ")
    head = f'{what} at column {col}: "' + ("..." if start else "")
    tail = " ..." if end < len(src) else ""
    caret = " " * (len(head) + col - 1 - start) + "^" * max(width, 1)
    return FilterError(f'{head}{shown}{tail}"\n{caret}', col)


def _tokenize(src: str) -> list[_Tok]:
    toks, pos = [], 0
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if m is None:
            raise _error(src, f"unexpected character {src[pos]!r}", pos + 1)
        if m.lastgroup == "open":
            raise _error(src, 'unterminated string (no closing ")', pos + 1)
        if m.lastgroup != "ws":
            toks.append(_Tok(m.group() if m.lastgroup == "punct" else str(m.lastgroup), m.group(), pos + 1))
        pos = m.end()
    return [*toks, _Tok("end", "", len(src) + 1)]


# --- parser --------------------------------------------------------------------------------------

_MISPLACED = {
    "CurrentUser": "user fields can only be tested in an IF clause, as CurrentUser.<FIELD>",
    "CurrentItem": "CurrentItem goes on the right, as in Items.PRICE < CurrentItem.PRICE"}
_DATASETS = {"ITEMS": "Items", "INTERACTIONS": "Interactions", "CURRENTUSER": "CurrentUser",
             "USERS": "CurrentUser", "CURRENTITEM": "CurrentItem"}


class _Parser:
    """Recursive descent over the tokens: one method per grammar rule, checks where the docs set rules."""

    def __init__(self, src: str) -> None:
        self.src, self.toks, self.i = src, _tokenize(src), 0
        self.depth = 0  # parentheses open around the current token

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def fail(self, what: str, col: int | None = None, width: int | None = None) -> FilterError:
        return _error(self.src, what, col or self.tok.col, width or len(self.tok.text))

    def keyword(self, *words: str) -> str | None:
        """Consume the next token if it is one of `words` (any case); return it upper-cased."""
        if self.tok.kind == "name" and self.tok.text.upper() in words:
            self.i += 1
            return self.toks[self.i - 1].text.upper()
        return None

    def expect(self, kind: str, what: str) -> _Tok:
        if self.tok.kind != kind:
            raise self.fail(f"expected {what}")
        self.i += 1
        return self.toks[self.i - 1]

    def filter(self) -> list[Statement]:
        statements = [self.statement()]
        while self.tok.kind == "|":
            self.i += 1
            statements.append(self.statement())
        if self.tok.kind != "end":
            raise self.fail("expected AND, OR, IF, '|' or the end of the expression")
        return statements

    def statement(self) -> Statement:
        action = self.keyword("INCLUDE", "EXCLUDE")
        if action is None:
            raise self.fail("expected INCLUDE or EXCLUDE")
        if not self.keyword("ITEMID"):
            other = self.tok.text.upper() in ("ACTIONID", "USERID")
            raise self.fail("expected ItemID" + (" (only item filters are supported)" if other else ""))
        if not self.keyword("WHERE"):
            raise self.fail("expected WHERE")
        where = self.or_expr()
        when = []
        if self.keyword("IF"):
            when.append(self.condition(user=True))
            while self.keyword("AND"):
                when.append(self.condition(user=True))
            if self.tok.kind == "name" and self.tok.text.upper() in ("OR", "IF"):
                raise self.fail("an IF clause comes once, at the end, and extends only with AND")
        first, *rest = _conditions(where)
        for c in rest:
            if c.dataset != first.dataset:
                raise self.fail(f"can't mix {first.dataset} and {c.dataset} conditions in one expression: "
                                "chain two expressions with '|'", c.column, c.width)
        params = frozenset(v.text for c in (first, *rest, *when) for v in c.values if v.kind == "param")
        return Statement(action == "INCLUDE", where, tuple(when), params)

    def or_expr(self) -> Condition | Junction:
        parts = [self.and_expr()]
        while self.keyword("OR"):
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else Junction("OR", tuple(parts))

    def and_expr(self) -> Condition | Junction:
        parts = [self.primary()]
        while self.keyword("AND"):
            parts.append(self.primary())
        return parts[0] if len(parts) == 1 else Junction("AND", tuple(parts))

    def primary(self) -> Condition | Junction:
        if self.tok.kind != "(":
            return self.condition(user=False)
        if self.depth == MAX_DEPTH:
            raise self.fail(f"parentheses nest at most {MAX_DEPTH} deep")
        self.i, self.depth = self.i + 1, self.depth + 1
        node = self.or_expr()
        self.expect(")", "AND, OR or ')'")
        self.depth -= 1
        return node

    def condition(self, user: bool) -> Condition:
        start = self.tok
        if start.kind != "name" or start.text.upper() in ("AND", "OR", "IF", "WHERE"):
            after = self.toks[self.i - 1].text.upper() if self.i else ""
            raise self.fail("expected " + ("CurrentUser.<FIELD>" if user else "a condition")
                            + (f" after {after}" if after in ("AND", "OR", "IF", "WHERE") else ""))
        dataset = _DATASETS.get(start.text.upper())
        if user and dataset != "CurrentUser":
            raise self.fail("an IF clause can only test CurrentUser.<FIELD>")
        if not user and dataset not in ("Items", "Interactions"):
            raise self.fail(_MISPLACED.get(str(dataset),
                                           f"unknown dataset {start.text!r}: expected Items or Interactions"))
        self.i += 1
        self.expect(".", f"'.' and a field name after {start.text}")
        name = self.expect("name", f"a field name after {start.text}.")
        width = name.col + len(name.text) - start.col
        if self.keyword("NOT"):
            if not self.keyword("IN"):
                raise self.fail("expected IN after NOT")
            op = "NOT IN"
        elif self.keyword("IN"):
            op = "IN"
        elif self.tok.kind == "op":
            op = self.expect("op", "").text
        else:
            raise self.fail("expected IN, NOT IN or a comparison (= != < <= > >=)")
        c = Condition(dataset, name.text, op, self.operand(), start.col, width)
        self.check(c)
        return Condition(c.dataset, "EVENT_TYPE", c.op, c.values, c.column, c.width) if (
            c.dataset == "Interactions") else c

    def check(self, c: Condition) -> None:
        """The documented limits on what a condition may compare."""
        def at(v: Value) -> tuple[int, int]:
            return v.column, len(v.text) + {"str": 2, "param": 1, "current": 12}.get(v.kind, 0)
        if c.dataset == "Interactions" and c.field.upper() != "EVENT_TYPE":
            raise self.fail("only Interactions.EVENT_TYPE can be filtered on", c.column, c.width)
        if c.dataset == "Interactions" and c.op in _ORDER:
            raise self.fail("event types are tested with IN, NOT IN, = or !=", c.column, c.width)
        for v in c.values:
            if v.kind == "str" and v.text == "*" and c.dataset != "Interactions":
                raise self.fail('"*" (any event type) works only with Interactions.EVENT_TYPE', *at(v))
            if v.kind == "param" and c.op == "NOT IN":
                raise self.fail("placeholder parameters can't be used with NOT IN: use IN and the opposite "
                                "action (INCLUDE/EXCLUDE)", *at(v))
            if v.kind == "current" and c.dataset != "Items":
                raise self.fail("CurrentItem can only be compared with Items fields", *at(v))
        if c.op in _ORDER and len(c.values) != 1:
            raise self.fail(f"{c.op} compares with exactly one value", *at(c.values[1]))
        if c.op in _ORDER and c.values[0].kind == "str":
            raise self.fail(f"expected a number, $PARAMETER or CurrentItem.<FIELD> after {c.op}",
                            *at(c.values[0]))

    def operand(self) -> tuple[Value, ...]:
        if self.tok.kind != "(":
            return (self.value(),)
        self.i += 1
        values = [self.value()]
        while self.tok.kind == ",":
            self.i += 1
            values.append(self.value())
        self.expect(")", "',' or ')'")
        return tuple(values)

    def value(self) -> Value:
        t = self.tok
        if t.kind in ("str", "num", "param"):
            self.i += 1
            text = {"str": _ESCAPE.sub(r"\1", t.text[1:-1]), "param": t.text[1:]}.get(t.kind, t.text)
            return Value(t.kind, text, t.col)
        if t.kind == "name" and t.text.upper() == "CURRENTITEM":
            self.i += 1
            self.expect(".", "'.' and a field name after CurrentItem")
            return Value("current", self.expect("name", "a field name after CurrentItem.").text, t.col)
        raise self.fail("expected a quoted string, a number, a $PARAMETER or CurrentItem.<FIELD>")


def parse(expression: str) -> Filter:
    """CreateFilter's check: the Filter, or a FilterError pointing at the first mistake."""
    parser = _Parser(expression)
    statements = tuple(parser.filter())
    conditions = [c for s in statements for c in (*_conditions(s.where), *s.when)]
    fields: set[tuple[str, str]] = set()
    for c in conditions:
        fields.add((c.dataset, c.field.upper()))
        fields |= {("Items", v.text.upper()) for v in c.values if v.kind == "current"}
        if len(fields) > MAX_FIELDS:
            raise parser.fail(f"a filter can use at most {MAX_FIELDS} distinct dataset fields",
                              c.column, c.width)
    datasets = {c.dataset for c in conditions}
    return Filter(expression, frozenset().union(*(s.parameters for s in statements)),
                  uses_interactions="Interactions" in datasets, uses_items="Items" in datasets,
                  uses_users="CurrentUser" in datasets,
                  uses_current_item=any(v.kind == "current" for c in conditions for v in c.values),
                  statements=statements)


# --- values --------------------------------------------------------------------------------------

def _number(v: object) -> float | None:
    """A value's number, if it is one: numbers, and strings that parse as numbers."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if x != x else x


def _num_key(x: float) -> str:
    return str(int(x)) if x.is_integer() else repr(x)


def _tokens(v: object) -> list[str]:
    """What IN compares with: a categorical string's "|"-separated parts, a number's canonical form."""
    if v is None or v == "" or (isinstance(v, float) and v != v):
        return []
    if isinstance(v, str):
        return [t for t in v.split("|") if t]
    n = _number(v)
    return [str(v) if n is None else _num_key(n)]


def _keys(values: Iterable[str]) -> set[str]:
    """The tokens a list of wanted values matches: each as written, and numbers in canonical form too."""
    keys = set(values)
    return keys | {_num_key(n) for v in keys if (n := _number(v)) is not None}


_ITEM = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|([^,"]*?))\s*(,|$)')


def _split_values(name: str, raw: str) -> list[str]:
    """filterValues' format: comma-separated values in escaped quotes, "\\"Comedy\\",\\"Drama\\"".

    Bare values are accepted too (numbers are often sent so); anything else names the parameter.
    """
    out, pos = [], 0
    while True:
        m = _ITEM.match(raw, pos)
        if m is None or (m.group(1) is None and not m.group(2)):
            raise FilterValueError(f'filterValues["{name}"] must be comma-separated values in double quotes, '
                                   f"like \"\\\"a\\\",\\\"b\\\"\"; got {raw!r}", name)
        out.append(m.group(2) if m.group(1) is None else _ESCAPE.sub(r"\1", m.group(1)))
        if not m.group(3):
            return out
        pos = m.end()


# --- catalog -------------------------------------------------------------------------------------

@dataclass(eq=False)
class Catalog:
    """Item metadata in the model's item-code order, precomputed once per (artifact, items dataset).

    Per field: an inverted index (value -> item codes; a categorical "a|b" counts under each part), a
    float array of numeric values (NaN where none) and a presence mask. An inverted index rather than a
    dense mask per value: those cost distinct values x items bytes (think ID-like fields); the index
    costs one entry per item value, kept as one sorted code array sliced by per-value offsets.
    """

    n_items: int
    columns: dict[str, list]
    _index: dict[str, tuple[dict[str, int], np.ndarray, np.ndarray]] = field(init=False, repr=False)
    _numbers: dict[str, np.ndarray] = field(init=False, repr=False)
    _present: dict[str, np.ndarray] = field(init=False, repr=False)
    _names: dict[str, str] = field(init=False, repr=False)

    @classmethod
    def build(cls, n_items: int, columns: dict[str, list]) -> Catalog:
        return cls(n_items, dict(columns))

    def __post_init__(self) -> None:
        self._index, self._numbers, self._present = {}, {}, {}
        for name, column in self.columns.items():
            if len(column) != self.n_items:
                raise ValueError(f"items field {name} has {len(column)} values for {self.n_items} items")
            ids: dict[str, int] = {}
            value_ids: list[int] = []
            item_codes: list[int] = []
            numbers = [np.nan] * self.n_items
            for code, v in enumerate(column):
                for t in _tokens(v):
                    value_ids.append(ids.setdefault(t, len(ids)))
                    item_codes.append(code)
                if (n := _number(v)) is not None:
                    numbers[code] = n
            vid, codes = np.asarray(value_ids, dtype=np.int64), np.asarray(item_codes, dtype=np.int64)
            offsets = np.concatenate(([0], np.cumsum(np.bincount(vid, minlength=len(ids)))))
            self._index[name] = ids, codes[np.argsort(vid, kind="stable")], offsets
            self._present[name] = np.zeros(self.n_items, dtype=bool)
            self._present[name][codes] = True
            self._numbers[name] = np.asarray(numbers, dtype=np.float64)
        self._names = {n.upper(): n for n in reversed(list(self.columns))}

    def name(self, field_name: str) -> str | None:
        """The column a field refers to: exact, else the one that matches ignoring case."""
        return field_name if field_name in self.columns else self._names.get(field_name.upper())

    def matching(self, name: str, keys: set[str]) -> np.ndarray:
        ids, codes, offsets = self._index[name]
        mask = np.zeros(self.n_items, dtype=bool)
        for i in (ids[k] for k in keys if k in ids):
            mask[codes[offsets[i]:offsets[i + 1]]] = True
        return mask


# --- evaluation ----------------------------------------------------------------------------------

def _events(interactions: Iterable[tuple[int, str]], n_items: int) -> dict[str, np.ndarray]:
    """The user's item codes per lower-cased event type: the newest MAX_EVENTS_PER_TYPE of each."""
    kept: dict[str, list[int]] = {}
    for code, event in reversed(list(interactions)):
        codes = kept.setdefault(str(event).lower(), [])
        if len(codes) < MAX_EVENTS_PER_TYPE:
            codes.append(code)
    arrays = {t: np.asarray(codes, dtype=np.int64) for t, codes in kept.items()}
    return {t: a[(a >= 0) & (a < n_items)] for t, a in arrays.items()}


@dataclass
class _Request:
    """One request's inputs, and how each kind of condition reads them."""

    src: str
    catalog: Catalog
    values: Mapping[str, str]
    events: dict[str, np.ndarray]
    user: Mapping[str, object] | None
    current_item: int | None

    def raw(self, name: str) -> str | None:
        v = self.values.get(name, self.values.get("$" + name))
        return v if v is not None and v.strip() else None

    def column(self, name: str, col: int, width: int) -> str:
        found = self.catalog.name(name)
        if found is None:
            raise _error(self.src, unknown_item_field(name, list(self.catalog.columns)), col, width)
        return found

    def resolve(self, c: Condition) -> list[str]:
        """The condition's values as strings: literals, split parameters, the current item's parts."""
        out: list[str] = []
        for v in c.values:
            if v.kind == "param":
                out += _split_values(v.text, self.raw(v.text) or "")
            elif v.kind == "current":
                if self.current_item is None:
                    raise FilterValueError("the filter uses CurrentItem: the request needs an itemId")
                name = self.column(v.text, v.column, len(v.text) + 12)
                ok = 0 <= self.current_item < self.catalog.n_items
                out += _tokens(self.catalog.columns[name][self.current_item]) if ok else []
            else:
                out.append(v.text)
        return out

    def number(self, c: Condition) -> float | None:
        """The one number an ordering comparison needs; None when the current item has none."""
        values, v = self.resolve(c), c.values[0]
        if len(values) == 1 and (n := _number(values[0])) is not None:
            return n
        if v.kind == "param":
            raise FilterValueError(f"${v.text} must be a single number for {c.op}, got {self.raw(v.text)!r}",
                                   v.text)
        return None

    def mask(self, node: Condition | Junction) -> np.ndarray:
        if isinstance(node, Junction):
            masks = [self.mask(p) for p in node.parts]
            return np.logical_and.reduce(masks) if node.op == "AND" else np.logical_or.reduce(masks)
        return self.interacted(node) if node.dataset == "Interactions" else self.items(node)

    def items(self, c: Condition) -> np.ndarray:
        name = self.column(c.field, c.column, c.width)
        if c.op in _ORDER:
            x = self.number(c)
            if x is None:
                return np.zeros(self.catalog.n_items, dtype=bool)
            return np.asarray(_ORDER[c.op](self.catalog._numbers[name], x))
        hit = self.catalog.matching(name, _keys(self.resolve(c)))
        return hit if c.op in _POSITIVE else self.catalog._present[name] & ~hit

    def interacted(self, c: Condition) -> np.ndarray:
        """Items the user interacted with by an event type that the condition accepts (any case)."""
        wanted = {v.lower() for v in self.resolve(c)}
        positive = c.op in _POSITIVE
        mask = np.zeros(self.catalog.n_items, dtype=bool)
        for event, codes in self.events.items():
            if ("*" in wanted or event in wanted) == positive:
                mask[codes] = True
        return mask

    def holds(self, c: Condition) -> bool:
        """An IF condition on the current user; an unknown user or a missing attribute never matches."""
        user = self.user or {}
        key = c.field if c.field in user else next((k for k in user if k.upper() == c.field.upper()), None)
        value = None if key is None else user[key]
        if not _tokens(value):
            return False
        if c.op in _ORDER:
            x, y = _number(value), self.number(c)
            return x is not None and y is not None and bool(_ORDER[c.op](x, y))
        hit = bool(set(_tokens(value)) & _keys(self.resolve(c)))
        return hit == (c.op in _POSITIVE)


def unknown_item_field(name: str, known: list[str]) -> str:
    """Why an item field cannot be filtered on, and what to do about it."""
    if known:
        return f"unknown item field {name!r} (the items dataset has {', '.join(known)})"
    return (f"unknown item field {name!r}: the dataset group has no ITEMS dataset with fields; create one "
            f"whose schema has {name} (CreateSchema, CreateDataset), or drop the Items condition")


def allowed(f: Filter, catalog: Catalog, *, values: dict[str, str] | None = None,
            interactions: Iterable[tuple[int, str]] = (), user: dict[str, object] | None = None,
            current_item: int | None = None) -> np.ndarray:
    """bool [n_items], True = may be recommended: (union of INCLUDE matches, or all) minus EXCLUDE matches.

    That is how the docs combine '|'-chained expressions, in any order. An expression whose IF doesn't
    hold takes no part; so does an EXCLUDE whose parameters the request omits, while an INCLUDE needs
    them all. Missing item values (None) match no test, NOT IN and != included.
    """
    req = _Request(f.expression, catalog, values or {},
                   _events(interactions, catalog.n_items) if f.uses_interactions else {}, user, current_item)
    include: np.ndarray | None = None
    exclude: np.ndarray | None = None
    for st in f.statements or parse(f.expression).statements:
        missing = sorted(p for p in st.parameters if req.raw(p) is None)
        if missing and st.include:
            raise FilterValueError(f"filterValues has no value for ${missing[0]}, which this filter's "
                                   "INCLUDE expression needs", missing[0])
        if missing or not all(req.holds(c) for c in st.when):
            continue
        m = req.mask(st.where)
        if st.include:
            include = m if include is None else include | m
        else:
            exclude = m if exclude is None else exclude | m
    out = np.ones(catalog.n_items, dtype=bool) if include is None else include
    return out if exclude is None else out & ~exclude
