"""The deploy path, one step at a time: python -m tools.deploy STEP ENV (Makefile: make STEP ENV=...).

    bootstrap ENV   artifact bucket for nested templates + the registry stack (ECR repositories)
    images ENV      build both images, tag them with the git SHA, push, record the tag
    preview ENV     package, create a change set with nested stacks, print every change, keep it
    deploy ENV      package + deploy params/ENV.json, wait for the service, verify, smoke test
    teardown ENV    scale the service to zero, drop scale-in protection, delete the root stack

One way: boto3 for every AWS API call; the AWS CLI only for `aws cloudformation package` (it
uploads the nested templates and rewrites their TemplateURLs) and `aws cloudformation deploy`
(with params/ENV.json plus the deploy-time values, merged into a temporary copy). Stack events
(root and nested) are printed as they arrive, because the CLI's deploy prints none. Every step
stops at the first failure with the AWS error and what to do about it; temporary files live
in a temporary directory, and the one file a step keeps (the image record) is written
atomically.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from queue import Empty, Queue
from urllib.parse import urlparse

from app.contract import TIMEOUTS
from stacks import names
from tools import params as params_file
from tools import stackwatch
from tools.files import write_atomically
from tools.stackwatch import say

REPO = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = REPO / "templates"
RECORD_DIR = REPO / "build" / "images"  # gitignored: <env>.json, the tag the deploy step reads
ROOT_TEMPLATE = "root.json"
REGISTRY_TEMPLATE = "registry.json"
CAPABILITIES = ("CAPABILITY_IAM", "CAPABILITY_NAMED_IAM")
PROD_ENVIRONMENTS = ("prod",)
COST_TAG_KEYS = ("Project", "Environment")  # activate them as cost-allocation tags in Billing

# Images: name -> (Dockerfile, build context), relative to the repository.
IMAGES = {"gateway": ("app/Dockerfile", "."), "ollama": ("ollama/Dockerfile", "ollama")}
MODEL_IMAGE = "ollama"
MODEL_LABEL = "llm-api.model"
REVISION_LABEL = "org.opencontainers.image.revision"
PLATFORM = "linux/amd64"  # GPU instances (g4dn/g5/g6) are x86_64
# Directories whose uncommitted changes would make a SHA tag lie about an image's content.
IMAGE_INPUTS = ("app", "ollama")

PLACEHOLDER_TAG = "rehearsal-placeholder"
MANIFEST_TYPES = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
]

# Stability wait: a GPU instance launch (capacity provider scale-out, boot, ECS agent, multi-GB
# image pull), then the model load (the service's health check grace period), then the old
# task's deregistration delay; plus a margin. The CLI's waiter gives up after 10 minutes.
INSTANCE_READY_SECONDS = 600
WAIT_MARGIN_SECONDS = 300
DEFAULT_GRACE_SECONDS = 300
POLL_SECONDS = 15
SMOKE_TIMEOUT_SECONDS = TIMEOUTS.first_token_seconds + 30
SMOKE_RETRY_SECONDS = 180  # a new DNS record can take a minute or two to resolve


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


# ---------------------------------------------------------------------------------------------
# Target: everything a step derives from ENV, the params file and the AWS session
# ---------------------------------------------------------------------------------------------


@dataclass
class Target:
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
        return self.env in PROD_ENVIRONMENTS

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
        self._region = region

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
        values = params_file.load_env(env)
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


# ---------------------------------------------------------------------------------------------
# The AWS CLI (package and deploy) and local helpers
# ---------------------------------------------------------------------------------------------


# The CLI's advice after `package` addresses someone typing commands; the step runs them itself.
CLI_NOISE = ("Execute the following command to deploy the packaged template",
             "aws cloudformation deploy --template-file")


def aws_cli() -> str:
    """The pinned AWS CLI of this environment (.venv/bin/aws), else the one on PATH."""
    beside = Path(sys.executable).parent / "aws"
    if beside.is_file():
        return str(beside)
    found = shutil.which("aws")
    if not found:
        raise DeployError("the AWS CLI is not installed", "run `make venv` (it pins awscli)")
    return found


def run_cli(arguments: list[str], target: Target, what: str,
            on_tick: Callable[[], None] | None = None, tick_seconds: float = 5.0) -> list[str]:
    """Run `aws ARGUMENTS`, echoing its output; call on_tick while it runs. Returns its lines."""
    command = [aws_cli(), *arguments]
    env = {**os.environ, "AWS_DEFAULT_REGION": target.region, "AWS_REGION": target.region,
           "AWS_PAGER": ""}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,  # noqa: S603 (fixed argv, no shell)
                               text=True, env=env, cwd=REPO)
    lines: Queue[str | None] = Queue()

    def read() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            lines.put(raw.rstrip("\n"))
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    captured: list[str] = []
    done = False
    next_tick = time.monotonic() + tick_seconds
    while not done:
        try:
            line = lines.get(timeout=0.2)
        except Empty:
            line = ""
        if line is None:
            done = True
        elif line:
            for part in line.split("\r"):
                if part.strip():
                    captured.append(part.strip())
            shown = line.split("\r")[-1].strip()
            if not shown.startswith(CLI_NOISE):
                say(f"  aws: {shown}")
        if on_tick and time.monotonic() >= next_tick:
            on_tick()
            next_tick = time.monotonic() + tick_seconds
    process.wait()
    if on_tick:
        on_tick()
    if process.returncode != 0:
        errors = [line for line in captured if "error" in line.lower() or "failed" in line.lower()]
        text = errors[-1] if errors else (captured[-1] if captured else "no output")
        raise DeployError(f"could not {what}: `aws {' '.join(arguments[:2])}` exited "
                          f"{process.returncode}: {text}", hint_for("\n".join(captured)))
    return captured


def display(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def run_local(command: list[str], what: str, stdin: str | None = None,
              check: bool = True) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(command, input=stdin, capture_output=True, text=True,  # noqa: S603 (fixed argv, no shell)
                                cwd=REPO, check=False)
    except FileNotFoundError:
        raise DeployError(f"could not {what}: {command[0]} is not installed") from None
    if check and result.returncode != 0:
        raise DeployError(f"could not {what}: {' '.join(command[:3])} exited {result.returncode}"
                          f": {(result.stderr or result.stdout).strip()[-800:]}")
    return result


# ---------------------------------------------------------------------------------------------
# Shared pieces of the steps
# ---------------------------------------------------------------------------------------------


def stack_ready_for_change(aws: Aws, stack_name: str) -> dict | None:
    """The stack if it can take a change set now; None if it does not exist; else an error."""
    cfn = aws.client("cloudformation")
    stack = aws_call(lambda: stackwatch.describe_stack(cfn, stack_name), f"describe {stack_name}")
    if stack is None:
        return None
    status = stack["StackStatus"]
    if status == "ROLLBACK_COMPLETE":
        raise DeployError(f"stack {stack_name} is ROLLBACK_COMPLETE: its first create failed",
                          hint_for("ROLLBACK_COMPLETE"))
    if status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS":
        raise DeployError(f"stack {stack_name} is {status}", hint_for("_IN_PROGRESS state"))
    if status == "UPDATE_ROLLBACK_FAILED":
        raise DeployError(f"stack {stack_name} is {status}", hint_for(status))
    return stack


def deploy_template(aws: Aws, target: Target, template: Path, stack_name: str,
                    values: dict[str, str], package: bool) -> None:
    """(package and) `aws cloudformation deploy`, printing root and nested events as they come."""
    cfn = aws.client("cloudformation")
    stack_ready_for_change(aws, stack_name)
    with tempfile.TemporaryDirectory(prefix="llm-api-deploy-") as tmp:
        body = template
        if package:
            say(f"packaging {template.name}: nested templates -> s3://{target.artifact_bucket}/"
                f"{target.env}/")
            body = Path(tmp) / "packaged.json"
            run_cli(["cloudformation", "package", "--template-file", str(template),
                     "--s3-bucket", target.artifact_bucket, "--s3-prefix", target.env,
                     "--output-template-file", str(body), "--use-json"], target,
                    "package the templates")
        overrides = Path(tmp) / "parameters.json"
        overrides.write_text(params_file.render(values))
        watcher = stackwatch.EventWatcher(cfn, stack_name)
        aws_call(watcher.prime, f"read the events of {stack_name}")
        say(f"deploying stack {stack_name} ({len(values)} parameters); events as they arrive:")
        try:
            run_cli(["cloudformation", "deploy", "--template-file", str(body),
                     "--stack-name", stack_name,
                     "--parameter-overrides", f"file://{overrides}",
                     "--capabilities", *CAPABILITIES,
                     "--s3-bucket", target.artifact_bucket, "--s3-prefix", target.env,
                     "--tags", *[f"{k}={v}" for k, v in target.tags.items()],
                     "--no-fail-on-empty-changeset"], target, f"deploy {stack_name}",
                    on_tick=lambda: poll_quietly(watcher))
        except DeployError as error:
            failure = watcher.first_failure()
            if failure is not None:
                raise DeployError(f"deploy of {stack_name} failed. First failure: "
                                  f"{failure.line()}",
                                  hint_for(failure.reason) or error.hint or
                                  "read the events above; fix the cause and run the step again"
                                  ) from None
            raise
    if target.is_prod:
        protect(aws, stack_name)


def poll_quietly(watcher: stackwatch.EventWatcher) -> None:
    """Print new events; a failed read must not hide the deploy's own result, so say and go on."""
    try:
        aws_call(watcher.poll, "read stack events")
    except DeployError as error:
        say(f"  (events unavailable right now: {error.message[:200]})")


