"""What a GPU instance runs at boot (launch template user data), and the warm pool's launch hook.

The user data is a MIME multi-part document so that cloud-init runs the script on every boot,
not only the first: "To run user data scripts when an instance restarts, the user data must be
in the MIME multi-part format and specify ... cloud_final_modules: - [scripts-user, always]"
(https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-warm-pools.html,
Prerequisites). A warm-pool instance boots twice: once to enter the pool and again when a
scale-out starts it, and the launch hook below pauses it both times ("a newly launched instance
first pauses ... when it reaches the Warmed:Pending:Wait state, and then again when the
instance restarts and reaches the Pending:Wait state",
https://docs.aws.amazon.com/autoscaling/ec2/userguide/warm-pool-instance-lifecycle.html), so
each boot must complete it. The ECS agent configuration is written once.

Warm pool on: while the instance enters the pool (target lifecycle state `Warmed:*`, read from
instance metadata: https://docs.aws.amazon.com/autoscaling/ec2/userguide/retrieving-target-lifecycle-state-through-imds.html)
the script reads this release's two image URIs (IMAGES_PARAMETER), logs in to ECR with the
instance role and pulls both images, then
completes the hook: without a hook, "instances that take a long time to finish initializing
could be stopped ... before they are ready" (warm pools page, Lifecycle hooks). A later start
then runs the images from its own disk: ECS_IMAGE_PULL_BEHAVIOR=prefer-cached pulls only what is
not cached, and the agent deletes images it did not pull only with
ECS_ENABLE_UNTRACKED_IMAGE_CLEANUP=true, off by default (aws/amazon-ecs-agent@8dfceca6
README.md, agent/engine/docker_image_manager.go removeUnusedImages). Blocks the pull wrote are
on the volume itself: a later start reads them at the volume's throughput, not lazily from the
AMI snapshot. On any other boot (a start from the pool, a launch straight into the group) the
hook is completed in the background, so the ECS agent (ordered after cloud-final,
aws/amazon-ecs-agent@8dfceca6 packaging/amazon-linux-ami-integrated/ecs.service) starts at once.
The ECS-optimized AL2023 AMI is built from the minimal AMI without the AWS CLI
(aws/amazon-ecs-ami@a2532d35 release-al2023.auto.pkrvars.hcl, variables.pkr.hcl
packages_al2023): the script installs it from the AL2023 repository on first use. A failed
pull leaves the hook to its timeout and DefaultResult CONTINUE: the instance still enters the
pool, and its first task pulls the images itself.
"""

from __future__ import annotations

from troposphere import Base64, If, Join, Ref, Sub, autoscaling, iam, ssm

from app.contract import TIMEOUTS
from stacks import names, policies

BOUNDARY = "==LLMAPIBOOT=="
# The release's two image URIs, space-separated: the warm-up reads them here, not from the
# user data, so a release changes this parameter and not the launch template (a new launch
# template version would ask for `make roll`: tools/deploy/fleet.py).
IMAGES_PARAMETER = "/${ProjectName}/${EnvironmentName}/warm-up/images"
WARM_UP_HOOK = "warm-up"  # LifecycleHookName: the script names it
# How long the launch hook waits for the script before it continues anyway (our allowance: the
# CLI install and two pulls of several GB each; AWS's default is one hour).
WARM_UP_TIMEOUT_SECONDS = 1200

# Every line of /etc/ecs/ecs.config says why it is there below the template.
ECS_CONFIG = """ECS_CLUSTER=${Cluster}
ECS_ENABLE_GPU_SUPPORT=true
ECS_AWSVPC_BLOCK_IMDS=true
ECS_CONTAINER_STOP_TIMEOUT=${StopTimeout}s
ECS_IMAGE_PULL_BEHAVIOR=prefer-cached
ECS_WARM_POOLS_CHECK=${WarmPoolCheck}
ECS_ENABLE_SPOT_INSTANCE_DRAINING=${SpotDraining}
"""
# ECS_ENABLE_GPU_SUPPORT: advertise the GPUs so tasks can reserve them.
# ECS_AWSVPC_BLOCK_IMDS: tasks cannot reach instance metadata (the instance role's credentials).
# ECS_CONTAINER_STOP_TIMEOUT: SIGTERM-to-SIGKILL default, from the timeout budget.
# ECS_IMAGE_PULL_BEHAVIOR=prefer-cached: tags are immutable, so a cached multi-GB image is
#   the same image; skip the registry round trip (and use what the warm-up pulled).
# ECS_WARM_POOLS_CHECK: the agent must not register while the instance sits in the warm pool.
# ECS_ENABLE_SPOT_INSTANCE_DRAINING: on Spot, ECS sets the instance DRAINING on the two-minute
#   interruption notice (off by default;
#   https://docs.aws.amazon.com/AmazonECS/latest/developerguide/spot-instance-draining-linux-container.html).

