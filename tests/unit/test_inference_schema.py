"""Rows checked against a model's feature schema: every bad field is named, no value is echoed."""

from __future__ import annotations

import json
import math

import pytest

from tenantml.errors import InvalidPayload
from tenantml.inference.statuses import http_status
from tenantml.inference.schema import Feature, FeatureSchema, Kind, kind_of_dtype

SCHEMA = FeatureSchema.from_pairs([("age", "int64"), ("income", "float64"), ("member", "bool")])


def row(**changes: object) -> dict[str, object]:
    values: dict[str, object] = {"age": 31, "income": 2.5, "member": True}
    values.update(changes)
    return {k: v for k, v in values.items() if v is not _DROP}


_DROP = object()


def test_rows_become_a_float_matrix_in_schema_order() -> None:
    rows = [{"member": False, "income": 1, "age": 40}, row()]
    assert SCHEMA.matrix(rows) == [[40.0, 1.0, 0.0], [31.0, 2.5, 1.0]]


def test_an_integral_float_is_accepted_for_an_integer_feature() -> None:
    assert SCHEMA.matrix([row(age=30.0)])[0][0] == 30.0


@pytest.mark.parametrize(
    ("dtype", "kind"),
    [("int64", Kind.INTEGER), ("uint8", Kind.INTEGER), ("Int32", Kind.INTEGER), ("float32", Kind.NUMBER),
     ("float64", Kind.NUMBER), ("bool", Kind.BOOLEAN), ("boolean", Kind.BOOLEAN), ("category", Kind.NUMBER)],
)
def test_dtype_names_map_to_json_kinds(dtype: str, kind: Kind) -> None:
    assert kind_of_dtype(dtype) is kind
    assert Feature("x", dtype).kind is kind


def test_schema_reads_the_registry_tag_and_writes_it_back() -> None:
    tag = json.dumps([["age", "int64"], ["income", "float64"], ["member", "bool"]])
    schema = FeatureSchema.from_tag(tag)
    assert schema == SCHEMA
    assert schema.names == ("age", "income", "member")
    assert FeatureSchema.from_tag(schema.to_tag()) == schema
    assert schema.describe() == {"age": "integer", "income": "number", "member": "boolean"}


@pytest.mark.parametrize("tag", ["not json", "{}", "[[\"a\"]]", "[]", "[[\"a\", \"int64\"], [\"a\", \"bool\"]]"])
def test_a_broken_tag_is_refused(tag: str) -> None:
    with pytest.raises(ValueError, match="tenantml.features"):
        FeatureSchema.from_tag(tag)


@pytest.mark.parametrize(
    ("rows", "field", "message"),
    [
        ([], "rows", "is empty"),
        ({"age": 1}, "rows", "must be a list of objects, got object"),
        ("abc", "rows", "got string"),
        ([row(), 7], "rows[1]", "must be an object of feature values, got integer"),
        ([row(age=_DROP)], "rows[0].age", "missing feature(s) 'age'"),
        ([row(zip=1234)], "rows[0].zip", "unexpected feature(s) 'zip'"),
        ([row(age="31")], "rows[0].age", "must be an integer, got string"),
        ([row(age=31.5)], "rows[0].age", "must be an integer, got a fractional number"),
        ([row(age=True)], "rows[0].age", "must be an integer, got boolean"),
        ([row(income=None)], "rows[0].income", "must be a number, got null"),
        ([row(income=[1.0])], "rows[0].income", "must be a number, got array"),
        ([row(income=True)], "rows[0].income", "must be a number, got boolean"),
        ([row(income=math.nan)], "rows[0].income", "finite number"),
        ([row(income=math.inf)], "rows[0].income", "finite number"),
        ([row(member=1)], "rows[0].member", "must be true or false, got integer"),
        ([row(), row(), row(member="yes")], "rows[2].member", "got string"),
    ],
)
def test_each_bad_row_is_refused_naming_the_field(rows: object, field: str, message: str) -> None:
    with pytest.raises(InvalidPayload) as caught:
        SCHEMA.matrix(rows)
    assert caught.value.field == field
    assert message in str(caught.value)
    assert str(caught.value).startswith(field)
    assert http_status(caught.value) == 422


def test_missing_and_extra_features_list_what_the_model_takes() -> None:
    with pytest.raises(InvalidPayload, match=r"the model takes 'age', 'income', 'member'"):
        SCHEMA.matrix([{"age": 1}])


def test_error_messages_never_contain_the_values_sent() -> None:
    secret = "4111-1111-1111-1111"
    for bad in (row(age=secret), row(income=secret), row(member=secret), row(**{secret: 1})):
        with pytest.raises(InvalidPayload) as caught:
            SCHEMA.matrix([bad])
        if secret in bad:  # an unexpected feature is named by its key, which the caller chose
            continue
        assert secret not in str(caught.value)


def test_a_long_list_of_missing_features_is_truncated() -> None:
    wide = FeatureSchema.from_pairs([(f"f{i:02d}", "float64") for i in range(30)])
    with pytest.raises(InvalidPayload, match=r"\.\.\. \(20 more\)"):
        wide.matrix([{}])