def protect(aws: Aws, stack_name: str) -> None:
    cfn = aws.client("cloudformation")
    aws_call(lambda: cfn.update_termination_protection(EnableTerminationProtection=True,
                                                       StackName=stack_name),
             f"turn on termination protection of {stack_name}")
    say(f"termination protection on for {stack_name}")


def print_outputs(outputs: dict[str, str]) -> None:
    width = max((len(k) for k in outputs), default=0)
    for key, value in sorted(outputs.items()):
        say(f"  {key:<{width}}  {value}")


# ---------------------------------------------------------------------------------------------
# bootstrap
# ---------------------------------------------------------------------------------------------


def tls_only_policy(bucket: str) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*",
            "Action": "s3:*",
            "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    }, sort_keys=True)


def ensure_artifact_bucket(aws: Aws, target: Target) -> None:
    """Create or reuse the bucket for packaged templates: private, encrypted, TLS-only."""
    from botocore.exceptions import ClientError

    s3 = aws.client("s3")
    bucket = target.artifact_bucket
    try:
        s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=target.account)
        say(f"artifact bucket s3://{bucket}: exists, reusing it")
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise DeployError(f"artifact bucket {bucket} exists but is not this account's "
                              f"({code})", "another account owns the name; set a different "
                              "ProjectName") from None
        config = ({} if target.region == "us-east-1" else
                  {"CreateBucketConfiguration": {"LocationConstraint": target.region}})
        aws_call(lambda: s3.create_bucket(Bucket=bucket, ObjectOwnership="BucketOwnerEnforced",
                                          **config), f"create bucket {bucket}")
        say(f"artifact bucket s3://{bucket}: created")
    steps = (
        ("block public access", lambda: s3.put_public_access_block(
            Bucket=bucket, PublicAccessBlockConfiguration={
                "BlockPublicAcls": True, "IgnorePublicAcls": True,
                "BlockPublicPolicy": True, "RestrictPublicBuckets": True})),
        ("enforce bucket-owner object ownership (no ACLs)", lambda: s3.put_bucket_ownership_controls(
            Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})),
        ("encrypt by default (SSE-S3)", lambda: s3.put_bucket_encryption(
            Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
                "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                "BucketKeyEnabled": True}]})),
        ("deny requests without TLS", lambda: s3.put_bucket_policy(
            Bucket=bucket, Policy=tls_only_policy(bucket))),
        # CloudFormation keeps its own copy of a stack's templates; package re-uploads a
        # missing object, so old artifacts can expire.
        ("expire artifacts after 90 days", lambda: s3.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": [{
                "ID": "expire-artifacts", "Status": "Enabled", "Filter": {"Prefix": ""},
                "Expiration": {"Days": 90},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]})),
        ("tag for cost allocation", lambda: s3.put_bucket_tagging(
            Bucket=bucket, Tagging={"TagSet": [{"Key": k, "Value": v}
                                               for k, v in target.tags.items()]})),
    )
    for what, call in steps:
        aws_call(call, f"{what} on {bucket}")
        say(f"  {what}")


def bootstrap(aws: Aws, target: Target) -> int:
    say(f"bootstrap {target.env}: account {target.account}, region {target.region}")
    ensure_artifact_bucket(aws, target)
    deploy_template(aws, target, target.template(REGISTRY_TEMPLATE), target.registry_stack,
                    {names.REPOSITORY_PREFIX: target.repository_prefix}, package=False)
    cfn = aws.client("cloudformation")
    stack = aws_call(lambda: stackwatch.describe_stack(cfn, target.registry_stack),
                     "read the registry outputs")
    say(f"registry stack {target.registry_stack} ready:")
    print_outputs(stackwatch.outputs_of(stack))
    say(f"next: make images ENV={target.env} (needs Docker), then make preview/deploy "
        f"ENV={target.env}")
    return 0


