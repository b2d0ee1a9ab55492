"""Personalize's schema rules (kernel.dataset_schema), one test per rule, good and bad."""
from __future__ import annotations

import json
from typing import Any

import pytest

from kernel.dataset_schema import (
    DATASET_TYPES,
    Column,
    Schema,
    SchemaError,
    check_dataset_type,
    infer_schema,
    parse_schema,
    record_fields,
)


def f(name: str, type_: Any = "string", **flags: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **flags}


def doc(*fields: dict[str, Any], name: str = "Schema") -> str:
    return json.dumps({"type": "record", "name": name, "namespace": "com.amazonaws.personalize.schema",
                       "fields": list(fields), "version": "1.0"})


def refused(text: str, field: str | None, *words: str) -> SchemaError:
    with pytest.raises(SchemaError) as info:
        parse_schema(text)
    return _named(info.value, field, *words)


def refused_for(dataset_type: str, field: str | None, *fields: dict[str, Any], words: tuple[str, ...] = ()
                ) -> SchemaError:
    schema = parse_schema(doc(*fields))
    with pytest.raises(SchemaError) as info:
        check_dataset_type(schema, dataset_type)
    return _named(info.value, field, *words)


def _named(err: SchemaError, field: str | None, *words: str) -> SchemaError:
    assert isinstance(err, ValueError)
    assert err.field == field
    if field is not None:
        assert f'field "{field}"' in str(err)
    for word in words:
        assert word in str(err)
    return err


INTERACTIONS = (f("USER_ID"), f("ITEM_ID"), f("TIMESTAMP", "long"))

# the schemas a user writes for ../shared/datasets
ML100K_INTERACTIONS = doc(*INTERACTIONS, f("EVENT_TYPE"), f("EVENT_VALUE", ["null", "float"]),
                          name="Interactions")
ML100K_ITEMS = doc(f("ITEM_ID"), f("TITLE", textual=True), f("GENRES", ["null", "string"], categorical=True),
                   f("RELEASE_YEAR", ["null", "int"]), f("CREATION_TIMESTAMP", ["null", "long"]),
                   name="Items")
ML100K_USERS = doc(f("USER_ID"), f("AGE", "int"), f("GENDER", categorical=True),
                   f("OCCUPATION", categorical=True), f("ZIP_CODE"), name="Users")
ML_LATEST_ITEMS = doc(f("ITEM_ID"), f("TITLE"), f("GENRES", categorical=True), f("YEAR", ["int", "null"]))


@pytest.mark.parametrize(("text", "dataset_type"), [
    (ML100K_INTERACTIONS, "INTERACTIONS"), (ML100K_ITEMS, "ITEMS"), (ML100K_USERS, "USERS"),
    (ML100K_ITEMS.replace(', "textual": true', ""), "ITEMS"), (ML_LATEST_ITEMS, "ITEMS"),
])
def test_the_dataset_schemas_users_write_are_accepted(text: str, dataset_type: str) -> None:
    check_dataset_type(parse_schema(text), dataset_type)


def test_parse_returns_columns_in_order_with_flags() -> None:
    schema = parse_schema(ML100K_ITEMS)
    assert schema.name == "Items"
    assert schema.names == ("ITEM_ID", "TITLE", "GENRES", "RELEASE_YEAR", "CREATION_TIMESTAMP")
    assert schema.column("GENRES") == Column("GENRES", "string", True, categorical=True)
    assert schema.column("TITLE") == Column("TITLE", "string", False, textual=True)
    assert schema.column("genres") is None  # exact case
    assert [c.name for c in schema.metadata_columns("ITEMS")] == ["TITLE", "GENRES", "RELEASE_YEAR"]
    assert [c.name for c in parse_schema(ML100K_INTERACTIONS).metadata_columns("INTERACTIONS")] == []
    assert DATASET_TYPES == ("INTERACTIONS", "ITEMS", "USERS", "ACTIONS", "ACTION_INTERACTIONS")


