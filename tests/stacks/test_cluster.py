"""Cluster layer: IMDSv2, encrypted root volume, scale-in protection, capacity provider."""

from __future__ import annotations

import base64
import email
import subprocess
from functools import cache

import pytest

from app.contract import TIMEOUTS
from stacks import boot
from stacks.cluster import GPU_AMI_PARAMETER
from stacks.gpu import GPUS_PER_INSTANCE, spot_alternatives
from tests.cfn import generated, props, rendered, resources, walk
from tools import params, render


def cluster():
    return generated()["cluster.json"]


def launch_data() -> dict:
    return props(cluster()["Resources"]["LaunchTemplate"])["LaunchTemplateData"]


def user_data() -> str:
    sub = launch_data()["UserData"]["Fn::Base64"]["Fn::Sub"]
    return sub[0]


def cloud_init(env: str = "dev", **overrides: str) -> tuple[str, str]:
    """(cloud-config, shell script) of the rendered user data, split as cloud-init splits it."""
    data = props(rendered(env, **overrides)["cluster.json"]["Resources"]["LaunchTemplate"])
    message = email.message_from_string(base64.b64decode(data["LaunchTemplateData"]["UserData"])
                                        .decode())
    parts = {part.get_content_type(): part.get_payload() for part in message.walk()
             if not part.is_multipart()}
    return parts["text/cloud-config"], parts["text/x-shellscript"]


def test_launch_template_requires_imdsv2_with_hop_limit_one():
    assert launch_data()["MetadataOptions"] == {
        "HttpEndpoint": "enabled", "HttpTokens": "required", "HttpPutResponseHopLimit": 1}


