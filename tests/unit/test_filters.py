"""Personalize's filter expressions: grammar, error messages, and evaluation on a hand-made catalog."""
from __future__ import annotations

import numpy as np
import pytest

from serving.filters import MAX_DEPTH, Catalog, FilterError, FilterValueError, allowed, parse

#                    0                1         2        3         4      5          6
GENRES = ["Action|Comedy", "Comedy", "Drama", "Action", None, "comedy", "Drama|Horror"]
PRICE = [10, 20.5, 5, 30, None, 15, 10]
STUDIO = ["A", "B", "A", "C", None, "B", "C"]
YEAR = ["1995", "2001", "2003", "2010", "1999", "2005", None]   # numbers sent as strings
CAT = Catalog.build(7, {"GENRES": GENRES, "PRICE": PRICE, "STUDIO": STUDIO, "YEAR": YEAR})


def items(expression: str, **request: object) -> list[int]:
    """The item codes the filter allows."""
    return np.flatnonzero(allowed(parse(expression), CAT, **request)).tolist()  # type: ignore[arg-type]


def where(condition: str, **request: object) -> list[int]:
    """The item codes an INCLUDE of `condition` keeps."""
    return items(f"INCLUDE ItemID WHERE {condition}", **request)


def error(expression: str) -> FilterError:
    with pytest.raises(FilterError) as e:
        parse(expression)
    return e.value


# --- grammar -------------------------------------------------------------------------------------

def test_statement_forms_and_what_they_use() -> None:
    f = parse('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click", "purchase")')
    assert f.uses_interactions and not (f.uses_items or f.uses_users or f.uses_current_item)
    f = parse('INCLUDE ItemID WHERE Items.GENRES IN ($GENRES) IF CurrentUser.AGE >= $AGE')
    assert (f.uses_interactions, f.uses_items, f.uses_users) == (False, True, True)
    assert f.parameters == {"GENRES", "AGE"}
    f = parse("INCLUDE ItemID WHERE Items.PRICE < CurrentItem.PRICE AND Items.GENRES IN CurrentItem.GENRES")
    assert f.uses_current_item and f.parameters == frozenset()


def test_keywords_and_datasets_ignore_case() -> None:
    f = parse('exclude itemId where INTERACTIONS.event_type in ("Purchase")')
    assert f.uses_interactions
    assert items('exclude itemId where INTERACTIONS.event_type in ("Purchase")',
                 interactions=[(1, "purchase")]) == [0, 2, 3, 4, 5, 6]


def test_and_binds_tighter_than_or_and_parentheses_group() -> None:
    a, b, c = 'Items.STUDIO IN ("A")', 'Items.GENRES IN ("Comedy")', "Items.PRICE > 12"
    assert where(f"{a} OR {b} AND {c}") == [0, 1, 2]           # A or (B and C)
    assert where(f"({a} OR {b}) AND {c}") == [1]
    assert where(f"{a} AND ({b} OR {c})") == [0]


def test_if_extends_only_with_and_once_at_the_end() -> None:
    assert "extends only with AND" in str(error(
        'INCLUDE ItemID WHERE Items.STUDIO IN ("A") IF CurrentUser.AGE > 1 OR CurrentUser.AGE < 9'))
    assert "CurrentUser" in str(error('INCLUDE ItemID WHERE Items.STUDIO IN ("A") IF Items.PRICE > 1'))


# --- error messages ------------------------------------------------------------------------------

@pytest.mark.parametrize(("expression", "mark", "message"), [
    ('INCLUDE ItemID WHERE Items.GENRES IN ("Action)', '"Action', "unterminated string"),
    ('EXCLUDE ItemID WHERE Items.GENRES INN ("Action")', "INN", "expected IN, NOT IN or a comparison"),
    ('EXCLUDE ItemID Items.GENRES IN ("Action")', "Items", "expected WHERE"),
    ('EXCLUDE ItemID WHERE Item.GENRES IN ("Action")', "Item.", "unknown dataset 'Item'"),
    ('EXCLUDE ItemID WHERE Items.GENRES IN ("Action" "Comedy")', '"Comedy"', "expected ',' or ')'"),
    ('EXCLUDE ActionID WHERE Items.GENRES IN ("Action")', "ActionID", "expected ItemID"),
    ("EXCLUDE ItemID WHERE Items.GENRES IN Comedy", "Comedy", "expected a quoted string"),
    ('EXCLUDE ItemID WHERE Items.GENRES IN ("a") # x', "#", "unexpected character"),
])
def test_errors_name_what_was_expected_and_point_at_it(expression: str, mark: str, message: str) -> None:
    e = error(expression)
    assert e.column == expression.index(mark) + 1
    first, caret = str(e).split("\n")
    assert first.startswith(f"{message}") and f"at column {e.column}: " in first
    assert caret.index("^") == first.index(': "') + 3 + expression.index(mark)   # under the mistake