def test_schema_must_be_json() -> None:
    refused('{"type": "record",', None, "not valid JSON")


def test_schema_must_be_a_record_with_fields() -> None:
    refused(json.dumps({"type": "enum", "name": "E", "symbols": ["A"]}), None, "record")
    refused(json.dumps(["string"]), None, "record")
    refused(json.dumps({"type": "record", "name": "R"}), None, "fields")
    refused(json.dumps({"type": "record", "name": "R", "fields": []}), None, "fields")
    refused(json.dumps({"type": "record", "fields": [f("A")]}), None, "name")


def test_schema_must_be_valid_avro() -> None:
    refused(doc(f("USER_ID"), f("AGE", "int", default="old")), None, "not valid Avro")
    refused(doc(f("USER_ID"), name="1Users"), None, "Avro name")
    refused(doc(f("USER_ID")).replace("com.amazonaws", "com..amazonaws"), None, "namespace")
    parse_schema(doc(f("USER_ID"), f("AGE", ["null", "int"], default=None)))


def test_schema_length_is_limited() -> None:
    padding = " " * (20_000 - len(doc(f("USER_ID"), f("AGE", "int"))))
    parse_schema(doc(f("USER_ID"), f("AGE", "int")) + padding)
    refused(doc(f("USER_ID"), f("AGE", "int")) + padding + " ", None, "20000")


@pytest.mark.parametrize("type_", ["string", "int", "long", "float", "double", "boolean"])
def test_scalar_types_and_their_null_unions_are_accepted(type_: str) -> None:
    schema = parse_schema(doc(f("A", type_), f("B", ["null", type_]), f("C", [type_, "null"])))
    assert [(c.type, c.nullable) for c in schema.columns] == [(type_, False), (type_, True), (type_, True)]


@pytest.mark.parametrize("type_", [
    "bytes", "null", "integer", ["string", "int"], ["null", "string", "int"], ["null", "null"], ["null"],
    {"type": "array", "items": "string"}, {"type": "map", "values": "string"},
    {"type": "enum", "name": "G", "symbols": ["M", "F"]}, {"type": "fixed", "name": "F", "size": 2},
    {"type": "record", "name": "N", "fields": [f("X")]}, ["null", {"type": "array", "items": "string"}],
    {"type": "long", "logicalType": "timestamp-millis"},
])
def test_complex_and_unknown_types_are_refused(type_: Any) -> None:
    refused(doc(f("USER_ID"), f("GENRES", type_)), "GENRES", "not supported")


def test_field_needs_name_and_type() -> None:
    refused(doc(f("USER_ID"), {"type": "int"}), None, '"name"')
    refused(doc(f("USER_ID"), {"name": "AGE"}), "AGE", "not supported")


def test_categorical_only_on_strings() -> None:
    assert parse_schema(doc(f("GENRES", ["null", "string"], categorical=True))).columns[0].categorical
    err = refused(doc(f("GENRES", "int", categorical=True)), "GENRES")
    assert str(err) == 'field "GENRES": categorical is only allowed on string fields, not int'
    refused(doc(f("GENRES", categorical="yes")), "GENRES", "true or false")


def test_textual_only_on_strings_and_only_once() -> None:
    refused(doc(f("DESCRIPTION", "double", textual=True)), "DESCRIPTION", "textual", "double")
    refused(doc(f("TITLE", textual=True), f("DESCRIPTION", textual=True)), "DESCRIPTION", "one textual",
            "TITLE")
    refused(doc(f("TITLE", textual=1)), "TITLE", "true or false")


def test_field_cannot_be_categorical_and_textual() -> None:
    refused(doc(f("TITLE", categorical=True, textual=True)), "TITLE", "both")


@pytest.mark.parametrize("name", ["A", "_a", "GENRE_L2", "x" * 256])
def test_avro_field_names_are_accepted(name: str) -> None:
    assert parse_schema(doc(f(name))).names == (name,)


