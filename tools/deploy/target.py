"""What every step shares: the target (ENV, its params file, account and region), the boto3
session, and one way to turn an AWS error into a message plus what to do about it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stacks import names
from tools import params as params_file
from tools.stackwatch import say

REPO = Path(__file__).resolve().parents[2]
TEMPLATES_DIR = REPO / "templates"
ROOT_TEMPLATE = "root.json"
REGISTRY_TEMPLATE = "registry.json"
CAPABILITIES = ("CAPABILITY_IAM", "CAPABILITY_NAMED_IAM")
COST_TAG_KEYS = ("Project", "Environment")  # activate them as cost-allocation tags in Billing
POLL_SECONDS = 15

__all__ = ["REPO", "TEMPLATES_DIR", "Aws", "DeployError", "Target", "aws_call", "hint_for",
           "print_outputs", "resolve_target", "say"]


class DeployError(Exception):
    """A step failed: the message says what, the hint says what to do about it."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint


# (text found in an AWS error or stack event reason, what to do about it), first match wins.
HINTS: tuple[tuple[str, str], ...] = (
    ("ROLLBACK_COMPLETE", "the stack's first create failed and it cannot be updated: fix the "
     "cause above, delete it (make teardown ENV=<env>) and deploy again"),
    ("UPDATE_ROLLBACK_FAILED", "CloudFormation could not roll back: fix the resource named "
     "above, then `aws cloudformation continue-update-rollback --stack-name <stack>`"),
    ("_IN_PROGRESS state", "another operation is running on this stack: wait for it "
     "(aws cloudformation describe-stacks) and run the step again"),
    ("must have values", "a parameter has no value: compare params/<env>.json with the root "
     "template's Parameters, and run `make check` (root.json may be stale)"),
    ("Missing parameter", "a nested stack parameter has no value: the root template does not "
     "wire it (stacks/root.py); run `make generate` and `make check`"),
    ("do not exist in the template", "params/<env>.json sets a parameter the template does not "
     "declare: remove it or regenerate the templates (make generate)"),
    ("nested stack parameters must be strings", "the root template passes a list to a nested "
     "stack: wrap the Ref in Fn::Join (stacks/root.py), then make generate"),
    ("Template format error", "the template is invalid: run `make lint` (cfn-lint)"),
    ("Template error", "the template is invalid: run `make lint` (cfn-lint) and the rehearsal "
     "(make rehearse)"),
    ("Requires capabilities", "the template creates IAM resources: the deploy step passes "
     "CAPABILITY_IAM and CAPABILITY_NAMED_IAM; report this as a bug"),
    ("deletion protection", "the load balancer has deletion protection on: make teardown turns "
     "it off after you confirm; run make teardown ENV=<env> again"),
    ("AccessDenied", "your credentials lack a permission named above: use a role allowed to "
     "manage CloudFormation, EC2, ECS, ELB, IAM, KMS, S3, ECR, SSM and Secrets Manager"),
    ("UnauthorizedOperation", "your credentials lack a permission named above"),
    ("ExpiredToken", "your AWS session expired: log in again (aws sso login / new credentials)"),
    ("InvalidClientTokenId", "the AWS credentials are not valid for this account/partition"),
    ("already exists", "a resource with this name survives from an earlier stack (retained on "
     "teardown): delete it (see teardown's list of kept resources) or import it"),
    ("VcpuLimitExceeded", "the account's GPU vCPU quota is too low: request more 'Running "
     "On-Demand G and VT instances' in Service Quotas, or lower AsgMaxSize"),
    ("InsufficientInstanceCapacity", "AWS has no capacity for the GPU instance type in these "
     "AZs now: retry later, or change AvailabilityZones/InstanceType in params/<env>.json"),
    ("is not supported in your requested Availability Zone", "the instance type is not offered "
     "in an AZ of params/<env>.json: see `aws ec2 describe-instance-type-offerings`"),
    ("Unable to fetch parameters", "an SSM parameter named in the parameters does not exist in "
     "this region/account (e.g. the GPU AMI parameter): check its name and region"),
    ("CertificateNotFound", "CertificateArn names no certificate in this region"),
    ("No hosted zone found", "HostedZoneId names no Route 53 hosted zone in this account"),
    ("Could not connect to the endpoint URL", "no network path to AWS (or a wrong region): "
     "check connectivity, proxy and AWS_REGION"),
    ("Unable to locate credentials", "no AWS credentials: `aws configure`, AWS_PROFILE or "
     "`aws sso login`"),
)


def hint_for(text: str) -> str:
    for needle, advice in HINTS:
        if needle in text:
            return advice
    return ""


