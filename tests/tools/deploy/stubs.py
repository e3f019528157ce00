"""Shared pieces of the deploy-tool tests: stubbed boto3 clients (botocore's Stubber) and
canned AWS responses. The Stubber fails a test on any call it was not told to expect, so each
test pins the exact AWS calls a step makes, in order."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import boto3
from botocore.stub import Stubber

from tests.cfn import REPO
from tools import params as params_file
from tools.deploy.images import MODEL_LABEL, REVISION_LABEL
from tools.deploy.target import Aws, Target

REGION = "us-east-1"

ACCOUNT = "123456789012"

ROOT = "llm-api-dev"

NOW = datetime.datetime(2026, 11, 28, 12, 0, 0, tzinfo=datetime.UTC)

def client(name: str):
    return boto3.client(name, region_name=REGION, aws_access_key_id="x",
                        aws_secret_access_key="x")  # noqa: S106 (stub credentials)


def aws_with(stubs, *names: str) -> Aws:
    return Aws(clients={"region": REGION, **{n: stubs(n)[0] for n in names}})

def target(env: str = "dev", templates: Path = REPO / "templates") -> Target:
    return Target(env=env, params=params_file.load_env(env), region=REGION,
                         account=ACCOUNT, templates_dir=templates)

def stack(name: str = ROOT, status: str = "UPDATE_COMPLETE", **extra) -> dict:
    return {"StackName": name, "StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/"
            f"{name}/1", "CreationTime": NOW, "StackStatus": status, **extra}

def missing(stubber: Stubber, method: str, name: str = ROOT) -> None:
    stubber.add_client_error(method, service_error_code="ValidationError",
                             service_message=f"Stack with id {name} does not exist")

def resource(logical: str, resource_type: str, physical: str) -> dict:
    return {"LogicalResourceId": logical, "ResourceType": resource_type,
            "PhysicalResourceId": physical, "ResourceStatus": "CREATE_COMPLETE",
            "LastUpdatedTimestamp": NOW}

def image_blob(model: str | None) -> bytes:
    labels = {REVISION_LABEL: "abc123"} | ({MODEL_LABEL: model} if model else {})
    return json.dumps({"architecture": "amd64", "config": {"Labels": labels}}).encode()

REGISTRY_OUTPUTS = [
    {"OutputKey": f"{image.capitalize()}Repository{kind}", "OutputValue": value}
    for image in ("gateway", "ollama")
    for kind, value in (("Name", f"llm-api-dev/{image}"),
                        ("Uri", f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/llm-api-dev/{image}"))
]

def event(n: int, status: str, reason: str = "", logical: str = ROOT) -> dict:
    return {"StackId": stack()["StackId"], "StackName": ROOT, "EventId": f"e{n}",
            "LogicalResourceId": logical, "ResourceType": "AWS::CloudFormation::Stack",
            "Timestamp": NOW, "ResourceStatus": status, "ResourceStatusReason": reason}

def expect_poll(cfn: Stubber, events: list[dict]) -> None:
    cfn.add_response("list_stack_resources", {"StackResourceSummaries": []}, {"StackName": ROOT})
    cfn.add_response("describe_stack_events", {"StackEvents": events}, {"StackName": ROOT})