# ---------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------


def record_path(env: str) -> Path:
    return RECORD_DIR / f"{env}.json"


def read_record(env: str) -> dict | None:
    path = record_path(env)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise DeployError(f"{path} is not valid JSON", f"delete it and run make images "
                          f"ENV={env}") from None


def require_docker() -> None:
    try:
        result = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],  # noqa: S607 (docker from PATH, as a user runs it)
                                capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        raise DeployError("images needs Docker: the docker command is not installed",
                          "install Docker (Engine or Desktop) and run the step again") from None
    except subprocess.TimeoutExpired:
        raise DeployError("images needs Docker: `docker info` did not answer in 30 s",
                          "start the Docker engine and run the step again") from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise DeployError("images needs a running Docker engine: `docker info` failed"
                          + (f" ({detail[-1]})" if detail else ""),
                          "start the Docker engine (or point DOCKER_HOST at one) and run the "
                          "step again; every other step works without Docker")


def git_revision() -> str:
    sha = run_local(["git", "rev-parse", "--short=12", "HEAD"], "read the git commit").stdout
    dirty = run_local(["git", "status", "--porcelain", "--", *IMAGE_INPUTS],
                      "check for uncommitted image sources").stdout.strip()
    if dirty:
        raise DeployError(f"uncommitted changes under {', '.join(IMAGE_INPUTS)}: a tag made "
                          "from the commit would not describe the image",
                          "commit (or stash) them and run the step again")
    return sha.strip()


def image_config(ecr, repository: str, tag: str) -> dict | None:
    """The image's config JSON (labels live in config.Labels), or None if the tag is absent."""
    found = aws_call(lambda: ecr.batch_get_image(
        repositoryName=repository, imageIds=[{"imageTag": tag}],
        acceptedMediaTypes=MANIFEST_TYPES), f"read {repository}:{tag}")
    if not found.get("images"):
        return None
    manifest = json.loads(found["images"][0]["imageManifest"])
    if "manifests" in manifest:  # an index: pick the linux/amd64 image, not attestations
        chosen = [m for m in manifest["manifests"]
                  if m.get("platform", {}).get("os") == "linux"
                  and m.get("platform", {}).get("architecture") == "amd64"]
        if not chosen:
            raise DeployError(f"{repository}:{tag} has no {PLATFORM} image",
                              f"rebuild with --platform {PLATFORM} (make images)")
        digest = chosen[0]["digest"]
        found = aws_call(lambda: ecr.batch_get_image(
            repositoryName=repository, imageIds=[{"imageDigest": digest}],
            acceptedMediaTypes=MANIFEST_TYPES), f"read {repository}@{digest}")
        manifest = json.loads(found["images"][0]["imageManifest"])
    digest = manifest["config"]["digest"]
    url = aws_call(lambda: ecr.get_download_url_for_layer(repositoryName=repository,
                                                          layerDigest=digest)["downloadUrl"],
                   f"locate the config of {repository}:{tag}")
    if urlparse(url).scheme != "https" and not os.environ.get("AWS_ENDPOINT_URL"):
        raise DeployError(f"ECR returned a non-HTTPS download URL for {repository}")
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (scheme checked above)
        blob = response.read()
    if "sha256:" + hashlib.sha256(blob).hexdigest() != digest:
        raise DeployError(f"the config of {repository}:{tag} does not match its digest")
    return json.loads(blob)


def image_model(ecr, repository: str, tag: str) -> str | None:
    config = image_config(ecr, repository, tag)
    if config is None:
        return None
    return (config.get("config") or {}).get("Labels", {}).get(MODEL_LABEL, "")


def registry_outputs(aws: Aws, target: Target) -> dict[str, str]:
    cfn = aws.client("cloudformation")
    stack = aws_call(lambda: stackwatch.describe_stack(cfn, target.registry_stack),
                     f"read stack {target.registry_stack}")
    if stack is None:
        raise DeployError(f"no registry stack {target.registry_stack}",
                          f"run make bootstrap ENV={target.env} first")
    return stackwatch.outputs_of(stack)


def images(aws: Aws, target: Target) -> int:
    require_docker()
    tag = git_revision()
    outputs = registry_outputs(aws, target)
    ecr = aws.client("ecr")
    say(f"images {target.env}: tag {tag}, model {target.model}")
    logged_in = False
    pushed: dict[str, str] = {}
    for image, (dockerfile, context) in IMAGES.items():
        uri = outputs.get(f"{image.capitalize()}RepositoryUri")
        name = outputs.get(f"{image.capitalize()}RepositoryName")
        if not uri or not name:
            raise DeployError(f"the registry stack has no {image} repository output",
                              f"redeploy it: make bootstrap ENV={target.env}")
        reference = f"{uri}:{tag}"
        existing = image_config(ecr, name, tag)
        if existing is not None:
            model = (existing.get("config") or {}).get("Labels", {}).get(MODEL_LABEL)
            if image == MODEL_IMAGE and model != target.model:
                raise DeployError(f"{reference} exists (tags are immutable) and was built for "
                                  f"model {model!r}; params/{target.env}.json says "
                                  f"{target.model!r}", "commit the params change so the "
                                  "commit (and tag) changes, then run make images again")
            say(f"  {image}: {reference} already in ECR, not rebuilt")
            pushed[image] = reference
            continue
        if not logged_in:
            token = aws_call(lambda: ecr.get_authorization_token()["authorizationData"][0],
                             "get an ECR login token")
            user, password = base64.b64decode(token["authorizationToken"]).decode().split(":", 1)
            run_local(["docker", "login", "--username", user, "--password-stdin",
                       token["proxyEndpoint"]], "log in to ECR", stdin=password)
            logged_in = True
            say("  logged in to ECR")
        build = ["docker", "build", "--platform", PLATFORM, "--file", dockerfile,
                 "--tag", reference, "--label", f"{REVISION_LABEL}={tag}"]
        if image == MODEL_IMAGE:
            build += ["--build-arg", f"MODEL={target.model}",
                      "--label", f"{MODEL_LABEL}={target.model}"]
        say(f"  {image}: building {reference}")
        stream_local([*build, context], f"build the {image} image")
        say(f"  {image}: pushing")
        stream_local(["docker", "push", reference], f"push the {image} image")
        pushed[image] = reference
    record = {"image_tag": tag, "model": target.model, "images": pushed,
              "recorded_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    write_atomically(record_path(target.env), json.dumps(record, indent=2, sort_keys=True) + "\n")
    say(f"recorded tag {tag} in {display(record_path(target.env))}; next: make preview "
        f"ENV={target.env} or make deploy ENV={target.env}")
    return 0


def stream_local(command: list[str], what: str) -> None:
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,  # noqa: S603 (fixed argv, no shell)
                                   text=True, cwd=REPO)
    except FileNotFoundError:
        raise DeployError(f"could not {what}: {command[0]} is not installed") from None
    assert process.stdout is not None
    tail: list[str] = []
    for line in process.stdout:
        say(f"    {line.rstrip()}")
        tail = (tail + [line.rstrip()])[-20:]
    if process.wait() != 0:
        raise DeployError(f"could not {what}: {' '.join(command[:2])} exited "
                          f"{process.returncode}: {tail[-1] if tail else ''}",
                          "read the output above")


