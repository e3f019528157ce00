"""Parameters as data: each layer declares its CloudFormation parameters, build() reads them.

A declaration says everything a reviewer needs (name, type, default, allowed values or bounds,
description) in one line-up at the top of the layer; `Layer.add_parameters()` turns them into
template Parameters, in declaration order.
"""

from __future__ import annotations

from dataclasses import dataclass

from troposphere import Parameter, Template


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    description: str
    default: str | int | None = None
    allowed_values: tuple[str | int, ...] = ()
    pattern: str | None = None
    min_value: int | None = None
    max_value: int | None = None
    constraint: str | None = None  # ConstraintDescription: what a valid value looks like

    def to_parameter(self) -> Parameter:
        fields = {
            "Default": self.default,
            "AllowedValues": list(self.allowed_values) or None,
            "AllowedPattern": self.pattern,
            "MinValue": self.min_value,
            "MaxValue": self.max_value,
            "ConstraintDescription": self.constraint,
        }
        return Parameter(self.name, Type=self.type, Description=self.description,
                         **{key: value for key, value in fields.items() if value is not None})


def string(name: str, description: str, **fields) -> Param:
    return Param(name, "String", description, **fields)


def number(name: str, description: str, **fields) -> Param:
    return Param(name, "Number", description, **fields)


def boolean(name: str, description: str, default: str) -> Param:
    """CloudFormation has no boolean type: "true"/"false" strings, tested with Conditions."""
    return Param(name, "String", description, default=default, allowed_values=("true", "false"))


def add_all(template: Template, declarations: tuple[Param, ...]) -> dict[str, Parameter]:
    """Add every declared parameter to template; name -> the troposphere Parameter."""
    names = [p.name for p in declarations]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"parameters declared twice in one layer: {', '.join(duplicates)}")
    return {p.name: template.add_parameter(p.to_parameter()) for p in declarations}
