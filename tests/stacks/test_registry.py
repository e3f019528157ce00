"""Registry: lowercase explicit names, immutable tags, scan on push, lifecycle, encryption."""

from __future__ import annotations

import json
import re

import pytest

from stacks.registry import IMAGES, KEEP_TAGGED_IMAGES
from tests.cfn import generated, props, resources


def registry():
    return generated()["registry.json"]


def repositories():
    return resources(registry(), "AWS::ECR::Repository")


def test_one_repository_per_image():
    names = [props(r)["RepositoryName"]["Fn::Sub"] for r in repositories().values()]
    assert sorted(names) == sorted(f"${{RepositoryPrefix}}/{image}" for image in IMAGES)


@pytest.mark.parametrize(
    ("prefix", "allowed"),
    [("llm-api", True), ("llmapi2", True), ("LLM-API", False), ("llm_api", False),
     ("-llm", False), ("llm--api", False), ("", False), ("llm-api-", False)],
)
def test_prefix_pattern_admits_only_lowercase_names(prefix, allowed):
    pattern = registry()["Parameters"]["RepositoryPrefix"]["AllowedPattern"]
    assert bool(re.match(pattern, prefix)) is allowed
    if allowed:
        for repo in repositories().values():
            rendered = props(repo)["RepositoryName"]["Fn::Sub"].replace("${RepositoryPrefix}", prefix)
            assert rendered == rendered.lower()


def test_tags_immutable_scanned_encrypted_retained():
    for name, repo in repositories().items():
        p = props(repo)
        assert p["ImageTagMutability"] == "IMMUTABLE", name
        assert p["ImageScanningConfiguration"] == {"ScanOnPush": True}, name
        assert p["EncryptionConfiguration"]["EncryptionType"] == "KMS", name
        assert repo["DeletionPolicy"] == "Retain", name


def test_lifecycle_expires_untagged_and_keeps_a_few_releases():
    for repo in repositories().values():
        rules = json.loads(props(repo)["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
        untagged = [r for r in rules if r["selection"]["tagStatus"] == "untagged"]
        assert untagged and untagged[0]["selection"]["countType"] == "sinceImagePushed"
        kept = [r for r in rules if r["selection"]["countType"] == "imageCountMoreThan"]
        assert kept[0]["selection"]["countNumber"] == KEEP_TAGGED_IMAGES


def test_registry_is_not_nested_in_root():
    urls = [props(s)["TemplateURL"] for s in resources(generated()["root.json"]).values()]
    assert "registry.json" not in urls
