"""Root template: nests every layer and wires child Outputs into child Parameters.

A child Parameter named X is fed, in this order of preference, by
1. the Output X of an earlier layer (Fn::GetAtt <Layer>.Outputs.X),
2. a value root derives from its own parameters (image URIs and repository ARNs, so the
   registry's naming and the service's references cannot drift), or
3. the root Parameter X, declared here with the child's own definition.
Two layers that declare the same root parameter differently fail generation, naming both.
"""

from __future__ import annotations

from typing import Any

from troposphere import Equals, GetAtt, Join, Output, Parameter, Ref, Sub, Template
from troposphere.cloudformation import Stack

from stacks import names
from stacks.base import TEMPLATE_VERSION, Layer

IMAGE_TAG_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}$"


class WiringError(ValueError):
    """The layers cannot be wired: a conflict or an output used before it exists."""


def image_uri(image: str) -> Sub:
    return Sub(
        "${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/"
        f"${{{names.REPOSITORY_PREFIX}}}/{image}:${{{names.IMAGE_TAG}}}"
    )


def repository_arn(image: str) -> Sub:
    return Sub(
        "arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/"
        f"${{{names.REPOSITORY_PREFIX}}}/{image}"
    )


# Values root computes from its own parameters; each lists the root parameters it needs.
DERIVED: dict[str, tuple[object, tuple[str, ...]]] = {
    names.GATEWAY_IMAGE_URI: (image_uri("gateway"), (names.REPOSITORY_PREFIX, names.IMAGE_TAG)),
    names.OLLAMA_IMAGE_URI: (image_uri("ollama"), (names.REPOSITORY_PREFIX, names.IMAGE_TAG)),
    names.GATEWAY_REPOSITORY_ARN: (repository_arn("gateway"), (names.REPOSITORY_PREFIX,)),
    names.OLLAMA_REPOSITORY_ARN: (repository_arn("ollama"), (names.REPOSITORY_PREFIX,)),
}

# Root parameters that no child declares, only derived values use.
ROOT_ONLY_PARAMETERS = {
    names.IMAGE_TAG: dict(
        Type="String", AllowedPattern=IMAGE_TAG_PATTERN,
        Description="Image tag of both images (the git SHA the images step pushed); supplied "
                    "at deploy time, never in params files",
        ConstraintDescription="an image tag: letters, digits, . _ -; at most 128",
    ),
}

PARAMETER_FIELDS = ("Type", "Default", "AllowedValues", "AllowedPattern", "MinValue",
                    "MaxValue", "MinLength", "MaxLength", "NoEcho", "ConstraintDescription")


def _definition(parameter: Parameter) -> dict:
    return {key: value for key, value in parameter.to_dict().items() if key in PARAMETER_FIELDS}


def _plain(node: object) -> object:
    """A rule as plain JSON data (troposphere helpers resolved)."""
    if hasattr(node, "to_dict"):
        return _plain(node.to_dict())
    if isinstance(node, dict):
        return {key: _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(value) for value in node]
    return node


