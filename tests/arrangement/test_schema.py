import json

import pytest
from pydantic import ValidationError

from composer.arrangement.schema import Arrangement, Section, arrangement_json_schema


def test_json_schema_documents_every_field() -> None:
    schema = arrangement_json_schema()
    json.dumps(schema)  # serialisable
    for name, definition in schema["$defs"].items():
        for field, prop in definition.get("properties", {}).items():
            assert prop.get("description"), f"{name}.{field} has no description"
    transition = schema["$defs"]["Section"]["properties"]["transition"]
    assert {"const": "none", "type": "string"} in transition["anyOf"]
    assert schema["additionalProperties"] is False


def test_models_are_frozen_and_strict() -> None:
    section = Section(name="a", prompt="p", duration_s=1)
    with pytest.raises(ValidationError):
        section.duration_s = 2  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Section(name="a", prompt="p", duration_s=1, colour="red")  # type: ignore[call-arg]


def test_bars_to_seconds() -> None:
    arr = Arrangement(title="t", bpm=128, sections=[Section(name="a", prompt="p", duration_s=1)])
    assert arr.bars_to_s(4) == pytest.approx(4 * 4 * 60 / 128)
    waltz = arr.model_copy(update={"beats_per_bar": 3})
    assert waltz.bars_to_s(1) == pytest.approx(3 * 60 / 128)
