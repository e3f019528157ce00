"""tools.preflight against stubbed AWS responses (botocore's Stubber) and a fake DNS resolver.

Every check gets a table of cases: ok, failed, could not check. The Stubber fails a test on any
call it was not told to expect (and on an expected call that did not come), so each case pins
the exact read-only calls a check makes. Clients make one attempt (no retries), so a stubbed
throttling error reaches the check as AWS would return it after the SDK's retries.
"""

from __future__ import annotations

import datetime

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from tools import params as params_file
from tools.preflight import artifacts, capacity, cli, domain, runner
from tools.preflight.core import Aws, CheckUnavailable, Context, Result, Status, Target

REGION = "us-east-1"
ACCOUNT = "123456789012"
ZONE_ID = "Z0000000000EXAMPLE"
ZONE_NS = ["ns-1.awsdns-01.org", "ns-2.awsdns-02.co.uk", "ns-3.awsdns-03.com",
           "ns-4.awsdns-04.net"]
CERT = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/00000000-0000-0000-0000-000000000001"
NOW = datetime.datetime(2026, 11, 28, tzinfo=datetime.UTC)
NO_RETRY = Config(retries={"total_max_attempts": 1})


@pytest.fixture
def stubs():
    made: dict[str, tuple] = {}

    def get(name: str):
        if name not in made:
            client = boto3.client(name, region_name=REGION, aws_access_key_id="x",
                                  aws_secret_access_key="x", config=NO_RETRY)  # noqa: S106
            stubber = Stubber(client)
            stubber.activate()
            made[name] = (client, stubber)
        return made[name][1]

    get.made = made
    yield get
    for _, stubber in made.values():
        stubber.assert_no_pending_responses()
        stubber.deactivate()


def fake_dns(answers: dict[str, list[str]]):
    """A resolver answering from a table; a name it does not know has no NS ([])."""
    def resolve(name: str) -> list[str]:
        answer = answers.get(name, [])
        if isinstance(answer, Exception):
            raise answer
        return answer
    return resolve


PUBLIC_COM = {"com.": ["a.gtld-servers.net"]}


def context(stubs, env: str = "dev", image_tag: str | None = "abc123", resolver=None,
            **overrides: str) -> Context:
    # Every client the checks may ask for is stubbed: an unexpected call fails the test.
    for name in ("ec2", "service-quotas", "cloudformation", "acm", "route53", "ssm", "ecr",
                 "s3"):
        stubs(name)
    aws = Aws(clients={"region": REGION, **{n: c for n, (c, _) in stubs.made.items()}})
    values = {**params_file.load_env(env), **overrides}
    target = Target(env=env, params=params_file.load_env(env), region=REGION, account=ACCOUNT)
    return Context(aws=aws, target=target, values=values, image_tag=image_tag,
                   resolver=resolver or fake_dns(PUBLIC_COM))


def run(ctx: Context, title: str) -> Result:
    check = dict(runner.CHECKS)[title]
    return runner.run_check(ctx, title, check)


def title_of(function) -> str:
    return next(t for t, f in runner.CHECKS if f is function)


def text(result: Result) -> str:
    return "\n".join(result.lines())


# ---------------------------------------------------------------------------------------------
# GPU vCPU quota
# ---------------------------------------------------------------------------------------------