USER_DATA = f"""Content-Type: multipart/mixed; boundary="{BOUNDARY}"
MIME-Version: 1.0

--{BOUNDARY}
Content-Type: text/cloud-config; charset="us-ascii"

#cloud-config
cloud_final_modules:
- [scripts-user, always]

--{BOUNDARY}
Content-Type: text/x-shellscript; charset="us-ascii"

#!/bin/bash
set -euo pipefail
if ! grep -qs '^ECS_CLUSTER=' /etc/ecs/ecs.config; then
cat >> /etc/ecs/ecs.config <<'CONFIG'
{ECS_CONFIG}CONFIG
fi
${{WarmUp}}
--{BOUNDARY}--
"""

# Shell only with $name (never the brace form): inside Fn::Sub a brace is a template variable.
WARM_UP = """imds() {
  token=$(curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' \\
    http://169.254.169.254/latest/api/token)
  curl -fsS -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"
}
complete_hook() {
  command -v aws >/dev/null || dnf install -y awscli-2
  group=$(aws autoscaling describe-auto-scaling-instances --region ${AWS::Region} \\
    --instance-ids "$instance" --query 'AutoScalingInstances[0].AutoScalingGroupName' \\
    --output text)
  aws autoscaling complete-lifecycle-action --region ${AWS::Region} \\
    --lifecycle-hook-name ${Hook} --auto-scaling-group-name "$group" \\
    --lifecycle-action-result CONTINUE --instance-id "$instance" \\
    || echo "no launch hook waits for $instance"
}
instance=$(imds instance-id)
state=$(imds autoscaling/target-lifecycle-state || echo none)
case "$state" in
Warmed:*)
  command -v aws >/dev/null || dnf install -y awscli-2
  systemctl start docker
  images=$(aws ssm get-parameter --region ${AWS::Region} --name '${ImagesParameter}' \\
    --query Parameter.Value --output text)
  registry=$(echo "$images" | cut -d/ -f1)
  aws ecr get-login-password --region ${AWS::Region} \\
    | docker login --username AWS --password-stdin "$registry"
  for image in $images; do docker pull "$image"; done
  docker logout "$registry"
  complete_hook
  ;;
*)
  complete_hook >>/var/log/llm-api-launch-hook.log 2>&1 </dev/null &
  ;;
esac
"""


def user_data(cluster) -> Base64:
    """The launch template's UserData: the ECS agent's configuration, and the warm-up."""
    return Base64(Sub(
        USER_DATA, Cluster=Ref(cluster), WarmPoolCheck=If("WarmPoolOn", "true", "false"),
        StopTimeout=str(TIMEOUTS.container_stop_timeout_seconds),
        SpotDraining=If("SpotOn", "true", "false"),
        WarmUp=If("WarmPoolOn", Sub(WARM_UP, Hook=WARM_UP_HOOK,
                                    ImagesParameter=Sub(IMAGES_PARAMETER)), "")))


def add_warm_pool(t, group, role, warm_min) -> None:
    """The warm pool, its launch hook, the release's image URIs, and what the warm-up needs of
    the instance role."""
    images = t.add_resource(ssm.Parameter(
        "WarmUpImagesParameter", Condition="WarmPoolOn", Name=Sub(IMAGES_PARAMETER),
        Type="String", Value=Join(" ", [Ref(names.GATEWAY_IMAGE_URI), Ref(names.OLLAMA_IMAGE_URI)]),
        Description="Image URIs a warm-pool instance pulls while entering the pool"))
    policy = t.add_resource(iam.PolicyType(
        "WarmUpPolicy", Condition="WarmPoolOn", PolicyName="warm-up", Roles=[Ref(role)],
        PolicyDocument=policies.warm_up_policy(
            repository_arns=[Ref(names.GATEWAY_REPOSITORY_ARN), Ref(names.OLLAMA_REPOSITORY_ARN)],
            images_parameter_arn=Sub("arn:${AWS::Partition}:ssm:${AWS::Region}:"
                                     "${AWS::AccountId}:parameter" + IMAGES_PARAMETER),
            group_arn=Sub("arn:${AWS::Partition}:autoscaling:${AWS::Region}:${AWS::AccountId}:"
                          "autoScalingGroup:*:autoScalingGroupName/${Group}", Group=Ref(group))),
    ))
    # After the policy and the parameter (an instance reads the one and completes the hook with
    # the other), before the pool launches.
    hook = t.add_resource(autoscaling.LifecycleHook(
        "WarmUpHook", Condition="WarmPoolOn", DependsOn=[policy.title, images.title],
        AutoScalingGroupName=Ref(group), LifecycleHookName=WARM_UP_HOOK,
        LifecycleTransition="autoscaling:EC2_INSTANCE_LAUNCHING",
        HeartbeatTimeout=WARM_UP_TIMEOUT_SECONDS, DefaultResult="CONTINUE",
    ))
    t.add_resource(autoscaling.WarmPool(
        "WarmPool", Condition="WarmPoolOn", DependsOn=[hook.title],
        AutoScalingGroupName=Ref(group), PoolState="Stopped", MinSize=Ref(warm_min),
        # Unset, the pool would hold max - desired instances; capped like this it holds
        # WarmPoolMinSize. No InstanceReusePolicy: ECS does not support ReuseOnScaleIn.
        MaxGroupPreparedCapacity=Ref(warm_min),
    ))