@pytest.mark.parametrize("name", ["2ND", "ZIP-CODE", "ZIP CODE", "GENRÉ", "", "x" * 257])
def test_bad_field_names_are_refused(name: str) -> None:
    refused(doc(f("USER_ID"), f(name)), name)


@pytest.mark.parametrize(("first", "second"), [("GENRES", "genres"), ("GENRES_FIELD_1", "GENRESFIELD1"),
                                               ("ZipCode", "ZIP_CODE")])
def test_field_names_are_unique_ignoring_case_and_underscores(first: str, second: str) -> None:
    refused(doc(f(first), f(second)), second, first, "clashes")


@pytest.mark.parametrize(("name", "hint"), [
    ("userId", "USER_ID"), ("itemId", "ITEM_ID"), ("eventType", "EVENT_TYPE"), ("EventValue", "EVENT_VALUE"),
    ("timestamp", "TIMESTAMP"), ("impression", "IMPRESSION"), ("recommendationId", "RECOMMENDATION_ID"),
    ("creationTimestamp", "CREATION_TIMESTAMP"), ("sessionId", "reserved keyword"),
    ("SESSION_ID", "reserved keyword"),
])
def test_reserved_keywords_are_refused_as_field_names(name: str, hint: str) -> None:
    refused(doc(f("GENRES", categorical=True), f(name)), name, "reserved keyword", hint)


def test_unknown_dataset_types_are_refused() -> None:
    schema = parse_schema(ML100K_INTERACTIONS)
    with pytest.raises(SchemaError, match="unknown dataset type") as info:
        check_dataset_type(schema, "interactions")
    assert info.value.field is None
    with pytest.raises(SchemaError):
        schema.metadata_columns("EVENTS")


@pytest.mark.parametrize("missing", ["USER_ID", "ITEM_ID", "TIMESTAMP"])
def test_interactions_require_user_item_and_timestamp(missing: str) -> None:
    fields = [x for x in INTERACTIONS if x["name"] != missing]
    refused_for("INTERACTIONS", missing, *fields, words=("INTERACTIONS", "need"))


def test_interactions_accept_an_int_timestamp_and_all_optional_reserved_fields() -> None:
    check_dataset_type(parse_schema(doc(
        f("USER_ID"), f("ITEM_ID"), f("TIMESTAMP", "int"), f("EVENT_TYPE"), f("EVENT_VALUE", "double"),
        f("IMPRESSION", ["null", "string"]), f("RECOMMENDATION_ID", ["string", "null"]),
        f("EVENT_ATTRIBUTION_SOURCE", ["null", "string"]))), "INTERACTIONS")


@pytest.mark.parametrize(("field", "words"), [
    (f("USER_ID", "int"), ("string", "int")),
    (f("USER_ID", ["null", "string"]), ("null",)),
    (f("USER_ID", categorical=True), ("categorical",)),
    (f("TIMESTAMP", "string"), ("long", "string")),
    (f("TIMESTAMP", "double"), ("long",)),
    (f("TIMESTAMP", ["null", "long"]), ("null",)),
    (f("EVENT_TYPE", "int"), ("string",)),
    (f("EVENT_TYPE", categorical=True), ("categorical",)),
    (f("EVENT_VALUE", "string"), ("float",)),
    (f("EVENT_VALUE", "int"), ("float",)),
    (f("IMPRESSION", ["null", "long"]), ("string",)),
    (f("RECOMMENDATION_ID", "int"), ("string",)),
])
def test_interactions_reserved_fields_need_their_types(field: dict[str, Any], words: tuple[str, ...]) -> None:
    fields = [x for x in INTERACTIONS if x["name"] != field["name"]] + [field]
    refused_for("INTERACTIONS", field["name"], *fields, words=words)


