"""images: build, label, tag, push, record; and the image check deploy makes."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
from botocore.stub import Stubber

from tests.tools.deploy.stubs import (
    ACCOUNT,
    REGION,
    REGISTRY_OUTPUTS,
    ROOT,
    aws_with,
    image_blob,
    stack,
    target,
)
from tools.deploy import apply, cli, images
from tools.deploy.target import Aws, DeployError

MODEL = target().model  # dev's effective ModelName; OTHER: any other model
OTHER = f"{MODEL}-other"


def stub_image(ecr: Stubber, repository: str, blob: bytes | None, urls: dict) -> None:
    if blob is None:
        ecr.add_response("batch_get_image", {"images": [], "failures": [
            {"imageId": {"imageTag": "abc123"}, "failureCode": "ImageNotFound"}]}, {
            "repositoryName": repository, "imageIds": [{"imageTag": "abc123"}],
            "acceptedMediaTypes": images.MANIFEST_TYPES})
        return
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    manifest = {"schemaVersion": 2, "config": {"digest": digest},
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json"}
    ecr.add_response("batch_get_image", {"images": [{"imageManifest": json.dumps(manifest)}]}, {
        "repositoryName": repository, "imageIds": [{"imageTag": "abc123"}],
        "acceptedMediaTypes": images.MANIFEST_TYPES})
    url = f"https://ecr.example/{repository}/{digest}"
    urls[url] = blob
    ecr.add_response("get_download_url_for_layer", {"downloadUrl": url, "layerDigest": digest},
                     {"repositoryName": repository, "layerDigest": digest})

@pytest.mark.parametrize(("model", "ok"), [(MODEL, True), (OTHER, False), (None, False)])
def test_deploy_refuses_an_ollama_image_built_for_another_model(stubs, downloads, model, ok):
    cfn, ecr = stubs("cloudformation")[1], stubs("ecr")[1]
    cfn.add_response("describe_stacks", {"Stacks": [stack(f"{ROOT}-registry",
                                                          Outputs=REGISTRY_OUTPUTS)]},
                     {"StackName": f"{ROOT}-registry"})
    stub_image(ecr, "llm-api-dev/gateway", image_blob(None), downloads)
    stub_image(ecr, "llm-api-dev/ollama", image_blob(model), downloads)
    aws = aws_with(stubs, "cloudformation", "ecr")
    if ok:
        images.check_images(aws, target(), "abc123")
        return
    with pytest.raises(DeployError, match="was built for model") as error:
        images.check_images(aws, target(), "abc123")
    assert f"ModelName={MODEL!r}" in error.value.message

def test_deploy_refuses_a_missing_image(stubs, downloads):
    cfn, ecr = stubs("cloudformation")[1], stubs("ecr")[1]
    cfn.add_response("describe_stacks", {"Stacks": [stack(f"{ROOT}-registry",
                                                          Outputs=REGISTRY_OUTPUTS)]},
                     {"StackName": f"{ROOT}-registry"})
    stub_image(ecr, "llm-api-dev/gateway", None, downloads)
    with pytest.raises(DeployError, match="llm-api-dev/gateway:abc123 is not in ECR"):
        images.check_images(aws_with(stubs, "cloudformation", "ecr"), target(), "abc123")

def test_an_image_whose_config_does_not_match_its_digest_is_refused(stubs, downloads):
    ecr = stubs("ecr")[1]
    stub_image(ecr, "llm-api-dev/ollama", image_blob(MODEL), downloads)
    for url in downloads:
        downloads[url] = image_blob("tampered")
    with pytest.raises(DeployError, match="does not match its digest"):
        images.image_model(stubs("ecr")[0], "llm-api-dev/ollama", "abc123")

def fake_docker(tmp_path: Path, info_exit: int) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "docker.log"
    script = bin_dir / "docker"
    script.write_text(f"""#!/bin/sh
echo "$@" >> {log}
if [ "$1" = info ]; then
  [ {info_exit} -eq 0 ] && echo 27.0.0 && exit 0
  echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock." >&2; exit 1
