"""Generated reference tables for docs/ (tools/docs.py writes them; generate.py --check verifies).

parameters_table: every root parameter, grouped by the layers that read it, with its type and
bounds, its default, and its effective value in each environment (a column per params/<env>.json,
so a new params file adds a column and needs no edit here): the value the deploy sends, in bold
where the environment's params file sets it, plain where it is the Default.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tools import params as params_files

REPO = Path(__file__).resolve().parent.parent
ROOT_TEMPLATE = REPO / "templates" / "root.json"
ROOT_ONLY = "root (not passed to a layer)"


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(value: object) -> str:
    text = _cell(value)
    return f"`{text}`" if text else "(empty)"


def _bounds(definition: dict) -> str:
    allowed = definition.get("AllowedValues")
    if allowed and len(allowed) > 6:
        return f"{len(allowed)} values (the template's AllowedValues)"
    if allowed:
        return " / ".join(f"`{v}`" for v in allowed)
    if "MinValue" in definition or "MaxValue" in definition:
        return f"{definition.get('MinValue', '')}..{definition.get('MaxValue', '')}"
    return _cell(definition.get("ConstraintDescription", ""))


def _refs(node: object) -> set[str]:
    """Names that node passes on with Ref (directly or inside a function such as Fn::Join)."""
    if isinstance(node, dict):
        if set(node) == {"Ref"} and isinstance(node["Ref"], str):
            return {node["Ref"]}
        return set().union(*(_refs(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    if isinstance(node, str):
        return set(re.findall(r"\$\{([A-Za-z0-9]+)\}", node))
    return set()


def layers_reading(root: dict) -> dict[str, list[str]]:
    """Root parameter -> the nested stacks (logical IDs) that receive it."""
    readers: dict[str, list[str]] = {}
    for lid, resource in sorted(root.get("Resources", {}).items()):
        if resource.get("Type") != "AWS::CloudFormation::Stack":
            continue
        for name in _refs(resource.get("Properties", {}).get("Parameters", {})):
            readers.setdefault(name, []).append(lid)
    return readers


def parameters_table(root_template: Path = ROOT_TEMPLATE) -> str:
    root = json.loads(root_template.read_text())
    envs = params_files.environments()
    values = {env: params_files.load_env(env, root_template) for env in envs}
    overrides = {env: params_files.load_overrides(env) for env in envs}
    readers = layers_reading(root)
    groups: dict[str, list[str]] = {}
    for name in sorted(root.get("Parameters", {})):
        groups.setdefault(", ".join(readers.get(name, [])) or ROOT_ONLY, []).append(name)
    lines = []
    for group in sorted(groups, key=lambda g: (g == ROOT_ONLY, g)):
        lines += [f"### {group}", "",
                  "| parameter | type | allowed | default | " + " | ".join(envs) + " | meaning |",
                  "|---|---|---|---|" + "---|" * len(envs) + "---|"]
        for name in groups[group]:
            definition = root["Parameters"][name]
            per_env = []
            for env in envs:
                if name in overrides[env]:
                    per_env.append(f"**{_code(values[env][name])}**")
                elif name in values[env]:
                    per_env.append(_code(values[env][name]))
                else:
                    per_env.append("**missing**")
            default = _code(definition["Default"]) if "Default" in definition else "none"
            lines.append(f"| `{name}` | {definition.get('Type', 'String')} | {_bounds(definition)} "
                         f"| {default} | " + " | ".join(per_env)
                         + f" | {_cell(definition.get('Description', ''))} |")
        lines.append("")
    return "\n".join(lines).rstrip()
