"""Load balancer layer: the HTTPS ALB that carries long LLM streams to the gateway tasks.

- HTTPS on 443 with a TLS 1.3 policy, forwarding only requests that carry a bearer key (the
  rest get the gateway's 401 from the listener: stacks/auth_gate.py); HTTP on 80 answers 301.
- Certificate: an existing ACM ARN (CertificateArn), or, when that is empty, one created here
  and validated through DNS in the Route 53 zone HostedZoneId for DomainName. DomainName is
  required: the listener is always HTTPS, and the ALB's own DNS name matches no certificate.
  The Rules (rules(), carried by root so they run before any layer is created) refuse a
  missing HostedZoneId.
- Idle timeout and deregistration delay come from app/contract.py's timeout budget.
- Optional: access logs to a bucket of this layer, a WAF web ACL, a Route 53 alias record.
"""

from __future__ import annotations

from typing import Any

from troposphere import (
    And,
    Condition,
    Equals,
    FindInMap,
    GetAtt,
    If,
    Not,
    NoValue,
    Ref,
    Sub,
    Tags,
    cloudformation,
    route53,
    s3,
    wafv2,
)
from troposphere import certificatemanager as acm
from troposphere import elasticloadbalancingv2 as elb

from app.contract import GATEWAY_PORT, TIMEOUTS
from stacks import auth_gate, names, policies
from stacks.base import Layer, add_output, scanner_skips
from stacks.parameters import Param, boolean, number, string

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
HEALTH_CHECK_PATH = "/readyz"
ACCESS_LOG_PREFIX = "alb"

# Regions opened before August 2022 deliver ALB access logs from a regional ELB account;
# newer regions use the logdelivery.elasticloadbalancing.amazonaws.com service principal.
# (AWS docs: "Enable access logs for your Application Load Balancer", bucket policy.)
SERVICE_PRINCIPAL = "service-principal"
ELB_LOG_ACCOUNTS = {
    "us-east-1": "127311923021", "us-east-2": "033677994240", "us-west-1": "027434742980",
    "us-west-2": "797873946194", "af-south-1": "098369216593", "ap-east-1": "754344448648",
    "ap-southeast-3": "589379963580", "ap-south-1": "718504428378",
    "ap-northeast-3": "383597477331", "ap-northeast-2": "600734575887",
    "ap-southeast-1": "114774131450", "ap-southeast-2": "783225319266",
    "ap-northeast-1": "582318560864", "ca-central-1": "985666609251",
    "eu-central-1": "054676820928", "eu-west-1": "156460612806", "eu-west-2": "652711504416",
    "eu-south-1": "635631232127", "eu-west-3": "009996457667", "eu-north-1": "897822967062",
    "me-south-1": "076674570225", "sa-east-1": "507241528517",
    "us-gov-west-1": "048591011584", "us-gov-east-1": "190560391635",
    "cn-north-1": "638102146993", "cn-northwest-1": "037604701340",
    **{region: SERVICE_PRINCIPAL for region in (
        "ap-south-2", "ap-southeast-4", "ap-southeast-5", "ap-southeast-7", "eu-south-2",
        "eu-central-2", "me-central-1", "il-central-1", "ca-west-1", "mx-central-1",
        "ap-east-2", "ap-southeast-6",
    )},
}

# A managed rule group's OverrideAction "None": {} (keep the group's own actions); the key is a
# Python keyword, so it goes in as a mapping.
NO_OVERRIDE: dict[str, Any] = {"None": {}}
CRS_COUNT_ONLY = ("SizeRestrictions_BODY", "CrossSiteScripting_BODY", "GenericLFI_BODY",
                  "GenericRFI_BODY", "EC2MetaDataSSRF_BODY", "NoUserAgent_HEADER")

# Parameters of this layer (root passes them through from params/<env>.json).
SCHEME = "LoadBalancerScheme"
DELETION_PROTECTION = "DeletionProtection"
ACCESS_LOGS = "AccessLogs"
ACCESS_LOG_EXPIRATION_DAYS = "AccessLogExpirationDays"
CERTIFICATE_ARN = "CertificateArn"
DOMAIN_NAME = "DomainName"
HOSTED_ZONE_ID = "HostedZoneId"
CREATE_DNS_RECORD = "CreateDnsRecord"
WAF = "Waf"
WAF_RATE_LIMIT = "WafRateLimit"
HEALTH_INTERVAL = "HealthCheckIntervalSeconds"
HEALTH_TIMEOUT = "HealthCheckTimeoutSeconds"
HEALTHY_THRESHOLD = "HealthyThresholdCount"
UNHEALTHY_THRESHOLD = "UnhealthyThresholdCount"


