"""Cluster layer: ECS cluster, GPU launch template, Auto Scaling group, capacity provider.

Service autoscaling only adds tasks; the capacity provider's managed scaling is what adds GPU
instances for them (without it, new tasks wait in PROVISIONING forever). Managed termination
protection keeps scale-in from stopping an instance that still runs a task, which requires
the group to protect new instances from scale-in.
"""

from __future__ import annotations

from troposphere import (
    Equals,
    FindInMap,
    GetAtt,
    If,
    NoValue,
    Ref,
    Sub,
    Tags,
    autoscaling,
    ec2,
    ecs,
    iam,
)

from stacks import boot, names, policies
from stacks import wake as wake_budget
from stacks.base import NAMING, Layer, add_output
from stacks.gpu import DEFAULT_INSTANCE_TYPE, GPUS_PER_INSTANCE, spot_alternatives
from stacks.parameters import Param, boolean, number, string

GPU_AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"
ROOT_DEVICE = "/dev/xvda"  # root device of the Amazon Linux 2023 ECS AMIs

AMI_ID = "GpuAmiId"
ROOT_VOLUME_GIB = "RootVolumeSizeGiB"
ROOT_VOLUME_THROUGHPUT = "RootVolumeThroughputMiBps"
CAPACITY_STEP = "CapacityStepInstances"
CAPACITY_TARGET = "CapacityTargetPercent"
WARM_POOL = "WarmPoolEnabled"
WARM_POOL_MIN = "WarmPoolMinSize"
SPOT = "SpotInstances"
SPOT_MAPPING = "SpotAlternative"