def test_root_volume_is_encrypted_gp3_sized_by_parameters():
    (mapping,) = launch_data()["BlockDeviceMappings"]
    assert mapping["DeviceName"] == "/dev/xvda"
    assert mapping["Ebs"] == {"VolumeSize": {"Ref": "RootVolumeSizeGiB"}, "VolumeType": "gp3",
                              "Throughput": {"Ref": "RootVolumeThroughputMiBps"},
                              "Encrypted": True, "DeleteOnTermination": True}
    # gp3: 125 MiB/s included, at most 0.25 MiB/s per IOPS at the default 3,000 IOPS
    spec = cluster()["Parameters"]["RootVolumeThroughputMiBps"]
    assert (spec["MinValue"], spec["MaxValue"]) == (125, 3000 // 4)
    assert "Iops" not in mapping["Ebs"]


def test_instances_get_no_public_ip_and_only_the_instance_group():
    (nic,) = launch_data()["NetworkInterfaces"]
    assert nic["AssociatePublicIpAddress"] is False
    assert nic["Groups"] == [{"Ref": "InstanceSecurityGroupId"}]
    assert launch_data()["Monitoring"] == {"Enabled": True}


def test_ami_parameter_defaults_to_the_al2023_gpu_ami_resolved_by_root():
    root = generated()["root.json"]["Parameters"]["GpuAmiId"]
    assert root["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    assert root["Default"] == GPU_AMI_PARAMETER
    assert "amazon-linux-2023/gpu" in root["Default"]
    assert cluster()["Parameters"]["GpuAmiId"]["Type"] == "AWS::EC2::Image::Id"


def test_no_nested_template_takes_an_ssm_typed_parameter():
    # Root resolves SSM-typed parameters and passes the value; a nested stack would look the
    # value up again as a parameter name and fail.
    for name, template in generated().items():
        if name == "root.json":
            continue
        for key, spec in template.get("Parameters", {}).items():
            assert not spec["Type"].startswith("AWS::SSM::Parameter::Value"), f"{name}: {key}"


def test_asg_spans_the_azs_of_its_subnets():
    asg = props(cluster()["Resources"]["AutoScalingGroup"])
    assert asg["AvailabilityZones"] == {"Ref": "SubnetAvailabilityZones"}
    root = generated()["root.json"]["Resources"]["Cluster"]["Properties"]["Parameters"]
    assert root["SubnetAvailabilityZones"] == {
        "Fn::GetAtt": ["Network", "Outputs.SubnetAvailabilityZones"]}


def test_instance_types_are_only_those_with_a_known_gpu_count():
    allowed = cluster()["Parameters"]["InstanceType"]["AllowedValues"]
    assert allowed and set(allowed) == set(GPUS_PER_INSTANCE)
    assert all(GPUS_PER_INSTANCE[t] >= 1 for t in allowed)  # one task needs one GPU


def test_user_data_joins_the_cluster_blocks_imds_and_uses_the_budget():
    _, script = cloud_init()
    assert "ECS_CLUSTER=llm-api-dev\n" in script
    assert "ECS_AWSVPC_BLOCK_IMDS=true" in script
    assert f"ECS_CONTAINER_STOP_TIMEOUT={TIMEOUTS.container_stop_timeout_seconds}s" in script
    assert "ECS_IMAGE_PULL_BEHAVIOR=prefer-cached" in script
    assert "ECS_ENABLE_GPU_SUPPORT=true" in script
    assert "ECS_WARM_POOLS_CHECK=true" in script  # dev has the warm pool on
    variables = launch_data()["UserData"]["Fn::Base64"]["Fn::Sub"][1]
    assert variables["WarmPoolCheck"] == {"Fn::If": ["WarmPoolOn", "true", "false"]}
    script.encode("ascii")  # plain ASCII


def test_user_data_runs_on_every_boot_and_writes_the_agent_config_once():
    """cloud-init runs the script on every boot only with scripts-user "always" in a MIME
    multi-part user data (EC2 Auto Scaling warm pools, Prerequisites): a warm-pool instance
    boots again when it leaves the pool, and its launch hook waits for the script."""
    config, script = cloud_init()
    assert "cloud_final_modules:\n- [scripts-user, always]" in config
    assert script.startswith("#!/bin/bash\nset -euo pipefail\n")
    assert "if ! grep -qs '^ECS_CLUSTER=' /etc/ecs/ecs.config; then" in script
    assert script.count("ECS_CLUSTER=") == 2  # the guard and the one line it writes


def test_warm_up_pulls_this_releases_two_images_only_when_entering_the_pool():
    _, script = cloud_init()
    resources_ = rendered("dev")
    service = props(resources_["service.json"]["Resources"]["TaskDefinition"])
    parameter = props(resources_["cluster.json"]["Resources"]["WarmUpImagesParameter"])
    # the parameter holds exactly the task definition's two images; the script pulls what it reads
    assert sorted(parameter["Value"].split(" ")) == sorted(
        c["Image"] for c in service["ContainerDefinitions"])
    warm, other = script.split("Warmed:*)", 1)[1].split(";;", 1)
    assert f"aws ssm get-parameter --region us-east-1 --name '{parameter['Name']}'" in warm
    assert 'for image in $images; do docker pull "$image"; done' in warm
    assert "get-login-password" in warm and "docker logout" in warm
    assert "docker pull" not in other  # a start from the pool pulls nothing here
    assert "complete_hook" in warm and "complete_hook" in other
    assert "autoscaling/target-lifecycle-state" in script
    assert f"--lifecycle-hook-name {boot.WARM_UP_HOOK} " in script
    assert "X-aws-ec2-metadata-token" in script  # IMDSv2 (HttpTokens required)


def test_a_release_changes_the_images_parameter_not_the_launch_template():
    """A new launch template version means `make roll` (tools/deploy/fleet.py); a new image tag
    must not make one. Pool instances warmed before the release hold the old images until used
    (their first task pulls the new ones) or replaced."""
    before = rendered("dev")["cluster.json"]["Resources"]
    after = rendered("dev", ImageTag="f" * 40)["cluster.json"]["Resources"]
    assert before["LaunchTemplate"] == after["LaunchTemplate"]
    assert props(before["WarmUpImagesParameter"])["Value"] != props(
        after["WarmUpImagesParameter"])["Value"]
    assert props(after["WarmUpImagesParameter"])["Value"].count(":" + "f" * 40) == 2


def test_without_the_warm_pool_the_user_data_does_no_warm_up():
    _, script = cloud_init("prod", WarmPoolEnabled="false")
    assert "docker pull" not in script and "complete-lifecycle-action" not in script
    assert "ssm get-parameter" not in script
    assert "ECS_WARM_POOLS_CHECK=false" in script
    resources_ = rendered("prod", WarmPoolEnabled="false")["cluster.json"]["Resources"]
    assert not {"WarmUpImagesParameter", "WarmUpPolicy", "WarmUpHook"} & set(resources_)


def test_the_boot_script_is_valid_bash():
    for env, overrides in (("dev", {}), ("prod", {"WarmPoolEnabled": "false"})):
        _, script = cloud_init(env, **overrides)
        result = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
        assert result.returncode == 0, (env, result.stderr)


def test_warm_pool_waits_for_its_launch_hook_and_the_hook_for_what_the_script_uses():
    resources_ = rendered("dev")["cluster.json"]["Resources"]
    hook = props(resources_["WarmUpHook"])
    assert (hook["LifecycleTransition"], hook["DefaultResult"], hook["LifecycleHookName"]) == (
        "autoscaling:EC2_INSTANCE_LAUNCHING", "CONTINUE", boot.WARM_UP_HOOK)
    generated_ = cluster()["Resources"]
    assert generated_["WarmPool"]["DependsOn"] == ["WarmUpHook"]
    assert generated_["WarmUpHook"]["DependsOn"] == ["WarmUpPolicy", "WarmUpImagesParameter"]
    assert props(generated_["WarmUpPolicy"])["Roles"] == [{"Ref": "InstanceRole"}]


def test_asg_protects_new_instances_and_leaves_desired_capacity_alone():
    asg = props(cluster()["Resources"]["AutoScalingGroup"])
    assert asg["NewInstancesProtectedFromScaleIn"] is True
    assert "DesiredCapacity" not in asg
    assert asg["VPCZoneIdentifier"] == {"Ref": "PrivateSubnetIds"}
    assert asg["MinSize"] == {"Ref": "AsgMinSize"} and asg["MaxSize"] == {"Ref": "AsgMaxSize"}
    assert all(tag["PropagateAtLaunch"] is True for tag in asg["Tags"])


def test_capacity_provider_has_managed_scaling_and_termination_protection():
    provider = props(cluster()["Resources"]["CapacityProvider"])["AutoScalingGroupProvider"]
    assert provider["ManagedScaling"]["Status"] == "ENABLED"
    assert provider["ManagedScaling"]["TargetCapacity"] == {"Ref": "CapacityTargetPercent"}
    assert cluster()["Parameters"]["CapacityTargetPercent"]["Default"] == 100
    assert provider["ManagedTerminationProtection"] == "ENABLED"
    assert provider["AutoScalingGroupArn"] == {"Ref": "AutoScalingGroup"}


def test_capacity_provider_is_the_clusters_default_strategy():
    association = props(cluster()["Resources"]["CapacityProviderAssociation"])
    assert association["Cluster"] == {"Ref": "Cluster"}
    assert association["DefaultCapacityProviderStrategy"][0]["CapacityProvider"] == {
        "Ref": "CapacityProvider"}


def test_container_insights_on():
    settings = props(cluster()["Resources"]["Cluster"])["ClusterSettings"]
    assert {"Name": "containerInsights", "Value": "enabled"} in settings


def test_instance_role_is_the_agents_calls_and_session_manager_with_ec2_trust():
    role = props(cluster()["Resources"]["InstanceRole"])
    arns = sorted(p["Fn::Sub"] for p in role["ManagedPolicyArns"])
    assert arns == ["arn:${AWS::Partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"]
    assert not any("AmazonEC2ContainerServiceforEC2Role" in str(p) for p in role["ManagedPolicyArns"])
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "ec2.amazonaws.com"}
    assert "Condition" not in statement, "EC2 sends no aws:SourceAccount"
    # What the role may do is tests/security/test_permissions.py (evaluated per environment).


def test_warm_pool_is_optional_stopped_capped_and_not_reused_on_scale_in():
    pool = cluster()["Resources"]["WarmPool"]
    assert pool["Condition"] == "WarmPoolOn"
    assert props(pool)["PoolState"] == "Stopped"
    assert props(pool)["MaxGroupPreparedCapacity"] == {"Ref": "WarmPoolMinSize"}
    assert "InstanceReusePolicy" not in props(pool), "ECS does not support ReuseOnScaleIn"


def test_capacity_provider_name_avoids_reserved_prefixes():
    name = props(cluster()["Resources"]["CapacityProvider"])["Name"]["Fn::Sub"]
    assert not name.lower().startswith(("aws", "ecs", "fargate"))


def test_no_launch_configuration_anywhere():
    for name, template in generated().items():
        types = [body["Type"] for body in resources(template).values()]
        assert "AWS::AutoScaling::LaunchConfiguration" not in types, name
        for path, _ in walk(template):
            assert "LaunchConfigurationName" not in path, name


# -- Spot --------------------------------------------------------------------------------------


@cache
def rendered_cluster(spot: str) -> dict:
    values = params.load_env("dev") | {"SpotInstances": spot}
    return render.render_environment("dev", values=values).templates["cluster.json"]["Resources"]


def rendered_user_data(spot: str) -> str:
    data = props(rendered_cluster(spot)["LaunchTemplate"])["LaunchTemplateData"]["UserData"]
    return base64.b64decode(data).decode()


def test_spot_group_is_all_spot_capacity_optimized_over_same_gpu_types():
    asg = props(rendered_cluster("true")["AutoScalingGroup"])
    assert "LaunchTemplate" not in asg
    policy = asg["MixedInstancesPolicy"]
    assert policy["InstancesDistribution"] == {
        "OnDemandBaseCapacity": 0, "OnDemandPercentageAboveBaseCapacity": 0,
        "SpotAllocationStrategy": "capacity-optimized"}
    types = [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]]
    chosen = params.load_env("dev")["InstanceType"]
    assert types[0] == chosen and len(set(types)) == len(types) == 2
    assert {GPUS_PER_INSTANCE[t] for t in types} == {GPUS_PER_INSTANCE[chosen]}
    assert {t.split(".")[0] for t in types} == {chosen.split(".")[0]}  # same GPU model


