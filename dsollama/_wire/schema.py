"""A small JSON-schema check for answers to ``format=<schema>`` requests.

Ollama enforces a ``format`` schema while decoding; the hosted API has only a JSON mode
(DeepSeek reference §5.3), so the router checks hosted answers against the schema
itself with `validate_json` / `validate_json_text`.

Supported keywords — the subset people pass as ``format=``, including everything
pydantic's ``model_json_schema()`` emits for ordinary models:

- ``type`` (a name or a list of names: null, boolean, object, array, number, integer,
  string; ``1.0`` counts as an integer, booleans never count as numbers);
- ``enum``, ``const`` (JSON equality: ``true`` is not ``1``);
- objects: ``properties``, ``required``, ``additionalProperties`` (false or a schema),
  ``patternProperties``;
- arrays: ``items`` (a schema, or a list as in draft 4–7), ``prefixItems``,
  ``minItems``, ``maxItems``;
- numbers: ``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``
  (numeric form);
- strings: ``minLength``, ``maxLength`` (in code points), ``pattern`` (Python ``re``);
- combinators: ``anyOf``, ``oneOf``, ``allOf``;
- ``$ref`` to anything inside the same document (``#``, ``#/$defs/…``,
  ``#/definitions/…``, any JSON pointer), recursion included; boolean schemas.

Every other keyword (``format``, ``not``, ``multipleOf``, ``uniqueItems``,
``if``/``then``/``else``, ``dependent*``, ``title``, ``default``…) is ignored, and
``$ref`` to another document is treated as always satisfied: the check is there to
catch a model that ignored the schema, not to be a full validator.

>>> schema = {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}},
...           "required": ["age", "name"]}
>>> validate_json({"age": -1}, schema)
["$: missing required property 'name'", '$.age: -1 is less than the minimum 0']
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

__all__ = ["validate_json", "validate_json_text"]

_TYPE_NAMES = ("null", "boolean", "object", "array", "number", "integer", "string")


def validate_json(instance: Any, schema: Mapping[str, Any] | bool) -> list[str]:
    """Problems with ``instance`` (decoded JSON) against ``schema``: ``"path: message"``.

    An empty list means the value conforms. Paths look like ``$.items[0].name``.
    """
    return _Checker(schema).problems_of(instance)


def validate_json_text(text: str, schema: Mapping[str, Any] | bool) -> list[str]:
    """Like `validate_json`, for an answer still in text form (not JSON is a problem).

    >>> validate_json_text("", {"type": "object"})
    ['$: the answer is empty, not JSON']
    """
    if not text.strip():
        return ["$: the answer is empty, not JSON"]
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return [f"$: the answer is not valid JSON ({exc.msg} at character {exc.pos})"]
    return validate_json(value, schema)


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


def _is_type(value: Any, name: str) -> bool:
    actual = _type_of(value)
    if name == "number":
        return actual in ("integer", "number")
    if name == "integer":
        return actual == "integer" or (actual == "number" and float(value).is_integer())
    if name not in _TYPE_NAMES:
        return True  # an unknown type name constrains nothing
    return actual == name


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: booleans are not numbers, 1 equals 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{path}.{key}"
    return f"{path}[{key!r}]"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _limit(schema: Mapping[str, Any], keyword: str) -> float | None:
    """A numeric keyword's value, or None when absent or not a number."""
    value = schema.get(keyword)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


