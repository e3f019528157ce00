"""Registry (standalone, deployed before root): ECR repositories for the two images.

Names are explicit and lowercase (ECR refuses uppercase, and a name derived from a stack name
may have it). Encryption uses the AWS-managed ECR KMS key: this stack is deployed before the
root stack that owns the customer-managed key, and a repository's encryption cannot change.
"""

from __future__ import annotations

import json

from troposphere import GetAtt, Ref, Sub, ecr

from stacks import names
from stacks.base import Layer, add_output
from stacks.parameters import string

IMAGES = ("gateway", "ollama")
# Images with a baked model are several GB, but a task definition in use must never lose its
# image (new instances could not start it): keep the last 30 releases (docs/operations.md).
KEEP_TAGGED_IMAGES = 30
UNTAGGED_EXPIRY_DAYS = 1


def lifecycle_policy_text() -> str:
    rules = [
        {
            "rulePriority": 1,
            "description": f"Expire untagged images after {UNTAGGED_EXPIRY_DAYS} day",
            "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                          "countUnit": "days", "countNumber": UNTAGGED_EXPIRY_DAYS},
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 2,
            "description": f"Keep the {KEEP_TAGGED_IMAGES} most recent images",
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                          "countNumber": KEEP_TAGGED_IMAGES},
            "action": {"type": "expire"},
        },
    ]
    return json.dumps({"rules": rules}, sort_keys=True)


def repository_logical_id(image: str) -> str:
    return f"{image.capitalize()}Repository"


class RegistryLayer(Layer):
    logical_id = "Registry"
    file_name = "registry.json"
    description = "Registry: ECR repositories for the gateway and Ollama images (deploy first)"

    def parameters(self):
        return (
            string(names.REPOSITORY_PREFIX, "Repository name prefix: repositories are "
                   "<prefix>/gateway and <prefix>/ollama",
                   pattern=r"^[a-z0-9]+(?:[-][a-z0-9]+)*$",
                   constraint="lowercase letters, digits and single hyphens ([a-z0-9-]+)"),
        )

    def build(self):
        t = self.new_template()
        prefix = self.add_parameters(t)[names.REPOSITORY_PREFIX]
        for image in IMAGES:
            repo = t.add_resource(ecr.Repository(
                repository_logical_id(image),
                RepositoryName=Sub(f"${{{prefix.title}}}/{image}"),
                ImageTagMutability="IMMUTABLE",
                ImageScanningConfiguration=ecr.ImageScanningConfiguration(ScanOnPush=True),
                EncryptionConfiguration=ecr.EncryptionConfiguration(EncryptionType="KMS"),
                LifecyclePolicy=ecr.LifecyclePolicy(LifecyclePolicyText=lifecycle_policy_text()),
                # Retained: images are slow to rebuild and a rollback needs the old tag.
                DeletionPolicy="Retain", UpdateReplacePolicy="Retain",
            ))
            cap = image.capitalize()
            add_output(t, f"{cap}RepositoryUri", GetAtt(repo, "RepositoryUri"),
                       f"URI of the {image} repository (docker push target)")
            add_output(t, f"{cap}RepositoryArn", GetAtt(repo, "Arn"),
                       f"ARN of the {image} repository")
            add_output(t, f"{cap}RepositoryName", Ref(repo), f"Name of the {image} repository")
        return t