fi
if [ "$1" = login ]; then cat > /dev/null; fi
exit 0
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bin_dir

def test_images_refuses_clearly_without_a_docker_engine(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", f"{fake_docker(tmp_path, info_exit=1)}:{os.environ['PATH']}")
    # No AWS client is given: the step must stop before any AWS call.
    assert cli.main(["images", "dev"], aws=Aws(clients={"region": REGION})) == 1
    err = capsys.readouterr().err
    assert "images needs a running Docker engine: `docker info` failed" in err
    assert "Cannot connect to the Docker daemon" in err and "what to do:" in err

def test_images_refuses_without_the_docker_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert cli.main(["images", "dev"], aws=Aws(clients={"region": REGION})) == 1
    assert "the docker command is not installed" in capsys.readouterr().err

def test_images_builds_labels_tags_pushes_and_records(tmp_path, monkeypatch, stubs, downloads):
    monkeypatch.setenv("PATH", f"{fake_docker(tmp_path, info_exit=0)}:{os.environ['PATH']}")
    monkeypatch.setattr(images, "git_revision", lambda: "abc123")
    monkeypatch.setattr(images, "RECORD_DIR", tmp_path / "records")
    cfn, ecr = stubs("cloudformation")[1], stubs("ecr")[1]
    cfn.add_response("describe_stacks", {"Stacks": [stack(f"{ROOT}-registry",
                                                          Outputs=REGISTRY_OUTPUTS)]},
                     {"StackName": f"{ROOT}-registry"})
    stub_image(ecr, "llm-api-dev/gateway", None, downloads)
    ecr.add_response("get_authorization_token", {"authorizationData": [{
        "authorizationToken": "QVdTOnNlY3JldA==", "proxyEndpoint":
        f"https://{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"}]}, {})
    stub_image(ecr, "llm-api-dev/ollama", None, downloads)
    assert images.images(aws_with(stubs, "cloudformation", "ecr"), target()) == 0
    registry = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/llm-api-dev"
    log = (tmp_path / "docker.log").read_text().splitlines()
    assert log == [
        "info --format {{.ServerVersion}}",
        f"login --username AWS --password-stdin https://{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com",
        f"build --platform linux/amd64 --file app/Dockerfile --tag {registry}/gateway:abc123 "
        "--label org.opencontainers.image.revision=abc123 .",
        f"push {registry}/gateway:abc123",
        f"build --platform linux/amd64 --file ollama/Dockerfile --tag {registry}/ollama:abc123 "
        f"--label org.opencontainers.image.revision=abc123 --build-arg MODEL={MODEL} "
        f"--label llm-api.model={MODEL} ollama",
        f"push {registry}/ollama:abc123",
    ]
    record = json.loads((tmp_path / "records" / "dev.json").read_text())
    assert record["image_tag"] == "abc123" and record["model"] == MODEL
    assert list((tmp_path / "records").iterdir()) == [tmp_path / "records" / "dev.json"]
    assert apply.resolve_image_tag(target(), None, rehearsal=False) == "abc123"

def test_images_refuses_to_reuse_a_tag_built_for_another_model(tmp_path, monkeypatch, stubs,
                                                               downloads):
    monkeypatch.setenv("PATH", f"{fake_docker(tmp_path, info_exit=0)}:{os.environ['PATH']}")
    monkeypatch.setattr(images, "git_revision", lambda: "abc123")
    cfn, ecr = stubs("cloudformation")[1], stubs("ecr")[1]
    cfn.add_response("describe_stacks", {"Stacks": [stack(f"{ROOT}-registry",
                                                          Outputs=REGISTRY_OUTPUTS)]},
                     {"StackName": f"{ROOT}-registry"})
    stub_image(ecr, "llm-api-dev/gateway", image_blob(None), downloads)
    stub_image(ecr, "llm-api-dev/ollama", image_blob("other:7b"), downloads)
    with pytest.raises(DeployError, match="tags are immutable"):
        images.images(aws_with(stubs, "cloudformation", "ecr"), target())
