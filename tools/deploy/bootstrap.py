"""make bootstrap ENV=<env>: the artifact bucket for packaged templates, then the registry stack
(ECR repositories), which must exist before images are pushed and the root stack refers to them.
"""

from __future__ import annotations

import json

from stacks import names
from tools import stackwatch
from tools.deploy.apply import deploy_stack
from tools.deploy.target import (
    REGISTRY_TEMPLATE,
    Aws,
    DeployError,
    Target,
    aws_call,
    print_outputs,
    say,
)


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
    deploy_stack(aws, target, target.template(REGISTRY_TEMPLATE), target.registry_stack,
                 {names.REPOSITORY_PREFIX: target.repository_prefix}, package=False)
    cfn = aws.client("cloudformation")
    stack = aws_call(lambda: stackwatch.describe_stack(cfn, target.registry_stack),
                     "read the registry outputs")
    say(f"registry stack {target.registry_stack} ready:")
    print_outputs(stackwatch.outputs_of(stack))
    say(f"next: make images ENV={target.env} (needs Docker), then make preview/deploy "
        f"ENV={target.env}")
    return 0
