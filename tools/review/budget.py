"""Where the timeout budget of app/contract.py shows up in a rendered template, by name.

The budget is one chain (DESIGN, "Timeout budget"): a change to one value without the others
breaks long generations (ALB 502s, streams cut at deploy, SIGKILL mid-drain), so the report names
every value that moved.
"""

from __future__ import annotations

import base64
import binascii
import re

# A task environment value or SSM parameter of the gateway that is part of the budget.
_SETTING = re.compile(r"^(GATEWAY|UVICORN)_\w*(TIMEOUT|SECONDS|KEEP_ALIVE)\w*$")
_AGENT_STOP = re.compile(r"^ECS_CONTAINER_STOP_TIMEOUT=(\S+)$", re.MULTILINE)


def attribute(properties: dict, list_name: str, key: str):
    for item in properties.get(list_name, []) or []:
        if isinstance(item, dict) and item.get("Key") == key:
            return item.get("Value")
    return None


def _user_data(text: object) -> str:
    if not isinstance(text, str):
        return ""
    try:
        return base64.b64decode(text, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return text


def values(template: dict) -> dict[str, object]:
    """Budget value name -> value, for every budget value this rendered template sets."""
    out: dict[str, object] = {}
    for lid, resource in (template.get("Resources") or {}).items():
        type_, props = resource.get("Type"), resource.get("Properties") or {}
        if type_ == "AWS::ElasticLoadBalancingV2::LoadBalancer":
            value = attribute(props, "LoadBalancerAttributes", "idle_timeout.timeout_seconds")
            if value is not None:
                out[f"ALB idle timeout ({lid}, alb_idle_timeout_seconds)"] = value
        elif type_ == "AWS::ElasticLoadBalancingV2::TargetGroup":
            value = attribute(props, "TargetGroupAttributes", "deregistration_delay.timeout_seconds")
            if value is not None:
                out[f"deregistration delay ({lid}, deregistration_delay_seconds)"] = value
        elif type_ == "AWS::ECS::TaskDefinition":
            for container in props.get("ContainerDefinitions", []) or []:
                name = container.get("Name", "?")
                if "StopTimeout" in container:
                    out[f"{name} StopTimeout (container_stop_timeout_seconds)"] = container["StopTimeout"]
                for item in container.get("Environment", []) or []:
                    if _SETTING.match(str(item.get("Name", ""))):
                        out[f"{name} environment {item['Name']}"] = item.get("Value")
        elif type_ == "AWS::SSM::Parameter":
            name = str(props.get("Name", "")).rsplit("/", 1)[-1]
            if _SETTING.match(name):
                out[f"SSM parameter {name}"] = props.get("Value")
        elif type_ == "AWS::EC2::LaunchTemplate":
            data = (props.get("LaunchTemplateData") or {}).get("UserData")
            match = _AGENT_STOP.search(_user_data(data))
            if match:
                out[f"ECS agent ECS_CONTAINER_STOP_TIMEOUT ({lid})"] = match.group(1)
    return out
