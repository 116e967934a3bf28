"""The JSON-schema check the router runs on hosted answers to format=<schema> requests."""

from __future__ import annotations

import doctest
import enum
from typing import Any, Literal, Optional

import pydantic
import pytest

from dsollama._wire import schema as schema_module
from dsollama._wire.schema import validate_json, validate_json_text


def test_doctests() -> None:
    assert doctest.testmod(schema_module).failed == 0


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(pydantic.BaseModel):
    city: str = pydantic.Field(min_length=1)
    zip_code: Optional[str] = None


class Person(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    name: str = pydantic.Field(max_length=10)
    age: int = pydantic.Field(ge=0, le=150)
    kind: Literal["human"] = "human"
    colour: Colour
    addresses: list[Address]
    scores: dict[str, float] = {}
    nickname: Optional[str] = None


PERSON = Person.model_json_schema()
GOOD = {
    "name": "Ada",
    "age": 36,
    "kind": "human",
    "colour": "red",
    "addresses": [{"city": "London", "zip_code": None}],
    "scores": {"maths": 10, "poetry": 9.5},
    "nickname": None,
}


def test_pydantic_schema_accepts_a_conforming_answer() -> None:
    assert "$defs" in PERSON  # the nested models really are behind $ref
    assert validate_json(GOOD, PERSON) == []
    Person.model_validate(GOOD)  # and pydantic agrees


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"age": -1}, "$.age: -1 is less than the minimum 0"),
        ({"age": 36.5}, "$.age: expected integer, got number"),
        (
            {"name": "A much longer name"},
            "$.name: is 18 characters long, longer than the maximum 10",
        ),
        ({"kind": "robot"}, '$.kind: must be "human", got "robot"'),
        ({"colour": "green"}, '$.colour: "green" is not one of "red", "blue"'),
        (
            {"addresses": [{"city": ""}]},
            "$.addresses[0].city: is 0 characters long, shorter than the minimum 1",
        ),
        ({"addresses": [{"zip_code": "1"}]}, "$.addresses[0]: missing required property 'city'"),
        ({"addresses": {"city": "x"}}, "$.addresses: expected array, got object"),
        ({"scores": {"maths": "ten"}}, "$.scores.maths: expected number, got string"),
        ({"nickname": 7}, "$.nickname: expected string or null, got integer"),
        ({"extra": 1}, "$: property 'extra' is not allowed"),
    ],
)
def test_pydantic_schema_reports_problems_with_paths(change: dict[str, Any], problem: str) -> None:
    answer = {**GOOD, **change}
    assert problem in validate_json(answer, PERSON)
    with pytest.raises(pydantic.ValidationError):
        Person.model_validate(answer)


def test_missing_required_property() -> None:
    answer = {k: v for k, v in GOOD.items() if k != "age"}
    assert validate_json(answer, PERSON) == ["$: missing required property 'age'"]


def test_type_unions_and_integer_floats() -> None:
    schema = {"type": ["integer", "null"]}
    assert validate_json(None, schema) == []
    assert validate_json(3.0, schema) == []  # JSON 3.0 is an integer
    assert validate_json("3", schema) == ["$: expected integer or null, got string"]


def test_booleans_are_not_numbers_and_ones_are_not_true() -> None:
    assert validate_json(True, {"type": "number"}) == ["$: expected number, got boolean"]
    assert validate_json(1, {"enum": [True]}) != []
    assert validate_json(True, {"const": 1}) != []
    assert validate_json(1.0, {"const": 1}) == []


def test_items_and_prefix_items() -> None:
    assert validate_json([1, "a"], {"type": "array", "items": {"type": "integer"}}) == [
        "$[1]: expected integer, got string"
    ]
    pair = {
        "type": "array",
        "prefixItems": [{"type": "string"}, {"type": "number"}],
        "items": False,
    }
    assert validate_json(["x", 1], pair) == []
    assert validate_json(["x", 1, 2], pair) == ["$[2]: no value is allowed here"]
    draft7 = {
        "type": "array",
        "items": [{"type": "string"}],
        "additionalItems": {"type": "integer"},
    }
    assert validate_json(["x", "y"], draft7) == ["$[1]: expected integer, got string"]


def test_array_lengths() -> None:
    schema = {"type": "array", "minItems": 1, "maxItems": 2}
    assert validate_json([], schema) == ["$: has 0 items, fewer than the minimum 1"]
    assert validate_json([1, 2, 3], schema) == ["$: has 3 items, more than the maximum 2"]


