"""`make preflight ENV=dev` (python -m tools.preflight dev) against moto in server mode.

One emulator for the module: bootstrap (artifact bucket, registry stack), an image manifest
pushed into both repositories, then preflight runs as a subprocess, as a user runs it. Where
moto cannot answer, the adapter serves what the test sets, never a skip: the ec2 quotas (moto's
Service Quotas knows only `vpc`) through moto_adapter.apply_service_quotas. moto's own data
gives the real failing case for offerings: g5.xlarge is not offered in us-east-1e there.

What this proves: every check runs against the AWS APIs (wire format, pagination, error codes
as moto returns them) and the command prints and exits as documented. It does not prove AWS's
numbers: the quotas are the test's, moto's instance-type data is a snapshot, and DNS is
whatever this machine resolves (offline: the delegation is "could not check").
"""

from __future__ import annotations

import pytest

from tests.rehearsal.harness import (
    REGION,
    SPOT_QUOTA,
    Rehearsal,
    preflight,
    push_image_manifest,
    set_service_quota,
)

pytestmark = pytest.mark.slow

TAG = "rehearsal-preflight"
GVT = ("ec2", "L-DB2E81BA", "Running On-Demand G and VT instances")
EIP = ("ec2", "L-0263D0A3", "EC2-VPC Elastic IPs")
CHECK_TITLES = ("rollout room", "model-load budget", "GPU vCPU quota", "VPCs per region",
                "Elastic IPs for the NAT gateways",
                "instance type offered in every AZ", "certificate", "hosted zone",
                "GPU AMI parameter resolves", "images in ECR", "artifact bucket")


@pytest.fixture(scope="module")
def account(tmp_path_factory):
    """dev's account in the emulator after `make bootstrap ENV=dev` and `make images`."""
    run = Rehearsal("dev", tmp_path_factory.mktemp("preflight-dev")).start()
    try:
        run.prepare_account()  # the Route 53 zone of DomainName's parent
        bootstrap = run.step("bootstrap", "dev", "--templates", str(run.templates))
        assert bootstrap.returncode == 0, run.transcript
        outputs = {o["OutputKey"]: o["OutputValue"] for o in run.client(
            "cloudformation").describe_stacks(StackName="llm-api-dev-registry")["Stacks"][0][
            "Outputs"]}
        for image in ("Gateway", "Ollama"):
            push_image_manifest(run, outputs[f"{image}RepositoryName"], TAG)
        set_service_quota(run.port, *EIP, 5)
        yield run
    finally:
        run.close()


def check(account: Rehearsal, gvt_quota: float, *extra: str):
    set_service_quota(account.port, *GVT, gvt_quota)
    args = ["--image-tag", TAG, *extra]
    for key, value in account.overrides.items():
        args += ["--parameter", f"{key}={value}"]
    return preflight(account, *args)


def status_of(output: str, title: str) -> str:
    line = next(line for line in output.splitlines() if title in line and line.startswith("["))
    return line.split("]", 1)[0] + "]"


def test_preflight_prints_every_check_and_passes(account):
    step = check(account, 64)
    out = step.output
    assert step.returncode == 0, out
    for title in CHECK_TITLES:
        assert status_of(out, title) in ("[ok]", "[could not check]"), (title, out)
    for title in ("GPU vCPU quota", "instance type offered", "images in ECR", "artifact bucket",
                  "GPU AMI parameter"):
        assert status_of(out, title) == "[ok]", (title, out)
    assert "needed: 12 vCPUs = (AsgMaxSize 2 + 1 for a `make roll` surge) x 4 vCPUs" in out
    assert f"llm-api-dev/gateway:{TAG}" in out
    assert "preflight dev: passed" in out


def test_gpu_quota_at_zero_fails_with_the_code_the_vcpus_and_the_request(account):
    step = check(account, 0)
    out = step.output
    assert step.returncode == 1, out
    assert status_of(out, "GPU vCPU quota") == "[FAILED]"
    assert "L-DB2E81BA" in out and "needed: 12 vCPUs" in out
    assert ("aws service-quotas request-service-quota-increase --service-code ec2 --quota-code "
            f"L-DB2E81BA --desired-value 12 --region {REGION}") in out
    assert "preflight dev: FAILED" in out


def test_a_spot_only_account_is_not_refused_by_the_on_demand_quota(account):
    """A new account (On-Demand G/VT quota 0) deploying SpotInstances=true with Spot quota:
    the group's mixed instances policy (templates/cluster.json) launches no On-Demand instance,
    so the On-Demand check is ok and the Spot check sizes the Spot quota."""
    set_service_quota(account.port, "ec2", *SPOT_QUOTA)
    step = check(account, 0, "--parameter", "SpotInstances=true")
    out = step.output
    assert step.returncode == 0, out
    assert status_of(out, "GPU vCPU quota") == "[ok]", out
    assert "none of (AsgMaxSize 2 + 1 for a `make roll` surge) instances is On-Demand" in out
    assert status_of(out, "GPU Spot vCPU quota") == "[ok]", out
    assert "preflight dev: passed" in out


def test_an_az_without_the_instance_type_fails_naming_the_az_and_the_type(account):
    step = check(account, 64, "--parameter", "AvailabilityZones=us-east-1a,us-east-1e")
    out = step.output
    assert step.returncode == 1, out
    assert status_of(out, "instance type offered in every AZ") == "[FAILED]"
    assert "g5.xlarge is not offered in us-east-1e" in out
    assert '"AvailabilityZones=us-east-1a,us-east-1b"' in out