def test_interactions_refuse_reserved_fields_of_other_types() -> None:
    refused_for("INTERACTIONS", "CREATION_TIMESTAMP", *INTERACTIONS, f("CREATION_TIMESTAMP", "long"),
                words=("reserved for ITEMS",))


def test_interactions_allow_five_metadata_fields_categorical_included() -> None:
    five = [f("DEVICE", categorical=True), f("LOCATION"), f("PRICE", "float"), f("N", "int"),
            f("OK", "boolean")]
    schema = parse_schema(doc(*INTERACTIONS, f("EVENT_TYPE"), f("IMPRESSION"), *five))
    check_dataset_type(schema, "INTERACTIONS")
    assert len(schema.metadata_columns("INTERACTIONS")) == 5
    refused_for("INTERACTIONS", "SIXTH", *INTERACTIONS, *five, f("SIXTH", "int"), words=("at most 5",))


def test_textual_is_only_for_items() -> None:
    refused_for("INTERACTIONS", "NOTE", *INTERACTIONS, f("NOTE", textual=True),
                words=("only allowed in ITEMS",))
    refused_for("USERS", "BIO", f("USER_ID"), f("AGE", "int"), f("BIO", textual=True), words=("ITEMS",))


def test_items_require_item_id_and_a_usable_metadata_field() -> None:
    refused_for("ITEMS", "ITEM_ID", f("ID"), f("GENRES", categorical=True), words=("ITEM_ID",))
    refused_for("ITEMS", None, f("ITEM_ID"), words=("at least one metadata",))
    refused_for("ITEMS", None, f("ITEM_ID"), f("CREATION_TIMESTAMP", "long"), words=("at least one",))
    refused_for("ITEMS", None, f("ITEM_ID"), f("TITLE"), f("AVAILABLE", "boolean"), words=("textual",))
    for usable in (f("PRICE", "float"), f("GENRES", categorical=True), f("DESCRIPTION", textual=True)):
        check_dataset_type(parse_schema(doc(f("ITEM_ID"), usable)), "ITEMS")


def test_items_creation_timestamp_is_long() -> None:
    schema = parse_schema(doc(f("ITEM_ID"), f("P", "int"), f("CREATION_TIMESTAMP", "long")))
    check_dataset_type(schema, "ITEMS")
    refused_for("ITEMS", "CREATION_TIMESTAMP", f("ITEM_ID"), f("P", "int"), f("CREATION_TIMESTAMP", "string"),
                words=("long",))


@pytest.mark.parametrize("name", ["USER_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE", "IMPRESSION"])
def test_items_refuse_reserved_fields_of_other_types(name: str) -> None:
    type_ = {"TIMESTAMP": "long", "EVENT_VALUE": "float"}.get(name, "string")
    refused_for("ITEMS", name, f("ITEM_ID"), f("P", "int"), f(name, type_), words=("reserved for", "ITEMS"))


def test_items_allow_one_hundred_metadata_fields() -> None:
    meta = [f(f"M{i}", "int") for i in range(100)]
    check_dataset_type(parse_schema(doc(f("ITEM_ID"), f("CREATION_TIMESTAMP", "long"), *meta)), "ITEMS")
    refused_for("ITEMS", "M100", f("ITEM_ID"), *meta, f("M100", "int"), words=("at most 100",))


def test_users_require_user_id_and_a_usable_metadata_field() -> None:
    refused_for("USERS", "USER_ID", f("AGE", "int"), words=("USER_ID",))
    refused_for("USERS", None, f("USER_ID"), f("ZIP_CODE"), words=("categorical", "number"))
    refused_for("USERS", "USER_ID", f("USER_ID", "long"), f("AGE", "int"), words=("string",))


@pytest.mark.parametrize("name", ["ITEM_ID", "TIMESTAMP", "CREATION_TIMESTAMP", "EVENT_TYPE"])
def test_users_refuse_reserved_fields_of_other_types(name: str) -> None:
    type_ = "long" if "TIMESTAMP" in name else "string"
    refused_for("USERS", name, f("USER_ID"), f("AGE", "int"), f(name, type_), words=("reserved for",))


