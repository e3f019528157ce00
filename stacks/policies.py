"""Every IAM document of the project, as awacs objects, in one place for review.

Rules (tests/stacks/test_policies.py enforces them on the generated templates):
- actions come from awacs action constants; no "*" action and no "service:*", except the
  KMS key policy's delegation to the account (the AWS default key policy; see key_policy());
- Resource "*" only where AWS offers nothing narrower, with the reason next to it;
- every trust policy names one service principal, with aws:SourceAccount where the service
  sends it (ECS tasks, flow logs) and not where it does not (EC2).
"""

from __future__ import annotations

import awacs.autoscaling as autoscaling
import awacs.ecr as ecr
import awacs.ecs as ecs
import awacs.kms as kms
import awacs.logs as logs
import awacs.s3 as s3
import awacs.secretsmanager as secretsmanager
import awacs.sns as sns
import awacs.ssm as ssm
import awacs.ssmmessages as ssmmessages
import awacs.sts as sts
from awacs.aws import (
    Allow,
    ArnEquals,
    ArnLike,
    Bool,
    BoolIfExists,
    Condition,
    Deny,
    Policy,
    PolicyDocument,
    Principal,
    Statement,
    StringEquals,
)
from troposphere import AccountId, Sub

VERSION = "2012-10-17"


def service_trust(service: str, source_account: bool) -> PolicyDocument:
    """Trust policy for one AWS service principal.

    source_account: add aws:SourceAccount (confused-deputy guard) for services that send it.
    """
    statement = Statement(
        Effect=Allow,
        Principal=Principal("Service", service),
        Action=[sts.AssumeRole],
    )
    if source_account:
        statement.Condition = Condition(StringEquals("aws:SourceAccount", AccountId))
    return PolicyDocument(Version=VERSION, Statement=[statement])


# --- network layer --------------------------------------------------------------------------


def flow_logs_trust() -> PolicyDocument:
    return service_trust("vpc-flow-logs.amazonaws.com", source_account=True)


def flow_logs_delivery(log_group_arn: object) -> PolicyDocument:
    """What VPC Flow Logs needs to write into its one log group."""
    return PolicyDocument(
        Version=VERSION,
        Statement=[
            Statement(
                Sid="WriteFlowLogGroup",
                Effect=Allow,
                Action=[logs.CreateLogStream, logs.PutLogEvents, logs.DescribeLogStreams],
                Resource=[log_group_arn, Sub("${Arn}:*", Arn=log_group_arn)],
            ),
        ],
    )


# --- cluster layer --------------------------------------------------------------------------


def ec2_trust() -> PolicyDocument:
    # No aws:SourceAccount: EC2 does not send it, and the instances would get no credentials.
    return service_trust("ec2.amazonaws.com", source_account=False)


# Session Manager in place of SSH; the ECS agent's calls are ecs_agent_policy() below.
INSTANCE_MANAGED_POLICIES = [
    Sub("arn:${AWS::Partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"),
]


def _allow(sid: str, actions: list, resources: list) -> Statement:
    return Statement(Sid=sid, Effect=Allow, Action=actions, Resource=resources)


def _ecr_pull(repository_arns: list) -> list[Statement]:
    return [
        # GetAuthorizationToken has no resource-level permissions: "*" is the only value.
        _allow("EcrLogin", [ecr.GetAuthorizationToken], ["*"]),
        _allow("PullTheTwoImages", [ecr.BatchCheckLayerAvailability, ecr.GetDownloadUrlForLayer,
                                    ecr.BatchGetImage], repository_arns),
    ]


def _container_instances(cluster_name: object) -> Sub:
    return Sub("arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:"
               "container-instance/${Cluster}/*", Cluster=cluster_name)


def ecs_agent_policy(cluster_arn: object, cluster_name: object) -> PolicyDocument:
    """The ECS agent's own calls, for this cluster only, in place of the AWS managed policy.

    From AmazonEC2ContainerServiceforEC2Role ("Permissions details",
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/security-iam-awsmanpol.html)
    and the calls the agent makes (aws/amazon-ecs-agent@8dfceca6
    ecs-agent/api/ecs/client/ecs_client.go), left out on purpose:
    - ecs:CreateCluster: the agent creates a cluster only when ECS_CLUSTER is empty (the
      user data sets it); ecs:DeregisterContainerInstance: "The Amazon ECS container agent
      doesn't call this API" (managed policy page);
    - ec2:DescribeTags and ecs:TagResource: only for propagating tags to the container
      instance (ECS_CONTAINER_INSTANCE_PROPAGATE_TAGS_FROM, off); ecs:ListTagsForResource: only
      for the task metadata endpoint's tags, which no container here reads;
    - ECR pulls and CloudWatch Logs: the task execution role does them (below); the
      warm-up's pull is warm_up_policy().
    Resource types per the Service Authorization Reference
    (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticcontainerservice.html):
    RegisterContainerInstance and Submit* take the cluster; Poll, StartTelemetrySession and
    UpdateContainerInstancesState (spot_draining_policy) a container instance, whose ARN
    carries the cluster name (container-instance/<cluster>/<id>: the only format since April
    2021, https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs-account-settings.html);
    DiscoverPollEndpoint has no resource type: "*" is the only value.
    """
    return PolicyDocument(Version=VERSION, Statement=[
        _allow("RegisterAndReportToThisCluster",
               [ecs.RegisterContainerInstance, ecs.SubmitTaskStateChange,
                ecs.SubmitContainerStateChange, ecs.SubmitAttachmentStateChanges], [cluster_arn]),
        _allow("AgentSessionsOfThisClustersInstances", [ecs.Poll, ecs.StartTelemetrySession],
               [_container_instances(cluster_name)]),
        _allow("DiscoverAgentEndpoints", [ecs.DiscoverPollEndpoint], ["*"]),
    ])


