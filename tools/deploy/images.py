"""make images ENV=<env>: build both images, tag them with the git commit, push them to the
registry stack's repositories and record the tag; and the check deploy makes before it uses a
tag (both images present, the Ollama one built for the params file's model)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

from tools import stackwatch
from tools.deploy.local import run_local, stream_local
from tools.deploy.target import REPO, Aws, DeployError, Target, aws_call, display, say
from tools.files import write_atomically

RECORD_DIR = REPO / "build" / "images"  # gitignored: <env>.json, the tag the deploy step reads
# Images: name -> (Dockerfile, build context), relative to the repository.
IMAGES = {"gateway": ("app/Dockerfile", "."), "ollama": ("ollama/Dockerfile", "ollama")}
MODEL_IMAGE = "ollama"
MODEL_LABEL = "llm-api.model"
REVISION_LABEL = "org.opencontainers.image.revision"
PLATFORM = "linux/amd64"  # GPU instances (g4dn/g5/g6) are x86_64
# Directories whose uncommitted changes would make a SHA tag lie about an image's content.
IMAGE_INPUTS = ("app", "ollama")
MANIFEST_TYPES = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
]


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