# ---------------------------------------------------------------------------------------------
# deploy
# ---------------------------------------------------------------------------------------------


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise DeployError(f"--parameter {pair!r} is not KEY=VALUE")
        values[key] = value
    return values


def resolve_image_tag(target: Target, explicit: str | None, rehearsal: bool) -> str | None:
    if explicit:
        return explicit
    if rehearsal:
        return PLACEHOLDER_TAG
    record = read_record(target.env)
    if record and record.get("image_tag"):
        return record["image_tag"]
    return None


def deploy_values(target: Target, image_tag: str | None,
                  overrides: dict[str, str]) -> dict[str, str]:
    """params/ENV.json + the deploy-time values root declares + overrides, checked against root."""
    declared = target.root_parameters()
    values = dict(target.params)
    if names.REPOSITORY_PREFIX in declared:
        values.setdefault(names.REPOSITORY_PREFIX, target.repository_prefix)
    if names.IMAGE_TAG in declared:
        if not image_tag:
            raise DeployError("no image tag: the template needs ImageTag",
                              f"run make images ENV={target.env} (records the tag), or pass "
                              "--image-tag TAG (make deploy IMAGE_TAG=...)")
        values[names.IMAGE_TAG] = image_tag
    values.update(overrides)
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise DeployError(f"params/{target.env}.json (or --parameter) sets {', '.join(unknown)}, "
                          f"which {ROOT_TEMPLATE} does not declare",
                          hint_for("do not exist in the template"))
    missing = sorted(k for k, v in declared.items() if "Default" not in v and k not in values)
    if missing:
        raise DeployError(f"{ROOT_TEMPLATE} needs {', '.join(missing)}, which params/"
                          f"{target.env}.json does not set", hint_for("must have values"))
    return values


def check_images(aws: Aws, target: Target, tag: str) -> None:
    """Both images exist under tag, and the Ollama image was built for the params' model."""
    outputs = registry_outputs(aws, target)
    ecr = aws.client("ecr")
    for image in IMAGES:
        name = outputs.get(f"{image.capitalize()}RepositoryName", "")
        if image == MODEL_IMAGE:
            model = image_model(ecr, name, tag)
        else:
            model = "" if image_config(ecr, name, tag) is not None else None
        if model is None:
            raise DeployError(f"image {name}:{tag} is not in ECR",
                              f"run make images ENV={target.env} (needs Docker)")
        if image == MODEL_IMAGE and model != target.model:
            raise DeployError(f"image {name}:{tag} was built for model {model or '(no label)'!r}"
                              f", but params/{target.env}.json sets ModelName={target.model!r}",
                              "rebuild the image for this model (commit, make images) or fix "
                              "ModelName; docs/operations.md, 'Change the model'")
    say(f"images {tag}: present in ECR; {MODEL_IMAGE} built for {target.model}")


def stability_timeout(values: dict[str, str], target: Target) -> int:
    declared = target.root_parameters()
    grace = values.get("HealthCheckGracePeriodSeconds") or declared.get(
        "HealthCheckGracePeriodSeconds", {}).get("Default", DEFAULT_GRACE_SECONDS)
    return (INSTANCE_READY_SECONDS + int(grace) + TIMEOUTS.deregistration_delay_seconds
            + WAIT_MARGIN_SECONDS)


@dataclass
class ServiceRef:
    cluster: str
    service: str
    task_definition: str  # the ARN the stack created: what must be running


def service_ref(tree: list[stackwatch.StackNode], label: str, service: dict) -> ServiceRef:
    """Cluster, name and the task definition the same stack created, for one ECS service."""
    node = next(n for n in tree if n.label == label)
    parts = service["PhysicalResourceId"].split(":", 5)[-1].split("/")  # service/<cluster>/<name>
    clusters = node.of_type("AWS::ECS::Cluster") or [
        r for _, r in stackwatch.resources_of_type(tree, "AWS::ECS::Cluster")]
    cluster = parts[1] if len(parts) == 3 else (clusters[0]["PhysicalResourceId"] if clusters
                                                else "default")
    task_definitions = node.of_type("AWS::ECS::TaskDefinition")
    return ServiceRef(cluster=cluster, service=parts[-1],
                      task_definition=task_definitions[0]["PhysicalResourceId"]
                      if task_definitions else "")


def find_service(tree: list[stackwatch.StackNode]) -> ServiceRef | None:
    services = stackwatch.resources_of_type(tree, "AWS::ECS::Service")
    return service_ref(tree, *services[0]) if services else None