def spot_draining_policy(cluster_name: object) -> PolicyDocument:
    """Only with Spot: the agent sets its own instance DRAINING on the interruption notice
    (ECS_ENABLE_SPOT_INSTANCE_DRAINING), the one call it makes with UpdateContainerInstancesState
    (managed policy page, "Permissions details")."""
    return PolicyDocument(Version=VERSION, Statement=[_allow(
        "SpotDrainingOfThisClustersInstances", [ecs.UpdateContainerInstancesState],
        [_container_instances(cluster_name)])])


def warm_up_policy(repository_arns: list, images_parameter_arn: object,
                   group_arn: object) -> PolicyDocument:
    """A warm-pool instance entering the pool (stacks/boot.py): read the release's image URIs,
    pull the two images, then complete its launch hook. Only with the warm pool on.
    DescribeAutoScalingInstances has no resource type: "*" is the only value."""
    return PolicyDocument(Version=VERSION, Statement=_ecr_pull(repository_arns) + [
        _allow("ReadTheReleasesImages", [ssm.GetParameter], [images_parameter_arn]),
        _allow("FindOwnGroup", [autoscaling.DescribeAutoScalingInstances], ["*"]),
        _allow("CompleteOwnLaunchHook", [autoscaling.CompleteLifecycleAction], [group_arn]),
    ])


# --- config layer ---------------------------------------------------------------------------

KMS_USE_ACTIONS = [
    kms.Encrypt,
    kms.Decrypt,
    kms.ReEncryptFrom,
    kms.ReEncryptTo,
    kms.GenerateDataKey,
    kms.GenerateDataKeyWithoutPlaintext,
    kms.DescribeKey,
]