def test_trailing_and_points_past_the_end() -> None:
    expression = 'EXCLUDE ItemID WHERE Items.GENRES IN ("Action") AND'
    e = error(expression)
    assert e.column == len(expression) + 1 and str(e).startswith("expected a condition after AND")


@pytest.mark.parametrize(("expression", "mark", "message"), [
    ('INCLUDE ItemID WHERE Items.GENRES IN ("a") AND Interactions.EVENT_TYPE IN ("click")',
     "Interactions", "can't mix Items and Interactions"),
    ('EXCLUDE ItemID WHERE Interactions.TIMESTAMP IN ("1")', "Interactions", "only Interactions.EVENT_TYPE"),
    ("EXCLUDE ItemID WHERE Interactions.EVENT_TYPE > 3", "Interactions", "event types are tested with IN"),
    ("EXCLUDE ItemID WHERE Items.GENRES NOT IN ($G)", "$G", "placeholder parameters can't be used"),
    ('EXCLUDE ItemID WHERE Items.GENRES IN ("*")', '"*"', '"*" (any event type)'),
    ('EXCLUDE ItemID WHERE Items.PRICE < "5"', '"5"', "expected a number"),
    ("EXCLUDE ItemID WHERE Items.PRICE < (1, 2)", "2", "< compares with exactly one value"),
    ("EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN CurrentItem.X", "CurrentItem", "CurrentItem can only"),
    ('EXCLUDE ItemID WHERE Users.AGE IN ("1")', "Users", "user fields can only be tested in an IF clause"),
    ('EXCLUDE ItemID WHERE CurrentItem.X IN ("1")', "CurrentItem", "CurrentItem goes on the right"),
])
def test_documented_restrictions(expression: str, mark: str, message: str) -> None:
    e = error(expression)
    assert e.column == expression.index(mark) + 1 and str(e).startswith(message)


def test_parentheses_nest_at_most_max_depth_deep() -> None:
    def nested(depth: int) -> str:
        return "INCLUDE ItemID WHERE " + "(" * depth + 'Items.STUDIO IN ("A")' + ")" * depth

    assert where("(" * MAX_DEPTH + 'Items.STUDIO IN ("A")' + ")" * MAX_DEPTH) == [0, 2]
    assert len(nested(400)) < 2500   # within CreateFilter's limit: once a RecursionError (a 500)
    e = error(nested(400))
    assert e.column == nested(400).index("(") + MAX_DEPTH + 1   # at the first '(' too many
    assert str(e).startswith(f"parentheses nest at most {MAX_DEPTH} deep at column {e.column}")
    assert "nest at most" in str(error(nested(MAX_DEPTH + 1)))


def test_at_most_five_distinct_fields_across_chained_expressions() -> None:
    five = ' AND '.join(f'Items.F{n} IN ("x")' for n in range(4))
    parse(f'INCLUDE ItemID WHERE {five} | EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")')
    six = f'{five} AND Items.F4 IN ("x") AND Items.F5 IN ("x")'
    assert "at most 5" in str(error(f"INCLUDE ItemID WHERE {six}"))


def test_unknown_item_field_is_reported_at_evaluation() -> None:
    with pytest.raises(FilterError, match="unknown item field 'GENRE'") as e:
        where('Items.GENRE IN ("Action")')
    assert e.value.column == len("INCLUDE ItemID WHERE ") + 1


def test_with_no_items_dataset_the_error_says_what_to_create() -> None:
    with pytest.raises(FilterError, match="no ITEMS dataset with fields; create one whose schema has GENRES"):
        allowed(parse('INCLUDE ItemID WHERE Items.GENRES IN ("Action")'), Catalog.build(3, {}))


def test_a_field_no_item_has_a_value_of_yet_matches_no_item() -> None:
    """An ITEMS dataset created and not yet imported: its schema's fields, every value missing."""
    empty = Catalog.build(3, {"GENRES": [None] * 3, "PRICE": [None] * 3})
    keep = allowed(parse('INCLUDE ItemID WHERE Items.GENRES IN ("Action")'), empty)
    drop = allowed(parse('EXCLUDE ItemID WHERE Items.GENRES IN ("Action") OR Items.PRICE > 3'), empty)
    assert not keep.any() and drop.all()