class ClusterLayer(Layer):
    logical_id = "Cluster"
    file_name = "cluster.json"
    description = "Cluster: ECS cluster, GPU launch template, Auto Scaling group, capacity provider"
    root_outputs = (names.CLUSTER_NAME,)
    root_definitions = {AMI_ID: {
        "Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>",
        "Default": GPU_AMI_PARAMETER,
    }}

    def parameters(self):
        return NAMING + (
            Param(names.PRIVATE_SUBNET_IDS, "List<AWS::EC2::Subnet::Id>",
                  "Private subnets, one per AZ"),
            Param(names.INSTANCE_SECURITY_GROUP_ID, "AWS::EC2::SecurityGroup::Id",
                  "Security group of the instances"),
            # The AMI ID itself: root declares the SSM-typed parameter (root_definitions) and
            # resolves it. A nested SSM-typed parameter would take the resolved ID for a name.
            Param(AMI_ID, "AWS::EC2::Image::Id",
                  "ECS GPU AMI ID, resolved by root from the SSM public parameter"),
            Param(names.SUBNET_AVAILABILITY_ZONES, "List<AWS::EC2::AvailabilityZone::Name>",
                  "AZs of the private subnets, in subnet order"),
            string(names.INSTANCE_TYPE,
                   "GPU instance type; one task per GPU (stacks/gpu.py lists the GPU counts)",
                   default=DEFAULT_INSTANCE_TYPE, allowed_values=tuple(sorted(GPUS_PER_INSTANCE))),
            number(ROOT_VOLUME_GIB, "Root volume size (GiB): the images, with the baked model, "
                   "are several GB each", default=100, min_value=30, max_value=2000),
            # gp3: 125 MiB/s included, at most 0.25 MiB/s per IOPS, and the volume keeps the
            # default 3,000 IOPS, so 750 (https://docs.aws.amazon.com/ebs/latest/userguide/general-purpose.html).
            number(ROOT_VOLUME_THROUGHPUT, "Root volume gp3 throughput (MiB/s): a task start reads "
                   "the model from it (stacks/wake.py); above 125 costs extra", default=125,
                   min_value=125, max_value=750),
            number(names.ASG_MIN_SIZE, "Fewest GPU instances", default=1, min_value=0,
                   max_value=100),
            number(names.ASG_MAX_SIZE, "Most GPU instances (must cover a rolling deploy at the "
                   "service's maximum; see tools/rollout.py)", default=2, min_value=1,
                   max_value=100),
            number(CAPACITY_TARGET, "Managed scaling target: 100 packs tasks onto instances; "
                   "lower keeps spare instances", default=100, min_value=1, max_value=100),
            number(CAPACITY_STEP, "Instances managed scaling adds per step: with more than one "
                   "AZ it adds exactly this many (stacks/wake.py, capacity steps); size it for a "
                   "deploy surge", default=1, min_value=1, max_value=100),
            boolean(WARM_POOL, "Keep stopped, already-booted instances ready so scale-out skips "
                    "the boot (stopped instances pay only for EBS)", "false"),
            number(WARM_POOL_MIN, "Instances kept in the warm pool", default=1, min_value=0,
                   max_value=100),
            boolean(SPOT, "Run the GPU instances on Spot (dev): InstanceType and one type of the "
                    "same family and GPU count, capacity-optimized, no On-Demand fallback; not "
                    "with the warm pool (docs/infrastructure.md, Spot)", "false"),
            string(names.GATEWAY_IMAGE_URI, "Gateway image URI (the warm-up pulls it)"),
            string(names.OLLAMA_IMAGE_URI, "Ollama image URI (the warm-up pulls it)"),
            string(names.GATEWAY_REPOSITORY_ARN, "Gateway ECR repository ARN"),
            string(names.OLLAMA_REPOSITORY_ARN, "Ollama ECR repository ARN"),
        )

    def rules(self) -> dict[str, dict]:
        """Refuse Spot with the warm pool, and Spot for a type with no same-GPU alternative."""
        spot_on = Equals(Ref(SPOT), "true")
        return {
            # PutWarmPool "cannot be called on an Auto Scaling group that has a mixed instances
            # policy or a launch template or launch configuration that requests Spot Instances"
            # (https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_PutWarmPool.html).
            "SpotWithoutWarmPool": {
                "RuleCondition": spot_on,
                "Assertions": [{
                    "Assert": Equals(Ref(WARM_POOL), "false"),
                    "AssertDescription": "SpotInstances=true needs WarmPoolEnabled=false: a warm "
                                         "pool cannot be added to a group with a mixed instances "
                                         "policy or Spot instances (PutWarmPool)"}],
            },
            "SpotNeedsAnAlternativeType": {
                "RuleCondition": spot_on,
                "Assertions": [{
                    "Assert": {"Fn::Contains": [sorted(spot_alternatives()),
                                                Ref(names.INSTANCE_TYPE)]},
                    "AssertDescription": "SpotInstances=true: InstanceType has no other type "
                                         "with the same GPU model and count (stacks/gpu.py); "
                                         "choose one of " + ", ".join(sorted(spot_alternatives()))}],
            },
        }

    def build(self):
        t = self.new_template()
        p = self.add_parameters(t)
        subnets, group, ami, azs = (p[n] for n in (names.PRIVATE_SUBNET_IDS,
                                                   names.INSTANCE_SECURITY_GROUP_ID, AMI_ID,
                                                   names.SUBNET_AVAILABILITY_ZONES))
        instance_type, volume, asg_min, asg_max = (p[n] for n in (
            names.INSTANCE_TYPE, ROOT_VOLUME_GIB, names.ASG_MIN_SIZE, names.ASG_MAX_SIZE))
        target, warm_min, step = p[CAPACITY_TARGET], p[WARM_POOL_MIN], p[CAPACITY_STEP]
        t.add_condition("WarmPoolOn", Equals(Ref(WARM_POOL), "true"))
        t.add_condition("SpotOn", Equals(Ref(SPOT), "true"))

        # Every allowed type has a row, so the FindInMap in the Spot branch resolves whatever
        # InstanceType is; a type without an alternative maps to itself, and the root Rule
        # SpotNeedsAnAlternativeType refuses Spot for it.
        alternatives = spot_alternatives()
        t.add_mapping(SPOT_MAPPING, {kind: {"Type": alternatives.get(kind, kind)}
                                     for kind in sorted(GPUS_PER_INSTANCE)})

        cluster = t.add_resource(ecs.Cluster(
            "Cluster",
            ClusterName=Sub("${ProjectName}-${EnvironmentName}"),
            ClusterSettings=[ecs.ClusterSetting(Name="containerInsights", Value="enabled")],
        ))

        # The ECS agent's own calls, scoped to this cluster (stacks/policies.py), and Session
        # Manager. Image pulls, container logs and secrets use the task execution role.
        role = t.add_resource(iam.Role(
            "InstanceRole",
            AssumeRolePolicyDocument=policies.ec2_trust(),
            ManagedPolicyArns=policies.INSTANCE_MANAGED_POLICIES,
            Policies=[iam.Policy(PolicyName="ecs-agent", PolicyDocument=policies.ecs_agent_policy(
                cluster_arn=GetAtt(cluster, "Arn"), cluster_name=Ref(cluster)))],
        ))
        t.add_resource(iam.PolicyType(
            "SpotDrainingPolicy", Condition="SpotOn", PolicyName="ecs-agent-spot-draining",
            Roles=[Ref(role)], PolicyDocument=policies.spot_draining_policy(Ref(cluster))))
        profile = t.add_resource(iam.InstanceProfile("InstanceProfile", Roles=[Ref(role)]))

        template = t.add_resource(ec2.LaunchTemplate(
            "LaunchTemplate",
            LaunchTemplateData=ec2.LaunchTemplateData(
                ImageId=Ref(ami),
                InstanceType=Ref(instance_type),
                IamInstanceProfile=ec2.IamInstanceProfile(Arn=GetAtt(profile, "Arn")),
                NetworkInterfaces=[ec2.NetworkInterfaces(
                    DeviceIndex=0, AssociatePublicIpAddress=False, Groups=[Ref(group)],
                    DeleteOnTermination=True)],
                MetadataOptions=ec2.MetadataOptions(
                    HttpEndpoint="enabled", HttpTokens="required", HttpPutResponseHopLimit=1),
                BlockDeviceMappings=[ec2.LaunchTemplateBlockDeviceMapping(
                    DeviceName=ROOT_DEVICE,
                    Ebs=ec2.EBSBlockDevice(VolumeSize=Ref(volume), VolumeType="gp3",
                                           Throughput=Ref(ROOT_VOLUME_THROUGHPUT),
                                           Encrypted=True, DeleteOnTermination=True))],
                Monitoring=ec2.Monitoring(Enabled=True),
                UserData=boot.user_data(cluster),
                TagSpecifications=[
                    ec2.TagSpecifications(
                        ResourceType=kind, Tags=Tags(Name=Sub("${ProjectName}-${EnvironmentName}-gpu")))
                    for kind in ("instance", "volume")
                ],
            ),
        ))

        launch = autoscaling.LaunchTemplateSpecification(
            LaunchTemplateId=Ref(template), Version=GetAtt(template, "LatestVersionNumber"))
        group_ = t.add_resource(autoscaling.AutoScalingGroup(
            "AutoScalingGroup",
            MinSize=Ref(asg_min),
            MaxSize=Ref(asg_max),
            # No DesiredCapacity: the capacity provider owns it; setting it here would reset
            # the group's size on every stack update.
            VPCZoneIdentifier=Ref(subnets),
            # Same AZs as the subnets; stated so AZ-coverage rules can read it (CT.AUTOSCALING.PR.1).
            AvailabilityZones=Ref(azs),
            LaunchTemplate=If("SpotOn", NoValue, launch),
            MixedInstancesPolicy=If("SpotOn", self._spot_policy(launch, instance_type), NoValue),
            NewInstancesProtectedFromScaleIn=True,
            HealthCheckType="EC2",
            HealthCheckGracePeriod=300,
            Tags=autoscaling.Tags(
                Name=Sub("${ProjectName}-${EnvironmentName}-gpu"),
                Project=Ref(names.PROJECT_NAME), Environment=Ref(names.ENVIRONMENT_NAME)),
        ))

        boot.add_warm_pool(t, group_, role, warm_min)

        provider = t.add_resource(ecs.CapacityProvider(
            "CapacityProvider",
            # Explicit: a generated name starts with the stack name, and ECS refuses names
            # that start with aws, ecs or fargate.
            Name=Sub("gpu-${ProjectName}-${EnvironmentName}"),
            AutoScalingGroupProvider=ecs.AutoScalingGroupProvider(
                AutoScalingGroupArn=Ref(group_),
                # With more than one AZ or instance type ECS "will scale up by the exact
                # minimum scaling step size value and will ignore both the maximum scaling
                # step size as well as the capacity demand" (API_ManagedScaling,
                # https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ManagedScaling.html);
                # the group always spans 2 or 3 AZs. One step size for both keeps one AZ the
                # same; stacks/wake.py sizes it (capacity_steps).
                ManagedScaling=ecs.ManagedScaling(
                    Status="ENABLED", TargetCapacity=Ref(target),
                    MinimumScalingStepSize=Ref(step), MaximumScalingStepSize=Ref(step),
                    InstanceWarmupPeriod=wake_budget.INSTANCE_LAUNCH_SECONDS),
                ManagedTerminationProtection="ENABLED",
                ManagedDraining="ENABLED",
            ),
        ))
        t.add_resource(ecs.ClusterCapacityProviderAssociations(
            "CapacityProviderAssociation",
            Cluster=Ref(cluster),
            CapacityProviders=[Ref(provider)],
            DefaultCapacityProviderStrategy=[ecs.CapacityProviderStrategy(
                CapacityProvider=Ref(provider), Weight=1, Base=0)],
        ))

        add_output(t, names.CLUSTER_NAME, Ref(cluster), "ECS cluster name")
        add_output(t, names.CLUSTER_ARN, GetAtt(cluster, "Arn"), "ECS cluster ARN")
        add_output(t, names.CAPACITY_PROVIDER_NAME, Ref(provider),
                   "Capacity provider of the GPU Auto Scaling group")
        add_output(t, names.AUTO_SCALING_GROUP_NAME, Ref(group_), "GPU Auto Scaling group name")
        return t

    @staticmethod
    def _spot_policy(launch, instance_type) -> autoscaling.MixedInstancesPolicy:
        """All Spot: InstanceType and its same-family, same-GPU-count alternative.

        capacity-optimized launches from the pools with the most spare capacity (fewer
        interruptions). No On-Demand share and no fallback: ECS capacity providers do not fall
        back from one capacity to another (aws/containers-roadmap#773, open), and an Auto
        Scaling group with OnDemandPercentageAboveBaseCapacity 0 keeps asking for Spot. When
        Spot has no capacity, tasks wait in PROVISIONING (the pending-task alarm and the
        placement-failure rule say so); set SpotInstances=false and deploy (docs/infrastructure.md, Spot).
        """
        return autoscaling.MixedInstancesPolicy(
            InstancesDistribution=autoscaling.InstancesDistribution(
                OnDemandBaseCapacity=0, OnDemandPercentageAboveBaseCapacity=0,
                SpotAllocationStrategy="capacity-optimized"),
            LaunchTemplate=autoscaling.LaunchTemplate(
                LaunchTemplateSpecification=launch,
                Overrides=[autoscaling.LaunchTemplateOverrides(InstanceType=Ref(instance_type)),
                           autoscaling.LaunchTemplateOverrides(InstanceType=FindInMap(
                               SPOT_MAPPING, Ref(instance_type), "Type"))]),
        )