def wait_for_service(aws: Aws, ref: ServiceRef, timeout: int,
                     sleep: Callable[[float], None] = time.sleep,
                     clock: Callable[[], float] = time.monotonic) -> dict:
    """Poll until the service runs its desired count on ONE deployment; print what ECS says."""
    ecs = aws.client("ecs")
    deadline = clock() + timeout
    seen_events: set[str] = set()
    first = True
    last_status = ""
    say(f"waiting for ECS service {ref.service} in {ref.cluster} to be stable (up to "
        f"{timeout // 60} min: instance launch, image pull, model load, old task drain)")
    while True:
        described = aws_call(lambda: ecs.describe_services(cluster=ref.cluster,
                                                           services=[ref.service]),
                             f"describe service {ref.service}")
        if not described.get("services"):
            raise DeployError(f"ECS service {ref.service} not found in {ref.cluster}")
        service = described["services"][0]
        for event in reversed(service.get("events", [])[:20]):
            if event["id"] not in seen_events:
                seen_events.add(event["id"])
                if not first:
                    say(f"  ecs: {event['message']}")
        first = False
        deployments = service.get("deployments", [])
        primary = next((d for d in deployments if d.get("status") == "PRIMARY"), {})
        status = (f"  {len(deployments)} deployment(s); primary "
                  f"{primary.get('rolloutState', '?')}: running {primary.get('runningCount', 0)}"
                  f"/{primary.get('desiredCount', 0)}, pending {primary.get('pendingCount', 0)}"
                  f", failed {primary.get('failedTasks', 0)}")
        if status != last_status:
            say(status)
            last_status = status
        if primary.get("rolloutState") == "FAILED":
            raise DeployError(f"ECS stopped the rollout: {primary.get('rolloutStateReason', '')}",
                              "the circuit breaker rolled back; find why tasks stopped "
                              "(docs/operations.md, 'A task fails health checks')")
        if (len(deployments) == 1 and primary.get("rolloutState", "COMPLETED") == "COMPLETED"
                and primary.get("runningCount") == primary.get("desiredCount")
                and service.get("runningCount") == service.get("desiredCount")):
            say("  service stable")
            return service
        if clock() > deadline:
            raise DeployError(f"service {ref.service} not stable after {timeout // 60} min",
                              "see docs/operations.md, 'A task is stuck in PROVISIONING' and "
                              "'A task fails health checks'")
        sleep(POLL_SECONDS)


def verify_task_definition(service: dict, ref: ServiceRef) -> None:
    running = service.get("taskDefinition", "")
    primary = next((d for d in service.get("deployments", []) if d.get("status") == "PRIMARY"),
                   {})
    if ref.task_definition and (running != ref.task_definition
                                or primary.get("taskDefinition") != ref.task_definition):
        raise DeployError(f"the service runs {running}, not the task definition this deploy "
                          f"created ({ref.task_definition}): ECS rolled back",
                          "the new tasks never became healthy; see docs/operations.md, 'A task "
                          "fails health checks', then deploy again")
    say(f"running task definition is the new one: {running.rsplit('/', 1)[-1]}")