def _refs(node: object):
    """Every name under a {"Ref": name} in plain JSON data."""
    if isinstance(node, dict):
        if set(node) == {"Ref"} and isinstance(node["Ref"], str):
            yield node["Ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


class RootBuilder:
    description = "LLM API on ECS GPU instances: root stack nesting every layer"

    def __init__(self, layers: list[tuple[Layer, Template]], registry: Template | None = None):
        self.layers = layers
        # The registry is deployed alone, but its RepositoryPrefix definition is the one root uses.
        self.registry = registry

    def build(self) -> Template:
        root = Template(Description=self.description)
        root.set_version(TEMPLATE_VERSION)
        declared: dict[str, tuple[str, dict]] = {}  # root parameter -> (first layer, definition)
        outputs: dict[str, str] = {}  # output name -> layer logical ID
        conditional: set[str] = set()  # layers created only under a condition

        def declare(name: str, definition: dict, layer: str, description: str) -> None:
            if name in declared:
                first, known = declared[name]
                if known != definition:
                    raise WiringError(
                        f"root parameter {name!r} is declared differently by {first} "
                        f"({known}) and {layer} ({definition}); make the definitions equal"
                    )
                return
            declared[name] = (layer, definition)
            root.add_parameter(Parameter(name, Description=description, **definition))

        rules: dict[str, tuple[str, dict]] = {}  # rule name -> (layer, rule)
        for layer, template in self.layers:
            if template.rules:
                raise WiringError(f"{layer.logical_id} adds Rules to its own template; return "
                                  "them from rules() so root runs them before any layer")
            for name, rule in layer.rules().items():
                if name in rules:
                    raise WiringError(f"rule {name!r} is declared by both {rules[name][0]} and "
                                      f"{layer.logical_id}; rule names must be unique")
                rules[name] = (layer.logical_id, rule)
            values: dict[str, object] = {}
            for name, parameter in sorted(template.parameters.items()):
                if name in outputs:
                    source = outputs[name]
                    if source in conditional:
                        raise WiringError(
                            f"{layer.logical_id} needs {name!r} from {source}, which exists only "
                            "under a condition; feed it from an unconditional layer"
                        )
                    values[name] = GetAtt(source, f"Outputs.{name}")
                elif name in DERIVED:
                    expression, needs = DERIVED[name]
                    for needed in needs:
                        self._declare_root_only(needed, declare, layer.logical_id)
                    values[name] = expression
                else:
                    definition = layer.root_definitions.get(name, _definition(parameter))
                    declare(name, definition, layer.logical_id,
                            parameter.properties.get("Description", name))
                    # Nested stack parameters are strings: AWS refuses a list-typed Ref there.
                    # Join it; the child's List<...> type splits it again.
                    is_list = definition["Type"].startswith(("List<", "CommaDelimitedList"))
                    values[name] = Join(",", Ref(name)) if is_list else Ref(name)

            extra: dict[str, Any] = {}
            if layer.root_condition:
                condition, switch, value = layer.root_condition
                declare(switch, {"Type": "String", "AllowedValues": ["true", "false"],
                                 "Default": "false"}, layer.logical_id,
                        f"true: create the {layer.logical_id} stack ({layer.description})")
                root.add_condition(condition, Equals(Ref(switch), value))
                extra["Condition"] = condition
                conditional.add(layer.logical_id)

            root.add_resource(Stack(
                layer.logical_id,
                # Relative to root.json; `aws cloudformation package` uploads it and rewrites it.
                TemplateURL=layer.file_name,
                Parameters=values,
                # Deleting a nested stack deletes its resources; the stateful ones inside
                # (log groups, the secret, the KMS key) carry their own Retain policies.
                DeletionPolicy="Delete",
                UpdateReplacePolicy="Delete",
                **extra,
            ))
            for name in template.outputs:
                if name in outputs:
                    raise WiringError(f"output {name!r} is produced by both {outputs[name]} and "
                                      f"{layer.logical_id}; output names must be unique")
                outputs[name] = layer.logical_id

            for name in layer.root_outputs:
                output = template.outputs[name]
                root.add_output(Output(
                    name, Value=GetAtt(layer.logical_id, f"Outputs.{name}"),
                    Description=output.properties.get("Description", name),
                ))
        self._add_rules(root, rules)
        return root

    @staticmethod
    def _add_rules(root: Template, rules: dict[str, tuple[str, dict]]) -> None:
        """Every layer's Rules, in root: they run before any nested stack is created."""
        for name, (layer, rule) in sorted(rules.items()):
            missing = sorted(set(_refs(_plain(rule))) - set(root.parameters))
            if missing:
                raise WiringError(f"rule {name!r} of {layer} refers to {missing}, which root "
                                  "does not declare as parameters; a rule may use only "
                                  "parameters that root passes through")
            root.add_rule(name, rule)

    def _declare_root_only(self, name: str, declare, layer: str) -> None:
        if name in ROOT_ONLY_PARAMETERS:
            definition = dict(ROOT_ONLY_PARAMETERS[name])
            description = definition.pop("Description")
            declare(name, definition, "root", description)
            return
        if self.registry is None or name not in self.registry.parameters:
            raise WiringError(f"root cannot declare {name!r}: no layer or the registry defines it")
        parameter = self.registry.parameters[name]
        declare(name, _definition(parameter), "Registry",
                parameter.properties.get("Description", name))

