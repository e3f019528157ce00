"""Render the committed templates as one environment deploys them, offline, with cloud-radar.

    python -m tools.render --env prod [--out DIR]     write the rendered templates as JSON

The scanners that cannot see through `Ref`/`Fn::If` (the AWS Control Tower guard rules, our own
guard rules, the IAM permission tests) read these renderings: every parameter comes from
`params/<env>.json` (or its Default), every Condition is resolved and resources whose Condition
is false are gone, `Fn::Sub`/`Fn::Join`/`Fn::Select`/`Fn::Cidr` are computed.

Rendering uses cloud-radar 0.17.0 (a maintained renderer), with the workarounds it needs offline:
- its module-level REGION_DATA is preset (else `Fn::GetAZs` downloads region data);
- a template without a `Conditions` section gets an empty one while rendering (it fails without);
- ECS `ContainerDefinitions[].DependsOn[].Condition` is hidden while rendering (cloud-radar takes
  that key for the `Condition` function) and put back afterwards;
- `Fn::ImportValue` is given an imports map (empty unless the caller passes one).

What a deployed stack would know and a renderer cannot (physical IDs, ARNs, generated names) is a
placeholder in the form AWS uses: `Ref` and `Fn::GetAtt` of a resource resolve to a realistic ID or
ARN for its type (tools/cfn_types.py PLACEHOLDERS), derived deterministically from the stack and
logical ID, so an ARN in a policy matches the resource it names; a GetAtt of a property the
template sets (the schema says which) is that property's value. Nested stacks are rendered in
dependency order: each child gets the parameters root passes it, and `Fn::GetAtt
<Child>.Outputs.<Name>` in root resolves to that child's rendered Output. Parameters known only at
deploy time (ImageTag) get a placeholder from DEPLOY_TIME_PLACEHOLDERS. Everything that used a
fallback is listed in `notes`.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cloud_radar.cf.unit import Template
from cloud_radar.cf.unit import functions as cr_functions

from tools import cfn_types
from tools import params as params_files
from tools.cfn_types import ACCOUNT_ID, PARTITION, URL_SUFFIX, Context

REPO = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = REPO / "templates"
ROOT_FILE = "root.json"
# Deployed on its own (before root) with the root's parameter values that it declares.
STANDALONE_FILES = ("registry.json",)

DEFAULT_REGION = "us-east-1"

# Values that no params file holds, because the deploy step supplies them (DESIGN: the image tag
# is the git SHA the images step pushed). Rendering needs some value; these are realistic.
DEPLOY_TIME_PLACEHOLDERS = {
    "ImageTag": "0123456789abcdef0123456789abcdef01234567",
}
# Standalone templates may declare a parameter that root does not (yet) take; their value then
# comes from another root parameter, named here.
STANDALONE_FALLBACKS = {
    "RepositoryPrefix": "ProjectName",
}

_HIDDEN_CONDITION = "__render_hidden_Condition__"
SSM_TYPE_PREFIX = "AWS::SSM::Parameter::Value<"


class RenderError(ValueError):
    """A template cannot be rendered for an environment; the message names template and cause."""


# --- rendering ------------------------------------------------------------------------------------


@dataclass
class Rendered:
    """One environment's rendering: file name -> rendered template, plus what was assumed."""

    env: str
    region: str
    templates: dict[str, dict]
    parameters: dict[str, dict[str, object]]  # file name -> parameter values it was rendered with
    notes: list[str] = field(default_factory=list)
    # What would break the deployment itself, found while rendering (the gate fails on these).
    problems: list[str] = field(default_factory=list)