def test_users_allow_twenty_five_metadata_fields() -> None:
    meta = [f(f"M{i}", categorical=True) for i in range(25)]
    check_dataset_type(parse_schema(doc(f("USER_ID"), *meta)), "USERS")
    refused_for("USERS", "M25", f("USER_ID"), *meta, f("M25", "int"), words=("at most 25",))


def test_schema_and_column_are_frozen_values() -> None:
    schema = Schema("S", (Column("A", "int", False),))
    assert schema == parse_schema(doc(f("A", "int"), name="S"))
    with pytest.raises(AttributeError):
        schema.name = "T"  # type: ignore[misc]


def test_inferred_schemas_type_reserved_fields_numbers_and_categories() -> None:
    users = parse_schema(infer_schema("USERS", ["USER_ID", "AGE", "GENDER", "ZIP_CODE"], [
        ["1", "24", "M", "85711"], ["2", "53", "F", "94043"], ["3", "", "M", "3210a"]]))
    assert users.column("USER_ID") == Column("USER_ID", "string", False)
    assert users.column("AGE") == Column("AGE", "int", True)
    assert users.column("GENDER") == Column("GENDER", "string", True, categorical=True)
    clicks = parse_schema(infer_schema("INTERACTIONS", ["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_VALUE"],
                                       [["u", "i", "1700000000", "4.5"]]))
    assert clicks.column("TIMESTAMP") == Column("TIMESTAMP", "long", False)
    assert clicks.column("EVENT_VALUE") == Column("EVENT_VALUE", "float", True)
    items = parse_schema(infer_schema("ITEMS", ["ITEM_ID", "GENRES", "PRICE", "BIG"], [
        [f"i{n}", "Comedy|Drama", f"{n}.5", str(2**40)] for n in range(100)]))
    assert items.column("GENRES").categorical and items.column("PRICE").type == "float"
    assert items.column("BIG").type == "long"


def test_inference_refuses_what_no_schema_could_hold() -> None:
    with pytest.raises(SchemaError, match="USER_ID"):
        infer_schema("INTERACTIONS", ["ITEM_ID", "TIMESTAMP"], [["i", "1"]])
    with pytest.raises(SchemaError, match="at least one metadata field"):  # free text only
        infer_schema("USERS", ["USER_ID", "NOTE"], [[f"u{n}", f"note {n}"] for n in range(100)])


# ---- Next-Best-Action's datasets: ACTIONS and ACTION_INTERACTIONS ----

ACTIONS = (f("ACTION_ID"), f("VALUE", ["null", "long"]), f("EXPIRATION_TIMESTAMP", ["null", "long"]),
           f("REPEAT_FREQUENCY", ["null", "int"]), f("CREATION_TIMESTAMP", ["null", "long"]))
ACTION_INTERACTIONS = (f("USER_ID"), f("ACTION_ID"), f("TIMESTAMP", "long"), f("EVENT_TYPE"))


@pytest.mark.parametrize(("fields", "dataset_type"), [
    (ACTIONS, "ACTIONS"),
    ((f("ACTION_ID"), f("MEMBERSHIP_LEVEL", ["null", "string"], categorical=True)), "ACTIONS"),
    ((f("ACTION_ID"), f("VALUE", "long")), "ACTIONS"),  # a reserved number is the one field it needs
    (ACTION_INTERACTIONS, "ACTION_INTERACTIONS"),
    ((*ACTION_INTERACTIONS, f("IMPRESSION", ["null", "string"]), f("RECOMMENDATION_ID", ["null", "string"]),
      f("CHANNEL", categorical=True)), "ACTION_INTERACTIONS"),
    ((f("ITEM_ID"), f("VALUE", "double")), "ITEMS"),  # VALUE is reserved in ACTIONS datasets only
])
def test_action_schemas_as_personalize_documents_them_are_accepted(fields: tuple[dict[str, Any], ...],
                                                                   dataset_type: str) -> None:
    check_dataset_type(parse_schema(doc(*fields)), dataset_type)