def test_numeric_bounds() -> None:
    schema = {"type": "number", "exclusiveMinimum": 0, "maximum": 1}
    assert validate_json(0, schema) == ["$: 0 must be greater than 0"]
    assert validate_json(1.5, schema) == ["$: 1.5 is greater than the maximum 1"]
    assert validate_json(0.5, schema) == []


def test_additional_properties_as_a_schema_and_pattern_properties() -> None:
    schema = {
        "type": "object",
        "properties": {"id": {"type": "integer"}},
        "patternProperties": {"^x-": {"type": "string"}},
        "additionalProperties": {"type": "boolean"},
    }
    assert validate_json({"id": 1, "x-a": "s", "flag": True}, schema) == []
    assert validate_json({"x-a": 1, "flag": "no"}, schema) == [
        "$['x-a']: expected string, got integer",
        "$.flag: expected boolean, got string",
    ]


def test_any_of_reports_the_plausible_branch() -> None:
    schema = {"anyOf": [{"type": "object", "required": ["a"]}, {"type": "null"}]}
    assert validate_json(None, schema) == []
    assert validate_json({}, schema) == ["$: missing required property 'a'"]
    assert validate_json(5, schema) == ["$: expected object or null, got integer"]
    ranges = {"anyOf": [{"type": "integer", "minimum": 10}, {"type": "integer", "maximum": 0}]}
    assert validate_json(5, ranges) == ["$: 5 matches none of the allowed alternatives"]


def test_one_of_needs_exactly_one_match() -> None:
    schema = {"oneOf": [{"type": "integer"}, {"type": "number"}]}
    assert validate_json(1.5, schema) == []
    assert validate_json(2, schema) == [
        "$: matches 2 of the oneOf alternatives; exactly one is allowed"
    ]


def test_all_of() -> None:
    schema = {"allOf": [{"minimum": 1}, {"maximum": 2}]}
    assert validate_json(3, schema) == ["$: 3 is greater than the maximum 2"]


def test_ref_to_definitions_and_recursive_refs() -> None:
    tree = {
        "definitions": {
            "node": {
                "type": "object",
                "properties": {
                    "value": {"type": "integer"},
                    "children": {"type": "array", "items": {"$ref": "#/definitions/node"}},
                },
                "required": ["value"],
            }
        },
        "$ref": "#/definitions/node",
    }
    good = {"value": 1, "children": [{"value": 2, "children": [{"value": 3}]}]}
    assert validate_json(good, tree) == []
    bad = {"value": 1, "children": [{"value": 2, "children": [{"value": "3"}]}]}
    assert validate_json(bad, tree) == [
        "$.children[0].children[0].value: expected integer, got string"
    ]


def test_self_referencing_ref_does_not_loop() -> None:
    assert validate_json(1, {"$ref": "#"}) == []


def test_unresolvable_ref_is_reported() -> None:
    assert validate_json(1, {"$ref": "#/$defs/Missing"}) == [
        "$: the schema's $ref '#/$defs/Missing' cannot be resolved"
    ]


def test_remote_refs_and_unknown_keywords_are_ignored() -> None:
    schema = {
        "type": "object",
        "properties": {
            "email": {"type": "string", "format": "email"},
            "n": {"multipleOf": 3, "not": {"type": "integer"}},
            "other": {"$ref": "https://example.com/schema.json"},
        },
    }
    assert validate_json({"email": "not an email", "n": 4, "other": 1}, schema) == []


def test_pattern() -> None:
    assert validate_json("abc", {"type": "string", "pattern": "^[a-z]+$"}) == []
    assert validate_json("ABC", {"type": "string", "pattern": "^[a-z]+$"}) == [
        "$: \"ABC\" does not match the pattern '^[a-z]+$'"
    ]


def test_boolean_schemas() -> None:
    assert validate_json({"anything": 1}, True) == []
    assert validate_json(1, False) == ["$: no value is allowed here"]


def test_text_answers() -> None:
    assert validate_json_text('\n{"n": 1}', {"type": "object"}) == []
    assert validate_json_text("", {"type": "object"}) == ["$: the answer is empty, not JSON"]
    problems = validate_json_text('{"n": ', {"type": "object"})
    assert len(problems) == 1
    assert problems[0].startswith("$: the answer is not valid JSON")