def _simple_value(value, parameters: dict[str, object], ctx: Context):
    """Resolve a property that only uses parameters and pseudo parameters, before rendering.

    Used for placeholders that echo a property (a VPC's CidrBlock, an explicit name). Anything
    that needs another resource returns None (the placeholder then generates a value).
    """
    pseudo = {"AWS::StackName": ctx.stack_name, "AWS::Region": ctx.region,
              "AWS::AccountId": ctx.account, "AWS::Partition": PARTITION,
              "AWS::URLSuffix": URL_SUFFIX}
    if isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, list):
        items = [_simple_value(item, parameters, ctx) for item in value]
        return None if any(item is None for item in items) else items
    if isinstance(value, dict) and len(value) == 1:
        (key, arg), = value.items()
        if key == "Ref" and isinstance(arg, str):
            return pseudo.get(arg, parameters.get(arg))
        if key == "Fn::Sub":
            text, local = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            out = text
            names = {**pseudo, **parameters}
            for name, item in local.items():
                resolved = _simple_value(item, parameters, ctx)
                if resolved is None:
                    return None
                names[name] = resolved
            for match in re.findall(r"\$\{([^}!][^}]*)\}", text):
                if match not in names:
                    return None
                out = out.replace("${" + match + "}", str(names[match]))
            return out
    return None