# --- evaluating item conditions ------------------------------------------------------------------

def test_in_matches_any_part_of_a_categorical_value_with_case() -> None:
    assert where('Items.GENRES IN ("Comedy")') == [0, 1]                 # not "comedy"
    assert where('Items.GENRES IN ("Horror", "Action")') == [0, 3, 6]
    assert where('items.genres IN ("Drama")') == [2, 6]                 # field names ignore case


def test_not_in_needs_none_of_the_parts_and_a_value() -> None:
    assert where('Items.GENRES NOT IN ("Comedy", "Drama")') == [3, 5]     # item 4 has no genre


def test_equality_on_strings_and_numbers() -> None:
    assert where('Items.STUDIO = "B"') == [1, 5]
    assert where('Items.STUDIO != "B"') == [0, 2, 3, 6]
    assert where("Items.PRICE = 10") == [0, 6]
    assert where('Items.YEAR IN ("2001", 2010)') == [1, 3]


@pytest.mark.parametrize(("op", "expected"), [
    ("<", [2]), ("<=", [0, 2, 6]), (">", [1, 3, 5]), (">=", [0, 1, 3, 5, 6])])
def test_numeric_comparisons(op: str, expected: list[int]) -> None:
    assert where(f"Items.PRICE {op} 10") == expected


def test_numeric_comparison_on_numbers_stored_as_strings() -> None:
    assert where("Items.YEAR > 2002") == [2, 3, 5]
    assert where("Items.PRICE >= -1.5 AND Items.PRICE < 10.5") == [0, 2, 6]


# --- interactions ---------------------------------------------------------------------------------

HISTORY = [(0, "click"), (1, "Purchase"), (2, "click"), (3, "rate")]


def test_interactions_by_event_type_ignoring_case() -> None:
    ex = 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("CLICK", "purchase")'
    assert items(ex, interactions=HISTORY) == [3, 4, 5, 6]
    assert where('Interactions.EVENT_TYPE IN ("*")', interactions=HISTORY) == [0, 1, 2, 3]
    assert where('Interactions.EVENT_TYPE NOT IN ("click")', interactions=HISTORY) == [1, 3]
    assert where('Interactions.EVENT_TYPE IN ("click") AND Interactions.EVENT_TYPE IN ("rate")',
                 interactions=[*HISTORY, (0, "rate")]) == [0]
    assert where('Interactions.EVENT_TYPE IN ("click")') == []                       # no history


def test_only_the_newest_100_interactions_per_event_type_count() -> None:
    history = [(0, "click")] + [(n % 6 + 1, "click") for n in range(100)] + [(0, "rate"), (99, "click")]
    # item 0's click is the 102nd newest click; 99 is no catalog item (ignored, but counted)
    assert where('Interactions.EVENT_TYPE IN ("click")', interactions=history) == [1, 2, 3, 4, 5, 6]
    assert where('Interactions.EVENT_TYPE IN ("*")', interactions=history) == list(range(7))


# --- chaining ------------------------------------------------------------------------------------

A, B = 'Items.STUDIO IN ("A")', 'Items.GENRES IN ("Action")'


def test_chained_includes_union_and_excludes_subtract_in_any_order() -> None:
    assert items(f"INCLUDE ItemID WHERE {A} | INCLUDE ItemID WHERE {B}") == [0, 2, 3]
    assert items(f"EXCLUDE ItemID WHERE {A} | EXCLUDE ItemID WHERE {B}") == [1, 4, 5, 6]
    assert items(f"INCLUDE ItemID WHERE {A} | EXCLUDE ItemID WHERE {B}") == [2]
    assert items(f"EXCLUDE ItemID WHERE {B} | INCLUDE ItemID WHERE {A}") == [2]
    chained = f'INCLUDE ItemID WHERE {A} | EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")'
    assert items(chained, interactions=HISTORY) == []


# --- parameters ----------------------------------------------------------------------------------

def test_parameter_values_are_quoted_and_comma_separated() -> None:
    ex = "INCLUDE ItemID WHERE Items.GENRES IN ($GENRES)"
    assert items(ex, values={"GENRES": '"Drama"'}) == [2, 6]
    assert items(ex, values={"GENRES": '"Horror", "Comedy"'}) == [0, 1, 6]
    assert items(ex, values={"GENRES": '"Comedy",Drama'}) == [0, 1, 2, 6]      # bare values pass too
    assert items('INCLUDE ItemID WHERE Items.STUDIO = $S', values={"S": '"B"'}) == [1, 5]