class _Checker:
    def __init__(self, root: Mapping[str, Any] | bool) -> None:
        self._root = root
        self._active: set[tuple[str, str]] = set()

    def problems_of(self, value: Any, schema: Any = None, path: str = "$") -> list[str]:
        problems: list[str] = []
        self._check(value, self._root if schema is None else schema, path, problems)
        return problems

    def _resolve(self, ref: str) -> Any:
        if ref == "#":
            return self._root
        if not ref.startswith("#/"):
            return True  # another document: outside this check
        node: Any = self._root
        for part in ref[2:].split("/"):
            key = unquote(part).replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                return None
        return node

    def _check(self, value: Any, schema: Any, path: str, out: list[str]) -> None:
        if schema is True or schema is None:
            return
        if schema is False:
            out.append(f"{path}: no value is allowed here")
            return
        if not isinstance(schema, Mapping):
            return
        ref = schema.get("$ref")
        if isinstance(ref, str):
            target = self._resolve(ref)
            if target is None:
                out.append(f"{path}: the schema's $ref {ref!r} cannot be resolved")
            elif (ref, path) not in self._active:  # a $ref loop that consumes no data
                self._active.add((ref, path))
                try:
                    self._check(value, target, path, out)
                finally:
                    self._active.discard((ref, path))

        expected = schema.get("type")
        if expected is not None:
            names = [expected] if isinstance(expected, str) else list(expected)
            if not any(_is_type(value, str(n)) for n in names):
                wanted = " or ".join(str(n) for n in names)
                out.append(f"{path}: expected {wanted}, got {_type_of(value)}")
                return  # the remaining keywords would only repeat the mismatch

        options = schema.get("enum")
        if isinstance(options, list) and not any(_json_equal(value, o) for o in options):
            allowed = ", ".join(_short(o) for o in options)
            out.append(f"{path}: {_short(value)} is not one of {allowed}")
        if "const" in schema and not _json_equal(value, schema["const"]):
            out.append(f"{path}: must be {_short(schema['const'])}, got {_short(value)}")

        if isinstance(value, Mapping):
            self._check_object(value, schema, path, out)
        elif isinstance(value, (list, tuple)):
            self._check_array(value, schema, path, out)
        elif isinstance(value, str):
            self._check_string(value, schema, path, out)
        elif _number(value):
            self._check_number(value, schema, path, out)

        for sub in schema.get("allOf") or ():
            self._check(value, sub, path, out)
        if "anyOf" in schema:
            self._check_alternatives(value, schema["anyOf"], path, out, exactly_one=False)
        if "oneOf" in schema:
            self._check_alternatives(value, schema["oneOf"], path, out, exactly_one=True)

    def _check_object(
        self, value: Mapping[str, Any], schema: Mapping[str, Any], path: str, out: list[str]
    ) -> None:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        for name in schema.get("required") or ():
            if name not in value:
                out.append(f"{path}: missing required property {name!r}")
        patterns = schema.get("patternProperties")
        patterns = patterns if isinstance(patterns, Mapping) else {}
        additional = schema.get("additionalProperties", True)
        for key, item in value.items():
            matched = False
            if key in properties:
                matched = True
                self._check(item, properties[key], _child(path, key), out)
            for pattern, sub in patterns.items():
                try:
                    hit = re.search(pattern, key) is not None
                except re.error:
                    continue
                if hit:
                    matched = True
                    self._check(item, sub, _child(path, key), out)
            if not matched:
                if additional is False:
                    out.append(f"{path}: property {key!r} is not allowed")
                elif isinstance(additional, Mapping):
                    self._check(item, additional, _child(path, key), out)

    def _check_array(
        self, value: Sequence[Any], schema: Mapping[str, Any], path: str, out: list[str]
    ) -> None:
        prefix = schema.get("prefixItems")
        items = schema.get("items")
        if isinstance(items, list):  # draft 4–7 tuple form
            prefix, items = items, schema.get("additionalItems")
        prefix = prefix if isinstance(prefix, list) else []
        for index, item in enumerate(value):
            if index < len(prefix):
                self._check(item, prefix[index], _child(path, index), out)
            elif items is not None:
                self._check(item, items, _child(path, index), out)
        low, high = _limit(schema, "minItems"), _limit(schema, "maxItems")
        if low is not None and len(value) < low:
            out.append(f"{path}: has {len(value)} items, fewer than the minimum {low:g}")
        if high is not None and len(value) > high:
            out.append(f"{path}: has {len(value)} items, more than the maximum {high:g}")

    def _check_string(
        self, value: str, schema: Mapping[str, Any], path: str, out: list[str]
    ) -> None:
        low, high = _limit(schema, "minLength"), _limit(schema, "maxLength")
        if low is not None and len(value) < low:
            out.append(f"{path}: is {len(value)} characters long, shorter than the minimum {low:g}")
        if high is not None and len(value) > high:
            out.append(f"{path}: is {len(value)} characters long, longer than the maximum {high:g}")
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            try:
                if re.search(pattern, value) is None:
                    out.append(f"{path}: {_short(value)} does not match the pattern {pattern!r}")
            except re.error:
                pass  # a pattern Python cannot compile constrains nothing here

    def _check_number(
        self, value: float, schema: Mapping[str, Any], path: str, out: list[str]
    ) -> None:
        minimum, maximum = _limit(schema, "minimum"), _limit(schema, "maximum")
        exc_min, exc_max = _limit(schema, "exclusiveMinimum"), _limit(schema, "exclusiveMaximum")
        shown = _short(value)
        if minimum is not None and value < minimum:
            out.append(f"{path}: {shown} is less than the minimum {minimum:g}")
        if maximum is not None and value > maximum:
            out.append(f"{path}: {shown} is greater than the maximum {maximum:g}")
        if exc_min is not None and value <= exc_min:
            out.append(f"{path}: {shown} must be greater than {exc_min:g}")
        if exc_max is not None and value >= exc_max:
            out.append(f"{path}: {shown} must be less than {exc_max:g}")

    def _check_alternatives(
        self, value: Any, options: Any, path: str, out: list[str], *, exactly_one: bool
    ) -> None:
        if not isinstance(options, list) or not options:
            return
        results = [self.problems_of(value, option, path) for option in options]
        matches = sum(1 for problems in results if not problems)
        if matches == 1 or (matches > 1 and not exactly_one):
            return
        if matches > 1:
            out.append(
                f"{path}: matches {matches} of the oneOf alternatives; exactly one is allowed"
            )
            return
        # When only one alternative has the right type (Optional[X] is anyOf [X, null]),
        # its own problems say more than "matches none".
        type_mismatch = f"{path}: expected "
        plausible = [p for p in results if not any(m.startswith(type_mismatch) for m in p)]
        if len(plausible) == 1:
            out.extend(plausible[0])
        elif not plausible and all(len(p) == 1 for p in results):
            # Every alternative wanted another type: say which types would do.
            wanted = " or ".join(p[0][len(type_mismatch) :].rsplit(", got ", 1)[0] for p in results)
            out.append(f"{path}: expected {wanted}, got {_type_of(value)}")
        else:
            out.append(f"{path}: {_short(value)} matches none of the allowed alternatives")
