"""TLS and DNS checks: the existing certificate, or the hosted zone and its public delegation."""

from __future__ import annotations

from botocore.exceptions import ClientError

from tools.preflight.core import (
    CheckUnavailable,
    Context,
    Result,
    call,
    error_text,
    failed,
    ok,
)

CERTIFICATE_ARN = "CertificateArn"
DOMAIN_NAME = "DomainName"
HOSTED_ZONE_ID = "HostedZoneId"
CREATE_DNS_RECORD = "CreateDnsRecord"

# Without delegation ACM cannot see its validation CNAME: "ACM makes repeated attempts to
# validate a certificate for 72 hours and then times out" (https://docs.aws.amazon.com/acm/
# latest/APIReference/API_CertificateDetail.html, Status), and the stack's certificate
# resource waits for ISSUED the whole time.
PENDING_WARNING = ("until then ACM cannot validate the certificate: it stays PENDING_VALIDATION "
                   "(ACM retries for up to 72 hours) and the stack waits on it for hours")
DNS_TIMEOUT_SECONDS = 4.0


def bare(name: str) -> str:
    return name.lower().rstrip(".")


def covers(pattern: str, domain: str) -> bool:
    """An ACM name covers domain exactly, or as a wildcard for exactly one leftmost label
    ("*.example.com" covers "api.example.com", not "example.com" nor "a.b.example.com":
    https://docs.aws.amazon.com/acm/latest/userguide/acm-certificate-characteristics.html)."""
    pattern, domain = bare(pattern), bare(domain)
    if pattern == domain:
        return True
    return (pattern.startswith("*.") and "." in domain
            and domain.split(".", 1)[1] == pattern[2:])


def is_parent(zone: str, domain: str) -> bool:
    zone, domain = bare(zone), bare(domain)
    return domain == zone or domain.endswith("." + zone)


def public_dns_resolver(name: str) -> list[str]:
    """NS names for name from this machine's resolver; [] for NXDOMAIN/no NS; CheckUnavailable
    when the resolver does not answer (no network, timeout, SERVFAIL)."""
    import dns.exception
    import dns.resolver

    try:
        resolver = dns.resolver.Resolver()
        resolver.lifetime = DNS_TIMEOUT_SECONDS
        answer = resolver.resolve(name, "NS")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except (dns.exception.DNSException, OSError) as error:
        raise CheckUnavailable(f"no DNS answer for NS {name} ({type(error).__name__}: "
                               f"{error})", f"run preflight where public DNS resolves, or: "
                               f"dig NS {name}") from None
    return sorted(bare(record.target.to_text()) for record in answer)


def check_certificate(ctx: Context, name: str) -> Result:
    arn = ctx.value(CERTIFICATE_ARN)
    domain = ctx.value(DOMAIN_NAME)
    zone = ctx.value(HOSTED_ZONE_ID)
    if not domain:
        return failed(name, "DomainName is empty", "a DomainName: the listener is HTTPS only, "
                      "and no certificate covers the load balancer's own DNS name",
                      f"params/{ctx.env}.json: \"DomainName=api.example.com\" (your name)")
    if not arn:
        if not zone:
            return failed(name, "CertificateArn and HostedZoneId are both empty",
                          f"an issued certificate for {domain}, or a hosted zone to validate "
                          "a new one in", f"params/{ctx.env}.json: \"CertificateArn=arn:aws:"
                          f"acm:{ctx.region}:...\" or \"HostedZoneId=Z...\"")
        return ok(name, f"CertificateArn is empty: the stack requests a certificate for "
                        f"{domain}, DNS-validated in zone {zone} (next check)")
    parts = arn.split(":")
    arn_region = parts[3] if len(parts) > 3 else ""
    needed = f"ISSUED, in {ctx.region}, covering {domain}"
    if arn_region != ctx.region:
        return failed(name, f"{arn} is in region {arn_region or '?'}", needed,
                      f"an ALB uses certificates of its own region: request or import one in "
                      f"{ctx.region} (aws acm request-certificate --domain-name {domain} "
                      f"--validation-method DNS --region {ctx.region}) and set CertificateArn")
    acm = ctx.aws.client("acm")
    try:
        detail = call(acm.describe_certificate, "acm:DescribeCertificate",
                      allow=("ResourceNotFoundException", "InvalidArnException"),
                      CertificateArn=arn)["Certificate"]
    except ClientError as error:
        return failed(name, f"{arn}: {error_text(error)}", needed,
                      f"aws acm list-certificates --region {ctx.region}, and set "
                      f"CertificateArn in params/{ctx.env}.json")
    status = detail.get("Status", "?")
    names_on_it = sorted({detail.get("DomainName", ""), *detail.get("SubjectAlternativeNames",
                                                                     [])} - {""})
    found = f"{status}, names {', '.join(names_on_it) or 'none'}"
    if status != "ISSUED":
        return failed(name, found, needed, f"finish validation (aws acm describe-certificate "
                      f"--certificate-arn {arn}), or use an issued certificate")
    if not any(covers(n, domain) for n in names_on_it):
        return failed(name, found, needed, f"use a certificate for {domain} (or *."
                      f"{domain.split('.', 1)[-1]}), or set DomainName to a name it covers")
    return ok(name, found, needed)


