"""Small readers over generated templates (plain dicts), shared by the template tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from stacks import build_all
from stacks.settings import GenerationSettings

REPO = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = REPO / "templates"


@cache
def generated(az_count: int = 2) -> dict[str, dict]:
    """File name -> template dict, freshly built (not read from templates/)."""
    built = build_all(GenerationSettings(az_count=az_count))
    return {name: json.loads(json.dumps(t.to_dict())) for name, t in built.items()}


@cache
def rendered(env: str, **overrides: str) -> dict[str, dict]:
    """File name -> the committed template as params/<env>.json (with overrides) deploys it
    (tools/render.py), shared by the test modules that read renderings."""
    from tools import params, render

    values = params.load_env(env) | overrides
    return render.render_environment(env, values=values).templates


def resources(template: dict, type_: str | None = None) -> dict[str, dict]:
    return {
        name: body for name, body in template.get("Resources", {}).items()
        if type_ is None or body["Type"] == type_
    }


def props(resource: dict) -> dict:
    return resource.get("Properties", {})


def walk(node, path=()) -> Iterator[tuple[tuple, object]]:
    """Every (path, value) in a JSON tree, depth first."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, path + (index,))


def port_range(rule: dict) -> range:
    """Ports a security group rule opens (all ports for protocol -1)."""
    if str(rule.get("IpProtocol")) in ("-1", "all"):
        return range(0, 65536)
    if rule.get("IpProtocol") not in ("tcp", "udp", "6", "17"):
        return range(0)
    return range(int(rule["FromPort"]), int(rule["ToPort"]) + 1)


def security_group_rules(template: dict) -> list[tuple[str, str, dict]]:
    """(logical ID, "in"/"out", rule) for standalone rules and rules inline in groups."""
    rules = []
    for name, body in resources(template).items():
        p = props(body)
        if body["Type"] == "AWS::EC2::SecurityGroupIngress":
            rules.append((name, "in", p))
        elif body["Type"] == "AWS::EC2::SecurityGroupEgress":
            rules.append((name, "out", p))
        elif body["Type"] == "AWS::EC2::SecurityGroup":
            rules += [(name, "in", r) for r in p.get("SecurityGroupIngress", [])]
            rules += [(name, "out", r) for r in p.get("SecurityGroupEgress", [])]
    return rules