def instance(kind: str, lifecycle: str | None = None, **tags: str) -> dict:
    body = {"InstanceId": "i-0", "InstanceType": kind,
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
    if lifecycle:
        body["InstanceLifecycle"] = lifecycle
    return body


def expect_types(ec2: Stubber, sizes: dict[str, int]) -> None:
    ec2.add_response("describe_instance_types", {"InstanceTypes": [
        {"InstanceType": k, "VCpuInfo": {"DefaultVCpus": v}} for k, v in sizes.items()]},
        {"InstanceTypes": sorted(sizes)})


def expect_quota(sq: Stubber, code: str, value: float | None, name: str, service: str = "ec2",
                 error: str | None = None) -> None:
    request = {"ServiceCode": service, "QuotaCode": code}
    if error:
        sq.add_client_error("get_service_quota", service_error_code=error,
                            service_message="no", expected_params=request)
    else:
        sq.add_response("get_service_quota", {"Quota": {"QuotaName": name, "Value": value}},
                        request)


GVT = "Running On-Demand G and VT instances"
RUNNING = {"Filters": [{"Name": "instance-state-name", "Values": ["pending", "running"]}]}


@pytest.mark.parametrize("case, quota, running, status, expected", [
    ("quota covers AsgMaxSize + surge", 64, [], Status.OK,
     ["quota 64 vCPUs", "12 vCPUs = (AsgMaxSize 2 + 1 for a `make roll` surge) x 4"]),
    ("new account: quota 0", 0, [], Status.FAILED,
     ["quota 0 vCPUs", "request-service-quota-increase --service-code ec2 --quota-code "
      "L-DB2E81BA --desired-value 12 --region us-east-1", "lower AsgMaxSize"]),
    ("other G instances use it; spot, standard and own instances do not count", 12,
     [instance("g4dn.xlarge"), instance("g5.xlarge", lifecycle="spot"), instance("m5.large"),
      instance("g5.xlarge", Project="llm-api", Environment="dev")], Status.FAILED,
     ["4 in use by other running G/VT instances", "--desired-value 16"]),
    ("exactly enough", 16, [instance("vt1.3xlarge")], Status.OK, ["12 free"]),
])
def test_gpu_quota(stubs, case, quota, running, status, expected):
    ctx = context(stubs)
    ec2, sq = stubs("ec2"), stubs("service-quotas")
    expect_types(ec2, {"g5.xlarge": 4})
    expect_quota(sq, "L-DB2E81BA", quota, GVT)
    ec2.add_response("describe_instances",
                     {"Reservations": [{"Instances": running}] if running else []}, RUNNING)
    others = {i["InstanceType"] for i in running if capacity.GPU_FAMILY.match(i["InstanceType"])
              and i.get("InstanceLifecycle") != "spot" and not i["Tags"]}
    if others:
        expect_types(ec2, {k: 4 for k in others})
    result = run(ctx, title_of(capacity.check_gpu_quota))
    assert result.status is status, case
    for fragment in expected:
        assert fragment in text(result), (case, text(result))


@pytest.mark.parametrize("case, errors, fragment", [
    ("no permission", ["AccessDeniedException"], "allow servicequotas:GetServiceQuota"),
    ("throttled", ["ThrottlingException"], "throttled"),
    ("no applied value and no default", ["NoSuchResourceException", "NoSuchResourceException"],
     "servicequotas:GetAWSDefaultServiceQuota did not answer"),
])
def test_gpu_quota_that_cannot_be_read_is_could_not_check(stubs, case, errors, fragment):
    ctx = context(stubs)
    ec2, sq = stubs("ec2"), stubs("service-quotas")
    expect_types(ec2, {"g5.xlarge": 4})
    expect_quota(sq, "L-DB2E81BA", None, GVT, error=errors[0])
    if len(errors) > 1:
        sq.add_client_error("get_aws_default_service_quota", service_error_code=errors[1],
                            expected_params={"ServiceCode": "ec2", "QuotaCode": "L-DB2E81BA"})
    result = run(ctx, title_of(capacity.check_gpu_quota))
    assert result.status is Status.UNKNOWN, case
    assert fragment in text(result)


def test_gpu_quota_falls_back_to_the_aws_default_when_no_value_is_applied(stubs):
    ctx = context(stubs)
    ec2, sq = stubs("ec2"), stubs("service-quotas")
    expect_types(ec2, {"g5.xlarge": 4})
    expect_quota(sq, "L-DB2E81BA", None, GVT, error="NoSuchResourceException")
    sq.add_response("get_aws_default_service_quota", {"Quota": {"QuotaName": GVT, "Value": 32}},
                    {"ServiceCode": "ec2", "QuotaCode": "L-DB2E81BA"})
    ec2.add_response("describe_instances", {"Reservations": []}, RUNNING)
    assert run(ctx, title_of(capacity.check_gpu_quota)).status is Status.OK


def test_a_quota_code_that_names_another_quota_is_never_ok(stubs):
    ctx = context(stubs)
    expect_types(stubs("ec2"), {"g5.xlarge": 4})
    expect_quota(stubs("service-quotas"), "L-DB2E81BA", 1000,
                 "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances")
    result = run(ctx, title_of(capacity.check_gpu_quota))
    assert result.status is Status.UNKNOWN
    assert "not the G and VT quota" in text(result)


def test_unknown_instance_type_fails_naming_it(stubs):
    ctx = context(stubs, InstanceType="g9.xlarge")
    stubs("ec2").add_response("describe_instance_types", {"InstanceTypes": []},
                              {"InstanceTypes": ["g9.xlarge"]})
    result = run(ctx, title_of(capacity.check_gpu_quota))
    assert result.status is Status.FAILED and "g9.xlarge" in text(result)


@pytest.mark.parametrize("max_size, percent, surge", [
    (2, 110, 1), (8, 110, 1), (10, 110, 1), (11, 110, 2), (2, 200, 2), (8, 200, 8), (1, 100, 1)])
def test_roll_surge(max_size, percent, surge):
    assert capacity.roll_surge(max_size, percent) == surge


# ---------------------------------------------------------------------------------------------
# VPCs and Elastic IPs
# ---------------------------------------------------------------------------------------------

def expect_stack(cfn: Stubber, exists: bool, name: str = "llm-api-dev") -> None:
    if exists:
        cfn.add_response("describe_stacks", {"Stacks": [{
            "StackName": name, "CreationTime": NOW, "StackStatus": "UPDATE_COMPLETE"}]},
            {"StackName": name})
    else:
        cfn.add_client_error("describe_stacks", service_error_code="ValidationError",
                             service_message=f"Stack with id {name} does not exist",
                             expected_params={"StackName": name})


@pytest.mark.parametrize("case, quota, vpcs, stack, status, fragment", [
    ("room for one more", 5, 1, False, Status.OK, "1 more"),
    ("full, new environment", 5, 5, False, Status.FAILED,
     "--service-code vpc --quota-code L-F678F1CE --desired-value 6"),
    ("full, but the stack exists", 5, 5, True, Status.OK, "already created"),
])
def test_vpcs(stubs, case, quota, vpcs, stack, status, fragment):
    ctx = context(stubs)
    expect_quota(stubs("service-quotas"), "L-F678F1CE", quota, "VPCs per Region", "vpc")
    stubs("ec2").add_response("describe_vpcs", {"Vpcs": [{"VpcId": f"vpc-{i}"}
                                                         for i in range(vpcs)]}, {})
    expect_stack(stubs("cloudformation"), stack)
    result = run(ctx, title_of(capacity.check_vpcs))
    assert result.status is status, case
    assert fragment in text(result)


def test_vpc_quota_without_permission_is_could_not_check(stubs):
    ctx = context(stubs)
    expect_quota(stubs("service-quotas"), "L-F678F1CE", None, "", "vpc", error="AccessDenied")
    assert run(ctx, title_of(capacity.check_vpcs)).status is Status.UNKNOWN


@pytest.mark.parametrize("case, env, quota, allocated, status, fragments", [
    ("dev: one NAT gateway", "dev", 5, 4, Status.OK, ["NatGatewayMode=single", "1 more"]),
    ("prod: one per AZ, too few left", "prod", 5, 4, Status.FAILED,
     ["NatGatewayMode=per-az", "2 more", "--quota-code L-0263D0A3 --desired-value 6",
      "NatGatewayMode=single in params/prod.json"]),
])
def test_elastic_ips(stubs, case, env, quota, allocated, status, fragments):
    ctx = context(stubs, env=env)
    expect_quota(stubs("service-quotas"), "L-0263D0A3", quota, "EC2-VPC Elastic IPs")
    stubs("ec2").add_response("describe_addresses", {"Addresses": [
        {"AllocationId": f"eipalloc-{i}"} for i in range(allocated)]}, {})
    expect_stack(stubs("cloudformation"), False, name=f"llm-api-{env}")
    result = run(ctx, title_of(capacity.check_elastic_ips))
    assert result.status is status, case
    for fragment in fragments:
        assert fragment in text(result), (case, text(result))


def test_elastic_ips_unreadable_is_could_not_check(stubs):
    ctx = context(stubs)
    expect_quota(stubs("service-quotas"), "L-0263D0A3", 5, "EC2-VPC Elastic IPs")
    stubs("ec2").add_client_error("describe_addresses", "UnauthorizedOperation")
    result = run(ctx, title_of(capacity.check_elastic_ips))
    assert result.status is Status.UNKNOWN and "ec2:DescribeAddresses" in text(result)


# ---------------------------------------------------------------------------------------------
# Instance type offered in every AZ
# ---------------------------------------------------------------------------------------------

OFFERINGS = {"LocationType": "availability-zone",
             "Filters": [{"Name": "instance-type", "Values": ["g5.xlarge"]}]}


@pytest.mark.parametrize("case, zones, offered, status, fragments", [
    ("both offered", "us-east-1a,us-east-1b", ["us-east-1a", "us-east-1b", "us-east-1c"],
     Status.OK, ["offered in us-east-1a, us-east-1b, us-east-1c"]),
    ("one AZ lacks it", "us-east-1a,us-east-1e", ["us-east-1a", "us-east-1b"], Status.FAILED,
     ["g5.xlarge is not offered in us-east-1e", '"AvailabilityZones=us-east-1a,us-east-1b"']),
    ("too few AZs offer it", "us-east-1a,us-east-1e", ["us-east-1a"], Status.FAILED,
     ["choose another InstanceType"]),
])
def test_zone_offerings(stubs, case, zones, offered, status, fragments):
    ctx = context(stubs, AvailabilityZones=zones)
    stubs("ec2").add_response("describe_instance_type_offerings", {"InstanceTypeOfferings": [
        {"InstanceType": "g5.xlarge", "LocationType": "availability-zone", "Location": z}
        for z in offered]}, OFFERINGS)
    result = run(ctx, title_of(capacity.check_zone_offerings))
    assert result.status is status, case
    for fragment in fragments:
        assert fragment in text(result), (case, text(result))


def test_zone_offerings_unreadable_is_could_not_check(stubs):
    ctx = context(stubs)
    stubs("ec2").add_client_error("describe_instance_type_offerings", "RequestLimitExceeded",
                                  expected_params=OFFERINGS)
    assert run(ctx, title_of(capacity.check_zone_offerings)).status is Status.UNKNOWN


# ---------------------------------------------------------------------------------------------
# Certificate and hosted zone
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern, name, covered", [
    ("llm.example.com", "llm.example.com", True),
    ("LLM.example.com.", "llm.example.com", True),
    ("*.example.com", "llm.example.com", True),
    ("*.example.com", "example.com", False),
    ("*.example.com", "a.llm.example.com", False),
    ("example.com", "llm.example.com", False),
])
def test_certificate_name_coverage(pattern, name, covered):
    assert domain.covers(pattern, name) is covered