def key_policy() -> Policy:
    """Policy of the customer-managed key for log groups and the API-key secret.

    The first statement is the AWS default key policy: it delegates the key to the account's
    IAM policies ("kms:*" for the account root is AWS's documented default; without it the
    key can become unmanageable). Roles then get exactly what they need through IAM, with
    kms:ViaService conditions where the key is used through a service.
    The second lets CloudWatch Logs use the key, only for this account's log groups.
    """
    return Policy(
        Version=VERSION,
        Statement=[
            Statement(
                Sid="DelegateToAccountIam",
                Effect=Allow,
                Principal=Principal("AWS", Sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")),
                Action=[kms.Action("*")],
                Resource=["*"],  # in a key policy "*" means this key
            ),
            Statement(
                # CloudWatch alarms publish to the encrypted alarm topic; the AWS-managed SNS
                # key cannot grant them that, so the topic uses this key.
                Sid="AlarmsPublishForThisAccount",
                Effect=Allow,
                Principal=Principal("Service", "cloudwatch.amazonaws.com"),
                Action=[kms.Decrypt, kms.GenerateDataKey],
                Resource=["*"],  # in a key policy "*" means this key
                Condition=Condition(StringEquals("aws:SourceAccount", AccountId)),
            ),
            Statement(
                # EventBridge (the placement-failure rule) publishes to the same topic. SNS
                # documents that aws:SourceAccount/SourceArn are not supported in the key policy
                # for EventBridge-to-encrypted-topic delivery; the topic policy scopes it to
                # this stack's rule instead.
                Sid="EventBridgePublishes",
                Effect=Allow,
                Principal=Principal("Service", "events.amazonaws.com"),
                Action=[kms.Decrypt, kms.GenerateDataKey],
                Resource=["*"],  # in a key policy "*" means this key
            ),
            Statement(
                # Only AWS services may create grants on the key (none of ours needs one, and a
                # grant is a second path to the key). AWS Control Tower CT.KMS.PR.3.
                Sid="DenyGrantsExceptForAwsServices",
                Effect=Deny,
                Principal=Principal("AWS", "*"),
                Action=[kms.CreateGrant],
                Resource=["*"],  # in a key policy "*" means this key
                Condition=Condition(BoolIfExists({
                    "kms:GrantIsForAWSResource": "false",
                    "aws:PrincipalIsAWSService": "false",
                })),
            ),
            Statement(
                Sid="CloudWatchLogsForThisAccount",
                Effect=Allow,
                Principal=Principal("Service", Sub("logs.${AWS::Region}.amazonaws.com")),
                Action=KMS_USE_ACTIONS,
                Resource=["*"],  # in a key policy "*" means this key
                Condition=Condition(
                    ArnLike(
                        "kms:EncryptionContext:aws:logs:arn",
                        Sub("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:*"),
                    )
                ),
            ),
        ],
    )



# --- load balancer layer --------------------------------------------------------------------


def access_log_bucket_policy(bucket_arn: object, prefix: str, elb_account: object,
                             elb_service: object) -> PolicyDocument:
    """TLS-only access-log bucket that the regional ELB log delivery may write into.

    elb_account / elb_service: Fn::If values of which exactly one survives (older regions
    deliver from an ELB account, newer ones from a service principal).
    """
    delivery = Principal("AWS", elb_account)
    if not isinstance(delivery.data, dict):  # only Principal("*") holds a bare string
        raise TypeError(f"unexpected principal shape {delivery.data!r}")
    delivery.data["Service"] = elb_service  # awacs holds one type per Principal; add the other
    return PolicyDocument(
        Version=VERSION,
        Statement=[
            Statement(
                Sid="DenyInsecureTransport",
                Effect=Deny,
                Principal=Principal("*"),
                Action=[s3.Action("*")],  # a Deny: every S3 action without TLS is refused
                Resource=[bucket_arn, Sub("${Arn}/*", Arn=bucket_arn)],
                Condition=Condition(Bool("aws:SecureTransport", "false")),
            ),
            Statement(
                Sid="ElbLogDelivery",
                Effect=Allow,
                Principal=delivery,
                Action=[s3.PutObject],
                Resource=[Sub(f"${{Arn}}/{prefix}/AWSLogs/${{AWS::AccountId}}/*", Arn=bucket_arn)],
            ),
        ],
    )


# --- service layer --------------------------------------------------------------------------


def ecs_tasks_trust() -> PolicyDocument:
    """Trust for the execution and task roles: ECS tasks of this account only."""
    statement = Statement(
        Effect=Allow,
        Principal=Principal("Service", "ecs-tasks.amazonaws.com"),
        Action=[sts.AssumeRole],
        Condition=Condition([
            StringEquals("aws:SourceAccount", AccountId),
            ArnLike("aws:SourceArn",
                    Sub("arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:*")),
        ]),
    )
    return PolicyDocument(Version=VERSION, Statement=[statement])


def execution_role_policy(repository_arns: list, log_group_arns: list, parameter_arns: list,
                          secret_arn: object, key_arn: object) -> PolicyDocument:
    """What the ECS agent needs to start the task, and nothing else.

    log_group_arns: Fn::GetAtt <LogGroup>.Arn, which already ends in ":*" (its streams).
    """
    return PolicyDocument(
        Version=VERSION,
        Statement=_ecr_pull(repository_arns) + [
            Statement(
                Sid="WriteContainerLogs",
                Effect=Allow,
                Action=[logs.CreateLogStream, logs.PutLogEvents],
                Resource=log_group_arns,
            ),
            Statement(
                Sid="ReadGatewaySettings",
                Effect=Allow,
                Action=[ssm.GetParameters],
                Resource=parameter_arns,
            ),
            Statement(
                Sid="ReadApiKeys",
                Effect=Allow,
                Action=[secretsmanager.GetSecretValue],
                Resource=[secret_arn],
            ),
            Statement(
                Sid="DecryptApiKeysThroughSecretsManager",
                Effect=Allow,
                Action=[kms.Decrypt],
                Resource=[key_arn],
                Condition=Condition(StringEquals(
                    "kms:ViaService", Sub("secretsmanager.${AWS::Region}.amazonaws.com"))),
            ),
        ],
    )


def ecs_exec_policy() -> PolicyDocument:
    """ECS Exec (only when its parameter is on): the SSM agent's message channels."""
    return PolicyDocument(
        Version=VERSION,
        Statement=[
            Statement(
                Sid="EcsExecChannels",
                Effect=Allow,
                Action=[ssmmessages.CreateControlChannel, ssmmessages.CreateDataChannel,
                        ssmmessages.OpenControlChannel, ssmmessages.OpenDataChannel],
                # ssmmessages has no resource-level permissions: "*" is the only value.
                Resource=["*"],
            ),
        ],
    )


def alarm_topic_policy(topic: object, rule_arn: object) -> PolicyDocument:
    """Who may publish to the alarm topic: this account's alarms and the placement rule."""
    return PolicyDocument(
        Version=VERSION,
        Statement=[
            Statement(
                Sid="CloudWatchAlarms",
                Effect=Allow,
                Principal=Principal("Service", "cloudwatch.amazonaws.com"),
                Action=[sns.Publish],
                Resource=[topic],
                Condition=Condition(ArnLike(
                    "aws:SourceArn",
                    Sub("arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:*"))),
            ),
            Statement(
                Sid="PlacementFailureRule",
                Effect=Allow,
                Principal=Principal("Service", "events.amazonaws.com"),
                Action=[sns.Publish],
                Resource=[topic],
                Condition=Condition(ArnEquals("aws:SourceArn", rule_arn)),
            ),
        ],
    )