def http_json(method: str, url: str, key: str, body: dict | None = None,
              timeout: float = SMOKE_TIMEOUT_SECONDS) -> tuple[int, dict]:
    if urlparse(url).scheme not in ("https", "http"):
        raise DeployError(f"refusing to call {url}: not an http(s) URL")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={  # noqa: S310 (scheme checked above)
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (scheme checked above)
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, {"error": error.read()[:300].decode(errors="replace")}


def smoke_test(url: str, key: str, model: str, sleep: Callable[[float], None] = time.sleep,
               request: Callable = http_json) -> None:
    base = url.rstrip("/")
    say(f"smoke test against {base}")
    deadline = time.monotonic() + SMOKE_RETRY_SECONDS
    while True:
        try:
            status, body = request("GET", f"{base}/v1/models", key)
            break
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            if time.monotonic() > deadline:
                raise DeployError(f"smoke test: {base} unreachable ({error})",
                                  "check the DNS record and the ALB security group "
                                  "(AlbIngressCidr must include this machine)") from None
            say(f"  not reachable yet ({error}); retrying")
            sleep(15)
    ids = [m.get("id") for m in body.get("data", [])] if status == 200 else []
    if status != 200 or model not in ids:
        raise DeployError(f"smoke test: GET /v1/models answered {status} {str(body)[:200]}, "
                          f"expected 200 listing {model}", "read the gateway log group "
                          "(docs/operations.md, 'A task fails health checks')")
    say(f"  GET /v1/models: 200, lists {model}")
    status, body = request("POST", f"{base}/v1/chat/completions", key, {
        "model": model, "max_tokens": 8, "stream": False,
        "messages": [{"role": "user", "content": "Reply with the word OK."}]})
    if status != 200 or not body.get("choices"):
        raise DeployError(f"smoke test: POST /v1/chat/completions answered {status} "
                          f"{str(body)[:200]}", "read the gateway and ollama log groups")
    say("  POST /v1/chat/completions: 200, a completion came back")


def api_key(aws: Aws, secret_arn: str) -> str:
    secrets = aws.client("secretsmanager")
    value = aws_call(lambda: secrets.get_secret_value(SecretId=secret_arn)["SecretString"],
                     "read the API key secret")
    keys = [k.strip() for k in value.split(",") if k.strip()]
    if not keys:
        raise DeployError("the API key secret is empty", "docs/operations.md, 'Rotate the API "
                          "keys'")
    return keys[-1]  # during a rotation ("old,new") the newest key


def deploy(aws: Aws, target: Target, image_tag: str | None, overrides: dict[str, str],
           rehearsal: bool, wait_timeout: int | None) -> int:
    if rehearsal:
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
        if urlparse(endpoint).hostname not in ("localhost", "127.0.0.1"):
            raise DeployError("--rehearsal deploys only to a local emulator "
                              "(AWS_ENDPOINT_URL=http://localhost:PORT)",
                              "run make rehearse; a real deploy takes no --rehearsal")
    declared = target.root_parameters()
    tag = resolve_image_tag(target, image_tag, rehearsal)
    values = deploy_values(target, tag, overrides)
    say(f"deploy {target.env}: stack {target.root_stack}, account {target.account}, region "
        f"{target.region}" + (f", images {tag}" if names.IMAGE_TAG in declared else ""))
    if names.IMAGE_TAG in declared and not rehearsal:
        check_images(aws, target, tag or "")
    deploy_template(aws, target, target.template(ROOT_TEMPLATE), target.root_stack, values,
                    package=True)
    cfn = aws.client("cloudformation")
    stack = aws_call(lambda: stackwatch.describe_stack(cfn, target.root_stack),
                     f"read stack {target.root_stack}")
    outputs = stackwatch.outputs_of(stack)
    say(f"stack {target.root_stack}: {stack['StackStatus'] if stack else 'missing'}; outputs:")
    print_outputs(outputs)
    if rehearsal:
        say("REHEARSAL: skipped the image check, the service-stability wait, the task "
            "definition check and the smoke test (the emulator runs no tasks)")
        return 0
    tree = aws_call(lambda: stackwatch.stack_tree(cfn, target.root_stack),
                    "list the stack's resources")
    ref = find_service(tree)
    if ref is None:
        say("no ECS service in the stack yet: nothing to wait for or smoke test")
        return 0
    service = wait_for_service(aws, ref, wait_timeout or stability_timeout(values, target))
    verify_task_definition(service, ref)
    url = outputs.get(names.SERVICE_URL)
    secret = outputs.get(names.API_KEY_SECRET_ARN)
    if url and secret:
        smoke_test(url, api_key(aws, secret), target.model)
    else:
        say(f"no {names.SERVICE_URL}/{names.API_KEY_SECRET_ARN} output: smoke test skipped")
    say("")
    say(f"service URL: {url}")
    say("API key (comma-separated list; any one works): aws secretsmanager get-secret-value "
        f"--secret-id {secret} --query SecretString --output text")
    return 0


# ---------------------------------------------------------------------------------------------
# preview
# ---------------------------------------------------------------------------------------------


def package_root(target: Target, directory: Path) -> str:
    packaged = directory / "packaged.json"
    run_cli(["cloudformation", "package", "--template-file",
             str(target.template(ROOT_TEMPLATE)), "--s3-bucket", target.artifact_bucket,
             "--s3-prefix", target.env, "--output-template-file", str(packaged), "--use-json"],
            target, "package the templates")
    return packaged.read_text()


def template_argument(aws: Aws, target: Target, body: str) -> dict[str, str]:
    """TemplateBody when it fits the API limit (51,200 bytes), else an uploaded TemplateURL."""
    if len(body.encode()) <= 51_200:
        return {"TemplateBody": body}
    key = f"{target.env}/root-{hashlib.sha256(body.encode()).hexdigest()[:16]}.json"
    s3 = aws.client("s3")
    aws_call(lambda: s3.put_object(Bucket=target.artifact_bucket, Key=key, Body=body.encode()),
             "upload the packaged root template")
    return {"TemplateURL": f"https://{target.artifact_bucket}.s3.{target.region}.amazonaws.com/"
                           f"{key}"}


def wait_for_change_set(cfn, change_set_id: str, sleep: Callable[[float], None] = time.sleep,
                        timeout: float = 900) -> dict:
    waited = 0.0
    while True:
        described = aws_call(lambda: cfn.describe_change_set(ChangeSetName=change_set_id),
                             "read the change set")
        status = described["Status"]
        if status in ("CREATE_COMPLETE", "FAILED"):
            return described
        if waited > timeout:
            raise DeployError(f"change set still {status} after {int(timeout)} s")
        say(f"  change set {status}...")
        sleep(5)
        waited += 5


def preview(aws: Aws, target: Target, image_tag: str | None, overrides: dict[str, str],
            body: str | None = None) -> int:
    tag = resolve_image_tag(target, image_tag, rehearsal=False)
    values = deploy_values(target, tag, overrides)
    cfn = aws.client("cloudformation")
    stack = stack_ready_for_change(aws, target.root_stack)
    change_type = "UPDATE" if stack and stack["StackStatus"] != "REVIEW_IN_PROGRESS" else "CREATE"
    say(f"preview {target.env}: {change_type} change set for {target.root_stack}")
    with tempfile.TemporaryDirectory(prefix="llm-api-preview-") as tmp:
        body = body if body is not None else package_root(target, Path(tmp))
    name = "preview-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    created = aws_call(lambda: cfn.create_change_set(
        StackName=target.root_stack, ChangeSetName=name, ChangeSetType=change_type,
        Parameters=params_file.as_cloudformation(values), Capabilities=list(CAPABILITIES),
        Tags=[{"Key": k, "Value": v} for k, v in target.tags.items()],
        IncludeNestedStacks=True, Description=f"make preview ENV={target.env}",
        **template_argument(aws, target, body)), "create the change set")
    change_set_id = created["Id"]
    described = wait_for_change_set(cfn, change_set_id)
    if described["Status"] == "FAILED":
        reason = described.get("StatusReason", "")
        if "didn't contain changes" in reason or "No updates" in reason:
            aws_call(lambda: cfn.delete_change_set(ChangeSetName=change_set_id),
                     "delete the empty change set")
            say("no changes: the deployed stack already matches templates/ and "
                f"params/{target.env}.json (empty change set deleted)")
            return 0
        raise DeployError(f"the change set failed: {reason}", hint_for(reason))
    changes = aws_call(lambda: stackwatch.collect_changes(cfn, change_set_id),
                       "read the changes")
    say(stackwatch.change_summary(changes))
    stackwatch.print_lines(stackwatch.change_table(changes))
    replaced = [c for c in changes if c.replacement == "True" and not c.expanded]
    for change in replaced:
        say(f"WARNING: {change.stack}/{change.logical_id} ({change.resource_type}) will be "
            "REPLACED (a new physical resource; data in the old one is gone unless retained)")
    say("")
    say(f"change set kept for review: {change_set_id}")
    say("  apply exactly this change set: aws cloudformation execute-change-set "
        f"--change-set-name '{change_set_id}'  (then make deploy ENV={target.env} waits, "
        "verifies and smoke-tests; it finds nothing left to change)")
    say(f"  or discard it: aws cloudformation delete-change-set --change-set-name "
        f"'{change_set_id}'")
    return 0


# ---------------------------------------------------------------------------------------------
# teardown
# ---------------------------------------------------------------------------------------------


@dataclass
class Kept:
    what: str
    name: str
    how_to_delete: str


@dataclass
class TeardownPlan:
    services: list[tuple[str, str]] = field(default_factory=list)  # (cluster, service)
    groups: list[str] = field(default_factory=list)  # Auto Scaling group names
    kept: list[Kept] = field(default_factory=list)


DELETE_COMMANDS = {
    "AWS::Logs::LogGroup": ("log group", "aws logs delete-log-group --log-group-name {id}"),
    "AWS::SecretsManager::Secret": ("secret", "aws secretsmanager delete-secret --secret-id "
                                              "{id} --recovery-window-in-days 7"),
    "AWS::KMS::Key": ("KMS key", "aws kms schedule-key-deletion --key-id {id} "
                                 "--pending-window-in-days 30"),
    "AWS::S3::Bucket": ("bucket", "aws s3 rb s3://{id} --force"),
    "AWS::ECR::Repository": ("repository", "aws ecr delete-repository --repository-name {id} "
                                           "--force"),
}


def retained_resources(cfn, tree: list[stackwatch.StackNode]) -> list[Kept]:
    kept = []
    for node in tree:
        template = aws_call(lambda node=node: cfn.get_template(StackName=node.stack_id,
                                                               TemplateStage="Processed"),
                            f"read the template of {node.label}")["TemplateBody"]
        if isinstance(template, str):
            template = json.loads(template)
        for resource in node.resources:
            body = template.get("Resources", {}).get(resource["LogicalResourceId"], {})
            if body.get("DeletionPolicy") not in stackwatch.RETAINING_POLICIES:
                continue
            physical = resource.get("PhysicalResourceId")
            if not physical:
                continue
            what, command = DELETE_COMMANDS.get(resource["ResourceType"],
                                                (resource["ResourceType"], ""))
            kept.append(Kept(f"{what} ({node.label}/{resource['LogicalResourceId']})", physical,
                             command.format(id=physical)))
    return kept


