"""What every layer shares: the Layer base class and small template helpers."""

from __future__ import annotations

import json

from troposphere import Output, Parameter, Template

from app.contract import setting
from stacks import names
from stacks.parameters import Param, add_all, number, string
from stacks.settings import GenerationSettings

TEMPLATE_VERSION = "2010-09-09"


class Layer:
    """One CloudFormation template. Subclasses set the class attributes and implement build()."""

    # Logical ID of the nested stack in root.json (PascalCase, stable: it is API).
    logical_id: str = ""
    # File name under templates/ (also the TemplateURL, relative to root.json).
    file_name: str = ""
    description: str = ""
    # (condition name, root parameter, value): the whole nested stack exists only when the root
    # parameter equals value. None: always created.
    root_condition: tuple[str, str, str] | None = None
    # Outputs that root.json repeats as its own (what an operator reads after a deploy).
    root_outputs: tuple[str, ...] = ()
    # Root parameters declared differently from this layer's parameter of the same name.
    root_definitions: dict[str, dict] = {}

    def __init__(self, settings: GenerationSettings) -> None:
        self.settings = settings

    def build(self) -> Template:
        raise NotImplementedError

    def parameters(self) -> tuple[Param, ...]:
        """This layer's parameters as data (stacks/parameters.py); build() adds them."""
        return ()

    def add_parameters(self, template: Template) -> dict[str, Parameter]:
        return add_all(template, self.parameters())

    def rules(self) -> dict[str, dict]:
        """Template Rules over this layer's parameters; root carries them, never the layer.

        CloudFormation evaluates a template's Rules when that template's stack is created or
        updated, before its resources; a nested template's Rules therefore run only when its
        nested stack is reached, after the earlier layers exist (a failed first create then
        rolls everything back). In root they run before anything is created
        (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/rules-section-structure.html).
        Every name a rule Refs must be a root parameter of the same name (root checks it).
        """
        return {}

    def new_template(self) -> Template:
        template = Template(Description=self.description)
        template.set_version(TEMPLATE_VERSION)
        return template


def add_output(template: Template, name: str, value: object, description: str) -> Output:
    return template.add_output(Output(name, Value=value, Description=description))


NAME_PATTERN = r"^[a-z][a-z0-9-]{0,30}$"

# ProjectName and EnvironmentName, declared alike by every layer that names things.
NAMING = (
    string(names.PROJECT_NAME, "Project name: prefix of resource names", default="llm-api",
           pattern=NAME_PATTERN, constraint="lowercase letters, digits and -, at most 31"),
    string(names.ENVIRONMENT_NAME, "Environment name (dev, prod, ...)", pattern=NAME_PATTERN,
           constraint="lowercase letters, digits and -, at most 31"),
)

# ModelName and OllamaNumParallel, declared alike by the config and service layers.
MODEL = (
    string(names.MODEL_NAME, "Ollama model the service serves (name:tag); the Ollama image "
           "must be built with the same name", default=setting("GATEWAY_MODELS").default_text,
           pattern=r"^[a-z0-9][a-z0-9._:/-]{0,127}$",
           constraint="an Ollama model name such as llama3.2:1b"),
    number(names.OLLAMA_NUM_PARALLEL, "Requests one Ollama serves at once "
           "(OLLAMA_NUM_PARALLEL); the gateway's concurrency bound per task",
           default=setting("GATEWAY_MAX_CONCURRENCY").default, min_value=1, max_value=32),
)

LOG_RETENTION = number(
    names.LOG_RETENTION_DAYS, "Days to keep logs (flow logs, container logs); 365 or more for "
    "audit", default=365,
    allowed_values=(1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
                    2192, 2557, 2922, 3288, 3653))


def to_json(template: Template) -> str:
    """Deterministic serialisation: sorted keys, two-space indent, trailing newline."""
    return json.dumps(template.to_dict(), sort_keys=True, indent=2) + "\n"


def cdk_style_no_egress() -> dict:
    """An egress rule that matches nothing, so EC2 removes the default allow-all egress rule.

    EC2 keeps the allow-all egress rule unless the group itself declares at least one egress
    rule; the real egress rules are separate resources (so groups can name each other without
    a cycle). This is the rule CDK writes for `allowAllOutbound: false`.
    """
    return {
        "CidrIp": "255.255.255.255/32",
        "Description": "Disallow all traffic (removes the default allow-all egress rule)",
        "IpProtocol": "icmp",
        "FromPort": 252,
        "ToPort": 86,
    }


def scanner_skips(checkov: dict[str, str] | None = None,
                  cfn_lint: dict[str, str] | None = None) -> dict:
    """Resource Metadata that skips scanner checks, each with the reason a reviewer reads.

    checkov reads Metadata.checkov.skip; cfn-lint reads Metadata.cfn-lint.config.ignore_checks
    (which has no place for a reason, so the reasons sit beside it under "reasons").
    """
    metadata: dict = {}
    if checkov:
        metadata["checkov"] = {
            "skip": [{"id": check, "comment": reason} for check, reason in sorted(checkov.items())]
        }
    if cfn_lint:
        metadata["cfn-lint"] = {
            "config": {"ignore_checks": sorted(cfn_lint)},
            "reasons": dict(sorted(cfn_lint.items())),
        }
    return metadata
