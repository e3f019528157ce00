"""Names shared between layers: a child's Parameter and the Output (or root Parameter) that feeds it.

The root template wires a child Parameter to the earlier layer's Output of the same name, or to
the root Parameter of that name, so a name written here is the whole contract between layers.
Renaming one is an API change: root.json, params/*.json and deployed stacks all see it.
"""

# Root parameters that name things.
PROJECT_NAME = "ProjectName"
ENVIRONMENT_NAME = "EnvironmentName"

# config -> everyone
KMS_KEY_ARN = "KmsKeyArn"
API_KEY_SECRET_ARN = "ApiKeySecretArn"  # noqa: S105 (an output name, not a secret)
LOG_RETENTION_DAYS = "LogRetentionDays"

# network -> security, endpoints, load balancer, cluster, service
VPC_CIDR = "VpcCidr"
VPC_ID = "VpcId"
AVAILABILITY_ZONES = "AvailabilityZones"
NAT_GATEWAY_MODE = "NatGatewayMode"
SUBNET_AVAILABILITY_ZONES = "SubnetAvailabilityZones"
PUBLIC_SUBNET_IDS = "PublicSubnetIds"
PRIVATE_SUBNET_IDS = "PrivateSubnetIds"
PRIVATE_ROUTE_TABLE_IDS = "PrivateRouteTableIds"

# root switch for the endpoints layer
INTERFACE_ENDPOINTS = "InterfaceEndpoints"

# security -> load balancer, cluster, service, endpoints
ALB_INGRESS_CIDR = "AlbIngressCidr"
ALB_SECURITY_GROUP_ID = "AlbSecurityGroupId"
TASK_SECURITY_GROUP_ID = "TaskSecurityGroupId"
INSTANCE_SECURITY_GROUP_ID = "InstanceSecurityGroupId"
ENDPOINT_SECURITY_GROUP_ID = "EndpointSecurityGroupId"

# load balancer -> service, root outputs
LISTENER_ARN = "ListenerArn"
TARGET_GROUP_ARN = "TargetGroupArn"
LOAD_BALANCER_FULL_NAME = "LoadBalancerFullName"
TARGET_GROUP_FULL_NAME = "TargetGroupFullName"
LOAD_BALANCER_DNS_NAME = "LoadBalancerDnsName"
SERVICE_URL = "ServiceUrl"

# cluster -> service, teardown
CLUSTER_NAME = "ClusterName"
CLUSTER_ARN = "ClusterArn"
CAPACITY_PROVIDER_NAME = "CapacityProviderName"
AUTO_SCALING_GROUP_NAME = "AutoScalingGroupName"

# service -> root outputs, deploy
SERVICE_NAME = "ServiceName"
TASK_DEFINITION_ARN = "TaskDefinitionArn"
GATEWAY_LOG_GROUP_NAME = "GatewayLogGroupName"
OLLAMA_LOG_GROUP_NAME = "OllamaLogGroupName"
ALARM_TOPIC_ARN = "AlarmTopicArn"
REQUEST_COUNT_RESOURCE_LABEL = "RequestCountResourceLabel"

# registry (standalone) and images
REPOSITORY_PREFIX = "RepositoryPrefix"
IMAGE_TAG = "ImageTag"  # supplied at deploy time, never in params/*.json
MODEL_NAME = "ModelName"
OLLAMA_NUM_PARALLEL = "OllamaNumParallel"
GATEWAY_REPOSITORY_ARN = "GatewayRepositoryArn"
OLLAMA_REPOSITORY_ARN = "OllamaRepositoryArn"
GATEWAY_IMAGE_URI = "GatewayImageUri"
OLLAMA_IMAGE_URI = "OllamaImageUri"

# Service sizing read by the rollout check before the service layer exists (cluster issue).
SERVICE_MAX_TASKS = "ServiceMaxTasks"
SERVICE_MIN_TASKS = "ServiceMinTasks"
DEPLOYMENT_MAX_PERCENT = "DeploymentMaximumPercent"
DEPLOYMENT_MIN_HEALTHY_PERCENT = "DeploymentMinimumHealthyPercent"
ASG_MAX_SIZE = "AsgMaxSize"
ASG_MIN_SIZE = "AsgMinSize"
INSTANCE_TYPE = "InstanceType"

# Parameters known only at deploy time: root declares them, params files never hold them.
DEPLOY_TIME_PARAMETERS = (IMAGE_TAG,)


def setting_parameter_output(env: str) -> str:
    """Output name of the config layer's SSM parameter ARN for a gateway setting.

    GATEWAY_MAX_BODY_BYTES -> GatewayMaxBodyBytesParameterArn
    """
    return "".join(part.capitalize() for part in env.split("_")) + "ParameterArn"