def certificate(status: str = "ISSUED", name: str = "llm.example.com", sans=()) -> dict:
    return {"Certificate": {"CertificateArn": CERT, "DomainName": name, "Status": status,
                            "SubjectAlternativeNames": [name, *sans]}}


@pytest.mark.parametrize("case, answer, status, fragment", [
    ("issued, exact name", certificate(), Status.OK, "ISSUED"),
    ("issued, wildcard", certificate(name="*.example.com"), Status.OK, "*.example.com"),
    ("issued for another name", certificate(name="api.example.org"), Status.FAILED,
     "use a certificate for llm.example.com"),
    ("pending validation", certificate(status="PENDING_VALIDATION"), Status.FAILED,
     "PENDING_VALIDATION"),
    ("no such certificate", "ResourceNotFoundException", Status.FAILED,
     "ResourceNotFoundException"),
    ("no permission", "AccessDeniedException", Status.UNKNOWN, "acm:DescribeCertificate"),
])
def test_existing_certificate(stubs, case, answer, status, fragment):
    ctx = context(stubs, env="prod", CertificateArn=CERT)
    acm = stubs("acm")
    if isinstance(answer, str):
        acm.add_client_error("describe_certificate", answer,
                             expected_params={"CertificateArn": CERT})
    else:
        acm.add_response("describe_certificate", answer, {"CertificateArn": CERT})
    result = run(ctx, title_of(domain.check_certificate))
    assert result.status is status, case
    assert fragment in text(result), text(result)


