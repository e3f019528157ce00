"""tools.preflight certificate, hosted zone (with a fake DNS resolver), GPU AMI, ECR and bucket
checks against stubbed AWS responses: ok, failed and could-not-check cases per check."""

from __future__ import annotations

import pytest
from botocore.stub import Stubber

from tests.tools.preflight_support import (
    ACCOUNT,
    CERT,
    NOW,
    PUBLIC_COM,
    REGION,
    ZONE_ID,
    ZONE_NS,
    context,
    expect_stack,
    fake_dns,
    run,
    text,
    title_of,
)
from tools.preflight import artifacts, domain
from tools.preflight.core import CheckUnavailable, Status

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


def test_hosted_zone_needed_for_nothing_is_still_checked_and_says_so(stubs):
    ctx = context(stubs, env="prod", CreateDnsRecord="false",
                  resolver=fake_dns({**PUBLIC_COM, "example.com": ZONE_NS}))
    stubs("route53").add_response("get_hosted_zone", zone(), {"Id": ZONE_ID})
    result = run(ctx, title_of(domain.check_hosted_zone))
    assert result.status is Status.OK
    assert result.needed == "public, a parent of llm.example.com, delegated in public DNS"