def test_numeric_parameters_quoted_or_not() -> None:
    ex = "INCLUDE ItemID WHERE Items.PRICE > $MIN AND Items.PRICE <= ($MAX)"
    assert items(ex, values={"MIN": "10", "MAX": '"20.5"'}) == [1, 5]
    with pytest.raises(FilterValueError, match=r"\$MIN must be a single number") as e:
        items(ex, values={"MIN": '"cheap"', "MAX": "20"})
    assert e.value.parameter == "MIN"


def test_malformed_values_name_the_parameter() -> None:
    for raw in ['"Drama', '"Drama"x', '"Drama",']:
        with pytest.raises(FilterValueError, match='"GENRES"') as e:
            items("INCLUDE ItemID WHERE Items.GENRES IN ($GENRES)", values={"GENRES": raw})
        assert e.value.parameter == "GENRES"


def test_include_needs_every_parameter() -> None:
    with pytest.raises(FilterValueError, match=r"\$GENRES") as e:
        items("INCLUDE ItemID WHERE Items.GENRES IN ($GENRES)", values={"OTHER": '"x"'})
    assert e.value.parameter == "GENRES"


def test_an_exclude_without_its_parameters_takes_no_part() -> None:
    chained = 'EXCLUDE ItemID WHERE Items.GENRES IN ($GENRES) | EXCLUDE ItemID WHERE Items.STUDIO IN ("A")'
    assert items(chained) == [1, 3, 4, 5, 6]
    assert items(chained, values={"GENRES": " "}) == [1, 3, 4, 5, 6]
    assert items(chained, values={"GENRES": '"Action"'}) == [1, 4, 5, 6]


# --- IF CurrentUser ------------------------------------------------------------------------------

ADULT_COMEDY = ('INCLUDE ItemID WHERE Items.GENRES IN ("Comedy") '
                'IF CurrentUser.AGE >= 18 AND CurrentUser.TIER IN ($T)')


def test_if_applies_the_statement_only_when_the_user_matches() -> None:
    assert items(ADULT_COMEDY, user={"AGE": 30, "TIER": "gold|silver"}, values={"T": '"gold"'}) == [0, 1]
    assert items(ADULT_COMEDY, user={"AGE": "17", "TIER": "gold"}, values={"T": '"gold"'}) == list(range(7))
    assert items(ADULT_COMEDY, user={"AGE": 30, "TIER": "bronze"}, values={"T": '"gold"'}) == list(range(7))
    assert items('EXCLUDE ItemID WHERE Items.STUDIO IN ("A") IF Users.tier NOT IN ("gold")',
                 user={"TIER": "bronze"}) == [1, 3, 4, 5, 6]       # "Users." and field case are accepted


def test_unknown_user_or_attribute_never_matches_an_if() -> None:
    ex = 'EXCLUDE ItemID WHERE Items.STUDIO IN ("A") IF CurrentUser.TIER NOT IN ("gold")'
    assert items(ex, user=None) == list(range(7))
    assert items(ex, user={"AGE": 3}) == list(range(7))
    with pytest.raises(FilterValueError, match=r"\$T"):    # the INCLUDE still needs its parameters
        items(ADULT_COMEDY, user=None)


# --- CurrentItem ---------------------------------------------------------------------------------

def test_current_item_attributes() -> None:
    cheaper_same_genre = ("INCLUDE ItemID WHERE Items.PRICE < CurrentItem.PRICE "
                          "AND Items.GENRES IN CurrentItem.GENRES")
    assert items(cheaper_same_genre, current_item=1) == [0]        # Comedy under 20.5
    assert items(cheaper_same_genre, current_item=3) == [0]        # Action under 30
    assert items(cheaper_same_genre, current_item=4) == []         # the current item has neither
    assert items("EXCLUDE ItemID WHERE Items.STUDIO = CurrentItem.STUDIO", current_item=0) == [1, 3, 4, 5, 6]


def test_current_item_needs_an_item_in_the_request() -> None:
    with pytest.raises(FilterValueError, match="itemId"):
        items("INCLUDE ItemID WHERE Items.PRICE < CurrentItem.PRICE")


def test_catalog_rejects_columns_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="GENRES"):
        Catalog.build(3, {"GENRES": ["a"]})