def plan_teardown(aws: Aws, target: Target) -> TeardownPlan:
    cfn = aws.client("cloudformation")
    tree = aws_call(lambda: stackwatch.stack_tree(cfn, target.root_stack),
                    "list the stack's resources")
    plan = TeardownPlan()

    def alive(resource: dict) -> bool:  # a repeated teardown skips what is already gone
        return bool(resource.get("PhysicalResourceId")) and resource.get(
            "ResourceStatus") != "DELETE_COMPLETE"

    for label, resource in stackwatch.resources_of_type(tree, "AWS::ECS::Service"):
        if alive(resource):
            ref = service_ref(tree, label, resource)
            plan.services.append((ref.cluster, ref.service))
    plan.groups = [r["PhysicalResourceId"] for _, r in
                   stackwatch.resources_of_type(tree, "AWS::AutoScaling::AutoScalingGroup")
                   if alive(r)]
    plan.kept = retained_resources(cfn, tree)
    return plan


def scale_services_to_zero(aws: Aws, services: list[tuple[str, str]], timeout: int,
                           sleep: Callable[[float], None] = time.sleep) -> None:
    ecs = aws.client("ecs")
    scaling = aws.client("application-autoscaling")
    for cluster, service in services:
        resource_id = f"service/{cluster}/{service}"
        targets = aws_call(lambda rid=resource_id: scaling.describe_scalable_targets(
            ServiceNamespace="ecs", ResourceIds=[rid]), "read the service's scaling target")
        if targets.get("ScalableTargets"):
            # Autoscaling would put the tasks back: pin its range to zero first.
            aws_call(lambda rid=resource_id: scaling.register_scalable_target(
                ServiceNamespace="ecs", ResourceId=rid,
                ScalableDimension="ecs:service:DesiredCount", MinCapacity=0, MaxCapacity=0),
                "pin the service's scaling range to 0")
            say(f"  {service}: autoscaling range pinned to 0")
        aws_call(lambda c=cluster, s=service: ecs.update_service(cluster=c, service=s,
                                                                 desiredCount=0),
                 f"scale {service} to zero")
        say(f"  {service}: desired count 0; waiting for its tasks to drain")
        waited = 0
        while True:
            described = aws_call(lambda c=cluster, s=service: ecs.describe_services(
                cluster=c, services=[s]), f"describe {service}")
            current = (described.get("services") or [{}])[0]
            running = current.get("runningCount", 0) + current.get("pendingCount", 0)
            if running == 0 or current.get("status") == "INACTIVE":
                say(f"  {service}: no tasks left")
                break
            if waited >= timeout:
                raise DeployError(f"{service} still has {running} task(s) after {timeout} s",
                                  "wait, then run make teardown again (it is safe to repeat)")
            say(f"  {service}: {running} task(s) still draining")
            sleep(POLL_SECONDS)
            waited += POLL_SECONDS


def release_instances(aws: Aws, groups: list[str]) -> None:
    autoscaling = aws.client("autoscaling")
    for group in groups:
        described = aws_call(lambda g=group: autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[g]), f"describe {group}")
        if not described.get("AutoScalingGroups"):
            continue
        aws_call(lambda g=group: autoscaling.update_auto_scaling_group(
            AutoScalingGroupName=g, NewInstancesProtectedFromScaleIn=False, MinSize=0,
            DesiredCapacity=0), f"scale {group} to zero")
        protected = [i["InstanceId"] for i in described["AutoScalingGroups"][0].get("Instances", [])
                     if i.get("ProtectedFromScaleIn")]
        for start in range(0, len(protected), 50):
            batch = protected[start:start + 50]
            aws_call(lambda g=group, b=batch: autoscaling.set_instance_protection(
                AutoScalingGroupName=g, InstanceIds=b, ProtectedFromScaleIn=False),
                f"remove scale-in protection in {group}")
        say(f"  {group}: scale-in protection removed from {len(protected)} instance(s); "
            "desired 0")


def delete_root(aws: Aws, target: Target, sleep: Callable[[float], None] = time.sleep,
                timeout: float = 3600) -> None:
    cfn = aws.client("cloudformation")
    watcher = stackwatch.EventWatcher(cfn, target.root_stack)
    aws_call(watcher.prime, "read the stack events")
    stack = aws_call(lambda: stackwatch.describe_stack(cfn, target.root_stack), "describe")
    stack_id = stack["StackId"] if stack else target.root_stack
    aws_call(lambda: cfn.delete_stack(StackName=stack_id), f"delete {target.root_stack}")
    say(f"deleting stack {target.root_stack}; events as they arrive:")
    waited = 0.0
    while True:
        aws_call(watcher.poll, "read stack events")
        current = aws_call(lambda: stackwatch.describe_stack(cfn, stack_id), "describe")
        status = current["StackStatus"] if current else "DELETE_COMPLETE"
        if status == "DELETE_COMPLETE":
            say(f"stack {target.root_stack} deleted")
            return
        if status == "DELETE_FAILED":
            failure = watcher.first_failure()
            reason = failure.line() if failure else current.get("StackStatusReason", "")
            raise DeployError(f"delete failed: {reason}", hint_for(reason) or (
                "fix or remove the resource named above, then run make teardown again; as a "
                "last resort: aws cloudformation delete-stack --retain-resources <LogicalId>"))
        if waited > timeout:
            raise DeployError(f"stack still {status} after {int(timeout)} s",
                              "look at the events above; run make teardown again to resume")
        sleep(10)
        waited += 10


