"""What an environment deploys, counted from its rendered templates (tools/render.py, read-only).

Counts and flags come from the rendering (Conditions resolved, parameters substituted), found by
resource type across every template, so they follow the templates when a resource moves between
layers. Only what no template states (GPUs per instance type, the gateway's own metrics) comes
from the modules that declare it (stacks/gpu.py, app/contract.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from app import contract
from stacks.gpu import GPUS_PER_INSTANCE
from tools import render
from tools.cost.schedule import Phase, phases

# gp3 includes 125 MiB/s in the storage price (https://docs.aws.amazon.com/ebs/latest/userguide/general-purpose.html).
GP3_INCLUDED_THROUGHPUT = 125


class FactsError(ValueError):
    """The rendering lacks something the estimate needs; the message names it."""


@dataclass
class Facts:
    env: str
    region: str
    instance_type: str
    gpus_per_instance: int
    gpus_per_task: int
    root_volume_gb: int
    root_volume_type: str
    detailed_monitoring: bool
    asg_min: int
    asg_max: int
    warm_pool_min: int | None  # None: no warm pool
    warm_pool_max_prepared: int | None
    task_min: int
    task_max: int
    deploy_max_percent: int
    schedule: list[Phase]
    requests_per_target_per_minute: float
    nat_gateways: int
    public_ipv4_eips: int
    albs: int
    alb_public_azs: int  # public IPv4 addresses of internet-facing ALBs (one per AZ subnet)
    alb_access_logs: bool
    interface_endpoint_azs: int  # sum over interface endpoints of the subnets (AZs) each is in
    interface_endpoint_names: list[str]
    kms_keys: int
    secrets: int
    log_groups: list[tuple[str, int | None]]  # (logical ID, retention days)
    flow_logs_to_cloudwatch: int
    alarm_metrics: int
    alarms: int
    dashboards: int
    container_insights: bool
    custom_metrics: int
    ecr_images_kept: dict[str, int]
    dns_records: int
    web_acls: int
    waf_rules: int
    notes: list[str] = field(default_factory=list)
    # Minutes without a request after which a step policy sets 0 tasks (scale-to-zero), or None.
    idle_minutes: int | None = None
    spot: bool = False  # the GPU group launches Spot only (a mixed-instances policy, 0% On-Demand)
    root_volume_throughput: int = GP3_INCLUDED_THROUGHPUT  # MiB/s (gp3 Throughput)

    def instances_for(self, tasks: int) -> int:
        """Instances the capacity provider keeps for `tasks` tasks: one GPU each, packed, at least
        AsgMinSize, at most AsgMaxSize."""
        needed = math.ceil(tasks * self.gpus_per_task / self.gpus_per_instance) if tasks else 0
        return min(self.asg_max, max(self.asg_min, needed))

    def warm_pool_size(self, desired: int) -> int:
        """Stopped instances in the warm pool at a desired capacity.

        PutWarmPool: without MaxGroupPreparedCapacity the pool holds max size minus desired; with
        it, MaxGroupPreparedCapacity minus desired; never fewer than MinSize.
        https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_PutWarmPool.html
        """
        if self.warm_pool_min is None:
            return 0
        ceiling = self.asg_max if self.warm_pool_max_prepared is None else self.warm_pool_max_prepared
        return max(self.warm_pool_min, ceiling - desired)


def _resources(rendered: render.Rendered) -> list[tuple[str, str, dict]]:
    found = []
    for file_name, template in sorted(rendered.templates.items()):
        for lid, body in sorted(template.get("Resources", {}).items()):
            found.append((f"{file_name}:{lid}", body.get("Type", ""), body.get("Properties") or {}))
    return found


def _one(resources, type_: str, env: str) -> dict:
    matches = [props for _, t, props in resources if t == type_]
    if len(matches) != 1:
        raise FactsError(f"{env}: expected one {type_} in the rendered templates, found "
                         f"{len(matches)}; the cost model reads one GPU group and one service")
    return matches[0]


def _kept_images(props: dict) -> int | None:
    text = (props.get("LifecyclePolicy") or {}).get("LifecyclePolicyText")
    if not text:
        return None
    counts = [rule["selection"]["countNumber"] for rule in json.loads(text).get("rules", [])
              if rule.get("selection", {}).get("countType") == "imageCountMoreThan"]
    return min(counts) if counts else None


def collect(env: str, templates_dir: Path = render.TEMPLATES_DIR,
            values: dict[str, str] | None = None) -> Facts:
    return from_rendering(env, render.render_environment(env, templates_dir=templates_dir,
                                                         values=values))


def from_rendering(env: str, rendered: render.Rendered) -> Facts:
    """The facts of one environment's rendering (the review report passes its own)."""
    res = _resources(rendered)
    by_type = lambda t: [props for _, typ, props in res if typ == t]  # noqa: E731

    lt = _one(res, "AWS::EC2::LaunchTemplate", env)["LaunchTemplateData"]
    instance_type = lt["InstanceType"]
    if instance_type not in GPUS_PER_INSTANCE:
        raise FactsError(f"{env}: instance type {instance_type} has no GPU count in stacks/gpu.py")
    root = lt["BlockDeviceMappings"][0]["Ebs"]
    asg = _one(res, "AWS::AutoScaling::AutoScalingGroup", env)
    pools = by_type("AWS::AutoScaling::WarmPool")
    target = _one(res, "AWS::ApplicationAutoScaling::ScalableTarget", env)
    service = _one(res, "AWS::ECS::Service", env)
    task_def = _one(res, "AWS::ECS::TaskDefinition", env)
    gpus_per_task = sum(int(req["Value"]) for c in task_def["ContainerDefinitions"]
                        for req in c.get("ResourceRequirements", []) if req.get("Type") == "GPU")
    request_targets = [p["TargetTrackingScalingPolicyConfiguration"]["TargetValue"]
                       for p in by_type("AWS::ApplicationAutoScaling::ScalingPolicy")
                       if (p.get("TargetTrackingScalingPolicyConfiguration", {})
                           .get("PredefinedMetricSpecification", {}).get("PredefinedMetricType")
                           == "ALBRequestCountPerTarget")]
    albs = by_type("AWS::ElasticLoadBalancingV2::LoadBalancer")
    alb_attrs = {a["Key"]: a["Value"] for lb in albs for a in lb.get("LoadBalancerAttributes", [])}
    prefix = f"com.amazonaws.{rendered.region}."
    endpoints = [(p["ServiceName"].removeprefix(prefix), len(p.get("SubnetIds", [])))
                 for p in by_type("AWS::EC2::VPCEndpoint") if p.get("VpcEndpointType") == "Interface"]
    alarms = by_type("AWS::CloudWatch::Alarm")
    # An alarm is billed per metric it evaluates: one for a metric alarm, one per MetricStat in
    # a metric-math alarm (https://aws.amazon.com/cloudwatch/pricing/, "Alarms").
    alarm_metrics = sum(1 if a.get("MetricName") else
                        sum(1 for m in a.get("Metrics", []) if "MetricStat" in m) for a in alarms)
    cluster = _one(res, "AWS::ECS::Cluster", env)
    settings = {s["Name"]: s["Value"] for s in cluster.get("ClusterSettings", [])}
    acls = by_type("AWS::WAFv2::WebACL")
    pool = pools[0] if pools else None
    mixed = asg.get("MixedInstancesPolicy") or {}
    distribution = mixed.get("InstancesDistribution") or {}
    deploy = service.get("DeploymentConfiguration", {})
    return Facts(
        env=env, region=rendered.region, instance_type=instance_type,
        gpus_per_instance=GPUS_PER_INSTANCE[instance_type], gpus_per_task=gpus_per_task or 1,
        root_volume_gb=int(root["VolumeSize"]), root_volume_type=root.get("VolumeType", "gp2"),
        detailed_monitoring=bool((lt.get("Monitoring") or {}).get("Enabled")),
        asg_min=int(asg["MinSize"]), asg_max=int(asg["MaxSize"]),
        warm_pool_min=int(pool.get("MinSize", 0)) if pool else None,
        warm_pool_max_prepared=(int(pool["MaxGroupPreparedCapacity"])
                                if pool and "MaxGroupPreparedCapacity" in pool else None),
        task_min=int(target["MinCapacity"]), task_max=int(target["MaxCapacity"]),
        deploy_max_percent=int(deploy.get("MaximumPercent", 200)),
        schedule=phases(int(target["MinCapacity"]), int(target["MaxCapacity"]),
                        target.get("ScheduledActions") or []),
        requests_per_target_per_minute=float(request_targets[0]) if request_targets else 0.0,
        nat_gateways=len(by_type("AWS::EC2::NatGateway")),
        public_ipv4_eips=len(by_type("AWS::EC2::EIP")),
        albs=len(albs),
        alb_public_azs=sum(len(lb.get("Subnets", [])) for lb in albs
                           if lb.get("Scheme", "internet-facing") == "internet-facing"),
        alb_access_logs=alb_attrs.get("access_logs.s3.enabled") == "true",
        interface_endpoint_azs=sum(azs for _, azs in endpoints),
        interface_endpoint_names=sorted(name for name, _ in endpoints),
        kms_keys=len(by_type("AWS::KMS::Key")),
        secrets=len(by_type("AWS::SecretsManager::Secret")),
        log_groups=[(lid.split(":")[1], props.get("RetentionInDays")) for lid, t, props in res
                    if t == "AWS::Logs::LogGroup"],
        flow_logs_to_cloudwatch=sum(1 for p in by_type("AWS::EC2::FlowLog")
                                    if p.get("LogDestinationType", "cloud-watch-logs")
                                    == "cloud-watch-logs"),
        alarm_metrics=alarm_metrics, alarms=len(alarms),
        dashboards=len(by_type("AWS::CloudWatch::Dashboard")),
        container_insights=settings.get("containerInsights") in ("enabled", "enhanced"),
        # The gateway's EMF metrics: one dimension set each (app/contract.py), so one metric each.
        custom_metrics=len(contract.METRICS),
        ecr_images_kept={p.get("RepositoryName", "?"): _kept_images(p) or 0
                         for p in by_type("AWS::ECR::Repository")},
        dns_records=len(by_type("AWS::Route53::RecordSet")),
        web_acls=len(acls), waf_rules=sum(len(a.get("Rules", [])) for a in acls),
        notes=list(rendered.notes),
        idle_minutes=_idle_minutes(by_type("AWS::ApplicationAutoScaling::ScalingPolicy"), alarms),
        spot=bool(mixed) and int(distribution.get("OnDemandBaseCapacity", 0)) == 0
        and int(distribution.get("OnDemandPercentageAboveBaseCapacity", 100)) == 0,
        root_volume_throughput=int(root.get("Throughput", GP3_INCLUDED_THROUGHPUT)),
    )


def _idle_minutes(policies: list[dict], alarms: list[dict]) -> int | None:
    """IdleMinutes of scale-to-zero: the evaluation periods (60 s) of the alarm that invokes a
    step policy setting exactly 0 tasks (stacks/scaling.py); None when there is no such policy.
    The floor needs this policy: MinCapacity 0 alone lets the service reach 0, it does not take
    it there."""
    idle = [p["PolicyName"] for p in policies
            if (p.get("StepScalingPolicyConfiguration") or {}).get("AdjustmentType") == "ExactCapacity"
            and {s["ScalingAdjustment"] for s in p["StepScalingPolicyConfiguration"]
                 ["StepAdjustments"]} == {0}]
    for alarm in alarms:
        if any(f"/policyName/{name}" in action for action in alarm.get("AlarmActions", [])
               for name in idle):
            return int(alarm["EvaluationPeriods"])
    return None
