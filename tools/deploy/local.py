"""Local commands: the pinned AWS CLI for `aws cloudformation package` (it uploads the nested
templates and rewrites their TemplateURLs), git and docker. Everything else is boto3."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tools.deploy.target import REPO, DeployError, Target, hint_for, say


def aws_cli() -> str:
    """The pinned AWS CLI of this environment (.venv/bin/aws), else the one on PATH."""
    beside = Path(sys.executable).parent / "aws"
    if beside.is_file():
        return str(beside)
    found = shutil.which("aws")
    if not found:
        raise DeployError("the AWS CLI is not installed", "run `make venv` (it pins awscli)")
    return found


def package(target: Target, template: Path, output: Path) -> Path:
    """`aws cloudformation package`: nested templates to the artifact bucket, under ENV/."""
    say(f"packaging {template.name}: nested templates -> s3://{target.artifact_bucket}/"
        f"{target.env}/")
    arguments = ["cloudformation", "package", "--template-file", str(template),
                 "--s3-bucket", target.artifact_bucket, "--s3-prefix", target.env,
                 "--output-template-file", str(output), "--use-json"]
    env = {**os.environ, "AWS_DEFAULT_REGION": target.region, "AWS_REGION": target.region,
           "AWS_PAGER": ""}
    result = subprocess.run([aws_cli(), *arguments], capture_output=True, text=True,  # noqa: S603 (fixed argv, no shell)
                            env=env, cwd=REPO, check=False)
    if result.returncode != 0:
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        raise DeployError(f"could not package the templates: `aws cloudformation package` "
                          f"exited {result.returncode}: {lines[-1] if lines else 'no output'}",
                          hint_for("\n".join(lines)))
    return output


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


def stream_local(command: list[str], what: str) -> None:
    """Run a long local command (docker build/push), echoing its output as it comes."""
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