def teardown(aws: Aws, target: Target, assume_yes: bool,
             ask: Callable[[str], str] = input) -> int:
    cfn = aws.client("cloudformation")
    stack = aws_call(lambda: stackwatch.describe_stack(cfn, target.root_stack),
                     f"describe {target.root_stack}")
    kept: list[Kept] = []
    if stack is None:
        say(f"no stack {target.root_stack}: nothing to delete")
    else:
        if stack.get("EnableTerminationProtection"):
            raise DeployError(f"{target.root_stack} has termination protection",
                              "if you really mean to delete this environment: aws "
                              "cloudformation update-termination-protection "
                              "--no-enable-termination-protection --stack-name "
                              f"{target.root_stack}, then run make teardown again")
        if not assume_yes:
            answer = ask(f"delete stack {target.root_stack} in {target.account}/{target.region}?"
                         f" type its name to confirm: ")
            if answer.strip() != target.root_stack:
                raise DeployError("not confirmed; nothing deleted")
        plan = plan_teardown(aws, target)
        say(f"teardown {target.env}: {len(plan.services)} service(s), {len(plan.groups)} "
            "Auto Scaling group(s)")
        drain = TIMEOUTS.deregistration_delay_seconds + TIMEOUTS.container_stop_timeout_seconds
        scale_services_to_zero(aws, plan.services, timeout=drain + 300)
        release_instances(aws, plan.groups)
        delete_root(aws, target)
        kept = plan.kept
    registry = aws_call(lambda: stackwatch.describe_stack(cfn, target.registry_stack),
                        f"describe {target.registry_stack}")
    if registry is not None:
        outputs = stackwatch.outputs_of(registry)
        for image in IMAGES:
            name = outputs.get(f"{image.capitalize()}RepositoryName")
            if name:
                kept.append(Kept(f"repository ({target.registry_stack})", name,
                                 DELETE_COMMANDS["AWS::ECR::Repository"][1].format(id=name)))
        kept.append(Kept("registry stack (images for redeploys and rollbacks)",
                         target.registry_stack, "aws cloudformation delete-stack --stack-name "
                         f"{target.registry_stack}  (after deleting the repositories)"))
    kept.append(Kept("artifact bucket (packaged templates)", target.artifact_bucket,
                     f"aws s3 rb s3://{target.artifact_bucket} --force"))
    say("")
    say("kept (retained on purpose; delete them for good only when nobody needs them):")
    for item in kept:
        say(f"  {item.what}: {item.name}")
        if item.how_to_delete:
            say(f"      delete: {item.how_to_delete}")
    return 0


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.deploy",
        description="Deploy the LLM API to AWS, one step at a time (see README, 'Deploy', and "
                    "docs/operations.md). Credentials and region come from the usual AWS "
                    "variables or profile.")
    steps = parser.add_subparsers(dest="step", required=True, metavar="STEP")

    def step(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        sub = steps.add_parser(name, help=help_text, description=description)
        sub.add_argument("env", metavar="ENV", help="environment: params/ENV.json "
                         f"({', '.join(params_file.environments())})")
        sub.add_argument("--region", help="AWS region (default: AWS_REGION or the profile's)")
        return sub

    sub = step("bootstrap", "artifact bucket + registry stack (run once per environment)",
               "Create or reuse the artifact bucket for nested templates (private, SSE-S3, "
               "TLS-only, 90-day expiry, cost tags) and deploy templates/registry.json as "
               "stack <ProjectName>-<env>-registry with RepositoryPrefix <ProjectName>-<env>.")
    sub.add_argument("--templates", type=Path, default=TEMPLATES_DIR, help=argparse.SUPPRESS)

    step("images", "build, tag (git SHA) and push both images; needs Docker",
         "Build app/Dockerfile and ollama/Dockerfile (MODEL build argument and the "
         f"{MODEL_LABEL} label from params/ENV.json ModelName), tag both with the git commit, "
         "log in to ECR, push, and record the tag in build/images/ENV.json for the deploy "
         "step. Refuses without a running Docker engine (`docker info`) or with uncommitted "
         "changes under app/ or ollama/.")

    for name, help_text, description in (
        ("preview", "change set with nested stacks: print every change, keep it for review",
         "Package the templates, create a change set with IncludeNestedStacks, print the "
         "changes of the root and every nested stack as one table, and leave the change set "
         "for review (execute or delete it by hand; the commands are printed)."),
        ("deploy", "package + deploy, wait for the service, verify, smoke test",
         "Package and deploy templates/root.json with params/ENV.json plus the deploy-time "
         "values (ImageTag, RepositoryPrefix; merged into a temporary copy), printing root and "
         "nested stack events. Refuses if the Ollama image's model label differs from "
         "ModelName. Then waits until the ECS service is stable (own wait; timeout from the "
         "model-load budget), verifies that the new task definition runs, calls /v1/models "
         "and a tiny completion, and prints the service URL and how to read the API key. "
         "prod stacks get termination protection; all stacks get cost-allocation tags."),
    ):
        sub = step(name, help_text, description)
        sub.add_argument("--image-tag", help="image tag to deploy (default: the one `images` "
                         "recorded in build/images/ENV.json)")
        sub.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE",
                         help="set one more root parameter for this run only (repeatable), "
                              "e.g. a hosted zone created outside this repository")
        sub.add_argument("--templates", type=Path, default=TEMPLATES_DIR, help=argparse.SUPPRESS)
        if name == "deploy":
            sub.add_argument("--wait-timeout", type=int, metavar="SECONDS",
                             help="stability wait limit (default: instance launch + health "
                                  "check grace period + deregistration delay + margin)")
            sub.add_argument("--rehearsal", action="store_true",
                             help="offline rehearsal against a local emulator "
                                  "(AWS_ENDPOINT_URL=http://localhost:PORT): placeholder image "
                                  "tag; no image check, stability wait or smoke test")

    sub = step("teardown", "scale to zero, drop scale-in protection, delete the root stack",
               "Scale the ECS service to zero (autoscaling pinned to 0), remove scale-in "
               "protection from the GPU instances, delete the root stack and print its events, "
               "then list what was kept on purpose (log groups, secret, KMS key, repositories, "
               "buckets) with the command that deletes each. Refuses a stack with termination "
               "protection (prod).")
    sub.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return parser


def main(argv: list[str] | None = None, aws: Aws | None = None) -> int:
    args = build_parser().parse_args(argv)
    aws = aws or Aws(region=args.region)
    try:
        if args.step == "images":
            require_docker()  # before any AWS call: without an engine there is nothing to do
        target = resolve_target(args.env, aws, getattr(args, "templates", TEMPLATES_DIR))
        if args.step == "bootstrap":
            return bootstrap(aws, target)
        if args.step == "images":
            return images(aws, target)
        overrides = parse_overrides(getattr(args, "parameter", []))
        if args.step == "preview":
            return preview(aws, target, args.image_tag, overrides)
        if args.step == "deploy":
            return deploy(aws, target, args.image_tag, overrides, args.rehearsal,
                          args.wait_timeout)
        return teardown(aws, target, args.yes)
    except DeployError as error:
        print(f"{args.step} {args.env}: error: {error.message}", file=sys.stderr, flush=True)
        if error.hint:
            print(f"  what to do: {error.hint}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print(f"{args.step} {args.env}: interrupted; CloudFormation keeps going on its own: "
              "run the step again to resume watching", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