def test_actions_need_an_action_id_and_a_field_to_learn_from() -> None:
    refused_for("ACTIONS", "ACTION_ID", f("VALUE", "long"), words=("ACTIONS", "ACTION_ID"))
    refused_for("ACTIONS", None, f("ACTION_ID"), f("TITLE"), words=("at least one",))
    refused_for("ACTIONS", "ACTION_ID", f("ACTION_ID", ["null", "string"]), f("VALUE", "long"),
                words=("can't be null",))


@pytest.mark.parametrize(("field", "words"), [
    (f("VALUE", "float"), ("long or int",)), (f("EXPIRATION_TIMESTAMP", "string"), ("long or int",)),
    (f("REPEAT_FREQUENCY", "double"), ("long or int",)), (f("CREATION_TIMESTAMP", "int"), ("long",)),
    (f("ITEM_ID"), ("reserved for INTERACTIONS and ITEMS",)), (f("EVENT_TYPE"), ("reserved",)),
])
def test_actions_reserved_fields_keep_their_type(field: dict[str, Any], words: tuple[str, ...]) -> None:
    refused_for("ACTIONS", field["name"], f("ACTION_ID"), f("LEVEL", categorical=True), field, words=words)


def test_actions_have_at_most_ten_fields() -> None:
    nine = [f(f"M{i}", ["null", "int"]) for i in range(9)]
    check_dataset_type(parse_schema(doc(f("ACTION_ID"), *nine)), "ACTIONS")
    refused_for("ACTIONS", "M9", f("ACTION_ID"), *nine, f("M9", "int"), words=("at most",))


@pytest.mark.parametrize("missing", ["USER_ID", "ACTION_ID", "TIMESTAMP", "EVENT_TYPE"])
def test_action_interactions_require_user_action_time_and_type(missing: str) -> None:
    fields = [x for x in ACTION_INTERACTIONS if x["name"] != missing]
    refused_for("ACTION_INTERACTIONS", missing, *fields, words=("ACTION_INTERACTIONS", "need"))


def test_action_interactions_refuse_item_fields_and_other_reserved_ones() -> None:
    refused_for("ACTION_INTERACTIONS", "ITEM_ID", *ACTION_INTERACTIONS, f("ITEM_ID"), words=("reserved",))
    refused_for("ACTION_INTERACTIONS", "EVENT_VALUE", *ACTION_INTERACTIONS, f("EVENT_VALUE", "float"),
                words=("reserved for INTERACTIONS",))
    refused_for("ACTION_INTERACTIONS", "VALUE", *ACTION_INTERACTIONS, f("VALUE", "long"),
                words=("reserved for ACTIONS",))


def test_action_records_take_their_fields_from_properties_but_not_their_own_members() -> None:
    actions = parse_schema(doc(*ACTIONS))
    assert record_fields(actions, "ACTIONS", {"value": 5, "repeatFrequency": 7}) == {
        "VALUE": 5, "REPEAT_FREQUENCY": 7}
    with pytest.raises(SchemaError, match="the ACTION_ID is the record's own id"):
        record_fields(actions, "ACTIONS", {"actionId": "a"})
    events = parse_schema(doc(*ACTION_INTERACTIONS, f("CHANNEL", categorical=True)))
    assert record_fields(events, "ACTION_INTERACTIONS", {"channel": "web"}) == {"CHANNEL": "web"}
    with pytest.raises(SchemaError, match="requires CHANNEL"):
        record_fields(events, "ACTION_INTERACTIONS", {})
    with pytest.raises(SchemaError, match="ACTION_ID is a member of the action interaction itself"):
        record_fields(events, "ACTION_INTERACTIONS", {"channel": "web", "ACTION_ID": "a"})