def _attribute_uses(template: dict) -> set[tuple[str, str]]:
    """Every (logical ID, attribute) that Fn::GetAtt or ${X.Attr} names in the template."""
    uses: set[tuple[str, str]] = set()

    def visit(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "Fn::GetAtt":
                    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
                        uses.add((value[0], value[1]))
                    elif isinstance(value, str) and "." in value:
                        lid, attr = value.split(".", 1)
                        uses.add((lid, attr))
                if key == "Fn::Sub":
                    text = value if isinstance(value, str) else value[0]
                    for match in re.findall(r"\$\{([A-Za-z0-9]+)\.([^}]+)\}", text):
                        uses.add(match)
                visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    visit(template)
    return uses


def _hide_container_conditions(template: dict) -> None:
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") != "AWS::ECS::TaskDefinition":
            continue
        for container in resource.get("Properties", {}).get("ContainerDefinitions", []) or []:
            if not isinstance(container, dict):
                continue
            for dependency in container.get("DependsOn", []) or []:
                if isinstance(dependency, dict) and "Condition" in dependency:
                    dependency[_HIDDEN_CONDITION] = dependency.pop("Condition")


def _restore_container_conditions(node) -> None:
    if isinstance(node, dict):
        if _HIDDEN_CONDITION in node:
            node["Condition"] = node.pop(_HIDDEN_CONDITION)
        for value in node.values():
            _restore_container_conditions(value)
    elif isinstance(node, list):
        for item in node:
            _restore_container_conditions(item)


def _coerce(value: object, definition: dict) -> object:
    """A parameter value as the resource receives it.

    Lists become comma-joined strings (what a nested stack parameter receives); Number
    parameters become numbers (Ref yields the string form, which CloudFormation converts to
    the property's schema type, so rules comparing numbers see numbers).
    """
    type_ = definition.get("Type", "String")
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    if type_ == "Number":
        text = str(value)
        try:
            return int(text)
        except ValueError:
            return float(text)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_template(template: dict, parameters: dict[str, object], *, stack_name: str,
                    region: str = DEFAULT_REGION, attribute_overrides: dict[str, dict] | None = None,
                    imports: dict[str, str] | None = None, origin: str = "template",
                    notes: list[str] | None = None, resolved: frozenset[str] = frozenset()) -> dict:
    """One template rendered with cloud-radar for the given parameter values.

    attribute_overrides: logical ID -> {attribute: value}, e.g. a nested stack's
    {"Outputs.VpcId": "vpc-..."}; they win over the generated placeholders.
    resolved: SSM-typed parameters whose given value is already the resolved value (not an
    SSM parameter name); they are rendered with that value.
    """
    notes = notes if notes is not None else []
    ctx = Context(stack_name=stack_name, region=region)
    work = copy.deepcopy(template)
    declared = work.get("Parameters", {})
    for name in resolved:
        type_ = declared.get(name, {}).get("Type", "")
        if type_.startswith(SSM_TYPE_PREFIX):
            declared[name]["Type"] = type_[len(SSM_TYPE_PREFIX):-1]
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise RenderError(f"{origin}: parameters {unknown} are not declared by the template")
    values: dict[str, object] = {}
    for name, definition in declared.items():
        if name in parameters:
            values[name] = _coerce(parameters[name], definition)
        elif "Default" in definition:
            values[name] = _coerce(definition["Default"], definition)
        else:
            raise RenderError(f"{origin}: parameter {name!r} has no value for this environment "
                              "and no Default; add it to params/<env>.json")

    added_conditions = "Conditions" not in work
    if added_conditions:
        work["Conditions"] = {}
    _hide_container_conditions(work)

    # Placeholders for every resource that something references.
    uses = _attribute_uses(work)
    resources = work.get("Resources", {})
    overrides = attribute_overrides or {}
    for lid, resource in resources.items():
        type_ = resource.get("Type", "")
        props = {key: _simple_value(value, values, ctx)
                 for key, value in (resource.get("Properties") or {}).items()}
        props = {key: value for key, value in props.items() if value is not None}
        ref_value, attrs = cfn_types.placeholder(type_, ctx, lid, props)
        attrs = {**attrs, **overrides.get(lid, {})}
        wanted = {attr for used_lid, attr in uses if used_lid == lid}
        for attr in wanted - set(attrs):
            if attr in props and "." not in attr and cfn_types.is_settable(type_, attr):
                attrs[attr] = props[attr]  # GetAtt of a property the template sets: its value
        missing = sorted(attr for attr in wanted if attr not in attrs)
        for attr in missing:
            notes.append(f"{origin}: no placeholder for {type_} {lid}.{attr}; rendered as "
                         f"'{lid}.{attr}'")
        if type_ not in cfn_types.PLACEHOLDERS and any(used_lid == lid for used_lid, _ in uses):
            notes.append(f"{origin}: no placeholder for {type_} ({lid}); Ref renders as '{lid}'")
        metadata = resource.setdefault("Metadata", {})
        metadata["Cloud-Radar"] = {"ref": ref_value, "attribute-values": attrs}

    # SSM-typed parameters resolve at deploy time from Parameter Store: give each a value.
    ssm_values: dict[str, str] = {}
    for name, definition in declared.items():
        type_ = definition.get("Type", "")
        if type_.startswith(SSM_TYPE_PREFIX):
            path = str(values[name])
            ssm_values[path] = _ssm_placeholder(type_, path, ctx)
            notes.append(f"{origin}: SSM parameter {name} ({path}) rendered as "
                         f"{ssm_values[path]!r}")

    cr_functions.REGION_DATA = _region_data(region)
    with contextlib.redirect_stdout(io.StringIO()):  # cloud-radar prints every template it loads
        renderer = Template(work, imports=imports or {}, dynamic_references={"ssm": ssm_values})
    renderer.AccountId = ACCOUNT_ID
    renderer.StackName = stack_name
    renderer.StackId = ctx.arn("cloudformation", f"stack/{stack_name}/{ctx.uuid('AWS::StackId')}")
    renderer.Partition = PARTITION
    renderer.URLSuffix = URL_SUFFIX
    try:
        rendered = renderer.render({k: v for k, v in values.items()}, region=region)
    except Exception as error:  # cloud-radar raises plain Exceptions; name the template
        raise RenderError(f"{origin}: cloud-radar cannot render it: {type(error).__name__}: "
                          f"{error}") from error

    rendered = json.loads(json.dumps(rendered, default=str))
    if added_conditions:
        rendered.pop("Conditions", None)
    metadata = rendered.get("Metadata", {})
    metadata.pop("Cloud-Radar", None)
    if not metadata:
        rendered.pop("Metadata", None)
    for resource in rendered.get("Resources", {}).values():
        resource_metadata = resource.get("Metadata", {})
        resource_metadata.pop("Cloud-Radar", None)
        if not resource_metadata:
            resource.pop("Metadata", None)
    _restore_container_conditions(rendered)
    return rendered


def _ssm_placeholder(type_: str, path: str, ctx: Context) -> str:
    inner = type_[len(SSM_TYPE_PREFIX):-1]
    prefixes = {"AWS::EC2::Image::Id": "ami", "AWS::EC2::VPC::Id": "vpc",
                "AWS::EC2::Subnet::Id": "subnet", "AWS::EC2::SecurityGroup::Id": "sg"}
    if inner in prefixes:
        return f"{prefixes[inner]}-{ctx.hex(path, 'ssm')}"
    return f"ssm-value-of-{path.strip('/').replace('/', '-')}"


def _region_data(region: str) -> list[dict]:
    return [{"code": region, "zones": [f"{region}{letter}" for letter in "abcdef"]}]


def region_for(values: dict[str, str]) -> str:
    """The region implied by the environment's AZ names (us-east-1a -> us-east-1)."""
    azs = [az.strip() for az in values.get("AvailabilityZones", "").split(",") if az.strip()]
    return azs[0][:-1] if azs else DEFAULT_REGION


def _nested_order(root: dict) -> list[str]:
    """Nested stack logical IDs, each after the stacks whose Outputs its Parameters use."""
    stacks = {lid: body for lid, body in root.get("Resources", {}).items()
              if body.get("Type") == "AWS::CloudFormation::Stack"}
    needs = {lid: {used for used, attr in _attribute_uses(body.get("Properties", {}))
                   if used in stacks and attr.startswith("Outputs.")}
             for lid, body in stacks.items()}
    order: list[str] = []
    while len(order) < len(stacks):
        ready = [lid for lid in stacks if lid not in order and needs[lid] <= set(order)]
        if not ready:
            raise RenderError(f"{ROOT_FILE}: nested stacks depend on each other in a cycle: "
                              f"{sorted(set(stacks) - set(order))}")
        order.extend(ready)
    return order


def render_environment(env: str, templates_dir: Path = TEMPLATES_DIR,
                       values: dict[str, str] | None = None) -> Rendered:
    """Every template as environment env deploys it (root, the nested stacks it creates there,
    and the standalone templates)."""
    if values is None:
        values = params_files.load_env(env, templates_dir / ROOT_FILE)
    values = dict(values)
    notes: list[str] = []
    problems: list[str] = []
    templates = {p.name: json.loads(p.read_text()) for p in sorted(templates_dir.glob("*.json"))}
    if ROOT_FILE not in templates:
        raise RenderError(f"{templates_dir / ROOT_FILE}: not found")
    root = templates[ROOT_FILE]
    region = region_for(values)

    root_values = {key: value for key, value in values.items() if key in root.get("Parameters", {})}
    ignored = sorted(set(values) - set(root.get("Parameters", {})))
    if ignored:
        notes.append(f"params/{env}.json: {ignored} not declared by {ROOT_FILE} (used only by "
                     "standalone templates, if at all)")
    for name, placeholder in DEPLOY_TIME_PLACEHOLDERS.items():
        if name in root.get("Parameters", {}) and name not in root_values:
            root_values[name] = placeholder
            notes.append(f"{ROOT_FILE}: deploy-time parameter {name} rendered as {placeholder!r}")

    project = values.get("ProjectName", "llm-api")
    root_stack = f"{project}-{values.get('EnvironmentName', env)}"
    ctx = Context(stack_name=root_stack, region=region)
    rendered: dict[str, dict] = {}
    used_parameters: dict[str, dict[str, object]] = {ROOT_FILE: root_values}
    outputs: dict[str, dict] = {}

    def render_root() -> dict:
        return render_template(root, root_values, stack_name=root_stack, region=region,
                               attribute_overrides=outputs, origin=f"{ROOT_FILE} ({env})",
                               notes=[])

    for lid in _nested_order(root):
        current_root = render_root()
        body = current_root["Resources"].get(lid)
        if body is None:  # its Condition is false in this environment
            notes.append(f"{ROOT_FILE}: nested stack {lid} is not created in {env} (Condition "
                         f"{root['Resources'][lid].get('Condition')} is false)")
            continue
        properties = body.get("Properties", {})
        file_name = properties.get("TemplateURL")
        if file_name not in templates:
            raise RenderError(f"{ROOT_FILE}: {lid}.TemplateURL {file_name!r} is not a file in "
                              f"{templates_dir}")
        child_values = dict(properties.get("Parameters", {}))
        resolved = _resolved_ssm_parameters(root, lid, templates[file_name], file_name, problems)
        stack_name = f"{root_stack}-{lid}-{ctx.suffix(lid)}"
        child = render_template(templates[file_name], child_values, stack_name=stack_name,
                                region=region, origin=f"{file_name} ({env})", notes=notes,
                                resolved=resolved)
        rendered[file_name] = child
        used_parameters[file_name] = child_values
        outputs[lid] = {f"Outputs.{name}": output.get("Value")
                        for name, output in child.get("Outputs", {}).items()}

    rendered[ROOT_FILE] = render_template(root, root_values, stack_name=root_stack, region=region,
                                          attribute_overrides=outputs,
                                          origin=f"{ROOT_FILE} ({env})", notes=notes)

    for file_name in STANDALONE_FILES:
        if file_name not in templates:
            continue
        declared = templates[file_name].get("Parameters", {})
        standalone_values: dict[str, object] = {}
        for name in declared:
            if name in values:
                standalone_values[name] = values[name]
            elif name in STANDALONE_FALLBACKS and STANDALONE_FALLBACKS[name] in values:
                standalone_values[name] = values[STANDALONE_FALLBACKS[name]]
                notes.append(f"{file_name}: {name} not in params/{env}.json; rendered with "
                             f"{STANDALONE_FALLBACKS[name]}={standalone_values[name]!r}")
        rendered[file_name] = render_template(
            templates[file_name], standalone_values, stack_name=f"{project}-registry",
            region=region, origin=f"{file_name} ({env})", notes=notes)
        used_parameters[file_name] = standalone_values

    skipped = sorted(set(templates) - set(rendered))
    for file_name in skipped:
        notes.append(f"{file_name}: not deployed in {env} (no nested stack of root points to it)")
    return Rendered(env=env, region=region, templates=rendered, parameters=used_parameters,
                    notes=sorted(set(notes), key=notes.index), problems=problems)


def _resolved_ssm_parameters(root: dict, lid: str, child: dict, file_name: str,
                             problems: list[str]) -> frozenset[str]:
    """Child parameters of an SSM type that root feeds with an already resolved value.

    CloudFormation resolves root's own SSM-typed parameter before Ref returns it; a child
    parameter of an SSM type then takes that value (an AMI ID) for a parameter NAME and the
    deployment fails ("Unable to fetch parameters [ami-...] from parameter store"). The child
    must declare the plain type (AWS::EC2::Image::Id) or root must pass the name.
    """
    passed = root["Resources"][lid].get("Properties", {}).get("Parameters", {})
    root_params = root.get("Parameters", {})
    found = set()
    for name, definition in child.get("Parameters", {}).items():
        if not str(definition.get("Type", "")).startswith(SSM_TYPE_PREFIX):
            continue
        value = passed.get(name)
        source = value.get("Ref") if isinstance(value, dict) else None
        if source in root_params and str(root_params[source].get("Type", "")).startswith(SSM_TYPE_PREFIX):
            found.add(name)
            problems.append(
                f"{file_name}: parameter {name} has type {definition['Type']}, and {ROOT_FILE} "
                f"passes it Ref {source}, itself of an SSM type: CloudFormation resolves {source} "
                f"in root, so the nested stack gets the value (an ID) where it expects an SSM "
                f"parameter name and the deployment fails ('Unable to fetch parameters ... from "
                f"parameter store'). Declare {name} in {file_name} with the plain type "
                f"({definition['Type'][len(SSM_TYPE_PREFIX):-1]}) and keep the SSM type in root only."
            )
    return frozenset(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", required=True, help="environment (params/<env>.json)")
    parser.add_argument("--out", type=Path, help="write <DIR>/<env>/<template>.json")
    args = parser.parse_args(argv)
    try:
        result = render_environment(args.env)
    except (RenderError, params_files.ParamsError) as error:
        print(f"render: error: {error}", file=sys.stderr)
        return 2
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.out:
        out = args.out / args.env
        out.mkdir(parents=True, exist_ok=True)
        for name, template in result.templates.items():
            (out / name).write_text(json.dumps(template, indent=2, sort_keys=True) + "\n")
        print(f"wrote {len(result.templates)} rendered templates to {out}")
    else:
        print(json.dumps(result.templates, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