@pytest.mark.parametrize("case, overrides, status, fragment", [
    ("certificate in another region", {"CertificateArn": CERT.replace(REGION, "eu-west-1")},
     Status.FAILED, "is in region eu-west-1"),
    ("no ARN: the stack requests one in the zone", {"CertificateArn": ""}, Status.OK,
     "DNS-validated in zone"),
    ("no ARN and no zone", {"CertificateArn": "", "HostedZoneId": ""}, Status.FAILED,
     "both empty"),
    ("no domain", {"DomainName": ""}, Status.FAILED, "DomainName is empty"),
])
def test_certificate_without_api_calls(stubs, case, overrides, status, fragment):
    ctx = context(stubs, env="prod", **overrides)
    result = run(ctx, title_of(domain.check_certificate))
    assert result.status is status, case
    assert fragment in text(result)


def zone(name: str = "example.com.", private: bool = False, servers=ZONE_NS) -> dict:
    return {"HostedZone": {"Id": f"/hostedzone/{ZONE_ID}", "Name": name, "CallerReference": "x",
                           "Config": {"PrivateZone": private}},
            "DelegationSet": {"NameServers": list(servers)}}


@pytest.mark.parametrize("case, answer, dns, status, fragments", [
    ("delegated", zone(), {**PUBLIC_COM, "example.com": [f"{n}." for n in ZONE_NS]},
     Status.OK, ["public DNS NS: ns-1.awsdns-01.org"]),
    ("not delegated", zone(), PUBLIC_COM, Status.FAILED,
     ["the zone is not delegated", "set NS to: ns-1.awsdns-01.org", "PENDING_VALIDATION",
      "for hours"]),
    ("delegated to another zone", zone(), {**PUBLIC_COM, "example.com": ["ns-9.awsdns-09.com"]},
     Status.FAILED, ["delegates it to other name servers"]),
    ("private zone", zone(private=True), PUBLIC_COM, Status.FAILED, ["private zone"]),
    ("not a parent of DomainName", zone(name="example.org."), PUBLIC_COM, Status.FAILED,
     ["not a parent of llm-dev.example.com"]),
    ("no such zone", "NoSuchHostedZone", PUBLIC_COM, Status.FAILED, ["NoSuchHostedZone"]),
    ("no permission", "AccessDenied", PUBLIC_COM, Status.UNKNOWN, ["route53:GetHostedZone"]),
    ("offline: the resolver answers NXDOMAIN for everything", zone(), {}, Status.UNKNOWN,
     ["does not resolve public names", "dig NS example.com"]),
    ("resolver timeout", zone(), {"com.": CheckUnavailable("no DNS answer for NS com.")},
     Status.UNKNOWN, ["no DNS answer"]),
])
def test_hosted_zone(stubs, case, answer, dns, status, fragments):
    ctx = context(stubs, resolver=fake_dns(dns))
    route53 = stubs("route53")
    if isinstance(answer, str):
        route53.add_client_error("get_hosted_zone", answer, expected_params={"Id": ZONE_ID})
    else:
        route53.add_response("get_hosted_zone", answer, {"Id": ZONE_ID})
    result = run(ctx, title_of(domain.check_hosted_zone))
    assert result.status is status, case
    for fragment in fragments:
        assert fragment in text(result), (case, text(result))