def test_on_demand_group_has_no_mixed_instances_policy():
    asg = props(rendered_cluster("false")["AutoScalingGroup"])
    assert "MixedInstancesPolicy" not in asg and "LaunchTemplateId" in asg["LaunchTemplate"]


@pytest.mark.parametrize(("spot", "draining"), [("true", "true"), ("false", "false")])
def test_spot_instances_drain_on_the_interruption_notice(spot, draining):
    assert f"ECS_ENABLE_SPOT_INSTANCE_DRAINING={draining}\n" in rendered_user_data(spot)


def test_every_spot_alternative_has_the_same_gpu_count_and_family():
    alternatives = spot_alternatives()
    for kind, other in alternatives.items():
        assert other != kind and GPUS_PER_INSTANCE[other] == GPUS_PER_INSTANCE[kind]
        assert other.split(".")[0] == kind.split(".")[0]
    # A type alone in its family with its GPU count has none: the root rule refuses Spot there.
    assert "g5.48xlarge" not in alternatives and "g4dn.12xlarge" not in alternatives
    assert cluster()["Mappings"]["SpotAlternative"] == {
        k: {"Type": alternatives.get(k, k)} for k in GPUS_PER_INSTANCE}


def test_spot_is_off_by_default_and_in_every_params_file():
    assert cluster()["Parameters"]["SpotInstances"]["Default"] == "false"
    for env in params.environments():
        assert params.load_env(env)["SpotInstances"] == "false"
