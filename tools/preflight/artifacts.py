"""What the deploy step reads: the GPU AMI parameter, the images in ECR, the artifact bucket."""

from __future__ import annotations

from botocore.exceptions import ClientError

from stacks.cluster import AMI_ID as GPU_AMI_ID
from tools.preflight.core import (
    IMAGES,
    CheckUnavailable,
    Context,
    Result,
    call,
    error_code,
    error_text,
    failed,
    ok,
    read_record,
)


def check_gpu_ami(ctx: Context, name: str) -> Result:
    path = ctx.value(GPU_AMI_ID)
    needed = "the SSM parameter GpuAmiId names resolves in this region (CloudFormation reads it)"
    if not path.startswith("/"):
        return failed(name, f"GpuAmiId={path!r} is not an SSM parameter path", needed,
                      f"params/{ctx.env}.json: \"GpuAmiId=/aws/service/ecs/optimized-ami/"
                      "amazon-linux-2023/gpu/recommended/image_id\"")
    ssm = ctx.aws.client("ssm")
    try:
        value = call(ssm.get_parameter, "ssm:GetParameter", allow=("ParameterNotFound",),
                     Name=path)["Parameter"]["Value"]
    except ClientError:
        return failed(name, f"{path}: no such parameter in {ctx.region}", needed,
                      f"aws ssm get-parameters-by-path --path {path.rsplit('/', 2)[0]} "
                      f"--region {ctx.region}; fix GpuAmiId in params/{ctx.env}.json")
    return ok(name, f"{path} -> {value}", needed)


def repositories(ctx: Context) -> tuple[dict[str, str], str]:
    """image -> repository name: the registry stack's outputs, else the naming it uses."""
    cfn = ctx.aws.client("cloudformation")
    try:
        stacks = call(cfn.describe_stacks, "cloudformation:DescribeStacks",
                      allow=("ValidationError",), StackName=ctx.target.registry_stack)["Stacks"]
    except ClientError:
        stacks = []
    outputs = {o["OutputKey"]: o["OutputValue"] for s in stacks for o in s.get("Outputs", [])}
    names = {image: outputs.get(f"{image.capitalize()}RepositoryName")
             or f"{ctx.target.repository_prefix}/{image}" for image in IMAGES}
    origin = (f"stack {ctx.target.registry_stack}" if stacks else
              f"no stack {ctx.target.registry_stack} (bootstrap has not run yet)")
    return names, origin


def check_images(ctx: Context, name: str) -> Result:
    record = read_record(ctx.env) or {}
    tag = ctx.image_tag or record.get("image_tag")
    repos, origin = repositories(ctx)
    if not tag:
        return failed(name, f"no image tag: build/images/{ctx.env}.json has none and no "
                      "--image-tag was given", "both images under the tag to deploy",
                      f"make images ENV={ctx.env} (records the tag), or --image-tag TAG")
    needed = f"{', '.join(f'{r}:{tag}' for r in repos.values())} in ECR"
    ecr = ctx.aws.client("ecr")
    found, missing = [], []
    for repository in repos.values():
        try:
            call(ecr.describe_images, "ecr:DescribeImages",
                 allow=("RepositoryNotFoundException", "ImageNotFoundException"),
                 repositoryName=repository, imageIds=[{"imageTag": tag}])
            found.append(f"{repository}:{tag}")
        except ClientError as error:
            what = ("no repository" if error_code(error) == "RepositoryNotFoundException"
                    else f"no tag {tag}")
            missing.append(f"{repository}: {what}")
    summary = f"repositories from {origin}; " + "; ".join(found + missing)
    if not missing:
        return ok(name, summary, needed)
    if any("no repository" in m for m in missing):
        return failed(name, summary, needed, f"make bootstrap ENV={ctx.env} (creates the "
                      f"repositories), then make images ENV={ctx.env}")
    return failed(name, summary, needed, f"make images ENV={ctx.env} (needs Docker), or deploy "
                  "a tag that exists: --image-tag TAG")


def check_artifact_bucket(ctx: Context, name: str) -> Result:
    bucket = ctx.target.artifact_bucket
    needed = f"s3://{bucket}, owned by {ctx.target.account} (package uploads nested templates)"
    s3 = ctx.aws.client("s3")
    try:
        call(s3.head_bucket, "s3:ListBucket (HeadBucket)", allow=("404", "NoSuchBucket",
                                                                  "NotFound", "403"),
             Bucket=bucket, ExpectedBucketOwner=ctx.target.account)
    except ClientError as error:
        if error_code(error) == "403":
            # HeadBucket answers 403 both without s3:ListBucket and for another owner's bucket.
            raise CheckUnavailable(f"s3://{bucket}: {error_text(error)} (no permission, or "
                                   "another account owns the name)",
                                   "allow s3:ListBucket on it; if another account owns it, "
                                   "set a different ProjectName") from None
        return failed(name, f"s3://{bucket} does not exist: bootstrap has not run yet",
                      needed, f"make bootstrap ENV={ctx.env}")
    return ok(name, f"s3://{bucket} exists", needed)


CHECKS = (
    ("GPU AMI parameter resolves", check_gpu_ami),
    ("images in ECR (both repositories hold the tag to deploy)", check_images),
    ("artifact bucket (bootstrap)", check_artifact_bucket),
)