def test_hosted_zone_needed_but_missing_fails(stubs):
    ctx = context(stubs, HostedZoneId="")
    result = run(ctx, title_of(domain.check_hosted_zone))
    assert result.status is Status.FAILED and "HostedZoneId is empty" in text(result)


def test_public_resolver_maps_nxdomain_to_no_records_and_errors_to_could_not_check(monkeypatch):
    import dns.exception
    import dns.resolver

    def nxdomain(self, name, kind):
        raise dns.resolver.NXDOMAIN()

    monkeypatch.setattr(dns.resolver.Resolver, "resolve", nxdomain)
    assert domain.public_dns_resolver("example.com") == []

    def timeout(self, name, kind):
        raise dns.exception.Timeout()

    monkeypatch.setattr(dns.resolver.Resolver, "resolve", timeout)
    with pytest.raises(CheckUnavailable, match="no DNS answer for NS example.com"):
        domain.public_dns_resolver("example.com")


# ---------------------------------------------------------------------------------------------
# GPU AMI parameter, images, artifact bucket
# ---------------------------------------------------------------------------------------------

AMI_PATH = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"


@pytest.mark.parametrize("case, answer, status, fragment", [
    ("resolves", {"Parameter": {"Name": AMI_PATH, "Type": "String", "Value": "ami-0abc"}},
     Status.OK, "-> ami-0abc"),
    ("missing", "ParameterNotFound", Status.FAILED, "no such parameter"),
    ("no permission", "AccessDeniedException", Status.UNKNOWN, "ssm:GetParameter"),
])
def test_gpu_ami(stubs, case, answer, status, fragment):
    ctx = context(stubs)
    ssm = stubs("ssm")
    if isinstance(answer, str):
        ssm.add_client_error("get_parameter", answer, expected_params={"Name": AMI_PATH})
    else:
        ssm.add_response("get_parameter", answer, {"Name": AMI_PATH})
    result = run(ctx, title_of(artifacts.check_gpu_ami))
    assert result.status is status, case
    assert fragment in text(result)