@dataclass
class Target:
    """Everything a step derives from ENV, the params file and the AWS session."""

    env: str
    params: dict[str, str]
    region: str
    account: str
    templates_dir: Path = TEMPLATES_DIR

    @property
    def project(self) -> str:
        return self.params.get(names.PROJECT_NAME, "llm-api")

    @property
    def root_stack(self) -> str:
        return f"{self.project}-{self.env}"

    @property
    def registry_stack(self) -> str:
        return f"{self.project}-{self.env}-registry"

    @property
    def repository_prefix(self) -> str:
        return self.params.get(names.REPOSITORY_PREFIX) or f"{self.project}-{self.env}"

    @property
    def artifact_bucket(self) -> str:
        return f"{self.project}-{self.env}-artifacts-{self.account}-{self.region}"

    @property
    def model(self) -> str:
        return self.params.get(names.MODEL_NAME, "")

    @property
    def is_prod(self) -> bool:
        """params/<env>.toml says production = true (stack termination protection)."""
        return params_file.environment(self.env).production

    @property
    def tags(self) -> dict[str, str]:
        return dict(zip(COST_TAG_KEYS, (self.project, self.env), strict=True))

    def template(self, name: str) -> Path:
        path = self.templates_dir / name
        if not path.is_file():
            raise DeployError(f"no template {path}", "run `make generate`")
        return path

    def root_parameters(self) -> dict[str, dict]:
        return json.loads(self.template(ROOT_TEMPLATE).read_text()).get("Parameters", {})


class Aws:
    """boto3 clients of one session; tests pass stubbed clients instead."""

    def __init__(self, region: str | None = None, clients: dict | None = None):
        self._clients = dict(clients or {})
        self._session = None
        # AWS_REGION is what the AWS CLI v2 and the newer SDKs read first ("AWS_REGION ...
        # overrides AWS_DEFAULT_REGION", https://docs.aws.amazon.com/cli/latest/userguide/
        # cli-configure-envvars.html), but botocore here reads only AWS_DEFAULT_REGION and the
        # profile: honour it, so the docs' one variable works for every step.
        self._region = region or os.environ.get("AWS_REGION") or None

    @property
    def session(self):
        if self._session is None:
            import boto3

            self._session = boto3.session.Session(region_name=self._region)
        return self._session

    @property
    def region(self) -> str | None:
        if "region" in self._clients:
            return self._clients["region"]
        return self.session.region_name

    def client(self, name: str):
        if name not in self._clients:
            self._clients[name] = self.session.client(name)
        return self._clients[name]


def resolve_target(env: str, aws: Aws, templates_dir: Path = TEMPLATES_DIR) -> Target:
    try:
        values = params_file.load_env(env, templates_dir / ROOT_TEMPLATE)
    except params_file.ParamsError as error:
        raise DeployError(str(error), "create params/<env>.json (copy dev.json)") from None
    declared = values.get(names.ENVIRONMENT_NAME)
    if declared and declared != env:
        raise DeployError(f"params/{env}.json sets EnvironmentName={declared}, not {env}",
                          "make the file name and EnvironmentName agree")
    region = aws.region
    if not region:
        raise DeployError("no AWS region configured",
                          "set AWS_REGION (or AWS_DEFAULT_REGION, or a profile's region)")
    zones = [z for z in values.get(names.AVAILABILITY_ZONES, "").split(",") if z]
    foreign = [z for z in zones if not z.startswith(region)]
    if foreign:
        raise DeployError(f"params/{env}.json AvailabilityZones {','.join(foreign)} are not in "
                          f"region {region}", "set AWS_REGION to the environment's region, or "
                          "fix AvailabilityZones")
    account = aws_call(lambda: aws.client("sts").get_caller_identity()["Account"],
                       "read the account (sts get-caller-identity)")
    return Target(env=env, params=values, region=region, account=account,
                  templates_dir=templates_dir)


def aws_call(call: Callable, what: str):
    """Run one boto3 call; turn any AWS/botocore error into a DeployError with a hint."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call()
    except ClientError as error:
        detail = error.response.get("Error", {})
        text = f"{detail.get('Code', 'Error')}: {detail.get('Message', str(error))}"
        raise DeployError(f"could not {what}: {text}", hint_for(text)) from None
    except BotoCoreError as error:
        raise DeployError(f"could not {what}: {error}", hint_for(str(error))) from None


def print_outputs(outputs: dict[str, str]) -> None:
    width = max((len(k) for k in outputs), default=0)
    for key, value in sorted(outputs.items()):
        say(f"  {key:<{width}}  {value}")


def display(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