class LoadBalancerLayer(Layer):
    logical_id = "LoadBalancer"
    file_name = "load_balancer.json"
    description = "Load balancer: HTTPS ALB, HTTP redirect, target group, certificate, WAF, logs"
    root_outputs = (names.SERVICE_URL, names.LOAD_BALANCER_DNS_NAME)

    def parameters(self):
        return (
            Param(names.VPC_ID, "AWS::EC2::VPC::Id", "VPC of the stack"),
            Param(names.PUBLIC_SUBNET_IDS, "List<AWS::EC2::Subnet::Id>",
                  "Public subnets, one per AZ (internet-facing ALB)"),
            Param(names.PRIVATE_SUBNET_IDS, "List<AWS::EC2::Subnet::Id>",
                  "Private subnets, one per AZ (internal ALB)"),
            Param(names.ALB_SECURITY_GROUP_ID, "AWS::EC2::SecurityGroup::Id",
                  "Security group of the ALB"),
            string(SCHEME, "internet-facing: public API; internal: reachable only from the VPC "
                   "and networks routed to it", allowed_values=("internet-facing", "internal"),
                   default="internet-facing"),
            boolean(DELETION_PROTECTION, "Refuse to delete the ALB (on in prod)", "true"),
            boolean(ACCESS_LOGS, "Write ALB access logs to an S3 bucket of this stack", "true"),
            number(ACCESS_LOG_EXPIRATION_DAYS, "Days before access-log objects expire",
                   default=365, min_value=1, max_value=3653),
            string(CERTIFICATE_ARN, "ARN of an existing ACM certificate for the HTTPS listener; "
                   "empty: create one for DomainName, DNS-validated in HostedZoneId", default="",
                   pattern=r"^(arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]+)?$",
                   constraint="empty, or an ACM certificate ARN"),
            # Required (no default, the pattern refuses empty): the listener is HTTPS only and a
            # certificate never matches the ALB's own DNS name, so clients need this name.
            string(DOMAIN_NAME, "Domain name of the API (required): the certificate's name, "
                   "ServiceUrl, and the DNS record when CreateDnsRecord is true",
                   pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
                   constraint="a lowercase DNS name such as api.example.com (required: the "
                              "HTTPS certificate must match it)"),
            string(HOSTED_ZONE_ID, "Route 53 public hosted zone of DomainName (certificate "
                   "validation, alias record); may be empty with CertificateArn set and "
                   "CreateDnsRecord false", default="", pattern=r"^(Z[A-Z0-9]{1,31})?$",
                   constraint="empty, or a hosted zone ID such as Z0123456789ABC"),
            boolean(CREATE_DNS_RECORD, "Create a Route 53 alias A record DomainName -> ALB in "
                    "HostedZoneId", "false"),
            boolean(WAF, "Associate a WAFv2 web ACL: AWS managed common and known-bad-input "
                    "rules, and a rate limit per client IP", "false"),
            number(WAF_RATE_LIMIT, "Requests per client IP per 5 minutes before WAF blocks it "
                   "(an LLM request is expensive: size it to your heaviest legitimate client)",
                   default=600, min_value=10, max_value=2000000000),
            number(HEALTH_INTERVAL, "Seconds between target health checks", default=15,
                   min_value=5, max_value=300),
            number(HEALTH_TIMEOUT, "Seconds a health check may take", default=5, min_value=2,
                   max_value=120),
            number(HEALTHY_THRESHOLD, "Passing checks before a target receives traffic",
                   default=2, min_value=2, max_value=10),
            number(UNHEALTHY_THRESHOLD, "Failing checks before a target is taken out",
                   default=3, min_value=2, max_value=10),
        )

    def build(self):
        t = self.new_template()
        declared = self.add_parameters(t)
        public, private, alb_group = (declared[n] for n in (
            names.PUBLIC_SUBNET_IDS, names.PRIVATE_SUBNET_IDS, names.ALB_SECURITY_GROUP_ID))

        t.add_condition("IsInternal", Equals(Ref(SCHEME), "internal"))
        t.add_condition("AccessLogsOn", Equals(Ref(ACCESS_LOGS), "true"))
        t.add_condition("CreateCertificate", Equals(Ref(CERTIFICATE_ARN), ""))
        t.add_condition("DnsRecordOn", Equals(Ref(CREATE_DNS_RECORD), "true"))
        t.add_condition("WafOn", Equals(Ref(WAF), "true"))
        t.add_condition("ElbLogAccount", And(
            Condition("AccessLogsOn"),
            Not(Equals(FindInMap("ElbLogDelivery", Ref("AWS::Region"), "Principal"),
                       SERVICE_PRINCIPAL)),
        ))
        t.add_mapping("ElbLogDelivery", {
            region: {"Principal": account} for region, account in sorted(ELB_LOG_ACCOUNTS.items())
        })

        bucket, bucket_ready = self._access_logs(t)

        alb = t.add_resource(elb.LoadBalancer(
            "LoadBalancer",
            Type="application",
            Scheme=Ref(SCHEME),
            Subnets=If("IsInternal", Ref(private), Ref(public)),
            SecurityGroups=[Ref(alb_group)],
            LoadBalancerAttributes=[
                _attr("idle_timeout.timeout_seconds", TIMEOUTS.alb_idle_timeout_seconds),
                _attr("routing.http.drop_invalid_header_fields.enabled", "true"),
                _attr("routing.http.desync_mitigation_mode", "defensive"),
                _attr("routing.http2.enabled", "true"),
                _attr("deletion_protection.enabled", Ref(DELETION_PROTECTION)),
                _attr("access_logs.s3.enabled", Ref(ACCESS_LOGS)),
                # ELB refuses an empty bucket value even with logs off: leave both keys out.
                If("AccessLogsOn", _attr("access_logs.s3.bucket", Ref(bucket)), NoValue),
                If("AccessLogsOn", _attr("access_logs.s3.prefix", ACCESS_LOG_PREFIX), NoValue),
            ],
            # The ALB checks it may write to the bucket when access logs are turned on.
            DependsOn=[bucket_ready.title],
            Metadata=scanner_skips(checkov={
                "CKV_AWS_91": "Access logging is the AccessLogs parameter (true by default and "
                "in every shipped params file); checkov cannot read the parameter.",
            }),
        ))

        target_group = t.add_resource(elb.TargetGroup(
            "TargetGroup",
            TargetType="ip",
            Protocol="HTTP",
            ProtocolVersion="HTTP1",
            Port=GATEWAY_PORT,
            VpcId=Ref(names.VPC_ID),
            HealthCheckEnabled=True,
            HealthCheckProtocol="HTTP",
            HealthCheckPath=HEALTH_CHECK_PATH,
            HealthCheckPort="traffic-port",
            Matcher=elb.Matcher(HttpCode="200"),
            HealthCheckIntervalSeconds=Ref(HEALTH_INTERVAL),
            HealthCheckTimeoutSeconds=Ref(HEALTH_TIMEOUT),
            HealthyThresholdCount=Ref(HEALTHY_THRESHOLD),
            UnhealthyThresholdCount=Ref(UNHEALTHY_THRESHOLD),
            TargetGroupAttributes=[
                # ECS deregisters a task and waits this long before SIGTERM: it must cover the
                # longest generation, so in-flight streams finish during a deploy.
                elb.TargetGroupAttribute(
                    Key="deregistration_delay.timeout_seconds",
                    Value=str(TIMEOUTS.deregistration_delay_seconds)),
                # Requests last from milliseconds to minutes: send each to the target with the
                # fewest in flight, not round robin.
                elb.TargetGroupAttribute(Key="load_balancing.algorithm.type",
                                         Value="least_outstanding_requests"),
            ],
        ))

        certificate = t.add_resource(acm.Certificate(
            "Certificate", Condition="CreateCertificate",
            DomainName=Ref(DOMAIN_NAME), ValidationMethod="DNS",
            DomainValidationOptions=[acm.DomainValidationOption(
                DomainName=Ref(DOMAIN_NAME), HostedZoneId=Ref(HOSTED_ZONE_ID))],
            Tags=Tags(Name=Ref(DOMAIN_NAME)),
        ))

        https = t.add_resource(elb.Listener(
            "HttpsListener",
            LoadBalancerArn=Ref(alb), Port=443, Protocol="HTTPS", SslPolicy=TLS_POLICY,
            Certificates=[elb.Certificate(CertificateArn=If(
                "CreateCertificate", Ref(certificate), Ref(CERTIFICATE_ARN)))],
            DefaultActions=[auth_gate.unauthorized("ollama")],
            ListenerAttributes=[_no_server_header()],
        ))
        auth_gate.add_rules(t, https, target_group)
        t.add_resource(elb.Listener(
            "HttpListener",
            LoadBalancerArn=Ref(alb), Port=80, Protocol="HTTP",
            DefaultActions=[elb.Action(Type="redirect", RedirectConfig=elb.RedirectConfig(
                Protocol="HTTPS", Port="443", Host="#{host}", Path="/#{path}",
                Query="#{query}", StatusCode="HTTP_301"))],
            ListenerAttributes=[_no_server_header()],
            Metadata=scanner_skips(checkov={
                "CKV_AWS_2": "This listener only redirects to HTTPS (301); it never forwards.",
                "CKV_AWS_103": "Plain-HTTP listener that only redirects to HTTPS; the HTTPS "
                "listener uses a TLS 1.3 policy.",
            }),
        ))

        t.add_resource(route53.RecordSetType(
            "DnsRecord", Condition="DnsRecordOn",
            HostedZoneId=Ref(HOSTED_ZONE_ID), Name=Ref(DOMAIN_NAME), Type="A",
            AliasTarget=route53.AliasTarget(
                DNSName=GetAtt(alb, "DNSName"),
                HostedZoneId=GetAtt(alb, "CanonicalHostedZoneID"),
                EvaluateTargetHealth=False),
        ))

        self._waf(t, alb)

        add_output(t, names.LISTENER_ARN, Ref(https), "ARN of the HTTPS listener")
        add_output(t, names.TARGET_GROUP_ARN, Ref(target_group), "ARN of the gateway target group")
        add_output(t, names.LOAD_BALANCER_FULL_NAME, GetAtt(alb, "LoadBalancerFullName"),
                   "app/<name>/<id>: the first half of an ALBRequestCountPerTarget label")
        add_output(t, names.TARGET_GROUP_FULL_NAME, GetAtt(target_group, "TargetGroupFullName"),
                   "targetgroup/<name>/<id>: the second half of an ALBRequestCountPerTarget label")
        add_output(t, names.LOAD_BALANCER_DNS_NAME, GetAtt(alb, "DNSName"),
                   "DNS name of the load balancer")
        add_output(t, names.SERVICE_URL, Sub(f"https://${{{DOMAIN_NAME}}}"),
                   "Base URL of the API: https:// + DomainName (the name the certificate covers)")
        return t

    def rules(self) -> dict[str, dict]:
        """Refuse certificate and DNS inputs that cannot work, before any layer is created."""
        has_zone = Not(Equals(Ref(HOSTED_ZONE_ID), ""))
        return {
            "CertificateNeedsZone": {
                "RuleCondition": Equals(Ref(CERTIFICATE_ARN), ""),
                "Assertions": [{
                    "Assert": has_zone,
                    "AssertDescription": "CertificateArn is empty, so the stack creates a "
                                         "certificate for DomainName and validates it through "
                                         "DNS: set HostedZoneId (or set CertificateArn)"}],
            },
            "DnsRecordNeedsZone": {
                "RuleCondition": Equals(Ref(CREATE_DNS_RECORD), "true"),
                "Assertions": [{
                    "Assert": has_zone,
                    "AssertDescription": "CreateDnsRecord is true: set HostedZoneId (the "
                                         "public zone of DomainName), or CreateDnsRecord=false"}],
            },
        }

    def _access_logs(self, t):
        bucket = t.add_resource(s3.Bucket(
            "AccessLogBucket", Condition="AccessLogsOn",
            # ALB can deliver access logs only to SSE-S3 buckets, not SSE-KMS.
            BucketEncryption=s3.BucketEncryption(ServerSideEncryptionConfiguration=[
                s3.ServerSideEncryptionRule(
                    ServerSideEncryptionByDefault=s3.ServerSideEncryptionByDefault(
                        SSEAlgorithm="AES256"))]),
            PublicAccessBlockConfiguration=s3.PublicAccessBlockConfiguration(
                BlockPublicAcls=True, BlockPublicPolicy=True, IgnorePublicAcls=True,
                RestrictPublicBuckets=True),
            OwnershipControls=s3.OwnershipControls(Rules=[
                s3.OwnershipControlsRule(ObjectOwnership="BucketOwnerEnforced")]),
            VersioningConfiguration=s3.VersioningConfiguration(Status="Enabled"),
            LifecycleConfiguration=s3.LifecycleConfiguration(Rules=[s3.LifecycleRule(
                Id="expire-access-logs", Status="Enabled",
                ExpirationInDays=Ref(ACCESS_LOG_EXPIRATION_DAYS),
                NoncurrentVersionExpiration=s3.NoncurrentVersionExpiration(NoncurrentDays=7),
                AbortIncompleteMultipartUpload=s3.AbortIncompleteMultipartUpload(
                    DaysAfterInitiation=1),
            )]),
            # Retained: access logs are audit evidence; teardown reports the bucket it kept.
            DeletionPolicy="Retain", UpdateReplacePolicy="Retain",
            Metadata=scanner_skips(checkov={
                "CKV_AWS_18": "This is the access-log bucket itself; logging it into another "
                "bucket would need a third for that one.",
            }),
        ))
        policy = t.add_resource(s3.BucketPolicy(
            "AccessLogBucketPolicy", Condition="AccessLogsOn", Bucket=Ref(bucket),
            PolicyDocument=policies.access_log_bucket_policy(
                bucket_arn=GetAtt(bucket, "Arn"),
                prefix=ACCESS_LOG_PREFIX,
                # Exactly one of the two principals remains once the condition is resolved.
                elb_account=If(
                    "ElbLogAccount",
                    Sub("arn:${AWS::Partition}:iam::${Account}:root",
                        Account=FindInMap("ElbLogDelivery", Ref("AWS::Region"), "Principal")),
                    NoValue),
                elb_service=If("ElbLogAccount", NoValue,
                               "logdelivery.elasticloadbalancing.amazonaws.com"),
            ),
        ))
        # A dependency that exists in both cases: the ALB may depend on a conditional bucket
        # policy only through a resource that is always there.
        ready = t.add_resource(cloudformation.WaitConditionHandle(
            "AccessLogBucketReady",
            Metadata={"BucketPolicy": If("AccessLogsOn", Ref(policy), "")},
        ))
        return bucket, ready

    def _waf(self, t, alb):
        visibility = lambda name: wafv2.VisibilityConfig(  # noqa: E731
            CloudWatchMetricsEnabled=True, MetricName=name, SampledRequestsEnabled=True)

        def managed(priority: int, name: str, overrides: tuple[str, ...] = ()):
            return wafv2.WebACLRule(
                Name=name, Priority=priority, OverrideAction=wafv2.OverrideAction(**NO_OVERRIDE),
                Statement=wafv2.Statement(ManagedRuleGroupStatement=wafv2.ManagedRuleGroupStatement(
                    VendorName="AWS", Name=name,
                    RuleActionOverrides=[
                        wafv2.RuleActionOverride(Name=rule, ActionToUse=wafv2.RuleAction(
                            Count=wafv2.CountAction())) for rule in overrides
                    ] or NoValue,
                )),
                VisibilityConfig=visibility(name),
            )

        acl = t.add_resource(wafv2.WebACL(
            "WebAcl", Condition="WafOn", Scope="REGIONAL",
            DefaultAction=wafv2.DefaultAction(Allow=wafv2.AllowAction()),
            VisibilityConfig=visibility("llm-api"),
            Rules=[
                wafv2.WebACLRule(
                    Name="rate-per-ip", Priority=0,
                    Action=wafv2.RuleAction(Block=wafv2.BlockAction()),
                    Statement=wafv2.Statement(RateBasedStatement=wafv2.RateBasedStatement(
                        AggregateKeyType="IP", Limit=Ref(WAF_RATE_LIMIT))),
                    VisibilityConfig=visibility("rate-per-ip"),
                ),
                # The common rule set's body rules would block ordinary prompts: over 8 KB
                # (SizeRestrictions_BODY), or about code, paths, URLs or the metadata address
                # (XSS/LFI/RFI/SSRF). Those only count; the gateway bounds bodies itself. SDK
                # clients may send no User-Agent, so that rule only counts too.
                managed(1, "AWSManagedRulesCommonRuleSet", overrides=CRS_COUNT_ONLY),
                managed(2, "AWSManagedRulesKnownBadInputsRuleSet"),
            ],
            # No WAF request logging: it needs an aws-waf-logs-* destination and may capture
            # prompts, which this project never logs. An operator can add it.
        ))
        t.add_resource(wafv2.WebACLAssociation(
            "WebAclAssociation", Condition="WafOn",
            ResourceArn=Ref(alb), WebACLArn=GetAtt(acl, "Arn"),
        ))


def _attr(key: str, value) -> elb.LoadBalancerAttributes:
    return elb.LoadBalancerAttributes(Key=key, Value=value if not isinstance(value, int) else str(value))


def _no_server_header() -> elb.ListenerAttribute:
    # Drops "Server: awselb/2.0" from the responses the ALB itself writes (redirects, errors).
    return elb.ListenerAttribute(Key="routing.http.response.server.enabled", Value="false")