def test_gpu_ami_that_is_not_a_parameter_path_fails(stubs):
    result = run(context(stubs, GpuAmiId="ami-0abc"), title_of(artifacts.check_gpu_ami))
    assert result.status is Status.FAILED and "not an SSM parameter path" in text(result)


def expect_registry(cfn: Stubber, exists: bool = True) -> None:
    name = "llm-api-dev-registry"
    if not exists:
        expect_stack(cfn, False, name=name)
        return
    cfn.add_response("describe_stacks", {"Stacks": [{
        "StackName": name, "CreationTime": NOW, "StackStatus": "CREATE_COMPLETE",
        "Outputs": [{"OutputKey": "GatewayRepositoryName", "OutputValue": "reg/gateway"},
                    {"OutputKey": "OllamaRepositoryName", "OutputValue": "reg/ollama"}]}]},
        {"StackName": name})


def expect_image(ecr: Stubber, repository: str, error: str | None = None) -> None:
    request = {"repositoryName": repository, "imageIds": [{"imageTag": "abc123"}]}
    if error:
        ecr.add_client_error("describe_images", error, expected_params=request)
    else:
        ecr.add_response("describe_images", {"imageDetails": [
            {"repositoryName": repository, "imageTags": ["abc123"]}]}, request)


@pytest.mark.parametrize("case, registry, errors, status, fragments", [
    ("both present", True, (None, None), Status.OK, ["reg/gateway:abc123", "reg/ollama:abc123"]),
    ("tag missing in one", True, (None, "ImageNotFoundException"), Status.FAILED,
     ["reg/ollama: no tag abc123", "make images ENV=dev"]),
    ("bootstrap has not run", False, ("RepositoryNotFoundException",
                                      "RepositoryNotFoundException"), Status.FAILED,
     ["bootstrap has not run yet", "llm-api-dev/gateway: no repository", "make bootstrap"]),
    ("no permission", True, ("AccessDeniedException", None), Status.UNKNOWN,
     ["ecr:DescribeImages"]),
])
def test_images(stubs, case, registry, errors, status, fragments):
    ctx = context(stubs)
    expect_registry(stubs("cloudformation"), registry)
    prefix = "reg" if registry else "llm-api-dev"
    for image, error in zip(("gateway", "ollama"), errors, strict=True):
        if status is Status.UNKNOWN and image == "ollama":
            break  # the first denial ends the check
        expect_image(stubs("ecr"), f"{prefix}/{image}", error)
    result = run(ctx, title_of(artifacts.check_images))
    assert result.status is status, case
    for fragment in fragments:
        assert fragment in text(result), (case, text(result))