def check_hosted_zone(ctx: Context, name: str) -> Result:
    zone_id = ctx.value(HOSTED_ZONE_ID).split("/")[-1]
    domain = ctx.value(DOMAIN_NAME)
    uses = []
    if not ctx.value(CERTIFICATE_ARN):
        uses.append("validates the new certificate")
    if ctx.value(CREATE_DNS_RECORD) == "true":
        uses.append(f"holds the record {domain}")
    if not zone_id:
        if uses:
            return failed(name, "HostedZoneId is empty", f"a public zone that {' and '.join(uses)}",
                          f"aws route53 list-hosted-zones-by-name --dns-name "
                          f"{domain.split('.', 1)[-1]}; params/{ctx.env}.json: \"HostedZoneId=Z...\"")
        return ok(name, "no zone needed (CertificateArn set, CreateDnsRecord false)")
    needed = (f"public, a parent of {domain}, delegated in public DNS"
              + (f" (it {' and '.join(uses)})" if uses else ""))
    route53 = ctx.aws.client("route53")
    try:
        answer = call(route53.get_hosted_zone, "route53:GetHostedZone",
                      allow=("NoSuchHostedZone", "InvalidInput"), Id=zone_id)
    except ClientError as error:
        return failed(name, f"{zone_id}: {error_text(error)}", needed,
                      "aws route53 list-hosted-zones; set HostedZoneId in "
                      f"params/{ctx.env}.json")
    zone = answer["HostedZone"]
    zone_name = bare(zone["Name"])
    expected = sorted(bare(n) for n in answer.get("DelegationSet", {}).get("NameServers", []))
    if zone.get("Config", {}).get("PrivateZone"):
        return failed(name, f"{zone_id} ({zone_name}) is a private zone", needed,
                      "ACM and clients need a public zone: create one (aws route53 "
                      f"create-hosted-zone --name {zone_name} ...) and set HostedZoneId")
    if not domain or not is_parent(zone_name, domain):
        return failed(name, f"{zone_id} is {zone_name}, not a parent of {domain or '(empty)'}",
                      needed, "set HostedZoneId to the zone of DomainName, or DomainName to a "
                      f"name under {zone_name}")
    # Delegated means public DNS answers NS for the zone with this zone's name servers. A
    # resolver that cannot resolve the zone's top-level domain is not public DNS (filtered or
    # offline networks answer NXDOMAIN for everything): then we could not check.
    top = zone_name.rsplit(".", 1)[-1] + "."
    if not ctx.resolver(top):
        raise CheckUnavailable(f"this machine's DNS does not resolve public names (no NS "
                               f"answer for {top!r}), so the delegation of {zone_name} is "
                               "unknown", f"run preflight where public DNS resolves, or: dig "
                               f"NS {zone_name} (expect {', '.join(expected)})")
    public = sorted({bare(n) for n in ctx.resolver(zone_name)})
    found = f"{zone_id} = {zone_name} (public); public DNS NS: {', '.join(public) or 'none'}"
    if public == expected:
        return ok(name, found, needed)
    why = ("the zone is not delegated" if not public else
           "public DNS delegates it to other name servers (another zone of the same name?)")
    return failed(name, f"{found}; {why}", needed,
                  f"at the registrar of {zone_name} (or in its parent zone) set NS to: "
                  f"{', '.join(expected)}", PENDING_WARNING)


CHECKS = (
    ("certificate (existing ARN: issued, this region, covers DomainName)", check_certificate),
    ("hosted zone (public, parent of DomainName, delegated)", check_hosted_zone),
)
