"""Parameters are declared as data (stacks/parameters.py) and build() adds exactly those."""

from __future__ import annotations

import pytest
from troposphere import Template

from stacks import NESTED_LAYERS
from stacks.parameters import Param, add_all, boolean, number, string
from stacks.registry import RegistryLayer
from stacks.settings import GenerationSettings

LAYERS = (*NESTED_LAYERS, RegistryLayer)


@pytest.mark.parametrize("layer_class", LAYERS, ids=lambda c: c.__name__)
def test_template_parameters_are_exactly_the_declared_ones(layer_class):
    layer = layer_class(GenerationSettings())
    declared = layer.parameters()
    template = layer.build().to_dict()
    assert list(template.get("Parameters", {})) == [p.name for p in declared]
    for param in declared:
        spec = template["Parameters"][param.name]
        assert spec["Type"] == param.type and spec["Description"] == param.description
        assert spec.get("Default") == param.default
        assert spec.get("AllowedValues", []) == list(param.allowed_values)


@pytest.mark.parametrize("layer_class", LAYERS, ids=lambda c: c.__name__)
def test_every_declaration_says_what_it_is_for(layer_class):
    for param in layer_class(GenerationSettings()).parameters():
        assert param.description.strip(), param.name
        if param.type == "Number" and param.default is not None:
            bounded = param.allowed_values or param.min_value is not None
            assert bounded, f"{param.name}: a Number with a default needs bounds or values"


def test_a_declaration_renders_every_field_and_only_those_set():
    spec = number("N", "a number", default=5, min_value=1, max_value=9).to_parameter().to_dict()
    assert spec == {"Type": "Number", "Description": "a number", "Default": 5, "MinValue": 1,
                    "MaxValue": 9}
    assert boolean("B", "a switch", "false").to_parameter().to_dict()["AllowedValues"] == [
        "true", "false"]
    # An empty default is a value, not "no default".
    assert string("S", "maybe empty", default="").to_parameter().to_dict()["Default"] == ""


def test_a_layer_cannot_declare_a_parameter_twice():
    with pytest.raises(ValueError, match="declared twice in one layer: X"):
        add_all(Template(), (Param("X", "String", "one"), Param("X", "String", "two")))