def test_images_without_a_tag_fail_naming_make_images(stubs, monkeypatch):
    monkeypatch.setattr(artifacts, "read_record", lambda env: None)
    ctx = context(stubs, image_tag=None)
    expect_registry(stubs("cloudformation"))
    result = run(ctx, title_of(artifacts.check_images))
    assert result.status is Status.FAILED and "make images ENV=dev" in text(result)


BUCKET = f"llm-api-dev-artifacts-{ACCOUNT}-{REGION}"


@pytest.mark.parametrize("case, error, status, fragment", [
    ("exists", None, Status.OK, f"s3://{BUCKET} exists"),
    ("bootstrap has not run", "404", Status.FAILED, "bootstrap has not run yet"),
    ("forbidden: no permission or another owner", "403", Status.UNKNOWN, "another account"),
])
def test_artifact_bucket(stubs, case, error, status, fragment):
    ctx = context(stubs)
    request = {"Bucket": BUCKET, "ExpectedBucketOwner": ACCOUNT}
    if error:
        stubs("s3").add_client_error("head_bucket", error, expected_params=request)
    else:
        stubs("s3").add_response("head_bucket", {}, request)
    result = run(ctx, title_of(artifacts.check_artifact_bucket))
    assert result.status is status, case
    assert fragment in text(result)


# ---------------------------------------------------------------------------------------------
# Runner, verdict, CLI
# ---------------------------------------------------------------------------------------------

def test_every_check_prints_found_needed_and_fix_lines():
    result = Result("X", Status.FAILED, "found it", "need it", ["do this", "or that"])
    assert result.lines() == ["[FAILED]          X", f"{'':<20}found:  found it",
                              f"{'':<20}needed: need it", f"{'':<20}fix:    do this",
                              f"{'':<20}{'':<8}or that"]


def test_an_aws_error_outside_the_guarded_calls_is_could_not_check(stubs):
    from botocore.exceptions import ClientError

    def raises(ctx, title):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "X")

    result = runner.run_check(context(stubs), "raw", raises)
    assert result.status is Status.UNKNOWN


OK, FAIL, UNK = (Result("c", s) for s in (Status.OK, Status.FAILED, Status.UNKNOWN))


@pytest.mark.parametrize("results, strict, passed, warning", [
    ([OK, OK], False, True, False),
    ([OK, FAIL], False, False, False),
    ([OK, UNK], False, True, True),
    ([OK, UNK], True, False, True),
    ([FAIL, UNK], False, False, True),
])
def test_verdict(results, strict, passed, warning):
    verdict, lines = runner.verdict("dev", results, strict)
    assert verdict is passed
    assert any(line.startswith("WARNING") for line in lines) is warning
    assert lines[-1].endswith("passed") is passed


def test_cli_bad_parameter_is_one_line_with_the_fix(capsys):
    assert cli.main(["dev", "--parameter", "nokey"], aws=Aws(clients={"region": REGION})) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--parameter 'nokey' is not KEY=VALUE" in err[0]


def test_cli_unknown_environment_is_one_line_with_the_fix(capsys):
    assert cli.main(["nope"], aws=Aws(clients={"region": REGION})) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no params file for environment 'nope'" in err[0]
    assert "copy dev.json" in err[0]
